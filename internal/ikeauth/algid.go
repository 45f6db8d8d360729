package ikeauth

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"

	"github.com/mifike/mifike/internal/wire"
)

// Object identifiers of RFC 7427 Appendix A (taken from RFC 5912), plus
// id-Ed25519 (RFC 8410, used in IKEv2 by RFC 8420).
var (
	oidSHA1WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}     // A.1.1
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}    // A.1.2
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}    // A.1.3
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}    // A.1.4
	oidDSAWithSHA1     = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 3}         // A.2.1
	oidDSAWithSHA256   = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 2} // A.2.2
	oidECDSAWithSHA1   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}         // A.3.1
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}      // A.3.2
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}      // A.3.3
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}      // A.3.4
	oidRSASSAPSS       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}    // A.4
	oidMGF1            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA1            = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// scheme is the signature scheme an AlgorithmIdentifier names.
type scheme int

const (
	schemeRSAPKCS1 scheme = iota + 1 // RSASSA-PKCS1-v1_5
	schemeRSAPSS                     // RSASSA-PSS, RFC 4055
	schemeECDSA                      // DER Ecdsa-Sig-Value, as in X.509
	schemeEd25519                    // pure Ed25519 over the whole octets
)

// sigAlg is one signature algorithm of the Digital Signature method.
type sigAlg struct {
	scheme  scheme
	hash    wire.HashAlgorithm
	saltLen int // RSASSA-PSS only: the salt length the peer announced
}

// hashes maps the RFC 7427 hash registry onto Go hashes and their OIDs.
var hashes = []struct {
	id   wire.HashAlgorithm
	hash crypto.Hash
	oid  asn1.ObjectIdentifier
}{
	{wire.HashSHA2256, crypto.SHA256, oidSHA256},
	{wire.HashSHA2384, crypto.SHA384, oidSHA384},
	{wire.HashSHA2512, crypto.SHA512, oidSHA512},
}

// goHash returns the Go hash for a SHA-2 registry value, 0 otherwise
// (Identity hashes nothing; SHA-1 is never used under method 14).
func goHash(h wire.HashAlgorithm) crypto.Hash {
	for _, e := range hashes {
		if e.id == h {
			return e.hash
		}
	}
	return 0
}

func hashOID(h wire.HashAlgorithm) asn1.ObjectIdentifier {
	for _, e := range hashes {
		if e.id == h {
			return e.oid
		}
	}
	return nil
}

func hashFromOID(oid asn1.ObjectIdentifier) (wire.HashAlgorithm, bool) {
	for _, e := range hashes {
		if e.oid.Equal(oid) {
			return e.id, true
		}
	}
	return 0, false
}

// signatureOIDs are the OIDs naming both scheme and hash (all but PSS).
var signatureOIDs = []struct {
	oid asn1.ObjectIdentifier
	alg sigAlg
}{
	{oidSHA256WithRSA, sigAlg{scheme: schemeRSAPKCS1, hash: wire.HashSHA2256}},
	{oidSHA384WithRSA, sigAlg{scheme: schemeRSAPKCS1, hash: wire.HashSHA2384}},
	{oidSHA512WithRSA, sigAlg{scheme: schemeRSAPKCS1, hash: wire.HashSHA2512}},
	{oidECDSAWithSHA256, sigAlg{scheme: schemeECDSA, hash: wire.HashSHA2256}},
	{oidECDSAWithSHA384, sigAlg{scheme: schemeECDSA, hash: wire.HashSHA2384}},
	{oidECDSAWithSHA512, sigAlg{scheme: schemeECDSA, hash: wire.HashSHA2512}},
	{oidEd25519, sigAlg{scheme: schemeEd25519, hash: wire.HashIdentity}},
}

// sha1OIDs are algorithms RFC 8247 §3.2 puts at MUST NOT, named for errors.
var sha1OIDs = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{oidSHA1WithRSA, "sha1WithRSAEncryption"},
	{oidECDSAWithSHA1, "ecdsa-with-SHA1"},
	{oidDSAWithSHA1, "dsa-with-sha1"},
}

