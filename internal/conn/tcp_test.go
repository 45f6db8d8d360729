package conn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// patience bounds every wait in these tests: far beyond what any step
// needs, so a loaded machine slows them and never fails them.
const patience = 30 * time.Second

var lo = netip.MustParseAddr("127.0.0.1")

// receiver collects what a Bind's ReceiveFunc returns, copied, until it
// returns an error.
type receiver struct {
	mu   sync.Mutex
	pkts []Packet
	err  error
	more chan struct{}
	done chan struct{}
}

func receive(t *testing.T, b Bind, headroom int) *receiver {
	t.Helper()
	fns, err := b.Open(headroom)
	if err != nil || len(fns) != 1 {
		t.Fatalf("Open: %d ReceiveFuncs, %v", len(fns), err)
	}
	r := &receiver{more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		pkts := make([]Packet, b.BatchSize())
		for {
			n, err := fns[0](pkts)
			r.mu.Lock()
			if err != nil {
				r.err = err
				r.mu.Unlock()
				return
			}
			for _, p := range pkts[:n] {
				p.Buf = bytes.Clone(p.Buf)
				r.pkts = append(r.pkts, p)
			}
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

// wait returns the first n packets once they came.
func (r *receiver) wait(t *testing.T, n int) []Packet {
	t.Helper()
	deadline := time.After(patience)
	for {
		r.mu.Lock()
		if len(r.pkts) >= n {
			out := r.pkts[:n]
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("%d packets, want %d", len(r.pkts), n)
		}
	}
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pkts)
}

// eventually waits for cond, polling.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// responder is a TCP Bind listening on a free loopback port.
func responder(t *testing.T, set func(*TCP)) (*TCP, netip.AddrPort) {
	t.Helper()
	b := new(TCP)
	if set != nil {
		set(b)
	}
	port, err := b.Listen(lo, 0)
	if err != nil {
		t.Fatalf("no loopback listener: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, netip.AddrPortFrom(lo, port)
}

// rawDial opens a stream to addr from the given local address, as a peer
// that frames by hand would.
func rawDial(t *testing.T, from netip.Addr, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}, Timeout: patience}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// closedByPeer waits until the peer closed c: a read returns an error
// (EOF or a reset) and not data.
func closedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(patience))
	var b [64]byte
	n, err := c.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("stream not closed: read %d octets, %v", n, err)
	}
}

func ikeFrame(msg []byte) []byte { return mustFrame(AppendTCPIKE(nil, msg)) }

