package config

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

func warnings(c *Config) []string {
	var out []string
	for _, w := range c.Warnings {
		out = append(out, w.String())
	}
	return out
}

func sameLines(t *testing.T, name string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: warnings\n  %s\nwant\n  %s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// A pre-shared key shorter than 20 octets is warned about (RFC 7296
// §2.15: one recorded IKE_AUTH lets an attacker guess it offline), in
// octets as decoded, and the file still loads.
func TestWarnShortPSK(t *testing.T) {
	const short = ` octets is short: a pre-shared key needs the entropy of a key, or one recorded IKE_AUTH lets anyone guess it offline (RFC 7296 §2.15); use at least 20 random octets (openssl rand -base64 32 makes one; write it as 0s...)`
	conn := "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: "
	for _, tc := range []struct {
		name, psk string
		want      []string
	}{
		{"text", "secret", []string{"f.yaml:5: connections.c.psk: 6" + short}},
		{"hex", "0x00112233445566778899", []string{"f.yaml:5: connections.c.psk: 10" + short}},
		{"base64 of 19", "0s" + strings.Repeat("A", 24) + "AA==", []string{"f.yaml:5: connections.c.psk: 19" + short}},
		{"20 octets", "0x" + strings.Repeat("ab", 20), nil},
		{"long text", "correct horse battery staple", nil},
	} {
		c, err := Parse("f.yaml", []byte(conn+tc.psk+"\n"), t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		sameLines(t, tc.name, warnings(c), tc.want)
	}
}

// A secret every local user can read is warned about with the chmod that
// fixes it: the configuration file when it holds a psk, a password or a
// RADIUS secret (once), and each file holding a secret at the key that
// names it. Group access is left alone (ssl-cert style groups are
// deliberate), and a missing file is left to Build and the daemon.
func TestWarnExposedSecrets(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// Chmod, not WriteFile's mode, which the umask trims.
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	load := func(name, text string, mode os.FileMode) []string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return warnings(c)
	}
	pskConn := "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: 0x" + strings.Repeat("ab", 32) + "\n"
	cfg := filepath.Join(dir, "psk.yaml")
	sameLines(t, "psk 0644", load("psk.yaml", pskConn, 0o644), []string{
		cfg + ":5: connections.c.psk: this file holds a secret and is readable by every local user (mode 0644); chmod 600 " + cfg})
	sameLines(t, "psk 0640", load("psk.yaml", pskConn, 0o640), nil)
	sameLines(t, "psk 0600", load("psk.yaml", pskConn, 0o600), nil)
	sameLines(t, "no secret 0644", load("plain.yaml", none, 0o644), nil)

	radius := "radius:\n  servers:\n    a: {address: 10.0.0.5, secret: " + strings.Repeat("s", 24) + "}\n" +
		"    b: {address: 10.0.0.6, secret: " + strings.Repeat("t", 24) + "}\n" + none
	cfg = filepath.Join(dir, "radius.yaml")
	sameLines(t, "radius 0604", load("radius.yaml", radius, 0o604), []string{
		cfg + ":3: radius.servers.a.secret: this file holds a secret and is readable by every local user (mode 0604); chmod 600 " + cfg})

	// At the first secret in the file: here the connections come before
	// the radius section, which is read first.
	cfg = filepath.Join(dir, "order.yaml")
	sameLines(t, "connections before radius", load("order.yaml", pskConn+strings.TrimSuffix(radius, none), 0o644), []string{
		cfg + ":5: connections.c.psk: this file holds a secret and is readable by every local user (mode 0644); chmod 600 " + cfg})

	pw := file("pw", 0o644)
	key := file("gw.key", 0o666)
	kek := file("kek", 0o602)
	etcdKey := file("etcd.key", 0o640)
	files := "cluster:\n  name: vpn\n  node: 1\n  key_file: kek\n" +
		"  etcd: {endpoints: [http://10.0.0.1:2379], cert: etcd.pem, key: etcd.key}\n" +
		"connections:\n" +
		"  eap:\n    local: {auth: eap-mschapv2, id: \"@a\", password_file: pw}\n    remote: {auth: pubkey, cacerts: ca.pem}\n" +
		"  cert:\n    local: {auth: pubkey, certs: gw.pem, key: gw.key}\n    remote: {auth: pubkey, cacerts: ca.pem}\n" +
		"  missing:\n    local: {auth: pubkey, certs: gw.pem, key: nowhere.key}\n    remote: {auth: pubkey, cacerts: ca.pem}\n"
	cfg = filepath.Join(dir, "files.yaml")
	sameLines(t, "files", load("files.yaml", files, 0o644), []string{
		cfg + ":4: cluster.key_file: " + kek + " holds a secret and is writable by every local user (mode 0602); chmod 600 " + kek,
		cfg + ":8: connections.eap.local.password_file: " + pw + " holds a secret and is readable by every local user (mode 0644); chmod 600 " + pw,
		cfg + ":11: connections.cert.local.key: " + key + " holds a secret and is readable and writable by every local user (mode 0666); chmod 600 " + key,
	})
	// etcd.key at 0640 is group-readable only: not warned about.
	if err := os.Chmod(etcdKey, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := load("files.yaml", files, 0o600); len(got) != 4 || !strings.HasPrefix(got[1], cfg+":5: cluster.etcd.key: "+etcdKey+" holds a secret") {
		t.Errorf("etcd key 0644:\n  %s", strings.Join(got, "\n  "))
	}
}

// control.group naming a group this machine lacks is a warning at load:
// the daemon would refuse to start when it makes the control socket.
func TestWarnUnknownGroup(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "g.yaml")
	write := func(group string) []string {
		t.Helper()
		if err := os.WriteFile(p, []byte("control:\n  group: "+group+"\n"+none), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return warnings(c)
	}
	sameLines(t, "unknown group", write("mifike-no-such-group"), []string{
		p + `:2: control.group: no group "mifike-no-such-group" on this machine: the daemon will not start until it exists (groupadd mifike-no-such-group) or control.group names another`})

	u, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Skip(err)
	}
	sameLines(t, "own group", write(g.Name), nil)
}

// The shipped examples warn only about what depends on where they are
// installed: the checkout's mode (git makes files 0644; an installed
// copy is 0600, as the warning and the files' headers say). Their keys
// are strong enough (20 octets and more). TestExamplesCheck checks them
// installed, with no warning at all.
func TestExampleWarnings(t *testing.T) {
	files, err := filepath.Glob("../../examples/*/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, w := range c.Warnings {
			switch {
			case strings.HasPrefix(w.Msg, "this file holds a secret and is readable by every local user"):
			default:
				t.Errorf("%s: unexpected warning %s", f, w)
			}
		}
	}
}

// EAP with a gateway that proves itself by a pre-shared key works but is
// not what RFC 7296 §2.16 has in mind: warned at the gateway's auth, on
// either end.
func TestWarnEAPWithPSK(t *testing.T) {
	const msg = "EAP with a gateway authenticated by a pre-shared key: RFC 7296 §2.16 wants the gateway's signature (auth: pubkey)"
	psk := "    psk: 0x" + strings.Repeat("ab", 20) + "\n"
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"end user", "connections:\n  c:\n    local: {auth: eap-mschapv2, id: \"@u\", password: pw}\n    remote: {auth: psk}\n" + psk,
			[]string{"f.yaml:4: connections.c.remote.auth: " + msg}},
		{"gateway", "radius: {servers: {a: {address: 10.0.0.5, secret: " + strings.Repeat("s", 20) + "}}}\n" +
			"connections:\n  c:\n    local: {auth: psk, id: \"@gw\"}\n    remote: {auth: eap-radius}\n" + psk,
			[]string{"f.yaml:4: connections.c.local.auth: " + msg}},
		{"plain psk", "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n" + psk, nil},
	} {
		c, err := Parse("f.yaml", []byte(tc.src), t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		sameLines(t, tc.name, warnings(c), tc.want)
	}
}
