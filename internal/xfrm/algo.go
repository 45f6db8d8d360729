package xfrm

import (
	"fmt"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// kernelAlg names an IKEv2 transform the way the kernel's crypto API
// does (the names strongSwan and iproute2 use), and the modules that
// provide it, for error messages.
type kernelAlg struct {
	name    string
	modules string
}

// ESP encryption transforms (RFC 8221 §5). AEAD keying material is the
// key followed by the salt (RFC 4106 §8.1, RFC 4309 §7.1, RFC 7634 §2),
// which is what the rfc4106/rfc4309/rfc7539esp templates take.
var encrAlgs = map[wire.EncrID]kernelAlg{
	wire.EncrAESGCM16:         {"rfc4106(gcm(aes))", "gcm, ghash, aesni_intel or aes_generic"},
	wire.EncrAESGCM12:         {"rfc4106(gcm(aes))", "gcm, ghash, aesni_intel or aes_generic"},
	wire.EncrAESGCM8:          {"rfc4106(gcm(aes))", "gcm, ghash, aesni_intel or aes_generic"},
	wire.EncrChaCha20Poly1305: {"rfc7539esp(chacha20,poly1305)", "chacha20poly1305, chacha_generic, poly1305_generic"},
	wire.EncrAESCCM16:         {"rfc4309(ccm(aes))", "ccm"},
	wire.EncrAESCCM12:         {"rfc4309(ccm(aes))", "ccm"},
	wire.EncrAESCCM8:          {"rfc4309(ccm(aes))", "ccm"},
	wire.EncrNullAuthAESGMAC:  {"rfc4543(gcm(aes))", "gcm"},
	wire.EncrAESCBC:           {"cbc(aes)", "cbc, aes_generic"},
	wire.EncrAESCTR:           {"rfc3686(ctr(aes))", "ctr"},
	wire.Encr3DES:             {"cbc(des3_ede)", "des3_ede"},
}

// ESP integrity transforms (RFC 8221 §6), with their truncation.
var integAlgs = map[wire.IntegID]struct {
	kernelAlg
	truncBits int
}{
	wire.IntegHMACSHA2256128: {kernelAlg{"hmac(sha256)", "sha256"}, 128},
	wire.IntegHMACSHA2384192: {kernelAlg{"hmac(sha384)", "sha512"}, 192},
	wire.IntegHMACSHA2512256: {kernelAlg{"hmac(sha512)", "sha512"}, 256},
	wire.IntegHMACSHA196:     {kernelAlg{"hmac(sha1)", "sha1"}, 96},
	wire.IntegAESXCBC96:      {kernelAlg{"xcbc(aes)", "xcbc"}, 96},
	wire.IntegAESCMAC96:      {kernelAlg{"cmac(aes)", "cmac"}, 96},
	wire.IntegHMACMD596:      {kernelAlg{"hmac(md5)", "md5"}, 96},
}

// aeadEncr are the combined-mode transforms (RFC 4106, RFC 4309,
// RFC 4543, RFC 7634): no separate integrity transform.
var aeadEncr = map[wire.EncrID]bool{
	wire.EncrAESGCM16: true, wire.EncrAESGCM12: true, wire.EncrAESGCM8: true, wire.EncrChaCha20Poly1305: true,
	wire.EncrAESCCM16: true, wire.EncrAESCCM12: true, wire.EncrAESCCM8: true, wire.EncrNullAuthAESGMAC: true,
}

// icvBits of the AEAD transforms that are not 16 octets.
var aeadICV = map[wire.EncrID]int{
	wire.EncrAESGCM8: 64, wire.EncrAESGCM12: 96, wire.EncrAESCCM8: 64, wire.EncrAESCCM12: 96,
}

// algorithms maps a Child SA's negotiated transforms and one direction's
// keys to the kernel's: an AEAD, or a cipher and an HMAC.
func algorithms(encr wire.EncrID, keyBits int, integ wire.IntegID, encKey, integKey []byte) (aead, crypt, auth *Algo, err error) {
	k, ok := encrAlgs[encr]
	if !ok {
		return nil, nil, nil, fmt.Errorf("xfrm: ESP encryption %v has no kernel equivalent here; choose AES-GCM, ChaCha20-Poly1305 or AES-CBC", encr)
	}
	// The key lengths come from the same table the IKE side uses, so a
	// mismatch is a bug caught here rather than a kernel EINVAL.
	if a, err := ikecrypto.LookupEncr(encr, keyBits); err == nil && len(encKey) != a.KeyLen {
		return nil, nil, nil, fmt.Errorf("xfrm: %v needs %d octets of keying material, got %d", encr, a.KeyLen, len(encKey))
	}
	if aeadEncr[encr] {
		if integ != wire.IntegNone {
			return nil, nil, nil, fmt.Errorf("xfrm: %v is combined mode; integrity %v not allowed", encr, integ)
		}
		icv := 128
		if v, ok := aeadICV[encr]; ok {
			icv = v
		}
		return &Algo{Name: k.name, Key: encKey, ICVBits: icv}, nil, nil, nil
	}
	i, ok := integAlgs[integ]
	if !ok {
		return nil, nil, nil, fmt.Errorf("xfrm: ESP %v needs an integrity algorithm the kernel has; %v is not one", encr, integ)
	}
	return nil, &Algo{Name: k.name, Key: encKey}, &Algo{Name: i.name, Key: integKey, ICVBits: i.truncBits}, nil
}

// modulesFor names the crypto modules an algorithm comes from, for an
// error that says what to load.
func modulesFor(name string) string {
	for _, a := range encrAlgs {
		if a.name == name {
			return a.modules
		}
	}
	for _, a := range integAlgs {
		if a.name == name {
			return a.modules
		}
	}
	return ""
}
