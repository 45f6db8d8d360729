package ike_test

import (
	"math"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// pathLab is an end user measuring its path with a probe every probe
// (ike.Connection.PathProbe), the periodic liveness check far off, and
// a quick retransmission schedule with many tries, so that a lossy
// path yields many samples and is not given up. two: the end user has
// a second address (a MOBIKE initiator moves there when its path loses
// a request's sends, RFC 4555 §3.5; without it, it stays).
func pathLab(t *testing.T, seed uint64, probe time.Duration, link netsim.Link, two bool) *lab {
	l := newLab(t, seed, func(ue, _ *ike.Connection, uec, _ *ike.Config) {
		ue.DPDDelay = time.Hour
		ue.PathProbe = probe
		uec.Retransmit = ike.Retransmit{Timeout: 300 * time.Millisecond, Base: 1, Tries: 20}
	})
	l.net.SetLink(ueAddr, gwAddr, link)
	if two {
		l.twoAddrs()
	}
	l.up()
	return l
}

// RFC 6298 §2: the smoothed round trip of the path's answered requests
// converges to the link's round trip (2 × 40 ms one way here), and a
// clean path shows no loss. The measurement needs no traffic of its
// own: the path probe (an empty INFORMATIONAL, RFC 7296 §1.4) supplies
// a sample every interval.
func TestRFC6298PathRTTConverges(t *testing.T) {
	for seed := uint64(900); seed < 903; seed++ {
		l := pathLab(t, seed, time.Second, netsim.Link{Delay: 40 * time.Millisecond, Jitter: 4 * time.Millisecond}, true)
		l.settle(2 * time.Minute)
		s := l.sa(l.ue)
		if s.RTTSamples < 100 {
			t.Fatalf("seed %d: %d round-trip samples in 2 minutes with a probe a second", seed, s.RTTSamples)
		}
		if s.RTT < 80*time.Millisecond || s.RTT > 90*time.Millisecond {
			t.Fatalf("seed %d: smoothed RTT %v, the link's is 80-88 ms", seed, s.RTT)
		}
		if s.RTTVar > 10*time.Millisecond {
			t.Fatalf("seed %d: RTT variation %v on a link of 4 ms jitter", seed, s.RTTVar)
		}
		if s.Loss != 0 || s.LossSamples < s.RTTSamples {
			t.Fatalf("seed %d: loss %.3f from %d samples on a clean path", seed, s.Loss, s.LossSamples)
		}
		t.Logf("seed %d: RTT %v ± %v from %d samples", seed, s.RTT, s.RTTVar, s.RTTSamples)
	}
}

// A path losing 10 % each way loses a probe's round trip 1 - 0.9² = 19 %
// of the time: the loss estimate, averaged over time (it is an average of
// about the last 16 transmissions, so it wanders), comes within a few
// points of that, and the round trip is still the link's. (The time
// average reads a little low: after a loss the next sample comes sooner,
// a retransmission's 300 ms instead of the probe's 500 ms, so the high
// values are held for less time; hence the generous tolerance.)
func TestPathLossConverges(t *testing.T) {
	const want = 1 - 0.9*0.9
	for seed := uint64(910); seed < 913; seed++ {
		l := pathLab(t, seed, 500*time.Millisecond, netsim.Link{Delay: 10 * time.Millisecond, Loss: 0.1}, false)
		l.net.RunFor(time.Minute) // warm up
		sum, n := 0.0, 0
		for range 1200 {
			l.net.RunFor(time.Second)
			sum += l.sa(l.ue).Loss
			n++
		}
		s := l.sa(l.ue)
		mean := sum / float64(n)
		if math.Abs(mean-want) > 0.06 {
			t.Fatalf("seed %d: mean loss estimate %.3f, the path loses %.3f of round trips", seed, mean, want)
		}
		if s.RTT < 20*time.Millisecond || s.RTT > 25*time.Millisecond {
			t.Fatalf("seed %d: smoothed RTT %v on a lossy 20 ms path", seed, s.RTT)
		}
		t.Logf("seed %d: mean loss %.3f (want %.3f), now %.3f from %d transmissions, RTT %v", seed, mean, want, s.Loss, s.LossSamples, s.RTT)
	}
}

// Karn's rule (RFC 6298 §3): the answer to a retransmitted request could
// be to either send, so it gives no round trip; its sends count for the
// loss estimate, one lost and one answered.
func TestRFC6298KarnNoSampleFromRetransmission(t *testing.T) {
	l := pathLab(t, 920, time.Hour, netsim.Link{Delay: 5 * time.Millisecond}, true)
	l.settle(time.Second)
	before := l.sa(l.ue)
	dropped := false
	l.net.Filter = func(from *netsim.Node, _ ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && !dropped && !m.Response && m.Exchange == uint8(wire.Informational) {
			dropped = true
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, before.ID) })
	l.settle(5 * time.Second)
	after := l.sa(l.ue)
	if !dropped {
		t.Fatal("no INFORMATIONAL request went out")
	}
	if after.RTTSamples != before.RTTSamples || after.RTT != before.RTT {
		t.Fatalf("a retransmitted exchange gave a round-trip sample: %d → %d samples, %v → %v", before.RTTSamples, after.RTTSamples, before.RTT, after.RTT)
	}
	if after.LossSamples != before.LossSamples+2 || after.Loss <= before.Loss {
		t.Fatalf("loss samples %d → %d (want +2), loss %.3f → %.3f (want more)", before.LossSamples, after.LossSamples, before.Loss, after.Loss)
	}
}

