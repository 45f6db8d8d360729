package ikeauth

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// The blobs of RFC 7427 Appendix A, byte for byte.
const (
	appendixSHA1WithRSA   = "300d06092a864886f70d0101050500"   // A.1.1
	appendixSHA256WithRSA = "300d06092a864886f70d01010b0500"   // A.1.2
	appendixSHA384WithRSA = "300d06092a864886f70d01010c0500"   // A.1.3
	appendixSHA512WithRSA = "300d06092a864886f70d01010d0500"   // A.1.4
	appendixDSAWithSHA1   = "300906072a8648ce380403"           // A.2.1
	appendixDSAWithSHA256 = "300b0609608648016503040302"       // A.2.2
	appendixECDSAWithSHA1 = "300906072a8648ce3d0401"           // A.3.1
	appendixECDSASHA256   = "300a06082a8648ce3d040302"         // A.3.2
	appendixECDSASHA384   = "300a06082a8648ce3d040303"         // A.3.3
	appendixECDSASHA512   = "300a06082a8648ce3d040304"         // A.3.4
	appendixPSSEmpty      = "300d06092a864886f70d01010a3000"   // A.4.1
	appendixPSSDefault    = "303e06092a864886f70d01010a3031" + // A.4.2
		"a00b300906052b0e03021a0500a118301606092a864886f70d010108300906052b0e03021a0500a203020114a303020101"
	appendixPSSSHA256 = "304606092a864886f70d01010a3039" + // A.4.3
		"a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120a303020101"
	// id-Ed25519 without parameters (RFC 8410 §3; RFC 8420 for IKEv2).
	ed25519AlgID = "300506032b6570"
)

func TestRFC7427AppendixAEncodings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		alg    sigAlg
		blob   string
		length int // the appendix's "Length =" line
	}{
		{"A.1.2 sha256WithRSAEncryption", sigAlg{scheme: schemeRSAPKCS1, hash: wire.HashSHA2256}, appendixSHA256WithRSA, 15},
		{"A.1.3 sha384WithRSAEncryption", sigAlg{scheme: schemeRSAPKCS1, hash: wire.HashSHA2384}, appendixSHA384WithRSA, 15},
		{"A.1.4 sha512WithRSAEncryption", sigAlg{scheme: schemeRSAPKCS1, hash: wire.HashSHA2512}, appendixSHA512WithRSA, 15},
		{"A.3.2 ecdsa-with-sha256", sigAlg{scheme: schemeECDSA, hash: wire.HashSHA2256}, appendixECDSASHA256, 12},
		{"A.3.3 ecdsa-with-sha384", sigAlg{scheme: schemeECDSA, hash: wire.HashSHA2384}, appendixECDSASHA384, 12},
		{"A.3.4 ecdsa-with-sha512", sigAlg{scheme: schemeECDSA, hash: wire.HashSHA2512}, appendixECDSASHA512, 12},
		{"A.4.3 RSASSA-PSS with SHA-256", sigAlg{scheme: schemeRSAPSS, hash: wire.HashSHA2256, saltLen: 32}, appendixPSSSHA256, 72},
		{"RFC 8420 id-Ed25519", sigAlg{scheme: schemeEd25519, hash: wire.HashIdentity}, ed25519AlgID, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.blob)
			if len(want) != tc.length {
				t.Fatalf("test blob is %d octets, appendix says %d", len(want), tc.length)
			}
			got, err := encodeAlgorithmIdentifier(tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding\n got %x\nwant %x", got, want)
			}
			back, err := parseAlgorithmIdentifier(want)
			if err != nil {
				t.Fatal(err)
			}
			if back != tc.alg {
				t.Fatalf("parsed %+v, want %+v", back, tc.alg)
			}
		})
	}
}

