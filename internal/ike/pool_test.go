package ike_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

func mustPool(t testing.TB, r *ike.Leases, name, prefix string) *ike.Pool {
	t.Helper()
	p, err := r.NewPool(name, netip.MustParsePrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func acquire(t testing.TB, p *ike.Pool, owner string) netip.Addr {
	t.Helper()
	a, err := p.Acquire(owner)
	if err != nil {
		t.Fatalf("pool %s: Acquire(%s): %v", p.Name, owner, err)
	}
	if !p.Prefix.Contains(a) {
		t.Fatalf("pool %s (%v) handed out %v", p.Name, p.Prefix, a)
	}
	return a
}

// RFC 7296 §3.15.1 (INTERNAL_IP4_ADDRESS): the pool keeps back the
// network, the gateway's first host and the broadcast address, and one
// owner holds one address, reference counted over its IKE SAs (§2.19).
func TestRFC7296Section3_15PoolOneAddressPerOwner(t *testing.T) {
	p := mustPool(t, ike.NewLeases(), "rw", "10.99.0.0/29")
	a := acquire(t, p, "alice")
	if a != netip.MustParseAddr("10.99.0.2") {
		t.Fatalf("first address %v, want 10.99.0.2", a)
	}
	if again := acquire(t, p, "alice"); again != a {
		t.Fatalf("second IKE SA of alice got %v, want her address %v", again, a)
	}
	seen := map[netip.Addr]bool{a: true}
	for i := range 4 { // .3 to .6; .7 is the broadcast address
		b := acquire(t, p, fmt.Sprint("peer", i))
		if seen[b] {
			t.Fatalf("%v leased twice", b)
		}
		seen[b] = true
	}
	if _, err := p.Acquire("one too many"); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("full pool: err %v, want exhausted", err)
	}
	if p.InUse() != 5 || p.Leases().Len() != 5 {
		t.Fatalf("InUse %d, Len %d, want 5", p.InUse(), p.Leases().Len())
	}
	// alice holds two references: one Release keeps her address.
	p.Release(a)
	if _, err := p.Acquire("newcomer"); err == nil {
		t.Fatalf("%v handed out while alice still holds it", a)
	}
	p.Release(a)
	if got := acquire(t, p, "newcomer"); got != a {
		t.Fatalf("newcomer got %v, want the freed %v", got, a)
	}
	// Releasing an address the pool never gave is a no-op.
	p.Release(netip.MustParseAddr("192.0.2.1"))
	p.Release(netip.MustParseAddr("10.99.0.7"))
	if p.InUse() != 5 {
		t.Fatalf("InUse %d after bogus releases, want 5", p.InUse())
	}
}

// Two pools of one registry whose prefixes overlap (two connections, or
// the same prefix under two names: config refuses both, the allocator
// must not depend on it) never lease one address twice (RFC 7296 §2.19:
// two peers with one inner address black-hole one of them).
func TestRFC7296Section2_19OverlappingPoolsShareLeases(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"10.99.0.0/28", "10.99.0.0/28"}, // same prefix, two names
		{"10.99.0.0/28", "10.99.0.0/29"}, // nested
		{"10.99.0.0/29", "10.99.0.0/28"}, // nested, other order
		{"fd00:99::/124", "fd00:99::/125"},
	} {
		t.Run(c.a+"+"+c.b, func(t *testing.T) {
			r := ike.NewLeases()
			pa, pb := mustPool(t, r, "a", c.a), mustPool(t, r, "b", c.b)
			owner := map[netip.Addr]string{}
			give := func(p *ike.Pool, who string) error {
				a, err := p.Acquire(who)
				if err != nil {
					return err
				}
				if prev, ok := owner[a]; ok {
					t.Fatalf("%v leased to %s by pool %s while %s holds it", a, who, p.Name, prev)
				}
				owner[a] = who
				return nil
			}
			// Alternate until both are full: every address goes once.
			for i := 0; ; i++ {
				ea, eb := give(pa, fmt.Sprint("a", i)), give(pb, fmt.Sprint("b", i))
				if ea != nil && eb != nil {
					break
				}
			}
			union := max(pa.InUse(), pb.InUse())
			if len(owner) != union || r.Len() != union {
				t.Fatalf("%d leases, registry %d, union of the prefixes holds %d", len(owner), r.Len(), union)
			}
			// An address pool b gave, released through pool a (whose
			// prefix holds it too), goes to the next peer of pool b.
			freed := owner0(t, pb, "b0")
			pa.Release(freed)
			delete(owner, freed)
			if err := give(pb, "late"); err != nil {
				t.Fatalf("freed %v not handed out again: %v", freed, err)
			}
		})
	}
}

