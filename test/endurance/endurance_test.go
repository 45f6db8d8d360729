package endurance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
)

// The run's phases: the daemons rekey on their own during the warm-up,
// then the disturbances come, then a quiet period in which everything
// must have settled (the resources' final figures are taken there).
const (
	warmUp = 10 * time.Second
	quiet  = 10 * time.Second
	// minSoak leaves room for a few disturbances between the two.
	minSoak = 30 * time.Second
)

// baseline is the window of the resources' reference figures: the
// warm-up's second half in a short run; in a long one the fifth of the
// run that ends at a fifth, after the garbage collector's first cycles
// (tens of seconds apart) have settled the heap.
func baseline(soak time.Duration) (from, to time.Duration) {
	to = max(warmUp, soak/5)
	return to - max(warmUp/2, soak/20), to
}

// Short lifetimes on both sides (strongSwan's option names): the IKE SA
// is rekeyed every 4 to 6 s and each Child SA every 1 to 1.5 s, by
// whichever side comes first, so both sides initiate and sometimes
// collide (RFC 7296 §2.8.1). over_time is longer than the 10% default so
// that one retransmission during a flap does not expire the SA; DPD
// (RFC 7296 §2.4) runs whenever an SA is idle for a second (end user) or
// two (gateway).
var (
	ikeTimes   = []string{"rekey_time: 6s", "rand_time: 2s", "over_time: 5s"}
	childTimes = []string{"rekey_time: 1500ms", "rand_time: 500ms", "life_time: 4s"}
)

// The policy: per-interface over the lab's three interfaces, a VPN that
// loses its interface moves to the best remaining one and moves back.
var ifaces = []string{"eth0", "wlan0", "wwan0"}

// Bounds of the invariants (see declare).
const (
	// settle is how long the per-interface count, the inner addresses
	// and the pool may differ from the policy after a disturbance: a
	// move takes one round trip, a clone two, a lost message one
	// retransmission (1 s on the end user).
	settle = 10 * time.Second
	// leftoverGrace is how long a route, rule or TUN address may outlive
	// its SA (the Delete exchange and the data plane's update).
	leftoverGrace = 5 * time.Second
	// dupGrace is how long two SAs may carry one inner address (an IKE
	// rekey hands the Child SAs over in one step; a collision takes one
	// more exchange).
	dupGrace = 3 * time.Second
	// maxSilence is the longest a VPN may carry no traffic: a move off a
	// failed link plus one retransmission.
	maxSilence = 5 * time.Second
	// disturbedFor extends each disturbance's window: a probe sent in
	// one may be lost. Outside them none may: a rekey, IKE or Child, is
	// make-before-break (RFC 7296 §2.8), DPD sends nothing through the
	// tunnel, and a reload changes nothing.
	disturbedFor = 3 * time.Second
)

// Resource bounds, comparing the medians of the baseline window and of
// the quiet period (the growth per minute is printed too): goroutines and file descriptors may not grow
// by more than a few (a control connection in flight), the live heap
// (after the last collection) by half plus 2 MiB. The resident size is
// reported, not judged: the runtime keeps the pages of its highest heap
// (twice the live heap) until the scavenger returns them.
func goroutineBound(base float64) float64 { return base + max(10, base/4) }
func fdBound(base float64) float64        { return base + 8 }
func heapBound(base float64) float64      { return base*1.5 + 2<<20 }

// In a run of slopeRun or more the live heap must also grow by no more
// than maxHeapSlope a minute between the two windows (it is smooth after
// the first collections: a leak of 1 kB per Child SA rekey at these
// lifetimes is 0.3 MiB a minute, which the ratio above lets through for
// half an hour).
const (
	slopeRun     = 5 * time.Minute
	maxHeapSlope = 0.1 * (1 << 20)
)

type run struct {
	t      *testing.T
	top    *demo.Topology
	ue, gw *side
	t0     time.Time
	soak   time.Duration
	inv    invariants

	vips   addrSet // the end user's inner addresses once set up
	probes []*prober
	rules  map[string]int // policy routing rules per side at the start

	mu      sync.Mutex
	down    string // the interface a flap has taken down
	windows [][2]time.Time
	actions map[string]int
	history []sampleFigures
	// lastMetrics are both daemons' last metrics pages.
	lastMetrics map[string]map[string]float64

	events   map[string]map[string]int // side -> event kind -> count
	eventsMu sync.Mutex
}

