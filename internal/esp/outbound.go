package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Outbound is the sending direction of an ESP SA: the sequence number
// counter (RFC 4303 §3.3.3) and the cipher state. It is not safe for
// concurrent use.
type Outbound struct {
	suite
	seq     uint64 // last sequence number sent, 0 before the first
	maxSeq  uint64
	softSeq uint64

	// CBC IVs must be unpredictable (RFC 3602 §3). They are the AES
	// encryption, under a separate random key drawn from crypto/rand at
	// creation, of a per-SA 64-bit counter: the "encrypt a nonce" method
	// of NIST SP 800-38A Appendix C, costing one block operation per
	// packet and no system calls.
	// They are behind a pointer, which an AEAD SA does without.
	cbc *cbcIVs

	testIV []byte // tests only: use this IV instead of the generated one
}

// cbcIVs are an Outbound's CBC mode and IV generator.
type cbcIVs struct {
	mode  ivSetter
	ivGen cipher.Block
	ivCtr uint64
	ivIn  [aes.BlockSize]byte
}

// NewOutbound keys the sending side of an SA.
func NewOutbound(c Config) (*Outbound, error) {
	o := &Outbound{maxSeq: maxSeq32, softSeq: softSeq32}
	if err := o.suite.init(c); err != nil {
		return nil, err
	}
	if c.ESN {
		o.maxSeq, o.softSeq = maxSeq64, softSeq64
	}
	if o.block != nil {
		var key [16]byte
		if _, err := rand.Read(key[:]); err != nil {
			return nil, fmt.Errorf("esp: IV key: %w", err)
		}
		gen, err := aes.NewCipher(key[:])
		if err != nil {
			return nil, fmt.Errorf("esp: IV key: %w", err)
		}
		var zero [aes.BlockSize]byte
		cbc, ok := cipher.NewCBCEncrypter(o.block, zero[:]).(ivSetter)
		if !ok {
			return nil, fmt.Errorf("esp: CBC mode cannot be re-IVed")
		}
		o.cbc = &cbcIVs{mode: cbc, ivGen: gen}
	}
	return o, nil
}

// SPI returns the SA's SPI.
func (o *Outbound) SPI() uint32 { return o.spi }

// Seq returns the sequence number of the last packet sealed (0 before the
// first; the first packet carries 1, RFC 4303 §3.3.3).
func (o *Outbound) Seq() uint64 { return o.seq }

// SoftLimit reports that three quarters of the sequence number space is
// used (2^32 - 2^30 packets without ESN, 2^64 - 2^62 with), so the caller
// should rekey the Child SA before Seal returns ErrSeqExhausted.
func (o *Outbound) SoftLimit() bool { return o.seq >= o.softSeq }

// HeaderLen is the length of SPI, Sequence Number and IV: the offset at
// which Seal puts the payload, for sealing in place.
func (o *Outbound) HeaderLen() int { return o.hdrLen }

// Overhead returns how many octets Seal adds to a payload of payloadLen
// octets: header, IV, padding, Pad Length, Next Header and ICV. With TFC
// padding, pass len(payload)+tfcPad; the ESP packet is then
// len(payload) + tfcPad + Overhead(len(payload)+tfcPad) octets.
func (o *Outbound) Overhead(payloadLen int) int {
	payloadLen = max(payloadLen, 0)
	return o.hdrLen + padLen(payloadLen, o.align) + trailerLen + o.icvLen
}

// MaxOverhead is the largest Overhead for any payload length, for MTU
// computations.
func (o *Outbound) MaxOverhead() int {
	return o.hdrLen + o.align - 1 + trailerLen + o.icvLen
}

// padLen is the minimal padding that aligns body | Pad Length | Next
// Header to align, a power of two (RFC 4303 §2.4, RFC 4106 §3.2).
func padLen(body, align int) int { return -(body + trailerLen) & (align - 1) }

// Seal appends to dst the ESP packet SPI | Seq | IV | encrypted(payload |
// TFC padding | padding | Pad Length | Next Header) | ICV (RFC 4303 §2)
// for payload with next header nh (4 for IPv4 and 41 for IPv6 in tunnel
// mode, 59 for a dummy packet) and returns the extended slice.
//
// tfcPad zero octets of TFC padding (§2.7) follow the payload; a negative
// tfcPad counts as 0. The padding is the minimum the cipher needs (§2.4).
//
// Seal does not allocate when cap(dst)-len(dst) is at least the packet
// length (see Overhead). payload may overlap dst's spare capacity; to seal
// in place, place the payload at offset HeaderLen() of the packet's
// storage: Seal(buf[:0], buf[h:h+n], ...) with h = HeaderLen().
//
// Seal fails with ErrSeqExhausted, leaving everything unchanged, once the
// sequence number would cycle (§3.3.3).
func (o *Outbound) Seal(dst, payload []byte, nh byte, tfcPad int) ([]byte, error) {
	if err := checkLen(payload, tfcPad); err != nil {
		return dst, err
	}
	seq, err := o.Next()
	if err != nil {
		return dst, err
	}
	return o.seal(&o.own, dst, payload, nh, tfcPad, seq), nil
}

