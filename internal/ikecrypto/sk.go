package ikecrypto

import (
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync/atomic"

	"github.com/mifike/mifike/internal/wire"
)

const (
	genericHeaderLen = 4 // Next Payload, C + RESERVED, Payload Length (RFC 7296 §3.2)
	// skfHeaderLen adds Fragment Number and Total Fragments (RFC 7383 §2.5).
	skfHeaderLen  = genericHeaderLen + 4
	maxPayloadLen = 0xffff // Payload Length is 16 bits
)

// ErrIntegrity is returned when a message's ICV or AEAD tag does
// not verify, so callers can tell forgeries and corruption apart from
// malformed framing, e.g. for counters.
var ErrIntegrity = errors.New("ikecrypto: integrity check failed")

// SKCipher protects one direction of an IKE SA: SK_ei with SK_ai, or SK_er
// with SK_ar. It builds and opens the Encrypted payload (RFC 7296 §3.14,
// RFC 5282 §3 and §5 for AEAD, RFC 7634 §3) and the Encrypted Fragment
// payload (RFC 7383 §2.5). It keeps no per-message state; Protect may be
// used from several goroutines, the receiving side (Unprotect...) from
// one at a time (see UnprotectTo).
type SKCipher struct {
	encr   *EncrAlg
	encKey []byte // SK_e*, with the salt for AEAD
	// CBC with a separate integrity transform
	integ    *IntegAlg
	integKey []byte
	// keyed is the cipher made from encKey, nil while idle (Idle): an
	// AES-GCM key schedule with its GHASH table is about 800 octets, a
	// gateway holds tens of thousands of IKE SAs that exchange a message
	// a minute at most, so an idle SA keeps only the keys and the next
	// message keys the cipher again. Atomic because
	// Protect may run on several goroutines.
	keyed atomic.Pointer[keyedCipher]
	// rx is the receiving side's scratch, made on the first received
	// message: only the inbound cipher of an SA that got one pays for it
	// (a half-open SA does not).
	rx *openScratch
}

// keyedCipher is an SKCipher's keyed primitive: an AEAD and its salt, or
// a CBC block cipher.
type keyedCipher struct {
	aead  cipher.AEAD
	salt  []byte
	block cipher.Block
}

// openScratch is what open reuses from one message to the next so that
// checking one allocates nothing: the AEAD nonce, and for the CBC suites
// the HMAC (hmac.New per message is garbage) and its output. The arrays
// would escape to the heap as locals: they are passed to interface
// methods.
type openScratch struct {
	nonce [aeadSaltLen + aeadIVLen]byte
	mac   *macScratch // CBC suites only
}

type macScratch struct {
	verify hash.Hash
	sum    [64]byte
	// cbc is the decrypter, made with the first IV and given each next
	// one with SetIV: cipher.NewCBCDecrypter per message is garbage too.
	cbc cipher.BlockMode
}

// ivSetter is what the standard library's CBC modes implement to be
// reused with another IV.
type ivSetter interface{ SetIV([]byte) }

// NewSKCipher keys the suite's cipher with encKey (SK_e*, including any
// salt) and its integrity algorithm with integKey (SK_a*, empty for AEAD).
//
// The cipher keeps encKey and integKey (Keys): the caller must not change
// them afterwards.
func (s *Suite) NewSKCipher(encKey, integKey []byte) (*SKCipher, error) {
	c := &SKCipher{encr: s.Encr, encKey: encKey}
	if s.Encr.AEAD {
		if len(integKey) != 0 {
			return nil, fmt.Errorf("ikecrypto: %v takes no integrity key", s.Encr)
		}
	} else {
		if s.Integ == nil {
			return nil, fmt.Errorf("ikecrypto: %v needs an integrity algorithm", s.Encr)
		}
		if len(integKey) != s.Integ.KeyLen {
			return nil, fmt.Errorf("ikecrypto: %v needs a %d-octet key, got %d", s.Integ.ID, s.Integ.KeyLen, len(integKey))
		}
		c.integ, c.integKey = s.Integ, integKey
	}
	// Keyed now, which checks the key, and kept until Idle: the
	// handshake uses it at once.
	if _, err := c.cipher(); err != nil {
		return nil, err
	}
	return c, nil
}

