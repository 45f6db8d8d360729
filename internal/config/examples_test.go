package config

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/wire"
)

// examplesDir is the repository's examples/: one directory per pair of
// an end user and a gateway (end-user.yaml, gateway.yaml).
const examplesDir = "../../examples"

func examplePairs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(examplesDir, "*", "gateway.yaml"))
	if err != nil || len(dirs) < 2 {
		t.Fatalf("example pairs: %v %v", dirs, err)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

// installExample copies the example directory's configurations into a
// fresh directory as their headers say to install them (mode 600: they
// may hold a key), and, for the pairs whose headers send the reader to
// make-pki.sh, makes the test PKI there with that script. It returns the
// directory.
func installExample(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: %v %v", src, files, err)
	}
	pki := false
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pki = pki || strings.Contains(string(data), "make-pki.sh")
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if pki {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Skipf("%s needs examples/make-pki.sh, which needs openssl: %v", src, err)
		}
		out, err := exec.Command("sh", filepath.Join(examplesDir, "make-pki.sh"), dir).CombinedOutput()
		if err != nil {
			t.Fatalf("make-pki.sh %s: %v\n%s", dir, err, out)
		}
	}
	return dir
}

// checkExample is "mifike daemon --check" (cmd/mifike checkConfig): Load,
// its warnings, Build. Unlike --check, a warning fails: an example
// installed as its header says must not need one.
func checkExample(t *testing.T, path string) (*Config, []*ike.Connection) {
	t.Helper()
	c, err := Load(path)
	if err != nil {
		t.Fatalf("%s:\n%v", path, err)
	}
	for _, w := range c.Warnings {
		t.Errorf("%s: warning: %s", path, w)
	}
	conns, _, err := c.Build(nil)
	if err != nil {
		t.Fatalf("%s:\n%v", path, err)
	}
	if len(conns) == 0 {
		t.Fatalf("%s: no connections", path)
	}
	return c, conns
}

// Every example configuration passes --check without a warning once
// installed as its header says, and each pair fits together: the
// identities each side expects, the key or the CA, the inner addresses,
// cloning and MOBIKE on both ends (RFC 7791 §5.1: a clone needs
// CLONE_IKE_SA_SUPPORTED from both), the end user's interfaces (Ethernet,
// Wi-Fi, LTE) and the office network.
func TestExamplesCheck(t *testing.T) {
	all, _ := filepath.Glob(filepath.Join(examplesDir, "*", "*.yaml"))
	seen := 0
	for _, src := range examplePairs(t) {
		t.Run(filepath.Base(src), func(t *testing.T) {
			seen += 2
			dir := installExample(t, src)
			ue, ueConns := checkExample(t, filepath.Join(dir, "end-user.yaml"))
			gw, gwConns := checkExample(t, filepath.Join(dir, "gateway.yaml"))
			if len(ue.Connections) != 1 || len(gw.Connections) != 1 {
				t.Fatalf("%d end-user and %d gateway connections, want one each", len(ue.Connections), len(gw.Connections))
			}
			u, g := ue.Connections[0], gw.Connections[0]
			ui, gi := ueConns[0], gwConns[0]
			if u.Local.Auth != g.Remote.Auth || u.Remote.Auth != g.Local.Auth {
				t.Errorf("auth: end user %s/%s, gateway %s/%s", u.Local.Auth, u.Remote.Auth, g.Local.Auth, g.Remote.Auth)
			}
			if !sameID(ui.RemoteID, gi.LocalID) {
				t.Errorf("the end user expects %q, the gateway is %q", u.Remote.ID, g.Local.ID)
			}
			if g.Remote.ID != "" && !sameID(gi.RemoteID, ui.LocalID) {
				t.Errorf("the gateway expects %q, the end user is %q", g.Remote.ID, u.Local.ID)
			}
			switch u.Local.Auth {
			case "psk":
				if string(u.PSK) != string(g.PSK) {
					t.Error("the two files have different pre-shared keys")
				}
			case "pubkey":
				// Each side's certificate is issued by the CA the other
				// trusts, and carries the id it claims (RFC 4945 §3.1).
				verify(t, "the end user's", ui, gi.CAs)
				verify(t, "the gateway's", gi, ui.CAs)
			default:
				t.Errorf("auth %s", u.Local.Auth)
			}
			if !u.MOBIKE || !g.MOBIKE || !u.Clone.Enable || !g.Clone.Enable || !u.Clone.OwnVIPs {
				t.Errorf("mobike %v/%v, clone %+v/%+v", u.MOBIKE, g.MOBIKE, u.Clone, g.Clone)
			}
			if len(u.VIPs) == 0 || len(g.Pools) == 0 || len(gi.Pools) == 0 {
				t.Errorf("vips %v, gateway pools %v", u.VIPs, g.Pools)
			}
			if u.Interfaces == nil || u.Interfaces.Mode != "per-interface" || u.Interfaces.NoClone {
				t.Fatalf("end user's interfaces: %+v", u.Interfaces)
			}
			for _, want := range []string{"eth0", "wlan0", "wwan0", "enp0s31f6", "wlp2s0"} {
				if !slices.ContainsFunc(u.Interfaces.Use, func(p string) bool { ok, _ := filepath.Match(p, want); return ok }) {
					t.Errorf("interfaces.use %v takes no %s", u.Interfaces.Use, want)
				}
			}
			if len(u.RemoteAddrs) != 1 || g.Pools[0] != gw.Pools[0].Name {
				t.Errorf("remote_addrs %v, pools %v", u.RemoteAddrs, g.Pools)
			}
			uc, gc := u.Children[0], g.Children[0]
			if !slices.Equal(uc.RemoteTS, gc.LocalTS) || !slices.Equal(uc.LocalTS, []string{"dynamic"}) || !slices.Equal(gc.RemoteTS, []string{"dynamic"}) {
				t.Errorf("selectors: end user %v→%v, gateway %v→%v", uc.LocalTS, uc.RemoteTS, gc.LocalTS, gc.RemoteTS)
			}
		})
	}
	if seen != len(all) {
		t.Errorf("checked %d example files of %d: every example belongs to a pair directory with end-user.yaml and gateway.yaml", seen, len(all))
	}
}

func sameID(a, b ike.ID) bool { return a.Type == b.Type && string(a.Data) == string(b.Data) }

// verify checks side's certificate as its peer will: against the peer's
// CAs, and its identity in it.
func verify(t *testing.T, side string, c *ike.Connection, cas []*x509.Certificate) {
	t.Helper()
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	leaf, err := ikeauth.VerifyChain(c.Certs, roots, time.Now())
	if err != nil {
		t.Errorf("%s certificate: %v", side, err)
		return
	}
	if err := ikeauth.MatchID(leaf, &wire.ID{IDType: c.LocalID.Type, Data: c.LocalID.Data}); err != nil {
		t.Errorf("%s certificate: %v", side, err)
	}
}

// make-pki.sh writes the keys mode 600 and refuses to overwrite a PKI.
func TestMakePKI(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skipf("examples/make-pki.sh needs openssl: %v", err)
	}
	dir := t.TempDir()
	script := filepath.Join(examplesDir, "make-pki.sh")
	if out, err := exec.Command("sh", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, k := range []string{"ca/ca.key", "private/gateway.key", "private/laptop.key"} {
		fi, err := os.Stat(filepath.Join(dir, k))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", k, fi.Mode(), err)
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, "certs", "ca.crt"))
	out, err := exec.Command("sh", script, dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "exists") {
		t.Errorf("a second run: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "certs", "ca.crt")); string(after) != string(before) {
		t.Error("a second run replaced the CA")
	}
}
