package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"fmt"
)

// Inbound is the receiving direction of an ESP SA: the anti-replay window
// (RFC 4303 §3.4.3) and the cipher state. It is not safe for concurrent
// use.
type Inbound struct {
	suite
	cbc       ivSetter
	win       Window
	minCT     int // shortest ciphertext: the trailer (AEAD) or a block (CBC)
	blockMask int // CBC ciphertext is whole blocks
}

// NewInbound keys the receiving side of an SA.
func NewInbound(c Config) (*Inbound, error) {
	w := c.ReplayWindow
	if w == 0 {
		w = DefaultReplayWindow
	}
	if w < MinReplayWindow || w > MaxReplayWindow || w%64 != 0 {
		return nil, fmt.Errorf("esp: replay window %d is not a multiple of 64 in [%d, %d]",
			c.ReplayWindow, MinReplayWindow, MaxReplayWindow)
	}
	i := &Inbound{minCT: trailerLen}
	if err := i.suite.init(c); err != nil {
		return nil, err
	}
	i.win.init(w)
	if i.block != nil {
		var zero [aes.BlockSize]byte
		cbc, ok := cipher.NewCBCDecrypter(i.block, zero[:]).(ivSetter)
		if !ok {
			return nil, fmt.Errorf("esp: CBC mode cannot be re-IVed")
		}
		i.cbc, i.minCT, i.blockMask = cbc, aes.BlockSize, aes.BlockSize-1
	}
	return i, nil
}

// SPI returns the SA's SPI.
func (i *Inbound) SPI() uint32 { return i.spi }

// Window returns the SA's anti-replay window, for inspection.
func (i *Inbound) Window() *Window { return &i.win }

// Open verifies and decrypts the ESP packet pkt (from the SPI to the end
// of the ICV) in place and returns the payload, a subslice of pkt that
// still holds any TFC padding (see TrimTFC), and its Next Header.
//
// The checks follow RFC 4303 §3.4: length and SPI; the anti-replay window
// (§3.4.3, with the ESN high half inferred per Appendix A2.2); the ICV or
// AEAD tag, in constant time (§3.4.4); only then is the window updated;
// then CBC decryption and the padding, which must be 1, 2, 3, ... (§2.4);
// and Next Header 59, a dummy packet, gives ErrDummy (§2.6).
//
// Errors are the package's sentinel values. After an error, pkt's
// contents are unspecified.
func (i *Inbound) Open(pkt []byte) (payload []byte, nh byte, err error) {
	seq, err := i.Check(pkt)
	if err != nil {
		return nil, 0, err
	}
	payload, nh, err = i.OpenSeq(&i.own, pkt, seq)
	if Authentic(err) {
		i.win.Update(seq)
	}
	return payload, nh, err
}

// Check is the first half of Open: length, SPI, and the anti-replay
// window (RFC 4303 §3.4.3, with the ESN high half inferred per Appendix
// A2.2); it returns the packet's full sequence number for OpenSeq and
// Accept. It reads the window: one goroutine at a time, as Accept.
func (i *Inbound) Check(pkt []byte) (uint64, error) {
	if len(pkt) < espHeaderLen {
		return 0, ErrShort
	}
	if binary.BigEndian.Uint32(pkt) != i.spi {
		return 0, ErrSPI
	}
	ctEnd := len(pkt) - i.icvLen
	ctLen := ctEnd - i.hdrLen
	if ctLen < i.minCT || ctLen&i.blockMask != 0 {
		return 0, ErrShort
	}
	seql := binary.BigEndian.Uint32(pkt[4:8])
	seq := uint64(seql)
	if i.esn {
		seq = i.win.Infer(seql)
	}
	if !i.win.Check(seq) {
		return 0, ErrReplay
	}
	return seq, nil
}

// OpenSeq is the second half of Open for a packet Check passed with
// sequence number seq, with the per-packet scratch sc: the ICV, then
// decryption and the padding. It does not touch the window: when the
// packet is authentic (Authentic(err)), the caller must Accept(seq)
// before it uses the payload. When Concurrent reports true, OpenSeq may
// run on several goroutines at once, each with its own Scratch, and
// concurrently with Check and Accept.
func (i *Inbound) OpenSeq(sc *Scratch, pkt []byte, seq uint64) (payload []byte, nh byte, err error) {
	if len(pkt) < i.hdrLen+i.icvLen+i.minCT {
		return nil, 0, ErrShort
	}
	ctEnd := len(pkt) - i.icvLen
	ct := pkt[i.hdrLen:ctEnd]
	var pt []byte
	if i.aeadAlg != nil {
		// Combined mode: decryption and integrity check at once
		// (§3.4.4.2), with the inferred ESN in the AAD.
		sc = i.scratch(sc)
		copy(sc.nonce[4:], pkt[espHeaderLen:i.hdrLen])
		pt, err = i.aeadNow().Open(ct[:0], sc.nonce[:], pkt[i.hdrLen:], i.aad(sc, pkt, seq))
		if err != nil {
			return nil, 0, ErrIntegrity
		}
	} else {
		// Separate integrity: verify before decrypting (§3.4.4.1).
		if !hmac.Equal(i.icv(pkt[:ctEnd], seq), pkt[ctEnd:]) {
			return nil, 0, ErrIntegrity
		}
		i.cbc.SetIV(pkt[espHeaderLen:i.hdrLen])
		i.cbc.CryptBlocks(ct, ct)
		pt = ct
	}
	n := len(pt)
	pad, nh := int(pt[n-2]), pt[n-1]
	body := n - trailerLen - pad
	if body < 0 {
		return nil, 0, ErrPadding
	}
	for k, b := range pt[body : n-trailerLen] {
		if b != byte(k+1) {
			return nil, 0, ErrPadding
		}
	}
	if nh == NextHeaderDummy {
		return nil, nh, ErrDummy
	}
	return pt[:body], nh, nil
}

// Authentic reports whether OpenSeq's outcome err means the packet's ICV
// verified: nil, or the padding and dummy outcomes found after it. Only
// an authentic packet moves the window (RFC 4303 §3.4.3).
func Authentic(err error) bool { return err == nil || err == ErrPadding || err == ErrDummy }

// Accept updates the window with seq of an authentic packet (RFC 4303
// §3.4.3: only after the integrity check) and reports whether it was
// still new: between Check and Accept, other packets may have been
// accepted, a copy of this one among them. A false Accept is a replay;
// the caller drops the packet. One goroutine at a time, as Check.
func (i *Inbound) Accept(seq uint64) bool {
	if !i.win.Check(seq) {
		return false
	}
	i.win.Update(seq)
	return true
}
