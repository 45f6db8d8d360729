package ike_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 3948 §2.3: behind a NAT, a one-octet 0xFF keepalive goes out when
// nothing else was sent for 20 s; the host not behind a NAT sends none.
// The engine asks for them (ike.SendKeepalive); netsim's transport puts
// the one octet on the wire, and the gateway's transport keeps them from
// its engine.
func TestRFC3948Section2_3NATKeepalive(t *testing.T) {
	l := newLab(t, 70, nil)
	l.net.AddNAT(ueAddr, netip.MustParseAddr("203.0.113.7"))
	var ka, gwKa int
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if m.Keepalive {
			if m.Wire != 1 || d.Local.Port() != 4500 {
				t.Errorf("keepalive of %d octets from %v, want 1 from port 4500", m.Wire, d.Local)
			}
			if from == l.ue {
				ka++
			} else {
				gwKa++
			}
		}
		return netsim.Deliver
	}
	l.up()
	dropped := l.gw.Engine.Stats().Dropped
	l.net.RunFor(61 * time.Second)
	if ka != 3 || gwKa != 0 {
		t.Fatalf("keepalives ue %d gw %d, want 3 and 0", ka, gwKa)
	}
	if l.gw.KeepalivesIn != 3 || l.ue.KeepalivesIn != 0 || l.gw.Engine.Stats().Dropped != dropped {
		t.Fatalf("keepalives in: gw %d ue %d, gateway engine dropped %d; want 3, 0, and none reaching the engine",
			l.gw.KeepalivesIn, l.ue.KeepalivesIn, l.gw.Engine.Stats().Dropped-dropped)
	}
	l.settle(time.Second)
}

// A reload keeps SAs the new configuration still allows and deletes the
// others (with a Delete to the peer, RFC 7296 §1.4.1). Proposals that no
// longer admit the SA's algorithms keep it until its next rekey, which
// negotiates from the new ones.
func TestReconfigure(t *testing.T) {
	l := newLab(t, 71, nil)
	l.up()
	ueConn, gwConn := configs(t)
	// Same connection as a fresh copy: nothing changed, nothing listed.
	var r ike.Reconfiguration
	l.do(l.gw, func(e *ike.Engine, now time.Time) (acts []ike.Action, err error) {
		acts, r, err = e.Reconfigure(now, []*ike.Connection{gwConn})
		return acts, err
	})
	l.settle(time.Second)
	before := l.sa(l.gw)
	if len(r.Changed) != 0 || len(r.SAs) != 0 {
		t.Fatalf("an unchanged connection reported %+v", r)
	}
	gwConn2 := *gwConn
	gwConn2.IKE = mustIKE(t, "aes128-sha256-modp2048")
	l.do(l.gw, func(e *ike.Engine, now time.Time) (acts []ike.Action, err error) {
		acts, r, err = e.Reconfigure(now, []*ike.Connection{&gwConn2})
		return acts, err
	})
	l.settle(time.Second)
	if s := l.sa(l.gw); s.SPIi != before.SPIi || s.Proposal != before.Proposal {
		t.Fatalf("proposals changed: the IKE SA is %+v, want %+v kept", s, before)
	}
	if len(r.SAs) != 2 || r.SAs[0].Action != ike.SAKept || !strings.Contains(r.SAs[0].Reason, "next rekey") ||
		fmt.Sprint(r.Changed["rw"]) != "[IKE proposals]" {
		t.Fatalf("the reload reported %+v", r)
	}
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, before.ID, 0) })
	l.settle(time.Second)
	if s := l.sa(l.gw); s.SPIi == before.SPIi || s.Proposal != "aes128-sha256-modp2048" {
		t.Fatalf("after the rekey the IKE SA is %+v, want the new proposal", s)
	}
	// An invalid configuration is refused and changes nothing.
	bad := *ueConn
	bad.IKE = nil
	if _, _, err := l.ue.Engine.Reconfigure(l.net.Now, []*ike.Connection{&bad}); err == nil {
		t.Fatal("invalid configuration accepted")
	}
	// The connection removed: deleted on both sides.
	l.do(l.gw, func(e *ike.Engine, now time.Time) (acts []ike.Action, err error) {
		acts, r, err = e.Reconfigure(now, nil)
		return acts, err
	})
	l.settle(time.Second)
	if len(l.gw.Engine.IKESAs())+len(l.ue.Engine.IKESAs()) != 0 {
		t.Fatal("SA not deleted on both sides")
	}
	if len(r.SAs) != 2 || r.SAs[0].Action != ike.SAClosed || r.SAs[1].Child != "net" || r.SAs[1].Action != ike.SAClosed {
		t.Fatalf("the removal reported %+v", r)
	}
}

