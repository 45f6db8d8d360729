package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeOne(t *testing.T, p Payload) []byte {
	t.Helper()
	_, b, err := EncodePayloads([]Payload{p})
	if err != nil {
		t.Fatalf("encode %s: %v", p.Type(), err)
	}
	return b
}

// RFC 7791 §6: both clone notifies are Protocol 0, SPI size 0, no data, so
// the whole payload is exactly 8 octets.
func TestRFC7791Section6NotifyEncoding(t *testing.T) {
	for _, c := range []struct {
		n    NotifyType
		want string
	}{
		{NotifyCloneIKESASupported, "00 00 00 08 00 00 40 30"},
		{NotifyCloneIKESA, "00 00 00 08 00 00 40 31"},
	} {
		got := encodeOne(t, NewNotify(c.n, nil))
		if !bytes.Equal(got, mustHex(t, c.want)) {
			t.Errorf("%s: got % x, want %s", c.n, got, c.want)
		}
		if c.n.String() != map[NotifyType]string{16432: "CLONE_IKE_SA_SUPPORTED", 16433: "CLONE_IKE_SA"}[c.n] {
			t.Errorf("name of %d is %s", uint16(c.n), c.n)
		}
	}
}

// RFC 7296 §3.1 header layout, and the checks ParseHeader makes.
func TestRFC7296Section3_1Header(t *testing.T) {
	h := Header{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718, NextPayload: PayloadSA,
		MajorVersion: 2, Exchange: IKESAInit, Flags: FlagInitiator, MessageID: 7, Length: 28}
	b := h.AppendTo(nil)
	want := mustHex(t, "0102030405060708 1112131415161718 21 20 22 08 00000007 0000001c")
	if !bytes.Equal(b, want) {
		t.Fatalf("got % x\nwant % x", b, want)
	}
	got, err := ParseHeader(b)
	if err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v", got, err)
	}
	// Minor version is ignored on receipt (§2.5).
	b[17] = 0x27
	if got, err := ParseHeader(b); err != nil || got.MinorVersion != 7 {
		t.Fatalf("minor version: %+v %v", got, err)
	}
	b[17] = 0x20

	var ve *VersionError
	for _, c := range []struct {
		name   string
		mutate func([]byte) []byte
		check  func(error) bool
	}{
		{"short", func(b []byte) []byte { return b[:27] }, isParseError},
		{"IKEv1", func(b []byte) []byte { b[17] = 0x10; return b }, func(e error) bool { return errors.As(e, &ve) && ve.Major == 1 }},
		{"major 3", func(b []byte) []byte { b[17] = 0x30; return b }, func(e error) bool { return errors.As(e, &ve) && ve.Major == 3 }},
		{"length too big", func(b []byte) []byte { b[27] = 29; return b }, isParseError},
		{"length too small", func(b []byte) []byte { return append(b, 0) }, isParseError},
		{"zero SPIi", func(b []byte) []byte { copy(b, make([]byte, 8)); return b }, isParseError},
	} {
		m := c.mutate(append([]byte(nil), b...))
		if _, err := ParseHeader(m); !c.check(err) {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
}

func isParseError(err error) bool {
	var pe *ParseError
	return errors.As(err, &pe)
}

// Golden encodings of each payload type (RFC 7296 §3.3-§3.16).
func TestPayloadGoldenEncodings(t *testing.T) {
	tsV4 := &TS{Selectors: []Selector{PrefixSelector(netip.MustParsePrefix("10.20.0.0/24"), 0)}}
	for _, c := range []struct {
		p    Payload
		want string
	}{
		// One IKE proposal: AES-CBC-128, PRF_HMAC_SHA2_256, AUTH_HMAC_SHA2_256_128, Curve25519.
		{&SA{Proposals: []Proposal{{Number: 1, Protocol: ProtoIKE, Transforms: []Transform{
			{Type: TransformENCR, ID: uint16(EncrAESCBC), Attributes: []Attribute{KeyLengthAttr(128)}},
			{Type: TransformPRF, ID: uint16(PRFHMACSHA2256)},
			{Type: TransformINTEG, ID: uint16(IntegHMACSHA2256128)},
			{Type: TransformDH, ID: uint16(DHCurve25519)},
		}}}}, "00000030 0000002c 01010004 0300000c 0100000c 800e0080 03000008 02000005 03000008 0300000c 00000008 0400001f"},
		{&KE{Group: DHCurve25519, Data: []byte{1, 2, 3}}, "0000000b 001f0000 010203"},
		{&ID{IDType: IDFQDN, Data: []byte("gw")}, "0000000a 02000000 6777"},
		{&Auth{Method: AuthSharedKeyMIC, Data: []byte{0xaa}}, "00000009 02000000 aa"},
		{&Delete{Protocol: ProtoESP, SPIs: []uint32{0xc0ffee01}}, "0000000c 03040001 c0ffee01"},
		{&Delete{Protocol: ProtoIKE}, "00000008 01000000"},
		{tsV4, "00000018 01000000 07000010 0000ffff 0a140000 0a1400ff"},
		{&CP{CFGType: CFGRequest, Attributes: []CPAttribute{{Type: CPInternalIP4Address}}}, "0000000c 01000000 00010000"},
		{&Notify{Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, NotifyType: NotifyRekeySA}, "0000000c 03044009 01020304"},
		{&EAP{Code: EAPSuccess, Identifier: 7}, "00000008 03070004"},
		{&CertReq{Encoding: CertX509Signature}, "00000005 04"},
	} {
		got := encodeOne(t, c.p)
		if want := mustHex(t, c.want); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got % x\nwant % x", c.p.Type(), got, want)
			continue
		}
		ps, err := ParsePayloads(c.p.Type(), got)
		if err != nil {
			t.Errorf("%s: parse: %v", c.p.Type(), err)
			continue
		}
		if _, again, _ := EncodePayloads(ps); !bytes.Equal(again, got) {
			t.Errorf("%s: re-encode differs", c.p.Type())
		}
	}
}

