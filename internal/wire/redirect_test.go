package wire

import (
	"bytes"
	"net/netip"
	"testing"
)

// RFC 5685 §9.2/§9.3: the GW identity has the exact length of its type,
// the nonce data 16 to 256 octets; anything else is refused.
func TestRFC5685Section9RedirectData(t *testing.T) {
	nonce := bytes.Repeat([]byte{7}, 16)
	good, err := MarshalRedirect(netip.MustParseAddr("192.0.2.7"), nonce)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte{1, 4, 192, 0, 2, 7}, nonce...); !bytes.Equal(good, want) {
		t.Fatalf("REDIRECT data %x, want %x", good, want)
	}
	r, err := ParseRedirect(good)
	if err != nil || r.GW != netip.MustParseAddr("192.0.2.7") || !bytes.Equal(r.Nonce, nonce) {
		t.Fatalf("ParseRedirect = %+v, %v", r, err)
	}
	six, _ := MarshalRedirect(netip.MustParseAddr("2001:db8::7"), nil)
	if r, err := ParseRedirect(six); err != nil || r.GW != netip.MustParseAddr("2001:db8::7") || r.Nonce != nil {
		t.Fatalf("ParseRedirect(IPv6) = %+v, %v", r, err)
	}
	if r, err := ParseRedirect(append([]byte{3, 6}, "gw2.nl"...)); err != nil || r.FQDN != "gw2.nl" {
		t.Fatalf("ParseRedirect(FQDN) = %+v, %v", r, err)
	}
	mapped := netip.MustParseAddr("::ffff:192.0.2.7").As16()
	for name, d := range map[string][]byte{
		"empty":              {},
		"type only":          {1},
		"length past end":    {1, 4, 192, 0, 2},
		"IPv4 of 16 octets":  append([]byte{1, 16}, make([]byte, 16)...),
		"IPv6 of 4 octets":   {2, 4, 1, 2, 3, 4},
		"IPv4-mapped IPv6":   append([]byte{2, 16}, mapped[:]...),
		"unknown type":       {9, 4, 1, 2, 3, 4},
		"type zero":          {0, 0},
		"empty FQDN":         {3, 0},
		"FQDN with a NUL":    {3, 3, 'a', 0, 'b'},
		"short nonce":        append([]byte{1, 4, 192, 0, 2, 7}, make([]byte, 15)...),
		"long nonce":         append([]byte{1, 4, 192, 0, 2, 7}, make([]byte, 257)...),
		"GW Ident Len 255":   append([]byte{2, 255}, make([]byte, 20)...),
		"one trailing octet": {1, 4, 192, 0, 2, 7, 0},
	} {
		if r, err := ParseRedirect(d); err == nil {
			t.Errorf("%s: ParseRedirect(%x) = %+v, want an error", name, d, r)
		}
	}
	from, _ := MarshalRedirectedFrom(netip.MustParseAddr("::ffff:198.51.100.1"))
	if a, err := ParseRedirectedFrom(from); err != nil || a != netip.MustParseAddr("198.51.100.1") || from[0] != 1 {
		t.Fatalf("REDIRECTED_FROM %x decodes to %v, %v", from, a, err)
	}
	for name, d := range map[string][]byte{
		"FQDN":          append([]byte{3, 6}, "gw2.nl"...),
		"trailing data": append(append([]byte(nil), from...), 1),
		"short":         {2, 16, 1},
	} {
		if a, err := ParseRedirectedFrom(d); err == nil {
			t.Errorf("%s: ParseRedirectedFrom(%x) = %v, want an error", name, d, a)
		}
	}
}
