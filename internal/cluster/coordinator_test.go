package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/clusterstore"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// A gateway cluster in the simulator: three gateway engines, each with
// its own address and a Coordinator on one in-memory store (etcd's
// semantics, the simulator's clock), and an end user. The coordinators
// are stepped every 200 ms, as the daemon does.

var (
	simUE  = netip.MustParseAddr("192.0.2.10")
	simGWs = []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")}
	simPSK = []byte("a shared secret of sufficient length")
)

type simCluster struct {
	t     *testing.T
	net   *netsim.Network
	ue    *netsim.Node
	gws   []*netsim.Node
	coord []*Coordinator
	redir []*Redirects // updated after every step, as the daemon does
	fed   []int        // events of each gateway fed to its coordinator
	dead  []bool       // a dead node is neither stepped nor reachable
	ctx   context.Context
}

func mustParse[T any](t *testing.T, f func(string) (T, error), s string) T {
	t.Helper()
	v, err := f(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newSimCluster(t *testing.T, seed uint64, clone bool) *simCluster {
	ikeP := mustParse(t, proposal.ParseIKEList, "aes128gcm16-prfsha256-x25519")
	espP := mustParse(t, proposal.ParseESPList, "aes128gcm16")
	// The end user knows node 1 only: the nodes announce each other's
	// addresses (RFC 4555 §3.6), so it accepts an SA moved to any node.
	ue := &ike.Connection{Name: "home", RemoteAddrs: simGWs[:1],
		LocalID: ike.ID{Type: wire.IDFQDN, Data: []byte("ue.example")}, RemoteID: ike.ID{Type: wire.IDFQDN, Data: []byte("gw.example")},
		LocalAuth: ike.AuthPSK, RemoteAuth: ike.AuthPSK, PSK: simPSK, IKE: ikeP, RequestVIP4: true, MOBIKE: true, Clone: clone,
		Children: []*ike.ChildConfig{{Name: "net", ESP: espP, DynamicLocal: true, RemoteTS: []wire.Selector{mustParse(t, ts.Parse, "10.20.0.0/24")}, Start: true}}}
	n := netsim.New(seed)
	s := &simCluster{t: t, net: n, ctx: context.Background()}
	var err error
	if s.ue, err = n.AddNode("ue", ike.Config{Connections: []*ike.Connection{ue}}, simUE); err != nil {
		t.Fatal(err)
	}
	st := clusterstore.NewMemory(func() time.Time { return n.Now })
	key := make([]byte, KeySize)
	rand.Read(key)
	sealer, _ := NewSealer(key, nil)
	for i, addr := range simGWs {
		pool, err := ike.NewPool("rw", netip.MustParsePrefix("10.99.0.0/24"), netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		gw := &ike.Connection{Name: "rw", LocalID: ike.ID{Type: wire.IDFQDN, Data: []byte("gw.example")},
			LocalAuth: ike.AuthPSK, RemoteAuth: ike.AuthPSK, PSK: simPSK, IKE: ikeP, Pools: []*ike.Pool{pool}, MOBIKE: true, Clone: clone,
			Children: []*ike.ChildConfig{{Name: "net", ESP: espP, LocalTS: []wire.Selector{mustParse(t, ts.Parse, "10.20.0.0/24")}, DynamicRemote: true}}}
		node, err := n.AddNode("gw"+string(rune('1'+i)), ike.Config{Connections: []*ike.Connection{gw}, SPIPrefix: uint8(i + 1)}, addr)
		if err != nil {
			t.Fatal(err)
		}
		node.Do(func(now time.Time) []ike.Action { return node.Engine.SetLocalAddresses(now, []netip.Addr{addr}) })
		member, err := Join(s.ctx, st, Config{Name: "sim", Node: uint8(i + 1), Addrs: []netip.Addr{addr}, TTL: 2 * time.Second}, n.Now)
		if err != nil {
			t.Fatal(err)
		}
		s.gws = append(s.gws, node)
		coord := NewCoordinator(member, sealer, node.Engine, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
		coord.ListEveryStep()
		pool.Leases().Fence(nil, nil) // no lease before a block, as the daemon does
		coord.SetPools([]netip.Prefix{pool.Prefix}, pool.Leases().Fence)
		coord.OnMembers(func(addrs []netip.Addr) {
			node.Do(func(now time.Time) []ike.Action { return node.Engine.SetClusterAddresses(now, addrs) })
		})
		s.coord = append(s.coord, coord)
		rd := &Redirects{}
		node.Engine.SetRedirector(rd.Choose)
		s.redir = append(s.redir, rd)
		s.fed = append(s.fed, 0)
		s.dead = append(s.dead, false)
	}
	return s
}

// step feeds each live node's new events to its coordinator and steps it.
func (s *simCluster) step() {
	for i, node := range s.gws {
		if s.dead[i] {
			continue
		}
		for _, ev := range node.Events[s.fed[i]:] {
			s.coord[i].Event(ev)
		}
		s.fed[i] = len(node.Events)
		c := s.coord[i]
		node.Do(func(now time.Time) []ike.Action {
			acts, err := c.Step(s.ctx, now)
			if err != nil {
				s.t.Fatalf("node %d: %v", i+1, err)
			}
			return acts
		})
		if ms, err := Members(s.ctx, c.n.st, c.n.cfg); err == nil {
			s.redir[i].Update(c.n.cfg.Node, c.Loads(), ms)
		}
	}
}

// run runs the network for d, stepping the coordinators every 200 ms.
func (s *simCluster) run(d time.Duration) {
	for end := s.net.Now.Add(d); s.net.Now.Before(end); {
		s.net.RunFor(200 * time.Millisecond)
		s.step()
	}
}

// kill makes node i crash: unreachable, and its lease no longer renewed.
func (s *simCluster) kill(i int) {
	s.dead[i] = true
	for _, a := range []netip.Addr{simUE} {
		s.net.SetLink(a, simGWs[i], netsim.Link{Down: true})
	}
}

func (s *simCluster) up() ike.IKESAInfo {
	s.t.Helper()
	s.step() // the nodes' first blocks of the pool (vips.go)
	s.ue.Do(func(now time.Time) []ike.Action {
		_, acts, err := s.ue.Engine.Initiate(now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(simUE, 500)})
		if err != nil {
			s.t.Fatal(err)
		}
		return acts
	})
	s.run(2 * time.Second)
	ues := s.ue.Established()
	if len(ues) != 1 || len(ues[0].Children) != 1 {
		s.t.Fatalf("the end user's VPN did not come up: %+v", ues)
	}
	return ues[0]
}

// onNode is the live gateway that has the end user's SA u, or -1.
func (s *simCluster) onNode(u ike.IKESAInfo) (int, ike.IKESAInfo) {
	at, found := -1, ike.IKESAInfo{}
	for i, g := range s.gws {
		for _, x := range g.Established() {
			if x.SPIi == u.SPIi && x.SPIr == u.SPIr && !s.dead[i] {
				if at >= 0 {
					s.t.Fatalf("the SA is on node %d and on node %d", at+1, i+1)
				}
				at, found = i, x
			}
		}
	}
	return at, found
}

// A node dies: within a few seconds one survivor claims the end user's
// SA (the record written at creation), resynchronises Message IDs (RFC
// 6311), rekeys the Child SA and announces its address; the end user
// moves to it and goes on with the same IKE SA, authenticated once.
func TestTakeOverOnNodeFailure(t *testing.T) {
	s := newSimCluster(t, 71, false)
	u := s.up()
	if at, _ := s.onNode(u); at != 0 {
		t.Fatalf("the VPN is on node %d, want 1", at+1)
	}
	if s.coord[0].Owned() != 1 {
		t.Fatalf("node 1 wrote %d records", s.coord[0].Owned())
	}
	oldChild := u.Children[0].InSPI
	s.run(3 * time.Second)
	crash := s.net.Now
	s.kill(0)
	var at int
	var g ike.IKESAInfo
	for s.net.Now.Sub(crash) < 10*time.Second {
		s.run(200 * time.Millisecond)
		u = s.ue.Established()[0]
		if at, g = s.onNode(u); at > 0 && u.Remote.Addr() == simGWs[at] && len(u.Children) == 1 && u.Children[0].InSPI != oldChild {
			break
		}
	}
	t.Logf("node 1 crashed; the end user's VPN on node %d after %v", at+1, s.net.Now.Sub(crash))
	if at <= 0 || u.Remote.Addr() != simGWs[at] {
		t.Fatalf("after node 1 crashed: SA on node %d, the end user sends to %v", at+1, u.Remote)
	}
	if len(u.Children) != 1 || u.Children[0].InSPI == oldChild || len(g.Children) != 1 || g.Children[0].OutSPI != u.Children[0].InSPI {
		t.Fatalf("Child SAs: end user %+v, node %d %+v; want one, rekeyed", u.Children, at+1, g.Children)
	}
	if n := len(s.ue.EventsOf(ike.EventIKEDown)) + len(s.ue.EventsOf(ike.EventIKEFailed)); n != 0 {
		t.Fatalf("the end user lost an SA: %v", append(s.ue.EventsOf(ike.EventIKEDown), s.ue.EventsOf(ike.EventIKEFailed)...))
	}
	if d := s.net.Now.Sub(crash); d > 5*time.Second {
		t.Errorf("took %v (lease 2 s)", d)
	}
	// The new owner's record is current: a second crash is survived too.
	s.run(2 * time.Second)
	s.kill(at)
	second := s.net.Now
	for start := s.net.Now; s.net.Now.Sub(start) < 10*time.Second; {
		s.run(200 * time.Millisecond)
		if a, _ := s.onNode(s.ue.Established()[0]); a >= 0 && a != at && s.ue.Established()[0].Remote.Addr() == simGWs[a] {
			break
		}
	}
	u = s.ue.Established()[0]
	if a, _ := s.onNode(u); a < 0 || a == at || u.Remote.Addr() != simGWs[a] {
		t.Fatalf("after the second crash the VPN is on node %d, the end user sends to %v", a+1, u.Remote)
	}
	// Simulated time: the lease, a step, a few round trips. The end user
	// goes to the node whose address list told it the old one was gone,
	// not to another listed node that does not hold the SA.
	if d := s.net.Now.Sub(second); d > 3*time.Second {
		t.Errorf("the second takeover took %v of simulated time", d)
	}
}

// RFC 7791 load sharing: node 1 clones the end user's SA and hands the
// childless clone to node 2, which imports it, moves it to its own
// address (node 1 was the clone's MOBIKE initiator) and gives it a Child
// SA. The end user has two VPNs on two nodes and authenticated once.
func TestHandOffClone(t *testing.T) {
	s := newSimCluster(t, 72, true)
	u := s.up()
	gw1 := s.gws[0]
	parent := gw1.Established()[0]
	s.coord[0].SetPlacement(PlaceNone) // by hand here
	gw1.Do(func(now time.Time) []ike.Action {
		acts, err := gw1.Engine.Clone(now, parent.ID)
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	s.run(time.Second)
	var clone ike.IKESAInfo
	for _, x := range gw1.Established() {
		if x.Parent == parent.ID {
			clone = x
		}
	}
	if clone.ID == 0 {
		t.Fatal("node 1's clone did not come up")
	}
	c := s.coord[0]
	gw1.Do(func(now time.Time) []ike.Action {
		acts, err := c.HandOff(s.ctx, now, clone.ID, 2)
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	if testing.Verbose() {
		s.net.Trace = os.Stderr
	}
	s.run(2 * time.Second)
	s.net.Trace = nil
	gw2 := s.gws[1]
	var moved ike.IKESAInfo
	for _, x := range gw2.Established() {
		if x.SPIi == clone.SPIi && x.SPIr == clone.SPIr {
			moved = x
		}
	}
	if moved.ID == 0 || moved.Local.Addr() != simGWs[1] {
		t.Fatalf("node 2 has %+v", gw2.Established())
	}
	gw2.Do(func(now time.Time) []ike.Action {
		acts, err := gw2.Engine.CreateChild(now, moved.ID, "net")
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	s.run(2 * time.Second)
	var onGW2 ike.IKESAInfo
	for _, x := range s.ue.Established() {
		if x.SPIi == clone.SPIi {
			onGW2 = x
		}
	}
	if onGW2.Remote.Addr() != simGWs[1] || len(onGW2.Children) != 1 {
		t.Fatalf("the end user's clone: %+v", onGW2)
	}
	if len(s.ue.Established()) != 2 || u.ID == onGW2.ID {
		t.Fatalf("the end user has %d SAs", len(s.ue.Established()))
	}
	if st := s.ue.Engine.Stats(); st.Exchanges[wire.IKEAuth] != 1 {
		t.Fatalf("%d IKE_AUTH exchanges: the end user authenticated more than once", st.Exchanges[wire.IKEAuth])
	}
	for _, x := range gw1.Established() {
		if x.SPIi == clone.SPIi {
			t.Fatal("node 1 still has the clone it handed over")
		}
	}
}

// RFC 7791 load sharing with a stock end user: it clones its SA for
// two more interfaces (it is those clones' MOBIKE initiator) and gives
// each a Child SA, all on node 1, the only node it knows. Placement hands
// each clone to a node that holds none of the family and the fewest SAs;
// the new owner announces its addresses without node 1's, the end user
// moves there, and the Child SAs are rekeyed by the new owner. The end
// user ends with three VPNs on three nodes, authenticated once.
func TestPlacementSpreadsAClientsClones(t *testing.T) {
	s := newSimCluster(t, 73, true)
	u := s.up()
	for range 2 {
		// The clone is busy with its Child SA when node 1 first looks.
		s.cloneWithChild(u)
	}
	s.run(3 * time.Second)
	s.checkSpread(3)
}

// cloneWithChild has the end user clone its SA u and give the clone a
// Child SA right behind (as its interface manager does), then runs a
// step.
func (s *simCluster) cloneWithChild(u ike.IKESAInfo) {
	t := s.t
	t.Helper()
	s.ue.Do(func(now time.Time) []ike.Action {
		acts, err := s.ue.Engine.Clone(now, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	s.net.RunFor(100 * time.Millisecond)
	for _, x := range s.ue.Established() {
		if x.Parent == u.ID && len(x.Children) == 0 {
			s.ue.Do(func(now time.Time) []ike.Action {
				acts, err := s.ue.Engine.CreateChild(now, x.ID, "net")
				if err != nil {
					t.Fatal(err)
				}
				return acts
			})
		}
	}
	s.run(200 * time.Millisecond)
}

// checkSpread checks the end user has n VPNs, each on its own node,
// with both ends on the node's address and a working Child SA.
func (s *simCluster) checkSpread(n int) {
	t := s.t
	t.Helper()
	ues := s.ue.Established()
	if len(ues) != n {
		t.Fatalf("the end user has %d IKE SAs, want 3", len(ues))
	}
	nodes := map[int]bool{}
	for _, x := range ues {
		at, g := s.onNode(x)
		if at < 0 {
			t.Fatalf("no node has the end user's SA %d", x.ID)
		}
		nodes[at] = true
		if x.Remote.Addr() != simGWs[at] || g.Local.Addr() != simGWs[at] {
			t.Errorf("SA %d is on node %d, but the end user sends to %v and the node is on %v", x.ID, at+1, x.Remote, g.Local)
		}
		if len(x.Children) != 1 || len(g.Children) != 1 || g.Children[0].OutSPI != x.Children[0].InSPI || !g.Children[0].Outbound {
			t.Errorf("SA %d on node %d: Child SAs end user %d, node %d, matching and sending: %v", x.ID, at+1, len(x.Children), len(g.Children),
				len(g.Children) == 1 && len(x.Children) == 1 && g.Children[0].OutSPI == x.Children[0].InSPI && g.Children[0].Outbound)
		}
	}
	if len(nodes) != n {
		t.Fatalf("the end user's %d VPNs are on %d nodes, want %d", n, len(nodes), n)
	}
	if st := s.ue.Engine.Stats(); st.Exchanges[wire.IKEAuth] != 1 {
		t.Fatalf("%d IKE_AUTH exchanges: the end user authenticated more than once", st.Exchanges[wire.IKEAuth])
	}
	if n := len(s.ue.EventsOf(ike.EventIKEDown)) + len(s.ue.EventsOf(ike.EventIKEFailed)); n != 0 {
		t.Fatalf("the end user lost an SA: %v", append(s.ue.EventsOf(ike.EventIKEDown), s.ue.EventsOf(ike.EventIKEFailed)...))
	}
	for i, c := range s.coord {
		if !s.dead[i] && c.Owned() != 1 {
			t.Errorf("node %d holds %d records, want 1", i+1, c.Owned())
		}
	}
}

// A node added to the cluster gets new clones: node 3 joins after the
// end user's second VPN went to node 2, and the third goes to node 3.
func TestPlacementNodeAdded(t *testing.T) {
	s := newSimCluster(t, 74, true)
	if err := s.coord[2].Node().Leave(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.dead[2] = true // not a member, not stepped (but reachable)
	u := s.up()
	s.cloneWithChild(u)
	s.run(2 * time.Second)
	s.checkSpread(2)
	member, err := Join(s.ctx, s.coord[0].Node().st, Config{Name: "sim", Node: 3, Addrs: simGWs[2:], TTL: 2 * time.Second}, s.net.Now)
	if err != nil {
		t.Fatal(err)
	}
	gw3 := s.gws[2]
	s.coord[2] = NewCoordinator(member, s.coord[0].recs.s, gw3.Engine, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	s.coord[2].ListEveryStep()
	pool := gw3.Config().Connections[0].Pools[0]
	s.coord[2].SetPools([]netip.Prefix{pool.Prefix}, pool.Leases().Fence)
	s.coord[2].OnMembers(func(addrs []netip.Addr) {
		gw3.Do(func(now time.Time) []ike.Action { return gw3.Engine.SetClusterAddresses(now, addrs) })
	})
	s.fed[2], s.dead[2] = len(gw3.Events), false
	s.run(time.Second) // node 3 announced to the end user by the others
	s.cloneWithChild(u)
	s.run(3 * time.Second)
	s.checkSpread(3)
}

// addUE adds another end user that knows node i only, with its own
// address, and brings its VPN up.
func (s *simCluster) addUE(name string, addr netip.Addr, i int) *netsim.Node {
	t := s.t
	t.Helper()
	cfg := s.ue.Config()
	c := *cfg.Connections[0]
	c.RemoteAddrs = simGWs[i : i+1]
	c.LocalID = ike.ID{Type: wire.IDFQDN, Data: []byte(name + ".example")} // one address per identity
	cfg.Connections = []*ike.Connection{&c}
	ue, err := s.net.AddNode(name, cfg, addr)
	if err != nil {
		t.Fatal(err)
	}
	ue.Do(func(now time.Time) []ike.Action {
		_, acts, err := ue.Engine.Initiate(now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(addr, 500)})
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	s.run(2 * time.Second)
	if l := ue.Established(); len(l) != 1 || len(l[0].VirtualIPs) != 1 {
		t.Fatalf("%s's VPN: %+v", name, l)
	}
	return ue
}

// Every node has the same pool, yet no inner address is leased twice
// across the cluster (RFC 7296 §2.19): each node leases from blocks of
// the pool it got in the store, and never an address an SA on another
// node holds. Three end users, each at another node, get three
// addresses; after node 1 dies and its user's SA (with its address) is
// taken over, a fourth user at a survivor gets yet another address.
func TestVIPLeasesUniqueAcrossNodes(t *testing.T) {
	s := newSimCluster(t, 75, false)
	s.run(time.Second) // the nodes claim their first blocks
	u1 := s.up()
	ues := []*netsim.Node{s.ue,
		s.addUE("ue2", netip.MustParseAddr("192.0.2.11"), 1),
		s.addUE("ue3", netip.MustParseAddr("192.0.2.12"), 2)}
	seen := map[netip.Addr]string{}
	check := func(ue *netsim.Node) {
		t.Helper()
		for _, x := range ue.Established() {
			for _, a := range x.VirtualIPs {
				if other, dup := seen[a]; dup && other != ue.Name {
					t.Fatalf("%v is leased to %s and to %s", a, other, ue.Name)
				}
				seen[a] = ue.Name
			}
		}
	}
	for _, ue := range ues {
		check(ue)
	}
	s.run(3 * time.Second)
	s.kill(0)
	for start := s.net.Now; s.net.Now.Sub(start) < 10*time.Second; {
		s.run(200 * time.Millisecond)
		if at, _ := s.onNode(s.ue.Established()[0]); at > 0 {
			break
		}
	}
	at, g := s.onNode(s.ue.Established()[0])
	if at <= 0 || len(g.PeerVirtualIPs) != 1 || g.PeerVirtualIPs[0] != u1.VirtualIPs[0] {
		t.Fatalf("after node 1 died the first user's SA is on node %d with %v, want a survivor with %v", at+1, g.PeerVirtualIPs, u1.VirtualIPs)
	}
	s.run(time.Second) // the survivors read the taken-over record's address
	ue4 := s.addUE("ue4", netip.MustParseAddr("192.0.2.13"), at)
	check(ue4)
	t.Logf("inner addresses: %v", seen)
}

// RFC 5685 §3 as the cluster's placement for clients that do not clone:
// three end users that all know node 1 only are redirected at
// IKE_SA_INIT so that each node has one, and each authenticates once,
// at the node it ends on.
func TestRedirectToLeastLoaded(t *testing.T) {
	s := newSimCluster(t, 76, false)
	s.run(time.Second)
	s.up()
	ues := []*netsim.Node{s.ue}
	for k := range 2 {
		ues = append(ues, s.addUE(fmt.Sprintf("ue%d", k+2), netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + k)}), 0))
	}
	on := map[int]bool{}
	for _, ue := range ues {
		at, _ := s.onNode(ue.Established()[0])
		if at < 0 {
			t.Fatalf("%s's SA is on no node", ue.Name)
		}
		on[at] = true
		if n := ue.Engine.Stats().Exchanges[wire.IKEAuth]; n != 1 {
			t.Fatalf("%s made %d IKE_AUTH exchanges", ue.Name, n)
		}
		t.Logf("%s: node %d, redirected %d times", ue.Name, at+1, len(ue.EventsOf(ike.EventRedirected)))
	}
	if len(on) != 3 {
		t.Fatalf("three clients on %d nodes, want 3", len(on))
	}
}

// testWriter sends the coordinators' logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
