//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

// The failover suite: the end user's VPN runs on eth0 with a probe
// stream through it (a UDP datagram every 5 ms from its inner address to
// the server behind the gateway); eth0 fails, and we time how long until
// the first datagram sent after the failure reaches the server through
// the moved VPN. Two failures: the link goes down (the host sees it at
// once), and the router silently drops everything of eth0 (nftables;
// only liveness checks can tell). mifike moves the VPN with its
// interface manager (mode failover), strongSwan with MOBIKE; both get
// the same liveness and retransmission settings, and fresh daemons for
// every run. wwan0 is down and usb0 has no address, so wlan0 is the one
// place to go. A run that sees no traffic within the limit counts as
// not recovered.
//
// The third case is the price of detecting a silent failure quickly: a
// path that is lossy, not dead (20 % of the packets dropped at random
// each way, nftables numgen), carries the probe stream for a minute, and
// the VPN must not leave it; we count the times it did, and the share of
// the probe's datagrams that arrived.

// FailoverConfig configures Failover.
type FailoverConfig struct {
	Exe string
	// Cases are the failures: "link-down", "silent".
	Cases []string
	// Runs per implementation and case; the median is reported.
	Runs int
	// Limit is how long a run waits for the traffic to return.
	Limit time.Duration
	// LossyFor is how long the lossy case runs (60 s), LossyRuns how
	// many times (1).
	LossyFor  time.Duration
	LossyRuns int
	// LivenessWindow is mifike's liveness_window: its traffic-driven
	// liveness check (strongSwan has no counterpart); 0 leaves it off,
	// as before there was one.
	LivenessWindow time.Duration
	Progress       io.Writer
}

// LossyRun is the lossy case of one implementation.
type LossyRun struct {
	Impl        string  `json:"impl"`
	Runs        int     `json:"runs"`
	Seconds     float64 `json:"seconds"`
	LossPercent int     `json:"loss_percent"`
	// LeftEth0 is how many times the VPN moved off the lossy eth0 in
	// all runs (want 0), PerRun per run.
	LeftEth0 int   `json:"left_eth0"`
	PerRun   []int `json:"per_run"`
	// Sent and Received are the probe's datagrams while the loss was in
	// place; Delivery is Received/Sent.
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	Delivery float64 `json:"delivery"`
	// PathsDead: how often the end user judged eth0's path dead (its
	// log), each a move off eth0 unless there was nowhere to go.
	PathsDead int `json:"paths_dead"`
}

// FailoverRun is one implementation and one kind of failure.
type FailoverRun struct {
	Impl string `json:"impl"`
	Case string `json:"case"`
	Runs int    `json:"runs"`
	// Recovered is how many runs saw traffic again within the limit.
	Recovered int       `json:"recovered"`
	MedianMs  float64   `json:"median_ms"`
	MinMs     float64   `json:"min_ms"`
	MaxMs     float64   `json:"max_ms"`
	AllMs     []float64 `json:"all_ms"`
}

// FailoverResult is what Failover measured.
type FailoverResult struct {
	DPDDelay          string        `json:"dpd_delay"`
	LivenessWindow    string        `json:"liveness_window"`
	Retransmit        string        `json:"retransmit"`
	LimitSeconds      float64       `json:"limit_seconds"`
	StrongSwanVersion string        `json:"strongswan_version"`
	Runs              []FailoverRun `json:"runs"`
	Lossy             []LossyRun    `json:"lossy,omitempty"`
	Ratios            []Ratio       `json:"ratios"`
}

func (*FailoverResult) Suite() string { return "failover" }

// The liveness settings both implementations get.
var (
	failoverDPD = time.Second
	failoverRT  = retransmitOpts{Timeout: 500 * time.Millisecond, Base: 1.4, Tries: 3}
	// lossyPercent is the lossy case's loss, each way.
	lossyPercent = 20
)

