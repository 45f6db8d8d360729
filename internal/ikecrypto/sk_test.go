package ikecrypto

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// TestRFC7634AppendixB reproduces the whole protected IKEv2 message of
// RFC 7634 Appendix B and opens it again.
func TestRFC7634AppendixB(t *testing.T) {
	v := rfc7634AppB
	s, err := NewSuite(wire.EncrChaCha20Poly1305, 0, wire.PRFHMACSHA2256, wire.IntegNone, wire.DHCurve25519)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.NewSKCipher(unhex(t, v.keymat), nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr := wire.Header{SPIi: v.spii, SPIr: v.spir, MajorVersion: 2, Exchange: wire.Informational, MessageID: v.messageID}
	notify := unhex(t, v.notify)
	msg, err := c.Protect(hdr, wire.PayloadNotify, notify, bytes.NewReader(unhex(t, v.iv)))
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, v.message)
	if !bytes.Equal(msg, want) {
		t.Fatalf("message:\n got %x\nwant %x", msg, want)
	}
	// The pieces the appendix prints separately.
	aad := unhex(t, v.aad)
	if !bytes.Equal(msg[:len(aad)], aad) || !bytes.HasSuffix(msg, unhex(t, v.tag)) ||
		!bytes.Contains(msg, unhex(t, v.ciphertext)) {
		t.Error("AAD, ciphertext or tag not where the appendix has them")
	}
	if c.Overhead(len(notify))+len(notify)+wire.HeaderLen != len(want) {
		t.Errorf("Overhead(%d) = %d", len(notify), c.Overhead(len(notify)))
	}
	got, err := c.Unprotect(msg, wire.HeaderLen)
	if err != nil || !bytes.Equal(got, notify) {
		t.Errorf("Unprotect = %x, %v; want %x", got, err, notify)
	}
}

// TestGCMSpecVectors checks AES-GCM through NewAEAD with the IPsec keying
// layout (key | salt, nonce = salt | IV) on the McGrew-Viega vectors.
func TestGCMSpecVectors(t *testing.T) {
	for _, tc := range gcmSpecCases {
		a, err := LookupEncr(tc.id, tc.keyBits)
		if err != nil {
			t.Fatal(err)
		}
		aead, salt, err := a.NewAEAD(unhex(t, tc.keymat))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		nonce := append(bytes.Clone(salt), unhex(t, tc.iv)...)
		plain, aad, want := unhex(t, tc.plain), unhex(t, tc.aad), unhex(t, tc.cipherAndTag)
		if len(want)-len(plain) != a.ICVLen {
			t.Fatalf("%s: vector tag is %d octets, ICVLen %d", tc.name, len(want)-len(plain), a.ICVLen)
		}
		if got := aead.Seal(nil, nonce, plain, aad); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", tc.name, got, want)
		}
		if got, err := aead.Open(nil, nonce, want, aad); err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: Open = %v", tc.name, err)
		}
	}
}