// RFC 9329 §3, §4, §6.1: the initiating Bind opens a stream on its first
// Send, with the prefix, and both Binds then carry IKE and ESP each way
// over it; received ESP has Open's headroom before it, the packets the
// stream's addresses, and SendKeepalive sends nothing (§6.6).
func TestTCPExchangeRFC9329(t *testing.T) {
	const headroom = 40
	resp, addr := responder(t, nil)
	rr := receive(t, resp, headroom)
	init := new(TCP)
	defer init.Close()
	ir := receive(t, init, headroom)

	ike := bytes.Repeat([]byte{0x21}, 200)
	esp := append([]byte{0xca, 0xfe, 0, 1}, bytes.Repeat([]byte{9}, 1400)...)
	if err := init.SendKeepalive(netip.AddrPortFrom(lo, 0), addr, ""); err != nil {
		t.Fatal(err)
	}
	if err := init.Send(ike, netip.AddrPortFrom(lo, 4500), addr, ""); err != nil {
		t.Fatal(err)
	}
	// ESP never opens a stream (IKE does, on its path): to another
	// port there is none.
	if err := init.SendESP(esp, netip.AddrPortFrom(lo, 4500), netip.AddrPortFrom(addr.Addr(), addr.Port()+1)); !errors.Is(err, ErrNoStream) {
		t.Fatalf("ESP with no stream: %v, want ErrNoStream", err)
	}
	if err := init.SendESP(esp, netip.AddrPortFrom(lo, 4500), addr); err != nil {
		t.Fatal(err)
	}
	got := rr.wait(t, 2)
	if got[0].Kind != IKE || !bytes.Equal(got[0].Data(), ike) || got[1].Kind != ESP || !bytes.Equal(got[1].Data(), esp) ||
		got[1].Off != headroom || !got[0].NATT || !got[0].TCP || !got[1].TCP {
		t.Fatalf("responder got %v %d octets, %v %d octets at %d", got[0].Kind, got[0].N, got[1].Kind, got[1].N, got[1].Off)
	}
	if got[0].Local != addr || got[0].Remote.Addr() != lo || got[0].Remote.Port() == 0 || got[1].Remote != got[0].Remote {
		t.Fatalf("responder's packets from %v to %v", got[0].Remote, got[0].Local)
	}
	// The responder answers where the request came from, on the same
	// stream: no second stream opens.
	peer := got[0].Remote
	if err := resp.Send(ike[:50], got[0].Local, peer, ""); err != nil {
		t.Fatal(err)
	}
	if err := resp.SendESP(esp[:100], got[0].Local, peer); err != nil {
		t.Fatal(err)
	}
	back := ir.wait(t, 2)
	if back[0].Kind != IKE || !bytes.Equal(back[0].Data(), ike[:50]) || back[1].Kind != ESP || !bytes.Equal(back[1].Data(), esp[:100]) {
		t.Fatalf("initiator got %v, %v", back[0].Kind, back[1].Kind)
	}
	if back[0].Remote != addr || back[0].Local != peer {
		t.Fatalf("initiator's packets from %v to %v, want from %v to %v", back[0].Remote, back[0].Local, addr, peer)
	}
	// And the initiator's next message, named with the addresses it
	// received on, takes the same stream.
	if err := init.Send(ike, back[0].Local, addr, ""); err != nil {
		t.Fatal(err)
	}
	if p := rr.wait(t, 3)[2]; p.Remote != peer {
		t.Errorf("a second stream from %v", p.Remote)
	}
	if s := init.Stats(); s.Opened != 1 {
		t.Errorf("initiator opened %d streams", s.Opened)
	}
	if s := resp.Stats(); s.Accepted != 1 {
		t.Errorf("responder accepted %d streams", s.Accepted)
	}
	if err := init.SendESP([]byte{0, 0, 0, 0, 1}, back[0].Local, addr); err != ErrZeroSPI {
		t.Errorf("ESP with SPI 0: %v (RFC 9329 §3.2)", err)
	}
}