// Failover runs the failover suite.
func Failover(ctx context.Context, cfg FailoverConfig) (res *FailoverResult, err error) {
	if len(cfg.Cases) == 0 {
		cfg.Cases = []string{"link-down", "silent", "lossy"}
	}
	if cfg.LossyFor <= 0 {
		cfg.LossyFor = time.Minute
	}
	cfg.LossyRuns = max(cfg.LossyRuns, 1)
	cfg.Runs = max(cfg.Runs, 1)
	if cfg.Limit <= 0 {
		cfg.Limit = 20 * time.Second
	}
	for _, c := range cfg.Cases {
		if c != "link-down" && c != "silent" && c != "lossy" {
			return nil, fmt.Errorf("bench: unknown failure %q (link-down, silent or lossy)", c)
		}
	}
	e, err := newSuiteEnv(ctx, cfg.Exe, "mfkf", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := e.close(err == nil); err == nil && cerr != nil {
			err = cerr
		}
	}()
	m, err := newMifLab(e, "lab")
	if err != nil {
		return nil, e.fail("building the lab", err)
	}
	defer m.Close()
	if err := m.setLink("wwan0", false); err != nil {
		return nil, e.fail("building the lab", err)
	}
	// The router filters sources as an access network does (BCP 38):
	// a packet from eth0's address that leaves through wlan0 once eth0
	// is down goes nowhere, so only a moved VPN carries traffic again.
	if _, err := m.Run(ctx, m.Net, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"); err != nil {
		return nil, e.fail("building the lab", err)
	}
	r := &FailoverResult{DPDDelay: failoverDPD.String(), LivenessWindow: cfg.LivenessWindow.String(), Retransmit: fmt.Sprintf("%v x %g^n, %d tries", failoverRT.Timeout, failoverRT.Base, failoverRT.Tries),
		LimitSeconds: cfg.Limit.Seconds(), StrongSwanVersion: e.ssVersion}
	o := mifOpts{auth: "psk", mode: "failover", use: []string{"eth0", "wlan0"}, onDown: "move", dpd: failoverDPD, rt: failoverRT, liveness: cfg.LivenessWindow}
	for _, c := range cfg.Cases {
		if c == "lossy" {
			// mifike only: the case measures the price of its quick
			// liveness check, which strongSwan does not have.
			e.say("failover lossy: mifike, %d runs of %v", cfg.LossyRuns, cfg.LossyFor)
			lr := LossyRun{Impl: "mifike", Runs: cfg.LossyRuns, Seconds: cfg.LossyFor.Seconds(), LossPercent: lossyPercent}
			for i := range cfg.LossyRuns {
				x, err := lossyRun(e, m, o, cfg.LossyFor, fmt.Sprintf("lossy-mifike-%d", i))
				if err != nil {
					return nil, e.fail(fmt.Sprintf("failover lossy run %d", i+1), err)
				}
				lr.LeftEth0 += x.LeftEth0
				lr.PerRun = append(lr.PerRun, x.LeftEth0)
				lr.Sent += x.Sent
				lr.Received += x.Received
				lr.PathsDead += x.PathsDead
			}
			if lr.Sent > 0 {
				lr.Delivery = float64(lr.Received) / float64(lr.Sent)
			}
			e.say("  left eth0 %d times, %.1f%% of the probe delivered", lr.LeftEth0, 100*lr.Delivery)
			r.Lossy = append(r.Lossy, lr)
			continue
		}
		for _, impl := range []string{"mifike", "strongswan"} {
			e.say("failover %s: %s, %d runs", c, impl, cfg.Runs)
			run := FailoverRun{Impl: impl, Case: c, Runs: cfg.Runs}
			var took []float64
			for i := range cfg.Runs {
				if i == 3 && len(took) == 0 {
					// Three runs without traffic again: the rest would
					// only wait out the limit too.
					run.Runs = i
					break
				}
				d, err := failoverRun(e, m, o, impl, c, cfg.Limit, fmt.Sprintf("%s-%s-%d", c, impl, i), i == 0)
				if err != nil {
					return nil, e.fail(fmt.Sprintf("failover %s %s run %d", c, impl, i+1), err)
				}
				if d < 0 {
					run.AllMs = append(run.AllMs, -1)
					continue
				}
				ms := float64(d) / 1e6
				run.AllMs = append(run.AllMs, ms)
				took = append(took, ms)
			}
			run.Recovered = len(took)
			if len(took) > 0 {
				run.MedianMs = median(took)
				run.MinMs, run.MaxMs = minMax(took)
			}
			e.say("  median %.0f ms (%d of %d recovered)", run.MedianMs, run.Recovered, run.Runs)
			r.Runs = append(r.Runs, run)
		}
		var mf, sw *FailoverRun
		for i := range r.Runs {
			if x := &r.Runs[i]; x.Case == c {
				if x.Impl == "mifike" {
					mf = x
				} else {
					sw = x
				}
			}
		}
		if mf != nil && sw != nil && mf.MedianMs > 0 && sw.MedianMs > 0 {
			r.Ratios = append(r.Ratios, Ratio{c + ": median time to traffic, strongSwan/mifike", sw.MedianMs / mf.MedianMs})
		}
	}
	return r, nil
}

