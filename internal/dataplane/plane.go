// Package dataplane carries IP traffic through the engine's Child SAs in
// user space (RFC 4303 ESP over a TUN device), for kernels without an ESP
// transform.
//
// The structure follows wireguard-go: a TUN device, one goroutine that
// reads batches of packets from it, picks each packet's Child SA from the
// security policy database (SPD, RFC 4301 §4.4.1) and seals it, then
// hands the batch to a Transport; receivers (the daemon's NAT-T socket
// reader and the raw ESP socket readers) open batches of ESP packets in
// place and write them to the TUN device in one call. SA tables are
// immutable snapshots swapped atomically, so the hot path takes no lock
// except each inbound SA's own (its anti-replay window).
//
// Every outbound packet leaves on its own SA's path: from the SA's local
// address, through its interface when MOBIKE pinned one. That is what
// lets one VPN per interface work: two clones of an IKE SA carry two
// Child SAs whose packets take two different links.
package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mifike/mifike/internal/esp"
	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// Headroom is the space a receive buffer must leave before the ESP packet
// (and a TUN read before the inner packet): room for a transport-mode IP
// header and the TUN device's virtio header when decrypted in place, and
// for the ESP header and IV when sealing in place.
const Headroom = 96

// tunOffset is where packets start in buffers handed to the TUN device;
// wireguard's tun needs at least its 10-octet virtio header there.
const tunOffset = 16

// Device is the TUN device (golang.zx2c4.com/wireguard/tun.Device has
// these methods).
type Device interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	MTU() (int, error)
	Close() error
}

// Path is where an SA's ESP packets go: from Local to Remote, through
// interface Ifindex when non-zero, in UDP (RFC 3948) when Encap, in the
// IKE SA's TCP stream (RFC 9329 §3.2) when TCP.
type Path struct {
	Local, Remote netip.AddrPort
	Ifindex       int
	Encap         bool
	TCP           bool

	// Prepared once per path for the Linux transport.
	oob  []byte
	addr net.Addr
	out  any // the transport's sender for this path
}

// Packet is one sealed ESP packet and its path.
type Packet struct {
	Data []byte
	Path *Path
}

// Transport sends sealed ESP packets. Send is called from one goroutine.
type Transport interface {
	Send(pkts []Packet) error
	// Prepare fills in what Send needs of a path, once.
	Prepare(p *Path)
}

// Config configures a Plane.
type Config struct {
	TUN       Device
	Transport Transport
	Log       *slog.Logger
	// OnLimit reports a Child SA (by inbound SPI) that crossed its soft
	// (rekey) or hard (delete) byte limit, or whose sequence number is
	// about to wrap (RFC 4303 §3.3.3). It must not block.
	OnLimit func(inSPI uint32, hard bool)
	// OnUnknownSPI hears of ESP for an SPI no Child SA has, at most
	// once per unknownSPIEvery in all (the engine may tell the peer,
	// RFC 7296 §1.5). It must not block.
	OnUnknownSPI func(from netip.Addr, spi uint32)
	// OnAcquire asks for the Child SA of a trap (SetTraps) a packet from
	// src to dst needed, at most once per acquireEvery per trap. It must
	// not block.
	OnAcquire func(trap int, src, dst netip.Addr)
	// ReplayWindow in packets (esp.DefaultReplayWindow when 0).
	ReplayWindow int
}

// Plane is the running data plane.
type Plane struct {
	cfg Config
	log *slog.Logger
	// mu guards tab: the packet loops hold it for reading over a batch,
	// Install/Update/Delete change the tables in place under the write
	// lock. (Immutable snapshots cost a copy of every table per install:
	// a gateway's handshake rate fell with each SA it held.)
	mu    sync.RWMutex
	tab   *tables
	drops dropCounters
	order uint64
	// traps are the on-demand Child SAs (trap.go), under mu.
	traps []*trap
	// unknownAt is when OnUnknownSPI was last called (UnixNano).
	unknownAt atomic.Int64
	// pool seals and opens on every core (parallel.go).
	pool *pool
}

// unknownSPIEvery spaces the OnUnknownSPI calls: a flood of ESP with
// made-up SPIs costs a counter, and the engine hears of one now and then.
const unknownSPIEvery = 100 * time.Millisecond