// Keys returns the keys c was made from (SK_e* and SK_a*, RFC 7296
// §2.14), for exporting the SA; they are c's own, not copies.
func (c *SKCipher) Keys() (encKey, integKey []byte) { return c.encKey, c.integKey }

// cipher returns the keyed primitive, keying it if idle.
func (c *SKCipher) cipher() (*keyedCipher, error) {
	if k := c.keyed.Load(); k != nil {
		return k, nil
	}
	k := &keyedCipher{}
	var err error
	if c.encr.AEAD {
		k.aead, k.salt, err = c.encr.NewAEAD(c.encKey)
	} else {
		k.block, err = c.encr.NewBlock(c.encKey)
	}
	if err != nil {
		return nil, err
	}
	c.keyed.Store(k)
	return k, nil
}

// Idle drops the keyed primitive and the receiving scratch, keeping the
// keys: an IKE SA with no exchange in flight calls it, and the next
// message keys the cipher again. Like UnprotectTo, it must not run
// concurrently with the receiving side.
func (c *SKCipher) Idle() {
	c.keyed.Store(nil)
	c.rx = nil
}

func (c *SKCipher) icvLen() int {
	if c.encr.AEAD {
		return c.encr.ICVLen
	}
	return c.integ.ICVLen
}

// padLen is the Padding a sender adds: the minimum that aligns payloads,
// Padding and Pad Length to the block for CBC (RFC 7296 §3.14), none for
// AEAD (RFC 5282 §3, RFC 7634 §3).
func (c *SKCipher) padLen(innerLen int) int {
	b := c.encr.BlockLen
	return (b - (innerLen+1)%b) % b
}

// Overhead is how many octets an SK payload adds around innerLen octets of
// inner payloads: generic header, IV, Padding, Pad Length and ICV.
func (c *SKCipher) Overhead(innerLen int) int {
	return genericHeaderLen + c.encr.IVLen + c.padLen(innerLen) + 1 + c.icvLen()
}

// Protect encrypts inner, an encoded chain of payloads starting with a
// payload of type first, and returns the whole message: hdr, with Next
// Payload SK and the real Length, then the SK payload. rand supplies the
// IV: a fresh unpredictable block for CBC (RFC 7296 §3.14 rules out the
// previous ciphertext block), 8 octets for AEAD, which must only be unique
// per key (RFC 5282 §3.1, RFC 7634 §2). Random 64-bit IVs repeat among n
// messages with probability about n²/2^65, 2^-25 after a million messages
// under one key; a caller wanting uniqueness by construction passes a
// reader that yields a per-key counter.
func (c *SKCipher) Protect(hdr wire.Header, first wire.PayloadType, inner []byte, rand io.Reader) ([]byte, error) {
	return c.seal(hdr, wire.PayloadSK, first, nil, inner, rand)
}

// seal builds hdr | payload header | extra | IV | ciphertext | ICV, where
// extra is the SKF fragment numbering.
func (c *SKCipher) seal(hdr wire.Header, payload, next wire.PayloadType, extra, inner []byte, rand io.Reader) ([]byte, error) {
	pad := c.padLen(len(inner))
	ptLen := len(inner) + pad + 1
	payLen := genericHeaderLen + len(extra) + c.encr.IVLen + ptLen + c.icvLen()
	if payLen > maxPayloadLen {
		return nil, fmt.Errorf("ikecrypto: %v payload of %d octets exceeds the 16-bit Payload Length", payload, payLen)
	}
	total := wire.HeaderLen + payLen
	k, err := c.cipher()
	if err != nil {
		return nil, err
	}
	hdr.NextPayload = payload
	hdr.Length = uint32(total)

	out := make([]byte, 0, total)
	out = hdr.AppendTo(out)
	out = append(out, byte(next), 0) // critical bit 0 (RFC 7296 §3.2)
	out = binary.BigEndian.AppendUint16(out, uint16(payLen))
	out = append(out, extra...)
	aadEnd := len(out)
	out = out[:aadEnd+c.encr.IVLen]
	iv := out[aadEnd:]
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("ikecrypto: drawing an IV: %w", err)
	}
	ptStart := len(out)
	out = append(out, inner...)
	for range pad {
		out = append(out, 0) // Padding MAY be any value (RFC 7296 §3.14)
	}
	out = append(out, byte(pad))

	if k.aead != nil {
		// AAD: IKE header through the encrypted payload's header (RFC 5282 §5.1).
		nonce := k.nonce(iv)
		return k.aead.Seal(out[:ptStart], nonce[:], out[ptStart:], out[:aadEnd]), nil
	}
	pt := out[ptStart:]
	cipher.NewCBCEncrypter(k.block, iv).CryptBlocks(pt, pt)
	// ICV over the whole message from the IKE header through the
	// ciphertext, truncated (RFC 7296 §3.14).
	var sum [64]byte
	m := c.integ.New(c.integKey)
	m.Write(out)
	return append(out, m.Sum(sum[:0])[:c.integ.ICVLen]...), nil
}