func TestLookupEncr(t *testing.T) {
	for _, tc := range []struct {
		id                                       wire.EncrID
		keyBits                                  int
		keyLen, saltLen, ivLen, blockLen, icvLen int
	}{
		{wire.EncrAESCBC, 128, 16, 0, 16, 16, 0},
		{wire.EncrAESCBC, 192, 24, 0, 16, 16, 0},
		{wire.EncrAESCBC, 256, 32, 0, 16, 16, 0},
		{wire.EncrAESGCM16, 128, 20, 4, 8, 1, 16},
		{wire.EncrAESGCM16, 192, 28, 4, 8, 1, 16},
		{wire.EncrAESGCM16, 256, 36, 4, 8, 1, 16},
		{wire.EncrAESGCM12, 256, 36, 4, 8, 1, 12},
		{wire.EncrChaCha20Poly1305, 0, 36, 4, 8, 1, 16},
		{wire.EncrChaCha20Poly1305, 256, 36, 4, 8, 1, 16},
	} {
		a, err := LookupEncr(tc.id, tc.keyBits)
		if err != nil {
			t.Fatal(err)
		}
		if a.KeyLen != tc.keyLen || a.SaltLen != tc.saltLen || a.IVLen != tc.ivLen || a.BlockLen != tc.blockLen ||
			a.ICVLen != tc.icvLen || a.AEAD != (tc.saltLen > 0) {
			t.Errorf("LookupEncr(%v, %d) = %+v", tc.id, tc.keyBits, a)
		}
	}
	for _, tc := range []struct {
		id      wire.EncrID
		keyBits int
	}{
		{wire.EncrAESCBC, 0}, {wire.EncrAESCBC, 64}, {wire.EncrAESGCM16, 0}, {wire.EncrAESGCM16, 512},
		{wire.EncrChaCha20Poly1305, 128}, {wire.EncrAESGCM8, 128}, {wire.Encr3DES, 0}, {wire.EncrAESCCM16, 128}, {wire.EncrNULL, 0},
	} {
		if _, err := LookupEncr(tc.id, tc.keyBits); err == nil || !strings.Contains(err.Error(), tc.id.String()) {
			t.Errorf("LookupEncr(%v, %d) error = %v", tc.id, tc.keyBits, err)
		}
	}
}

func TestEncrAlgMisuse(t *testing.T) {
	cbc, _ := LookupEncr(wire.EncrAESCBC, 128)
	gcm, _ := LookupEncr(wire.EncrAESGCM16, 128)
	if _, _, err := cbc.NewAEAD(make([]byte, 16)); err == nil {
		t.Error("NewAEAD on CBC succeeded")
	}
	if _, err := gcm.NewBlock(make([]byte, 16)); err == nil {
		t.Error("NewBlock on GCM succeeded")
	}
	if _, _, err := gcm.NewAEAD(make([]byte, 16)); err == nil {
		t.Error("NewAEAD without salt succeeded")
	}
	if _, err := cbc.NewBlock(make([]byte, 32)); err == nil {
		t.Error("NewBlock with a 32-octet key for AES-128 succeeded")
	}
}

