package hostile

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/wire"
)

// The IKE header (RFC 7296 §3.1) and generic payload header (§3.2)
// offsets the mutations aim at.
const (
	offSPIi     = 0
	offSPIr     = 8
	offNext     = 16
	offVersion  = 17
	offExchange = 18
	offFlags    = 19
	offMsgID    = 20
	offLength   = 24
	hdrLen      = 28

	flagI = 0x08
	flagV = 0x10
	flagR = 0x20

	exInit   = 34
	exAuth   = 35
	exCreate = 36
	exInfo   = 37

	payloadSK  = 46
	payloadSKF = 53

	ikePort  = 500
	nattPort = 4500
	// protoESP counts plain ESP (IP protocol 50) where ports are counted.
	protoESP = 50

	// maxDatagram is the largest datagram sent: 64 KiB less the IP and
	// UDP headers, less what pcapfile keeps for an IPv6 header, so every
	// datagram can be written to the reproducer's capture.
	maxDatagram = 0xffff - 40 - 8
	// maxSpoofed is the largest datagram sent from a forged source: the
	// raw socket does not fragment (link MTU 1500).
	maxSpoofed = 1500 - 28
)

// ikeMsg is one IKE message captured from a real session, without the
// non-ESP marker (RFC 3948 §2.2).
type ikeMsg struct {
	data     []byte
	src, dst netip.AddrPort // where it travelled
}

// espPkt is one ESP-in-UDP datagram captured from a real session.
type espPkt struct {
	data     []byte
	src, dst netip.AddrPort
}

// liveSA is one of the gateway's established IKE SAs, as list-sas shows it.
type liveSA struct {
	id            uint64
	spiI, spiR    uint64
	local, remote netip.AddrPort // the gateway's end and the peer's
	peerInitiator bool           // the peer's requests carry the I flag
	childIn       []uint32       // the gateway's inbound ESP SPIs
}

// window is the highest request message IDs seen on the wire for a live
// IKE SA, in each direction (RFC 7296 §2.3).
type window struct{ peerReq, gwReq uint32 }

// liveState is what the stream aims at; the capture moves the windows as
// the real session exchanges messages during the run.
type liveState struct {
	mu  sync.Mutex
	sas []liveSA
	ids map[uint64]*window // by SPIi
}

func (l *liveState) window(spiI uint64) window {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.ids[spiI]; w != nil {
		return *w
	}
	return window{}
}

// saw records a message of a live IKE SA seen on the wire.
func (l *liveState) saw(b []byte, fromGW bool) {
	if len(b) < hdrLen || b[offFlags]&flagR != 0 {
		return
	}
	spiI := binary.BigEndian.Uint64(b[offSPIi:])
	id := binary.BigEndian.Uint32(b[offMsgID:])
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids == nil {
		l.ids = map[uint64]*window{}
	}
	w := l.ids[spiI]
	if w == nil {
		w = &window{}
		l.ids[spiI] = w
	}
	if fromGW {
		w.gwReq = max(w.gwReq, id)
	} else {
		w.peerReq = max(w.peerReq, id)
	}
}

// datagram is one hostile datagram.
type datagram struct {
	kind string
	// spoof: sent through the raw socket from src, which is not the
	// attacker's; otherwise src names the attacker's socket (port 0: the
	// one with an ephemeral port).
	spoof bool
	// esp50: an IP packet of protocol 50 (plain ESP, RFC 4303), not a UDP
	// datagram: the ports of src and dst mean nothing.
	esp50 bool
	src   netip.AddrPort
	dst   netip.AddrPort
	data  []byte
}

// generator makes the stream: every choice comes from one seeded source,
// so a seed replays the same mutations of the same corpus.
type generator struct {
	r        *rand.Rand
	ike      []ikeMsg
	esp      []espPkt
	live     *liveState
	gw       []netip.Addr     // the gateway's IKE addresses
	own      []netip.AddrPort // the attacker's sockets
	spoofNet netip.Prefix     // random forged sources come from here
}

