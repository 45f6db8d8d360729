//go:build linux

package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/lab"
)

const (
	charonPath     = "/usr/lib/ipsec/charon"
	libipsecPlugin = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"
)

// charonOpts vary charon's configuration between the benchmarks.
type charonOpts struct {
	// Quiet logs errors only: under load both implementations log alike
	// little (mifike runs with log level warn).
	Quiet bool
	// Load takes many IKE SAs from one address, as a benchmark brings:
	// no DoS protection (cookies, blocking, half-open limits), a hashed
	// IKE SA table instead of the default single list, a new IKE SA for
	// every initiate, and threads for that many blocking VICI initiates.
	Load bool
	// Retransmit, when Timeout is set, replaces the retransmission
	// schedule (the failover suite gives both implementations the same).
	Retransmit retransmitOpts
	// Files are copied into the swanctl directory: destination (e.g.
	// "x509/gw.crt") to source path.
	Files map[string]string
}

// retransmitOpts is a retransmission schedule: Timeout·Base^n, Tries times.
type retransmitOpts struct {
	Timeout time.Duration
	Base    float64
	Tries   int
}

// strongswanConf is charon's configuration: an explicit plugin list with
// kernel-libipsec, which carries ESP in user space over its TUN device
// ipsec0 (this benchmark's reference; it also forces UDP encapsulation),
// and routes plus the virtual IP installed, so traffic finds ipsec0.
// openssl comes first so AES-GCM uses its AES-NI code.
func strongswanConf(dir string, o charonOpts) string {
	level := 1
	if o.Quiet {
		level = -1
	}
	var extra strings.Builder
	if o.Load {
		extra.WriteString(`    threads = 32
    ikesa_table_size = 4096
    ikesa_table_segments = 16
    reuse_ikesa = no
    dos_protection = no
    block_threshold = 1000000
    cookie_threshold = 1000000
    init_limit_half_open = 0
    half_open_timeout = 60
`)
	}
	if r := o.Retransmit; r.Timeout > 0 {
		fmt.Fprintf(&extra, "    retransmit_timeout = %g\n    retransmit_base = %g\n    retransmit_tries = %d\n", r.Timeout.Seconds(), r.Base, r.Tries)
	}
	return fmt.Sprintf(`charon {
    load_modular = no
    load = random nonce openssl aes sha1 sha2 hmac gcm chapoly curve25519 gmp kdf pem pkcs1 pkcs8 x509 revocation constraints pubkey kernel-libipsec kernel-netlink socket-default vici attr updown
    install_routes = yes
    install_virtual_ip = yes
%[3]s    plugins {
        vici {
            socket = unix://%[1]s/charon.vici
        }
    }
    syslog {
        daemon {
            default = -1
        }
    }
    filelog {
        log {
            path = %[1]s/charon.log
            append = no
            flush_line = yes
            time_format = %%T
            default = %[2]d
        }
    }
}
swanctl {
    socket = unix://%[1]s/charon.vici
}
`, dir, level, extra.String())
}

// swanctlConf mirrors mifikeConf: the gateway with a pool, the end user
// asking for a virtual IP (kernel-libipsec: a pool needs a CP request).
func swanctlConf(endUser bool) string {
	if endUser {
		return fmt.Sprintf(`connections {
    home {
        version = 2
        remote_addrs = %s
        vips = 0.0.0.0
        proposals = %s
        local { auth = psk
            id = ue.bench }
        remote { auth = psk
            id = gw.bench }
        children { net { remote_ts = %s
            esp_proposals = %s } }
    }
}
secrets { ike { id-1 = ue.bench
    id-2 = gw.bench
    secret = "%s" } }
`, gwAddr, IKEProposal, gwNet, ESPProposal, psk)
	}
	return fmt.Sprintf(`connections {
    rw {
        version = 2
        pools = p4
        proposals = %s
        local { auth = psk
            id = gw.bench }
        remote { auth = psk
            id = ue.bench }
        children { net { local_ts = %s
            esp_proposals = %s } }
    }
}
pools { p4 { addrs = %s } }
secrets { ike { id-1 = ue.bench
    id-2 = gw.bench
    secret = "%s" } }
`, IKEProposal, gwNet, ESPProposal, pool, psk)
}

// charon is one strongSwan daemon and its directory.
type charon struct {
	dir  string
	proc *lab.Proc
}

