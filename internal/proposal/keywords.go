package proposal

import (
	"fmt"
	"strings"

	"github.com/mifike/mifike/internal/wire"
)

// kind is the transform type a config keyword selects.
type kind uint8

const (
	kindEncr kind = iota
	kindInteg
	kindPRF
	kindDH
	kindESN
	numKinds
)

var kindNames = [numKinds]string{"encryption", "integrity", "prf", "dh", "esn"}

func (k kind) String() string { return kindNames[k] }

// keyword is one strongSwan algorithm keyword. bits is the AES key length
// (the Key Length attribute, RFC 7296 §3.3.5), 0 for fixed-key algorithms.
type keyword struct {
	name string
	kind kind
	id   uint16
	bits int
}

type algKey struct {
	kind kind
	id   uint16
	bits int
}

// keywords holds every name we accept. The first name of an algorithm is
// its canonical one, which String prints. Every algorithm here is one the
// crypto layer can run, so a parsed proposal never asks for something we
// cannot do; GCM with 8- and 12-octet ICVs is kept because ikecrypto and
// the kernel both implement it (RFC 4106, RFC 5282).
var keywords = buildKeywords()

func buildKeywords() []keyword {
	kw := []keyword{
		{"aes128", kindEncr, uint16(wire.EncrAESCBC), 128},
		{"aes192", kindEncr, uint16(wire.EncrAESCBC), 192},
		{"aes256", kindEncr, uint16(wire.EncrAESCBC), 256},
		{"aes", kindEncr, uint16(wire.EncrAESCBC), 128},
	}
	// strongSwan names GCM by key size and ICV length in octets or bits;
	// "aes128gcm" without an ICV length means the 16-octet ICV.
	for _, bits := range []int{128, 192, 256} {
		p := fmt.Sprintf("aes%dgcm", bits)
		kw = append(kw,
			keyword{p + "16", kindEncr, uint16(wire.EncrAESGCM16), bits},
			keyword{p, kindEncr, uint16(wire.EncrAESGCM16), bits},
			keyword{p + "128", kindEncr, uint16(wire.EncrAESGCM16), bits},
			keyword{p + "12", kindEncr, uint16(wire.EncrAESGCM12), bits},
			keyword{p + "96", kindEncr, uint16(wire.EncrAESGCM12), bits},
			keyword{p + "8", kindEncr, uint16(wire.EncrAESGCM8), bits},
			keyword{p + "64", kindEncr, uint16(wire.EncrAESGCM8), bits},
		)
	}
	return append(kw,
		keyword{"chacha20poly1305", kindEncr, uint16(wire.EncrChaCha20Poly1305), 0},

		keyword{"sha256", kindInteg, uint16(wire.IntegHMACSHA2256128), 0},
		keyword{"sha2_256", kindInteg, uint16(wire.IntegHMACSHA2256128), 0},
		keyword{"sha384", kindInteg, uint16(wire.IntegHMACSHA2384192), 0},
		keyword{"sha2_384", kindInteg, uint16(wire.IntegHMACSHA2384192), 0},
		keyword{"sha512", kindInteg, uint16(wire.IntegHMACSHA2512256), 0},
		keyword{"sha2_512", kindInteg, uint16(wire.IntegHMACSHA2512256), 0},
		keyword{"sha1", kindInteg, uint16(wire.IntegHMACSHA196), 0},
		keyword{"sha", kindInteg, uint16(wire.IntegHMACSHA196), 0},

		keyword{"prfsha256", kindPRF, uint16(wire.PRFHMACSHA2256), 0},
		keyword{"prfsha384", kindPRF, uint16(wire.PRFHMACSHA2384), 0},
		keyword{"prfsha512", kindPRF, uint16(wire.PRFHMACSHA2512), 0},
		keyword{"prfsha1", kindPRF, uint16(wire.PRFHMACSHA1), 0},

		keyword{"x25519", kindDH, uint16(wire.DHCurve25519), 0},
		keyword{"curve25519", kindDH, uint16(wire.DHCurve25519), 0},
		keyword{"ecp256", kindDH, uint16(wire.DHECP256), 0},
		keyword{"ecp384", kindDH, uint16(wire.DHECP384), 0},
		keyword{"ecp521", kindDH, uint16(wire.DHECP521), 0},
		keyword{"modp2048", kindDH, uint16(wire.DHMODP2048), 0},
		keyword{"modp3072", kindDH, uint16(wire.DHMODP3072), 0},
		keyword{"modp4096", kindDH, uint16(wire.DHMODP4096), 0},

		keyword{"noesn", kindESN, uint16(wire.ESNNo), 0},
		keyword{"esn", kindESN, uint16(wire.ESNYes), 0},
	)
}

var (
	byName    = map[string]keyword{}
	canonical = map[algKey]string{}
	// canonicalByKind lists canonical names per kind for error messages.
	canonicalByKind [numKinds][]string
)

func init() {
	for _, k := range keywords {
		byName[k.name] = k
		key := algKey{k.kind, k.id, k.bits}
		if _, ok := canonical[key]; !ok {
			canonical[key] = k.name
			canonicalByKind[k.kind] = append(canonicalByKind[k.kind], k.name)
		}
	}
}

