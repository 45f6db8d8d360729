//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

// The multipath suite (issue 20, docs/multipath.md): one MPTCP download
// (RFC 8684) from the protected server to the end user, spread over the
// manager's three per-interface VPNs, on the demo lab with its three
// access links shaped to different rates (tbf, on both ends of each
// link) and delayed differently (the delay line in the router: tbf's
// latency is a queue bound, not a delay). Goodput is what the client
// received over the time from its request to the last octet, and every
// download is checked by its SHA-256. There is no strongSwan row:
// nothing else puts one connection over several IPsec VPNs.
//
// Cases, each figure compared with the links' nominal rates and with
// each link alone (plain TCP through that interface's VPN):
//   - MPTCP with every link active;
//   - the fastest link (eth0) cut in the middle (link down: its VPN
//     moves by MOBIKE, its subflow with it);
//   - wwan0 as backup (interfaces.multipath: {wwan*: backup}): the
//     octets it carried while the others worked;
//   - then eth0 and wlan0 cut in the middle: the backup carries the rest;
//   - flow spreading (interfaces.spread: {}, every VPN weighing 1) of
//     iperf3's parallel plain-TCP streams (not MPTCP), with the weights
//     from the measured paths (spread_measured, the default) and with
//     the configured weights alone: their sum against the links' and the
//     best link's, and each link's share.

// MultipathConfig configures Multipath.
type MultipathConfig struct {
	Exe string
	// Rates are the access links' rates in Mbit/s and RTTs their
	// round-trip times, for eth0, wlan0 and wwan0.
	Rates []int
	RTTs  []time.Duration
	// Size is the MPTCP download's size in octets; each single-link run
	// downloads the share of it its link's rate is of the sum, so every
	// run takes about as long.
	Size int64
	// Buffer is the largest the end user's TCP receive buffers and the
	// server's send buffers may grow (the third figure of
	// net.ipv4.tcp_rmem and tcp_wmem); 0 leaves Linux's defaults.
	Buffer int
	// Streams and Seconds are the spreading cases' parallel iperf3
	// streams and how long they run; SpreadOnly skips the MPTCP cases
	// (each link alone still runs: the spreading figures are compared
	// with it).
	Streams, Seconds int
	SpreadOnly       bool
	Progress         io.Writer
}

// MultipathRun is one download.
type MultipathRun struct {
	Case string `json:"case"` // single, mptcp, mptcp-cut, backup, backup-failover, spread-measured, spread-equal
	// Links are the links it may use (single: the one).
	Links   []string `json:"links"`
	Bytes   int64    `json:"bytes"`
	Seconds float64  `json:"seconds"`
	Mbps    float64  `json:"mbps"`
	// Intact: every octet arrived and the SHA-256 matched; MPTCP: the
	// connection was MPTCP end to end.
	Intact bool `json:"intact"`
	MPTCP  bool `json:"mptcp"`
	// LinkBytes are the octets the router sent over each access link
	// during the download (after the cut, for the cut cases).
	LinkBytes map[string]uint64 `json:"link_bytes"`
	// CutAt is the share of the download received when links were cut.
	CutAt float64 `json:"cut_at,omitempty"`
	// Streams: the spreading cases' parallel TCP streams; Weights the
	// spread table's buckets per link when they ran.
	Streams int            `json:"streams,omitempty"`
	Weights map[string]int `json:"weights,omitempty"`
	Err     string         `json:"error,omitempty"`
}

// MultipathResult is what Multipath measured.
type MultipathResult struct {
	Links  []MultipathLink `json:"links"`
	Size   int64           `json:"size"`
	Buffer int             `json:"buffer"`
	CPUs   int             `json:"cpus"`
	Runs   []MultipathRun  `json:"runs"`
	Ratios []Ratio         `json:"ratios"`
}

// MultipathLink is one shaped access link.
type MultipathLink struct {
	Iface string  `json:"iface"`
	Mbps  int     `json:"mbps"`
	RTTms float64 `json:"rtt_ms"`
}

func (*MultipathResult) Suite() string { return "multipath" }

var multipathIfaces = []string{"eth0", "wlan0", "wwan0"}