func TestNewSuite(t *testing.T) {
	ok := []struct {
		encr  wire.EncrID
		bits  int
		integ wire.IntegID
	}{
		{wire.EncrAESCBC, 128, wire.IntegHMACSHA2256128},
		{wire.EncrAESGCM16, 256, wire.IntegNone},
		{wire.EncrChaCha20Poly1305, 0, wire.IntegNone},
	}
	for _, tc := range ok {
		if _, err := NewSuite(tc.encr, tc.bits, wire.PRFHMACSHA2256, tc.integ, wire.DHMODP2048); err != nil {
			t.Errorf("NewSuite(%v, %d, %v): %v", tc.encr, tc.bits, tc.integ, err)
		}
	}
	for name, f := range map[string]func() (*Suite, error){
		"AEAD with integ": func() (*Suite, error) {
			return NewSuite(wire.EncrAESGCM16, 128, wire.PRFHMACSHA2256, wire.IntegHMACSHA2256128, wire.DHECP256)
		},
		"CBC without integ": func() (*Suite, error) {
			return NewSuite(wire.EncrAESCBC, 128, wire.PRFHMACSHA2256, wire.IntegNone, wire.DHECP256)
		},
		"CBC without key length": func() (*Suite, error) {
			return NewSuite(wire.EncrAESCBC, 0, wire.PRFHMACSHA2256, wire.IntegHMACSHA2256128, wire.DHECP256)
		},
		"MD5 PRF": func() (*Suite, error) {
			return NewSuite(wire.EncrAESCBC, 128, wire.PRFHMACMD5, wire.IntegHMACSHA2256128, wire.DHECP256)
		},
		"MD5 integ": func() (*Suite, error) {
			return NewSuite(wire.EncrAESCBC, 128, wire.PRFHMACSHA2256, wire.IntegHMACMD596, wire.DHECP256)
		},
		"no DH": func() (*Suite, error) {
			return NewSuite(wire.EncrAESCBC, 128, wire.PRFHMACSHA2256, wire.IntegHMACSHA2256128, wire.DHNone)
		},
	} {
		if _, err := f(); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestNewSKCipherKeyLengths(t *testing.T) {
	cbc := suiteSpec{encr: wire.EncrAESCBC, keyBits: 128, integ: wire.IntegHMACSHA2256128}.suite(t)
	gcm := suiteSpec{encr: wire.EncrAESGCM16, keyBits: 128}.suite(t)
	for name, err := range map[string]error{
		"CBC short integ key": second(cbc.NewSKCipher(make([]byte, 16), make([]byte, 31))),
		"CBC long enc key":    second(cbc.NewSKCipher(make([]byte, 17), make([]byte, 32))),
		"GCM with integ key":  second(gcm.NewSKCipher(make([]byte, 20), make([]byte, 32))),
		"GCM without salt":    second(gcm.NewSKCipher(make([]byte, 16), nil)),
	} {
		if err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestSKRoundTrip protects and opens inner payloads of several lengths,
// including none, with every suite, and checks the framing.
func TestSKRoundTrip(t *testing.T) {
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			c := s.cipher(t, 1)
			rnd := seeded(2)
			for _, n := range []int{0, 1, 14, 15, 16, 17, 100, 1000} {
				inner := make([]byte, n)
				rnd.Read(inner)
				msg, err := c.Protect(testHeader(), wire.PayloadNotify, inner, rnd)
				if err != nil {
					t.Fatal(err)
				}
				if len(msg) != wire.HeaderLen+n+c.Overhead(n) {
					t.Errorf("len %d: message %d octets, Overhead says %d", n, len(msg), wire.HeaderLen+n+c.Overhead(n))
				}
				h, err := wire.ParseHeader(msg)
				if err != nil || h.NextPayload != wire.PayloadSK || h.MessageID != 7 {
					t.Fatalf("header %+v, %v", h, err)
				}
				if msg[28] != byte(wire.PayloadNotify) || msg[29] != 0 || int(binary.BigEndian.Uint16(msg[30:])) != len(msg)-28 {
					t.Errorf("SK generic header %x", msg[28:32])
				}
				ct := len(msg) - 32 - c.encr.IVLen - c.icvLen()
				if c.encr.AEAD && ct != n+1 {
					t.Errorf("AEAD: %d-octet plaintext for %d octets of payloads; want no padding", ct, n)
				}
				if !c.encr.AEAD && (ct%16 != 0 || ct-(n+1) >= 16) {
					t.Errorf("CBC: %d-octet ciphertext for %d octets is not minimally padded", ct, n)
				}
				got, err := c.Unprotect(msg, wire.HeaderLen)
				if err != nil || !bytes.Equal(got, inner) {
					t.Fatalf("len %d: Unprotect = %x, %v", n, got, err)
				}
			}
		})
	}
}

// TestSKIVFromReader: the IV is the next IVLen octets of rand, and a
// failing reader is an error.
func TestSKIVFromReader(t *testing.T) {
	for _, s := range allSuites {
		c := s.cipher(t, 1)
		iv := bytes.Repeat([]byte{0xa5}, c.encr.IVLen)
		msg, err := c.Protect(testHeader(), wire.PayloadNotify, []byte("x"), bytes.NewReader(iv))
		if err != nil || !bytes.Equal(msg[32:32+len(iv)], iv) {
			t.Errorf("%s: IV %x, %v", s.name, msg[32:32+len(iv)], err)
		}
		if _, err := c.Protect(testHeader(), wire.PayloadNotify, []byte("x"), bytes.NewReader(iv[1:])); err == nil {
			t.Errorf("%s: short IV source accepted", s.name)
		}
	}
}

// TestSKTamper flips every bit of a protected message: each must fail,
// and everything but the two length fields must fail the ICV/tag check.
func TestSKTamper(t *testing.T) {
	for _, s := range allSuites {
		c := s.cipher(t, 1)
		msg, err := c.Protect(testHeader(), wire.PayloadNotify, []byte("some inner payloads"), seeded(3))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 8 * len(msg) {
			bad := bytes.Clone(msg)
			bad[i/8] ^= 1 << (i % 8)
			_, err := c.Unprotect(bad, wire.HeaderLen)
			lengthField := (i/8 >= 24 && i/8 < 28) || i/8 == 30 || i/8 == 31
			if err == nil || (!lengthField && !errors.Is(err, ErrIntegrity)) {
				t.Fatalf("%s: bit %d flipped: %v", s.name, i, err)
			}
		}
		other := s.cipher(t, 99)
		if _, err := other.Unprotect(msg, wire.HeaderLen); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: wrong key: %v", s.name, err)
		}
	}
}

