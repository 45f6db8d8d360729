package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/mifike/mifike/internal/manager"
)

// hostIface is what usableAddrs needs of an interface: the host table's
// record of it (host.go).
type hostIface = manager.Link

// usableAddrs are the global unicast addresses of interfaces that are up
// and have carrier (an unplugged cable is as gone as a deleted address),
// within the listen addresses. Addresses on the loopback device and on
// dummy devices count like any other: a gateway's service or anycast
// address commonly lives there, and it stays whatever links fail (RFC
// 4555 §3.5 lets a responder move only when its address is gone); 127/8
// and ::1 are not global unicast and never count. The data plane's own
// device (tunnel) holds our virtual IPs: they live inside the tunnel and
// can never carry it.
func usableAddrs(ifs []hostIface, listen []netip.Addr, tunnel func(string) bool) []netip.Addr {
	var out []netip.Addr
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagRunning == 0 || tunnel(i.Name) {
			continue
		}
		for _, a := range i.Addrs {
			if a.IsGlobalUnicast() && allowedBy(listen, a) {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare) // a stable order: only real changes count
	return out
}

func allowedBy(listen []netip.Addr, a netip.Addr) bool {
	for _, l := range listen {
		if l == a || (l.IsUnspecified() && l.Is4() == a.Is4()) {
			return true
		}
	}
	return false
}

// localAddrFor asks the routing table which source address reaches
// remote, without sending anything (a connected UDP socket).
func localAddrFor(remote netip.Addr) (netip.Addr, error) {
	network := "udp4"
	if remote.Is6() {
		network = "udp6"
	}
	c, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 500)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %v: %w", remote, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
