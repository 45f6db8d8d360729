//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
)

// The new-interface suite: the end user has its VPN on eth0 and a new
// interface (usb0) comes up (gets its address). mifike's manager gives it a VPN of its own
// by cloning the IKE SA (RFC 7791), creating a Child SA on the clone and
// moving the clone onto usb0 (MOBIKE); or, with cloning off, by a full
// new authentication, which is all strongSwan can do (a second
// connection from usb0's address). For each: the IKE messages, round
// trips and bytes between the two (counted where they cross the
// router), CPU time on both ends, and the time from usb0 coming up until
// the VPN on it is up, at emulated round-trip times (the delay line in
// the router, see delay.go).

// NewInterfaceConfig configures NewInterface.
type NewInterfaceConfig struct {
	Exe string
	// RTTs are the emulated round-trip times.
	RTTs []time.Duration
	// Auth lists the methods: "psk", "ecdsa", and the end user by EAP
	// through FreeRADIUS: "eap-mschapv2", "eap-tls" (mifike only: a
	// clone against a new EAP authentication, see newiface_eap.go).
	Auth []string
	// RADIUSRTT is the round-trip time of the gateway's link to
	// FreeRADIUS (the command's default is DefaultRADIUSRTT).
	RADIUSRTT time.Duration
	// EAPIdentity is the gateway's remote.eap_id: "ask" (default, an
	// EAP Identity round) or "ike" (the IKE identity, one round trip
	// less for a new authentication).
	EAPIdentity string
	// Profile, when set, is a directory for CPU profiles of both mifike
	// daemons of each case (whole runs: start-up and the first
	// authentication too, then every new interface).
	Profile string
	// Runs per case; medians are reported.
	Runs     int
	Progress io.Writer
}

// NewInterfaceRun is one case: a way to bring up the VPN at one RTT.
type NewInterfaceRun struct {
	Impl   string  `json:"impl"`   // mifike or strongswan
	Method string  `json:"method"` // clone (clone + Child SA + MOBIKE move) or auth (new IKE_SA_INIT + IKE_AUTH)
	Auth   string  `json:"auth"`
	RTTms  float64 `json:"rtt_ms"`
	Runs   int     `json:"runs"`
	// Medians over the runs.
	UpMs      float64 `json:"up_ms"`     // usb0 up until its VPN is up
	WireMs    float64 `json:"wire_ms"`   // first to last IKE message at the router
	Exchanges int     `json:"exchanges"` // IKE requests: round trips
	Messages  int     `json:"messages"`  // IKE messages both ways
	Bytes     int     `json:"bytes"`     // their IP packets
	UECPUms   float64 `json:"ue_cpu_ms"` // the end user's daemon
	GWCPUms   float64 `json:"gw_cpu_ms"` // the gateway's
	Sequence  string  `json:"sequence"`  // the requests' exchange types, of one run
	// What crossed the RADIUS link per added interface (EAP only): the
	// most of any run, since a clone must send none in every run.
	AccessRequests     int `json:"access_requests"`
	AccountingRequests int `json:"accounting_requests"`
	Logins             int `json:"logins"`       // FreeRADIUS's "Login OK"
	RADIUSBytes        int `json:"radius_bytes"` // median
}

// NewInterfaceResult is what NewInterface measured.
type NewInterfaceResult struct {
	IKEProposal       string            `json:"ike_proposal"`
	CPUs              int               `json:"cpus"`
	StrongSwanVersion string            `json:"strongswan_version"`
	Runs              []NewInterfaceRun `json:"runs"`
	Ratios            []Ratio           `json:"ratios"`
	// The EAP methods' RADIUS link and families (newiface_eap.go).
	RADIUSRTTms float64        `json:"radius_rtt_ms"`
	Families    []EAPFamilyRun `json:"families,omitempty"`
	// StartUp is the start-up case (startup.go), with psk.
	StartUp []StartUpRun `json:"start_up,omitempty"`
}

