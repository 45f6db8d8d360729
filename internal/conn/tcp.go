package conn

// TCP encapsulation of IKE and ESP (RFC 9329), the transport unit of
// issue 17: a Bind whose packets come from and go to TCP streams, so the
// daemon reads it as it reads the UDP Bind. It listens (port 4500 by
// default, RFC 9329 §2; any other, such as 443, as configured), accepts
// streams that begin with the IKETCP prefix (§4), opens a stream when it
// has to send to a peer it has none to (the TCP Originator, §6.1), and
// frames each message with its Length (§3). A peer is hostile: streams
// are capped per source address and in all, an accepted stream has a
// deadline for its first whole message (slowloris), every stream an
// idle timeout, and queued outbound octets a cap; any framing error
// closes the stream (§3.1).
//
// The engine decides which SAs use TCP and when (internal/ike/tcp.go),
// the daemon carries its Sends here (Datagram.TCP) and its CloseStream
// actions, and the userspace data plane sends ESP through SendESP. With
// the kernel data plane (KernelESP), every stream is handed to the
// kernel's espintcp ULP once its prefix has passed (tcpkernel.go): the
// kernel then frames and carries the ESP, and this Bind only the IKE.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/wire"
)

// Defaults of the TCP Bind's limits, each a field of TCP a zero value
// of which takes the default.
const (
	// DefaultTCPPort is where a TCP Responder MUST listen (RFC 9329 §2).
	DefaultTCPPort = 4500
	// DefaultTCPMaxStreams caps the streams open at once, accepted and
	// opened, in all: each holds two goroutines, a 16 KiB read buffer
	// and up to twice MaxQueued of outbound octets, so 512 streams are
	// at most about 80 MiB however the peers behave.
	DefaultTCPMaxStreams = 512
	// DefaultTCPMaxStreamsPerAddr caps the accepted streams from one
	// source address, so one host cannot take every slot (issue 17's
	// connection flood). Clients behind one carrier-grade NAT share an
	// address: 32 leaves room for them while keeping one attacker to a
	// sixteenth of the slots.
	DefaultTCPMaxStreamsPerAddr = 32
	// DefaultTCPFirstMessageTimeout is how long an accepted stream has,
	// from the accept, for its prefix and first whole IKE or ESP message.
	// It does not move while octets trickle in: a slowloris peer sending
	// one octet a second holds its slot this long and no longer. RFC
	// 9329 §6.3.1 finds 5-10 s a fair wait for a repeated IKE_SA_INIT.
	DefaultTCPFirstMessageTimeout = 10 * time.Second
	// DefaultTCPIdleTimeout closes a stream on which no whole message
	// arrived for this long (§6.1 lets a responder close idle streams).
	// IKE liveness checks (RFC 7296 §1.4) keep a live one busy.
	DefaultTCPIdleTimeout = 10 * time.Minute
	// DefaultTCPMaxQueued caps the octets queued to send on one stream
	// and not yet taken by its writer; more fails Send with
	// ErrQueueFull, as a full socket buffer drops a UDP datagram.
	DefaultTCPMaxQueued = 64 << 10
	// DefaultTCPWriteTimeout closes a stream whose peer has taken
	// nothing for this long while we had octets to write: a peer that
	// does not read.
	DefaultTCPWriteTimeout = 30 * time.Second
	// DefaultTCPDialTimeout bounds opening a stream (§6.1).
	DefaultTCPDialTimeout = 10 * time.Second

	// tcpRxQueue is how many received messages wait for the
	// ReceiveFunc, each in a buffer of espHeadroom+MaxDatagram; a full
	// queue stops the stream readers, and TCP's flow control the peers.
	tcpRxQueue = 256
	// acceptedMemory is how long the remote of a closed accepted stream
	// is remembered: Send never dials it (only the TCP Originator opens
	// streams, §6.1; the peer's port is not one it listens on).
	acceptedMemory = 2 * time.Minute
)

