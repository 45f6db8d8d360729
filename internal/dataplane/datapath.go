package dataplane

import (
	"errors"
	"os"
	"slices"
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
	b := p.newSealBatch(n)
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
		if pkts := b.seal(bufs[:count], sizes); len(pkts) > 0 {
			if err := p.cfg.Transport.Send(pkts); err != nil {
				p.drops.addDetail(DropSend, func() []any { return []any{"err", err} })
			}
		}
	}
}

// sealBatch is the TUN loop's state for sealing one batch (parallel.go).
type sealBatch struct {
	p     *Plane
	pkts  []Packet
	items []sealItem
	crew  crew
}

func (p *Plane) newSealBatch(n int) *sealBatch {
	return &sealBatch{p: p, pkts: make([]Packet, 0, n), items: make([]sealItem, 0, n), crew: crew{pool: p.pool}}
}

// seal seals the packets at bufs[i][Headroom:Headroom+sizes[i]] in place
// and returns them in the order read: SPD lookups and sequence numbers
// here, in order, then the AEAD sealing on every core.
func (b *sealBatch) seal(bufs [][]byte, sizes []int) []Packet {
	p := b.p
	b.pkts, b.items = b.pkts[:0], b.items[:0]
	now := time.Now().UnixNano() // one clock read a batch, as Receive
	p.mu.RLock()
	for i := range bufs {
		p.prepare(p.tab, bufs[i], sizes[i], now, b)
	}
	p.mu.RUnlock()
	// The SAs' Outbound states stay valid if they were deleted meanwhile:
	// their packets still leave, as they would have a moment earlier.
	b.crew.sealAll(b.items)
	failed := false
	for k := range b.items {
		it := &b.items[k]
		b.pkts[it.pkt].Data = it.out
		failed = failed || it.out == nil
		it.dst, it.payload = nil, nil
	}
	if failed {
		b.pkts = slices.DeleteFunc(b.pkts, func(x Packet) bool { return x.Data == nil })
	}
	return b.pkts
}

// seal protects the packet at buf[Headroom:Headroom+n] in place on the
// calling goroutine; now (Unix nanoseconds) is when it was read. (The
// benchmarks' one-packet path; Run seals batches.)
func (p *Plane) seal(t *tables, buf []byte, n int, now int64) (Packet, bool) {
	b := sealBatch{p: p}
	p.prepare(t, buf, n, now, &b)
	b.crew.sealAll(b.items)
	if len(b.pkts) == 0 {
		return Packet{}, false
	}
	if len(b.items) > 0 {
		b.pkts[0].Data = b.items[0].out
	}
	return b.pkts[0], b.pkts[0].Data != nil
}

// prepare does the part of sealing the packet at buf[Headroom:Headroom+n]
// that must be done in order: the SPD lookup (RFC 4301 §5.1), the
// sequence number (RFC 4303 §3.3.3) and the counters. An AEAD packet
// goes into b.items for sealAll; a CBC one is sealed here.
func (p *Plane) prepare(t *tables, buf []byte, n int, now int64, b *sealBatch) {
	pkt := buf[Headroom : Headroom+n]
	f, ok := parseFlow(pkt)
	if !ok {
		p.drops.add(DropMalformed)
		return
	}
	c := t.lookup(&f)
	if c == nil {
		if p.acquire(&f) {
			return
		}
		if f.dst.IsMulticast() || f.dst.IsLinkLocalUnicast() {
			p.drops.addQuiet(DropNoPolicy) // the host's own chatter on the device
		} else {
			p.drops.addDetail(DropNoPolicy, func() []any { return []any{"src", f.src, "dst", f.dst} })
		}
		return
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
	var (
		sealed []byte
		seq    uint64
		err    error
	)
	if len(payload) > esp.MaxPayload {
		err = esp.ErrTooLong
	} else if seq, err = o.Next(); err == nil && !o.Concurrent() {
		sealed, err = o.SealSeq(&b.crew.sc, buf[start:start], payload, nh, 0, seq)
	}
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
		return
	}
	if o.SoftLimit() && c.ctr.softSent.CompareAndSwap(false, true) {
		p.limit(c.inSPI, false) // the sequence number nears its end: rekey
	}
	p.countOut(c, n, now)
	if sealed == nil {
		b.items = append(b.items, sealItem{o: o, dst: buf[start:start], payload: payload, nh: nh, seq: seq, pkt: len(b.pkts)})
	}
	b.pkts = append(b.pkts, Packet{Data: sealed, Path: c.path})
}

// Inbound is one received ESP packet (ipsec.Inbound), with Off at least
// Headroom.
type Inbound = ipsec.Inbound

// Receiver opens ESP packets for one reading goroutine and writes them to
// the TUN device in batches.
type Receiver struct {
	p   *Plane
	out [][]byte
	// A batch's packets past their SA's anti-replay check (rx), those
	// of AEAD SAs to open on every core (opens), parallel.go.
	rx    []rxItem
	opens []openItem
	crew  crew
}