func (*NewInterfaceResult) Suite() string { return "new-interface" }

// NewInterface runs the new-interface suite.
func NewInterface(ctx context.Context, cfg NewInterfaceConfig) (res *NewInterfaceResult, err error) {
	if len(cfg.RTTs) == 0 {
		cfg.RTTs = []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond}
	}
	if len(cfg.Auth) == 0 {
		cfg.Auth = []string{"psk", "ecdsa"}
	}
	cfg.Runs = max(cfg.Runs, 1)
	e, err := newSuiteEnv(ctx, cfg.Exe, "mfkn", cfg.Progress)
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
	dl, err := newDelayLine(m.Lab, m.Net)
	if err != nil {
		return nil, e.fail("building the lab", err)
	}
	defer dl.close()
	p, err := newPKI(filepath.Join(e.dir, "pki"), gwID, ueID)
	if err != nil {
		return nil, err
	}
	r := &NewInterfaceResult{IKEProposal: mifProposal, CPUs: cpus(), StrongSwanVersion: e.ssVersion}
	var rad *radiusSite
	cases := []struct{ impl, method string }{{"mifike", "clone"}, {"mifike", "auth"}, {"strongswan", "auth"}}
	for _, auth := range cfg.Auth {
		if isEAP(auth) {
			if rad == nil {
				if rad, err = newRADIUSSite(m, dl, cfg.RADIUSRTT); err != nil {
					return nil, e.fail("building the RADIUS link", err)
				}
				r.RADIUSRTTms = float64(cfg.RADIUSRTT) / 1e6
			}
			o := mifOpts{auth: auth, mode: "per-interface", use: []string{"eth0", "usb0"},
				onDown: "delete", rt: retransmitOpts{Timeout: time.Second, Base: 1.4, Tries: 2}, pki: p, eapID: cfg.EAPIdentity}
			runs, fams, err := eapCases(e, m, dl, cfg, rad, o)
			if err != nil {
				return nil, e.fail("new-interface "+auth, err)
			}
			r.Runs = append(r.Runs, runs...)
			r.Families = append(r.Families, fams...)
			continue
		}
		for i, c := range cases {
			o := mifOpts{auth: auth, clone: c.method == "clone", mode: "per-interface", use: []string{"eth0", "usb0"},
				onDown: "delete", rt: retransmitOpts{Timeout: time.Second, Base: 1.4, Tries: 2}, pki: p}
			e.say("new-interface %s: %s (%s)", auth, c.impl, c.method)
			var runs []NewInterfaceRun
			var err error
			tag := fmt.Sprintf("%s-%d", auth, i)
			if c.impl == "mifike" {
				runs, err = newIfaceMifike(e, m, dl, cfg, o, tag)
			} else {
				runs, err = newIfaceSwan(e, m, dl, cfg, o, tag)
			}
			if err != nil {
				return nil, e.fail(fmt.Sprintf("new-interface %s %s %s", auth, c.impl, c.method), err)
			}
			for _, x := range runs {
				e.say("  RTT %3.0f ms: up in %.1f ms, %d round trips, %d bytes", x.RTTms, x.UpMs, x.Exchanges, x.Bytes)
			}
			r.Runs = append(r.Runs, runs...)
		}
	}
	if slices.Contains(cfg.Auth, "psk") {
		rtt := slices.Max(cfg.RTTs)
		e.say("new-interface: start-up with three interfaces, RTT %v", rtt)
		o := mifOpts{auth: "psk", clone: true, mode: "per-interface", onDown: "delete",
			rt: retransmitOpts{Timeout: time.Second, Base: 1.4, Tries: 2}, pki: p}
		run, err := startUpMifike(e, m, dl, cfg, o, rtt)
		if err != nil {
			return nil, e.fail("new-interface start-up", err)
		}
		e.say("  all three VPNs in %.1f ms, %.2f round trips", run.UpMs, run.RoundTrips)
		r.StartUp = append(r.StartUp, run)
	}
	r.Ratios = newIfaceRatios(r.Runs)
	return r, nil
}

