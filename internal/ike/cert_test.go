package ike_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/wire"
)

type pki struct {
	ca     *x509.Certificate
	caKey  crypto.Signer
	serial int64
}

func newPKI(t testing.TB) *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mifike test CA", Organization: []string{"mifike"}},
		NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &pki{ca: ca, caKey: key, serial: 1}
}

func (p *pki) issue(t testing.TB, key crypto.Signer, cn string, dns ...string) *x509.Certificate {
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"mifike"}},
		DNSNames: dns, NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func newKey(t testing.TB, kind string) crypto.Signer {
	var k crypto.Signer
	var err error
	switch kind {
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func idOf(t testing.TB, s string) ike.ID {
	typ, data, err := ikeauth.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return ike.ID{Type: typ, Data: data}
}

// RFC 7296 §2.15, §3.8 and RFC 7427, RFC 4754: certificate authentication
// with every key type and AUTH method we support, both directions.
func TestRFC7296Section2_15CertificateAuth(t *testing.T) {
	p := newPKI(t)
	for _, c := range []struct {
		key     string
		classic bool
		pss     bool
		method  wire.AuthMethod
	}{
		{"p256", false, false, wire.AuthDigitalSignature},
		{"p256", true, false, wire.AuthECDSAP256SHA256},
		{"p384", true, false, wire.AuthECDSAP384SHA384},
		{"p521", true, false, wire.AuthECDSAP521SHA512},
		{"rsa", false, false, wire.AuthDigitalSignature},
		{"rsa", false, true, wire.AuthDigitalSignature},
		{"rsa", true, false, wire.AuthRSASig},
		{"ed25519", false, false, wire.AuthDigitalSignature},
	} {
		name := c.key
		if c.classic {
			name += "/classic"
		}
		if c.pss {
			name += "/pss"
		}
		t.Run(name, func(t *testing.T) {
			ueKey, gwKey := newKey(t, c.key), newKey(t, c.key)
			ueCert, gwCert := p.issue(t, ueKey, "ue", "ue.example"), p.issue(t, gwKey, "gw", "gw.example")
			l := newLab(t, 30, func(ue, gw *ike.Connection, _, _ *ike.Config) {
				for _, x := range []*ike.Connection{ue, gw} {
					x.LocalAuth, x.RemoteAuth, x.PSK, x.CAs = ike.AuthPubkey, ike.AuthPubkey, nil, []*x509.Certificate{p.ca}
					x.ClassicSignatures, x.RSAPSS = c.classic, c.pss
				}
				ue.Key, ue.Certs = ueKey, []*x509.Certificate{ueCert}
				gw.Key, gw.Certs = gwKey, []*x509.Certificate{gwCert}
			})
			l.up()
			l.settle(time.Second)
			if l.sa(l.ue).RemoteID != "gw.example" {
				t.Fatalf("remote id %q", l.sa(l.ue).RemoteID)
			}
		})
	}
}

// RFC 7296 §3.5: IDs of every type, bound to the certificate (RFC 4945).
func TestRFC7296Section3_5IdentityTypes(t *testing.T) {
	p := newPKI(t)
	for _, id := range []string{"O=mifike, CN=ue", "ue.example", "user@example.org", "192.0.2.10", "2001:db8::10"} {
		t.Run(id, func(t *testing.T) {
			ueKey, gwKey := newKey(t, "p256"), newKey(t, "p256")
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "ue", Organization: []string{"mifike"}},
				NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC),
				KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: []string{"ue.example"}, EmailAddresses: []string{"user@example.org"}}
			typ, data, _ := ikeauth.ParseID(id)
			if typ == wire.IDIPv4Addr || typ == wire.IDIPv6Addr {
				tmpl.IPAddresses = append(tmpl.IPAddresses, data)
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, ueKey.Public(), p.caKey)
			if err != nil {
				t.Fatal(err)
			}
			ueCert, _ := x509.ParseCertificate(der)
			gwCert := p.issue(t, gwKey, "gw", "gw.example")
			l := newLab(t, 31, func(ue, gw *ike.Connection, _, _ *ike.Config) {
				for _, x := range []*ike.Connection{ue, gw} {
					x.LocalAuth, x.RemoteAuth, x.PSK, x.CAs = ike.AuthPubkey, ike.AuthPubkey, nil, []*x509.Certificate{p.ca}
				}
				ue.Key, ue.Certs, ue.LocalID = ueKey, []*x509.Certificate{ueCert}, idOf(t, id)
				gw.Key, gw.Certs = gwKey, []*x509.Certificate{gwCert}
				gw.RemoteID = idOf(t, id)
			})
			l.up()
			if got := l.sa(l.gw).RemoteID; got != ikeauth.FormatID(typ, data) {
				t.Fatalf("gw sees %q", got)
			}
		})
	}
}

// RFC 7296 §2.21.2: a certificate from an untrusted CA, or one not naming
// the ID, is AUTHENTICATION_FAILED.
func TestRFC7296Section2_21_2UntrustedCertificate(t *testing.T) {
	trusted, other := newPKI(t), newPKI(t)
	for _, c := range []struct {
		name   string
		issuer *pki
		dns    string
	}{{"untrusted CA", other, "ue.example"}, {"ID not in certificate", trusted, "someone.example"}} {
		t.Run(c.name, func(t *testing.T) {
			ueKey, gwKey := newKey(t, "p256"), newKey(t, "p256")
			ueCert, gwCert := c.issuer.issue(t, ueKey, "ue", c.dns), trusted.issue(t, gwKey, "gw", "gw.example")
			l := newLab(t, 32, func(ue, gw *ike.Connection, _, _ *ike.Config) {
				for _, x := range []*ike.Connection{ue, gw} {
					x.LocalAuth, x.RemoteAuth, x.PSK, x.CAs = ike.AuthPubkey, ike.AuthPubkey, nil, []*x509.Certificate{trusted.ca}
				}
				ue.Key, ue.Certs = ueKey, []*x509.Certificate{ueCert}
				gw.Key, gw.Certs = gwKey, []*x509.Certificate{gwCert}
			})
			l.initiate()
			l.net.RunFor(time.Minute)
			if len(l.ue.Engine.IKESAs())+len(l.gw.Engine.IKESAs()) != 0 || countNotify(l.gw, wire.NotifyAuthenticationFailed, true) != 1 {
				t.Fatal("not refused with AUTHENTICATION_FAILED")
			}
		})
	}
}

// Mixed authentication: the client uses a PSK, the gateway a certificate
// (RFC 7296 §2.15 lets the two directions differ).
func TestRFC7296Section2_15MixedAuth(t *testing.T) {
	p := newPKI(t)
	gwKey := newKey(t, "p256")
	gwCert := p.issue(t, gwKey, "gw", "gw.example")
	l := newLab(t, 33, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.RemoteAuth, ue.CAs = ike.AuthPubkey, []*x509.Certificate{p.ca}
		gw.LocalAuth, gw.Key, gw.Certs = ike.AuthPubkey, gwKey, []*x509.Certificate{gwCert}
	})
	l.up()
}