var (
	// ErrNoStream: no stream leads to the remote, and this side does
	// not open one (the peer opened the last; RFC 9329 §6.1).
	ErrNoStream = errors.New("no TCP stream to the peer, and the peer is the one to open it (RFC 9329 §6.1)")
	// ErrQueueFull: the stream's outbound queue is at MaxQueued.
	ErrQueueFull = errors.New("TCP stream's send queue is full")
	// ErrTooManyStreams: MaxStreams are open.
	ErrTooManyStreams = errors.New("too many TCP streams")
	// ErrNotOpen: Send before Open.
	ErrNotOpen      = errors.New("TCP Bind not open")
	errFirstMessage = errors.New("no whole message before the first-message deadline")
	errKernelESP    = errors.New("the kernel carries the ESP of these streams (KernelESP)")
	errIdle         = errors.New("idle")
)

// TCP is the Bind on TCP streams (RFC 9329). Set its fields, Listen,
// then Open; Send, SendESP and CloseStream may then be called from any
// goroutine.
type TCP struct {
	// Limits; zero takes the Default of its name.
	MaxStreams, MaxStreamsPerAddr int
	MaxQueued                     int
	FirstMessageTimeout           time.Duration
	IdleTimeout, WriteTimeout     time.Duration
	DialTimeout                   time.Duration
	// StreamOpened and StreamClosed, when set, are called when a stream
	// is ready to carry messages (after the TCP handshake; an opened one
	// has sent its prefix) and when one is gone, with why. The engine
	// needs both: a request outstanding is sent again on a new stream
	// (§6.2), and a lost stream is reopened by the originator at its
	// next message (§6.1). They must not block.
	StreamOpened func(local, remote netip.AddrPort)
	StreamClosed func(local, remote netip.AddrPort, err error)
	// KernelESP hands every stream to the kernel's espintcp ULP (Linux
	// 5.6+, CONFIG_INET_ESPINTCP) right after its prefix: the kernel
	// XFRM states of the SAs on the stream find it by its addresses and
	// ports, send their ESP on it and take the peer's ESP out of it; IKE
	// messages still come and go through this Bind, whole (tcpkernel.go).
	// SendESP then fails. Check ProbeKernelESP first.
	KernelESP bool
	// Control, when set, runs on every socket before it listens or
	// connects: the kernel data plane's IPsec bypass policy and mark, so
	// that the stream's own packets never enter a tunnel (accepted
	// sockets inherit both from their listener).
	Control func(fd uintptr) error
	// PinIface, when set, keeps a stream Send opens through an interface
	// on it by a firewall mark (the returned one, on the socket) instead
	// of SO_BINDTODEVICE: the kernel's espintcp never finds a socket
	// bound to a device (xfrm.Kernel.PinStream). release runs when the
	// stream is gone.
	PinIface func(iface string, local, remote netip.Addr) (mark uint32, release func(), err error)

	mu        sync.Mutex
	listeners []*net.TCPListener
	byRemote  map[netip.AddrPort][]*tcpStream
	perAddr   map[netip.Addr]int // accepted streams per source address
	accepted  map[netip.AddrPort]time.Time
	n         int // streams open
	open      bool
	closed    bool

	headroom, batch int
	rx              chan rxFrame
	done            chan struct{}
	ctx             context.Context
	cancel          context.CancelFunc
	bufs            sync.Pool
	wg              sync.WaitGroup
	stats           tcpCounters
}

var _ Bind = (*TCP)(nil)

// TCPStats are the Bind's counters since it was made.
type TCPStats struct {
	Accepted, Opened     uint64 // streams accepted, and opened by Send
	RefusedPerAddr       uint64 // accepts over MaxStreamsPerAddr
	RefusedTotal         uint64 // accepts over MaxStreams
	Open                 uint64 // streams open now
	Closed               uint64 // streams closed, for whatever reason
	FramingErrors        uint64 // closed on a bad prefix or Length (§3.1, §4)
	FirstMessageTimeouts uint64 // closed without a whole message in time
	IdleTimeouts         uint64
	WriteErrors          uint64 // closed by a failed or timed-out write
}

