//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/lab"
	"github.com/mifike/mifike/internal/wire"
)

// delayLine emulates a round-trip time without netem (this kernel has
// none): in the router's namespace, policy routing sends every forwarded
// packet into a TUN device; we read it, hold it for half the RTT and
// write it back, and the kernel forwards it on (a rule routes what comes
// out of the device by the main table). Every IP packet between the end
// user and the gateway passes it once per direction: IKE on both ports,
// ESP, pings. It also counts the IKE messages it carries, so it is the
// benchmark's capture point for messages, exchanges and bytes.
//
// Packets to or from the RADIUS server's network (setRADIUS) are the
// gateway's back-end link: they wait for a delay of their own, in a
// queue of their own (so a longer access delay never holds them up, nor
// they the access traffic), and are counted as RADIUS packets, so what
// the gateway asked FreeRADIUS is seen on the wire, independent of
// mifike's own statistics.
type delayLine struct {
	f      *os.File
	delay  atomic.Int64 // one way, in nanoseconds
	queue  chan delayed
	rdelay atomic.Int64 // one way on the RADIUS link
	rqueue chan delayed
	rnet   atomic.Pointer[netip.Prefix]
	// links are access links with a delay of their own (setLinkRTT),
	// each with its own queue, so that a longer delay on one never
	// holds up another's packets.
	links atomic.Pointer[[]*linkDelay]
	wg    sync.WaitGroup

	mu  sync.Mutex
	ike ikeCount
}

// linkDelay is one access link's delay: packets to or from net.
type linkDelay struct {
	net   netip.Prefix
	delay time.Duration // one way
	queue chan delayed
}

type delayed struct {
	b   []byte
	due time.Time
}

// ikeCount is what the delay line saw of IKE (and of RADIUS) since the
// last reset.
type ikeCount struct {
	Messages  int           // IKE messages (requests and responses)
	Requests  int           // requests: the exchanges, one round trip each
	Bytes     int           // IP packets' length, headers included
	Exchanges []string      // the requests' exchange types, in order
	First     time.Time     // the first IKE message
	Last      time.Time     // the last one
	Span      time.Duration // Last - First
	RADIUS    radiusCount
}

// radiusCount is what crossed the RADIUS link (RFC 2865 §3 codes).
type radiusCount struct {
	AccessRequests     int // code 1, to the authentication port
	Challenges         int // code 11
	Accepts, Rejects   int // codes 2 and 3
	AccountingRequests int // code 4, to the accounting port
	Bytes              int // IP packets both ways, headers included
}

// RADIUS ports of the lab's FreeRADIUS (radiuslab in a namespace).
const (
	radiusAuthPort = 1812
	radiusAcctPort = 1813
)

const delayDev = "dly0"

// newDelayLine sets the delay line up in the router's namespace ns.
func newDelayLine(l *lab.Lab, ns string) (*delayLine, error) {
	var fd int
	err := demo.InNS(ns, func() error {
		var err error
		fd, err = openTUN(delayDev)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delay line: %w", err)
	}
	d := &delayLine{f: os.NewFile(uintptr(fd), "/dev/net/tun"), queue: make(chan delayed, 8192), rqueue: make(chan delayed, 8192)}
	for _, args := range [][]string{
		{"link", "set", delayDev, "up"},
		// What comes out of the device goes on by the main table;
		// everything else forwarded here goes into it.
		{"rule", "add", "iif", delayDev, "lookup", "main", "pref", "100"},
		{"rule", "add", "lookup", "100", "pref", "101"},
		{"route", "add", "default", "dev", delayDev, "table", "100"},
	} {
		if err := l.IP(ns, args...); err != nil {
			d.f.Close()
			return nil, fmt.Errorf("delay line: %w", err)
		}
	}
	if _, err := l.Run(context.Background(), ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf."+delayDev+".rp_filter=0", "net.ipv4.conf.all.send_redirects=0"); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("delay line: %w", err)
	}
	d.wg.Add(3)
	go d.read()
	go d.write(d.queue)
	go d.write(d.rqueue)
	return d, nil
}

// openTUN creates a TUN device (no packet information header) in the
// namespace of the calling thread.
func openTUN(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("/dev/net/tun: %w (modprobe tun)", err)
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TUNSETIFF), uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %s: %w", name, errno)
	}
	return fd, nil
}

// setRTT sets the emulated round-trip time: each direction waits half.
func (d *delayLine) setRTT(rtt time.Duration) { d.delay.Store(int64(rtt / 2)) }

// setRADIUS makes packets to or from net the RADIUS link's, with
// round-trip time rtt.
func (d *delayLine) setRADIUS(net netip.Prefix, rtt time.Duration) {
	d.rnet.Store(&net)
	d.rdelay.Store(int64(rtt / 2))
}

// setLinkRTT gives the packets to or from net (an end-user access
// network: the outer addresses of its IKE and ESP) a round-trip time of
// their own. Call it before the traffic it delays flows.
func (d *delayLine) setLinkRTT(net netip.Prefix, rtt time.Duration) {
	l := &linkDelay{net: net, delay: rtt / 2, queue: make(chan delayed, 8192)}
	var links []*linkDelay
	if old := d.links.Load(); old != nil {
		links = append(links, *old...)
	}
	links = append(links, l)
	d.links.Store(&links)
	d.wg.Add(1)
	go d.write(l.queue)
}