// owner0 is who's address in p, which p gave earlier (Acquire only adds a
// reference).
func owner0(t *testing.T, p *ike.Pool, who string) netip.Addr {
	t.Helper()
	a := acquire(t, p, who)
	p.Release(a)
	return a
}

// Whatever pools a registry holds and whatever order peers come and go
// in, no address is ever leased to two owners at once, an owner keeps its
// address while it holds a reference, and a freed address is handed out
// again (RFC 7296 §2.19). Seeded random operations; the seed is in the
// failure message.
func TestRFC7296Section2_19LeasesNeverDuplicatedRandom(t *testing.T) {
	prefixes := []string{"10.7.0.0/27", "10.7.0.0/28", "10.7.0.16/29", "10.7.0.0/26", "10.7.0.8/29", "fd00:7::/123", "fd00:7::/124"}
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed))
		r := ike.NewLeases()
		var pools []*ike.Pool
		for i, pf := range prefixes {
			if rng.IntN(3) > 0 {
				pools = append(pools, mustPool(t, r, fmt.Sprint("p", i), pf))
			}
		}
		if len(pools) == 0 {
			continue
		}
		type ref struct {
			pool *ike.Pool
			addr netip.Addr
		}
		held := map[string][]ref{}           // owner → references it holds
		addrOwner := map[netip.Addr]string{} // the model: who holds each address
		for step := range 3000 {
			who := fmt.Sprint("peer", rng.IntN(40))
			if rng.IntN(2) == 0 {
				p := pools[rng.IntN(len(pools))]
				a, err := p.Acquire(who)
				if err != nil {
					continue
				}
				if o, ok := addrOwner[a]; ok && o != who {
					t.Fatalf("seed %d step %d: pool %s gave %v to %s while %s holds it", seed, step, p.Name, a, who, o)
				}
				for _, h := range held[who] {
					if h.pool == p && h.addr != a {
						t.Fatalf("seed %d step %d: %s got %v from %s while holding %v from it", seed, step, who, a, p.Name, h.addr)
					}
				}
				addrOwner[a] = who
				held[who] = append(held[who], ref{p, a})
				continue
			}
			hs := held[who]
			if len(hs) == 0 {
				continue
			}
			i := rng.IntN(len(hs))
			h := hs[i]
			h.pool.Release(h.addr)
			held[who] = append(hs[:i], hs[i+1:]...)
			still := false
			for _, x := range held[who] {
				still = still || x.addr == h.addr
			}
			if !still {
				delete(addrOwner, h.addr)
			}
		}
		if r.Len() != len(addrOwner) {
			t.Fatalf("seed %d: registry holds %d addresses, the peers %d", seed, r.Len(), len(addrOwner))
		}
		for who, hs := range held {
			for _, h := range hs {
				h.pool.Release(h.addr)
			}
			delete(held, who)
		}
		if r.Len() != 0 {
			t.Fatalf("seed %d: %d addresses leaked after every release", seed, r.Len())
		}
	}
}

