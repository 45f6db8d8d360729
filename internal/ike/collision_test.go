package ike_test

// Rekey, delete and create collisions (RFC 7296 §2.8.1, §2.8.2, §2.25),
// after the cases of strongSwan's test_child_rekey.c and test_ike_rekey.c.
// Each runs over several seeds: nonces, and so the winner of a §2.8.1
// tie-break, differ per seed, and the tests check both outcomes occur.

import (
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

const collisionSeeds = 12

// holdFirst holds the first datagram from node matching (exchange,
// response) and delivers everything else.
func holdFirst(node *netsim.Node, x wire.ExchangeType, response bool) netsim.Filter {
	done := false
	return func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if !done && from == node && m.Exchange == uint8(x) && m.Response == response {
			done = true
			return netsim.Hold
		}
		return netsim.Deliver
	}
}

func dropFirst(node *netsim.Node, x wire.ExchangeType, response bool) netsim.Filter {
	done := false
	return func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if !done && from == node && m.Exchange == uint8(x) && m.Response == response {
			done = true
			return netsim.Drop
		}
		return netsim.Deliver
	}
}

func (l *lab) rekeyChild(node *netsim.Node) {
	s := l.sa(node)
	l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Rekey(now, s.ID, s.Children[0].InSPI)
	})
}

func (l *lab) rekeyIKE(node *netsim.Node) {
	s := l.sa(node)
	l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, s.ID, 0) })
}

func (l *lab) deleteChild(node *netsim.Node) {
	s := l.sa(node)
	l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Terminate(now, s.ID, s.Children[0].InSPI)
	})
}

func (l *lab) deleteIKE(node *netsim.Node) {
	s := l.sa(node)
	l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, s.ID, 0) })
}

// oneChildReplaced checks the end state of a successful rekey: one IKE
// SA, one Child SA that is not the original, both peers agreeing.
func (l *lab) oneChildReplaced(orig uint32) {
	l.t.Helper()
	ue, gw := l.sa(l.ue), l.sa(l.gw)
	if len(ue.Children) != 1 || len(gw.Children) != 1 {
		l.t.Fatalf("children ue %d gw %d, want 1 each", len(ue.Children), len(gw.Children))
	}
	if ue.Children[0].InSPI == orig {
		l.t.Fatal("the original Child SA survived")
	}
	if !ue.Children[0].Outbound || !gw.Children[0].Outbound {
		l.t.Fatal("the surviving Child SA does not carry outbound traffic")
	}
}

func eventsWith(node *netsim.Node, k ike.EventKind, substr string) int {
	n := 0
	for _, e := range node.EventsOf(k) {
		if strings.Contains(e.Detail, substr) {
			n++
		}
	}
	return n
}

// Both peers rekey the same Child SA at once; the exchange with the
// lowest nonce made the redundant SA, which its initiator deletes; the
// other initiator deletes the old SA (§2.8.1).
func TestChildRekeyCollision(t *testing.T) {
	outcomes := map[string]int{}
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		orig := l.sa(l.ue).Children[0].InSPI
		l.rekeyChild(l.ue)
		l.rekeyChild(l.gw)
		l.settle(5 * time.Second)
		l.oneChildReplaced(orig)
		won, lost := eventsWith(l.ue, ike.EventChildRekeyed, "collision won"), eventsWith(l.ue, ike.EventChildRekeyed, "collision lost")
		gwWon, gwLost := eventsWith(l.gw, ike.EventChildRekeyed, "collision won"), eventsWith(l.gw, ike.EventChildRekeyed, "collision lost")
		if won+lost != 1 || gwWon+gwLost != 1 || won != gwLost {
			t.Fatalf("seed %d: ue won/lost %d/%d, gw %d/%d: exactly one side must win", seed, won, lost, gwWon, gwLost)
		}
		if won == 1 {
			outcomes["ue won"]++
		} else {
			outcomes["gw won"]++
		}
	}
	if len(outcomes) != 2 {
		t.Errorf("only one outcome over %d seeds: %v", collisionSeeds, outcomes)
	}
}