// Property: every valid payload chain survives encode → decode → encode
// byte for byte, for every payload type.
func TestPayloadRoundTripProperty(t *testing.T) {
	seen := map[PayloadType]int{}
	for seed := uint64(0); seed < 3000; seed++ {
		g := newGen(seed)
		ps := g.chain()
		first, b, err := EncodePayloads(ps)
		if err != nil {
			t.Fatalf("seed %d: encode: %v", seed, err)
		}
		got, err := ParsePayloads(first, b)
		var crit *UnsupportedCriticalError
		if err != nil && !errors.As(err, &crit) {
			t.Fatalf("seed %d: parse: %v", seed, err)
		}
		if len(got) != len(ps) {
			t.Fatalf("seed %d: %d payloads back, want %d", seed, len(got), len(ps))
		}
		for i := range ps {
			if got[i].Type() != ps[i].Type() {
				t.Fatalf("seed %d: payload %d is %s, want %s", seed, i, got[i].Type(), ps[i].Type())
			}
			seen[ps[i].Type()]++
		}
		_, again, err := EncodePayloads(got)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("seed %d: re-encode differs (%v)", seed, err)
		}
	}
	for _, pt := range []PayloadType{PayloadSA, PayloadKE, PayloadIDi, PayloadIDr, PayloadCERT, PayloadCERTREQ,
		PayloadAUTH, PayloadNonce, PayloadNotify, PayloadDelete, PayloadVendor, PayloadTSi, PayloadTSr, PayloadCP, PayloadEAP, PayloadPS} {
		if seen[pt] == 0 {
			t.Errorf("property test never generated %s", pt)
		}
	}
}

func TestTransformKeyLength(t *testing.T) {
	tr := Transform{Type: TransformENCR, ID: uint16(EncrAESGCM16), Attributes: []Attribute{KeyLengthAttr(256)}}
	if n, ok := tr.KeyLength(); !ok || n != 256 {
		t.Fatalf("KeyLength = %d %v", n, ok)
	}
	if _, ok := (&Transform{}).KeyLength(); ok {
		t.Fatal("KeyLength without attribute")
	}
}

