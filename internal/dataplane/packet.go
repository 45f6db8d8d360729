package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the data plane looks inside.
const (
	protoICMP   = 1
	protoIPIP   = 4 // IPv4 in ESP tunnel mode (RFC 4303 §2.6)
	protoTCP    = 6
	protoUDP    = 17
	protoIPv6   = 41
	protoESP    = 50
	protoICMPv6 = 58
	protoSCTP   = 132
)

// flow is what the SPD matches on (RFC 4301 §4.4.1.1): addresses, the
// upper-layer protocol and its ports.
type flow struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	hdrLen       int // IP header length including IPv6 extension headers we skipped
}

// parseFlow reads an inner IP packet's selectors. It never panics: a
// packet too short or not IP gives ok=false.
func parseFlow(p []byte) (f flow, ok bool) {
	if len(p) < 1 {
		return f, false
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return f, false
		}
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl {
			return f, false
		}
		f.src = netip.AddrFrom4([4]byte(p[12:16]))
		f.dst = netip.AddrFrom4([4]byte(p[16:20]))
		f.proto = p[9]
		f.hdrLen = ihl
		// Only the first fragment carries ports (RFC 4301 §7 leaves
		// non-initial fragments to OPAQUE selectors; ports 0 here).
		if binary.BigEndian.Uint16(p[6:8])&0x1fff != 0 {
			return f, true
		}
	case 6:
		if len(p) < 40 {
			return f, false
		}
		f.src = netip.AddrFrom16([16]byte(p[8:24]))
		f.dst = netip.AddrFrom16([16]byte(p[24:40]))
		nh, off := p[6], 40
		// Skip the extension headers that may precede the upper layer
		// (RFC 8200 §4), at most a few: a hostile chain is cut short.
		for range 8 {
			switch nh {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(p) < off+8 {
					return f, false
				}
				nh, off = p[off], off+(int(p[off+1])+1)*8
				continue
			case 44: // fragment: ports only in the first fragment
				if len(p) < off+8 {
					return f, false
				}
				first := binary.BigEndian.Uint16(p[off+2:off+4])&0xfff8 == 0
				nh, off = p[off], off+8
				if !first {
					f.proto, f.hdrLen = nh, off
					return f, true
				}
				continue
			}
			break
		}
		if off > len(p) {
			return f, false
		}
		f.proto, f.hdrLen = nh, off
	default:
		return f, false
	}
	l4 := p[f.hdrLen:]
	switch f.proto {
	case protoTCP, protoUDP, protoSCTP:
		if len(l4) >= 4 {
			f.sport = binary.BigEndian.Uint16(l4[0:2])
			f.dport = binary.BigEndian.Uint16(l4[2:4])
		}
	case protoICMP, protoICMPv6:
		// ICMP type and code take the place of the local port (RFC 4301
		// §4.4.1.1); we match them as the source port.
		if len(l4) >= 2 {
			f.sport = uint16(l4[0])<<8 | uint16(l4[1])
		}
	}
	return f, true
}

// checksum is the Internet checksum (RFC 1071) of b added to sum.
func checksum(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// pseudoSum is the TCP/UDP pseudo-header sum (RFC 9293 §3.1, RFC 8200 §8.1).
func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	s, d := src.AsSlice(), dst.AsSlice()
	sum = checksum(s, sum)
	sum = checksum(d, sum)
	return sum + uint32(proto) + uint32(length)
}

// buildIPHeader writes, just before payload in buf (buf[start-h:start]),
// the IP header of a transport-mode packet that arrived in ESP from src to
// dst, and returns where the packet starts. RFC 3948 §3.1.2: when a NAT
// changed the outer addresses, the TCP or UDP checksum, computed over the
// original ones, is recomputed here.
func buildIPHeader(buf []byte, start, end int, src, dst netip.Addr, proto uint8, fixChecksum bool) (int, bool) {
	n := end - start
	if src.Is4() {
		if start < 20 || n > 0xffff-20 {
			return 0, false
		}
		h := buf[start-20 : start]
		h[0], h[1] = 0x45, 0
		binary.BigEndian.PutUint16(h[2:4], uint16(20+n))
		binary.BigEndian.PutUint32(h[4:8], 0x4000) // ID 0, DF
		h[8], h[9] = 64, proto
		h[10], h[11] = 0, 0
		copy(h[12:16], src.AsSlice())
		copy(h[16:20], dst.AsSlice())
		binary.BigEndian.PutUint16(h[10:12], fold(checksum(h, 0)))
		start -= 20
	} else {
		if start < 40 || n > 0xffff {
			return 0, false
		}
		h := buf[start-40 : start]
		binary.BigEndian.PutUint32(h[0:4], 6<<28)
		binary.BigEndian.PutUint16(h[4:6], uint16(n))
		h[6], h[7] = proto, 64
		copy(h[8:24], src.AsSlice())
		copy(h[24:40], dst.AsSlice())
		start -= 40
	}
	if fixChecksum {
		fixL4Checksum(buf[end-n:end], src, dst, proto)
	}
	return start, true
}

// fixL4Checksum recomputes a TCP or UDP checksum for new addresses.
func fixL4Checksum(l4 []byte, src, dst netip.Addr, proto uint8) {
	var off int
	switch {
	case proto == protoTCP && len(l4) >= 20:
		off = 16
	case proto == protoUDP && len(l4) >= 8:
		off = 6
		if src.Is4() && binary.BigEndian.Uint16(l4[6:8]) == 0 {
			return // no checksum (RFC 768)
		}
	default:
		return
	}
	l4[off], l4[off+1] = 0, 0
	sum := fold(checksum(l4, pseudoSum(src, dst, proto, len(l4))))
	if sum == 0 && proto == protoUDP {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], sum)
}
