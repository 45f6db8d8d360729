//go:build linux

// Package bench measures mifike against strongSwan 5.9.8 on this
// machine, each suite running both in turn in the same network
// namespaces with the same algorithms: handshakes per second, a VPN on
// a new interface, failover, ESP throughput and a responder holding many
// SAs ("mifike bench SUITE"; BENCHMARKS.md has the method and the latest
// figures). This kernel has no ESP, so strongSwan runs with
// kernel-libipsec, its userspace ESP, which always encapsulates in UDP.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The throughput suite: TCP (iperf3) and UDP through one tunnel between
// two namespaces (the plain link, mifike with ESP in UDP as
// kernel-libipsec sends, mifike's plain ESP, mifike's ESP in TCP (RFC
// 9329), wireguard-go, strongSwan), then through
// three tunnels at once on the multi-interface lab, one per end-user
// interface (mifike: the manager's per-interface VPNs; strongSwan: three
// connections).

// The algorithms, the same for both implementations.
const (
	IKEProposal = HandshakeIKEProposal
	ESPProposal = "aes128gcm16"
)

// Addresses, the same in every pair of namespaces: the gateway ("gw",
// responder) protects gwNet (gwHost on its loopback) and hands the end
// user ("ue", initiator) a virtual IP from pool.
const (
	gwAddr = "10.79.0.1"
	ueAddr = "10.79.0.2"
	gwNet  = "10.79.10.0/24"
	gwHost = "10.79.10.1"
	pool   = "10.99.0.0/24"
	psk    = "mifike-bench-psk-0123456789abcdef"
)

// udpPayload keeps iperf3's UDP datagrams inside both tunnels' MTU
// (1400), so nothing is fragmented.
const udpPayload = 1300

// ThroughputConfig configures Throughput.
type ThroughputConfig struct {
	Exe string
	// Duration of each iperf3 run (whole seconds; at least 1 s).
	Duration time.Duration
	// SingleOnly skips the three-tunnel part ("mifike bench esp").
	SingleOnly bool
	Progress   io.Writer
}

// ThroughputRow is one measurement. Rates are what the receiving end
// got, in Mbit/s (10^6 bit/s).
type ThroughputRow struct {
	Tunnels int     `json:"tunnels"`
	Path    string  `json:"path"`  // plain, mifike-udp, mifike-udp-nw, mifike-esp, mifike-tcp, wireguard-go, strongswan
	Proto   string  `json:"proto"` // tcp or udp
	Mbps    float64 `json:"mbps"`
	// LossPct is the share of UDP datagrams lost (iperf3 sends as fast
	// as it can).
	LossPct float64 `json:"loss_pct,omitempty"`
}

// ThroughputResult is what Throughput measured.
type ThroughputResult struct {
	IKEProposal       string          `json:"ike_proposal"`
	ESPProposal       string          `json:"esp_proposal"`
	Seconds           float64         `json:"seconds"`
	CPUs              int             `json:"cpus"`
	StrongSwanVersion string          `json:"strongswan_version"`
	WireGuardVersion  string          `json:"wireguard_go_version"`
	Rows              []ThroughputRow `json:"rows"`
	Ratios            []Ratio         `json:"ratios"`
}

func (*ThroughputResult) Suite() string { return "throughput" }

