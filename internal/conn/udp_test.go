package conn

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// RFC 3948 §2.2, §2.3: on the NAT-T port IKE follows four zero octets,
// ESP starts with its non-zero SPI, and a lone 0xFF is a keepalive.
// What is none of these (too short for an SPI or the marker) is
// NoMarker, dropped here: the engine never sees a marker, present or
// missing (it once dropped these itself as ike.DropNoMarker).
func TestDemuxRFC3948(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want Kind
		msg  []byte
	}{
		{"IKE behind the marker", []byte{0, 0, 0, 0, 0x11, 0x22}, IKE, []byte{0x11, 0x22}},
		{"marker alone", []byte{0, 0, 0, 0}, IKE, []byte{}},
		{"marker twice", []byte{0, 0, 0, 0, 0, 0, 0, 0, 7}, IKE, []byte{0, 0, 0, 0, 7}},
		{"ESP", []byte{0, 0, 1, 2, 0, 0, 0, 1, 9}, ESP, nil},
		{"ESP, SPI in the last octet", []byte{0, 0, 0, 1}, ESP, nil},
		{"IKE without the marker", []byte{0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0x20}, ESP, nil},
		{"keepalive", []byte{0xff}, Keepalive, nil},
		{"two 0xff", []byte{0xff, 0xff}, NoMarker, nil},
		{"one other octet", []byte{0xfe}, NoMarker, nil},
		{"short", []byte{1, 2, 3}, NoMarker, nil},
		{"short zeros", []byte{0, 0, 0}, NoMarker, nil},
		{"empty", nil, NoMarker, nil},
	} {
		got, msg := Demux(c.b)
		if got != c.want || !bytes.Equal(msg, c.msg) || (got == IKE) != (msg != nil) {
			t.Errorf("%s: %v %x, want %v %x", c.name, got, msg, c.want, c.msg)
		}
	}
}

// AppendIKE is Demux's inverse: the marker on the NAT-T port only.
func TestAppendIKE(t *testing.T) {
	msg := []byte{0x11, 0x22, 0x33, 0x44, 0x55}
	if b := AppendIKE(nil, msg, false); !bytes.Equal(b, msg) {
		t.Errorf("on the IKE port: %x", b)
	}
	b := AppendIKE([]byte{9}, msg, true)
	if !bytes.Equal(b, []byte{9, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55}) {
		t.Errorf("on the NAT-T port: %x", b)
	}
	if k, m := Demux(b[1:]); k != IKE || !bytes.Equal(m, msg) {
		t.Errorf("Demux of AppendIKE: %v %x", k, m)
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
		t.Fatalf("no loopback socket: %v", err)
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
	huge := make([]byte, MaxDatagram+1)
	for _, c := range []struct {
		port  uint16
		fn    ReceiveFunc
		sent  [][]byte
		kinds []Kind
		// data is what each Packet's Data must hold: IKE without its
		// marker, the rest as it came (cut short when truncated).
		data [][]byte
		offs []int
	}{
		{ikePort, fns[0], [][]byte{ikeMsg, {0xff}, esp, huge}, []Kind{IKE, IKE, IKE, Truncated},
			[][]byte{ikeMsg, {0xff}, esp, huge[:MaxDatagram]}, []int{0, 0, 0, 0}},
		{nattPort, fns[1], [][]byte{marked, {0xff}, esp, {1, 2}, huge}, []Kind{IKE, Keepalive, ESP, NoMarker, Truncated},
			[][]byte{ikeMsg, {0xff}, esp, {1, 2}, huge[:MaxDatagram]}, []int{36, 32, 32, 32, 32}},
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
				if p.Kind != c.kinds[got] || p.NATT != (c.port == nattPort) || p.Off != c.offs[got] ||
					!bytes.Equal(p.Data(), c.data[got]) {
					t.Errorf("port %d, datagram %d: kind %v natt %v off %d, %d octets; want kind %v off %d, %d octets",
						c.port, got, p.Kind, p.NATT, p.Off, p.N, c.kinds[got], c.offs[got], len(c.data[got]))
				}
				if p.Local != netip.AddrPortFrom(lo, c.port) || p.Remote != from {
					t.Errorf("port %d, datagram %d: from %v to %v", c.port, got, p.Remote, p.Local)
				}
				got++
			}
		}
	}
	// Send leaves from the socket bound to the source address and port,
	// and puts the non-ESP marker before the message on the NAT-T port
	// only (RFC 3948 §2.2); a keepalive is the one octet 0xFF (§2.3).
	b := make([]byte, 100)
	for _, c := range []struct {
		port uint16
		send func(local netip.AddrPort) error
		want []byte
	}{
		{nattPort, func(l netip.AddrPort) error { return u.Send(ikeMsg, l, from, "") }, marked},
		{ikePort, func(l netip.AddrPort) error { return u.Send(ikeMsg, l, from, "") }, ikeMsg},
		{nattPort, func(l netip.AddrPort) error { return u.SendKeepalive(l, from, "") }, []byte{0xff}},
	} {
		if err := c.send(netip.AddrPortFrom(lo, c.port)); err != nil {
			t.Fatal(err)
		}
		n, src, err := peer.ReadFromUDPAddrPort(b)
		if err != nil || src != netip.AddrPortFrom(lo, c.port) || !bytes.Equal(b[:n], c.want) {
			t.Errorf("received %x from %v (%v), want %x from port %d", b[:n], src, err, c.want, c.port)
		}
	}
	nowhere := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 9)
	if err := u.Send(ikeMsg, nowhere, from, ""); err != ErrNoSocket {
		t.Errorf("sending from an address without a socket: %v, want ErrNoSocket", err)
	}
	if err := u.SendKeepalive(nowhere, from, ""); err != ErrNoSocket {
		t.Errorf("a keepalive from an address without a socket: %v, want ErrNoSocket", err)
	}
	if u.NATT(lo) != u.Sockets()[1].Conn || u.Sockets()[0].NATT || !u.Sockets()[1].NATT {
		t.Error("NATT does not find the NAT-T socket")
	}
}

// FuzzDemux: whatever arrives on the NAT-T port, Demux sorts it without
// a panic, and what it calls IKE is exactly what AppendIKE framed.
func FuzzDemux(f *testing.F) {
	for _, b := range [][]byte{{0, 0, 0, 0, 1}, {0xff}, {0, 0, 1, 2}, {1}, nil} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, msg := Demux(b)
		if kind == IKE {
			if !bytes.Equal(AppendIKE(nil, msg, true), b) {
				t.Fatalf("IKE %x is not what AppendIKE frames", msg)
			}
		} else if msg != nil {
			t.Fatalf("%v with a message", kind)
		}
		if k, m := Demux(AppendIKE(nil, b, true)); k != IKE || !bytes.Equal(m, b) {
			t.Fatalf("AppendIKE(%x) demultiplexed as %v %x", b, k, m)
		}
	})
}

// A named interface resolves to its index by one ioctl on the socket
// (what Send passes as IP_PKTINFO's interface); an unknown name is 0,
// routing's choice.
func TestIfindexByIoctl(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &udpSocket{conn: c}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo: %v", err)
	}
	if got := s.ifindex("lo"); got != lo.Index {
		t.Errorf("lo: %d, want %d", got, lo.Index)
	}
	if got := s.ifindex("nosuchif0"); got != 0 {
		t.Errorf("unknown interface: %d, want 0", got)
	}
	if got := s.ifindex(""); got != 0 {
		t.Errorf("no interface: %d", got)
	}
	if got := s.ifindex("a-name-far-too-long-for-ifreq"); got != 0 {
		t.Errorf("too long a name: %d", got)
	}
}
