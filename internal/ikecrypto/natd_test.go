package ikecrypto

import (
	"bytes"
	"crypto/sha1"
	"net/netip"
	"testing"
)

// TestNATDetectionHash checks RFC 7296 §2.23 against a SHA-1 computed over
// the concatenation by hand.
func TestNATDetectionHash(t *testing.T) {
	spis := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18}
	sum := func(parts ...[]byte) []byte {
		h := sha1.Sum(bytes.Join(append([][]byte{spis}, parts...), nil))
		return h[:]
	}
	const spii, spir = 0x0102030405060708, 0x1112131415161718
	v4 := sum([]byte{192, 0, 2, 1}, []byte{0x01, 0xf4})
	v6 := sum([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, []byte{0x11, 0x94})
	for _, tc := range []struct {
		ap   string
		want []byte
	}{
		{"192.0.2.1:500", v4},
		{"[::ffff:192.0.2.1]:500", v4}, // IPv4-mapped: the IPv4 address goes on the wire
		{"[2001:db8::1]:4500", v6},
		{"[2001:db8::1%eth0]:4500", v6}, // zones are local, not hashed
	} {
		got := NATDetectionHash(spii, spir, netip.MustParseAddrPort(tc.ap))
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %x, want %x", tc.ap, got, tc.want)
		}
	}
	if bytes.Equal(NATDetectionHash(spir, spii, netip.MustParseAddrPort("192.0.2.1:500")), v4) {
		t.Error("SPI order does not matter")
	}
}
