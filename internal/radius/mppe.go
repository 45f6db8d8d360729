package radius

import (
	"fmt"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
)

// Microsoft's vendor id and the MPPE key attributes (RFC 2548 §2.4.2,
// §2.4.3).
const (
	vendorMicrosoft = 311
	mppeSendKey     = 16
	mppeRecvKey     = 17
)

// microsoftVSA returns the value of the first Microsoft vendor attribute
// of type typ in p (RFC 2865 §5.26 with RFC 2548's layout: Vendor-Type,
// Vendor-Length, value). A sub-attribute overrunning its Vendor-Specific
// ends the search of that attribute.
func microsoftVSA(p *radius.Packet, typ byte) ([]byte, bool) {
	for _, avp := range p.Attributes {
		if avp.Type != rfc2865.VendorSpecific_Type {
			continue
		}
		vendor, vsa, err := radius.VendorSpecific(avp.Attribute)
		if err != nil || vendor != vendorMicrosoft {
			continue
		}
		for len(vsa) >= 2 {
			l := int(vsa[1])
			if l < 2 || l > len(vsa) {
				break
			}
			if vsa[0] == typ {
				return vsa[2:l], true
			}
			vsa = vsa[l:]
		}
	}
	return nil, false
}

// DecryptMPPEKey decrypts the value of an MS-MPPE-Send-Key or -Recv-Key
// attribute (Salt, then the encrypted Key-Length, Key and padding; RFC
// 2548 §2.4.2) with the shared secret and the Request Authenticator of
// the Access-Request it answers. The cipher is the one of Tunnel-
// Password (RFC 2868 §3.5), which layeh.com/radius implements; this adds
// the RFC 2548 checks: a key of at least one octet. The result is a new
// slice.
func DecryptMPPEKey(value, requestAuthenticator, secret []byte) ([]byte, error) {
	// RFC 2548 §2.4.2: Salt (2) and at least one 16-octet block.
	if len(value) < 2+16 || (len(value)-2)%16 != 0 {
		return nil, fmt.Errorf("%w: MS-MPPE key of %d octets", ErrMalformed, len(value))
	}
	key, _, err := radius.TunnelPassword(value, secret, requestAuthenticator)
	if err != nil {
		return nil, fmt.Errorf("%w: MS-MPPE key: %v", ErrMalformed, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: MS-MPPE key of length 0", ErrMalformed)
	}
	return append([]byte(nil), key...), nil
}
