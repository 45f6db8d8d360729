package dataplane

import (
	"errors"
	"os"
	"time"

	"github.com/mifike/mifike/internal/esp"
	"github.com/mifike/mifike/internal/ipsec"
)

// Run reads the TUN device until it is closed: each batch of packets is
// matched against the SPD, sealed in place into its SA and sent.
func (p *Plane) Run() error {
	dev := p.cfg.TUN
	n := max(dev.BatchSize(), 1)
	mtu, err := dev.MTU()
	if err != nil || mtu <= 0 {
		mtu = 1500
	}
	// With GSO the device splits large segments into packets of at most
	// the MTU; the tail leaves room for ESP padding and the ICV.
	size := Headroom + mtu + 128
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	sizes := make([]int, n)
	pkts := make([]Packet, 0, n)
	for {
		count, err := dev.Read(bufs, sizes, Headroom)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			// wireguard's tun reports a batch it had to cut short
			// (ErrTooManySegments) with the packets it did read.
			if count == 0 {
				p.log.Debug("TUN read", "err", err)
				continue
			}
		}
		pkts = pkts[:0]
		now := time.Now().UnixNano() // one clock read a batch, as Receive
		p.mu.RLock()
		for i := range count {
			if pkt, ok := p.seal(p.tab, bufs[i], sizes[i], now); ok {
				pkts = append(pkts, pkt)
			}
		}
		p.mu.RUnlock()
		if len(pkts) > 0 {
			if err := p.cfg.Transport.Send(pkts); err != nil {
				p.drops.addDetail(DropSend, func() []any { return []any{"err", err} })
			}
		}
	}
}

// seal protects the packet at buf[Headroom:Headroom+n] in place; now
// (Unix nanoseconds) is when it was read.
func (p *Plane) seal(t *tables, buf []byte, n int, now int64) (Packet, bool) {
	pkt := buf[Headroom : Headroom+n]
	f, ok := parseFlow(pkt)
	if !ok {
		p.drops.add(DropMalformed)
		return Packet{}, false
	}
	c := t.lookup(&f)
	if c == nil {
		if p.acquire(&f) {
			return Packet{}, false
		}
		if f.dst.IsMulticast() || f.dst.IsLinkLocalUnicast() {
			p.drops.addQuiet(DropNoPolicy) // the host's own chatter on the device
		} else {
			p.drops.addDetail(DropNoPolicy, func() []any { return []any{"src", f.src, "dst", f.dst} })
		}
		return Packet{}, false
	}
	payload, nh := pkt, byte(protoIPIP)
	if f.src.Is6() {
		nh = protoIPv6
	}
	if c.mode == ipsec.Transport {
		// Transport mode protects the upper layer only (RFC 4303 §3.1.1);
		// the peer rebuilds the IP header from the outer one.
		payload, nh = pkt[f.hdrLen:], f.proto
	}
	o := c.out.esp
	start := Headroom + (n - len(payload)) - o.HeaderLen()
	sealed, err := o.Seal(buf[start:start], payload, nh, 0)
	if err != nil {
		switch err {
		case esp.ErrSeqExhausted:
			p.drops.add(DropSeqExhausted)
			if c.ctr.hardSent.CompareAndSwap(false, true) {
				p.limit(c.inSPI, true)
			}
		case esp.ErrTooLong:
			p.drops.add(DropTooLong)
		default:
			p.drops.add(DropMalformed)
		}
		return Packet{}, false
	}
	if o.SoftLimit() && c.ctr.softSent.CompareAndSwap(false, true) {
		p.limit(c.inSPI, false) // the sequence number nears its end: rekey
	}
	p.countOut(c, n, now)
	return Packet{Data: sealed, Path: c.path}, true
}

// Inbound is one received ESP packet (ipsec.Inbound), with Off at least
// Headroom.
type Inbound = ipsec.Inbound

// Receiver opens ESP packets for one reading goroutine and writes them to
// the TUN device in batches.
type Receiver struct {
	p   *Plane
	out [][]byte
}

// NewReceiver returns a receiver for one goroutine.
func (p *Plane) NewReceiver() *Receiver { return &Receiver{p: p} }

// Receive opens each packet in place and writes the authentic ones, in
// one call, to the TUN device. The buffers are the caller's again when it
// returns.
func (r *Receiver) Receive(batch []Inbound) {
	p := r.p
	p.mu.RLock()
	t := p.tab
	now := time.Now().UnixNano()
	r.out = r.out[:0]
	for i := range batch {
		in := &batch[i]
		if in.Off < Headroom || in.N < 0 || in.Off+in.N > len(in.Buf) {
			p.drops.add(DropMalformed)
			continue
		}
		pkt := in.Buf[in.Off : in.Off+in.N]
		spi, ok := esp.ParseSPI(pkt)
		if !ok {
			p.drops.add(DropShort)
			continue
		}
		c := t.children[spi]
		if c == nil {
			p.drops.addDetail(DropUnknownSPI, func() []any { return []any{"spi", spi, "from", in.Remote} })
			p.unknownSPI(in.Remote.Addr(), spi)
			continue
		}
		c.in.mu.Lock()
		payload, nh, err := c.in.esp.Open(pkt)
		c.in.mu.Unlock()
		if err != nil {
			if err != esp.ErrDummy { // dummy packets are dropped silently (RFC 4303 §2.6)
				p.drops.espError(err)
			}
			continue
		}
		start := cap(in.Buf) - cap(payload)
		end := start + len(payload)
		if c.mode == ipsec.Transport {
			// Transport mode: rebuild the IP header from the outer one;
			// a NAT in the path changed addresses the TCP or UDP
			// checksum covers (RFC 3948 §3.1.2).
			start, ok = buildIPHeader(in.Buf, start, end, in.Remote.Addr(), in.Local.Addr(), nh, c.path.Encap)
			if !ok {
				p.drops.add(DropMalformed)
				continue
			}
		} else {
			if nh != protoIPIP && nh != protoIPv6 {
				p.drops.add(DropNextHeader)
				continue
			}
			end = start + len(esp.TrimTFC(payload, nh))
		}
		inner := in.Buf[start:end]
		f, ok := parseFlow(inner)
		if !ok {
			p.drops.add(DropMalformed)
			continue
		}
		// RFC 4301 §5.2: what the SA carries must be what it was
		// negotiated for. In transport mode through a NAT the peer's
		// selectors name its private address, so only tunnels and
		// NAT-free transport SAs are checked.
		if (c.mode != ipsec.Transport || !c.path.Encap) && !c.matchesInbound(&f) {
			p.drops.addDetail(DropPolicy, func() []any { return []any{"src", f.src, "dst", f.dst, "spi", spi} })
			continue
		}
		p.countIn(c, len(inner), now, in.Remote)
		if start < tunOffset {
			p.drops.add(DropMalformed)
			continue
		}
		r.out = append(r.out, in.Buf[start-tunOffset:end])
	}
	p.mu.RUnlock()
	if len(r.out) == 0 {
		return
	}
	if _, err := p.cfg.TUN.Write(r.out, tunOffset); err != nil {
		p.drops.addDetail(DropTUN, func() []any { return []any{"err", err} })
	}
}
