package ike_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 7296 §2.8: the IKE SA is rekeyed when its lifetime runs out, and
// the Child SAs move along.
func TestRFC7296Section2_8IKELifetimeRekey(t *testing.T) {
	l := newLab(t, 40, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.RekeyTime = time.Hour })
	l.up()
	first := l.sa(l.ue)
	l.settle(61 * time.Minute)
	now := l.sa(l.ue)
	if now.ID == first.ID || now.Children[0].InSPI != first.Children[0].InSPI {
		t.Fatalf("not rekeyed: %+v", now)
	}
	if len(l.ue.EventsOf(ike.EventIKERekeyed)) != 1 {
		t.Fatal("rekey event missing")
	}
}

// RFC 7296 §2.8.3: reauthentication builds a new IKE SA from scratch with
// its Child SAs, then deletes the old one (make before break).
func TestRFC7296Section2_8_3Reauthentication(t *testing.T) {
	l := newLab(t, 41, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.ReauthTime = 2 * time.Hour })
	l.up()
	first := l.sa(l.ue)
	l.settle(121 * time.Minute)
	now := l.sa(l.ue)
	if now.ID == first.ID || len(now.Children) != 1 || now.Children[0].InSPI == first.Children[0].InSPI {
		t.Fatalf("not reauthenticated: %+v", now)
	}
	if len(l.ue.EventsOf(ike.EventIKEUp)) != 2 {
		t.Fatal("no second authentication")
	}
}

// RFC 7296 §2.8: Child SAs are rekeyed at their soft lifetime and
// deleted at the hard one if rekeying keeps failing.
func TestRFC7296Section2_8ChildLifetimes(t *testing.T) {
	l := newLab(t, 42, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.Children[0].RekeyTime, ue.Children[0].LifeTime = 30*time.Minute, 40*time.Minute
	})
	l.up()
	first := l.sa(l.ue).Children[0].InSPI
	l.settle(31 * time.Minute)
	second := l.sa(l.ue).Children[0].InSPI
	if second == first {
		t.Fatal("no rekey at the soft lifetime")
	}
	// Now every CREATE_CHILD_SA is lost: the next rekey fails and the
	// Child SA is deleted at its hard lifetime.
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if m.Exchange == uint8(wire.CreateChildSA) {
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.ue.Engine.Stats()
	l.net.RunFor(41 * time.Minute)
	for _, s := range l.ue.Engine.IKESAs() {
		for _, c := range s.Children {
			if c.InSPI == second {
				t.Fatal("Child SA outlived its hard lifetime")
			}
		}
	}
}

// Byte limits reported by the data plane trigger a rekey (soft) or a
// delete (hard).
func TestChildByteLimits(t *testing.T) {
	l := newLab(t, 43, nil)
	l.up()
	first := l.sa(l.ue).Children[0].InSPI
	l.ue.Do(func(now time.Time) []ike.Action { return l.ue.Engine.ChildLimit(now, first, false) })
	l.settle(time.Second)
	second := l.sa(l.ue).Children[0].InSPI
	if second == first {
		t.Fatal("soft limit did not rekey")
	}
	l.ue.Do(func(now time.Time) []ike.Action { return l.ue.Engine.ChildLimit(now, second, true) })
	l.settle(time.Second)
	if len(l.sa(l.ue).Children) != 0 {
		t.Fatal("hard limit did not delete")
	}
}

// RFC 7296 §2.4: a silent peer is probed after DPDDelay; the probe's
// retransmissions time out and the IKE SA goes. A peer that keeps
// answering stays.
func TestRFC7296Section2_4LivenessCheck(t *testing.T) {
	l := newLab(t, 44, func(ue, gw *ike.Connection, _, _ *ike.Config) { gw.DPDDelay = 30 * time.Second })
	l.up()
	l.settle(5 * time.Minute)
	if l.gw.Engine.Stats().Exchanges[wire.Informational] == 0 {
		t.Fatal("no liveness checks sent")
	}
	l.sa(l.gw)
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	if !l.net.RunUntil(10*time.Minute, func() bool { return len(l.gw.Engine.IKESAs()) == 0 }) {
		t.Fatal("dead peer kept")
	}
	if len(l.gw.Children) != 0 {
		t.Fatal("data plane not cleaned up")
	}
}