// unsupported names strongSwan keywords we deliberately do not run, so the
// error says why instead of calling a well-known name unknown.
var unsupported = map[string]string{
	"3des":         "3DES is not implemented; RFC 8247 §2.1 keeps it only at MAY",
	"des":          "ENCR_DES is MUST NOT (RFC 8247 §2.1)",
	"null":         "ENCR_NULL is MUST NOT for IKE (RFC 8247 §2.1) and not implemented for ESP",
	"blowfish":     "not implemented",
	"cast128":      "not implemented",
	"md5":          "AUTH_HMAC_MD5_96 is MUST NOT (RFC 8247 §2.3)",
	"prfmd5":       "PRF_HMAC_MD5 is MUST NOT (RFC 8247 §2.2)",
	"aesxcbc":      "AES-XCBC is not implemented",
	"prfaesxcbc":   "AES-XCBC is not implemented",
	"aescmac":      "AES-CMAC is not implemented",
	"prfaescmac":   "AES-CMAC is not implemented",
	"modp768":      "group 1 is MUST NOT (RFC 8247 §2.4)",
	"modp1024":     "group 2 is SHOULD NOT (RFC 8247 §2.4) and not implemented",
	"modp1536":     "group 5 is SHOULD NOT (RFC 8247 §2.4) and not implemented",
	"modp1024s160": "group 22 is MUST NOT (RFC 8247 §2.4)",
	"modp2048s224": "group 23 is SHOULD NOT (RFC 8247 §2.4) and not implemented",
	"modp2048s256": "group 24 is SHOULD NOT (RFC 8247 §2.4) and not implemented",
	"modp6144":     "not implemented",
	"modp8192":     "not implemented",
	"ecp192":       "not implemented",
	"ecp224":       "not implemented",
	"x448":         "not implemented",
	"curve448":     "not implemented",
}

// unsupportedReason explains a recognised but unimplemented keyword.
func unsupportedReason(tok string) (string, bool) {
	if r, ok := unsupported[tok]; ok {
		return r, true
	}
	for _, mode := range []string{"ctr", "ccm", "gmac"} {
		if strings.HasPrefix(tok, "aes") && strings.Contains(tok, mode) {
			return "AES-" + strings.ToUpper(mode) + " is not implemented", true
		}
	}
	if strings.HasPrefix(tok, "camellia") || (strings.HasPrefix(tok, "ecp") && strings.HasSuffix(tok, "bp")) {
		return "not implemented", true
	}
	return "", false
}

// allowed lists the keywords valid in a proposal of protocol proto.
func allowed(proto wire.ProtocolID) string {
	kinds := []kind{kindEncr, kindInteg, kindPRF, kindDH}
	if proto == wire.ProtoESP {
		kinds = []kind{kindEncr, kindInteg, kindDH, kindESN}
	}
	var b strings.Builder
	for i, k := range kinds {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%v: %s", k, strings.Join(canonicalByKind[k], " "))
	}
	return b.String()
}

func listOf(k kind) string { return strings.Join(canonicalByKind[k], " ") }

// name returns the canonical keyword of an algorithm, or the IANA name for
// one without a keyword (a hand-built proposal).
func name(k kind, id uint16, bits int) string {
	if s, ok := canonical[algKey{k, id, bits}]; ok {
		return s
	}
	var s string
	switch k {
	case kindEncr:
		s = wire.EncrID(id).String()
		if bits != 0 {
			s += fmt.Sprintf("_%d", bits)
		}
	case kindInteg:
		s = wire.IntegID(id).String()
	case kindPRF:
		s = wire.PRFID(id).String()
	case kindDH:
		s = wire.DHGroup(id).String()
	default:
		s = wire.ESNID(id).String()
	}
	return strings.ToLower(s)
}

// Supported reports whether the crypto layer implements transform id of
// type t; keyBits is the AES key length and 0 for every other algorithm.
// It is exactly the set of algorithms the config keywords name.
func Supported(t wire.TransformType, id uint16, keyBits int) bool {
	var k kind
	switch t {
	case wire.TransformENCR:
		k = kindEncr
	case wire.TransformPRF:
		k = kindPRF
	case wire.TransformINTEG:
		k = kindInteg
	case wire.TransformDH:
		k = kindDH
	case wire.TransformESN:
		k = kindESN
	default:
		return false
	}
	_, ok := canonical[algKey{k, id, keyBits}]
	return ok
}

// aesFamily reports whether an ENCR transform takes the Key Length
// attribute: AES has variable keys, so the attribute MUST be present
// (RFC 7296 §3.3.5, RFC 3602 §5.3, RFC 5282 §7.3). ChaCha20-Poly1305 has a
// fixed 256-bit key and so MUST NOT carry it (RFC 7296 §3.3.5).
func aesFamily(id wire.EncrID) bool {
	switch id {
	case wire.EncrAESCBC, wire.EncrAESCTR, wire.EncrAESCCM8, wire.EncrAESCCM12, wire.EncrAESCCM16,
		wire.EncrAESGCM8, wire.EncrAESGCM12, wire.EncrAESGCM16, wire.EncrNullAuthAESGMAC:
		return true
	}
	return false
}

// isAEAD reports whether an ENCR transform is a combined-mode cipher, which
// negotiates no integrity algorithm (RFC 7296 §3.3, RFC 5282 §8, RFC 7634 §4).
func isAEAD(id wire.EncrID) bool {
	switch id {
	case wire.EncrAESCCM8, wire.EncrAESCCM12, wire.EncrAESCCM16,
		wire.EncrAESGCM8, wire.EncrAESGCM12, wire.EncrAESGCM16, wire.EncrChaCha20Poly1305:
		return true
	}
	return false
}
