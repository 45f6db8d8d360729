package eap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Code is the Code field of an EAP packet (RFC 3748 §4).
type Code uint8

const (
	CodeRequest  Code = 1
	CodeResponse Code = 2
	CodeSuccess  Code = 3
	CodeFailure  Code = 4
)

func (c Code) String() string {
	switch c {
	case CodeRequest:
		return "Request"
	case CodeResponse:
		return "Response"
	case CodeSuccess:
		return "Success"
	case CodeFailure:
		return "Failure"
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// Type is the Type field of an EAP Request or Response (RFC 3748 §5, IANA
// "Method Types").
type Type uint8

const (
	TypeIdentity     Type = 1   // RFC 3748 §5.1
	TypeNotification Type = 2   // RFC 3748 §5.2
	TypeNak          Type = 3   // RFC 3748 §5.3.1, legacy Nak
	TypeMD5Challenge Type = 4   // RFC 3748 §5.4
	TypeTLS          Type = 13  // RFC 5216
	TypeTTLS         Type = 21  // RFC 5281
	TypeMSCHAPv2     Type = 26  // draft-kamath-pppext-eap-mschapv2
	TypeExpanded     Type = 254 // RFC 3748 §5.7
)

func (t Type) String() string {
	switch t {
	case TypeIdentity:
		return "Identity"
	case TypeNotification:
		return "Notification"
	case TypeNak:
		return "Nak"
	case TypeMD5Challenge:
		return "MD5-Challenge"
	case TypeTLS:
		return "EAP-TLS"
	case TypeTTLS:
		return "EAP-TTLS"
	case TypeMSCHAPv2:
		return "EAP-MSCHAPv2"
	case TypeExpanded:
		return "Expanded"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

const (
	headerLen = 4 // Code, Identifier, Length
	// MaxPacketLen is the most the 16-bit Length field can say.
	MaxPacketLen = 0xffff
	// expandedHeaderLen is Type, Vendor-Id and Vendor-Type (RFC 3748 §5.7).
	expandedHeaderLen = 1 + 3 + 4
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("eap: malformed packet")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Packet is one EAP packet (RFC 3748 §4). Type and Data are present only in
// Requests and Responses; Data is the Type-Data, everything after the Type
// octet. A parsed Packet's Data aliases the parsed buffer.
type Packet struct {
	Code       Code
	Identifier uint8
	Type       Type
	Data       []byte
}

// Parse decodes one EAP packet. Octets beyond the Length field are
// data-link padding and ignored (RFC 3748 §4); a Length larger than the
// buffer, or smaller than the code requires, is an error.
func Parse(b []byte) (*Packet, error) {
	if len(b) < headerLen {
		return nil, malformed("%d octets, shorter than the 4-octet header", len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < headerLen {
		return nil, malformed("Length %d is shorter than the header", n)
	}
	if n > len(b) {
		return nil, malformed("Length %d exceeds the %d octets received", n, len(b))
	}
	b = b[:n]
	p := &Packet{Code: Code(b[0]), Identifier: b[1]}
	switch p.Code {
	case CodeRequest, CodeResponse:
		if n < headerLen+1 {
			return nil, malformed("%s without a Type", p.Code)
		}
		p.Type = Type(b[4])
		p.Data = b[5:]
		if p.Type == TypeExpanded {
			if _, err := ParseExpanded(p.Data); err != nil {
				return nil, err
			}
		}
	case CodeSuccess, CodeFailure:
		// RFC 3748 §4.2: Success and Failure are exactly 4 octets.
		if n != headerLen {
			return nil, malformed("%s of Length %d, must be 4", p.Code, n)
		}
	default:
		// RFC 3748 §4: unknown Codes are silently discarded; to the
		// caller that is an error to drop the packet on.
		return nil, malformed("unknown Code %d", b[0])
	}
	return p, nil
}

// Len is the packet's encoded length.
func (p *Packet) Len() int {
	if p.Code == CodeRequest || p.Code == CodeResponse {
		return headerLen + 1 + len(p.Data)
	}
	return headerLen
}

// Append appends the encoded packet to b.
func (p *Packet) Append(b []byte) ([]byte, error) {
	switch p.Code {
	case CodeRequest, CodeResponse:
		n := p.Len()
		if n > MaxPacketLen {
			return nil, fmt.Errorf("eap: %s of %d octets exceeds the 16-bit Length", p.Code, n)
		}
		b = append(b, byte(p.Code), p.Identifier)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = append(b, byte(p.Type))
		return append(b, p.Data...), nil
	case CodeSuccess, CodeFailure:
		if p.Type != 0 || len(p.Data) != 0 {
			return nil, fmt.Errorf("eap: %s carries no Type or data", p.Code)
		}
		return append(b, byte(p.Code), p.Identifier, 0, headerLen), nil
	}
	return nil, fmt.Errorf("eap: cannot encode %s", p.Code)
}

// Marshal encodes the packet.
func (p *Packet) Marshal() ([]byte, error) { return p.Append(make([]byte, 0, p.Len())) }

// Expanded is the Type-Data of an Expanded Type packet (RFC 3748 §5.7):
// a 24-bit Vendor-Id, a 32-bit Vendor-Type and the Vendor-Data.
type Expanded struct {
	VendorID   uint32
	VendorType uint32
	Data       []byte
}

// ParseExpanded decodes the Type-Data of a Type 254 packet.
func ParseExpanded(data []byte) (Expanded, error) {
	if len(data) < expandedHeaderLen-1 {
		return Expanded{}, malformed("Expanded Type-Data of %d octets, needs 7", len(data))
	}
	return Expanded{
		VendorID:   uint32(data[0])<<16 | uint32(data[1])<<8 | uint32(data[2]),
		VendorType: binary.BigEndian.Uint32(data[3:7]),
		Data:       data[7:],
	}, nil
}

// Append appends the Expanded Type-Data to b.
func (e Expanded) Append(b []byte) []byte {
	b = append(b, byte(e.VendorID>>16), byte(e.VendorID>>8), byte(e.VendorID))
	b = binary.BigEndian.AppendUint32(b, e.VendorType)
	return append(b, e.Data...)
}

// nakData is the Type-Data of a legacy Nak (RFC 3748 §5.3.1): the desired
// authentication Types, one octet each, or a single zero for "none".
func nakData(types []Type) []byte {
	if len(types) == 0 {
		return []byte{0}
	}
	b := make([]byte, len(types))
	for i, t := range types {
		b[i] = byte(t)
	}
	return b
}

// parseNak decodes the Type-Data of a legacy Nak; zero octets (no
// alternative) are dropped.
func parseNak(data []byte) ([]Type, error) {
	if len(data) == 0 {
		return nil, malformed("Nak without Type-Data")
	}
	var types []Type
	for _, b := range data {
		if b != 0 {
			types = append(types, Type(b))
		}
	}
	return types, nil
}
