//go:build linux

// Package bench measures mifike against a reference. ESP is the data
// plane benchmark behind "mifike bench esp": one tunnel between two
// network namespaces, one TCP stream through it (iperf3), mifike's
// userspace ESP and strongSwan's kernel-libipsec (also userspace ESP, on
// a TUN device) in the same run, so the ratio compares the two on the
// same machine under the same load.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/mifike/mifike/internal/lab"
)

// The negotiated algorithms, the same for both implementations.
const (
	IKEProposal = "aes128-sha256-x25519"
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

// ESPConfig configures ESP.
type ESPConfig struct {
	// Exe is the mifike binary the daemons run.
	Exe string
	// Duration of each iperf3 run (whole seconds; at least 1 s).
	Duration time.Duration
	// Progress receives one line per step; nil for none.
	Progress io.Writer
}

// ESPResult is what ESP measured. Rates are iperf3's received rate in
// Mbit/s (10^6 bit/s).
//
// kernel-libipsec always sends ESP in UDP (RFC 3948), so Mifike, the
// figure the ratio compares, is mifike doing the same (encap: true);
// MifikePlain is mifike's plain ESP (IP protocol 50), what it sends when
// no NAT is in the way.
type ESPResult struct {
	IKEProposal string  `json:"ike_proposal"`
	ESPProposal string  `json:"esp_proposal"`
	Seconds     float64 `json:"seconds"`
	Baseline    float64 `json:"baseline_mbps"` // the veth link without IPsec
	Mifike      float64 `json:"mifike_mbps"`
	MifikePlain float64 `json:"mifike_plain_esp_mbps"`
	StrongSwan  float64 `json:"strongswan_mbps"`
	// Ratio is Mifike / StrongSwan, RatioPlain MifikePlain / StrongSwan.
	Ratio             float64 `json:"ratio"`
	RatioPlain        float64 `json:"ratio_plain_esp"`
	StrongSwanVersion string  `json:"strongswan_version"`
	// CPUs this process may use; everything (daemons, iperf3, the
	// kernel's side of both) shares them.
	CPUs int `json:"cpus"`
}

// ESP runs the benchmark: the plain link, mifike with ESP in UDP and
// with plain ESP, then strongSwan, each tunnel in fresh namespaces. It
// needs root, iperf3 and strongSwan with kernel-libipsec. Cancelling ctx
// stops it and removes everything.
func ESP(ctx context.Context, cfg ESPConfig) (*ESPResult, error) {
	secs := max(int((cfg.Duration+time.Second-1)/time.Second), 1)
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: network namespaces need root; run it as root (e.g. with sudo)")
	}
	ssVersion, err := checkTools()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mifike-bench-")
	if err != nil {
		return nil, err
	}
	l, err := lab.New(ctx, "mfkb")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	fail := func(step string, err error) (*ESPResult, error) {
		if ctx.Err() != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("bench: %s: interrupted", step)
		}
		return nil, fmt.Errorf("bench: %s: %w\n(configurations and logs are in %s)", step, err, dir)
	}
	r := &ESPResult{IKEProposal: IKEProposal, ESPProposal: ESPProposal, Seconds: float64(secs),
		StrongSwanVersion: ssVersion, CPUs: runtime.NumCPU()}

	progress("plain link: iperf3 for %d s", secs)
	gw, ue, err := pair(l, "base")
	if err != nil {
		return fail("building the namespaces", err)
	}
	if r.Baseline, err = iperf(ctx, l, gw, ue, gwAddr, ueAddr, secs); err != nil {
		return fail("iperf3 over the plain link", err)
	}

	for _, encap := range []bool{true, false} {
		name, tag, rate := "mifike (ESP in UDP)", "udp", &r.Mifike
		if !encap {
			name, tag, rate = "mifike (plain ESP)", "esp", &r.MifikePlain
		}
		if gw, ue, err = pair(l, tag); err != nil {
			return fail("building the namespaces", err)
		}
		progress("%s: starting two daemons (%s)", name, cfg.Exe)
		m, err := startMifike(ctx, l, cfg.Exe, filepath.Join(dir, tag), gw, ue, encap)
		if err != nil {
			return fail(name, err)
		}
		progress("%s: tunnel up, virtual IP %s; iperf3 for %d s", name, m.vip, secs)
		*rate, err = iperf(ctx, l, gw, ue, gwHost, m.vip, secs)
		if err != nil {
			return fail("iperf3 through "+name, fmt.Errorf("%w\n%s", err, m.logs()))
		}
		m.stop() // idle, but out of strongSwan's way all the same
	}

	progress("strongSwan: starting two charons (kernel-libipsec)")
	if gw, ue, err = pair(l, "swan"); err != nil {
		return fail("building the namespaces", err)
	}
	vip, err := startStrongSwan(ctx, l, dir, gw, ue)
	if err != nil {
		return fail("strongSwan", err)
	}
	progress("strongSwan: tunnel up, virtual IP %s; iperf3 for %d s", vip, secs)
	if r.StrongSwan, err = iperf(ctx, l, gw, ue, gwHost, vip, secs); err != nil {
		return fail("iperf3 through strongSwan", err)
	}
	if r.StrongSwan > 0 {
		r.Ratio, r.RatioPlain = r.Mifike/r.StrongSwan, r.MifikePlain/r.StrongSwan
	}
	if err := l.Close(); err != nil {
		return fail("cleaning up", err)
	}
	os.RemoveAll(dir)
	return r, nil
}