// §2.4: checks come DPDDelay after the last message from the peer, so an
// idle but answering peer is checked once per DPDDelay, not every other.
func TestLivenessCheckInterval(t *testing.T) {
	l := newLab(t, 46, func(ue, gw *ike.Connection, _, _ *ike.Config) { gw.DPDDelay = 30 * time.Second })
	l.up()
	before := l.gw.Engine.Stats().Exchanges[wire.Informational]
	l.settle(10 * time.Minute)
	got := l.gw.Engine.Stats().Exchanges[wire.Informational] - before
	if got < 18 || got > 21 { // 600 s / 30 s, give or take the round trips
		t.Fatalf("%d liveness checks in 10 minutes with a 30 s delay, want about 20", got)
	}
}

// The hard IKE lifetime deletes the SA when rekeying never succeeds.
func TestIKEHardLifetime(t *testing.T) {
	l := newLab(t, 45, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.RekeyTime, ue.OverTime = time.Hour, 10*time.Minute
	})
	l.up()
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if m.Exchange == uint8(wire.CreateChildSA) {
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.net.RunFor(71 * time.Minute)
	if len(l.ue.Established()) != 0 {
		t.Fatal("IKE SA outlived its hard lifetime")
	}
}

// liveHeap is the heap still reachable after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// RFC 7296 §2.8: a rekeyed SA replaces the old one, which must then be
// gone for good: users run a VPN for weeks, and memory that grows with
// every rekey ends it. Two engines rekey their IKE SA and two Child SAs
// (one with PFS) for a simulated day at short lifetimes, a clone among
// them; after a warm-up the live heap must not grow with the rekeys.
// (The end-to-end test/endurance found +1.2 kB per rekey: each new Child
// SA kept its predecessor, and through it every old IKE SA's keys.)
func TestRFC7296Section2_8RekeysDoNotAccumulateMemory(t *testing.T) {
	l := newLab(t, 28, func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
		withSecondChild(t)(ue, gw, uec, gwc)
		withClone(ue, gw, uec, gwc)
		ue.RekeyTime, ue.OverTime = 5*time.Minute, time.Minute
		gw.RekeyTime, gw.OverTime = 7*time.Minute, time.Minute
		for _, c := range append(ue.Children, gw.Children...) {
			c.RekeyTime, c.LifeTime, c.Start = 40*time.Second, time.Minute, true
		}
		ue.Children[1].RekeyTime = 55 * time.Second
	})
	id := l.up()
	l.clone(l.ue, id)
	l.heapFlatOverADay(wire.CreateChildSA, 3000, 2)
}

// heapFlatOverADay runs the lab for a simulated day after a warm-up and
// fails if the live heap grows by more than 64 KiB: the day must see at
// least min exchanges of type x on the end user, which must still hold
// sas established IKE SAs at the end.
func (l *lab) heapFlatOverADay(x wire.ExchangeType, min uint64, sas int) {
	t := l.t
	t.Helper()
	run := func(d time.Duration) {
		for end := l.net.Now.Add(d); l.net.Now.Before(end); {
			l.net.RunFor(time.Minute)
			// The simulator keeps every event; the engines must not.
			l.ue.Events, l.gw.Events, l.ue.Keys, l.gw.Keys = nil, nil, nil, nil
		}
	}
	run(30 * time.Minute)
	before := liveHeap()
	countBefore := l.ue.Engine.Stats().Exchanges[x]
	run(24 * time.Hour)
	after := liveHeap()
	n := l.ue.Engine.Stats().Exchanges[x] - countBefore
	if n < min {
		t.Fatalf("only %d %v exchanges in a day: the test replaced too few SAs to tell", n, x)
	}
	if got := len(l.ue.Established()); got != sas {
		t.Fatalf("%d IKE SAs at the end, want %d", got, sas)
	}
	grown := int64(after) - int64(before)
	t.Logf("live heap %d -> %d bytes over %d %v exchanges (%+.1f bytes each)", before, after, n, x, float64(grown)/float64(n))
	if grown > 64<<10 {
		t.Errorf("the live heap grew by %d bytes over %d %v exchanges (%.0f bytes each): replaced SAs are retained", grown, n, x, float64(grown)/float64(n))
	}
}

// RFC 7296 §2.8.3: the same for reauthentication, where each new IKE SA
// once kept the one it replaced, and that one its own predecessor.
func TestRFC7296Section2_8_3ReauthenticationsDoNotAccumulateMemory(t *testing.T) {
	l := newLab(t, 283, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.ReauthTime, ue.OverTime = 3*time.Minute, time.Minute
		for _, c := range append(ue.Children, gw.Children...) {
			c.RekeyTime, c.LifeTime = 50*time.Second, time.Minute
		}
	})
	l.up()
	l.heapFlatOverADay(wire.IKEAuth, 300, 1)
}