type tcpCounters struct {
	accepted, opened, refusedPerAddr, refusedTotal, closed atomic.Uint64
	framing, firstTimeouts, idleTimeouts, writeErrors      atomic.Uint64
}

// Stats returns the counters.
func (t *TCP) Stats() TCPStats {
	c := &t.stats
	t.mu.Lock()
	open := t.n
	t.mu.Unlock()
	return TCPStats{Open: uint64(max(open, 0)),
		Accepted: c.accepted.Load(), Opened: c.opened.Load(),
		RefusedPerAddr: c.refusedPerAddr.Load(), RefusedTotal: c.refusedTotal.Load(),
		Closed: c.closed.Load(), FramingErrors: c.framing.Load(),
		FirstMessageTimeouts: c.firstTimeouts.Load(), IdleTimeouts: c.idleTimeouts.Load(),
		WriteErrors: c.writeErrors.Load(),
	}
}

func orDefault[T int | time.Duration](v, d T) T {
	if v > 0 {
		return v
	}
	return d
}

// rxFrame is one received message in its own buffer, for the
// ReceiveFunc.
type rxFrame struct {
	kind          Kind
	buf           *[]byte
	off, n        int
	local, remote netip.AddrPort
}

// Listen listens on addr and port (0: a free port, which it returns;
// RFC 9329 §2 wants DefaultTCPPort among them).
func (t *TCP) Listen(addr netip.Addr, port uint16) (uint16, error) {
	network := "tcp4"
	if addr.Is6() {
		network = "tcp6"
	}
	lc := net.ListenConfig{Control: t.control}
	ln, err := lc.Listen(context.Background(), network, netip.AddrPortFrom(addr, port).String())
	if err != nil {
		return 0, fmt.Errorf("listening on TCP %v: %w", netip.AddrPortFrom(addr, port), err)
	}
	l := ln.(*net.TCPListener)
	t.mu.Lock()
	t.listeners = append(t.listeners, l)
	t.mu.Unlock()
	return l.Addr().(*net.TCPAddr).AddrPort().Port(), nil
}

// control runs Control, when set, as a net.Dialer or net.ListenConfig
// Control function.
func (t *TCP) control(_, _ string, rc syscall.RawConn) error {
	if t.Control == nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = t.Control(fd) }); err != nil {
		return err
	}
	return serr
}

// Open starts accepting and returns the one ReceiveFunc, fed by every
// stream's reader.
func (t *TCP) Open(espHeadroom int) ([]ReceiveFunc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open || t.closed {
		return nil, errors.New("TCP Bind opened twice")
	}
	t.open = true
	t.headroom, t.batch = espHeadroom, ikeBatch
	if espHeadroom > 0 {
		t.batch = espBatch
	}
	t.rx = make(chan rxFrame, tcpRxQueue)
	t.done = make(chan struct{})
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.byRemote = map[netip.AddrPort][]*tcpStream{}
	t.perAddr = map[netip.Addr]int{}
	t.accepted = map[netip.AddrPort]time.Time{}
	size := espHeadroom + MaxDatagram
	t.bufs.New = func() any { b := make([]byte, size); return &b }
	for _, l := range t.listeners {
		t.wg.Add(1)
		go t.acceptLoop(l)
	}
	return []ReceiveFunc{t.receiveFunc()}, nil
}

// BatchSize is the ReceiveFunc's batch.
func (t *TCP) BatchSize() int { return max(t.batch, ikeBatch) }

