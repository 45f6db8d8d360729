//go:build linux

package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Report is one suite's result: a table for people, JSON for machines.
type Report interface {
	Suite() string
	WriteTable(w io.Writer)
}

func (*HandshakeResult) Suite() string { return "handshake" }

// Machine describes where a run took place.
type Machine struct {
	CPUs              int    `json:"cpus"`
	CPUModel          string `json:"cpu_model"`
	Kernel            string `json:"kernel"`
	Go                string `json:"go"`
	StrongSwanVersion string `json:"strongswan_version"`
	Date              string `json:"date"`
}

// ThisMachine describes this one.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), StrongSwanVersion: strongSwanVersion(),
		Date: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// All is the result of "mifike bench all".
type All struct {
	Machine Machine           `json:"machine"`
	Suites  map[string]Report `json:"suites"`
}

// AllReport gathers the suites' reports.
func AllReport(rs []Report) *All {
	a := &All{Machine: ThisMachine(), Suites: map[string]Report{}}
	for _, r := range rs {
		a.Suites[r.Suite()] = r
	}
	return a
}

// deps maps what a benchmark runs (a command, or a file) to the Debian
// package that provides it; scripts/install-deps.sh has the same list.
var deps = []struct{ what, pkg string }{
	{"iperf3", "iperf3"},
	{charonPath, "strongswan-charon"},
	{"swanctl", "strongswan-swanctl"},
	{libipsecPlugin, "libcharon-extra-plugins"},
	{"/usr/lib/ipsec/plugins/libstrongswan-openssl.so", "libstrongswan-standard-plugins"},
	{"/usr/lib/ipsec/plugins/libstrongswan-curve25519.so", "libstrongswan-extra-plugins"},
	{"ip", "iproute2"},
	{"nft", "nftables"},
	{"/usr/sbin/freeradius", "freeradius"}, // new-interface's EAP methods (internal/radiuslab)
}

func missingPackages() []string {
	var out []string
	for _, d := range deps {
		if strings.HasPrefix(d.what, "/") {
			if _, err := os.Stat(d.what); err == nil {
				continue
			}
		} else if _, err := exec.LookPath(d.what); err == nil {
			continue
		}
		out = append(out, d.pkg)
	}
	return out
}

// EnsureTools installs what the suites run besides mifike (strongSwan,
// iperf3, nftables) with apt-get when it is missing, as
// scripts/install-deps.sh does, saying so on progress.
func EnsureTools(progress io.Writer) error {
	missing := missingPackages()
	if len(missing) == 0 {
		return nil
	}
	hint := "run scripts/install-deps.sh as root, or apt-get install " + strings.Join(missing, " ")
	if os.Geteuid() != 0 {
		return fmt.Errorf("bench: missing %s and not root to install them; %s", strings.Join(missing, ", "), hint)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("bench: missing %s and no apt-get to install them; install the equivalent packages", strings.Join(missing, ", "))
	}
	fmt.Fprintf(progress, "installing %s (apt-get)\n", strings.Join(missing, " "))
	install := func() error {
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, lastLines(string(out), 5))
		}
		return nil
	}
	// iperf3 asks whether to start a daemon; no.
	preseed := exec.Command("debconf-set-selections")
	preseed.Stdin = strings.NewReader("iperf3 iperf3/start_daemon boolean false\n")
	preseed.Run()
	if err := install(); err != nil {
		if out, uerr := exec.Command("apt-get", "update").CombinedOutput(); uerr != nil {
			return fmt.Errorf("bench: apt-get update: %v: %s; %s", uerr, lastLines(string(out), 5), hint)
		}
		if err := install(); err != nil {
			return fmt.Errorf("bench: apt-get install %s: %w; %s", strings.Join(missing, " "), err, hint)
		}
	}
	if m := missingPackages(); len(m) > 0 {
		return errors.New("bench: still missing after apt-get: " + strings.Join(m, ", "))
	}
	return nil
}