func newGenerator(seed uint64, ike []ikeMsg, esp []espPkt, live *liveState, gw []netip.Addr, own []netip.AddrPort, spoofNet netip.Prefix) *generator {
	return &generator{r: rand.New(rand.NewPCG(seed, seed^0x6d6966696b65)), ike: ike, esp: esp, live: live, gw: gw, own: own, spoofNet: spoofNet}
}

// kinds are the mutations with their weights (shares of the stream).
var kinds = []struct {
	name   string
	weight int
	gen    func(g *generator) datagram
}{
	{"bitflip", 12, (*generator).bitflip},
	{"header-field", 12, (*generator).headerField},
	{"payload-header", 10, (*generator).payloadHeader},
	{"truncate", 6, (*generator).truncate},
	{"extend", 5, (*generator).extend},
	{"restructure", 6, (*generator).restructure},
	{"live-spi", 14, (*generator).liveSPI},
	{"random-spi", 6, (*generator).randomSPI},
	{"replay", 8, (*generator).replay},
	{"esp-live-spi", 8, (*generator).espLive},
	{"esp-replay", 3, (*generator).espReplay},
	{"marker", 4, (*generator).marker},
	{"oversize", 1, (*generator).oversize},
	{"keepalive", 3, (*generator).keepalive},
	{"garbage", 2, (*generator).garbage},
}

func (g *generator) next() datagram {
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	n := g.r.IntN(total)
	for _, k := range kinds {
		if n < k.weight {
			d := k.gen(g)
			d.kind = k.name
			if d.spoof && !d.esp50 && len(d.data) > maxSpoofed {
				d.spoof, d.src = false, g.ownSrc()
			}
			return d
		}
		n -= k.weight
	}
	panic("unreachable")
}

func (g *generator) chance(percent int) bool { return g.r.IntN(100) < percent }

func (g *generator) pick() []byte {
	return append([]byte(nil), g.ike[g.r.IntN(len(g.ike))].data...)
}

// pickEncrypted picks a message after IKE_SA_INIT (an SK payload), if the
// corpus has one.
func (g *generator) pickEncrypted() []byte {
	for range 16 {
		m := g.ike[g.r.IntN(len(g.ike))]
		if len(m.data) >= hdrLen && m.data[offExchange] != exInit {
			return append([]byte(nil), m.data...)
		}
	}
	return g.pick()
}

func (g *generator) port() uint16 {
	if g.r.IntN(2) == 0 {
		return ikePort
	}
	return nattPort
}

func (g *generator) ownSrc() netip.AddrPort { return g.own[g.r.IntN(len(g.own))] }

func (g *generator) gwDst(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(g.gw[g.r.IntN(len(g.gw))], port)
}

func (g *generator) randomSrc() netip.AddrPort {
	a := g.spoofNet.Addr().As4()
	bits := 32 - g.spoofNet.Bits()
	n := binary.BigEndian.Uint32(a[:]) | g.r.Uint32()&(1<<bits-1)
	binary.BigEndian.PutUint32(a[:], n)
	port := uint16(1024 + g.r.IntN(60000))
	if g.chance(5) {
		port = 0 // no source port (RFC 768): nowhere to answer
	}
	return netip.AddrPortFrom(netip.AddrFrom4(a), port)
}

// frame puts an IKE message in the form its port carries: behind the
// non-ESP marker on the NAT-T port (RFC 3948 §2.2), bare on port 500,
// as the transport frames it (conn.AppendIKE).
func frame(port uint16, m []byte) []byte {
	return conn.AppendIKE(nil, m, port == nattPort)
}

// ike sends an IKE message to a gateway address on a random port from an
// attacker's socket (or, sometimes, a forged source).
func (g *generator) ikeDatagram(m []byte) datagram {
	p := g.port()
	d := datagram{dst: g.gwDst(p), data: frame(p, m), src: g.ownSrc()}
	if g.chance(10) {
		d.spoof, d.src = true, g.randomSrc()
	}
	return d
}

var interesting32 = []uint32{0, 1, 2, 3, 4, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
	0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff}

func (g *generator) flipBits(b []byte, n int) {
	if len(b) == 0 {
		return
	}
	for range n {
		i := g.r.IntN(len(b))
		b[i] ^= 1 << g.r.IntN(8)
	}
}

