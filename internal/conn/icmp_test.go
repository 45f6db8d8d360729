package conn

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// RFC 7296 §2.21, RFC 4555 §5.3: an ICMP port unreachable for an IKE
// message we sent comes up as a PathError naming the peer it was sent
// to, and the socket goes on receiving.
func TestICMPErrorIsAPathError(t *testing.T) {
	var u UDP
	port, err := u.Listen(lo, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	r := receive(t, &u, 0)
	// A port nobody listens on: the kernel answers with ICMP port
	// unreachable.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	closed := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	local := netip.AddrPortFrom(lo, port)
	var got *Packet
	deadline := time.Now().Add(patience)
	for got == nil && time.Now().Before(deadline) {
		// Loopback's ICMP is rate-limited: send again until one comes.
		if err := u.Send(make([]byte, 28), local, closed, ""); err != nil {
			t.Fatal(err)
		}
		select {
		case <-r.more:
		case <-time.After(200 * time.Millisecond):
		}
		r.mu.Lock()
		for i := range r.pkts {
			if r.pkts[i].Kind == PathError {
				got = &r.pkts[i]
			}
		}
		r.mu.Unlock()
	}
	if got == nil {
		t.Fatalf("no PathError within %v", patience)
	}
	if got.Remote != closed || got.Local != local {
		t.Fatalf("PathError from %v to %v, want %v to %v", got.Local, got.Remote, local, closed)
	}
	// The socket still receives.
	peer, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(local))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	msg := append(make([]byte, 27), 0x42)
	for time.Now().Before(deadline) {
		peer.Write(msg)
		select {
		case <-r.more:
		case <-time.After(200 * time.Millisecond):
		}
		r.mu.Lock()
		for _, p := range r.pkts {
			if p.Kind == IKE && p.N == len(msg) && p.Buf[p.Off+p.N-1] == 0x42 {
				r.mu.Unlock()
				return
			}
		}
		r.mu.Unlock()
	}
	t.Fatal("the socket stopped receiving after the ICMP error")
}
