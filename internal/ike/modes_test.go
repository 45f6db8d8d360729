package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 7296 §1.3.1, §3.10.1: USE_TRANSPORT_MODE asks for transport mode;
// the responder accepts by echoing it.
func TestRFC7296Section1_3_1TransportMode(t *testing.T) {
	l := newLab(t, 60, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.RequestVIP4, gw.Pools = false, nil
		for _, c := range []*ike.ChildConfig{ue.Children[0], gw.Children[0]} {
			c.Mode, c.DynamicLocal, c.DynamicRemote, c.LocalTS, c.RemoteTS = ike.Transport, true, true, nil, nil
		}
	})
	l.up()
	c := l.sa(l.ue).Children[0]
	if c.Mode != ike.Transport || l.sa(l.gw).Children[0].Mode != ike.Transport {
		t.Fatal("not transport mode")
	}
	if c.LocalTS[0].Start != ueAddr || c.RemoteTS[0].Start != gwAddr {
		t.Fatalf("transport selectors %v %v", c.LocalTS, c.RemoteTS)
	}
	// A tunnel-mode peer does not echo it: the initiator refuses the
	// Child SA rather than silently using tunnel mode.
	l2 := newLab(t, 61, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.Children[0].Mode = ike.Transport
	})
	l2.initiate()
	l2.settle(10 * time.Second)
	if len(l2.sa(l2.ue).Children) != 0 || len(l2.ue.EventsOf(ike.EventChildFailed)) != 1 {
		t.Fatal("mode mismatch not refused")
	}
}

// IPv6 outer addresses and an IPv6 virtual address (RFC 7296 §3.15.1,
// INTERNAL_IP6_ADDRESS).
func TestRFC7296Section3_15IPv6(t *testing.T) {
	ue6, gw6 := netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:2::1")
	pool6, err := ike.NewPool("rw6", netip.MustParsePrefix("fd00:99::/64"), netip.MustParseAddr("fd00:20::53"))
	if err != nil {
		t.Fatal(err)
	}
	ueConn, gwConn := configs(t)
	ueConn.RemoteAddrs = []netip.Addr{gw6}
	ueConn.RequestVIP4, ueConn.RequestVIP6 = false, true
	ueConn.Children[0].RemoteTS = []wire.Selector{sel(t, "fd00:20::/64")}
	gwConn.Pools = []*ike.Pool{pool6}
	gwConn.Children[0].LocalTS = []wire.Selector{sel(t, "fd00:20::/64")}
	n := netsim.New(62)
	ue, _ := n.AddNode("ue", ike.Config{Connections: []*ike.Connection{ueConn}}, ue6)
	gw, _ := n.AddNode("gw", ike.Config{Connections: []*ike.Connection{gwConn}}, gw6)
	ue.Do(func(now time.Time) []ike.Action {
		_, acts, err := ue.Engine.Initiate(now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(ue6, 500)})
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	n.RunFor(time.Second)
	if err := netsim.CheckConsistent(ue, gw); err != nil {
		t.Fatal(err)
	}
	s := ue.Established()
	if len(s) != 1 || len(s[0].VirtualIPs) != 1 || !s[0].VirtualIPs[0].Is6() || len(s[0].Children) != 1 {
		t.Fatalf("%+v", s)
	}
	if got := s[0].Children[0].LocalTS[0].Start; got != s[0].VirtualIPs[0] {
		t.Fatalf("child selector %v, virtual IP %v", got, s[0].VirtualIPs[0])
	}
}

// RFC 7296 §2.8: rekey times are jittered so peers (and many SAs of one
// peer) do not all rekey at once.
func TestRFC7296Section2_8RekeyJitter(t *testing.T) {
	l := newLab(t, 63, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.RekeyTime, ue.RandTime = time.Hour, 10*time.Minute
	})
	for i := 0; i < 8; i++ {
		l.initiate()
	}
	l.net.RunFor(time.Second)
	times := map[time.Time]bool{}
	before := l.net.Now
	for len(l.ue.EventsOf(ike.EventIKERekeyed)) < 8 {
		if !l.net.Step(before.Add(2 * time.Hour)) {
			t.Fatal("not all rekeyed")
		}
	}
	for _, s := range l.ue.Established() {
		times[s.Established] = true
		if d := s.Established.Sub(before); d < 50*time.Minute || d > 61*time.Minute {
			t.Errorf("rekeyed after %v, outside [RekeyTime-RandTime, RekeyTime]", d)
		}
	}
	if len(times) < 6 {
		t.Errorf("only %d distinct rekey times for 8 SAs", len(times))
	}
}
