package ikeauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"

	"github.com/mifike/mifike/internal/wire"
)

// SupportedHashes is what we announce in SIGNATURE_HASH_ALGORITHMS
// (RFC 7427 §4): the SHA-2 hashes RFC 8247 §3.2 asks for, and Identity for
// Ed25519 (RFC 8420). SHA-1 is absent: RFC 8247 §3.2 puts it at MUST NOT.
func SupportedHashes() []wire.HashAlgorithm {
	return []wire.HashAlgorithm{wire.HashSHA2256, wire.HashSHA2384, wire.HashSHA2512, wire.HashIdentity}
}

// SignOptions tunes Sign.
type SignOptions struct {
	// RSAPSS signs with RSASSA-PSS instead of RSASSA-PKCS1-v1_5 under the
	// Digital Signature method (RFC 8247 §3.2: PSS is the MUST there).
	// A peer without RFC 7427 only understands method 1, which is
	// PKCS#1 v1.5 by definition (RFC 7296 §3.8), so there the flag has no
	// effect.
	RSAPSS bool
}

// ecdsaMethods are the RFC 4754 methods: each fixes curve and hash.
var ecdsaMethods = []struct {
	method wire.AuthMethod
	curve  elliptic.Curve
	hash   crypto.Hash
}{
	{wire.AuthECDSAP256SHA256, elliptic.P256(), crypto.SHA256},
	{wire.AuthECDSAP384SHA384, elliptic.P384(), crypto.SHA384},
	{wire.AuthECDSAP521SHA512, elliptic.P521(), crypto.SHA512},
}

// Sign produces the AUTH method and data for octets (the output of
// ikecrypto.SignedOctets) with our private key.
//
// peerHashes are the hashes the peer announced in SIGNATURE_HASH_ALGORITHMS,
// nil if it sent none. When it sent some (and we sent ours: the caller's
// job), RFC 7427 §3 requires the Digital Signature method (14), with a hash
// the peer announced (§4): the one matching the key's strength if the peer
// has it, else the strongest common SHA-2 hash; Ed25519 needs Identity.
// Otherwise the classic methods are used: RSA signs RSASSA-PKCS1-v1_5 with
// SHA-1 as method 1 (RFC 7296 §3.8), ECDSA on P-256/P-384/P-521 signs r||s
// as method 9/10/11 (RFC 4754), and Ed25519 has no classic method.
//
// rand feeds the signer; Go's own RSA and ECDSA signers may ignore it.
func Sign(key crypto.Signer, peerHashes []wire.HashAlgorithm, octets []byte, opts SignOptions, rand io.Reader) (wire.AuthMethod, []byte, error) {
	if key == nil {
		return 0, nil, errors.New("ikeauth: no private key to sign AUTH with")
	}
	pub := key.Public()
	if len(peerHashes) > 0 {
		alg, err := chooseAlgorithm(pub, peerHashes, opts)
		if err != nil {
			return 0, nil, err
		}
		ai, err := encodeAlgorithmIdentifier(alg)
		if err != nil {
			return 0, nil, err
		}
		sig, err := signWith(key, alg, octets, rand)
		if err != nil {
			return 0, nil, fmt.Errorf("ikeauth: signing AUTH with %v: %w", alg, err)
		}
		// RFC 7427 §3: ASN.1 Length | AlgorithmIdentifier | Signature Value.
		data := make([]byte, 0, 1+len(ai)+len(sig))
		data = append(append(append(data, byte(len(ai))), ai...), sig...)
		return wire.AuthDigitalSignature, data, nil
	}
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		// RFC 7296 §3.8: SHA-1 is the default hash of method 1.
		sig, err := key.Sign(rand, digest(crypto.SHA1, octets), crypto.SHA1)
		if err != nil {
			return 0, nil, fmt.Errorf("ikeauth: signing AUTH with RSA (method 1): %w", err)
		}
		return wire.AuthRSASig, sig, nil
	case *ecdsa.PublicKey:
		for _, m := range ecdsaMethods {
			if pub.Curve != m.curve {
				continue
			}
			der, err := key.Sign(rand, digest(m.hash, octets), m.hash)
			if err != nil {
				return 0, nil, fmt.Errorf("ikeauth: signing AUTH with %v: %w", m.method, err)
			}
			rs, err := fixedECDSA(der, curveSize(m.curve))
			if err != nil {
				return 0, nil, fmt.Errorf("ikeauth: signing AUTH with %v: %w", m.method, err)
			}
			return m.method, rs, nil
		}
		return 0, nil, fmt.Errorf("ikeauth: %s key has no classic AUTH method (RFC 4754 covers P-256, P-384, P-521); it needs Digital Signature auth, but the peer did not send SIGNATURE_HASH_ALGORITHMS", describeKey(pub))
	case ed25519.PublicKey:
		return 0, nil, errors.New("ikeauth: Ed25519 keys need Digital Signature auth (RFC 7427, RFC 8420), but the peer did not send SIGNATURE_HASH_ALGORITHMS")
	}
	return 0, nil, fmt.Errorf("ikeauth: cannot sign AUTH with a %s key; use RSA, ECDSA or Ed25519", describeKey(pub))
}