// RFC 9329 §3, §6.1: the responder waits for the whole prefix, keeps a
// message split across many writes, takes several from one write,
// ignores an empty frame and sorts a keepalive as one (§6.6).
func TestTCPSplitAndCoalescedRFC9329Section3(t *testing.T) {
	resp, addr := responder(t, nil)
	rr := receive(t, resp, 0)
	c := rawDial(t, lo, addr)
	msg := bytes.Repeat([]byte{0x33}, 500)
	first := append([]byte(TCPPrefix), ikeFrame(msg)...)
	for i := range first { // one octet per write
		if _, err := c.Write(first[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	var many []byte
	for i := range 5 {
		many = append(many, ikeFrame([]byte{byte(i), 1, 2, 3})...)
		many = append(many, 0, 2) // empty, ignored (§3)
	}
	many = append(many, 0, 3, 0xff) // keepalive (§6.6)
	if _, err := c.Write(many); err != nil {
		t.Fatal(err)
	}
	got := rr.wait(t, 7)
	if got[0].Kind != IKE || !bytes.Equal(got[0].Data(), msg) {
		t.Errorf("the split message: %v, %d octets", got[0].Kind, got[0].N)
	}
	for i := range 5 {
		if p := got[1+i]; p.Kind != IKE || !bytes.Equal(p.Data(), []byte{byte(i), 1, 2, 3}) {
			t.Errorf("message %d of one write: %v %x", i, p.Kind, p.Data())
		}
	}
	if got[6].Kind != Keepalive {
		t.Errorf("keepalive came as %v", got[6].Kind)
	}
}

// RFC 9329 §4, §6.1, §3.1: a stream that does not begin with the
// prefix, or carries a Length of 0 or 1, is closed.
func TestTCPFramingErrorsCloseRFC9329(t *testing.T) {
	resp, addr := responder(t, nil)
	rr := receive(t, resp, 0)
	for _, s := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		append([]byte(TCPPrefix), 0, 1),
		append([]byte(TCPPrefix), 0, 0, 0, 0),
	} {
		c := rawDial(t, lo, addr)
		if _, err := c.Write(s); err != nil {
			t.Fatal(err)
		}
		closedByPeer(t, c)
	}
	eventually(t, "three framing errors counted", func() bool { return resp.Stats().FramingErrors == 3 })
	if n := rr.count(); n != 0 {
		t.Errorf("%d packets from broken streams", n)
	}
}

// Issue 17 item 4 (slowloris): a stream that trickles one octet at a
// time is closed at the first-message deadline, which the octets do
// not move, while its message is still incomplete.
func TestTCPSlowWriterClosedAtFirstMessageDeadline(t *testing.T) {
	resp, addr := responder(t, func(b *TCP) { b.FirstMessageTimeout = 300 * time.Millisecond })
	rr := receive(t, resp, 0)
	c := rawDial(t, lo, addr)
	s := append([]byte(TCPPrefix), ikeFrame(make([]byte, 1000))...)
	closed := make(chan struct{})
	go func() { closedByPeer(t, c); close(closed) }()
	sent := 0
	for ; sent < len(s); sent++ {
		select {
		case <-closed:
		case <-time.After(20 * time.Millisecond):
			c.Write(s[sent : sent+1])
			continue
		}
		break
	}
	if sent == len(s) {
		t.Fatal("the whole message trickled in before the stream was closed")
	}
	eventually(t, "first-message timeout counted", func() bool { return resp.Stats().FirstMessageTimeouts == 1 })
	if rr.count() != 0 {
		t.Error("a packet from the slow stream")
	}
}

// Issue 17 item 4: past the first message, a stream with nothing for
// IdleTimeout is closed (RFC 9329 §6.1 lets the responder close it).
func TestTCPIdleStreamClosed(t *testing.T) {
	resp, addr := responder(t, func(b *TCP) { b.IdleTimeout = 200 * time.Millisecond })
	rr := receive(t, resp, 0)
	c := rawDial(t, lo, addr)
	if _, err := c.Write(append([]byte(TCPPrefix), ikeFrame([]byte{1, 2, 3, 4})...)); err != nil {
		t.Fatal(err)
	}
	rr.wait(t, 1)
	closedByPeer(t, c)
	if s := resp.Stats(); s.IdleTimeouts != 1 {
		t.Errorf("%d idle timeouts", s.IdleTimeouts)
	}
}

// Issue 17 item 4 (connection flood): the stream over the per-address
// cap is refused while another address still connects, and the total
// cap refuses every address.
func TestTCPStreamCaps(t *testing.T) {
	resp, addr := responder(t, func(b *TCP) { b.MaxStreamsPerAddr = 2; b.MaxStreams = 3 })
	rr := receive(t, resp, 0)
	hello := append([]byte(TCPPrefix), ikeFrame([]byte{1, 2, 3, 4})...)
	var kept []*net.TCPConn
	for i := range 2 {
		c := rawDial(t, lo, addr)
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		rr.wait(t, i+1) // accepted and read before the next comes
		kept = append(kept, c)
	}
	over := rawDial(t, lo, addr)
	closedByPeer(t, over)
	if s := resp.Stats(); s.RefusedPerAddr != 1 {
		t.Errorf("refused per address: %d", s.RefusedPerAddr)
	}
	other := netip.MustParseAddr("127.0.0.2")
	c := rawDial(t, other, addr)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	if p := rr.wait(t, 3)[2]; p.Remote.Addr() != other {
		t.Errorf("third message from %v", p.Remote)
	}
	closedByPeer(t, rawDial(t, netip.MustParseAddr("127.0.0.3"), addr))
	if s := resp.Stats(); s.RefusedTotal != 1 || s.Accepted != 3 {
		t.Errorf("refused over the total %d, accepted %d", s.RefusedTotal, s.Accepted)
	}
	// A slot freed is a slot to take again.
	kept[0].Close()
	eventually(t, "the closed stream's slot freed", func() bool { return resp.Stats().Closed == 1 })
	c = rawDial(t, lo, addr)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	rr.wait(t, 4)
}

// Issue 17 item 4: a peer that does not read fills its stream's queue,
// and Send then fails with ErrQueueFull instead of buffering without
// end; the write that cannot finish closes the stream.
func TestTCPPeerThatDoesNotRead(t *testing.T) {
	resp, addr := responder(t, func(b *TCP) { b.WriteTimeout = 300 * time.Millisecond })
	rr := receive(t, resp, 0)
	c := rawDial(t, lo, addr)
	if err := c.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(append([]byte(TCPPrefix), ikeFrame([]byte{1, 2, 3, 4})...)); err != nil {
		t.Fatal(err)
	}
	p := rr.wait(t, 1)[0]
	msg := make([]byte, 8000)
	full := 0
	for deadline := time.Now().Add(patience); resp.Stats().WriteErrors == 0; {
		switch err := resp.Send(msg, p.Local, p.Remote, ""); err {
		case nil:
		case ErrQueueFull:
			full++
			time.Sleep(time.Millisecond)
		case ErrNoStream, net.ErrClosed: // closed between the check and the Send
		default:
			t.Fatalf("sending to a peer that does not read: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream never closed by its stuck write")
		}
	}
	if full == 0 {
		t.Error("the queue never filled")
	}
	// The peer opened the stream; the responder does not open another
	// (RFC 9329 §6.1).
	if err := resp.Send(msg, p.Local, p.Remote, ""); err != ErrNoStream {
		t.Errorf("after the stream closed: %v, want ErrNoStream", err)
	}
}

// RFC 9329 §6.1: when the peer breaks the stream, StreamClosed says so,
// and the initiator's next Send opens a new stream, prefix first.
func TestTCPInitiatorReopensRFC9329Section6_1(t *testing.T) {
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr).AddrPort()
	lost := make(chan error, 1)
	init := &TCP{StreamClosed: func(_, remote netip.AddrPort, err error) {
		select {
		case lost <- err:
		default:
		}
	}}
	defer init.Close()
	receive(t, init, 0)
	want := append([]byte(TCPPrefix), ikeFrame([]byte{5, 6, 7, 8})...)
	for i := range 2 {
		if err := init.Send([]byte{5, 6, 7, 8}, netip.AddrPortFrom(lo, 0), addr, ""); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		l.SetDeadline(time.Now().Add(patience))
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		c.SetReadDeadline(time.Now().Add(patience))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("stream %d began %x (%v), want %x", i, got, err, want)
		}
		c.Close() // the peer breaks it
		select {
		case <-lost:
		case <-time.After(patience):
			t.Fatalf("stream %d: its loss never reported", i)
		}
	}
	if s := init.Stats(); s.Opened != 2 {
		t.Errorf("%d streams opened", s.Opened)
	}
}

