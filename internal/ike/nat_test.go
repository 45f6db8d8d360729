package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 4555 §3.8: the end user behind a NAT puts NAT-D in its liveness
// checks; when the NAT maps it anew (a rebinding: new public port), the
// gateway's answer hashes another address, and the end user sends
// UPDATE_SA_ADDRESSES, which moves the gateway, IKE and Child SAs, to
// the new mapping. Before, the gateway went on sending to the old one.
func TestRFC4555Section3_8NATRebindingDetected(t *testing.T) {
	l := newLab(t, 908, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.DPDDelay = 10 * time.Second })
	base := uint16(40000) // the NAT maps 500 to base, 4500 to base+1
	l.net.NAT = func(d ike.Datagram) ike.Datagram {
		switch {
		case d.Remote.Addr() == ueAddr: // from the end user
			d.Remote = netip.AddrPortFrom(ueAddr, base+d.Remote.Port()/4500)
		case d.Local.Addr() == ueAddr && d.Local.Port() >= base && d.Local.Port() <= base+1:
			d.Local = netip.AddrPortFrom(ueAddr, []uint16{500, 4500}[d.Local.Port()-base])
		}
		return d
	}
	stale := 0
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.gw && d.Remote.Addr() == ueAddr && d.Remote.Port() != base && d.Remote.Port() != base+1 {
			stale++ // no mapping at the NAT any more
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.up()
	l.settle(30 * time.Second) // liveness checks on the first mapping: no update
	if n := l.ue.Engine.Stats().NATRebinds; n != 0 {
		t.Fatalf("%d rebindings seen before the NAT changed", n)
	}
	if s := l.sa(l.gw); s.Remote.Port() != base+1 || !l.sa(l.ue).NATLocal {
		t.Fatalf("gateway sends to %v (end user behind a NAT: %v)", s.Remote, l.sa(l.ue).NATLocal)
	}
	base = 41000
	l.net.RunUntil(time.Minute, func() bool { return l.sa(l.gw).Remote.Port() == base+1 })
	l.settle(30 * time.Second)
	if s := l.sa(l.gw); s.Remote.Port() != base+1 {
		t.Fatalf("after the NAT's rebinding the gateway sends to %v, want port %d", s.Remote, base+1)
	}
	for _, c := range l.gw.Children {
		if c.Remote.Port() != base+1 {
			t.Fatalf("the gateway's Child SA %08x sends to %v", c.InSPI, c.Remote)
		}
	}
	if n := l.ue.Engine.Stats().NATRebinds; n != 1 {
		t.Fatalf("%d rebindings seen, want 1", n)
	}
	if n := l.ue.Engine.Stats().TCPFallbacks; n != 0 {
		t.Fatal("TCP fallback without TCP configured")
	}
	if len(l.ue.Established()) != 1 || len(l.gw.Established()) != 1 {
		t.Fatal("the SA did not survive the rebinding")
	}
	t.Logf("%d gateway messages went to the stale mapping", stale)
}

// RFC 4555 §3.11: the MOBIKE responder retransmits for at least five
// minutes before it gives an SA up, since only the initiator can bring
// it to a working path; the initiator keeps the usual ~165 s.
func TestRFC4555Section3_11ResponderWaitsLonger(t *testing.T) {
	l := newLab(t, 909, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.DPDDelay, gw.DPDDelay = 30*time.Second, 10*time.Second
	})
	l.up()
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	cut := l.net.Now
	var ueGone, gwGone time.Duration
	l.net.RunUntil(15*time.Minute, func() bool {
		if ueGone == 0 && len(l.ue.Established()) == 0 {
			ueGone = l.net.Now.Sub(cut)
		}
		if gwGone == 0 && len(l.gw.Established()) == 0 {
			gwGone = l.net.Now.Sub(cut)
		}
		return ueGone != 0 && gwGone != 0
	})
	t.Logf("the end user gave up after %v, the gateway after %v", ueGone.Round(time.Second), gwGone.Round(time.Second))
	if ueGone == 0 || ueGone > 4*time.Minute {
		t.Fatalf("the end user (MOBIKE initiator) gave up after %v, want the usual ~3 min", ueGone)
	}
	if gwGone < 5*time.Minute || gwGone > 10*time.Minute {
		t.Fatalf("the gateway (MOBIKE responder) gave up after %v, want 5 minutes of retransmissions or a little more", gwGone)
	}
}