func (a sigAlg) String() string {
	switch a.scheme {
	case schemeRSAPKCS1:
		return fmt.Sprintf("RSASSA-PKCS1-v1_5 with %v", a.hash)
	case schemeRSAPSS:
		return fmt.Sprintf("RSASSA-PSS with %v", a.hash)
	case schemeECDSA:
		return fmt.Sprintf("ECDSA with %v", a.hash)
	case schemeEd25519:
		return "Ed25519"
	}
	return "unknown signature algorithm"
}

// pssParams is RSASSA-PSS-params (RFC 4055 §3.1) as we send it: every field
// present, trailerField too, which is the shape of RFC 7427 Appendix A.4.3.
type pssParams struct {
	Hash         pkix.AlgorithmIdentifier `asn1:"explicit,tag:0"`
	MGF          pkix.AlgorithmIdentifier `asn1:"explicit,tag:1"`
	SaltLength   int                      `asn1:"explicit,tag:2"`
	TrailerField int                      `asn1:"explicit,tag:3"`
}

// peerPSSParams is RSASSA-PSS-params as received: absent fields take the
// RFC 4055 defaults (SHA-1, MGF1 with SHA-1, salt 20, trailer 1).
type peerPSSParams struct {
	Hash         pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:0"`
	MGF          pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:1"`
	SaltLength   int                      `asn1:"optional,explicit,tag:2,default:20"`
	TrailerField int                      `asn1:"optional,explicit,tag:3,default:1"`
}

// encodeAlgorithmIdentifier returns the DER AlgorithmIdentifier for a,
// following the preferred form of each algorithm's specification
// (RFC 7427 §3): NULL parameters for PKCS#1, none for ECDSA and Ed25519,
// explicit hash, MGF1 and a salt as long as the hash for PSS.
func encodeAlgorithmIdentifier(a sigAlg) ([]byte, error) {
	ai := pkix.AlgorithmIdentifier{}
	switch a.scheme {
	case schemeRSAPKCS1, schemeECDSA, schemeEd25519:
		for _, s := range signatureOIDs {
			if s.alg.scheme == a.scheme && s.alg.hash == a.hash {
				ai.Algorithm = s.oid
			}
		}
		if ai.Algorithm == nil {
			return nil, fmt.Errorf("ikeauth: no algorithm identifier for %v", a)
		}
		if a.scheme == schemeRSAPKCS1 {
			ai.Parameters = asn1.NullRawValue
		}
	case schemeRSAPSS:
		oid := hashOID(a.hash)
		if oid == nil {
			return nil, fmt.Errorf("ikeauth: no algorithm identifier for %v", a)
		}
		h := pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue}
		hDER, err := asn1.Marshal(h)
		if err != nil {
			return nil, err
		}
		params, err := asn1.Marshal(pssParams{
			Hash:         h,
			MGF:          pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: hDER}},
			SaltLength:   goHash(a.hash).Size(),
			TrailerField: 1,
		})
		if err != nil {
			return nil, err
		}
		ai = pkix.AlgorithmIdentifier{Algorithm: oidRSASSAPSS, Parameters: asn1.RawValue{FullBytes: params}}
	default:
		return nil, fmt.Errorf("ikeauth: no algorithm identifier for %v", a)
	}
	return asn1.Marshal(ai)
}

