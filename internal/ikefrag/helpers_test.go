package ikefrag

import (
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// seeded is a deterministic random source for IVs and keys.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return rand.NewChaCha8(s)
}

// suite names an IKE SA's SK cipher the way a negotiated proposal gives
// it (the engine's tests build them the same way, through NewSuite).
type suite struct {
	name    string
	encr    wire.EncrID
	keyBits int
	integ   wire.IntegID
}

// suites: AEAD and CBC+HMAC, with the smallest and largest overheads.
var suites = []suite{
	{"aes128gcm16", wire.EncrAESGCM16, 128, wire.IntegNone},
	{"aes256gcm16", wire.EncrAESGCM16, 256, wire.IntegNone},
	{"aes128-sha256", wire.EncrAESCBC, 128, wire.IntegHMACSHA2256128},
	{"aes256-sha512", wire.EncrAESCBC, 256, wire.IntegHMACSHA2512256},
	{"chacha20poly1305", wire.EncrChaCha20Poly1305, 0, wire.IntegNone},
}

// cipher keys the suite's SK cipher from seed. Sender and receiver of a
// direction hold the same keys, so one cipher both seals and opens.
func (s suite) cipher(tb testing.TB, seed uint64) *ikecrypto.SKCipher {
	tb.Helper()
	su, err := ikecrypto.NewSuite(s.encr, s.keyBits, wire.PRFHMACSHA2256, s.integ, wire.DHECP256)
	if err != nil {
		tb.Fatalf("NewSuite(%s): %v", s.name, err)
	}
	r := seeded(seed)
	enc := make([]byte, su.Encr.KeyLen)
	io.ReadFull(r, enc)
	var integ []byte
	if su.Integ != nil {
		integ = make([]byte, su.Integ.KeyLen)
		io.ReadFull(r, integ)
	}
	c, err := su.NewSKCipher(enc, integ)
	if err != nil {
		tb.Fatalf("NewSKCipher(%s): %v", s.name, err)
	}
	return c
}

// authHeader is an IKE_AUTH request header, the message fragmentation is
// for (RFC 7383 §2.4).
func authHeader(id uint32) wire.Header {
	return wire.Header{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718, MajorVersion: 2,
		Exchange: wire.IKEAuth, Flags: wire.FlagInitiator, MessageID: id}
}

// plaintext is n octets standing for an encoded inner payload chain.
func plaintext(n int, seed uint64) []byte {
	b := make([]byte, n)
	io.ReadFull(seeded(seed+1000), b)
	return b
}

// split cuts inner into fragments of at most maxDatagram octets (no
// marker) or fails the test.
func split(tb testing.TB, c *ikecrypto.SKCipher, h wire.Header, inner []byte, maxDatagram int) [][]byte {
	tb.Helper()
	frags, err := Split(h, wire.PayloadIDi, inner, c, maxDatagram, 0, seeded(7))
	if err != nil {
		tb.Fatalf("Split: %v", err)
	}
	return frags
}

// skfOffset finds the SKF payload as the engine's receive path does.
func skfOffset(tb testing.TB, msg []byte) int {
	tb.Helper()
	off, typ, ok := wire.ScanPayloads(msg)
	if !ok || typ != wire.PayloadSKF {
		tb.Fatalf("not an IKE Fragment message: offset %d, %v, framed %v", off, typ, ok)
	}
	return off
}

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