// bitflip flips one to eight bits anywhere in a real message.
func (g *generator) bitflip() datagram {
	b := g.pick()
	g.flipBits(b, 1+g.r.IntN(8))
	return g.ikeDatagram(b)
}

// headerField sets one to three IKE header fields (RFC 7296 §3.1) to
// boundary or random values.
func (g *generator) headerField() datagram {
	b := g.pick()
	for range 1 + g.r.IntN(3) {
		g.mutateHeader(b)
	}
	return g.ikeDatagram(b)
}

func (g *generator) mutateHeader(b []byte) {
	if len(b) < hdrLen {
		g.flipBits(b, 1)
		return
	}
	switch g.r.IntN(7) {
	case 0: // next payload
		b[offNext] = []byte{0, 1, 32, 33, 41, 46, 48, 49, 53, 54, 55, 127, 128, 255, byte(g.r.Uint32())}[g.r.IntN(15)]
	case 1: // version: major 1, 3 (INVALID_MAJOR_VERSION, §2.5), minor bits
		b[offVersion] = []byte{0x00, 0x10, 0x20, 0x21, 0x2f, 0x30, 0x31, 0xf0, 0xff, byte(g.r.Uint32())}[g.r.IntN(10)]
	case 2: // exchange type
		b[offExchange] = []byte{0, 1, 33, exInit, exAuth, exCreate, exInfo, 38, 43, 44, 240, 255, byte(g.r.Uint32())}[g.r.IntN(13)]
	case 3: // flags: I, V, R and the reserved bits
		b[offFlags] = []byte{0, flagI, flagR, flagI | flagR, flagV, flagV | flagR, 0x07, 0xc0, 0xff, byte(g.r.Uint32())}[g.r.IntN(10)]
	case 4: // message ID
		id := binary.BigEndian.Uint32(b[offMsgID:])
		v := interesting32[g.r.IntN(len(interesting32))]
		if g.chance(50) {
			v = id + uint32(g.r.IntN(9)) - 4
		}
		binary.BigEndian.PutUint32(b[offMsgID:], v)
	case 5: // length
		n := uint32(len(b))
		v := []uint32{0, 1, hdrLen - 1, hdrLen, hdrLen + 1, n - 1, n + 1, n + 4, 2 * n, 65535, 65536, 0xffffffff, g.r.Uint32()}[g.r.IntN(13)]
		binary.BigEndian.PutUint32(b[offLength:], v)
	case 6: // a SPI zeroed or swapped
		switch g.r.IntN(3) {
		case 0:
			clear(b[offSPIi : offSPIi+8])
		case 1:
			clear(b[offSPIr : offSPIr+8])
		default:
			var t [8]byte
			copy(t[:], b[offSPIi:offSPIi+8])
			copy(b[offSPIi:offSPIi+8], b[offSPIr:offSPIr+8])
			copy(b[offSPIr:offSPIr+8], t[:])
		}
	}
}

// span is one generic payload header (RFC 7296 §3.2): its offset, the
// type its predecessor announced, and its Payload Length field.
type span struct {
	off, n int
	typ    byte
}

// chain walks the cleartext payload chain as a parser would, stopping at
// the Encrypted payload (whose Next Payload is the first inner type) or
// at the first header that does not fit.
func chain(b []byte) []span {
	if len(b) < hdrLen {
		return nil
	}
	var out []span
	next, off := b[offNext], hdrLen
	for next != 0 && off+4 <= len(b) && len(out) < 64 {
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		out = append(out, span{off: off, n: n, typ: next})
		if next == payloadSK || next == payloadSKF || n < 4 {
			break
		}
		next, off = b[off], off+n
	}
	return out
}