func (p *Plane) unknownSPI(from netip.Addr, spi uint32) {
	f := p.cfg.OnUnknownSPI
	if f == nil {
		return
	}
	now := time.Now().UnixNano()
	last := p.unknownAt.Load()
	if now-last < int64(unknownSPIEvery) || !p.unknownAt.CompareAndSwap(last, now) {
		return
	}
	f(from, spi)
}

// child is one installed Child SA: both directions.
type child struct {
	inSPI, outSPI uint32
	ikeSA         uint64
	name          string
	mode          ipsec.Mode
	localTS       []wire.Selector
	remoteTS      []wire.Selector
	path          *Path
	outbound      bool
	order         uint64 // installation order: newer SAs win ties (make-before-break)
	// size orders the SPD (rangeSize of remoteTS), computed once: every
	// table change sorts all SAs, and computing it per comparison made
	// each install cost milliseconds with thousands of SAs.
	size sizeKey

	out *outState
	in  *inState
	ctr *counters
}

type outState struct {
	esp *esp.Outbound // used only by the TUN goroutine
}

type inState struct {
	mu  sync.Mutex
	esp *esp.Inbound
}

// counters are a Child SA's traffic (what Counters returns), updated
// atomically on the hot path, and its byte limits.
type counters struct {
	ipsec.Counters

	softBytes, hardBytes uint64
	softSent, hardSent   atomic.Bool
}

// tables are the installed SAs, changed in place under Plane.mu.
type tables struct {
	children map[uint32]*child // by inbound SPI
	// out is the SPD: outbound-capable SAs, most specific remote
	// selectors first, then the newest.
	out []*child
	// host indexes the SAs whose remote selectors are single addresses
	// (a gateway's clients), for a lookup that does not scan.
	host map[netip.Addr][]*child
}

// New makes a plane; Run starts its TUN loop.
func New(cfg Config) *Plane {
	p := &Plane{cfg: cfg, log: cfg.Log, pool: sharedPool()}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.tab = &tables{children: map[uint32]*child{}, host: map[netip.Addr][]*child{}}
	p.drops.log = p.log
	return p
}

