package ike_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
)

// exportAll hands every established IKE SA of node over to a fresh
// engine of the same configuration, as a daemon restarted with its state
// or a cluster node taking over would: export (waiting out exchanges in
// flight), restart, import.
func exportAll(t *testing.T, l *lab, node *netsim.Node) {
	t.Helper()
	var blobs [][]byte
	for _, s := range node.Established() {
		var b []byte
		var err error
		if !l.net.RunUntil(time.Minute, func() bool {
			b, err = node.Engine.Export(s.ID)
			return !errors.Is(err, ike.ErrBusy)
		}) {
			t.Fatalf("IKE SA %d stayed busy", s.ID)
		}
		if err != nil {
			t.Fatalf("export %d: %v", s.ID, err)
		}
		blobs = append(blobs, b)
	}
	restartWith(t, node, blobs)
}

// restartWith restarts node's engine (a fresh one, the same
// configuration) and imports the exported SAs into it.
func restartWith(t *testing.T, node *netsim.Node, blobs [][]byte) {
	t.Helper()
	node.Restart()
	for _, b := range blobs {
		node.Do(func(now time.Time) []ike.Action {
			_, acts, err := node.Engine.Import(now, b)
			if err != nil {
				t.Fatalf("import into the restarted %s: %v", node.Name, err)
			}
			return acts
		})
	}
}

// noticed lists what the end user would have noticed of a handover (on
// a lossless network not even a retransmission is due).
func noticed(node *netsim.Node, from int) []ike.Event {
	var out []ike.Event
	for _, ev := range node.Events[from:] {
		switch ev.Kind {
		case ike.EventIKEDown:
			if ev.Detail != "deleted" && ev.Detail != "deleted by peer" { // a rekey's old SA goes
				out = append(out, ev)
			}
		case ike.EventIKEFailed, ike.EventChildFailed, ike.EventPathProbe, ike.EventRetransmit:
			out = append(out, ev)
		}
	}
	return out
}

