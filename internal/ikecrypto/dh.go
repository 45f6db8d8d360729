package ikecrypto

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/mifike/mifike/internal/wire"
)

// DH is one side of an ephemeral Diffie-Hellman exchange (the KE payload,
// RFC 7296 §3.4), used for one exchange and then dropped. Never reusing the
// private value is what makes math/big's variable-time exponentiation
// acceptable for MODP: RFC 6989 §3 asks for timing countermeasures only
// for an exponent used more than 100 times.
type DH struct {
	group wire.DHGroup
	modp  *modpGroup
	x     *big.Int         // MODP private exponent
	ec    *ecdh.PrivateKey // ECP and Curve25519
	pub   []byte           // KE data
}

// dhParams describes how a group's keys are drawn and encoded.
type dhParams struct {
	modp    *modpGroup
	curve   ecdh.Curve
	privLen int  // octets drawn from the random source per candidate key
	topMask byte // applied to the first drawn octet (P-521 keeps 521 of 528 bits)
	pubLen  int  // KE data octets
}

func lookupDH(g wire.DHGroup) (dhParams, error) {
	switch g {
	case wire.DHMODP2048, wire.DHMODP3072, wire.DHMODP4096:
		m := lookupMODP(g)
		return dhParams{modp: m, privLen: m.expBits / 8, topMask: 0xff, pubLen: m.size}, nil
	// ECP KE data is x | y, each padded to the field size (RFC 5903 §7).
	case wire.DHECP256:
		return dhParams{curve: ecdh.P256(), privLen: 32, topMask: 0xff, pubLen: 64}, nil
	case wire.DHECP384:
		return dhParams{curve: ecdh.P384(), privLen: 48, topMask: 0xff, pubLen: 96}, nil
	case wire.DHECP521:
		return dhParams{curve: ecdh.P521(), privLen: 66, topMask: 0x01, pubLen: 132}, nil
	case wire.DHCurve25519:
		// 32 random octets, clamped inside X25519 (RFC 8031 App. A, RFC 7748 §5).
		return dhParams{curve: ecdh.X25519(), privLen: 32, topMask: 0xff, pubLen: 32}, nil
	}
	return dhParams{}, fmt.Errorf("ikecrypto: unsupported Diffie-Hellman group %v", g)
}

// PublicLen is the length of the Key Exchange Data for group.
func PublicLen(group wire.DHGroup) (int, error) {
	p, err := lookupDH(group)
	if err != nil {
		return 0, err
	}
	return p.pubLen, nil
}

// maxKeyDraws bounds the rejection sampling of private keys, so that a
// broken random source (all zeros, say) fails instead of looping forever.
// With a working source, even the P-521 rejection rate of about 1/2 makes
// needing this many draws a 2^-64 event.
const maxKeyDraws = 64

var errBadPrivate = errors.New("ikecrypto: private key out of range")

// NewDH makes a fresh key pair for group from rand. The key is a function
// of the bytes read, so a deterministic reader gives a deterministic key.
// (ecdh.Curve.GenerateKey cannot be used: since Go 1.26 it ignores its
// reader.) Candidates outside the valid range are rejected and redrawn.
func NewDH(group wire.DHGroup, rand io.Reader) (*DH, error) {
	p, err := lookupDH(group)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, p.privLen)
	for range maxKeyDraws {
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, fmt.Errorf("ikecrypto: drawing a %v private key: %w", group, err)
		}
		buf[0] &= p.topMask
		d, err := newDHFromPrivate(group, buf)
		if !errors.Is(err, errBadPrivate) {
			return d, err
		}
	}
	return nil, fmt.Errorf("ikecrypto: random source gave no valid %v private key in %d draws", group, maxKeyDraws)
}

// newDHFromPrivate builds a key pair from a given private value: a
// big-endian MODP exponent, a big-endian ECP scalar, or an X25519 scalar.
func newDHFromPrivate(group wire.DHGroup, priv []byte) (*DH, error) {
	p, err := lookupDH(group)
	if err != nil {
		return nil, err
	}
	d := &DH{group: group, modp: p.modp}
	if p.modp != nil {
		// Any non-zero exponent of at most expBits bits.
		d.x = new(big.Int).SetBytes(priv)
		if d.x.Sign() == 0 || d.x.BitLen() > p.modp.expBits {
			return nil, errBadPrivate
		}
		y := new(big.Int).Exp(p.modp.g, d.x, p.modp.p)
		d.pub = y.FillBytes(make([]byte, p.modp.size))
		return d, nil
	}
	if d.ec, err = p.curve.NewPrivateKey(priv); err != nil {
		// For the NIST curves this rejects 0 and values >= the order.
		return nil, fmt.Errorf("%w: %v", errBadPrivate, err)
	}
	d.pub = d.ec.PublicKey().Bytes()
	if group != wire.DHCurve25519 {
		d.pub = d.pub[1:] // drop the SEC 1 uncompressed-point prefix 0x04 (RFC 5903 §7)
	}
	return d, nil
}

// Group is the D-H group of d.
func (d *DH) Group() wire.DHGroup { return d.group }

// Public returns the Key Exchange Data for our KE payload: the MODP value
// left-padded to the modulus length (RFC 7296 §3.4), x | y for ECP
// (RFC 5903 §7), or the 32-octet X25519 public key (RFC 8031 §3.1).
func (d *DH) Public() []byte { return bytes.Clone(d.pub) }

// Shared checks the peer's Key Exchange Data and returns g^ir: big-endian
// and left-padded to the modulus length for MODP (RFC 7296 §2.14), the
// x coordinate for ECP (RFC 5903 §7), the raw X25519 output for Curve25519
// (RFC 8031 §2). A value failing the RFC 6989 §2 checks is an error; the
// caller then acts as RFC 6989 §2.5 says (drop, or INVALID_SYNTAX).
func (d *DH) Shared(peer []byte) ([]byte, error) {
	if len(peer) != len(d.pub) {
		return nil, fmt.Errorf("ikecrypto: %v key exchange data is %d octets, want %d", d.group, len(peer), len(d.pub))
	}
	if d.modp != nil {
		y := new(big.Int).SetBytes(peer)
		// RFC 6989 §2.1: 1 < y < p-1.
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(d.modp.pMinus1) >= 0 {
			return nil, fmt.Errorf("ikecrypto: %v peer value outside 1 < y < p-1 (RFC 6989 §2.1)", d.group)
		}
		z := new(big.Int).Exp(y, d.x, d.modp.p)
		return z.FillBytes(make([]byte, d.modp.size)), nil
	}
	var pk *ecdh.PublicKey
	var err error
	if d.group == wire.DHCurve25519 {
		// Any 32 octets are accepted; the top bit is masked and
		// non-canonical values allowed, as RFC 8031 §3.2 requires.
		pk, err = d.ec.Curve().NewPublicKey(peer)
	} else {
		// NewPublicKey checks the curve equation (RFC 6989 §2.3).
		pk, err = d.ec.Curve().NewPublicKey(append([]byte{4}, peer...))
	}
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: %v peer value is not a point on the curve (RFC 6989 §2.3)", d.group)
	}
	z, err := d.ec.ECDH(pk)
	if err != nil {
		// Only X25519 gets here: a low-order point gives the all-zero
		// output, which crypto/ecdh refuses (RFC 7748 §6.1).
		return nil, fmt.Errorf("ikecrypto: %v peer value is a low-order point (RFC 7748 §6.1)", d.group)
	}
	return z, nil
}
