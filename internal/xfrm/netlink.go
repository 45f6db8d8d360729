//go:build linux

package xfrm

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// conn is a NETLINK_XFRM socket for requests (one at a time).
type conn struct {
	mu     sync.Mutex
	fd     int
	seq    uint32
	buf    []byte
	closed atomic.Bool
}

// KernelError is the kernel's refusal of a request: its errno and, when
// it said one, its extended-ack message ("Requested AEAD algorithm not
// found"). Explain turns it into what to do about it.
type KernelError struct {
	Op    string
	Errno syscall.Errno
	Msg   string
}

func (e *KernelError) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("%s: %s (%v)", e.Op, e.Msg, e.Errno)
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Errno)
}

func (e *KernelError) Unwrap() error { return e.Errno }

// dial opens NETLINK_XFRM, joined to the multicast groups in groups (a
// bit mask), with extended acks so errors carry the kernel's reason.
func dial(groups uint32) (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_XFRM)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, fmt.Errorf("xfrm: the kernel has no XFRM netlink interface: load xfrm_user (CONFIG_XFRM_USER): %w", err)
		}
		return nil, fmt.Errorf("xfrm: opening a NETLINK_XFRM socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xfrm: binding the NETLINK_XFRM socket: %w", err)
	}
	return &conn{fd: fd, buf: make([]byte, 1<<16)}, nil
}

func (c *conn) close() error { return unix.Close(c.fd) }

// message is one netlink message received.
type message struct {
	typ  uint16
	data []byte
}

const nlmsgHdrLen = 16

// request sends one message and collects the answer: an ack, one reply,
// or (with dump) every message up to NLMSG_DONE.
func (c *conn) request(op string, typ uint16, flags uint16, body []byte, dump bool) ([]message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	seq := c.seq
	flags |= unix.NLM_F_REQUEST
	if dump {
		flags |= unix.NLM_F_DUMP
	} else {
		flags |= unix.NLM_F_ACK
	}
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(body))
	ne.PutUint32(b[0:], uint32(nlmsgHdrLen+len(body)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	b = append(b, body...)
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, &KernelError{Op: op, Errno: errnoOf(err)}
	}
	var out []message
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, &KernelError{Op: op, Errno: errnoOf(err)}
		}
		for p := c.buf[:n]; len(p) >= nlmsgHdrLen; {
			l := int(ne.Uint32(p[0:]))
			if l < nlmsgHdrLen || l > len(p) {
				break
			}
			mt, mflags, mseq := ne.Uint16(p[4:]), ne.Uint16(p[6:]), ne.Uint32(p[8:])
			data := p[nlmsgHdrLen:l]
			p = p[min(len(p), (l+3)&^3):]
			if mseq != seq {
				continue // a late answer to an earlier request
			}
			switch mt {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(data) < 4 {
					return nil, &KernelError{Op: op, Errno: unix.EPROTO}
				}
				errno := int32(ne.Uint32(data[0:]))
				if errno == 0 {
					return out, nil // the ack
				}
				return nil, &KernelError{Op: op, Errno: syscall.Errno(-errno), Msg: extAckMsg(data, mflags)}
			default:
				out = append(out, message{typ: mt, data: append([]byte(nil), data...)})
				if !dump && flags&unix.NLM_F_ACK == 0 {
					return out, nil
				}
			}
		}
	}
}

// extAckMsg finds NLMSGERR_ATTR_MSG in an error message. With
// NETLINK_CAP_ACK the request is not echoed, so the attributes follow
// struct nlmsgerr (the error and the request's header) directly.
func extAckMsg(data []byte, flags uint16) string {
	const ackTLVs, capped = 0x200, 0x100
	if flags&ackTLVs == 0 {
		return ""
	}
	off := 4 + nlmsgHdrLen
	if flags&capped == 0 && len(data) >= off {
		off = 4 + int(ne.Uint32(data[4:]))
	}
	if off > len(data) {
		return ""
	}
	if v, ok := attrs(data[off:])[1]; ok {
		return strings.TrimRight(string(v), "\x00")
	}
	return ""
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}

// receive reads multicast messages (expire notifications) until stop.
// A netlink socket cannot be shut down under a blocked reader, so it
// wakes up every half second to look.
func (c *conn) receive(handle func(message)) {
	tv := unix.NsecToTimeval((500 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 1<<16)
	for !c.closed.Load() {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
				continue // ENOBUFS: we missed some; the poll catches up
			}
			return
		}
		for p := buf[:n]; len(p) >= nlmsgHdrLen; {
			l := int(ne.Uint32(p[0:]))
			if l < nlmsgHdrLen || l > len(p) {
				break
			}
			handle(message{typ: ne.Uint16(p[4:]), data: append([]byte(nil), p[nlmsgHdrLen:l]...)})
			p = p[min(len(p), (l+3)&^3):]
		}
	}
}

// stop ends a receive loop; the loop's caller closes the socket after.
func (c *conn) stop() { c.closed.Store(true) }
