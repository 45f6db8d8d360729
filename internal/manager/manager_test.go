package manager

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

var (
	gw   = netip.MustParseAddr("203.0.113.1")
	gw2  = netip.MustParseAddr("203.0.113.2")
	eth  = Interface{Name: "eth0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}}
	wifi = Interface{Name: "wlan0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("192.168.2.10")}}
	lte  = Interface{Name: "wwan0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.64.0.10")}}
	t0   = time.Unix(1000, 0)
)

func policy(mode Mode) Policy {
	return Policy{Conn: "home", Mode: mode, Use: []string{"eth*", "wlan*", "wwan*"}, MoveOnDown: true, MoveBack: true, Children: []string{"net"}}
}

func down(i Interface) Interface { i.Up = false; return i }

// sa is an established SA of ours on interface i (clone support and
// MOBIKE on, we move it), with the policy's Child SA.
func sa(id uint64, i Interface, parent uint64) SA {
	return SA{ID: id, Established: true, Local: i.Addrs[0], Remote: gw, Iface: i.Name, Parent: parent,
		CloneSupported: true, MOBIKE: true, MOBIKEInitiator: true, Children: []Child{{Name: "net"}}}
}

// RFC 7791 Appendix A, as policy: authenticate once on the preferred
// interface, then clone for each other one, give each clone its Child SA
// and move it there.
func TestPerInterfaceBringUp(t *testing.T) {
	m := New(policy(PerInterface), nil)
	ifs := []Interface{wifi, lte, eth}
	got := m.Reconcile(t0, gw, ifs, nil)
	want := []Command{Initiate{Slot: Slot{Iface: "eth0"}, Local: eth.Addrs[0], Iface: "eth0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first call: %#v", got)
	}
	m.Bind(Slot{Iface: "eth0"}, 1)
	if got := m.Reconcile(t0.Add(time.Second), gw, ifs, []SA{{ID: 1, Local: eth.Addrs[0], Remote: gw, Iface: "eth0"}}); len(got) != 0 {
		t.Fatalf("while authenticating: %#v", got)
	}
	got = m.Reconcile(t0.Add(2*time.Second), gw, ifs, []SA{sa(1, eth, 0)})
	if !reflect.DeepEqual(got, []Command{Clone{ID: 1}, Clone{ID: 1}}) {
		t.Fatalf("after authentication: %#v", got)
	}
	// Nothing new while the clones are under way.
	if got := m.Reconcile(t0.Add(3*time.Second), gw, ifs, []SA{sa(1, eth, 0)}); len(got) != 0 {
		t.Fatalf("while cloning: %#v", got)
	}
	// The clones come up on the parent's path, in request order.
	c2, c3 := sa(2, eth, 1), sa(3, eth, 1)
	got = m.Reconcile(t0.Add(4*time.Second), gw, ifs, []SA{sa(1, eth, 0), c2, c3})
	want = []Command{
		CreateChild{ID: 2, Name: "net"}, Move{ID: 2, Local: wifi.Addrs[0], Remote: gw, Iface: "wlan0"},
		CreateChild{ID: 3, Name: "net"}, Move{ID: 3, Local: lte.Addrs[0], Remote: gw, Iface: "wwan0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("clones ready:\n got %#v\nwant %#v", got, want)
	}
	// Settled: nothing more.
	if got := m.Reconcile(t0.Add(5*time.Second), gw, ifs, []SA{sa(1, eth, 0), sa(2, wifi, 1), sa(3, lte, 1)}); len(got) != 0 {
		t.Fatalf("settled: %#v", got)
	}
}

// A peer that does not offer cloning: every interface authenticates.
func TestPerInterfaceWithoutClone(t *testing.T) {
	m := New(policy(PerInterface), nil)
	ifs := []Interface{eth, wifi}
	m.Reconcile(t0, gw, ifs, nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	s := sa(1, eth, 0)
	s.CloneSupported = false
	got := m.Reconcile(t0.Add(time.Second), gw, ifs, []SA{s})
	want := []Command{Initiate{Slot: Slot{Iface: "wlan0"}, Local: wifi.Addrs[0], Iface: "wlan0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%#v", got)
	}
}

// Without cloning, an interface that goes (its VPN deleted) and comes
// back soon gets a new authentication at once, not after Retry.
func TestWithoutCloneReplug(t *testing.T) {
	p := policy(PerInterface)
	p.MoveOnDown = false
	m := New(p, nil)
	s := sa(1, eth, 0)
	s.CloneSupported = false
	m.Reconcile(t0, gw, []Interface{eth}, nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Reconcile(t0.Add(time.Second), gw, []Interface{eth, wifi}, []SA{s})
	m.Bind(Slot{Iface: "wlan0"}, 2)
	w := sa(2, wifi, 0)
	w.CloneSupported = false
	m.Reconcile(t0.Add(2*time.Second), gw, []Interface{eth, wifi}, []SA{s, w})
	if got := m.Reconcile(t0.Add(3*time.Second), gw, []Interface{eth, down(wifi)}, []SA{s, w}); !reflect.DeepEqual(got, []Command{Terminate{ID: 2}}) {
		t.Fatalf("wlan0 down: %#v", got)
	}
	m.Reconcile(t0.Add(4*time.Second), gw, []Interface{eth, down(wifi)}, []SA{s})
	got := m.Reconcile(t0.Add(5*time.Second), gw, []Interface{eth, wifi}, []SA{s})
	want := []Command{Initiate{Slot: Slot{Iface: "wlan0"}, Local: wifi.Addrs[0], Iface: "wlan0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("wlan0 back: %#v", got)
	}
}

// Mobility (UC1): an interface fails, its VPN moves to the best other
// one with its inner address; the interface returns, the VPN moves back.
func TestInterfaceDownAndBack(t *testing.T) {
	m := New(policy(PerInterface), nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	sas := []SA{sa(1, eth, 0), sa(2, wifi, 1)}
	got := m.Reconcile(t0, gw, []Interface{eth, down(wifi)}, sas)
	if !reflect.DeepEqual(got, []Command{Move{ID: 2, Local: eth.Addrs[0], Remote: gw, Iface: "eth0"}}) {
		t.Fatalf("wlan0 down: %#v", got)
	}
	sas[1] = sa(2, eth, 1)
	if got := m.Reconcile(t0.Add(time.Second), gw, []Interface{eth, down(wifi)}, sas); len(got) != 0 {
		t.Fatalf("moved: %#v", got)
	}
	got = m.Reconcile(t0.Add(2*time.Second), gw, []Interface{eth, wifi}, sas)
	if !reflect.DeepEqual(got, []Command{Move{ID: 2, Local: wifi.Addrs[0], Remote: gw, Iface: "wlan0"}}) {
		t.Fatalf("wlan0 back: %#v", got)
	}
}

// Deleting an interface with the delete policy: its VPN goes; without
// move-back a returning interface gets a fresh clone instead.
func TestDeletePolicyAndNewOnReturn(t *testing.T) {
	p := policy(PerInterface)
	p.MoveOnDown = false
	m := New(p, nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	got := m.Reconcile(t0, gw, []Interface{eth, down(wifi)}, []SA{sa(1, eth, 0), sa(2, wifi, 1)})
	if !reflect.DeepEqual(got, []Command{Terminate{ID: 2}}) {
		t.Fatalf("%#v", got)
	}
	got = m.Reconcile(t0.Add(time.Second), gw, []Interface{eth, wifi}, []SA{sa(1, eth, 0)})
	if !reflect.DeepEqual(got, []Command{Clone{ID: 1}}) {
		t.Fatalf("wlan0 back: %#v", got)
	}

	p = policy(PerInterface)
	p.MoveBack = false
	m = New(p, nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	m.Reconcile(t0, gw, []Interface{eth, down(wifi)}, []SA{sa(1, eth, 0), sa(2, wifi, 1)})
	got = m.Reconcile(t0.Add(time.Second), gw, []Interface{eth, wifi}, []SA{sa(1, eth, 0), sa(2, eth, 1)})
	if !reflect.DeepEqual(got, []Command{Clone{ID: 1}}) {
		t.Fatalf("stay policy, wlan0 back: %#v", got)
	}
}

// Multihoming with ordered alternates (UC1): one VPN, on the preferred
// usable interface.
func TestFailover(t *testing.T) {
	m := New(policy(Failover), nil)
	ifs := []Interface{wifi, lte, eth}
	got := m.Reconcile(t0, gw, ifs, nil)
	if len(got) != 1 || got[0].(Initiate).Iface != "eth0" {
		t.Fatalf("%#v", got)
	}
	m.Bind(Slot{Iface: "eth0"}, 1)
	if got := m.Reconcile(t0.Add(time.Second), gw, ifs, []SA{sa(1, eth, 0)}); len(got) != 0 {
		t.Fatalf("failover mode clones: %#v", got)
	}
	got = m.Reconcile(t0.Add(2*time.Second), gw, []Interface{wifi, lte, down(eth)}, []SA{sa(1, eth, 0)})
	if !reflect.DeepEqual(got, []Command{Move{ID: 1, Local: wifi.Addrs[0], Remote: gw, Iface: "wlan0"}}) {
		t.Fatalf("eth0 down: %#v", got)
	}
	got = m.Reconcile(t0.Add(3*time.Second), gw, []Interface{wifi, lte, down(eth), down(wifi)}[1:], []SA{sa(1, wifi, 0)})
	if !reflect.DeepEqual(got, []Command{Move{ID: 1, Local: lte.Addrs[0], Remote: gw, Iface: "wwan0"}}) {
		t.Fatalf("wlan0 down too: %#v", got)
	}
}

// A gateway with two addresses (RFC 7791 figures 2 and 3): with
// AllGatewayAddrs, one VPN per interface × announced gateway address.
func TestAllGatewayAddresses(t *testing.T) {
	p := policy(PerInterface)
	p.AllGatewayAddrs = true
	m := New(p, nil)
	m.Bind(Slot{Iface: "eth0", Remote: gw}, 1)
	s := sa(1, eth, 0)
	s.PeerAddrs = []netip.Addr{gw, gw2}
	got := m.Reconcile(t0, gw, []Interface{eth, wifi}, []SA{s})
	if len(got) != 3 {
		t.Fatalf("%d commands, want 3 clones: %#v", len(got), got)
	}
	c := sa(2, eth, 1)
	got = m.Reconcile(t0.Add(time.Second), gw, []Interface{eth, wifi}, []SA{s, c})
	want := []Command{CreateChild{ID: 2, Name: "net"}, Move{ID: 2, Local: eth.Addrs[0], Remote: gw2, Iface: "eth0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first clone:\n got %#v\nwant %#v", got, want)
	}
}

// UC3, transport-mode mobility: after the IKE SA moved, a transport Child
// SA whose selectors name the old address is replaced, once.
func TestTransportChildFollows(t *testing.T) {
	p := policy(Failover)
	p.Children = []string{"host"} // the VPN's Child SA is this transport one
	m := New(p, nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	s := sa(1, eth, 0)
	old := eth.Addrs[0]
	s.Local = wifi.Addrs[0]
	s.Iface = "wlan0"
	s.Children = []Child{{Name: "host", InSPI: 0xc1, Transport: true, Covers: func(a netip.Addr) bool { return a == old }}}
	got := m.Reconcile(t0, gw, []Interface{down(eth), wifi}, []SA{s})
	want := []Command{CreateChild{ID: 1, Name: "host"}, Terminate{ID: 1, ChildSPI: 0xc1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%#v", got)
	}
	if got := m.Reconcile(t0.Add(time.Second), gw, []Interface{down(eth), wifi}, []SA{s}); len(got) != 0 {
		t.Fatalf("replaced twice: %#v", got)
	}
}

// UC3 multihoming: the IKE SA moved to another of the peer's addresses
// (RFC 4555 §3.6); a transport Child SA whose remote selectors name the
// old peer address is replaced, though our address is the same.
func TestTransportChildFollowsThePeer(t *testing.T) {
	p := policy(Failover)
	p.Children = []string{"host"}
	m := New(p, nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	s := sa(1, eth, 0)
	oldPeer := s.Remote
	s.Remote = gw2
	s.Children = []Child{{Name: "host", InSPI: 0xc1, Transport: true,
		Covers: func(a netip.Addr) bool { return a == s.Local }, CoversRemote: func(a netip.Addr) bool { return a == oldPeer }}}
	got := m.Reconcile(t0, gw, []Interface{eth}, []SA{s})
	want := []Command{CreateChild{ID: 1, Name: "host"}, Terminate{ID: 1, ChildSPI: 0xc1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%#v", got)
	}
	s.Children[0].CoversRemote = func(a netip.Addr) bool { return a == gw2 }
	s.Children[0].InSPI = 0xc2
	if got := m.Reconcile(t0.Add(time.Second), gw, []Interface{eth}, []SA{s}); len(got) != 0 {
		t.Fatalf("a Child SA for the new addresses replaced: %#v", got)
	}
}

// Only eligible interfaces count, in the order of the patterns.
func TestEligibility(t *testing.T) {
	p := policy(PerInterface)
	p.Use = []string{"wwan*", "eth0"}
	m := New(p, nil)
	got := m.Reconcile(t0, gw, []Interface{eth, wifi, lte, {Name: "docker0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("172.17.0.1")}}}, nil)
	if len(got) != 1 || got[0].(Initiate).Iface != "wwan0" {
		t.Fatalf("%#v", got)
	}
	// IPv6-only interfaces do not serve an IPv4 gateway.
	v6 := Interface{Name: "wwan1", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}
	p.Use = []string{"wwan1"}
	if got := New(p, nil).Reconcile(t0, gw, []Interface{v6}, nil); len(got) != 0 {
		t.Fatalf("%#v", got)
	}
}

// A silent failure: the engine's path probing moved a VPN off an
// interface that is still up. The manager does not move it straight back
// onto the dead path: the interface is avoided for a hold-down time
// that doubles on each failure.
func TestSilentFailureHoldDown(t *testing.T) {
	m := New(policy(PerInterface), nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	ifs := []Interface{eth, wifi}
	m.Reconcile(t0, gw, ifs, []SA{sa(1, eth, 0), sa(2, wifi, 1)})
	// The engine's path probing gives up wlan0 and asks where SA 2 goes:
	// eth0, the one usable interface left (RFC 4555 §3.5).
	if p, ok := m.NextPath(t0.Add(time.Second), ifs, unanswered(2, wifi)); !ok || p != (Path{Local: eth.Addrs[0], Remote: gw, Iface: "eth0"}) {
		t.Fatalf("next path %+v %v, want eth0", p, ok)
	}
	moved := []SA{sa(1, eth, 0), sa(2, eth, 1)}
	if got := m.Reconcile(t0.Add(time.Second), gw, ifs, moved); len(got) != 0 {
		t.Fatalf("moved straight back onto the failed path: %#v", got)
	}
	if got := m.Reconcile(t0.Add(20*time.Second), gw, ifs, moved); len(got) != 0 {
		t.Fatalf("within the hold-down: %#v", got)
	}
	got := m.Reconcile(t0.Add(32*time.Second), gw, ifs, moved)
	if !reflect.DeepEqual(got, []Command{Move{ID: 2, Local: wifi.Addrs[0], Remote: gw, Iface: "wlan0"}}) {
		t.Fatalf("after the hold-down: %#v", got)
	}
	// It fails again: twice as long this time.
	m.Reconcile(t0.Add(33*time.Second), gw, ifs, []SA{sa(1, eth, 0), sa(2, wifi, 1)})
	m.NextPath(t0.Add(34*time.Second), ifs, unanswered(2, wifi))
	m.Reconcile(t0.Add(34*time.Second), gw, ifs, moved)
	if got := m.Reconcile(t0.Add(34*time.Second+45*time.Second), gw, ifs, moved); len(got) != 0 {
		t.Fatalf("the second hold-down did not double: %#v", got)
	}
}

// RFC 7791 §5.3: NO_ADDITIONAL_SAS is permanent until some SAs with the
// peer are deleted: no clone is asked for again until one goes.
func TestNoAdditionalSAsStopsCloning(t *testing.T) {
	m := New(policy(PerInterface), nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	ifs := []Interface{eth, wifi, lte}
	sas := []SA{sa(1, eth, 0), sa(2, wifi, 1)}
	if got := m.Reconcile(t0, gw, ifs, sas); !reflect.DeepEqual(got, []Command{Clone{ID: 1}}) {
		t.Fatalf("%#v", got)
	}
	m.CloneRefused(1, 2)
	for i := 1; i < 5; i++ {
		if got := m.Reconcile(t0.Add(time.Duration(i)*time.Minute), gw, ifs, sas); len(got) != 0 {
			t.Fatalf("asked again after NO_ADDITIONAL_SAS: %#v", got)
		}
	}
	// wlan0's VPN goes: room for one again.
	got := m.Reconcile(t0.Add(10*time.Minute), gw, ifs, sas[:1])
	if len(got) != 2 {
		t.Fatalf("after an SA went: %#v", got)
	}
}

// rekeyed is s replaced by an IKE SA rekey (RFC 7296 §2.8): a new ID,
// the same VPN.
func rekeyed(s SA, id uint64) SA {
	if s.Lineage == 0 {
		s.Lineage = s.ID
	}
	s.ID = id
	return s
}

// A rekeyed IKE SA is the same VPN under a new ID: the parent and each
// clone keep their slots, nothing is cloned again and nothing moves
// (issue: with rekey_time 20 s, 2 VPNs became 3, 4 and 5 within a minute).
func TestRekeyedSAsKeepTheirSlots(t *testing.T) {
	m := New(policy(PerInterface), nil)
	ifs := []Interface{eth, wifi, lte}
	m.Bind(Slot{Iface: "eth0"}, 1)
	sas := []SA{sa(1, eth, 0)}
	if got := m.Reconcile(t0, gw, ifs, sas); len(got) != 2 {
		t.Fatalf("bring-up: %#v", got)
	}
	sas = append(sas, sa(2, eth, 1), sa(3, eth, 1))
	m.Reconcile(t0.Add(time.Second), gw, ifs, sas)
	sas = []SA{sa(1, eth, 0), sa(2, wifi, 1), sa(3, lte, 1)}
	if got := m.Reconcile(t0.Add(2*time.Second), gw, ifs, sas); len(got) != 0 {
		t.Fatalf("settled: %#v", got)
	}
	// Every SA rekeyed, some twice; a clone's rekey keeps its parent.
	next := uint64(10)
	for round := range 5 {
		for i := range sas {
			if round%2 == 0 || i != 1 {
				sas[i] = rekeyed(sas[i], next)
				next++
			}
		}
		if got := m.Reconcile(t0.Add(time.Duration(3+round)*time.Second), gw, ifs, sas); len(got) != 0 {
			t.Fatalf("after rekey round %d: %#v", round, got)
		}
	}
	// Still managed: wlan0 goes down, its (rekeyed) VPN moves.
	got := m.Reconcile(t0.Add(time.Minute), gw, []Interface{eth, down(wifi), lte}, sas)
	if !reflect.DeepEqual(got, []Command{Move{ID: sas[1].ID, Local: eth.Addrs[0], Remote: gw, Iface: "eth0"}}) {
		t.Fatalf("wlan0 down after rekeys: %#v", got)
	}
}

// While an IKE SA is reauthenticated (RFC 7296 §2.8.3, make-before-break)
// the old and the new SA are one VPN: no second VPN is started for the
// slot, and the one carrying the Child SAs is the one managed.
func TestReauthenticationIsOneVPN(t *testing.T) {
	m := New(policy(PerInterface), nil)
	ifs := []Interface{eth}
	m.Bind(Slot{Iface: "eth0"}, 1)
	old := sa(1, eth, 0)
	old.Children = []Child{{Name: "net", InSPI: 0x1000}}
	if got := m.Reconcile(t0, gw, ifs, []SA{old}); len(got) != 0 {
		t.Fatalf("%#v", got)
	}
	fresh := rekeyed(sa(1, eth, 0), 2)
	fresh.Established = false
	if got := m.Reconcile(t0.Add(time.Second), gw, ifs, []SA{old, fresh}); len(got) != 0 {
		t.Fatalf("while reauthenticating: %#v", got)
	}
	fresh.Established = true
	if got := m.Reconcile(t0.Add(2*time.Second), gw, ifs, []SA{old, fresh}); len(got) != 0 {
		t.Fatalf("both up: %#v", got)
	}
	if got := m.Reconcile(t0.Add(3*time.Second), gw, ifs, []SA{fresh}); len(got) != 0 {
		t.Fatalf("old one gone: %#v", got)
	}
}

// A clone whose request was given up after Retry still serves the slot
// it was made for when it finally comes; one that comes after a second
// request already filled the slot is surplus and deleted; a clone made
// with the CLI, when every slot is served, stays where it is (the user
// asked for it) and gets the policy's Child SAs.
func TestLateAndManualClones(t *testing.T) {
	p := policy(PerInterface)
	p.Retry = 5 * time.Second
	m := New(p, nil)
	ifs := []Interface{eth, wifi}
	m.Bind(Slot{Iface: "eth0"}, 1)
	if got := m.Reconcile(t0, gw, ifs, []SA{sa(1, eth, 0)}); !reflect.DeepEqual(got, []Command{Clone{ID: 1}}) {
		t.Fatalf("%#v", got)
	}
	// No answer within Retry: asked again.
	if got := m.Reconcile(t0.Add(6*time.Second), gw, ifs, []SA{sa(1, eth, 0)}); !reflect.DeepEqual(got, []Command{Clone{ID: 1}}) {
		t.Fatalf("retry: %#v", got)
	}
	// Both answers arrive: the first takes wlan0, the second is surplus.
	got := m.Reconcile(t0.Add(7*time.Second), gw, ifs, []SA{sa(1, eth, 0), sa(2, eth, 1), sa(3, eth, 1)})
	want := []Command{CreateChild{ID: 2, Name: "net"}, Move{ID: 2, Local: wifi.Addrs[0], Remote: gw, Iface: "wlan0"}, Terminate{ID: 3}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("two answers:\n got %#v\nwant %#v", got, want)
	}
	// The Delete is not out yet (the window is full): not deleted twice,
	// not adopted.
	if got := m.Reconcile(t0.Add(8*time.Second), gw, ifs, []SA{sa(1, eth, 0), sa(2, wifi, 1), sa(3, eth, 1)}); len(got) != 0 {
		t.Fatalf("while the surplus clone goes: %#v", got)
	}
	settled := []SA{sa(1, eth, 0), sa(2, wifi, 1)}
	if got := m.Reconcile(t0.Add(9*time.Second), gw, ifs, settled); len(got) != 0 {
		t.Fatalf("settled: %#v", got)
	}
	// `mifike clone 1`: every slot is served, so the clone stays on eth0.
	got = m.Reconcile(t0.Add(10*time.Second), gw, ifs, append(settled, sa(4, eth, 1)))
	if !reflect.DeepEqual(got, []Command{CreateChild{ID: 4, Name: "net"}}) {
		t.Fatalf("manual clone: %#v", got)
	}
	if got := m.Reconcile(t0.Add(11*time.Second), gw, ifs, append(settled, sa(4, eth, 1))); len(got) != 0 {
		t.Fatalf("manual clone kept: %#v", got)
	}
}

// A move the user made (mifike move) is no sign that the interface left
// behind is dead: only the engine's path probing says so (NextPath). The
// policy brings the VPN home again at once (found by the endurance test:
// the interface was avoided for 30 s, then 60 s).
func TestManualMoveIsNoPathFailure(t *testing.T) {
	m := New(policy(PerInterface), nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	ifs := []Interface{eth, wifi}
	m.Reconcile(t0, gw, ifs, []SA{sa(1, eth, 0), sa(2, wifi, 1)})
	got := m.Reconcile(t0.Add(time.Second), gw, ifs, []SA{sa(1, eth, 0), sa(2, eth, 1)})
	if !reflect.DeepEqual(got, []Command{Move{ID: 2, Local: wifi.Addrs[0], Remote: gw, Iface: "wlan0"}}) {
		t.Fatalf("after a manual move: %#v", got)
	}
	// A path given up on an interface that has gone down meanwhile is no
	// silent failure either: when it returns, its VPN goes back.
	m.Reconcile(t0.Add(2*time.Second), gw, ifs, []SA{sa(1, eth, 0), sa(2, wifi, 1)})
	m.NextPath(t0.Add(3*time.Second), []Interface{eth, down(wifi)}, unanswered(2, wifi))
	m.Reconcile(t0.Add(3*time.Second), gw, []Interface{eth, down(wifi)}, []SA{sa(1, eth, 0), sa(2, eth, 1)})
	got = m.Reconcile(t0.Add(4*time.Second), gw, ifs, []SA{sa(1, eth, 0), sa(2, eth, 1)})
	if !reflect.DeepEqual(got, []Command{Move{ID: 2, Local: wifi.Addrs[0], Remote: gw, Iface: "wlan0"}}) {
		t.Fatalf("wlan0 back after it went down: %#v", got)
	}
}

// unanswered is the engine's question when requests of VPN lineage on
// interface i went unanswered, with every other address of the test's
// interfaces as a candidate.
func unanswered(lineage uint64, i Interface) PathRequest {
	q := PathRequest{Lineage: lineage, Reason: PathUnanswered, Current: Path{Local: i.Addrs[0], Remote: gw}}
	for _, o := range []Interface{eth, wifi, lte} {
		if o.Name != i.Name {
			q.Candidates = append(q.Candidates, Path{Local: o.Addrs[0], Remote: gw})
		}
	}
	return q
}

// RFC 4555 §3.5: the engine asks the manager where a VPN goes. Home
// first when it is usable, then the policy's order, never an interface
// held down or the one that just failed; with nowhere to go the VPN
// stays, unless its address is gone.
func TestNextPath(t *testing.T) {
	m := New(policy(PerInterface), nil)
	m.Bind(Slot{Iface: "wwan0"}, 3)
	ifs := []Interface{eth, wifi, lte}
	// VPN 3 lives on wwan0 but is on eth0 now; eth0 goes silent: home.
	q := unanswered(3, eth)
	if p, ok := m.NextPath(t0, ifs, q); !ok || p.Iface != "wwan0" || p.Local != lte.Addrs[0] {
		t.Fatalf("got %+v %v, want home wwan0", p, ok)
	}
	// A VPN without a home goes by the policy's order, skipping eth0,
	// which is held down now.
	if p, ok := m.NextPath(t0.Add(time.Second), ifs, unanswered(9, lte)); !ok || p.Iface != "wlan0" {
		t.Fatalf("got %+v %v, want wlan0 (eth0 held down)", p, ok)
	}
	// Only eth0 (held down) left: stay, liveness checks decide.
	if p, ok := m.NextPath(t0.Add(2*time.Second), []Interface{eth, down(wifi), down(lte)}, unanswered(9, lte)); ok {
		t.Fatalf("moved to %+v although only a held-down interface is left", p)
	}
	// Address gone and nothing good left: any allowed path, for the
	// Delete the policy may send.
	q = PathRequest{Lineage: 9, Reason: PathAddressGone, Current: Path{Local: lte.Addrs[0], Remote: gw},
		Candidates: []Path{{Local: eth.Addrs[0], Remote: gw}}}
	if p, ok := m.NextPath(t0.Add(3*time.Second), []Interface{eth, down(wifi), down(lte)}, q); !ok || p.Local != eth.Addrs[0] {
		t.Fatalf("got %+v %v, want the only candidate", p, ok)
	}
}

// Several VPNs on an interface that goes silent each ask for a path: one
// failure, one hold-down of 30 s, not doubled per VPN.
func TestHoldDownOncePerFailure(t *testing.T) {
	m := New(policy(PerInterface), nil)
	ifs := []Interface{eth, wifi}
	for v := uint64(1); v <= 4; v++ {
		m.NextPath(t0, ifs, unanswered(v, wifi))
	}
	if h := m.suspect["wlan0"]; h.hold != minHold || !h.until.Equal(t0.Add(minHold)) {
		t.Fatalf("hold %v until %v after one failure seen by 4 VPNs, want %v", h.hold, h.until, minHold)
	}
	// A new failure after the hold: twice as long.
	m.NextPath(t0.Add(minHold+time.Second), ifs, unanswered(1, wifi))
	if h := m.suspect["wlan0"]; h.hold != 2*minHold {
		t.Fatalf("second failure: hold %v, want %v", h.hold, 2*minHold)
	}
}

// A VPN the delete policy let go stays gone while its Delete waits behind
// an unanswered request, even where the engine moved it meanwhile: it is
// not taken back as an SA the manager did not start, serves no slot, and
// is no base for clones. The interface-event soak found the opposite:
// re-adopted, terminated again, given Child SAs, or handed the clone
// request of another interface, which then had two VPNs.
func TestDeletedVPNIsNotTakenBack(t *testing.T) {
	p := policy(PerInterface)
	p.MoveOnDown = false
	m := New(p, nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	if got := m.Reconcile(t0, gw, []Interface{eth, down(wifi)}, []SA{sa(1, eth, 0), sa(2, wifi, 1)}); !reflect.DeepEqual(got, []Command{Terminate{ID: 2}}) {
		t.Fatalf("wlan0 down: %#v", got)
	}
	// The engine moved SA 2 to eth0 (its path was gone); the Delete is
	// not through yet.
	for i := 1; i <= 3; i++ {
		if got := m.Reconcile(t0.Add(time.Duration(i)*time.Second), gw, []Interface{eth, down(wifi)}, []SA{sa(2, eth, 1), sa(1, eth, 0)}); len(got) != 0 {
			t.Fatalf("round %d with the deleted VPN still there: %#v", i, got)
		}
	}
	if _, ok := m.Home(2); ok || !m.Deleting(2) {
		t.Fatal("the deleted VPN was taken back")
	}
	// wlan0 back while SA 2 lingers: a clone of SA 1 for it.
	if got := m.Reconcile(t0.Add(5*time.Second), gw, []Interface{eth, wifi}, []SA{sa(2, eth, 1), sa(1, eth, 0)}); !reflect.DeepEqual(got, []Command{Clone{ID: 1}}) {
		t.Fatalf("wlan0 back: %#v", got)
	}
	m.Reconcile(t0.Add(6*time.Second), gw, []Interface{eth, wifi}, []SA{sa(1, eth, 0)})
	if m.Deleting(2) {
		t.Fatal("still deleting a VPN whose SAs are gone")
	}
}

// Two clones asked for, the first placed and its interface gone at once
// (delete policy): the second clone gets the second request's slot, and
// the first, being deleted, takes no request again.
func TestDeletedCloneTakesNoOtherRequest(t *testing.T) {
	p := policy(PerInterface)
	p.MoveOnDown = false
	m := New(p, nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	ifs := []Interface{eth, wifi, lte}
	if got := m.Reconcile(t0, gw, ifs, []SA{sa(1, eth, 0)}); !reflect.DeepEqual(got, []Command{Clone{ID: 1}, Clone{ID: 1}}) {
		t.Fatalf("bring-up: %#v", got)
	}
	m.Reconcile(t0.Add(time.Millisecond), gw, ifs, []SA{sa(1, eth, 0), sa(2, eth, 1)}) // clone 2 → wlan0
	ifs = []Interface{eth, down(wifi), lte}
	if got := m.Reconcile(t0.Add(2*time.Millisecond), gw, ifs, []SA{sa(1, eth, 0), sa(2, wifi, 1)}); !reflect.DeepEqual(got, []Command{Terminate{ID: 2}}) {
		t.Fatalf("wlan0 gone: %#v", got)
	}
	got := m.Reconcile(t0.Add(3*time.Millisecond), gw, ifs, []SA{sa(1, eth, 0), sa(2, eth, 1), sa(3, eth, 1)})
	want := []Command{CreateChild{ID: 3, Name: "net"}, Move{ID: 3, Local: lte.Addrs[0], Remote: gw, Iface: "wwan0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("clone 3 up with clone 2 being deleted: %#v", got)
	}
	if s, ok := m.Home(3); !ok || s.Iface != "wwan0" {
		t.Fatalf("clone 3's home %v", s)
	}
}

// A VPN that lost the policy's Child SA (a rekey lost among IKE SA
// rekeys, a Child SA the peer deleted) gets it again, once per Retry;
// one that has it is left alone. The interface-event soak found VPNs
// left without their tunnel for good.
func TestLostChildIsMadeAgain(t *testing.T) {
	m := New(policy(PerInterface), nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	ifs := []Interface{eth, wifi}
	bare := sa(2, wifi, 1)
	bare.Children = nil
	if got := m.Reconcile(t0, gw, ifs, []SA{sa(1, eth, 0), bare}); !reflect.DeepEqual(got, []Command{CreateChild{ID: 2, Name: "net"}}) {
		t.Fatalf("VPN without its Child SA: %#v", got)
	}
	if got := m.Reconcile(t0.Add(time.Second), gw, ifs, []SA{sa(1, eth, 0), bare}); len(got) != 0 {
		t.Fatalf("asked again within Retry: %#v", got)
	}
	if got := m.Reconcile(t0.Add(30*time.Second), gw, ifs, []SA{sa(1, eth, 0), bare}); !reflect.DeepEqual(got, []Command{CreateChild{ID: 2, Name: "net"}}) {
		t.Fatalf("not asked again after Retry: %#v", got)
	}
	if got := m.Reconcile(t0.Add(31*time.Second), gw, ifs, []SA{sa(1, eth, 0), sa(2, wifi, 1)}); len(got) != 0 {
		t.Fatalf("with its Child SA back: %#v", got)
	}
	// One the engine is making already (the start children it queues
	// after IKE_AUTH) is not asked for a second time.
	bare.Creating = []string{"net"}
	if got := m.Reconcile(t0.Add(90*time.Second), gw, ifs, []SA{sa(1, eth, 0), bare}); len(got) != 0 {
		t.Fatalf("asked for a Child SA under way: %#v", got)
	}
}

// An authentication whose address went away before IKE_AUTH was done is
// given up and begun again where there is an interface (IKE_AUTH cannot
// move: MOBIKE is negotiated by it); one not done within Retry on a link
// that passes nothing is given up when another interface can be tried
// (RFC 4555 §3.1), and waited for when there is none. It used to hold
// every VPN back until the engine gave up, about 165 s.
func TestStrandedAuthenticationIsAbandoned(t *testing.T) {
	connecting := func(id uint64, i Interface) SA {
		return SA{ID: id, Local: i.Addrs[0], Remote: gw, Iface: i.Name}
	}
	m := New(policy(Failover), nil)
	if got := m.Reconcile(t0, gw, []Interface{wifi}, nil); !reflect.DeepEqual(got, []Command{Initiate{Slot: Slot{Iface: "wlan0"}, Local: wifi.Addrs[0], Iface: "wlan0"}}) {
		t.Fatalf("start: %#v", got)
	}
	m.Bind(Slot{Iface: "wlan0"}, 1)
	// wlan0 is gone, eth0 came.
	got := m.Reconcile(t0.Add(time.Second), gw, []Interface{eth}, []SA{connecting(1, wifi)})
	want := []Command{Terminate{ID: 1}, Initiate{Slot: Slot{Iface: "eth0"}, Local: eth.Addrs[0], Iface: "eth0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("address gone:\n got %#v\nwant %#v", got, want)
	}
	m.Bind(Slot{Iface: "eth0"}, 2)
	// eth0 passes nothing: within Retry, or with nowhere else to go, the
	// authentication is waited for.
	if got := m.Reconcile(t0.Add(10*time.Second), gw, []Interface{eth, wifi}, []SA{connecting(2, eth)}); len(got) != 0 {
		t.Fatalf("within Retry: %#v", got)
	}
	if got := m.Reconcile(t0.Add(30*time.Second), gw, []Interface{eth}, []SA{connecting(2, eth)}); len(got) != 0 {
		t.Fatalf("past Retry, no other interface: %#v", got)
	}
	got = m.Reconcile(t0.Add(31*time.Second), gw, []Interface{eth, wifi}, []SA{connecting(2, eth)})
	want = []Command{Terminate{ID: 2}, Initiate{Slot: Slot{Iface: "wlan0"}, Local: wifi.Addrs[0], Iface: "wlan0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("past Retry with wlan0 there:\n got %#v\nwant %#v", got, want)
	}
}

// Failover (UC1, ordered alternates) with on_return move-back: the VPN
// lives on the most preferred usable interface, also when that one was
// absent when the VPN was authenticated.
func TestFailoverPrefersTheBest(t *testing.T) {
	m := New(policy(Failover), nil)
	m.Bind(Slot{Iface: "wlan0"}, 1) // authenticated while eth0 was away
	got := m.Reconcile(t0, gw, []Interface{eth, wifi}, []SA{sa(1, wifi, 0)})
	if !reflect.DeepEqual(got, []Command{Move{ID: 1, Local: eth.Addrs[0], Remote: gw, Iface: "eth0"}}) {
		t.Fatalf("eth0 usable: %#v", got)
	}
	if s, _ := m.Home(1); s.Iface != "eth0" {
		t.Fatalf("home %v, want eth0", s)
	}
	if got := m.Reconcile(t0.Add(time.Second), gw, []Interface{eth, wifi}, []SA{sa(1, eth, 0)}); len(got) != 0 {
		t.Fatalf("on eth0: %#v", got)
	}
	p := policy(Failover)
	p.MoveBack = false
	m = New(p, nil)
	m.Bind(Slot{Iface: "wlan0"}, 1)
	if got := m.Reconcile(t0, gw, []Interface{eth, wifi}, []SA{sa(1, wifi, 0)}); len(got) != 0 {
		t.Fatalf("on_return new: %#v", got)
	}
}

// An authentication that fails (wrong password, a refusing or silent
// gateway or RADIUS server) is tried again after Retry, then after twice
// as long each time up to maxAuthHold, not every Retry for ever; a
// success clears the wait.
func TestFailedAuthenticationBacksOff(t *testing.T) {
	m := New(policy(Failover), nil)
	ifs := []Interface{eth}
	initiate := []Command{Initiate{Slot: Slot{Iface: "eth0"}, Local: eth.Addrs[0], Iface: "eth0"}}
	connecting := SA{ID: 0, Local: eth.Addrs[0], Remote: gw, Iface: "eth0"}
	now := t0
	for i, wait := range []time.Duration{20 * time.Second, 40 * time.Second, 80 * time.Second} {
		id := uint64(i + 1)
		if got := m.Reconcile(now, gw, ifs, nil); !reflect.DeepEqual(got, initiate) {
			t.Fatalf("attempt %d: %#v", i+1, got)
		}
		m.Bind(Slot{Iface: "eth0"}, id)
		c := connecting
		c.ID = id
		m.Reconcile(now.Add(time.Second), gw, ifs, []SA{c})
		now = now.Add(2 * time.Second) // refused: the SA is gone
		if got := m.Reconcile(now, gw, ifs, nil); len(got) != 0 {
			t.Fatalf("right after failure %d: %#v", i+1, got)
		}
		if got := m.Reconcile(now.Add(wait-time.Second), gw, ifs, nil); len(got) != 0 {
			t.Fatalf("before the %v wait after failure %d: %#v", wait, i+1, got)
		}
		now = now.Add(wait)
	}
	// A success clears the wait.
	if got := m.Reconcile(now, gw, ifs, nil); !reflect.DeepEqual(got, initiate) {
		t.Fatalf("attempt 4: %#v", got)
	}
	m.Bind(Slot{Iface: "eth0"}, 4)
	m.Reconcile(now.Add(time.Second), gw, ifs, []SA{sa(4, eth, 0)})
	if h := m.authHold["eth0"]; !h.until.IsZero() {
		t.Fatalf("still held after a success: %+v", h)
	}
}
