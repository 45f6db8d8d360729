package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

var (
	ue2Addr = netip.MustParseAddr("203.0.113.20")
	gw2Addr = netip.MustParseAddr("198.51.100.2")
)

// twoAddrs gives the end user a second address and tells both engines
// which addresses they have.
func (l *lab) twoAddrs() {
	l.ue.AddAddr(ue2Addr)
	l.ue.Do(func(now time.Time) []ike.Action {
		return l.ue.Engine.SetLocalAddresses(now, []netip.Addr{ueAddr, ue2Addr})
	})
}

func (l *lab) move(node *netsim.Node, id uint64, local netip.Addr) {
	l.t.Helper()
	l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Move(now, id, local, netip.Addr{}, "")
	})
}

// RFC 4555 §3.5: the initiator moves the IKE SA and its Child SAs with
// UPDATE_SA_ADDRESSES sent from the new address; the responder follows.
func TestRFC4555Section3_5Update(t *testing.T) {
	l := newLab(t, 100, nil)
	l.twoAddrs()
	id := l.up()
	l.move(l.ue, id, ue2Addr)
	l.settle(time.Second)
	ue, gw := l.sa(l.ue), l.sa(l.gw)
	if ue.Local.Addr() != ue2Addr || gw.Remote.Addr() != ue2Addr {
		t.Fatalf("IKE SA addresses ue %v gw %v", ue.Local, gw.Remote)
	}
	if ue.Children[0].Local.Addr() != ue2Addr || gw.Children[0].Remote.Addr() != ue2Addr {
		t.Fatal("Child SAs did not move")
	}
	if ue.NATLocal || gw.NATRemote {
		t.Fatal("NAT detected where there is none: NAT-D of the update wrong")
	}
	if countNotify(l.gw, wire.NotifyUpdateSAAddresses, false) != 1 || countNotify(l.gw, wire.NotifyCookie2, true) != 1 {
		t.Fatal("UPDATE_SA_ADDRESSES with COOKIE2 not exchanged")
	}
	// ADDITIONAL_IP4_ADDRESS of the second address reached the gateway.
	if len(l.sa(l.gw).PeerAddrs) == 0 {
		t.Fatal("no announced addresses")
	}
	// The answer is announced: mifike move waits for it.
	if ev := l.ue.EventsOf(ike.EventAddressConfirmed); len(ev) != 1 || ev[0].IKESA != id {
		t.Fatalf("address-confirmed events %+v, want one of IKE SA %d", ev, id)
	}
}

// RFC 4555 §2.1: only the initiator moves SAs.
func TestRFC4555Section2_1OnlyInitiatorMoves(t *testing.T) {
	l := newLab(t, 101, nil)
	l.up()
	if _, err := l.gw.Engine.Move(l.net.Now, l.sa(l.gw).ID, gwAddr, ue2Addr, ""); err == nil {
		t.Fatal("the responder moved an SA")
	}
}

// RFC 4555 §3.7: a responder with return routability checks the new
// address with its own COOKIE2 before moving the Child SAs.
func TestRFC4555Section3_7ReturnRoutability(t *testing.T) {
	l := newLab(t, 102, func(_, gw *ike.Connection, _, _ *ike.Config) { gw.ReturnRoutability = true })
	l.twoAddrs()
	id := l.up()
	l.move(l.ue, id, ue2Addr)
	l.settle(time.Second)
	if countNotify(l.gw, wire.NotifyCookie2, true) != 2 || countNotify(l.ue, wire.NotifyCookie2, true) != 2 {
		t.Fatalf("COOKIE2 gw->%d ue->%d, want the update's and the check's", countNotify(l.gw, wire.NotifyCookie2, true), countNotify(l.ue, wire.NotifyCookie2, true))
	}
	if l.sa(l.gw).Children[0].Remote.Addr() != ue2Addr {
		t.Fatal("Child SAs not moved after the check")
	}
}