// Throughput runs the suite. It needs root, iperf3 and strongSwan with
// kernel-libipsec. Cancelling ctx stops it and removes everything.
func Throughput(ctx context.Context, cfg ThroughputConfig) (res *ThroughputResult, err error) {
	secs := max(int((cfg.Duration+time.Second-1)/time.Second), 1)
	e, err := newSuiteEnv(ctx, cfg.Exe, "mfkb", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := e.close(err == nil); err == nil && cerr != nil {
			err = cerr
		}
	}()
	r := &ThroughputResult{IKEProposal: IKEProposal, ESPProposal: ESPProposal, Seconds: float64(secs),
		CPUs: cpus(), StrongSwanVersion: e.ssVersion, WireGuardVersion: wireGuardVersion()}
	add := func(tunnels int, path, proto string, x iperfResult) {
		r.Rows = append(r.Rows, ThroughputRow{Tunnels: tunnels, Path: path, Proto: proto, Mbps: x.mbps, LossPct: x.lossPct})
	}
	both := func(what string, path string, run func(udp bool) (iperfResult, error)) error {
		for _, udp := range []bool{false, true} {
			proto := map[bool]string{false: "tcp", true: "udp"}[udp]
			e.say("%s: %s for %d s", what, strings.ToUpper(proto), secs)
			x, err := run(udp)
			if err != nil {
				return fmt.Errorf("iperf3 %s through %s: %w", proto, what, err)
			}
			add(1, path, proto, x)
		}
		return nil
	}

	gw, ue, err := pair(e.lab, "base")
	if err != nil {
		return nil, e.fail("building the namespaces", err)
	}
	// TCP: iperf3; UDP: udpBlast, one flow.
	measure := func(gw, ue, server, client string) func(udp bool) (iperfResult, error) {
		return func(udp bool) (iperfResult, error) {
			if udp {
				return udpBlast(ctx, ue, gw, []flow{{netip.MustParseAddr(client), netip.MustParseAddr(server), 5201}}, secs)
			}
			return iperf(ctx, e.lab, gw, ue, server, client, iperfOpts{secs: secs})
		}
	}
	if err := both("the plain link", "plain", measure(gw, ue, gwAddr, ueAddr)); err != nil {
		return nil, e.fail("plain link", err)
	}
	for _, tr := range []transport{inUDP, inUDPWorkers, plain, overTCP} {
		name, tag := "mifike (ESP in UDP)", "mifike-udp"
		var env []string
		switch tr {
		case inUDPWorkers:
			// The same daemons sealing and opening on a worker per CPU
			// (dataplane/parallel.go), which they do by default only
			// from 3 CPUs up: what the workers gain, in the same run.
			name, tag, tr = "mifike (ESP in UDP, ESP workers on every CPU)", "mifike-udp-nw", inUDP
			env = []string{fmt.Sprintf("MIFIKE_ESP_WORKERS=%d", cpus())}
		case plain:
			name, tag = "mifike (plain ESP)", "mifike-esp"
		case overTCP:
			name, tag = "mifike (ESP in TCP, RFC 9329)", "mifike-tcp"
		}
		if gw, ue, err = pair(e.lab, tag); err != nil {
			return nil, e.fail("building the namespaces", err)
		}
		e.say("%s: starting two daemons", name)
		m, err := startMifike(ctx, e.lab, e.exe, filepath.Join(e.dir, tag), gw, ue, tr, env...)
		if err != nil {
			return nil, e.fail(name, err)
		}
		if err := both(name, tag, measure(gw, ue, gwHost, m.vip)); err != nil {
			return nil, e.fail(name, fmt.Errorf("%w\n%s", err, m.logs()))
		}
		m.stop() // idle, but out of strongSwan's way all the same
	}
	e.say("wireguard-go %s: starting two peers", r.WireGuardVersion)
	if gw, ue, err = pair(e.lab, "wg"); err != nil {
		return nil, e.fail("building the namespaces", err)
	}
	inner, stopWG, err := startWireGuard(ctx, e.lab, e.exe, gw, ue)
	if err != nil {
		return nil, e.fail("wireguard-go", err)
	}
	if err := both("wireguard-go", "wireguard-go", measure(gw, ue, gwHost, inner)); err != nil {
		stopWG()
		return nil, e.fail("wireguard-go", err)
	}
	stopWG()
	e.say("strongSwan: starting two charons (kernel-libipsec)")
	if gw, ue, err = pair(e.lab, "swan"); err != nil {
		return nil, e.fail("building the namespaces", err)
	}
	vip, err := startStrongSwan(ctx, e.lab, e.dir, gw, ue)
	if err != nil {
		return nil, e.fail("strongSwan", err)
	}
	if err := both("strongSwan", "strongswan", measure(gw, ue, gwHost, vip)); err != nil {
		return nil, e.fail("strongSwan", err)
	}
	if !cfg.SingleOnly {
		if err := threeTunnels(e, r, secs); err != nil {
			return nil, e.fail("three tunnels", err)
		}
	}
	r.Ratios = r.ratios()
	return r, nil
}

