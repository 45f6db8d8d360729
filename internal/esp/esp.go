// Package esp is the per-packet core of the userspace ESP data plane
// (RFC 4303): it seals inner packets into ESP packets and opens them again,
// with the anti-replay window of §3.4.3 and the extended sequence numbers
// of §2.2.1 and Appendix A.
//
// The package is pure: no sockets, no clock, no goroutines. An Outbound or
// Inbound keeps per-packet scratch state and is not safe for concurrent
// use; the data plane runtime serialises the calls for one SA direction
// (one goroutine, or a lock). Neither Seal nor Open allocates.
//
// Supported transforms are those of ikecrypto's algorithm table:
// ENCR_AES_GCM_16 and ENCR_AES_GCM_12 (RFC 4106), ENCR_CHACHA20_POLY1305
// (RFC 7634), and ENCR_AES_CBC (RFC 3602) with an HMAC integrity transform
// (RFC 2404, RFC 4868). Encryption without integrity is refused: anti-replay
// needs an authenticated sequence number (§3.4.3), and RFC 8221 §6 allows
// AUTH_NONE only with AEAD transforms.
package esp

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"sync/atomic"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// Errors returned by Seal and Open. They are plain sentinel values (never
// wrapped) so the caller can count drops by reason with ==.
var (
	// ErrShort: the packet is shorter than the SA's header, IV, ICV and
	// minimal trailer, or (CBC) its ciphertext is not a whole number of
	// cipher blocks.
	ErrShort = errors.New("esp: packet too short or misaligned")
	// ErrSPI: the packet's SPI is not this SA's.
	ErrSPI = errors.New("esp: SPI does not belong to this SA")
	// ErrReplay: the sequence number was already received or is left of
	// the anti-replay window (RFC 4303 §3.4.3).
	ErrReplay = errors.New("esp: replayed or too old sequence number")
	// ErrIntegrity: the ICV (or AEAD tag) does not verify.
	ErrIntegrity = errors.New("esp: integrity check failed")
	// ErrPadding: authentic packet whose Pad Length does not fit or whose
	// padding is not 1, 2, 3, ... (RFC 4303 §2.4).
	ErrPadding = errors.New("esp: invalid padding")
	// ErrDummy: authentic dummy packet, Next Header 59 (RFC 4303 §2.6); the
	// caller drops it silently.
	ErrDummy = errors.New("esp: dummy packet")
	// ErrSeqExhausted: sending would make the sequence number cycle
	// (RFC 4303 §3.3.3); the SA must be rekeyed.
	ErrSeqExhausted = errors.New("esp: sequence number exhausted, SA must be rekeyed")
	// ErrTooLong: payload plus TFC padding exceeds MaxPayload.
	ErrTooLong = errors.New("esp: payload too long")
)

const (
	// MaxPayload bounds len(payload)+tfcPad for Seal: an ESP packet must
	// fit an IP datagram.
	MaxPayload = 0xffff

	// DefaultReplayWindow is the inbound anti-replay window when
	// Config.ReplayWindow is 0. RFC 4303 §3.4.3 asks for at least 32 and
	// suggests larger windows for fast links.
	DefaultReplayWindow = 1024
	// MinReplayWindow and MaxReplayWindow bound Config.ReplayWindow; the
	// maximum keeps the bitmap at 128 KiB and far below the 2^31 that the
	// ESN inference of RFC 4303 Appendix A2 assumes.
	MinReplayWindow = 64
	MaxReplayWindow = 1 << 20

	// NextHeaderDummy marks a dummy packet (RFC 4303 §2.6).
	NextHeaderDummy = 59

	espHeaderLen = 8 // SPI | Sequence Number (RFC 4303 §2)
	trailerLen   = 2 // Pad Length | Next Header (RFC 4303 §2.5, §2.6)
	// minSPI: SPIs 1..255 are reserved and 0 is local-only (RFC 4303 §2.1).
	minSPI = 256
)

