package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/wire"
)

// newEndPool is newEnd whose plane seals and opens on its own pool of n
// workers (more than this machine's cores is fine: the point is that
// the jobs of one batch run at once on several goroutines).
func newEndPool(t *testing.T, n int) *end {
	e := newEnd(t)
	pl := newPool(n)
	t.Cleanup(pl.stop)
	e.p.pool = pl
	e.rx = e.p.NewReceiver()
	return e
}

// numbered is inner packet k of the tests: a UDP datagram that says k.
func numbered(k int) []byte {
	return ipv4Packet("10.1.0.5", "10.2.0.9", protoUDP, udpPayload(4000, 5000, fmt.Sprintf("packet %06d", k)))
}

// sealBatchOf seals pkts as the TUN loop seals one read, and returns
// copies of the ESP packets in the order the Transport would get them.
func sealBatchOf(t *testing.T, e *end, b *sealBatch, pkts [][]byte) []Packet {
	t.Helper()
	bufs := make([][]byte, len(pkts))
	sizes := make([]int, len(pkts))
	for i, p := range pkts {
		bufs[i] = make([]byte, Headroom+len(p)+128)
		sizes[i] = copy(bufs[i][Headroom:], p)
	}
	var out []Packet
	for _, p := range b.seal(bufs, sizes) {
		out = append(out, Packet{Data: bytes.Clone(p.Data), Path: p.Path})
	}
	return out
}

func espSeq(p Packet) uint32 { return binary.BigEndian.Uint32(p.Data[4:8]) }