func (r *ThroughputResult) find(tunnels int, path, proto string) float64 {
	for _, x := range r.Rows {
		if x.Tunnels == tunnels && x.Path == path && x.Proto == proto {
			return x.Mbps
		}
	}
	return 0
}

func (r *ThroughputResult) ratios() []Ratio {
	var out []Ratio
	for _, t := range []int{1, 3} {
		for _, proto := range []string{"tcp", "udp"} {
			m, mp, s := r.find(t, "mifike-udp", proto), r.find(t, "mifike-esp", proto), r.find(t, "strongswan", proto)
			what := fmt.Sprintf("%d tunnel(s), %s", t, strings.ToUpper(proto))
			if nw := r.find(t, "mifike-udp-nw", proto); nw > 0 && m > 0 {
				out = append(out, Ratio{what + ": mifike ESP workers on every CPU/default", nw / m})
			}
			if w := r.find(t, "wireguard-go", proto); w > 0 && m > 0 {
				// The same userspace design, same namespaces, same run.
				out = append(out, Ratio{what + ": mifike/wireguard-go", m / w})
			}
			if mt := r.find(t, "mifike-tcp", proto); mt > 0 && m > 0 {
				// What TCP encapsulation costs against ESP in UDP, same
				// daemon, same run.
				out = append(out, Ratio{what + ": mifike ESP in TCP/ESP in UDP", mt / m})
			}
			if s <= 0 {
				continue
			}
			if m > 0 {
				out = append(out, Ratio{what + ": mifike/strongSwan, both ESP in UDP", m / s})
			}
			if mp > 0 {
				out = append(out, Ratio{what + ": mifike plain ESP/strongSwan", mp / s})
			}
		}
	}
	return out
}

