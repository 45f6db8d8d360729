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
	"syscall"
	"time"
)

// The scale suite: a responder holding many IKE SAs, each with one Child
// SA, all made by the load generator: its memory (RSS) and CPU time
// while they were made and while it holds them. mifike installs each
// Child SA in its userspace data plane (or none, to see the daemon
// alone); strongSwan installs each Child SA in kernel-libipsec, the only
// Child SA backend it has here (Debian ships no load-tester and its fake
// kernel interface).

// ScaleConfig configures Scale.
type ScaleConfig struct {
	Exe string
	// Sizes are the numbers of IKE SAs to hold.
	Sizes []int
	// Idle is how long the held SAs are watched for CPU time.
	Idle time.Duration
	// Window is the number of handshakes in flight while filling.
	Window int
	// FillLimit bounds how long a responder is given to take the SAs;
	// one that is slower is measured with those it took by then.
	FillLimit time.Duration
	// Profile, when set, receives a heap profile of the mifike responder
	// per size.
	Profile string
	// DataPlane is mifike's data_plane: userspace (the default, like
	// strongSwan's kernel-libipsec) or none.
	DataPlane string
	// Responders are the responders to measure: mifike and strongswan
	// (both when empty). mifike alone is what one runs while cutting its
	// memory.
	Responders []string
	Progress   io.Writer
}

// ScaleRun is one responder holding one number of SAs.
type ScaleRun struct {
	Responder string `json:"responder"`
	SAs       int    `json:"sas"` // asked for
	// Held is how many it holds: SAs, unless filling took longer than
	// the limit.
	Held   int `json:"held"`
	Failed int `json:"failed"`
	// RSS before the first SA and with every SA up.
	RSSBefore  uint64  `json:"rss_before"`
	RSSAfter   uint64  `json:"rss_after"`
	BytesPerSA float64 `json:"bytes_per_sa"`
	// Filling: wall time, rate and the responder's CPU per SA.
	FillSeconds float64 `json:"fill_seconds"`
	FillRate    float64 `json:"fill_rate"`
	CPUmsPerSA  float64 `json:"cpu_ms_per_sa"`
	// IdleCPU is the responder's CPU time over wall time while it only
	// holds the SAs (1 = one core busy).
	IdleCPU float64 `json:"idle_cpu"`
}

// ScaleResult is what Scale measured.
type ScaleResult struct {
	IKEProposal       string     `json:"ike_proposal"`
	ESPProposal       string     `json:"esp_proposal"`
	IdleSeconds       float64    `json:"idle_seconds"`
	CPUs              int        `json:"cpus"`
	StrongSwanVersion string     `json:"strongswan_version"`
	MifikeDataPlane   string     `json:"mifike_data_plane"`
	Runs              []ScaleRun `json:"runs"`
	Ratios            []Ratio    `json:"ratios"`
	Profiles          []string   `json:"profiles,omitempty"`
}

func (*ScaleResult) Suite() string { return "scale" }

