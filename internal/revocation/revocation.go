// Package revocation checks whether the peer's certificates are revoked,
// by CRL (RFC 5280 §5) and OCSP (RFC 6960), for public-key authentication
// (RFC 7296 §2.15, RFC 4945 §5.2).
//
// Where the network fits: the IKE engine is sans-I/O (it reads no clock
// and opens no socket) and calls Checker.CheckRevocation from its loop
// while verifying AUTH. So a check here only reads memory: CRLs from
// files and the Cache of what was fetched. A status the cache does not
// hold is a miss: it asks the Cache's fetchers (the daemon's goroutines,
// Cache.Run) to fetch it, without waiting, and the check goes on with the
// status unknown, which the policy then decides. The alternative, an
// engine that suspends IKE_AUTH until an asynchronous answer comes (as it
// does for a RADIUS backend), would keep the very first authentication
// of a certificate from failing under strict, at the price of a second
// suspension point in both roles of IKE_AUTH; a miss costs only that
// first attempt (the peer's retry finds the status cached), CRLs stay
// cached until their nextUpdate and are refreshed before it, so we chose
// the cache.
//
// The policies are strongSwan's (swanctl.conf remote.revocation):
// strict wants the status known good; ifuri fails only when the
// certificate names a CRL or OCSP URI (or ocsp_uri is configured) and
// the status could not be had; relaxed fails only on a revoked
// certificate. Revoked fails under every policy.
package revocation

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Policy says what an unknown revocation status means.
type Policy uint8

const (
	Relaxed Policy = iota + 1 // only a revoked certificate fails
	IfURI                     // unknown fails when a CRL or OCSP URI exists
	Strict                    // unknown fails
)

func (p Policy) String() string {
	switch p {
	case Relaxed:
		return "relaxed"
	case IfURI:
		return "ifuri"
	case Strict:
		return "strict"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy reads strongSwan's names.
func ParsePolicy(s string) (Policy, bool) {
	switch s {
	case "relaxed":
		return Relaxed, true
	case "ifuri":
		return IfURI, true
	case "strict":
		return Strict, true
	}
	return 0, false
}

// Skew is how far thisUpdate may lie in the future and nextUpdate in the
// past, for clocks that disagree a little (RFC 6960 §4.2.2.1 leaves the
// margin to us).
const Skew = 5 * time.Minute

// Bounds on what one CRL file or one response may make us hold.
const (
	MaxCRLBytes  = 8 << 20
	MaxOCSPBytes = 64 << 10
)

// status of one certificate.
type status uint8

const (
	unknown status = iota
	good
	revoked
)

// Checker is one connection's revocation checking (remote.revocation,
// remote.crls, remote.ocsp_uri); the engine calls CheckRevocation.
type Checker struct {
	Policy Policy
	// OCSPURI, when set, is asked instead of the certificate's AIA
	// responder.
	OCSPURI string
	// CRLs are loaded from files; each is used for the certificates of
	// the CA that signed it.
	CRLs []*x509.RevocationList
	// Cache holds what was fetched and fetches what is missing; nil
	// (mifike daemon --check, tests) checks the files only.
	Cache *Cache
}

// RevokedError is CheckRevocation's answer for a revoked certificate, as
// opposed to one whose status is unknown: the engine closes established
// SAs (after a reload brought new revocation data) only for this one.
type RevokedError struct {
	Subject, Serial, Source string
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("certificate %q (serial %s) is revoked (%s)", e.Subject, e.Serial, e.Source)
}

// Revoked tells the engine (which does not import this package) that the
// certificate is revoked.
func (e *RevokedError) Revoked() bool { return true }

// CheckRevocation checks every certificate of chain (a verified chain:
// end entity first, trust anchor last) but the anchor, against its
// issuer, the next one. It only reads memory (see the package comment).
func (c *Checker) CheckRevocation(chain []*x509.Certificate, now time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		if err := c.check(chain[i], chain[i+1], now); err != nil {
			return err
		}
	}
	return nil
}

func (c *Checker) check(cert, issuer *x509.Certificate, now time.Time) error {
	name := cert.Subject.String()
	// Files first: a CRL the administrator put there needs no network.
	for _, crl := range c.CRLs {
		if st, ok := crlStatus(crl, cert, issuer, now); ok {
			if st == revoked {
				return &RevokedError{Subject: name, Serial: cert.SerialNumber.String(), Source: "CRL from file"}
			}
			return nil
		}
	}
	var uris []string
	ocspURI := c.OCSPURI
	if ocspURI == "" && len(cert.OCSPServer) > 0 {
		ocspURI = cert.OCSPServer[0]
	}
	if ocspURI != "" {
		uris = append(uris, ocspURI)
	}
	cdps := httpURIs(cert.CRLDistributionPoints)
	uris = append(uris, cdps...)
	why := "no CRL or OCSP URI"
	if c.Cache != nil && len(uris) > 0 {
		st, w := c.Cache.lookup(cert, issuer, ocspURI, cdps, now)
		switch st {
		case revoked:
			return &RevokedError{Subject: name, Serial: cert.SerialNumber.String(), Source: w}
		case good:
			return nil
		}
		why = w
	} else if len(uris) > 0 {
		why = "fetching is off"
	}
	switch {
	case c.Policy == Strict:
		return fmt.Errorf("revocation status of certificate %q is unknown (%s) and remote.revocation is strict", name, why)
	case c.Policy == IfURI && len(uris) > 0:
		return fmt.Errorf("revocation status of certificate %q is unknown (%s) though it names %s, and remote.revocation is ifuri", name, why, strings.Join(uris, ", "))
	}
	return nil
}

// crlStatus is what crl says of cert, if crl is issuer's, verifies and
// is current; ok is false when it says nothing.
func crlStatus(crl *x509.RevocationList, cert, issuer *x509.Certificate, now time.Time) (status, bool) {
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || !bytes.Equal(cert.RawIssuer, issuer.RawSubject) {
		return unknown, false
	}
	if crl.CheckSignatureFrom(issuer) != nil {
		return unknown, false
	}
	if crl.ThisUpdate.After(now.Add(Skew)) || !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate.Add(Skew)) {
		return unknown, false // RFC 5280 §6.3.3 (a)(1): a current CRL only
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return revoked, true
		}
	}
	return good, true
}

// httpURIs are the http:// distribution points; ldap: and file: ones are
// not fetched.
func httpURIs(uris []string) []string {
	var out []string
	for _, u := range uris {
		if strings.HasPrefix(strings.ToLower(u), "http://") || strings.HasPrefix(strings.ToLower(u), "https://") {
			out = append(out, u)
		}
	}
	return out
}

// ParseCRLs reads every CRL of a file, PEM ("X509 CRL" blocks) or a
// single DER one.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if len(data) > MaxCRLBytes {
		return nil, fmt.Errorf("CRL file of %d octets; at most %d are read", len(data), MaxCRLBytes)
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("not a PEM or DER CRL: %w", err)
		}
		return []*x509.RevocationList{crl}, nil
	}
	var out []*x509.RevocationList
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", len(out)+1, err)
		}
		out = append(out, crl)
	}
	if len(out) == 0 {
		return nil, errors.New("no X509 CRL block in the PEM file")
	}
	return out, nil
}
