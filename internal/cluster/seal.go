// Package cluster runs a gateway as one node of a cluster whose shared
// state lives in etcd (internal/clusterstore): the node's membership and
// fencing, IKE SA state sealed at rest, and the hand-over of SAs between
// nodes (RFC 7791 load sharing). docs/cluster.md has the design.
package cluster

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// KeySize is the key-encryption key's size: AES-256.
const KeySize = 32

// Sealer encrypts and authenticates what a node writes to the store
// (RFC 7791 §8: an SA's state holds its keys, and the store is not
// trusted with them). The key never goes to the store: every node reads
// it from a file of its own. AES-GCM, a random 96-bit nonce per value
// (at most one value per SA creation or rekey, far below GCM's limit of
// 2^32 messages per key), and the store key, the SA's SPIs and the
// ownership epoch as associated data: a value copied to another key, or
// an older epoch's value written back, does not open.
type Sealer struct {
	aead cipher.AEAD
	rand io.Reader
}

// NewSealer is a Sealer with key (KeySize octets).
func NewSealer(key []byte, rnd io.Reader) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("cluster: the key-encryption key must be %d octets, not %d", KeySize, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Sealer{aead: aead, rand: rnd}, nil
}

// LoadKey reads a key-encryption key file: 64 hex digits (whitespace
// around them ignored), as `openssl rand -hex 32` writes it. The file
// must not be readable by others.
func LoadKey(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: the key file is readable by others (mode %#o); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("%s: want %d hex digits (openssl rand -hex %d)", path, 2*KeySize, KeySize)
	}
	return key, nil
}

// Context is what a sealed value is bound to (the associated data).
type Context struct {
	Key        string // the store key it is written under
	SPIi, SPIr uint64 // the IKE SA's SPIs
	Epoch      uint64 // the ownership epoch: one more at every change of owner
}

func (c Context) ad() []byte {
	b := []byte("mifike cluster v1\x00")
	b = append(b, c.Key...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, c.SPIi)
	b = binary.BigEndian.AppendUint64(b, c.SPIr)
	return binary.BigEndian.AppendUint64(b, c.Epoch)
}

// ErrOpen is a sealed value that does not open: a different key, a
// different context, or tampering.
var ErrOpen = errors.New("cluster: sealed value does not open (wrong key-encryption key, or moved or altered)")

// Seal encrypts plaintext for ctx: nonce ‖ ciphertext ‖ tag.
func (s *Sealer) Seal(ctx Context, plaintext []byte) ([]byte, error) {
	out := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := io.ReadFull(s.rand, out); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, out, plaintext, ctx.ad()), nil
}

// Open decrypts and authenticates a Seal output for ctx.
func (s *Sealer) Open(ctx Context, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrOpen
	}
	pt, err := s.aead.Open(nil, sealed[:n], sealed[n:], ctx.ad())
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