// sampleFigures are one second's resource figures of both daemons.
type sampleFigures struct {
	at  time.Duration
	res map[string]map[string]float64 // side -> metric -> value
}

func TestEndurance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, TUN devices and real mifike daemons (CI runs as root)")
	}
	if testing.Short() {
		t.Skipf("-short: the endurance test runs for -endurance (%v)", *soak)
	}
	if *soak < minSoak {
		t.Fatalf("-endurance=%v: give at least %v (%v warm-up and %v quiet period included)", *soak, minSoak, warmUp, quiet)
	}
	if d, ok := t.Deadline(); ok && time.Until(d) < *soak+time.Minute {
		t.Fatalf("-endurance=%v does not fit in go test's -timeout (%v left): add -timeout=%v", *soak, time.Until(d).Round(time.Second), *soak+5*time.Minute)
	}
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("endurance run of %v, seed %d (replay: go test ./test/endurance -v -endurance=%v -endurance.seed=%d)", *soak, seed, *soak, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6d666b65))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	top, err := demo.Build(ctx, "mfen", t.TempDir(), mifikeBin)
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()
	opts := demo.Options{Metrics: metricsAddr,
		UE: demo.Settings{Conn: append(slices.Clone(ikeTimes), "dpd_delay: 1s"), Child: childTimes},
		GW: demo.Settings{Conn: append(slices.Clone(ikeTimes), "dpd_delay: 2s"), Child: childTimes},
	}
	ued, gwd, err := top.StartBoth(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, top: top, soak: *soak, actions: map[string]int{}, events: map[string]map[string]int{}, rules: map[string]int{}}
	defer func() {
		if t.Failed() {
			t.Logf("end user log (tail):\n%s", tail(ued.Log(), 40))
			t.Logf("gateway log (tail):\n%s", tail(gwd.Log(), 20))
			keepLogs(t, seed, ued, gwd)
		}
	}()
	if r.ue, err = newSide("ue", ued, top.UE); err != nil {
		t.Fatal(err)
	}
	if r.gw, err = newSide("gw", gwd, top.GW); err != nil {
		t.Fatal(err)
	}
	defer r.ue.nl.Close()
	defer r.gw.nl.Close()

	if err := r.setUp(); err != nil {
		t.Fatal(err)
	}
	echo, err := startEcho(top)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.close()
	for _, v := range r.vips.sorted() {
		p, err := startProber(top, v)
		if err != nil {
			t.Fatal(err)
		}
		defer p.close()
		r.probes = append(r.probes, p)
	}
	for _, s := range []*side{r.ue, r.gw} {
		stop := r.watchEvents(s)
		defer stop()
	}
	r.declare()

	r.t0 = time.Now()
	t.Logf("times below count from %s UTC, as in the daemons' logs", r.t0.UTC().Format("15:04:05.000"))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { r.disturb(rng, done) })
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(r.t0) < r.soak {
		<-tick.C
		if err := r.sample(); err != nil {
			close(done)
			wg.Wait()
			r.report()
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	r.finish()
	r.report()
}

// setUp waits for the policy's VPNs and notes their inner addresses and
// the data plane's rules.
func (r *run) setUp() error {
	var got map[string]control.SA
	start := time.Now()
	if !demo.WaitFor(30*time.Second, func() bool {
		sas, err := r.ue.d.SAs()
		if err != nil {
			return false
		}
		got = map[string]control.SA{}
		for _, s := range vpns(sas) {
			got[demo.IfaceOf(s)] = s
		}
		return len(got) == len(ifaces) && len(vpns(sas)) == len(ifaces)
	}) {
		return fmt.Errorf("the end user did not get one VPN on each of %v within 30s:\n%s", ifaces, r.ue.d.Table(context.Background()))
	}
	r.vips = addrSet{}
	for _, dev := range ifaces {
		s := got[dev]
		if len(s.VirtualIPs) != 1 {
			return fmt.Errorf("the %s VPN (IKE SA %d) has inner addresses %v, want one", dev, s.ID, s.VirtualIPs)
		}
		r.vips[netip.MustParseAddr(s.VirtualIPs[0])] = true
	}
	if len(r.vips) != len(ifaces) {
		return fmt.Errorf("the VPNs share inner addresses: %v", r.vips)
	}
	for _, s := range []*side{r.ue, r.gw} {
		r.rules[s.name] = s.snapshot().rules
	}
	r.t.Logf("set up in %v: VPNs on %v with inner addresses %v; data plane rules: end user %d, gateway %d",
		time.Since(start).Round(time.Millisecond), ifaces, r.vips, r.rules["ue"], r.rules["gw"])
	return nil
}

// Names of the invariants.
const (
	invPerIface   = "ue: established IKE SAs per interface = policy"
	invUETotal    = "ue: IKE SAs listed (any state)"
	invGWTotal    = "gw: IKE SAs listed (any state)"
	invPairs      = "both: same established IKE SAs (SPIs)"
	invUEChildren = "ue: one Child SA per VPN"
	invGWChildren = "gw: one Child SA per VPN"
	invUEDup      = "ue: no inner address on two VPNs"
	invGWDup      = "gw: no inner address on two VPNs"
	invVIPs       = "ue: inner addresses constant"
	invLeases     = "gw: pool leases = end user's inner addresses"
	invTUN        = "ue: TUN addresses = inner addresses of SAs"
	invUERoutes   = "ue: routes = live SAs' selectors"
	invGWRoutes   = "gw: routes = live SAs' inner addresses"
	invRules      = "both: policy routing rules unchanged"
	invXFRM       = "both: no XFRM state or policy"
	invSilence    = "traffic: longest silence of a VPN"
	invCalmLoss   = "traffic: loss outside disturbances"
	invGoroutines = "resources: goroutines flat"
	invFDs        = "resources: open fds flat"
	invHeap       = "resources: live heap flat"
	invRSS        = "resources: resident size flat"
)

func (r *run) declare() {
	n := len(ifaces)
	r.inv.add(invPerIface, fmt.Sprintf("1 per up interface (a down one's on the best other); off < %v", settle), settle)
	r.inv.add(invUETotal, fmt.Sprintf("<= %d (2 x (%d VPNs + 1 manual clone))", 2*(n+1), n), 0)
	r.inv.add(invGWTotal, fmt.Sprintf("<= %d (2 x (%d VPNs + 1 manual clone))", 2*(n+1), n), 0)
	r.inv.add(invPairs, fmt.Sprintf("differ < %v", settle), settle)
	r.inv.add(invUEChildren, fmt.Sprintf("1 installed; off < %v", dupGrace), dupGrace)
	r.inv.add(invGWChildren, fmt.Sprintf("1 installed; off < %v", dupGrace), dupGrace)
	r.inv.add(invUEDup, fmt.Sprintf("0; off < %v", dupGrace), dupGrace)
	r.inv.add(invGWDup, fmt.Sprintf("0; off < %v", dupGrace), dupGrace)
	r.inv.add(invVIPs, fmt.Sprintf("the %d set up first; off < %v", n, settle), settle)
	r.inv.add(invLeases, fmt.Sprintf("equal; off < %v", settle), settle)
	r.inv.add(invTUN, fmt.Sprintf("none left, none missing; off < %v", leftoverGrace), leftoverGrace)
	r.inv.add(invUERoutes, fmt.Sprintf("none left, none missing; off < %v", leftoverGrace), leftoverGrace)
	r.inv.add(invGWRoutes, fmt.Sprintf("none left, none missing; off < %v", leftoverGrace), leftoverGrace)
	r.inv.add(invRules, "as at the start, always", 0)
	r.inv.add(invXFRM, "0, always (userspace data plane)", 0)
	r.inv.add(invSilence, fmt.Sprintf("<= %v", maxSilence), 0)
	r.inv.add(invCalmLoss, fmt.Sprintf("0 probes (outside actions + %v)", disturbedFor), 0)
	r.inv.add(invGoroutines, "end <= base + max(10, 25%)", 0)
	r.inv.add(invFDs, "end <= base + 8", 0)
	r.inv.add(invHeap, fmt.Sprintf("end <= 1.5 x base + 2 MiB (heap live after GC); runs >= %v: <= %+.1f MiB/min", slopeRun, maxHeapSlope/(1<<20)), 0)
	r.inv.add(invRSS, "reported only", 0)
	r.inv.get(invRSS).reportOnly = true
}

// expected is how many established IKE SAs each interface should hold
// now: its own VPN when it is up, and a down interface's VPN on the most
// preferred up one.
func (r *run) expected() map[string]int {
	r.mu.Lock()
	down := r.down
	r.mu.Unlock()
	want := map[string]int{}
	for _, dev := range ifaces {
		if dev != down {
			want[dev]++
			continue
		}
		for _, other := range ifaces {
			if other != down {
				want[other]++
				break
			}
		}
	}
	return want
}

// sample takes one second's snapshots and checks the invariants. Its
// error ends the run: a daemon died or cannot be asked.
func (r *run) sample() error {
	at := time.Since(r.t0)
	ue, gw := r.ue.snapshot(), r.gw.snapshot()
	for _, s := range []*side{r.ue, r.gw} {
		select {
		case <-s.d.Exited():
			return fmt.Errorf("at %s the %s daemon exited: %v", secs(at), s.name, s.d.ExitError())
		default:
		}
	}
	if len(ue.errs)+len(gw.errs) > 0 {
		return fmt.Errorf("at %s: %s", secs(at), strings.Join(append(ue.errs, gw.errs...), "; "))
	}
	f := sampleFigures{at: at, res: map[string]map[string]float64{}}
	for name, m := range map[string]map[string]float64{"ue": ue.metrics, "gw": gw.metrics} {
		f.res[name] = map[string]float64{}
		for _, k := range []string{mGoroutines, mFDs, mLiveHeap, mRSS} {
			if v, ok := m[k]; ok {
				f.res[name][k] = v
			}
		}
	}
	r.history = append(r.history, f)
	r.lastMetrics = map[string]map[string]float64{"ue": ue.metrics, "gw": gw.metrics}

	// IKE SAs per interface (established, with or without Child SAs:
	// an extra IKE SA costs the gateway state whether or not it carries
	// traffic).
	want, got := r.expected(), map[string]int{}
	for _, s := range established(ue.sas) {
		got[demo.IfaceOf(s)]++
	}
	off, detail := 0, []string{}
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		off += abs(got[k] - want[k])
		detail = append(detail, fmt.Sprintf("%s %d/%d", k, got[k], want[k]))
	}
	r.inv.get(invPerIface).observe(at, float64(off), off == 0, fmt.Sprintf("off by %d: %s (have/want); %s", off, strings.Join(detail, ", "), states(ue.sas, true)))

	limit := 2 * (len(ifaces) + 1)
	r.inv.get(invUETotal).observe(at, float64(len(ue.sas)), len(ue.sas) <= limit, fmt.Sprintf("%d: %s", len(ue.sas), states(ue.sas, true)))
	r.inv.get(invGWTotal).observe(at, float64(len(gw.sas)), len(gw.sas) <= limit, fmt.Sprintf("%d: %s", len(gw.sas), states(gw.sas, false)))

	// Child SAs: a rekey (or a collision of two, RFC 7296 §2.8.1) ends
	// with one installed Child SA per configured child.
	for _, c := range []struct {
		inv string
		sas []control.SA
	}{{invUEChildren, ue.sas}, {invGWChildren, gw.sas}} {
		extra, what := 0, []string{}
		for _, s := range established(c.sas) {
			n := map[string][]string{}
			for _, ch := range s.Children {
				if ch.State == "INSTALLED" {
					n[ch.Name] = append(n[ch.Name], ch.InSPI)
				}
			}
			for name, spis := range n {
				if len(spis) > 1 {
					extra += len(spis) - 1
					what = append(what, fmt.Sprintf("IKE SA %d: %s %v", s.ID, name, spis))
				}
			}
		}
		r.inv.get(c.inv).observe(at, float64(extra), extra == 0, fmt.Sprintf("%d extra: %s", extra, strings.Join(what, "; ")))
	}

	ueSPIs, gwSPIs := spiSet(established(ue.sas)), spiSet(established(gw.sas))
	onlyUE, onlyGW := minus(ueSPIs, gwSPIs), minus(gwSPIs, ueSPIs)
	diff := len(onlyUE) + len(onlyGW)
	r.inv.get(invPairs).observe(at, float64(diff), diff == 0, fmt.Sprintf("%d differ: end user only %v, gateway only %v", diff, onlyUE, onlyGW))

	// Inner addresses.
	ueDup, ueVIPs := dups(vpns(ue.sas), func(s control.SA) []string { return s.VirtualIPs })
	r.inv.get(invUEDup).observe(at, float64(len(ueDup)), len(ueDup) == 0, fmt.Sprintf("%d shared: %v", len(ueDup), ueDup))
	gwDup, gwVIPs := dups(vpns(gw.sas), func(s control.SA) []string { return s.PeerVirtualIPs })
	r.inv.get(invGWDup).observe(at, float64(len(gwDup)), len(gwDup) == 0, fmt.Sprintf("%d shared: %v", len(gwDup), gwDup))
	extra, missing := ueVIPs.minus(r.vips), r.vips.minus(ueVIPs)
	n := len(extra) + len(missing)
	r.inv.get(invVIPs).observe(at, float64(n), n == 0, fmt.Sprintf("%d differ: new %v, gone %v (VPNs hold %v)", n, extra, missing, ueVIPs))
	leases := int(gw.metrics[mLeases])
	r.inv.get(invLeases).observe(at, float64(abs(leases-len(ueVIPs))), leases == len(ueVIPs),
		fmt.Sprintf("%d leased, end user's VPNs hold %d %v (gateway's VPNs: %v)", leases, len(ueVIPs), ueVIPs, gwVIPs))

	// Left behind: what the data plane holds beyond what the listed SAs
	// (any state: a rekeyed SA keeps its routes until deleted) can
	// need, and what the carrying SAs need but is missing.
	_, holdAny := dups(ue.sas, func(s control.SA) []string { return s.VirtualIPs })
	tun := addrSet{}
	for _, a := range ue.tunAddrs {
		tun[a] = true
	}
	left, lack := tun.minus(holdAny), ueVIPs.minus(tun)
	n = len(left) + len(lack)
	r.inv.get(invTUN).observe(at, float64(n), n == 0, fmt.Sprintf("left behind %v, missing %v", left, lack))

	rl, rm := routeCheck(ue.routes, ue.sas, func(s control.SA) []string {
		var out []string
		for _, c := range s.Children {
			out = append(out, c.RemoteTS...)
		}
		return out
	})
	n = len(rl) + len(rm)
	r.inv.get(invUERoutes).observe(at, float64(n), n == 0, fmt.Sprintf("left behind %v, missing %v (table: %s)", rl, rm, prefixStrings(ue.routes)))
	rl, rm = routeCheck(gw.routes, gw.sas, func(s control.SA) []string {
		var out []string
		for _, c := range s.Children {
			out = append(out, c.RemoteTS...)
		}
		return out
	})
	n = len(rl) + len(rm)
	r.inv.get(invGWRoutes).observe(at, float64(n), n == 0, fmt.Sprintf("left behind %v, missing %v (table: %s)", rl, rm, prefixStrings(gw.routes)))

	dr := abs(ue.rules-r.rules["ue"]) + abs(gw.rules-r.rules["gw"])
	r.inv.get(invRules).observe(at, float64(dr), dr == 0, fmt.Sprintf("end user %d (at start %d), gateway %d (at start %d)", ue.rules, r.rules["ue"], gw.rules, r.rules["gw"]))
	if ue.xfrmErr == nil && gw.xfrmErr == nil {
		x := ue.xfrm + gw.xfrm
		r.inv.get(invXFRM).observe(at, float64(x), x == 0, fmt.Sprintf("end user %d, gateway %d", ue.xfrm, gw.xfrm))
	}

	// Traffic.
	var worst time.Duration
	var who netip.Addr
	now := time.Now()
	for _, p := range r.probes {
		if s := p.silence(now); s > worst {
			worst, who = s, p.vip
		}
	}
	r.inv.get(invSilence).observe(at, worst.Seconds(), worst <= maxSilence, fmt.Sprintf("%.1fs from %v", worst.Seconds(), who))

	if at/time.Second%10 == 0 {
		r.t.Logf("[%6s] end user %d IKE SAs (%s), gateway %d; inner %v, leases %d; goroutines %v/%v, fds %v/%v, live heap %.1f/%.1f MiB",
			secs(at), len(ue.sas), strings.Join(detail, ", "), len(gw.sas), ueVIPs, leases,
			ue.metrics[mGoroutines], gw.metrics[mGoroutines], ue.metrics[mFDs], gw.metrics[mFDs],
			ue.metrics[mLiveHeap]/(1<<20), gw.metrics[mLiveHeap]/(1<<20))
	}
	return nil
}

