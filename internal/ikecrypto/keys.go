package ikecrypto

import (
	"encoding/binary"
	"fmt"
)

// SKEYSEED returns prf(Ni | Nr, g^ir) for a new IKE SA (RFC 7296 §2.14).
// Nonces of any length are accepted: the PRFs supported here are HMACs, so
// the 64-bit nonce truncation §2.14 prescribes for AES-XCBC and AES-CMAC
// never applies.
func SKEYSEED(p *PRF, ni, nr, gir []byte) []byte {
	key := make([]byte, 0, len(ni)+len(nr))
	key = append(append(key, ni...), nr...)
	return p.Sum(key, gir)
}

// RekeySKEYSEED returns prf_old(SK_d_old, g^ir_new | Ni | Nr), the SKEYSEED
// of an IKE SA made by rekeying (RFC 7296 §2.18) or cloning (RFC 7791 §5.2,
// which keys the clone as a rekey) an existing one. old must be the existing
// IKE SA's PRF, since the exchange belongs to it.
func RekeySKEYSEED(old *PRF, skd, gir, ni, nr []byte) []byte {
	return old.Sum(skd, gir, ni, nr)
}

// IKEKeys are the seven secrets of an IKE SA (RFC 7296 §2.14). SK_ai/SK_ei
// protect messages from the original initiator, SK_ar/SK_er the other
// direction; SK_ai/SK_ar are empty with an AEAD cipher (RFC 5282 §7.1).
type IKEKeys struct {
	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
}

// DeriveIKEKeys expands SKEYSEED into the IKE SA keys:
//
//	{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
//
// with the SPIs as 8 big-endian octets (RFC 7296 §2.14). For a rekeyed or
// cloned IKE SA pass the new SPIs and nonces and make s the new SA's suite
// (§2.18). SK_e* include the AEAD salt (RFC 5282 §7.1, RFC 7634 §3).
func (s *Suite) DeriveIKEKeys(skeyseed, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	prfLen, encLen, intLen := s.PRF.Size(), s.Encr.KeyLen, 0
	if s.Integ != nil {
		intLen = s.Integ.KeyLen
	}
	seed := make([]byte, 0, len(ni)+len(nr)+16)
	seed = append(append(seed, ni...), nr...)
	seed = binary.BigEndian.AppendUint64(seed, spii)
	seed = binary.BigEndian.AppendUint64(seed, spir)
	km, err := s.PRF.Plus(skeyseed, seed, 3*prfLen+2*intLen+2*encLen)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: deriving IKE SA keys: %w", err)
	}
	// Full slice expressions so that appending to one key cannot overwrite
	// the next.
	take := func(n int) []byte {
		k := km[:n:n]
		km = km[n:]
		return k
	}
	k := &IKEKeys{}
	k.SKd = take(prfLen)
	k.SKai = take(intLen)
	k.SKar = take(intLen)
	k.SKei = take(encLen)
	k.SKer = take(encLen)
	k.SKpi = take(prfLen)
	k.SKpr = take(prfLen)
	return k, nil
}

// ChildKeyMat returns n octets of Child SA keying material (RFC 7296 §2.17):
// prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir_new | Ni | Nr) when the
// CREATE_CHILD_SA exchange had a KE (PFS). gir nil means no PFS. The caller
// slices the result: initiator-to-responder keys first, and within ESP the
// encryption key (with salt) before the integrity key.
func ChildKeyMat(p *PRF, skd, gir, ni, nr []byte, n int) ([]byte, error) {
	seed := make([]byte, 0, len(gir)+len(ni)+len(nr))
	seed = append(append(append(seed, gir...), ni...), nr...)
	km, err := p.Plus(skd, seed, n)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: deriving Child SA keys: %w", err)
	}
	return km, nil
}