// startStrongSwan starts a gateway in gw and an end user in ue, brings
// the tunnel up and returns the end user's virtual IP.
func startStrongSwan(ctx context.Context, l *lab.Lab, dir, gw, ue string) (string, error) {
	g, err := startCharon(ctx, l, filepath.Join(dir, "strongswan-gw"), gw, swanctlConf(false), charonOpts{})
	if err != nil {
		return "", err
	}
	u, err := startCharon(ctx, l, filepath.Join(dir, "strongswan-ue"), ue, swanctlConf(true), charonOpts{})
	if err != nil {
		return "", err
	}
	if out, err := u.swanctl(ctx, "--initiate", "--ike", "home", "--child", "net", "--timeout", "20"); err != nil {
		return "", fmt.Errorf("%w\n%s\nend user's log:\n%s\ngateway's log:\n%s", err, lastLines(string(out), 10), u.logTail(), g.logTail())
	}
	var vip string
	err = waitFor(ctx, 10*time.Second, func() (bool, error) {
		out, err := u.swanctl(ctx, "--list-sas", "--raw")
		if err != nil {
			return false, err
		}
		s := string(out)
		if !strings.Contains(s, "state=ESTABLISHED") || !strings.Contains(s, "state=INSTALLED") {
			return false, nil
		}
		for _, m := range vipsRE.FindAllStringSubmatch(s, -1) {
			for _, v := range strings.Fields(m[1]) {
				if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
					vip = a.String()
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("the tunnel did not come up: %w\nend user's log:\n%s\ngateway's log:\n%s", err, u.logTail(), g.logTail())
	}
	// charon installs the virtual IP on ipsec0 after the SA; wait for it
	// so iperf3 can bind to it.
	err = waitFor(ctx, 5*time.Second, func() (bool, error) {
		out, err := l.Run(ctx, ue, "ip", "-o", "addr", "show")
		return strings.Contains(string(out), " "+vip+"/"), err
	})
	if err != nil {
		return "", fmt.Errorf("charon did not install the virtual IP %s: %w", vip, err)
	}
	return vip, nil
}

// vipsRE finds the virtual IPs in swanctl --list-sas --raw.
var vipsRE = regexp.MustCompile(`local-vips=\[([^\]]*)\]`)

// startCharon starts charon inside ns with its own /run (it hard-codes
// /var/run/charon.pid; ip netns exec gives it a mount namespace of its
// own) and loads the swanctl configuration.
func startCharon(ctx context.Context, l *lab.Lab, dir, ns, swanctl string, o charonOpts) (*charon, error) {
	for _, sub := range []string{"run", "swanctl/x509", "swanctl/x509ca", "swanctl/private", "swanctl/ecdsa", "swanctl/rsa", "swanctl/pkcs8",
		"swanctl/x509ocsp", "swanctl/x509aa", "swanctl/x509ac", "swanctl/x509crl", "swanctl/pubkey", "swanctl/bliss", "swanctl/pkcs12"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "strongswan.conf"), []byte(strongswanConf(dir, o)), 0o600); err != nil {
		return nil, err
	}
	for dst, src := range o.Files {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "swanctl", dst), b, 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "swanctl", "swanctl.conf"), []byte(swanctl), 0o600); err != nil {
		return nil, err
	}
	c := &charon{dir: dir}
	var err error
	c.proc, err = l.Start(ns, nil, "sh", "-c", `mount --bind "$1" /run && exec env STRONGSWAN_CONF="$2" "$3"`,
		"charon-wrap", filepath.Join(dir, "run"), filepath.Join(dir, "strongswan.conf"), charonPath)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		select {
		case <-c.proc.Done():
			return false, fmt.Errorf("charon in %s exited (%v):\n%s", ns, c.proc.Err(), lastLines(c.proc.Output(), 20))
		default:
		}
		_, err := os.Stat(filepath.Join(dir, "charon.vici"))
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("charon in %s did not open its VICI socket: %w", ns, err)
	}
	if out, err := c.swanctl(ctx, "--load-all", "--noprompt"); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, lastLines(string(out), 10))
	}
	return c, nil
}

// swanctl runs swanctl against this charon (through its VICI socket,
// from outside the namespace).
func (c *charon) swanctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "swanctl", args...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+filepath.Join(c.dir, "strongswan.conf"), "SWANCTL_DIR="+filepath.Join(c.dir, "swanctl"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("swanctl %s: %v", strings.Join(args, " "), err)
	}
	return out, nil
}

func (c *charon) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "charon.log"))
	return lastLines(string(b), 20)
}

// strongSwanVersion is charon's version, e.g. "5.9.8"; "" if unknown.
func strongSwanVersion() string {
	out, _ := exec.Command(charonPath, "--version").Output()
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// vici opens a connection to charon's VICI socket.
func (c *charon) vici() (*viciConn, error) { return dialVICI(filepath.Join(c.dir, "charon.vici")) }

// pid is charon's process id (ip netns exec, sh and env exec in place).
func (c *charon) pid() int { return c.proc.Pid() }
