package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"runtime"
	"testing"
)

// allocBound is the most a decode may allocate per input octet (plus a
// constant): each decoded element costs a fixed-size struct and consumes at
// least 4 input octets, so nothing a peer sends can make us allocate more.
const (
	allocPerOctet = 64
	allocConstant = 16 << 10
)

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func seedMessages(f *testing.F) {
	for seed := uint64(0); seed < 20; seed++ {
		g := newGen(seed)
		m := &Message{Header: Header{SPIi: 1 + seed, MajorVersion: 2, Exchange: IKESAInit}, Payloads: g.chain()}
		b, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	h := Header{SPIi: 1, SPIr: 2, MajorVersion: 2, Exchange: CreateChildSA, NextPayload: PayloadSK, Length: 40}
	f.Add(append(h.AppendTo(nil), 0x21, 0, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8))
}

// checkScan holds the allocation-free checks a receiver makes before
// decoding (DecodeHeader, ScanPayloads) to ParseMessage: what ParseMessage
// accepts they accept, and ScanPayloads finds the SK or SKF payload
// ParseMessage decoded. What they refuse ParseMessage refuses.
func checkScan(t *testing.T, b []byte, m *Message, err error) {
	t.Helper()
	_, hc := DecodeHeader(b)
	off, sk, ok := ScanPayloads(b)
	var crit *UnsupportedCriticalError
	if err != nil && !errors.As(err, &crit) {
		return // the cheap checks may pass what only decoding refuses
	}
	if hc != HeaderOK || !ok {
		t.Fatalf("ParseMessage accepts what DecodeHeader (%d) or ScanPayloads (%v) refuse", hc, ok)
	}
	wantOff, want := 0, PayloadNone
	if len(m.Payloads) > 0 {
		switch p := m.Payloads[len(m.Payloads)-1].(type) {
		case *Encrypted:
			wantOff, want = p.Offset, PayloadSK
		case *EncryptedFragment:
			wantOff, want = p.Offset, PayloadSKF
		}
	}
	if off != wantOff || sk != want {
		t.Fatalf("ScanPayloads found %v at %d, ParseMessage %v at %d", sk, off, want, wantOff)
	}
}

// FuzzParseMessage: any datagram decodes to a message or an error, never a
// panic, never an allocation out of proportion; what decodes re-encodes to
// something that decodes to the same encoding.
func FuzzParseMessage(f *testing.F) {
	seedMessages(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			m   *Message
			err error
		)
		if n := allocated(func() { m, err = ParseMessage(b) }); n > uint64(allocPerOctet*len(b)+allocConstant) {
			t.Fatalf("decoding %d octets allocated %d", len(b), n)
		}
		checkScan(t, b, m, err)
		var crit *UnsupportedCriticalError
		if err != nil && !errors.As(err, &crit) {
			if m != nil {
				t.Fatal("message returned with a parse error")
			}
			return
		}
		if _, ok := First[*Encrypted](m.Payloads); ok {
			return
		}
		if _, ok := First[*EncryptedFragment](m.Payloads); ok {
			return
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
		m2, err := ParseMessage(again)
		if err != nil && !errors.As(err, &crit) {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		third, _ := m2.Marshal()
		if !bytes.Equal(third, again) {
			t.Fatal("encoding is not stable")
		}
	})
}

// FuzzParsePayloads covers the body decoders directly, as after SK
// decryption (the plaintext of a verified SK payload is still hostile).
func FuzzParsePayloads(f *testing.F) {
	for seed := uint64(0); seed < 30; seed++ {
		first, b, err := EncodePayloads(newGen(seed).chain())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(first), b)
	}
	f.Fuzz(func(t *testing.T, first byte, b []byte) {
		var (
			ps  []Payload
			err error
		)
		if n := allocated(func() { ps, err = ParsePayloads(PayloadType(first), b) }); n > uint64(allocPerOctet*len(b)+allocConstant) {
			t.Fatalf("decoding %d octets allocated %d", len(b), n)
		}
		var crit *UnsupportedCriticalError
		if err != nil && !errors.As(err, &crit) {
			return
		}
		ft, again, err := EncodePayloads(ps)
		if err != nil {
			t.Fatalf("decoded chain does not re-encode: %v", err)
		}
		ps2, err := ParsePayloads(ft, again)
		if err != nil && !errors.As(err, &crit) {
			t.Fatalf("re-encoded chain does not decode: %v", err)
		}
		if _, third, _ := EncodePayloads(ps2); !bytes.Equal(third, again) {
			t.Fatal("encoding is not stable")
		}
	})
}

// FuzzRedirectData: REDIRECT and REDIRECTED_FROM data (RFC 5685 §9.2,
// §9.3) from any peer decode to a gateway or an error, never a panic;
// what decodes is one of the identity types with its exact length, a
// nonce within §9.2's bounds, and re-encodes to the same octets (the
// encoding is unique, so nothing is silently normalised).
func FuzzRedirectData(f *testing.F) {
	nonce := bytes.Repeat([]byte{0xab}, 32)
	for _, gw := range []string{"192.0.2.7", "2001:db8::7"} {
		b, err := MarshalRedirect(netip.MustParseAddr(gw), nonce)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		b, _ = MarshalRedirect(netip.MustParseAddr(gw), nil)
		f.Add(b)
	}
	f.Add([]byte{3, 14, 'g', 'w', '2', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'n', 'l'})
	f.Add([]byte{1, 4, 192, 0})
	f.Add([]byte{2, 255})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, d []byte) {
		var (
			r   Redirect
			err error
		)
		if n := allocated(func() { r, err = ParseRedirect(d) }); n > uint64(allocPerOctet*len(d)+allocConstant) {
			t.Fatalf("decoding %d octets allocated %d", len(d), n)
		}
		if err == nil {
			switch {
			case r.FQDN != "" && r.GW.IsValid(), r.FQDN == "" && !r.GW.IsValid():
				t.Fatalf("decoded %+v: want exactly one of an address and a name", r)
			case r.Nonce != nil && (len(r.Nonce) < 16 || len(r.Nonce) > 256):
				t.Fatalf("nonce data of %d octets accepted", len(r.Nonce))
			}
			again, err := r.Marshal()
			if err != nil {
				t.Fatalf("decoded %+v does not re-encode: %v", r, err)
			}
			if !bytes.Equal(again, d) {
				t.Fatalf("re-encoded %x, decoded from %x", again, d)
			}
		}
		a, err := ParseRedirectedFrom(d)
		if err != nil {
			return
		}
		if !a.IsValid() || a.Is4In6() {
			t.Fatalf("REDIRECTED_FROM decoded to %v", a)
		}
		again, err := MarshalRedirectedFrom(a)
		if err != nil || !bytes.Equal(again, d) {
			t.Fatalf("REDIRECTED_FROM %v re-encodes to %x (%v), decoded from %x", a, again, err, d)
		}
	})
}