// RFC 4303 §3.3.3: the sender's counter gives every packet the next
// sequence number in the order it sends them. Sealed on four workers,
// a batch of one SA's packets still leaves in the order it was read,
// numbered 1, 2, 3, ... across batches, and each opens at the peer.
// CBC SAs, sealed on the TUN loop alone, keep the same order.
func TestParallelSealKeepsSequenceOrder(t *testing.T) {
	for _, encr := range []wire.EncrID{wire.EncrAESGCM16, wire.EncrAESCBC} {
		t.Run(encr.String(), func(t *testing.T) {
			a, z := newEndPool(t, 4), newEndPool(t, 4)
			pair(t, a, z, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", encr)
			b := a.p.newSealBatch(128)
			next := 0
			for _, n := range []int{128, 17, 1, 100} {
				var inner [][]byte
				for k := range n {
					inner = append(inner, numbered(next+k))
				}
				sent := sealBatchOf(t, a, b, inner)
				if len(sent) != n {
					t.Fatalf("batch of %d: %d sealed, drops %v", n, len(sent), a.p.Drops())
				}
				for k, p := range sent {
					if got, want := espSeq(p), uint32(next+k+1); got != want {
						t.Fatalf("packet %d of the batch has sequence number %d, want %d", k, got, want)
					}
				}
				got := z.in(sent...)
				if len(got) != n {
					t.Fatalf("batch of %d: %d opened, drops %v", n, len(got), z.p.Drops())
				}
				for k := range got {
					if !bytes.Equal(got[k], inner[k]) {
						t.Fatalf("packet %d of the batch: opened %x, want %x", k, got[k], inner[k])
					}
				}
				next += n
			}
		})
	}
}

// RFC 4303 §3.4.3: the receiver checks the window before the ICV and
// updates it only after the ICV verified. Opened on four workers, one
// batch holds a copy of an earlier packet of the same batch (a replay,
// though both passed the check before the ICVs), a forged copy of a
// packet that comes genuine later (dropped for its ICV, leaving the
// window so the genuine one is accepted), packets out of order within
// the window (accepted), and a later batch replays old packets (dropped
// at the check). What reaches the TUN device is every genuine packet
// once, in the order received.
func TestParallelOpenReplayWindow(t *testing.T) {
	a, z := newEndPool(t, 4), newEndPool(t, 4)
	pair(t, a, z, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	var inner [][]byte
	for k := range 300 {
		inner = append(inner, numbered(k))
	}
	sent := sealBatchOf(t, a, a.p.newSealBatch(300), inner)
	if len(sent) != 300 {
		t.Fatalf("%d sealed", len(sent))
	}
	forged := Packet{Data: bytes.Clone(sent[79].Data), Path: sent[79].Path}
	forged.Data[len(forged.Data)-1] ^= 0x80

	// Batch 1: packets 0..99, 90..99 reversed; a copy of 10 after 59; the
	// forgery of 79 after 69.
	var batch []Packet
	var want [][]byte
	for k := range 100 {
		i := k
		if k >= 90 {
			i = 189 - k
		}
		batch, want = append(batch, sent[i]), append(want, inner[i])
		switch k {
		case 59:
			batch = append(batch, sent[10])
		case 69:
			batch = append(batch, forged)
		}
	}
	before := z.p.Drops()
	got := z.in(batch...)
	checkDelivered(t, "batch 1", got, want)
	drops := z.p.Drops()
	if d := drops[DropReplay] - before[DropReplay]; d != 1 {
		t.Errorf("batch 1: %d replays dropped, want 1 (the copy of packet 10)", d)
	}
	if d := drops[DropIntegrity] - before[DropIntegrity]; d != 1 {
		t.Errorf("batch 1: %d ICV failures, want 1 (the forgery)", d)
	}

	// Batch 2: packets 0..19 again, then 100..299 with 250 twice.
	batch, want = append([]Packet(nil), sent[:20]...), nil
	for k := 100; k < 300; k++ {
		batch, want = append(batch, sent[k]), append(want, inner[k])
		if k == 250 {
			batch = append(batch, sent[k])
		}
	}
	before = z.p.Drops()
	got = z.in(batch...)
	checkDelivered(t, "batch 2", got, want)
	if d := z.p.Drops()[DropReplay] - before[DropReplay]; d != 21 {
		t.Errorf("batch 2: %d replays dropped, want 21", d)
	}
	if top := z.p.tab.children[0x2001].in.esp.Window().Top(); top != 300 {
		t.Errorf("window top %d, want 300", top)
	}
}

func checkDelivered(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d packets delivered, want %d", what, len(got), len(want))
	}
	for k := range got {
		if !bytes.Equal(got[k], want[k]) {
			t.Fatalf("%s: packet %d delivered is %q, want %q", what, k, got[k][28:], want[k][28:])
		}
	}
}

// Two readers (the daemon has one per socket) receive the same packets
// of one SA at once, each opening on the shared workers: every packet
// reaches the TUN device exactly once (RFC 4303 §3.4.3: the window
// update of one reader makes the other's copy a replay).
func TestParallelReadersDeliverOnce(t *testing.T) {
	a, z := newEndPool(t, 4), newEndPool(t, 4)
	pair(t, a, z, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	var inner [][]byte
	for k := range 512 {
		inner = append(inner, numbered(k))
	}
	sent := sealBatchOf(t, a, a.p.newSealBatch(512), inner)
	var wg sync.WaitGroup
	for range 2 {
		rx := z.p.NewReceiver()
		wg.Go(func() {
			for lo := 0; lo < len(sent); lo += 64 {
				batch := make([]Inbound, 0, 64)
				for _, p := range sent[lo : lo+64] {
					buf := make([]byte, Headroom+len(p.Data))
					copy(buf[Headroom:], p.Data)
					batch = append(batch, Inbound{Buf: buf, Off: Headroom, N: len(p.Data), Local: hostB, Remote: hostA})
				}
				rx.Receive(batch)
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for _, p := range z.tun.take() {
		seen[string(p)]++
	}
	for k, p := range inner {
		if seen[string(p)] != 1 {
			t.Fatalf("packet %d delivered %d times, want once", k, seen[string(p)])
		}
	}
	if d := z.p.Drops()[DropReplay]; d != 512 {
		t.Errorf("%d replays dropped, want 512 (one copy of each)", d)
	}
}

// BenchmarkParallelSpeedup seals and opens batches of 64 1400-octet
// packets of one AES-GCM SA (a TUN read, a socket read) with one worker
// (the batch owner alone, as before) and with one per GOMAXPROCS, in
// turn in the same run, and reports the ratio of their throughputs:
// seal-x and open-x above 1 are what parallel sealing gains.
func BenchmarkParallelSpeedup(b *testing.B) {
	n := runtime.GOMAXPROCS(0)
	const batch = 64
	type side struct {
		a, z        *Plane
		sb          *sealBatch
		rx          *Receiver
		seal, open  time.Duration
		pl          *pool
		bufs        [][]byte
		sizes       []int
		in          []Inbound
		sealedBytes int
	}
	pkt := benchPacket()
	mk := func(workers int) *side {
		s := &side{pl: newPool(workers)}
		s.a, s.z = benchPair(b)
		s.a.pool, s.z.pool = s.pl, s.pl
		s.sb, s.rx = s.a.newSealBatch(batch), s.z.NewReceiver()
		for range batch {
			s.bufs = append(s.bufs, make([]byte, Headroom+1500+128))
			s.sizes = append(s.sizes, len(pkt))
			s.in = append(s.in, Inbound{Buf: make([]byte, Headroom+1500+128), Off: Headroom, Local: hostB, Remote: hostA})
		}
		return s
	}
	one, many := mk(1), mk(n)
	defer one.pl.stop()
	defer many.pl.stop()
	round := func(s *side) {
		for i := range s.bufs {
			copy(s.bufs[i][Headroom:], pkt)
		}
		t0 := time.Now()
		sent := s.sb.seal(s.bufs, s.sizes)
		t1 := time.Now()
		for i, p := range sent {
			s.in[i].N = copy(s.in[i].Buf[Headroom:], p.Data)
		}
		t2 := time.Now()
		s.rx.Receive(s.in[:len(sent)])
		t3 := time.Now()
		s.seal += t1.Sub(t0)
		s.open += t3.Sub(t2)
		s.sealedBytes += len(sent) * len(pkt)
	}
	// In blocks of rounds, so that the workers of one side, still
	// awake after its last batch (pool.next), barely overlap the other.
	const block = 16
	b.SetBytes(2 * block * batch * int64(len(pkt)))
	for b.Loop() {
		for range block {
			round(one)
		}
		for range block {
			round(many)
		}
	}
	if one.sealedBytes != many.sealedBytes || one.sealedBytes == 0 {
		b.Fatalf("sealed %d and %d octets", one.sealedBytes, many.sealedBytes)
	}
	if c := many.z.Counters(0x2001); c == nil || c.PacketsIn.Load() == 0 {
		b.Fatalf("nothing received: %v", many.z.Drops())
	}
	mbps := func(d time.Duration, s *side) float64 { return float64(s.sealedBytes) * 8 / d.Seconds() / 1e6 }
	b.ReportMetric(float64(n), "workers")
	b.ReportMetric(mbps(one.seal, one), "seal-Mbit/s-1")
	b.ReportMetric(mbps(many.seal, many), "seal-Mbit/s-N")
	b.ReportMetric(mbps(one.open, one), "open-Mbit/s-1")
	b.ReportMetric(mbps(many.open, many), "open-Mbit/s-N")
	b.ReportMetric(float64(one.seal)/float64(many.seal), "seal-x")
	b.ReportMetric(float64(one.open)/float64(many.open), "open-x")
}
