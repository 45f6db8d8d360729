package ikeauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/wire"
)

var (
	certNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	certNotAfter  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	certNow       = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
)

type testPKI struct {
	root, inter, leaf *x509.Certificate
	leafKey           *ecdsa.PrivateKey
}

var pki = sync.OnceValue(func() *testPKI { return newPKI("Test Root") })

func newKey() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) }

func issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if parent == nil {
		parent = tmpl
	}
	return must(x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey))))
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		NotBefore:             certNotBefore,
		NotAfter:              certNotBefore.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
}

// newPKI builds root → intermediate → leaf; the leaf holds every ID type.
func newPKI(rootName string) *testPKI {
	rootKey, interKey, leafKey := newKey(), newKey(), newKey()
	root := issue(caTemplate(rootName), nil, &rootKey.PublicKey, rootKey)
	inter := issue(caTemplate(rootName+" Intermediate"), root, &interKey.PublicKey, rootKey)
	leaf := issue(&x509.Certificate{
		Subject:        pkix.Name{Country: []string{"DE"}, Organization: []string{"Example"}, CommonName: "gw"},
		NotBefore:      certNotBefore,
		NotAfter:       certNotAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:       []string{"gw.example.org", "*.wild.example.org"},
		EmailAddresses: []string{"gw@example.org"},
		IPAddresses:    []net.IP{net.ParseIP("192.0.2.1").To4(), net.ParseIP("2001:db8::1")},
	}, inter, &leafKey.PublicKey, interKey)
	return &testPKI{root: root, inter: inter, leaf: leaf, leafKey: leafKey}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestVerifyChain(t *testing.T) {
	p := pki()
	leaf, err := VerifyChain([]*x509.Certificate{p.leaf, p.inter}, pool(p.root), certNow)
	if err != nil {
		t.Fatal(err)
	}
	if leaf != p.leaf {
		t.Fatal("VerifyChain did not return the end-entity certificate")
	}
	// The key in the certificate verifies AUTH made with the leaf key.
	m, d, err := Sign(p.leafKey, nil, testOctets, SignOptions{}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(leaf.PublicKey, m, d, testOctets, nil); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyChainRejects(t *testing.T) {
	p := pki()
	chain := []*x509.Certificate{p.leaf, p.inter}
	_, err := VerifyChain(chain, pool(p.root), certNotAfter.Add(time.Second))
	wantErr(t, err, "CN=gw", "expired")
	_, err = VerifyChain(chain, pool(p.root), certNotBefore.Add(-time.Hour))
	wantErr(t, err, "not yet valid")
	_, err = VerifyChain(chain, pool(newPKI("Other Root").root), certNow)
	wantErr(t, err, "unknown authority")
	_, err = VerifyChain([]*x509.Certificate{p.leaf}, pool(p.root), certNow)
	wantErr(t, err, "unknown authority")
	_, err = VerifyChain(chain, nil, certNow)
	wantErr(t, err, "no trusted CA")
	_, err = VerifyChain(nil, pool(p.root), certNow)
	wantErr(t, err, "no certificate")
}

// RFC 4945 §5.1.3.2: a KeyUsage without digitalSignature or
// nonRepudiation may not sign AUTH.
func TestRFC4945KeyUsageMustAllowSignature(t *testing.T) {
	rootKey, leafKey := newKey(), newKey()
	root := issue(caTemplate("KU Root"), nil, &rootKey.PublicKey, rootKey)
	leaf := issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "enc-only"}, NotBefore: certNotBefore, NotAfter: certNotAfter,
		KeyUsage: x509.KeyUsageKeyAgreement,
	}, root, &leafKey.PublicKey, rootKey)
	_, err := VerifyChain([]*x509.Certificate{leaf}, pool(root), certNow)
	wantErr(t, err, "digitalSignature", "RFC 4945")
}

