//go:build linux

package bench

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
	"time"
)

// Identities of the benchmarks: the gateway (responder) and the end user
// (initiator). With certificates they are the certificates' dNSName.
const (
	gwID = "gw.bench"
	ueID = "ue.bench"
)

// pki is an ECDSA P-256 CA and one certificate per identity, as PEM files
// in dir: ca.crt, ID.crt and ID.key (PKCS#8), which both mifike and
// strongSwan (pkcs8 plugin) read.
type pki struct{ dir string }

func (p pki) ca() string            { return filepath.Join(p.dir, "ca.crt") }
func (p pki) cert(id string) string { return filepath.Join(p.dir, id+".crt") }
func (p pki) key(id string) string  { return filepath.Join(p.dir, id+".key") }

func newPKI(dir string, ids ...string) (pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return pki{}, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pki{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"mifike bench"}, CommonName: "mifike bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return pki{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return pki{}, err
	}
	p := pki{dir: dir}
	if err := writePEM(p.ca(), "CERTIFICATE", caDER); err != nil {
		return pki{}, err
	}
	for i, id := range ids {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return pki{}, err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(10 + i)), Subject: pkix.Name{Organization: []string{"mifike bench"}, CommonName: id},
			DNSNames: []string{id}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			return pki{}, err
		}
		p8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return pki{}, err
		}
		if err := writePEM(p.cert(id), "CERTIFICATE", der); err != nil {
			return pki{}, err
		}
		if err := writePEM(p.key(id), "PRIVATE KEY", p8); err != nil {
			return pki{}, err
		}
	}
	return p, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// swanctlFiles are the files charon needs for id's certificate
// authentication, by their path under its swanctl directory.
func (p pki) swanctlFiles(id string) map[string]string {
	return map[string]string{
		"x509ca/ca.crt":          p.ca(),
		"x509/" + id + ".crt":    p.cert(id),
		"private/" + id + ".key": p.key(id),
	}
}