// payloadHeader changes a generic payload header: Next Payload, the
// critical bit and reserved bits, or Payload Length.
func (g *generator) payloadHeader() datagram {
	b := g.pick()
	c := chain(b)
	if len(c) == 0 {
		g.flipBits(b, 2)
		return g.ikeDatagram(b)
	}
	s := c[g.r.IntN(len(c))]
	switch g.r.IntN(4) {
	case 0:
		b[s.off] = []byte{0, 1, 33, 34, 40, 41, 46, 47, 53, 56, 127, 200, 255, byte(g.r.Uint32())}[g.r.IntN(14)]
	case 1: // critical: an unknown type must then be refused (§2.5)
		b[s.off+1] |= 0x80
		if g.chance(50) {
			b[s.off] = byte(56 + g.r.IntN(72))
		}
	case 2: // reserved bits
		b[s.off+1] |= byte(1 + g.r.IntN(0x7f))
	case 3:
		rest := len(b) - s.off
		v := []int{0, 1, 3, 4, 5, s.n - 1, s.n + 1, rest, rest + 1, 0xffff, g.r.IntN(0x10000)}[g.r.IntN(11)]
		binary.BigEndian.PutUint16(b[s.off+2:], uint16(v))
	}
	return g.ikeDatagram(b)
}

// truncate cuts a message, mostly at the boundaries a parser checks.
func (g *generator) truncate() datagram {
	b := g.pick()
	var cut int
	switch g.r.IntN(4) {
	case 0:
		cut = g.r.IntN(len(b))
	case 1:
		cut = []int{0, 1, 4, 8, 16, 20, hdrLen - 1, hdrLen, hdrLen + 1, hdrLen + 3, hdrLen + 4}[g.r.IntN(11)]
	case 2: // into the ICV or the last payload
		cut = len(b) - 1 - g.r.IntN(32)
	default: // at a payload header
		if c := chain(b); len(c) > 0 {
			cut = c[g.r.IntN(len(c))].off + g.r.IntN(5)
		}
	}
	cut = min(max(cut, 0), len(b))
	b = b[:cut]
	if g.chance(50) && len(b) >= hdrLen { // a header that agrees, so the parser goes on
		binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)))
	}
	return g.ikeDatagram(b)
}

// extend appends zeros or random octets after the message.
func (g *generator) extend() datagram {
	b := g.pick()
	tail := make([]byte, 1+g.r.IntN(256))
	if g.chance(50) {
		g.fill(tail)
	}
	b = append(b, tail...)
	if g.chance(50) && len(b) >= hdrLen {
		binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)))
	}
	return g.ikeDatagram(b)
}

func (g *generator) fill(b []byte) {
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
}

// rawPayload is one outer payload, for rebuilding a chain.
type rawPayload struct {
	typ, flags byte
	inner      byte // the Encrypted payload's Next Payload: the first inner type
	body       []byte
}

// payloads splits a message's outer chain; ok only when it is well formed.
func payloads(b []byte) ([]rawPayload, bool) {
	c := chain(b)
	if len(c) == 0 {
		return nil, false
	}
	var out []rawPayload
	for i, s := range c {
		if s.n < 4 || s.off+s.n > len(b) {
			return nil, false
		}
		p := rawPayload{typ: s.typ, flags: b[s.off+1], body: b[s.off+4 : s.off+s.n]}
		if s.typ == payloadSK || s.typ == payloadSKF {
			p.inner = b[s.off]
		}
		out = append(out, p)
		if i == len(c)-1 && s.off+s.n != len(b) {
			return nil, false
		}
	}
	return out, true
}

// rebuild makes a message of hdr's header and ps, with a consistent
// chain and lengths, so the parser reaches whatever the mutation broke.
func rebuild(hdr []byte, ps []rawPayload) []byte {
	b := append([]byte(nil), hdr[:hdrLen]...)
	b[offNext] = 0
	if len(ps) > 0 {
		b[offNext] = ps[0].typ
	}
	for i, p := range ps {
		next := byte(0)
		if i+1 < len(ps) {
			next = ps[i+1].typ
		} else if p.typ == payloadSK || p.typ == payloadSKF {
			next = p.inner
		}
		b = append(b, next, p.flags)
		b = binary.BigEndian.AppendUint16(b, uint16(min(4+len(p.body), 0xffff)))
		b = append(b, p.body...)
	}
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)))
	return b
}