func (t *TCP) receiveFunc() ReceiveFunc {
	var held []*[]byte // the buffers of the last batch
	return func(pkts []Packet) (int, error) {
		if len(pkts) == 0 {
			return 0, nil
		}
		for _, b := range held {
			t.bufs.Put(b)
		}
		held = held[:0]
		var f rxFrame
		select {
		case f = <-t.rx:
		case <-t.done:
			return 0, net.ErrClosed
		}
		n := 0
	batch:
		for {
			pkts[n] = Packet{Kind: f.kind, Buf: *f.buf, Off: f.off, N: f.n, Local: f.local, Remote: f.remote, NATT: true, TCP: true}
			held = append(held, f.buf)
			n++
			if n == len(pkts) {
				break
			}
			select {
			case f = <-t.rx:
			default:
				break batch
			}
		}
		return n, nil
	}
}

func (t *TCP) acceptLoop(l *net.TCPListener) {
	defer t.wg.Done()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or the like: the caps keep us below
			// them, but never spin.
			select {
			case <-t.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		t.adopt(c)
	}
}

// adopt takes an accepted connection, or refuses it over a cap.
func (t *TCP) adopt(c *net.TCPConn) {
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	// The deadline runs from the accept, whatever arrives (slowloris).
	c.SetReadDeadline(time.Now().Add(orDefault(t.FirstMessageTimeout, DefaultTCPFirstMessageTimeout)))
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		c.Close()
		return
	case t.n >= orDefault(t.MaxStreams, DefaultTCPMaxStreams):
		t.mu.Unlock()
		t.stats.refusedTotal.Add(1)
		c.Close()
		return
	case t.perAddr[remote.Addr()] >= orDefault(t.MaxStreamsPerAddr, DefaultTCPMaxStreamsPerAddr):
		t.mu.Unlock()
		t.stats.refusedPerAddr.Add(1)
		c.Close()
		return
	}
	s := t.newStream(local, remote, "", true)
	s.conn = c
	t.perAddr[remote.Addr()]++
	t.wg.Add(2)
	t.mu.Unlock()
	t.stats.accepted.Add(1)
	if t.KernelESP {
		go s.readLoopKernel()
	} else {
		go s.readLoop()
	}
	go s.writeLoop()
	if t.StreamOpened != nil {
		t.StreamOpened(local, remote)
	}
}

// newStream registers a stream; t.mu is held.
func (t *TCP) newStream(local, remote netip.AddrPort, iface string, accepted bool) *tcpStream {
	s := &tcpStream{t: t, local: local, remote: remote, iface: iface, accepted: accepted,
		wake: make(chan struct{}, 1), done: make(chan struct{}), kernelReady: make(chan struct{})}
	t.byRemote[remote] = append(t.byRemote[remote], s)
	t.n++
	return s
}

// Send frames the IKE message msg (RFC 9329 §3.1) and queues it on the
// stream between local and remote; with none, it opens one from local's
// address (any port: §2) through iface when set, unless remote opened
// its last stream to us (ErrNoStream: only the TCP Originator opens
// streams, §6.1). It does not wait for the stream: an error of opening
// or writing comes through StreamClosed. A stream that closes as Send
// finds it fails it with net.ErrClosed; the next Send opens anew.
func (t *TCP) Send(msg []byte, local, remote netip.AddrPort, iface string) error {
	b, err := AppendTCPIKE(make([]byte, 0, tcpLenLen+wire.NonESPMarkerLen+len(msg)), msg)
	if err != nil {
		return err
	}
	return t.send(b, local, remote, iface, true)
}

// SendESP frames the ESP packet pkt, from its SPI on (RFC 9329 §3.2),
// and queues it on the stream between local and remote: the userspace
// data plane's way out for SAs on a TCP path (dataplane.LinuxConfig.TCP).
// It copies pkt; a full queue fails with ErrQueueFull, which the data
// plane counts as a send drop. It never opens a stream (ErrNoStream):
// IKE does, on the path MOBIKE chose (ike.Engine.StreamClosed).
func (t *TCP) SendESP(pkt []byte, local, remote netip.AddrPort) error {
	if t.KernelESP {
		return errKernelESP
	}
	b, err := AppendTCPESP(make([]byte, 0, tcpLenLen+len(pkt)), pkt)
	if err != nil {
		return err
	}
	return t.send(b, local, remote, "", false)
}