// Close ends the ReceiveFunc with net.ErrClosed and closes the streams;
// Send afterwards fails.
func TestTCPClose(t *testing.T) {
	resp, addr := responder(t, nil)
	rr := receive(t, resp, 0)
	c := rawDial(t, lo, addr)
	if _, err := c.Write(append([]byte(TCPPrefix), ikeFrame([]byte{1, 2, 3, 4})...)); err != nil {
		t.Fatal(err)
	}
	p := rr.wait(t, 1)[0]
	if err := resp.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rr.done:
	case <-time.After(patience):
		t.Fatal("ReceiveFunc still waiting after Close")
	}
	if rr.err != net.ErrClosed {
		t.Errorf("ReceiveFunc: %v, want net.ErrClosed", rr.err)
	}
	closedByPeer(t, c)
	if err := resp.Send([]byte{1}, p.Local, p.Remote, ""); err != net.ErrClosed {
		t.Errorf("Send after Close: %v", err)
	}
}

// A stream opened for a path MOBIKE pinned leaves through its interface
// (SO_BINDTODEVICE, as the UDP Bind pins one with packet info); an
// interface that does not exist fails the opening, which StreamClosed
// reports.
func TestTCPOpensThroughInterface(t *testing.T) {
	resp, addr := responder(t, nil)
	rr := receive(t, resp, 0)
	lost := make(chan error, 1)
	init := &TCP{StreamClosed: func(_, _ netip.AddrPort, err error) {
		select {
		case lost <- err:
		default:
		}
	}}
	defer init.Close()
	receive(t, init, 0)
	if err := init.Send([]byte{1, 2, 3, 4}, netip.AddrPortFrom(lo, 0), addr, "lo"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("SO_BINDTODEVICE not allowed here: %v", err)
		}
		t.Fatalf("opening through lo: %v", err)
	case <-rr.more:
	case <-time.After(patience):
		t.Fatal("nothing through lo")
	}
	if err := init.Send([]byte{1, 2, 3, 4}, netip.AddrPortFrom(lo, 0), netip.AddrPortFrom(lo, 9), "no-such-if0"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if err == nil {
			t.Error("closed without a reason")
		}
	case <-time.After(patience):
		t.Fatal("opening through a missing interface never failed")
	}
}

