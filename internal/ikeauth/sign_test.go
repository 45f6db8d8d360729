package ikeauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

var testOctets = []byte("RealMessage | NonceData | prf(SK_p, RestOfIDPayload)")

func TestSignVerifyRoundTrip(t *testing.T) {
	all := SupportedHashes()
	for _, tc := range []struct {
		name       string
		key        crypto.Signer
		peer       []wire.HashAlgorithm
		opts       SignOptions
		wantMethod wire.AuthMethod
		wantAlgID  string // for method 14: the AlgorithmIdentifier we must send
		wantLen    int    // for fixed-size signatures
	}{
		{"RFC 7296 §3.8 RSA method 1", rsaKey2048(), nil, SignOptions{}, wire.AuthRSASig, "", 256},
		{"RSA PSS asked without RFC 7427 stays method 1", rsaKey2048(), nil, SignOptions{RSAPSS: true}, wire.AuthRSASig, "", 256},
		{"RFC 7427 RSA PKCS#1 SHA-256", rsaKey2048(), all, SignOptions{}, wire.AuthDigitalSignature, appendixSHA256WithRSA, 0},
		{"RFC 7427 RSA PKCS#1 peer has only SHA-512", rsaKey2048(), []wire.HashAlgorithm{wire.HashSHA2512}, SignOptions{}, wire.AuthDigitalSignature, appendixSHA512WithRSA, 0},
		{"RFC 7427 RSA PSS SHA-256", rsaKey2048(), all, SignOptions{RSAPSS: true}, wire.AuthDigitalSignature, appendixPSSSHA256, 0},
		{"RFC 4754 P-256 method 9", p256Key(), nil, SignOptions{}, wire.AuthECDSAP256SHA256, "", 64},
		{"RFC 4754 P-384 method 10", p384Key(), nil, SignOptions{}, wire.AuthECDSAP384SHA384, "", 96},
		{"RFC 4754 P-521 method 11", p521Key(), nil, SignOptions{}, wire.AuthECDSAP521SHA512, "", 132},
		{"RFC 7427 P-256 ecdsa-with-sha256", p256Key(), all, SignOptions{}, wire.AuthDigitalSignature, appendixECDSASHA256, 0},
		{"RFC 7427 P-384 ecdsa-with-sha384", p384Key(), all, SignOptions{}, wire.AuthDigitalSignature, appendixECDSASHA384, 0},
		{"RFC 7427 P-521 ecdsa-with-sha512", p521Key(), all, SignOptions{}, wire.AuthDigitalSignature, appendixECDSASHA512, 0},
		{"RFC 7427 P-256 falls back to strongest common", p256Key(), []wire.HashAlgorithm{wire.HashSHA1, wire.HashSHA2384, wire.HashSHA2512}, SignOptions{}, wire.AuthDigitalSignature, appendixECDSASHA512, 0},
		{"RFC 8420 Ed25519 with Identity", signer(edKey()), all, SignOptions{}, wire.AuthDigitalSignature, ed25519AlgID, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method, data, err := Sign(tc.key, tc.peer, testOctets, tc.opts, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if method != tc.wantMethod {
				t.Fatalf("method %v, want %v", method, tc.wantMethod)
			}
			if tc.wantLen != 0 && len(data) != tc.wantLen {
				t.Fatalf("signature of %d octets, want %d", len(data), tc.wantLen)
			}
			if tc.wantAlgID != "" {
				want := unhex(t, tc.wantAlgID)
				if int(data[0]) != len(want) || !bytes.HasPrefix(data[1:], want) {
					t.Fatalf("AUTH data starts %x, want length %d then %x", data[:min(len(data), 1+len(want))], len(want), want)
				}
			}
			pub := tc.key.Public()
			// The verifier announced everything the signer may have used.
			if err := Verify(pub, method, data, testOctets, all); err != nil {
				t.Fatalf("own signature rejected: %v", err)
			}
			other := bytes.Clone(testOctets)
			other[0] ^= 1
			wantErr(t, Verify(pub, method, data, other, all), "does not verify")
			bad := bytes.Clone(data)
			bad[len(bad)-1] ^= 1
			if err := Verify(pub, method, bad, testOctets, all); err == nil {
				t.Fatal("modified signature accepted")
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	_, _, err := Sign(signer(edKey()), nil, testOctets, SignOptions{}, rand.Reader)
	wantErr(t, err, "Ed25519", "SIGNATURE_HASH_ALGORITHMS")
	_, _, err = Sign(signer(edKey()), []wire.HashAlgorithm{wire.HashSHA2256}, testOctets, SignOptions{}, rand.Reader)
	wantErr(t, err, "Identity")
	// RFC 8247 §3.2: never SHA-1 under method 14, even if that is all the
	// peer offers.
	_, _, err = Sign(rsaKey2048(), []wire.HashAlgorithm{wire.HashSHA1}, testOctets, SignOptions{}, rand.Reader)
	wantErr(t, err, "SHA-1")
	p224 := must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader))
	_, _, err = Sign(p224, nil, testOctets, SignOptions{}, rand.Reader)
	wantErr(t, err, "P-224", "RFC 4754")
	_, _, err = Sign(nil, nil, testOctets, SignOptions{}, rand.Reader)
	wantErr(t, err, "no private key")
}

// A curve RFC 4754 does not cover still signs under RFC 7427.
func TestRFC7427AnyCurve(t *testing.T) {
	p224 := must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader))
	method, data, err := Sign(p224, SupportedHashes(), testOctets, SignOptions{}, rand.Reader)
	if err != nil || method != wire.AuthDigitalSignature {
		t.Fatalf("method %v, err %v", method, err)
	}
	if err := Verify(&p224.PublicKey, method, data, testOctets, SupportedHashes()); err != nil {
		t.Fatal(err)
	}
}

