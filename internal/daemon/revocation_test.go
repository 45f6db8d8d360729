package daemon

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// revokeWithOpenSSL makes, with openssl ca, the CRL of make-pki.sh's CA
// in dir that revokes the certificates named (certs/NAME.crt), and
// returns its path.
func revokeWithOpenSSL(t *testing.T, dir string, names ...string) string {
	t.Helper()
	var index strings.Builder
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, "certs", n+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		// index.txt, as openssl ca keeps it: status, expiry, revocation
		// time, serial, file, subject. The serial in whole octets: openssl
		// refuses an odd number of hex digits (a random serial whose first
		// octet is below 0x10 made this test fail one run in sixteen).
		serial := fmt.Sprintf("%X", c.SerialNumber)
		if len(serial)%2 == 1 {
			serial = "0" + serial
		}
		fmt.Fprintf(&index, "R\t%s\t%s\t%s\tunknown\t/CN=%s\n", c.NotAfter.UTC().Format("060102150405Z"),
			time.Now().Add(-time.Minute).UTC().Format("060102150405Z"), serial, c.Subject.CommonName)
	}
	ca := filepath.Join(dir, "crlca")
	if err := os.MkdirAll(ca, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(ca, "index.txt"), index.String())
	writeFile(t, filepath.Join(ca, "crlnumber"), "01\n")
	writeFile(t, filepath.Join(ca, "ca.cnf"), fmt.Sprintf("[ca]\ndefault_ca = d\n[d]\ndatabase = %s/index.txt\ncrlnumber = %s/crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n", ca, ca))
	out := filepath.Join(ca, "ca.crl")
	cmd := exec.Command("openssl", "ca", "-batch", "-gencrl", "-config", filepath.Join(ca, "ca.cnf"),
		"-keyfile", filepath.Join(dir, "ca", "ca.key"), "-cert", filepath.Join(dir, "certs", "ca.crt"), "-out", out)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl ca -gencrl: %v\n%s", err, o)
	}
	return out
}

// RFC 7296 §2.15 with remote.revocation strict and remote.crls: the
// shipped pubkey pair between two daemons, the gateway holding a CRL
// made by openssl. With the end user's certificate revoked, the gateway
// refuses it (AUTHENTICATION_FAILED) and no SA comes up; with a CRL that
// revokes nothing, the pair comes up under strict.
func TestRevocationCRLFileBetweenDaemons(t *testing.T) {
	for _, revoked := range []bool{false, true} {
		t.Run(fmt.Sprintf("revoked=%v", revoked), func(t *testing.T) { revocationPair(t, revoked) })
	}
}

func revocationPair(t *testing.T, revoked bool) {
	const gwAddr, ueAddr = "127.0.0.1", "127.0.0.2"
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skipf("the PKI is made by openssl: %v", err)
	}
	if !bothFree(0, ueAddr) {
		t.Skipf("cannot bind %s, the end user's address in this test (lo without 127.0.0.0/8?)", ueAddr)
	}
	var p []int
	for len(p) < 2 {
		for _, c := range freePorts(t, 2-len(p)) {
			if bothFree(c, gwAddr, ueAddr) {
				p = append(p, c)
			}
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command("sh", filepath.Join("..", "..", "examples", "make-pki.sh"), dir).CombinedOutput(); err != nil {
		t.Fatalf("make-pki.sh: %v\n%s", err, out)
	}
	var crl string
	if revoked {
		crl = revokeWithOpenSSL(t, dir, "laptop")
	} else {
		crl = revokeWithOpenSSL(t, dir)
	}
	host := func(addr, sock string) map[string]any {
		return map[string]any{
			"listen": []string{addr}, "port": p[0], "port_nat_t": p[1], "data_plane": "none",
			"control": map[string]string{"socket": filepath.Join(dir, sock)},
			"metrics": nil, "tun": nil, "log": map[string]string{"level": "debug"},
		}
	}
	gwPath := exampleOnLoopback(t, "pubkey", "gateway.yaml", dir, host(gwAddr, "gw.sock"), map[string]any{
		"remote": map[string]any{"auth": "pubkey", "cacerts": []string{"certs/ca.crt"}, "revocation": "strict", "crls": []string{crl}},
	})
	uePath := exampleOnLoopback(t, "pubkey", "end-user.yaml", dir, host(ueAddr, "ue.sock"), map[string]any{
		"remote_addrs": []string{gwAddr}, "remote_port": p[0], "local_addrs": []string{ueAddr},
		"interfaces": nil, "start_action": "start",
	})
	gw := startDaemon(t, gwPath)
	ue := startDaemon(t, uePath)
	if !revoked {
		waitFor(t, "the pair with a CRL that revokes nothing", func() bool { return len(gw.established()) == 1 && len(ue.established()) == 1 })
		// The administrator revokes the end user's certificate: a new CRL
		// in the same file, then a reload. The established IKE SA goes
		// (its Child SA with it), and the reply says why; nothing comes
		// up again with the revoked certificate.
		if again := revokeWithOpenSSL(t, dir, "laptop"); again != crl {
			t.Fatalf("the CRL moved: %s, %s", again, crl)
		}
		res, err := backend{gw.d}.Reload()
		if err != nil {
			t.Fatal(err)
		}
		closed := false
		for _, c := range res.SAs {
			if c.Child == "" && c.Action == "closed" && strings.Contains(c.Reason, "peer certificate revoked") {
				closed = true
			}
		}
		if !closed {
			t.Fatalf("the reload did not close the IKE SA of the revoked certificate: %+v", res.SAs)
		}
		waitFor(t, "both ends without the SA of the revoked certificate", func() bool {
			return len(gw.established()) == 0 && len(ue.established()) == 0
		})
		return
	}
	waitFor(t, "the gateway refusing the revoked certificate", func() bool {
		return strings.Contains(gw.log.String(), "is revoked (CRL from file)") && strings.Contains(ue.log.String(), "AUTHENTICATION_FAILED")
	})
	if n := len(gw.established()) + len(ue.established()); n != 0 {
		t.Fatalf("%d IKE SAs up with a revoked certificate", n)
	}
}
