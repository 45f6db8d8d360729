package dataplane

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/wire"
)

// nullTUN and nullTransport take packets and drop them, so the
// benchmarks measure the data plane, not a fake's copying.
type nullTUN struct{ fakeTUN }

func (*nullTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }

type nullTransport struct{}

func (nullTransport) Prepare(*Path)       {}
func (nullTransport) Send([]Packet) error { return nil }

// benchBatch is how many packets the benchmarks hand over at once, as
// the TUN loop and the socket readers do.
const benchBatch = 32

// benchPair returns two planes with a tunnel-mode AES-GCM-128 Child SA
// between 10.1.0.0/24 (a) and 10.2.0.0/24 (b), as bench esp negotiates.
func benchPair(tb testing.TB) (a, b *Plane) {
	a = New(Config{TUN: &nullTUN{}, Transport: nullTransport{}})
	b = New(Config{TUN: &nullTUN{}, Transport: nullTransport{}})
	installBench(tb, a, b)
	return a, b
}

// installBench (re)installs the SA pair; a fresh inbound SA has a fresh
// anti-replay window.
func installBench(tb testing.TB, a, b *Plane) {
	ka, kb := bytes.Repeat([]byte{0xa}, 20), bytes.Repeat([]byte{0xb}, 20)
	sa := ipsec.ChildSA{IKESA: 1, Name: "net", InSPI: 0x1001, OutSPI: 0x2001, Protocol: wire.ProtoESP, Mode: ipsec.Tunnel,
		Encr: wire.EncrAESGCM16, KeyBits: 128, EncKeyIn: ka, EncKeyOut: kb, ESN: true,
		LocalTS: sel("10.1.0.0/24"), RemoteTS: sel("10.2.0.0/24"), Local: hostA, Remote: hostB, Outbound: true}
	sb := sa
	sb.InSPI, sb.OutSPI = sa.OutSPI, sa.InSPI
	sb.EncKeyIn, sb.EncKeyOut = kb, ka
	sb.LocalTS, sb.RemoteTS = sa.RemoteTS, sa.LocalTS
	sb.Local, sb.Remote = hostB, hostA
	if err := a.Install(sa); err != nil {
		tb.Fatal(err)
	}
	if err := b.Install(sb); err != nil {
		tb.Fatal(err)
	}
}

// benchPacket is a 1400-octet IPv4 TCP segment from a's side to b's.
func benchPacket() []byte {
	tcp := make([]byte, 1400-20)
	tcp[0], tcp[1], tcp[2], tcp[3] = 0xc0, 0x01, 0x14, 0x51 // ports 49153 → 5201
	tcp[12] = 5 << 4
	return ipv4Packet("10.1.0.5", "10.2.0.9", protoTCP, tcp)
}

// BenchmarkSeal is the sending path of one packet as Run takes it: SPD
// lookup, sealing in place (on the shared workers when the batch is
// large enough), counters, and a Send per batch.
func BenchmarkSeal(b *testing.B) {
	a, _ := benchPair(b)
	pkt := benchPacket()
	bufs := make([][]byte, benchBatch)
	sizes := make([]int, benchBatch)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500+128)
	}
	sb := a.newSealBatch(benchBatch)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sizes[i] = copy(bufs[i][Headroom:], pkt)
		if i++; i == benchBatch {
			if pkts := sb.seal(bufs, sizes); len(pkts) != benchBatch {
				b.Fatalf("%d sealed: %v", len(pkts), a.Drops())
			}
			a.cfg.Transport.Send(sb.pkts)
			i = 0
		}
	}
}

// BenchmarkReceive is the receiving path of one packet: SPI lookup,
// opening in place (anti-replay, AES-GCM), the inbound policy check,
// counters, and a TUN write per batch. Each iteration first copies a
// sealed packet into the receive buffer (Open works in place); every
// len(sealed) packets the SA is installed again (outside the timer) so
// the sequence numbers may repeat.
func BenchmarkReceive(b *testing.B) {
	a, z := benchPair(b)
	sealed := make([][]byte, 4096)
	pkt := benchPacket()
	buf := make([]byte, Headroom+1500+128)
	for i := range sealed {
		copy(buf[Headroom:], pkt)
		p, ok := a.seal(a.tab, buf, len(pkt), 1)
		if !ok {
			b.Fatal("not sealed")
		}
		sealed[i] = bytes.Clone(p.Data)
	}
	rx := z.NewReceiver()
	batch := make([]Inbound, benchBatch)
	for i := range batch {
		batch[i] = Inbound{Buf: make([]byte, Headroom+1500+128), Off: Headroom, Local: hostB, Remote: hostA}
	}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	i, k := 0, 0
	for b.Loop() {
		if k == len(sealed) {
			b.StopTimer()
			installBench(b, a, z)
			k = 0
			b.StartTimer()
		}
		in := &batch[i]
		in.N = copy(in.Buf[Headroom:], sealed[k])
		k++
		if i++; i == benchBatch {
			rx.Receive(batch)
			i = 0
		}
	}
	if c := z.Counters(0x2001); c == nil || c.PacketsIn.Load() == 0 {
		b.Fatalf("nothing received: %v", z.Drops())
	}
}