// RFC 4754 §8 prints an AUTH payload for each method over the message
// "abc"; verify the published signatures.
func TestRFC4754Section8Vectors(t *testing.T) {
	for _, tc := range []struct {
		name          string
		method        wire.AuthMethod
		curve         elliptic.Curve
		gwx, gwy, pay string
	}{
		{"8.1 ECDSA-256", wire.AuthECDSAP256SHA256, elliptic.P256(),
			"2442a5cc0ecd015fa3ca31dc8e2bbc70bf42d60cbca20085e0822cb04235e970",
			"6fc98bd7e50211a4a27102fa3549df79ebcb4bf246b80945cddfe7d509bbfd7d",
			`00000048 00090000 CB28E099 9B9C7715 FD0A80D8 E47A7707 9716CBBF 917DD72E
			 97566EA1 C066957C 86FA3BB4 E26CAD5B F90B7F81 899256CE 7594BB1E A0C89212
			 748BFF3B 3D5B0315`},
		{"8.2 ECDSA-384", wire.AuthECDSAP384SHA384, elliptic.P384(),
			"96281bf8dd5e0525ca049c048d345d3082968d10fedf5c5aca0c64e6465a97ea5ce10c9dfec21797415710721f437922",
			"447688ba94708eb6e2e4d59f6ab6d7edff9301d249fe49c33096655f5d502fad3d383b91c5e7edaa2b714cc99d5743ca",
			`00000068 000A0000 FB017B91 4E291494 32D8BAC2 9A514640 B46F53DD AB2C6994
			 8084E293 0F1C8F7E 08E07C9C 63F2D21A 07DCB56A 6AF56EB3 B263A130 5E057F98
			 4D38726A 1B468741 09F417BC A112674C 528262A4 0A629AF1 CBB9F516 CE0FA7D2
			 FF630863 A00E8B9F`},
		{"8.3 ECDSA-521", wire.AuthECDSAP521SHA512, elliptic.P521(),
			"0151518f1af0f563517edd5485190df95a4bf57b5cba4cf2a9a3f6474725a35f7afe0a6ddeb8bedbcd6a197e592d40188901cecd650699c9b5e456aea5add19052a8",
			"006f3b142ea1bfff7e2837ad44c9e4ff6d2d34c73184bbad90026dd5e6e85317d9df45cad7803c6c20035b2f3ff63aff4e1ba64d1c077577da3f4286c58f0aeae643",
			`0000008C 000B0000 0154FD38 36AF92D0 DCA57DD5 341D3053 988534FD E8318FC6
			 AAAAB68E 2E6F4339 B19F2F28 1A7E0B22 C269D93C F8794A92 78880ED7 DBB8D936
			 2CAEACEE 54432055 22510177 05A70302 90D1CEB6 05A9A1BB 03FF9CDD 521E87A6
			 96EC926C 8C10C836 2DF49753 67101F67 D1CF9BCC BF2F3D23 9534FA50 9E70AAC8
			 51AE01AA C68D62F8 66472660`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := ecdsa.ParseUncompressedPublicKey(tc.curve, append(append([]byte{4}, unhex(t, tc.gwx)...), unhex(t, tc.gwy)...))
			if err != nil {
				t.Fatal(err)
			}
			payload := unhex(t, tc.pay)
			if int(binary.BigEndian.Uint16(payload[2:])) != len(payload) {
				t.Fatalf("payload length field %d, payload %d octets", binary.BigEndian.Uint16(payload[2:]), len(payload))
			}
			// The RFC prints the method one octet late ("00 09 00 00" where
			// RFC 7296 §3.8 puts Auth Method first), so read it from there.
			if payload[4] != 0 || payload[6] != 0 || payload[7] != 0 {
				t.Fatalf("unexpected method field %x", payload[4:8])
			}
			method, data := wire.AuthMethod(payload[5]), payload[8:]
			if method != tc.method {
				t.Fatalf("payload carries method %v, want %v", method, tc.method)
			}
			if err := Verify(pub, method, data, []byte("abc"), nil); err != nil {
				t.Fatalf("published signature rejected: %v", err)
			}
			wantErr(t, Verify(pub, method, data, []byte("abd"), nil), "does not verify")
		})
	}
}

