package ikecrypto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

var allGroups = []wire.DHGroup{
	wire.DHMODP2048, wire.DHMODP3072, wire.DHMODP4096,
	wire.DHECP256, wire.DHECP384, wire.DHECP521, wire.DHCurve25519,
}

// TestRFC5903 builds each side of RFC 5903 §8.1-§8.3 from its private key
// and checks the KE payload data (x | y, §7) and the shared secret (x).
func TestRFC5903(t *testing.T) {
	for _, tc := range rfc5903Cases {
		t.Run(tc.section, func(t *testing.T) {
			kei, ker := unhex(t, tc.kei), unhex(t, tc.ker)
			for _, ke := range [][]byte{kei, ker} {
				// KE payload: length, group number, RESERVED, data (RFC 7296 §3.4).
				if int(binary.BigEndian.Uint16(ke[2:])) != len(ke) || wire.DHGroup(binary.BigEndian.Uint16(ke[4:])) != tc.group {
					t.Fatalf("vector KE payload header %x does not match", ke[:8])
				}
				if n, _ := PublicLen(tc.group); n != len(ke)-8 {
					t.Fatalf("PublicLen(%v) = %d, vector has %d", tc.group, n, len(ke)-8)
				}
			}
			di, err := newDHFromPrivate(tc.group, unhex(t, tc.i))
			if err != nil {
				t.Fatal(err)
			}
			dr, err := newDHFromPrivate(tc.group, unhex(t, tc.r))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(di.Public(), kei[8:]) {
				t.Errorf("initiator Public = %x\nwant %x", di.Public(), kei[8:])
			}
			if !bytes.Equal(dr.Public(), ker[8:]) {
				t.Errorf("responder Public = %x\nwant %x", dr.Public(), ker[8:])
			}
			want := unhex(t, tc.girx)
			for _, side := range []struct {
				d    *DH
				peer []byte
			}{{di, ker[8:]}, {dr, kei[8:]}} {
				got, err := side.d.Shared(side.peer)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("Shared = %x, %v\nwant %x", got, err, want)
				}
			}
		})
	}
}

// TestRFC7748X25519 is RFC 7748 §6.1.
func TestRFC7748X25519(t *testing.T) {
	v := rfc7748X25519
	alice, err := newDHFromPrivate(wire.DHCurve25519, unhex(t, v.alicePriv))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := newDHFromPrivate(wire.DHCurve25519, unhex(t, v.bobPriv))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(alice.Public(), unhex(t, v.alicePub)) || !bytes.Equal(bob.Public(), unhex(t, v.bobPub)) {
		t.Errorf("public keys %x, %x", alice.Public(), bob.Public())
	}
	for _, got := range [][]byte{mustShared(t, alice, bob.Public()), mustShared(t, bob, alice.Public())} {
		if !bytes.Equal(got, unhex(t, v.shared)) {
			t.Errorf("shared = %x, want %s", got, v.shared)
		}
	}
}