// As above, but the response to one rekey is delayed until the other
// peer already deleted the old SA (strongSwan test_collision_delayed_response).
func TestChildRekeyCollisionDelayedResponse(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		orig := l.sa(l.ue).Children[0].InSPI
		l.net.Filter = holdFirst(l.gw, wire.CreateChildSA, true)
		l.rekeyChild(l.ue)
		l.rekeyChild(l.gw)
		l.net.RunFor(2 * time.Second)
		if l.net.Held() != 1 {
			t.Fatal("response not held")
		}
		l.net.Release(0)
		l.settle(5 * time.Second)
		l.oneChildReplaced(orig)
	}
}

// One peer's rekey request arrives after the other finished its rekey:
// it is answered TEMPORARY_FAILURE and the sender gives up its rekey
// (test_collision_delayed_request).
func TestChildRekeyCollisionDelayedRequest(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		orig := l.sa(l.ue).Children[0].InSPI
		l.net.Filter = holdFirst(l.ue, wire.CreateChildSA, false)
		l.rekeyChild(l.ue)
		l.rekeyChild(l.gw)
		l.net.RunFor(15 * time.Millisecond) // gw's request reached ue, ue answered
		l.net.Release(0)
		l.settle(5 * time.Second)
		l.oneChildReplaced(orig)
		if countNotify(l.gw, wire.NotifyTemporaryFailure, true)+countNotify(l.gw, wire.NotifyChildSANotFound, true) != 1 {
			t.Fatalf("seed %d: delayed rekey request not refused", seed)
		}
	}
}

// The delayed request arrives after the old SA was deleted too: it gets
// CHILD_SA_NOT_FOUND, and the sender does not recreate anything
// (test_collision_delayed_request_more).
func TestChildRekeyCollisionDelayedRequestMore(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		orig := l.sa(l.ue).Children[0].InSPI
		l.net.Filter = holdFirst(l.ue, wire.CreateChildSA, false)
		l.rekeyChild(l.ue)
		l.rekeyChild(l.gw)
		l.net.RunFor(2 * time.Second) // gw's rekey and its Delete complete
		l.net.Release(0)
		l.settle(5 * time.Second)
		l.oneChildReplaced(orig)
		if countNotify(l.gw, wire.NotifyChildSANotFound, true) != 1 {
			t.Fatalf("seed %d: CHILD_SA_NOT_FOUND not sent", seed)
		}
	}
}

// Both rekey with PFS, one side's group unacceptable to the other: it is
// answered INVALID_KE_PAYLOAD, retries with the other group, and the
// rekeys still collide and resolve (test_collision_ke_invalid). Unlike
// strongSwan, a responder here picks the initiator's KE group when it is
// acceptable at all, so only the truly refused group costs a round trip.
func TestChildRekeyCollisionInvalidKE(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, func(ue, gw *ike.Connection, _, _ *ike.Config) {
			ue.Children[0].ESP = mustESP(t, "aes128gcm16-x25519-ecp256")
			gw.Children[0].ESP = mustESP(t, "aes128gcm16-ecp256")
		})
		l.up()
		orig := l.sa(l.ue).Children[0].InSPI
		l.rekeyChild(l.ue)
		l.rekeyChild(l.gw)
		l.settle(5 * time.Second)
		l.oneChildReplaced(orig)
		if countNotify(l.gw, wire.NotifyInvalidKEPayload, true) != 1 {
			t.Fatalf("seed %d: INVALID_KE_PAYLOAD sent %d times", seed, countNotify(l.gw, wire.NotifyInvalidKEPayload, true))
		}
	}
}

// A rekey collides with a delete of the same Child SA: the deleting side
// refuses the rekey with TEMPORARY_FAILURE, the rekeying side answers the
// delete as normal (§2.25 table); the Child SA is gone on both sides
// (test_collision_delete).
func TestChildRekeyDeleteCollision(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		l.rekeyChild(l.ue)
		l.deleteChild(l.gw)
		l.settle(5 * time.Second)
		if n := len(l.sa(l.ue).Children); n > 1 {
			t.Fatalf("seed %d: %d children left", seed, n)
		}
	}
}