// sealRaw builds an SK message around an arbitrary plaintext (Padding and
// Pad Length included), valid ICV, to reach the checks after the ICV.
func sealRaw(t *testing.T, c *SKCipher, pt []byte) []byte {
	t.Helper()
	hdr := testHeader()
	ivLen, icvLen := c.encr.IVLen, c.icvLen()
	total := 32 + ivLen + len(pt) + icvLen
	hdr.NextPayload, hdr.Length = wire.PayloadSK, uint32(total)
	msg := hdr.AppendTo(nil)
	msg = append(msg, byte(wire.PayloadNotify), 0, byte((total-28)>>8), byte(total-28))
	iv := bytes.Repeat([]byte{7}, ivLen)
	msg = append(msg, iv...)
	k, err := c.cipher()
	if err != nil {
		t.Fatal(err)
	}
	if k.aead != nil {
		n := k.nonce(iv)
		return k.aead.Seal(msg, n[:], pt, msg[:32])
	}
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(k.block, iv).CryptBlocks(ct, pt)
	msg = append(msg, ct...)
	m := c.integ.New(c.integKey)
	m.Write(msg)
	return append(msg, m.Sum(nil)[:icvLen]...)
}

// TestSKPadding: a Pad Length reaching past the plaintext is an error;
// more padding than needed is accepted (RFC 7296 §3.14: any length that
// aligns; RFC 5282 §3 and RFC 7634 §3: up to 255 octets).
func TestSKPadding(t *testing.T) {
	cbc := suiteSpec{encr: wire.EncrAESCBC, keyBits: 128, integ: wire.IntegHMACSHA2256128}.cipher(t, 1)
	gcm := suiteSpec{encr: wire.EncrAESGCM16, keyBits: 128}.cipher(t, 1)
	for name, tc := range map[string]struct {
		c    *SKCipher
		pt   []byte
		want []byte // nil: must fail
	}{
		"CBC pad 255 in one block":  {cbc, append(make([]byte, 15), 255), nil},
		"CBC pad 16 in one block":   {cbc, append(make([]byte, 15), 16), nil},
		"CBC pad 15 in one block":   {cbc, append(make([]byte, 15), 15), []byte{}},
		"CBC extra padding":         {cbc, append(append([]byte("0123456789"), make([]byte, 21)...), 21), []byte("0123456789")},
		"GCM pad past start":        {gcm, []byte{1, 2, 3}, nil},
		"GCM 255 octets of padding": {gcm, append(append([]byte("abc"), make([]byte, 255)...), 255), []byte("abc")},
	} {
		got, err := tc.c.Unprotect(sealRaw(t, tc.c, tc.pt), wire.HeaderLen)
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("%s: accepted, returned %x", name, got)
		case tc.want == nil && errors.Is(err, ErrIntegrity):
			t.Errorf("%s: failed the ICV instead of the padding check: %v", name, err)
		case tc.want != nil && (err != nil || !bytes.Equal(got, tc.want)):
			t.Errorf("%s: got %q, %v", name, got, err)
		}
	}
}

