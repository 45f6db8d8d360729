package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// fakeTUN hands Read the packets queued in in and records what is written.
type fakeTUN struct {
	in      chan []byte
	mu      sync.Mutex
	written [][]byte
}

func newFakeTUN() *fakeTUN { return &fakeTUN{in: make(chan []byte, 64)} }

func (d *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	p, ok := <-d.in
	if !ok {
		return 0, os.ErrClosed
	}
	sizes[0] = copy(bufs[0][offset:], p)
	return 1, nil
}

func (d *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range bufs {
		d.written = append(d.written, bytes.Clone(b[offset:]))
	}
	return len(bufs), nil
}

func (d *fakeTUN) take() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.written
	d.written = nil
	return w
}

func (d *fakeTUN) BatchSize() int     { return 4 }
func (d *fakeTUN) MTU() (int, error)  { return 1400, nil }
func (d *fakeTUN) Close() error       { close(d.in); return nil }
func (*fakeTUN) Name() (string, bool) { return "fake", true }

// wire records what a plane sends.
type fakeTransport struct {
	mu   sync.Mutex
	sent []Packet
}

func (t *fakeTransport) Prepare(*Path) {}
func (t *fakeTransport) Send(pkts []Packet) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range pkts {
		t.sent = append(t.sent, Packet{Data: bytes.Clone(p.Data), Path: p.Path})
	}
	return nil
}

func (t *fakeTransport) take() []Packet {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sent
	t.sent = nil
	return s
}

type end struct {
	p   *Plane
	tun *fakeTUN
	tr  *fakeTransport
	rx  *Receiver
	lim []uint32
}

func newEnd(t *testing.T) *end {
	e := &end{tun: newFakeTUN(), tr: &fakeTransport{}}
	e.p = New(Config{TUN: e.tun, Transport: e.tr, OnLimit: func(spi uint32, hard bool) {
		e.lim = append(e.lim, spi)
	}})
	e.rx = e.p.NewReceiver()
	return e
}

var (
	hostA = netip.MustParseAddrPort("192.0.2.1:4500")
	hostB = netip.MustParseAddrPort("198.51.100.1:4500")
)

func sel(s string) []wire.Selector {
	x, err := ts.Parse(s)
	if err != nil {
		panic(err)
	}
	return []wire.Selector{x}
}

// pair installs one Child SA on a and its mirror on b.
func pair(t *testing.T, a, b *end, inA, inB uint32, mode ipsec.Mode, localA, localB string, encr wire.EncrID) {
	t.Helper()
	k1, k2 := bytes.Repeat([]byte{byte(inA)}, 20), bytes.Repeat([]byte{byte(inB)}, 20)
	var i1, i2 []byte
	integ := wire.IntegID(0)
	if encr == wire.EncrAESCBC {
		k1, k2 = k1[:16], k2[:16]
		integ = wire.IntegHMACSHA2256128
		i1, i2 = bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	}
	sa := ipsec.ChildSA{IKESA: 1, Name: "net", InSPI: inA, OutSPI: inB, Protocol: wire.ProtoESP, Mode: mode,
		Encr: encr, KeyBits: 128, Integ: integ, EncKeyIn: k1, IntegKeyIn: i1, EncKeyOut: k2, IntegKeyOut: i2,
		LocalTS: sel(localA), RemoteTS: sel(localB), Local: hostA, Remote: hostB, Encap: true, Outbound: true}
	if err := a.p.Install(sa); err != nil {
		t.Fatal(err)
	}
	sb := sa
	sb.InSPI, sb.OutSPI = inB, inA
	sb.EncKeyIn, sb.EncKeyOut, sb.IntegKeyIn, sb.IntegKeyOut = k2, k1, i2, i1
	sb.LocalTS, sb.RemoteTS = sa.RemoteTS, sa.LocalTS
	sb.Local, sb.Remote = hostB, hostA
	if err := b.p.Install(sb); err != nil {
		t.Fatal(err)
	}
}