// SendKeepalive sends nothing: NAT keepalives SHOULD NOT be sent over
// TCP, whose mappings NATs keep longer (RFC 9329 §6.6).
func (t *TCP) SendKeepalive(local, remote netip.AddrPort, iface string) error { return nil }

func (t *TCP) send(frame []byte, local, remote netip.AddrPort, iface string, dial bool) error {
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return net.ErrClosed
	}
	if !t.open {
		t.mu.Unlock()
		return ErrNotOpen
	}
	s := t.find(local, remote)
	if s == nil {
		if !dial {
			t.mu.Unlock()
			return ErrNoStream
		}
		if at, ok := t.accepted[remote]; ok && time.Since(at) < acceptedMemory {
			t.mu.Unlock()
			return ErrNoStream
		}
		if t.n >= orDefault(t.MaxStreams, DefaultTCPMaxStreams) {
			t.mu.Unlock()
			return ErrTooManyStreams
		}
		s = t.newStream(local, remote, iface, false)
		t.wg.Add(1)
		go s.writeLoop() // opens the stream, then starts its reader
	}
	t.mu.Unlock()
	return s.enqueue(frame)
}

// find is the stream to send on from local to remote: the one with the
// very same addresses, else one from local's address (an opened
// stream's port is the kernel's choice), else any when local has no
// address; the newest wins (RFC 9329 §6.1: one stream per IKE SA). t.mu
// is held.
func (t *TCP) find(local, remote netip.AddrPort) *tcpStream {
	ss := t.byRemote[remote]
	for i := len(ss) - 1; i >= 0; i-- {
		if ss[i].local == local && !ss[i].isDraining() {
			return ss[i]
		}
	}
	for i := len(ss) - 1; i >= 0; i-- {
		a := local.Addr()
		if (!a.IsValid() || a.IsUnspecified() || ss[i].local.Addr() == a) && !ss[i].isDraining() {
			return ss[i]
		}
	}
	return nil
}

// CloseStream closes the streams from local's address to remote: the
// TCP Originator's old stream after a MOBIKE move, or one no SA uses any
// more (RFC 9329 §6.1, §7.1). What is queued on them is written first
// (the response to the peer's Delete that ended the last SA), within
// WriteTimeout; nothing more is queued on them, and a Send opens a new
// stream.
func (t *TCP) CloseStream(local, remote netip.AddrPort) {
	t.mu.Lock()
	var ss []*tcpStream
	for _, s := range t.byRemote[netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())] {
		if s.local.Addr() == local.Addr().Unmap() {
			ss = append(ss, s)
		}
	}
	t.mu.Unlock()
	for _, s := range ss {
		s.drain()
	}
}

// Close closes the listeners and every stream; the ReceiveFunc returns
// net.ErrClosed.
func (t *TCP) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	var errs error
	for _, l := range t.listeners {
		errs = errors.Join(errs, l.Close())
	}
	var ss []*tcpStream
	for _, rs := range t.byRemote {
		ss = append(ss, rs...)
	}
	if t.open {
		close(t.done)
		t.cancel()
	}
	t.mu.Unlock()
	for _, s := range ss {
		s.close(net.ErrClosed)
	}
	t.wg.Wait()
	return errs
}

// tcpStream is one TCP connection: a reader goroutine feeding the
// Bind's ReceiveFunc and a writer goroutine draining its queue.
type tcpStream struct {
	t        *TCP
	accepted bool // the peer opened it; else Send did
	iface    string
	// local (the kernel's port once an opened stream is connected) and
	// remote; local changes under t.mu.
	local, remote netip.AddrPort
	conn          *net.TCPConn // set before the reader starts

	mu     sync.Mutex
	queue  [][]byte
	queued int
	closed bool
	// draining: closes once its queue is written (CloseStream); Send
	// no longer finds it.
	draining bool
	wake     chan struct{}
	done     chan struct{}
	// kernelReady is closed once the kernel frames the stream
	// (KernelESP): nothing is written before.
	kernelReady chan struct{}
	unpin       func() // PinIface's release, set before the stream connects
}