// A reload (config.Build with the previous registry) may rename, resize
// or drop a pool while running SAs still hold its addresses: the new
// pools must not hand those out until they are released, and a peer that
// asks again keeps its address where the new prefix still has it (RFC
// 7296 §2.19).
func TestRFC7296Section2_19LeasesSurviveReload(t *testing.T) {
	t.Run("renamed", func(t *testing.T) {
		r := ike.NewLeases()
		old := mustPool(t, r, "a", "10.1.0.0/30") // one address: .2
		held := acquire(t, old, "alice")
		renamed := mustPool(t, r, "b", "10.1.0.0/30")
		if a, err := renamed.Acquire("bob"); err == nil {
			t.Fatalf("renamed pool handed out %v, which alice holds", a)
		}
		if got := acquire(t, renamed, "alice"); got != held {
			t.Fatalf("alice got %v from the renamed pool, want her %v", got, held)
		}
		old.Release(held)
		renamed.Release(held)
		if got := acquire(t, renamed, "bob"); got != held {
			t.Fatalf("bob got %v, want the released %v", got, held)
		}
	})
	t.Run("grown", func(t *testing.T) {
		r := ike.NewLeases()
		old := mustPool(t, r, "a", "10.2.0.0/24")
		held := acquire(t, old, "alice")
		grown := mustPool(t, r, "a", "10.2.0.0/23")
		if got := acquire(t, grown, "bob"); got == held {
			t.Fatalf("grown pool handed alice's %v to bob", held)
		}
		if got := acquire(t, grown, "alice"); got != held {
			t.Fatalf("alice got %v from the grown pool, want her %v", got, held)
		}
	})
	t.Run("shrunk", func(t *testing.T) {
		r := ike.NewLeases()
		old := mustPool(t, r, "a", "10.3.0.0/24")
		var held []netip.Addr
		for i := range 127 { // up to .128, past the new /25's broadcast
			held = append(held, acquire(t, old, fmt.Sprint("peer", i)))
		}
		shrunk := mustPool(t, r, "a", "10.3.0.0/25")
		// Every host of the /25 is held: nothing to give a newcomer.
		if a, err := shrunk.Acquire("newcomer"); err == nil {
			t.Fatalf("shrunk pool handed out %v, which a running SA holds", a)
		}
		// peer125 holds .127, the /25's broadcast: it gets no address
		// the new pool may not give, and none held by another peer.
		last := held[125]
		if last != netip.MustParseAddr("10.3.0.127") {
			t.Fatalf("setup: peer125 holds %v", last)
		}
		if a, err := shrunk.Acquire("peer125"); err == nil {
			t.Fatalf("peer125 got %v from a full /25", a)
		}
		old.Release(held[0])
		if got := acquire(t, shrunk, "peer125"); got != held[0] {
			t.Fatalf("peer125 got %v, want the one freed address %v", got, held[0])
		}
	})
	t.Run("removed", func(t *testing.T) {
		r := ike.NewLeases()
		gone := mustPool(t, r, "gone", "10.4.0.0/30") // one address: .2
		held := acquire(t, gone, "alice")
		// A later configuration adds a pool over the dropped one's
		// prefix while alice's SA still runs.
		added := mustPool(t, r, "new", "10.4.0.0/30")
		if a, err := added.Acquire("bob"); err == nil {
			t.Fatalf("new pool handed out %v while the dropped pool's lease is held", a)
		}
		gone.Release(held)
		if got := acquire(t, added, "bob"); got != held {
			t.Fatalf("bob got %v, want the released %v", got, held)
		}
	})
}

// rwNode adds an end user named name with identity id at addr, asking
// for an IPv4 address (RFC 7296 §3.15.1).
func rwNode(t *testing.T, n *netsim.Network, name, id string, addr netip.Addr) *netsim.Node {
	t.Helper()
	ue, _ := configs(t)
	ue.LocalID = fqdn(id)
	node, err := n.AddNode(name, ike.Config{Connections: []*ike.Connection{ue}}, addr)
	if err != nil {
		t.Fatal(err)
	}
	return node
}