// A decoder must check every length (RFC 7296 §3) and say where it failed.
func TestStrictDecoding(t *testing.T) {
	for _, c := range []struct {
		name   string
		first  PayloadType
		chain  string
		reason string
		offset int
	}{
		{"generic header truncated", PayloadNonce, "0000", "generic payload header", 0},
		{"payload length < 4", PayloadVendor, "00000003", "shorter than the generic header", 0},
		{"payload length past end", PayloadVendor, "00000009 00", "runs past the end", 0},
		{"trailing garbage", PayloadVendor, "00000004 ff", "trailing data", 4},
		{"next payload missing", PayloadVendor, "2b000004", "generic payload header", 4},
		{"short nonce", PayloadNonce, "00000008 01020304", "outside 16..256", 4},
		{"KE without data", PayloadKE, "00000008 00130000", "without key exchange data", 8},
		{"proposal count lies", PayloadSA, "00000014 00000010 01010005 03000008 0100000c", "claims 5 transforms", 11},
		{"proposal more marker", PayloadSA, "00000014 02000010 01010001 00000008 0100000c", "8 octets, 0 left", 20},
		{"transform last marker", PayloadSA, "00000014 00000010 01010001 03000008 0100000c", "disagrees", 12},
		{"attribute past transform", PayloadSA, "00000018 00000014 01010001 0000000c 0100000c 000e0008", "runs past the transform", 22},
		{"SPI size too big", PayloadSA, "00000010 0000000c 01012001 00000000", "does not fit", 10},
		{"delete SPI count", PayloadDelete, "0000000c 03040002 00000001", "claims 2 SPIs", 6},
		{"IKE delete with SPI size", PayloadDelete, "00000008 01040000", "SPI size 0", 5},
		{"TS v4 bad length", PayloadTSi, "00000014 01000000 0700000c 0000ffff 0a000001", "must be 16", 10},
		{"TS count lies", PayloadTSi, "00000018 02000000 07000010 0000ffff 0a140000 0a1400ff", "selector 2 header", 24},
		{"TS count far too big", PayloadTSi, "00000018 09000000 07000010 0000ffff 0a140000 0a1400ff", "claims 9 selectors", 4},
		{"TS zero selectors", PayloadTSr, "00000008 00000000", "zero selectors", 4},
		{"CP attribute length", PayloadCP, "0000000c 02000000 00010004", "runs past", 10},
		{"CP IPv4 address size", PayloadCP, "0000000e 02000000 00010002 0a00", "INTERNAL_IP4_ADDRESS value of 2", 10},
		{"EAP length mismatch", PayloadEAP, "00000009 0201000a 01", "disagrees", 6},
		{"notify SPI size", PayloadNotify, "00000008 03044009", "runs past", 5},
		{"SK nested", PayloadSK, "00000004", "inside an encrypted payload", 0},
		{"PS empty", PayloadPS, "00000004", "not 4 keys", 4},
		{"PS not 4 keys", PayloadPS, "0000000a 010203040506", "not 4 keys", 4},
	} {
		_, err := ParsePayloads(c.first, mustHex(t, c.chain))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: err = %v, want ParseError", c.name, err)
			continue
		}
		if !strings.Contains(pe.Reason, c.reason) || pe.Offset != c.offset {
			t.Errorf("%s: got %q at %d, want %q at %d", c.name, pe.Reason, pe.Offset, c.reason, c.offset)
		}
	}
}

// RFC 8019 §8.2: the Puzzle Solution payload is four keys of equal size.
func TestRFC8019Section8_2PuzzleSolution(t *testing.T) {
	ps := &PuzzleSolution{Data: []byte{0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4}}
	first, b, err := EncodePayloads([]Payload{ps})
	if err != nil || first != PayloadPS {
		t.Fatalf("encode: %v (first %s)", err, first)
	}
	got, err := ParsePayloads(first, b)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := got[0].(*PuzzleSolution)
	if !ok || !bytes.Equal(g.Data, ps.Data) {
		t.Fatalf("decoded %#v", got[0])
	}
	if k := g.Keys(); !bytes.Equal(k[0], []byte{0, 0, 1}) || !bytes.Equal(k[3], []byte{0, 0, 4}) {
		t.Fatalf("keys %x", k)
	}
	if _, _, err := EncodePayloads([]Payload{&PuzzleSolution{Data: []byte{1, 2, 3}}}); err == nil {
		t.Fatal("a solution that is not 4 keys encoded")
	}
}