// Install adds both directions of a Child SA.
func (p *Plane) Install(sa ipsec.ChildSA) error {
	if sa.Protocol != wire.ProtoESP {
		return fmt.Errorf("dataplane: Child SA %08x uses %v; only ESP is carried", sa.InSPI, sa.Protocol)
	}
	in, err := esp.NewInbound(esp.Config{SPI: sa.InSPI, Encr: sa.Encr, KeyBits: sa.KeyBits, Integ: sa.Integ,
		EncKey: sa.EncKeyIn, IntegKey: sa.IntegKeyIn, ESN: sa.ESN, ReplayWindow: p.cfg.ReplayWindow})
	if err != nil {
		return fmt.Errorf("dataplane: inbound SA %08x: %w", sa.InSPI, err)
	}
	out, err := esp.NewOutbound(esp.Config{SPI: sa.OutSPI, Encr: sa.Encr, KeyBits: sa.KeyBits, Integ: sa.Integ,
		EncKey: sa.EncKeyOut, IntegKey: sa.IntegKeyOut, ESN: sa.ESN})
	if err != nil {
		return fmt.Errorf("dataplane: outbound SA %08x: %w", sa.OutSPI, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.order++
	c := &child{inSPI: sa.InSPI, outSPI: sa.OutSPI, ikeSA: sa.IKESA, name: sa.Name, mode: sa.Mode,
		localTS: sa.LocalTS, remoteTS: sa.RemoteTS, path: p.path(sa), // never changed (ipsec.ChildSA)
		outbound: sa.Outbound, order: p.order, size: rangeSize(sa.RemoteTS, sa.LocalTS),
		out: &outState{esp: out}, in: &inState{esp: in}, ctr: &counters{softBytes: sa.SoftBytes, hardBytes: sa.HardBytes}}
	if old := p.tab.children[c.inSPI]; old != nil {
		p.tab.remove(old)
	}
	p.tab.add(c)
	return nil
}

// Update changes an installed Child SA's path (a MOBIKE move: the keys,
// sequence numbers and replay window stay) or lets it send.
func (p *Plane) Update(sa ipsec.ChildSA) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.tab.children[sa.InSPI]
	if old == nil {
		return fmt.Errorf("dataplane: no Child SA %08x to update", sa.InSPI)
	}
	c := *old
	c.path = p.path(sa)
	c.outbound = sa.Outbound
	p.tab.remove(old)
	p.tab.add(&c)
	return nil
}

// Delete removes a Child SA.
func (p *Plane) Delete(inSPI uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.tab.children[inSPI]; c != nil {
		p.tab.remove(c)
	}
}

// Counters returns a Child SA's counters, nil when it is not installed.
func (p *Plane) Counters(inSPI uint32) *ipsec.Counters {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if c := p.tab.children[inSPI]; c != nil {
		return &c.ctr.Counters
	}
	return nil
}

// SweepIdle drops the keyed AEAD contexts (esp.Inbound.Idle,
// esp.Outbound.Idle) of the directions of Child SAs that have carried
// no packet since since, keeping their keys: the next packet keys them
// again, about a microsecond. Go's AES-GCM context is about 750 octets,
// so a gateway's idle road warriors hold 1.5 kB less each (issue 18,
// memory per SA). Inbound counts authentic packets only (LastIn): a
// stream of forged packets for an idle SA makes it key its context once
// per sweep, not per packet. It returns how many contexts it dropped.
func (p *Plane) SweepIdle(since time.Time) int {
	t := since.UnixNano()
	p.mu.RLock()
	defer p.mu.RUnlock()
	n := 0
	for _, c := range p.tab.children {
		if c.in != nil && c.in.esp.Keyed() && c.ctr.LastIn.Load() < t {
			c.in.esp.Idle()
			n++
		}
		if c.out != nil && c.out.esp.Keyed() && c.ctr.LastOut.Load() < t {
			c.out.esp.Idle()
			n++
		}
	}
	return n
}

// Drops returns the packets dropped so far, by reason.
func (p *Plane) Drops() map[string]uint64 { return p.drops.snapshot() }

func (p *Plane) path(sa ipsec.ChildSA) *Path {
	path := &Path{Local: sa.Local, Remote: sa.Remote, Encap: sa.Encap, TCP: sa.TCP}
	if sa.Iface != "" {
		if i, err := net.InterfaceByName(sa.Iface); err == nil {
			path.Ifindex = i.Index
		}
	}
	if p.cfg.Transport != nil {
		p.cfg.Transport.Prepare(path)
	}
	return path
}

// byPreference orders the SPD: most specific remote selectors first,
// then the newest SA (make-before-break).
func byPreference(a, b *child) int {
	if d := a.size.Compare(b.size); d != 0 {
		return d
	}
	return -cmpUint(a.order, b.order)
}

// add puts c in the tables, its SPD entry in order (a binary search and
// one copy of the slice tail, not a sort of everything).
func (t *tables) add(c *child) {
	t.children[c.inSPI] = c
	if !c.outbound {
		return
	}
	l := &t.out
	if a, ok := singleAddr(c.remoteTS); ok {
		h := t.host[a]
		l = &h
		defer func() { t.host[a] = *l }()
	}
	i, _ := slices.BinarySearchFunc(*l, c, byPreference)
	*l = slices.Insert(*l, i, c)
}

// remove takes c out of the tables.
func (t *tables) remove(c *child) {
	if t.children[c.inSPI] == c {
		delete(t.children, c.inSPI)
	}
	if !c.outbound {
		return
	}
	if a, ok := singleAddr(c.remoteTS); ok {
		h := removeSorted(t.host[a], c)
		if len(h) == 0 {
			delete(t.host, a)
		} else {
			t.host[a] = h
		}
		return
	}
	t.out = removeSorted(t.out, c)
}

// removeSorted finds c by binary search (order is unique, so byPreference
// is a total order) rather than a scan: thousands of SAs may share one
// selector, as every road warrior's full tunnel does on a gateway.
func removeSorted(l []*child, c *child) []*child {
	if i, ok := slices.BinarySearchFunc(l, c, byPreference); ok && l[i] == c {
		return slices.Delete(l, i, i+1)
	}
	return l
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// singleAddr reports selectors that cover exactly one address.
func singleAddr(l []wire.Selector) (netip.Addr, bool) {
	if len(l) == 1 && l[0].Start.IsValid() && l[0].Start == l[0].End {
		return l[0].Start, true
	}
	return netip.Addr{}, false
}

// rangeSize orders Child SAs by how much their selectors cover, most
// specific first (RFC 4301 §4.4.1's ordered SPD, as the kernel backend's
// policy priorities): the bit lengths of the widest ranges, remote and
// local together (a /32 before a /24 before 0.0.0.0/0), then one
// protocol before any, then the narrower port ranges. So a service's
// Child SA (10.93.0.0/24[icmp]) wins over the network's (10.93.0.0/24)
// for its packets, on the end user (remote selectors) and on the
// gateway (local ones: there every Child SA of a client has the same
// remote one, its virtual IP).
type sizeKey struct {
	bits     int
	anyProto bool
	ports    int
}

func (a sizeKey) Compare(b sizeKey) int {
	if a.bits != b.bits {
		return a.bits - b.bits
	}
	if a.anyProto != b.anyProto {
		if a.anyProto {
			return 1
		}
		return -1
	}
	return a.ports - b.ports
}

func rangeSize(remote, local []wire.Selector) sizeKey {
	// A protocol on either side limits the Child SA to it (the other
	// side's "any" does not widen it).
	k := sizeKey{anyProto: true}
	for _, l := range [][]wire.Selector{remote, local} {
		widest, ports, anyProto := 0, 0, len(l) == 0
		for _, s := range l {
			for _, pfx := range ts.Prefixes(s) {
				widest = max(widest, pfx.Addr().BitLen()-pfx.Bits())
			}
			anyProto = anyProto || s.IPProtocol == 0
			if s.EndPort >= s.StartPort {
				ports = max(ports, int(s.EndPort-s.StartPort))
			}
		}
		k.bits += widest
		k.ports += ports
		k.anyProto = k.anyProto && anyProto
	}
	return k
}

// lookup is the outbound SPD decision for a packet (RFC 4301 §5.1).
func (t *tables) lookup(f *flow) *child {
	for _, c := range t.host[f.dst] {
		if c.matches(f) {
			return c
		}
	}
	for _, c := range t.out {
		if c.matches(f) {
			return c
		}
	}
	return nil
}

// matches: the packet leaves from inside the local selectors towards the
// remote ones.
func (c *child) matches(f *flow) bool {
	return matchAny(c.localTS, f.src, f.proto, f.sport) && matchAny(c.remoteTS, f.dst, f.proto, f.dport)
}

// matchesInbound: a decrypted packet must come from inside the remote
// selectors to the local ones (RFC 4301 §5.2 step 4).
func (c *child) matchesInbound(f *flow) bool {
	return matchAny(c.remoteTS, f.src, f.proto, f.sport) && matchAny(c.localTS, f.dst, f.proto, f.dport)
}

func matchAny(l []wire.Selector, a netip.Addr, proto uint8, port uint16) bool {
	for _, s := range l {
		if ts.Match(s, a, proto, port) {
			return true
		}
	}
	return false
}

// countOut adds an outbound packet and reports limits crossed.
func (p *Plane) countOut(c *child, n int, now int64) {
	b := c.ctr.BytesOut.Add(uint64(n))
	c.ctr.PacketsOut.Add(1)
	c.ctr.LastOut.Store(now)
	p.checkLimits(c, b)
}

func (p *Plane) countIn(c *child, n int, now int64, from netip.AddrPort) {
	b := c.ctr.BytesIn.Add(uint64(n))
	c.ctr.PacketsIn.Add(1)
	c.ctr.LastIn.Store(now)
	if c.onPath(from) {
		c.ctr.LastOnPath.Store(now)
	}
	p.checkLimits(c, b)
}

// onPath: an inbound packet from from came on the SA's path: from the
// peer's address, and port when the ESP is encapsulated (in UDP or a
// TCP stream, whose port a NAT may have changed). RFC 4555 §3.12: only
// these count as liveness.
func (c *child) onPath(from netip.AddrPort) bool {
	r := c.path.Remote
	if from.Addr().Unmap() != r.Addr().Unmap() {
		return false
	}
	return !(c.path.Encap || c.path.TCP) || from.Port() == r.Port()
}

func (p *Plane) checkLimits(c *child, bytes uint64) {
	k := c.ctr
	if k.softBytes != 0 && bytes >= k.softBytes && !k.softSent.Load() && k.softSent.CompareAndSwap(false, true) {
		p.limit(c.inSPI, false)
	}
	if k.hardBytes != 0 && bytes >= k.hardBytes && !k.hardSent.Load() && k.hardSent.CompareAndSwap(false, true) {
		p.limit(c.inSPI, true)
	}
}

func (p *Plane) limit(inSPI uint32, hard bool) {
	if p.cfg.OnLimit != nil {
		p.cfg.OnLimit(inSPI, hard)
	}
}

// dropCounters counts dropped packets by reason and logs each reason at
// most once every ten seconds, never once per packet. Counting allocates
// nothing (a flood of garbage ESP must cost no memory, issue 13): a
// drop's details for the log are built only when the log line is due.
type dropCounters struct {
	mu     sync.Mutex
	counts map[string]*atomic.Uint64
	logged map[string]time.Time
	log    *slog.Logger
}

// add counts a drop of reason.
func (d *dropCounters) add(reason string) { d.addDetail(reason, nil) }

// addDetail counts a drop of reason; detail gives the log line's
// key-value pairs when one is due (a closure that does not escape costs
// no allocation).
func (d *dropCounters) addDetail(reason string, detail func() []any) {
	d.mu.Lock()
	if d.counts == nil {
		d.counts, d.logged = map[string]*atomic.Uint64{}, map[string]time.Time{}
	}
	c := d.counts[reason]
	if c == nil {
		c = new(atomic.Uint64)
		d.counts[reason] = c
	}
	n := c.Add(1)
	now := time.Now()
	logIt := now.Sub(d.logged[reason]) >= 10*time.Second
	if logIt {
		d.logged[reason] = now
	}
	d.mu.Unlock()
	if logIt {
		args := []any{"reason", reason, "total", n}
		if detail != nil {
			args = append(args, detail()...)
		}
		d.log.Warn("dropping packets", args...)
	}
}

// addQuiet counts without logging.
func (d *dropCounters) addQuiet(reason string) {
	d.mu.Lock()
	if d.counts == nil {
		d.counts, d.logged = map[string]*atomic.Uint64{}, map[string]time.Time{}
	}
	c := d.counts[reason]
	if c == nil {
		c = new(atomic.Uint64)
		d.counts[reason] = c
	}
	d.mu.Unlock()
	c.Add(1)
}

func (d *dropCounters) snapshot() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]uint64, len(d.counts))
	for k, v := range d.counts {
		out[k] = v.Load()
	}
	return out
}

