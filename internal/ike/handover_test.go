package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
)

// addNode adds a second gateway engine with the lab's gateway
// configuration (its own pool, so the test sees any address it leases).
func (l *lab) addGateway(name string, addr netip.Addr, cfg ike.Config, conn *ike.Connection) *netsim.Node {
	l.t.Helper()
	c2 := *conn
	cfg.Connections = []*ike.Connection{&c2}
	n, err := l.net.AddNode(name, cfg, addr)
	if err != nil {
		l.t.Fatal(err)
	}
	l.do(n, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.SetLocalAddresses(now, []netip.Addr{addr}), nil
	})
	return n
}

// A clone the end user made (it is the clone's MOBIKE initiator, RFC
// 7791 Appendix A) handed from one gateway node to another while both
// run (docs/cluster.md, load sharing): the new node cannot move it
// (RFC 4555 §3.5), so it announces its addresses without the old node's
// and the end user moves to it (§3.6). The Child SA's keys may have been
// used by the old node after the export, so the new node never sends
// with them, even when the end user's ESP arrives first: it rekeys, and
// sends on the new Child SA.
func TestAdoptPeersCloneSteersThePeer(t *testing.T) {
	gw2Addr := netip.MustParseAddr("198.51.100.2")
	var gwCfg ike.Config
	var gwConn *ike.Connection
	l := newLab(t, 71, func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
		withClone(ue, gw, uec, gwc)
		gwCfg, gwConn = *gwc, gw
	})
	l.up()
	parent := l.sa(l.ue)
	l.clone(l.ue, parent.ID)
	l.settle(time.Second)
	uc := clonesOf(l.ue, parent.ID)[0]
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, uc.ID, "net") })
	l.settle(time.Second)
	var gc ike.IKESAInfo
	for _, s := range l.gw.Established() {
		if s.SPIi == uc.SPIi {
			gc = s
		}
	}
	if len(gc.Children) != 1 || gc.MOBIKEInitiator {
		t.Fatalf("the gateway's clone: %+v; want one Child SA, the end user its MOBIKE initiator", gc)
	}
	oldIn := gc.Children[0].InSPI
	state, err := l.gw.Engine.Export(gc.ID)
	if err != nil {
		t.Fatal(err)
	}
	gw2 := l.addGateway("gw2", gw2Addr, gwCfg, gwConn)
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Forget(now, gc.ID) })
	var id uint64
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		var acts []ike.Action
		var err error
		id, acts, err = e.Adopt(now, state, gw2Addr, []netip.Addr{gwAddr})
		return acts, err
	})
	// The end user's ESP on the old Child SA reaches the new node before
	// the rekey is done: it must not make the node send with old keys.
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Inbound(now, oldIn), nil })
	if c, ok := gw2.Children[oldIn]; !ok || c.Outbound {
		t.Fatalf("gw2's imported Child SA %08x: installed %v, outbound %v; want installed with no outbound traffic", oldIn, ok, c.Outbound)
	}
	l.net.RunFor(5 * time.Second)

	ue := byID(l.ue, uc.ID)
	g := byID(gw2, id)
	if ue.Remote.Addr() != gw2Addr || g.Local.Addr() != gw2Addr {
		t.Fatalf("the end user sends to %v, gw2 is on %v: want both on gw2's address", ue.Remote, g.Local)
	}
	if len(ue.Children) != 1 || len(g.Children) != 1 || g.Children[0].InSPI == oldIn {
		t.Fatalf("Child SAs: ue %+v gw2 %+v; want one, rekeyed (not %08x)", ue.Children, g.Children, oldIn)
	}
	if ue.Children[0].InSPI != g.Children[0].OutSPI || !g.Children[0].Outbound || g.Children[0].Remote.Addr() != ueAddr || g.Children[0].Local.Addr() != gw2Addr {
		t.Fatalf("the rekeyed Child SAs do not match or gw2 does not send on it: ue %+v gw2 %+v", ue.Children[0], g.Children[0])
	}
	if n := len(l.ue.EventsOf(ike.EventIKEDown)) + len(l.ue.EventsOf(ike.EventIKEFailed)); n != 0 {
		t.Fatalf("the end user lost an SA: %v %v", l.ue.EventsOf(ike.EventIKEDown), l.ue.EventsOf(ike.EventIKEFailed))
	}
	// The parent stays with the first node.
	if p := byID(l.ue, parent.ID); p.Remote.Addr() != gwAddr {
		t.Fatalf("the parent moved to %v", p.Remote)
	}
}

// A clone the gateway node made (it is the clone's MOBIKE initiator)
// handed to another node: that node moves it to its own address with
// UPDATE_SA_ADDRESSES (RFC 4555 §3.5).
func TestAdoptOwnCloneMovesIt(t *testing.T) {
	gw2Addr := netip.MustParseAddr("198.51.100.2")
	var gwCfg ike.Config
	var gwConn *ike.Connection
	l := newLab(t, 72, func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
		withClone(ue, gw, uec, gwc)
		gwCfg, gwConn = *gwc, gw
	})
	l.up()
	// The cluster's nodes announce each other (SetClusterAddresses): the
	// end user takes an update only to an address its peer announced.
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.SetClusterAddresses(now, []netip.Addr{gw2Addr}), nil
	})
	parent := l.sa(l.gw)
	l.clone(l.gw, parent.ID)
	l.settle(time.Second)
	gc := clonesOf(l.gw, parent.ID)[0]
	if !gc.MOBIKEInitiator || len(gc.Children) != 0 {
		t.Fatalf("the gateway's clone: %+v; want it the MOBIKE initiator, childless", gc)
	}
	state, err := l.gw.Engine.Export(gc.ID)
	if err != nil {
		t.Fatal(err)
	}
	gw2 := l.addGateway("gw2", gw2Addr, gwCfg, gwConn)
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Forget(now, gc.ID) })
	var id uint64
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		var acts []ike.Action
		var err error
		id, acts, err = e.Adopt(now, state, gw2Addr, []netip.Addr{gwAddr})
		return acts, err
	})
	l.net.RunFor(3 * time.Second)
	g := byID(gw2, id)
	if g.State != ike.StateEstablished || g.Local.Addr() != gw2Addr {
		t.Fatalf("gw2's SA: %+v", g)
	}
	var ue ike.IKESAInfo
	for _, s := range l.ue.Established() {
		if s.SPIi == g.SPIi {
			ue = s
		}
	}
	if ue.Remote.Addr() != gw2Addr {
		t.Fatalf("the end user's clone is on %v, want gw2's address (UPDATE_SA_ADDRESSES)", ue.Remote)
	}
}
