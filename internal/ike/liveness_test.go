package ike_test

import (
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
)

// livenessLab is an end user with two addresses and the traffic-driven
// liveness check on (a 300 ms window), paths of a LAN's round trip, and
// a periodic check far off, so that only the traffic-driven one can act.
func livenessLab(t *testing.T, seed uint64) *lab {
	l := newLab(t, seed, func(ue, _ *ike.Connection, _, _ *ike.Config) {
		ue.DPDDelay = 30 * time.Second
		ue.LivenessWindow = 300 * time.Millisecond
	})
	lan := netsim.Link{Delay: time.Millisecond}
	l.net.SetLink(ueAddr, gwAddr, lan)
	l.net.SetLink(ue2Addr, gwAddr, lan)
	l.twoAddrs()
	l.up()
	return l
}

// sendFor runs the network for d while the end user's Child SAs send
// ESP every 10 ms (upstream only, as the failover benchmark's probe
// stream: nothing comes back unasked); inbound also reports ESP received
// from the path each time. stop, when it returns true, ends the run
// early.
func (l *lab) sendFor(d time.Duration, inbound bool, stop func() bool) {
	end := l.net.Now.Add(d)
	for l.net.Now.Before(end) && (stop == nil || !stop()) {
		for spi := range l.ue.Children {
			l.ue.Do(func(now time.Time) []ike.Action { return l.ue.Engine.Outbound(now, spi) })
			if inbound {
				l.ue.Do(func(now time.Time) []ike.Action { return l.ue.Engine.Inbound(now, spi) })
			}
		}
		l.net.RunFor(10 * time.Millisecond)
	}
}

// RFC 7296 §2.4 ("If there has only been outgoing traffic on all of the
// SAs associated with an IKE SA, it is essential to confirm liveness of
// the other endpoint to avoid black holes") and RFC 4555 §3.5: a path
// that goes silent under traffic is checked at once and, after the
// quick probes go unanswered, left for the other address. The Child SA
// carries traffic on the new path within a second of the failure, where
// the periodic check (30 s here) would not even have started.
func TestRFC7296Section2_4SilentPathUnderTraffic(t *testing.T) {
	for seed := uint64(700); seed < 705; seed++ {
		l := livenessLab(t, seed)
		id := l.sa(l.ue).ID
		l.sendFor(3*time.Second+time.Duration(seed%7)*43*time.Millisecond, false, nil) // the failure finds the check anywhere in its cycle
		if n := len(l.ue.EventsOf(ike.EventPathProbe)); n != 0 {
			t.Fatalf("seed %d: %d path probes on a healthy path", seed, n)
		}
		if l.ue.Engine.Stats().LivenessChecks == 0 {
			t.Fatalf("seed %d: upstream-only traffic started no liveness check", seed)
		}
		failed := l.net.Now
		l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true}) // silent: no event tells the engine
		moved := func() bool {
			for _, c := range l.ue.Children {
				if c.Local.Addr() == ue2Addr {
					return true
				}
			}
			return false
		}
		l.sendFor(5*time.Second, false, moved)
		took := l.net.Now.Sub(failed)
		if !moved() || took > time.Second {
			t.Fatalf("seed %d: Child SA on the new path after %v (moved %v), want within 1s", seed, took, moved())
		}
		t.Logf("seed %d: moved after %v", seed, took)
		if l.ue.Engine.Stats().PathsDead != 1 {
			t.Fatalf("seed %d: %d paths judged dead, want 1", seed, l.ue.Engine.Stats().PathsDead)
		}
		l.settle(5 * time.Second)
		if ue := l.sa(l.ue); ue.ID != id || ue.Local.Addr() != ue2Addr || l.sa(l.gw).Children[0].Remote.Addr() != ue2Addr {
			t.Fatalf("seed %d: the SA did not carry on on the new path: ue %v, gw's Child SA to %v", seed, ue.Local, l.sa(l.gw).Children[0].Remote)
		}
	}
}

// The other side of the trade: a path with 20 % random loss each way
// (a probe's round trip fails 36 % of the time) is lossy, not dead, and
// must not be abandoned. Upstream-only traffic starts a check every
// window, about 200 a minute; twelve probes in a row must all fail to
// judge the path dead, 0.36^12 ≈ 4.7e-6 a check (liveness.go). Ten
// minutes over several seeds: no move.
func TestRFC4555Section3_10LossyPathKept(t *testing.T) {
	for seed := uint64(710); seed < 720; seed++ {
		l := livenessLab(t, seed)
		lossy := netsim.Link{Delay: time.Millisecond, Loss: 0.2}
		l.net.SetLink(ueAddr, gwAddr, lossy)
		l.sendFor(60*time.Second, false, nil)
		if n := len(l.ue.EventsOf(ike.EventPathProbe)); n != 0 {
			t.Fatalf("seed %d: %d path probes on a path with 20%% loss", seed, n)
		}
		if s := l.ue.Engine.Stats(); s.PathsDead != 0 || s.LivenessChecks < 100 {
			t.Fatalf("seed %d: %d paths judged dead, %d liveness checks (want 0, and a check per window)", seed, s.PathsDead, s.LivenessChecks)
		}
		l.net.SetLink(ueAddr, gwAddr, netsim.Link{Delay: time.Millisecond})
		l.settle(5 * time.Second)
		if ue := l.sa(l.ue); ue.Local.Addr() != ueAddr {
			t.Fatalf("seed %d: the SA left the lossy path for %v", seed, ue.Local)
		}
	}
}

// RFC 7296 §2.4: authentic ESP from the peer proves liveness as well as
// an IKE answer does (RFC 4555 §3.12: from the SA's path). A firewall
// that drops IKE's UDP while ESP passes leaves the path working: the
// check's probes go unanswered, but the ESP heard cancels the suspicion
// each time, so the path is never judged dead.
func TestRFC7296Section2_4InboundESPIsLiveness(t *testing.T) {
	l := livenessLab(t, 730)
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true}) // IKE lost; the ESP "arrives" below
	l.sendFor(10*time.Second, true, nil)
	if n := len(l.ue.EventsOf(ike.EventPathProbe)); n != 0 || l.ue.Engine.Stats().PathsDead != 0 {
		t.Fatalf("%d path probes, %d paths dead while ESP arrived from the path", n, l.ue.Engine.Stats().PathsDead)
	}
}

// With nowhere else to go, a path judged dead is not a dead peer: the
// check's request goes on with the configured retransmissions (RFC 7296
// §2.4 gives up the SA only after those), so an outage shorter than them
// costs nothing.
func TestRFC7296Section2_4QuickCheckDoesNotKillTheSA(t *testing.T) {
	l := newLab(t, 740, func(ue, _ *ike.Connection, _, _ *ike.Config) {
		ue.DPDDelay = 30 * time.Second
		ue.LivenessWindow = 300 * time.Millisecond
	})
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Delay: time.Millisecond})
	id := l.up()
	l.sendFor(2*time.Second, false, nil)
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	l.sendFor(2*time.Second, false, nil)
	if l.ue.Engine.Stats().PathsDead != 1 {
		t.Fatalf("%d paths judged dead in a 2 s outage under traffic, want 1", l.ue.Engine.Stats().PathsDead)
	}
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Delay: time.Millisecond})
	l.sendFor(5*time.Second, false, nil)
	l.settle(5 * time.Second)
	if ue := l.sa(l.ue); ue.ID != id || l.ue.Engine.Stats().DeadPeers != 0 {
		t.Fatalf("the SA did not survive the outage: now %d (was %d), %d dead peers", ue.ID, id, l.ue.Engine.Stats().DeadPeers)
	}
}
