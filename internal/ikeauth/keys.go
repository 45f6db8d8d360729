package ikeauth

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// LoadPrivateKey reads the one private key of a PEM file: PKCS#8
// ("PRIVATE KEY": RSA, ECDSA or Ed25519), PKCS#1 ("RSA PRIVATE KEY") or
// SEC 1 ("EC PRIVATE KEY"). Certificates and EC parameters next to the key
// are skipped; encrypted keys are refused, since a daemon has no one to ask
// for the passphrase.
func LoadPrivateKey(pemBytes []byte) (crypto.Signer, error) {
	var key crypto.Signer
	var seen []string
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		seen = append(seen, block.Type)
		switch block.Type {
		case "CERTIFICATE", "EC PARAMETERS":
			continue
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("ikeauth: the private key is encrypted (ENCRYPTED PRIVATE KEY); store it decrypted, e.g. openssl pkey -in key.pem -out plain.pem, and protect the file instead")
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		default:
			return nil, fmt.Errorf("ikeauth: PEM block %q is not a supported private key; want PRIVATE KEY (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY (convert with openssl pkey -in key.pem -out key.p8.pem)", block.Type)
		}
		if key != nil {
			return nil, errors.New("ikeauth: the PEM data holds more than one private key; keep one per file")
		}
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("ikeauth: the %s is encrypted (legacy OpenSSL encryption); store it decrypted, e.g. openssl pkey -in key.pem -out plain.pem, and protect the file instead", block.Type)
		}
		k, err := parsePrivateKey(block)
		if err != nil {
			return nil, err
		}
		key = k
	}
	if key == nil {
		if len(seen) == 0 {
			return nil, errors.New("ikeauth: no PEM data found; the key must be PEM (-----BEGIN PRIVATE KEY-----), convert DER with openssl pkey -inform der")
		}
		return nil, fmt.Errorf("ikeauth: no private key in the PEM data (it holds %s)", strings.Join(seen, ", "))
	}
	return key, nil
}

func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("ikeauth: cannot parse the %s: %w", block.Type, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ikeauth: the %s holds a %T, which cannot sign; use an RSA, ECDSA or Ed25519 key", block.Type, k)
	}
	return s, nil
}

// LoadCertificates reads every CERTIFICATE block of PEM data, in order
// (for our own chain: end entity first). Other blocks, such as a key kept
// in the same file, are skipped.
func LoadCertificates(pemBytes []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var seen []string
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		seen = append(seen, block.Type)
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ikeauth: certificate %d of the PEM data: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(seen) == 0 {
			return nil, errors.New("ikeauth: no PEM data found; certificates must be PEM (-----BEGIN CERTIFICATE-----), convert DER with openssl x509 -inform der")
		}
		return nil, fmt.Errorf("ikeauth: no CERTIFICATE in the PEM data (it holds %s)", strings.Join(seen, ", "))
	}
	return certs, nil
}
