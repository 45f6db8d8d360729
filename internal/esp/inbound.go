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
	if len(pkt) < espHeaderLen {
		return nil, 0, ErrShort
	}
	if binary.BigEndian.Uint32(pkt) != i.spi {
		return nil, 0, ErrSPI
	}
	ctEnd := len(pkt) - i.icvLen
	ctLen := ctEnd - i.hdrLen
	if ctLen < i.minCT || ctLen&i.blockMask != 0 {
		return nil, 0, ErrShort
	}
	seql := binary.BigEndian.Uint32(pkt[4:8])
	seq := uint64(seql)
	if i.esn {
		seq = i.win.Infer(seql)
	}
	if !i.win.Check(seq) {
		return nil, 0, ErrReplay
	}
	ct := pkt[i.hdrLen:ctEnd]
	var pt []byte
	if i.aead != nil {
		// Combined mode: decryption and integrity check at once
		// (§3.4.4.2), with the inferred ESN in the AAD.
		copy(i.nonce[4:], pkt[espHeaderLen:i.hdrLen])
		pt, err = i.aead.Open(ct[:0], i.nonce[:], pkt[i.hdrLen:], i.aad(pkt, seq))
		if err != nil {
			return nil, 0, ErrIntegrity
		}
		i.win.Update(seq)
	} else {
		// Separate integrity: verify before decrypting (§3.4.4.1).
		if !hmac.Equal(i.icv(pkt[:ctEnd], seq), pkt[ctEnd:]) {
			return nil, 0, ErrIntegrity
		}
		i.win.Update(seq)
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