// Drop reasons, as counted and exported: ipsec's, which the kernel's data
// plane reports too, named here for this package's own code.
const (
	DropNoPolicy     = ipsec.DropNoPolicy
	DropMalformed    = ipsec.DropMalformed
	DropUnknownSPI   = ipsec.DropUnknownSPI
	DropShort        = ipsec.DropShort
	DropReplay       = ipsec.DropReplay
	DropIntegrity    = ipsec.DropIntegrity
	DropPadding      = ipsec.DropPadding
	DropPolicy       = ipsec.DropPolicy
	DropSeqExhausted = ipsec.DropSeqExhausted
	DropTooLong      = ipsec.DropTooLong
	DropTruncated    = ipsec.DropTruncated
	DropSend         = ipsec.DropSend
	DropTUN          = ipsec.DropTUN
	DropNextHeader   = ipsec.DropNextHeader
)

func (d *dropCounters) espError(err error) {
	switch {
	case errors.Is(err, esp.ErrReplay):
		d.add(DropReplay)
	case errors.Is(err, esp.ErrIntegrity):
		d.add(DropIntegrity)
	case errors.Is(err, esp.ErrPadding):
		d.add(DropPadding)
	case errors.Is(err, esp.ErrShort):
		d.add(DropShort)
	default:
		d.add(DropMalformed)
	}
}
