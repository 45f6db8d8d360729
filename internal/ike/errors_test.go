package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 7296 §1.2: the responder asks for another group with
// INVALID_KE_PAYLOAD and the initiator retries with it, keeping its full
// proposal list.
func TestRFC7296Section1_2InvalidKEPayloadRetry(t *testing.T) {
	l := newLab(t, 10, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.IKE = mustIKE(t, "aes128gcm16-prfsha256-x25519-ecp256")
		gw.IKE = mustIKE(t, "aes128gcm16-prfsha256-ecp256")
	})
	l.up()
	l.settle(time.Second)
	if got := l.sa(l.ue).Proposal; got != "aes128gcm16-prfsha256-ecp256" {
		t.Errorf("proposal %q", got)
	}
	if countNotify(l.gw, wire.NotifyInvalidKEPayload, true) != 1 || countNotify(l.ue, wire.NotifyInvalidKEPayload, false) != 1 {
		t.Error("INVALID_KE_PAYLOAD not exchanged exactly once")
	}
}

// RFC 7296 §2.6: with many half-open SAs the responder demands a COOKIE;
// the initiator repeats IKE_SA_INIT with it first and gets through.
func TestRFC7296Section2_6Cookie(t *testing.T) {
	l := newLab(t, 11, func(_, _ *ike.Connection, _, gwc *ike.Config) { gwc.CookieThreshold = 1 })
	// Two initiations at once: the second finds one half-open SA.
	l.initiate()
	l.initiate()
	if !l.net.RunUntil(time.Minute, func() bool { return len(l.gw.Established()) == 2 && len(l.ue.Established()) == 2 }) {
		t.Fatalf("not both up: %+v", l.gw.Engine.IKESAs())
	}
	if countNotify(l.gw, wire.NotifyCookie, true) != 1 {
		t.Errorf("gw sent %d COOKIEs, want 1", countNotify(l.gw, wire.NotifyCookie, true))
	}
	l.settle(time.Second)
}

// RFC 7296 §2.7: no common IKE proposal ends the attempt on both sides.
func TestRFC7296Section2_7NoProposalChosen(t *testing.T) {
	l := newLab(t, 12, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.IKE = mustIKE(t, "aes256-sha512-ecp384")
	})
	l.initiate()
	l.net.RunFor(time.Minute)
	if len(l.ue.Engine.IKESAs()) != 0 || len(l.gw.Engine.IKESAs()) != 0 {
		t.Fatal("SAs left behind")
	}
	if len(l.ue.EventsOf(ike.EventIKEFailed)) != 1 || countNotify(l.gw, wire.NotifyNoProposalChosen, true) != 1 {
		t.Fatal("failure not reported")
	}
}

// RFC 7296 §2.21.2: a wrong shared secret gets AUTHENTICATION_FAILED and
// no IKE SA exists on either side afterwards.
func TestRFC7296Section2_21_2AuthenticationFailed(t *testing.T) {
	for _, wrong := range []string{"responder", "initiator"} {
		t.Run(wrong, func(t *testing.T) {
			l := newLab(t, 13, func(ue, gw *ike.Connection, _, _ *ike.Config) {
				if wrong == "responder" {
					ue.PSK = []byte("not the secret the gateway knows")
				} else {
					// The gateway accepts the client but is not who the
					// client expects: the initiator reports it (§2.21.2).
					gw.LocalID = fqdn("impostor.example")
				}
			})
			l.initiate()
			l.net.RunFor(time.Minute)
			if len(l.ue.Engine.IKESAs()) != 0 || len(l.gw.Engine.IKESAs()) != 0 {
				t.Fatalf("SAs left: ue %+v gw %+v", l.ue.Engine.IKESAs(), l.gw.Engine.IKESAs())
			}
			if n := countNotify(l.ue, wire.NotifyAuthenticationFailed, false) + countNotify(l.gw, wire.NotifyAuthenticationFailed, false); n != 1 {
				t.Errorf("%d AUTHENTICATION_FAILED received, want 1", n)
			}
		})
	}
}

