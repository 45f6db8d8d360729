package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

// Issue 20 item 2: flow spreading. Plain TCP connections (no MPTCP) that
// the application opens from the route's source address are each given
// one of the per-interface VPNs (RFC 7791 clones, each with its own
// inner address) by a weighted hash; the end user's daemon translates
// the flow's source to that VPN's inner address (its nftables table),
// conntrack keeps it there for the flow's life, and the data plane sends
// it through that VPN's Child SA.

// spreadWeights: eth0 3, wlan0 2, wwan0 none (a metered link).
const spreadWeights = "{eth*: 3, wlan*: 2, wwan*: 0}"

// spreadLab starts the lab with the end user spreading its flows by
// weights, and waits for a VPN on every interface and for the rules
// that name them (ready says the table is what the test needs).
//
// These tests check the configured weights: measured weighting is off
// (on a loaded machine an IKE round trip can pass the 10 ms floor and
// tilt the shares); spread_measured_test.go has it on.
func spreadLab(t *testing.T, weights string, ready func(table string, vips map[string]string) bool) (*demo.Topology, *demo.Daemon, map[string]string) {
	t.Helper()
	return spreadLabWith(t, demo.Options{Spread: weights, SpreadOpts: "spread_measured: no"}, ready)
}

func spreadLabWith(t *testing.T, o demo.Options, ready func(table string, vips map[string]string) bool) (*demo.Topology, *demo.Daemon, map[string]string) {
	t.Helper()
	weights := o.Spread
	top, ue, _ := lab(t, o)
	v := waitVPNs(t, ue, all3, 20*time.Second)
	vips := map[string]string{}
	for _, dev := range all3 {
		vips[dev] = v[dev].VirtualIPs[0]
	}
	srv, err := top.StartMPTCPServer() // serves plain TCP clients too
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	// The rules are written after the reconcile that sees the VPNs.
	if !demo.WaitFor(20*time.Second, func() bool {
		out, err := top.Run(context.Background(), top.UE, "nft", "list", "table", "inet", "mifike_spread")
		return err == nil && ready(string(out), vips)
	}) {
		out, _ := top.Run(context.Background(), top.UE, "nft", "list", "ruleset")
		t.Fatalf("the spread table for %s never came:\n%s", weights, out)
	}
	return top, ue, vips
}