// RFC 9329 §6.1, §7.1: CloseStream writes what is queued on the stream
// (the last response before the Originator lets it go) and then closes
// it; a Send after it opens a new stream with its own prefix.
func TestTCPCloseStreamWritesQueuedFirst(t *testing.T) {
	resp, addr := responder(t, nil)
	rr := receive(t, resp, 0)
	init := new(TCP)
	closed := make(chan error, 4)
	init.StreamClosed = func(_, _ netip.AddrPort, err error) { closed <- err }
	defer init.Close()
	receive(t, init, 0)
	local := netip.AddrPortFrom(lo, 4500)
	last := bytes.Repeat([]byte{0x2a}, 3000)
	for i := range 20 {
		if err := init.Send(append([]byte{byte(i)}, last...), local, addr, ""); err != nil {
			t.Fatal(err)
		}
	}
	init.CloseStream(local, addr)
	if err := init.SendESP([]byte{1, 2, 3, 4, 5}, local, addr); !errors.Is(err, ErrNoStream) {
		t.Fatalf("ESP after CloseStream: %v, want ErrNoStream (a closing stream is not found)", err)
	}
	got := rr.wait(t, 20)
	for i, p := range got {
		if p.Data()[0] != byte(i) || p.N != len(last)+1 {
			t.Fatalf("message %d: %d octets starting %d", i, p.N, p.Data()[0])
		}
	}
	select {
	case err := <-closed:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("stream closed with %v", err)
		}
	case <-time.After(patience):
		t.Fatal("the stream did not close after its queue was written")
	}
	if err := init.Send([]byte("again"), local, addr, ""); err != nil {
		t.Fatal(err)
	}
	if got := rr.wait(t, 21)[20]; string(got.Data()) != "again" || got.Remote == got.Local {
		t.Fatalf("after CloseStream: %q", got.Data())
	}
	if st := init.Stats(); st.Opened != 2 {
		t.Fatalf("%d streams opened, want a new one after CloseStream", st.Opened)
	}
}