// Scale runs the scale suite.
func Scale(ctx context.Context, cfg ScaleConfig) (res *ScaleResult, err error) {
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = []int{10000, 50000}
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 10 * time.Second
	}
	cfg.Window = max(cfg.Window, 8)
	switch cfg.DataPlane {
	case "":
		cfg.DataPlane = "userspace"
	case "userspace", "none":
	default:
		return nil, fmt.Errorf("scale: data plane %q: use userspace or none", cfg.DataPlane)
	}
	if cfg.FillLimit <= 0 {
		cfg.FillLimit = 4 * time.Minute
	}
	if len(cfg.Responders) == 0 {
		cfg.Responders = []string{"mifike", "strongswan"}
	}
	for _, x := range cfg.Responders {
		if x != "mifike" && x != "strongswan" {
			return nil, fmt.Errorf("scale: responder %q: use mifike or strongswan", x)
		}
	}
	if cfg.Profile != "" {
		// The daemons write their profiles there; make it, as a user expects.
		if err := os.MkdirAll(cfg.Profile, 0o755); err != nil {
			return nil, fmt.Errorf("profile directory: %w", err)
		}
	}
	e, err := newSuiteEnv(ctx, cfg.Exe, "mfks", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := e.close(err == nil); err == nil && cerr != nil {
			err = cerr
		}
	}()
	r := &ScaleResult{IKEProposal: HandshakeIKEProposal, ESPProposal: HandshakeESPProposal, IdleSeconds: cfg.Idle.Seconds(),
		CPUs: cpus(), StrongSwanVersion: e.ssVersion, MifikeDataPlane: cfg.DataPlane}
	for _, n := range cfg.Sizes {
		for _, resp := range cfg.Responders {
			e.say("scale: %s responder, %d IKE SAs with one Child SA each", resp, n)
			run, prof, err := scaleRun(e, cfg, n, resp)
			if err != nil {
				return nil, e.fail(fmt.Sprintf("scale %s %d", resp, n), err)
			}
			e.say("  RSS %.1f MiB, %.0f bytes per SA, %.2f ms CPU per SA", float64(run.RSSAfter)/(1<<20), run.BytesPerSA, run.CPUmsPerSA)
			if prof != "" {
				r.Profiles = append(r.Profiles, prof)
			}
			r.Runs = append(r.Runs, *run)
		}
		var m, s *ScaleRun
		for i := range r.Runs {
			if x := &r.Runs[i]; x.SAs == n {
				if x.Responder == "mifike" {
					m = x
				} else {
					s = x
				}
			}
		}
		if m != nil && s != nil && m.BytesPerSA > 0 && m.CPUmsPerSA > 0 {
			what := fmt.Sprintf("%d SAs", n)
			if s.Held < n || m.Held < n {
				what = fmt.Sprintf("%d SAs (mifike %d, strongSwan %d held)", n, m.Held, s.Held)
			}
			r.Ratios = append(r.Ratios, Ratio{what + ": memory per SA, strongSwan/mifike", s.BytesPerSA / m.BytesPerSA},
				Ratio{what + ": CPU per SA made, strongSwan/mifike", s.CPUmsPerSA / m.CPUmsPerSA})
		}
	}
	return r, nil
}