// Sequence number limits (RFC 4303 §2.2, §3.3.3). The counter must not
// cycle; the soft limits leave a quarter of the space for the rekey.
const (
	maxSeq32  = math.MaxUint32
	maxSeq64  = math.MaxUint64
	softSeq32 = 1<<32 - 1<<30
	softSeq64 = 1<<64 - 1<<62
)

// Config describes one direction of an ESP SA.
type Config struct {
	SPI     uint32
	Encr    wire.EncrID
	KeyBits int // Key Length attribute; 0 for ChaCha20-Poly1305
	// Integ is the integrity transform: an HMAC for AES-CBC, IntegNone
	// for the AEAD transforms.
	Integ wire.IntegID
	// EncKey is the encryption keying material as IKE's KEYMAT gives it:
	// for AEAD transforms the key followed by the 4-octet salt.
	EncKey   []byte
	IntegKey []byte // the HMAC key; nil for AEAD
	// ESN selects 64-bit extended sequence numbers (RFC 4303 §2.2.1).
	ESN bool
	// ReplayWindow is the inbound anti-replay window in packets: 0 for
	// DefaultReplayWindow, else a multiple of 64 from MinReplayWindow to
	// MaxReplayWindow. Outbound ignores it.
	ReplayWindow int
}

// suite is the cipher state shared by both directions.
type suite struct {
	spi    uint32
	esn    bool
	ivLen  int
	icvLen int
	hdrLen int // espHeaderLen + ivLen
	align  int // plaintext alignment, a power of two (RFC 4303 §2.4)

	// AEAD transforms: nonce = salt | IV (RFC 4106 §4, RFC 7634 §2).
	// The keyed context is made on the first packet and dropped when
	// the SA is idle (Idle), the key kept in aeadKey: Go's AES-GCM
	// context is about 750 octets (both key schedules and a GHASH
	// table), half a gateway's heap per idle Child SA, and keying it
	// again costs about a microsecond.
	aeadAlg *ikecrypto.EncrAlg
	aeadKey []byte // cipher key | salt, as the KEYMAT gives it
	aead    atomic.Pointer[aeadCtx]

	// CBC transforms with a separate HMAC.
	block cipher.Block
	hmac  *hmacState // nil for AEAD

	// own is the scratch of Seal and Open, which one goroutine at a time
	// calls; its nonce starts with the salt and its aad with the SPI,
	// written once at init (the concurrent SealSeq and OpenSeq copy them
	// into their caller's Scratch). The salt and SPI live only here, so
	// an SA costs no more than before the concurrent calls existed.
	own Scratch
}

// Scratch is one goroutine's per-packet working space for SealSeq and
// OpenSeq: the AEAD nonce and additional data. A data plane keeps one per
// worker goroutine, never one per SA: a gateway holds thousands of SAs,
// and only as many packets are being sealed at once as there are cores.
type Scratch struct {
	// nonce is salt | IV (RFC 4106 §4, RFC 7634 §2).
	nonce [12]byte
	// aad is SPI | Seq high | Seq low for AEAD with ESN (RFC 4106 §5,
	// RFC 7634 §2.1); for HMAC with ESN its bytes 4..8 are the high half
	// appended to the ICV input (RFC 4303 §2.2.1, §3.3.2.1).
	aad [12]byte
}

// scratch returns sc ready for s: the salt and SPI copied in, unless sc
// is s's own (where they already are).
func (s *suite) scratch(sc *Scratch) *Scratch {
	if sc != &s.own {
		copy(sc.nonce[:4], s.own.nonce[:4])
		copy(sc.aad[:4], s.own.aad[:4])
	}
	return sc
}

// Concurrent reports whether SealSeq (outbound) or OpenSeq (inbound) may
// run on several goroutines at once for this SA, each with its own
// Scratch: true for the AEAD transforms, whose cipher.AEAD is stateless.
// The CBC transforms keep their mode and HMAC state in the SA; their
// packets must be sealed and opened one at a time.
func (s *suite) Concurrent() bool { return s.aeadAlg != nil }

