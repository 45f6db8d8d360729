package ike_test

import (
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/revocation"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 7296 §2.15 with RFC 5280 §6.3: a peer whose certificate its CA
// revoked is refused with AUTHENTICATION_FAILED, as initiator (the
// gateway checks the end user) and as responder (the end user checks the
// gateway); an unrevoked one comes up. The CRL is the kind remote.crls
// loads; the checker runs inside the engine's loop and reads only memory.
func TestRFC7296Section2_15RevokedCertificate(t *testing.T) {
	p := newPKI(t)
	ueKey, gwKey := newKey(t, "p256"), newKey(t, "p256")
	ueCert, gwCert := p.issue(t, ueKey, "ue", "ue.example"), p.issue(t, gwKey, "gw", "gw.example")
	crlOf := func(t *testing.T, serials ...*big.Int) *x509.RevocationList {
		tmpl := &x509.RevocationList{Number: big.NewInt(1),
			ThisUpdate: time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), NextUpdate: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}
		for _, s := range serials {
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: tmpl.ThisUpdate})
		}
		der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.ca, p.caKey)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		return crl
	}
	for _, c := range []struct {
		name    string
		revoked []*big.Int
		up      bool
	}{
		{name: "none revoked", up: true},
		{name: "initiator revoked", revoked: []*big.Int{ueCert.SerialNumber}},
		{name: "responder revoked", revoked: []*big.Int{gwCert.SerialNumber}},
	} {
		t.Run(c.name, func(t *testing.T) {
			crl := crlOf(t, c.revoked...)
			l := newLab(t, 34, func(ue, gw *ike.Connection, _, _ *ike.Config) {
				for _, x := range []*ike.Connection{ue, gw} {
					x.LocalAuth, x.RemoteAuth, x.PSK, x.CAs = ike.AuthPubkey, ike.AuthPubkey, nil, []*x509.Certificate{p.ca}
					x.Revocation = &revocation.Checker{Policy: revocation.Strict, CRLs: []*x509.RevocationList{crl}}
				}
				ue.Key, ue.Certs = ueKey, []*x509.Certificate{ueCert}
				gw.Key, gw.Certs = gwKey, []*x509.Certificate{gwCert}
			})
			if c.up {
				l.up()
				return
			}
			l.initiate()
			l.net.RunFor(time.Minute)
			if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 {
				t.Fatalf("%d IKE SAs up with a revoked certificate", n)
			}
			// The gateway refuses a revoked end user in its response; the
			// end user refuses a revoked gateway in an INFORMATIONAL.
			gwRefuses := c.revoked[0] == ueCert.SerialNumber
			if gwRefuses && countNotify(l.gw, wire.NotifyAuthenticationFailed, true) != 1 ||
				!gwRefuses && countNotify(l.ue, wire.NotifyAuthenticationFailed, true) != 1 {
				t.Fatal("not refused with AUTHENTICATION_FAILED")
			}
		})
	}
}
