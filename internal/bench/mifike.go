//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/lab"
)

// mifikeConf is the gateway's or the end user's configuration: the
// gateway protects gwNet and hands out virtual IPs from pool; the
// userspace data plane carries the traffic.
func mifikeConf(dir string, endUser bool, tr transport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: info}\ncontrol: {socket: %s}\ndata_plane: userspace\ntun: {name: mfk0}\n", filepath.Join(dir, "mifike.sock"))
	if tr == overTCP && !endUser {
		b.WriteString("tcp_ports: [4500]\n")
	}
	b.WriteString("connections:\n")
	if endUser {
		fmt.Fprintf(&b, "  home:\n    remote_addrs: [%s]\n    vips: [0.0.0.0]\n", gwAddr)
		fmt.Fprintf(&b, "    local: {auth: psk, id: ue.bench}\n    remote: {auth: psk, id: gw.bench}\n")
		fmt.Fprintf(&b, "    children:\n      net: {remote_ts: [%s], esp_proposals: %s}\n", gwNet, ESPProposal)
	} else {
		fmt.Fprintf(&b, "  rw:\n    pools: [p4]\n")
		fmt.Fprintf(&b, "    local: {auth: psk, id: gw.bench}\n    remote: {auth: psk, id: ue.bench}\n")
		fmt.Fprintf(&b, "    children:\n      net: {local_ts: [%s], esp_proposals: %s}\n", gwNet, ESPProposal)
	}
	fmt.Fprintf(&b, "    psk: %q\n    proposals: %s\n    encap: %t\n", psk, IKEProposal, tr == inUDP)
	if tr == overTCP && endUser {
		b.WriteString("    tcp: always\n") // RFC 9329, from the first message
	}
	if !endUser {
		fmt.Fprintf(&b, "pools:\n  p4: {addrs: %s}\n", pool)
	}
	return b.String()
}

// transport is how a bench tunnel's ESP travels.
type transport uint8

const (
	inUDP   transport = iota // ESP in UDP (encap: yes), as kernel-libipsec sends it
	plain                    // plain ESP (IP protocol 50)
	overTCP                  // ESP and IKE in a TCP stream (RFC 9329, tcp: always)
	// inUDPWorkers is inUDP with an ESP worker per CPU
	// (MIFIKE_ESP_WORKERS; throughput suite only).
	inUDPWorkers
)

// mifikeDaemon is one daemon: its directory (configuration, log, control
// socket) and process.
type mifikeDaemon struct {
	exe, dir string
	proc     *lab.Proc
}

// mifikeTunnel is a gateway and an end user with the tunnel up.
type mifikeTunnel struct {
	gw, ue *mifikeDaemon
	vip    string // the end user's virtual IP
}