// TestSKTruncated: every shorter message fails, both as cut and with its
// length fields patched to match the cut so the body checks are reached.
func TestSKTruncated(t *testing.T) {
	for _, s := range allSuites {
		c := s.cipher(t, 1)
		msg, _ := c.Protect(testHeader(), wire.PayloadNotify, []byte("0123456789abcdefghij"), seeded(4))
		for n := range len(msg) {
			cut := bytes.Clone(msg[:n])
			if _, err := c.Unprotect(cut, wire.HeaderLen); err == nil {
				t.Fatalf("%s: cut to %d accepted", s.name, n)
			}
			if n < 32 {
				continue
			}
			binary.BigEndian.PutUint32(cut[24:], uint32(n))
			binary.BigEndian.PutUint16(cut[30:], uint16(n-28))
			if _, err := c.Unprotect(cut, wire.HeaderLen); err == nil {
				t.Fatalf("%s: cut to %d with patched lengths accepted", s.name, n)
			}
		}
	}
}

func TestSKBadOffset(t *testing.T) {
	c := allSuites[0].cipher(t, 1)
	msg, _ := c.Protect(testHeader(), wire.PayloadNotify, []byte("x"), seeded(1))
	for _, off := range []int{-1 << 62, -1, 0, 27, 29, len(msg) - 3, len(msg), len(msg) + 1, 1 << 62} {
		if _, err := c.Unprotect(msg, off); err == nil {
			t.Errorf("offset %d accepted", off)
		}
		if _, err := c.UnprotectFragment(msg, off); err == nil {
			t.Errorf("fragment offset %d accepted", off)
		}
	}
}

// TestSKFragments splits a large inner chain (RFC 7383 §2.5), checks each
// datagram's size and framing, and reassembles it.
func TestSKFragments(t *testing.T) {
	inner := make([]byte, 3000)
	seeded(5).Read(inner)
	for _, s := range allSuites {
		c := s.cipher(t, 1)
		for _, maxLen := range []int{100, 576, 1280, 5000} {
			frags, err := c.ProtectFragments(testHeader(), wire.PayloadIDi, inner, maxLen, seeded(6))
			if err != nil {
				t.Fatalf("%s/%d: %v", s.name, maxLen, err)
			}
			var joined []byte
			for i, f := range frags {
				if len(f) > maxLen {
					t.Errorf("%s/%d: fragment %d is %d octets", s.name, maxLen, i+1, len(f))
				}
				h, err := wire.ParseHeader(f)
				if err != nil || h.NextPayload != wire.PayloadSKF || h.MessageID != 7 {
					t.Fatalf("%s: fragment header %+v, %v", s.name, h, err)
				}
				next := wire.PayloadType(f[28])
				if (i == 0 && next != wire.PayloadIDi) || (i > 0 && next != wire.PayloadNone) {
					t.Errorf("%s: fragment %d Next Payload %v", s.name, i+1, next)
				}
				if num, total := binary.BigEndian.Uint16(f[32:]), binary.BigEndian.Uint16(f[34:]); int(num) != i+1 || int(total) != len(frags) {
					t.Errorf("%s: fragment %d numbered %d/%d", s.name, i+1, num, total)
				}
				chunk, err := c.UnprotectFragment(f, wire.HeaderLen)
				if err != nil {
					t.Fatalf("%s: fragment %d: %v", s.name, i+1, err)
				}
				joined = append(joined, chunk...)
			}
			if !bytes.Equal(joined, inner) {
				t.Errorf("%s/%d: reassembly differs", s.name, maxLen)
			}
			if maxLen == 5000 && len(frags) != 1 {
				t.Errorf("%s: %d fragments where one fits", s.name, len(frags))
			}
		}
	}
}

