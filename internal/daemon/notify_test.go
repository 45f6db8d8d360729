package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
)

// notifySocket listens where the daemon's sd_notify messages go, as
// systemd does for a Type=notify service, and hands them out in order.
type notifySocket struct {
	c *net.UnixConn
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &notifySocket{c: c}
}

// next returns the next message that says more than STATUS= (the event
// loop may update the status between the states the test waits for),
// as its lines.
func (n *notifySocket) next(t *testing.T) []string {
	t.Helper()
	buf := make([]byte, 4096)
	for {
		n.c.SetReadDeadline(time.Now().Add(60 * time.Second))
		k, err := n.c.Read(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v", err)
		}
		lines := strings.Split(string(buf[:k]), "\n")
		for _, l := range lines {
			if l != "" && !strings.HasPrefix(l, "STATUS=") {
				return lines
			}
		}
	}
}

// expect checks that the next message has want=1 and returns its
// assignments (READY=1, STATUS=..., ...) by name.
func (n *notifySocket) expect(t *testing.T, want string) map[string]string {
	t.Helper()
	lines := n.next(t)
	vars := map[string]string{}
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	if vars[want] != "1" {
		t.Fatalf("sd_notify sent %q, want %s=1", lines, want)
	}
	return vars
}

// The daemon speaks systemd's readiness protocol (sd_notify(3)) as
// packaging/systemd/mifike.service expects of a Type=notify service:
// READY=1 once it serves, with its control socket already answering;
// RELOADING=1 with MONOTONIC_USEC, then READY=1, around a reload through
// the control socket, through SIGHUP, and around one that fails, whose
// STATUS says so; STOPPING=1 at shutdown.
func TestNotifyReadyReloadStopping(t *testing.T) {
	n := listenNotify(t)
	dir := t.TempDir()
	p := freePorts(t, 2)
	sock := filepath.Join(dir, "gw.sock")
	conf := fmt.Sprintf(`listen: [127.0.0.1]
port: %d
port_nat_t: %d
data_plane: none
control: {socket: %s}
connections:
  rw:
    local: {auth: psk, id: "@gw.test"}
    remote: {auth: psk, id: "@ue.test"}
    psk: a shared secret of sufficient length
    children:
      net: {local_ts: 10.20.0.0/24}
`, p[0], p[1], sock)
	path := filepath.Join(dir, "gw.yaml")
	writeFile(t, path, conf)
	d, err := New(path, &syncBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	status := n.expect(t, "READY")["STATUS"]
	if c, err := net.Dial("unix", sock); err != nil {
		t.Fatalf("READY=1 came before the control socket answers: %v", err)
	} else {
		c.Close()
	}
	if want := "1 connections, 0 IKE SAs up, 0 Child SAs"; status != want {
		t.Fatalf("STATUS=%q at start, want %q", status, want)
	}

	// A reload through the control socket, as the unit's ExecReload
	// (mifike reload) asks for it. MONOTONIC_USEC is what the service
	// manager needs to match this reload's READY=1.
	if err := reloadBySocket(sock); err != nil {
		t.Fatal(err)
	}
	if v := n.expect(t, "RELOADING"); v["MONOTONIC_USEC"] == "" || v["STATUS"] != "reloading "+path {
		t.Fatalf("RELOADING=1 came with %v, want MONOTONIC_USEC and the STATUS", v)
	}
	if got := n.expect(t, "READY")["STATUS"]; got != "1 connections, 0 IKE SAs up, 0 Child SAs" {
		t.Fatalf("STATUS=%q after the first reload", got)
	}

	// SIGHUP, as kill -HUP sends it, with a second connection in the
	// file: READY=1 comes once it is in force.
	writeFile(t, path, conf+`  second:
    local: {auth: psk, id: "@gw2.test"}
    remote: {auth: psk, id: "@ue2.test"}
    psk: a shared secret of sufficient length
    children:
      net: {local_ts: 10.21.0.0/24}
`)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	n.expect(t, "RELOADING")
	if got := n.expect(t, "READY")["STATUS"]; got != "2 connections, 0 IKE SAs up, 0 Child SAs" {
		t.Fatalf("STATUS=%q after the SIGHUP reload, want 2 connections", got)
	}

	// A reload that fails: READY=1 all the same (the daemon serves on with
	// what it had), and STATUS tells.
	writeFile(t, path, "")
	if err := reloadBySocket(sock); err == nil {
		t.Fatal("the reload of an empty file succeeded")
	}
	n.expect(t, "RELOADING")
	if got := n.expect(t, "READY")["STATUS"]; !strings.Contains(got, "2 connections") || !strings.Contains(got, "reload failed") {
		t.Fatalf("STATUS=%q after a failed reload, want the 2 connections still and the failure", got)
	}

	cancel()
	n.expect(t, "STOPPING")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the cleanup
}

// reloadBySocket asks the daemon to reload as "mifike reload" does.
func reloadBySocket(sock string) error {
	c, err := control.Dial(sock)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Call("reload", nil, nil)
}
