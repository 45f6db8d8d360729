package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const charonPath = "/usr/lib/ipsec/charon"

// charon is one strongSwan daemon in a namespace, with its own
// configuration directory, VICI socket and log.
type charon struct {
	t   testing.TB
	dir string
	ns  string
	cmd *exec.Cmd
}

// strongswanConf is charon's configuration: an explicit plugin list with
// kernel-libipsec (this kernel has no ESP; libipsec carries it in user
// space and forces UDP encapsulation), and a log that shows every IKE
// message. extra lines go at the end of the charon section, where they
// override what precedes them (fragment_size, retransmissions).
func strongswanConf(dir string, extra ...string) string {
	return fmt.Sprintf(`charon {
    load_modular = no
    load = random nonce openssl aes sha1 sha2 hmac gcm chapoly curve25519 gmp kdf pem pkcs1 pkcs8 x509 revocation constraints pubkey kernel-libipsec kernel-netlink socket-default vici attr updown
    install_routes = no
    install_virtual_ip = no
    retransmit_timeout = 2
    retransmit_tries = 3
    plugins {
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
            ike_name = yes
            default = 1
            ike = 2
            cfg = 1
            enc = 1
        }
    }
%[2]s
}
swanctl {
    socket = unix://%[1]s/charon.vici
}
`, dir, strings.Join(extra, "\n"))
}

// startCharon writes the configuration and starts charon inside ns with
// its own /run (charon hard-codes /var/run/charon.pid), then loads the
// swanctl configuration.
func startCharon(t testing.TB, ns, dir, swanctlConf string, files map[string]string) *charon {
	t.Helper()
	return startCharonConf(t, ns, dir, strongswanConf(dir), swanctlConf, files)
}

// startCharonConf is startCharon with a strongswan.conf of the caller's.
func startCharonConf(t testing.TB, ns, dir, charonConf, swanctlConf string, files map[string]string) *charon {
	t.Helper()
	for _, sub := range []string{"run", "swanctl/x509", "swanctl/x509ca", "swanctl/private", "swanctl/ecdsa", "swanctl/rsa", "swanctl/pkcs8",
		"swanctl/x509ocsp", "swanctl/x509aa", "swanctl/x509ac", "swanctl/x509crl", "swanctl/pubkey", "swanctl/bliss", "swanctl/pkcs12"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "swanctl", name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "strongswan.conf"), []byte(charonConf), 0o644)
	os.WriteFile(filepath.Join(dir, "swanctl", "swanctl.conf"), []byte(swanctlConf), 0o644)
	out, _ := os.Create(filepath.Join(dir, "charon.stdout"))
	cmd := exec.Command("ip", "netns", "exec", ns, "sh", "-c", `mount --bind "$1" /run && exec env STRONGSWAN_CONF="$2" "$3"`,
		"charon-wrap", filepath.Join(dir, "run"), filepath.Join(dir, "strongswan.conf"), charonPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &charon{t: t, dir: dir, ns: ns, cmd: cmd}
	t.Cleanup(c.stop)
	if !waitFor(100, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		_, err := os.Stat(filepath.Join(dir, "charon.vici"))
		return err == nil
	}) {
		b, _ := os.ReadFile(filepath.Join(dir, "charon.stdout"))
		t.Fatalf("charon did not start:\n%s", b)
	}
	c.swanctl("--load-all", "--noprompt")
	return c
}

func (c *charon) stop() {
	if c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			c.cmd.Process.Kill()
		}
	}
}

// swanctl runs swanctl against this charon; it fails the test on error.
func (c *charon) swanctl(args ...string) string {
	c.t.Helper()
	out, err := c.swanctlErr(args...)
	if err != nil {
		c.t.Fatalf("swanctl %s: %v\n%s\ncharon log:\n%s", strings.Join(args, " "), err, out, c.logTail(30))
	}
	return out
}

func (c *charon) swanctlErr(args ...string) (string, error) {
	cmd := exec.Command("swanctl", args...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+filepath.Join(c.dir, "strongswan.conf"), "SWANCTL_DIR="+filepath.Join(c.dir, "swanctl"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *charon) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "charon.log"))
	return tail(b, n)
}

func (c *charon) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "charon.log"))
	return string(b)
}

// sas returns charon's IKE SAs (swanctl --list-sas --raw).
func (c *charon) sas() []*viciNode {
	c.t.Helper()
	root, err := parseRaw(c.swanctl("--list-sas", "--raw"))
	if err != nil {
		c.t.Fatal(err)
	}
	var out []*viciNode
	for _, k := range root.order {
		if !strings.HasPrefix(k, "list-sa event") {
			continue
		}
		for _, name := range root.subs[k].order {
			sa := root.subs[k].subs[name]
			sa.vals["name"] = name
			out = append(out, sa)
		}
	}
	return out
}