// nonce is salt | IV (RFC 4106 §4, RFC 5282 §4, RFC 7634 §2).
func (k *keyedCipher) nonce(iv []byte) [aeadSaltLen + aeadIVLen]byte {
	var n [aeadSaltLen + aeadIVLen]byte
	copy(n[:], k.salt)
	copy(n[aeadSaltLen:], iv)
	return n
}

// Unprotect verifies and decrypts the SK payload of msg, a whole received
// IKE message (from the IKE header; no non-ESP marker) whose SK payload
// header starts at skOffset. SK is the last payload (RFC 7296 §3.14), so
// its Payload Length must reach the end of msg. The ICV is checked in
// constant time before anything is decrypted, so a bad Pad Length cannot
// be used as an oracle. It returns the inner payloads without Padding.
func (c *SKCipher) Unprotect(msg []byte, skOffset int) ([]byte, error) {
	return c.open(nil, msg, skOffset, genericHeaderLen)
}

// UnprotectTo is Unprotect writing the inner payloads into dst's storage
// (from dst[:0]) when it is large enough: a receiver reuses one scratch
// buffer, so a forged or corrupted message costs no allocation. Failures
// are the errors below, never formatted per message; the CBC suites'
// ICV is computed with an HMAC kept in c, so unlike Protect, UnprotectTo
// and Unprotect must not be called concurrently on one SKCipher.
func (c *SKCipher) UnprotectTo(dst, msg []byte, skOffset int) ([]byte, error) {
	return c.open(dst, msg, skOffset, genericHeaderLen)
}

// What open reports. They are values, not formatted per message: what
// fails here is dropped (RFC 7296 §2.21), usually unseen.
var (
	// ErrFraming: the SK or SKF payload does not fit the message or the
	// cipher (lengths, block alignment).
	ErrFraming = errors.New("ikecrypto: Encrypted payload does not fit the message or the cipher")
	// ErrPadLength: an authentic message whose Pad Length exceeds its
	// plaintext.
	ErrPadLength = errors.New("ikecrypto: Pad Length exceeds the plaintext")
)

func (c *SKCipher) open(dst, msg []byte, off, hlen int) ([]byte, error) {
	if off < wire.HeaderLen || off > len(msg)-hlen {
		return nil, ErrFraming
	}
	if l := binary.BigEndian.Uint32(msg[24:28]); uint64(l) != uint64(len(msg)) {
		return nil, ErrFraming
	}
	if pl := int(binary.BigEndian.Uint16(msg[off+2:])); pl != len(msg)-off {
		return nil, ErrFraming
	}
	ivLen, icvLen, block := c.encr.IVLen, c.icvLen(), c.encr.BlockLen
	body := msg[off+hlen:]
	ctLen := len(body) - ivLen - icvLen
	// At least the Pad Length octet, a whole block for CBC.
	if ctLen < block || ctLen%block != 0 {
		return nil, ErrFraming
	}
	iv := body[:ivLen]

	k, err := c.cipher()
	if err != nil {
		return nil, err
	}
	if c.rx == nil {
		c.rx = &openScratch{}
		if k.aead == nil {
			c.rx.mac = &macScratch{verify: c.integ.New(c.integKey)}
		}
	}
	rx := c.rx
	var pt []byte
	if k.aead != nil {
		rx.nonce = k.nonce(iv)
		if pt, err = k.aead.Open(dst[:0], rx.nonce[:], body[ivLen:], msg[:off+hlen]); err != nil {
			return nil, ErrIntegrity
		}
	} else {
		mac := rx.mac
		mac.verify.Reset()
		mac.verify.Write(msg[:len(msg)-icvLen])
		if !hmac.Equal(mac.verify.Sum(mac.sum[:0])[:icvLen], msg[len(msg)-icvLen:]) {
			return nil, ErrIntegrity
		}
		pt = dst[:0]
		if cap(pt) < ctLen {
			pt = make([]byte, ctLen)
		}
		pt = pt[:ctLen]
		if r, ok := mac.cbc.(ivSetter); ok {
			r.SetIV(iv)
		} else {
			mac.cbc = cipher.NewCBCDecrypter(k.block, iv)
		}
		mac.cbc.CryptBlocks(pt, body[ivLen:ivLen+ctLen])
	}
	n := len(pt) - 1 - int(pt[len(pt)-1])
	if n < 0 {
		return nil, ErrPadLength
	}
	return pt[:n:n], nil
}

