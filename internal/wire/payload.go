package wire

import (
	"encoding/binary"
	"fmt"
)

// Payload is one IKEv2 payload (RFC 7296 §3.2). Bodies decoded from a
// message alias the message's buffer: copy what you keep.
type Payload interface {
	// Type is the payload type announced in the previous Next Payload field.
	Type() PayloadType
	// appendBody appends the payload body (everything after the 4-octet
	// generic header) and reports invalid field values.
	appendBody(b []byte) ([]byte, error)
}

// Caps on what a peer can make us hold. A legitimate IKE_AUTH carries a few
// dozen payloads; a chain longer than this is an attack or a bug.
const (
	MaxPayloads = 256
	genericLen  = 4
	criticalBit = 0x80
)

// EncodePayloads encodes a payload chain and returns the type of its first
// payload, which goes into the preceding Next Payload field (the IKE header,
// or the SK payload for an encrypted chain).
func EncodePayloads(ps []Payload) (PayloadType, []byte, error) {
	return appendPayloads(nil, ps)
}

func appendPayloads(b []byte, ps []Payload) (PayloadType, []byte, error) {
	if len(ps) == 0 {
		return PayloadNone, b, nil
	}
	if len(ps) > MaxPayloads {
		return 0, nil, fmt.Errorf("ikev2: %d payloads exceed the cap of %d", len(ps), MaxPayloads)
	}
	for i, p := range ps {
		switch p.(type) {
		case *Encrypted, *EncryptedFragment:
			return 0, nil, fmt.Errorf("ikev2: %s payload cannot be encoded in a plain chain; use the SK protection in ikecrypto", p.Type())
		}
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		start := len(b)
		flags := byte(0)
		if u, ok := p.(*Unknown); ok && u.Critical {
			flags = criticalBit
		}
		b = append(b, byte(next), flags, 0, 0)
		var err error
		if b, err = p.appendBody(b); err != nil {
			return 0, nil, fmt.Errorf("ikev2: encoding %s payload: %w", p.Type(), err)
		}
		n := len(b) - start
		if n > 0xffff {
			return 0, nil, fmt.Errorf("ikev2: %s payload of %d octets exceeds 65535", p.Type(), n)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	}
	return ps[0].Type(), b, nil
}

// ParsePayloads decodes a payload chain that starts with a payload of type
// first, such as the plaintext of an SK payload. Offsets in errors count from
// the start of b. Unknown payloads without the critical bit are kept as
// *Unknown; an unknown critical payload makes the result carry an
// *UnsupportedCriticalError after the whole chain was checked (RFC 7296 §2.5).
// SK and SKF may not appear in such a chain (SK is never nested, §3.14).
func ParsePayloads(first PayloadType, b []byte) ([]Payload, error) {
	ps, critical, err := parseChain(first, b, 0, false)
	if err != nil {
		return nil, err
	}
	if critical != nil {
		return ps, critical
	}
	return ps, nil
}

// parseChain decodes payloads starting at b[off:]. When outer is true an SK
// or SKF payload may end the chain (it must be the last payload, §3.14).
func parseChain(next PayloadType, b []byte, off int, outer bool) ([]Payload, *UnsupportedCriticalError, error) {
	var (
		ps       []Payload
		critical *UnsupportedCriticalError
	)
	for next != PayloadNone {
		if len(ps) == MaxPayloads {
			return nil, nil, errAt(off, next, "more than %d payloads in one message", MaxPayloads)
		}
		if len(b)-off < genericLen {
			return nil, nil, errAt(off, next, "only %d octets left for a 4-octet generic payload header", len(b)-off)
		}
		hdrNext := PayloadType(b[off])
		isCritical := b[off+1]&criticalBit != 0
		plen := int(binary.BigEndian.Uint16(b[off+2:]))
		if plen < genericLen {
			return nil, nil, errAt(off, next, "payload length %d is shorter than the generic header", plen)
		}
		if plen > len(b)-off {
			return nil, nil, errAt(off, next, "payload length %d runs past the end of the message (%d octets left)", plen, len(b)-off)
		}
		body := b[off+genericLen : off+plen]
		var (
			p   Payload
			err error
		)
		switch next {
		case PayloadSK, PayloadSKF:
			if !outer {
				return nil, nil, errAt(off, next, "encrypted payload inside an encrypted payload")
			}
			if off+plen != len(b) {
				return nil, nil, errAt(off, next, "encrypted payload is not the last payload (%d octets follow)", len(b)-off-plen)
			}
			if next == PayloadSK {
				p = &Encrypted{First: hdrNext, Body: body, Offset: off}
			} else {
				p, err = parseSKF(hdrNext, body, off)
			}
			if err != nil {
				return nil, nil, wrapAt(err, off, next)
			}
			return append(ps, p), critical, nil
		default:
			p, err = parseBody(next, body)
			if err != nil {
				return nil, nil, wrapAt(err, off, next)
			}
			if u, ok := p.(*Unknown); ok {
				u.Critical = isCritical
				if isCritical && critical == nil {
					critical = &UnsupportedCriticalError{Offset: off, Type: next}
				}
			}
		}
		ps = append(ps, p)
		off += plen
		next = hdrNext
	}
	if off != len(b) {
		return nil, nil, errAt(off, PayloadNone, "%d octets of trailing data after the last payload", len(b)-off)
	}
	return ps, critical, nil
}

func parseBody(t PayloadType, body []byte) (Payload, error) {
	switch t {
	case PayloadSA:
		return parseSA(body)
	case PayloadKE:
		return parseKE(body)
	case PayloadIDi, PayloadIDr:
		return parseID(t == PayloadIDr, body)
	case PayloadCERT:
		return parseCert(body)
	case PayloadCERTREQ:
		return parseCertReq(body)
	case PayloadAUTH:
		return parseAuth(body)
	case PayloadNonce:
		return parseNonce(body)
	case PayloadNotify:
		return parseNotify(body)
	case PayloadDelete:
		return parseDelete(body)
	case PayloadVendor:
		return &VendorID{Data: body}, nil
	case PayloadTSi, PayloadTSr:
		return parseTS(t == PayloadTSr, body)
	case PayloadCP:
		return parseCP(body)
	case PayloadEAP:
		return parseEAP(body)
	case PayloadPS:
		return parsePuzzleSolution(body)
	}
	return &Unknown{PayloadType: t, Body: body}, nil
}

// bodyError is a problem found inside a payload body; wrapAt turns it into a
// ParseError with the payload's offset.
type bodyError struct {
	at     int // offset inside the body
	reason string
}

func (e *bodyError) Error() string { return e.reason }

func bad(at int, format string, args ...any) error {
	return &bodyError{at: at, reason: fmt.Sprintf(format, args...)}
}

func wrapAt(err error, off int, t PayloadType) error {
	if be, ok := err.(*bodyError); ok {
		return errAt(off+genericLen+be.at, t, "%s", be.reason)
	}
	return errAt(off, t, "%v", err)
}

// Unknown is a payload of a type this package does not decode. Non-critical
// unknown payloads are skipped by the engine (RFC 7296 §2.5).
type Unknown struct {
	PayloadType PayloadType
	Critical    bool
	Body        []byte
}

func (u *Unknown) Type() PayloadType                   { return u.PayloadType }
func (u *Unknown) appendBody(b []byte) ([]byte, error) { return append(b, u.Body...), nil }

// First returns the first payload of type T in ps.
func First[T Payload](ps []Payload) (T, bool) {
	for _, p := range ps {
		if t, ok := p.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// All returns every payload of type T in ps, in order.
func All[T Payload](ps []Payload) []T {
	var out []T
	for _, p := range ps {
		if t, ok := p.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