// startMifike starts a gateway in gw and an end user in ue (their
// directories under dir), both with environment variables env (K=V)
// added, and brings the tunnel up.
func startMifike(ctx context.Context, l *lab.Lab, exe, dir, gw, ue string, tr transport, env ...string) (*mifikeTunnel, error) {
	t := &mifikeTunnel{}
	var err error
	gwDir, ueDir := filepath.Join(dir, "gw"), filepath.Join(dir, "ue")
	if t.gw, err = startMifikeDaemonEnv(ctx, l, exe, gwDir, gw, mifikeConf(gwDir, false, tr), env); err != nil {
		return nil, err
	}
	if t.ue, err = startMifikeDaemonEnv(ctx, l, exe, ueDir, ue, mifikeConf(ueDir, true, tr), env); err != nil {
		return nil, err
	}
	if _, err := t.ue.ctl(ctx, "initiate", "home"); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, t.logs())
	}
	err = waitFor(ctx, 15*time.Second, func() (bool, error) {
		out, err := t.ue.ctl(ctx, "list-sas", "--json")
		if err != nil {
			return false, err
		}
		var sas []struct {
			State      string   `json:"state"`
			VirtualIPs []string `json:"virtual_ips"`
			Children   []struct {
				State string `json:"state"`
			} `json:"children"`
		}
		if err := json.Unmarshal(out, &sas); err != nil {
			return false, fmt.Errorf("list-sas --json: %w", err)
		}
		for _, sa := range sas {
			if sa.State != "ESTABLISHED" || len(sa.Children) == 0 {
				continue
			}
			for _, v := range sa.VirtualIPs {
				if a, err := netip.ParseAddr(strings.Split(v, "/")[0]); err == nil && a.Is4() {
					t.vip = a.String()
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the tunnel did not come up: %w\n%s", err, t.logs())
	}
	return t, nil
}

// logs is the end of both daemons' logs, for an error message.
func (t *mifikeTunnel) logs() string {
	return fmt.Sprintf("end user's log:\n%s\ngateway's log:\n%s", t.ue.logTail(), t.gw.logTail())
}

func (t *mifikeTunnel) stop() {
	t.ue.proc.Stop(5 * time.Second)
	t.gw.proc.Stop(5 * time.Second)
}

func startMifikeDaemon(ctx context.Context, l *lab.Lab, exe, dir, ns, conf string) (*mifikeDaemon, error) {
	return startMifikeDaemonEnv(ctx, l, exe, dir, ns, conf, nil)
}

// startMifikeDaemonEnv starts the daemon with environment variables env
// (K=V) added.
func startMifikeDaemonEnv(ctx context.Context, l *lab.Lab, exe, dir, ns, conf string, env []string) (*mifikeDaemon, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "mifike.yaml")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "mifike.log"))
	if err != nil {
		return nil, err
	}
	d := &mifikeDaemon{exe: exe, dir: dir}
	// The log file stays open as long as the process writes to it; the
	// process outlives this function, and Close of the lab ends both.
	name, args := exe, []string{"daemon", "-c", cfg}
	if len(env) > 0 {
		name, args = "env", append(append(env, exe), args...)
	}
	if d.proc, err = l.Start(ns, log, name, args...); err != nil {
		log.Close()
		return nil, err
	}
	go func() { <-d.proc.Done(); log.Close() }()
	sock := filepath.Join(dir, "mifike.sock")
	if err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		select {
		case <-d.proc.Done():
			return false, fmt.Errorf("mifike daemon in %s exited (%v):\n%s", ns, d.proc.Err(), d.logTail())
		default:
		}
		_, err := os.Stat(sock)
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("mifike daemon in %s did not open its control socket: %w\n%s", ns, err, d.logTail())
	}
	return d, nil
}

// ctl runs a control verb against the daemon (the socket is a file, so
// this runs outside the namespaces).
func (d *mifikeDaemon) ctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, d.exe, args...)
	cmd.Env = append(os.Environ(), "MIFIKE_SOCKET="+filepath.Join(d.dir, "mifike.sock"))
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return out, fmt.Errorf("mifike %s: %v: %s", strings.Join(args, " "), err, msg)
	}
	return out, nil
}

func (d *mifikeDaemon) logTail() string { return lastLines(d.proc.Output(), 20) }

// lastLines keeps the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (d *mifikeDaemon) sock() string { return filepath.Join(d.dir, "mifike.sock") }

// sas lists the daemon's IKE SAs through its control socket.
func (d *mifikeDaemon) sas() ([]control.SA, error) {
	c, err := control.Dial(d.sock())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []control.SA
	err = c.Call("list-sas", nil, &out)
	return out, err
}

// log is the daemon's whole log so far.
func (d *mifikeDaemon) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "mifike.log"))
	return string(b)
}

// startMif starts a daemon with conf (a configuration without its
// control section) in namespace ns of the multi-interface lab.
func startMif(ctx context.Context, e *suiteEnv, m *mifLab, name, ns, conf string) (*mifikeDaemon, error) {
	dir := filepath.Join(e.dir, name)
	conf = fmt.Sprintf("control: {socket: %s}\n", filepath.Join(dir, "mifike.sock")) + conf
	return startMifikeDaemon(ctx, m.Lab, e.exe, dir, ns, conf)
}