// link is the access link with a delay of its own that an IPv4 packet
// comes from or goes to, if any.
func (d *delayLine) link(b []byte) *linkDelay {
	links := d.links.Load()
	if links == nil || len(b) < 20 || b[0]>>4 != 4 {
		return nil
	}
	src, dst := netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	for _, l := range *links {
		if l.net.Contains(src) || l.net.Contains(dst) {
			return l
		}
	}
	return nil
}

// isRADIUS: an IPv4 packet from or to the RADIUS link's network.
func (d *delayLine) isRADIUS(b []byte) bool {
	n := d.rnet.Load()
	if n == nil || len(b) < 20 || b[0]>>4 != 4 {
		return false
	}
	src, dst := netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	return n.Contains(src) || n.Contains(dst)
}

func (d *delayLine) read() {
	defer d.wg.Done()
	defer close(d.queue)
	defer close(d.rqueue)
	defer func() {
		if links := d.links.Load(); links != nil {
			for _, l := range *links {
				close(l.queue)
			}
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, err := d.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		// A copy of the packet's size: a fresh 64 KiB buffer per packet
		// costs more than the copy at the multipath suite's rates.
		b := append([]byte(nil), buf[:n]...)
		now := time.Now()
		if d.isRADIUS(b[:n]) {
			d.countRADIUS(b[:n])
			d.rqueue <- delayed{b: b[:n], due: now.Add(time.Duration(d.rdelay.Load()))}
			continue
		}
		d.count(b[:n], now)
		if l := d.link(b[:n]); l != nil {
			l.queue <- delayed{b: b[:n], due: now.Add(l.delay)}
			continue
		}
		d.queue <- delayed{b: b[:n], due: now.Add(time.Duration(d.delay.Load()))}
	}
}

// write sends each packet of a queue back when it is due; the delay is
// the same for all of a queue, so order is kept.
func (d *delayLine) write(q <-chan delayed) {
	defer d.wg.Done()
	for p := range q {
		if w := time.Until(p.due); w > 0 {
			time.Sleep(w)
		}
		d.f.Write(p.b)
	}
}

// count records an IPv4 packet that carries IKE: UDP port 500, or 4500
// behind a non-ESP marker (ESP in UDP and keepalives are not IKE).
func (d *delayLine) count(b []byte, now time.Time) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != 17 {
		return
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+8 {
		return
	}
	udp := b[ihl:]
	sport, dport := binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:])
	ike := udp[8:]
	switch {
	case sport == 500 || dport == 500:
	case sport == 4500 || dport == 4500:
		kind, msg := conn.Demux(ike)
		if kind != conn.IKE {
			return
		}
		ike = msg
	default:
		return
	}
	if len(ike) < 28 {
		return
	}
	exch, flags := wire.ExchangeType(ike[18]), ike[19]
	d.mu.Lock()
	defer d.mu.Unlock()
	c := &d.ike
	if c.Messages == 0 {
		c.First = now
	}
	c.Messages++
	c.Bytes += len(b)
	c.Last = now
	c.Span = c.Last.Sub(c.First)
	if flags&0x20 == 0 { // not a response (RFC 7296 §3.1)
		c.Requests++
		c.Exchanges = append(c.Exchanges, exch.String())
	}
}

// countRADIUS records a packet of the RADIUS link: its bytes, and the
// code of a RADIUS message to or from the lab server's ports.
func (d *delayLine) countRADIUS(b []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := &d.ike.RADIUS
	r.Bytes += len(b)
	if len(b) < 20 || b[9] != 17 {
		return
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+8+20 { // UDP header, RADIUS header (RFC 2865 §3)
		return
	}
	udp := b[ihl:]
	sport, dport, code := binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:]), udp[8]
	switch {
	case dport == radiusAuthPort && code == 1:
		r.AccessRequests++
	case sport == radiusAuthPort && code == 11:
		r.Challenges++
	case sport == radiusAuthPort && code == 2:
		r.Accepts++
	case sport == radiusAuthPort && code == 3:
		r.Rejects++
	case dport == radiusAcctPort && code == 4:
		r.AccountingRequests++
	}
}

// add merges a later count into c.
func (c *ikeCount) add(o ikeCount) {
	c.RADIUS.add(o.RADIUS)
	if o.Messages == 0 {
		return
	}
	if c.Messages == 0 {
		c.First = o.First
	}
	c.Messages += o.Messages
	c.Requests += o.Requests
	c.Bytes += o.Bytes
	c.Exchanges = append(c.Exchanges, o.Exchanges...)
	c.Last = o.Last
	c.Span = c.Last.Sub(c.First)
}

func (r *radiusCount) add(o radiusCount) {
	r.AccessRequests += o.AccessRequests
	r.Challenges += o.Challenges
	r.Accepts += o.Accepts
	r.Rejects += o.Rejects
	r.AccountingRequests += o.AccountingRequests
	r.Bytes += o.Bytes
}

// take returns what was counted since the last take and starts afresh.
func (d *delayLine) take() ikeCount {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.ike
	d.ike = ikeCount{}
	return c
}

func (d *delayLine) close() {
	d.f.Close()
	d.wg.Wait()
}