// chooseAlgorithm picks the Digital Signature algorithm for our key among
// the hashes the peer announced (RFC 7427 §4).
func chooseAlgorithm(pub crypto.PublicKey, peer []wire.HashAlgorithm, opts SignOptions) (sigAlg, error) {
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		if !slices.Contains(peer, wire.HashIdentity) {
			return sigAlg{}, fmt.Errorf("ikeauth: Ed25519 signs with the Identity hash (RFC 8420), but the peer announced only %v", peer)
		}
		return sigAlg{scheme: schemeEd25519, hash: wire.HashIdentity}, nil
	case *ecdsa.PublicKey:
		if pub.Curve == nil {
			return sigAlg{}, errors.New("ikeauth: ECDSA key without a curve")
		}
		// Match the hash to the curve, as RFC 4754 §4 does.
		pref := wire.HashSHA2256
		switch bits := pub.Curve.Params().BitSize; {
		case bits > 384:
			pref = wire.HashSHA2512
		case bits > 256:
			pref = wire.HashSHA2384
		}
		h, err := pickHash(pref, peer)
		return sigAlg{scheme: schemeECDSA, hash: h}, err
	case *rsa.PublicKey:
		if pub.N == nil {
			return sigAlg{}, errors.New("ikeauth: RSA key without a modulus")
		}
		// NIST SP 800-57 Part 1 Table 2: SHA-256 covers RSA up to 7680
		// bits (128-bit strength); longer moduli want longer hashes.
		pref := wire.HashSHA2256
		switch bits := pub.N.BitLen(); {
		case bits >= 15360:
			pref = wire.HashSHA2512
		case bits >= 7680:
			pref = wire.HashSHA2384
		}
		h, err := pickHash(pref, peer)
		s := schemeRSAPKCS1
		if opts.RSAPSS {
			s = schemeRSAPSS
		}
		return sigAlg{scheme: s, hash: h}, err
	}
	return sigAlg{}, fmt.Errorf("ikeauth: cannot sign AUTH with a %s key; use RSA, ECDSA or Ed25519", describeKey(pub))
}

// pickHash returns pref if the peer announced it, else the strongest SHA-2
// hash it announced. SHA-1 is never chosen (RFC 8247 §3.2).
func pickHash(pref wire.HashAlgorithm, peer []wire.HashAlgorithm) (wire.HashAlgorithm, error) {
	if slices.Contains(peer, pref) {
		return pref, nil
	}
	for _, h := range []wire.HashAlgorithm{wire.HashSHA2512, wire.HashSHA2384, wire.HashSHA2256} {
		if slices.Contains(peer, h) {
			return h, nil
		}
	}
	return 0, fmt.Errorf("ikeauth: the peer's SIGNATURE_HASH_ALGORITHMS %v hold none of SHA2_256, SHA2_384, SHA2_512 to sign with (SHA-1 is MUST NOT, RFC 8247 §3.2)", peer)
}

