//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mifike/mifike/internal/control"
)

// The handshake suite: IKE_SA_INIT + IKE_AUTH with the first Child SA,
// per second, against mifike's and strongSwan's responders. The same
// load generator (mifike's engine, many handshakes in flight from
// several source addresses) drives both responders, so the responders
// are compared against one initiator; each implementation paired with
// itself (a mifike daemon initiating through its control API, charon
// through VICI) shows both sides' CPU time as each would run.

// The handshake suites' algorithms (the issue's: x25519 and AES-GCM-128
// with PRF-HMAC-SHA256 for IKE).
const (
	HandshakeIKEProposal = "aes128gcm16-prfsha256-x25519"
	HandshakeESPProposal = "aes128gcm16"
	// The load generator's inner selector and the responder's for it.
	ueInner = "10.80.0.1/32"
	ueNet   = "10.80.0.0/24"
)

// HandshakeConfig configures Handshake.
type HandshakeConfig struct {
	Exe string
	// N timed handshakes per run, after Warmup untimed ones.
	N, Warmup int
	// Window is the number of handshakes in flight; Initiators the
	// load generator's source addresses (one engine each).
	Window, Initiators int
	// Auth lists the methods to run: "psk", "ecdsa".
	Auth []string
	// Pairs also runs each implementation against itself.
	Pairs bool
	// Profile, when set, is a directory that receives CPU profiles of
	// the mifike daemons (go tool pprof).
	Profile  string
	Progress io.Writer
}

// HandshakeRun is one run: an initiator against a responder.
type HandshakeRun struct {
	Auth      string  `json:"auth"`
	Initiator string  `json:"initiator"` // loadgen, mifike or strongswan
	Responder string  `json:"responder"` // mifike or strongswan
	OK        int     `json:"ok"`
	Failed    int     `json:"failed"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"rate"` // handshakes/s
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	// CPU milliseconds per handshake of each side's process.
	InitiatorCPUms float64 `json:"initiator_cpu_ms"`
	ResponderCPUms float64 `json:"responder_cpu_ms"`
	// ResponderCPU is the responder's CPU time over the wall time (1 =
	// one core busy).
	ResponderCPU float64 `json:"responder_cpu"`
	Retransmits  uint64  `json:"retransmits"`
	Cookies      uint64  `json:"cookies"`
}

// Ratio is one mifike/strongSwan comparison.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// HandshakeResult is what Handshake measured.
type HandshakeResult struct {
	IKEProposal       string         `json:"ike_proposal"`
	ESPProposal       string         `json:"esp_proposal"`
	N                 int            `json:"n"`
	Window            int            `json:"window"`
	Initiators        int            `json:"initiators"`
	CPUs              int            `json:"cpus"`
	StrongSwanVersion string         `json:"strongswan_version"`
	Runs              []HandshakeRun `json:"runs"`
	Ratios            []Ratio        `json:"ratios"`
	Profiles          []string       `json:"profiles,omitempty"`
}