// RFC 7296 §1.5 (MAY) and RFC 4555 §5.3 (SHOULD): ESP for an unknown SPI
// from a peer we share an IKE SA with is reported to it in a protected
// INVALID_SPI, at most once every 10 s; the peer takes it as a hint and
// checks liveness, nothing more: the SA stays.
func TestRFC4555Section5_3InvalidSPIStartsALivenessCheck(t *testing.T) {
	l := newLab(t, 910, nil)
	l.up()
	l.settle(time.Second)
	var ueInfo []netsim.Msg
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && m.Exchange == uint8(wire.Informational) && !m.Response {
			ueInfo = append(ueInfo, m)
		}
		return netsim.Deliver
	}
	report := func() {
		l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
			return e.UnknownSPI(now, ueAddr, 0xdeadbeef), nil
		})
		l.net.RunFor(time.Second)
	}
	report()
	if n := countNotify(l.ue, wire.NotifyInvalidSPI, false); n != 1 {
		t.Fatalf("the end user got %d INVALID_SPI", n)
	}
	if len(ueInfo) != 1 || l.ue.Engine.Stats().InvalidSPIHints != 1 {
		t.Fatalf("the end user sent %d INFORMATIONAL requests after the report, want one liveness check", len(ueInfo))
	}
	report() // within 10 s: not reported again
	if n := countNotify(l.gw, wire.NotifyInvalidSPI, true); n != 1 {
		t.Fatalf("the gateway reported %d times within 10 s", n)
	}
	l.net.RunFor(10 * time.Second)
	report()
	if n := countNotify(l.gw, wire.NotifyInvalidSPI, true); n != 2 {
		t.Fatalf("the gateway reported %d times, want a second report after 10 s", n)
	}
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.UnknownSPI(now, netip.MustParseAddr("203.0.113.9"), 1), nil // no IKE SA with it
	})
	l.settle(time.Minute)
	if n := countNotify(l.gw, wire.NotifyInvalidSPI, true); n != 2 {
		t.Fatalf("the gateway reported an SPI from an address it has no IKE SA with")
	}
	if len(l.ue.Established()) != 1 {
		t.Fatal("the hint cost the SA")
	}
}

// RFC 4555 §3.1: an IKE_SA_INIT that goes unanswered is tried on the
// other address pairs the configuration allows: with the gateway's
// first configured address dead, the second answers, well before the
// retransmissions would have given up, and the tries stay one budget.
func TestRFC4555Section3_1InitTriesOtherPairs(t *testing.T) {
	dead := netip.MustParseAddr("198.51.100.99")
	l := newLab(t, 911, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.RemoteAddrs = []netip.Addr{dead, gwAddr} })
	start := l.net.Now
	l.up()
	s := l.sa(l.ue)
	if s.Remote.Addr() != gwAddr {
		t.Fatalf("up with %v", s.Remote)
	}
	if took := l.net.Now.Sub(start); took > 20*time.Second {
		t.Fatalf("up after %v", took)
	}
	if n := len(l.ue.EventsOf(ike.EventPathProbe)); n != 1 {
		t.Fatalf("%d path probes", n)
	}
	// Both dead: the pairs share the budget, and the SA fails as it
	// would on one pair (~165 s), not once per pair.
	l2 := newLab(t, 912, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.RemoteAddrs = []netip.Addr{dead, netip.MustParseAddr("198.51.100.98")}
	})
	start = l2.net.Now
	l2.initiate()
	var failed time.Duration
	l2.net.RunUntil(10*time.Minute, func() bool {
		if len(l2.ue.EventsOf(ike.EventIKEFailed)) > 0 {
			failed = l2.net.Now.Sub(start)
			return true
		}
		return false
	})
	if failed == 0 || failed > 4*time.Minute {
		t.Fatalf("with no pair answering the SA failed after %v", failed)
	}
	if n := len(l2.ue.EventsOf(ike.EventPathProbe)); n < 2 {
		t.Fatalf("%d path probes: the pairs were not taken in turn", n)
	}
}

// RFC 4555 §5.3, RFC 7296 §2.21: an ICMP error for a datagram to the
// peer is a hint: it starts one liveness check (none while one is under
// way, none again within 10 s), never moves or deletes anything itself,
// and concerns only the SAs with the peer at that address and port.
func TestRFC4555Section5_3ICMPErrorStartsALivenessCheck(t *testing.T) {
	l := newLab(t, 912, nil)
	l.up()
	l.settle(time.Second)
	s := l.sa(l.ue)
	var ueInfo []netsim.Msg
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && m.Exchange == uint8(wire.Informational) && !m.Response {
			ueInfo = append(ueInfo, m)
		}
		return netsim.Deliver
	}
	icmp := func(to netip.AddrPort) {
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
			return e.PathError(now, to), nil
		})
		l.net.RunFor(time.Second)
	}
	icmp(netip.AddrPortFrom(s.Remote.Addr(), s.Remote.Port()+1)) // another port: not this SA's path
	if len(ueInfo) != 0 {
		t.Fatalf("an ICMP error for another port started %d checks", len(ueInfo))
	}
	icmp(s.Remote)
	if len(ueInfo) != 1 || l.ue.Engine.Stats().PathErrorHints != 1 {
		t.Fatalf("%d INFORMATIONAL requests after the ICMP error, want one liveness check", len(ueInfo))
	}
	icmp(s.Remote) // within 10 s
	if len(ueInfo) != 1 {
		t.Fatalf("%d checks within 10 s", len(ueInfo))
	}
	l.net.RunFor(10 * time.Second)
	icmp(s.Remote)
	if len(ueInfo) != 2 {
		t.Fatalf("%d checks, want a second after 10 s", len(ueInfo))
	}
	l.settle(time.Minute)
	if now := l.sa(l.ue); now.ID != s.ID || now.Local != s.Local || now.Remote != s.Remote {
		t.Fatalf("the hint changed the SA: %+v -> %+v", s, now)
	}
}
