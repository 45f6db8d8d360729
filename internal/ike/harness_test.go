package ike_test

import (
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

var trace = flag.Bool("sim.trace", false, "print the simulated network's trace")

var (
	ueAddr = netip.MustParseAddr("192.0.2.10")
	gwAddr = netip.MustParseAddr("198.51.100.1")
	psk    = []byte("a shared secret of sufficient length")
)

func mustIKE(t testing.TB, s string) []proposal.Proposal {
	t.Helper()
	p, err := proposal.ParseIKEList(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustESP(t testing.TB, s string) []proposal.Proposal {
	t.Helper()
	p, err := proposal.ParseESPList(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sel(t testing.TB, s string) wire.Selector {
	t.Helper()
	x, err := ts.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func fqdn(s string) ike.ID { return ike.ID{Type: wire.IDFQDN, Data: []byte(s)} }

// configs are the end user's and the gateway's connections of the usual
// road-warrior setup: PSK, a virtual IP from a pool, one subnet behind
// the gateway.
func configs(t testing.TB) (ue, gw *ike.Connection) {
	pool, err := ike.NewPool("rw", netip.MustParsePrefix("10.99.0.0/24"), netip.MustParseAddr("10.20.0.53"))
	if err != nil {
		t.Fatal(err)
	}
	ue = &ike.Connection{
		Name: "home", RemoteAddrs: []netip.Addr{gwAddr},
		LocalID: fqdn("ue.example"), RemoteID: fqdn("gw.example"),
		LocalAuth: ike.AuthPSK, RemoteAuth: ike.AuthPSK, PSK: psk,
		IKE:         mustIKE(t, "aes128gcm16-prfsha256-x25519,aes128-sha256-modp2048"),
		RequestVIP4: true, MOBIKE: true, SendInitialContact: true,
		Children: []*ike.ChildConfig{{Name: "net", ESP: mustESP(t, "aes128gcm16,aes128-sha256"), DynamicLocal: true,
			RemoteTS: []wire.Selector{sel(t, "10.20.0.0/24")}, Start: true}},
	}
	gw = &ike.Connection{
		Name: "rw", LocalID: fqdn("gw.example"),
		LocalAuth: ike.AuthPSK, RemoteAuth: ike.AuthPSK, PSK: psk,
		IKE:    mustIKE(t, "aes128gcm16-prfsha256-x25519,aes128-sha256-modp2048"),
		Pools:  []*ike.Pool{pool},
		MOBIKE: true,
		Children: []*ike.ChildConfig{{Name: "net", ESP: mustESP(t, "aes128gcm16,aes128-sha256"),
			LocalTS: []wire.Selector{sel(t, "10.20.0.0/24")}, DynamicRemote: true}},
	}
	return ue, gw
}

type lab struct {
	t      testing.TB
	net    *netsim.Network
	ue, gw *netsim.Node
}

// newLab builds two engines on a simulated network. mutate may change
// the connections and engine configs before the engines are made.
func newLab(t testing.TB, seed uint64, mutate func(ue, gw *ike.Connection, uec, gwc *ike.Config)) *lab {
	t.Helper()
	ueConn, gwConn := configs(t)
	uec := ike.Config{Connections: []*ike.Connection{ueConn}}
	gwc := ike.Config{Connections: []*ike.Connection{gwConn}}
	if *trace {
		uec.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", "ue")
		gwc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", "gw")
	}
	if mutate != nil {
		mutate(ueConn, gwConn, &uec, &gwc)
	}
	n := netsim.New(seed)
	if *trace {
		n.Trace = os.Stderr
	}
	ue, err := n.AddNode("ue", uec, ueAddr)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := n.AddNode("gw", gwc, gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	return &lab{t: t, net: n, ue: ue, gw: gw}
}

// initiate starts the end user's connection and returns its IKE SA id.
func (l *lab) initiate() uint64 {
	l.t.Helper()
	var id uint64
	l.ue.Do(func(now time.Time) []ike.Action {
		var acts []ike.Action
		var err error
		id, acts, err = l.ue.Engine.Initiate(now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(ueAddr, 500)})
		if err != nil {
			l.t.Fatal(err)
		}
		return acts
	})
	return id
}

// up initiates and runs until both ends have an established IKE SA.
func (l *lab) up() uint64 {
	l.t.Helper()
	id := l.initiate()
	if !l.net.RunUntil(time.Minute, func() bool {
		return len(l.ue.Established()) == 1 && len(l.gw.Established()) == 1 && len(l.ue.Children) > 0 && len(l.gw.Children) > 0
	}) {
		l.t.Fatalf("connection did not come up: ue %+v gw %+v", l.ue.Engine.IKESAs(), l.gw.Engine.IKESAs())
	}
	return id
}

// settle runs long enough for every exchange to finish, then checks the
// two peers agree.
func (l *lab) settle(d time.Duration) {
	l.t.Helper()
	l.net.RunFor(d)
	if err := netsim.CheckConsistent(l.ue, l.gw); err != nil {
		l.t.Fatalf("peers disagree (seed %d):\n%v", l.net.Seed(), err)
	}
}

// do runs an engine command on a node and fails the test on error.
func (l *lab) do(node *netsim.Node, f func(e *ike.Engine, now time.Time) ([]ike.Action, error)) {
	l.t.Helper()
	node.Do(func(now time.Time) []ike.Action {
		acts, err := f(node.Engine, now)
		if err != nil {
			l.t.Fatalf("%s: %v", node.Name, err)
		}
		return acts
	})
}

// sa returns the node's only established IKE SA.
func (l *lab) sa(node *netsim.Node) ike.IKESAInfo {
	l.t.Helper()
	est := node.Established()
	if len(est) != 1 {
		l.t.Fatalf("%s has %d established IKE SAs, want 1: %+v", node.Name, len(est), node.Engine.IKESAs())
	}
	return est[0]
}

func countNotify(node *netsim.Node, n wire.NotifyType, sent bool) uint64 {
	s := node.Engine.Stats()
	if sent {
		return s.NotifiesSent[n]
	}
	return s.NotifiesRecv[n]
}