// restructure duplicates, reorders, drops or inserts whole payloads,
// keeping the chain consistent.
func (g *generator) restructure() datagram {
	b := g.pick()
	ps, ok := payloads(b)
	if !ok {
		g.flipBits(b, 1)
		return g.ikeDatagram(b)
	}
	i := g.r.IntN(len(ps))
	switch g.r.IntN(5) {
	case 0: // the same payload again, up to three times (two SA, KE, Nonce, SK payloads)
		for range 1 + g.r.IntN(3) {
			ps = append(ps[:i+1], ps[i:]...)
		}
	case 1:
		j := g.r.IntN(len(ps))
		ps[i], ps[j] = ps[j], ps[i]
	case 2:
		ps = append(ps[:i], ps[i+1:]...)
	case 3: // an unknown payload, critical or not (§2.5)
		body := make([]byte, g.r.IntN(64))
		g.fill(body)
		flags := byte(0)
		if g.chance(50) {
			flags = 0x80
		}
		u := rawPayload{typ: byte(56 + g.r.IntN(72)), flags: flags, body: body}
		ps = append(ps[:i], append([]rawPayload{u}, ps[i:]...)...)
	case 4: // the last payload first (an Encrypted payload that is not last, §3.14)
		last := ps[len(ps)-1]
		ps = append([]rawPayload{last}, ps[:len(ps)-1]...)
	}
	if len(ps) > 32 {
		ps = ps[:32]
	}
	return g.ikeDatagram(rebuild(b, ps))
}

// liveSPI aims a real message at one of the gateway's running IKE SAs:
// its SPIs, the I flag its peer uses, a message ID around the live window
// in either direction, often from the peer's own address.
func (g *generator) liveSPI() datagram {
	g.live.mu.Lock()
	sas := g.live.sas
	g.live.mu.Unlock()
	if len(sas) == 0 {
		return g.randomSPI()
	}
	s := sas[g.r.IntN(len(sas))]
	b := g.pickEncrypted()
	if len(b) < hdrLen {
		b = append(b, make([]byte, hdrLen-len(b))...)
	}
	spiI, spiR := s.spiI, s.spiR
	switch g.r.IntN(10) {
	case 0:
		spiR = 0
	case 1:
		spiR = g.r.Uint64()
	case 2:
		spiI = g.r.Uint64()
	}
	binary.BigEndian.PutUint64(b[offSPIi:], spiI)
	binary.BigEndian.PutUint64(b[offSPIr:], spiR)
	flags := byte(0)
	if s.peerInitiator {
		flags = flagI
	}
	if g.chance(10) {
		flags ^= flagI
	}
	response := g.chance(35)
	if response {
		flags |= flagR
	}
	b[offFlags] = flags
	b[offExchange] = []byte{exAuth, exCreate, exCreate, exInfo, exInfo, exInfo, exInit}[g.r.IntN(7)]
	w := g.live.window(s.spiI)
	base := w.peerReq // the peer's next request, or a retransmission
	if response {
		base = w.gwReq // an answer to the gateway's request
	}
	binary.BigEndian.PutUint32(b[offMsgID:], base+uint32(g.r.IntN(12))-3)
	if g.chance(30) {
		g.flipBits(b[hdrLen:], 1+g.r.IntN(4))
	}
	p := nattPort
	if g.chance(25) {
		p = ikePort
	}
	d := datagram{dst: netip.AddrPortFrom(s.local.Addr(), uint16(p)), data: frame(uint16(p), b), src: g.ownSrc()}
	if g.chance(50) {
		d.spoof, d.src = true, s.remote
	}
	return d
}

// randomSPI gives a real message random (or zero) SPIs: a valid
// IKE_SA_INIT so becomes a new half-open SA (or a COOKIE, §2.6).
func (g *generator) randomSPI() datagram {
	b := g.pick()
	if len(b) < hdrLen {
		return g.ikeDatagram(b)
	}
	spiI, spiR := g.r.Uint64(), uint64(0)
	if g.chance(30) {
		spiR = g.r.Uint64()
	}
	if g.chance(5) {
		spiI = 0
	}
	binary.BigEndian.PutUint64(b[offSPIi:], spiI)
	binary.BigEndian.PutUint64(b[offSPIr:], spiR)
	if g.chance(20) {
		g.flipBits(b[hdrLen:], 1)
	}
	return g.ikeDatagram(b)
}

