package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// hostAddrs lists the addresses usable for IKE now (usableAddrs) from the
// host's interfaces.
func hostAddrs(listen []netip.Addr, tunnel func(string) bool) ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var host []hostIface
	for _, i := range ifs {
		h := hostIface{Name: i.Name, Flags: i.Flags}
		addrs, err := i.Addrs()
		if err != nil {
			return nil, err // a failed read must not look like addresses gone
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				h.Addrs = append(h.Addrs, p.Addr().Unmap())
			}
		}
		host = append(host, h)
	}
	return usableAddrs(host, listen, tunnel), nil
}

// hostIface is what usableAddrs needs of an interface.
type hostIface struct {
	Name  string
	Flags net.Flags
	Addrs []netip.Addr
}

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

// hostAddrs tells the engine's MOBIKE which local addresses are usable;
// on a failed read it keeps what it had.
func (d *Daemon) hostAddrs() []netip.Addr {
	addrs, err := hostAddrs(d.cfg.Listen, d.ownsDevice)
	if err != nil {
		d.log.Warn("cannot read the host's addresses; keeping the last list", "err", err)
		return d.lastAddrs
	}
	d.lastAddrs = addrs
	return addrs
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
