package ikeauth

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

func pemBlock(typ string, der []byte, headers ...string) []byte {
	b := &pem.Block{Type: typ, Bytes: der}
	for i := 0; i+1 < len(headers); i += 2 {
		if b.Headers == nil {
			b.Headers = map[string]string{}
		}
		b.Headers[headers[i]] = headers[i+1]
	}
	return pem.EncodeToMemory(b)
}

type equaler interface{ Equal(crypto.PublicKey) bool }

func TestLoadPrivateKey(t *testing.T) {
	p := pki()
	for _, tc := range []struct {
		name string
		pem  []byte
		pub  crypto.PublicKey
	}{
		{"PKCS#8 RSA", pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(rsaKey2048()))), rsaKey2048().Public()},
		{"PKCS#8 EC", pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(p384Key()))), p384Key().Public()},
		{"PKCS#8 Ed25519", pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(edKey()))), edKey().Public()},
		{"PKCS#1 RSA", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey2048())), rsaKey2048().Public()},
		{"SEC 1 EC after EC PARAMETERS", append(pemBlock("EC PARAMETERS", []byte{6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7}),
			pemBlock("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(p256Key())))...), p256Key().Public()},
		{"certificate then key", append(pemBlock("CERTIFICATE", p.leaf.Raw),
			pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(p.leafKey)))...), p.leafKey.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadPrivateKey(tc.pem)
			if err != nil {
				t.Fatal(err)
			}
			if !k.Public().(equaler).Equal(tc.pub) {
				t.Fatal("loaded a different key")
			}
		})
	}
}

// Keys written by OpenSSL 3 (openssl genpkey) load too.
func TestLoadPrivateKeyOpenSSL(t *testing.T) {
	if _, ok := fixtureKey(t, "rsa2048.pem").(*rsa.PrivateKey); !ok {
		t.Error("rsa2048.pem is not an RSA key")
	}
	if k, ok := fixtureKey(t, "p256.pem").(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Error("p256.pem is not a P-256 key")
	}
}

func TestLoadPrivateKeyErrors(t *testing.T) {
	p := pki()
	x25519 := must(ecdh.X25519().GenerateKey(rand.Reader))
	ec := pemBlock("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(p256Key())))
	for name, tc := range map[string]struct {
		pem []byte
		why string
	}{
		"encrypted PKCS#8":     {pemBlock("ENCRYPTED PRIVATE KEY", []byte{0x30, 0}), "encrypted"},
		"legacy encrypted RSA": {pemBlock("RSA PRIVATE KEY", []byte{1, 2, 3}, "Proc-Type", "4,ENCRYPTED", "DEK-Info", "AES-128-CBC,00"), "encrypted"},
		"OpenSSH key":          {pemBlock("OPENSSH PRIVATE KEY", []byte{1, 2, 3}), `"OPENSSH PRIVATE KEY" is not a supported private key`},
		"X25519 cannot sign":   {pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(x25519))), "cannot sign"},
		"corrupt PKCS#8":       {pemBlock("PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3}), "cannot parse the PRIVATE KEY"},
		"two keys":             {append(bytes.Clone(ec), ec...), "more than one"},
		"certificate only":     {pemBlock("CERTIFICATE", p.leaf.Raw), "holds CERTIFICATE"},
		"DER, not PEM":         {must(x509.MarshalPKCS8PrivateKey(p256Key())), "no PEM data"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadPrivateKey(tc.pem)
			wantErr(t, err, tc.why)
		})
	}
}

func TestLoadCertificates(t *testing.T) {
	p := pki()
	data := append(append(pemBlock("CERTIFICATE", p.leaf.Raw), pemBlock("PRIVATE KEY", []byte{0})...), pemBlock("CERTIFICATE", p.inter.Raw)...)
	certs, err := LoadCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(p.leaf) || !certs[1].Equal(p.inter) {
		t.Fatalf("loaded %d certificates, not leaf then intermediate", len(certs))
	}
	_, err = LoadCertificates(pemBlock("PRIVATE KEY", []byte{0}))
	wantErr(t, err, "no CERTIFICATE", "PRIVATE KEY")
	_, err = LoadCertificates(p.leaf.Raw)
	wantErr(t, err, "no PEM data")
	_, err = LoadCertificates(append(pemBlock("CERTIFICATE", p.leaf.Raw), pemBlock("CERTIFICATE", []byte{0x30, 0})...))
	wantErr(t, err, "certificate 2")
}