// TestRFC8031AppendixA feeds RFC 8031 Appendix A's random octets to NewDH
// (clamping happens in X25519) and checks KE data and shared secret. It
// also checks §3.2: the top bit of the peer value is masked.
func TestRFC8031AppendixA(t *testing.T) {
	v := rfc8031Example
	di, err := NewDH(wire.DHCurve25519, bytes.NewReader(unhex(t, v.randomI)))
	if err != nil {
		t.Fatal(err)
	}
	dr, err := NewDH(wire.DHCurve25519, bytes.NewReader(unhex(t, v.randomR)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(di.Public(), unhex(t, v.pubI)) || !bytes.Equal(dr.Public(), unhex(t, v.pubR)) {
		t.Fatalf("public keys %x, %x", di.Public(), dr.Public())
	}
	want := unhex(t, v.shared)
	if got := mustShared(t, di, dr.Public()); !bytes.Equal(got, want) {
		t.Errorf("initiator shared = %x", got)
	}
	if got := mustShared(t, dr, di.Public()); !bytes.Equal(got, want) {
		t.Errorf("responder shared = %x", got)
	}
	high := dr.Public()
	high[31] |= 0x80
	if got := mustShared(t, di, high); !bytes.Equal(got, want) {
		t.Errorf("top bit of the peer value not masked: %x", got)
	}
}

func mustShared(t *testing.T, d *DH, peer []byte) []byte {
	t.Helper()
	s, err := d.Shared(peer)
	if err != nil {
		t.Fatalf("Shared: %v", err)
	}
	return s
}

// TestMODPGroups checks the RFC 3526 §3-§5 constants: size, primality,
// safe primality ((p-1)/2 prime, which RFC 6989 §2.1 relies on) and g = 2.
func TestMODPGroups(t *testing.T) {
	for _, tc := range []struct {
		g            wire.DHGroup
		bits, expBit int
	}{
		{wire.DHMODP2048, 2048, 224},
		{wire.DHMODP3072, 3072, 256},
		{wire.DHMODP4096, 4096, 304},
	} {
		m := lookupMODP(tc.g)
		if m.p.BitLen() != tc.bits || m.size != tc.bits/8 {
			t.Errorf("%v: %d-bit prime, size %d", tc.g, m.p.BitLen(), m.size)
		}
		if n, _ := PublicLen(tc.g); n != tc.bits/8 {
			t.Errorf("PublicLen(%v) = %d", tc.g, n)
		}
		if !m.p.ProbablyPrime(10) {
			t.Errorf("%v: p is not prime", tc.g)
		}
		q := new(big.Int).Rsh(m.p, 1)
		if !q.ProbablyPrime(10) {
			t.Errorf("%v: (p-1)/2 is not prime", tc.g)
		}
		if m.g.Cmp(big.NewInt(2)) != 0 || m.expBits != tc.expBit {
			t.Errorf("%v: g = %v, exponent bits %d", tc.g, m.g, m.expBits)
		}
		// The printed prime starts and ends with 64 one bits (RFC 3526 §3-§5).
		ones := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 64), big.NewInt(1))
		if new(big.Int).And(m.p, ones).Cmp(ones) != 0 || new(big.Int).Rsh(m.p, uint(tc.bits-64)).Cmp(ones) != 0 {
			t.Errorf("%v: prime does not start and end with 64 one bits", tc.g)
		}
	}
}

// TestDHRoundTrip runs both sides of every group from seeded readers.
func TestDHRoundTrip(t *testing.T) {
	for _, g := range allGroups {
		a, err := NewDH(g, seeded(1))
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewDH(g, seeded(2))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := PublicLen(g)
		if len(a.Public()) != n || a.Group() != g {
			t.Errorf("%v: Public is %d octets, want %d", g, len(a.Public()), n)
		}
		s1, s2 := mustShared(t, a, b.Public()), mustShared(t, b, a.Public())
		if !bytes.Equal(s1, s2) {
			t.Errorf("%v: shared secrets differ", g)
		}
		if m := lookupMODP(g); m != nil {
			if len(s1) != m.size {
				t.Errorf("%v: g^ir is %d octets, want the modulus length %d", g, len(s1), m.size)
			}
			if a.x.BitLen() > m.expBits {
				t.Errorf("%v: exponent of %d bits", g, a.x.BitLen())
			}
		}
	}
}

// TestNewDHDeterministic: the same reader bytes give the same key.
func TestNewDHDeterministic(t *testing.T) {
	for _, g := range allGroups {
		a, _ := NewDH(g, seeded(7))
		b, _ := NewDH(g, seeded(7))
		c, _ := NewDH(g, seeded(8))
		if !bytes.Equal(a.Public(), b.Public()) {
			t.Errorf("%v: same seed, different keys", g)
		}
		if bytes.Equal(a.Public(), c.Public()) {
			t.Errorf("%v: different seeds, same key", g)
		}
	}
}