func TestVerifyRejectsWrongKeyType(t *testing.T) {
	all := SupportedHashes()
	rsaMethod, rsaData, err := Sign(rsaKey2048(), nil, testOctets, SignOptions{}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, Verify(&p256Key().PublicKey, rsaMethod, rsaData, testOctets, all), "needs an RSA key", "ECDSA P-256")

	m9, d9, _ := Sign(p256Key(), nil, testOctets, SignOptions{}, rand.Reader)
	wantErr(t, Verify(&rsaKey2048().PublicKey, m9, d9, testOctets, all), "needs an ECDSA P-256 key", "RSA-2048")

	for name, key := range map[string]crypto.Signer{"ECDSA": p256Key(), "RSA": rsaKey2048(), "Ed25519": signer(edKey())} {
		m, d, err := Sign(key, all, testOctets, SignOptions{}, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for other, pub := range map[string]crypto.PublicKey{"ECDSA": &p384Key().PublicKey, "RSA": &rsaKey2048().PublicKey, "Ed25519": edKey().Public()} {
			if other == name {
				continue
			}
			wantErr(t, Verify(pub, m, d, testOctets, all), "needs an "+name)
		}
	}
}

// RFC 4754 §4: each ECDSA method fixes the curve.
func TestRFC4754MethodCurveMustMatch(t *testing.T) {
	m, d, err := Sign(p384Key(), nil, testOctets, SignOptions{}, rand.Reader)
	if err != nil || m != wire.AuthECDSAP384SHA384 {
		t.Fatalf("method %v, err %v", m, err)
	}
	wantErr(t, Verify(&p384Key().PublicKey, wire.AuthECDSAP256SHA256, d, testOctets, nil), "needs an ECDSA P-256 key", "P-384")
	wantErr(t, Verify(&p256Key().PublicKey, wire.AuthECDSAP384SHA384, d, testOctets, nil), "needs an ECDSA P-384 key", "P-256")
	// r||s of the wrong length for the curve (RFC 4754 §7).
	wantErr(t, Verify(&p384Key().PublicKey, m, d[:95], testOctets, nil), "exactly 96")
}

// RFC 8247 §3.2: SHA-1 MUST NOT be used under method 14, even with a
// valid signature.
func TestRFC8247Method14SHA1Rejected(t *testing.T) {
	d := sha1.Sum(testOctets)
	rsaSig := must(rsa.SignPKCS1v15(rand.Reader, rsaKey2048(), crypto.SHA1, d[:]))
	ecSig := must(ecdsa.SignASN1(rand.Reader, p256Key(), d[:]))
	announced := []wire.HashAlgorithm{wire.HashSHA1, wire.HashSHA2256}
	for _, tc := range []struct {
		name  string
		pub   crypto.PublicKey
		algID string
		sig   []byte
	}{
		{"sha1WithRSAEncryption", &rsaKey2048().PublicKey, appendixSHA1WithRSA, rsaSig},
		{"ecdsa-with-SHA1", &p256Key().PublicKey, appendixECDSAWithSHA1, ecSig},
	} {
		ai := unhex(t, tc.algID)
		data := append(append([]byte{byte(len(ai))}, ai...), tc.sig...)
		wantErr(t, Verify(tc.pub, wire.AuthDigitalSignature, data, testOctets, announced), tc.name, "RFC 8247")
	}
}

// RFC 7427 §4: the signer "MUST pick one algorithm sent by the other peer".
func TestRFC7427HashMustBeAnnounced(t *testing.T) {
	m, d, err := Sign(p256Key(), []wire.HashAlgorithm{wire.HashSHA2512}, testOctets, SignOptions{}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, Verify(&p256Key().PublicKey, m, d, testOctets, []wire.HashAlgorithm{wire.HashSHA2256}), "SHA2_512", "not among those we announced")
	if err := Verify(&p256Key().PublicKey, m, d, testOctets, []wire.HashAlgorithm{wire.HashSHA2512}); err != nil {
		t.Fatal(err)
	}
	// §3: without our notify the peer may not use method 14 at all.
	wantErr(t, Verify(&p256Key().PublicKey, m, d, testOctets, nil), "did not announce")
	// Ed25519 needs Identity among ours.
	m, d, _ = Sign(signer(edKey()), SupportedHashes(), testOctets, SignOptions{}, rand.Reader)
	wantErr(t, Verify(edKey().Public(), m, d, testOctets, []wire.HashAlgorithm{wire.HashSHA2256}), "IDENTITY")
}

func TestVerifyMalformedAuthData(t *testing.T) {
	all := SupportedHashes()
	pub := &p256Key().PublicKey
	_, good, err := Sign(p256Key(), all, testOctets, SignOptions{}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		data []byte
		why  string
	}{
		"empty":                         {nil, "empty"},
		"length byte beyond data":       {[]byte{0xff, 0x30, 0x0a}, "cannot hold"},
		"zero length":                   {[]byte{0, 1, 2, 3}, "cannot hold"},
		"AlgorithmIdentifier only":      {good[:1+good[0]], "no signature value"},
		"AlgorithmIdentifier truncated": {append([]byte{good[0]}, good[1:good[0]]...), "cannot hold"},
		"garbage AlgorithmIdentifier":   {[]byte{4, 1, 2, 3, 4, 5, 6}, "not valid DER"},
		"garbage signature":             {append(bytes.Clone(good[:1+good[0]]), 0x30, 0x03, 0x02, 0x01, 0x00), "does not verify"},
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, Verify(pub, wire.AuthDigitalSignature, tc.data, testOctets, all), tc.why)
		})
	}
	wantErr(t, Verify(pub, wire.AuthECDSAP256SHA256, nil, testOctets, all), "exactly 64")
	wantErr(t, Verify(pub, wire.AuthECDSAP256SHA256, make([]byte, 64), testOctets, all), "does not verify")
	wantErr(t, Verify(&rsaKey2048().PublicKey, wire.AuthRSASig, []byte{1, 2, 3}, testOctets, all), "3 octets")
	wantErr(t, Verify(&rsaKey2048().PublicKey, wire.AuthRSASig, make([]byte, 256), testOctets, all), "does not verify")
	wantErr(t, Verify(nil, wire.AuthRSASig, make([]byte, 256), testOctets, all), "missing")
	wantErr(t, Verify(&ecdsa.PublicKey{}, wire.AuthDigitalSignature, good, testOctets, all), "incomplete")
}