func (s *tcpStream) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

func (s *tcpStream) enqueue(frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed || s.draining:
		return net.ErrClosed
	case s.queued+len(frame) > orDefault(s.t.MaxQueued, DefaultTCPMaxQueued):
		return ErrQueueFull
	}
	s.queue = append(s.queue, frame)
	s.queued += len(frame)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// drain closes the stream once what is queued is written.
func (s *tcpStream) drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close ends the stream once: unregisters it, closes the connection
// (which ends its goroutines) and reports why.
func (s *tcpStream) close(why error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.queue, s.queued = nil, 0
	close(s.done)
	s.mu.Unlock()
	t := s.t
	t.mu.Lock()
	ss := t.byRemote[s.remote]
	for i, o := range ss {
		if o == s {
			ss = append(ss[:i], ss[i+1:]...)
			break
		}
	}
	if len(ss) == 0 {
		delete(t.byRemote, s.remote)
	} else {
		t.byRemote[s.remote] = ss
	}
	t.n--
	if s.accepted {
		a := s.remote.Addr()
		if t.perAddr[a]--; t.perAddr[a] <= 0 {
			delete(t.perAddr, a)
		}
		t.remember(s.remote)
	}
	local, c, unpin := s.local, s.conn, s.unpin
	t.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if unpin != nil {
		unpin()
	}
	t.stats.closed.Add(1)
	if t.StreamClosed != nil {
		t.StreamClosed(local, s.remote, why)
	}
}

// remember notes the remote of a closed accepted stream, which Send
// then does not dial; the table is pruned as it grows and holds at most
// four times MaxStreams. t.mu is held.
func (t *TCP) remember(remote netip.AddrPort) {
	limit := 4 * orDefault(t.MaxStreams, DefaultTCPMaxStreams)
	if len(t.accepted) >= limit {
		for r, at := range t.accepted {
			if time.Since(at) >= acceptedMemory {
				delete(t.accepted, r)
			}
		}
	}
	if len(t.accepted) < limit {
		t.accepted[remote] = time.Now()
	}
}

