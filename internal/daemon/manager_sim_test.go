package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/manager"
	"github.com/mifike/mifike/internal/netsim"
)

// The lab of the demo, in the simulator: an end user with three
// interfaces, a gateway with one address and a pool.
var (
	simGW     = netip.MustParseAddr("10.92.1.2")
	simIfaces = []manager.Interface{
		{Name: "eth0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.91.1.2")}},
		{Name: "wlan0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.91.2.2")}},
		{Name: "wwan0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.91.3.2")}},
	}
)

const simPSK = "simulated-lab-shared-key-0123456789"

// simUE and simGWConf are the two daemons' configurations with short
// lifetimes: every kind of SA is rekeyed many times in a simulated hour.
// lifetimes are one side's IKE and Child SA rekey times and jitter.
type lifetimes struct{ ike, ikeRand, child, childRand time.Duration }

func simUEConf(l lifetimes) string {
	return fmt.Sprintf(`connections:
  office:
    remote_addrs: [%s]
    local: {auth: psk, id: alice@sim.example}
    remote: {auth: psk, id: gw.sim.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    rekey_time: %s
    rand_time: %s
    dpd_delay: 5s
    vips: [0.0.0.0]
    clone: {enable: true, max_ike_sas: 8, own_vips: true}
    interfaces: {mode: per-interface, use: [eth0, wlan0, wwan0], on_down: move, on_return: move-back}
    children:
      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16, rekey_time: %s, rand_time: %s}
`, simGW, simPSK, l.ike, l.ikeRand, l.child, l.childRand)
}

func simGWConf(l lifetimes) string {
	return fmt.Sprintf(`pools:
  vpn: {addrs: 10.99.0.0/24}
connections:
  roadwarrior:
    local: {auth: psk, id: gw.sim.example}
    remote: {auth: psk, id: alice@sim.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    rekey_time: %s
    rand_time: %s
    dpd_delay: 7s
    clone: {enable: true, max_ike_sas: 8}
    pools: [vpn]
    children:
      lan: {local_ts: [10.93.0.0/24], esp_proposals: aes128gcm16, rekey_time: %s, rand_time: %s}
`, simPSK, l.ike, l.ikeRand, l.child, l.childRand)
}