func TestRFC4945MatchID(t *testing.T) {
	p := pki()
	dn := func(s string) []byte { _, d, err := ParseID(s); return must(d, err) }
	for _, tc := range []struct {
		name string
		t    wire.IDType
		data []byte
		why  string // empty: must match
	}{
		{"FQDN", wire.IDFQDN, []byte("gw.example.org"), ""},
		{"FQDN case-insensitive §3.1.2", wire.IDFQDN, []byte("GW.Example.ORG"), ""},
		{"FQDN mismatch lists SANs", wire.IDFQDN, []byte("vpn.example.org"), "DNS names gw.example.org"},
		{"FQDN no wildcard matching §3.1.2", wire.IDFQDN, []byte("a.wild.example.org"), "does not contain"},
		{"RFC822", wire.IDRFC822Addr, []byte("gw@example.org"), ""},
		{"RFC822 case-insensitive §3.1.3", wire.IDRFC822Addr, []byte("GW@EXAMPLE.org"), ""},
		{"RFC822 mismatch", wire.IDRFC822Addr, []byte("vpn@example.org"), "emails gw@example.org"},
		{"IPv4", wire.IDIPv4Addr, []byte{192, 0, 2, 1}, ""},
		{"IPv4 mismatch", wire.IDIPv4Addr, []byte{192, 0, 2, 2}, "IP addresses 192.0.2.1, 2001:db8::1"},
		{"IPv4 malformed", wire.IDIPv4Addr, []byte{192, 0, 2}, "malformed"},
		{"IPv4 in IPv6 form is not the IPv4 SAN", wire.IDIPv6Addr, net.ParseIP("192.0.2.1").To16(), "does not contain"},
		{"IPv6", wire.IDIPv6Addr, net.ParseIP("2001:db8::1"), ""},
		{"IPv6 mismatch", wire.IDIPv6Addr, net.ParseIP("2001:db8::2"), "does not contain"},
		{"DN §3.1.5", wire.IDDERASN1DN, p.leaf.RawSubject, ""},
		{"DN written in DER order", wire.IDDERASN1DN, dn("C=DE, O=Example, CN=gw"), ""},
		{"DN other order", wire.IDDERASN1DN, dn("CN=gw, O=Example, C=DE"), "is not the peer's"},
		{"DN other value", wire.IDDERASN1DN, dn("C=DE, O=Example, CN=gw2"), "C=DE, O=Example, CN=gw"},
		{"DN garbage", wire.IDDERASN1DN, []byte{0x30, 0x05}, "is not the peer's"},
		{"KEY_ID §3.1.7", wire.IDKeyID, []byte{1, 2, 3}, "not bound to a certificate"},
		{"DER_ASN1_GN", wire.IDDERASN1GN, []byte{0x82, 0x01, 'x'}, "cannot be matched"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := MatchID(p.leaf, &wire.ID{IDType: tc.t, Data: tc.data})
			if tc.why == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tc.why)
		})
	}
}

// A DN that differs from the subject only in the ASN.1 string type
// matches; the content must be the same.
func TestMatchIDDNStringType(t *testing.T) {
	p := pki()
	utf8CN := must(asn1.MarshalWithParams("gw", "utf8"))
	seq := rdnSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: asn1.RawValue{FullBytes: must(asn1.Marshal("DE"))}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: asn1.RawValue{FullBytes: must(asn1.Marshal("Example"))}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: asn1.RawValue{FullBytes: utf8CN}}},
	}
	der := must(asn1.Marshal(seq))
	if bytes.Equal(der, p.leaf.RawSubject) {
		t.Fatal("test DN should differ in octets")
	}
	if err := MatchID(p.leaf, &wire.ID{IDType: wire.IDDERASN1DN, Data: der}); err != nil {
		t.Fatal(err)
	}
}

// RFC 4945 §3.1.5: an empty subject cannot be a DN identity.
func TestRFC4945EmptySubjectNoDN(t *testing.T) {
	rootKey, leafKey := newKey(), newKey()
	root := issue(caTemplate("Empty Root"), nil, &rootKey.PublicKey, rootKey)
	leaf := issue(&x509.Certificate{NotBefore: certNotBefore, NotAfter: certNotAfter, DNSNames: []string{"x.example"}},
		root, &leafKey.PublicKey, rootKey)
	wantErr(t, MatchID(leaf, &wire.ID{IDType: wire.IDDERASN1DN, Data: leaf.RawSubject}), "empty subject")
	wantErr(t, MatchID(leaf, &wire.ID{IDType: wire.IDFQDN, Data: []byte("y.example")}), "DNS names x.example")
	wantErr(t, MatchID(nil, &wire.ID{IDType: wire.IDFQDN, Data: []byte("y")}), "no certificate")
	wantErr(t, MatchID(leaf, nil), "no peer ID")
}

