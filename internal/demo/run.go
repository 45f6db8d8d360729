package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
)

// Step is one narrated step of the demo; with --json each is one line.
type Step struct {
	Step    string  `json:"step"`
	OK      bool    `json:"ok"`
	Seconds float64 `json:"seconds"` // since the demo started
	Took    float64 `json:"took"`    // this step
	Detail  string  `json:"detail"`
	Error   string  `json:"error,omitempty"`
}

// Runner narrates one run of the demo.
type Runner struct {
	Out  io.Writer
	JSON bool
	Bin  string // the mifike binary
	Dir  string // where configs and logs go (kept on failure)
	// EAP is how the end user authenticates: one of EAPMethods through
	// FreeRADIUS, or "" for the PSK.
	EAP string

	start     time.Time
	daemonsAt time.Time // when the end user's daemon started
	top       *Topology
	ue        *Daemon
	gw        *Daemon
}

// Run builds the lab, runs every step and tears the lab down. It returns
// the first failure.
func (r *Runner) Run(ctx context.Context) (err error) {
	r.start = time.Now()
	temp := r.Dir == ""
	if temp {
		if r.Dir, err = os.MkdirTemp("", "mifike-demo-"); err != nil {
			return err
		}
	}
	defer func() {
		if r.top != nil {
			r.top.Close()
		}
		if err == nil && temp {
			os.RemoveAll(r.Dir) // a directory the user named is theirs to keep
		} else if !r.JSON {
			fmt.Fprintf(r.Out, "\nConfigurations and daemon logs are kept in %s\n", r.Dir)
		}
	}()
	steps := []struct {
		name string
		fn   func(ctx context.Context) (string, error)
	}{
		{"lab", r.build},
		{"daemons", r.daemons},
		{"authenticate", r.authenticate},
		{"clones", r.clones},
		{"ping", r.pingAll},
		{"move", r.move},
		{"multipath", r.multipath},
		{"new-interface", r.newInterface},
		{"silent-failure", r.silentFailure},
		{"udp-blocked", r.udpBlocked},
		{"tables", r.tables},
	}
	if r.EAP != "" {
		steps = append(steps, []struct {
			name string
			fn   func(ctx context.Context) (string, error)
		}{{"radius", r.radiusCount}, {"accounting", r.accounting}}...)
	}
	for _, s := range steps {
		t := time.Now()
		detail, err := s.fn(ctx)
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		r.report(Step{Step: s.name, OK: err == nil, Seconds: time.Since(r.start).Seconds(), Took: time.Since(t).Seconds(),
			Detail: detail, Error: errString(err)})
		if err != nil {
			return fmt.Errorf("demo step %s: %w", s.name, err)
		}
	}
	if !r.JSON {
		fmt.Fprintf(r.Out, "\nAll steps passed in %.1fs; tearing the lab down.\n", time.Since(r.start).Seconds())
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

var titles = map[string]string{
	"lab":            "Lab built",
	"daemons":        "mifike started on the end user and the gateway",
	"authenticate":   "Authenticated once",
	"clones":         "One VPN per interface (clone + Child SA + MOBIKE move)",
	"ping":           "A ping through each VPN",
	"move":           "Interface cut under a TCP stream",
	"multipath":      "All interfaces at once: one MPTCP download over the three VPNs",
	"new-interface":  "A new interface appears",
	"silent-failure": "An interface goes silent (link up, packets dropped)",
	"udp-blocked":    "An interface whose network drops UDP: the VPN goes to TCP",
	"tables":         "Final state",
	"radius":         "RADIUS authentications for all those VPNs",
	"accounting":     "The end user leaves: its RADIUS accounting session",
}

func (r *Runner) report(s Step) {
	if r.JSON {
		b, _ := json.Marshal(s)
		fmt.Fprintln(r.Out, string(b))
		return
	}
	mark := "ok  "
	if !s.OK {
		mark = "FAIL"
	}
	fmt.Fprintf(r.Out, "[%6.2fs] %s %s (%.2fs)\n", s.Seconds, mark, titles[s.Step], s.Took)
	for _, l := range strings.Split(strings.TrimRight(s.Detail, "\n"), "\n") {
		if l != "" {
			fmt.Fprintf(r.Out, "           %s\n", l)
		}
	}
	if s.Error != "" {
		for _, l := range strings.Split(s.Error, "\n") {
			fmt.Fprintf(r.Out, "           error: %s\n", l)
		}
	}
}

func (r *Runner) build(ctx context.Context) (string, error) {
	t, err := Build(ctx, "mfkdemo", r.Dir, r.Bin)
	if err != nil {
		return "", err
	}
	r.top = t
	lab := `end user: eth0 10.91.1.2, wlan0 10.91.2.2, wwan0 10.91.3.2 (three access networks)
router between them and the gateway
gateway: up0 10.92.1.2, up1 10.92.2.2; protects 10.93.0.0/24 (server 10.93.0.2)`
	if r.EAP != "" {
		lab += fmt.Sprintf("\nFreeRADIUS 3.2 on %s, behind the gateway's aaa0 %s (started with the daemons)", RADIUSAddr, strings.TrimSuffix(radiusGWEnd, "/24"))
	}
	return lab, nil
}

func (r *Runner) daemons(ctx context.Context) (string, error) {
	var err error
	r.daemonsAt = time.Now()
	// TCP encapsulation (RFC 9329) where UDP goes unanswered: the
	// gateway listens on TCP 4500, the end user falls back after 2 s.
	o := Options{EAP: r.EAP, GatewayTCP: true, MPTCP: true, UE: Settings{Conn: []string{"tcp: fallback", "tcp_fallback_after: 2s"}}}
	if r.EAP != "" {
		o.Metrics = metricsAddr
	}
	r.ue, r.gw, err = r.top.StartBoth(o)
	if err != nil {
		return "", err
	}
	policy := "policy: per-interface over eth0, wlan0, wwan0, usb*; interface down: move; back: move back; UDP unanswered for 2 s: TCP (RFC 9329); an MPTCP endpoint per VPN"
	if r.EAP == "" {
		return policy + "\nauthentication: pre-shared key on both sides", nil
	}
	return fmt.Sprintf("%s\nend user: %s as %q; gateway: certificate %s, EAP passed to FreeRADIUS %s (aaa namespace, RFC 3579)",
		policy, r.EAP, EAPIdentity(r.EAP), gatewayID, RADIUSAddr), nil
}

// established returns the end user's established IKE SAs with Child SAs.
func (r *Runner) vpns() (map[string]control.SA, error) {
	sas, err := r.ue.SAs()
	if err != nil {
		return nil, err
	}
	out := map[string]control.SA{}
	for _, s := range sas {
		if s.State == ike.StateEstablished && len(s.Children) > 0 {
			out[IfaceOf(s)] = s
		}
	}
	return out, nil
}

// IfaceOf is the end-user interface an SA uses.
func IfaceOf(s control.SA) string {
	if s.Iface != "" {
		return s.Iface
	}
	local, _ := netip.ParseAddrPort(s.Local)
	for _, a := range Accesses() {
		if local.Addr().String() == a.Addr {
			return a.Dev
		}
	}
	return s.Local
}

func (r *Runner) waitVPNs(want []string, timeout time.Duration) (map[string]control.SA, error) {
	var got map[string]control.SA
	var err error
	ok := WaitFor(timeout, func() bool {
		got, err = r.vpns()
		if err != nil {
			return false
		}
		for _, w := range want {
			if _, ok := got[w]; !ok {
				return false
			}
		}
		return true
	})
	if !ok {
		if err == nil {
			err = fmt.Errorf("VPNs on %v after %v, want %v", keys(got), timeout, want)
		}
		return got, err
	}
	return got, nil
}

func keys(m map[string]control.SA) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (r *Runner) authenticate(ctx context.Context) (string, error) {
	v, err := r.waitVPNs([]string{"eth0"}, 15*time.Second)
	if err != nil {
		return "", err
	}
	s := v["eth0"]
	how := "IKE_SA_INIT + IKE_AUTH"
	if s.EAPMethod != "" {
		how = fmt.Sprintf("IKE_SA_INIT + IKE_AUTH with %s as %q", s.EAPMethod, s.EAPIdentity)
	}
	return fmt.Sprintf("IKE SA %d on eth0 (%s) up %s after the daemon started, inner address %s, %s",
		s.ID, how, r.since(s.Established), strings.Join(s.VirtualIPs, ","), s.Proposal), nil
}

// since is how long after the daemons started t was.
func (r *Runner) since(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return fmt.Sprintf("%dms", max(t.Sub(r.daemonsAt).Milliseconds(), 0))
}

func (r *Runner) clones(ctx context.Context) (string, error) {
	v, err := r.waitVPNs([]string{"eth0", "wlan0", "wwan0"}, 15*time.Second)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, dev := range []string{"eth0", "wlan0", "wwan0"} {
		s := v[dev]
		how := "authenticated"
		if s.Parent != 0 {
			how = fmt.Sprintf("clone of IKE SA %d", s.Parent)
		}
		fmt.Fprintf(&b, "%-6s IKE SA %d (%s, up at +%s), inner %s, SPIs %s_i %s_r\n", dev, s.ID, how, r.since(s.Established),
			strings.Join(s.VirtualIPs, ","), s.SPIi, s.SPIr)
	}
	// An authentication begins with IKE_AUTH message 1 (the first after
	// IKE_SA_INIT); EAP adds rounds with later message IDs.
	log := r.gw.Log()
	auths := strings.Count(log, "received IKE_AUTH request 1 [")
	if rounds := strings.Count(log, "received IKE_AUTH request"); rounds != auths {
		fmt.Fprintf(&b, "the gateway saw %d authentication(s) (IKE_AUTH, %d rounds with EAP) for 3 VPNs", auths, rounds)
	} else {
		fmt.Fprintf(&b, "the gateway saw %d IKE_AUTH exchange(s) for 3 VPNs", auths)
	}
	if auths != 1 {
		return b.String(), fmt.Errorf("%d authentications, want 1", auths)
	}
	return b.String(), nil
}

func (r *Runner) pingAll(ctx context.Context) (string, error) {
	v, err := r.vpns()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, dev := range []string{"eth0", "wlan0", "wwan0"} {
		s := v[dev]
		src := s.VirtualIPs[0]
		t := time.Now()
		if err := r.top.Ping(ctx, r.top.UE, src, Server); err != nil {
			return b.String(), fmt.Errorf("ping from %s through %s's VPN: %w", src, dev, err)
		}
		fmt.Fprintf(&b, "%s -> %s through the %s VPN: 3/3 replies (%.2fs)\n", src, Server, dev, time.Since(t).Seconds())
	}
	return b.String(), nil
}

func (r *Runner) move(ctx context.Context) (string, error) {
	v, err := r.vpns()
	if err != nil {
		return "", err
	}
	wlan := v["wlan0"]
	vip := netip.MustParseAddr(wlan.VirtualIPs[0])
	stream, err := r.top.StartStream(vip)
	if err != nil {
		return "", fmt.Errorf("TCP stream from %s: %w", vip, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "TCP stream %s -> %s:7000 through the wlan0 VPN, a record every 10 ms\n", vip, Server)
	time.Sleep(time.Second)
	if err := r.top.SetLink("wlan0", false); err != nil {
		return b.String(), err
	}
	cut := time.Now()
	on := func(dev string) bool {
		sas, _ := r.ue.SAs()
		for _, s := range sas {
			if s.ID == wlan.ID && IfaceOf(s) == dev {
				return true
			}
		}
		return false
	}
	if !WaitFor(10*time.Second, func() bool { return !on("wlan0") && (on("eth0") || on("wwan0")) }) {
		return b.String(), errors.New("the wlan0 VPN did not move")
	}
	fmt.Fprintf(&b, "wlan0 down: its VPN (IKE SA %d) moved by MOBIKE in %dms, inner address %s kept\n", wlan.ID, time.Since(cut).Milliseconds(), vip)
	time.Sleep(2 * time.Second)
	if err := r.top.SetLink("wlan0", true); err != nil {
		return b.String(), err
	}
	back := time.Now()
	if !WaitFor(10*time.Second, func() bool { return on("wlan0") }) {
		return b.String(), errors.New("the VPN did not move back to wlan0")
	}
	fmt.Fprintf(&b, "wlan0 back: the VPN returned in %dms\n", time.Since(back).Milliseconds())
	time.Sleep(time.Second)
	sent, received, err := stream.Stop()
	fmt.Fprintf(&b, "TCP stream: %d records sent, %d received, connection never reset", sent, received)
	if err != nil || received != sent {
		return b.String(), fmt.Errorf("the TCP stream broke: sent %d, received %d, %v", sent, received, err)
	}
	return b.String(), nil
}

func (r *Runner) newInterface(ctx context.Context) (string, error) {
	if err := r.top.PrepareInterface(Extra); err != nil {
		return "", err
	}
	t := time.Now() // from the address, as the daemon sees it
	if err := r.top.AddressInterface(Extra); err != nil {
		return "", err
	}
	v, err := r.waitVPNs([]string{"eth0", "wlan0", "wwan0", "usb0"}, 10*time.Second)
	if err != nil {
		return "", err
	}
	s := v["usb0"]
	took := time.Since(t)
	if err := r.top.Ping(ctx, r.top.UE, s.VirtualIPs[0], Server); err != nil {
		return "", err
	}
	return fmt.Sprintf("usb0 (10.91.4.2) plugged in: IKE SA %d (clone of %d) up on it in %dms, inner %s, ping ok",
		s.ID, s.Parent, took.Milliseconds(), s.VirtualIPs[0]), nil
}

func (r *Runner) silentFailure(ctx context.Context) (string, error) {
	v, err := r.vpns()
	if err != nil {
		return "", err
	}
	wwan := v["wwan0"]
	if err := r.top.Blackhole(ctx, "wwan0", true); err != nil {
		return "", err
	}
	defer r.top.Blackhole(context.Background(), "wwan0", false)
	t := time.Now()
	moved := WaitFor(30*time.Second, func() bool {
		sas, _ := r.ue.SAs()
		for _, s := range sas {
			if s.ID == wwan.ID && IfaceOf(s) != "wwan0" {
				return true
			}
		}
		return false
	})
	if !moved {
		return "", errors.New("the VPN stayed on the silent interface")
	}
	took := time.Since(t)
	if err := r.top.Ping(ctx, r.top.UE, wwan.VirtualIPs[0], Server); err != nil {
		return "", err
	}
	return fmt.Sprintf("liveness checks and path probing moved the wwan0 VPN after %.1fs; ping from %s ok", took.Seconds(), wwan.VirtualIPs[0]), nil
}

// udpBlocked takes wlan0 to a network that drops IKE's UDP (a hotel's):
// its VPN comes back to wlan0 in TCP (RFC 9329 §7.1) while the others
// stay on UDP.
func (r *Runner) udpBlocked(ctx context.Context) (string, error) {
	v, err := r.vpns()
	if err != nil {
		return "", err
	}
	wlan := v["wlan0"]
	if err := r.top.SetLink("wlan0", false); err != nil {
		return "", err
	}
	if !WaitFor(10*time.Second, func() bool {
		sas, _ := r.ue.SAs()
		for _, s := range sas {
			if s.ID == wlan.ID && IfaceOf(s) != "wlan0" {
				return true
			}
		}
		return false
	}) {
		return "", errors.New("wlan0's VPN did not leave wlan0")
	}
	if err := r.top.BlockUDP(ctx, "wlan0", true); err != nil {
		return "", err
	}
	defer r.top.BlockUDP(context.Background(), "wlan0", false)
	t := time.Now()
	if err := r.top.SetLink("wlan0", true); err != nil {
		return "", err
	}
	var back control.SA
	if !WaitFor(30*time.Second, func() bool {
		sas, _ := r.ue.SAs()
		for _, s := range sas {
			if s.ID == wlan.ID && IfaceOf(s) == "wlan0" && s.TCP {
				back = s
				return true
			}
		}
		return false
	}) {
		return "", errors.New("wlan0's VPN did not come back to wlan0 in TCP")
	}
	took := time.Since(t)
	if err := r.top.Ping(ctx, r.top.UE, wlan.VirtualIPs[0], Server); err != nil {
		return "", err
	}
	sas, err := r.ue.SAs()
	if err != nil {
		return "", err
	}
	others, udp := 0, 0
	for _, s := range sas {
		if s.ID != wlan.ID && len(s.Children) > 0 {
			others++
			if !s.TCP {
				udp++
			}
		}
	}
	return fmt.Sprintf("wlan0 rejoined a network that drops UDP 500/4500: its VPN (IKE SA %d) came back to wlan0 in TCP (RFC 9329) %.1fs later, ping from %s through it ok; %d of the other %d VPNs on UDP",
		back.ID, took.Seconds(), wlan.VirtualIPs[0], udp, others), nil
}

func (r *Runner) tables(ctx context.Context) (string, error) {
	return "end user (mifike list-sas):\n" + r.ue.Table(ctx) + "\ngateway (mifike list-sas):\n" + r.gw.Table(ctx), nil
}