// replay sends a message of the real sessions unchanged, from its own
// source (forged) or the attacker's.
func (g *generator) replay() datagram {
	m := g.ike[g.r.IntN(len(g.ike))]
	p := m.dst.Port()
	if g.chance(20) {
		p = g.port()
	}
	d := datagram{data: frame(p, append([]byte(nil), m.data...)), src: g.ownSrc()}
	d.dst = netip.AddrPortFrom(m.dst.Addr(), p)
	if !g.isGW(m.dst.Addr()) { // a message the gateway sent: reflect it
		d.dst = netip.AddrPortFrom(m.src.Addr(), p)
	} else if g.chance(50) {
		d.spoof, d.src = true, m.src
	}
	return d
}

func (g *generator) isGW(a netip.Addr) bool {
	for _, x := range g.gw {
		if x == a {
			return true
		}
	}
	return false
}

// espLive sends ESP-looking packets (RFC 4303 §2) to a live Child SA's
// inbound SPI, or a random one: any sequence number, any length; in UDP
// on the NAT-T port (RFC 3948), on port 500, or as plain ESP (IP
// protocol 50, how the live SAs carry their traffic without a NAT).
func (g *generator) espLive() datagram {
	g.live.mu.Lock()
	sas := g.live.sas
	g.live.mu.Unlock()
	spi := g.r.Uint32() | 1
	dst := g.gwDst(nattPort)
	var from netip.AddrPort
	if len(sas) > 0 && g.chance(80) {
		s := sas[g.r.IntN(len(sas))]
		if len(s.childIn) > 0 {
			spi = s.childIn[g.r.IntN(len(s.childIn))]
		}
		dst = netip.AddrPortFrom(s.local.Addr(), nattPort)
		from = s.remote
	}
	n := []int{4, 8, 9, 16, 24, 25, 40, 64, 100, 1400, g.r.IntN(1400)}[g.r.IntN(11)]
	b := make([]byte, max(n, 8))
	g.fill(b)
	binary.BigEndian.PutUint32(b, spi)
	seq := []uint32{0, 1, 2, 0xffffffff, g.r.Uint32(), uint32(g.r.IntN(64))}[g.r.IntN(6)]
	binary.BigEndian.PutUint32(b[4:], seq)
	return g.espTo(b[:n], dst.Addr(), from)
}

// espTo sends an ESP packet to the gateway address dst in one of its
// three forms, from the attacker or (half the time) forged from the live
// peer from.
func (g *generator) espTo(b []byte, dst netip.Addr, from netip.AddrPort) datagram {
	d := datagram{data: b, src: g.ownSrc()}
	switch n := g.r.IntN(10); {
	case n < 5:
		d.dst = netip.AddrPortFrom(dst, nattPort)
	case n < 6:
		d.dst = netip.AddrPortFrom(dst, ikePort)
	default:
		d.esp50, d.dst = true, netip.AddrPortFrom(dst, 0)
	}
	if from.IsValid() && g.chance(50) {
		d.spoof, d.src = true, from
	}
	return d
}

// espReplay resends a real ESP packet to the gateway (the anti-replay
// window, RFC 4303 §3.4.3), sometimes with an octet changed.
func (g *generator) espReplay() datagram {
	if len(g.esp) == 0 {
		return g.espLive()
	}
	m := g.esp[g.r.IntN(len(g.esp))]
	b := append([]byte(nil), m.data...)
	if g.chance(30) {
		g.flipBits(b[min(8, len(b)):], 1)
	}
	if !g.isGW(m.dst.Addr()) { // the gateway's own: reflected
		return g.espTo(b, m.src.Addr(), netip.AddrPort{})
	}
	return g.espTo(b, m.dst.Addr(), m.src)
}

// marker gets the non-ESP marker (RFC 3948 §2.2) wrong: present on port
// 500, absent on 4500, alone, short, doubled.
func (g *generator) marker() datagram {
	b := g.pick()
	d := datagram{src: g.ownSrc()}
	switch g.r.IntN(7) {
	case 0:
		d.dst, d.data = g.gwDst(ikePort), frame(nattPort, b)
	case 1:
		d.dst, d.data = g.gwDst(nattPort), b
	case 2:
		d.dst, d.data = g.gwDst(nattPort), []byte{0, 0, 0, 0}
	case 3:
		d.dst, d.data = g.gwDst(nattPort), make([]byte, 1+g.r.IntN(3))
	case 4:
		d.dst, d.data = g.gwDst(nattPort), frame(nattPort, b[:min(len(b), g.r.IntN(hdrLen+1))])
	case 5:
		d.dst, d.data = g.gwDst(nattPort), frame(nattPort, frame(nattPort, b))
	case 6:
		tail := make([]byte, g.r.IntN(64))
		g.fill(tail)
		d.dst, d.data = g.gwDst(nattPort), frame(nattPort, tail)
	}
	return d
}

