package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
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
// others (with a Delete to the peer).
func TestReconfigure(t *testing.T) {
	l := newLab(t, 71, nil)
	l.up()
	ueConn, gwConn := configs(t)
	// Same connection, new child policy elsewhere: the IKE SA stays.
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Reconfigure(now, []*ike.Connection{gwConn})
	})
	l.settle(time.Second)
	l.sa(l.gw)
	// Proposals that no longer admit the SA's algorithms: deleted.
	gwConn2 := *gwConn
	gwConn2.IKE = mustIKE(t, "aes256-sha512-ecp384")
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Reconfigure(now, []*ike.Connection{&gwConn2})
	})
	l.settle(time.Second)
	if len(l.gw.Engine.IKESAs())+len(l.ue.Engine.IKESAs()) != 0 {
		t.Fatal("SA not deleted on both sides")
	}
	// An invalid configuration is refused and changes nothing.
	bad := *ueConn
	bad.IKE = nil
	if _, err := l.ue.Engine.Reconfigure(l.net.Now, []*ike.Connection{&bad}); err == nil {
		t.Fatal("invalid configuration accepted")
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