func signWith(key crypto.Signer, alg sigAlg, octets []byte, rand io.Reader) ([]byte, error) {
	if alg.scheme == schemeEd25519 {
		return key.Sign(rand, octets, crypto.Hash(0)) // pure Ed25519 hashes internally
	}
	h := goHash(alg.hash)
	var so crypto.SignerOpts = h
	if alg.scheme == schemeRSAPSS {
		// Salt as long as the hash, as in RFC 7427 Appendix A.4.3.
		so = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	return key.Sign(rand, digest(h, octets), so)
}

// Verify checks AUTH data of a signature method against octets (the output
// of ikecrypto.SignedOctets for the peer) with the peer's public key.
// ourHashes are the hashes we announced in SIGNATURE_HASH_ALGORITHMS; a
// Digital Signature (method 14) must use one of them, since the signer
// "MUST pick one algorithm sent by the other peer" (RFC 7427 §4).
// Shared-key AUTH (method 2) is not a signature and is refused here.
// pub is the key of the peer's verified certificate (or a configured raw
// key): *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
func Verify(pub crypto.PublicKey, method wire.AuthMethod, data, octets []byte, ourHashes []wire.HashAlgorithm) error {
	switch method {
	case wire.AuthRSASig:
		return verifyRSASig(pub, data, octets)
	case wire.AuthECDSAP256SHA256, wire.AuthECDSAP384SHA384, wire.AuthECDSAP521SHA512:
		return verifyFixedECDSA(pub, method, data, octets)
	case wire.AuthDigitalSignature:
		return verifyDigitalSignature(pub, data, octets, ourHashes)
	case wire.AuthSharedKeyMIC:
		return errors.New("ikeauth: AUTH method SHARED_KEY_MIC (2) is a pre-shared-key MAC, not a signature; check it with the PSK (ikecrypto.VerifyPSKAuth)")
	case wire.AuthDSSSig:
		return errors.New("ikeauth: AUTH method DSS_DIGITAL_SIGNATURE (3) is not supported (SHA-1 only; RFC 8247 §3.1 SHOULD NOT)")
	}
	return fmt.Errorf("ikeauth: AUTH method %v is not a signature method we support (1, 9, 10, 11, 14)", method)
}

// verifyRSASig checks method 1, RSASSA-PKCS1-v1_5 (RFC 7296 §3.8). SHA-1
// is the default hash, but §3.8 lets the signer pick another; the DigestInfo
// inside the signature names it, so SHA-2 is accepted too.
func verifyRSASig(pub crypto.PublicKey, data, octets []byte) error {
	rpub, err := rsaKey(pub, "RSA_DIGITAL_SIGNATURE (method 1)")
	if err != nil {
		return err
	}
	if len(data) != rpub.Size() {
		return fmt.Errorf("ikeauth: RSA AUTH signature of %d octets; the peer's %s key makes %d", len(data), describeKey(rpub), rpub.Size())
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		err := rsa.VerifyPKCS1v15(rpub, h, digest(h, octets), data)
		if err == nil {
			return nil
		}
		if !errors.Is(err, rsa.ErrVerification) {
			return fmt.Errorf("ikeauth: cannot verify RSA AUTH with the peer's %s key: %w", describeKey(rpub), err)
		}
	}
	return fmt.Errorf("ikeauth: RSA AUTH signature (method 1) does not verify with the peer's %s key: wrong key, or the signed octets differ", describeKey(rpub))
}

// verifyFixedECDSA checks methods 9, 10, 11: curve and hash are fixed by the
// method, and the signature is r||s, each padded to the curve size
// (RFC 4754 §4, §7).
func verifyFixedECDSA(pub crypto.PublicKey, method wire.AuthMethod, data, octets []byte) error {
	for _, m := range ecdsaMethods {
		if m.method != method {
			continue
		}
		epub, ok := pub.(*ecdsa.PublicKey)
		if !ok || epub.Curve != m.curve {
			return fmt.Errorf("ikeauth: AUTH method %v needs an ECDSA %s key, but the peer's key is %s", method, m.curve.Params().Name, describeKey(pub))
		}
		if err := checkECDSAKey(epub); err != nil {
			return err
		}
		size := curveSize(m.curve)
		if len(data) != 2*size {
			return fmt.Errorf("ikeauth: %v signature of %d octets; RFC 4754 §7 makes it r||s of exactly %d", method, len(data), 2*size)
		}
		r := new(big.Int).SetBytes(data[:size])
		s := new(big.Int).SetBytes(data[size:])
		if !ecdsa.Verify(epub, digest(m.hash, octets), r, s) {
			return fmt.Errorf("ikeauth: %v AUTH signature does not verify with the peer's %s key: wrong key, or the signed octets differ", method, describeKey(epub))
		}
		return nil
	}
	return fmt.Errorf("ikeauth: AUTH method %v is not an ECDSA method", method)
}

// verifyDigitalSignature checks method 14 (RFC 7427 §3).
func verifyDigitalSignature(pub crypto.PublicKey, data, octets []byte, ourHashes []wire.HashAlgorithm) error {
	if len(ourHashes) == 0 {
		return errors.New("ikeauth: peer used Digital Signature AUTH (method 14) but we did not announce SIGNATURE_HASH_ALGORITHMS (RFC 7427 §3)")
	}
	if len(data) == 0 {
		return errors.New("ikeauth: Digital Signature AUTH data is empty")
	}
	n := int(data[0])
	if n == 0 || len(data)-1 < n {
		return fmt.Errorf("ikeauth: Digital Signature AUTH data of %d octets cannot hold the %d-octet AlgorithmIdentifier its ASN.1 Length announces", len(data), n)
	}
	alg, err := parseAlgorithmIdentifier(data[1 : 1+n])
	if err != nil {
		return err
	}
	sig := data[1+n:]
	if len(sig) == 0 {
		return fmt.Errorf("ikeauth: Digital Signature AUTH (%v) carries no signature value", alg)
	}
	if !slices.Contains(ourHashes, alg.hash) {
		return fmt.Errorf("ikeauth: peer signed AUTH with %v, but hash %v is not among those we announced %v (RFC 7427 §4)", alg, alg.hash, ourHashes)
	}
	switch alg.scheme {
	case schemeRSAPKCS1, schemeRSAPSS:
		rpub, err := rsaKey(pub, alg.String())
		if err != nil {
			return err
		}
		h := goHash(alg.hash)
		if alg.scheme == schemeRSAPKCS1 {
			err = rsa.VerifyPKCS1v15(rpub, h, digest(h, octets), sig)
		} else {
			// Go reads SaltLength 0 as "detect"; a declared 0 salt verifies
			// under detection as well.
			err = rsa.VerifyPSS(rpub, h, digest(h, octets), sig, &rsa.PSSOptions{SaltLength: alg.saltLen, Hash: h})
		}
		if err != nil {
			return verifyFailed(alg, pub, err)
		}
	case schemeECDSA:
		epub, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return keyMismatch(alg.String(), "an ECDSA", pub)
		}
		if err := checkECDSAKey(epub); err != nil {
			return err
		}
		// As in X.509, the signature value is a DER Ecdsa-Sig-Value; the
		// hash is truncated per X9.62 (RFC 7427 §3), which ecdsa does.
		if !ecdsa.VerifyASN1(epub, digest(goHash(alg.hash), octets), sig) {
			return verifyFailed(alg, pub, nil)
		}
	case schemeEd25519:
		epub, ok := pub.(ed25519.PublicKey)
		if !ok {
			return keyMismatch(alg.String(), "an Ed25519", pub)
		}
		if len(epub) != ed25519.PublicKeySize {
			return fmt.Errorf("ikeauth: Ed25519 public key of %d octets, want %d", len(epub), ed25519.PublicKeySize)
		}
		if !ed25519.Verify(epub, octets, sig) {
			return verifyFailed(alg, pub, nil)
		}
	}
	return nil
}