func scaleRun(e *suiteEnv, cfg ScaleConfig, n int, resp string) (*ScaleRun, string, error) {
	tag := fmt.Sprintf("s%d-%s", n, resp[:1])
	gw, ue, err := pair(e.lab, tag)
	if err != nil {
		return nil, "", err
	}
	addrs := []netip.Addr{netip.MustParseAddr(ueAddr), netip.MustParseAddr(ueAddr).Next()}
	if err := e.lab.IP(ue, "addr", "add", addrs[1].String()+"/24", "dev", "ue0"); err != nil {
		return nil, "", err
	}
	dir := filepath.Join(e.dir, tag)
	p, err := newPKI(filepath.Join(dir, "pki"), gwID, ueID)
	if err != nil {
		return nil, "", err
	}
	var pid int
	var stop func()
	prof := ""
	if resp == "mifike" {
		var env []string
		if cfg.Profile != "" {
			prof = filepath.Join(cfg.Profile, fmt.Sprintf("mifike-responder-heap-%d.pprof", n))
			env = append(env, "MIFIKE_MEMPROFILE="+prof)
		}
		conf := strings.Replace(hsMifikeConf(filepath.Join(dir, "gw"), p, "psk", false), "data_plane: userspace", "data_plane: "+cfg.DataPlane, 1)
		d, err := startMifikeDaemonEnv(e.ctx, e.lab, e.exe, filepath.Join(dir, "gw"), gw, conf, env)
		if err != nil {
			return nil, "", err
		}
		pid, stop = d.proc.Pid(), func() { d.proc.Stop(30 * time.Second) }
	} else {
		c, err := startCharon(e.ctx, e.lab, filepath.Join(dir, "gw"), gw, hsSwanctlConf("psk", false), charonOpts{Quiet: true, Load: true})
		if err != nil {
			return nil, "", err
		}
		pid, stop = c.pid(), func() { c.proc.Stop(10 * time.Second) }
	}
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	// Settle after start-up before the first reading.
	time.Sleep(500 * time.Millisecond)
	run := &ScaleRun{Responder: resp, SAs: n}
	if run.RSSBefore, err = rssBytes(pid); err != nil {
		return nil, "", err
	}
	conf := filepath.Join(dir, "loadgen.yaml")
	if err := os.WriteFile(conf, []byte(hsMifikeConf(filepath.Join(dir, "ue"), p, "psk", true)), 0o600); err != nil {
		return nil, "", err
	}
	limit := cfg.FillLimit + time.Minute
	lp, err := startLoad(e.lab, e.exe, ue, conf, addrs, n, cfg.Window, 0, true, 2*limit, cfg.FillLimit)
	if err != nil {
		return nil, "", err
	}
	res, cpu, err := lp.measure(e.ctx, limit, pid)
	if err != nil {
		return nil, "", err
	}
	run.Held, run.Failed = res.OK, res.Failed
	run.FillSeconds, run.FillRate = res.Seconds, res.Rate
	run.CPUmsPerSA = cpu[0] / float64(max(res.OK, 1)) * 1e3
	if res.OK == 0 || (!res.Partial && res.OK < n*99/100) {
		return nil, "", fmt.Errorf("only %d of %d SAs came up (%d failed)", res.OK, n, res.Failed)
	}
	// Let the last messages settle, then watch it hold them.
	time.Sleep(time.Second)
	idle, err := startCPU(false, pid)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-time.After(cfg.Idle):
	case <-e.ctx.Done():
		return nil, "", e.ctx.Err()
	}
	used, err := idle.since()
	if err != nil {
		return nil, "", err
	}
	run.IdleCPU = used[0] / cfg.Idle.Seconds()
	if run.RSSAfter, err = rssBytes(pid); err != nil {
		return nil, "", err
	}
	run.BytesPerSA = (float64(run.RSSAfter) - float64(run.RSSBefore)) / float64(res.OK)
	if prof != "" {
		// The daemon writes its heap on SIGUSR1 (MIFIKE_MEMPROFILE).
		os.Remove(prof)
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			return nil, "", err
		}
		if err := waitFor(e.ctx, 30*time.Second, func() (bool, error) {
			st, err := os.Stat(prof)
			return err == nil && st.Size() > 0 && time.Since(st.ModTime()) > 200*time.Millisecond, nil
		}); err != nil {
			return nil, "", fmt.Errorf("heap profile %s: %w", prof, err)
		}
	}
	stop()
	stop = nil
	lp.proc.Stop(10 * time.Second)
	return run, prof, nil
}

// WriteTable prints r for people.
func (r *ScaleResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "Scale: a responder holding IKE SAs with one Child SA each (IKE %s, ESP %s, PSK), made by the load generator\n",
		r.IKEProposal, r.ESPProposal)
	fmt.Fprintf(w, "mifike with data_plane: %s; strongSwan %s with kernel-libipsec; idle CPU over %g s; %d CPUs\n\n", r.MifikeDataPlane, r.StrongSwanVersion, r.IdleSeconds, r.CPUs)
	t := table{head: []string{"responder", "IKE SAs held", "RSS before MiB", "RSS after MiB", "bytes/SA", "fill s", "SAs/s", "CPU ms/SA", "idle cores", "failed"}}
	for _, x := range r.Runs {
		name := "mifike"
		if x.Responder == "strongswan" {
			name = "strongSwan " + r.StrongSwanVersion
		}
		held := fmt.Sprint(x.Held)
		if x.Held < x.SAs {
			held = fmt.Sprintf("%d of %d (fill limit)", x.Held, x.SAs)
		}
		t.add(name, held, f1(float64(x.RSSBefore)/(1<<20)), f1(float64(x.RSSAfter)/(1<<20)), f0(x.BytesPerSA),
			f1(x.FillSeconds), f0(x.FillRate), f2(x.CPUmsPerSA), fmt.Sprintf("%.3f", x.IdleCPU), fmt.Sprint(x.Failed))
	}
	t.write(w)
	writeRatios(w, r.Ratios)
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "heap profile of the mifike responder: go tool pprof -top -sample_index=inuse_space %s\n", p)
	}
}