// rxItem is one packet of a batch in Receive: opened already (a CBC SA's,
// by Inbound.Open) or to be opened (opens[open]).
type rxItem struct {
	in      *Inbound
	c       *child
	spi     uint32
	open    int // index in opens, or -1 when opened already
	payload []byte
	nh      byte
	err     error
}

// NewReceiver returns a receiver for one goroutine.
func (p *Plane) NewReceiver() *Receiver { return &Receiver{p: p, crew: crew{pool: p.pool}} }

// Receive opens each packet in place and writes the authentic ones, in
// one call, to the TUN device. The buffers are the caller's again when it
// returns.
//
// In order: the SPI lookup and the anti-replay check (RFC 4303 §3.4.3);
// then the ICV and decryption of the AEAD SAs' packets on every core;
// then, in order again, each authentic packet's window update (which
// drops a copy of a packet accepted a moment before), the inbound policy
// check (RFC 4301 §5.2) and the counters. With ESN, a packet's high
// half is inferred (RFC 4303 Appendix A2.2) from the window as the batch
// found it, not as the batch's earlier packets left it; the two differ
// only for a packet near the window's left edge, about a window old.
func (r *Receiver) Receive(batch []Inbound) {
	p := r.p
	p.mu.RLock()
	t := p.tab
	now := time.Now().UnixNano()
	r.out, r.rx, r.opens = r.out[:0], r.rx[:0], r.opens[:0]
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
		x := rxItem{in: in, c: c, spi: spi, open: -1}
		e := c.in.esp
		c.in.mu.Lock()
		if e.Concurrent() {
			var seq uint64
			if seq, x.err = e.Check(pkt); x.err == nil {
				x.open = len(r.opens)
				r.opens = append(r.opens, openItem{in: e, pkt: pkt, seq: seq})
			}
		} else {
			x.payload, x.nh, x.err = e.Open(pkt)
		}
		c.in.mu.Unlock()
		if x.err != nil {
			if x.err != esp.ErrDummy { // dummy packets are dropped silently (RFC 4303 §2.6)
				p.drops.espError(x.err)
			}
			continue
		}
		r.rx = append(r.rx, x)
	}
	r.crew.openAll(r.opens)
	for k := range r.rx {
		r.deliver(&r.rx[k], now)
	}
	p.mu.RUnlock()
	for k := range r.opens {
		r.opens[k] = openItem{} // no references to the caller's buffers kept
	}
	if len(r.out) == 0 {
		return
	}
	if _, err := p.cfg.TUN.Write(r.out, tunOffset); err != nil {
		p.drops.addDetail(DropTUN, func() []any { return []any{"err", err} })
	}
}

// deliver finishes one packet in batch order: the window update of an
// authentic AEAD packet, then what an opened packet must still pass, and
// it joins r.out.
func (r *Receiver) deliver(x *rxItem, now int64) {
	p, c, in := r.p, x.c, x.in
	if x.open >= 0 {
		o := &r.opens[x.open]
		x.payload, x.nh, x.err = o.payload, o.nh, o.err
		if esp.Authentic(x.err) {
			// RFC 4303 §3.4.3: the window moves only for a packet whose
			// ICV verified, and a copy of one accepted meanwhile (in
			// this batch, or by another reader) is a replay.
			c.in.mu.Lock()
			fresh := c.in.esp.Accept(o.seq)
			c.in.mu.Unlock()
			if !fresh {
				x.err = esp.ErrReplay
			}
		}
	}
	if x.err != nil {
		if x.err != esp.ErrDummy { // dummy packets are dropped silently (RFC 4303 §2.6)
			p.drops.espError(x.err)
		}
		return
	}
	payload, nh, spi := x.payload, x.nh, x.spi
	start := cap(in.Buf) - cap(payload)
	end := start + len(payload)
	ok := true
	if c.mode == ipsec.Transport {
		// Transport mode: rebuild the IP header from the outer one;
		// a NAT in the path changed addresses the TCP or UDP
		// checksum covers (RFC 3948 §3.1.2).
		start, ok = buildIPHeader(in.Buf, start, end, in.Remote.Addr(), in.Local.Addr(), nh, c.path.Encap)
		if !ok {
			p.drops.add(DropMalformed)
			return
		}
	} else {
		if nh != protoIPIP && nh != protoIPv6 {
			p.drops.add(DropNextHeader)
			return
		}
		end = start + len(esp.TrimTFC(payload, nh))
	}
	inner := in.Buf[start:end]
	f, ok := parseFlow(inner)
	if !ok {
		p.drops.add(DropMalformed)
		return
	}
	// RFC 4301 §5.2: what the SA carries must be what it was
	// negotiated for. In transport mode through a NAT the peer's
	// selectors name its private address, so only tunnels and
	// NAT-free transport SAs are checked.
	if (c.mode != ipsec.Transport || !c.path.Encap) && !c.matchesInbound(&f) {
		p.drops.addDetail(DropPolicy, func() []any { return []any{"src", f.src, "dst", f.dst, "spi", spi} })
		return
	}
	p.countIn(c, len(inner), now, in.Remote)
	if start < tunOffset {
		p.drops.add(DropMalformed)
		return
	}
	r.out = append(r.out, in.Buf[start-tunOffset:end])
}
