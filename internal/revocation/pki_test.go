package revocation

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// opensslPKI is a CA kept by `openssl ca` (its index.txt is what
// `openssl ocsp -index` answers from), with an OCSP signing certificate
// for a delegated responder and end-entity certificates whose CRL
// distribution point and OCSP responder are the URLs given.
type opensslPKI struct {
	dir string
	ca  *x509.Certificate
}

func needOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skipf("these tests make their PKI with openssl: %v", err)
	}
}

func run(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newOpenSSLPKI(t *testing.T, crlURL, ocspURL string) *opensslPKI {
	needOpenSSL(t)
	dir := t.TempDir()
	conf := fmt.Sprintf(`[ca]
default_ca = ca_default
[ca_default]
dir = %s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.crt
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 7
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
[leaf]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
crlDistributionPoints = URI:%s
authorityInfoAccess = OCSP;URI:%s
[leafcrl]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
crlDistributionPoints = URI:%s
[responder]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, OCSPSigning
`, dir, crlURL, ocspURL, crlURL)
	for name, data := range map[string]string{"ca.cnf": conf, "index.txt": "", "serial": "1000\n", "crlnumber": "1000\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "newcerts"), 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
		"-subj", "/O=mifike/CN=revocation test CA", "-days", "30",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	p := &opensslPKI{dir: dir}
	p.ca = p.cert(t, "ca")
	return p
}

// issue makes name.key and name.crt with the extensions of section ext.
func (p *opensslPKI) issue(t *testing.T, name, ext string) *x509.Certificate {
	run(t, p.dir, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", name+".key",
		"-out", name+".csr", "-subj", "/O=mifike/CN="+name)
	run(t, p.dir, "ca", "-batch", "-config", "ca.cnf", "-extensions", ext, "-in", name+".csr", "-out", name+".crt")
	return p.cert(t, name)
}

func (p *opensslPKI) revoke(t *testing.T, name string) {
	run(t, p.dir, "ca", "-batch", "-config", "ca.cnf", "-revoke", name+".crt", "-crl_reason", "keyCompromise")
}

// crl writes the CA's CRL, PEM or DER, and returns its path.
func (p *opensslPKI) crl(t *testing.T, der bool) string {
	run(t, p.dir, "ca", "-batch", "-config", "ca.cnf", "-gencrl", "-out", "ca.crl.pem")
	if !der {
		return filepath.Join(p.dir, "ca.crl.pem")
	}
	run(t, p.dir, "crl", "-in", "ca.crl.pem", "-outform", "DER", "-out", "ca.crl")
	return filepath.Join(p.dir, "ca.crl")
}

func (p *opensslPKI) cert(t *testing.T, name string) *x509.Certificate {
	data, err := os.ReadFile(filepath.Join(p.dir, name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	// openssl ca writes a text dump before the PEM block.
	b, _ := pem.Decode(data[strings.Index(string(data), "-----BEGIN"):])
	if b == nil {
		t.Fatalf("%s.crt: no PEM", name)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
