package dataplane

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BatchReader reads one socket (UDP, or a raw IP socket) in batches
// (recvmmsg(2)) into buffers it owns, and allocates nothing per datagram:
// x/net's ReadBatch allocates every datagram's source address (a
// net.UDPAddr and its IP), which a flood of garbage turns into as much
// garbage for the collector (issue 13). Not safe for concurrent use: one
// reading goroutine.
type BatchReader struct {
	rc   syscall.RawConn
	port uint16
	off  int // where each datagram starts in its buffer
	size int // the most one datagram may hold; larger ones are truncated

	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []byte // a sockaddr_in6 per datagram (room for a sockaddr_in)
	oob   []byte // ancillary data (packet info) per datagram
	bufs  [][]byte
	zones map[uint32]string // IPv6 scope ids seen, as zones

	n     int
	errno syscall.Errno
	recv  func(fd uintptr) bool // made once: a closure per read is garbage
}

// mmsghdr is struct mmsghdr: the message and the length received. Go pads
// it as C does (to the alignment of Msghdr).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

const (
	nameLen = unix.SizeofSockaddrInet6
	oobLen  = 128 // IP_PKTINFO or IPV6_PKTINFO, and room to spare
)

// NewBatchReader prepares batch buffers of off+size octets for c; a
// datagram lands at off (headroom the ESP data plane opens packets in).
// port is the socket's own port, reported as the local port of each
// datagram (0 for raw sockets).
func NewBatchReader(c syscall.Conn, port uint16, batch, off, size int) (*BatchReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &BatchReader{rc: rc, port: port, off: off, size: size,
		hdrs: make([]mmsghdr, batch), iovs: make([]unix.Iovec, batch), bufs: make([][]byte, batch),
		names: make([]byte, batch*nameLen), oob: make([]byte, batch*oobLen), zones: map[uint32]string{}}
	for i := range batch {
		r.bufs[i] = make([]byte, off+size)
		r.iovs[i].Base = &r.bufs[i][off]
		r.iovs[i].SetLen(size)
		h := &r.hdrs[i].hdr
		h.Name = &r.names[i*nameLen]
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.oob[i*oobLen]
	}
	r.recv = func(fd uintptr) bool {
		for i := range r.hdrs {
			h := &r.hdrs[i].hdr
			h.Namelen = nameLen
			h.SetControllen(oobLen)
			h.Flags = 0
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), 0, 0, 0)
		if errno == unix.EAGAIN || errno == unix.EINTR {
			return false // wait until readable (the runtime's poller), then again
		}
		r.n, r.errno = int(n), errno
		if errno != 0 {
			r.n = 0
		}
		return true
	}
	return r, nil
}

// Read waits for and reads the next batch; it returns how many datagrams
// came. net.ErrClosed means the socket is closed.
func (r *BatchReader) Read() (int, error) {
	if err := r.rc.Read(r.recv); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, r.errno
	}
	return r.n, nil
}

// Datagram returns the i-th datagram of the batch: its octets in its
// buffer (valid until the next read), the addresses, and whether the
// kernel cut it to the buffer (MSG_TRUNC).
func (r *BatchReader) Datagram(i int) (b []byte, local, remote netip.AddrPort, truncated bool) {
	h := &r.hdrs[i]
	n := min(int(h.n), r.size)
	b = r.bufs[i][r.off : r.off+n]
	remote = r.sockaddr(r.names[i*nameLen : i*nameLen+min(int(h.hdr.Namelen), nameLen)])
	oob := r.oob[i*oobLen : i*oobLen+min(int(h.hdr.Controllen), oobLen)]
	local = netip.AddrPortFrom(pktinfoDst(oob), r.port)
	return b, local, remote, h.hdr.Flags&unix.MSG_TRUNC != 0
}

// Buf is the i-th whole buffer, headroom included.
func (r *BatchReader) Buf(i int) []byte { return r.bufs[i] }

// sockaddr decodes a sockaddr_in or sockaddr_in6. A link-local source
// keeps its scope as a numeric zone, so replies leave by the interface
// the datagram came in on; zone strings are cached (one per interface).
func (r *BatchReader) sockaddr(b []byte) netip.AddrPort {
	if len(b) < 2 {
		return netip.AddrPort{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) >= unix.SizeofSockaddrInet4 {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
		}
	case unix.AF_INET6:
		if len(b) >= unix.SizeofSockaddrInet6 {
			a := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
			if scope := binary.NativeEndian.Uint32(b[24:28]); scope != 0 && a.Is6() {
				z, ok := r.zones[scope]
				if !ok {
					// The scope is the receiving interface's index: the
					// host's interfaces bound the cache.
					z = strconv.FormatUint(uint64(scope), 10)
					r.zones[scope] = z
				}
				a = a.WithZone(z)
			}
			return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[2:4]))
		}
	}
	return netip.AddrPort{}
}

// Closed reports whether err means the socket was closed.
func Closed(err error) bool { return errors.Is(err, net.ErrClosed) }
