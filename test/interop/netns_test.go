package interop

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// run runs a command and fails the test with its output on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (CI runs as root; run `sudo make test`)")
	}
}

func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat(tool); err != nil {
				t.Skipf("%s not found: `make test` as root installs it (strongSwan, tshark from Debian)", tool)
			}
		}
	}
}

// topology is two namespaces joined by a veth pair: "m" runs mifike,
// "s" runs strongSwan. Each has a loopback address standing for the
// network behind it.
type topology struct {
	m, s         string
	mAddr, sAddr string
	mNet, sNet   string
}

func newTopology(t testing.TB, prefix string) *topology {
	t.Helper()
	prefix = nsPrefix(prefix)
	tp := &topology{m: prefix + "-m", s: prefix + "-s", mAddr: "10.77.0.1", sAddr: "10.77.0.2",
		mNet: "10.77.10.0/24", sNet: "10.77.20.0/24"}
	for _, ns := range []string{tp.m, tp.s} {
		exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
		run(t, "ip", "netns", "add", ns)
	}
	t.Cleanup(func() {
		for _, ns := range []string{tp.m, tp.s} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run(t, "ip", "link", "add", "m0", "netns", tp.m, "type", "veth", "peer", "name", "s0", "netns", tp.s)
	for _, c := range [][]string{
		{tp.m, "link", "set", "lo", "up"}, {tp.s, "link", "set", "lo", "up"},
		{tp.m, "addr", "add", tp.mAddr + "/24", "dev", "m0"}, {tp.s, "addr", "add", tp.sAddr + "/24", "dev", "s0"},
		{tp.m, "link", "set", "m0", "up"}, {tp.s, "link", "set", "s0", "up"},
		{tp.m, "addr", "add", "10.77.10.1/32", "dev", "lo"}, {tp.s, "addr", "add", "10.77.20.1/32", "dev", "lo"},
	} {
		run(t, "ip", append([]string{"-n", c[0]}, c[1:]...)...)
	}
	return tp
}

// waitFor polls cond every 100 ms for up to tries*100 ms.
func waitFor(tries int, sleep func(), cond func() bool) bool {
	for i := 0; i < tries; i++ {
		if cond() {
			return true
		}
		sleep()
	}
	return cond()
}

func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// nsPrefix makes namespace names unique to this test process, so two
// runs on one machine (a developer's and CI's) do not tear down each
// other's namespaces.
func nsPrefix(prefix string) string { return fmt.Sprintf("%s%d", prefix, os.Getpid()) }