// connectVIP brings ue up and returns the inner address the gateway gave it.
func connectVIP(t *testing.T, n *netsim.Network, ue *netsim.Node, addr netip.Addr) netip.Addr {
	t.Helper()
	ue.Do(func(now time.Time) []ike.Action {
		_, acts, err := ue.Engine.Initiate(now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(addr, 500)})
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	if !n.RunUntil(time.Minute, func() bool { return len(ue.Established()) == 1 && len(ue.Children) > 0 }) {
		t.Fatalf("%s did not come up: %+v", ue.Name, ue.Engine.IKESAs())
	}
	vips := ue.Established()[0].VirtualIPs
	if len(vips) != 1 {
		t.Fatalf("%s got virtual IPs %v, want one", ue.Name, vips)
	}
	return vips[0]
}

// Two connections whose pools overlap, built through the API (config
// validation refuses them; nothing else does), never give two peers one
// inner address: the engine's pools share one lease registry (RFC 7296
// §2.19, §3.15.1).
func TestRFC7296Section2_19OverlappingPoolsOnTwoConnections(t *testing.T) {
	r := ike.NewLeases()
	_, rw1 := configs(t)
	_, rw2 := configs(t)
	rw1.Name, rw1.RemoteID, rw1.Pools = "rw1", fqdn("ue1.example"), []*ike.Pool{mustPool(t, r, "p1", "10.99.0.0/24")}
	rw2.Name, rw2.RemoteID, rw2.Pools = "rw2", fqdn("ue2.example"), []*ike.Pool{mustPool(t, r, "p2", "10.99.0.0/25")}
	n := netsim.New(90)
	gw, err := n.AddNode("gw", ike.Config{Connections: []*ike.Connection{rw1, rw2}}, gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12")
	ue1, ue2 := rwNode(t, n, "ue1", "ue1.example", a1), rwNode(t, n, "ue2", "ue2.example", a2)
	v1 := connectVIP(t, n, ue1, a1)
	v2 := connectVIP(t, n, ue2, a2)
	if v1 == v2 {
		t.Fatalf("both peers got %v", v1)
	}
	conns := map[string]netip.Addr{}
	for _, s := range gw.Established() {
		conns[s.Conn] = s.PeerVirtualIPs[0]
	}
	if conns["rw1"] != v1 || conns["rw2"] != v2 {
		t.Fatalf("gateway's SAs %v; peers hold %v and %v", conns, v1, v2)
	}
}

// A reload that renames the pool while a peer holds an address from it:
// a second peer gets another address, and the address is handed out again
// only once the first peer's IKE SA is gone (RFC 7296 §2.19).
func TestRFC7296Section2_19ReloadKeepsLeasesOfRenamedPool(t *testing.T) {
	r := ike.NewLeases()
	_, gwConn := configs(t)
	gwConn.RemoteID = ike.ID{}
	gwConn.Pools = []*ike.Pool{mustPool(t, r, "old", "10.99.0.0/30")} // one address
	n := netsim.New(91)
	gw, err := n.AddNode("gw", ike.Config{Connections: []*ike.Connection{gwConn}}, gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12")
	ue1, ue2 := rwNode(t, n, "ue1", "ue1.example", a1), rwNode(t, n, "ue2", "ue2.example", a2)
	v1 := connectVIP(t, n, ue1, a1)

	// The reload: same connection, the pool renamed and grown, in the
	// same registry (as config.Build does).
	_, reloaded := configs(t)
	reloaded.RemoteID = ike.ID{}
	reloaded.Pools = []*ike.Pool{mustPool(t, r, "new", "10.99.0.0/29")}
	gw.Do(func(now time.Time) []ike.Action {
		acts, _, err := gw.Engine.Reconfigure(now, []*ike.Connection{reloaded})
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	n.RunFor(time.Second)
	if len(gw.Established()) != 1 {
		t.Fatal("the reload dropped ue1's IKE SA")
	}
	v2 := connectVIP(t, n, ue2, a2)
	if v2 == v1 {
		t.Fatalf("ue2 got %v, which ue1 still holds", v2)
	}
	// ue1 leaves; its address is free again.
	ue1.Do(func(now time.Time) []ike.Action {
		acts, err := ue1.Engine.Terminate(now, ue1.Established()[0].ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		return acts
	})
	if !n.RunUntil(time.Minute, func() bool { return len(gw.Established()) == 1 }) {
		t.Fatal("ue1's IKE SA not deleted")
	}
	if r.Len() != 1 {
		t.Fatalf("registry holds %d addresses after ue1 left, want 1 (ue2's)", r.Len())
	}
}

// RFC 7296 §3.15.1 (INTERNAL_IP6_ADDRESS): an IPv6 pool keeps back only
// the network and the gateway's first host; it has no broadcast address,
// so its last address is handed out too.
func TestRFC7296Section3_15IPv6PoolUsesLastAddress(t *testing.T) {
	p := mustPool(t, ike.NewLeases(), "rw6", "fd00:99::/126")
	a, b := acquire(t, p, "alice"), acquire(t, p, "bob")
	if a != netip.MustParseAddr("fd00:99::2") || b != netip.MustParseAddr("fd00:99::3") {
		t.Fatalf("got %v and %v, want fd00:99::2 and fd00:99::3", a, b)
	}
	if _, err := p.Acquire("carol"); err == nil {
		t.Fatal("a /126 handed out a third address")
	}
}

// A gateway cluster's node leases only from the blocks etcd gave it and
// never an address an SA on another node holds (Leases.Fence): no
// address is leased twice across nodes (RFC 7296 §2.19).
func TestPoolFence(t *testing.T) {
	r := ike.NewLeases()
	p, err := r.NewPool("vpn", netip.MustParsePrefix("10.99.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	r.Fence(nil, nil)
	if _, err := p.Acquire("a"); err == nil {
		t.Fatal("a fenced pool without blocks leased an address")
	}
	r.Fence([]netip.Prefix{netip.MustParsePrefix("10.99.0.16/28"), netip.MustParsePrefix("10.99.0.0/28")},
		[]netip.Addr{netip.MustParseAddr("10.99.0.16")})
	want := []string{"10.99.0.17", "10.99.0.18"}
	for i, w := range want {
		a, err := p.Acquire(fmt.Sprint("peer", i))
		if err != nil || a.String() != w {
			t.Fatalf("lease %d: %v, %v; want %s (the first block's first unreserved address)", i, a, err, w)
		}
	}
	// An imported SA's address outside the blocks is still claimed.
	if err := p.Claim(netip.MustParseAddr("10.99.0.200"), "imported"); err != nil {
		t.Fatal(err)
	}
	// 15 of the first block (one reserved), 14 of the second (network
	// and gateway addresses kept back): 27 more.
	for i := range 27 {
		if _, err := p.Acquire(fmt.Sprint("more", i)); err != nil {
			t.Fatalf("lease %d of the two blocks' 27 more assignable addresses: %v", i, err)
		}
	}
	if a, err := p.Acquire("one too many"); err == nil {
		t.Fatalf("leased %v beyond the blocks", a)
	}
}

// Leased lists what list-pools shows: every address of the pool's prefix
// that is leased, with its owner, whichever pool of the registry leased
// it, until the last reference is released.
func TestPoolLeasedListsOwners(t *testing.T) {
	r := ike.NewLeases()
	wide := mustPool(t, r, "wide", "10.98.0.0/24")
	narrow := mustPool(t, r, "narrow", "10.98.0.0/29")
	if wide.Size() != 253 || narrow.Size() != 5 {
		t.Fatalf("sizes %d and %d, want 253 and 5", wide.Size(), narrow.Size())
	}
	b := acquire(t, narrow, "bob")
	a := acquire(t, wide, "alice")
	acquire(t, wide, "alice") // a second IKE SA: one lease
	got := fmt.Sprint(wide.Leased())
	want := fmt.Sprint([]ike.PoolLease{{Addr: a, Identity: "alice"}, {Addr: b, Identity: "bob"}})
	if a.Compare(b) > 0 {
		want = fmt.Sprint([]ike.PoolLease{{Addr: b, Identity: "bob"}, {Addr: a, Identity: "alice"}})
	}
	if got != want {
		t.Fatalf("wide.Leased() = %s, want %s", got, want)
	}
	if got := fmt.Sprint(narrow.Leased()); got != want {
		t.Fatalf("narrow.Leased() = %s, want %s: the prefixes overlap", got, want)
	}
	wide.Release(a)
	if len(wide.Leased()) != 2 {
		t.Fatalf("after one of alice's two references: %v, want both leases", wide.Leased())
	}
	wide.Release(a)
	if l := wide.Leased(); len(l) != 1 || l[0].Identity != "bob" {
		t.Fatalf("after alice's last reference: %v, want bob's only", l)
	}
}

// A lease's owner is the engine's key for a peer (its connection and ID);
// Leased shows it as list-sas shows the peer's identity.
func TestPoolLeasedFormatsEngineOwners(t *testing.T) {
	p := mustPool(t, ike.NewLeases(), "rw", "10.97.0.0/24")
	a := acquire(t, p, "rw-cert|"+string(rune(wire.IDFQDN))+"laptop.example.org")
	want := ike.PoolLease{Addr: a, Conn: "rw-cert", Identity: ikeauth.FormatID(wire.IDFQDN, []byte("laptop.example.org"))}
	if l := p.Leased(); len(l) != 1 || l[0] != want {
		t.Fatalf("Leased() = %+v, want %+v", l, want)
	}
}
