package ikecrypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// TestPSKAuth checks RFC 7296 §2.15 by hand: prf(prf(secret, "Key Pad for
// IKEv2"), octets), the pad being the 17 ASCII octets without NUL.
func TestPSKAuth(t *testing.T) {
	p, _ := NewPRF(wire.PRFHMACSHA2256)
	secret, octets := []byte("a pre-shared key"), []byte("signed octets")
	want := hmacSHA256(hmacSHA256(secret, []byte("Key Pad for IKEv2")), octets)
	if len(keyPad) != 17 {
		t.Fatalf("pad is %d octets", len(keyPad))
	}
	auth := PSKAuth(p, secret, octets)
	if !bytes.Equal(auth, want) {
		t.Fatalf("PSKAuth = %x, want %x", auth, want)
	}
	if !VerifyPSKAuth(p, secret, octets, auth) {
		t.Fatal("VerifyPSKAuth rejects the right value")
	}
	for i := range 8 * len(auth) {
		bad := bytes.Clone(auth)
		bad[i/8] ^= 1 << (i % 8)
		if VerifyPSKAuth(p, secret, octets, bad) {
			t.Fatalf("bit %d flipped accepted", i)
		}
	}
	for name, ok := range map[string]bool{
		"truncated":    VerifyPSKAuth(p, secret, octets, auth[:len(auth)-1]),
		"empty":        VerifyPSKAuth(p, secret, octets, nil),
		"wrong secret": VerifyPSKAuth(p, []byte("another key"), octets, auth),
		"wrong octets": VerifyPSKAuth(p, secret, []byte("signed octetz"), auth),
	} {
		if ok {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestSignedOctets checks the §2.15 layout: RealMessage | NonceData |
// prf(SK_p, RestOfIDPayload).
func TestSignedOctets(t *testing.T) {
	p, _ := NewPRF(wire.PRFHMACSHA2256)
	msg, nonce, skp := []byte("IKE_SA_INIT message"), []byte("peer nonce"), []byte("SK_pi")
	idBody := []byte{byte(wire.IDFQDN), 0, 0, 0, 'a', '.', 'e', 'x'}
	got := SignedOctets(p, msg, nonce, skp, idBody)
	want := bytes.Join([][]byte{msg, nonce, hmacSHA256(skp, idBody)}, nil)
	if !bytes.Equal(got, want) {
		t.Errorf("SignedOctets = %x\nwant %x", got, want)
	}
}