// oversize makes a datagram far larger than any IKE message, up to 64 KiB,
// its Length field telling the truth or not.
func (g *generator) oversize() datagram {
	b := g.pick()
	n := []int{1473, 4096, 9000, 32768, 65535 - 28, maxDatagram, 1500 + g.r.IntN(maxDatagram-1500)}[g.r.IntN(7)]
	p := g.port()
	n = min(n, maxDatagram) - len(frame(p, nil))
	if n > len(b) {
		tail := make([]byte, n-len(b))
		g.fill(tail[:min(len(tail), 256)])
		b = append(b, tail...)
	}
	if g.chance(50) && len(b) >= hdrLen {
		binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)))
	}
	return datagram{dst: g.gwDst(p), data: frame(p, b), src: g.ownSrc()}
}

// keepalive sends NAT-T keepalives (RFC 3948 §2.3) and their lookalikes:
// one 0xff octet, one other octet, nothing, a few 0xff.
func (g *generator) keepalive() datagram {
	var b []byte
	switch g.r.IntN(4) {
	case 0:
		b = []byte{0xff}
	case 1:
		b = []byte{byte(g.r.Uint32())}
	case 2:
		b = []byte{}
	case 3:
		b = []byte{0xff, 0xff, 0xff}[:2+g.r.IntN(2)]
	}
	p := nattPort
	if g.chance(25) {
		p = ikePort
	}
	return datagram{dst: g.gwDst(uint16(p)), data: b, src: g.ownSrc()}
}

// garbage is random octets of random length.
func (g *generator) garbage() datagram {
	b := make([]byte, g.r.IntN(2048))
	g.fill(b)
	p := g.port()
	return datagram{dst: g.gwDst(p), data: b, src: g.ownSrc()}
}

// testCorpus is a small corpus built with the wire package: an
// IKE_SA_INIT request and an INFORMATIONAL request with an SK payload.
func testCorpus(t *testing.T) ([]ikeMsg, []espPkt, *liveState) {
	t.Helper()
	gw := netip.MustParseAddrPort("10.92.1.2:500")
	ue := netip.MustParseAddrPort("10.91.1.2:500")
	init := wire.Message{Header: wire.Header{SPIi: 0x1122334455667788, Exchange: wire.IKESAInit, Flags: wire.FlagInitiator},
		Payloads: []wire.Payload{&wire.Nonce{Data: make([]byte, 32)}, wire.NewNotify(wire.NotifyNATDetectionSourceIP, make([]byte, 20))}}
	b1, err := init.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// An SK payload (RFC 7296 §3.14) of 48 octets, encoded by hand: the
	// wire package builds those only through ikecrypto.
	h := wire.Header{SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00, NextPayload: wire.PayloadSK, MajorVersion: 2,
		Exchange: wire.Informational, Flags: wire.FlagInitiator, MessageID: 2, Length: hdrLen + 4 + 48}
	b2 := append(h.AppendTo(nil), byte(wire.PayloadNotify), 0, 0, 4+48)
	b2 = append(b2, make([]byte, 48)...)
	if _, err := wire.ParseMessage(b2); err != nil {
		t.Fatalf("test corpus: %v", err)
	}
	if _, err := wire.ParseMessage(b1); err != nil {
		t.Fatalf("test corpus: %v", err)
	}
	ike := []ikeMsg{{data: b1, src: ue, dst: gw}, {data: b2, src: netip.AddrPortFrom(ue.Addr(), 4500), dst: netip.AddrPortFrom(gw.Addr(), 4500)}}
	esp := []espPkt{{data: make([]byte, 64), src: netip.AddrPortFrom(ue.Addr(), 4500), dst: netip.AddrPortFrom(gw.Addr(), 4500)}}
	live := &liveState{sas: []liveSA{{id: 1, spiI: 0x1122334455667788, spiR: 0x99aabbccddeeff00, local: netip.AddrPortFrom(gw.Addr(), 4500),
		remote: netip.AddrPortFrom(ue.Addr(), 4500), peerInitiator: true, childIn: []uint32{0xc0ffee01}}}}
	live.saw(b2, false)
	return ike, esp, live
}