// RFC 7296 §2.5: unknown payloads are skipped unless critical; an unknown
// critical payload is reported with its type once the chain is checked.
func TestRFC7296Section2_5CriticalBit(t *testing.T) {
	h := Header{SPIi: 1, MajorVersion: 2, Exchange: IKESAInit, Flags: FlagInitiator}
	m := &Message{Header: h, Payloads: []Payload{
		&Unknown{PayloadType: 200, Body: []byte{1}},
		&Nonce{Data: make([]byte, 32)},
	}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseMessage(b)
	if err != nil {
		t.Fatalf("non-critical unknown payload: %v", err)
	}
	if u, ok := got.Payloads[0].(*Unknown); !ok || u.PayloadType != 200 || u.Critical {
		t.Fatalf("unknown payload decoded as %#v", got.Payloads[0])
	}

	m.Payloads[0] = &Unknown{PayloadType: 201, Critical: true}
	b, _ = m.Marshal()
	got, err = ParseMessage(b)
	var ce *UnsupportedCriticalError
	if !errors.As(err, &ce) || ce.Type != 201 || ce.Offset != HeaderLen {
		t.Fatalf("critical unknown: err = %v", err)
	}
	if got == nil || got.MessageID != 0 || len(got.Payloads) != 2 {
		t.Fatal("critical unknown: the decoded message must come back so the engine can answer")
	}

	// The critical bit on a known payload type changes nothing (§2.5).
	b[HeaderLen+5+4+1] |= criticalBit // Nonce's flags octet, after the 5-octet unknown payload
	if _, err := ParseMessage(b); !errors.As(err, &ce) {
		t.Fatalf("critical bit on a known type: %v", err)
	}
}

// SK must be the last payload (RFC 7296 §3.14).
func TestRFC7296Section3_14SKLast(t *testing.T) {
	h := Header{SPIi: 1, SPIr: 2, MajorVersion: 2, Exchange: Informational, NextPayload: PayloadSK}
	msg := h.AppendTo(nil)
	msg = append(msg, 0, 0, 0, 8, 1, 2, 3, 4)
	msg = append(msg, 0xde) // one octet after SK
	msg[27] = byte(len(msg))
	if _, err := ParseMessage(msg); err == nil || !strings.Contains(err.Error(), "not the last payload") {
		t.Fatalf("trailing octet after SK: %v", err)
	}
	msg = msg[:len(msg)-1]
	msg[27] = byte(len(msg))
	m, err := ParseMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	sk, ok := First[*Encrypted](m.Payloads)
	if !ok || sk.Offset != HeaderLen || !bytes.Equal(sk.Body, []byte{1, 2, 3, 4}) || sk.First != PayloadNone {
		t.Fatalf("SK decoded as %#v", m.Payloads)
	}
}

// RFC 7383 §2.5 SKF layout and §2.6.1 numbering checks.
func TestRFC7383SKF(t *testing.T) {
	h := Header{SPIi: 1, SPIr: 2, MajorVersion: 2, Exchange: IKEAuth, NextPayload: PayloadSKF}
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{"23 00 000c 0001 0002 aabbccdd", true},
		{"00 00 000c 0002 0002 aabbccdd", true},
		{"23 00 000c 0002 0002 aabbccdd", false}, // only fragment 1 names the first payload
		{"00 00 000c 0000 0002 aabbccdd", false},
		{"00 00 000c 0003 0002 aabbccdd", false},
		{"00 00 0006 0003", false},
	} {
		msg := append(h.AppendTo(nil), mustHex(t, c.body)...)
		msg[27] = byte(len(msg))
		m, err := ParseMessage(msg)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.body, err)
			continue
		}
		if c.ok {
			f := m.Payloads[0].(*EncryptedFragment)
			if f.Total != 2 || len(f.Body) != 4 {
				t.Errorf("%s: %#v", c.body, f)
			}
		}
	}
}

