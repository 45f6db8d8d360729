package ikeauth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// fixtureKey loads a test-only key made with OpenSSL (testdata/*.pem),
// so fuzz inputs mean the same on every run.
func fixtureKey(tb testing.TB, name string) crypto.Signer {
	tb.Helper()
	k, err := LoadPrivateKey(must(os.ReadFile("testdata/" + name)))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// FuzzVerify feeds arbitrary methods and AUTH data to Verify with fixed
// RSA, ECDSA and Ed25519 public keys: it must never panic, and whatever it
// accepts under method 14 must name a hash we announced.
func FuzzVerify(f *testing.F) {
	keys := []crypto.Signer{
		fixtureKey(f, "rsa2048.pem"),
		fixtureKey(f, "p256.pem"),
		ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)),
	}
	for i, k := range keys {
		for _, peer := range [][]wire.HashAlgorithm{nil, SupportedHashes(), {wire.HashSHA2512}} {
			for _, pss := range []bool{false, true} {
				m, d, err := Sign(k, peer, testOctets, SignOptions{RSAPSS: pss}, rand.Reader)
				if err == nil {
					f.Add(uint8(m), d, testOctets, uint8(i))
				}
			}
		}
	}
	for _, blob := range []string{appendixSHA1WithRSA, appendixPSSDefault, appendixPSSEmpty, appendixDSAWithSHA256} {
		ai := unhex(f, blob)
		f.Add(uint8(wire.AuthDigitalSignature), append([]byte{byte(len(ai))}, ai...), testOctets, uint8(0))
	}
	f.Fuzz(func(t *testing.T, method uint8, data, octets []byte, which uint8) {
		pub := keys[int(which)%len(keys)].Public()
		ours := []wire.HashAlgorithm{wire.HashSHA2256, wire.HashIdentity}
		err := Verify(pub, wire.AuthMethod(method), data, octets, ours)
		if err == nil && wire.AuthMethod(method) == wire.AuthDigitalSignature {
			alg, perr := parseAlgorithmIdentifier(data[1 : 1+int(data[0])])
			if perr != nil || (alg.hash != wire.HashSHA2256 && alg.hash != wire.HashIdentity) {
				t.Fatalf("accepted %x with algorithm %v (%v)", data, alg, perr)
			}
		}
	})
}

// FuzzParseCertPayloads builds CERT payloads from a plan, two octets per
// payload: the encoding, then the data's source (a real certificate,
// a truncated or altered one, or the raw fuzz data). Keeping real
// certificates out of the input keeps inputs small, so the fuzzer mutates
// the payload list rather than DER that crypto/x509's own fuzzing covers.
// Parsing must not panic, must respect the caps, and must hand back
// exactly the certificates it was given.
func FuzzParseCertPayloads(f *testing.F) {
	p := pki()
	chain := [][]byte{p.leaf.Raw, p.inter.Raw, p.root.Raw}
	f.Add([]byte{4, 0, 4, 1}, []byte{})
	f.Add([]byte{4, 0, 4, 3}, []byte{0x30, 0x01, 0x00})
	f.Add([]byte{4, 4, 4, 5}, []byte{0x10, 0x20})
	f.Add([]byte{12, 3}, []byte("http://ca.example/leaf.der"))
	f.Add(bytes.Repeat([]byte{4, 0}, 9), []byte{})
	f.Fuzz(func(t *testing.T, plan, data []byte) {
		var cs []*wire.Cert
		for i := 0; i+1 < len(plan) && i < 40; i += 2 {
			var d []byte
			switch src := int(plan[i+1]); src % 6 {
			case 3:
				d = data
			case 4: // truncated
				c := chain[src/6%len(chain)]
				d = c[:len(data)%(len(c)+1)]
			case 5: // octets altered at fuzz-chosen places
				d = bytes.Clone(chain[src/6%len(chain)])
				for j := 0; j+1 < len(data); j += 2 {
					d[int(data[j])*7%len(d)] ^= data[j+1]
				}
			default:
				d = chain[src%6]
			}
			cs = append(cs, &wire.Cert{Encoding: wire.CertEncoding(plan[i]), Data: d})
		}
		certs, err := ParseCertPayloads(cs)
		if err != nil {
			return
		}
		if len(certs) != len(cs) || len(certs) > MaxPeerCerts {
			t.Fatalf("%d payloads gave %d certificates", len(cs), len(certs))
		}
		for i, c := range certs {
			if cs[i].Encoding != wire.CertX509Signature || !bytes.Equal(c.Raw, cs[i].Data) {
				t.Fatalf("certificate %d differs from its payload", i)
			}
		}
	})
}

// FuzzParseID checks that whatever ParseID accepts, FormatID writes back
// in a form ParseID reads as the same identity; and that FormatID copes
// with any octets under any type.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "2001:db8::1", "gw.example", "@x=y", "u@example.org", "@@u", "@#00ff",
		`CN=" a, b ", O=x+OU=y`, "E=a@b, DC=org", "C=DE, 1.2.3=#020107", `CN=\#x\2C`, "CN=#1300"} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, s string, typ uint8) {
		FormatID(wire.IDType(typ), []byte(s))
		t1, d1, err := ParseID(s)
		if err != nil {
			return
		}
		out := FormatID(t1, d1)
		t2, d2, err := ParseID(out)
		if err != nil || !IDEqual(t1, d1, t2, d2) {
			t.Fatalf("%q → %v %x → %q → %v %x (%v)", s, t1, d1, out, t2, d2, err)
		}
	})
}
