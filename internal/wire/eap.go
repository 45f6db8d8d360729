package wire

import (
	"encoding/binary"
	"fmt"
)

// EAP is the EAP payload (RFC 7296 §3.16): one EAP message (RFC 3748 §4).
// MethodType and Data are present only in Requests and Responses.
type EAP struct {
	Code       EAPCode
	Identifier uint8
	MethodType uint8
	Data       []byte
}

func (e *EAP) Type() PayloadType { return PayloadEAP }

func (e *EAP) appendBody(b []byte) ([]byte, error) {
	switch e.Code {
	case EAPRequest, EAPResponse:
		n := 5 + len(e.Data)
		if n > 0xffff-genericLen {
			return nil, fmt.Errorf("EAP message of %d octets", n)
		}
		b = append(b, byte(e.Code), e.Identifier)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		return append(append(b, e.MethodType), e.Data...), nil
	case EAPSuccess, EAPFailure:
		if e.MethodType != 0 || len(e.Data) != 0 {
			return nil, fmt.Errorf("EAP %s carries no type or data", e.Code)
		}
		return append(b, byte(e.Code), e.Identifier, 0, 4), nil
	}
	return nil, fmt.Errorf("EAP code %d", e.Code)
}

func parseEAP(body []byte) (*EAP, error) {
	if len(body) < 4 {
		return nil, bad(0, "EAP message of %d octets is shorter than 4", len(body))
	}
	e := &EAP{Code: EAPCode(body[0]), Identifier: body[1]}
	if n := int(binary.BigEndian.Uint16(body[2:])); n != len(body) {
		return nil, bad(2, "EAP length %d disagrees with payload body of %d octets", n, len(body))
	}
	switch e.Code {
	case EAPRequest, EAPResponse:
		if len(body) < 5 {
			return nil, bad(4, "EAP %s without a type", e.Code)
		}
		e.MethodType = body[4]
		e.Data = body[5:]
	case EAPSuccess, EAPFailure:
		if len(body) != 4 {
			return nil, bad(2, "EAP %s of %d octets, must be 4", e.Code, len(body))
		}
	default:
		return nil, bad(0, "EAP code %d", body[0])
	}
	return e, nil
}
