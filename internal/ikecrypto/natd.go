package ikecrypto

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
)

// NATDetectionHash returns the data of a NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP notify (RFC 7296 §2.23):
//
//	SHA-1(SPIi | SPIr | IP | Port)
//
// with the SPIs in header order as 8 big-endian octets, an IPv4 address as 4 octets (an
// IPv4-mapped IPv6 address is taken as the IPv4 address it carries, since
// that is what goes on the wire) and the port as 2 octets. The IPv6 zone is
// not part of the address on the wire and is ignored. SHA-1 is what the
// RFC fixes, whatever the negotiated PRF.
func NATDetectionHash(spii, spir uint64, ap netip.AddrPort) []byte {
	b := make([]byte, 0, 8+8+16+2)
	b = binary.BigEndian.AppendUint64(b, spii)
	b = binary.BigEndian.AppendUint64(b, spir)
	if a := ap.Addr().Unmap(); a.Is4() {
		ip := a.As4()
		b = append(b, ip[:]...)
	} else {
		ip := a.As16()
		b = append(b, ip[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	h := sha1.Sum(b)
	return h[:]
}
