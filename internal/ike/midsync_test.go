package ike_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 6311 with a gateway cluster's takeover: the gateway's SA state is
// written once, at creation (as internal/cluster does); both sides then
// go on exchanging (the written Message IDs fall behind), the gateway
// dies, and a second node takes the SA over from the stale state at an
// address of its own. It resynchronises the Message IDs with ID zero
// (§5.1), rekeys the Child SA before sending on it (§3.4), announces its
// address, and the end user (the MOBIKE initiator) moves to it: the VPN
// goes on, with new Child SA keys, and the end user authenticated once.
func TestRFC6311TakeOver(t *testing.T) {
	gw2Addr := netip.MustParseAddr("198.51.100.2")
	var gwCfg ike.Config
	var gwConn *ike.Connection
	l := newLab(t, 61, func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
		gwCfg, gwConn = *gwc, gw
	})
	l.up()
	l.settle(time.Second)
	sa := l.sa(l.gw)
	if countNotify(l.gw, wire.NotifyIKEv2MessageIDSyncSupported, false) != 1 || countNotify(l.ue, wire.NotifyIKEv2MessageIDSyncSupported, false) != 1 {
		t.Fatal("IKEV2_MESSAGE_ID_SYNC_SUPPORTED was not exchanged in IKE_AUTH (§5)")
	}
	written, err := l.gw.Engine.Export(sa.ID) // the record at creation
	if err != nil {
		t.Fatal(err)
	}
	// Life goes on: both sides send requests the record does not know.
	ueSA := l.sa(l.ue)
	for range 3 {
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, ueSA.ID) })
		l.net.RunFor(time.Second)
		l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, sa.ID) })
		l.net.RunFor(time.Second)
	}
	oldChild := l.sa(l.ue).Children[0]

	// The gateway dies, while the end user has a request out to it
	// (RFC 6311 §8.1: it must go again with the agreed Message IDs).
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, ueSA.ID) })
	l.net.RunFor(500 * time.Millisecond)
	pool, err := ike.NewPool("rw", netip.MustParsePrefix("10.99.0.0/24"), netip.MustParseAddr("10.20.0.53"))
	if err != nil {
		t.Fatal(err)
	}
	conn2 := *gwConn
	conn2.Pools = []*ike.Pool{pool}
	cfg2 := gwCfg
	cfg2.Connections = []*ike.Connection{&conn2}
	gw2, err := l.net.AddNode("gw2", cfg2, gw2Addr)
	if err != nil {
		t.Fatal(err)
	}
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.SetLocalAddresses(now, []netip.Addr{gw2Addr}), nil
	})
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		_, acts, err := e.TakeOver(now, written, gw2Addr)
		return acts, err
	})
	// The end user's ESP on the old Child SA may reach gw2 before the
	// rekey: gw2 must not send with keys the dead node used (§3.4).
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Inbound(now, l.sa(l.gw).Children[0].InSPI), nil
	})
	if c := gw2.Children[l.sa(l.gw).Children[0].InSPI]; c.Outbound {
		t.Fatalf("gw2 sends on the taken-over Child SA %08x before its rekey", c.InSPI)
	}
	l.net.RunFor(10 * time.Second)

	if n := len(l.ue.EventsOf(ike.EventIKEDown)) + len(l.ue.EventsOf(ike.EventIKEFailed)); n != 0 {
		t.Fatalf("the end user lost an SA: %v %v", l.ue.EventsOf(ike.EventIKEDown), l.ue.EventsOf(ike.EventIKEFailed))
	}
	if len(gw2.EventsOf(ike.EventMessageIDSync)) != 1 || len(l.ue.EventsOf(ike.EventMessageIDSync)) != 1 {
		t.Fatalf("Message ID sync events: gw2 %v, ue %v", gw2.EventsOf(ike.EventMessageIDSync), l.ue.EventsOf(ike.EventMessageIDSync))
	}
	ue := l.sa(l.ue)
	g := gw2.Established()
	if len(g) != 1 || g[0].SPIi != ue.SPIi || g[0].SPIr != ue.SPIr || g[0].KeyID != ue.KeyID {
		t.Fatalf("gw2 has %+v, the end user %+v", g, ue)
	}
	if ue.Remote.Addr() != gw2Addr || g[0].Local.Addr() != gw2Addr {
		t.Fatalf("the end user sends to %v, gw2 is on %v: want both on gw2's address", ue.Remote, g[0].Local)
	}
	if len(ue.Children) != 1 || len(g[0].Children) != 1 || ue.Children[0].InSPI == oldChild.InSPI {
		t.Fatalf("Child SAs: ue %+v gw2 %+v; want one, rekeyed (not %08x)", ue.Children, g[0].Children, oldChild.InSPI)
	}
	if ue.Children[0].InSPI != g[0].Children[0].OutSPI || !g[0].Children[0].Outbound {
		t.Fatalf("the rekeyed Child SAs do not match or gw2 does not send on it: ue %+v gw2 %+v", ue.Children[0], g[0].Children[0])
	}
	// And the SA works both ways with the agreed Message IDs.
	mark := len(l.ue.Events)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, ue.ID) })
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, g[0].ID) })
	l.net.RunFor(5 * time.Second)
	for _, ev := range l.ue.Events[mark:] {
		if ev.Kind == ike.EventRetransmit || ev.Kind == ike.EventIKEDown || ev.Kind == ike.EventIKEFailed {
			t.Fatalf("after the takeover: %+v", ev)
		}
	}
	if n := countNotify(l.ue, wire.NotifyAuthenticationFailed, false); n != 0 {
		t.Fatal("an authentication failed")
	}
}