// pair makes namespaces TAG-gw and TAG-ue joined by a veth pair, with
// the protected host on gw's loopback.
func pair(l *lab.Lab, tag string) (gw, ue string, err error) {
	if gw, err = l.AddNS(tag + "-gw"); err != nil {
		return
	}
	if ue, err = l.AddNS(tag + "-ue"); err != nil {
		return
	}
	if err = l.Veth(lab.End{NS: gw, Dev: "gw0", Addrs: []string{gwAddr + "/24"}},
		lab.End{NS: ue, Dev: "ue0", Addrs: []string{ueAddr + "/24"}}); err != nil {
		return
	}
	err = l.IP(gw, "addr", "add", gwHost+"/32", "dev", "lo")
	return
}

// checkTools finds what the benchmark runs besides mifike and returns
// strongSwan's version.
func checkTools() (string, error) {
	const hint = "; run scripts/install-deps.sh (as root) to install it"
	if _, err := exec.LookPath("iperf3"); err != nil {
		return "", errors.New("bench: iperf3 is not installed" + hint)
	}
	if _, err := os.Stat(charonPath); err != nil {
		return "", fmt.Errorf("bench: strongSwan's charon (%s) is not installed%s", charonPath, hint)
	}
	if _, err := exec.LookPath("swanctl"); err != nil {
		return "", errors.New("bench: strongSwan's swanctl is not installed" + hint)
	}
	if _, err := os.Stat(libipsecPlugin); err != nil {
		return "", fmt.Errorf("bench: strongSwan's kernel-libipsec plugin (%s) is not installed%s", libipsecPlugin, hint)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "", errors.New("bench: /dev/net/tun is missing: both implementations need a TUN device (modprobe tun)")
	}
	return strongSwanVersion(), nil
}

// WriteTable prints r for people.
func (r *ESPResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "ESP throughput: one TCP stream (iperf3, %g s) between two network namespaces, %d CPUs shared by all\n", r.Seconds, r.CPUs)
	fmt.Fprintf(w, "IKE %s, ESP %s, tunnel mode, PSK, virtual IP from the gateway's pool\n\n", r.IKEProposal, r.ESPProposal)
	rows := [][2]string{
		{"plain veth link (no IPsec)", mbps(r.Baseline)},
		{"mifike, userspace ESP in UDP", mbps(r.Mifike)},
		{"mifike, userspace plain ESP", mbps(r.MifikePlain)},
		{fmt.Sprintf("strongSwan %s, kernel-libipsec (ESP in UDP)", r.StrongSwanVersion), mbps(r.StrongSwan)},
		{"mifike / strongSwan (both ESP in UDP)", fmt.Sprintf("%.2fx", r.Ratio)},
		{"mifike plain ESP / strongSwan", fmt.Sprintf("%.2fx", r.RatioPlain)},
	}
	width := 0
	for _, row := range rows {
		width = max(width, len(row[0]))
	}
	fmt.Fprintf(w, "%-*s  %9s\n", width, "", "Mbit/s")
	for _, row := range rows {
		fmt.Fprintf(w, "%-*s  %9s\n", width, row[0], row[1])
	}
}

func mbps(v float64) string { return fmt.Sprintf("%.1f", v) }
