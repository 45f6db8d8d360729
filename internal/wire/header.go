package wire

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the length of the IKE header (RFC 7296 §3.1).
const HeaderLen = 28

// MaxMessageLen caps what we decode: an IKE message travels in one UDP
// datagram, so nothing larger can be legitimate.
const MaxMessageLen = 65535

// NonESPMarkerLen is the length of the four zero octets before an IKE
// message where it shares a UDP port with ESP (RFC 3948 §2.2; the same
// marker frames IKE on a TCP stream, RFC 9329 §3.1). The transport
// (internal/conn) writes and strips them; the engine counts them only
// in a datagram's size (RFC 7383 fragments).
const NonESPMarkerLen = 4

// Header is the IKE header (RFC 7296 §3.1). SPIs are big-endian on the wire.
type Header struct {
	SPIi, SPIr   uint64
	NextPayload  PayloadType
	MajorVersion uint8 // 2
	MinorVersion uint8 // 0; ignored on receipt (§2.5)
	Exchange     ExchangeType
	Flags        Flags
	MessageID    uint32
	Length       uint32 // whole message including header
}

// IsResponse reports whether the R flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// FromInitiator reports whether the I flag is set.
func (h *Header) FromInitiator() bool { return h.Flags&FlagInitiator != 0 }

// AppendTo appends the 28-octet header to b.
func (h *Header) AppendTo(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, h.SPIi)
	b = binary.BigEndian.AppendUint64(b, h.SPIr)
	b = append(b, byte(h.NextPayload), h.MajorVersion<<4|h.MinorVersion&0x0f, byte(h.Exchange), byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

// HeaderCheck is what DecodeHeader found wrong with an IKE header, as a
// value rather than an error: a receiver that drops what fails (RFC 7296
// §2.21) needs to know why, but not a formatted message it would throw
// away, so checking a datagram allocates nothing.
type HeaderCheck uint8

const (
	HeaderOK      HeaderCheck = iota
	HeaderShort               // fewer octets than the IKE header
	HeaderVersion             // major version other than 2
	HeaderLength              // the Length field disagrees with the datagram
	HeaderZeroSPI             // initiator's SPI zero (§3.1)
)

// DecodeHeader decodes the IKE header at the start of b and checks what
// the header itself can tell: size, major version, the Length field
// against len(b), a non-zero initiator SPI. It allocates nothing. On
// HeaderVersion the rest of the header is decoded but not checked.
func DecodeHeader(b []byte) (Header, HeaderCheck) {
	var h Header
	if len(b) < HeaderLen {
		return h, HeaderShort
	}
	h.SPIi = binary.BigEndian.Uint64(b[0:8])
	h.SPIr = binary.BigEndian.Uint64(b[8:16])
	h.NextPayload = PayloadType(b[16])
	h.MajorVersion = b[17] >> 4
	h.MinorVersion = b[17] & 0x0f
	h.Exchange = ExchangeType(b[18])
	h.Flags = Flags(b[19])
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	switch {
	case h.MajorVersion != 2:
		return h, HeaderVersion
	case uint64(h.Length) != uint64(len(b)):
		return h, HeaderLength
	case h.SPIi == 0:
		return h, HeaderZeroSPI
	}
	return h, HeaderOK
}

// ParseHeader is DecodeHeader with its findings as errors. Major versions
// above 2 are returned as *VersionError so the caller can answer
// INVALID_MAJOR_VERSION (§2.5).
func ParseHeader(b []byte) (Header, error) {
	h, c := DecodeHeader(b)
	switch c {
	case HeaderShort:
		return h, errAt(0, PayloadNone, "message of %d octets is shorter than the %d-octet IKE header", len(b), HeaderLen)
	case HeaderVersion:
		return h, &VersionError{Major: h.MajorVersion}
	case HeaderLength:
		return h, errAt(24, PayloadNone, "Length field says %d octets but the datagram holds %d", h.Length, len(b))
	case HeaderZeroSPI:
		// §3.1: the initiator's SPI MUST NOT be zero.
		return h, errAt(0, PayloadNone, "initiator SPI is zero")
	}
	return h, nil
}

// VersionError reports an IKE major version other than 2. Versions above 2
// get INVALID_MAJOR_VERSION; IKEv1 (major 1) is dropped.
type VersionError struct{ Major uint8 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("ikev2: unsupported IKE major version %d", e.Major)
}
