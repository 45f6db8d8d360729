package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"

	"layeh.com/radius"
)

const (
	// MaxPacketLength is the largest RADIUS packet (RFC 2865 §3).
	MaxPacketLength = radius.MaxPacketLength

	headerLen     = 20 // Code, Identifier, Length, Authenticator (RFC 2865 §3)
	authOff       = 4  // where the Authenticator starts
	maxValueLen   = 253
	maLen         = 16 // Message-Authenticator value (RFC 3579 §3.2)
	typeMessageAu = 80 // Message-Authenticator (RFC 2869 §5.14)
)

// Why a reply was dropped. Errors returned by DecodeAccessReply and
// DecodeAccountingResponse wrap one of them; the client drops such a
// reply silently (RFC 2865 §3, RFC 3579 §3.2), counts it and keeps
// waiting for a valid one.
var (
	// ErrMalformed: too short, a Length outside 20..4096 or beyond the
	// datagram, an attribute overrunning the packet, an unexpected code,
	// an attribute of the wrong size.
	ErrMalformed = errors.New("radius: malformed reply")
	// ErrIdentifier: the reply answers another identifier than ours.
	ErrIdentifier = errors.New("radius: reply to another identifier")
	// ErrAuthenticator: the Response Authenticator is wrong (RFC 2865
	// §3), e.g. the server has another shared secret.
	ErrAuthenticator = errors.New("radius: bad Response Authenticator")
	// ErrMessageAuthenticator: missing, repeated or wrong Message-
	// Authenticator (RFC 3579 §3.2).
	ErrMessageAuthenticator = errors.New("radius: bad or missing Message-Authenticator")
)

// trimToLength checks the header of a received packet and returns it cut
// to its Length field: RFC 2865 §3 says a packet shorter than its Length
// is discarded and octets past the Length are padding, ignored.
func trimToLength(b []byte) ([]byte, error) {
	if len(b) < headerLen {
		return nil, fmt.Errorf("%w: %d octets, shorter than a header", ErrMalformed, len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < headerLen || n > MaxPacketLength {
		return nil, fmt.Errorf("%w: Length %d outside 20..4096", ErrMalformed, n)
	}
	if n > len(b) {
		return nil, fmt.Errorf("%w: Length %d beyond the %d octets received", ErrMalformed, n, len(b))
	}
	return b[:n], nil
}

// responseAuthenticator is MD5(Code+Identifier+Length+RequestAuth+
// Attributes+Secret), the Response Authenticator of RFC 2865 §3 and RFC
// 2866 §3. pkt is the reply as received, reqAuth the authenticator of the
// request it answers.
func responseAuthenticator(pkt, reqAuth, secret []byte) []byte {
	h := md5.New()
	h.Write(pkt[:authOff])
	h.Write(reqAuth)
	h.Write(pkt[headerLen:])
	h.Write(secret)
	return h.Sum(nil)
}

// walkAttributes calls f with the type, value offset (in pkt) and value
// length of every attribute of pkt, after checking that each lies inside
// the packet (RFC 2865 §5: Length ≥ 2).
func walkAttributes(pkt []byte, f func(typ byte, off, n int)) error {
	for i := headerLen; i < len(pkt); {
		if len(pkt)-i < 2 {
			return fmt.Errorf("%w: truncated attribute header at %d", ErrMalformed, i)
		}
		l := int(pkt[i+1])
		if l < 2 || l > len(pkt)-i {
			return fmt.Errorf("%w: attribute %d at %d has Length %d", ErrMalformed, pkt[i], i, l)
		}
		f(pkt[i], i+2, l-2)
		i += l
	}
	return nil
}

// findMessageAuthenticator returns the offset of the one Message-
// Authenticator value in pkt, or -1 if there is none. More than one, or
// one whose value is not 16 octets, is an error (RFC 2869 §5.14, RFC
// 3579 §3.2: "0-1" in the attribute tables).
func findMessageAuthenticator(pkt []byte) (int, error) {
	off, count, badLen := -1, 0, false
	err := walkAttributes(pkt, func(typ byte, o, n int) {
		if typ == typeMessageAu {
			count++
			off = o
			badLen = badLen || n != maLen
		}
	})
	switch {
	case err != nil:
		return -1, err
	case count > 1:
		return -1, fmt.Errorf("%w: %d of them", ErrMessageAuthenticator, count)
	case badLen:
		return -1, fmt.Errorf("%w: not 16 octets", ErrMessageAuthenticator)
	}
	return off, nil
}

// messageAuthenticator is the HMAC-MD5 of RFC 3579 §3.2 (RFC 2869
// §5.14) over pkt, keyed with the secret, computed as if the Message-
// Authenticator value at maOff were 16 zero octets and the Authenticator
// field held auth: for a request its own authenticator, for a reply the
// Request Authenticator of the request it answers. layeh.com/radius does
// not implement it, hence this.
func messageAuthenticator(pkt []byte, auth []byte, maOff int, secret []byte) []byte {
	var zero [maLen]byte
	h := hmac.New(md5.New, secret)
	h.Write(pkt[:authOff])
	h.Write(auth)
	h.Write(pkt[headerLen:maOff])
	h.Write(zero[:])
	h.Write(pkt[maOff+maLen:])
	return h.Sum(nil)
}

// verifyReply runs the checks every reply gets, in the order that costs
// an attacker most: header, identifier, Response Authenticator, and, for
// Access replies (withMA), the Message-Authenticator. Both authenticators
// are compared in constant time. It returns the reply cut to its Length.
//
// Every Access request of ours carries an EAP-Message, so RFC 3579 §3.2
// requires a Message-Authenticator in every Access-Accept, -Reject and
// -Challenge answering it; requiring it is also what defeats forged
// Access-Rejects and Accepts built by MD5 collision on the Response
// Authenticator alone ("Blast-RADIUS").
func verifyReply(b, request, secret []byte, withMA bool) ([]byte, error) {
	pkt, err := trimToLength(b)
	if err != nil {
		return nil, err
	}
	if len(request) < headerLen {
		return nil, errors.New("radius: request shorter than a header")
	}
	if pkt[1] != request[1] {
		return nil, fmt.Errorf("%w: %d, not %d", ErrIdentifier, pkt[1], request[1])
	}
	reqAuth := request[authOff:headerLen]
	if !hmac.Equal(responseAuthenticator(pkt, reqAuth, secret), pkt[authOff:headerLen]) {
		return nil, ErrAuthenticator
	}
	if !withMA {
		if err := walkAttributes(pkt, func(byte, int, int) {}); err != nil {
			return nil, err
		}
		return pkt, nil
	}
	off, err := findMessageAuthenticator(pkt)
	if err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("%w: none in a reply to an EAP request", ErrMessageAuthenticator)
	}
	if !hmac.Equal(messageAuthenticator(pkt, reqAuth, off, secret), pkt[off:off+maLen]) {
		return nil, ErrMessageAuthenticator
	}
	return pkt, nil
}
