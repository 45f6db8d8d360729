//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/mifike/mifike/internal/lab"
)

// suiteEnv is what every suite needs: root, the tools, a directory, a
// lab, and a way to say what it is doing.
type suiteEnv struct {
	ctx       context.Context
	lab       *lab.Lab
	dir       string
	exe       string
	ssVersion string
	progress  io.Writer
}

func newSuiteEnv(ctx context.Context, exe, prefix string, progress io.Writer) (*suiteEnv, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: network namespaces need root; run it as root (e.g. with sudo)")
	}
	v, err := checkTools()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mifike-bench-")
	if err != nil {
		return nil, err
	}
	l, err := lab.New(ctx, prefix)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &suiteEnv{ctx: ctx, lab: l, dir: dir, exe: exe, ssVersion: v, progress: progress}, nil
}

func (e *suiteEnv) say(format string, args ...any) {
	if e.progress != nil {
		fmt.Fprintf(e.progress, format+"\n", args...)
	}
}

// fail wraps a step's error; the directory with configurations and logs
// stays for a look unless the run was interrupted.
func (e *suiteEnv) fail(step string, err error) error {
	if e.ctx.Err() != nil {
		e.lab.Close()
		os.RemoveAll(e.dir)
		return fmt.Errorf("bench: %s: interrupted", step)
	}
	return fmt.Errorf("bench: %s: %w\n(configurations and logs are in %s)", step, err, e.dir)
}

// close removes the lab and, when ok, the directory (kept with
// MIFIKE_BENCH_KEEP=1, to read the daemons' logs).
func (e *suiteEnv) close(ok bool) error {
	err := e.lab.Close()
	if os.Getenv("MIFIKE_BENCH_KEEP") != "" {
		e.say("configurations and logs are in %s", e.dir)
	} else if ok && err == nil {
		os.RemoveAll(e.dir)
	}
	return err
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