func TestSKFragmentsEdges(t *testing.T) {
	c := suiteSpec{encr: wire.EncrAESGCM16, keyBits: 128}.cipher(t, 1)
	frags, err := c.ProtectFragments(testHeader(), wire.PayloadNotify, nil, 576, seeded(1))
	if err != nil || len(frags) != 1 {
		t.Fatalf("empty inner: %d fragments, %v", len(frags), err)
	}
	if got, err := c.UnprotectFragment(frags[0], wire.HeaderLen); err != nil || len(got) != 0 {
		t.Errorf("empty fragment: %x, %v", got, err)
	}
	// 28 header + 8 SKF header + 8 IV + 16 ICV + 1 Pad Length = 61: no room.
	if _, err := c.ProtectFragments(testHeader(), wire.PayloadNotify, []byte("x"), 61, seeded(1)); err == nil {
		t.Error("maxLen 61 accepted")
	}
	if frags, err := c.ProtectFragments(testHeader(), wire.PayloadNotify, []byte("xy"), 62, seeded(1)); err != nil || len(frags) != 2 {
		t.Errorf("maxLen 62: %d fragments, %v", len(frags), err)
	}
	cbc := allSuites[0].cipher(t, 1)
	// 28 + 8 + 16 IV + 12 ICV = 64, then one whole block is the minimum.
	if _, err := cbc.ProtectFragments(testHeader(), wire.PayloadNotify, []byte("x"), 64+15, seeded(1)); err == nil {
		t.Error("CBC: maxLen without a whole block accepted")
	}
	if _, err := cbc.ProtectFragments(testHeader(), wire.PayloadNotify, []byte("x"), 64+16, seeded(1)); err != nil {
		t.Errorf("CBC: one-block fragments: %v", err)
	}
	// Fragment numbers are authenticated, and invalid ones refused first.
	frags, _ = c.ProtectFragments(testHeader(), wire.PayloadNotify, make([]byte, 100), 100, seeded(1))
	for name, patch := range map[string][2]uint16{"zero number": {0, 3}, "zero total": {1, 0}, "number > total": {4, 3}, "renumbered": {2, 3}} {
		bad := bytes.Clone(frags[0])
		binary.BigEndian.PutUint16(bad[32:], patch[0])
		binary.BigEndian.PutUint16(bad[34:], patch[1])
		if _, err := c.UnprotectFragment(bad, wire.HeaderLen); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// SK and SKF framing are not interchangeable.
	if _, err := c.Unprotect(frags[0], wire.HeaderLen); err == nil {
		t.Error("SKF message opened as SK")
	}
}

// A receiver verifies into one scratch buffer: a forged or corrupted
// message is dropped (RFC 7296 §2.21) without allocating, and an
// authentic one decrypts to what Unprotect gives (issue 13).
func TestUnprotectToAllocatesNothingForForgeries(t *testing.T) {
	inner := bytes.Repeat([]byte{0x5a}, 200)
	for _, s := range benchSuites {
		c := s.cipher(t, 1)
		msg, err := c.Protect(testHeader(), wire.PayloadNotify, inner, seeded(2))
		if err != nil {
			t.Fatal(err)
		}
		forged := bytes.Clone(msg)
		forged[len(forged)-1] ^= 1
		badFraming := bytes.Clone(msg)
		badFraming[wire.HeaderLen+3]++ // SK Payload Length no longer reaches the end
		scratch := make([]byte, 0, len(msg))
		for _, f := range []struct {
			name string
			msg  []byte
			want error
		}{{"forged", forged, ErrIntegrity}, {"framing", badFraming, ErrFraming}} {
			var err error
			if n := testing.AllocsPerRun(20, func() { _, err = c.UnprotectTo(scratch, f.msg, wire.HeaderLen) }); n != 0 {
				t.Errorf("%s %s: %.0f allocations", s.name, f.name, n)
			}
			if err != f.want {
				t.Errorf("%s %s: %v, want %v", s.name, f.name, err, f.want)
			}
		}
		got, err := c.UnprotectTo(scratch, msg, wire.HeaderLen)
		if err != nil || !bytes.Equal(got, inner) {
			t.Errorf("%s: UnprotectTo = %x, %v", s.name, got, err)
		}
		if &got[:1][0] != &scratch[:1][0] {
			t.Errorf("%s: UnprotectTo did not use the scratch buffer", s.name)
		}
	}
}

// An authentic message or fragment opened into a large enough scratch
// buffer allocates nothing either: the CBC decrypter is kept and given
// each message's IV, and several messages in a row (other IVs) still
// decrypt right. A reassembler that drops an authentic fragment for a
// limit (RFC 7383 §5) thus pays nothing for it.
func TestUnprotectToAllocatesNothingWhenAuthentic(t *testing.T) {
	for _, s := range allSuites {
		c := s.cipher(t, 1)
		scratch := make([]byte, 0, 4096)
		for i := range 3 {
			inner := bytes.Repeat([]byte{byte(i)}, 300+i)
			msg, _ := c.Protect(testHeader(), wire.PayloadNotify, inner, seeded(uint64(10+i)))
			frags, _ := c.ProtectFragments(testHeader(), wire.PayloadNotify, inner, 200, seeded(uint64(20+i)))
			var got []byte
			var err error
			if n := testing.AllocsPerRun(20, func() { got, err = c.UnprotectTo(scratch, msg, wire.HeaderLen) }); n != 0 {
				t.Errorf("%s: authentic SK: %.0f allocations", s.name, n)
			}
			if err != nil || !bytes.Equal(got, inner) {
				t.Fatalf("%s: message %d: %v", s.name, i, err)
			}
			var joined []byte
			for _, f := range frags {
				if n := testing.AllocsPerRun(20, func() { got, err = c.UnprotectFragmentTo(scratch, f, wire.HeaderLen) }); n != 0 {
					t.Errorf("%s: authentic SKF: %.0f allocations", s.name, n)
				}
				if err != nil {
					t.Fatalf("%s: fragment: %v", s.name, err)
				}
				joined = append(joined, got...)
			}
			if !bytes.Equal(joined, inner) {
				t.Fatalf("%s: fragments of message %d decrypt wrong", s.name, i)
			}
		}
	}
}

// TestSKIdle: an idle cipher (keys kept, primitive dropped) protects and
// opens as before, for messages made on either side of Idle, and a forged
// message still fails after it.
func TestSKIdle(t *testing.T) {
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			c := s.cipher(t, 1)
			rnd := seeded(2)
			inner := bytes.Repeat([]byte{0x5a}, 40)
			before, err := c.Protect(testHeader(), wire.PayloadNotify, inner, rnd)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := c.Unprotect(before, wire.HeaderLen); err != nil || !bytes.Equal(got, inner) {
				t.Fatalf("before Idle: %x, %v", got, err)
			}
			c.Idle()
			if got, err := c.Unprotect(before, wire.HeaderLen); err != nil || !bytes.Equal(got, inner) {
				t.Fatalf("made before Idle, opened after: %x, %v", got, err)
			}
			c.Idle()
			after, err := c.Protect(testHeader(), wire.PayloadNotify, inner, rnd)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.cipher(t, 1).Unprotect(after, wire.HeaderLen); err != nil || !bytes.Equal(got, inner) {
				t.Fatalf("made after Idle, opened by a fresh cipher: %x, %v", got, err)
			}
			after[len(after)-1] ^= 1
			c.Idle()
			if _, err := c.Unprotect(after, wire.HeaderLen); err != ErrIntegrity {
				t.Fatalf("forged after Idle: %v, want ErrIntegrity", err)
			}
		})
	}
}
