package xfrm

import (
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

func TestAlgorithms(t *testing.T) {
	key := func(n int) []byte { return make([]byte, n) }
	for _, tc := range []struct {
		name       string
		encr       wire.EncrID
		bits       int
		integ      wire.IntegID
		enc, auth  int
		aead       string
		icv        int
		crypt, mac string
		trunc      int
	}{
		{name: "aes128gcm16", encr: wire.EncrAESGCM16, bits: 128, enc: 20, aead: "rfc4106(gcm(aes))", icv: 128},
		{name: "aes256gcm16", encr: wire.EncrAESGCM16, bits: 256, enc: 36, aead: "rfc4106(gcm(aes))", icv: 128},
		{name: "aes128gcm8", encr: wire.EncrAESGCM8, bits: 128, enc: 20, aead: "rfc4106(gcm(aes))", icv: 64},
		{name: "chacha20poly1305", encr: wire.EncrChaCha20Poly1305, enc: 36, aead: "rfc7539esp(chacha20,poly1305)", icv: 128},
		{name: "aes128-sha256", encr: wire.EncrAESCBC, bits: 128, integ: wire.IntegHMACSHA2256128, enc: 16, auth: 32,
			crypt: "cbc(aes)", mac: "hmac(sha256)", trunc: 128},
		{name: "aes256-sha512", encr: wire.EncrAESCBC, bits: 256, integ: wire.IntegHMACSHA2512256, enc: 32, auth: 64,
			crypt: "cbc(aes)", mac: "hmac(sha512)", trunc: 256},
		{name: "aes192-sha384", encr: wire.EncrAESCBC, bits: 192, integ: wire.IntegHMACSHA2384192, enc: 24, auth: 48,
			crypt: "cbc(aes)", mac: "hmac(sha384)", trunc: 192},
		{name: "aes128-sha1", encr: wire.EncrAESCBC, bits: 128, integ: wire.IntegHMACSHA196, enc: 16, auth: 20,
			crypt: "cbc(aes)", mac: "hmac(sha1)", trunc: 96},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aead, crypt, auth, err := algorithms(tc.encr, tc.bits, tc.integ, key(tc.enc), key(tc.auth))
			if err != nil {
				t.Fatal(err)
			}
			if tc.aead != "" {
				if aead == nil || crypt != nil || auth != nil || aead.Name != tc.aead || aead.ICVBits != tc.icv || len(aead.Key) != tc.enc {
					t.Fatalf("got aead %+v crypt %+v auth %+v", aead, crypt, auth)
				}
				return
			}
			if aead != nil || crypt.Name != tc.crypt || auth.Name != tc.mac || auth.ICVBits != tc.trunc || len(auth.Key) != tc.auth {
				t.Fatalf("got aead %+v crypt %+v auth %+v", aead, crypt, auth)
			}
		})
	}
}

func TestAlgorithmErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		encr  wire.EncrID
		bits  int
		integ wire.IntegID
		enc   int
		want  string
	}{
		{"unknown cipher", wire.EncrDES, 64, wire.IntegHMACSHA196, 8, "no kernel equivalent"},
		{"short AEAD key", wire.EncrAESGCM16, 128, 0, 16, "needs 20 octets"},
		{"AEAD with integrity", wire.EncrAESGCM16, 128, wire.IntegHMACSHA2256128, 20, "combined mode"},
		{"CBC without integrity", wire.EncrAESCBC, 128, 0, 16, "needs an integrity algorithm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := algorithms(tc.encr, tc.bits, tc.integ, make([]byte, tc.enc), make([]byte, 32))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestModulesNamed(t *testing.T) {
	for _, n := range []string{"rfc4106(gcm(aes))", "rfc7539esp(chacha20,poly1305)", "cbc(aes)", "hmac(sha256)"} {
		if modulesFor(n) == "" {
			t.Errorf("no modules named for %s", n)
		}
	}
}