func newIfaceRatios(runs []NewInterfaceRun) []Ratio {
	find := func(impl, method, auth string, rtt float64) *NewInterfaceRun {
		for i := range runs {
			if x := &runs[i]; x.Impl == impl && x.Method == method && x.Auth == auth && x.RTTms == rtt {
				return x
			}
		}
		return nil
	}
	var out []Ratio
	for _, x := range runs {
		if x.Impl != "mifike" || x.Method != "clone" {
			continue
		}
		if isEAP(x.Auth) {
			out = append(out, eapRatios(x, find("mifike", "auth", x.Auth, x.RTTms), x.RTTms == runs[0].RTTms)...)
			continue
		}
		s := find("strongswan", "auth", x.Auth, x.RTTms)
		if s == nil || x.UpMs <= 0 || x.GWCPUms <= 0 {
			continue
		}
		what := fmt.Sprintf("%s, RTT %.0f ms: strongSwan new authentication / mifike clone", x.Auth, x.RTTms)
		out = append(out, Ratio{what + ", time to VPN up", s.UpMs / x.UpMs})
		if x.RTTms == runs[0].RTTms {
			out = append(out, Ratio{fmt.Sprintf("%s: strongSwan new authentication / mifike clone, gateway CPU", x.Auth), s.GWCPUms / x.GWCPUms},
				Ratio{fmt.Sprintf("%s: strongSwan new authentication / mifike clone, bytes", x.Auth), float64(s.Bytes) / float64(x.Bytes)})
		}
	}
	return out
}

// eapRatios compare a new EAP authentication a with the clone x at one
// RTT; at the first RTT also gateway CPU and bytes.
func eapRatios(x NewInterfaceRun, a *NewInterfaceRun, first bool) []Ratio {
	if a == nil || x.UpMs <= 0 || x.GWCPUms <= 0 || x.Bytes == 0 {
		return nil
	}
	what := fmt.Sprintf("%s, RTT %.0f ms: new EAP authentication / clone", x.Auth, x.RTTms)
	out := []Ratio{{what + ", time to VPN up", a.UpMs / x.UpMs}}
	if first {
		out = append(out, Ratio{fmt.Sprintf("%s: new EAP authentication / clone, gateway CPU", x.Auth), a.GWCPUms / x.GWCPUms},
			Ratio{fmt.Sprintf("%s: new EAP authentication / clone, IKE bytes", x.Auth), float64(a.Bytes) / float64(x.Bytes)})
	}
	return out
}

// trial is one measured bring-up.
type trial struct {
	up     time.Duration
	count  ikeCount
	ue, gw float64 // CPU seconds
	logins int     // FreeRADIUS's accepted authentications
}

