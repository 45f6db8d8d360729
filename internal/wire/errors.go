package wire

import "fmt"

// ParseError says what was wrong with a message and where.
type ParseError struct {
	Offset  int         // octet offset from the start of the IKE header
	Payload PayloadType // payload being decoded, PayloadNone for the header
	Reason  string
}

func (e *ParseError) Error() string {
	if e.Payload == PayloadNone {
		return fmt.Sprintf("ikev2: header at offset %d: %s", e.Offset, e.Reason)
	}
	return fmt.Sprintf("ikev2: %s payload at offset %d: %s", e.Payload, e.Offset, e.Reason)
}

func errAt(off int, p PayloadType, format string, args ...any) *ParseError {
	return &ParseError{Offset: off, Payload: p, Reason: fmt.Sprintf(format, args...)}
}

// UnsupportedCriticalError reports a payload of unknown type with the
// critical bit set. In a request the engine answers
// UNSUPPORTED_CRITICAL_PAYLOAD carrying Type (RFC 7296 §2.5).
type UnsupportedCriticalError struct {
	Offset int
	Type   PayloadType
}

func (e *UnsupportedCriticalError) Error() string {
	return fmt.Sprintf("ikev2: unsupported critical payload type %d at offset %d", uint8(e.Type), e.Offset)
}