// parseAlgorithmIdentifier decodes the AlgorithmIdentifier of a Digital
// Signature AUTH payload (RFC 7427 §3) from the peer.
func parseAlgorithmIdentifier(der []byte) (sigAlg, error) {
	var ai pkix.AlgorithmIdentifier
	rest, err := asn1.Unmarshal(der, &ai)
	if err != nil {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH AlgorithmIdentifier is not valid DER: %v", err)
	}
	if len(rest) != 0 {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH AlgorithmIdentifier is followed by %d stray octets inside its length", len(rest))
	}
	for _, s := range sha1OIDs {
		if ai.Algorithm.Equal(s.oid) {
			return sigAlg{}, fmt.Errorf("ikeauth: peer signed AUTH with %s: SHA-1 is MUST NOT for Digital Signature authentication (RFC 8247 §3.2)", s.name)
		}
	}
	if ai.Algorithm.Equal(oidDSAWithSHA256) {
		return sigAlg{}, fmt.Errorf("ikeauth: peer signed AUTH with DSA (dsa-with-sha256), which is not supported; use RSA, ECDSA or Ed25519")
	}
	if ai.Algorithm.Equal(oidRSASSAPSS) {
		return parsePSSParams(ai.Parameters)
	}
	absent := len(ai.Parameters.FullBytes) == 0
	isNull := ai.Parameters.Tag == asn1.TagNull && ai.Parameters.Class == asn1.ClassUniversal && len(ai.Parameters.Bytes) == 0
	for _, s := range signatureOIDs {
		if !ai.Algorithm.Equal(s.oid) {
			continue
		}
		// PKCS#1 parameters are NULL, but RFC 4055 §5 asks receivers to
		// accept them absent too; ECDSA (RFC 5758 §3.2) and Ed25519
		// (RFC 8410 §3) parameters MUST be absent.
		if s.alg.scheme == schemeRSAPKCS1 && !(absent || isNull) {
			return sigAlg{}, fmt.Errorf("ikeauth: AUTH AlgorithmIdentifier %v has parameters; it must have NULL or none", s.alg)
		}
		if s.alg.scheme != schemeRSAPKCS1 && !absent {
			return sigAlg{}, fmt.Errorf("ikeauth: AUTH AlgorithmIdentifier %v has parameters; it must have none", s.alg)
		}
		return s.alg, nil
	}
	return sigAlg{}, fmt.Errorf("ikeauth: AUTH uses unsupported signature algorithm %v; supported are RSASSA-PKCS1-v1_5, RSASSA-PSS and ECDSA with SHA-2, and Ed25519", ai.Algorithm)
}

// parsePSSParams checks RSASSA-PSS-params. Empty or default parameters
// mean SHA-1 and are MUST NOT (RFC 8247 §3.2, RFC 7427 A.4.1, A.4.2).
func parsePSSParams(raw asn1.RawValue) (sigAlg, error) {
	if len(raw.FullBytes) == 0 {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH uses RSASSA-PSS without parameters; they are required (RFC 7427 §A.4)")
	}
	var p peerPSSParams
	rest, err := asn1.Unmarshal(raw.FullBytes, &p)
	if err != nil {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH RSASSA-PSS parameters are not valid DER: %v", err)
	}
	if len(rest) != 0 {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH RSASSA-PSS parameters are followed by %d stray octets", len(rest))
	}
	if len(p.Hash.Algorithm) == 0 || p.Hash.Algorithm.Equal(oidSHA1) {
		return sigAlg{}, fmt.Errorf("ikeauth: peer signed AUTH with RSASSA-PSS over SHA-1 (empty or default parameters): SHA-1 is MUST NOT (RFC 8247 §3.2)")
	}
	h, ok := hashFromOID(p.Hash.Algorithm)
	if !ok {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH uses RSASSA-PSS with unsupported hash %v", p.Hash.Algorithm)
	}
	if len(p.MGF.Algorithm) == 0 {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH uses RSASSA-PSS with %v but the default mask generation MGF1 with SHA-1; only MGF1 with the signature's hash is supported", h)
	}
	if !p.MGF.Algorithm.Equal(oidMGF1) {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH uses RSASSA-PSS with mask generation function %v; only MGF1 is supported", p.MGF.Algorithm)
	}
	var mgfHash pkix.AlgorithmIdentifier
	if rest, err := asn1.Unmarshal(p.MGF.Parameters.FullBytes, &mgfHash); err != nil || len(rest) != 0 {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH RSASSA-PSS MGF1 parameters do not name a hash")
	}
	if !mgfHash.Algorithm.Equal(p.Hash.Algorithm) {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH uses RSASSA-PSS with %v but MGF1 with %v; only MGF1 with the signature's hash is supported", h, mgfHash.Algorithm)
	}
	if p.SaltLength < 0 {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH RSASSA-PSS salt length %d is negative", p.SaltLength)
	}
	if p.TrailerField != 1 {
		return sigAlg{}, fmt.Errorf("ikeauth: AUTH RSASSA-PSS trailer field %d; RFC 4055 §3.1 allows only 1", p.TrailerField)
	}
	return sigAlg{scheme: schemeRSAPSS, hash: h, saltLen: p.SaltLength}, nil
}
