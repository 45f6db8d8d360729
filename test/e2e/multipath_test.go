package e2e

import (
	"context"
	"maps"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
)

// Issue 20: one MPTCP connection (RFC 8684) spread over the per-interface
// VPNs (RFC 7791 clones, each with its own inner address), going on over
// the others when an interface is cut. The end user's daemon keeps an
// MPTCP endpoint per VPN inner address (mptcp: {enable: yes}); the lab's
// server downloads over MPTCP and the client checks every byte.

// mptcpRates shape the three access links differently (Mbit/s), so that
// no one link can carry a download alone and the scheduler must use all.
var mptcpRates = map[string]int{"eth0": 40, "wlan0": 20, "wwan0": 10}

// mptcpLab starts the lab with MPTCP endpoints, waits for a VPN and an
// endpoint on every interface, shapes the links and starts the server.
func mptcpLab(t *testing.T, o demo.Options) (*demo.Topology, *demo.Daemon, map[string]string) {
	t.Helper()
	o.MPTCP = true
	top, ue, _ := lab(t, o)
	v := waitVPNs(t, ue, all3, 20*time.Second)
	vips := map[string]string{} // interface → the inner address of its VPN
	for _, dev := range all3 {
		vips[dev] = v[dev].VirtualIPs[0]
	}
	for dev, rate := range mptcpRates {
		if err := top.LimitRate(dev, rate, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := top.StartMPTCPServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return top, ue, vips
}

// waitEndpoints waits until the end user's MPTCP endpoints are exactly
// one per inner address in want, backup as want says.
func waitEndpoints(t *testing.T, top *demo.Topology, want map[string]bool) {
	t.Helper()
	var got map[string]demo.MPTCPEndpoint
	ok := demo.WaitFor(10*time.Second, func() bool {
		var err error
		if got, err = top.MPTCPEndpoints(context.Background()); err != nil || len(got) != len(want) {
			return false
		}
		for a, backup := range want {
			if e, ok := got[a]; !ok || e.Backup != backup {
				return false
			}
		}
		return true
	})
	if !ok {
		out, _ := top.Run(context.Background(), top.UE, "ip", "mptcp", "endpoint", "show")
		t.Fatalf("MPTCP endpoints %v, want (address: backup) %v:\n%s", got, want, out)
	}
}

// espIn is the ESP octets each VPN's Child SAs received, by inner address
// (the VPN keeps it across moves).
func espIn(t *testing.T, d *demo.Daemon) map[string]uint64 {
	m := map[string]uint64{}
	for _, s := range sas(t, d) {
		if s.State != ike.StateEstablished || len(s.VirtualIPs) == 0 {
			continue
		}
		for _, c := range s.Children {
			m[s.VirtualIPs[0]] += c.BytesIn
		}
	}
	return m
}

func delta(after, before map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}

const mptcpSize = 16 << 20

// Every VPN carries part of one MPTCP download: a subflow per VPN, each
// through its own Child SA (the per-Child-SA counters of the end user,
// and the router's counters of each access link), and every byte arrives.
func TestMPTCPSubflowPerVPN(t *testing.T) {
	top, ue, vips := mptcpLab(t, demo.Options{})
	waitEndpoints(t, top, map[string]bool{vips["eth0"]: false, vips["wlan0"]: false, vips["wwan0"]: false})
	before, links0 := espIn(t, ue), linkBytes(t, top)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := top.Download(ctx, netipMust(vips["eth0"]), mptcpSize, false, nil)
	if !r.MPTCP || !r.Intact {
		mptcpDiag(t, top, ue)
		t.Fatalf("download: MPTCP %v, %d of %d octets, intact %v, err %v", r.MPTCP, r.Bytes, mptcpSize, r.Intact, r.Err)
	}
	got, links := delta(espIn(t, ue), before), delta(linkBytes(t, top), links0)
	t.Logf("%d MiB in %v (%.1f Mbit/s over links of %v Mbit/s); ESP octets in per VPN %v; per link %v",
		mptcpSize>>20, r.Elapsed.Round(time.Millisecond), r.Mbps(), mptcpRates, got, links)
	for _, dev := range all3 {
		// A subflow that only joined would carry a few hundred octets;
		// each link here carries a share of the 16 MiB.
		if got[vips[dev]] < 256<<10 || links[dev] < 256<<10 {
			t.Errorf("%s's VPN (%s) carried %d ESP octets, its link %d: every VPN must carry part of the download",
				dev, vips[dev], got[vips[dev]], links[dev])
		}
	}
	// The daemon's limits while it runs, and at its stop: its endpoints
	// gone and the limits as they were (the gateway's namespace, which
	// nobody changed, shows the kernel's defaults).
	limits := func(ns string) string {
		out, err := top.Run(context.Background(), ns, "ip", "mptcp", "limits", "show")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if l := limits(top.UE); !strings.Contains(l, "subflows 8") {
		t.Errorf("the end user's limits while the daemon runs: %q, want subflows 8", l)
	}
	ue.Stop(10 * time.Second)
	waitEndpoints(t, top, map[string]bool{})
	if l, want := limits(top.UE), limits(top.GW); l != want {
		t.Errorf("the end user's limits after the daemon stopped: %q, want the kernel's %q", l, want)
	}
}

// An interface cut in the middle of the download: the MPTCP connection
// goes on (no reset) and every byte arrives. With on_down move the cut
// VPN moves by MOBIKE with its inner address, its subflow with it; with
// on_down delete the VPN goes, the daemon deletes its endpoint and the
// kernel closes that subflow, and the others carry the rest. eth0 is cut:
// its VPN holds the first subflow, and the route's source address.
func TestMPTCPInterfaceCutMidTransfer(t *testing.T) {
	for _, onDown := range []string{"move", "delete"} {
		t.Run("on_down="+onDown, func(t *testing.T) {
			top, ue, vips := mptcpLab(t, demo.Options{OnDown: onDown})
			waitEndpoints(t, top, map[string]bool{vips["eth0"]: false, vips["wlan0"]: false, vips["wwan0"]: false})
			before := espIn(t, ue)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var got atomic.Int64
			done := make(chan demo.DownloadResult, 1)
			const size = 2 * mptcpSize
			go func() { done <- top.Download(ctx, netipMust(vips["eth0"]), size, false, got.Store) }()
			if !demo.WaitFor(time.Minute, func() bool { return got.Load() > size/4 }) {
				t.Fatalf("the download did not get a quarter of the way: %d octets", got.Load())
			}
			mid := delta(espIn(t, ue), before)
			if err := top.SetLink("eth0", false); err != nil {
				t.Fatal(err)
			}
			t.Logf("eth0 cut after %d of %d octets; ESP octets in per VPN so far %v", got.Load(), size, mid)
			r := <-done
			if !r.MPTCP || !r.Intact {
				mptcpDiag(t, top, ue)
				t.Fatalf("download across the cut: MPTCP %v, %d of %d octets, intact %v, err %v", r.MPTCP, r.Bytes, size, r.Intact, r.Err)
			}
			after := delta(espIn(t, ue), before)
			t.Logf("completed, intact, in %v; ESP octets in per VPN %v", r.Elapsed.Round(time.Millisecond), after)
			for _, dev := range []string{"wlan0", "wwan0"} {
				if after[vips[dev]] <= mid[vips[dev]] {
					t.Errorf("%s's VPN carried nothing after the cut", dev)
				}
			}
			if onDown == "delete" {
				// The cut VPN and its endpoint are gone; the others stay.
				waitEndpoints(t, top, map[string]bool{vips["wlan0"]: false, vips["wwan0"]: false})
				// Once its Delete is done (unanswered: eth0 is down) its
				// inner address leaves the TUN device, and with it the
				// kernel drops the protected prefix's route, whose source
				// address it was: the data plane must put the route back
				// for the VPNs left, or their traffic leaves in clear.
				if !demo.WaitFor(time.Minute, func() bool {
					out, err := top.Run(ctx, top.UE, "ip", "-o", "addr", "show", "dev", "mifike0")
					return err == nil && !strings.Contains(string(out), " "+vips["eth0"]+"/")
				}) {
					t.Fatalf("eth0's VPN's inner address %s stayed on the TUN device", vips["eth0"])
				}
				r := top.Download(ctx, netip.Addr{}, mptcpSize/4, false, nil)
				routes, _ := top.Run(ctx, top.UE, "ip", "route", "show", "table", "all", "10.93.0.0/24")
				if !r.Intact {
					t.Fatalf("a download after the VPN was deleted: %d octets, err %v; routes:\n%s", r.Bytes, r.Err, routes)
				}
				t.Logf("after the VPN's deletion, a new download is intact; route: %s", strings.TrimSpace(string(routes)))
			}
		})
	}
}

// A backup interface (interfaces.multipath: {wwan*: backup}, a metered
// link) carries none of the download while the active ones work, and
// carries it when they fail: the VPNs moved onto it become backup too
// (their endpoints follow them), and the connection goes on.
func TestMPTCPBackupInterface(t *testing.T) {
	top, ue, vips := mptcpLab(t, demo.Options{Multipath: "{wwan*: backup}"})
	waitEndpoints(t, top, map[string]bool{vips["eth0"]: false, vips["wlan0"]: false, vips["wwan0"]: true})
	// The daemon says so too, in stats (and the mifike_mptcp_endpoints
	// metric), as the kernel has them.
	c, err := control.Dial(ue.Sock)
	if err != nil {
		t.Fatal(err)
	}
	var st control.Stats
	err = c.Call("stats", nil, &st)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]string{}
	for _, e := range st.MPTCP {
		modes[e.Addr.String()] = e.Mode
	}
	if want := map[string]string{vips["eth0"]: "active", vips["wlan0"]: "active", vips["wwan0"]: "backup"}; !maps.Equal(modes, want) {
		t.Fatalf("stats lists MPTCP endpoints %v, want %v", modes, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	links0 := linkBytes(t, top)
	r := top.Download(ctx, netipMust(vips["eth0"]), mptcpSize, false, nil)
	if !r.MPTCP || !r.Intact {
		mptcpDiag(t, top, ue)
		t.Fatalf("download: MPTCP %v, %d of %d octets, intact %v, err %v", r.MPTCP, r.Bytes, mptcpSize, r.Intact, r.Err)
	}
	links := delta(linkBytes(t, top), links0)
	t.Logf("with wwan0 as backup: %.1f Mbit/s; octets per link %v", r.Mbps(), links)
	// The backup subflow's handshake and an ACK now and then (RFC 8684
	// §3.3.8: a backup path is not used for data while others work).
	if links["wwan0"] > 64<<10 || links["eth0"] < 1<<20 || links["wlan0"] < 1<<20 {
		t.Fatalf("octets per link %v: wwan0 (backup) must carry none of the %d MiB", links, mptcpSize>>20)
	}

	// The active interfaces fail in the middle of a second download.
	var got atomic.Int64
	done := make(chan demo.DownloadResult, 1)
	go func() { done <- top.Download(ctx, netipMust(vips["eth0"]), mptcpSize, false, got.Store) }()
	if !demo.WaitFor(time.Minute, func() bool { return got.Load() > mptcpSize/4 }) {
		t.Fatalf("the second download did not get a quarter of the way: %d octets", got.Load())
	}
	links0, cutAt := linkBytes(t, top), got.Load()
	for _, dev := range []string{"eth0", "wlan0"} {
		if err := top.SetLink(dev, false); err != nil {
			t.Fatal(err)
		}
	}
	var r2 demo.DownloadResult
	select {
	case r2 = <-done:
	case <-time.After(90 * time.Second): // 12 MiB at wwan0's 10 Mbit/s take 10 s
		mptcpDiag(t, top, ue)
		r2 = <-done
	}
	if !r2.MPTCP || !r2.Intact {
		mptcpDiag(t, top, ue)
		t.Fatalf("download across the failure of both active interfaces: %d of %d octets, intact %v, err %v", r2.Bytes, mptcpSize, r2.Intact, r2.Err)
	}
	links = delta(linkBytes(t, top), links0)
	t.Logf("eth0 and wlan0 cut after %d of %d octets: completed, intact; octets per link since %v", cutAt, mptcpSize, links)
	if links["wwan0"] < 1<<20 {
		t.Fatalf("wwan0 carried %d octets after the active interfaces failed", links["wwan0"])
	}
	// Every VPN is on wwan0 now, and so backup.
	waitEndpoints(t, top, map[string]bool{vips["eth0"]: true, vips["wlan0"]: true, vips["wwan0"]: true})
}

// mptcpDiag logs what the end user's kernel and daemon say of the MPTCP
// connections, endpoints and VPNs, for a failure's message.
func mptcpDiag(t *testing.T, top *demo.Topology, ue *demo.Daemon) {
	ctx := context.Background()
	ss, _ := top.Run(ctx, top.UE, "ss", "-tniM")
	eps, _ := top.Run(ctx, top.UE, "ip", "mptcp", "endpoint", "show")
	t.Logf("ss -tniM:\n%s\nendpoints:\n%s\n%s", ss, eps, ue.Table(ctx))
}

func linkBytes(t *testing.T, top *demo.Topology) map[string]uint64 {
	t.Helper()
	m, err := top.LinkBytes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