func minMax(v []float64) (lo, hi float64) {
	lo, hi = v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// failoverRun brings the VPN up on eth0 with fresh daemons, starts the
// probe, fails eth0 and returns the time until the first datagram sent
// afterwards arrived (-1: none within limit). It repairs eth0 after.
func failoverRun(e *suiteEnv, m *mifLab, o mifOpts, impl, kind string, limit time.Duration, tag string, first bool) (time.Duration, error) {
	var (
		vip  netip.Addr
		logs func() string
	)
	if impl == "mifike" {
		gw, err := startMif(e.ctx, e, m, "gw-"+tag, m.GW, mifGWConf(o))
		if err != nil {
			return 0, err
		}
		defer gw.proc.Stop(5 * time.Second)
		ue, err := startMif(e.ctx, e, m, "ue-"+tag, m.UE, mifUEConf(o))
		if err != nil {
			return 0, err
		}
		defer ue.proc.Stop(5 * time.Second)
		sa, err := waitVPN(e.ctx, ue, "eth0", 15*time.Second)
		if err != nil {
			return 0, err
		}
		if len(sa.VirtualIPs) == 0 {
			return 0, errors.New("the VPN has no inner address")
		}
		if vip, err = netip.ParseAddr(strings.Split(sa.VirtualIPs[0], "/")[0]); err != nil {
			return 0, err
		}
		logs = func() string { return "end user's log:\n" + lastLines(ue.log(), 15) }
	} else {
		dir := filepath.Join(e.dir, "swan-"+tag)
		co := charonOpts{Retransmit: o.rt}
		gw, err := startCharon(e.ctx, m.Lab, filepath.Join(dir, "gw"), m.GW, swanMifGW(o, ueID), co)
		if err != nil {
			return 0, err
		}
		defer gw.proc.Stop(5 * time.Second)
		ue, err := startCharon(e.ctx, m.Lab, filepath.Join(dir, "ue"), m.UE, swanFailoverUE(o), co)
		if err != nil {
			return 0, err
		}
		defer ue.proc.Stop(5 * time.Second)
		v, err := ue.vici()
		if err != nil {
			return 0, err
		}
		_, err = v.ok("initiate", viciMsg{"ike": "office", "child": "lan", "timeout": "20000", "loglevel": "-1"})
		v.Close()
		if err != nil {
			return 0, fmt.Errorf("%w\n%s", err, ue.logTail())
		}
		if vip, err = swanVIP(e.ctx, m, ue); err != nil {
			return 0, err
		}
		logs = func() string { return "end user's log:\n" + lastLines(ue.logTail(), 15) }
	}
	p, err := startProbe(m.UE, m.Srv, vip)
	if err != nil {
		return 0, err
	}
	defer p.stop()
	if err := waitFor(e.ctx, 10*time.Second, func() (bool, error) { return p.received() >= 20, nil }); err != nil {
		return 0, fmt.Errorf("no probe traffic through the VPN from %v: %w\n%s", vip, err, logs())
	}
	// A second of steady traffic: the failure finds the liveness
	// timers wherever they are.
	time.Sleep(time.Second)
	switch kind {
	case "link-down":
		err = m.setLink("eth0", false)
	default:
		err = m.Blackhole(e.ctx, "eth0", true)
	}
	if err != nil {
		return 0, err
	}
	// The failure is in place once the command returned (what was sent
	// before still had the old path).
	t0 := time.Now()
	var took time.Duration = -1
	waitFor(e.ctx, limit, func() (bool, error) {
		if at, ok := p.firstAfter(t0); ok {
			took = at.Sub(t0)
			return true, nil
		}
		return false, nil
	})
	if kind == "link-down" {
		err = m.setLink("eth0", true)
	} else {
		err = m.Blackhole(context.Background(), "eth0", false)
	}
	if took < 0 && first {
		e.say("  no traffic within %v; the end of the %s", limit, logs())
	}
	return took, err
}

// lossyRun brings the VPN up on eth0 with fresh mifike daemons, starts
// the probe, makes eth0 lossy for d and counts how often the VPN left
// it and how much of the probe arrived meanwhile.
func lossyRun(e *suiteEnv, m *mifLab, o mifOpts, d time.Duration, tag string) (LossyRun, error) {
	var x LossyRun
	gw, err := startMif(e.ctx, e, m, "gw-"+tag, m.GW, mifGWConf(o))
	if err != nil {
		return x, err
	}
	defer gw.proc.Stop(5 * time.Second)
	ue, err := startMif(e.ctx, e, m, "ue-"+tag, m.UE, mifUEConf(o))
	if err != nil {
		return x, err
	}
	defer ue.proc.Stop(5 * time.Second)
	sa, err := waitVPN(e.ctx, ue, "eth0", 15*time.Second)
	if err != nil {
		return x, err
	}
	if len(sa.VirtualIPs) == 0 {
		return x, errors.New("the VPN has no inner address")
	}
	vip, err := netip.ParseAddr(strings.Split(sa.VirtualIPs[0], "/")[0])
	if err != nil {
		return x, err
	}
	p, err := startProbe(m.UE, m.Srv, vip)
	if err != nil {
		return x, err
	}
	defer p.stop()
	if err := waitFor(e.ctx, 10*time.Second, func() (bool, error) { return p.received() >= 20, nil }); err != nil {
		return x, fmt.Errorf("no probe traffic through the VPN from %v: %w\n%s", vip, err, lastLines(ue.log(), 15))
	}
	before := ue.log()
	if err := m.Lossy(e.ctx, "eth0", lossyPercent, true); err != nil {
		return x, err
	}
	sent0, _ := p.counts()
	select {
	case <-time.After(d):
	case <-e.ctx.Done():
	}
	sent1, _ := p.counts()
	if err := m.Lossy(context.Background(), "eth0", 0, false); err != nil {
		return x, err
	}
	// The datagrams still on their way when the loss ended were sent
	// under it; a moment for them, then count.
	time.Sleep(100 * time.Millisecond)
	received := p.receivedOf(sent0, sent1)
	during := strings.TrimPrefix(ue.log(), before)
	for _, line := range strings.Split(during, "\n") {
		// A move back to eth0 (after the manager's hold on it) is
		// not one more departure.
		if strings.Contains(line, "IKE SA moved") && !strings.Contains(line, "iface=eth0") {
			x.LeftEth0++
		}
	}
	x.PathsDead = strings.Count(during, "judged dead")
	x.Sent, x.Received = sent1-sent0, received
	if x.LeftEth0 > 0 {
		e.say("  the VPN left the lossy eth0 %d times; the end of the end user's log:\n%s", x.LeftEth0, lastLines(during, 15))
	}
	return x, e.ctx.Err()
}

// swanFailoverUE is the strongSwan end user: one connection, no fixed
// local address, so MOBIKE may take it to any (routing picks eth0
// first).
func swanFailoverUE(o mifOpts) string {
	return fmt.Sprintf(`connections {
    office {
        version = 2
        remote_addrs = %s
        proposals = %s
        vips = 0.0.0.0
        mobike = yes
        dpd_delay = %ds
        %s
        children { lan { remote_ts = 10.93.0.0/24
            esp_proposals = aes128gcm16 } }
    }
}
%s`, demo.GatewayAddrs[0], mifProposal, int(o.dpd.Seconds()), swanAuth(o.auth, ueID, gwID), swanSecrets([]string{ueID}))
}

// swanVIP is the strongSwan end user's inner address, once charon has
// put it on ipsec0.
func swanVIP(ctx context.Context, m *mifLab, c *charon) (netip.Addr, error) {
	v, err := swanVIPs(ctx, m, c, 1)
	if err != nil {
		return netip.Addr{}, err
	}
	return v[0], nil
}

// swanVIPs waits for n inner addresses of the strongSwan end user.
func swanVIPs(ctx context.Context, m *mifLab, c *charon, n int) ([]netip.Addr, error) {
	var vips []netip.Addr
	err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		out, err := c.swanctl(ctx, "--list-sas", "--raw")
		if err != nil {
			return false, err
		}
		vips = vips[:0]
		for _, mm := range vipsRE.FindAllStringSubmatch(string(out), -1) {
			for _, v := range strings.Fields(mm[1]) {
				if a, err := netip.ParseAddr(v); err == nil && a.Is4() && !slices.Contains(vips, a) {
					vips = append(vips, a)
				}
			}
		}
		if len(vips) < n {
			return false, nil
		}
		addrs, err := m.Run(ctx, m.UE, "ip", "-o", "addr", "show")
		if err != nil {
			return false, err
		}
		for _, v := range vips {
			if !strings.Contains(string(addrs), " "+v.String()+"/") {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("strongSwan's inner addresses (%v of %d): %w\n%s", vips, n, err, c.logTail())
	}
	return vips, nil
}

// probe is a stream of numbered UDP datagrams from the end user's inner
// address to the server, each stamped with its send time; both ends are
// sockets of this process in their namespaces, so one clock times them.
type probe struct {
	tx, rx *net.UDPConn
	quit   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	n        int
	sent     int // datagrams written; the n-th is numbered n-1
	arrivals []arrival
}

type arrival struct {
	sent, at time.Time
	seq      int
}

const (
	probePort  = 7100
	probeEvery = time.Millisecond
)

func startProbe(ueNS, srvNS string, src netip.Addr) (*probe, error) {
	p := &probe{quit: make(chan struct{})}
	err := demo.InNS(srvNS, func() error {
		var err error
		p.rx, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(demo.Server, probePort)))
		return err
	})
	if err != nil {
		return nil, err
	}
	err = demo.InNS(ueNS, func() error {
		var err error
		p.tx, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(demo.Server, probePort)))
		return err
	})
	if err != nil {
		p.rx.Close()
		return nil, err
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		b := make([]byte, 64)
		for {
			n, err := p.rx.Read(b)
			if err != nil {
				return
			}
			if n < 16 {
				continue
			}
			now := time.Now()
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(b)))
			seq := int(binary.BigEndian.Uint64(b[8:]))
			p.mu.Lock()
			p.n++
			p.arrivals = append(p.arrivals, arrival{sent: sent, at: now, seq: seq})
			p.mu.Unlock()
		}
	}()
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		b := make([]byte, 64)
		for {
			select {
			case <-p.quit:
				return
			case <-tick.C:
				p.mu.Lock()
				seq := p.sent
				p.sent++
				p.mu.Unlock()
				binary.BigEndian.PutUint64(b, uint64(time.Now().UnixNano()))
				binary.BigEndian.PutUint64(b[8:], uint64(seq))
				p.tx.Write(b) // errors (no route for a moment) are what we measure
			}
		}
	}()
	return p, nil
}

