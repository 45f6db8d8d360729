package conn

// ICMP errors as path hints (RFC 7296 §2.21, RFC 4555 §5.3): with
// IP_RECVERR (IPV6_RECVERR) on a UDP socket, the kernel queues the ICMP
// errors our datagrams caused (port, host or network unreachable) and
// fails the next read with the error; the error queue (MSG_ERRQUEUE)
// then says which destination the datagram had. The Bind hands each
// such error up as a PathError packet, never as proof: an ICMP error is
// not authenticated, so the engine only starts a liveness check on the
// SAs with that peer, rate-limited (ike.Engine.PathError).
//
// x/net's ipv4/ipv6 packages read no error queue, so this reads it with
// recvmsg itself. The error queue is read only after a read failed
// with one of these errors, which is rare: what it allocates (the
// parsed addresses and control messages) does not matter.

import (
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"
)

// sockExtendedErrLen is struct sock_extended_err: ee_errno (4), ee_origin,
// ee_type, ee_code, ee_pad (1 each), ee_info, ee_data (4 each).
const sockExtendedErrLen = 16

const (
	originICMP  = 2 // SO_EE_ORIGIN_ICMP
	originICMP6 = 3 // SO_EE_ORIGIN_ICMP6
)

// recvErr turns on the error queue of the socket.
func (s *udpSocket) recvErr() error {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if s.addr.Is6() {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		}
	})
	return errors.Join(err, serr)
}

// pathErrno: the ICMP errors that say a path (or the peer's port) does
// not work, as the kernel reports them on a read.
func pathErrno(err error) bool {
	var e unix.Errno
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.ENONET:
		return true
	}
	return false
}

// errQueue reads up to len(pkts) queued ICMP errors into pkts as
// PathError packets, with the socket's own scratch buffers (one reader
// per socket).
func (s *udpSocket) errQueue(pkts []Packet) int {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		for n < len(pkts) {
			_, oobn, _, from, err := unix.Recvmsg(int(fd), s.errBuf[:], s.errOOB[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return // EAGAIN: the queue is empty
			}
			dst, ok := sockaddrAddrPort(from)
			if !ok || !icmpError(s.errOOB[:oobn]) {
				continue
			}
			pkts[n] = Packet{Kind: PathError, Local: netip.AddrPortFrom(s.addr, s.port), Remote: dst}
			n++
		}
	})
	return n
}

// icmpError: the control message is an extended error that came from
// ICMP or ICMPv6 (not, say, a local EMSGSIZE).
func icmpError(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if (m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR) ||
			(m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR) {
			if len(m.Data) < sockExtendedErrLen {
				return false
			}
			origin := m.Data[4]
			return origin == originICMP || origin == originICMP6
		}
	}
	return false
}

func sockaddrAddrPort(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}