// dpd_action=restart: the initiator connects again after giving up a
// dead peer.
func TestRestartOnDeadPeer(t *testing.T) {
	l := newLab(t, 72, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.DPDDelay, ue.RestartOnDead = 30*time.Second, true
	})
	l.up()
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	l.net.RunFor(4 * time.Minute)
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Delay: 10 * time.Millisecond})
	if !l.net.RunUntil(10*time.Minute, func() bool { return len(l.ue.Established()) == 1 }) {
		t.Fatal("not restarted")
	}
	if len(l.ue.EventsOf(ike.EventIKEUp)) != 2 {
		t.Fatal("no second IKE SA")
	}
	// What the daemon's mifike_liveness_checks_total and
	// mifike_dead_peers_total show.
	if s := l.ue.Engine.Stats(); s.DeadPeers != 1 || s.LivenessChecks == 0 {
		t.Errorf("dead peers %d, liveness checks %d; want 1 and some", s.DeadPeers, s.LivenessChecks)
	}
}

// The ike-up that ends a handshake says how long it took, for the
// daemon's mifike_ike_handshake_duration_seconds: the initiator's from
// Initiate (two round trips), the responder's from the IKE_SA_INIT it
// answered (one).
func TestIKEUpSaysHowLongTheHandshakeTook(t *testing.T) {
	l := newLab(t, 73, nil)
	const delay = 10 * time.Millisecond
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Delay: delay})
	l.up()
	ue, gw := l.ue.EventsOf(ike.EventIKEUp), l.gw.EventsOf(ike.EventIKEUp)
	if len(ue) != 1 || len(gw) != 1 {
		t.Fatalf("ike-up events: ue %d, gw %d", len(ue), len(gw))
	}
	if !ue[0].Initiator || ue[0].Handshake < 4*delay || ue[0].Handshake > time.Second {
		t.Errorf("initiator: handshake %v, initiator %v; want two round trips of %v", ue[0].Handshake, ue[0].Initiator, 2*delay)
	}
	if gw[0].Initiator || gw[0].Handshake < 2*delay || gw[0].Handshake > time.Second {
		t.Errorf("responder: handshake %v, initiator %v; want a round trip of %v", gw[0].Handshake, gw[0].Initiator, 2*delay)
	}
}