func TestVerifyNonSignatureMethods(t *testing.T) {
	pub := &p256Key().PublicKey
	wantErr(t, Verify(pub, wire.AuthSharedKeyMIC, make([]byte, 32), testOctets, nil), "SHARED_KEY_MIC", "PSK")
	wantErr(t, Verify(pub, wire.AuthDSSSig, make([]byte, 40), testOctets, nil), "DSS")
	wantErr(t, Verify(pub, wire.AuthNULL, nil, testOctets, nil), "NULL_AUTH")
	wantErr(t, Verify(pub, wire.AuthMethod(200), nil, testOctets, nil), "AUTH(200)")
}

// RFC 7296 §3.8 lets a method 1 signer pick a hash other than SHA-1.
func TestRFC7296Method1OtherHashes(t *testing.T) {
	d := sha256.Sum256(testOctets)
	sig := must(rsa.SignPKCS1v15(rand.Reader, rsaKey2048(), crypto.SHA256, d[:]))
	if err := Verify(&rsaKey2048().PublicKey, wire.AuthRSASig, sig, testOctets, nil); err != nil {
		t.Fatal(err)
	}
}

// RFC 7427 §3 leaves the RSASSA-PSS parameters to the signer: any
// declared salt length verifies.
func TestRFC7427PSSDeclaredSalt(t *testing.T) {
	d := sha256.Sum256(testOctets)
	for _, salt := range []int{20, 32, 64} {
		opts := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: salt}
		sig := must(rsa.SignPSS(rand.Reader, rsaKey2048(), crypto.SHA256, d[:], opts))
		ai := unhex(t, pssBlob(t, oidSHA256, oidSHA256, salt, 1))
		data := append(append([]byte{byte(len(ai))}, ai...), sig...)
		err := Verify(&rsaKey2048().PublicKey, wire.AuthDigitalSignature, data, testOctets, SupportedHashes())
		if err != nil {
			t.Fatalf("salt %d: %v", salt, err)
		}
	}
	// A salt other than the declared one does not verify.
	sig := must(rsa.SignPSS(rand.Reader, rsaKey2048(), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: 20}))
	ai := unhex(t, appendixPSSSHA256)
	data := append(append([]byte{byte(len(ai))}, ai...), sig...)
	wantErr(t, Verify(&rsaKey2048().PublicKey, wire.AuthDigitalSignature, data, testOctets, SupportedHashes()), "does not verify")
}

// Random AUTH data under every signature method is refused, not a panic.
func TestVerifyGarbage(t *testing.T) {
	pubs := []crypto.PublicKey{&rsaKey2048().PublicKey, &p256Key().PublicKey, &p521Key().PublicKey, edKey().Public()}
	methods := []wire.AuthMethod{wire.AuthRSASig, wire.AuthECDSAP256SHA256, wire.AuthECDSAP384SHA384,
		wire.AuthECDSAP521SHA512, wire.AuthDigitalSignature}
	for _, n := range []int{0, 1, 15, 64, 96, 132, 256, 300} {
		data := make([]byte, n)
		rand.Read(data)
		for _, m := range methods {
			for _, pub := range pubs {
				if Verify(pub, m, data, testOctets, SupportedHashes()) == nil {
					t.Fatalf("random %d octets accepted under %v", n, m)
				}
			}
		}
	}
}