// readLoop reads the stream's frames into the Bind's queue until the
// stream fails or closes.
func (s *tcpStream) readLoop() {
	t := s.t
	defer t.wg.Done()
	fr := NewFrameReader(s.conn, s.accepted)
	first := s.accepted // the deadline adopt set is running
	idle := orDefault(t.IdleTimeout, DefaultTCPIdleTimeout)
	for {
		if !first {
			s.conn.SetReadDeadline(time.Now().Add(idle))
		}
		kind, b, err := fr.Next()
		if err != nil {
			s.close(t.readFailed(err, first))
			return
		}
		if kind == IKE || kind == ESP {
			first = false // a keepalive or a stray octet proves nothing
		}
		buf := t.bufs.Get().(*[]byte)
		f := rxFrame{kind: kind, buf: buf, off: t.headroom, n: copy((*buf)[t.headroom:], b), local: s.local, remote: s.remote}
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

// readFailed counts why a stream's read failed and names it: a framing
// error (§3.1, §4), no whole message before the first-message deadline,
// or an idle stream.
func (t *TCP) readFailed(err error, first bool) error {
	var ne net.Error
	switch {
	case errors.Is(err, ErrTCPPrefix) || errors.Is(err, ErrTCPLength):
		t.stats.framing.Add(1)
	case errors.As(err, &ne) && ne.Timeout() && first:
		t.stats.firstTimeouts.Add(1)
		return errFirstMessage
	case errors.As(err, &ne) && ne.Timeout():
		t.stats.idleTimeouts.Add(1)
		return errIdle
	}
	return err
}

// writeLoop opens the stream when Send made it, then writes what is
// queued, each time within WriteTimeout.
func (s *tcpStream) writeLoop() {
	t := s.t
	defer t.wg.Done()
	var prefix []byte
	if !s.accepted {
		c, err := s.dial()
		if err != nil {
			s.close(err)
			return
		}
		l := c.LocalAddr().(*net.TCPAddr).AddrPort()
		t.mu.Lock()
		s.conn, s.local = c, netip.AddrPortFrom(l.Addr().Unmap(), l.Port())
		s.mu.Lock()
		gone := t.closed || s.closed // closed while it was being opened
		s.mu.Unlock()
		if !gone {
			t.wg.Add(1) // the reader; before Close can Wait
		}
		t.mu.Unlock()
		if gone {
			c.Close()
			return
		}
		t.stats.opened.Add(1)
		if t.KernelESP {
			// The prefix, then the ULP: from then on the kernel
			// frames what we write (tcpkernel.go).
			if err := s.startKernel(); err != nil {
				t.stats.writeErrors.Add(1)
				t.wg.Done() // the reader that will not run
				s.close(err)
				return
			}
			go s.readLoopKernel()
		} else {
			go s.readLoop()
			// The prefix goes first, once, on every stream we open
			// (§4, §6.1).
			prefix = []byte(TCPPrefix)
		}
		if t.StreamOpened != nil {
			t.StreamOpened(s.local, s.remote)
		}
	}
	if t.KernelESP && s.accepted {
		select {
		case <-s.kernelReady:
		case <-s.done:
			return
		}
	}
	timeout := orDefault(t.WriteTimeout, DefaultTCPWriteTimeout)
	for {
		if prefix == nil {
			select {
			case <-s.done:
				return
			case <-s.wake:
			}
		}
		s.mu.Lock()
		bufs := net.Buffers(s.queue)
		s.queue, s.queued = nil, 0
		draining := s.draining
		s.mu.Unlock()
		if prefix != nil {
			bufs = append(net.Buffers{prefix}, bufs...)
			prefix = nil
		}
		if len(bufs) == 0 {
			if draining {
				s.close(net.ErrClosed) // everything queued is written
				return
			}
			continue
		}
		s.conn.SetWriteDeadline(time.Now().Add(timeout))
		if err := s.write(bufs); err != nil {
			t.stats.writeErrors.Add(1)
			s.close(err)
			return
		}
		if draining {
			s.close(net.ErrClosed) // nothing is queued after a drain
			return
		}
	}
}

// dial opens the stream from the stream's local address through its
// interface, when set (SO_BINDTODEVICE, as MOBIKE pins a path).
func (s *tcpStream) dial() (*net.TCPConn, error) {
	d := net.Dialer{Timeout: orDefault(s.t.DialTimeout, DefaultTCPDialTimeout)}
	if a := s.local.Addr(); a.IsValid() && !a.IsUnspecified() {
		d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
	}
	iface := s.iface
	var mark uint32
	if iface != "" && s.t.PinIface != nil {
		m, release, err := s.t.PinIface(iface, s.local.Addr(), s.remote.Addr())
		if err != nil {
			return nil, err
		}
		// close releases it, or we do when close came first.
		s.t.mu.Lock()
		s.mu.Lock()
		gone := s.closed
		s.mu.Unlock()
		if !gone {
			s.unpin = release
		}
		s.t.mu.Unlock()
		if gone {
			release()
			return nil, net.ErrClosed
		}
		mark = m
	}
	d.Control = func(network, address string, rc syscall.RawConn) error {
		if err := s.t.control(network, address, rc); err != nil {
			return err
		}
		if iface == "" {
			return nil
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			if mark != 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
			} else {
				serr = unix.BindToDevice(int(fd), iface)
			}
		}); err != nil {
			return err
		}
		return serr
	}
	c, err := d.DialContext(s.t.ctx, "tcp", s.remote.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
