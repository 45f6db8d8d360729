package ike

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"

	"github.com/mifike/mifike/internal/wire"
)

// DropReason says why a received datagram was dropped. What cannot be
// authenticated, or belongs to no exchange, is dropped silently (RFC 7296
// §2.21): no answer, no state, and nothing allocated, so a flood of
// garbage or forgeries costs CPU but no memory. The reasons are values,
// not formatted errors, and are counted (Stats.DroppedBy); the debug log
// names them, built only when debug logging is on.
type DropReason uint8

const (
	DropNone DropReason = iota // not dropped
	// DropTruncated: larger than the driver's receive buffer. The engine
	// never sees such a datagram; drivers count it with this reason.
	DropTruncated
	// DropQueueFull: the driver's queue to the engine was full (a
	// flood); counted by the driver.
	DropQueueFull
	// DropNoMarker: on the NAT-T port, neither IKE behind its non-ESP
	// marker, ESP, nor a keepalive (RFC 3948 §2.2). The engine never
	// sees such a datagram: the transport sorts it out (conn.NoMarker)
	// and drivers count it with this reason.
	DropNoMarker
	DropShort         // shorter than the IKE header
	DropLength        // the header's Length disagrees with the datagram
	DropVersion       // IKE major version other than 2 (§2.5)
	DropMalformed     // badly framed or malformed payloads, header fields that break §3.1
	DropUnknownSPI    // no IKE SA has our SPI (§2.21.4 lets us answer INVALID_IKE_SPI; we do not)
	DropSPIMismatch   // the SPIs or the I flag do not match the IKE SA
	DropNoRequest     // a response to no outstanding request (§2.3)
	DropNotAuthed     // a request other than IKE_AUTH before IKE_AUTH completed
	DropWindow        // a request outside the window (§2.3)
	DropReusedID      // a request reusing an answered Message ID for another exchange
	DropIntegrity     // the ICV or AEAD tag does not verify (§2.21)
	DropNoEncrypted   // a message after IKE_SA_INIT without an Encrypted payload (§3.14)
	DropFragment      // an IKE fragment where fragmentation was not negotiated (RFC 7383 §2.4)
	DropNoKeys        // a protected message to an IKE SA without keys yet
	DropHalfOpenLimit // an IKE_SA_INIT request over the half-open or total limit
	DropSourceLimit   // an IKE_SA_INIT request from a source address at its half-open limit
	DropPrefixLimit   // an IKE_SA_INIT request from a prefix at its half-open limit
	DropInvalidKE     // a KE payload that is not a valid public value (RFC 6989 §2)
	DropLocalFailure  // this host could not go on (no randomness for a DH key)
	// DropBadSource: from UDP port 0, or from an address no answer can go
	// to (unspecified, multicast, IPv4 broadcast): only forged datagrams
	// come from there, and answering them failed in sendmsg or took a
	// half-open place for nothing.
	DropBadSource
	// DropFragmentRejected: an authentic-looking IKE fragment reassembly
	// refuses: a bad or duplicate number, a stale set, a fragment of a
	// request already answered other than the first (RFC 7383 §2.6,
	// §2.6.1).
	DropFragmentRejected
	// DropFragmentLimit: an IKE fragment over a reassembly limit (per
	// message, per IKE SA or in all, RFC 7383 §5).
	DropFragmentLimit
	// DropAwaitingBackend: a retransmitted IKE_AUTH request whose
	// answer waits for the EAP backend (a RADIUS server): it is asked
	// once, and its answer makes the response.
	DropAwaitingBackend
	// DropMIDSync: an RFC 6311 Message ID synchronisation request that
	// must be dropped silently: a replay (its sender's Message ID not
	// above what we have seen, §5.1), or with other payloads.
	DropMIDSync
	// DropRedirect: an IKE_SA_INIT response with a REDIRECT we cannot
	// take: its nonce data is not our Ni (RFC 5685 §3: "silently
	// discard", and keep waiting), it is malformed, or we did not
	// announce REDIRECT_SUPPORTED.
	DropRedirect
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNone:             "none",
	DropTruncated:        "truncated",
	DropQueueFull:        "queue-full",
	DropNoMarker:         "no-marker",
	DropShort:            "short",
	DropLength:           "length",
	DropVersion:          "version",
	DropMalformed:        "malformed",
	DropUnknownSPI:       "unknown-spi",
	DropSPIMismatch:      "spi-mismatch",
	DropNoRequest:        "no-request",
	DropNotAuthed:        "not-authenticated",
	DropWindow:           "window",
	DropReusedID:         "reused-id",
	DropMIDSync:          "message-id-sync",
	DropRedirect:         "redirect",
	DropIntegrity:        "integrity",
	DropNoEncrypted:      "no-encrypted",
	DropFragment:         "fragment",
	DropNoKeys:           "no-keys",
	DropHalfOpenLimit:    "half-open-limit",
	DropSourceLimit:      "source-limit",
	DropPrefixLimit:      "prefix-limit",
	DropInvalidKE:        "invalid-ke",
	DropLocalFailure:     "local-failure",
	DropBadSource:        "bad-source",
	DropFragmentRejected: "fragment-rejected",
	DropFragmentLimit:    "fragment-limit",
	DropAwaitingBackend:  "awaiting-backend",
}

