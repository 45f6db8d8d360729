package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// TS is the Traffic Selector payload, TSi or TSr (RFC 7296 §3.13).
type TS struct {
	Responder bool // TSr when true
	Selectors []Selector
}

// Selector is one traffic selector (§3.13.1). Start and End are both IPv4
// for TS_IPV4_ADDR_RANGE and both IPv6 for TS_IPV6_ADDR_RANGE. Selectors of
// other types are kept undecoded in Raw so a narrowing engine can skip them.
type Selector struct {
	TSType     TSType
	IPProtocol uint8 // 0 = any
	StartPort  uint16
	EndPort    uint16
	Start, End netip.Addr
	Raw        []byte // selector body after the length field, for unknown types
}

const (
	tsHeaderLen = 4
	tsIPv4Len   = 16
	tsIPv6Len   = 40
)

func (t *TS) Type() PayloadType {
	if t.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}

func (t *TS) appendBody(b []byte) ([]byte, error) {
	if len(t.Selectors) == 0 || len(t.Selectors) > 255 {
		return nil, fmt.Errorf("%d traffic selectors, must be 1..255", len(t.Selectors))
	}
	b = append(b, byte(len(t.Selectors)), 0, 0, 0)
	for i, s := range t.Selectors {
		switch s.TSType {
		case TSIPv4AddrRange:
			if !s.Start.Is4() || !s.End.Is4() {
				return nil, fmt.Errorf("selector %d: IPv4 range with %v-%v", i, s.Start, s.End)
			}
			b = append(b, byte(s.TSType), s.IPProtocol, 0, tsIPv4Len)
		case TSIPv6AddrRange:
			if !s.Start.Is6() || !s.End.Is6() {
				return nil, fmt.Errorf("selector %d: IPv6 range with %v-%v", i, s.Start, s.End)
			}
			b = append(b, byte(s.TSType), s.IPProtocol, 0, tsIPv6Len)
		default:
			if len(s.Raw)+tsHeaderLen > 0xffff {
				return nil, fmt.Errorf("selector %d of %d octets", i, len(s.Raw))
			}
			b = append(b, byte(s.TSType), s.IPProtocol)
			b = binary.BigEndian.AppendUint16(b, uint16(tsHeaderLen+len(s.Raw)))
			b = append(b, s.Raw...)
			continue
		}
		b = binary.BigEndian.AppendUint16(b, s.StartPort)
		b = binary.BigEndian.AppendUint16(b, s.EndPort)
		if s.TSType == TSIPv4AddrRange {
			s4, e4 := s.Start.As4(), s.End.As4()
			b = append(append(b, s4[:]...), e4[:]...)
		} else {
			s16, e16 := s.Start.As16(), s.End.As16()
			b = append(append(b, s16[:]...), e16[:]...)
		}
	}
	return b, nil
}

func parseTS(responder bool, body []byte) (*TS, error) {
	if len(body) < tsHeaderLen {
		return nil, bad(0, "TS body of %d octets is shorter than 4", len(body))
	}
	n := int(body[0])
	if n == 0 {
		return nil, bad(0, "TS payload with zero selectors")
	}
	if n > (len(body)-tsHeaderLen)/tsHeaderLen {
		return nil, bad(0, "TS payload claims %d selectors in %d octets", n, len(body))
	}
	t := &TS{Responder: responder, Selectors: make([]Selector, 0, n)}
	off := tsHeaderLen
	for i := 0; i < n; i++ {
		if len(body)-off < tsHeaderLen {
			return nil, bad(off, "selector %d header needs 4 octets, %d left", i+1, len(body)-off)
		}
		s := Selector{TSType: TSType(body[off]), IPProtocol: body[off+1]}
		slen := int(binary.BigEndian.Uint16(body[off+2:]))
		if slen < tsHeaderLen || slen > len(body)-off {
			return nil, bad(off+2, "selector %d length %d outside 4..%d", i+1, slen, len(body)-off)
		}
		sb := body[off : off+slen]
		switch s.TSType {
		case TSIPv4AddrRange, TSIPv6AddrRange:
			want := tsIPv4Len
			if s.TSType == TSIPv6AddrRange {
				want = tsIPv6Len
			}
			if slen != want {
				return nil, bad(off+2, "%s selector of length %d, must be %d", s.TSType, slen, want)
			}
			s.StartPort = binary.BigEndian.Uint16(sb[4:])
			s.EndPort = binary.BigEndian.Uint16(sb[6:])
			alen := (want - 8) / 2
			s.Start, _ = netip.AddrFromSlice(sb[8 : 8+alen])
			s.End, _ = netip.AddrFromSlice(sb[8+alen:])
		default:
			s.Raw = sb[tsHeaderLen:]
		}
		t.Selectors = append(t.Selectors, s)
		off += slen
	}
	if off != len(body) {
		return nil, bad(off, "%d octets after the last selector", len(body)-off)
	}
	return t, nil
}

// PrefixSelector returns the selector covering prefix p for IP protocol
// proto (0 = any) and all ports.
func PrefixSelector(p netip.Prefix, proto uint8) Selector {
	p = p.Masked()
	start := p.Addr()
	end := lastAddr(p)
	t := TSIPv4AddrRange
	if start.Is6() {
		t = TSIPv6AddrRange
	}
	return Selector{TSType: t, IPProtocol: proto, StartPort: 0, EndPort: 0xffff, Start: start, End: end}
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range a {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= bits {
				a[i] |= 0x80 >> bit
			}
		}
	}
	end, _ := netip.AddrFromSlice(a)
	return end
}