// Handshake runs the handshake suite.
func Handshake(ctx context.Context, cfg HandshakeConfig) (res *HandshakeResult, err error) {
	cfg.Window = max(cfg.Window, 1)
	cfg.Initiators = max(cfg.Initiators, 1)
	if len(cfg.Auth) == 0 {
		cfg.Auth = []string{"psk", "ecdsa"}
	}
	if cfg.Profile != "" {
		// The daemons write their profiles there; make it, as a user expects.
		if err := os.MkdirAll(cfg.Profile, 0o755); err != nil {
			return nil, fmt.Errorf("profile directory: %w", err)
		}
	}
	e, err := newSuiteEnv(ctx, cfg.Exe, "mfkh", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := e.close(err == nil); err == nil && cerr != nil {
			err = cerr
		}
	}()
	p, err := newPKI(filepath.Join(e.dir, "pki"), gwID, ueID)
	if err != nil {
		return nil, err
	}
	r := &HandshakeResult{IKEProposal: HandshakeIKEProposal, ESPProposal: HandshakeESPProposal, N: cfg.N,
		Window: cfg.Window, Initiators: cfg.Initiators, CPUs: cpus(), StrongSwanVersion: e.ssVersion}
	type cell struct{ init, resp string }
	// mifike-noplane is mifike with data_plane: none: the same handshakes
	// without installing the Child SAs, to show the data plane's share.
	cells := []cell{{"loadgen", "mifike"}, {"loadgen", "mifike-noplane"}, {"loadgen", "strongswan"}}
	if cfg.Pairs {
		cells = append(cells, cell{"mifike", "mifike"}, cell{"strongswan", "strongswan"})
	}
	for _, auth := range cfg.Auth {
		if auth != "psk" && auth != "ecdsa" {
			return nil, fmt.Errorf("bench: unknown authentication %q (psk or ecdsa)", auth)
		}
		for i, c := range cells {
			tag := fmt.Sprintf("%s-%d", auth, i)
			e.say("handshake %s: %s initiator -> %s responder, %d handshakes, %d in flight", auth, c.init, c.resp, cfg.N, cfg.Window)
			run, profs, err := handshakeRun(e, cfg, p, auth, c.init, c.resp, tag)
			if err != nil {
				return nil, e.fail(fmt.Sprintf("handshake %s, %s -> %s", auth, c.init, c.resp), err)
			}
			r.Profiles = append(r.Profiles, profs...)
			e.say("  %.0f handshakes/s, responder %.2f ms CPU per handshake", run.Rate, run.ResponderCPUms)
			r.Runs = append(r.Runs, *run)
		}
	}
	r.Ratios = handshakeRatios(r.Runs)
	return r, nil
}

func handshakeRatios(runs []HandshakeRun) []Ratio {
	find := func(auth, init, resp string) *HandshakeRun {
		for i := range runs {
			if x := &runs[i]; x.Auth == auth && x.Initiator == init && x.Responder == resp {
				return x
			}
		}
		return nil
	}
	var out []Ratio
	for _, auth := range []string{"psk", "ecdsa"} {
		m, s := find(auth, "loadgen", "mifike"), find(auth, "loadgen", "strongswan")
		if m != nil && s != nil && s.Rate > 0 && m.ResponderCPUms > 0 {
			out = append(out, Ratio{auth + ": handshakes/s, same initiator, mifike/strongSwan responder", m.Rate / s.Rate},
				Ratio{auth + ": responder CPU per handshake, strongSwan/mifike", s.ResponderCPUms / m.ResponderCPUms})
		}
		if n := find(auth, "loadgen", "mifike-noplane"); n != nil && s != nil && s.Rate > 0 && n.ResponderCPUms > 0 {
			out = append(out, Ratio{auth + ": the same, mifike without data plane: handshakes/s", n.Rate / s.Rate},
				Ratio{auth + ": the same, mifike without data plane: CPU per handshake", s.ResponderCPUms / n.ResponderCPUms})
		}
		m, s = find(auth, "mifike", "mifike"), find(auth, "strongswan", "strongswan")
		if m != nil && s != nil && s.Rate > 0 && m.ResponderCPUms > 0 && m.InitiatorCPUms > 0 {
			out = append(out, Ratio{auth + ": handshakes/s, mifike pair/strongSwan pair", m.Rate / s.Rate},
				Ratio{auth + ": CPU per handshake (both sides), strongSwan/mifike",
					(s.InitiatorCPUms + s.ResponderCPUms) / (m.InitiatorCPUms + m.ResponderCPUms)})
		}
	}
	return out
}

