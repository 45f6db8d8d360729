package hostile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/pcapfile"
	"github.com/mifike/mifike/internal/wire"
)

// attacker is the sending side: UDP sockets on the attacker's own
// addresses (ports 500, 4500 and an ephemeral one on each) and a raw
// socket for forged sources, all in the attacker's namespace.
type attacker struct {
	socks map[netip.AddrPort]*net.UDPConn
	raw   int
	own   []netip.AddrPort

	mu        sync.Mutex
	responses map[string]int // what the gateway answered the attacker, by exchange and notify
	respBytes int
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newAttacker(ns string, addrs []netip.Addr) (*attacker, error) {
	a := &attacker{socks: map[netip.AddrPort]*net.UDPConn{}, raw: -1, responses: map[string]int{}}
	err := demo.InNS(ns, func() error {
		for _, addr := range addrs {
			for _, port := range []uint16{ikePort, nattPort, 0} {
				c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
				if err != nil {
					return err
				}
				k := netip.AddrPortFrom(addr, port)
				a.socks[k] = c
				a.own = append(a.own, k)
				if err := setTTL(c); err != nil {
					return err
				}
				c.SetWriteBuffer(4 << 20)
			}
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		a.raw = fd
		return nil
	})
	if err != nil {
		a.close()
		return nil, err
	}
	for _, c := range a.socks {
		a.wg.Go(func() { a.drain(c) })
	}
	return a, nil
}

func setTTL(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, attackTTL)
	}); err != nil {
		return err
	}
	return serr
}

// drain reads what the gateway answers, so it can be reported: COOKIE,
// INVALID_MAJOR_VERSION, retransmitted responses to replays...
func (a *attacker) drain(c *net.UDPConn) {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue // ICMP errors surface here
		}
		k := describe(buf[:n], from.Port())
		a.mu.Lock()
		a.responses[k]++
		a.respBytes += n
		a.mu.Unlock()
	}
}

// describe names what the gateway sent from port (the marker is its
// port's, RFC 3948 §2.2): exchange, request or response, and the first
// cleartext notify.
func describe(b []byte, port uint16) string {
	if port == nattPort {
		kind, msg := conn.Demux(b)
		if kind != conn.IKE {
			return fmt.Sprintf("%d octets without the non-ESP marker from port 4500", len(b))
		}
		b = msg
	}
	if len(b) < hdrLen {
		return fmt.Sprintf("%d octets from port %d", len(b), port)
	}
	x := wire.ExchangeType(b[offExchange]).String()
	if strings.HasPrefix(x, "EXCHANGE(") {
		x = "an unassigned exchange type's" // one line for them all
	}
	name := fmt.Sprintf("%s %s", x, map[bool]string{false: "request", true: "response"}[b[offFlags]&flagR != 0])
	if b[offFlags]&flagR == 0 {
		// We never start an exchange with the gateway: a request to us
		// is worth seeing whole.
		name += fmt.Sprintf(" %x", b[:min(len(b), 64)])
	}
	for _, s := range chain(b) {
		if s.typ == byte(wire.PayloadNotify) && s.off+8 <= len(b) {
			return fmt.Sprintf("%s, notify %s", name, wire.NotifyType(binary.BigEndian.Uint16(b[s.off+6:])))
		}
	}
	return name
}

// send sends one datagram; it returns the source it left from.
func (a *attacker) send(d datagram) (netip.AddrPort, error) {
	if d.spoof || d.esp50 {
		pkt, err := d.packet()
		if err != nil {
			return d.src, err
		}
		to := &unix.SockaddrInet4{Addr: d.dst.Addr().As4()}
		return d.src, unix.Sendto(a.raw, pkt, 0, to)
	}
	c := a.socks[d.src]
	if c == nil {
		return d.src, fmt.Errorf("no socket %v", d.src)
	}
	_, err := c.WriteToUDPAddrPort(d.data, d.dst)
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), err
}

// packet is the datagram as the IPv4 packet the raw socket sends (the
// kernel fills in the header checksum and the ID).
func (d datagram) packet() ([]byte, error) {
	if !d.esp50 {
		pkt, err := pcapfile.UDPPacket(d.src, d.dst, d.data)
		if err == nil {
			pkt[8] = attackTTL
		}
		return pkt, err
	}
	if len(d.data) > 0xffff-20 {
		return nil, fmt.Errorf("ESP packet of %d octets", len(d.data))
	}
	ip := make([]byte, 20, 20+len(d.data))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(d.data)))
	ip[8], ip[9] = attackTTL, unix.IPPROTO_ESP
	s, t := d.src.Addr().As4(), d.dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], t[:])
	return append(ip, d.data...), nil
}

