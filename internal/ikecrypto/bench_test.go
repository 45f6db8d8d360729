package ikecrypto

import (
	"bytes"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

var benchSuites = []suiteSpec{
	{name: "AES_CBC_128-HMAC_SHA2_256_128", encr: wire.EncrAESCBC, keyBits: 128, integ: wire.IntegHMACSHA2256128},
	{name: "AES_CBC_256-HMAC_SHA2_512_256", encr: wire.EncrAESCBC, keyBits: 256, integ: wire.IntegHMACSHA2512256},
	{name: "AES_GCM_16_128", encr: wire.EncrAESGCM16, keyBits: 128},
	{name: "AES_GCM_16_256", encr: wire.EncrAESGCM16, keyBits: 256},
	{name: "CHACHA20_POLY1305", encr: wire.EncrChaCha20Poly1305},
}

const benchInnerLen = 1024

func BenchmarkSKProtect(b *testing.B) {
	inner := bytes.Repeat([]byte{0x5a}, benchInnerLen)
	for _, s := range benchSuites {
		b.Run(s.name, func(b *testing.B) {
			c := s.cipher(b, 1)
			rnd := seeded(2)
			b.SetBytes(benchInnerLen)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Protect(testHeader(), wire.PayloadNotify, inner, rnd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSKUnprotect(b *testing.B) {
	inner := bytes.Repeat([]byte{0x5a}, benchInnerLen)
	for _, s := range benchSuites {
		b.Run(s.name, func(b *testing.B) {
			c := s.cipher(b, 1)
			msg, err := c.Protect(testHeader(), wire.PayloadNotify, inner, seeded(2))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(benchInnerLen)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Unprotect(msg, wire.HeaderLen); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDH is one side's work in an exchange: key generation and g^ir.
func BenchmarkDH(b *testing.B) {
	for _, g := range allGroups {
		b.Run(g.String(), func(b *testing.B) {
			peer, err := NewDH(g, seeded(1))
			if err != nil {
				b.Fatal(err)
			}
			pub := peer.Public()
			rnd := seeded(2)
			b.ReportAllocs()
			for b.Loop() {
				d, err := NewDH(g, rnd)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.Shared(pub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPRFPlusKeySet is SKEYSEED plus the seven IKE SA keys.
func BenchmarkPRFPlusKeySet(b *testing.B) {
	for _, tc := range []struct {
		name    string
		encr    wire.EncrID
		keyBits int
		prf     wire.PRFID
		integ   wire.IntegID
	}{
		{"AES_GCM_16_256-PRF_HMAC_SHA2_384", wire.EncrAESGCM16, 256, wire.PRFHMACSHA2384, wire.IntegNone},
		{"AES_CBC_128-PRF_HMAC_SHA2_256", wire.EncrAESCBC, 128, wire.PRFHMACSHA2256, wire.IntegHMACSHA2256128},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := NewSuite(tc.encr, tc.keyBits, tc.prf, tc.integ, wire.DHMODP2048)
			if err != nil {
				b.Fatal(err)
			}
			ni, nr, gir := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 256)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.DeriveIKEKeys(SKEYSEED(s.PRF, ni, nr, gir), ni, nr, 1, 2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
