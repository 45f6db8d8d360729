//go:build linux

package bench

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

// The cluster suite's handshake rate: new IKE SAs per second
// (IKE_SA_INIT and IKE_AUTH with PSK and one Child SA, RFC 7296 §1.2)
// that the three-node cluster sustains with the load spread over 1, 2
// and 3 of its nodes. The load generator (loadgen.go, in the end user's
// namespace) sends handshake k to node k mod n; every SA is one record
// written to etcd (docs/cluster.md), so each run also counts etcd writes
// per SA. Each spread runs on a fresh lab (etcd empty, no SA left from
// the run before: every node lists every record at each step, so
// leftovers would slow the next run). The figures are ratios against
// the one-node run of the same invocation; all processes share this
// machine's cores, which bounds what more nodes can add (BENCHMARKS.md).

// ClusterRate is the handshake rate with the load on Nodes nodes.
type ClusterRate struct {
	Nodes   int     `json:"nodes"`
	OK      int     `json:"ok"`
	Failed  int     `json:"failed"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"` // handshakes/s
	// Rounds is how many runs there were of this spread: the figures
	// are the median one's of those without a retransmission (Stalled
	// is how many had one), and MinRate, MaxRate their range.
	Rounds           int     `json:"rounds"`
	Stalled          int     `json:"stalled_rounds"`
	MinRate, MaxRate float64 `json:"-"`
	// Ratio is Rate over the one-node (median) run's.
	Ratio float64 `json:"ratio_to_one_node"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	// SAs is how many IKE SAs the nodes held at the end (warm-up
	// included); WritesPerSA the etcd writes over the run per SA.
	SAs         int     `json:"sas"`
	WritesPerSA float64 `json:"etcd_writes_per_sa"`
	// CPU milliseconds per handshake: the three nodes together, etcd
	// (all three members, one process), the load generator.
	NodesCPUms   float64 `json:"nodes_cpu_ms"`
	EtcdCPUms    float64 `json:"etcd_cpu_ms"`
	LoadgenCPUms float64 `json:"loadgen_cpu_ms"`
	// Busy is the CPU time of all of them over the wall time (cores).
	Busy float64 `json:"cores_busy"`
	// IdleBusy is the nodes' and etcd's CPU time over wall time after
	// the run, with no handshakes but the SAs' records in etcd: what
	// every node listing every record at each step costs (docs/
	// cluster.md: watches are not built yet).
	IdleBusy    float64 `json:"idle_cores_busy"`
	Retransmits uint64  `json:"retransmits"`
	// Cookies is how many COOKIE round trips the nodes asked for (RFC
	// 7296 §2.6): with more than 10 half-open SAs on a node (its default
	// threshold) every request needs one, and over 5 half-open from one
	// source (RFC 8019 §4.2) the node drops it. The window keeps below
	// both (default 8, as the handshake suite's), or the spreads would
	// not be doing the same work.
	Cookies uint64 `json:"cookies"`
	// Fences is how many times a node fenced itself during the timed
	// handshakes (it should not: etcd kept its quorum).
	Fences int `json:"fences"`
}

// clusterRates measures the handshake rate with the load on 1, 2 and 3
// nodes, cfg.Rounds times in turn (1, 2, 3, 1, 2, 3, ...: a change in
// what else the machine runs hits every spread alike), and keeps for
// each spread the round with the median rate among the rounds where no
// message was retransmitted, if there are any. A run ends with its last
// handshake, so one lost message makes it last at least the load
// generator's retransmission timeout (2 s: 1000 handshakes then show as
// about 500/s whatever the rate was): such a round measures the timer.
func clusterRates(e *suiteEnv, cfg ClusterConfig) ([]ClusterRate, error) {
	runs := make([][]ClusterRate, 3)
	for round := range max(cfg.Rounds, 1) {
		for n := 1; n <= 3; n++ {
			e.say("cluster: handshake rate, round %d, load on %d node(s): %d handshakes, %d in flight from %d addresses", round+1, n, cfg.Handshakes, cfg.Window, cfg.Initiators)
			r, err := clusterRate(e, cfg, n, filepath.Join(e.dir, fmt.Sprintf("rate-%d-%d", round+1, n)))
			if err != nil {
				return nil, e.fail(fmt.Sprintf("handshake rate on %d node(s)", n), err)
			}
			e.say("  %.0f handshakes/s, %.2f etcd writes per SA, nodes %.2f ms CPU per handshake, etcd %.2f ms, %d fences",
				r.Rate, r.WritesPerSA, r.NodesCPUms, r.EtcdCPUms, r.Fences)
			runs[n-1] = append(runs[n-1], *r)
		}
	}
	var out []ClusterRate
	for _, rs := range runs {
		clean := slices.DeleteFunc(slices.Clone(rs), func(r ClusterRate) bool { return r.Retransmits > 0 })
		if len(clean) == 0 {
			clean = rs
		}
		slices.SortFunc(clean, func(a, b ClusterRate) int { return cmp.Compare(a.Rate, b.Rate) })
		m := clean[len(clean)/2]
		m.Rounds, m.Stalled = len(rs), len(rs)-len(clean)
		if len(clean) == len(rs) {
			m.Stalled = 0
			for _, r := range rs {
				if r.Retransmits > 0 {
					m.Stalled++
				}
			}
		}
		m.MinRate, m.MaxRate = clean[0].Rate, clean[len(clean)-1].Rate
		out = append(out, m)
	}
	for i := range out {
		if out[0].Rate > 0 {
			out[i].Ratio = out[i].Rate / out[0].Rate
		}
	}
	return out, nil
}

// clusterRate is one spread, on a lab of its own.
// dir must be new: an etcd data directory left there would hold another
// cluster's members.
func clusterRate(e *suiteEnv, cfg ClusterConfig, spread int, dir string) (*ClusterRate, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c, err := demo.BuildCluster(e.ctx, "mfkbr", dir, e.exe)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// Warn, as in production: a line per SA would cost the nodes more
	// than the handshake itself.
	c.NodeLog = "warn"
	for i, ns := range c.Nodes {
		d, err := c.StartDaemon(fmt.Sprintf("gw%d", i+1), ns, c.ClusterNodeConfig(i))
		if err != nil {
			return nil, err
		}
		c.GWs = append(c.GWs, d)
	}
	for i := range c.GWs {
		if !demo.WaitFor(20*time.Second, func() bool {
			st, err := c.Status(i)
			return err == nil && st.Joined && !st.Fenced
		}) {
			return nil, fmt.Errorf("node %d did not join the cluster:\n%s", i+1, lastLines(c.GWs[i].Log(), 10))
		}
	}
	// The load generator's source addresses, next to the end user's.
	addrs := []netip.Addr{netip.MustParseAddr("10.91.1.2")}
	for len(addrs) < cfg.Initiators {
		a := addrs[len(addrs)-1].Next()
		if err := c.IP(c.UE, "addr", "add", a.String()+"/24", "dev", "eth0"); err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	conf := filepath.Join(dir, "loadgen.yaml")
	if err := os.WriteFile(conf, []byte(clusterLoadConf(c)), 0o600); err != nil {
		return nil, err
	}
	before, err := settledRevision(c, 0)
	if err != nil {
		return nil, err
	}
	limit := time.Duration(cfg.Handshakes+cfg.Warmup)*50*time.Millisecond + 60*time.Second
	lp, err := startLoadTo(c.Lab, e.exe, c.UE, conf, addrs, c.Addrs[:spread], cfg.Handshakes, cfg.Window, cfg.Warmup, false, limit, 0)
	if err != nil {
		return nil, err
	}
	fences := func() (n int) {
		for _, g := range c.GWs {
			n += strings.Count(g.Log(), "cluster: fenced")
		}
		return n
	}
	pids := []int{c.GWs[0].Pid(), c.GWs[1].Pid(), c.GWs[2].Pid(), c.Etcd.Pid()}
	// The warm-up first (measure waits for it), then the fences of the
	// timed handshakes only: a fresh etcd on a busy machine may be slow
	// enough at the start to fence a node that has just joined.
	var fenced0 int
	res, cpu, err := lp.measureAfterWarmup(e.ctx, limit, func() { fenced0 = fences() }, pids...)
	if err != nil {
		return nil, err
	}
	fencedTimed := fences() - fenced0
	if res.OK == 0 {
		return nil, fmt.Errorf("no handshake succeeded (%d failed)", res.Failed)
	}
	after, err := settledRevision(c, 0)
	if err != nil {
		return nil, err
	}
	idle, err := startCPU(false, pids...)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	time.Sleep(3 * time.Second)
	used, err := idle.since()
	if err != nil {
		return nil, err
	}
	idleBusy := (used[0] + used[1] + used[2] + used[3]) / time.Since(t0).Seconds()
	r := &ClusterRate{Nodes: spread, OK: res.OK, Failed: res.Failed, Seconds: res.Seconds, Rate: res.Rate,
		P50ms: res.P50ms, P99ms: res.P99ms, Retransmits: res.Retransmits, Cookies: res.Cookies}
	for i, g := range c.GWs {
		l, err := g.SAs()
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		r.SAs += len(l)
	}
	r.Fences, r.IdleBusy = fencedTimed, idleBusy
	if r.SAs > 0 {
		r.WritesPerSA = float64(after-before) / float64(r.SAs)
	}
	per := func(s float64) float64 { return s / float64(res.OK) * 1e3 }
	r.NodesCPUms = per(cpu[0] + cpu[1] + cpu[2])
	r.EtcdCPUms = per(cpu[3])
	r.LoadgenCPUms = per(res.CPUSeconds)
	if res.Seconds > 0 {
		r.Busy = (cpu[0] + cpu[1] + cpu[2] + cpu[3] + res.CPUSeconds) / res.Seconds
	}
	return r, nil
}

// clusterLoadConf is the load generator's side of the lab's connection:
// the end user's identity and key, no virtual IP, no MOBIKE (a plain
// handshake), no INITIAL_CONTACT (unique: no), which would make a node
// drop the other SAs of the same identity, and no REDIRECT_SUPPORTED
// (RFC 5685 §3): the nodes would otherwise send new clients on to the
// least loaded node, and the load would not stay on the nodes the run
// puts it on.
func clusterLoadConf(c *demo.Cluster) string {
	return fmt.Sprintf(`log: {level: warn}
retransmit: {timeout: 2s, base: 1.8, tries: 3}
connections:
  %s:
    remote_addrs: [%s]
    unique: no
    mobike: no
    redirect: {follow: no}
    local: {auth: psk, id: alice@cluster.example}
    remote: {auth: psk, id: gw.cluster.example}
    psk: %q
    proposals: %s
    children:
      net: {remote_ts: [%s/24], esp_proposals: %s}
`, loadConn, c.Addrs[0], c.PSK(), HandshakeIKEProposal, netip.PrefixFrom(demo.ClusterProtected, 24).Masked().Addr(), HandshakeESPProposal)
}