// handshakeRun runs one cell in fresh namespaces.
func handshakeRun(e *suiteEnv, cfg HandshakeConfig, p pki, auth, init, resp, tag string) (*HandshakeRun, []string, error) {
	gw, ue, err := pair(e.lab, tag)
	if err != nil {
		return nil, nil, err
	}
	// The initiator's inner address exists, as on a real host: charon
	// installs its route through ipsec0 with that source.
	if err := e.lab.IP(ue, "addr", "add", ueInner, "dev", "lo"); err != nil {
		return nil, nil, err
	}
	addrs := []netip.Addr{netip.MustParseAddr(ueAddr)}
	for len(addrs) < cfg.Initiators && init == "loadgen" {
		a := addrs[len(addrs)-1].Next()
		if err := e.lab.IP(ue, "addr", "add", a.String()+"/24", "dev", "ue0"); err != nil {
			return nil, nil, err
		}
		addrs = append(addrs, a)
	}
	dir := filepath.Join(e.dir, tag)
	run := &HandshakeRun{Auth: auth, Initiator: init, Responder: resp}
	limit := time.Duration(cfg.N+cfg.Warmup)*20*time.Millisecond + 60*time.Second

	var profs []string // CPU profiles written

	// The responder.
	var respPID int
	var stopResp func() string // stops it; returns its profile, if any
	switch resp {
	case "mifike", "mifike-noplane":
		env := []string{}
		prof := ""
		if cfg.Profile != "" && init == "loadgen" {
			prof = filepath.Join(cfg.Profile, resp+"-responder-"+auth+".pprof")
			env = append(env, "MIFIKE_CPUPROFILE="+prof)
		}
		conf := hsMifikeConf(filepath.Join(dir, "gw"), p, auth, false)
		if resp == "mifike-noplane" {
			conf = strings.Replace(conf, "data_plane: userspace", "data_plane: none", 1)
		}
		d, err := startMifikeDaemonEnv(e.ctx, e.lab, e.exe, filepath.Join(dir, "gw"), gw, conf, env)
		if err != nil {
			return nil, nil, err
		}
		respPID = d.proc.Pid()
		stopResp = func() string { d.proc.Stop(10 * time.Second); return prof }
	default:
		c, err := startCharon(e.ctx, e.lab, filepath.Join(dir, "gw"), gw, hsSwanctlConf(auth, false), charonOpts{Quiet: true, Load: true, Files: p.swanctlFiles(gwID)})
		if err != nil {
			return nil, nil, err
		}
		respPID = c.pid()
		stopResp = func() string { c.proc.Stop(5 * time.Second); return "" }
	}
	defer func() {
		if stopResp != nil {
			stopResp()
		}
	}()

	var res *LoadResult
	var cpu []float64
	switch init {
	case "loadgen":
		conf := filepath.Join(dir, "loadgen.yaml")
		if err := os.WriteFile(conf, []byte(hsMifikeConf(filepath.Join(dir, "ue"), p, auth, true)), 0o600); err != nil {
			return nil, nil, err
		}
		lp, err := startLoad(e.lab, e.exe, ue, conf, addrs, cfg.N, cfg.Window, cfg.Warmup, false, limit, 0)
		if err != nil {
			return nil, nil, err
		}
		// The load generator reports its own CPU time and exits once it
		// has: reading its /proc entry after the result would race with
		// that exit (pid 0 is not measured).
		if res, cpu, err = lp.measure(e.ctx, limit, 0, respPID); err != nil {
			return nil, nil, err
		}
		run.InitiatorCPUms = res.CPUSeconds / float64(max(res.OK, 1)) * 1e3
	case "mifike":
		var env []string
		if cfg.Profile != "" {
			iprof := filepath.Join(cfg.Profile, "mifike-initiator-"+auth+".pprof")
			env = append(env, "MIFIKE_CPUPROFILE="+iprof)
			profs = append(profs, iprof)
		}
		d, err := startMifikeDaemonEnv(e.ctx, e.lab, e.exe, filepath.Join(dir, "ue"), ue, hsMifikeConf(filepath.Join(dir, "ue"), p, auth, true), env)
		if err != nil {
			return nil, nil, err
		}
		defer d.proc.Stop(10 * time.Second)
		if res, cpu, err = mifikeInitiations(e.ctx, d, cfg, respPID); err != nil {
			return nil, nil, err
		}
		run.InitiatorCPUms = cpu[0] / float64(max(res.OK, 1)) * 1e3
	default:
		c, err := startCharon(e.ctx, e.lab, filepath.Join(dir, "ue"), ue, hsSwanctlConf(auth, true), charonOpts{Quiet: true, Load: true, Files: p.swanctlFiles(ueID)})
		if err != nil {
			return nil, nil, err
		}
		if res, cpu, err = charonInitiations(e.ctx, c, cfg, respPID); err != nil {
			return nil, nil, err
		}
		run.InitiatorCPUms = cpu[0] / float64(max(res.OK, 1)) * 1e3
	}
	if prof := stopResp(); prof != "" {
		profs = append(profs, prof)
	}
	stopResp = nil
	run.OK, run.Failed, run.Seconds, run.Rate = res.OK, res.Failed, res.Seconds, res.Rate
	run.P50ms, run.P99ms, run.Retransmits, run.Cookies = res.P50ms, res.P99ms, res.Retransmits, res.Cookies
	run.ResponderCPUms = cpu[1] / float64(max(res.OK, 1)) * 1e3
	if res.Seconds > 0 {
		run.ResponderCPU = cpu[1] / res.Seconds
	}
	if res.OK == 0 {
		return nil, nil, fmt.Errorf("no handshake succeeded (%d failed)", res.Failed)
	}
	return run, profs, nil
}