func simConns(t testing.TB, name, yaml string) ([]*ike.Connection, map[string]*ike.Pool, *config.Config) {
	t.Helper()
	cfg, err := config.Parse(name, []byte(yaml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conns, pools, err := cfg.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return conns, pools.ByName, cfg
}

// simDaemon is the part of the daemon that decides: the engine on a
// simulated network, and the interface manager driven the way Daemon.
// reconcile drives it (managerSAs, runCommand).
type simDaemon struct {
	node *netsim.Node
	conn *ike.Connection
	mgr  *manager.Manager
}

// vpnsByIface counts the end user's established IKE SAs on each interface
// and collects the inner addresses they hold.
func vpnsByIface(sas []ike.IKESAInfo) (map[string]int, []netip.Addr) {
	per := map[string]int{}
	var vips []netip.Addr
	for _, s := range sas {
		if s.State != ike.StateEstablished {
			continue
		}
		iface := s.Iface
		for _, i := range simIfaces {
			if iface == "" && slices.Contains(i.Addrs, s.Local.Addr()) {
				iface = i.Name
			}
		}
		per[iface]++
		vips = append(vips, s.VirtualIPs...)
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	return per, vips
}

// RFC 7791 Appendix A with RFC 7296 §2.8: an end user's per-interface VPNs
// (one authentication, a clone moved onto each other interface) are
// rekeyed, IKE SAs and Child SAs, by both ends, many times. A rekeyed IKE
// SA replaces the old one (§2.8), so every interface keeps exactly one
// VPN and every VPN keeps its inner address: the manager must not take a
// rekeyed clone for a new SA and clone again for a slot that is served.
func TestManagedClonesSurviveRekeys(t *testing.T) {
	short := lifetimes{ike: 30 * time.Second, ikeRand: 3 * time.Second, child: 8 * time.Second, childRand: time.Second}
	long := lifetimes{ike: 47 * time.Second, ikeRand: 3 * time.Second, child: 11 * time.Second, childRand: time.Second}
	// Jitter as large as half the lifetime: either end goes first, and
	// sometimes both at once (§2.8.1, §2.8.2 collisions).
	mixed := lifetimes{ike: 30 * time.Second, ikeRand: 15 * time.Second, child: 8 * time.Second, childRand: 4 * time.Second}
	for _, tc := range []struct {
		name   string
		ue, gw lifetimes
		flaps  bool
		seeds  []uint64
	}{
		{"end user rekeys", short, long, false, []uint64{1, 2}},
		{"gateway rekeys", long, short, false, []uint64{3, 4}},
		{"both rekey", mixed, mixed, false, []uint64{5, 6, 7, 8}},
		// Interfaces going down and up between and during rekeys: VPNs
		// move off and back by MOBIKE (RFC 4555 §3.5) under new IDs.
		{"both rekey, links flap", mixed, mixed, true, []uint64{9, 10, 11, 12}},
	} {
		for _, seed := range tc.seeds {
			t.Run(fmt.Sprintf("%s/seed%d", tc.name, seed), func(t *testing.T) { managedRekeys(t, seed, tc.ue, tc.gw, tc.flaps) })
		}
	}
}

func managedRekeys(t *testing.T, seed uint64, ueLife, gwLife lifetimes, flaps bool) {
	const (
		runFor = 20 * time.Minute
		settle = 15 * time.Second
		// A link is down for downFor every flapEvery; after it returns,
		// its VPN is back home within backWithin (on a lossy path the
		// move may need a retransmission: 4 s, then 7.2 s).
		flapEvery  = 40 * time.Second
		downFor    = 12 * time.Second
		backWithin = 15 * time.Second
	)
	net := netsim.New(seed)
	net.Default = netsim.Link{Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond}
	if flaps {
		// Duplicates and reordering too. No random loss: two lost
		// transmissions in a row make the engine probe another path
		// (RFC 4555 §3.5) and the manager avoid the interface for a
		// while, which is a different story (TestUC1SilentFailure).
		net.Default.Dup, net.Default.Reorder = 0.02, 0.02
	}
	if os.Getenv("SIMTRACE") != "" {
		net.Trace = os.Stderr
	}
	gwConns, gwPools, _ := simConns(t, "gw.yaml", simGWConf(gwLife))
	ueConns, _, ueCfg := simConns(t, "ue.yaml", simUEConf(ueLife))
	gwNode, err := net.AddNode("gw", ike.Config{Connections: gwConns}, simGW)
	if err != nil {
		t.Fatal(err)
	}
	var ueAddrs []netip.Addr
	for _, i := range simIfaces {
		ueAddrs = append(ueAddrs, i.Addrs...)
	}
	// The end user's engine asks its manager for paths, as the daemon's
	// does (pathPolicy).
	var ue *simDaemon
	ifaces := slices.Clone(simIfaces)
	policy := &pathPolicy{manager: func(string) *manager.Manager { return ue.mgr },
		ifaces: func() []manager.Interface { return ifaces }, now: func() time.Time { return net.Now }}
	ueNode, err := net.AddNode("ue", ike.Config{Connections: ueConns, PathPolicy: policy}, ueAddrs...)
	if err != nil {
		t.Fatal(err)
	}
	gwNode.Do(func(now time.Time) []ike.Action { return gwNode.Engine.SetLocalAddresses(now, []netip.Addr{simGW}) })
	ueNode.Do(func(now time.Time) []ike.Action { return ueNode.Engine.SetLocalAddresses(now, ueAddrs) })
	ic := ueCfg.Connections[0].Interfaces
	ue = &simDaemon{node: ueNode, conn: ueConns[0], mgr: manager.New(manager.Policy{Conn: "office", Use: ic.Use,
		MoveOnDown: true, MoveBack: true, Children: ic.Children, Retry: 20 * time.Second}, nil)}

	start := net.Now
	var (
		want     []netip.Addr // the inner addresses once settled
		worst    int          // most established IKE SAs on one interface
		checks   int
		moves    int
		failures []string
		downIdx  = -1
		downAt   time.Time
		calm     time.Time // when the last flap's VPN should be home again
	)
	setLink := func(i int, up bool) {
		ifaces[i].Up = up
		a := simIfaces[i].Addrs[0]
		if up {
			ueNode.AddAddr(a)
		} else {
			ueNode.RemoveAddr(a)
		}
		var addrs []netip.Addr
		for _, x := range ifaces {
			if x.Up {
				addrs = append(addrs, x.Addrs...)
			}
		}
		ueNode.Do(func(now time.Time) []ike.Action { return ueNode.Engine.SetLocalAddresses(now, addrs) })
	}
	for net.Now.Sub(start) < runFor && len(failures) < 5 {
		if flaps {
			switch el := net.Now.Sub(start); {
			case downIdx < 0 && el > settle && el%flapEvery < 200*time.Millisecond:
				downIdx, downAt = net.Rand().IntN(len(ifaces)), net.Now
				setLink(downIdx, false)
				moves++
			case downIdx >= 0 && net.Now.Sub(downAt) >= downFor:
				setLink(downIdx, true)
				downIdx, calm = -1, net.Now.Add(backWithin)
			}
		}
		sas := managerSAs(ueNode.Engine.IKESAs(), ue.conn.Name)
		for _, cmd := range ue.mgr.Reconcile(net.Now, ue.conn.RemoteAddrs[0], ifaces, sas) {
			ueNode.Do(func(now time.Time) []ike.Action {
				acts, _ := runCommand(ueNode.Engine, now, ue.mgr, ue.conn, cmd)
				return acts
			})
		}
		net.RunFor(200 * time.Millisecond)
		if net.Now.Sub(start) < settle {
			continue
		}
		per, vips := vpnsByIface(ueNode.Engine.IKESAs())
		checks++
		for _, i := range simIfaces {
			worst = max(worst, per[i.Name])
		}
		total := 0
		for _, n := range per {
			total += n
		}
		switch {
		case downIdx >= 0 || net.Now.Before(calm):
			// A link is down or just back: its VPN is elsewhere or on its
			// way home, but it is still one VPN.
			if total != len(simIfaces) {
				failures = append(failures, fmt.Sprintf("at +%v (a link flapped): IKE SAs per interface %v, want %d in all", net.Now.Sub(start).Round(time.Millisecond), per, len(simIfaces)))
				continue
			}
		case len(per) != len(simIfaces) || per["eth0"] != 1 || per["wlan0"] != 1 || per["wwan0"] != 1:
			// An IKE rekey takes one exchange: at a check the old SA is
			// REKEYED or gone, never a second ESTABLISHED one.
			failures = append(failures, fmt.Sprintf("at +%v: IKE SAs per interface %v, want one on each of eth0, wlan0, wwan0", net.Now.Sub(start).Round(time.Millisecond), per))
			continue
		}
		if want == nil {
			want = vips
			if len(want) != len(simIfaces) {
				failures = append(failures, fmt.Sprintf("at +%v: inner addresses %v, want one per VPN", net.Now.Sub(start), vips))
			}
			continue
		}
		if !slices.Equal(vips, want) {
			failures = append(failures, fmt.Sprintf("at +%v: inner addresses %v, were %v (a rekey must keep them)", net.Now.Sub(start).Round(time.Millisecond), vips, want))
		}
	}
	if len(failures) > 0 {
		t.Fatalf("seed %d:\n%s", seed, strings.Join(failures, "\n"))
	}
	// The run must really have rekeyed every SA many times: IKE SA rekeys
	// are reported by both ends, Child SA rekeys by the end that started
	// them.
	count := func(n *netsim.Node, k ike.EventKind) int { return len(n.EventsOf(k)) }
	ikeRekeys := count(ueNode, ike.EventIKERekeyed)
	childRekeys := count(ueNode, ike.EventChildRekeyed) + count(gwNode, ike.EventChildRekeyed)
	fastest := min(ueLife.ike, gwLife.ike)
	if min := len(simIfaces) * int(runFor/fastest) / 2; ikeRekeys < min {
		t.Errorf("only %d IKE SA rekeys in %v (want at least %d): the test did not test what it says", ikeRekeys, runFor, min)
	}
	if min := len(simIfaces) * int(runFor/min(ueLife.child, gwLife.child)) / 2; childRekeys < min {
		t.Errorf("only %d Child SA rekeys in %v (want at least %d)", childRekeys, runFor, min)
	}
	if n := len(gwNode.EventsOf(ike.EventIKECloned)); n != len(simIfaces)-1 {
		t.Errorf("the gateway cloned %d IKE SAs in %v, want %d (one per extra interface, once)", n, runFor, len(simIfaces)-1)
	}
	// The gateway leases exactly the addresses the end user holds (RFC 7791
	// §8: leases belong to the family, and a rekey keeps them).
	if n := gwPools["vpn"].InUse(); n != len(want) {
		t.Errorf("the gateway's pool has %d addresses leased, the end user holds %d (%v)", n, len(want), want)
	}
	if flaps && moves < int(runFor/flapEvery)/2 {
		t.Errorf("only %d link flaps", moves)
	}
	t.Logf("seed %d: %d checks over %v, %d link flaps: at most %d IKE SAs per interface, inner addresses %v kept; %d IKE SA rekeys, %d Child SA rekeys (end user %d, gateway %d)",
		seed, checks, runFor, moves, worst, want, ikeRekeys, childRekeys, count(ueNode, ike.EventChildRekeyed), count(gwNode, ike.EventChildRekeyed))
}
