package conn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/dataplane"
	"github.com/mifike/mifike/internal/wire"
)

const (
	// MaxDatagram is the largest datagram the UDP Bind takes, as
	// strongSwan's charon.max_packet (10000 by default): an IKE message
	// is at most a few kB (larger ones are fragmented, RFC 7383), and ESP
	// in UDP carries at most a 9000-octet inner packet (tun.mtu's upper
	// bound) plus its overhead. A larger datagram arrives truncated
	// (MSG_TRUNC) and is returned as Truncated, never as what it seemed.
	MaxDatagram = 10000
	// ikeBatch is the batch on sockets that carry only IKE: port 500, and
	// port 4500 when no ESP is opened here. IKE is a few messages per SA
	// and minute; a small batch keeps the buffers small.
	ikeBatch = 8
	// espBatch is the batch on the NAT-T port when ESP is opened here,
	// where it arrives at line rate and batching pays.
	espBatch = 64
)

// ErrNoSocket: no socket is bound to the address a datagram should leave
// from.
var ErrNoSocket = errors.New("no socket to send from")

// UDP is the Bind on UDP sockets: the IKE port and the NAT-T port of each
// listen address. Packet info lets a socket bound to the wildcard address
// learn each datagram's destination and choose the source of each reply:
// responses must leave from the address the request arrived on (RFC 7296
// §2.11). Reads are batched (recvmmsg) and allocate nothing per datagram
// (dataplane.BatchReader).
//
// Listen binds its sockets before Open; the socket table does not change
// afterwards, so Send and NATT may be called from any goroutine.
type UDP struct {
	socks  []*udpSocket
	byAddr map[sockKey]*udpSocket
	batch  int
}

var _ Bind = (*UDP)(nil)

type sockKey struct {
	addr netip.Addr // as bound: a listen address or the wildcard
	port uint16
}

// udpSocket is one socket (one port, one address family).
type udpSocket struct {
	conn *net.UDPConn
	p4   *ipv4.PacketConn
	p6   *ipv6.PacketConn
	addr netip.Addr
	port uint16
	natt bool
	// The error queue's scratch (icmp.go): the datagram's first octets
	// and the control messages.
	errBuf [64]byte
	errOOB [256]byte
}

// Socket is one of the UDP Bind's sockets, for what a data plane sets on
// the socket itself (a firewall mark, the kernel's ESP-in-UDP
// decapsulation).
type Socket struct {
	Conn *net.UDPConn
	Addr netip.Addr // as bound: a listen address or the wildcard
	Port uint16
	NATT bool // the NAT-T port, where ESP shares the socket with IKE
}