// A reload that narrows a child's remote_ts on the side that set the IKE
// SA up deletes the Child SA outside it and creates the replacement with
// CREATE_CHILD_SA, proposing the new selectors, which the gateway narrows
// against its own policy (RFC 7296 §2.9); the IKE SA stays. The same
// narrowing on the gateway, which did not set the SA up, only deletes.
func TestReconfigureNarrowedSelectors(t *testing.T) {
	l := newLab(t, 73, nil)
	l.up()
	ike0 := l.sa(l.ue)
	old := ike0.Children[0]
	ueConn, gwConn := configs(t)
	ueConn.Children[0].RemoteTS = []wire.Selector{sel(t, "10.20.0.0/25")}
	var r ike.Reconfiguration
	l.do(l.ue, func(e *ike.Engine, now time.Time) (acts []ike.Action, err error) {
		acts, r, err = e.Reconfigure(now, []*ike.Connection{ueConn})
		return acts, err
	})
	l.settle(time.Second)
	if len(r.SAs) != 2 || r.SAs[1].Action != ike.SAReplaced || r.SAs[1].InSPI != old.InSPI ||
		!strings.Contains(r.SAs[1].Reason, "remote_ts 10.20.0.0/25 no longer covers 10.20.0.0/24") {
		t.Fatalf("the reload reported %+v", r)
	}
	ue, gw := l.sa(l.ue), l.sa(l.gw)
	if ue.ID != ike0.ID || len(ue.Children) != 1 || len(gw.Children) != 1 {
		t.Fatalf("after the reload: ue %+v gw %+v, want the IKE SA kept with one Child SA each", ue, gw)
	}
	c, g := ue.Children[0], gw.Children[0]
	if c.InSPI == old.InSPI || c.OutSPI != g.InSPI || l.ue.Children[old.InSPI].InSPI != 0 || l.gw.Children[old.OutSPI].InSPI != 0 {
		t.Fatalf("the Child SA %08x was not replaced on both sides: ue %+v gw %+v", old.InSPI, c, g)
	}
	if got := ts.Strings(c.RemoteTS); got != "10.20.0.0/25" {
		t.Fatalf("the initiator's replacement has remote_ts %s, want 10.20.0.0/25", got)
	}
	if got := ts.Strings(g.LocalTS); got != "10.20.0.0/25" {
		t.Fatalf("the gateway's replacement has local_ts %s, want 10.20.0.0/25", got)
	}

	// The gateway narrows further: it set nothing up, so it deletes.
	gwConn.Children[0].LocalTS = []wire.Selector{sel(t, "10.20.0.0/26")}
	l.do(l.gw, func(e *ike.Engine, now time.Time) (acts []ike.Action, err error) {
		acts, r, err = e.Reconfigure(now, []*ike.Connection{gwConn})
		return acts, err
	})
	l.settle(time.Second)
	if len(r.SAs) != 2 || r.SAs[1].Action != ike.SAClosed || r.SAs[1].InSPI != g.InSPI {
		t.Fatalf("the gateway's reload reported %+v", r)
	}
	if ue, gw := l.sa(l.ue), l.sa(l.gw); len(ue.Children)+len(gw.Children) != 0 || len(l.ue.Children)+len(l.gw.Children) != 0 {
		t.Fatalf("after the gateway's reload: ue %+v gw %+v, want the Child SA deleted on both", ue, gw)
	}
}

// A reload that narrows a child while its rekey is in flight: the rekey
// completes with the old selectors (RFC 7296 §2.9.2), and that new SA is
// then replaced as an installed one would have been; a rekey still
// queued does not renew the SA the reload deletes. Either
// way both sides end with one Child SA, with the new selectors.
func TestReconfigureDuringChildRekey(t *testing.T) {
	for _, inFlight := range []bool{true, false} {
		t.Run(map[bool]string{true: "in flight", false: "queued"}[inFlight], func(t *testing.T) {
			l := newLab(t, 74, nil)
			l.up()
			s := l.sa(l.ue)
			old := s.Children[0]
			ueConn, _ := configs(t)
			ueConn.Children[0].RemoteTS = []wire.Selector{sel(t, "10.20.0.0/25")}
			rekey := func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, s.ID, old.InSPI) }
			reload := func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
				acts, _, err := e.Reconfigure(now, []*ike.Connection{ueConn})
				return acts, err
			}
			if !inFlight {
				// A liveness check holds the one request slot, so the
				// rekey waits in the queue when the reload comes.
				l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, s.ID) })
			}
			l.do(l.ue, rekey)
			l.do(l.ue, reload)
			l.settle(5 * time.Second)
			ue, gw := l.sa(l.ue), l.sa(l.gw)
			if len(ue.Children) != 1 || len(gw.Children) != 1 || len(l.ue.Children) != 1 || len(l.gw.Children) != 1 {
				t.Fatalf("ue %+v gw %+v, want one Child SA each", ue.Children, gw.Children)
			}
			if got := ts.Strings(ue.Children[0].RemoteTS) + " " + ts.Strings(gw.Children[0].LocalTS); got != "10.20.0.0/25 10.20.0.0/25" {
				t.Fatalf("the Child SA's selectors are %s on the two sides, want 10.20.0.0/25", got)
			}
		})
	}
}