// TestGeneratorReplaysBySeed: the -hostile.seed flag is only a replay if
// the same seed makes the same stream of the same corpus.
func TestGeneratorReplaysBySeed(t *testing.T) {
	ike, esp, live := testCorpus(t)
	gwAddrs := []netip.Addr{netip.MustParseAddr("10.92.1.2"), netip.MustParseAddr("10.92.2.2")}
	own := []netip.AddrPort{netip.MustParseAddrPort("10.94.0.2:500"), netip.MustParseAddrPort("10.94.0.2:0")}
	stream := func(seed uint64) []datagram {
		g := newGenerator(seed, ike, esp, live, gwAddrs, own, spoofNet)
		var out []datagram
		for range 3000 {
			out = append(out, g.next())
		}
		return out
	}
	a, b, c := stream(7), stream(7), stream(8)
	same := func(x, y []datagram) bool {
		for i := range x {
			if x[i].kind != y[i].kind || x[i].dst != y[i].dst || x[i].src != y[i].src || !bytes.Equal(x[i].data, y[i].data) {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatal("seed 7 made two different streams")
	}
	if same(a, c) {
		t.Fatal("seeds 7 and 8 made the same stream")
	}
	seen := map[string]bool{}
	ports := map[uint16]bool{}
	for _, d := range a {
		seen[d.kind] = true
		ports[d.port()] = true
		if len(d.data) > maxDatagram || d.spoof && len(d.data) > maxSpoofed {
			t.Fatalf("%s: a datagram of %d octets (spoofed %v)", d.kind, len(d.data), d.spoof)
		}
		if !d.spoof && !slices.Contains(own, d.src) {
			t.Fatalf("%s: from %v, not one of the attacker's sockets", d.kind, d.src)
		}
		if !slices.Contains(gwAddrs, d.dst.Addr()) || !d.esp50 && d.dst.Port() != ikePort && d.dst.Port() != nattPort {
			t.Fatalf("%s: to %v, not the gateway's IKE ports", d.kind, d.dst)
		}
	}
	for _, k := range kinds {
		if !seen[k.name] {
			t.Errorf("3000 datagrams without a %s", k.name)
		}
	}
	if !ports[ikePort] || !ports[nattPort] || !ports[protoESP] {
		t.Errorf("ports used: %v", ports)
	}
}

// TestRebuildKeepsChain: a restructured message is well formed as far as
// lengths and the payload chain go, so the parser reaches the payloads.
func TestRebuildKeepsChain(t *testing.T) {
	ike, _, _ := testCorpus(t)
	ps, ok := payloads(ike[0].data)
	if !ok || len(ps) != 2 {
		t.Fatalf("payloads of a real IKE_SA_INIT: %v %v", ps, ok)
	}
	if got := rebuild(ike[0].data, ps); !bytes.Equal(got, ike[0].data) {
		t.Fatalf("rebuild changed an untouched message:\n%x\n%x", got, ike[0].data)
	}
	dup := rebuild(ike[0].data, append(ps, ps[0]))
	m, err := wire.ParseMessage(dup)
	if err != nil || len(m.Payloads) != 3 {
		t.Fatalf("a duplicated payload: %v, %d payloads", err, len(m.Payloads))
	}
	sk, ok := payloads(ike[1].data)
	if !ok || len(sk) != 1 || sk[0].inner != byte(wire.PayloadNotify) {
		t.Fatalf("SK payload: %+v %v", sk, ok)
	}
	if got := rebuild(ike[1].data, sk); !bytes.Equal(got, ike[1].data) {
		t.Fatalf("rebuild changed an SK message:\n%x\n%x", got, ike[1].data)
	}
}