func summarize(impl, method, auth string, rtt time.Duration, ts []trial) NewInterfaceRun {
	r := NewInterfaceRun{Impl: impl, Method: method, Auth: auth, RTTms: float64(rtt) / 1e6, Runs: len(ts)}
	med := func(f func(t trial) float64) float64 {
		v := make([]float64, len(ts))
		for i, t := range ts {
			v[i] = f(t)
		}
		return median(v)
	}
	r.UpMs = med(func(t trial) float64 { return float64(t.up) / 1e6 })
	r.WireMs = med(func(t trial) float64 { return float64(t.count.Span) / 1e6 })
	r.Exchanges = int(med(func(t trial) float64 { return float64(t.count.Requests) }))
	r.Messages = int(med(func(t trial) float64 { return float64(t.count.Messages) }))
	r.Bytes = int(med(func(t trial) float64 { return float64(t.count.Bytes) }))
	r.UECPUms = med(func(t trial) float64 { return t.ue * 1e3 })
	r.GWCPUms = med(func(t trial) float64 { return t.gw * 1e3 })
	r.Sequence = strings.Join(ts[len(ts)-1].count.Exchanges, ", ")
	for _, t := range ts {
		r.AccessRequests = max(r.AccessRequests, t.count.RADIUS.AccessRequests)
		r.AccountingRequests = max(r.AccountingRequests, t.count.RADIUS.AccountingRequests)
		r.Logins = max(r.Logins, t.logins)
	}
	r.RADIUSBytes = int(med(func(t trial) float64 { return float64(t.count.RADIUS.Bytes) }))
	return r
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// settle waits until no IKE message crossed the router for a while and
// returns what did since the last take: called before a trial, it makes
// sure nothing of the last one is still in flight; after, it counts
// what followed the last step too (e.g. the answer to an address
// announcement).
func settle(ctx context.Context, dl *delayLine, rtt time.Duration) (ikeCount, error) {
	gap := 300*time.Millisecond + 2*rtt
	acc := dl.take()
	err := waitFor(ctx, 20*time.Second, func() (bool, error) {
		time.Sleep(gap)
		c := dl.take()
		acc.add(c)
		return c.Messages == 0 && c.RADIUS.Bytes == 0, nil
	})
	return acc, err
}

// events follows a mifike daemon's events, per IKE SA: the daemon's
// time of the latest event of each SA and when we received it.
//
// The time a VPN came up is the daemon's time of the last event of the
// SA that carries it. The event stream and the SA listing are separate
// connections, so the listing can show the VPN before its last event
// has reached us: upAt waits for that event, and for the SA's events to
// go quiet, instead of taking whatever event came last.
type events struct {
	c    *control.Client
	mu   sync.Mutex
	sa   map[uint64]eventTimes
	kick chan struct{}
}

type eventTimes struct {
	at       time.Time // the daemon's time of the SA's latest event
	received time.Time // when it reached us
}

// eventsQuiet is how long an SA's events must have been quiet before
// its latest one is taken as the moment its VPN came up.
const eventsQuiet = 150 * time.Millisecond

func followEvents(d *mifikeDaemon) (*events, error) {
	c, err := control.Dial(d.sock())
	if err != nil {
		return nil, err
	}
	ev := &events{c: c, sa: map[uint64]eventTimes{}, kick: make(chan struct{}, 1)}
	go c.Events(func(e control.Event) bool {
		ev.mu.Lock()
		if t := ev.sa[e.IKESA]; e.Time.After(t.at) {
			ev.sa[e.IKESA] = eventTimes{at: e.Time, received: time.Now()}
		}
		ev.mu.Unlock()
		select {
		case ev.kick <- struct{}{}:
		default:
		}
		return true
	})
	return ev, nil
}

// startMifProfiled starts a mifike daemon of the lab, with a CPU profile
// to dir/NAME.pprof when dir is set.
func startMifProfiled(e *suiteEnv, m *mifLab, name, ns, conf, dir string) (*mifikeDaemon, error) {
	if dir == "" {
		return startMif(e.ctx, e, m, name, ns, conf)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	prof, err := filepath.Abs(filepath.Join(dir, name+".pprof"))
	if err != nil {
		return nil, err
	}
	d := filepath.Join(e.dir, name)
	conf = fmt.Sprintf("control: {socket: %s}\n", filepath.Join(d, "mifike.sock")) + conf
	return startMifikeDaemonEnv(e.ctx, m.Lab, e.exe, d, ns, conf, []string{"MIFIKE_CPUPROFILE=" + prof})
}

// anyQuiet says whether some SA had events after since that have been
// quiet for eventsQuiet.
func (ev *events) anyQuiet(since time.Time) bool {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, t := range ev.sa {
		if t.at.After(since) && time.Since(t.received) >= eventsQuiet {
			return true
		}
	}
	return false
}

// upAt is the daemon's time of the latest event of IKE SA id, once that
// event is after since and the SA's events have been quiet for
// eventsQuiet; ok is false until then.
func (ev *events) upAt(id uint64, since time.Time) (time.Time, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	t, ok := ev.sa[id]
	if !ok || !t.at.After(since) || time.Since(t.received) < eventsQuiet {
		return time.Time{}, false
	}
	return t.at, true
}

func newIfaceMifike(e *suiteEnv, m *mifLab, dl *delayLine, cfg NewInterfaceConfig, o mifOpts, tag string) ([]NewInterfaceRun, error) {
	dl.setRTT(0)
	gw, err := startMifProfiled(e, m, "gw-"+tag, m.GW, mifGWConf(o), cfg.Profile)
	if err != nil {
		return nil, err
	}
	defer gw.proc.Stop(5 * time.Second)
	ue, err := startMifProfiled(e, m, "ue-"+tag, m.UE, mifUEConf(o), cfg.Profile)
	if err != nil {
		return nil, err
	}
	defer ue.proc.Stop(5 * time.Second)
	if _, err := waitVPN(e.ctx, ue, "eth0", 15*time.Second); err != nil {
		return nil, err
	}
	ev, err := followEvents(ue)
	if err != nil {
		return nil, err
	}
	defer ev.c.Close()
	method := "auth"
	if o.clone {
		method = "clone"
	}
	var out []NewInterfaceRun
	for _, rtt := range cfg.RTTs {
		dl.setRTT(rtt)
		var ts []trial
		for range cfg.Runs {
			if _, err := settle(e.ctx, dl, rtt); err != nil {
				return nil, err
			}
			cpu, err := startCPU(true, ue.proc.Pid(), gw.proc.Pid())
			if err != nil {
				return nil, err
			}
			logins := o.rad.loginCount()
			t0 := time.Now()
			if err := m.plugUSB(true); err != nil {
				return nil, err
			}
			var done time.Time
			err = waitFor(e.ctx, 20*time.Second+20*rtt, func() (bool, error) {
				select {
				case <-ev.kick:
				case <-time.After(20 * time.Millisecond):
				}
				// The SA list only once an SA's events since t0 have gone
				// quiet: listing costs the daemon CPU, which this suite
				// measures (a list every 20 ms was most of the end user's
				// CPU per new interface).
				if !ev.anyQuiet(t0) {
					return false, nil
				}
				sas, err := ue.sas()
				if err != nil {
					return false, err
				}
				sa, ok := vpnOn(sas, "usb0")
				if !ok {
					return false, nil
				}
				done, ok = ev.upAt(sa.ID, t0)
				return ok, nil
			})
			if err != nil {
				return nil, fmt.Errorf("no VPN on usb0: %w\n%s", err, lastLines(ue.log(), 30))
			}
			count, err := settle(e.ctx, dl, rtt)
			if err != nil {
				return nil, err
			}
			used, err := cpu.since()
			if err != nil {
				return nil, err
			}
			ts = append(ts, trial{up: done.Sub(t0), count: count, ue: used[0], gw: used[1], logins: o.rad.loginCount() - logins})
			if err := m.plugUSB(false); err != nil {
				return nil, err
			}
			if err := waitFor(e.ctx, 20*time.Second, func() (bool, error) {
				sas, err := ue.sas()
				if err != nil {
					return false, err
				}
				for _, s := range sas {
					if demo.IfaceOf(s) == "usb0" {
						return false, nil
					}
				}
				return true, nil
			}); err != nil {
				return nil, fmt.Errorf("the VPN on usb0 stayed after usb0 went down: %w", err)
			}
		}
		out = append(out, summarize("mifike", method, o.auth, rtt, ts))
	}
	return out, nil
}

func newIfaceSwan(e *suiteEnv, m *mifLab, dl *delayLine, cfg NewInterfaceConfig, o mifOpts, tag string) ([]NewInterfaceRun, error) {
	dl.setRTT(0)
	co := charonOpts{Retransmit: o.rt}
	if o.auth == "ecdsa" {
		co.Files = o.pki.swanctlFiles(gwID)
	}
	dir := filepath.Join(e.dir, "swan-"+tag)
	gw, err := startCharon(e.ctx, m.Lab, filepath.Join(dir, "gw"), m.GW, swanMifGW(o, ueID), co)
	if err != nil {
		return nil, err
	}
	defer gw.proc.Stop(5 * time.Second)
	if o.auth == "ecdsa" {
		co.Files = o.pki.swanctlFiles(ueID)
	}
	ue, err := startCharon(e.ctx, m.Lab, filepath.Join(dir, "ue"), m.UE, swanMifUE(o, 0, []string{"eth0", "usb0"}, ueID), co)
	if err != nil {
		return nil, err
	}
	defer ue.proc.Stop(5 * time.Second)
	v, err := ue.vici()
	if err != nil {
		return nil, err
	}
	defer v.Close()
	initiate := func(conn string) error {
		_, err := v.ok("initiate", viciMsg{"ike": conn, "child": "lan", "timeout": "20000", "loglevel": "-1"})
		return err
	}
	if err := initiate("eth0"); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, ue.logTail())
	}
	var out []NewInterfaceRun
	for _, rtt := range cfg.RTTs {
		dl.setRTT(rtt)
		var ts []trial
		for range cfg.Runs {
			if _, err := settle(e.ctx, dl, rtt); err != nil {
				return nil, err
			}
			cpu, err := startCPU(true, ue.pid(), gw.pid())
			if err != nil {
				return nil, err
			}
			t0 := time.Now()
			if err := m.plugUSB(true); err != nil {
				return nil, err
			}
			if err := initiate("usb0"); err != nil {
				return nil, fmt.Errorf("%w\n%s", err, ue.logTail())
			}
			up := time.Since(t0)
			count, err := settle(e.ctx, dl, rtt)
			if err != nil {
				return nil, err
			}
			used, err := cpu.since()
			if err != nil {
				return nil, err
			}
			ts = append(ts, trial{up: up, count: count, ue: used[0], gw: used[1]})
			// Delete the SA while its path works, then take usb0 away.
			if _, err := v.ok("terminate", viciMsg{"ike": "usb0", "timeout": "10000", "loglevel": "-1"}); err != nil {
				return nil, err
			}
			if err := m.plugUSB(false); err != nil {
				return nil, err
			}
		}
		out = append(out, summarize("strongswan", "auth", o.auth, rtt, ts))
	}
	return out, nil
}