// Next assigns the next sequence number (RFC 4303 §3.3.3: the counter
// is incremented for every packet, in the order the packets are sent),
// for a SealSeq that may run later on another goroutine. It fails with
// ErrSeqExhausted, assigning nothing, once the number would cycle. Like
// Seal it is for one goroutine at a time.
func (o *Outbound) Next() (uint64, error) {
	if o.seq >= o.maxSeq {
		return 0, ErrSeqExhausted
	}
	o.seq++
	return o.seq, nil
}

// SealSeq is Seal with the sequence number seq from Next and the
// per-packet scratch sc. When Concurrent reports true, SealSeq may run
// on several goroutines at once (each with its own Scratch, each with
// its own seq), and concurrently with Next: so a data plane numbers its
// packets in order on one goroutine and seals them on every core.
func (o *Outbound) SealSeq(sc *Scratch, dst, payload []byte, nh byte, tfcPad int, seq uint64) ([]byte, error) {
	if err := checkLen(payload, tfcPad); err != nil {
		return dst, err
	}
	return o.seal(sc, dst, payload, nh, tfcPad, seq), nil
}

func checkLen(payload []byte, tfcPad int) error {
	if len(payload) > MaxPayload || tfcPad > MaxPayload-len(payload) {
		return ErrTooLong
	}
	return nil
}

func (o *Outbound) seal(sc *Scratch, dst, payload []byte, nh byte, tfcPad int, seq uint64) []byte {
	tfcPad = max(tfcPad, 0)
	body := len(payload) + tfcPad
	pad := padLen(body, o.align)
	ptLen := body + pad + trailerLen
	ret, out := sliceForAppend(dst, o.hdrLen+ptLen+o.icvLen)
	pt := out[o.hdrLen : o.hdrLen+ptLen]
	if len(payload) > 0 && &pt[0] != &payload[0] {
		copy(pt, payload) // a memmove: any overlap is fine
	}
	trailer := pt[len(payload):]
	clear(trailer[:tfcPad])
	trailer = trailer[tfcPad:]
	for k := range pad {
		trailer[k] = byte(k + 1) // §2.4: 1, 2, 3, ...
	}
	trailer[pad] = byte(pad)
	trailer[pad+1] = nh
	o.protect(o.scratch(sc), out, seq)
	return ret
}

// protect fills in header and IV of out (header | IV | plaintext | room
// for the ICV), encrypts the plaintext in place and writes the ICV.
func (o *Outbound) protect(sc *Scratch, out []byte, seq uint64) {
	binary.BigEndian.PutUint32(out[0:4], o.spi)
	binary.BigEndian.PutUint32(out[4:8], uint32(seq)) // low half only (§2.2.1)
	iv := out[espHeaderLen:o.hdrLen]
	ptEnd := len(out) - o.icvLen
	pt := out[o.hdrLen:ptEnd]
	if o.aeadAlg != nil {
		// The IV only has to be unique per key (RFC 4106 §3.1, RFC 7634
		// §2): the 64-bit sequence number, which never cycles.
		if o.testIV != nil {
			copy(iv, o.testIV)
		} else {
			binary.BigEndian.PutUint64(iv, seq)
		}
		copy(sc.nonce[4:], iv)
		o.aeadNow().Seal(pt[:0], sc.nonce[:], pt, o.aad(sc, out, seq))
		return
	}
	if o.testIV != nil {
		copy(iv, o.testIV)
	} else {
		g := o.cbc
		g.ivCtr++
		binary.LittleEndian.PutUint64(g.ivIn[:], g.ivCtr)
		g.ivGen.Encrypt(iv, g.ivIn[:])
	}
	// Encrypt, then MAC over SPI | Seq | IV | ciphertext (§3.3.2.1).
	o.cbc.mode.SetIV(iv)
	o.cbc.mode.CryptBlocks(pt, pt)
	copy(out[ptEnd:], o.icv(out[:ptEnd], seq))
}

// sliceForAppend extends in by n octets, reusing its capacity when it can,
// and returns the whole slice and the new tail.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}