func (p *probe) received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// counts is how many datagrams were sent and how many arrived so far.
func (p *probe) counts() (sent, received int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, p.n
}

// receivedOf is how many of the datagrams numbered from first to
// before end arrived, whenever they did.
func (p *probe) receivedOf(first, end int) (received int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.arrivals {
		if a.seq >= first && a.seq < end {
			received++
		}
	}
	return received
}

// firstAfter is the arrival time of the first datagram sent after t.
func (p *probe) firstAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.arrivals {
		if a.sent.After(t) {
			return a.at, true
		}
	}
	return time.Time{}, false
}

func (p *probe) stop() {
	close(p.quit)
	p.tx.Close()
	p.rx.Close()
	p.wg.Wait()
}

// WriteTable prints r for people.
func (r *FailoverResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "Failover: eth0 fails under a probe stream (a datagram every %v, inner address -> server); time until the first datagram\n", probeEvery)
	fmt.Fprintf(w, "sent after the failure arrives through the moved VPN. Both: dpd_delay %s, retransmit %s; fresh daemons per run;\n", r.DPDDelay, r.Retransmit)
	if r.LivenessWindow != "0s" {
		fmt.Fprintf(w, "mifike also: liveness_window %s (a liveness check when ESP goes out with nothing back)\n\n", r.LivenessWindow)
	} else {
		fmt.Fprintf(w, "mifike without liveness_window (no liveness check driven by traffic)\n\n")
	}
	t := table{head: []string{"failure", "impl", "runs", "recovered", "median ms", "min ms", "max ms"}}
	for _, x := range r.Runs {
		name := "mifike"
		if x.Impl == "strongswan" {
			name = "strongSwan " + r.StrongSwanVersion
		}
		what := "link down"
		if x.Case == "silent" {
			what = "silent drop (nftables)"
		}
		med, lo, hi := f0(x.MedianMs), f0(x.MinMs), f0(x.MaxMs)
		if x.Recovered == 0 {
			med, lo, hi = fmt.Sprintf(">%.0f", r.LimitSeconds*1e3), "-", "-"
		}
		t.add(what, name, fmt.Sprint(x.Runs), fmt.Sprint(x.Recovered), med, lo, hi)
	}
	t.write(w)
	if len(r.Lossy) > 0 {
		fmt.Fprintln(w)
		l := table{head: []string{"lossy eth0 (random loss each way)", "impl", "runs", "seconds each", "left eth0", "probe delivered", "paths judged dead"}}
		for _, x := range r.Lossy {
			l.add(fmt.Sprintf("%d%%", x.LossPercent), x.Impl, fmt.Sprint(x.Runs), f0(x.Seconds), fmt.Sprint(x.LeftEth0),
				fmt.Sprintf("%.1f%%", 100*x.Delivery), fmt.Sprint(x.PathsDead))
		}
		l.write(w)
	}
	writeRatios(w, r.Ratios)
}
