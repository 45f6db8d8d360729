package config

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
	"testing"
	"time"
)

// testPKI is a throwaway CA and gateway certificate written under dir:
// certs/ca.crt, certs/gw.crt, certs/chain.crt (CA first, then gw),
// private/gw.key and private/other.key (a key of no certificate).
type testPKI struct {
	dir    string
	ca, gw *x509.Certificate
	gwKey  *ecdsa.PrivateKey
}

func newPKI(t testing.TB, dir string) *testPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, gwKey, otherKey := key(), key(), key()
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mifike test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	gwTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "gw.example.org", Organization: []string{"mifike test"}},
		DNSNames:     []string{"vpn.example.org"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	gwDER, err := x509.CreateCertificate(rand.Reader, gwTmpl, ca, &gwKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := x509.ParseCertificate(gwDER)

	certPEM := func(der ...[]byte) []byte {
		var out []byte
		for _, d := range der {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
		}
		return out
	}
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	for name, data := range map[string][]byte{
		"certs/ca.crt":        certPEM(caDER),
		"certs/gw.crt":        certPEM(gwDER),
		"certs/chain.crt":     certPEM(caDER, gwDER),
		"private/gw.key":      keyPEM(gwKey),
		"private/other.key":   keyPEM(otherKey),
		"private/garbage.pem": []byte("not PEM at all\n"),
	} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &testPKI{dir: dir, ca: ca, gw: gw, gwKey: gwKey}
}