// BenchmarkInstall installs and deletes one Child SA on a plane holding
// 10,000 gateway clients: the cost must not grow with the table.
func BenchmarkInstall(b *testing.B) {
	p := New(Config{})
	sa := func(i int) ipsec.ChildSA {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		return ipsec.ChildSA{InSPI: uint32(0x10000 + i), OutSPI: uint32(0x90000 + i), Protocol: wire.ProtoESP,
			Encr: wire.EncrAESGCM16, KeyBits: 128, EncKeyIn: make([]byte, 20), EncKeyOut: make([]byte, 20),
			LocalTS:  []wire.Selector{wire.PrefixSelector(netip.MustParsePrefix("10.20.0.0/24"), 0)},
			RemoteTS: []wire.Selector{wire.PrefixSelector(netip.PrefixFrom(a, 32), 0)}, Outbound: true}
	}
	for i := range 10000 {
		p.Install(sa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s := sa(20000 + i%1000)
		if err := p.Install(s); err != nil {
			b.Fatal(err)
		}
		p.Delete(s.InSPI)
	}
}

// BenchmarkUpdateSharedSelector moves one of 10,000 Child SAs whose
// remote selectors are all the same single address (a load generator's
// handshakes, or hosts behind one NAT): finding the SA in the SPD must not
// scan the list.
func BenchmarkUpdateSharedSelector(b *testing.B) {
	p := New(Config{})
	remote := []wire.Selector{wire.PrefixSelector(netip.MustParsePrefix("192.0.2.9/32"), 0)}
	for i := range 10000 {
		if err := p.Install(ipsec.ChildSA{InSPI: uint32(0x10000 + i), OutSPI: uint32(0x90000 + i), Protocol: wire.ProtoESP,
			Encr: wire.EncrAESGCM16, KeyBits: 128, EncKeyIn: make([]byte, 20), EncKeyOut: make([]byte, 20),
			LocalTS:  []wire.Selector{wire.PrefixSelector(netip.MustParsePrefix("10.20.0.0/24"), 0)},
			RemoteTS: remote, Outbound: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := p.Update(ipsec.ChildSA{InSPI: uint32(0x10000 + i%10000), RemoteTS: remote, Outbound: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// A flood of ESP that cannot be opened (RFC 4303 §3.4: unknown SPI,
// too short, failed integrity, replayed) is dropped and counted without
// allocating: garbage must cost no memory (issue 13).
func TestDroppedESPAllocatesNothing(t *testing.T) {
	a, z := benchPair(t)
	pkt := benchPacket()
	buf := make([]byte, Headroom+1500+128)
	copy(buf[Headroom:], pkt)
	p, ok := a.seal(a.tab, buf, len(pkt), 1)
	if !ok {
		t.Fatal("not sealed")
	}
	sealed := bytes.Clone(p.Data)
	// A packet with a sequence number not seen yet and a broken ICV (with
	// one already seen, the replay check drops it first).
	copy(buf[Headroom:], pkt)
	p, _ = a.seal(a.tab, buf, len(pkt), 1)
	forged := bytes.Clone(p.Data)
	forged[len(forged)-1] ^= 1
	unknown := bytes.Clone(sealed)
	unknown[0] ^= 0x55
	rx := z.NewReceiver()
	in := []Inbound{{Buf: make([]byte, Headroom+1500+128), Off: Headroom, Local: hostB, Remote: hostA}}
	deliver := func(b []byte) { in[0].N = copy(in[0].Buf[Headroom:], b); rx.Receive(in) }
	deliver(sealed) // once, so a second copy is a replay
	for _, c := range []struct {
		name, reason string
		pkt          []byte
	}{
		{"unknown SPI", DropUnknownSPI, unknown},
		{"short", DropShort, sealed[:3]},
		{"integrity", DropIntegrity, forged},
		{"replay", DropReplay, sealed},
	} {
		before := z.Drops()[c.reason]
		deliver(c.pkt) // the first drop of a reason logs; the rest only count
		if n := testing.AllocsPerRun(200, func() { deliver(c.pkt) }); n != 0 {
			t.Errorf("%s: %.1f allocations per dropped packet, want 0", c.name, n)
		}
		if got := z.Drops()[c.reason] - before; got < 200 {
			t.Errorf("%s: counted %d drops of %s, want every one", c.name, got, c.reason)
		}
	}
}
