package control

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"
)

// The certificate view shows what swanctl --list-certs does, from the
// certificate itself: names, serial as colon-separated hex, validity,
// key type and the SHA-256 fingerprint of the DER.
func TestCertFromX509(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nb, na := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	u, _ := url.Parse("urn:example:gw")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x01ab02), Subject: pkix.Name{CommonName: "vpn.example.org", Organization: []string{"Example"}},
		NotBefore: nb, NotAfter: na, DNSNames: []string{"vpn.example.org"}, EmailAddresses: []string{"ops@example.org"},
		IPAddresses: []net.IP{net.ParseIP("192.0.2.1")}, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	v := CertFromX509(c)
	sum := sha256.Sum256(der)
	if v.Subject != "CN=vpn.example.org,O=Example" || v.Issuer != v.Subject || v.Serial != "01:ab:02" || v.KeyType != "ECDSA P-384" || v.CA ||
		!v.NotBefore.Equal(nb) || !v.NotAfter.Equal(na) || v.SHA256 != hex.EncodeToString(sum[:]) ||
		!slices.Equal(v.SANs, []string{"vpn.example.org", "ops@example.org", "192.0.2.1", "urn:example:gw"}) || v.Uses == nil {
		t.Fatalf("CertFromX509: %+v", v)
	}
}