// RFC 4555 §3.7 across an IKE rekey (§1.3: the successor continues the
// series): while the responder's return routability check of a new
// initiator address is unanswered, its Child SAs stay on the proven path,
// also when the IKE SA is rekeyed meanwhile; the successor checks the
// address again and only then moves them.
func TestRFC4555Section3_7ReturnRoutabilitySurvivesRekey(t *testing.T) {
	l := newLab(t, 107, func(_, gw *ike.Connection, _, _ *ike.Config) { gw.ReturnRoutability = true })
	l.twoAddrs()
	id := l.up()
	// The gateway's requests to the new address are lost: its check
	// cannot complete.
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.gw && d.Remote.Addr() == ue2Addr && !m.Response {
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.move(l.ue, id, ue2Addr)
	l.net.RunFor(500 * time.Millisecond)
	gwID := l.sa(l.gw).ID
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, id, 0) })
	l.net.RunFor(3 * time.Second)
	gw := l.sa(l.gw)
	if gw.ID == gwID {
		t.Fatal("the gateway's IKE SA was not rekeyed")
	}
	if got := gw.Children[0].Remote.Addr(); got != ueAddr {
		t.Fatalf("Child SAs moved to %v before the check passed", got)
	}
	l.net.Filter = nil
	l.settle(2 * time.Minute)
	if got := l.sa(l.gw).Children[0].Remote.Addr(); got != ue2Addr {
		t.Fatalf("Child SAs on %v after the successor's check, want %v", got, ue2Addr)
	}
}

// RFC 4555 §3.9: without NAT traversal, the first IKE_AUTH request and
// every address update carry NO_NATS_ALLOWED, which the responder checks
// against the IP header.
func TestRFC4555Section3_9NoNATsAllowed(t *testing.T) {
	l := newLab(t, 108, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.NoNATT, gw.NoNATT = true, true })
	l.twoAddrs()
	id := l.up()
	if n := countNotify(l.gw, wire.NotifyNoNATsAllowed, false); n != 1 {
		t.Fatalf("gateway received %d NO_NATS_ALLOWED in IKE_AUTH", n)
	}
	if countNotify(l.ue, wire.NotifyNATDetectionSourceIP, true) != 0 {
		t.Fatal("NAT detection sent with NAT traversal off")
	}
	l.move(l.ue, id, ue2Addr)
	l.settle(time.Second)
	if countNotify(l.gw, wire.NotifyNoNATsAllowed, false) < 2 || l.sa(l.gw).Remote.Addr() != ue2Addr {
		t.Fatal("the update did not carry NO_NATS_ALLOWED, or was not followed")
	}
	if countNotify(l.gw, wire.NotifyUnexpectedNATDetected, true) != 0 {
		t.Fatal("a NAT reported on a NAT-free path")
	}
}

// RFC 4555 §3.9: a NAT on the path when NAT traversal is off is refused
// with UNEXPECTED_NAT_DETECTED: in IKE_AUTH the SA is not made.
func TestRFC4555Section3_9UnexpectedNATInIKEAuth(t *testing.T) {
	l := newLab(t, 109, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.NoNATT, gw.NoNATT = true, true })
	l.net.AddNAT(ueAddr, netip.MustParseAddr("203.0.113.7"))
	l.initiate()
	l.settle(10 * time.Second)
	// §3.9: the initiator SHOULD retry several times from a new
	// IKE_SA_INIT: the first try and three more, then it gives up.
	if n := countNotify(l.gw, wire.NotifyUnexpectedNATDetected, true); n != 4 {
		t.Fatalf("%d UNEXPECTED_NAT_DETECTED, want 4 (the first try and 3 retries)", n)
	}
	if n := l.ue.Engine.Stats().Exchanges[wire.IKESAInit]; n != 4 {
		t.Fatalf("%d IKE_SA_INIT exchanges, want 4", n)
	}
	if len(l.gw.Established()) != 0 || len(l.ue.Established()) != 0 {
		t.Fatal("an IKE SA was established through a NAT the peers prohibited")
	}
}