// hsMifikeConf is mifike's configuration for the handshake and scale
// suites: the responder ("rw") or the initiator ("bench", which the load
// generator reads too).
func hsMifikeConf(dir string, p pki, auth string, initiator bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: warn}\ncontrol: {socket: %s}\n", filepath.Join(dir, "mifike.sock"))
	// The responder installs every Child SA in its userspace data plane,
	// as strongSwan's kernel-libipsec does in its own.
	b.WriteString("data_plane: userspace\ntun: {name: mfk0}\n")
	me, peer := gwID, ueID
	if initiator {
		me, peer = ueID, gwID
		b.WriteString("retransmit: {timeout: 2s, base: 1.8, tries: 3}\n")
		fmt.Fprintf(&b, "connections:\n  %s:\n    remote_addrs: [%s]\n", loadConn, gwAddr)
		// A new IKE SA per handshake: no INITIAL_CONTACT, which would
		// make the responder drop the others of the same identity.
		b.WriteString("    unique: no\n    mobike: no\n")
	} else {
		fmt.Fprintf(&b, "listen: [%s]\nconnections:\n  rw:\n", gwAddr)
	}
	if auth == "psk" {
		fmt.Fprintf(&b, "    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n    psk: %q\n", me, peer, psk)
	} else {
		fmt.Fprintf(&b, "    local: {auth: pubkey, id: %s, certs: [%s], key: %s}\n", me, p.cert(me), p.key(me))
		fmt.Fprintf(&b, "    remote: {auth: pubkey, id: %s, cacerts: [%s]}\n", peer, p.ca())
	}
	fmt.Fprintf(&b, "    proposals: %s\n    children:\n", HandshakeIKEProposal)
	if initiator {
		fmt.Fprintf(&b, "      net: {local_ts: [%s], remote_ts: [%s], esp_proposals: %s}\n", ueInner, gwNet, HandshakeESPProposal)
	} else {
		fmt.Fprintf(&b, "      net: {local_ts: [%s], remote_ts: [%s], esp_proposals: %s}\n", gwNet, ueNet, HandshakeESPProposal)
	}
	return b.String()
}