// TestNewDHRejectionSampling: an out-of-range candidate is redrawn, and a
// source that never gives a valid key fails instead of looping.
func TestNewDHRejectionSampling(t *testing.T) {
	good := bytes.Repeat([]byte{0x11}, 32)
	d, err := NewDH(wire.DHECP256, bytes.NewReader(append(bytes.Repeat([]byte{0xff}, 32), good...)))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := newDHFromPrivate(wire.DHECP256, good)
	if !bytes.Equal(d.Public(), want.Public()) {
		t.Error("P-256 key is not the second candidate")
	}
	// P-521 keeps 521 bits of the 66 octets drawn.
	d, err = NewDH(wire.DHECP521, bytes.NewReader(bytes.Repeat([]byte{0x55}, 66)))
	if err != nil {
		t.Fatalf("P-521 with masked top octet: %v", err)
	}
	masked := bytes.Repeat([]byte{0x55}, 66)
	masked[0] = 0x01
	if want, _ := newDHFromPrivate(wire.DHECP521, masked); !bytes.Equal(d.Public(), want.Public()) {
		t.Error("P-521 top octet not masked to one bit")
	}
	for _, g := range []wire.DHGroup{wire.DHMODP2048, wire.DHECP256, wire.DHECP384, wire.DHECP521} {
		if _, err := NewDH(g, zeroReader{}); err == nil {
			t.Errorf("%v: an all-zero source gave a key", g)
		}
	}
	for _, g := range allGroups {
		if _, err := NewDH(g, bytes.NewReader(make([]byte, 3))); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%v: short source error = %v", g, err)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestDHRejectsRFC6989 covers the RFC 6989 §2.1 and §2.3 peer checks, the
// X25519 low-order check (RFC 7748 §6.1) and length checks.
func TestDHRejectsRFC6989(t *testing.T) {
	for _, g := range []wire.DHGroup{wire.DHMODP2048, wire.DHMODP3072, wire.DHMODP4096} {
		d, _ := NewDH(g, seeded(3))
		m := lookupMODP(g)
		val := func(y *big.Int) []byte { return y.FillBytes(make([]byte, m.size)) }
		for name, peer := range map[string][]byte{
			"y=0":      val(big.NewInt(0)),
			"y=1":      val(big.NewInt(1)),
			"y=p-1":    val(m.pMinus1),
			"y=p":      val(m.p),
			"all ones": bytes.Repeat([]byte{0xff}, m.size),
			"short":    val(big.NewInt(2))[1:],
			"long":     append([]byte{0}, val(big.NewInt(2))...),
			"empty":    nil,
		} {
			if _, err := d.Shared(peer); err == nil {
				t.Errorf("%v: %s accepted", g, name)
			}
		}
		for name, y := range map[string]*big.Int{"y=2": big.NewInt(2), "y=p-2": new(big.Int).Sub(m.pMinus1, big.NewInt(1))} {
			if _, err := d.Shared(val(y)); err != nil {
				t.Errorf("%v: boundary value %s rejected: %v", g, name, err)
			}
		}
	}
	for _, g := range []wire.DHGroup{wire.DHECP256, wire.DHECP384, wire.DHECP521} {
		d, _ := NewDH(g, seeded(3))
		peer, _ := NewDH(g, seeded(4))
		pub := peer.Public()
		offCurve := bytes.Clone(pub)
		offCurve[len(offCurve)-1] ^= 1 // y changed: no longer on the curve
		for name, v := range map[string][]byte{
			"off curve":   offCurve,
			"zero":        make([]byte, len(pub)),
			"x,y >= p":    bytes.Repeat([]byte{0xff}, len(pub)),
			"short":       pub[1:],
			"long":        append(bytes.Clone(pub), 0),
			"with prefix": append([]byte{4}, pub...),
		} {
			if _, err := d.Shared(v); err == nil {
				t.Errorf("%v: %s accepted", g, name)
			}
		}
	}
	d, _ := NewDH(wire.DHCurve25519, seeded(3))
	one := make([]byte, 32)
	one[0] = 1 // u = 1 has order 4
	for name, v := range map[string][]byte{"zero": make([]byte, 32), "u=1": one, "short": make([]byte, 31)} {
		if _, err := d.Shared(v); err == nil {
			t.Errorf("X25519: %s accepted", name)
		}
	}
}

func TestUnsupportedGroups(t *testing.T) {
	for _, g := range []wire.DHGroup{wire.DHNone, wire.DHMODP1024, wire.DHMODP8192, wire.DHCurve448, 99} {
		if _, err := PublicLen(g); err == nil || !strings.Contains(err.Error(), g.String()) {
			t.Errorf("PublicLen(%v) error = %v", g, err)
		}
		if _, err := NewDH(g, seeded(1)); err == nil {
			t.Errorf("NewDH(%v) succeeded", g)
		}
	}
}

func TestPublicIsACopy(t *testing.T) {
	d, _ := NewDH(wire.DHECP256, seeded(1))
	p := d.Public()
	p[0] ^= 0xff
	if bytes.Equal(p, d.Public()) {
		t.Error("Public returned internal storage")
	}
}