// RFC 4555 §3.9 and §3.7: an update through a NAT the peers prohibited
// is answered UNEXPECTED_NAT_DETECTED with the COOKIE2 echoed, so the
// initiator keeps its SA and returns to the path that worked.
func TestRFC4555Section3_9UnexpectedNATInUpdate(t *testing.T) {
	l := newLab(t, 110, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.NoNATT, gw.NoNATT = true, true })
	l.twoAddrs()
	id := l.up()
	l.net.AddNAT(ue2Addr, netip.MustParseAddr("203.0.113.99"))
	l.move(l.ue, id, ue2Addr)
	l.settle(10 * time.Second)
	// §3.9: retried with new requests several times (3) before going
	// back.
	if n := countNotify(l.gw, wire.NotifyUnexpectedNATDetected, true); n != 4 {
		t.Fatalf("%d UNEXPECTED_NAT_DETECTED, want 4 (the first update and 3 retries)", n)
	}
	ue := l.sa(l.ue)
	if ue.ID != id || ue.Local.Addr() != ueAddr || l.sa(l.gw).Children[0].Remote.Addr() != ueAddr {
		t.Fatalf("after the refusal the end user is on %v (SA %d)", ue.Local, ue.ID)
	}
}

// RFC 4555 §3.5: a responder policy refusing the new address answers
// UNACCEPTABLE_ADDRESSES; the initiator goes back to a usable path.
func TestRFC4555Section3_5UnacceptableAddresses(t *testing.T) {
	l := newLab(t, 103, func(_, gw *ike.Connection, _, _ *ike.Config) { gw.RemoteAddrs = []netip.Addr{ueAddr} })
	l.ue.AddAddr(ue2Addr) // not announced, so not acceptable to the gateway
	id := l.up()
	l.move(l.ue, id, ue2Addr)
	l.settle(time.Second)
	if countNotify(l.gw, wire.NotifyUnacceptableAddresses, true) != 1 {
		t.Fatal("no UNACCEPTABLE_ADDRESSES")
	}
	// The refusal is an event of its own, with the notify, so that the
	// move is not taken for done when the SA is back on its old path.
	refused := 0
	for _, ev := range l.ue.EventsOf(ike.EventAddressUpdate) {
		if ev.Notify == wire.NotifyUnacceptableAddresses {
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("%d address-update events with UNACCEPTABLE_ADDRESSES, want 1", refused)
	}
	if ue := l.sa(l.ue); ue.Local.Addr() != ueAddr || ue.Children[0].Local.Addr() != ueAddr {
		t.Fatalf("initiator did not return to a usable path: %v", ue.Local)
	}
}

// RFC 4555 §3.5, §3.10: when the path fails, the initiator's retransmitted
// requests try another address pair; the answer there is followed by
// UPDATE_SA_ADDRESSES and the SAs carry on.
func TestRFC4555Section3_5PathProbing(t *testing.T) {
	l := newLab(t, 104, func(ue, _ *ike.Connection, _, _ *ike.Config) { ue.DPDDelay = 10 * time.Second })
	l.twoAddrs()
	l.up()
	first := l.sa(l.ue)
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	l.settle(2 * time.Minute)
	ue := l.sa(l.ue)
	if ue.ID != first.ID || ue.Local.Addr() != ue2Addr || l.sa(l.gw).Children[0].Remote.Addr() != ue2Addr {
		t.Fatalf("did not fail over: %+v", ue)
	}
	if len(l.ue.EventsOf(ike.EventPathProbe)) == 0 {
		t.Fatal("no path-probe event")
	}
}

// RFC 4555 §3.4, §3.5 exception: the responder's address goes away; it
// moves its side and announces its addresses; the initiator follows.
func TestRFC4555Section3_5ResponderAddressGone(t *testing.T) {
	l := newLab(t, 105, nil)
	l.gw.AddAddr(gw2Addr)
	l.gw.Do(func(now time.Time) []ike.Action {
		return l.gw.Engine.SetLocalAddresses(now, []netip.Addr{gwAddr, gw2Addr})
	})
	l.up()
	if pa := l.sa(l.ue).PeerAddrs; len(pa) != 2 || pa[1] != gw2Addr {
		t.Fatalf("gateway's additional address not announced in IKE_AUTH: %v", pa)
	}
	l.gw.RemoveAddr(gwAddr)
	l.gw.Do(func(now time.Time) []ike.Action { return l.gw.Engine.SetLocalAddresses(now, []netip.Addr{gw2Addr}) })
	l.settle(time.Minute)
	if ue := l.sa(l.ue); ue.Remote.Addr() != gw2Addr || ue.Children[0].Remote.Addr() != gw2Addr {
		t.Fatalf("initiator did not follow: %v", ue.Remote)
	}
}

// RFC 7791 Appendix A: authenticate once on interface 0, clone, create
// the VPN's Child SA on the clone, move the clone to interface 1 (and the
// variant that moves first). The parent and its Child SA stay on
// interface 0: MOBIKE moves only the clone (RFC 4555 per IKE SA).
func TestRFC7791AppendixAFlow(t *testing.T) {
	for _, moveFirst := range []bool{false, true} {
		name := "child then move"
		if moveFirst {
			name = "move then child"
		}
		t.Run(name, func(t *testing.T) {
			l := newLab(t, 106, func(ue, gw *ike.Connection, a, b *ike.Config) {
				withClone(ue, gw, a, b)
				withSecondChild(t)(ue, gw, a, b)
			})
			l.twoAddrs()
			p := l.up() // one authentication
			l.clone(l.ue, p)
			l.settle(time.Second)
			c := clonesOf(l.ue, p)[0]
			steps := []func(){
				func() {
					l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, c.ID, "pfs") })
				},
				func() { l.move(l.ue, c.ID, ue2Addr) },
			}
			if moveFirst {
				steps[0], steps[1] = steps[1], steps[0]
			}
			for _, s := range steps {
				s()
				l.settle(time.Second)
			}
			if len(l.ue.EventsOf(ike.EventIKEUp)) != 2 || countNotify(l.gw, wire.NotifyAuthenticationFailed, true) != 0 {
				t.Fatal("more than one authentication")
			}
			cl, par := byID(l.ue, c.ID), byID(l.ue, p)
			if cl.Local.Addr() != ue2Addr || len(cl.Children) != 1 || cl.Children[0].Local.Addr() != ue2Addr {
				t.Fatalf("clone VPN not on the second address: %+v", cl)
			}
			if par.Local.Addr() != ueAddr || par.Children[0].Local.Addr() != ueAddr {
				t.Fatal("the parent moved too")
			}
			gwClone := l.sa2(l.gw, cl)
			if gwClone.Remote.Addr() != ue2Addr || gwClone.Children[0].Remote.Addr() != ue2Addr || l.sa2(l.gw, par).Remote.Addr() != ueAddr {
				t.Fatal("gateway's view of the paths")
			}
		})
	}
}

