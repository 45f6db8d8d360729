package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/manager"
)

// Issue 19: mifike move refuses, before anything moves, an address the
// host does not have, an interface it does not have, and an address
// that is on another interface than the one named.
func TestCheckMoveLocal(t *testing.T) {
	links := []manager.Link{
		{Index: 1, Name: "lo", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		{Index: 2, Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("10.91.1.2")}},
		{Index: 3, Name: "wlan0", Addrs: []netip.Addr{netip.MustParseAddr("10.91.2.2"), netip.MustParseAddr("2001:db8::2")}},
	}
	for _, c := range []struct {
		local, iface, err string
	}{
		{"10.91.1.2", "", ""},
		{"10.91.2.2", "wlan0", ""},
		{"2001:db8::2", "wlan0", ""},
		{"::ffff:10.91.1.2", "eth0", ""},
		{"10.9.9.9", "", "10.9.9.9 is not an address of this host"},
		{"10.91.1.2", "wlan9", `there is no interface "wlan9"`},
		{"10.91.1.2", "wlan0", "10.91.1.2 is not on interface wlan0 but on eth0"},
	} {
		err := checkMoveLocal(links, netip.MustParseAddr(c.local), c.iface)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s%%%s: %v", c.local, c.iface, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s%%%s: %v, want %q", c.local, c.iface, err, c.err)
		}
	}
}