// RFC 7296 §1.2, §2.9: when only the first Child SA fails (no acceptable
// selectors, no proposal, no address) the IKE SA stays up.
func TestRFC7296Section1_2ChildFailureKeepsIKESA(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(t *testing.T, ue, gw *ike.Connection)
		notify wire.NotifyType
	}{
		{"TS_UNACCEPTABLE", func(t *testing.T, ue, gw *ike.Connection) {
			ue.Children[0].RemoteTS = []wire.Selector{sel(t, "10.30.0.0/24")}
		}, wire.NotifyTSUnacceptable},
		{"NO_PROPOSAL_CHOSEN", func(t *testing.T, ue, gw *ike.Connection) {
			ue.Children[0].ESP = mustESP(t, "chacha20poly1305")
		}, wire.NotifyNoProposalChosen},
		{"INTERNAL_ADDRESS_FAILURE", func(t *testing.T, ue, gw *ike.Connection) {
			p, _ := ike.NewPool("tiny", netip.MustParsePrefix("10.99.0.0/30"))
			p.Acquire("somebody else")
			gw.Pools = []*ike.Pool{p}
		}, wire.NotifyInternalAddressFailure},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, 14, func(ue, gw *ike.Connection, _, _ *ike.Config) { c.mutate(t, ue, gw) })
			l.initiate()
			l.settle(10 * time.Second)
			ue, gw := l.sa(l.ue), l.sa(l.gw)
			if len(ue.Children) != 0 || len(gw.Children) != 0 {
				t.Fatal("a child exists")
			}
			if countNotify(l.gw, c.notify, true) != 1 || len(l.ue.EventsOf(ike.EventChildFailed)) != 1 {
				t.Fatalf("%s not sent or child failure not reported", c.notify)
			}
			// It names the child, for mifike initiate to report.
			if ev := l.ue.EventsOf(ike.EventChildFailed)[0]; ev.ChildName == "" || ev.IKESA != ue.ID {
				t.Fatalf("child-failed %+v: want the child's name and IKE SA %d", ev, ue.ID)
			}
		})
	}
}

// RFC 7296 §2.23: NAT detection; both sides see the NAT, move to 4500 and
// use UDP encapsulation.
func TestRFC7296Section2_23NATDetection(t *testing.T) {
	l := newLab(t, 15, nil)
	l.net.AddNAT(ueAddr, netip.MustParseAddr("203.0.113.7"))
	l.up()
	l.settle(time.Second)
	ue, gw := l.sa(l.ue), l.sa(l.gw)
	if !ue.NATLocal || ue.NATRemote || gw.NATLocal || !gw.NATRemote {
		t.Errorf("NAT flags ue local=%v remote=%v gw local=%v remote=%v", ue.NATLocal, ue.NATRemote, gw.NATLocal, gw.NATRemote)
	}
	if !ue.Encap || !gw.Encap || ue.Local.Port() != 4500 || gw.Remote.Addr().String() != "203.0.113.7" {
		t.Errorf("encapsulation %v %v, addresses %v %v", ue.Encap, gw.Encap, ue.Local, gw.Remote)
	}
	if !gw.Children[0].Encap || gw.Children[0].Remote != gw.Remote {
		t.Error("child not UDP-encapsulated to the NAT mapping")
	}
}

// RFC 7296 §2.4: a peer that stops answering is given up after the
// retransmissions (exponential backoff), with its Child SAs.
func TestRFC7296Section2_4RetransmitAndGiveUp(t *testing.T) {
	l := newLab(t, 16, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.DPDDelay = 10 * time.Second })
	l.up()
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	start := l.net.Now
	if !l.net.RunUntil(10*time.Minute, func() bool { return len(l.ue.Engine.IKESAs()) == 0 }) {
		t.Fatal("dead peer not detected")
	}
	took := l.net.Now.Sub(start)
	// 10 s of silence, then 4+7.2+13+23.3+42+75.6 s of retransmissions.
	if took < 150*time.Second || took > 190*time.Second {
		t.Errorf("gave up after %v", took)
	}
	retrans := l.ue.EventsOf(ike.EventRetransmit)
	if len(retrans) != 5 {
		t.Errorf("%d retransmissions, want 5", len(retrans))
	}
	if len(l.ue.Children) != 0 {
		t.Error("Child SAs left in the data plane")
	}
}

