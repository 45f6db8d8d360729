package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/lab"
	"github.com/mifike/mifike/internal/radiuslab"
)

// The lab's AAA network: FreeRADIUS runs in its own namespace behind the
// gateway, as an operator's RADIUS server sits on a back-office network,
// so its traffic crosses a real link (a test can silence the server
// there without touching the gateway) and the gateway's RADIUS client
// talks from an address of its own, not loopback:
//
//	[gw] aaa0 10.94.0.1 ── eth0 10.94.0.2 [aaa] FreeRADIUS 1812/1813
var (
	RADIUSAddr  = netip.MustParseAddr("10.94.0.2")
	radiusGWEnd = "10.94.0.1/24"
)

// Files of the EAP lab, relative to each daemon's directory (where its
// configuration is, so relative names in it find them).
const (
	gatewayID      = "gw.demo.example"
	uePasswordFile = "eap-password"
	ueGatewayCA    = "gw-ca.pem" // checks the gateway's certificate
	ueEAPCert      = "eap-client.pem"
	ueEAPKey       = "eap-client.key"
	ueEAPCA        = "eap-ca.pem" // checks FreeRADIUS's EAP-TLS certificate
	gwCert         = "gw.pem"
	gwKey          = "gw.key"
)

// eapType is FreeRADIUS's default_eap_type for an Options.EAP method.
func eapType(method string) (string, error) {
	if !slices.Contains(EAPMethods, method) {
		return "", fmt.Errorf("demo: %q is not an EAP method of the lab; use one of %s", method, strings.Join(EAPMethods, ", "))
	}
	return strings.TrimPrefix(method, "eap-"), nil
}

// prepareEAP starts FreeRADIUS in the aaa namespace with the lab's users,
// and writes the end user's password or EAP-TLS files and the gateway's
// certificate into the daemons' directories.
func (t *Topology) prepareEAP(o Options) error {
	typ, err := eapType(o.EAP)
	if err != nil {
		return err
	}
	if err := radiuslab.Available(); err != nil {
		return err
	}
	if t.RADIUS != nil {
		return errors.New("demo: FreeRADIUS already runs in this lab")
	}
	if t.AAA, err = t.AddNS("aaa"); err != nil {
		return err
	}
	if err := t.Veth(lab.End{NS: t.GW, Dev: "aaa0", Addrs: []string{radiusGWEnd}},
		lab.End{NS: t.AAA, Dev: "eth0", Addrs: []string{RADIUSAddr.String() + "/24"}}); err != nil {
		return err
	}
	users := []radiuslab.User{
		{Name: EAPUser, Password: EAPUserPassword, Class: RADIUSClass},
		// EAP-TLS needs no password; the entry gives the certificate's
		// user the same Class.
		{Name: radiuslab.ClientCertName, Password: "unused-for-eap-tls", Class: RADIUSClass},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.RADIUS, err = radiuslab.New(ctx, radiuslab.Options{Lab: t.Lab, NS: t.AAA, Address: RADIUSAddr,
		Secret: RADIUSSecret, Users: users, DefaultEAPType: typ, StartTimeout: time.Minute})
	if err != nil {
		return err
	}
	ueDir, gwDir := filepath.Join(t.Dir, "ue"), filepath.Join(t.Dir, "gw")
	for _, d := range []string{ueDir, gwDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := writeGatewayPKI(filepath.Join(ueDir, ueGatewayCA), filepath.Join(gwDir, gwCert), filepath.Join(gwDir, gwKey)); err != nil {
		return err
	}
	if o.EAP == "eap-tls" {
		for src, dst := range map[string]string{t.RADIUS.ClientCert: ueEAPCert, t.RADIUS.ClientKey: ueEAPKey, t.RADIUS.CACert: ueEAPCA} {
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(ueDir, dst), b, 0o600); err != nil {
				return err
			}
		}
		return nil
	}
	return t.SetEAPPassword(or(o.EAPPassword, EAPUserPassword))
}

// SetEAPPassword writes the end user's password file (read again on a
// reload).
func (t *Topology) SetEAPPassword(pw string) error {
	return os.WriteFile(filepath.Join(t.Dir, "ue", uePasswordFile), []byte(pw+"\n"), 0o600)
}

// EAPIdentity is the identity the end user authenticates as with method.
func EAPIdentity(method string) string {
	if method == "eap-tls" {
		return radiuslab.ClientCertName
	}
	return EAPUser
}

// Close stops everything in the lab, FreeRADIUS too, and removes its
// configuration.
func (t *Topology) Close() error {
	err := t.Lab.Close()
	if t.RADIUS != nil {
		t.RADIUS.Close()
	}
	return err
}

// SilenceRADIUS drops (on) or passes again (off) every RADIUS datagram
// reaching the aaa namespace: a server that is there but never answers,
// with no ICMP error to give it away.
func (t *Topology) SilenceRADIUS(ctx context.Context, on bool) error {
	if !on {
		_, err := t.Run(ctx, t.AAA, "nft", "delete", "table", "inet", "silence")
		return err
	}
	_, err := t.Run(ctx, t.AAA, "nft", "add table inet silence; "+
		"add chain inet silence in { type filter hook input priority 0; }; "+
		"add rule inet silence in udp dport { 1812, 1813 } drop")
	return err
}

// RADIUSLogins counts FreeRADIUS's own "Login OK" and "Login incorrect"
// log lines (log.auth): the authentications it decided, from the server's
// side rather than the code under test.
func (t *Topology) RADIUSLogins() (ok, incorrect int) {
	if t.RADIUS == nil {
		return 0, 0
	}
	out := t.RADIUS.Output()
	return strings.Count(out, "Login OK: ["), strings.Count(out, "Login incorrect")
}

// writeGatewayPKI makes a throwaway ECDSA CA and the gateway's
// certificate (dNSName gatewayID, the gateway's IKE identity) under it.
func writeGatewayPKI(caPath, certPath, keyPath string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mifike demo CA"},
		NotBefore: now, NotAfter: now.Add(25 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: gatewayID}, DNSNames: []string{gatewayID},
		NotBefore: now, NotAfter: now.Add(25 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{caPath, "CERTIFICATE", caDER}, {certPath, "CERTIFICATE", der}, {keyPath, "PRIVATE KEY", p8}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			return err
		}
	}
	return nil
}
