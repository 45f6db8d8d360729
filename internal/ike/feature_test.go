package ike_test

import (
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 7296 §2.16: IKE_AUTH may take several rounds. A unit that asks for
// more (as EAP will) gets them on both sides, the features still
// negotiate (MOBIKE, CP) from the first request and the last response,
// the first Child SA rides in the last round, and the Message IDs go on
// from there.
func TestRFC7296Section2_16MultiRoundIKEAuth(t *testing.T) {
	for _, extra := range []int{1, 3} {
		l := newLab(t, 7, nil)
		ueRounds := ike.AddExtraAuthRounds(l.ue.Engine, extra)
		gwRounds := ike.AddExtraAuthRounds(l.gw.Engine, extra)
		l.up()
		l.settle(time.Second)
		if *ueRounds != extra+1 || *gwRounds != extra+1 {
			t.Fatalf("extra %d: rounds seen ue %d gw %d, want %d", extra, *ueRounds, *gwRounds, extra+1)
		}
		if got := l.gw.Engine.Stats().Exchanges[wire.IKEAuth]; got != uint64(extra+1) {
			t.Errorf("extra %d: gateway answered %d IKE_AUTH requests, want %d", extra, got, extra+1)
		}
		ue, gw := l.sa(l.ue), l.sa(l.gw)
		if !ue.MOBIKE || !gw.MOBIKE || len(ue.VirtualIPs) != 1 || len(ue.Children) != 1 || len(gw.Children) != 1 {
			t.Fatalf("extra %d: features or child missing: ue %+v gw %+v", extra, ue, gw)
		}
		// The exchanges after IKE_AUTH use the next Message IDs (§2.2).
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, ue.ID) })
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, ue.ID, 0) })
		l.settle(5 * time.Second)
		if n := len(l.ue.Established()); n != 1 {
			t.Fatalf("extra %d: %d IKE SAs after a rekey", extra, n)
		}
	}
}

// A peer that expects more rounds than the other gives it: the
// initiator's unit finds no round notify in the response and the
// exchange fails on both sides, with nothing left half made.
func TestRFC7296Section2_16RoundMismatchFails(t *testing.T) {
	l := newLab(t, 8, nil)
	ike.AddExtraAuthRounds(l.ue.Engine, 1)
	l.initiate()
	l.net.RunFor(30 * time.Second)
	if n := len(l.ue.Established()) + len(l.gw.Established()); n != 0 {
		t.Fatalf("%d SAs established although the rounds did not match", n)
	}
}

// RFC 3948, RFC 7296 §2.23: forced encapsulation (strongSwan's
// encap=yes) makes the peer see a NAT, and both sides then encapsulate
// ESP in UDP, the forcing side too.
func TestRFC3948ForcedEncapsulationOnBothSides(t *testing.T) {
	l := newLab(t, 9, func(ue, gw *ike.Connection, uec, gwc *ike.Config) { ue.ForceEncap = true })
	l.up()
	l.settle(time.Second)
	ue, gw := l.sa(l.ue), l.sa(l.gw)
	if !ue.Encap || !gw.Encap {
		t.Fatalf("encapsulation: end user %v, gateway %v; want both", ue.Encap, gw.Encap)
	}
	if !gw.NATRemote || ue.NATLocal {
		t.Errorf("NAT detection: gateway sees remote NAT %v (want true), end user sees local NAT %v (want false)", gw.NATRemote, ue.NATLocal)
	}
	for _, c := range l.ue.Children {
		if !c.Encap {
			t.Errorf("end user's Child SA %08x is not encapsulated", c.InSPI)
		}
	}
}

// RFC 6023 §3: the responder announces childless IKE_AUTH; an initiator
// that starts no Child SA then sends IKE_AUTH without one, and the SA
// comes up without Child SAs. To a responder that did not announce it,
// the connection's first Child SA rides in IKE_AUTH instead.
func TestRFC6023ChildlessIKEAuth(t *testing.T) {
	l := newLab(t, 61, func(ue, gw *ike.Connection, uec, gwc *ike.Config) { ue.Children[0].Start = false })
	l.initiate()
	l.net.RunFor(5 * time.Second)
	ue, gw := l.sa(l.ue), l.sa(l.gw)
	if len(ue.Children) != 0 || len(gw.Children) != 0 {
		t.Fatalf("childless IKE_AUTH made Child SAs: ue %d gw %d", len(ue.Children), len(gw.Children))
	}
	if countNotify(l.ue, wire.NotifyChildlessIKEv2Supported, false) != 1 {
		t.Fatal("the responder did not announce CHILDLESS_IKEV2_SUPPORTED")
	}

	// A responder that does not offer it.
	l = newLab(t, 62, func(ue, gw *ike.Connection, uec, gwc *ike.Config) { ue.Children[0].Start, gw.NoChildless = false, true })
	l.initiate()
	l.net.RunFor(5 * time.Second)
	if ue := l.sa(l.ue); len(ue.Children) != 1 {
		t.Fatalf("without the peer's childless support IKE_AUTH carried %d Child SAs, want the first one", len(ue.Children))
	}
}
