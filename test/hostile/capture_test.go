package hostile

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/demo"
)

// attackTTL is the TTL of every attacker datagram, forged or not; the
// router in between takes one off, so the gateway's capture tells them
// from the real sessions' (sent with 64).
const attackTTL = 200

// capture records what the gateway's interfaces carry on the IKE ports
// (a packet socket in the gateway's namespace): the real sessions'
// messages become the corpus, and the attacker's datagrams that arrive
// are counted.
type capture struct {
	fd   int
	gw   map[netip.Addr]bool
	live *liveState
	stop chan struct{}
	done chan struct{}

	mu        sync.Mutex
	recording bool
	ike       []ikeMsg
	esp       []espPkt
	arrived   map[uint16]int // attacker datagrams that reached the gateway, by port
	fragments int            // attacker fragments after the first
}

func startCapture(ns string, gwAddrs []netip.Addr, live *liveState) (*capture, error) {
	c := &capture{gw: map[netip.Addr]bool{}, live: live, stop: make(chan struct{}), done: make(chan struct{}),
		recording: true, arrived: map[uint16]int{}}
	for _, a := range gwAddrs {
		c.gw[a] = true
	}
	err := demo.InNS(ns, func() error {
		// ETH_P_ALL: the kernel shows a packet socket what the host
		// sends only when it asks for every protocol.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A deep buffer: the stream must not push the real session's
	// messages out; a timeout so stop is noticed.
	unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(c.fd)
		return nil, err
	}
	go c.run()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *capture) run() {
	defer close(c.done)
	defer unix.Close(c.fd)
	buf := make([]byte, 1<<16)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_LOOPBACK || ll.Protocol != htons(unix.ETH_P_IP) {
			continue
		}
		c.packet(buf[:n], ll.Pkttype == unix.PACKET_OUTGOING)
	}
}

// packet handles one IPv4 packet the gateway sent (out) or received.
func (c *capture) packet(p []byte, out bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP && p[9] != unix.IPPROTO_ESP {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || total > len(p) || total < ihl+8 {
		return
	}
	frag := binary.BigEndian.Uint16(p[6:])
	src, _ := netip.AddrFromSlice(p[12:16])
	dst, _ := netip.AddrFromSlice(p[16:20])
	attacker := !out && p[8] == attackTTL-1
	if frag&0x1fff != 0 { // not the first fragment: no UDP header
		if attacker {
			c.mu.Lock()
			c.fragments++
			c.mu.Unlock()
		}
		return
	}
	if p[9] == unix.IPPROTO_ESP {
		c.espPacket(src, dst, p[ihl:total], out, attacker)
		return
	}
	udp := p[ihl:total]
	sport, dport := binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:])
	if attacker {
		if dport == ikePort || dport == nattPort {
			c.mu.Lock()
			c.arrived[dport]++
			c.mu.Unlock()
		}
		return
	}
	local, gwPort := dst, dport
	if out {
		local, gwPort = src, sport
	}
	if !c.gw[local] || (gwPort != ikePort && gwPort != nattPort) || frag&0x2000 != 0 {
		return // not the gateway's IKE sockets, or a fragment we cannot read
	}
	payload := udp[8:]
	m := netip.AddrPortFrom(src, sport)
	to := netip.AddrPortFrom(dst, dport)
	var ike, esp []byte
	switch kind, msg := conn.Demux(payload); {
	case gwPort == ikePort:
		ike = payload
	case kind == conn.IKE:
		ike = msg
	case len(payload) > 8:
		esp = payload
	}
	if len(ike) >= hdrLen {
		c.live.saw(ike, out)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.recording {
		return
	}
	if ike != nil {
		c.ike = append(c.ike, ikeMsg{data: append([]byte(nil), ike...), src: m, dst: to})
	}
	if esp != nil && len(c.esp) < 4096 {
		c.esp = append(c.esp, espPkt{data: append([]byte(nil), esp...), src: m, dst: to})
	}
}

// espPacket handles plain ESP (IP protocol 50): the live Child SAs'
// traffic, with no NAT between the peers.
func (c *capture) espPacket(src, dst netip.Addr, payload []byte, out, attacker bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if attacker {
		c.arrived[protoESP]++
		return
	}
	if !c.recording || len(payload) < 8 || len(c.esp) >= 4096 || !(out && c.gw[src] || !out && c.gw[dst]) {
		return
	}
	c.esp = append(c.esp, espPkt{data: append([]byte(nil), payload...), src: netip.AddrPortFrom(src, 0), dst: netip.AddrPortFrom(dst, 0)})
}

// corpus ends the recording and returns what the real sessions exchanged.
func (c *capture) corpus() ([]ikeMsg, []espPkt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recording = false
	return c.ike, c.esp
}

// counts returns the attacker datagrams that reached the gateway, by port.
func (c *capture) counts() (map[uint16]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[uint16]int{}
	for k, v := range c.arrived {
		out[k] = v
	}
	return out, c.fragments
}

func (c *capture) close() {
	close(c.stop)
	<-c.done
}