func TestMaxPayloads(t *testing.T) {
	ps := make([]Payload, MaxPayloads+1)
	for i := range ps {
		ps[i] = &VendorID{}
	}
	if _, _, err := EncodePayloads(ps); err == nil {
		t.Fatal("encoded more than MaxPayloads")
	}
	var b []byte
	for i := 0; i <= MaxPayloads; i++ {
		b = append(b, byte(PayloadVendor), 0, 0, 4)
	}
	b[len(b)-4] = 0
	if _, err := ParsePayloads(PayloadVendor, b); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("decoded a chain longer than MaxPayloads: %v", err)
	}
}

// RFC 4555 §4 notify data formats.
func TestRFC4555NotifyData(t *testing.T) {
	a4 := netip.MustParseAddr("192.0.2.7")
	a6 := netip.MustParseAddr("2001:db8::7")
	for _, a := range []netip.Addr{a4, a6} {
		n := AddrNotify(a)
		got, err := n.Addr()
		if err != nil || got != a {
			t.Errorf("AddrNotify(%v) → %v %v", a, got, err)
		}
	}
	if _, err := (&Notify{NotifyType: NotifyAdditionalIP4Address, Data: make([]byte, 16)}).Addr(); err == nil {
		t.Error("IPv4 notify with 16 octets accepted")
	}
	v := NoNATsAllowed{Src: netip.MustParseAddrPort("192.0.2.1:4500"), Dst: netip.MustParseAddrPort("198.51.100.2:4500")}
	d, err := v.Marshal()
	if err != nil || len(d) != 12 {
		t.Fatalf("NO_NATS_ALLOWED IPv4: %d octets, %v", len(d), err)
	}
	back, err := (&Notify{NotifyType: NotifyNoNATsAllowed, Data: d}).NoNATs()
	if err != nil || back != v {
		t.Fatalf("NO_NATS_ALLOWED round trip: %+v %v", back, err)
	}
	v6 := NoNATsAllowed{Src: netip.MustParseAddrPort("[2001:db8::1]:500"), Dst: netip.MustParseAddrPort("[2001:db8::2]:4500")}
	if d, _ := v6.Marshal(); len(d) != 36 {
		t.Fatalf("NO_NATS_ALLOWED IPv6: %d octets", len(d))
	}
	if _, err := (NoNATsAllowed{Src: v.Src, Dst: v6.Dst}).Marshal(); err == nil {
		t.Fatal("mixed families accepted")
	}
	if g, err := (&Notify{Data: []byte{0, 19}}).Uint16(); err != nil || g != 19 {
		t.Fatalf("INVALID_KE_PAYLOAD group: %d %v", g, err)
	}
	hs, err := (&Notify{NotifyType: NotifySignatureHashAlgorithms, Data: []byte{0, 2, 0, 4}}).Hashes()
	if err != nil || len(hs) != 2 || hs[1] != HashSHA2512 {
		t.Fatalf("hashes: %v %v", hs, err)
	}
}

func TestRFC7296CPAttributes(t *testing.T) {
	p := netip.MustParsePrefix("2001:db8::5/64")
	a := CPPrefix6(CPInternalIP6Address, p)
	if got, ok := a.Prefix6(); !ok || got != p {
		t.Fatalf("Prefix6 = %v %v", got, ok)
	}
	v4 := CPAddr(CPInternalIP4Address, netip.MustParseAddr("10.99.0.1"))
	if got, ok := v4.Addr(); !ok || got.String() != "10.99.0.1" || len(v4.Value) != 4 {
		t.Fatalf("Addr = %v %v", got, ok)
	}
}

func TestPrefixSelector(t *testing.T) {
	s := PrefixSelector(netip.MustParsePrefix("2001:db8:1::/48"), 6)
	if s.TSType != TSIPv6AddrRange || s.End.String() != "2001:db8:1:ffff:ffff:ffff:ffff:ffff" || s.IPProtocol != 6 {
		t.Fatalf("%+v", s)
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{NotifyMOBIKESupported.String(), "MOBIKE_SUPPORTED"},
		{NotifyType(16401).String(), "COOKIE2"},
		{NotifyType(40).String(), "UNACCEPTABLE_ADDRESSES"},
		{NotifyType(60000).String(), "NOTIFY(60000)"},
		{CreateChildSA.String(), "CREATE_CHILD_SA"},
		{PayloadSKF.String(), "SKF"},
		{DHCurve25519.String(), "CURVE25519"},
		{(FlagInitiator | FlagResponse).String(), "IR"},
	} {
		if c.got != c.want {
			t.Errorf("got %q want %q", c.got, c.want)
		}
	}
	if !NotifyTemporaryFailure.IsError() || NotifyCloneIKESA.IsError() {
		t.Error("IsError")
	}
}