// routeCheck compares the data plane's routes with the prefixes the
// listed SAs' Child SAs need (selectors for the end user, the peer's
// inner addresses for the gateway): routes no listed SA needs are left
// behind; routes an SA carrying traffic needs are missing.
func routeCheck(routes []netip.Prefix, sas []control.SA, need func(control.SA) []string) (left, lack []string) {
	have := map[string]bool{}
	for _, p := range routes {
		have[p.String()] = true
	}
	any, live := map[string]bool{}, map[string]bool{}
	for _, s := range sas {
		for _, sel := range need(s) {
			p := selectorPrefix(sel)
			any[p] = true
			if s.State == ike.StateEstablished && installed(s) {
				live[p] = true
			}
		}
	}
	for p := range have {
		if !any[p] {
			left = append(left, p)
		}
	}
	for p := range live {
		if !have[p] {
			lack = append(lack, p)
		}
	}
	sort.Strings(left)
	sort.Strings(lack)
	return left, lack
}

// selectorPrefix turns a selector as list-sas prints it (a prefix, an
// address, maybe with protocol and ports) into the route's prefix.
func selectorPrefix(s string) string {
	s, _, _ = strings.Cut(s, "[")
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()).String()
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked().String()
	}
	return s
}

// dups returns the addresses that more than one SA holds, and all held.
func dups(sas []control.SA, addrs func(control.SA) []string) (shared []string, all addrSet) {
	all = addrSet{}
	seen := map[netip.Addr]uint64{}
	for _, s := range sas {
		for _, a := range parseAddrs(addrs(s)) {
			all[a] = true
			if id, ok := seen[a]; ok && id != s.ID {
				shared = append(shared, fmt.Sprintf("%v on IKE SAs %d and %d", a, id, s.ID))
			}
			seen[a] = s.ID
		}
	}
	return shared, all
}