// §5.1, the peer's rules: a replayed synchronisation (its M1 not above
// what was seen) is dropped silently; an identical retransmission gets
// the same answer; a synchronisation with another payload is dropped.
func TestRFC6311PeerDropsReplays(t *testing.T) {
	l := newLab(t, 62, nil)
	l.up()
	l.settle(time.Second)
	sa := l.sa(l.gw)
	written, err := l.gw.Engine.Export(sa.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Capture the gateway's sync request: take over on the same node
	// (as after a restart from the written state).
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Forget(now, sa.ID) })
	l.net.Filter = nil
	var syncMsgs [][]byte
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, _ netsim.Msg) netsim.Verdict {
		if from == l.gw {
			syncMsgs = append(syncMsgs, append([]byte(nil), d.Data...))
		}
		return netsim.Deliver
	}
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		_, acts, err := e.TakeOver(now, written, netip.Addr{})
		return acts, err
	})
	l.net.RunFor(5 * time.Second)
	l.net.Filter = nil
	if len(l.ue.EventsOf(ike.EventMessageIDSync)) != 1 || len(syncMsgs) == 0 {
		t.Fatalf("sync events %v, %d datagrams captured", l.ue.EventsOf(ike.EventMessageIDSync), len(syncMsgs))
	}
	before := l.ue.Engine.Stats()
	// Replay the gateway's first datagram after the takeover (the sync
	// request): the same bytes get the same answer, counted as a
	// retransmission, and change nothing.
	l.net.Inject(netip.AddrPortFrom(gwAddr, 4500), netip.AddrPortFrom(ueAddr, 4500), syncMsgs[0])
	l.net.RunFor(time.Second)
	after := l.ue.Engine.Stats()
	if len(l.ue.EventsOf(ike.EventMessageIDSync)) != 1 || after.Retransmissions != before.Retransmissions+1 {
		t.Fatalf("a replayed sync request: %d sync events, retransmissions %d -> %d; drops %v -> %v (%d captured, first %d octets)",
			len(l.ue.EventsOf(ike.EventMessageIDSync)), before.Retransmissions, after.Retransmissions, before.DroppedBy, after.DroppedBy, len(syncMsgs), len(syncMsgs[0]))
	}
}

// Two nodes take the same SA over at the same moment from the same
// record: their synchronisations carry the same M1, and the end user
// answers only the first; the second is a replay to it (§5.1), dropped
// silently, and that node's SA comes to nothing.
func TestRFC6311SecondClaimantIsAReplay(t *testing.T) {
	var gwCfg ike.Config
	var gwConn *ike.Connection
	l := newLab(t, 63, func(ue, gw *ike.Connection, uec, gwc *ike.Config) { gwCfg, gwConn = *gwc, gw })
	l.up()
	l.settle(time.Second)
	sa := l.sa(l.gw)
	written, err := l.gw.Engine.Export(sa.ID)
	if err != nil {
		t.Fatal(err)
	}
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
	var nodes []*netsim.Node
	for i, a := range []string{"198.51.100.2", "198.51.100.3"} {
		addr := netip.MustParseAddr(a)
		pool, _ := ike.NewPool("rw", netip.MustParsePrefix("10.99.0.0/24"), netip.Addr{})
		conn := *gwConn
		conn.Pools = []*ike.Pool{pool}
		cfg := gwCfg
		cfg.Connections = []*ike.Connection{&conn}
		n, err := l.net.AddNode(fmt.Sprintf("gw%d", i+2), cfg, addr)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		l.do(n, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
			_, acts, err := e.TakeOver(now, written, n.Addrs()[0])
			return acts, err
		})
	}
	l.net.RunFor(7 * time.Minute) // past the second claimant's retransmissions (5 min and more as MOBIKE responder, RFC 4555 §3.11)
	if got := len(l.ue.EventsOf(ike.EventMessageIDSync)); got != 1 {
		t.Fatalf("the end user synchronised %d times", got)
	}
	if got := l.ue.Engine.Stats().DroppedBy[ike.DropMIDSync]; got == 0 {
		t.Fatal("the second synchronisation was not dropped as a replay")
	}
	var live int
	for _, n := range nodes {
		live += len(n.Established())
	}
	if live != 1 || len(l.ue.Established()) != 1 {
		t.Fatalf("%d claimants kept the SA, the end user has %d", live, len(l.ue.Established()))
	}
}