// aeadCtx boxes a keyed cipher.AEAD for an atomic.Pointer.
type aeadCtx struct{ cipher.AEAD }

// aeadNow is the SA's keyed AEAD, made now if Idle dropped it or no
// packet has used it yet. Concurrent callers may both make one; the
// first stored wins and the other is garbage (rare: the first packets
// after idle). A cipher.AEAD is safe for concurrent use, so a caller
// may go on with one that Idle has just dropped.
func (s *suite) aeadNow() cipher.AEAD {
	if c := s.aead.Load(); c != nil {
		return c.AEAD
	}
	a, _, err := s.aeadAlg.NewAEAD(s.aeadKey)
	if err != nil {
		// init keyed it with the same key and algorithm, and NewAEAD
		// fails only on lengths: not reachable from any packet.
		panic("esp: keying the AEAD again: " + err.Error())
	}
	c := &aeadCtx{a}
	if !s.aead.CompareAndSwap(nil, c) {
		return s.aead.Load().AEAD
	}
	return a
}

// Idle drops the SA's keyed AEAD context, keeping its key: the next
// packet keys it again (about a microsecond). A data plane calls it for
// an SA that has carried nothing for a while, so that idle SAs hold no
// key schedules; safe concurrently with sealing and opening. Nothing to
// drop for the CBC transforms, whose state is small.
func (s *suite) Idle() { s.aead.Store(nil) }

// Keyed reports whether the SA holds a keyed AEAD context now, which
// Idle would drop (never for CBC).
func (s *suite) Keyed() bool { return s.aead.Load() != nil }

// hmacState is a CBC suite's integrity transform and its output scratch,
// behind a pointer: an AEAD SA, nearly every one, does without its 80
// octets (a gateway holds two per client).
type hmacState struct {
	mac hash.Hash
	sum [64]byte
}

// init keys s for c, using ikecrypto's algorithm table for every length.
func (s *suite) init(c Config) error {
	if c.SPI < minSPI {
		return fmt.Errorf("esp: SPI %#x is reserved (RFC 4303 §2.1)", c.SPI)
	}
	encr, err := ikecrypto.LookupEncr(c.Encr, c.KeyBits)
	if err != nil {
		return fmt.Errorf("esp: %w", err)
	}
	s.spi, s.esn, s.ivLen = c.SPI, c.ESN, encr.IVLen
	s.hdrLen = espHeaderLen + s.ivLen
	// Pad Length and Next Header end on a 4-octet boundary (§2.4), and
	// CBC needs whole blocks; every BlockLen here is a power of two.
	s.align = max(encr.BlockLen, 4)
	binary.BigEndian.PutUint32(s.own.aad[:4], c.SPI)
	if encr.AEAD {
		// Combined mode: no separate integrity transform (RFC 4106 §1,
		// RFC 7634 §2, RFC 7296 §3.3).
		if c.Integ != wire.IntegNone {
			return fmt.Errorf("esp: %v is combined mode; integrity transform %v not allowed", encr, c.Integ)
		}
		// Keyed once here to check the key and learn the layout, then
		// dropped: an SA that never carries a packet (most of a
		// gateway's, at any moment) never holds a context.
		aead, salt, err := encr.NewAEAD(c.EncKey)
		if err != nil {
			return fmt.Errorf("esp: %w", err)
		}
		if aead.NonceSize() != len(s.own.nonce) || len(salt)+encr.IVLen != len(s.own.nonce) {
			return fmt.Errorf("esp: %v has an unexpected nonce layout", encr)
		}
		s.aeadAlg, s.aeadKey, s.icvLen = encr, bytes.Clone(c.EncKey), aead.Overhead()
		copy(s.own.nonce[:], salt)
		return nil
	}
	if c.Integ == wire.IntegNone {
		return fmt.Errorf("esp: %v needs an integrity transform", encr)
	}
	integ, err := ikecrypto.LookupInteg(c.Integ)
	if err != nil {
		return fmt.Errorf("esp: %w", err)
	}
	if len(c.IntegKey) != integ.KeyLen {
		return fmt.Errorf("esp: %v needs a %d-octet key, got %d", c.Integ, integ.KeyLen, len(c.IntegKey))
	}
	block, err := encr.NewBlock(c.EncKey)
	if err != nil {
		return fmt.Errorf("esp: %w", err)
	}
	if block.BlockSize() != encr.IVLen || encr.IVLen != encr.BlockLen {
		return fmt.Errorf("esp: %v has an unexpected block layout", encr)
	}
	s.block, s.hmac, s.icvLen = block, &hmacState{mac: integ.New(c.IntegKey)}, integ.ICVLen
	if s.icvLen > len(s.hmac.sum) || s.hmac.mac.Size() > len(s.hmac.sum) {
		return fmt.Errorf("esp: %v ICV too long", c.Integ)
	}
	return nil
}