// port is where the tally counts a datagram.
func (d datagram) port() uint16 {
	if d.esp50 {
		return protoESP
	}
	return d.dst.Port()
}

func (a *attacker) answers() (map[string]int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.responses {
		out[k] = v
	}
	return out, a.respBytes
}

// close closes every socket; it may be called again.
func (a *attacker) close() {
	a.closeOnce.Do(func() {
		for _, c := range a.socks {
			c.Close()
		}
		a.wg.Wait()
		if a.raw >= 0 {
			unix.Close(a.raw)
		}
	})
}

// tally counts the stream by mutation and destination port.
type tally struct {
	sent    map[string]map[uint16]int
	bytes   int
	errors  map[string]int
	spoofed int
	total   int
}

func newTally() *tally {
	return &tally{sent: map[string]map[uint16]int{}, errors: map[string]int{}}
}

func (t *tally) add(d datagram, err error) {
	if err != nil {
		t.errors[fmt.Sprintf("%s: %v", d.kind, err)]++
		return
	}
	if t.sent[d.kind] == nil {
		t.sent[d.kind] = map[uint16]int{}
	}
	t.sent[d.kind][d.port()]++
	t.bytes += len(d.data)
	t.total++
	if d.spoof {
		t.spoofed++
	}
}

func (t *tally) String() string {
	var b strings.Builder
	names := make([]string, 0, len(t.sent))
	for k := range t.sent {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "  %-16s %9s %9s %9s %9s\n", "mutation", "port 500", "port 4500", "ESP (50)", "total")
	ports := map[uint16]int{}
	for _, k := range names {
		p := t.sent[k]
		fmt.Fprintf(&b, "  %-16s %9d %9d %9d %9d\n", k, p[ikePort], p[nattPort], p[protoESP], p[ikePort]+p[nattPort]+p[protoESP])
		for port, n := range p {
			ports[port] += n
		}
	}
	fmt.Fprintf(&b, "  %-16s %9d %9d %9d %9d  (%d from forged sources, %.1f MB)\n", "all", ports[ikePort], ports[nattPort], ports[protoESP], t.total, t.spoofed, float64(t.bytes)/1e6)
	for k, n := range t.errors {
		fmt.Fprintf(&b, "  send error x%d: %s\n", n, k)
	}
	return b.String()
}

// recorder writes every datagram sent to a capture and an index (number,
// mutation, source, destination, length), the reproducer of a failure.
type recorder struct {
	f, idx *os.File
	pw     *pcapfile.Writer
	bw, iw *bufio.Writer
	n      int
	recent []string // the last datagrams, in hex, for the report of a crash
}

func newRecorder(pcapPath string) (*recorder, error) {
	f, err := os.Create(pcapPath)
	if err != nil {
		return nil, err
	}
	idx, err := os.Create(strings.TrimSuffix(pcapPath, ".pcap") + ".index")
	if err != nil {
		f.Close()
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	pw, err := pcapfile.NewWriter(bw)
	if err != nil {
		return nil, err
	}
	return &recorder{f: f, idx: idx, pw: pw, bw: bw, iw: bufio.NewWriter(idx)}, nil
}

func (r *recorder) record(d datagram, src netip.AddrPort, at time.Time) {
	r.n++
	if d.spoof || d.esp50 {
		if pkt, err := d.packet(); err == nil {
			r.pw.WritePacket(at, pkt)
		}
	} else {
		r.pw.WriteUDP(at, src, d.dst, d.data)
	}
	fmt.Fprintf(r.iw, "%d %s %v %v %d spoof=%v esp50=%v\n", r.n, d.kind, src, d.dst, len(d.data), d.spoof, d.esp50)
	line := fmt.Sprintf("#%d %s %v -> %v (%d octets): %x", r.n, d.kind, src, d.dst, len(d.data), d.data[:min(len(d.data), 96)])
	r.recent = append(r.recent, line)
	if len(r.recent) > 20 {
		r.recent = r.recent[1:]
	}
}

func (r *recorder) close() {
	r.iw.Flush()
	r.idx.Close()
	r.bw.Flush()
	r.f.Close()
}
