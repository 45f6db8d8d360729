// Package kernelvm tests mifike's kernel data plane (internal/xfrm) on a
// real Linux IPsec stack. The CI machine's kernel has no ESP, so
// TestKernelVM boots Debian 12's stock kernel under qemu (run-vm.sh: a
// busybox initramfs with the host's iproute2) and runs, inside it, two
// static test binaries: internal/xfrm's kernel tests (algorithms, UDP
// encapsulation, moves by XFRM_MIGRATE and by re-installation, rekeys,
// refusals, byte limits, traps, leftovers) and this package's guest
// tests (mifike against mifike, both with data_plane: kernel, in the demo
// lab, with a VPN per interface and with a trapped Child SA brought up by
// the kernel's XFRM acquire; and mifike against libreswan with IKE and
// ESP in TCP, RFC 9329, when libreswan-pack.sh could pack it). One boot serves both; a warm run
// takes about a minute and a half under TCG.
package kernelvm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestKernelVM(t *testing.T) {
	if os.Getenv("MIFIKE_IN_VM") != "" {
		t.Skip("already inside the VM")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the kernel VM test boots an amd64 Debian kernel under qemu on Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("the kernel VM test needs root: it installs qemu and downloads Debian's kernel with apt-get (CI runs as root)")
	}
	if testing.Short() {
		t.Skip("-short: the kernel VM test boots a VM")
	}
	if err := ensureQEMU(); err != nil {
		t.Skipf("qemu cannot be installed here, so the kernel data plane is not tested: %v", err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	// Static binaries: the VM has no libc.
	for _, b := range [][]string{
		{"build", "-o", filepath.Join(bin, "mifike"), "./cmd/mifike"},
		{"test", "-c", "-o", filepath.Join(bin, "xfrm.test"), "./internal/xfrm"},
		{"test", "-c", "-o", filepath.Join(bin, "kernelvm.test"), "./test/kernelvm"},
	} {
		cmd := exec.CommandContext(ctx, "go", b...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(b, " "), err, out)
		}
	}
	run := strings.Join([]string{
		"xfrm.test -test.v -test.run '^TestVM'",
		"kernelvm.test -test.v -test.run '^TestGuest'",
	}, "\n")
	cmd := exec.CommandContext(ctx, filepath.Join(root, "test/kernelvm/run-vm.sh"),
		filepath.Join(bin, "mifike"), filepath.Join(bin, "xfrm.test"), filepath.Join(bin, "kernelvm.test"))
	// VM_LIBRESWAN: pack libreswan and espintcp.ko for TestGuestLibreswan;
	// where that cannot be done, that guest test skips and says why.
	cmd.Env = append(os.Environ(), "VM_RUN="+run, "VM_LIBRESWAN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	// The figures and results, then (on failure) the whole console.
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "FIGURE:") || strings.HasPrefix(l, "--- ") || strings.HasPrefix(l, "    --- ") ||
			strings.HasPrefix(l, "INIT: finished") || strings.HasPrefix(l, "RESULT:") || strings.HasPrefix(l, "[run-vm") ||
			strings.HasPrefix(l, "[libreswan-pack") {
			t.Log(l)
		}
	}
	t.Logf("the VM test took %.0fs", time.Since(start).Seconds())
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		// run-vm.sh could not get the kernel package: no package mirror.
		t.Skipf("the kernel package cannot be downloaded here:\n%s", tailLines(out.String(), 10))
	}
	if err != nil || !strings.Contains(out.String(), "RESULT: PASS") {
		t.Fatalf("the kernel VM test failed (%v); console:\n%s", err, out.String())
	}
}

// ensureQEMU installs qemu-system-x86 with apt-get when it is missing.
func ensureQEMU() error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("qemu-system-x86_64 is missing and there is no apt-get to install it")
	}
	install := func() error {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install qemu-system-x86: %v: %s", err, tailLines(string(out), 5))
		}
		return nil
	}
	if install() == nil {
		return nil
	}
	exec.Command("apt-get", "update", "-qq").Run()
	return install()
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
