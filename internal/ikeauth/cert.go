package ikeauth

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/wire"
)

// Bounds on the peer's CERT payloads, so a peer cannot make us parse and
// chain-build without limit. RFC 7296 §3.6 asks for up to four
// certificates; twice that leaves room for cross-certificates.
const (
	MaxPeerCerts     = 8
	MaxPeerCertBytes = 64 << 10
)

// CertPayloads returns the CERT payloads for our chain: chain[0] is the
// end-entity certificate holding the AUTH key, which RFC 7296 §3.6 requires
// first; intermediates follow. The encoding is X.509 Certificate - Signature.
func CertPayloads(chain []*x509.Certificate) []*wire.Cert {
	out := make([]*wire.Cert, 0, len(chain))
	for _, c := range chain {
		if c != nil {
			out = append(out, &wire.Cert{Encoding: wire.CertX509Signature, Data: c.Raw})
		}
	}
	return out
}

// ParseCertPayloads parses the peer's CERT payloads in order (end entity
// first, RFC 7296 §3.6). Only X.509 Certificate - Signature is accepted;
// at most MaxPeerCerts certificates and MaxPeerCertBytes octets in total.
func ParseCertPayloads(cs []*wire.Cert) ([]*x509.Certificate, error) {
	if len(cs) > MaxPeerCerts {
		return nil, fmt.Errorf("ikeauth: peer sent %d CERT payloads; at most %d are accepted", len(cs), MaxPeerCerts)
	}
	total := 0
	for i, c := range cs {
		if c == nil {
			return nil, fmt.Errorf("ikeauth: CERT payload %d is missing", i+1)
		}
		total += len(c.Data)
	}
	if total > MaxPeerCertBytes {
		return nil, fmt.Errorf("ikeauth: peer's CERT payloads hold %d octets; at most %d are accepted", total, MaxPeerCertBytes)
	}
	out := make([]*x509.Certificate, 0, len(cs))
	for i, c := range cs {
		if c.Encoding != wire.CertX509Signature {
			return nil, fmt.Errorf("ikeauth: CERT payload %d uses encoding %v (%d); only %v (%d) is supported",
				i+1, c.Encoding, uint8(c.Encoding), wire.CertX509Signature, uint8(wire.CertX509Signature))
		}
		cert, err := x509.ParseCertificate(c.Data)
		if err != nil {
			return nil, fmt.Errorf("ikeauth: CERT payload %d is not a valid X.509 certificate: %w", i+1, err)
		}
		out = append(out, cert)
	}
	return out, nil
}

// certReqHash is how CERTREQ names a CA: SHA-1 of its SubjectPublicKeyInfo
// (RFC 7296 §3.7).
func certReqHash(ca *x509.Certificate) [sha1.Size]byte {
	return sha1.Sum(ca.RawSubjectPublicKeyInfo)
}

// CertReqData returns the Certification Authority field of an X.509
// CERTREQ naming our trust anchors: their 20-octet hashes concatenated
// (RFC 7296 §3.7).
func CertReqData(cas []*x509.Certificate) []byte {
	out := make([]byte, 0, sha1.Size*len(cas))
	for _, ca := range cas {
		if ca != nil {
			h := certReqHash(ca)
			out = append(out, h[:]...)
		}
	}
	return out
}

// WantedCA reports whether the Certification Authority field of a peer's
// X.509 CERTREQ names one of cas, to choose which of our chains to send.
// An empty field asks for any certificate (RFC 4945 §3.2.7.2), so it names
// them all; a field that is not a list of 20-octet hashes names none
// (RFC 4945 §3.2.8.2 lets us ignore it).
func WantedCA(certreq []byte, cas []*x509.Certificate) bool {
	if len(certreq) == 0 {
		return true
	}
	if len(certreq)%sha1.Size != 0 {
		return false
	}
	for _, ca := range cas {
		if ca == nil {
			continue
		}
		h := certReqHash(ca)
		for i := 0; i < len(certreq); i += sha1.Size {
			if bytes.Equal(certreq[i:i+sha1.Size], h[:]) {
				return true
			}
		}
	}
	return false
}

// VerifyChain validates certs (end entity first, then intermediates in any
// order) against roots at time now and returns the end-entity certificate.
// Any extended key usage is accepted: RFC 4945 §5.1.3.12 does not require
// EKU support, and gateways commonly hold TLS server certificates. A
// KeyUsage extension, if present, must allow signatures (§5.1.3.2).
func VerifyChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	chain, err := VerifiedChain(certs, roots, now)
	if err != nil {
		return nil, err
	}
	return chain[0], nil
}