// RFC 7296 §2.1: a duplicated request gets the cached response, not a
// second processing.
func TestRFC7296Section2_1DuplicateRequests(t *testing.T) {
	l := newLab(t, 17, nil)
	l.net.Default = netsim.Link{Delay: 10 * time.Millisecond, Dup: 1}
	l.up()
	l.settle(time.Second)
	if n := len(l.gw.Established()); n != 1 {
		t.Fatalf("%d IKE SAs on gw", n)
	}
	if l.gw.Engine.Stats().Retransmissions == 0 {
		t.Error("no cached response was resent")
	}
}

// RFC 7296 §2.4: INITIAL_CONTACT from a restarted peer replaces its old
// IKE SAs.
func TestRFC7296Section2_4InitialContact(t *testing.T) {
	l := newLab(t, 18, nil)
	l.up()
	l.ue.Restart()
	l.up()
	l.settle(time.Second)
	if n := len(l.gw.Established()); n != 1 {
		t.Fatalf("gw kept %d IKE SAs, want only the new one", n)
	}
}

// RFC 7296 §1.4.1 and §2.4: an IKE SA we delete is closing from the
// moment we decide, though its Delete waits behind a request unanswered
// on a dead path. It shows as Deleting, its Child SAs stop carrying
// outbound traffic at once (deleting the IKE SA closes them), and a new
// IKE SA to the same peer is "the only IKE SA currently active", so it
// carries INITIAL_CONTACT and the gateway drops what it still has of the
// old one when the new one comes up.
func TestRFC7296Section1_4_1ClosingSA(t *testing.T) {
	l := newLab(t, 19, nil)
	old := l.up()
	l.settle(time.Second)
	dead := true
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if dead && from == l.ue {
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, old) })
	l.net.RunFor(time.Second) // the liveness check is out, unanswered
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, old, 0) })
	var info ike.IKESAInfo
	for _, s := range l.ue.Engine.IKESAs() {
		if s.ID == old {
			info = s
		}
	}
	if info.State != ike.StateDeleting {
		t.Fatalf("the SA being deleted shows as %v, want Deleting", info.State)
	}
	for spi, c := range l.ue.Children {
		if c.Outbound {
			t.Fatalf("Child SA %08x of the SA being deleted still carries outbound traffic", spi)
		}
	}
	// A new SA while the old one's Delete cannot leave.
	dead = false
	before := countNotify(l.gw, wire.NotifyInitialContact, false)
	l.initiate()
	l.net.RunFor(2 * time.Second)
	if countNotify(l.gw, wire.NotifyInitialContact, false) != before+1 {
		t.Fatal("the new IKE SA did not carry INITIAL_CONTACT though the only other one is being deleted")
	}
	if n := len(l.gw.Established()); n != 1 {
		t.Fatalf("the gateway has %d IKE SAs, want only the new one", n)
	}
}

// RFC 7296 §2.4: a peer that sends us an authentic message is there. A
// request of ours whose retransmissions all went out while the path was
// down (the last one waits the longest, over a minute) is sent again at
// once when the peer is heard from, and the SA lives, instead of being
// given up on a peer that is talking to us.
func TestRetransmitWhenThePeerIsHeardFrom(t *testing.T) {
	l := newLab(t, 91, nil)
	l.up()
	l.settle(time.Second)
	gw := l.sa(l.gw)
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	l.net.SetLink(gwAddr, ueAddr, netsim.Link{Down: true})
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, gw.ID) })
	l.net.RunFor(95 * time.Second) // every retransmission sent, lost; the last wait (76 s) runs
	if n := len(l.gw.EventsOf(ike.EventRetransmit)); n != 5 {
		t.Fatalf("%d retransmissions, want all 5 sent by now", n)
	}
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{})
	l.net.SetLink(gwAddr, ueAddr, netsim.Link{})
	ue := l.sa(l.ue)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, ue.ID) })
	l.net.RunFor(2 * time.Minute) // past the last wait's end
	if n := len(l.gw.EventsOf(ike.EventIKEDown)) + len(l.ue.EventsOf(ike.EventIKEDown)); n != 0 {
		t.Fatalf("an SA went down: gw %v, ue %v", l.gw.EventsOf(ike.EventIKEDown), l.ue.EventsOf(ike.EventIKEDown))
	}
	l.settle(time.Second)
}