// Listen binds one more socket to addr and port (0: a free port, which it
// returns); natt makes it a NAT-T port socket, where IKE follows a
// non-ESP marker and ESP and keepalives arrive too (RFC 3948).
func (u *UDP) Listen(addr netip.Addr, port uint16, natt bool) (uint16, error) {
	network := "udp4"
	if addr.Is6() {
		network = "udp6" // Go sets IPV6_V6ONLY, so both families can bind the port
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
	if err != nil {
		return 0, fmt.Errorf("listening on %v: %w", netip.AddrPortFrom(addr, port), err)
	}
	s := &udpSocket{conn: c, addr: addr.Unmap(), port: c.LocalAddr().(*net.UDPAddr).AddrPort().Port(), natt: natt}
	if addr.Is6() {
		s.p6 = ipv6.NewPacketConn(c)
		err = s.p6.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	} else {
		s.p4 = ipv4.NewPacketConn(c)
		err = s.p4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	}
	if err != nil {
		c.Close()
		return 0, fmt.Errorf("packet info on %v: %w", netip.AddrPortFrom(addr, port), err)
	}
	if err := s.recvErr(); err != nil {
		c.Close()
		return 0, fmt.Errorf("ICMP error queue on %v: %w", netip.AddrPortFrom(addr, port), err)
	}
	if u.byAddr == nil {
		u.byAddr = map[sockKey]*udpSocket{}
	}
	u.socks = append(u.socks, s)
	u.byAddr[sockKey{s.addr, s.port}] = s
	return s.port, nil
}

// Sockets lists the bound sockets.
func (u *UDP) Sockets() []Socket {
	out := make([]Socket, len(u.socks))
	for i, s := range u.socks {
		out[i] = Socket{Conn: s.conn, Addr: s.addr, Port: s.port, NATT: s.natt}
	}
	return out
}

// NATT is the NAT-T socket that sends from local (bound to it, or to its
// family's wildcard), nil if none: ESP in UDP leaves through it, so it
// shares the IKE SA's port pair and NAT mapping (RFC 3948).
func (u *UDP) NATT(local netip.Addr) *net.UDPConn {
	for _, s := range u.socks {
		if s.natt {
			if t := u.sock(netip.AddrPortFrom(local, s.port)); t != nil {
				return t.conn
			}
		}
	}
	return nil
}

// sock is the socket that sends from local: bound to its address, or to
// its family's wildcard.
func (u *UDP) sock(local netip.AddrPort) *udpSocket {
	a := local.Addr().Unmap()
	if s := u.byAddr[sockKey{addr: a, port: local.Port()}]; s != nil {
		return s
	}
	wild := netip.IPv4Unspecified()
	if a.Is6() {
		wild = netip.IPv6Unspecified()
	}
	return u.byAddr[sockKey{addr: wild, port: local.Port()}]
}

// Open returns a ReceiveFunc per socket.
func (u *UDP) Open(espHeadroom int) ([]ReceiveFunc, error) {
	u.batch = ikeBatch
	fns := make([]ReceiveFunc, 0, len(u.socks))
	for _, s := range u.socks {
		batch, off := ikeBatch, 0
		if s.natt && espHeadroom > 0 {
			batch, off = espBatch, espHeadroom
			u.batch = espBatch
		}
		r, err := dataplane.NewBatchReader(s.conn, s.port, batch, off, MaxDatagram)
		if err != nil {
			return nil, fmt.Errorf("reading %v: %w", netip.AddrPortFrom(s.addr, s.port), err)
		}
		fns = append(fns, s.receiveFunc(r, off))
	}
	return fns, nil
}

// BatchSize is the largest batch of the ReceiveFuncs Open returned.
func (u *UDP) BatchSize() int { return max(u.batch, ikeBatch) }

// receiveFunc reads r's batches and sorts them; on the IKE port every
// datagram is IKE.
func (s *udpSocket) receiveFunc(r *dataplane.BatchReader, off int) ReceiveFunc {
	return func(pkts []Packet) (int, error) {
		n, err := r.Read()
		if err != nil {
			if pathErrno(err) {
				// An ICMP error one of our datagrams caused (icmp.go).
				return s.errQueue(pkts), nil
			}
			return 0, err
		}
		pkts = pkts[:n]
		for i := range pkts {
			b, local, remote, truncated := r.Datagram(i)
			p := &pkts[i]
			*p = Packet{Buf: r.Buf(i), Off: off, N: len(b), Local: local, Remote: remote, NATT: s.natt}
			switch {
			case truncated:
				p.Kind = Truncated
			case s.natt:
				var msg []byte
				if p.Kind, msg = Demux(b); p.Kind == IKE {
					p.Off, p.N = off+len(b)-len(msg), len(msg) // after the marker
				}
			default:
				p.Kind = IKE
			}
		}
		return n, nil
	}
}

// Send writes the IKE message msg from local (its address chosen
// through packet info) to remote, behind the non-ESP marker from a
// NAT-T socket; a named interface sends it out of that interface
// whatever the routing table prefers.
func (u *UDP) Send(msg []byte, local, remote netip.AddrPort, iface string) error {
	s := u.sock(local)
	if s == nil {
		return ErrNoSocket
	}
	if s.natt {
		// A copy per IKE message, a few per SA and minute: not a hot
		// path, and it keeps Send safe to call from any goroutine.
		msg = AppendIKE(make([]byte, 0, wire.NonESPMarkerLen+len(msg)), msg, true)
	}
	return s.write(local, remote, s.ifindex(iface), msg)
}

// keepalive is what a NAT keepalive sends; write only reads it.
var keepalive = []byte{KeepaliveOctet}

// SendKeepalive writes a NAT keepalive, the single octet 0xFF, from
// local to remote (RFC 3948 §2.3).
func (u *UDP) SendKeepalive(local, remote netip.AddrPort, iface string) error {
	s := u.sock(local)
	if s == nil {
		return ErrNoSocket
	}
	return s.write(local, remote, s.ifindex(iface), keepalive)
}

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

// ifindex resolves an interface name; 0 means "let routing decide". One
// SIOCGIFINDEX ioctl on the socket, in its namespace: net.InterfaceByName
// dumps every link over netlink and parses them all, and it ran for
// every IKE message sent (a sixth of the end user's CPU for a new
// interface in bench new-interface's profile). Not cached: an interface
// unplugged and plugged again keeps its name with a new index.
func (s *udpSocket) ifindex(name string) int {
	if name == "" {
		return 0
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0
	}
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return 0
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlIfreq(int(fd), unix.SIOCGIFINDEX, ifr) }); err != nil || ioErr != nil {
		return 0
	}
	return int(ifr.Uint32())
}

// Close closes every socket (the table stays: a late Send fails on its
// closed socket).
func (u *UDP) Close() error {
	var errs error
	for _, s := range u.socks {
		errs = errors.Join(errs, s.conn.Close())
	}
	return errs
}
