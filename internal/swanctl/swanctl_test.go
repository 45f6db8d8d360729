package swanctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/config"
)

// swanctlDir lays out a swanctl directory for conf (testdata/NAME) as
// strongSwan would find it: the file, one CA in x509ca/ under every name
// a remote.cacerts uses, and for every local.certs a certificate in
// x509/ naming the local id, its key in private/.
func swanctlDir(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	root, err := Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sub := range []string{"x509", "x509ca", "x509crl", "private"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "swanctl.conf"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "swanctl test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A CRL in x509crl/, which charon loads and so must the conversion.
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: ca.NotBefore, NextUpdate: ca.NotAfter}, ca, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x509crl", "ca.crl"), crl, 0o600); err != nil {
		t.Fatal(err)
	}
	serial := int64(1)
	for _, conn := range root.Sub("connections").Sections {
		if r := conn.Sub("remote"); r != nil {
			if k, ok := r.Get("cacerts"); ok {
				for _, f := range list(k.Value) {
					write(filepath.Join(dir, "x509ca", f), "CERTIFICATE", caDER)
				}
			}
		}
		l := conn.Sub("local")
		if l == nil {
			continue
		}
		k, ok := l.Get("certs")
		if !ok {
			continue
		}
		id, _ := l.Get("id")
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		serial++
		leaf := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: id.Value},
			DNSNames: []string{strings.TrimPrefix(id.Value, "@")}, NotBefore: ca.NotBefore, NotAfter: ca.NotAfter,
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, leaf, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		f := list(k.Value)[0]
		write(filepath.Join(dir, "x509", f), "CERTIFICATE", der)
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		// Named unlike the certificate: the converter must match keys.
		write(filepath.Join(dir, "private", "key-"+id.Value+".pem"), "PRIVATE KEY", kder)
	}
	return dir
}