// WriteTable prints r for people.
func (r *NewInterfaceResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "New interface: the end user's VPN is up on eth0; usb0 comes up and gets a VPN of its own (IKE %s, medians)\n", r.IKEProposal)
	fmt.Fprintf(w, "clone = RFC 7791 clone + Child SA + MOBIKE move; auth = IKE_SA_INIT + IKE_AUTH with Child SA; RTT emulated by a delay line in the router\n")
	t := table{head: []string{"impl", "method", "auth", "RTT ms", "up ms", "wire ms", "round trips", "messages", "bytes", "UE CPU ms", "GW CPU ms", "requests"}}
	for _, x := range r.Runs {
		if isEAP(x.Auth) {
			continue // in writeEAPTables, with the RADIUS columns
		}
		name := "mifike"
		if x.Impl == "strongswan" {
			name = "strongSwan " + r.StrongSwanVersion
		}
		t.add(name, x.Method, x.Auth, f0(x.RTTms), f1(x.UpMs), f1(x.WireMs), fmt.Sprint(x.Exchanges), fmt.Sprint(x.Messages),
			fmt.Sprint(x.Bytes), f2(x.UECPUms), f2(x.GWCPUms), x.Sequence)
	}
	if len(t.rows) > 0 {
		fmt.Fprintln(w)
		t.write(w)
	}
	r.writeEAPTables(w)
	r.writeStartUp(w)
	writeRatios(w, r.Ratios)
}