// out seals one packet as the TUN loop would and returns what was sent.
func (e *end) out(t *testing.T, pkt []byte) (Packet, bool) {
	t.Helper()
	buf := make([]byte, Headroom+len(pkt)+128)
	copy(buf[Headroom:], pkt)
	p, ok := e.p.seal(e.p.tab, buf, len(pkt), time.Now().UnixNano())
	if ok {
		p.Data = bytes.Clone(p.Data)
	}
	return p, ok
}

// in delivers sealed packets to e and returns what reached its TUN.
func (e *end) in(pkts ...Packet) [][]byte {
	batch := make([]Inbound, len(pkts))
	for i, p := range pkts {
		buf := make([]byte, Headroom+len(p.Data))
		copy(buf[Headroom:], p.Data)
		batch[i] = Inbound{Buf: buf, Off: Headroom, N: len(p.Data), Local: p.Path.Remote, Remote: p.Path.Local}
	}
	e.rx.Receive(batch)
	return e.tun.take()
}

func ipv4Packet(src, dst string, proto uint8, payload []byte) []byte {
	p := make([]byte, 20, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(payload)))
	p[8], p[9] = 64, proto
	copy(p[12:], netip.MustParseAddr(src).AsSlice())
	copy(p[16:], netip.MustParseAddr(dst).AsSlice())
	binary.BigEndian.PutUint16(p[10:], fold(checksum(p, 0)))
	return append(p, payload...)
}

func ipv6Packet(src, dst string, proto uint8, payload []byte) []byte {
	p := make([]byte, 40, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6], p[7] = proto, 64
	copy(p[8:], netip.MustParseAddr(src).AsSlice())
	copy(p[24:], netip.MustParseAddr(dst).AsSlice())
	return append(p, payload...)
}

func udpPayload(sport, dport uint16, data string) []byte {
	u := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(data)))
	return append(u, data...)
}

// RFC 4303 tunnel mode, IPv4 and IPv6 inner, each transform family: what
// enters one TUN leaves the other unchanged.
func TestTunnelRoundTrip(t *testing.T) {
	for _, encr := range []wire.EncrID{wire.EncrAESGCM16, wire.EncrAESCBC} {
		a, b := newEnd(t), newEnd(t)
		pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", encr)
		pair(t, a, b, 0x1002, 0x2002, ipsec.Tunnel, "fd00:1::/64", "fd00:2::/64", encr)
		for _, pkt := range [][]byte{
			ipv4Packet("10.1.0.5", "10.2.0.9", protoUDP, udpPayload(1000, 53, "hello")),
			ipv6Packet("fd00:1::5", "fd00:2::9", protoUDP, udpPayload(1000, 53, "hello six")),
		} {
			sent, ok := a.out(t, pkt)
			if !ok || sent.Path.Remote != hostB {
				t.Fatalf("%v: not sent (drops %v)", encr, a.p.Drops())
			}
			got := b.in(sent)
			if len(got) != 1 || !bytes.Equal(got[0], pkt) {
				t.Fatalf("%v: received %x, want %x (drops %v)", encr, got, pkt, b.p.Drops())
			}
			// And back.
			rev := ipv4Packet("10.2.0.9", "10.1.0.5", protoICMP, []byte{0, 0, 0, 0})
			if pkt[0]>>4 == 6 {
				rev = ipv6Packet("fd00:2::9", "fd00:1::5", protoICMPv6, []byte{129, 0, 0, 0})
			}
			back, ok := b.out(t, rev)
			if !ok {
				t.Fatal("no reply sent")
			}
			if got := a.in(back); len(got) != 1 || !bytes.Equal(got[0], rev) {
				t.Fatalf("reply %x", got)
			}
		}
		if c := a.p.Counters(0x1001); c.PacketsOut.Load() != 1 || c.PacketsIn.Load() != 1 {
			t.Errorf("counters out %d in %d", c.PacketsOut.Load(), c.PacketsIn.Load())
		}
		// The last packet's times, for list-sas: sent before received.
		if c := a.p.Counters(0x1001); c.LastOut.Load() == 0 || c.LastOut.Load() > c.LastIn.Load() {
			t.Errorf("last out %d, last in %d: want both set, out first", c.LastOut.Load(), c.LastIn.Load())
		}
	}
}

