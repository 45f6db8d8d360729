package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
)

// recordingPolicy answers with a fixed choice and records the questions.
type recordingPolicy struct {
	asked []ike.PathQuery
	stay  bool
	iface string
}

func (p *recordingPolicy) NextPath(q ike.PathQuery) (ike.Path, bool) {
	p.asked = append(p.asked, q)
	if p.stay || len(q.Candidates) == 0 {
		return ike.Path{}, false
	}
	c := q.Candidates[len(q.Candidates)-1]
	c.Iface = p.iface
	return c, true
}

// RFC 4555 §3.5: the MOBIKE initiator decides where its SA goes, and the
// engine leaves that decision to the policy it is given: asked when the
// path's address goes away and when requests go unanswered, with the
// paths MOBIKE allows; its choice (pinned to its interface) is applied;
// "stay" is honoured.
func TestRFC4555Section3_5PathPolicyDecides(t *testing.T) {
	pol := &recordingPolicy{iface: "wlan0"}
	l := newLab(t, 51, func(ue, gw *ike.Connection, uec, gwc *ike.Config) { uec.PathPolicy = pol })
	l.twoAddrs()
	id := l.up()
	l.settle(time.Second)
	// Our address goes away.
	l.ue.RemoveAddr(ueAddr)
	l.ue.Do(func(now time.Time) []ike.Action { return l.ue.Engine.SetLocalAddresses(now, []netip.Addr{ue2Addr}) })
	l.settle(3 * time.Second)
	if len(pol.asked) != 1 {
		t.Fatalf("policy asked %d times, want once", len(pol.asked))
	}
	q := pol.asked[0]
	if q.Reason != ike.PathAddressGone || q.IKESA != id || !q.Initiator || q.Current.Local != ueAddr ||
		len(q.Candidates) != 1 || q.Candidates[0] != (ike.Path{Local: ue2Addr, Remote: gwAddr}) {
		t.Fatalf("question %+v", q)
	}
	s := l.sa(l.ue)
	if s.Local.Addr() != ue2Addr || s.Iface != "wlan0" {
		t.Fatalf("the SA is on %v (%q), not where the policy said", s.Local, s.Iface)
	}
	// The path goes silent: asked after the retransmissions, with the
	// reason; it says stay, and nothing moves.
	pol.stay, pol.asked = true, nil
	l.ue.AddAddr(ueAddr)
	l.ue.Do(func(now time.Time) []ike.Action {
		return l.ue.Engine.SetLocalAddresses(now, []netip.Addr{ueAddr, ue2Addr})
	})
	l.net.SetLink(ue2Addr, gwAddr, netsim.Link{Down: true})
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, l.sa(l.ue).ID) })
	l.net.RunFor(20 * time.Second)
	var unanswered int
	for _, q := range pol.asked {
		if q.Reason == ike.PathUnanswered {
			unanswered++
			if q.Tries < 2 {
				t.Errorf("asked after %d tries", q.Tries)
			}
		}
	}
	if unanswered == 0 {
		t.Fatalf("not asked about the silent path: %+v", pol.asked)
	}
	if got := l.sa(l.ue).Local.Addr(); got != ue2Addr {
		t.Fatalf("moved to %v although the policy said stay", got)
	}
}

// RFC 4555 §3.5: a path is given up for its own silence. After a move
// the count of retransmissions starts again, so the new path gets as many
// tries as the first before it is given up in turn (it used to be given
// up at its first retransmission, blaming an interface never tried).
func TestRFC4555Section3_5EachPathGetsItsTries(t *testing.T) {
	pol := &rotatingPolicy{}
	l := newLab(t, 52, func(ue, gw *ike.Connection, uec, gwc *ike.Config) { uec.PathPolicy = pol })
	l.twoAddrs()
	l.up()
	l.settle(time.Second)
	l.ue.OnAction = func(a ike.Action) {
		if ev, ok := a.(ike.Event); ok && ev.Kind == ike.EventRetransmit {
			pol.retransmits++
		}
	}
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	l.net.SetLink(ue2Addr, gwAddr, netsim.Link{Down: true})
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, l.sa(l.ue).ID) })
	l.net.RunFor(3 * time.Minute)
	if len(pol.asked) < 2 {
		t.Fatalf("asked %d times, want at least 2", len(pol.asked))
	}
	prev := 0
	for i, n := range pol.asked {
		if n-prev < 2 {
			t.Fatalf("question %d came %d retransmissions after the move before it, want at least 2 (retransmissions at each question: %v)", i, n-prev, pol.asked)
		}
		prev = n
	}
}

// rotatingPolicy moves to the first candidate and records how many
// retransmissions there had been at each question.
type rotatingPolicy struct {
	retransmits int
	asked       []int
}

func (p *rotatingPolicy) NextPath(q ike.PathQuery) (ike.Path, bool) {
	if q.Reason != ike.PathUnanswered || len(q.Candidates) == 0 {
		return ike.Path{}, false
	}
	p.asked = append(p.asked, p.retransmits+1) // the retransmission under way is counted after it asks
	return q.Candidates[0], true
}