// Multipath runs the suite.
func Multipath(ctx context.Context, cfg MultipathConfig) (res *MultipathResult, err error) {
	if len(cfg.Rates) != len(multipathIfaces) || len(cfg.RTTs) != len(multipathIfaces) {
		return nil, fmt.Errorf("bench multipath: want %d rates and %d RTTs, for %s", len(multipathIfaces), len(multipathIfaces), strings.Join(multipathIfaces, ", "))
	}
	if cfg.Size <= 0 {
		return nil, fmt.Errorf("bench multipath: the download size must be positive")
	}
	if cfg.Streams <= 0 {
		cfg.Streams = 8
	}
	if cfg.Seconds <= 0 {
		cfg.Seconds = 10
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("bench: network namespaces need root; run it as root (e.g. with sudo)")
	}
	dir, err := os.MkdirTemp("", "mifike-bench-")
	if err != nil {
		return nil, err
	}
	e := &suiteEnv{ctx: ctx, dir: dir, exe: cfg.Exe, progress: cfg.Progress}
	defer func() {
		if os.Getenv("MIFIKE_BENCH_KEEP") != "" {
			e.say("configurations and logs are in %s", dir)
		} else if err == nil {
			os.RemoveAll(dir)
		}
	}()
	r := &MultipathResult{Size: cfg.Size, Buffer: cfg.Buffer, CPUs: cpus()}
	rate := map[string]int{}
	sum := 0
	for i, dev := range multipathIfaces {
		r.Links = append(r.Links, MultipathLink{Iface: dev, Mbps: cfg.Rates[i], RTTms: float64(cfg.RTTs[i]) / 1e6})
		rate[dev] = cfg.Rates[i]
		sum += cfg.Rates[i]
	}

	// Every link active: each alone, all at once, and eth0 cut.
	var active []mpCase
	for _, dev := range multipathIfaces {
		size := max(cfg.Size*int64(rate[dev])/int64(sum), 1<<20)
		active = append(active, mpCase{fmt.Sprintf("%s alone (%d Mbit/s), plain TCP through its VPN, %d MiB", dev, rate[dev], size>>20),
			"single", []string{dev}, dev, size, true, nil})
	}
	if !cfg.SpreadOnly {
		active = append(active,
			mpCase{fmt.Sprintf("MPTCP over the three VPNs, %d MiB", cfg.Size>>20), "mptcp", multipathIfaces, "eth0", cfg.Size, false, nil},
			mpCase{"MPTCP, eth0 cut after a third", "mptcp-cut", multipathIfaces, "eth0", cfg.Size, false, &cut{at: 1.0 / 3, devs: []string{"eth0"}}})
	}
	// wwan0 as backup: idle while the others work, then the only one.
	backup := []mpCase{
		{fmt.Sprintf("MPTCP with wwan0 as backup, %d MiB", cfg.Size>>20), "backup", multipathIfaces, "eth0", cfg.Size, false, nil},
		{"MPTCP with wwan0 as backup, eth0 and wlan0 cut after three quarters", "backup-failover", multipathIfaces, "eth0", cfg.Size, false, &cut{at: 0.75, devs: []string{"eth0", "wlan0"}}},
	}
	// Flow spreading: many plain-TCP streams, each put on one VPN
	// (spread: true runs ml.spread instead of the cases).
	labs := []struct {
		name   string
		o      demo.Options
		cases  []mpCase
		spread bool
	}{
		{"active", demo.Options{}, active, false},
		{"spread-measured", demo.Options{Spread: "{}", SpreadOpts: "spread_probe: 1s"}, nil, true},
		{"spread-equal", demo.Options{Spread: "{}", SpreadOpts: "spread_measured: no"}, nil, true},
	}
	if !cfg.SpreadOnly {
		labs = append(labs, struct {
			name   string
			o      demo.Options
			cases  []mpCase
			spread bool
		}{"backup", demo.Options{Multipath: "{wwan*: backup}"}, backup, false})
	}
	for _, lab := range labs {
		err = multipathLab(e, cfg, lab.name, lab.o, func(ml *mpLab) error {
			if lab.spread {
				run, err := ml.spread(lab.name, cfg)
				if err != nil {
					return err
				}
				r.Runs = append(r.Runs, run)
				return nil
			}
			for _, c := range lab.cases {
				e.say("multipath: %s", c.say)
				run, err := ml.download(c.name, c.links, ml.vips[c.src], c.size, c.plainTCP, c.cut)
				if err != nil {
					return err
				}
				r.Runs = append(r.Runs, run)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	r.Ratios = multipathRatios(r, rate)
	return r, nil
}

// mpCase is one download of the suite: what it says, its case name, the
// links it may use, the interface whose VPN's inner address is its
// source, its size, plain TCP or MPTCP, and the cut, if any.
type mpCase struct {
	say, name string
	links     []string
	src       string
	size      int64
	plainTCP  bool
	cut       *cut
}

// cut takes links down once the download has received the share at.
type cut struct {
	at   float64
	devs []string
}

// mpLab is the demo lab shaped for the suite, with both daemons up, a
// VPN on every interface and the MPTCP server.
type mpLab struct {
	*demo.Topology
	e    *suiteEnv
	ue   *demo.Daemon
	vips map[string]netip.Addr
}

// multipathLab builds the lab for one configuration, runs fn on it and
// removes it.
func multipathLab(e *suiteEnv, cfg MultipathConfig, name string, o demo.Options, fn func(*mpLab) error) error {
	t, err := demo.Build(e.ctx, "mfkp", filepath.Join(e.dir, name), e.exe)
	if err != nil {
		return e.failLab("building the lab", err)
	}
	defer t.Close()
	dl, err := newDelayLine(t.Lab, t.Net)
	if err != nil {
		return e.failLab("building the delay line", err)
	}
	defer dl.close()
	for i, dev := range multipathIfaces {
		a, _ := demo.AccessOf(dev)
		dl.setLinkRTT(netip.MustParsePrefix(a.Addr+"/24").Masked(), cfg.RTTs[i])
		if err := t.LimitRate(dev, cfg.Rates[i], 50*time.Millisecond); err != nil {
			return e.failLab("shaping "+dev, err)
		}
	}
	// The socket buffers may grow to Buffer: an MPTCP receiver holds
	// what the fast paths delivered while it waits for the slow one's
	// (RFC 8684 §3.3.4 sizes it as the sum of the paths' rates times
	// the longest RTT, doubled); Linux's default maximum, 6 MiB, is
	// less than that under these queues and holds the fast links back.
	if cfg.Buffer > 0 {
		for _, x := range []struct{ ns, key string }{{t.UE, "net.ipv4.tcp_rmem"}, {t.Srv, "net.ipv4.tcp_wmem"}} {
			if _, err := t.Run(e.ctx, x.ns, "sysctl", "-q", "-w", fmt.Sprintf("%s=4096 131072 %d", x.key, cfg.Buffer)); err != nil {
				return e.failLab("socket buffers", err)
			}
		}
	}
	o.MPTCP = true
	ue, _, err := t.StartBoth(o)
	if err != nil {
		return e.failLab("starting the daemons", err)
	}
	ml := &mpLab{Topology: t, e: e, ue: ue, vips: map[string]netip.Addr{}}
	if !demo.WaitFor(30*time.Second, func() bool {
		sas, err := ue.SAs()
		if err != nil {
			return false
		}
		for _, dev := range multipathIfaces {
			s, ok := vpnOn(sas, dev)
			if !ok || len(s.VirtualIPs) == 0 {
				return false
			}
			ml.vips[dev] = netip.MustParseAddr(s.VirtualIPs[0])
		}
		eps, err := t.MPTCPEndpoints(e.ctx)
		return err == nil && len(eps) == len(multipathIfaces)
	}) {
		return e.failLab("waiting for a VPN and an MPTCP endpoint on every interface", fmt.Errorf("%s\n%s", ue.Table(e.ctx), lastLines(ue.Log(), 20)))
	}
	srv, err := t.StartMPTCPServer()
	if err != nil {
		return e.failLab("starting the MPTCP server", err)
	}
	defer srv.Close()
	if err := fn(ml); err != nil {
		return e.failLab(name, fmt.Errorf("%w\n%s", err, lastLines(ue.Log(), 20)))
	}
	return nil
}

// failLab is fail for a suite without a lab of its own in the env.
func (e *suiteEnv) failLab(step string, err error) error {
	if e.ctx.Err() != nil {
		return fmt.Errorf("bench: %s: interrupted", step)
	}
	return fmt.Errorf("bench: %s: %w\n(configurations and logs are in %s)", step, err, e.dir)
}

// download runs one download and counts each link's octets.
func (ml *mpLab) download(kase string, links []string, src netip.Addr, size int64, plainTCP bool, c *cut) (MultipathRun, error) {
	ctx, cancel := context.WithTimeout(ml.e.ctx, 5*time.Minute)
	defer cancel()
	before, err := ml.LinkBytes(ctx)
	if err != nil {
		return MultipathRun{}, err
	}
	var got atomic.Int64
	done := make(chan demo.DownloadResult, 1)
	go func() { done <- ml.Download(ctx, src, size, plainTCP, got.Store) }()
	run := MultipathRun{Case: kase, Links: links}
	if c != nil {
		if !demo.WaitFor(2*time.Minute, func() bool { return float64(got.Load()) >= c.at*float64(size) }) {
			return run, fmt.Errorf("%s: the download stalled at %d of %d octets", kase, got.Load(), size)
		}
		if before, err = ml.LinkBytes(ctx); err != nil {
			return run, err
		}
		run.CutAt = float64(got.Load()) / float64(size)
		for _, dev := range c.devs {
			if err := ml.SetLink(dev, false); err != nil {
				return run, err
			}
		}
	}
	res := <-done
	after, err := ml.LinkBytes(ctx)
	if err != nil {
		return run, err
	}
	run.LinkBytes = map[string]uint64{}
	for _, dev := range multipathIfaces {
		run.LinkBytes[dev] = after[dev] - before[dev]
	}
	run.Bytes, run.Seconds, run.Mbps, run.Intact, run.MPTCP = res.Bytes, res.Elapsed.Seconds(), res.Mbps(), res.Intact, res.MPTCP
	if res.Err != nil {
		run.Err = res.Err.Error()
	}
	ml.e.say("  %.1f Mbit/s, intact %v, MPTCP %v, octets per link %v", run.Mbps, run.Intact, run.MPTCP, run.LinkBytes)
	if !res.Intact {
		return run, fmt.Errorf("%s: %d of %d octets arrived intact: %v", kase, res.Bytes, size, res.Err)
	}
	if c != nil {
		for _, dev := range c.devs {
			if err := ml.SetLink(dev, true); err != nil {
				return run, err
			}
		}
	}
	return run, nil
}

// spread runs iperf3's parallel streams from the server to the end
// user's route source address through the spread rules, once every VPN
// has its rules (and, measured, its factor from a few probes).
func (ml *mpLab) spread(kase string, cfg MultipathConfig) (MultipathRun, error) {
	ctx := ml.e.ctx
	run := MultipathRun{Case: kase, Links: multipathIfaces, Streams: cfg.Streams}
	var table string
	if !demo.WaitFor(60*time.Second, func() bool {
		out, err := ml.Run(ctx, ml.UE, "nft", "list", "table", "inet", "mifike_spread")
		table = string(out)
		if err != nil {
			return false
		}
		for _, v := range ml.vips {
			if !strings.Contains(table, v.String()) {
				return false
			}
		}
		if kase != "spread-measured" {
			return true
		}
		sas, err := ml.ue.SAs()
		if err != nil {
			return false
		}
		for _, dev := range multipathIfaces { // a few round trips each: the factors settled
			if s, ok := vpnOn(sas, dev); !ok || s.Path == nil || s.Path.RTTSamples < 5 {
				return false
			}
		}
		return true
	}) {
		return run, fmt.Errorf("%s: the spread rules never named every VPN (with its path measured):\n%s", kase, table)
	}
	if out, err := ml.Run(ctx, ml.UE, "nft", "list", "table", "inet", "mifike_spread"); err == nil {
		table = string(out)
	}
	run.Weights = map[string]int{}
	for dev, v := range ml.vips {
		run.Weights[dev] = max(strings.Count(table, ": "+v.String()), boolInt(strings.Contains(table, "snat ip to "+v.String()+" ")))
	}
	ml.e.say("multipath: %s, %d plain-TCP streams for %d s, buckets %v", kase, cfg.Streams, cfg.Seconds, run.Weights)
	before, err := ml.LinkBytes(ctx)
	if err != nil {
		return run, err
	}
	res, err := iperf(ctx, ml.Lab, ml.Srv, ml.UE, demo.Server.String(), "", iperfOpts{secs: cfg.Seconds, parallel: cfg.Streams, reverse: true})
	if err != nil {
		return run, err
	}
	after, err := ml.LinkBytes(ctx)
	if err != nil {
		return run, err
	}
	run.LinkBytes = map[string]uint64{}
	for _, dev := range multipathIfaces {
		run.LinkBytes[dev] = after[dev] - before[dev]
	}
	run.Mbps, run.Seconds, run.Intact = res.mbps, float64(cfg.Seconds), true // iperf3 counts what arrived in order
	run.Bytes = int64(res.mbps * 1e6 / 8 * float64(cfg.Seconds))
	ml.e.say("  %.1f Mbit/s, octets per link %v", run.Mbps, run.LinkBytes)
	return run, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func multipathRatios(r *MultipathResult, rate map[string]int) []Ratio {
	find := func(kase string, link string) *MultipathRun {
		for i := range r.Runs {
			if x := &r.Runs[i]; x.Case == kase && (link == "" || x.Links[0] == link) {
				return x
			}
		}
		return nil
	}
	sum, best, sumSingles := 0, 0.0, 0.0
	for _, dev := range multipathIfaces {
		sum += rate[dev]
		if s := find("single", dev); s != nil {
			best = max(best, s.Mbps)
			sumSingles += s.Mbps
		}
	}
	var out []Ratio
	if m := find("mptcp", ""); m != nil && best > 0 {
		out = append(out,
			Ratio{"MPTCP over 3 VPNs / sum of the links' rates", m.Mbps / float64(sum)},
			Ratio{"MPTCP over 3 VPNs / sum of each link alone (measured)", m.Mbps / sumSingles},
			Ratio{"MPTCP over 3 VPNs / best single link (measured)", m.Mbps / best})
	}
	if m := find("mptcp-cut", ""); m != nil && best > 0 {
		out = append(out, Ratio{"eth0 cut after a third: MPTCP / best single link", m.Mbps / best})
	}
	for _, kase := range []string{"spread-measured", "spread-equal"} {
		if m := find(kase, ""); m != nil && best > 0 {
			out = append(out,
				Ratio{kase + ": streams / sum of the links' rates", m.Mbps / float64(sum)},
				Ratio{kase + ": streams / best single link (measured)", m.Mbps / best})
		}
	}
	if m, q := find("spread-measured", ""), find("spread-equal", ""); m != nil && q != nil && q.Mbps > 0 {
		out = append(out, Ratio{"spreading: measured weights / configured equal weights", m.Mbps / q.Mbps})
	}
	if m := find("backup", ""); m != nil {
		out = append(out, Ratio{"wwan0 backup: MPTCP / sum of the active links' rates", m.Mbps / float64(rate["eth0"]+rate["wlan0"])})
	}
	return out
}

// WriteTable prints the runs and the ratios.
func (r *MultipathResult) WriteTable(w io.Writer) {
	var links []string
	for _, l := range r.Links {
		links = append(links, fmt.Sprintf("%s %d Mbit/s RTT %.0f ms", l.Iface, l.Mbps, l.RTTms))
	}
	fmt.Fprintf(w, "One download from the protected server to the end user, %d MiB (singles: each link's share),\n", r.Size>>20)
	fmt.Fprintf(w, "over the interface manager's per-interface VPNs; links shaped with tbf and delayed: %s;\n", strings.Join(links, ", "))
	buf := "Linux's default socket buffers"
	if r.Buffer > 0 {
		buf = fmt.Sprintf("socket buffers up to %d MiB (tcp_rmem, tcp_wmem)", r.Buffer>>20)
	}
	fmt.Fprintf(w, "MPTCP (Go's SetMultipathTCP, the kernel's in-kernel path manager, mifike's endpoints), %s;\nevery download checked by SHA-256; %d CPUs shared by all\n\n", buf, r.CPUs)
	t := table{head: []string{"case", "links", "Mbit/s", "intact", "cut at", "MiB eth0", "MiB wlan0", "MiB wwan0"}}
	names := map[string]string{"single": "plain TCP, one VPN", "mptcp": "MPTCP, all active", "mptcp-cut": "MPTCP, eth0 cut",
		"backup": "MPTCP, wwan0 backup", "backup-failover": "MPTCP, wwan0 backup, eth0+wlan0 cut",
		"spread-measured": "spread TCP streams, measured weights", "spread-equal": "spread TCP streams, equal weights"}
	for _, x := range r.Runs {
		at := "-"
		if x.CutAt > 0 {
			at = fmt.Sprintf("%.0f%%", x.CutAt*100)
		}
		intact := "yes"
		if !x.Intact {
			intact = "NO"
		}
		t.add(names[x.Case], strings.Join(x.Links, "+"), f1(x.Mbps), intact, at,
			f1(float64(x.LinkBytes["eth0"])/(1<<20)), f1(float64(x.LinkBytes["wlan0"])/(1<<20)), f1(float64(x.LinkBytes["wwan0"])/(1<<20)))
	}
	t.write(w)
	fmt.Fprintln(w, "(per-link MiB: what the router sent over each link during the download; after the cut for the cut cases)")
	for _, x := range r.Runs {
		if x.Streams > 0 {
			fmt.Fprintf(w, "%s: %d iperf3 streams for %.0f s (intact: iperf3's own count), hash buckets eth0 %d, wlan0 %d, wwan0 %d\n",
				names[x.Case], x.Streams, x.Seconds, x.Weights["eth0"], x.Weights["wlan0"], x.Weights["wwan0"])
		}
	}
	writeRatios(w, r.Ratios)
}