// threeTunnels measures three VPNs at once, one per end-user interface,
// each with its own inner address, on the multi-interface lab; the
// iperf3 servers run on the gateway's LAN address.
func threeTunnels(e *suiteEnv, r *ThroughputResult, secs int) error {
	m, err := newMifLab(e, "lab3")
	if err != nil {
		return err
	}
	defer m.Close()
	devs := []string{"eth0", "wlan0", "wwan0"}
	server := "10.93.0.1"
	run := func(path string, vips []netip.Addr) error {
		for _, udp := range []bool{false, true} {
			proto := map[bool]string{false: "tcp", true: "udp"}[udp]
			e.say("three tunnels, %s: %s on all at once for %d s", path, strings.ToUpper(proto), secs)
			if udp {
				var flows []flow
				for i, v := range vips {
					flows = append(flows, flow{v, netip.MustParseAddr(server), 5201 + i})
				}
				x, err := udpBlast(e.ctx, m.UE, m.GW, flows, secs)
				if err != nil {
					return err
				}
				r.Rows = append(r.Rows, ThroughputRow{Tunnels: len(vips), Path: path, Proto: proto, Mbps: x.mbps, LossPct: x.lossPct})
				continue
			}
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				sum  iperfResult
				errs []error
			)
			for i, v := range vips {
				wg.Go(func() {
					x, err := iperf(e.ctx, m.Lab, m.GW, m.UE, server, v.String(), iperfOpts{secs: secs, port: 5201 + i})
					mu.Lock()
					defer mu.Unlock()
					sum.mbps += x.mbps
					errs = append(errs, err)
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			r.Rows = append(r.Rows, ThroughputRow{Tunnels: len(vips), Path: path, Proto: proto, Mbps: sum.mbps, LossPct: sum.lossPct})
		}
		return nil
	}

	o := mifOpts{auth: "psk", clone: true, mode: "per-interface", use: devs, onDown: "move", encap: true}
	e.say("three tunnels, mifike: the manager's per-interface VPNs (clones, ESP in UDP)")
	gw, err := startMif(e.ctx, e, m, "gw3", m.GW, mifGWConf(o))
	if err != nil {
		return err
	}
	ue, err := startMif(e.ctx, e, m, "ue3", m.UE, mifUEConf(o))
	if err != nil {
		return err
	}
	var vips []netip.Addr
	for _, dev := range devs {
		sa, err := waitVPN(e.ctx, ue, dev, 20*time.Second)
		if err != nil {
			return err
		}
		if len(sa.VirtualIPs) == 0 {
			return fmt.Errorf("the VPN on %s has no inner address", dev)
		}
		v, err := netip.ParseAddr(strings.Split(sa.VirtualIPs[0], "/")[0])
		if err != nil {
			return err
		}
		vips = append(vips, v)
	}
	if err := run("mifike-udp", vips); err != nil {
		return fmt.Errorf("%w\nend user's log:\n%s", err, lastLines(ue.log(), 20))
	}
	ue.proc.Stop(5 * time.Second)
	gw.proc.Stop(5 * time.Second)

	e.say("three tunnels, strongSwan: three connections, one per interface")
	ids := []string{"ue1.bench", "ue2.bench", "ue3.bench"}
	dir := filepath.Join(e.dir, "swan3")
	cg, err := startCharon(e.ctx, m.Lab, filepath.Join(dir, "gw"), m.GW, swanMifGW(o, ids...), charonOpts{})
	if err != nil {
		return err
	}
	defer cg.proc.Stop(5 * time.Second)
	cu, err := startCharon(e.ctx, m.Lab, filepath.Join(dir, "ue"), m.UE, swanMifUE(o, 0, devs, ids...), charonOpts{})
	if err != nil {
		return err
	}
	defer cu.proc.Stop(5 * time.Second)
	v, err := cu.vici()
	if err != nil {
		return err
	}
	defer v.Close()
	for _, dev := range devs {
		if _, err := v.ok("initiate", viciMsg{"ike": dev, "child": "lan", "timeout": "20000", "loglevel": "-1"}); err != nil {
			return fmt.Errorf("%w\n%s", err, cu.logTail())
		}
	}
	if vips, err = swanVIPs(e.ctx, m, cu, len(devs)); err != nil {
		return err
	}
	return run("strongswan", vips)
}

// WriteTable prints r for people.
func (r *ThroughputResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "Throughput (%g s per run) through one tunnel between two namespaces, then through three tunnels at once\n", r.Seconds)
	fmt.Fprintf(w, "on three interfaces (via a router); IKE %s, ESP %s, tunnel mode, PSK, inner addresses from the gateway's pool;\n", r.IKEProposal, r.ESPProposal)
	fmt.Fprintf(w, "TCP: iperf3, one stream per tunnel; UDP: %d-octet datagrams sent as fast as one socket per tunnel can, rate received;\n%d CPUs shared by all\n\n", udpPayload, r.CPUs)
	names := map[string]string{"plain": "plain link (no IPsec)", "mifike-udp": "mifike, userspace ESP in UDP",
		"mifike-esp":    "mifike, userspace plain ESP",
		"mifike-udp-nw": "mifike, ESP in UDP, ESP workers on every CPU", "mifike-tcp": "mifike, userspace ESP in TCP (RFC 9329)", "wireguard-go": "wireguard-go " + r.WireGuardVersion,
		"strongswan": "strongSwan " + r.StrongSwanVersion + ", kernel-libipsec (ESP in UDP)"}
	t := table{head: []string{"tunnels", "path", "TCP Mbit/s", "UDP Mbit/s", "UDP loss"}}
	seen := map[string]bool{}
	for _, x := range r.Rows {
		key := fmt.Sprint(x.Tunnels, x.Path)
		if seen[key] {
			continue
		}
		seen[key] = true
		loss := "-"
		for _, y := range r.Rows {
			if y.Tunnels == x.Tunnels && y.Path == x.Path && y.Proto == "udp" {
				loss = fmt.Sprintf("%.1f%%", y.LossPct)
			}
		}
		tun := fmt.Sprint(x.Tunnels)
		if x.Path == "plain" {
			tun = "-"
		}
		t.add(tun, names[x.Path], f1(r.find(x.Tunnels, x.Path, "tcp")), f1(r.find(x.Tunnels, x.Path, "udp")), loss)
	}
	t.write(w)
	writeRatios(w, r.Ratios)
}
