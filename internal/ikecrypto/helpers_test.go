package ikecrypto

import (
	"encoding/hex"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// seeded is a deterministic random source for tests.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return rand.NewChaCha8(s)
}

// suiteSpec names a suite for table tests and benchmarks.
type suiteSpec struct {
	name    string
	encr    wire.EncrID
	keyBits int
	integ   wire.IntegID
}

func (s suiteSpec) suite(tb testing.TB) *Suite {
	tb.Helper()
	su, err := NewSuite(s.encr, s.keyBits, wire.PRFHMACSHA2256, s.integ, wire.DHECP256)
	if err != nil {
		tb.Fatalf("NewSuite(%s): %v", s.name, err)
	}
	return su
}

// cipher keys a suite's SK cipher with keys drawn from seed.
func (s suiteSpec) cipher(tb testing.TB, seed uint64) *SKCipher {
	tb.Helper()
	su := s.suite(tb)
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

// allSuites is every supported SK cipher combination.
var allSuites = func() []suiteSpec {
	var out []suiteSpec
	for _, bits := range []int{128, 192, 256} {
		for _, integ := range []wire.IntegID{wire.IntegHMACSHA196, wire.IntegHMACSHA2256128, wire.IntegHMACSHA2384192, wire.IntegHMACSHA2512256} {
			out = append(out, suiteSpec{name: wire.EncrAESCBC.String() + "_" + strconv.Itoa(bits) + "/" + integ.String(), encr: wire.EncrAESCBC, keyBits: bits, integ: integ})
		}
	}
	for _, id := range []wire.EncrID{wire.EncrAESGCM12, wire.EncrAESGCM16} {
		for _, bits := range []int{128, 192, 256} {
			out = append(out, suiteSpec{name: id.String() + "_" + strconv.Itoa(bits), encr: id, keyBits: bits})
		}
	}
	return append(out, suiteSpec{name: wire.EncrChaCha20Poly1305.String(), encr: wire.EncrChaCha20Poly1305})
}()

// testHeader is an INFORMATIONAL request header for SK tests.
func testHeader() wire.Header {
	return wire.Header{
		SPIi: 0x0102030405060708, SPIr: 0x1112131415161718,
		MajorVersion: 2, Exchange: wire.Informational, Flags: wire.FlagInitiator, MessageID: 7,
	}
}