// Both delete the same Child SA at once: both answer without a Delete
// payload (§1.4.1) and the SA is gone.
func TestChildDeleteCollision(t *testing.T) {
	l := newLab(t, 21, nil)
	l.up()
	l.deleteChild(l.ue)
	l.deleteChild(l.gw)
	l.settle(time.Second)
	if len(l.sa(l.ue).Children) != 0 || len(l.sa(l.gw).Children) != 0 {
		t.Fatal("child left")
	}
}

// A Child SA rekey and an IKE SA rekey at once: each side refuses the
// other's with TEMPORARY_FAILURE (§2.25 table), retries later, and both
// complete (test_collision_ike_rekey).
func TestChildRekeyIKERekeyCollision(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		before := l.sa(l.ue)
		l.rekeyChild(l.ue)
		l.rekeyIKE(l.gw)
		l.settle(2 * time.Minute)
		after := l.sa(l.ue)
		if countNotify(l.ue, wire.NotifyTemporaryFailure, true) != 1 || countNotify(l.gw, wire.NotifyTemporaryFailure, true) != 1 {
			t.Fatalf("seed %d: TEMPORARY_FAILURE sent ue %d gw %d", seed,
				countNotify(l.ue, wire.NotifyTemporaryFailure, true), countNotify(l.gw, wire.NotifyTemporaryFailure, true))
		}
		if after.ID == before.ID || after.Children[0].InSPI == before.Children[0].InSPI || len(after.Children) != 1 {
			t.Fatalf("seed %d: retries did not complete both rekeys", seed)
		}
	}
}

// A Child SA rekey while the peer deletes the IKE SA: everything is gone
// (test_collision_ike_delete).
func TestChildRekeyIKEDeleteCollision(t *testing.T) {
	l := newLab(t, 22, nil)
	l.up()
	l.rekeyChild(l.ue)
	l.deleteIKE(l.gw)
	l.settle(time.Minute)
	if len(l.ue.Engine.IKESAs()) != 0 || len(l.gw.Engine.IKESAs()) != 0 {
		t.Fatal("SAs left")
	}
}

// Both peers rekey the IKE SA at once (§2.8.2): one new IKE SA survives,
// with the Child SAs (test_ike_rekey.c test_collision).
func TestIKERekeyCollision(t *testing.T) {
	outcomes := map[string]int{}
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		before := l.sa(l.ue)
		l.rekeyIKE(l.ue)
		l.rekeyIKE(l.gw)
		l.settle(5 * time.Second)
		after := l.sa(l.ue)
		if after.ID == before.ID || len(after.Children) != 1 || after.Children[0].InSPI != before.Children[0].InSPI {
			t.Fatalf("seed %d: after %+v", seed, after)
		}
		won, lost := eventsWith(l.ue, ike.EventIKERekeyed, "collision won"), eventsWith(l.ue, ike.EventIKERekeyed, "collision lost")
		if won+lost != 1 || won != eventsWith(l.gw, ike.EventIKERekeyed, "collision lost") {
			t.Fatalf("seed %d: inconsistent collision outcome", seed)
		}
		if won == 1 {
			outcomes["ue won"]++
		} else {
			outcomes["gw won"]++
		}
	}
	if len(outcomes) != 2 {
		t.Errorf("only one outcome over %d seeds: %v", collisionSeeds, outcomes)
	}
}