// RFC 7791 §1 cluster case: the gateway clones a client's IKE SA and,
// as the clone's initiator, moves it (here to its second address, as a
// node handing the SA to another node would); the client cannot.
func TestRFC7791GatewayCloneMovedByGateway(t *testing.T) {
	l := newLab(t, 107, withClone)
	l.gw.AddAddr(gw2Addr)
	// The gateway announces the address it will move to (§3.4).
	l.gw.Do(func(now time.Time) []ike.Action {
		return l.gw.Engine.SetLocalAddresses(now, []netip.Addr{gwAddr, gw2Addr})
	})
	l.up()
	gp := l.sa(l.gw)
	l.clone(l.gw, gp.ID)
	l.settle(time.Second)
	gc := clonesOf(l.gw, gp.ID)[0]
	if !gc.MOBIKEInitiator || l.sa2(l.ue, gc).MOBIKEInitiator {
		t.Fatal("roles: the gateway cloned, it must be the clone's MOBIKE initiator")
	}
	if _, err := l.ue.Engine.Move(l.net.Now, l.sa2(l.ue, gc).ID, ueAddr, gw2Addr, ""); err == nil {
		t.Fatal("the client moved a clone the gateway made")
	}
	l.move(l.gw, gc.ID, gw2Addr)
	l.settle(time.Second)
	if got := l.sa2(l.ue, byID(l.gw, gc.ID)).Remote.Addr(); got != gw2Addr {
		t.Fatalf("client sees the clone at %v", got)
	}
}

