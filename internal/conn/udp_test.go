package conn

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// RFC 3948 §2.2, §2.3: on the NAT-T port IKE follows four zero octets,
// ESP starts with its non-zero SPI, and a lone 0xFF is a keepalive.
// Whatever is none of these goes to the engine, which drops it.
func TestClassifyRFC3948(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want Kind
	}{
		{"IKE behind the marker", []byte{0, 0, 0, 0, 0x11, 0x22}, IKE},
		{"marker alone", []byte{0, 0, 0, 0}, IKE},
		{"ESP", []byte{0, 0, 1, 2, 0, 0, 0, 1, 9}, ESP},
		{"ESP, SPI in the last octet", []byte{0, 0, 0, 1}, ESP},
		{"keepalive", []byte{0xff}, Keepalive},
		{"one other octet", []byte{0xfe}, IKE},
		{"short", []byte{1, 2, 3}, IKE},
		{"empty", nil, IKE},
	} {
		if got := classify(c.b); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// The UDP Bind sorts what arrives on a NAT-T socket and calls everything
// on an IKE socket IKE; it sends from the socket bound to the source.
func TestUDPSortsByPort(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	u := new(UDP)
	defer u.Close()
	ikePort, err := u.Listen(lo, 0, false)
	if err != nil {
		t.Skipf("no loopback socket: %v", err)
	}
	nattPort, err := u.Listen(lo, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := u.Open(32)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	from := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	ikeMsg := bytes.Repeat([]byte{0x5a}, 40)
	marked := append([]byte{0, 0, 0, 0}, ikeMsg...)
	esp := []byte{0, 0, 1, 2, 0, 0, 0, 1, 9, 9}
	for _, c := range []struct {
		port  uint16
		fn    ReceiveFunc
		sent  [][]byte
		kinds []Kind
		off   int
	}{
		{ikePort, fns[0], [][]byte{ikeMsg, {0xff}, esp, make([]byte, MaxDatagram+1)}, []Kind{IKE, IKE, IKE, Truncated}, 0},
		{nattPort, fns[1], [][]byte{marked, {0xff}, esp, {1, 2}, make([]byte, MaxDatagram+1)}, []Kind{IKE, Keepalive, ESP, IKE, Truncated}, 32},
	} {
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, c.port))
		for _, b := range c.sent {
			if _, err := peer.WriteToUDPAddrPort(b, to.AddrPort()); err != nil {
				t.Fatal(err)
			}
		}
		pkts := make([]Packet, u.BatchSize())
		for got := 0; got < len(c.sent); {
			n, err := c.fn(pkts)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pkts[:n] {
				want := c.sent[got]
				if p.Kind != c.kinds[got] || p.NATT != (c.port == nattPort) || p.Off != c.off ||
					!bytes.Equal(p.Data(), want[:min(len(want), MaxDatagram)]) {
					t.Errorf("port %d, datagram %d: kind %v natt %v off %d, %d octets; want kind %v", c.port, got, p.Kind, p.NATT, p.Off, p.N, c.kinds[got])
				}
				if p.Local != netip.AddrPortFrom(lo, c.port) || p.Remote != from {
					t.Errorf("port %d, datagram %d: from %v to %v", c.port, got, p.Remote, p.Local)
				}
				got++
			}
		}
	}
	// Send leaves from the socket bound to the source address and port.
	if err := u.Send(marked, netip.AddrPortFrom(lo, nattPort), from, ""); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 100)
	n, src, err := peer.ReadFromUDPAddrPort(b)
	if err != nil || src != netip.AddrPortFrom(lo, nattPort) || !bytes.Equal(b[:n], marked) {
		t.Errorf("received %d octets from %v (%v), want the marked message from port %d", n, src, err, nattPort)
	}
	if err := u.Send(marked, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 9), from, ""); err != ErrNoSocket {
		t.Errorf("sending from an address without a socket: %v, want ErrNoSocket", err)
	}
	if u.NATT(lo) != u.Sockets()[1].Conn || u.Sockets()[0].NATT || !u.Sockets()[1].NATT {
		t.Error("NATT does not find the NAT-T socket")
	}
}