// hsSwanctlConf is the same for charon.
func hsSwanctlConf(auth string, initiator bool) string {
	me, peer := gwID, ueID
	if initiator {
		me, peer = ueID, gwID
	}
	var local, remote string
	if auth == "psk" {
		local = fmt.Sprintf("local { auth = psk\n            id = %s }", me)
		remote = fmt.Sprintf("remote { auth = psk\n            id = %s }", peer)
	} else {
		local = fmt.Sprintf("local { auth = pubkey\n            certs = %s.crt\n            id = %s }", me, me)
		remote = fmt.Sprintf("remote { auth = pubkey\n            id = %s\n            cacerts = ca.crt }", peer)
	}
	conn, addrs, child := "rw", "local_addrs = "+gwAddr, fmt.Sprintf("local_ts = %s\n            remote_ts = %s", gwNet, ueNet)
	if initiator {
		conn, addrs, child = loadConn, "remote_addrs = "+gwAddr, fmt.Sprintf("local_ts = %s\n            remote_ts = %s", ueInner, gwNet)
	}
	return fmt.Sprintf(`connections {
    %s {
        version = 2
        %s
        proposals = %s
        %s
        %s
        children { net { %s
            esp_proposals = %s } }
    }
}
secrets { ike { id-1 = %s
    id-2 = %s
    secret = "%s" } }
`, conn, addrs, HandshakeIKEProposal, local, remote, child, HandshakeESPProposal, ueID, gwID, psk)
}