// RFC 4555 §3.5 across an IKE SA rekey (§1.3: the initiator is that of
// the whole series of rekeyed IKE SAs): the parent moves while a clone
// request is out, so the clone starts on the new path here and on the old
// one at the gateway, and its UPDATE_SA_ADDRESSES is pending. That update
// is lost and the gateway rekeys the clone before it is retransmitted:
// the successor must still send the update, or the peers stay on
// different paths for good (soak seed 45234).
func TestRFC4555Section3_5CloneUpdateSurvivesRekey(t *testing.T) {
	l := newLab(t, 108, withClone)
	l.twoAddrs()
	p := l.up()
	pue := l.sa(l.ue)
	pgw := l.sa2(l.gw, pue)
	cloneResp, cloneUpdate := false, false
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		switch {
		case !cloneResp && from == l.gw && m.Exchange == uint8(wire.CreateChildSA) && m.Response:
			cloneResp = true // the clone's first answer: the parent moves before the retransmission
			return netsim.Drop
		case !cloneUpdate && from == l.ue && m.Exchange == uint8(wire.Informational) && !m.Response && m.SPIi != pue.SPIi:
			cloneUpdate = true // the clone's UPDATE_SA_ADDRESSES
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.clone(l.ue, p)
	l.net.RunFor(100 * time.Millisecond)
	if len(clonesOf(l.gw, pgw.ID)) != 1 {
		t.Fatal("the gateway did not make the clone")
	}
	l.move(l.ue, p, ue2Addr)
	if !l.net.RunUntil(time.Minute, func() bool { return len(clonesOf(l.ue, p)) == 1 && cloneUpdate }) {
		t.Fatal("the clone did not come up at the end user")
	}
	c := clonesOf(l.ue, p)[0]
	if c.Local.Addr() != ue2Addr {
		t.Fatalf("clone at %v: the parent did not move first", c.Local)
	}
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, l.sa2(l.gw, c).ID, 0) })
	l.settle(time.Minute)
	for _, s := range l.ue.Established() {
		if s.ID == c.ID {
			t.Fatal("the clone was not rekeyed")
		}
	}
}

// RFC 7296 §2.11 (and RFC 4555 §3.5): a response goes back to the address
// and port the request came from, a retransmitted one from the cache
// too. The end user's liveness check is answered but the answer is lost;
// its link goes away, the SA moves, and the request is retransmitted from
// the new address: the cached answer must go there, not to the old,
// dead address (found by TestManagedClonesSurviveRekeys: the SA hung
// until its hard lifetime).
func TestRFC7296Section2_11CachedResponseToRequestSource(t *testing.T) {
	l := newLab(t, 211, nil)
	l.twoAddrs()
	id := l.up()
	l.settle(time.Second)
	lost := false
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.gw && m.Response && wire.ExchangeType(m.Exchange) == wire.Informational && !lost {
			lost = true
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, id) })
	l.net.RunFor(100 * time.Millisecond)
	if !lost {
		t.Fatal("the liveness check's answer was not sent")
	}
	l.ue.RemoveAddr(ueAddr)
	l.ue.Do(func(now time.Time) []ike.Action { return l.ue.Engine.SetLocalAddresses(now, []netip.Addr{ue2Addr}) })
	l.move(l.ue, id, ue2Addr)
	l.settle(30 * time.Second)
	ue, gw := l.sa(l.ue), l.sa(l.gw)
	if ue.Local.Addr() != ue2Addr || gw.Remote.Addr() != ue2Addr {
		t.Fatalf("IKE SA addresses ue %v gw %v", ue.Local, gw.Remote)
	}
	if n := len(l.ue.EventsOf(ike.EventIKEDown)); n != 0 {
		t.Fatalf("the end user lost its IKE SA: %v", l.ue.EventsOf(ike.EventIKEDown))
	}
}