// String is the reason's metric label value ("unknown-spi").
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "drop-" + strconv.Itoa(int(r))
}

// DropReasons lists every reason but DropNone, for drivers that count
// drops of their own under the engine's names.
func DropReasons() []DropReason {
	out := make([]DropReason, 0, numDropReasons-1)
	for r := DropNone + 1; r < numDropReasons; r++ {
		out = append(out, r)
	}
	return out
}

// dropped is what a drop's debug log says about the message; any field
// may be empty.
type dropped struct {
	sa   *ikeSA
	id   uint64 // the IKE SA's id when sa is nil (a half-open SA)
	from netip.AddrPort
	h    *wire.Header
}

// drop counts a dropped datagram; its log record is built only when
// debug logging is on, so a drop allocates nothing (issue 13).
func (e *Engine) drop(r DropReason, w dropped) {
	e.stats.Dropped++
	e.drops[r]++
	ctx := context.Background()
	if !e.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{slog.String("reason", r.String())}
	if w.sa != nil {
		w.id = w.sa.id
	}
	if w.id != 0 {
		attrs = append(attrs, slog.Uint64("ike", w.id))
	}
	if w.from.IsValid() {
		attrs = append(attrs, slog.String("from", w.from.String()))
	}
	if h := w.h; h != nil {
		attrs = append(attrs, slog.String("exchange", h.Exchange.String()), slog.Uint64("id", uint64(h.MessageID)),
			slog.String("spi_i", strconv.FormatUint(h.SPIi, 16)), slog.String("spi_r", strconv.FormatUint(h.SPIr, 16)))
		if r == DropWindow && w.sa != nil {
			attrs = append(attrs, slog.Uint64("expected", uint64(w.sa.expectReq)))
		}
	}
	e.log.LogAttrs(ctx, slog.LevelDebug, "dropped message", attrs...)
}

// inspected is a datagram that passed inspect: its IKE message (still
// in the driver's buffer), header, and where its Encrypted payload is.
type inspected struct {
	ike    []byte
	h      wire.Header
	sk     int
	skType wire.PayloadType
	// authentic: the message (its last fragment) passed the SA's
	// integrity check.
	authentic bool
}

// inspect makes the checks that need no state: the IKE header, the
// framing of the payload chain, and the header fields each kind of
// message must have. It allocates nothing.
func inspect(b []byte) (in inspected, r DropReason) {
	in.ike = b
	var hc wire.HeaderCheck
	in.h, hc = wire.DecodeHeader(b)
	switch hc {
	case wire.HeaderShort:
		return in, DropShort
	case wire.HeaderVersion:
		return in, DropVersion
	case wire.HeaderLength:
		return in, DropLength
	case wire.HeaderZeroSPI:
		return in, DropMalformed // §3.1: the initiator's SPI is never zero
	}
	var ok bool
	if in.sk, in.skType, ok = wire.ScanPayloads(b); !ok {
		return in, DropMalformed
	}
	h := &in.h
	switch {
	case h.Exchange == wire.IKESAInit:
		// IKE_SA_INIT is the one exchange in the clear (§1.2), Message
		// ID 0 (§2.2), and a request cannot know the responder's SPI
		// (§3.1).
		if in.skType != wire.PayloadNone || h.MessageID != 0 || (!h.IsResponse() && h.SPIr != 0) {
			return in, DropMalformed
		}
	case in.skType == wire.PayloadNone:
		return in, DropNoEncrypted
	}
	return in, DropNone
}

// badSource reports a source no IKE peer can have: no reply could reach
// it (RFC 7296 §2.11 answers where a request came from).
func badSource(a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	return a.Port() == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// answersVersion reports whether a datagram inspect dropped for its
// version gets INVALID_MAJOR_VERSION (§2.5): a request of a newer IKE
// framed like an IKE message. Garbage whose version nibble happens to be
// above 2 but whose Length disagrees is not answered: answering it would
// make us reflect random datagrams at spoofed sources.
func (in *inspected) answersVersion() bool {
	return in.h.MajorVersion > 2 && !in.h.IsResponse() && in.h.SPIi != 0 && uint64(in.h.Length) == uint64(len(in.ike))
}

// Precheck tells from one datagram alone whether Receive would drop it,
// and why: the checks of inspect, which need no engine state. A driver
// may run it where datagrams are read, before copying or queueing them,
// and count what fails under the reason (the engine does not see it).
// Receive makes the same checks again. data is the IKE message, as
// Datagram.Data: the transport already took off any non-ESP marker.
func Precheck(data []byte) DropReason {
	in, r := inspect(data)
	if r == DropVersion && in.answersVersion() {
		return DropNone // the engine answers it
	}
	return r
}
