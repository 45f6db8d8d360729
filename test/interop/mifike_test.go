package interop

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mifikeBin is built once per test binary (TestMain) from this checkout.
var mifikeBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "mifike-interop-bin")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			mifikeBin = filepath.Join(dir, "mifike")
			build := exec.Command("go", "build", "-o", mifikeBin, "github.com/mifike/mifike/cmd/mifike")
			if out, err := build.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "building mifike: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// daemon is one mifike daemon in a namespace.
type daemon struct {
	t    testing.TB
	dir  string
	ns   string
	cmd  *exec.Cmd
	sock string
}

func startMifike(t testing.TB, ns, dir, config string) *daemon {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	cfg := filepath.Join(dir, "mifike.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "mifike.log"))
	cmd := exec.Command("ip", "netns", "exec", ns, mifikeBin, "daemon", "-c", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, ns: ns, cmd: cmd, sock: filepath.Join(dir, "mifike.sock")}
	t.Cleanup(d.stop)
	if !waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		_, err := os.Stat(d.sock)
		return err == nil
	}) {
		t.Fatalf("mifike did not start:\n%s", d.logTail(20))
	}
	return d
}

func (d *daemon) stop() {
	if d.cmd.Process == nil || d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
	}
}

func (d *daemon) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "mifike.log"))
	return tail(b, n)
}

// ctl runs a CLI verb against this daemon (the control socket is a file,
// reachable from any namespace).
func (d *daemon) ctl(args ...string) (string, error) {
	cmd := exec.Command(mifikeBin, args...)
	cmd.Env = append(os.Environ(), "MIFIKE_SOCKET="+d.sock)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *daemon) mustCtl(args ...string) string {
	d.t.Helper()
	out, err := d.ctl(args...)
	if err != nil {
		d.t.Fatalf("mifike %s: %v\n%s\ndaemon log:\n%s", strings.Join(args, " "), err, out, d.logTail(30))
	}
	return out
}

// sa is mifike's list-sas --json element (the fields compared here).
type sa struct {
	ID        uint64 `json:"id"`
	Conn      string `json:"conn"`
	State     string `json:"state"`
	Initiator bool   `json:"initiator"`
	SPIi      string `json:"spi_i"`
	SPIr      string `json:"spi_r"`
	Proposal  string `json:"proposal"`
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Family    uint64 `json:"family"`
	Parent    uint64 `json:"parent"`
	// CloneSupported and MOBIKEInitiator: RFC 7791 §5.1, RFC 4555 §2.1.
	CloneSupported  bool   `json:"clone_supported"`
	MOBIKEInitiator bool   `json:"mobike_initiator"`
	Iface           string `json:"iface"`
	// EAPIdentity and EAPMethod: the authentication was by EAP (RFC 7296
	// §2.16), as this identity, by this method.
	EAPIdentity string    `json:"eap_identity"`
	EAPMethod   string    `json:"eap_method"`
	Children    []saChild `json:"children"`
}

// saChild is a Child SA in list-sas --json.
type saChild struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	InSPI    string `json:"in_spi"`
	OutSPI   string `json:"out_spi"`
	Proposal string `json:"proposal"`
}

func (d *daemon) sas() []sa {
	d.t.Helper()
	var out []sa
	if err := json.Unmarshal([]byte(d.mustCtl("list-sas", "--json")), &out); err != nil {
		d.t.Fatalf("list-sas --json: %v", err)
	}
	return out
}

// log is the daemon's whole log so far.
func (d *daemon) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "mifike.log"))
	return string(b)
}