// RFC 4303 §3.1.1 transport mode: the upper layer is protected and the
// receiver rebuilds the IP header from the outer addresses; behind a NAT
// the UDP checksum is recomputed for them (RFC 3948 §3.1.2).
func TestTransportMode(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Transport, "192.0.2.1/32", "198.51.100.1/32", wire.EncrAESGCM16)
	u := udpPayload(5000, 6000, "transport")
	pkt := ipv4Packet("192.0.2.1", "198.51.100.1", protoUDP, u)
	// A correct checksum for the original addresses.
	binary.BigEndian.PutUint16(pkt[26:], fold(checksum(pkt[20:], pseudoSum(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), protoUDP, len(u)))))
	sent, ok := a.out(t, pkt)
	if !ok {
		t.Fatal("not sent")
	}
	if len(sent.Data) > len(u)+8+8+16+16 {
		t.Fatalf("transport mode carried the IP header: %d octets", len(sent.Data))
	}
	got := b.in(sent)
	if len(got) != 1 {
		t.Fatalf("nothing delivered: %v", b.p.Drops())
	}
	f, ok := parseFlow(got[0])
	if !ok || f.src != hostA.Addr() || f.dst != hostB.Addr() || f.proto != protoUDP || !bytes.Equal(got[0][20:], pkt[20:]) {
		t.Fatalf("rebuilt %x from %x", got[0], pkt)
	}
	if fold(checksum(got[0][:20], 0)) != 0 {
		t.Error("bad IPv4 header checksum")
	}
	// Through a NAT the outer source differs: the checksum follows it.
	natted := netip.MustParseAddrPort("203.0.113.7:61000")
	sent2, _ := a.out(t, pkt)
	batch := []Inbound{{Buf: append(make([]byte, Headroom), sent2.Data...), Off: Headroom, N: len(sent2.Data), Local: hostB, Remote: natted}}
	b.rx.Receive(batch)
	got = b.tun.take()
	if len(got) != 1 {
		t.Fatalf("natted: %v", b.p.Drops())
	}
	l4 := got[0][20:]
	if fold(checksum(l4, pseudoSum(natted.Addr(), hostB.Addr(), protoUDP, len(l4)))) != 0 {
		t.Error("UDP checksum not fixed for the NAT's address")
	}
}

// RFC 4303 §3.4.3: a replayed packet is dropped and counted; a bad ICV,
// an unknown SPI and a truncated packet too; none reaches the TUN.
func TestBadInboundDropped(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	sent, _ := a.out(t, ipv4Packet("10.1.0.5", "10.2.0.9", protoICMP, []byte{8, 0, 0, 0}))
	if got := b.in(sent); len(got) != 1 {
		t.Fatal("first copy not delivered")
	}
	if got := b.in(sent); len(got) != 0 {
		t.Fatal("replay delivered")
	}
	sent2, _ := a.out(t, ipv4Packet("10.1.0.5", "10.2.0.9", protoICMP, []byte{8, 0, 0, 0}))
	bad := Packet{Data: bytes.Clone(sent2.Data), Path: sent2.Path}
	bad.Data[len(bad.Data)-1] ^= 1
	unknown := Packet{Data: bytes.Clone(sent2.Data), Path: sent2.Path}
	binary.BigEndian.PutUint32(unknown.Data, 0x9999)
	short := Packet{Data: sent2.Data[:10], Path: sent2.Path}
	if got := b.in(bad, unknown, short); len(got) != 0 {
		t.Fatal("bad packet delivered")
	}
	d := b.p.Drops()
	if d[DropReplay] != 1 || d[DropIntegrity] != 1 || d[DropUnknownSPI] != 1 || d[DropShort] != 1 {
		t.Fatalf("drops %v", d)
	}
	// The good packet still goes through after all that.
	if got := b.in(sent2); len(got) != 1 {
		t.Fatalf("good packet lost after bad ones: %v", b.p.Drops())
	}
}

