package ikecrypto

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/mifike/mifike/internal/wire"
)

// IntegAlg is an integrity transform (Transform Type 3). All supported ones
// are truncated HMACs: the key is the hash output length (RFC 7296 §2.13)
// and the ICV its leading ICVLen octets (RFC 2404 §2 for SHA-1-96,
// RFC 4868 §2.1.1 and §2.3 for the SHA-2 ones, which keep half).
type IntegAlg struct {
	ID             wire.IntegID
	KeyLen, ICVLen int
	newHash        func() hash.Hash
}

// LookupInteg returns the integrity algorithm for id.
func LookupInteg(id wire.IntegID) (*IntegAlg, error) {
	a := &IntegAlg{ID: id}
	switch id {
	case wire.IntegHMACSHA196:
		a.newHash, a.KeyLen, a.ICVLen = sha1.New, sha1.Size, 12
	case wire.IntegHMACSHA2256128:
		a.newHash, a.KeyLen, a.ICVLen = sha256.New, sha256.Size, sha256.Size/2
	case wire.IntegHMACSHA2384192:
		a.newHash, a.KeyLen, a.ICVLen = sha512.New384, sha512.Size384, sha512.Size384/2
	case wire.IntegHMACSHA2512256:
		a.newHash, a.KeyLen, a.ICVLen = sha512.New, sha512.Size, sha512.Size/2
	default:
		return nil, fmt.Errorf("ikecrypto: unsupported integrity algorithm %v", id)
	}
	return a, nil
}

// New returns the HMAC keyed with key. Its Sum is the full HMAC; the ICV
// is the first ICVLen octets.
func (a *IntegAlg) New(key []byte) hash.Hash { return hmac.New(a.newHash, key) }