// RFC 4555 §3.5: a move takes the SA to another path, which the old
// path's figures do not describe: they start afresh there, and the first
// answers on the new path (UPDATE_SA_ADDRESSES's among them) give its
// round trip at once, not an average with the old one's.
func TestRFC4555Section3_5MoveResetsPathStats(t *testing.T) {
	l := pathLab(t, 930, 500*time.Millisecond, netsim.Link{Delay: 50 * time.Millisecond}, true)
	l.net.SetLink(ue2Addr, gwAddr, netsim.Link{Delay: 5 * time.Millisecond})
	l.net.RunFor(time.Minute)
	dropped := false
	l.net.Filter = func(from *netsim.Node, _ ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && !dropped && !m.Response && m.Exchange == uint8(wire.Informational) {
			dropped = true // one lost probe: some loss measured
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.net.RunFor(5 * time.Second)
	old := l.sa(l.ue)
	if old.RTT < 90*time.Millisecond || old.Loss == 0 {
		t.Fatalf("before the move: RTT %v, loss %.3f; want about 100 ms and some", old.RTT, old.Loss)
	}
	l.move(l.ue, old.ID, ue2Addr)
	l.settle(2 * time.Second)
	s := l.sa(l.ue)
	if s.Local.Addr() != ue2Addr {
		t.Fatalf("did not move: %v", s.Local)
	}
	if s.RTTSamples == 0 || s.RTTSamples > 10 || s.RTT > 15*time.Millisecond || s.Loss != 0 {
		t.Fatalf("after the move: RTT %v from %d samples, loss %.3f; want the new path's 10 ms from a few, no loss", s.RTT, s.RTTSamples, s.Loss)
	}
}

// RFC 7296 §2.8: an IKE SA rekey keeps the path, and the new SA keeps
// what was measured on it; the rekey's own CREATE_CHILD_SA carries a KE
// payload, so its answer (which waits for the peer's Diffie-Hellman)
// gives no round trip.
func TestRFC7296Section2_8RekeyKeepsPathStats(t *testing.T) {
	l := pathLab(t, 940, time.Second, netsim.Link{Delay: 20 * time.Millisecond}, false)
	l.settle(30 * time.Second)
	old := l.sa(l.ue)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, old.ID, 0) })
	l.net.RunFor(100 * time.Millisecond) // the rekey's exchange, no probe yet
	n := l.sa(l.ue)
	if n.ID == old.ID {
		t.Fatal("not rekeyed")
	}
	if n.RTTSamples != old.RTTSamples || n.RTT != old.RTT || n.LossSamples != old.LossSamples+1 {
		t.Fatalf("after the rekey: RTT %v from %d samples, %d sends counted; before: %v from %d, %d (want the same round trips, one send more)",
			n.RTT, n.RTTSamples, n.LossSamples, old.RTT, old.RTTSamples, old.LossSamples)
	}
}