// aad returns the AEAD additional data for the packet header hdr and the
// full sequence number seq: SPI | Seq (8 octets) from the packet itself,
// or SPI | Seq high | Seq low (12 octets) with ESN (RFC 4106 §5,
// RFC 7634 §2.1).
func (s *suite) aad(sc *Scratch, hdr []byte, seq uint64) []byte {
	if !s.esn {
		return hdr[:espHeaderLen]
	}
	binary.BigEndian.PutUint64(sc.aad[4:], seq)
	return sc.aad[:]
}

// icv computes the HMAC over the ESP packet minus the ICV, with the ESN
// high half appended but not sent (RFC 4303 §2.2.1, §3.3.2.1 step 4), and
// returns the truncated ICV (RFC 2404 §2, RFC 4868 §2.3) in s.hmac.sum.
func (s *suite) icv(authenticated []byte, seq uint64) []byte {
	h := s.hmac
	h.mac.Reset()
	h.mac.Write(authenticated)
	if s.esn {
		binary.BigEndian.PutUint32(s.own.aad[4:8], uint32(seq>>32))
		h.mac.Write(s.own.aad[4:8])
	}
	return h.mac.Sum(h.sum[:0])[:s.icvLen]
}

// ivSetter is the CBC BlockMode of crypto/cipher for AES, which can be
// re-IVed so that one BlockMode serves every packet without allocating.
type ivSetter interface {
	cipher.BlockMode
	SetIV(iv []byte)
}

// ParseSPI returns the SPI of an ESP packet: its first 4 octets. It
// reports false if pkt is shorter, or if the SPI is 0 (the non-ESP marker
// of UDP-encapsulated IKE, RFC 3948 §2.2, and never sent, RFC 4303 §2.1)
// or reserved (1..255, §2.1).
func ParseSPI(pkt []byte) (uint32, bool) {
	if len(pkt) < 4 {
		return 0, false
	}
	spi := binary.BigEndian.Uint32(pkt)
	return spi, spi >= minSPI
}

// TrimTFC strips TFC padding (RFC 4303 §2.7) from a tunnel-mode payload
// returned by Open: for an IPv4 (nh 4) or IPv6 (nh 41) packet it cuts the
// payload to the length its IP header gives. Other payloads, and IP
// headers that claim more than is there, are returned unchanged.
func TrimTFC(payload []byte, nh byte) []byte {
	var n, hdr int
	switch {
	case nh == 4 && len(payload) >= 20 && payload[0]>>4 == 4:
		n, hdr = int(binary.BigEndian.Uint16(payload[2:4])), 20
	case nh == 41 && len(payload) >= 40 && payload[0]>>4 == 6:
		n, hdr = 40+int(binary.BigEndian.Uint16(payload[4:6])), 40
	default:
		return payload
	}
	if n < hdr || n > len(payload) {
		return payload
	}
	return payload[:n]
}