func verifyFailed(alg sigAlg, pub crypto.PublicKey, err error) error {
	if err != nil && !errors.Is(err, rsa.ErrVerification) {
		return fmt.Errorf("ikeauth: cannot verify %v AUTH with the peer's %s key: %w", alg, describeKey(pub), err)
	}
	return fmt.Errorf("ikeauth: %v AUTH signature does not verify with the peer's %s key: wrong key, or the signed octets differ", alg, describeKey(pub))
}

func keyMismatch(what, want string, pub crypto.PublicKey) error {
	return fmt.Errorf("ikeauth: AUTH signed with %s needs %s key, but the peer's key is %s", what, want, describeKey(pub))
}

func rsaKey(pub crypto.PublicKey, what string) (*rsa.PublicKey, error) {
	rpub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, keyMismatch(what, "an RSA", pub)
	}
	if rpub.N == nil || rpub.N.Sign() <= 0 {
		return nil, errors.New("ikeauth: RSA public key without a modulus")
	}
	return rpub, nil
}

// checkECDSAKey refuses a key without a curve; keys parsed by crypto/x509
// are otherwise complete.
func checkECDSAKey(pub *ecdsa.PublicKey) error {
	if pub.Curve == nil {
		return errors.New("ikeauth: incomplete ECDSA public key")
	}
	return nil
}

// describeKey names a public key for errors: "RSA-2048", "ECDSA P-256".
func describeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil {
			return "RSA"
		}
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			return "ECDSA"
		}
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "missing"
	}
	return fmt.Sprintf("%T", pub)
}

func curveSize(c elliptic.Curve) int { return (c.Params().BitSize + 7) / 8 }

// fixedECDSA turns a DER Ecdsa-Sig-Value into r||s of size octets each
// (RFC 4754 §7).
func fixedECDSA(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
		sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, errors.New("signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}

func digest(h crypto.Hash, octets []byte) []byte {
	switch h {
	case crypto.SHA1:
		d := sha1.Sum(octets)
		return d[:]
	case crypto.SHA256:
		d := sha256.Sum256(octets)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(octets)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(octets)
		return d[:]
	}
	return nil
}
