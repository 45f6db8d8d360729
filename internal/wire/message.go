package wire

import "encoding/binary"

// Message is a decoded IKE message: the header and its payload chain. For a
// protected message the chain ends with *Encrypted or *EncryptedFragment,
// whose plaintext is decoded with ParsePayloads after ikecrypto verified and
// decrypted it.
type Message struct {
	Header
	Payloads []Payload
}

// ParseMessage decodes one IKE message (without the non-ESP marker of port
// 4500). It never panics and rejects anything structurally wrong with a
// *ParseError. A *VersionError means the major version is not 2. An
// *UnsupportedCriticalError is returned together with the fully decoded
// message so the engine can answer the request (RFC 7296 §2.5). Payload
// bodies alias b.
func ParseMessage(b []byte) (*Message, error) {
	if len(b) > MaxMessageLen {
		return nil, errAt(0, PayloadNone, "message of %d octets exceeds %d", len(b), MaxMessageLen)
	}
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	ps, critical, err := parseChain(h.NextPayload, b, HeaderLen, true)
	if err != nil {
		return nil, err
	}
	m := &Message{Header: h, Payloads: ps}
	if critical != nil {
		return m, critical
	}
	return m, nil
}

// ScanPayloads walks the generic payload headers of the message b, whose
// header DecodeHeader accepted, without decoding any payload body. It
// reports whether the chain is well framed as parseChain requires (every
// Payload Length within the message, at most MaxPayloads payloads,
// nothing after the last one, an SK or SKF payload only last: RFC 7296
// §3.2, §3.14) and returns the offset and type of the SK or SKF payload
// ending it, or 0 and PayloadNone when there is none. It allocates
// nothing, so a receiver can refuse a badly framed message, and find the
// Encrypted payload to verify, before it copies or decodes anything.
func ScanPayloads(b []byte) (skOffset int, sk PayloadType, ok bool) {
	if len(b) < HeaderLen || len(b) > MaxMessageLen {
		return 0, PayloadNone, false
	}
	next, off := PayloadType(b[16]), HeaderLen
	for n := 0; next != PayloadNone; n++ {
		if n == MaxPayloads || len(b)-off < genericLen {
			return 0, PayloadNone, false
		}
		plen := int(binary.BigEndian.Uint16(b[off+2:]))
		if plen < genericLen || plen > len(b)-off {
			return 0, PayloadNone, false
		}
		if next == PayloadSK || next == PayloadSKF {
			return off, next, off+plen == len(b)
		}
		next = PayloadType(b[off])
		off += plen
	}
	return 0, PayloadNone, off == len(b)
}

// Marshal encodes an unprotected message (IKE_SA_INIT, or an unprotected
// notify), setting the header's Next Payload and Length. Protected messages
// are built by ikecrypto from EncodePayloads' output.
func (m *Message) Marshal() ([]byte, error) {
	h := m.Header
	b := make([]byte, HeaderLen, 512)
	first, b, err := appendPayloads(b, m.Payloads)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageLen {
		return nil, errAt(0, PayloadNone, "encoded message of %d octets exceeds %d", len(b), MaxMessageLen)
	}
	h.NextPayload = first
	h.Length = uint32(len(b))
	if h.MajorVersion == 0 {
		h.MajorVersion = 2
	}
	h.AppendTo(b[:0])
	return b, nil
}

// Encrypted is the SK payload (RFC 7296 §3.14): First is the type of the
// first payload inside, Body is IV | ciphertext | ICV, Offset the position of
// its generic header in the message (the integrity check covers everything
// before the body).
type Encrypted struct {
	First  PayloadType
	Body   []byte
	Offset int
}

func (e *Encrypted) Type() PayloadType                   { return PayloadSK }
func (e *Encrypted) appendBody(b []byte) ([]byte, error) { return append(b, e.Body...), nil }

// EncryptedFragment is the SKF payload (RFC 7383 §2.5). First is non-zero
// only in fragment 1.
type EncryptedFragment struct {
	First  PayloadType
	Number uint16
	Total  uint16
	Body   []byte
	Offset int
}

func (e *EncryptedFragment) Type() PayloadType { return PayloadSKF }
func (e *EncryptedFragment) appendBody(b []byte) ([]byte, error) {
	b = append(b, byte(e.Number>>8), byte(e.Number), byte(e.Total>>8), byte(e.Total))
	return append(b, e.Body...), nil
}

// parseSKF checks the fragment numbering; RFC 7383 §2.6.1 says such
// fragments are silently discarded, which the engine does on this error.
func parseSKF(first PayloadType, body []byte, off int) (*EncryptedFragment, error) {
	if len(body) < 4 {
		return nil, bad(0, "SKF body of %d octets has no Fragment Number and Total Fragments", len(body))
	}
	f := &EncryptedFragment{
		First:  first,
		Number: uint16(body[0])<<8 | uint16(body[1]),
		Total:  uint16(body[2])<<8 | uint16(body[3]),
		Body:   body[4:],
		Offset: off,
	}
	switch {
	case f.Number == 0 || f.Total == 0:
		return nil, bad(0, "fragment number %d of %d: both must be at least 1", f.Number, f.Total)
	case f.Number > f.Total:
		return nil, bad(0, "fragment number %d exceeds total %d", f.Number, f.Total)
	case f.Number != 1 && first != PayloadNone:
		return nil, bad(0, "fragment %d names a first payload (%s); only fragment 1 may", f.Number, first)
	}
	return f, nil
}
