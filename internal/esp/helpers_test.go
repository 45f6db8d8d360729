package esp

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// suiteKind is one transform combination exercised by the tests.
type suiteKind struct {
	name    string
	encr    wire.EncrID
	keyBits int
	integ   wire.IntegID
}

var kinds = []suiteKind{
	{"AES-GCM-16-128", wire.EncrAESGCM16, 128, wire.IntegNone},
	{"AES-GCM-16-256", wire.EncrAESGCM16, 256, wire.IntegNone},
	{"AES-GCM-12-128", wire.EncrAESGCM12, 128, wire.IntegNone},
	{"AES-GCM-12-256", wire.EncrAESGCM12, 256, wire.IntegNone},
	{"ChaCha20-Poly1305", wire.EncrChaCha20Poly1305, 0, wire.IntegNone},
	{"AES-CBC-128-SHA1-96", wire.EncrAESCBC, 128, wire.IntegHMACSHA196},
	{"AES-CBC-128-SHA256", wire.EncrAESCBC, 128, wire.IntegHMACSHA2256128},
	{"AES-CBC-192-SHA256", wire.EncrAESCBC, 192, wire.IntegHMACSHA2256128},
	{"AES-CBC-256-SHA256", wire.EncrAESCBC, 256, wire.IntegHMACSHA2256128},
	{"AES-CBC-256-SHA384", wire.EncrAESCBC, 256, wire.IntegHMACSHA2384192},
	{"AES-CBC-256-SHA512", wire.EncrAESCBC, 256, wire.IntegHMACSHA2512256},
}

func kindByName(t testing.TB, name string) suiteKind {
	t.Helper()
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	t.Fatalf("no suite %q", name)
	return suiteKind{}
}

// pattern returns n deterministic octets derived from seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 12345
	for i := range b {
		x = x*1103515245 + 12345
		b[i] = byte(x >> 16)
	}
	return b
}

// config returns a Config for k with deterministic keys of the lengths
// ikecrypto's table gives.
func (k suiteKind) config(t testing.TB, spi uint32, esn bool) Config {
	t.Helper()
	encr, err := ikecrypto.LookupEncr(k.encr, k.keyBits)
	if err != nil {
		t.Fatal(err)
	}
	c := Config{SPI: spi, Encr: k.encr, KeyBits: k.keyBits, Integ: k.integ, ESN: esn,
		EncKey: pattern(encr.KeyLen, byte(spi))}
	if k.integ != wire.IntegNone {
		integ, err := ikecrypto.LookupInteg(k.integ)
		if err != nil {
			t.Fatal(err)
		}
		c.IntegKey = pattern(integ.KeyLen, byte(spi)+1)
	}
	return c
}

func (k suiteKind) pair(t testing.TB, esn bool) (*Outbound, *Inbound) {
	t.Helper()
	c := k.config(t, 0x1000_0001, esn)
	o, err := NewOutbound(c)
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewInbound(c)
	if err != nil {
		t.Fatal(err)
	}
	return o, in
}

// unhex decodes hex, ignoring white space.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seal(t testing.TB, o *Outbound, payload []byte, nh byte, tfc int) []byte {
	t.Helper()
	pkt, err := o.Seal(nil, payload, nh, tfc)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func mustOpen(t testing.TB, in *Inbound, pkt []byte, want []byte, wantNH byte) {
	t.Helper()
	got, nh, err := in.Open(bytes.Clone(pkt))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if nh != wantNH || !bytes.Equal(got, want) {
		t.Fatalf("Open = nh %d %x, want nh %d %x", nh, got, wantNH, want)
	}
}
