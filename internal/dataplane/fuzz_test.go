package dataplane

import (
	"encoding/binary"
	"testing"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/wire"
)

// Every byte from the network is hostile: Receive must never panic, and
// nothing that fails authentication may reach the TUN device.
func FuzzReceive(f *testing.F) {
	a, b := newEnd(&testing.T{}), newEnd(&testing.T{})
	pair(&testing.T{}, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	pair(&testing.T{}, a, b, 0x1002, 0x2002, ipsec.Transport, "192.0.2.1/32", "198.51.100.1/32", wire.EncrAESCBC)
	good, _ := a.out(&testing.T{}, ipv4Packet("10.1.0.5", "10.2.0.9", protoICMP, []byte{8, 0, 0, 0}))
	f.Add(good.Data)
	f.Add([]byte{0, 0, 0x20, 0x01, 0, 0, 0, 1})
	f.Add([]byte{0, 0, 0x20, 0x02, 0, 0, 0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		buf := make([]byte, Headroom+len(data))
		copy(buf[Headroom:], data)
		b.rx.Receive([]Inbound{{Buf: buf, Off: Headroom, N: len(data), Local: hostB, Remote: hostA}})
		for _, w := range b.tun.take() {
			// Only an authentic packet can pass, and the fuzzer cannot
			// forge a GCM tag or an HMAC: it can only replay the seed.
			if len(data) < 8 || binary.BigEndian.Uint32(data[4:]) != 1 {
				t.Fatalf("forged packet delivered: %x", w)
			}
		}
	})
}

// parseFlow reads hostile inner packets (from the TUN, or decrypted from
// an authenticated but malicious peer).
func FuzzParseFlow(f *testing.F) {
	f.Add(ipv4Packet("10.1.0.5", "10.2.0.9", protoUDP, udpPayload(1, 2, "x")))
	f.Add(ipv6Packet("fd00::1", "fd00::2", 0, []byte{17, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}))
	f.Fuzz(func(t *testing.T, p []byte) {
		fl, ok := parseFlow(p)
		if ok && (fl.hdrLen > len(p) || !fl.src.IsValid()) {
			t.Fatalf("flow %+v from %d octets", fl, len(p))
		}
	})
}