// VerifiedChain is VerifyChain returning the chain it built: the end
// entity first, then each issuer, the trust anchor last. A revocation
// check needs each certificate's issuer (RFC 5280 §6.3).
func VerifiedChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	if len(certs) == 0 || certs[0] == nil {
		return nil, errors.New("ikeauth: peer sent no certificate to verify its AUTH key")
	}
	if roots == nil {
		// A nil pool would make crypto/x509 fall back to the system roots.
		return nil, errors.New("ikeauth: no trusted CA certificates configured to verify the peer's certificate")
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if c != nil {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("ikeauth: certificate %q: %w", formatDN(leaf.RawSubject), err)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return nil, fmt.Errorf("ikeauth: certificate %q has a KeyUsage without digitalSignature or nonRepudiation, so it may not sign AUTH (RFC 4945 §5.1.3.2)", formatDN(leaf.RawSubject))
	}
	return chains[0], nil
}

// MatchID checks that the peer's IDi/IDr is bound to its end-entity
// certificate (RFC 4945 §3.1): ID_FQDN to a dNSName and ID_RFC822_ADDR to
// an rfc822Name, both compared case-insensitively and without wildcards;
// ID_IPV4_ADDR and ID_IPV6_ADDR to an iPAddress, compared bitwise;
// ID_DER_ASN1_DN to the whole, non-empty subject. ID_KEY_ID names no
// certificate content and is refused (§3.1.7).
func MatchID(cert *x509.Certificate, id *wire.ID) error {
	if cert == nil {
		return errors.New("ikeauth: no certificate to match the peer's ID against")
	}
	if id == nil {
		return errors.New("ikeauth: no peer ID to match against the certificate")
	}
	switch id.IDType {
	case wire.IDFQDN:
		for _, n := range cert.DNSNames {
			if strings.EqualFold(n, string(id.Data)) {
				return nil
			}
		}
	case wire.IDRFC822Addr:
		for _, n := range cert.EmailAddresses {
			if strings.EqualFold(n, string(id.Data)) {
				return nil
			}
		}
	case wire.IDIPv4Addr, wire.IDIPv6Addr:
		size := net.IPv6len
		if id.IDType == wire.IDIPv4Addr {
			size = net.IPv4len
		}
		want, ok := netip.AddrFromSlice(id.Data)
		if !ok || len(id.Data) != size {
			return fmt.Errorf("ikeauth: %v of %d octets is malformed; RFC 7296 §3.5 makes it %d", id.IDType, len(id.Data), size)
		}
		for _, ip := range cert.IPAddresses {
			if got, ok := netip.AddrFromSlice(ip); ok && got == want {
				return nil
			}
		}
	case wire.IDDERASN1DN:
		if isEmptyDN(cert.RawSubject) {
			return fmt.Errorf("ikeauth: certificate has an empty subject, which cannot match %v %q (RFC 4945 §3.1.5)", id.IDType, FormatID(id.IDType, id.Data))
		}
		if bytes.Equal(cert.RawSubject, id.Data) || dnEqual(cert.RawSubject, id.Data) {
			return nil
		}
		return fmt.Errorf("ikeauth: certificate subject %q is not the peer's %v %q", formatDN(cert.RawSubject), id.IDType, FormatID(id.IDType, id.Data))
	case wire.IDKeyID:
		return fmt.Errorf("ikeauth: %v %s is not bound to a certificate (RFC 4945 §3.1.7); the peer must send an ID its certificate holds: %s",
			id.IDType, FormatID(id.IDType, id.Data), certIdentities(cert))
	default:
		return fmt.Errorf("ikeauth: peer ID type %v cannot be matched against a certificate; use ID_FQDN, ID_RFC822_ADDR, ID_IPV4_ADDR, ID_IPV6_ADDR or ID_DER_ASN1_DN", id.IDType)
	}
	return fmt.Errorf("ikeauth: certificate %q does not contain the peer's %v %s: it holds %s",
		formatDN(cert.RawSubject), id.IDType, FormatID(id.IDType, id.Data), certIdentities(cert))
}

// certIdentities lists what a certificate can be matched on, for errors.
func certIdentities(cert *x509.Certificate) string {
	var parts []string
	if !isEmptyDN(cert.RawSubject) {
		parts = append(parts, fmt.Sprintf("subject %q", formatDN(cert.RawSubject)))
	}
	if len(cert.DNSNames) > 0 {
		parts = append(parts, "DNS names "+strings.Join(cert.DNSNames, ", "))
	}
	if len(cert.EmailAddresses) > 0 {
		parts = append(parts, "emails "+strings.Join(cert.EmailAddresses, ", "))
	}
	if len(cert.IPAddresses) > 0 {
		ips := make([]string, len(cert.IPAddresses))
		for i, ip := range cert.IPAddresses {
			ips[i] = ip.String()
		}
		parts = append(parts, "IP addresses "+strings.Join(ips, ", "))
	}
	if len(parts) == 0 {
		return "no subject and no subjectAltName"
	}
	return strings.Join(parts, "; ")
}