func spiSet(sas []control.SA) map[string]bool {
	out := map[string]bool{}
	for _, s := range sas {
		out[s.SPIi+"_"+s.SPIr] = true
	}
	return out
}

func minus(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// states summarizes SAs: "ESTABLISHED 3, REKEYED 1 [4@eth0 5@wlan0<1
// ...]" (id@interface, or @peer on the gateway, <parent, and whether it
// has no installed Child SA).
func states(sas []control.SA, ue bool) string {
	n := map[string]int{}
	var ids []string
	for _, s := range sas {
		n[s.State.String()]++
		where := s.Remote
		if ue {
			where = demo.IfaceOf(s)
		}
		tag := fmt.Sprintf("%d@%s", s.ID, where)
		if s.Parent != 0 {
			tag += fmt.Sprintf("<%d", s.Parent)
		}
		if !installed(s) {
			tag += "(no Child SA)"
		}
		ids = append(ids, tag)
	}
	var parts []string
	for _, k := range sortedKeys(n) {
		parts = append(parts, fmt.Sprintf("%s %d", k, n[k]))
	}
	return strings.Join(parts, ", ") + " [" + strings.Join(ids, " ") + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// keepLogs copies the daemons' configurations and logs out of the test's
// temporary directory, which the test removes.
func keepLogs(t *testing.T, seed int64, ds ...*demo.Daemon) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("mifike-endurance-%d-", seed))
	if err != nil {
		t.Log(err)
		return
	}
	for _, d := range ds {
		for _, f := range []string{"mifike.log", "mifike.yaml"} {
			if b, err := os.ReadFile(filepath.Join(d.Dir, f)); err == nil {
				os.WriteFile(filepath.Join(dir, d.Name+"-"+f), b, 0o600)
			}
		}
	}
	t.Logf("configurations and full logs kept in %s", dir)
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// watchEvents counts the daemon's events by kind until stop.
func (r *run) watchEvents(s *side) (stop func()) {
	c, err := control.Dial(s.d.Sock)
	if err != nil {
		r.t.Logf("no event stream from the %s daemon: %v", s.name, err)
		return func() {}
	}
	r.eventsMu.Lock()
	r.events[s.name] = map[string]int{}
	r.eventsMu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Events(func(ev control.Event) bool {
			r.eventsMu.Lock()
			if ev.Dropped > 0 {
				r.events[s.name]["(dropped)"] += int(ev.Dropped)
			} else {
				r.events[s.name][ev.Kind]++
			}
			r.eventsMu.Unlock()
			return true
		})
	}()
	return func() {
		c.Close()
		<-done
	}
}

