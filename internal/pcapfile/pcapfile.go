// Package pcapfile writes classic pcap files of raw IP packets, so tests and
// tools can hand what mifike sent to tshark and Wireshark.
package pcapfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// linkTypeRaw is LINKTYPE_RAW: each record is an IPv4 or IPv6 packet.
const linkTypeRaw = 101

// Writer writes pcap records to an io.Writer.
type Writer struct {
	w   io.Writer
	err error
}

// NewWriter writes the pcap file header (microsecond timestamps).
func NewWriter(w io.Writer) (*Writer, error) {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], linkTypeRaw)
	_, err := w.Write(h)
	return &Writer{w: w, err: err}, err
}

// WritePacket writes one raw IP packet captured at t.
func (w *Writer) WritePacket(t time.Time, pkt []byte) error {
	if w.err != nil {
		return w.err
	}
	rec := make([]byte, 16, 16+len(pkt))
	binary.LittleEndian.PutUint32(rec[0:], uint32(t.Unix()))
	binary.LittleEndian.PutUint32(rec[4:], uint32(t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(pkt)))
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
	_, w.err = w.w.Write(append(rec, pkt...))
	return w.err
}

// WriteUDP wraps payload in IPv4 or IPv6 and UDP headers with correct
// checksums and writes it.
func (w *Writer) WriteUDP(t time.Time, src, dst netip.AddrPort, payload []byte) error {
	pkt, err := UDPPacket(src, dst, payload)
	if err != nil {
		return err
	}
	return w.WritePacket(t, pkt)
}

// UDPPacket builds an IP packet carrying one UDP datagram.
func UDPPacket(src, dst netip.AddrPort, payload []byte) ([]byte, error) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() != d.Is4() {
		return nil, fmt.Errorf("pcapfile: %v and %v are of different families", s, d)
	}
	ulen := 8 + len(payload)
	if ulen > 0xffff-40 {
		return nil, fmt.Errorf("pcapfile: UDP payload of %d octets is too long", len(payload))
	}
	udp := make([]byte, 8, ulen)
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen))
	udp = append(udp, payload...)

	var pkt, pseudo []byte
	if s.Is4() {
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+ulen))
		ip[8], ip[9] = 64, 17
		s4, d4 := s.As4(), d.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
		pseudo = append(append(append([]byte{}, s4[:]...), d4[:]...), 0, 17, byte(ulen>>8), byte(ulen))
		pkt = ip
	} else {
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
		ip[6], ip[7] = 17, 64
		s16, d16 := s.As16(), d.As16()
		copy(ip[8:], s16[:])
		copy(ip[24:], d16[:])
		pseudo = append(append(append([]byte{}, s16[:]...), d16[:]...), 0, 0, byte(ulen>>8), byte(ulen), 0, 0, 0, 17)
		pkt = ip
	}
	c := checksum(udp, sum(pseudo))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return append(pkt, udp...), nil
}

func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// checksum is the Internet checksum (RFC 1071) of b plus an initial sum.
func checksum(b []byte, initial uint32) uint16 {
	s := initial + sum(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