// RFC 4301 §5.2: a decrypted packet outside the SA's selectors is dropped;
// an outbound packet no SA covers is too.
func TestPolicyEnforced(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	// a's SA claims 10.1.0.0/24 → 10.2.0.0/24; install on a a wider
	// outbound policy with the same keys to smuggle another source.
	c := a.p.tab.children[0x1001]
	c.localTS = sel("0.0.0.0/0")
	sent, ok := a.out(t, ipv4Packet("172.16.0.1", "10.2.0.9", protoICMP, []byte{8, 0, 0, 0}))
	if !ok {
		t.Fatal("not sent")
	}
	if got := b.in(sent); len(got) != 0 || b.p.Drops()[DropPolicy] != 1 {
		t.Fatalf("spoofed source accepted: %d delivered, drops %v", len(got), b.p.Drops())
	}
	if _, ok := a.out(t, ipv4Packet("10.1.0.5", "10.9.0.9", protoICMP, []byte{8, 0, 0, 0})); ok || a.p.Drops()[DropNoPolicy] != 1 {
		t.Fatalf("packet without a policy sent; drops %v", a.p.Drops())
	}
}

// RFC 7296 §2.8 make-before-break: after a rekey the new SA sends while
// the old one still receives until deleted, so no packet in flight is
// lost; a responder's new SA does not send until told it may.
func TestRekeyMakeBeforeBreak(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	pkt := ipv4Packet("10.1.0.5", "10.2.0.9", protoICMP, []byte{8, 0, 0, 0})
	inFlight, _ := a.out(t, pkt)
	pair(t, a, b, 0x1003, 0x2003, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	next, _ := a.out(t, pkt)
	if spi := binary.BigEndian.Uint32(next.Data); spi != 0x2003 {
		t.Fatalf("after the rekey packets use SPI %x, want the new 2003", spi)
	}
	if got := b.in(next, inFlight); len(got) != 2 {
		t.Fatalf("%d of 2 delivered across the rekey: %v", len(got), b.p.Drops())
	}
	a.p.Delete(0x1001)
	b.p.Delete(0x2001)
	if got := b.in(inFlight); len(got) != 0 {
		t.Fatal("deleted SA still receives")
	}
	// Not yet allowed to send: the older SA keeps the traffic.
	sa := ipsec.ChildSA{InSPI: 0x1003, Local: hostA, Remote: hostB, Encap: true, Outbound: false}
	if err := a.p.Update(sa); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.out(t, pkt); ok {
		t.Fatal("an SA that may not send was used")
	}
}

// RFC 4555: a MOBIKE move changes the path, not the SA: the sequence
// numbers continue, so the peer's replay window accepts the next packet.
func TestUpdateMovesPath(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	pkt := ipv4Packet("10.1.0.5", "10.2.0.9", protoICMP, []byte{8, 0, 0, 0})
	first, _ := a.out(t, pkt)
	moved := netip.MustParseAddrPort("203.0.113.2:4500")
	if err := a.p.Update(ipsec.ChildSA{InSPI: 0x1001, Local: moved, Remote: hostB, Encap: true, Outbound: true}); err != nil {
		t.Fatal(err)
	}
	second, _ := a.out(t, pkt)
	if second.Path.Local != moved {
		t.Fatalf("sent from %v after the move", second.Path.Local)
	}
	if binary.BigEndian.Uint32(second.Data[4:]) != 2 {
		t.Fatal("sequence number restarted after the move")
	}
	if got := b.in(first, second); len(got) != 2 {
		t.Fatalf("%d of 2 delivered: %v", len(got), b.p.Drops())
	}
	if err := a.p.Update(ipsec.ChildSA{InSPI: 0x7777}); err == nil {
		t.Error("update of an unknown SA accepted")
	}
}

// The SPD picks the most specific SA: two clones with their own virtual
// IPs share the remote subnet, each source goes to its own SA.
func TestSPDBySource(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.99.0.2/32", "10.20.0.0/24", wire.EncrAESGCM16)
	pair(t, a, b, 0x1002, 0x2002, ipsec.Tunnel, "10.99.0.3/32", "10.20.0.0/24", wire.EncrAESGCM16)
	pair(t, a, b, 0x1003, 0x2003, ipsec.Tunnel, "10.99.0.2/32", "10.20.0.7/32", wire.EncrAESGCM16)
	for _, c := range []struct {
		src, dst string
		spi      uint32
	}{{"10.99.0.2", "10.20.0.1", 0x2001}, {"10.99.0.3", "10.20.0.1", 0x2002}, {"10.99.0.2", "10.20.0.7", 0x2003}} {
		s, ok := a.out(t, ipv4Packet(c.src, c.dst, protoICMP, []byte{8, 0, 0, 0}))
		if !ok || binary.BigEndian.Uint32(s.Data) != c.spi {
			t.Errorf("%s -> %s: SPI %x, want %x", c.src, c.dst, binary.BigEndian.Uint32(s.Data), c.spi)
		}
	}
}

// RFC 4301 §4.4.1: with one Child SA per service (the MIF problem
// statement's use case 2) the SPD picks the one whose protocol and port
// fit over the network's Child SA with the same prefix, whatever the
// order they were installed in; what no service takes goes to the
// network's.
func TestSPDByProtocolAndPort(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.99.0.2/32", "10.20.0.0/24[icmp]", wire.EncrAESGCM16)
	pair(t, a, b, 0x1002, 0x2002, ipsec.Tunnel, "10.99.0.2/32", "10.20.0.0/24[udp/53]", wire.EncrAESGCM16)
	pair(t, a, b, 0x1003, 0x2003, ipsec.Tunnel, "10.99.0.2/32", "10.20.0.0/24[udp]", wire.EncrAESGCM16)
	pair(t, a, b, 0x1004, 0x2004, ipsec.Tunnel, "10.99.0.2/32", "10.20.0.0/24", wire.EncrAESGCM16) // newest
	for _, c := range []struct {
		what string
		pkt  []byte
		spi  uint32
	}{
		{"ICMP", ipv4Packet("10.99.0.2", "10.20.0.1", protoICMP, []byte{8, 0, 0, 0}), 0x2001},
		{"UDP 53", ipv4Packet("10.99.0.2", "10.20.0.1", protoUDP, udpPayload(1000, 53, "q")), 0x2002},
		{"UDP 123", ipv4Packet("10.99.0.2", "10.20.0.1", protoUDP, udpPayload(1000, 123, "q")), 0x2003},
		{"TCP", ipv4Packet("10.99.0.2", "10.20.0.1", protoTCP, []byte{0xc0, 0x01, 0x14, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 5 << 4, 0, 0, 0, 0, 0, 0, 0}), 0x2004},
	} {
		s, ok := a.out(t, c.pkt)
		if !ok || binary.BigEndian.Uint32(s.Data) != c.spi {
			t.Errorf("%s: SPI %x, want %x", c.what, binary.BigEndian.Uint32(s.Data), c.spi)
		}
		// The gateway's side: the services are in its local selectors,
		// its remote one the same virtual IP for all.
		reply := swapAddrs(c.pkt)
		if s, ok := b.out(t, reply); !ok || binary.BigEndian.Uint32(s.Data) != c.spi-0x1000 {
			t.Errorf("%s reply: SPI %x, want %x", c.what, binary.BigEndian.Uint32(s.Data), c.spi-0x1000)
		}
	}
}

// swapAddrs turns an IPv4 packet around (addresses and ports).
func swapAddrs(p []byte) []byte {
	q := bytes.Clone(p)
	copy(q[12:16], p[16:20])
	copy(q[16:20], p[12:16])
	if p[9] == protoTCP || p[9] == protoUDP {
		copy(q[20:22], p[22:24])
		copy(q[22:24], p[20:22])
	}
	return q
}

// Byte limits reach the engine once each.
func TestLimits(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	c := a.p.tab.children[0x1001]
	c.ctr.softBytes, c.ctr.hardBytes = 100, 200
	pkt := ipv4Packet("10.1.0.5", "10.2.0.9", protoICMP, make([]byte, 40)) // 60 octets
	for range 5 {
		a.out(t, pkt)
	}
	if len(a.lim) != 2 {
		t.Fatalf("limits reported %v, want soft and hard once", a.lim)
	}
}

// The TUN loop end to end with the fake device.
func TestRunLoop(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	done := make(chan error)
	go func() { done <- a.p.Run() }()
	pkt := ipv4Packet("10.1.0.5", "10.2.0.9", protoICMP, []byte{8, 0, 0, 0})
	for range 10 {
		a.tun.in <- pkt
	}
	a.tun.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sent := a.tr.take()
	if got := b.in(sent...); len(got) != 10 {
		t.Fatalf("%d of 10 through the loop", len(got))
	}
}

// The tables change in place: after any mix of installs, updates and
// deletes the SPD is still in preference order and holds exactly the
// outbound-capable SAs.
func TestSPDOrderInPlace(t *testing.T) {
	e := newEnd(t)
	nets := []string{"10.2.0.0/24", "10.2.0.0/16", "0.0.0.0/0", "10.2.0.7/32", "10.2.0.9/32"}
	live := map[uint32]bool{}
	for i := range 300 {
		spi := uint32(0x1000 + i%60)
		switch i % 5 {
		case 0, 1, 2:
			sa := ipsec.ChildSA{InSPI: spi, OutSPI: spi + 0x8000, Protocol: wire.ProtoESP, Encr: wire.EncrAESGCM16, KeyBits: 128,
				EncKeyIn: make([]byte, 20), EncKeyOut: make([]byte, 20), LocalTS: sel("10.1.0.0/24"), RemoteTS: sel(nets[i%len(nets)]),
				Local: hostA, Remote: hostB, Outbound: i%7 != 0}
			if err := e.p.Install(sa); err != nil {
				t.Fatal(err)
			}
			live[spi] = true
		case 3:
			if live[spi] {
				e.p.Update(ipsec.ChildSA{InSPI: spi, Local: hostA, Remote: hostB, Outbound: i%2 == 0})
			}
		case 4:
			e.p.Delete(spi)
			delete(live, spi)
		}
		tab := e.p.tab
		if len(tab.children) != len(live) {
			t.Fatalf("step %d: %d children, want %d", i, len(tab.children), len(live))
		}
		n := 0
		check := func(l []*child) {
			for k, c := range l {
				if !c.outbound || tab.children[c.inSPI] != c {
					t.Fatalf("step %d: stale SPD entry %08x", i, c.inSPI)
				}
				if k > 0 && byPreference(l[k-1], c) > 0 {
					t.Fatalf("step %d: SPD out of order", i)
				}
			}
			n += len(l)
		}
		check(tab.out)
		for _, l := range tab.host {
			check(l)
		}
		want := 0
		for _, c := range tab.children {
			if c.outbound {
				want++
			}
		}
		if n != want {
			t.Fatalf("step %d: %d SPD entries for %d outbound SAs", i, n, want)
		}
	}
}

// RFC 4555 §3.12: authentic ESP from an address other than the SA's
// peer is delivered but does not count as evidence that the path works
// (LastOnPath); from the peer's address it does.
func TestLivenessOnlyFromThePath(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	pkt := ipv4Packet("10.1.0.5", "10.2.0.9", protoICMP, []byte{8, 0, 0, 0})
	onPath, _ := a.out(t, pkt)
	if err := a.p.Update(ipsec.ChildSA{InSPI: 0x1001, Local: netip.MustParseAddrPort("203.0.113.2:4500"), Remote: hostB, Encap: true, Outbound: true}); err != nil {
		t.Fatal(err)
	}
	offPath, _ := a.out(t, pkt)
	c := b.p.Counters(0x2001)
	if got := b.in(offPath); len(got) != 1 {
		t.Fatalf("the packet from another address was not delivered: %v", b.p.Drops())
	}
	if c.LastIn.Load() == 0 || c.LastOnPath.Load() != 0 {
		t.Fatalf("from another address: LastIn %d, LastOnPath %d; want only LastIn", c.LastIn.Load(), c.LastOnPath.Load())
	}
	if got := b.in(onPath); len(got) != 1 || c.LastOnPath.Load() == 0 {
		t.Fatalf("from the peer's address: delivered %d, LastOnPath %d", len(got), c.LastOnPath.Load())
	}
}

// SweepIdle drops the AEAD contexts of directions idle since the given
// time and no others; traffic then keys them again and flows as before.
// A forged packet for an idle SA keys the inbound context (it must be
// checked) but does not count as traffic: the next sweep drops it again.
func TestSweepIdleDropsIdleContexts(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	pair(t, a, b, 0x1002, 0x2002, ipsec.Tunnel, "10.1.1.0/24", "10.2.1.0/24", wire.EncrAESGCM16)
	keyed := func(e *end, spi uint32) (in, out bool) {
		c := e.p.tab.children[spi]
		return c.in.esp.Keyed(), c.out.esp.Keyed()
	}
	if n := a.p.SweepIdle(time.Now()); n != 0 {
		t.Fatalf("swept %d contexts before any packet: none should be keyed yet", n)
	}
	pkt := ipv4Packet("10.1.0.5", "10.2.0.9", protoUDP, udpPayload(1000, 53, "hello"))
	send := func() {
		t.Helper()
		sent, ok := a.out(t, pkt)
		if !ok {
			t.Fatalf("not sent (drops %v)", a.p.Drops())
		}
		if got := b.in(sent); len(got) != 1 || !bytes.Equal(got[0], pkt) {
			t.Fatalf("received %x (drops %v)", got, b.p.Drops())
		}
	}
	send()
	if in, out := keyed(a, 0x1001); in || !out {
		t.Fatalf("a after sending: keyed in %v out %v, want only out", in, out)
	}
	if in, out := keyed(b, 0x2001); !in || out {
		t.Fatalf("b after receiving: keyed in %v out %v, want only in", in, out)
	}
	// A sweep as of before the packet: nothing was idle since then.
	if n := a.p.SweepIdle(time.Now().Add(-time.Hour)) + b.p.SweepIdle(time.Now().Add(-time.Hour)); n != 0 {
		t.Fatalf("swept %d contexts that carried a packet since", n)
	}
	// As of after it: both used directions go, the unused SA had none.
	later := time.Now().Add(time.Second)
	if n := a.p.SweepIdle(later) + b.p.SweepIdle(later); n != 2 {
		t.Fatalf("swept %d contexts, want 2 (a's outbound, b's inbound)", n)
	}
	if in, out := keyed(b, 0x2001); in || out {
		t.Fatalf("b after the sweep: keyed in %v out %v", in, out)
	}
	send() // keyed again on the way
	// A forged packet for b's SA after its last real one (mid between
	// them): checked (so keyed), dropped, and not taken for traffic by a
	// sweep as of mid. The sleeps only order the clock readings.
	time.Sleep(time.Millisecond)
	mid := time.Now()
	time.Sleep(time.Millisecond)
	b.p.SweepIdle(mid)
	sent, _ := a.out(t, pkt)
	sent.Data[len(sent.Data)-1] ^= 1
	if got := b.in(sent); len(got) != 0 {
		t.Fatal("a forged packet was delivered")
	}
	if in, _ := keyed(b, 0x2001); !in {
		t.Fatal("the forged packet was not checked with a keyed context")
	}
	if n := b.p.SweepIdle(mid); n != 1 {
		t.Fatalf("swept %d contexts after a forged packet, want 1: it is no traffic", n)
	}
}