// finish checks what is judged over the whole run: the loss budget and
// the resources.
func (r *run) finish() {
	end := time.Since(r.t0)
	cut := time.Now().Add(-probeWait) // later probes may still be in flight
	var sent, lost, calmSent, calmLost int
	var per []string
	var calmAt []string
	for _, p := range r.probes {
		s, l, cs, cl, at := p.tally(cut, r.disturbed)
		sent, lost, calmSent, calmLost = sent+s, lost+l, calmSent+cs, calmLost+cl
		per = append(per, fmt.Sprintf("%v %d/%d", p.vip, s-l, s))
		for _, t := range at {
			calmAt = append(calmAt, fmt.Sprintf("%v at %s", p.vip, secs(t.Sub(r.t0))))
		}
	}
	if len(calmAt) > 0 {
		r.t.Logf("traffic: lost outside disturbances: %s; the data planes said:\n%s", strings.Join(calmAt, ", "), r.dropLines())
	}
	pct := 0.0
	if calmSent > 0 {
		pct = 100 * float64(calmLost) / float64(calmSent)
	}
	what := fmt.Sprintf("%d of %d (%.2f%%); all: %d of %d lost", calmLost, calmSent, pct, lost, sent)
	if len(calmAt) > 0 {
		what += "; " + strings.Join(calmAt, ", ")
	}
	r.inv.get(invCalmLoss).observe(end, float64(calmLost), calmLost == 0, what)
	r.t.Logf("traffic: echoes answered per VPN: %s", strings.Join(per, ", "))

	from, to := baseline(r.soak)
	minutes := (r.soak - quiet/2 - (from+to)/2).Minutes()
	for _, c := range []struct {
		inv, metric string
		pick        func([]float64) float64
		bound       func(float64) float64
		unit        float64
		unitName    string
	}{
		{invGoroutines, mGoroutines, median, goroutineBound, 1, ""},
		{invFDs, mFDs, median, fdBound, 1, ""},
		{invHeap, mLiveHeap, median, heapBound, 1 << 20, " MiB"},
		{invRSS, mRSS, median, nil, 1 << 20, " MiB"},
	} {
		var worst float64
		var parts []string
		ok := true
		for _, s := range []string{"ue", "gw"} {
			base := c.pick(r.window(s, c.metric, from, to))
			last := c.pick(r.window(s, c.metric, r.soak-quiet, r.soak+time.Second))
			worst = max(worst, last-base)
			if c.bound == nil {
				parts = append(parts, fmt.Sprintf("%s %.1f -> %.1f%s (%+.2f/min)", s, base/c.unit, last/c.unit, c.unitName, (last-base)/c.unit/minutes))
				continue
			}
			b := c.bound(base)
			if last > b {
				ok = false
			}
			if c.inv == invHeap && r.soak >= slopeRun && (last-base)/minutes > maxHeapSlope {
				ok = false
			}
			parts = append(parts, fmt.Sprintf("%s %.1f -> %.1f%s (<= %.1f; %+.2f/min)", s, base/c.unit, last/c.unit, c.unitName, b/c.unit, (last-base)/c.unit/minutes))
		}
		r.inv.get(c.inv).observe(end, worst, ok, strings.Join(parts, ", "))
	}
}