// RFC 7296 §3.7: CERTREQ names CAs by SHA-1 of SubjectPublicKeyInfo.
func TestRFC7296CertReqData(t *testing.T) {
	p := pki()
	got := CertReqData([]*x509.Certificate{p.root, p.inter})
	h1, h2 := sha1.Sum(p.root.RawSubjectPublicKeyInfo), sha1.Sum(p.inter.RawSubjectPublicKeyInfo)
	if want := append(h1[:], h2[:]...); !bytes.Equal(got, want) {
		t.Fatalf("CertReqData %x, want %x", got, want)
	}
	req := &wire.CertReq{Encoding: wire.CertX509Signature, Data: got}
	if hs, err := req.Authorities(); err != nil || len(hs) != 2 {
		t.Fatalf("wire sees %d authorities, err %v", len(hs), err)
	}
}

func TestWantedCA(t *testing.T) {
	p, other := pki(), newPKI("Unrelated Root")
	ours := []*x509.Certificate{p.inter, p.root}
	if !WantedCA(CertReqData([]*x509.Certificate{other.root, p.root}), ours) {
		t.Error("CERTREQ naming our root not recognised")
	}
	if WantedCA(CertReqData([]*x509.Certificate{other.root}), ours) {
		t.Error("CERTREQ naming only another root recognised")
	}
	// RFC 4945 §3.2.7.2: an empty field asks for any certificate.
	if !WantedCA(nil, ours) {
		t.Error("empty CERTREQ should want any CA")
	}
	// §3.2.8.2: an undecodable field may be ignored.
	if WantedCA(append(CertReqData(ours), 0), ours) {
		t.Error("malformed CERTREQ recognised")
	}
}

// RFC 7296 §3.6: the end-entity certificate comes first, each in its own
// X.509 Certificate - Signature payload.
func TestRFC7296CertPayloadsEndEntityFirst(t *testing.T) {
	p := pki()
	cs := CertPayloads([]*x509.Certificate{p.leaf, p.inter})
	if len(cs) != 2 || cs[0].Encoding != wire.CertX509Signature || !bytes.Equal(cs[0].Data, p.leaf.Raw) || !bytes.Equal(cs[1].Data, p.inter.Raw) {
		t.Fatalf("payloads %+v", cs)
	}
	back, err := ParseCertPayloads(cs)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || !back[0].Equal(p.leaf) || !back[1].Equal(p.inter) {
		t.Fatal("round trip changed the chain")
	}
	if _, err := VerifyChain(back, pool(p.root), certNow); err != nil {
		t.Fatal(err)
	}
}

func TestParseCertPayloadsRejects(t *testing.T) {
	p := pki()
	good := &wire.Cert{Encoding: wire.CertX509Signature, Data: p.leaf.Raw}
	nine := make([]*wire.Cert, 9)
	for i := range nine {
		nine[i] = good
	}
	huge := &wire.Cert{Encoding: wire.CertX509Signature, Data: make([]byte, MaxPeerCertBytes)}
	for name, tc := range map[string]struct {
		cs  []*wire.Cert
		why string
	}{
		"hash and URL":   {[]*wire.Cert{good, {Encoding: wire.CertHashURLX509, Data: make([]byte, 40)}}, "HASH_URL_X509_CERT (12)"},
		"PKCS#7":         {[]*wire.Cert{{Encoding: wire.CertPKCS7, Data: p.leaf.Raw}}, "PKCS7_WRAPPED_X509"},
		"raw public key": {[]*wire.Cert{{Encoding: wire.CertRawPublicKey, Data: p.leaf.RawSubjectPublicKeyInfo}}, "RAW_PUBLIC_KEY"},
		"garbage DER":    {[]*wire.Cert{{Encoding: wire.CertX509Signature, Data: []byte{0x30, 0x03, 1, 2, 3}}}, "not a valid X.509"},
		"trailing data":  {[]*wire.Cert{{Encoding: wire.CertX509Signature, Data: append(bytes.Clone(p.leaf.Raw), 0)}}, "not a valid X.509"},
		"nine certs":     {nine, "at most 8"},
		"over 64 KiB":    {[]*wire.Cert{good, huge}, "octets"},
		"nil payload":    {[]*wire.Cert{nil}, "missing"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCertPayloads(tc.cs)
			wantErr(t, err, tc.why)
		})
	}
}