// PSS with SHA-384 and SHA-512 follow the A.4.3 shape; their salt is the
// hash length.
func TestRSASSAPSSLongerHashesRoundTrip(t *testing.T) {
	for _, h := range []wire.HashAlgorithm{wire.HashSHA2384, wire.HashSHA2512} {
		der, err := encodeAlgorithmIdentifier(sigAlg{scheme: schemeRSAPSS, hash: h})
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseAlgorithmIdentifier(der)
		if err != nil {
			t.Fatal(err)
		}
		if want := (sigAlg{scheme: schemeRSAPSS, hash: h, saltLen: goHash(h).Size()}); got != want {
			t.Fatalf("%v: parsed %+v, want %+v", h, got, want)
		}
	}
}

// RFC 8247 §3.2 puts every SHA-1 form of Appendix A at MUST NOT.
func TestRFC8247AppendixASHA1FormsRejected(t *testing.T) {
	for name, blob := range map[string]string{
		"A.1.1 sha1WithRSAEncryption":            appendixSHA1WithRSA,
		"A.2.1 dsa-with-sha1":                    appendixDSAWithSHA1,
		"A.3.1 ecdsa-with-sha1":                  appendixECDSAWithSHA1,
		"A.4.1 RSASSA-PSS with empty parameters": appendixPSSEmpty,
		"A.4.2 RSASSA-PSS default parameters":    appendixPSSDefault,
	} {
		_, err := parseAlgorithmIdentifier(unhex(t, blob))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantErr(t, err, "SHA-1")
	}
}

// pssBlob builds an RSASSA-PSS AlgorithmIdentifier with chosen parameters.
func pssBlob(t *testing.T, hash, mgfHash asn1.ObjectIdentifier, salt, trailer int) string {
	t.Helper()
	mgfHashDER := must(asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: mgfHash, Parameters: asn1.NullRawValue}))
	params := must(asn1.Marshal(pssParams{
		Hash:         pkix.AlgorithmIdentifier{Algorithm: hash, Parameters: asn1.NullRawValue},
		MGF:          pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mgfHashDER}},
		SaltLength:   salt,
		TrailerField: trailer,
	}))
	return hex.EncodeToString(must(asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: oidRSASSAPSS, Parameters: asn1.RawValue{FullBytes: params}})))
}

func TestParseAlgorithmIdentifierRejects(t *testing.T) {
	for name, tc := range map[string]struct{ blob, why string }{
		"A.2.2 dsa-with-sha256":            {appendixDSAWithSHA256, "DSA"},
		"ecdsa with NULL parameters":       {"300c06082a8648ce3d0403020500", "must have none"},
		"PKCS#1 with INTEGER param":        {"300e06092a864886f70d01010b020100", "NULL or none"},
		"trailing octets":                  {appendixECDSASHA256 + "00", "stray"},
		"unknown OID 1.2.3":                {"300406022a03", "unsupported signature algorithm"},
		"not DER":                          {"3005", "not valid DER"},
		"PSS with MGF1-SHA1 under SHA-256": {pssBlob(t, oidSHA256, oidSHA1, 32, 1), "MGF1"},
		"PSS with trailer 2":               {pssBlob(t, oidSHA256, oidSHA256, 32, 2), "trailer"},
		"PSS with SHA-224":                 {pssBlob(t, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}, oidSHA256, 28, 1), "unsupported hash"},
		"PSS with negative salt":           {pssBlob(t, oidSHA256, oidSHA256, -1, 1), "negative"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseAlgorithmIdentifier(unhex(t, tc.blob))
			wantErr(t, err, tc.why)
		})
	}
}

// PKCS#1 parameters may be absent as well as NULL (RFC 4055 §5).
func TestPKCS1AbsentParametersAccepted(t *testing.T) {
	got, err := parseAlgorithmIdentifier(unhex(t, "300b06092a864886f70d01010b"))
	if err != nil {
		t.Fatal(err)
	}
	if got != (sigAlg{scheme: schemeRSAPKCS1, hash: wire.HashSHA2256}) {
		t.Fatalf("parsed %+v", got)
	}
}