// dropLines are the data planes' warnings about dropped packets, with
// the run's time of each.
func (r *run) dropLines() string {
	var out []string
	for _, s := range []*side{r.ue, r.gw} {
		for _, l := range strings.Split(s.d.Log(), "\n") {
			if !strings.Contains(l, `msg="dropping packets"`) {
				continue
			}
			at := ""
			if ts, _, ok := strings.Cut(strings.TrimPrefix(l, "time="), " "); ok {
				if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
					at = "[" + secs(t.Sub(r.t0)) + "] "
				}
			}
			out = append(out, fmt.Sprintf("  %s: %s%s", s.name, at, l))
		}
	}
	if len(out) == 0 {
		return "  (nothing)"
	}
	return strings.Join(out, "\n")
}

// window are a side's values of a metric sampled in [from, to).
func (r *run) window(side, metric string, from, to time.Duration) []float64 {
	var out []float64
	for _, h := range r.history {
		if h.at >= from && h.at < to {
			if v, ok := h.res[side][metric]; ok {
				out = append(out, v)
			}
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// disturbed says whether a probe sent at t falls in a disturbance.
func (r *run) disturbed(t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.windows {
		if !t.Before(w[0]) && !t.After(w[1].Add(disturbedFor)) {
			return true
		}
	}
	return false
}

var dpdRequest = regexp.MustCompile(`sending INFORMATIONAL request [0-9]+ \[ *\]`)

// report prints what happened and the table, and fails the test for
// every broken invariant.
func (r *run) report() {
	r.mu.Lock()
	var acts []string
	for _, k := range sortedKeys(r.actions) {
		acts = append(acts, fmt.Sprintf("%s %d", k, r.actions[k]))
	}
	r.mu.Unlock()
	r.eventsMu.Lock()
	var evs []string
	for _, s := range []string{"ue", "gw"} {
		var l []string
		for _, k := range sortedKeys(r.events[s]) {
			l = append(l, fmt.Sprintf("%s %d", k, r.events[s][k]))
		}
		evs = append(evs, fmt.Sprintf("%s: %s", s, strings.Join(l, ", ")))
	}
	r.eventsMu.Unlock()
	dpd := fmt.Sprintf("end user %d, gateway %d", len(dpdRequest.FindAllString(r.ue.d.Log(), -1)), len(dpdRequest.FindAllString(r.gw.d.Log(), -1)))
	r.t.Logf("ran %v; disturbances: %s", time.Since(r.t0).Round(time.Second), strings.Join(acts, ", "))
	r.t.Logf("events: %s", strings.Join(evs, "; "))
	r.t.Logf("liveness checks (DPD) sent: %s", dpd)
	var drops []string
	for _, side := range []string{"ue", "gw"} {
		var l []string
		for _, k := range sortedKeys(r.lastMetrics[side]) {
			if reason, ok := strings.CutPrefix(k, `mifike_dataplane_dropped_packets_total{reason="`); ok && r.lastMetrics[side][k] > 0 {
				l = append(l, fmt.Sprintf("%s %v", strings.TrimSuffix(reason, `"}`), r.lastMetrics[side][k]))
			}
		}
		if len(l) == 0 {
			l = []string{"none"}
		}
		drops = append(drops, side+": "+strings.Join(l, ", "))
	}
	r.t.Logf("packets the data planes dropped: %s", strings.Join(drops, "; "))
	r.t.Logf("invariants checked every second (worst values):\n%s", r.inv.table())
	for _, v := range r.inv.list {
		if v.broken {
			r.t.Errorf("invariant %q broken at %s: %s", v.name, secs(v.brokenAt), v.brokenWhy)
		}
	}
}
