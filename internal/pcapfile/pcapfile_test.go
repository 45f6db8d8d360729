package pcapfile

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

func TestUDPPacketChecksums(t *testing.T) {
	for _, c := range []struct{ src, dst string }{
		{"192.0.2.1:500", "198.51.100.2:500"},
		{"[2001:db8::1]:4500", "[2001:db8::2]:4500"},
	} {
		pkt, err := UDPPacket(netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst), []byte("hello, ike"))
		if err != nil {
			t.Fatal(err)
		}
		ipLen := 20
		var pseudo []byte
		if pkt[0]>>4 == 4 {
			if checksum(pkt[:20], 0) != 0 {
				t.Errorf("%s: IPv4 header checksum does not verify", c.src)
			}
			pseudo = append(append([]byte{}, pkt[12:20]...), 0, 17, 0, byte(len(pkt)-20))
		} else {
			ipLen = 40
			pseudo = append(append([]byte{}, pkt[8:40]...), 0, 0, 0, byte(len(pkt)-40), 0, 0, 0, 17)
		}
		if checksum(pkt[ipLen:], sum(pseudo)) != 0 {
			t.Errorf("%s: UDP checksum does not verify", c.src)
		}
		if got := binary.BigEndian.Uint16(pkt[ipLen+4:]); int(got) != len(pkt)-ipLen {
			t.Errorf("%s: UDP length %d", c.src, got)
		}
	}
	if _, err := UDPPacket(netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("[::1]:1"), nil); err == nil {
		t.Error("mixed families accepted")
	}
}

func TestWriterLayout(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(time.Unix(10, 5000), []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b) != 24+16+3 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != linkTypeRaw {
		t.Fatalf("file header % x", b[:24])
	}
	if binary.LittleEndian.Uint32(b[24:]) != 10 || binary.LittleEndian.Uint32(b[28:]) != 5 || binary.LittleEndian.Uint32(b[32:]) != 3 {
		t.Fatalf("record header % x", b[24:40])
	}
}
