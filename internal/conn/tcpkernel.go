package conn

// Streams handed to the kernel (TCP.KernelESP): Linux's espintcp ULP
// (net/xfrm/espintcp.c, Linux 5.6+, CONFIG_INET_ESPINTCP) takes over a
// TCP socket once setsockopt(TCP_ULP, "espintcp") is done on it. From
// then on:
//   - the kernel parses the stream's frames (RFC 9329 §3): ESP goes to
//     the XFRM state of its SPI; each IKE message, non-ESP marker first
//     and Length stripped, waits to be read, one per read;
//   - each write is one message (marker and IKE message), to which the
//     kernel adds the Length; it never writes part of one, so several
//     queued messages are several writes, never one writev;
//   - the XFRM states of the SAs on the stream (encapsulation type
//     TCP_ENCAP_ESPINTCP with the stream's ports) find the socket by its
//     addresses and ports and send their ESP on it.
// The "IKETCP" prefix (§4) is not the ULP's business: the Originator
// writes it before the setsockopt, the Responder reads exactly its six
// octets before it (the kernel then parses whatever followed, already
// queued).
//
// There is no library for this in Go (x/sys has the constant only);
// libreswan's pluto does the same in C.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/wire"
)

// espintcpULP is the name the ULP registers (tcp_register_ulp).
const espintcpULP = "espintcp"

// ProbeKernelESP says whether the kernel can take streams (KernelESP):
// it sets the ULP on a new, unconnected socket, which the kernel allows
// on any TCP socket that is not listening.
func ProbeKernelESP() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_ULP, espintcpULP); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("the kernel has no espintcp for ESP in TCP (RFC 9329): load the espintcp module or use a kernel built with CONFIG_INET_ESPINTCP (setsockopt TCP_ULP: %w)", err)
		}
		return fmt.Errorf("the kernel refuses the espintcp ULP for ESP in TCP (RFC 9329): %w", err)
	}
	return nil
}

// setULP hands the stream's socket to espintcp.
func (s *tcpStream) setULP() error {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_ULP, espintcpULP)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("handing the TCP stream to the kernel (TCP_ULP espintcp): %w", serr)
	}
	return nil
}

// startKernel, on a stream we opened: the prefix, then the ULP.
func (s *tcpStream) startKernel() error {
	s.conn.SetWriteDeadline(time.Now().Add(orDefault(s.t.WriteTimeout, DefaultTCPWriteTimeout)))
	if _, err := s.conn.Write([]byte(TCPPrefix)); err != nil {
		return err
	}
	if err := s.setULP(); err != nil {
		return err
	}
	close(s.kernelReady)
	return nil
}

// write writes what was queued: in one go on a stream of ours, one
// message per write on a stream the kernel frames (each queued frame
// without its Length, which the kernel adds).
func (s *tcpStream) write(bufs net.Buffers) error {
	if !s.t.KernelESP {
		_, err := bufs.WriteTo(s.conn)
		return err
	}
	for _, b := range bufs {
		if len(b) <= tcpLenLen {
			continue
		}
		if _, err := s.conn.Write(b[tcpLenLen:]); err != nil {
			return err
		}
	}
	return nil
}

// readLoopKernel is readLoop for a stream the kernel frames: after the
// prefix (on an accepted stream) and the ULP, each read is one IKE
// message behind its non-ESP marker.
func (s *tcpStream) readLoopKernel() {
	t := s.t
	defer t.wg.Done()
	if s.accepted {
		var p [len(TCPPrefix)]byte
		if _, err := io.ReadFull(s.conn, p[:]); err != nil {
			s.close(t.readFailed(err, true))
			return
		}
		if !bytes.Equal(p[:], []byte(TCPPrefix)) {
			t.stats.framing.Add(1)
			s.close(ErrTCPPrefix)
			return
		}
		if err := s.setULP(); err != nil {
			s.close(err)
			return
		}
		close(s.kernelReady)
	}
	first := s.accepted // the deadline adopt set is running
	idle := orDefault(t.IdleTimeout, DefaultTCPIdleTimeout)
	for {
		if !first {
			s.conn.SetReadDeadline(time.Now().Add(idle))
		}
		buf := t.bufs.Get().(*[]byte)
		n, err := s.conn.Read((*buf)[t.headroom:])
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err != nil {
			t.bufs.Put(buf)
			s.close(t.readFailed(err, first))
			return
		}
		m := (*buf)[t.headroom : t.headroom+n]
		if n <= wire.NonESPMarkerLen || m[0]|m[1]|m[2]|m[3] != 0 {
			// The kernel queues only marked messages longer than the
			// marker; anything else is not ours to read.
			t.bufs.Put(buf)
			continue
		}
		first = false
		f := rxFrame{kind: IKE, buf: buf, off: t.headroom + wire.NonESPMarkerLen, n: n - wire.NonESPMarkerLen, local: s.local, remote: s.remote}
		select {
		case t.rx <- f:
		case <-s.done:
			t.bufs.Put(buf)
			return
		case <-t.done:
			t.bufs.Put(buf)
			return
		}
	}
}