// An established IKE SA exported from the gateway in the middle of its
// life and imported into a fresh engine (the gateway restarted) goes on
// without the end user noticing: the cached response of its last
// request comes back byte-identical (RFC 7296 §2.1), liveness checks,
// IKE and Child SA rekeys from either side, a MOBIKE move (RFC 4555),
// a clone (RFC 7791) and deletes all work, and the peers agree.
func TestExportImportGatewayRestart(t *testing.T) {
	second := netip.MustParseAddr("203.0.113.10")
	l := newLab(t, 21, func(ue, gw *ike.Connection, uec, gwc *ike.Config) { ue.Clone, gw.Clone = true, true })
	l.ue.AddAddr(second)
	id := l.up()
	l.settle(time.Second)
	gwID := l.sa(l.gw).ID
	// Some life first: a Child SA rekey by each side.
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Rekey(now, id, l.sa(l.ue).Children[0].InSPI)
	})
	l.settle(2 * time.Second)
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Rekey(now, gwID, l.sa(l.gw).Children[0].InSPI)
	})
	l.settle(2 * time.Second)
	// A liveness check whose request and response we keep.
	var lastReq, lastResp []byte
	var reqFrom, reqTo netip.AddrPort
	l.ue.OnAction = func(a ike.Action) {
		if s, ok := a.(ike.Send); ok {
			lastReq, reqFrom, reqTo = bytes.Clone(s.Data), s.Local, s.Remote
		}
	}
	l.gw.OnAction = func(a ike.Action) {
		if s, ok := a.(ike.Send); ok {
			lastResp = bytes.Clone(s.Data)
		}
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, id) })
	l.settle(time.Second)
	l.ue.OnAction, l.gw.OnAction = nil, nil
	if lastReq == nil || lastResp == nil {
		t.Fatal("no liveness check seen")
	}
	before := l.sa(l.gw)
	mark := len(l.ue.Events)

	exportAll(t, l, l.gw)

	after := l.sa(l.gw)
	if after.ID != before.ID || after.SPIi != before.SPIi || after.SPIr != before.SPIr || after.KeyID != before.KeyID ||
		after.Local != before.Local || after.Remote != before.Remote || len(after.Children) != len(before.Children) ||
		after.Lineage != before.Lineage || after.Family == 0 {
		t.Fatalf("imported SA differs:\nbefore %+v\nafter  %+v", before, after)
	}
	if err := netsim.CheckConsistent(l.ue, l.gw); err != nil {
		t.Fatalf("after import: %v", err)
	}
	// A retransmission of the last request gets the same octets (§2.1).
	var again []byte
	l.gw.OnAction = func(a ike.Action) {
		if s, ok := a.(ike.Send); ok {
			again = bytes.Clone(s.Data)
		}
	}
	l.net.Inject(reqFrom, reqTo, lastReq)
	l.net.RunFor(100 * time.Millisecond)
	l.gw.OnAction = nil
	if !bytes.Equal(again, lastResp) {
		t.Fatalf("retransmitted request answered with %d octets, not the cached %d", len(again), len(lastResp))
	}

	steps := []struct {
		name string
		node *netsim.Node
		f    func(e *ike.Engine, now time.Time) ([]ike.Action, error)
	}{
		{"end user's liveness check", l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, l.sa(l.ue).ID) }},
		{"gateway's liveness check", l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, l.sa(l.gw).ID) }},
		{"gateway's Child SA rekey", l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
			return e.Rekey(now, l.sa(l.gw).ID, l.sa(l.gw).Children[0].InSPI)
		}},
		{"end user's IKE SA rekey", l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, l.sa(l.ue).ID, 0) }},
		{"gateway's IKE SA rekey", l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, l.sa(l.gw).ID, 0) }},
		{"end user's MOBIKE move", l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
			return e.Move(now, l.sa(l.ue).ID, second, gwAddr, "")
		}},
	}
	for _, s := range steps {
		l.do(s.node, s.f)
		l.settle(5 * time.Second)
		if n := noticed(l.ue, mark); len(n) > 0 {
			t.Fatalf("after the %s the end user noticed: %+v", s.name, n)
		}
	}
	if got := l.sa(l.ue).Local.Addr(); got != second {
		t.Fatalf("the move did not happen: end user on %v", got)
	}
	// A clone of the imported SA, then deletes.
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Clone(now, l.sa(l.ue).ID) })
	l.settle(5 * time.Second)
	if n := len(l.gw.Established()); n != 2 {
		t.Fatalf("clone of the imported SA: gateway has %d IKE SAs", n)
	}
	if n := noticed(l.ue, mark); len(n) > 0 {
		t.Fatalf("after the clone the end user noticed: %+v", n)
	}
	for _, s := range l.ue.Established() {
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, s.ID, 0) })
	}
	l.settle(5 * time.Second)
	if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("%d IKE SAs left after deleting them all", n)
	}
}

