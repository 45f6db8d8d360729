package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// CP is the Configuration payload (RFC 7296 §3.15).
type CP struct {
	CFGType    CFGType
	Attributes []CPAttribute
}

// CPAttribute is one configuration attribute (§3.15.1). An empty Value in a
// CFG_REQUEST asks the peer to assign one.
type CPAttribute struct {
	Type  CPAttrType
	Value []byte
}

func (c *CP) Type() PayloadType { return PayloadCP }

func (c *CP) appendBody(b []byte) ([]byte, error) {
	b = append(b, byte(c.CFGType), 0, 0, 0)
	for _, a := range c.Attributes {
		if a.Type&0x8000 != 0 {
			return nil, fmt.Errorf("attribute type %#x sets the reserved bit", uint16(a.Type))
		}
		if len(a.Value) > 0xffff {
			return nil, fmt.Errorf("attribute %s of %d octets", a.Type, len(a.Value))
		}
		if err := checkCPValue(a.Type, len(a.Value)); err != nil {
			return nil, err
		}
		b = binary.BigEndian.AppendUint16(b, uint16(a.Type))
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b, nil
}

// checkCPValue enforces the value lengths of §3.15.1's table; 0 is always
// allowed (a request for the attribute).
func checkCPValue(t CPAttrType, n int) error {
	var ok bool
	switch t {
	case CPInternalIP4Address, CPInternalIP4Netmask, CPInternalIP4DNS, CPInternalIP4NBNS, CPInternalIP4DHCP:
		ok = n == 0 || n == 4
	case CPInternalIP6Address, CPInternalIP6Subnet:
		ok = n == 0 || n == 17
	case CPInternalIP6DNS, CPInternalIP6DHCP:
		ok = n == 0 || n == 16
	case CPInternalIP4Subnet:
		ok = n == 0 || n == 8
	case CPSupportedAttributes:
		ok = n%2 == 0
	default:
		ok = true // APPLICATION_VERSION and unknown types: any length
	}
	if !ok {
		return fmt.Errorf("%s value of %d octets", t, n)
	}
	return nil
}

func parseCP(body []byte) (*CP, error) {
	if len(body) < 4 {
		return nil, bad(0, "CP body of %d octets is shorter than 4", len(body))
	}
	c := &CP{CFGType: CFGType(body[0])}
	off := 4
	for off < len(body) {
		if len(body)-off < 4 {
			return nil, bad(off, "attribute header needs 4 octets, %d left", len(body)-off)
		}
		// The R bit MUST be ignored on receipt (§3.15.1).
		t := CPAttrType(binary.BigEndian.Uint16(body[off:]) &^ 0x8000)
		n := int(binary.BigEndian.Uint16(body[off+2:]))
		if n > len(body)-off-4 {
			return nil, bad(off+2, "%s length %d runs past the payload", t, n)
		}
		if err := checkCPValue(t, n); err != nil {
			return nil, bad(off+2, "%v", err)
		}
		c.Attributes = append(c.Attributes, CPAttribute{Type: t, Value: body[off+4 : off+4+n]})
		off += 4 + n
	}
	return c, nil
}

// CPAddr makes an INTERNAL_IP4_ADDRESS/_DNS-style attribute of a 4-octet
// IPv4 address, or an IPv6 DNS/DHCP attribute of a 16-octet address.
func CPAddr(t CPAttrType, a netip.Addr) CPAttribute {
	return CPAttribute{Type: t, Value: a.Unmap().AsSlice()}
}

// CPPrefix6 makes an INTERNAL_IP6_ADDRESS or INTERNAL_IP6_SUBNET attribute:
// 16 octets of address and a prefix length.
func CPPrefix6(t CPAttrType, p netip.Prefix) CPAttribute {
	a := p.Addr().As16()
	return CPAttribute{Type: t, Value: append(a[:], byte(p.Bits()))}
}

// Addr decodes a 4- or 16-octet address value.
func (a CPAttribute) Addr() (netip.Addr, bool) {
	if len(a.Value) != 4 && len(a.Value) != 16 {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(a.Value)
	return ip, ok
}

// Prefix6 decodes a 17-octet IPv6 address-and-prefix value.
func (a CPAttribute) Prefix6() (netip.Prefix, bool) {
	if len(a.Value) != 17 || a.Value[16] > 128 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(netip.AddrFrom16([16]byte(a.Value[:16])), int(a.Value[16])), true
}
