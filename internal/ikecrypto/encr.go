package ikecrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/mifike/mifike/internal/wire"
)

// EncrAlg describes an encryption transform (Transform Type 1) with its key
// length fixed. IKE (SK payloads) and ESP share these descriptions.
type EncrAlg struct {
	ID      wire.EncrID
	KeyBits int // cipher key length, without salt
	// KeyLen is the keying material taken for one key: the cipher key plus
	// the salt (RFC 4106 §8.1, RFC 5282 §7.1, RFC 7634 §2).
	KeyLen  int
	SaltLen int
	IVLen   int
	// BlockLen is the alignment of payload+padding+Pad Length: the cipher
	// block for CBC (RFC 7296 §3.14), 1 for AEAD (RFC 5282 §3: none).
	BlockLen int
	ICVLen   int // AEAD tag length; 0 for CBC, whose ICV is the integrity transform's
	AEAD     bool
}

// aeadSaltLen and aeadIVLen are shared by AES-GCM (RFC 4106 §3.1, §4) and
// ChaCha20-Poly1305 (RFC 7634 §2): a 4-octet salt from the keying
// material and an 8-octet explicit IV form the 12-octet nonce.
const (
	aeadSaltLen = 4
	aeadIVLen   = 8
)

// LookupEncr returns the algorithm for id with a keyBits-bit key (the Key
// Length attribute, RFC 7296 §3.3.5). ChaCha20-Poly1305 has a fixed key, so
// keyBits is 0 (attribute absent) or 256. The algorithm is shared, made
// once per (id, keyBits): callers must not change it. (Every IKE SA's
// suite keeps one; a copy each was 64 octets per SA on a gateway.)
func LookupEncr(id wire.EncrID, keyBits int) (*EncrAlg, error) {
	if a := encrTable[encrKey{id, keyBits}]; a != nil {
		return a, nil
	}
	return newEncr(id, keyBits) // an error, since every valid pair is in the table
}

type encrKey struct {
	id      wire.EncrID
	keyBits int
}

// encrTable holds every valid (id, keyBits) pair; it is never written
// after init, so lookups need no lock.
var encrTable = func() map[encrKey]*EncrAlg {
	t := map[encrKey]*EncrAlg{}
	for _, id := range []wire.EncrID{wire.EncrAESCBC, wire.EncrAESGCM12, wire.EncrAESGCM16, wire.EncrChaCha20Poly1305} {
		for _, bits := range []int{0, 128, 192, 256} {
			if a, err := newEncr(id, bits); err == nil {
				t[encrKey{id, bits}] = a
			}
		}
	}
	return t
}()

func newEncr(id wire.EncrID, keyBits int) (*EncrAlg, error) {
	switch id {
	case wire.EncrAESCBC:
		if !aesKeyBits(keyBits) {
			break
		}
		return &EncrAlg{ID: id, KeyBits: keyBits, KeyLen: keyBits / 8, IVLen: aes.BlockSize, BlockLen: aes.BlockSize}, nil
	case wire.EncrAESGCM12, wire.EncrAESGCM16:
		// ENCR_AES_GCM_8 is not offered: crypto/cipher allows tags of 12 to
		// 16 octets only, and RFC 5282 §7.2 wants 16 for IKEv2 anyway.
		if !aesKeyBits(keyBits) {
			break
		}
		icv := 16 // the ID picks the tag length (RFC 5282 §7.2)
		if id == wire.EncrAESGCM12 {
			icv = 12
		}
		return &EncrAlg{ID: id, KeyBits: keyBits, KeyLen: keyBits/8 + aeadSaltLen, SaltLen: aeadSaltLen,
			IVLen: aeadIVLen, BlockLen: 1, ICVLen: icv, AEAD: true}, nil
	case wire.EncrChaCha20Poly1305:
		if keyBits != 0 && keyBits != 8*chacha20poly1305.KeySize {
			break
		}
		return &EncrAlg{ID: id, KeyBits: 8 * chacha20poly1305.KeySize, KeyLen: chacha20poly1305.KeySize + aeadSaltLen,
			SaltLen: aeadSaltLen, IVLen: aeadIVLen, BlockLen: 1, ICVLen: chacha20poly1305.Overhead, AEAD: true}, nil
	default:
		return nil, fmt.Errorf("ikecrypto: unsupported encryption algorithm %v", id)
	}
	return nil, fmt.Errorf("ikecrypto: %v does not support a %d-bit key", id, keyBits)
}

// AES key lengths (RFC 3602 §2.2); the Key Length attribute must be one of
// these (RFC 3602 §5.3, RFC 5282 §7.3).
func aesKeyBits(bits int) bool { return bits == 128 || bits == 192 || bits == 256 }

func (a *EncrAlg) String() string {
	if a.ID == wire.EncrChaCha20Poly1305 {
		return a.ID.String()
	}
	return fmt.Sprintf("%v_%d", a.ID, a.KeyBits)
}

// NewAEAD keys an AEAD algorithm with keymat (cipher key | salt) and returns
// the AEAD and the salt. The AEAD takes the 12-octet nonce salt | IV
// (RFC 4106 §4, RFC 5282 §4, RFC 7634 §2).
func (a *EncrAlg) NewAEAD(keymat []byte) (cipher.AEAD, []byte, error) {
	if !a.AEAD {
		return nil, nil, fmt.Errorf("ikecrypto: %v is not an AEAD algorithm", a)
	}
	if len(keymat) != a.KeyLen {
		return nil, nil, fmt.Errorf("ikecrypto: %v needs %d octets of keying material, got %d", a, a.KeyLen, len(keymat))
	}
	key, salt := keymat[:a.KeyLen-a.SaltLen], keymat[a.KeyLen-a.SaltLen:]
	var (
		aead cipher.AEAD
		err  error
	)
	if a.ID == wire.EncrChaCha20Poly1305 {
		aead, err = chacha20poly1305.New(key)
	} else {
		var block cipher.Block
		if block, err = aes.NewCipher(key); err == nil {
			aead, err = cipher.NewGCMWithTagSize(block, a.ICVLen)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ikecrypto: keying %v: %w", a, err)
	}
	return aead, append([]byte(nil), salt...), nil
}

// NewBlock keys a CBC algorithm's block cipher.
func (a *EncrAlg) NewBlock(key []byte) (cipher.Block, error) {
	if a.AEAD {
		return nil, fmt.Errorf("ikecrypto: %v is an AEAD algorithm, not a block cipher", a)
	}
	if len(key) != a.KeyLen {
		return nil, fmt.Errorf("ikecrypto: %v needs a %d-octet key, got %d", a, a.KeyLen, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: keying %v: %w", a, err)
	}
	return block, nil
}