// A gateway clones a client's IKE SA and hands the clone to another
// gateway node, which moves it to its own address with MOBIKE (the
// seeds' load sharing: RFC 7791 §1, RFC 4555 §3.5). The client goes on
// with the clone on the new node: liveness checks, a rekey of each kind,
// a Child SA on the clone, a delete.
func TestExportImportCloneToAnotherNode(t *testing.T) {
	gw2Addr := netip.MustParseAddr("198.51.100.2")
	var gwCfg ike.Config
	var gwConn *ike.Connection
	l := newLab(t, 22, func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
		ue.Clone, gw.Clone = true, true
		ue.RemoteAddrs = append(ue.RemoteAddrs, gw2Addr) // the cluster's addresses
		gwCfg, gwConn = *gwc, gw
	})
	l.up()
	l.settle(time.Second)
	parent := l.sa(l.gw)
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Clone(now, parent.ID) })
	l.settle(2 * time.Second)
	var clone ike.IKESAInfo
	for _, s := range l.gw.Established() {
		if s.Parent == parent.ID {
			clone = s
		}
	}
	if clone.ID == 0 {
		t.Fatal("the gateway's clone did not come up")
	}
	// The second node has the same connection with a pool of its own.
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
	blob, err := l.gw.Engine.Export(clone.ID)
	if err != nil {
		t.Fatal(err)
	}
	var id2 uint64
	gw2.Do(func(now time.Time) []ike.Action {
		var acts []ike.Action
		id2, acts, err = gw2.Engine.Import(now, blob)
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Forget(now, clone.ID) })
	mark := len(l.ue.Events)
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Move(now, id2, gw2Addr, ueAddr, "") })
	l.net.RunFor(3 * time.Second)
	find := func(node *netsim.Node, spiI, spiR uint64) (ike.IKESAInfo, bool) {
		for _, s := range node.Established() {
			if s.SPIi == spiI && s.SPIr == spiR {
				return s, true
			}
		}
		return ike.IKESAInfo{}, false
	}
	check := func(what string) {
		t.Helper()
		if n := noticed(l.ue, mark); len(n) > 0 {
			t.Fatalf("%s: the end user noticed: %+v", what, n)
		}
		var onGW2 int
		for _, u := range l.ue.Established() {
			g, ok := find(l.gw, u.SPIi, u.SPIr)
			if !ok {
				g, ok = find(gw2, u.SPIi, u.SPIr)
				onGW2++
			}
			if !ok || g.KeyID != u.KeyID || g.Local != u.Remote || g.Remote != u.Local || len(g.Children) != len(u.Children) {
				t.Fatalf("%s: end user's IKE SA %d (%+v) has no matching gateway SA (%+v)", what, u.ID, u, g)
			}
		}
		if onGW2 != 1 || len(gw2.Established()) != 1 {
			t.Fatalf("%s: %d of the end user's SAs on gw2, which has %d", what, onGW2, len(gw2.Established()))
		}
	}
	check("after the move")
	if got := gw2.Established()[0].Local.Addr(); got != gw2Addr {
		t.Fatalf("the clone is on %v on gw2, not on gw2's address", got)
	}
	ueClone := func() ike.IKESAInfo {
		for _, s := range l.ue.Established() {
			if _, ok := find(gw2, s.SPIi, s.SPIr); ok {
				return s
			}
		}
		t.Fatal("the end user lost the clone")
		return ike.IKESAInfo{}
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, ueClone().ID) })
	l.net.RunFor(2 * time.Second)
	check("liveness check")
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.CreateChild(now, gw2.Established()[0].ID, "net")
	})
	l.net.RunFor(3 * time.Second)
	check("Child SA on the clone")
	if n := len(gw2.Established()[0].Children); n != 1 {
		t.Fatalf("the clone on gw2 has %d Child SAs", n)
	}
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Rekey(now, gw2.Established()[0].ID, 0)
	})
	l.net.RunFor(3 * time.Second)
	check("IKE SA rekey by gw2")
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Rekey(now, ueClone().ID, ueClone().Children[0].InSPI)
	})
	l.net.RunFor(3 * time.Second)
	check("Child SA rekey by the end user")
	l.do(gw2, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Terminate(now, gw2.Established()[0].ID, 0)
	})
	l.net.RunFor(3 * time.Second)
	if n := len(gw2.Engine.IKESAs()); n != 0 || len(l.ue.Established()) != 1 {
		t.Fatalf("after the delete: gw2 %d IKE SAs, end user %d", n, len(l.ue.Established()))
	}
}

// Import takes hostile bytes: whatever it gets, it never panics, and
// what it refuses leaves the engine as it was (no SA, no Child SA, no
// lease). The corpus starts from real exports of an SA with a Child SA,
// a virtual IP and a cached response.
func FuzzImport(f *testing.F) {
	l := newLab(f, 31, nil)
	l.up()
	l.settle(time.Second)
	id := l.sa(l.gw).ID
	b, err := l.gw.Engine.Export(id)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Add(bytes.Replace(b, []byte(`"version":1`), []byte(`"version":2`), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		fresh := newLab(t, 31, nil)
		var imported uint64
		var err error
		fresh.gw.Do(func(now time.Time) []ike.Action {
			var acts []ike.Action
			imported, acts, err = fresh.gw.Engine.Import(now, data)
			return acts
		})
		if err != nil {
			if n := len(fresh.gw.Engine.IKESAs()); n != 0 || len(fresh.gw.Children) != 0 {
				t.Fatalf("refused import (%v) left %d IKE SAs and %d Child SAs", err, n, len(fresh.gw.Children))
			}
			return
		}
		if imported == 0 || len(fresh.gw.Engine.IKESAs()) != 1 {
			t.Fatalf("accepted import made %d IKE SAs", len(fresh.gw.Engine.IKESAs()))
		}
		// What was accepted can be exported again.
		if _, err := fresh.gw.Engine.Export(imported); err != nil && !errors.Is(err, ike.ErrBusy) {
			t.Fatalf("imported SA cannot be exported: %v", err)
		}
	})
}