// RFC 4555 §3.5: outstanding requests "continue" on the new addresses
// once the initiator moves. They go out on the new path at once, not when
// their retransmission timer fires (by the third try that is 7 s away, by
// the fifth over 40 s): until the outstanding request is answered, the
// window keeps the UPDATE_SA_ADDRESSES back and the peer goes on sending
// to the dead address.
func TestRFC4555Section3_5OutstandingRequestFollowsTheMove(t *testing.T) {
	l := newLab(t, 101, nil)
	l.twoAddrs()
	id := l.up()
	l.settle(time.Second)
	var moved time.Time
	var sentNew []time.Duration // when the Child SA request went from the new address, after the move
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from != l.ue || m.Response {
			return netsim.Deliver
		}
		if d.Local.Addr() == ueAddr {
			return netsim.Drop // the first path died
		}
		if m.Exchange == uint8(wire.CreateChildSA) && !moved.IsZero() {
			sentNew = append(sentNew, l.net.Now.Sub(moved))
		}
		return netsim.Deliver
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, id, "net") })
	l.net.RunFor(5 * time.Second) // the first try and one retransmission, both lost; the next is due at 11.2 s
	before := l.ue.Engine.Stats().Retransmissions
	moved = l.net.Now
	l.move(l.ue, id, ue2Addr)
	l.net.RunFor(time.Second)
	if len(sentNew) == 0 {
		t.Fatalf("the outstanding CREATE_CHILD_SA request did not go out on the new path within a second of the move (retransmissions %d → %d)",
			before, l.ue.Engine.Stats().Retransmissions)
	}
	if sentNew[0] != 0 {
		t.Errorf("the request went on the new path %v after the move, want at once", sentNew[0])
	}
	l.settle(5 * time.Second)
	ue := l.sa(l.ue)
	if len(ue.Children) != 2 || ue.Local.Addr() != ue2Addr {
		t.Fatalf("after the move: %d Child SAs on %v, want the new one too, on %v", len(ue.Children), ue.Local, ue2Addr)
	}
}

// RFC 4555 §3.5, the responder's side: a request of the gateway's own
// that went to the address the end user left follows the end user to
// the address its UPDATE_SA_ADDRESSES came from at once. Left on its
// timer, a request at its last tries goes on unheard at the old address
// until the gateway gives the SA up, while the end user sees nothing
// wrong.
func TestRFC4555Section3_5ResponderRequestFollowsTheUpdate(t *testing.T) {
	l := newLab(t, 102, nil)
	l.twoAddrs()
	id := l.up()
	l.settle(time.Second)
	gwID := l.sa(l.gw).ID
	var updated time.Time
	var sentNew []time.Duration // when the gateway's request reached the new address, after the update
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from != l.gw {
			return netsim.Deliver
		}
		if d.Remote.Addr() == ueAddr {
			return netsim.Drop // the end user's first path died
		}
		if m.Exchange == uint8(wire.CreateChildSA) && !m.Response {
			sentNew = append(sentNew, l.net.Now.Sub(updated))
		}
		if m.Exchange == uint8(wire.Informational) && m.Response && updated.IsZero() {
			updated = l.net.Now // the answer to UPDATE_SA_ADDRESSES
		}
		return netsim.Deliver
	}
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, gwID, "net") })
	l.net.RunFor(5 * time.Second) // two tries lost; the next is due at 11.2 s
	l.move(l.ue, id, ue2Addr)
	l.net.RunFor(time.Second)
	if len(sentNew) == 0 {
		t.Fatal("the gateway's outstanding CREATE_CHILD_SA request did not follow the end user to its new address within a second of the update")
	}
	if sentNew[0] != 0 {
		t.Errorf("the request went to the new address %v after the update was answered, want at once", sentNew[0])
	}
	l.settle(5 * time.Second)
	if n := len(l.sa(l.gw).Children); n != 2 {
		t.Fatalf("the gateway has %d Child SAs after the update, want 2", n)
	}
}
