//go:build linux

package dataplane

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// UDP-encapsulated packets of one path leave in trains (UDP GSO), and
// the peer still receives each ESP packet as its own datagram, in order
// and unchanged: equal-sized ones, a shorter one that ends a train, a
// second path, and more than a train may hold.
func TestSendTrains(t *testing.T) {
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	var rx [2]*net.UDPConn
	var paths [2]*Path
	tr := newLinuxTransport(func(netip.Addr) *net.UDPConn { return tx }, nil, nil)
	udp4 := func() *sender { return tr.udp[tx] }
	if tr.Prepare(&Path{Remote: netip.MustParseAddrPort("127.0.0.1:1"), Encap: true}); !udp4().gso {
		t.Log("this kernel has no UDP_SEGMENT: testing the fallback of one datagram per message")
	}
	for i := range rx {
		if rx[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		defer rx[i].Close()
		paths[i] = &Path{Local: netip.MustParseAddrPort("127.0.0.1:4500"), Remote: rx[i].LocalAddr().(*net.UDPAddr).AddrPort(), Encap: true}
		tr.Prepare(paths[i])
	}
	var pkts []Packet
	want := [2][][]byte{}
	add := func(k, size int) {
		b := bytes.Repeat([]byte{byte(len(pkts))}, size)
		pkts = append(pkts, Packet{Data: b, Path: paths[k]})
		want[k] = append(want[k], b)
	}
	for range 3 {
		add(0, 1000)
	}
	add(0, 400) // ends the train
	add(0, 1000)
	add(1, 1000)
	for range maxSegments + 5 {
		add(0, 900)
	}
	for range 2 { // the train and its reuse must not allocate or leak state
		if err := tr.Send(pkts); err != nil {
			t.Fatal(err)
		}
		if udp4().gso && len(udp4().ms) >= len(pkts) {
			t.Errorf("%d packets in %d messages: no trains", len(pkts), len(udp4().ms))
		}
		for k := range rx {
			buf := make([]byte, 65536)
			for i, w := range want[k] {
				rx[k].SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := rx[k].Read(buf)
				if err != nil {
					t.Fatalf("path %d, datagram %d: %v", k, i, err)
				}
				if !bytes.Equal(buf[:n], w) {
					t.Fatalf("path %d, datagram %d: %d octets of %x, want %d of %x", k, i, n, buf[0], len(w), w[0])
				}
			}
		}
	}
	allocs := testing.AllocsPerRun(10, func() {
		tr.Send(pkts)
	})
	if allocs > 0 && !raceEnabled {
		t.Errorf("Send allocates %.1f times per batch", allocs)
	}
}

// A path the kernel refuses (port 0: EINVAL) costs only its own packets; the rest of the batch still leaves.
func TestSendSkipsFailingPath(t *testing.T) {
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tr := newLinuxTransport(func(netip.Addr) *net.UDPConn { return tx }, nil, nil)
	good := &Path{Remote: rx.LocalAddr().(*net.UDPAddr).AddrPort(), Encap: true}
	bad := &Path{Remote: netip.MustParseAddrPort("127.0.0.1:0"), Encap: true}
	tr.Prepare(good)
	tr.Prepare(bad)
	pkts := []Packet{{Data: []byte("bad1"), Path: bad}, {Data: []byte("bad2"), Path: bad},
		{Data: []byte("good"), Path: good}, {Data: []byte("bad3"), Path: bad}, {Data: []byte("good"), Path: good}}
	if err := tr.Send(pkts); err == nil {
		t.Error("no error for the refused path")
	}
	buf := make([]byte, 100)
	for i := range 2 {
		rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := rx.Read(buf)
		if err != nil || string(buf[:n]) != "good" {
			t.Fatalf("datagram %d: %q, %v", i, buf[:n], err)
		}
	}
}
