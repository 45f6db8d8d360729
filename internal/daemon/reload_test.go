package daemon

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
)

// syncBuffer is a log sink the test reads while the daemon writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePorts returns n UDP ports free on 127.0.0.1 a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var conns []net.PacketConn
	for range n {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
	}
	for _, c := range conns {
		c.Close()
	}
	return ports
}

// waitFor polls cond until it holds or a generous deadline passes (the
// machine may be loaded: this waits for a condition, it times nothing).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type runningDaemon struct {
	d    *Daemon
	log  *syncBuffer
	path string
	done chan error
}

func startDaemon(t *testing.T, path string) *runningDaemon {
	t.Helper()
	return startDaemonWith(t, path, nil)
}

// startDaemonWith is startDaemon with setup run on the daemon before it
// starts (e.g. to give it a fake data plane).
func startDaemonWith(t *testing.T, path string, setup func(*Daemon)) *runningDaemon {
	t.Helper()
	r := &runningDaemon{log: &syncBuffer{}, path: path, done: make(chan error, 1)}
	d, err := New(path, r.log)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(d)
	}
	r.d = d
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("%s: %v", path, err)
		}
	})
	return r
}

// established lists the daemon's established IKE SAs, from its loop.
func (r *runningDaemon) established() []ike.IKESAInfo {
	var out []ike.IKESAInfo
	r.d.call(func() {
		for _, s := range r.d.engine.IKESAs() {
			if s.State == ike.StateEstablished {
				out = append(out, s)
			}
		}
	})
	return out
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A reload of a file that defines no connections (an editor's truncated
// write: empty, blank, or cut before the connections section) must not
// delete the gateway's SAs: it fails, says why in the log, and every IKE
// SA stays up, through the control socket's reload and through SIGHUP.
// Written out as connections: {}, the same reload does delete them (RFC
// 7296 §1.4.1), which shows the harness would see a deletion.
func TestReloadOfEmptyConfigurationKeepsSAs(t *testing.T) {
	dir := t.TempDir()
	p := freePorts(t, 4)
	gwHead := fmt.Sprintf(`# gateway
listen: [127.0.0.1]
port: %d
port_nat_t: %d
data_plane: none
control: {socket: %s}
pools:
  rw: {addrs: 10.99.0.0/24}
`, p[0], p[1], filepath.Join(dir, "gw.sock"))
	gwConns := `connections:
  rw:
    local: {auth: psk, id: "@gw.test"}
    remote: {auth: psk, id: "@ue.test"}
    psk: a shared secret of sufficient length
    mobike: no
    pools: [rw]
    children:
      net: {local_ts: 10.20.0.0/24}
`
	ue := fmt.Sprintf(`listen: [127.0.0.1]
port: %d
port_nat_t: %d
data_plane: none
control: {socket: %s}
connections:
  home:
    remote_addrs: [127.0.0.1]
    remote_port: %d
    local: {auth: psk, id: "@ue.test"}
    remote: {auth: psk, id: "@gw.test"}
    psk: a shared secret of sufficient length
    mobike: no
    vips: [0.0.0.0]
    start_action: start
    children:
      net: {remote_ts: 10.20.0.0/24}
`, p[2], p[3], filepath.Join(dir, "ue.sock"), p[0])
	gwPath, uePath := filepath.Join(dir, "gw.yaml"), filepath.Join(dir, "ue.yaml")
	writeFile(t, gwPath, gwHead+gwConns)
	writeFile(t, uePath, ue)
	gw := startDaemon(t, gwPath)
	cl := startDaemon(t, uePath)
	waitFor(t, "the IKE SA", func() bool { return len(gw.established()) == 1 && len(cl.established()) == 1 })
	sa := gw.established()[0]
	if len(sa.PeerVirtualIPs) != 1 {
		t.Fatalf("the gateway gave %v, want one virtual IP", sa.PeerVirtualIPs)
	}

	kept := func(how string) {
		t.Helper()
		now := gw.established()
		if len(now) != 1 || now[0].ID != sa.ID || len(cl.established()) != 1 {
			t.Fatalf("%s: the gateway's IKE SAs are %+v, want SA %d kept", how, now, sa.ID)
		}
	}
	// The truncated files first: they keep listen and control as they
	// are, which reloadable() would refuse to change, so before the fix
	// they were applied (every SA deleted). A file with nothing in it
	// changes listen and control back to their defaults here, but not on a
	// gateway that runs with the defaults.
	for _, c := range []struct{ name, text, want string }{
		{"cut before connections", gwHead, gwPath + ":1: connections: missing: the file defines no connections"},
		{"cut after the key", gwHead + "connections:\n", gwPath + ":9: connections: empty: no connections follow"},
		{"empty", "", gwPath + ":1: the file is empty"},
		{"blank", "\n  \n\t\n", gwPath + ":1: the file is empty"},
		{"comments", "# gateway\n# connections:\n", gwPath + ":1: the file is empty"},
	} {
		writeFile(t, gwPath, c.text)
		_, err := backend{gw.d}.Reload()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "connections: {}") {
			t.Fatalf("%s: reload returned %v, want an error with %q and what to write", c.name, err, c.want)
		}
		if !logged(gw.log.String(), "reload failed; the running configuration and every SA are unchanged", `from="control socket"`, c.want) {
			t.Fatalf("%s: the log does not say, at ERROR, why nothing changed:\n%s", c.name, gw.log.String())
		}
		kept("reload of a file that is " + c.name)
	}

	// SIGHUP, as an editor's save hook or a service manager sends it (both
	// daemons of this process reload; the client's file is valid).
	writeFile(t, gwPath, "")
	failures := strings.Count(gw.log.String(), "reload failed")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the SIGHUP reload", func() bool {
		return strings.Count(gw.log.String(), "reload failed") > failures && strings.Contains(cl.log.String(), "configuration reloaded")
	})
	if l := gw.log.String(); !logged(l, "reload failed", "from=SIGHUP", gwPath+":1: the file is empty") {
		t.Fatalf("the SIGHUP reload's log does not say, at ERROR, why:\n%s", l)
	}
	kept("SIGHUP with an empty file")

	// Explicitly no connections: the reload applies and deletes the SA.
	writeFile(t, gwPath, gwHead+"connections: {}\n")
	if _, err := (backend{gw.d}).Reload(); err != nil {
		t.Fatalf("connections: {} refused: %v", err)
	}
	waitFor(t, "the deletion", func() bool { return len(gw.established()) == 0 && len(cl.established()) == 0 })
}

// logged reports whether one ERROR line of the log has msg and every
// one of attrs (the file:line message is quoted, so its own quotes are
// escaped: checked without them).
func logged(log, msg string, attrs ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		line = strings.ReplaceAll(line, `\"`, `"`)
		ok := strings.Contains(line, "level=ERROR") && strings.Contains(line, msg)
		for _, a := range attrs {
			ok = ok && strings.Contains(line, a)
		}
		if ok {
			return true
		}
	}
	return false
}
