package daemon

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// RFC 4555 §3.5/§3.6: the addresses MOBIKE may use and announce are the
// host's, including a service address on the loopback device or on a
// dummy device; links down, the data plane's own TUN device and
// non-global addresses are not.
func TestUsableAddrsIncludeLoopbackAndDummy(t *testing.T) {
	up := net.FlagUp | net.FlagRunning
	ifs := []hostIface{
		{Name: "lo", Flags: up | net.FlagLoopback, Addrs: addrs("127.0.0.1", "::1", "192.0.2.53")},
		{Name: "svc0", Flags: up | net.FlagBroadcast, Addrs: addrs("198.51.100.7")}, // a dummy device
		{Name: "eth0", Flags: up | net.FlagBroadcast | net.FlagMulticast, Addrs: addrs("203.0.113.2", "fe80::1", "2001:db8::2")},
		{Name: "eth1", Flags: net.FlagUp | net.FlagBroadcast, Addrs: addrs("203.0.113.66")}, // no carrier
		{Name: "eth2", Flags: net.FlagBroadcast, Addrs: addrs("203.0.113.130")},             // down
		{Name: "mifike0", Flags: up | net.FlagPointToPoint, Addrs: addrs("10.99.0.2")},      // our TUN
	}
	tun := func(name string) bool { return name == "mifike0" }
	all := addrs("0.0.0.0", "::")
	got := usableAddrs(ifs, all, tun)
	want := addrs("192.0.2.53", "198.51.100.7", "203.0.113.2", "2001:db8::2")
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Fatalf("usable addresses %v, want %v", got, want)
	}
	// Listening on the service address only: only it counts.
	if got := usableAddrs(ifs, addrs("192.0.2.53"), tun); !slices.Equal(got, addrs("192.0.2.53")) {
		t.Fatalf("with listen [192.0.2.53]: %v", got)
	}
}