// Both peers rekey the IKE SA at once and the winner's response to the
// loser's rekey is late: the winner's Delete of the old SA reaches the
// loser first, so the loser drops its rekey and never learns of the SA
// the winner made for it (§2.8.2). The winner must not keep that
// redundant SA, without Child SAs, until a liveness check gives it up
// minutes later: the soak of interface events found it as an IKE SA the
// end user had and the gateway lacked.
func TestIKERekeyCollisionLoserNeverLearns(t *testing.T) {
	dropped := 0
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		for _, late := range []string{"ue", "gw"} {
			l := newLab(t, seed, nil)
			l.up()
			node := l.ue
			if late == "gw" {
				node = l.gw
			}
			l.net.Filter = holdFirst(node, wire.CreateChildSA, true)
			l.rekeyIKE(l.ue)
			l.rekeyIKE(l.gw)
			l.net.RunFor(200 * time.Millisecond) // the winner's Delete of the old SA arrives
			l.net.Release(0)
			l.settle(30 * time.Second)
			ue, gw := l.sa(l.ue), l.sa(l.gw) // one IKE SA each
			if len(ue.Children) != 1 || len(gw.Children) != 1 {
				t.Fatalf("seed %d, %s's response late: Child SAs ue %d gw %d", seed, late, len(ue.Children), len(gw.Children))
			}
			dropped += eventsWith(node, ike.EventIKEDown, "rekey collision the peer did not delete")
		}
	}
	if dropped == 0 {
		t.Error("no run had a redundant SA the loser never learned of: the case is not tested")
	}
}

// One IKE rekey request arrives after the other side finished its rekey:
// TEMPORARY_FAILURE, the late one gives up (test_collision_delayed_request).
func TestIKERekeyCollisionDelayedRequest(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		before := l.sa(l.ue)
		l.net.Filter = holdFirst(l.ue, wire.CreateChildSA, false)
		l.rekeyIKE(l.ue)
		l.rekeyIKE(l.gw)
		l.net.RunFor(15 * time.Millisecond)
		l.net.Release(0)
		l.settle(5 * time.Second)
		after := l.sa(l.ue)
		if after.ID == before.ID || len(after.Children) != 1 {
			t.Fatalf("seed %d: after %+v", seed, after)
		}
	}
}

// One IKE rekey request is lost and retransmitted into the middle of the
// other's rekey (test_collision_dropped_request).
func TestIKERekeyCollisionDroppedRequest(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		l.net.Filter = dropFirst(l.ue, wire.CreateChildSA, false)
		l.rekeyIKE(l.ue)
		l.rekeyIKE(l.gw)
		l.settle(time.Minute)
		if len(l.sa(l.ue).Children) != 1 {
			t.Fatalf("seed %d: children lost", seed)
		}
	}
}

// An IKE rekey collides with an IKE delete: the SA is gone on both sides
// (test_collision_delete).
func TestIKERekeyDeleteCollision(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		l.rekeyIKE(l.ue)
		l.deleteIKE(l.gw)
		l.settle(time.Minute)
		if len(l.ue.Engine.IKESAs()) != 0 || len(l.gw.Engine.IKESAs()) != 0 {
			t.Fatalf("seed %d: SAs left: %+v %+v", seed, l.ue.Engine.IKESAs(), l.gw.Engine.IKESAs())
		}
	}
}

// After a §2.8.1 collision, ESP arriving on any of the SAs (the
// redundant one included: its initiator may have sent a packet on it
// before it learnt it lost) must leave each peer sending on exactly one
// Child SA, the winner: an SA already replaced never becomes the sending
// one again, or its packets are lost once the peer deletes it (a lost
// echo in an endurance run, "unknown-spi").
func TestChildRekeyCollisionInboundOnRedundantSA(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, nil)
		l.up()
		// Hold the Deletes (of the old and the redundant SA).
		l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
			if m.Exchange == uint8(wire.Informational) && !m.Response {
				return netsim.Hold
			}
			return netsim.Deliver
		}
		l.rekeyChild(l.ue)
		l.rekeyChild(l.gw)
		l.net.RunFor(2 * time.Second)
		for _, n := range []*netsim.Node{l.ue, l.gw} {
			var spis []uint32
			for spi, c := range n.Children {
				if !c.Outbound {
					spis = append(spis, spi)
				}
			}
			for _, spi := range spis {
				l.do(n, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Inbound(now, spi), nil })
			}
			out := 0
			for _, c := range n.Children {
				if c.Outbound {
					out++
				}
			}
			if out != 1 {
				t.Fatalf("seed %d: %s sends on %d Child SAs after ESP on each, want 1 (the winner)", seed, n.Name, out)
			}
		}
		l.net.Filter = nil
		for l.net.Held() > 0 {
			l.net.Release(0)
		}
		l.settle(5 * time.Second)
	}
}