// Sixty short plain-TCP downloads from the default source address: every
// one arrives intact; the VPNs' Child SAs carry them by weight, eth0's
// and wlan0's VPNs some each, wwan0's (weight 0) not one octet. At the
// daemon's stop the table is gone.
func TestSpreadFlowsByWeight(t *testing.T) {
	top, ue, vips := spreadLab(t, spreadWeights, func(table string, vips map[string]string) bool {
		return strings.Contains(table, vips["eth0"]) && strings.Contains(table, vips["wlan0"]) && strings.Contains(table, "mod 5")
	})
	const n, size, parallel = 60, 256 << 10, 6
	before := espIn(t, ue)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		next     atomic.Int32
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				r := top.Download(ctx, netip.Addr{}, size, true, nil)
				if !r.Intact || r.MPTCP {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("download %d: %d of %d octets, intact %v, MPTCP %v, err %v", i, r.Bytes, size, r.Intact, r.MPTCP, r.Err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	got := delta(espIn(t, ue), before)
	share := map[string]float64{}
	for _, dev := range all3 {
		share[dev] = float64(got[vips[dev]]) / (n * size)
	}
	t.Logf("%d downloads of %d KiB, weights %s: ESP octets in per VPN %v; as a share of the downloads eth0 %.2f, wlan0 %.2f, wwan0 %.2f (weights say 0.60, 0.40, 0)",
		n, size>>10, spreadWeights, got, share["eth0"], share["wlan0"], share["wwan0"])
	// Expected 36 and 24 downloads: asking for a fifth of each leaves
	// room for any hash's luck (24 ± 3.8 for wlan0), not for a VPN
	// left out.
	if share["eth0"] < 0.6/5 || share["wlan0"] < 0.4/5 {
		t.Errorf("eth0's VPN carried %.2f, wlan0's %.2f of the downloads: each weighted VPN must carry its part", share["eth0"], share["wlan0"])
	}
	if got[vips["wwan0"]] != 0 {
		t.Errorf("wwan0's VPN (weight 0) carried %d ESP octets in", got[vips["wwan0"]])
	}
	t.Logf("the daemon wrote the rules %d times, removed the table %d times", strings.Count(ue.Log(), "spread: rules written"), strings.Count(ue.Log(), "spread: table removed"))
	ue.Stop(10 * time.Second)
	if !strings.Contains(ue.Log(), "spread: table removed") {
		t.Error("the daemon did not say it removed the table at its stop")
	}
	if !demo.WaitFor(10*time.Second, func() bool {
		_, err := top.Run(context.Background(), top.UE, "nft", "list", "table", "inet", "mifike_spread")
		return err != nil
	}) {
		t.Error("the table inet mifike_spread is still there after the daemon stopped")
	}
}

// One long download, put on wlan0's VPN (the only one with weight: its
// source translated from the route's, eth0's VPN's inner address), across
// the cut of wlan0: the VPN moves by MOBIKE with its inner address
// (on_down move), the flow goes on through the same VPN (conntrack keeps
// its translation though the rules change; it never changes Child SA),
// and every octet arrives.
func TestSpreadFlowSurvivesInterfaceCut(t *testing.T) {
	const dev = "wlan0"
	top, ue, vips := spreadLab(t, "{eth*: 0, wlan*: 1, wwan*: 0}", func(table string, vips map[string]string) bool {
		return strings.Contains(table, "snat ip to "+vips[dev]+" ")
	})
	for d, rate := range mptcpRates {
		if err := top.LimitRate(d, rate, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := espIn(t, ue)
	var got atomic.Int64
	done := make(chan demo.DownloadResult, 1)
	const size = 16 << 20
	go func() { done <- top.Download(ctx, netip.Addr{}, size, true, got.Store) }()
	if !demo.WaitFor(time.Minute, func() bool { return got.Load() > size/4 }) {
		t.Fatalf("the download did not get a quarter of the way: %d octets", got.Load())
	}
	mid := delta(espIn(t, ue), before)
	if mid[vips[dev]] < size/8 {
		t.Fatalf("wlan0's VPN (%s) did not carry the flow: ESP octets in per VPN %v", vips[dev], mid)
	}
	vpn := vpns(t, ue)[dev]
	if err := top.SetLink(dev, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("the flow from %s rides %s's VPN (IKE SA %d, %s); %s cut after %d of %d octets", vips["eth0"], dev, vpn.ID, vips[dev], dev, got.Load(), size)
	r := <-done
	if !r.Intact {
		t.Fatalf("the download across the cut: %d of %d octets, intact %v, err %v", r.Bytes, size, r.Intact, r.Err)
	}
	after := delta(espIn(t, ue), before)
	moved := onIfaceNot(t, ue, vips[dev], dev)
	t.Logf("completed intact in %v; the VPN is on %s now; ESP octets in per VPN at the cut %v, at the end %v", r.Elapsed.Round(time.Millisecond), moved, mid, after)
	if after[vips[dev]]-mid[vips[dev]] < size/4 {
		t.Errorf("the VPN with %s carried %d octets after the cut: the flow must go on through its VPN", vips[dev], after[vips[dev]]-mid[vips[dev]])
	}
	// Never split across Child SAs: the other VPNs carried none of it.
	for _, d := range all3 {
		if d != dev && after[vips[d]] > 64<<10 {
			t.Errorf("%s's VPN carried %d octets of a flow given to %s's", d, after[vips[d]], dev)
		}
	}
}

// onIfaceNot is the interface of the VPN with inner address vip, once it
// is no longer dev (it moved).
func onIfaceNot(t *testing.T, d *demo.Daemon, vip, dev string) string {
	t.Helper()
	var on string
	if !demo.WaitFor(30*time.Second, func() bool {
		for k, s := range vpns(t, d) {
			if len(s.VirtualIPs) > 0 && s.VirtualIPs[0] == vip && demo.IfaceOf(s) != dev {
				on = k
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the VPN with %s never left %s:\n%s", vip, dev, d.Table(context.Background()))
	}
	return on
}

// A flow is re-pinned only when its VPN fails. Twenty UDP flows (the
// application's connected sockets, from the default source) are spread;
// wlan0 is cut with on_down delete, so the VPN some of them were given
// is deleted: those flows go on, answered, through another VPN (the
// daemon forgets their translations and the rules give them one of the
// VPNs left), while the flows on eth0's VPN keep theirs. The server
// echoes the source address it saw.
func TestSpreadFlowRepinnedWhenItsVPNFails(t *testing.T) {
	top, ue, _ := lab(t, demo.Options{Spread: spreadWeights, OnDown: "delete"})
	v := waitVPNs(t, ue, all3, 20*time.Second)
	vips := map[string]string{}
	for _, dev := range all3 {
		vips[dev] = v[dev].VirtualIPs[0]
	}
	echo := startUDPEcho(t, top)
	var flows []net.Conn
	for range 20 {
		c, err := echo.dial(top)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		flows = append(flows, c)
	}
	// seen is the source address the server saw for each flow ("" no
	// answer).
	seen := func() []string {
		out := make([]string, len(flows))
		var wg sync.WaitGroup
		for i, c := range flows {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte("which source?")); err != nil {
					return
				}
				buf := make([]byte, 64)
				if n, err := c.Read(buf); err == nil {
					out[i] = string(buf[:n])
				}
			}()
		}
		wg.Wait()
		return out
	}
	var first []string
	spread := func() bool {
		first = seen()
		n := map[string]int{}
		for _, s := range first {
			n[s]++
		}
		return n[""] == 0 && n[vips["eth0"]] > 0 && n[vips["wlan0"]] > 0
	}
	if !demo.WaitFor(30*time.Second, spread) {
		t.Fatalf("the flows were not spread over eth0's (%s) and wlan0's (%s) VPNs, all answered: sources seen %v", vips["eth0"], vips["wlan0"], first)
	}
	if err := top.SetLink("wlan0", false); err != nil {
		t.Fatal(err)
	}
	var after []string
	if !demo.WaitFor(90*time.Second, func() bool {
		after = seen()
		for i, s := range after {
			if s == "" || s == vips["wlan0"] || s == vips["wwan0"] || first[i] == vips["eth0"] && s != vips["eth0"] {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("after wlan0's VPN failed: sources seen %v (before: %v); want every flow answered, those on wlan0's VPN (%s) moved to eth0's (%s), the others kept", after, first, vips["wlan0"], vips["eth0"])
	}
	moved := 0
	for i := range first {
		if first[i] == vips["wlan0"] {
			moved++
		}
	}
	t.Logf("before the cut, sources seen %v; after wlan0's VPN was deleted, %v: %d flows re-pinned to eth0's VPN, %d kept", first, after, moved, len(first)-moved)
	if !strings.Contains(ue.Log(), "spread: a VPN failed; its flows are given another") {
		t.Error("the daemon did not log forgetting the failed VPN's flows")
	}
}

// udpEcho answers each datagram with the source address it came from.
type udpEcho struct{ addr netip.AddrPort }

func startUDPEcho(t *testing.T, top *demo.Topology) *udpEcho {
	t.Helper()
	e := &udpEcho{addr: netip.AddrPortFrom(demo.Server, 7300)}
	var pc *net.UDPConn
	if err := demo.InNS(top.Srv, func() error {
		var err error
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(e.addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort([]byte(from.Addr().String()), from)
		}
	}()
	return e
}

// dial opens a connected UDP socket in the end user's namespace, from
// the address the routes give.
func (e *udpEcho) dial(top *demo.Topology) (net.Conn, error) {
	var c net.Conn
	err := demo.InNS(top.UE, func() error {
		var err error
		c, err = net.Dial("udp", e.addr.String())
		return err
	})
	return c, err
}
