package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

func withWindows(ueW, gwW uint32) func(ue, gw *ike.Connection, _, _ *ike.Config) {
	return func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.Window, gw.Window = ueW, gwW }
}

func all(fs ...func(ue, gw *ike.Connection, a, b *ike.Config)) func(ue, gw *ike.Connection, a, b *ike.Config) {
	return func(ue, gw *ike.Connection, a, b *ike.Config) {
		for _, f := range fs {
			f(ue, gw, a, b)
		}
	}
}

// RFC 7296 §2.3: each side states its window in IKE_AUTH; a window of
// one is not stated.
func TestRFC7296Section2_3WindowStated(t *testing.T) {
	l := newLab(t, 120, withWindows(4, 1))
	l.up()
	if countNotify(l.ue, wire.NotifySetWindowSize, true) != 1 || countNotify(l.gw, wire.NotifySetWindowSize, false) != 1 {
		t.Fatal("the end user's window of 4 was not stated in IKE_AUTH")
	}
	if countNotify(l.gw, wire.NotifySetWindowSize, true) != 0 {
		t.Fatal("a window of one was stated")
	}
}

// cloneUpTime clones the end user's IKE SA, then asks for the clone's
// Child SA and its move at the same instant, and returns how long (in
// simulated time, 10 ms each way) until both ends have the clone's
// Child SA on the new path.
func cloneUpTime(t *testing.T, ueW, gwW uint32, f netsim.Filter) time.Duration {
	l := newLab(t, 121, all(withClone, withSecondChild(t), withWindows(ueW, gwW)))
	l.twoAddrs()
	p := l.up()
	l.clone(l.ue, p)
	l.settle(time.Second)
	c := clonesOf(l.ue, p)[0]
	l.net.Filter = f
	var start time.Time
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		start = now
		a, err := e.CreateChild(now, c.ID, "pfs")
		if err != nil {
			return nil, err
		}
		b, err := e.Move(now, c.ID, ue2Addr, netip.Addr{}, "")
		return append(a, b...), err
	})
	done := func() bool {
		u := byID(l.ue, c.ID)
		if u.Local.Addr() != ue2Addr || len(u.Children) != 1 || u.Children[0].Local.Addr() != ue2Addr {
			return false
		}
		for _, s := range l.gw.Established() {
			if s.SPIi == u.SPIi && s.SPIr == u.SPIr {
				return s.Remote.Addr() == ue2Addr && len(s.Children) == 1 && s.Children[0].Remote.Addr() == ue2Addr
			}
		}
		return false
	}
	if f != nil {
		// The held request goes on after everything else has arrived.
		l.net.RunFor(50 * time.Millisecond)
		if l.net.Held() != 1 {
			t.Fatalf("%d datagrams held", l.net.Held())
		}
		l.net.Release(0)
	}
	if !l.net.RunUntil(10*time.Second, done) {
		t.Fatalf("clone's Child SA and move did not complete: ue %+v gw %+v", l.ue.Engine.IKESAs(), l.gw.Engine.IKESAs())
	}
	var end time.Time
	l.ue.Do(func(now time.Time) []ike.Action { end = now; return nil })
	l.settle(time.Second)
	if par := byID(l.ue, p); par.Local.Addr() != ueAddr || len(par.Children) != 1 {
		t.Fatal("the parent changed")
	}
	return end.Sub(start)
}

// RFC 7296 §2.3 with RFC 7791 App. A: when the gateway states a window
// (on the clone: it starts at one, so the clone's responder states it
// again), the end user sends the clone's Child SA and its move together:
// one round trip instead of two. Without the gateway's window it must
// wait for each answer.
func TestRFC7296Section2_3CloneChildAndMoveOverlap(t *testing.T) {
	overlapped := cloneUpTime(t, 4, 4, nil)
	serial := cloneUpTime(t, 4, 1, nil)
	t.Logf("clone Child SA + move: %v with windows, %v without", overlapped, serial)
	// Overlapped: the Child SA's answer is back after one round trip
	// (20 ms), the gateway took the move after 10 ms. One at a time: the
	// move leaves after the Child SA's answer and reaches the gateway
	// 10 ms later.
	if overlapped > 20*time.Millisecond {
		t.Errorf("with a window of 4 the two exchanges took %v of simulated time, want one 20 ms round trip", overlapped)
	}
	if serial < 30*time.Millisecond {
		t.Errorf("without the gateway's window the exchanges took %v: the end user exceeded the window of one", serial)
	}
}

// RFC 7296 §2.3: requests may pass one another; the responder answers
// a later one first, then the earlier one when it comes.
func TestRFC7296Section2_3RequestsOutOfOrder(t *testing.T) {
	held := false
	f := func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if !held && from.Name == "ue" && m.Exchange == uint8(wire.CreateChildSA) && !m.Response {
			held = true
			return netsim.Hold
		}
		return netsim.Deliver
	}
	cloneUpTime(t, 4, 4, f)
}

// RFC 4555 §3.5: with overlapping requests an older UPDATE_SA_ADDRESSES
// can arrive after a newer one. The responder answers it normally but
// does not go back to the older addresses.
func TestRFC4555Section3_5OlderUpdateNotApplied(t *testing.T) {
	l := newLab(t, 122, withWindows(4, 4))
	l.twoAddrs()
	id := l.up()
	held := false
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if !held && from == l.ue && m.Exchange == uint8(wire.Informational) && !m.Response {
			held = true
			return netsim.Hold // the move to the second address
		}
		return netsim.Deliver
	}
	l.move(l.ue, id, ue2Addr)
	l.move(l.ue, id, ueAddr) // and straight back, before any answer
	l.net.RunFor(100 * time.Millisecond)
	if l.net.Held() != 1 {
		t.Fatalf("%d datagrams held", l.net.Held())
	}
	gw := l.sa(l.gw)
	if gw.Remote.Addr() != ueAddr {
		t.Fatalf("gateway on %v after the newer update", gw.Remote)
	}
	l.net.Release(0)
	l.settle(time.Second)
	gw = l.sa(l.gw)
	if gw.Remote.Addr() != ueAddr || gw.Children[0].Remote.Addr() != ueAddr {
		t.Fatalf("the older update moved the gateway back to %v", gw.Remote)
	}
	if u := l.sa(l.ue); u.Local.Addr() != ueAddr || u.Children[0].Local.Addr() != ueAddr {
		t.Fatalf("end user on %v", u.Local)
	}
}