// mifikeInitiations has a mifike daemon initiate cfg.N handshakes
// through its control API, cfg.Window at a time, each timed until its
// Child SA is up (the daemon's events).
func mifikeInitiations(ctx context.Context, d *mifikeDaemon, cfg HandshakeConfig, respPID int) (*LoadResult, []float64, error) {
	sock := filepath.Join(d.dir, "mifike.sock")
	ev, err := control.Dial(sock)
	if err != nil {
		return nil, nil, err
	}
	defer ev.Close()
	var mu sync.Mutex
	waiters := map[uint64]chan bool{}
	early := map[uint64]bool{} // events that beat the initiate's answer
	go ev.Events(func(e control.Event) bool {
		ok := e.Kind == "child-up"
		if !ok && e.Kind != "ike-failed" && e.Kind != "child-failed" && e.Kind != "ike-down" {
			return true
		}
		mu.Lock()
		if w := waiters[e.IKESA]; w != nil {
			delete(waiters, e.IKESA)
			w <- ok
		} else {
			early[e.IKESA] = ok
		}
		mu.Unlock()
		return true
	})
	one := func(c *control.Client) (time.Duration, bool, error) {
		t := time.Now()
		var r struct {
			IKESA uint64 `json:"ike_sa"`
		}
		w := make(chan bool, 1)
		if err := c.Call("initiate", map[string]any{"conn": loadConn}, &r); err != nil {
			return 0, false, err
		}
		mu.Lock()
		if ok, seen := early[r.IKESA]; seen {
			delete(early, r.IKESA)
			w <- ok
		} else {
			waiters[r.IKESA] = w
		}
		mu.Unlock()
		select {
		case ok := <-w:
			return time.Since(t), ok, nil
		case <-time.After(30 * time.Second):
			return 0, false, nil
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
	return timedInitiations(ctx, cfg, []int{d.proc.Pid(), respPID}, func() (func() (time.Duration, bool, error), func(), error) {
		c, err := control.Dial(sock)
		if err != nil {
			return nil, nil, err
		}
		return func() (time.Duration, bool, error) { return one(c) }, func() { c.Close() }, nil
	})
}

// charonInitiations does the same with charon: cfg.Window workers, each
// with a blocking VICI initiate (which returns when the Child SA is up).
func charonInitiations(ctx context.Context, c *charon, cfg HandshakeConfig, respPID int) (*LoadResult, []float64, error) {
	req := viciMsg{"ike": loadConn, "child": "net", "timeout": "30000", "init-limits": "no", "loglevel": "-1"}
	var (
		mu        sync.Mutex
		firstFail string
	)
	r, cpu, err := timedInitiations(ctx, cfg, []int{c.pid(), respPID}, func() (func() (time.Duration, bool, error), func(), error) {
		v, err := c.vici()
		if err != nil {
			return nil, nil, err
		}
		return func() (time.Duration, bool, error) {
			t := time.Now()
			r, err := v.call("initiate", req)
			if err != nil {
				return 0, false, err
			}
			if r.str("success") != "yes" {
				mu.Lock()
				if firstFail == "" {
					firstFail = r.str("errmsg")
				}
				mu.Unlock()
				return 0, false, nil
			}
			return time.Since(t), true, nil
		}, func() { v.Close() }, nil
	})
	if err == nil && r.OK == 0 {
		err = fmt.Errorf("no handshake succeeded; charon said: %s\n%s", firstFail, c.logTail())
	}
	return r, cpu, err
}

// timedInitiations runs cfg.Warmup and then cfg.N handshakes on
// cfg.Window workers made by newWorker, and the CPU time of pids over
// the timed ones.
func timedInitiations(ctx context.Context, cfg HandshakeConfig, pids []int,
	newWorker func() (func() (time.Duration, bool, error), func(), error)) (*LoadResult, []float64, error) {
	type worker struct {
		do    func() (time.Duration, bool, error)
		close func()
	}
	var ws []worker
	defer func() {
		for _, w := range ws {
			w.close()
		}
	}()
	for range cfg.Window {
		do, cl, err := newWorker()
		if err != nil {
			return nil, nil, err
		}
		ws = append(ws, worker{do, cl})
	}
	phase := func(n int) (*LoadResult, error) {
		var (
			mu   sync.Mutex
			left = n
			r    LoadResult
			lat  []float64
			errs []error
			wg   sync.WaitGroup
		)
		t0 := time.Now()
		for _, w := range ws {
			wg.Go(func() {
				for {
					mu.Lock()
					if left == 0 || len(errs) > 0 || ctx.Err() != nil {
						mu.Unlock()
						return
					}
					left--
					mu.Unlock()
					took, ok, err := w.do()
					mu.Lock()
					switch {
					case err != nil:
						errs = append(errs, err)
					case ok:
						lat = append(lat, took.Seconds())
					default:
						r.Failed++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		r.Seconds = time.Since(t0).Seconds()
		r.OK = len(lat)
		r.Rate = float64(r.OK) / r.Seconds
		r.P50ms, r.P99ms = percentile(lat, 0.5)*1e3, percentile(lat, 0.99)*1e3
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return &r, errors.Join(errs...)
	}
	if cfg.Warmup > 0 {
		if _, err := phase(cfg.Warmup); err != nil {
			return nil, nil, err
		}
	}
	m, err := startCPU(false, pids...)
	if err != nil {
		return nil, nil, err
	}
	r, err := phase(cfg.N)
	if err != nil {
		return nil, nil, err
	}
	cpu, err := m.since()
	return r, cpu, err
}

// WriteTable prints r for people.
func (r *HandshakeResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "Handshakes: IKE_SA_INIT + IKE_AUTH + first Child SA, IKE %s, ESP %s\n", r.IKEProposal, r.ESPProposal)
	fmt.Fprintf(w, "%d timed handshakes per run, %d in flight; load generator: mifike's engine from %d source addresses; %d CPUs shared by all\n\n",
		r.N, r.Window, r.Initiators, r.CPUs)
	t := table{head: []string{"auth", "initiator", "responder", "hs/s", "p50 ms", "p99 ms", "init CPU ms/hs", "resp CPU ms/hs", "resp cores", "failed", "retrans"}}
	name := map[string]string{"loadgen": "load generator", "mifike": "mifike", "mifike-noplane": "mifike, data_plane none",
		"strongswan": "strongSwan " + r.StrongSwanVersion}
	for _, x := range r.Runs {
		t.add(x.Auth, name[x.Initiator], name[x.Responder], f0(x.Rate), f1(x.P50ms), f1(x.P99ms), f2(x.InitiatorCPUms), f2(x.ResponderCPUms),
			f2(x.ResponderCPU), fmt.Sprint(x.Failed), fmt.Sprint(x.Retransmits))
	}
	t.write(w)
	writeRatios(w, r.Ratios)
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "CPU profile: go tool pprof -top %s\n", p)
	}
}