// Message ID zero stays an ordinary Message ID on an SA that negotiated
// RFC 6311: a clone's first request (its window statement, ID 0) sent
// again gets the cached answer, as any retransmission does (RFC 7296
// §2.1), and is not taken for a synchronisation.
func TestRFC6311IDZeroRetransmission(t *testing.T) {
	l := newLab(t, 64, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.Clone, gw.Clone = true, true })
	parent := l.up()
	l.settle(time.Second)
	l.clone(l.ue, parent)
	l.settle(2 * time.Second)
	clones := clonesOf(l.ue, parent)
	if len(clones) != 1 {
		t.Fatalf("%d clones", len(clones))
	}
	var first []byte
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && first == nil {
			if h, err := wire.ParseHeader(d.Data); err == nil && h.MessageID == 0 && h.Exchange == wire.Informational && h.Flags&wire.FlagResponse == 0 {
				first = append([]byte(nil), d.Data...)
			}
		}
		return netsim.Deliver
	}
	// The clone's first request: a liveness check, Message ID 0.
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, clones[0].ID) })
	l.net.RunFor(time.Second)
	l.net.Filter = nil
	if first == nil {
		t.Fatal("the clone sent no request with Message ID zero")
	}
	before := l.gw.Engine.Stats()
	l.net.Inject(netip.AddrPortFrom(ueAddr, 4500), netip.AddrPortFrom(gwAddr, 4500), first)
	l.net.RunFor(time.Second)
	after := l.gw.Engine.Stats()
	if after.Retransmissions != before.Retransmissions+1 || after.DroppedBy[ike.DropWindow] != before.DroppedBy[ike.DropWindow] {
		t.Fatalf("the copy of ID 0: retransmissions %d -> %d, window drops %d -> %d", before.Retransmissions, after.Retransmissions,
			before.DroppedBy[ike.DropWindow], after.DroppedBy[ike.DropWindow])
	}
}

// RFC 6027 §3.8: a cluster node's SPIs carry its node ID in their first
// octet (Config.SPIPrefix), so nodes never choose the same SPI.
func TestSPIPrefix(t *testing.T) {
	l := newLab(t, 65, func(_, _ *ike.Connection, _, gwc *ike.Config) { gwc.SPIPrefix = 0x2a })
	l.up()
	l.settle(time.Second)
	gw := l.sa(l.gw)
	if gw.SPIr>>56 != 0x2a {
		t.Fatalf("responder SPI %016x", gw.SPIr)
	}
	for _, c := range gw.Children {
		if c.InSPI>>24 != 0x2a {
			t.Fatalf("inbound ESP SPI %08x", c.InSPI)
		}
	}
	if ue := l.sa(l.ue); ue.SPIi>>56 == 0x2a && ue.Children[0].InSPI>>24 == 0x2a {
		t.Fatal("the end user's SPIs carry the gateway's prefix too")
	}
}

// A cluster node announces the other live nodes' addresses with its own
// (RFC 4555 §3.6 address lists): the end user learns them, and forgets
// a node's address once it is no longer announced (the node died).
func TestClusterAddressesAnnounced(t *testing.T) {
	l := newLab(t, 66, nil)
	l.up()
	l.settle(time.Second)
	a, b := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.SetClusterAddresses(now, []netip.Addr{b, a, a}), nil
	})
	l.net.RunFor(2 * time.Second)
	peers := l.sa(l.ue).PeerAddrs
	if !slices.Contains(peers, a) || !slices.Contains(peers, b) || !slices.Contains(peers, gwAddr) {
		t.Fatalf("the end user knows %v", peers)
	}
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.SetClusterAddresses(now, []netip.Addr{a}), nil
	})
	l.net.RunFor(2 * time.Second)
	if peers := l.sa(l.ue).PeerAddrs; slices.Contains(peers, b) || !slices.Contains(peers, a) {
		t.Fatalf("after node b left, the end user knows %v", peers)
	}
}

// RFC 4555 §3.5 with a cluster: when the peer's address list drops the
// address we send to, the default policy goes to the address the list
// came from (the first candidate), every time, rather than trying the
// listed addresses in turn: after a takeover only the sender is sure to
// hold the SA.
func TestDefaultPathPolicyFollowsTheListsSender(t *testing.T) {
	var p ike.DefaultPathPolicy
	from, other := netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.2")
	q := ike.PathQuery{IKESA: 7, Reason: ike.PathPeerAddressGone, Initiator: true,
		Candidates: []ike.Path{{Local: ueAddr, Remote: from}, {Local: ueAddr, Remote: other}}}
	for range 3 {
		if got, ok := p.NextPath(q); !ok || got.Remote != from {
			t.Fatalf("went to %v", got.Remote)
		}
	}
	q.Reason = ike.PathUnanswered // unanswered paths are still tried in turn
	a, _ := p.NextPath(q)
	b, _ := p.NextPath(q)
	if a == b {
		t.Fatalf("unanswered: %v twice", a)
	}
}