// The same rule inside an SK payload's plaintext (RFC 7296 §2.5).
func TestParsePayloadsReportsCritical(t *testing.T) {
	first, b, err := EncodePayloads([]Payload{&Nonce{Data: make([]byte, 16)}, &Unknown{PayloadType: 222, Critical: true}})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ParsePayloads(first, b)
	var ce *UnsupportedCriticalError
	if !errors.As(err, &ce) || ce.Type != 222 || len(ps) != 2 {
		t.Fatalf("err %v, %d payloads", err, len(ps))
	}
}

// A receiver drops what fails these checks silently (RFC 7296 §2.21),
// so they report what is wrong as values and allocate nothing: a flood
// of garbage must not cost memory (issue 13).
func TestHeaderAndFramingChecksAllocateNothing(t *testing.T) {
	h := Header{SPIi: 1, SPIr: 2, MajorVersion: 2, Exchange: Informational, NextPayload: PayloadSK}
	withLen := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[24:], uint32(len(b)))
		return b
	}
	sk := withLen(append(h.AppendTo(nil), 0, 0, 0, 8, 1, 2, 3, 4))
	h.NextPayload = PayloadVendor
	vendorThenSK := withLen(append(h.AppendTo(nil), byte(PayloadSK), 0, 0, 5, 9, 0, 0, 0, 8, 1, 2, 3, 4))
	h.NextPayload = PayloadNone
	empty := withLen(h.AppendTo(nil))
	for _, c := range []struct {
		name string
		b    []byte
		hc   HeaderCheck
		off  int
		sk   PayloadType
		ok   bool
	}{
		{"SK only", sk, HeaderOK, HeaderLen, PayloadSK, true},
		{"vendor ID then SK", vendorThenSK, HeaderOK, HeaderLen + 5, PayloadSK, true},
		{"no payloads", empty, HeaderOK, 0, PayloadNone, true},
		{"short", sk[:27], HeaderShort, 0, PayloadNone, false},
		{"IKEv1", func() []byte { b := bytes.Clone(sk); b[17] = 0x10; return b }(), HeaderVersion, HeaderLen, PayloadSK, true},
		{"length", append(bytes.Clone(sk), 0), HeaderLength, HeaderLen, PayloadSK, false},
		{"zero SPIi", func() []byte { b := bytes.Clone(sk); copy(b, make([]byte, 8)); return b }(), HeaderZeroSPI, HeaderLen, PayloadSK, true},
		{"SK not last", withLen(append(bytes.Clone(sk), 0xde)), HeaderOK, HeaderLen, PayloadSK, false},
		{"payload length past the end", func() []byte { b := bytes.Clone(sk); b[31] = 9; return b }(), HeaderOK, 0, PayloadNone, false},
		{"payload length below 4", func() []byte { b := bytes.Clone(sk); b[31] = 3; return b }(), HeaderOK, 0, PayloadNone, false},
		{"trailing octets", withLen(append(bytes.Clone(empty), 0)), HeaderOK, 0, PayloadNone, false},
	} {
		var (
			hc  HeaderCheck
			off int
			typ PayloadType
			ok  bool
		)
		if n := testing.AllocsPerRun(10, func() { _, hc = DecodeHeader(c.b); off, typ, ok = ScanPayloads(c.b) }); n != 0 {
			t.Errorf("%s: %.0f allocations", c.name, n)
		}
		if hc != c.hc || off != c.off || typ != c.sk || ok != c.ok {
			t.Errorf("%s: DecodeHeader %d, ScanPayloads %d %v %v; want %d, %d %v %v", c.name, hc, off, typ, ok, c.hc, c.off, c.sk, c.ok)
		}
	}
}