// ProtectFragments splits inner into IKE Fragment messages of at most
// maxLen octets each (the whole IKE message, without the UDP/IP headers or
// non-ESP marker; RFC 7383 §2.5.1 says how to choose it). The chunks are
// cut regardless of payload boundaries and each is encrypted on its own in
// an SKF payload; the first carries first as Next Payload, the others 0,
// and every header is hdr with Next Payload SKF and its own Length
// (RFC 7383 §2.5). The AAD or ICV covers the 8-octet SKF header.
func (c *SKCipher) ProtectFragments(hdr wire.Header, first wire.PayloadType, inner []byte, maxLen int, rand io.Reader) ([][]byte, error) {
	maxLen = min(maxLen, wire.MaxMessageLen)
	// Room per fragment for IV, chunk, Padding, Pad Length and ICV.
	room := maxLen - wire.HeaderLen - skfHeaderLen - c.encr.IVLen - c.icvLen()
	chunk := room - room%c.encr.BlockLen - 1
	if chunk < 1 {
		return nil, fmt.Errorf("ikecrypto: %d-octet fragments leave no room for content with %v", maxLen, c.encr)
	}
	n := max(1, (len(inner)+chunk-1)/chunk)
	if n > 0xffff {
		return nil, fmt.Errorf("ikecrypto: %d octets need %d fragments, more than Total Fragments can count", len(inner), n)
	}
	frags := make([][]byte, 0, n)
	for i := range n {
		part := inner[i*chunk : min((i+1)*chunk, len(inner))]
		next := wire.PayloadNone
		if i == 0 {
			next = first
		}
		var numbering [4]byte
		binary.BigEndian.PutUint16(numbering[0:], uint16(i+1))
		binary.BigEndian.PutUint16(numbering[2:], uint16(n))
		m, err := c.seal(hdr, wire.PayloadSKF, next, numbering[:], part, rand)
		if err != nil {
			return nil, err
		}
		frags = append(frags, m)
	}
	return frags, nil
}

// ErrFragmentNumber: an SKF payload whose Fragment Number is zero or
// exceeds its Total Fragments (RFC 7383 §2.6).
var ErrFragmentNumber = errors.New("ikecrypto: Fragment Number is zero or exceeds Total Fragments (RFC 7383 §2.6)")

// UnprotectFragment verifies and decrypts the SKF payload at skfOffset of
// one IKE Fragment message and returns its chunk of the original content.
// Zero or inconsistent fragment numbers are rejected (RFC 7383 §2.6); the
// caller reads the numbers from the payload to reassemble.
func (c *SKCipher) UnprotectFragment(msg []byte, skfOffset int) ([]byte, error) {
	return c.UnprotectFragmentTo(nil, msg, skfOffset)
}

// UnprotectFragmentTo is UnprotectFragment writing the chunk into dst's
// storage (from dst[:0]) when it is large enough, as UnprotectTo does for
// SK: a reassembler that reuses one scratch buffer pays no allocation for
// a forged fragment. It has UnprotectTo's concurrency rule.
func (c *SKCipher) UnprotectFragmentTo(dst, msg []byte, skfOffset int) ([]byte, error) {
	if skfOffset >= wire.HeaderLen && skfOffset <= len(msg)-skfHeaderLen {
		num := binary.BigEndian.Uint16(msg[skfOffset+4:])
		total := binary.BigEndian.Uint16(msg[skfOffset+6:])
		if num == 0 || num > total {
			return nil, ErrFragmentNumber
		}
	}
	return c.open(dst, msg, skfOffset, skfHeaderLen)
}
