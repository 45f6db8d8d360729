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

// maxPRFPlusBlocks is where prf+ stops being defined: the block counter is
// a single octet (RFC 7296 §2.13).
const maxPRFPlusBlocks = 255

// PRF is a negotiated pseudorandom function (Transform Type 2). Only the
// HMAC-based PRFs are supported (RFC 2104; RFC 4868 §2.1.2), so the
// preferred key length always equals the output length (RFC 7296 §2.13).
type PRF struct {
	ID      wire.PRFID
	newHash func() hash.Hash
	size    int
}

// NewPRF returns the PRF for id.
func NewPRF(id wire.PRFID) (*PRF, error) {
	p := &PRF{ID: id}
	switch id {
	case wire.PRFHMACSHA1:
		p.newHash, p.size = sha1.New, sha1.Size
	case wire.PRFHMACSHA2256:
		p.newHash, p.size = sha256.New, sha256.Size
	case wire.PRFHMACSHA2384:
		p.newHash, p.size = sha512.New384, sha512.Size384
	case wire.PRFHMACSHA2512:
		p.newHash, p.size = sha512.New, sha512.Size
	default:
		return nil, fmt.Errorf("ikecrypto: unsupported PRF %v", id)
	}
	return p, nil
}

// Size is the PRF output length in octets, which is also its preferred key
// length: the length of SK_d, SK_pi and SK_pr (RFC 7296 §2.13, §2.14).
func (p *PRF) Size() int { return p.size }

// Sum returns prf(key, data[0] | data[1] | ...).
func (p *PRF) Sum(key []byte, data ...[]byte) []byte {
	m := hmac.New(p.newHash, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(make([]byte, 0, p.size))
}

// Plus returns the first n octets of prf+(key, seed) (RFC 7296 §2.13):
//
//	T1 = prf(K, S | 0x01), Tn = prf(K, T(n-1) | S | n)
//
// prf+ is not defined beyond 255 blocks, so larger n is an error.
func (p *PRF) Plus(key, seed []byte, n int) ([]byte, error) {
	if n < 0 || n > maxPRFPlusBlocks*p.size {
		return nil, fmt.Errorf("ikecrypto: prf+ cannot produce %d octets with %v (at most %d)", n, p.ID, maxPRFPlusBlocks*p.size)
	}
	// Whole blocks and no more: key material lives as long as its SA.
	out := make([]byte, 0, (n+p.size-1)/p.size*p.size)
	m := hmac.New(p.newHash, key)
	var t []byte
	var counter [1]byte
	for i := 1; len(out) < n; i++ {
		counter[0] = byte(i)
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write(counter[:])
		out = m.Sum(out)
		t = out[len(out)-p.size:]
	}
	return out[:n:n], nil
}