// The swanctl.conf files of the strongSwan interop tests (test/interop)
// convert into configurations that pass mifike daemon --check
// (config.Load and Build), each connection with its credentials: the
// psk from the secrets, the key matched to the certificate, the EAP
// password.
func TestInteropConfigsPassCheck(t *testing.T) {
	for _, name := range []string{"interop.conf", "mobike.conf", "traffic.conf", "cluster.conf", "redirect.conf", "fragmentation.conf", "eap-client.conf"} {
		t.Run(name, func(t *testing.T) {
			dir := swanctlDir(t, name)
			root, err := ReadFile(filepath.Join(dir, "swanctl.conf"))
			if err != nil {
				t.Fatal(err)
			}
			out, warns := Convert(root, dir)
			for _, w := range warns {
				t.Logf("warning: %s", w)
			}
			path := filepath.Join(dir, "mifike.yaml")
			if err := os.WriteFile(path, out, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			conns, _, err := cfg.Build(nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			want := root.Sub("connections").Sections
			if len(conns) != len(want) {
				t.Fatalf("%d connections, want %d", len(conns), len(want))
			}
			for i, c := range cfg.Connections {
				if c.Name != want[i].Name {
					t.Errorf("connection %d is %s, want %s", i, c.Name, want[i].Name)
				}
				if (c.Local.Auth == "psk" || c.Remote.Auth == "psk") && len(c.PSK) == 0 {
					t.Errorf("%s: no psk", c.Name)
				}
				if c.Remote.Auth == "pubkey" && (c.Remote.Revocation != "relaxed" || len(c.Remote.CRLs) != 1) {
					t.Errorf("%s: revocation %q with CRLs %v, want strongSwan's default relaxed with x509crl/ca.crl", c.Name, c.Remote.Revocation, c.Remote.CRLs)
				}
				if strings.HasPrefix(c.Local.Auth, "eap-") && len(c.Local.Password) == 0 {
					t.Errorf("%s: no EAP password", c.Name)
				}
			}
		})
	}
}

// Every construct of the format (includes, references, quoted values over
// lines, comments after values) and each setting without an equivalent
// warned about at its file and line.
func TestConvertFeaturesAndWarnings(t *testing.T) {
	path := filepath.Join("testdata", "features.conf")
	root, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, warns := Convert(root, "/etc/swanctl")
	got := map[string]bool{}
	for _, w := range warns {
		got[w.String()] = true
	}
	inc := filepath.Join("testdata", "features.d", "extra.conf")
	for _, want := range []string{
		path + ":3: connections.rw: inherits from template: the settings of those sections are not merged in; copy them",
		path + ":6: connections.rw.remote_addrs: \"vpn.example.org\": mifike takes IP addresses only (no names, prefixes or ranges); left out",
		path + ":9: connections.rw.dpd_timeout: dpd_timeout is IKEv1; IKEv2 gives up after the retransmissions (mifike's retransmit section)",
		path + ":12: connections.rw.fragmentation: mifike does not fragment IKE_SA_INIT; converted as yes",
		path + ":25: connections.rw.children.net.start_action: a mifike child either starts or traps (start_action start or trap); converted as start, which sets the SA up at start and not again on traffic",
		path + ":21: connections.rw.children: a child has start_action start, but mifike initiates only to an IP address in remote_addrs; the connection is not started",
		path + ":27: connections.rw.children.net.updown: updown scripts are not supported; `mifike events` reports SAs coming and going",
		path + ":31: connections.rw.children.other.close_action: not supported",
		path + ":39: pools.rw-pool.addrs: mifike pools are prefixes: the range 10.3.0.1-10.3.0.200 became 10.3.0.0/24, which may hand out more addresses",
		path + ":47: secrets.private-gw: mifike reads unencrypted PEM keys named by local.key; decrypt the key and name it there",
		path + ":51: authorities: mifike has no authorities section; CA certificates go in each connection's remote.cacerts, CRLs in remote.crls, the OCSP responder in remote.ocsp_uri",
		inc + ":8: connections.extra.aggressive: aggressive mode is IKEv1",
	} {
		if !got[want] {
			t.Errorf("missing warning %q", want)
		}
	}
	if len(warns) != 12 {
		for _, w := range warns {
			t.Log(w)
		}
		t.Errorf("%d warnings, want 12", len(warns))
	}
	for _, want := range []string{
		"local_addrs: [192.0.2.1]\n", "unique: no\n", "pools: [rw-pool]\n", "dpd_action: restart\n",
		"mode: transport\n", "addrs: 10.3.0.0/24\n", "id: \"@gw.example.org\"\n", "id: \"@gw2.example.org\"\n",
		"psk: \"0x3132333435363738393031323334353637383930\"\n",
		"      other:\n        local_ts: [10.2.0.0/16]\n        start_action: none\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := config.Parse("features.yaml", out, "/etc/swanctl"); err != nil {
		t.Errorf("the conversion does not parse: %v\n%s", err, out)
	}
}

// Syntax errors name the file and line.
func TestParseErrors(t *testing.T) {
	for src, want := range map[string]string{
		"a {\n b = c\n":                   "f:3: section a is not closed",
		"}":                               "f:1: '}' closes no section",
		"a {\n b c\n}":                    "f:2: b: '=' or '{' expected",
		"a = \"open\n":                    "f:2: unterminated quoted value",
		"include x.conf\n":                "f:1: include is not read here",
		"a : {\n}":                        "f:1: section a: a reference must name a section",
		strings.Repeat("a {", MaxDepth+2): "sections nested deeper than",
	} {
		_, err := Parse("f", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}

// start_action = trap becomes a mifike trap (the child comes up on the
// first packet to its remote selectors, and the trap stays), which then
// loads; without a peer address to initiate to it cannot, and says so.
func TestConvertTrap(t *testing.T) {
	const conf = `connections {
    office {
        remote_addrs = 198.51.100.1
        local {
            auth = psk
            id = ue@example.org
        }
        remote {
            auth = psk
            id = @gw.example.org
        }
        children {
            net {
                remote_ts = 10.9.0.0/16
                start_action = trap
            }
        }
    }
    roaming {
        remote_addrs = %any
        local {
            auth = psk
            id = ue@example.org
        }
        remote {
            auth = psk
            id = @gw.example.org
        }
        children {
            net {
                remote_ts = 10.8.0.0/16
                start_action = trap
            }
        }
    }
}
secrets {
    ike { secret = 0x3132333435363738393031323334353637383930 }
}
`
	root, err := Parse("trap.conf", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	out, warns := Convert(root, t.TempDir())
	if !strings.Contains(string(out), "        remote_ts: [10.9.0.0/16]\n        start_action: trap\n") {
		t.Errorf("office's child is not a trap:\n%s", out)
	}
	want := "trap.conf:32: connections.roaming.children.net.start_action: a trap initiates to the peer's IP address when traffic comes, and remote_addrs has none; converted as none (mifike initiate CONN --child net)"
	var got []string
	for _, w := range warns {
		got = append(got, w.String())
	}
	if !slices.Contains(got, want) {
		t.Errorf("warnings %q\nlack %q", got, want)
	}
	path := filepath.Join(t.TempDir(), "mifike.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if ch := cfg.Connections[0].Children[0]; ch.StartAction != "trap" {
		t.Errorf("office.net loads with start_action %q, want trap", ch.StartAction)
	}
}
