package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/mifike/mifike/internal/manager"
)

// udpSocket is one IKE socket (port 500 or 4500, one address family).
// Packet info lets a socket bound to the wildcard address learn each
// datagram's destination and choose the source of each reply: responses
// must leave from the address the request arrived on (RFC 7296 §2.11).
type udpSocket struct {
	conn *net.UDPConn
	p4   *ipv4.PacketConn
	p6   *ipv6.PacketConn
	port uint16
}

func listenUDP(addr netip.Addr, port uint16) (*udpSocket, error) {
	network := "udp4"
	if addr.Is6() {
		network = "udp6" // Go sets IPV6_V6ONLY, so both families can bind the port
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
	if err != nil {
		return nil, fmt.Errorf("listening on %v: %w", netip.AddrPortFrom(addr, port), err)
	}
	s := &udpSocket{conn: c, port: port}
	if addr.Is6() {
		s.p6 = ipv6.NewPacketConn(c)
		err = s.p6.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	} else {
		s.p4 = ipv4.NewPacketConn(c)
		err = s.p4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("packet info on %v: %w", netip.AddrPortFrom(addr, port), err)
	}
	return s, nil
}

// write sends b from local (its address chosen through packet info) to
// remote; a non-zero ifindex sends it out of that interface whatever the
// routing table prefers (a path MOBIKE pinned).
func (s *udpSocket) write(local, remote netip.AddrPort, ifindex int, b []byte) error {
	to := net.UDPAddrFromAddrPort(remote)
	src := local.Addr().IsValid() && !local.Addr().IsUnspecified()
	if s.p6 != nil {
		var cm *ipv6.ControlMessage
		if src || ifindex != 0 {
			cm = &ipv6.ControlMessage{IfIndex: ifindex}
			if src {
				cm.Src = local.Addr().AsSlice()
			}
		}
		_, err := s.p6.WriteTo(b, cm, to)
		return err
	}
	var cm *ipv4.ControlMessage
	if src || ifindex != 0 {
		cm = &ipv4.ControlMessage{IfIndex: ifindex}
		if src {
			cm.Src = local.Addr().Unmap().AsSlice()
		}
	}
	_, err := s.p4.WriteTo(b, cm, to)
	return err
}

// ifindex resolves an interface name; 0 means "let routing decide".
func ifindex(name string) int {
	if name == "" {
		return 0
	}
	i, err := net.InterfaceByName(name)
	if err != nil {
		return 0
	}
	return i.Index
}

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

func (s *udpSocket) close() error { return s.conn.Close() }

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
