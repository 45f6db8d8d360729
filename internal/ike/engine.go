package ike

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/ikefrag"
	"github.com/mifike/mifike/internal/wire"
)

// Engine is the sans-I/O IKEv2 state machine of one host. Each method takes
// the current time, handles one event (a datagram, a timer, a command) and
// returns what the driver must do. It is not safe for concurrent use: the
// daemon drives it from one event loop, tests from one goroutine.
type Engine struct {
	cfg Config
	log *slog.Logger
	now time.Time
	out []Action

	sas      map[uint64]*ikeSA   // by our SPI
	byID     map[uint64]*ikeSA   // by engine-local id (CLI handle)
	halfOpen halfOpenTable       // responder SAs before IKE_AUTH (halfopen.go)
	children map[uint32]*childSA // by inbound SPI
	nextID   uint64

	nextFamily uint64
	// families are the families with members, by id (FamilyLive).
	families map[uint64]*family
	// localAddrs are the addresses the host can use now (SetLocalAddresses):
	// MOBIKE announces them and picks new paths among them.
	localAddrs []netip.Addr
	// clusterAddrs are the other nodes' addresses of a gateway cluster
	// (SetClusterAddresses), announced with ours.
	clusterAddrs []netip.Addr

	timers   timerHeap
	epoch    time.Time // timers' deadlines are offsets from it (timers.go)
	timerSeq uint64
	armed    time.Time

	cookies cookieSecrets
	stats   Stats
	drops   [numDropReasons]uint64
	// scratch holds the plaintext of the protected message being
	// verified (transport.go open), so a forgery costs no allocation.
	scratch []byte
	// features are the negotiated extensions the exchanges compose
	// (feature.go).
	features []feature
	// fragBudget bounds what reassembly of IKE fragments holds over all
	// IKE SAs (RFC 7383 §5).
	fragBudget *ikefrag.Budget
	// pathPolicy chooses paths (path.go).
	pathPolicy PathPolicy
	// redirector decides RFC 5685 redirects at IKE_SA_INIT (redirect.go).
	redirector Redirector
}

// Stats counts what an operator wants to graph.
type Stats struct {
	Exchanges       map[wire.ExchangeType]uint64
	Retransmissions uint64
	// TCPFallbacks counts SAs that went on over TCP after UDP went
	// unanswered (RFC 9329 §5.1, §7.1).
	TCPFallbacks uint64
	// NATRebinds counts NAT mappings seen changing under an SA (RFC
	// 4555 §3.8), each answered with UPDATE_SA_ADDRESSES.
	NATRebinds uint64
	// InvalidSPIHints counts the peer's INVALID_SPI reports taken as a
	// reason for a liveness check (RFC 4555 §5.3).
	InvalidSPIHints uint64
	// PathErrorHints counts the ICMP errors taken as a hint (PathError).
	PathErrorHints uint64
	// Dropped counts the datagrams dropped, DroppedBy each reason's
	// share (every reason is present, most at zero).
	Dropped      uint64
	DroppedBy    map[DropReason]uint64
	NotifiesSent map[wire.NotifyType]uint64
	NotifiesRecv map[wire.NotifyType]uint64
	// ReassemblyMessages and ReassemblyBytes are what IKE fragment
	// reassembly holds now over all IKE SAs (RFC 7383 §5): messages half
	// built and their decrypted octets.
	ReassemblyMessages, ReassemblyBytes int
	// Redirects counts the peers we redirected (RFC 5685): at
	// IKE_SA_INIT, and established SAs whose peer acknowledged.
	Redirects uint64
	// LivenessChecks counts the empty (or NAT-D only) INFORMATIONAL
	// requests sent to ask whether the peer is there (RFC 7296 §2.4,
	// "dead peer detection"); DeadPeers the established IKE SAs given up
	// because a request of theirs went unanswered through every
	// retransmission.
	LivenessChecks, DeadPeers uint64
	// PathsDead counts paths judged dead by the traffic-driven
	// liveness check (liveness.go).
	PathsDead uint64
}

// New checks cfg and returns an engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Rand == nil {
		return nil, errors.New("ike: Config.Rand is required (the engine has no randomness of its own)")
	}
	cfg.setDefaults()
	names := map[string]bool{}
	for _, c := range cfg.Connections {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if names[c.Name] {
			return nil, fmt.Errorf("ike: two connections named %s", c.Name)
		}
		names[c.Name] = true
	}
	e := &Engine{
		cfg: cfg, log: cfg.Logger,
		sas: map[uint64]*ikeSA{}, byID: map[uint64]*ikeSA{}, families: map[uint64]*family{}, halfOpen: newHalfOpenTable(),
		children: map[uint32]*childSA{}, features: registered, fragBudget: ikefrag.NewBudget(ikefrag.Limits{}),
		stats: Stats{Exchanges: map[wire.ExchangeType]uint64{}, NotifiesSent: map[wire.NotifyType]uint64{},
			NotifiesRecv: map[wire.NotifyType]uint64{}},
	}
	e.pathPolicy = cfg.PathPolicy
	if e.pathPolicy == nil {
		e.pathPolicy = &DefaultPathPolicy{}
	}
	if _, err := io.ReadFull(cfg.Rand, e.cookies.cur[:]); err != nil {
		return nil, fmt.Errorf("ike: reading randomness: %w", err)
	}
	return e, nil
}

// begin and end bracket every entry point: set the clock, fire due
// timers, and hand back the actions with a fresh ArmTimer if needed.
func (e *Engine) begin(now time.Time) {
	if now.After(e.now) {
		e.now = now
	}
	e.out = nil
}

func (e *Engine) end() []Action {
	e.runTimers()
	if at, ok := e.NextTimer(); ok && !at.Equal(e.armed) {
		e.armed = at
		e.out = append(e.out, ArmTimer{At: at})
	}
	out := e.out
	e.out = nil
	return out
}

// Tick fires the timers due at now.
func (e *Engine) Tick(now time.Time) []Action {
	e.begin(now)
	e.armed = time.Time{}
	return e.end()
}

// Receive handles one datagram addressed to an IKE port.
func (e *Engine) Receive(now time.Time, d Datagram) []Action {
	e.begin(now)
	e.receive(d)
	return e.end()
}

// InitiateOptions says how to start an IKE SA.
type InitiateOptions struct {
	Conn  string
	Child string // only this child; "" for the connection's start children
	// Local and Remote are the first path. Local's port 0 is our IKE port.
	// An invalid Remote is the connection's first remote address, and
	// Remote's port 0 the connection's remote port.
	Local, Remote netip.AddrPort
	// Iface pins the SA to an interface from its first message (a VPN per
	// interface), as a MOBIKE move would.
	Iface string
}

// Initiate starts an IKE SA of connection o.Conn as o says and returns
// its id.
func (e *Engine) Initiate(now time.Time, o InitiateOptions) (uint64, []Action, error) {
	e.begin(now)
	c := e.connection(o.Conn)
	if c == nil {
		return 0, e.end(), fmt.Errorf("ike: no connection named %q", o.Conn)
	}
	var cfg *ChildConfig
	if o.Child != "" {
		if cfg = c.child(o.Child); cfg == nil {
			return 0, e.end(), fmt.Errorf("ike: connection %s has no child %q", o.Conn, o.Child)
		}
	}
	remote := o.Remote
	if !remote.IsValid() {
		if len(c.RemoteAddrs) == 0 {
			return 0, e.end(), fmt.Errorf("ike: connection %s has no remote address to initiate to", o.Conn)
		}
		remote = netip.AddrPortFrom(c.RemoteAddrs[0], 0)
	}
	if remote.Port() == 0 {
		remote = netip.AddrPortFrom(remote.Addr(), e.remotePort(c))
	}
	local := o.Local
	if !local.IsValid() {
		return 0, e.end(), fmt.Errorf("ike: connection %s: no local address to initiate from", o.Conn)
	}
	if local.Port() == 0 {
		local = netip.AddrPortFrom(local.Addr(), e.cfg.IKEPort)
	}
	sa, err := e.initiate(c, local, remote, cfg, o.Iface)
	if err != nil {
		return 0, e.end(), err
	}
	return sa.id, e.end(), nil
}

// Rekey rekeys the IKE SA id, or its Child SA with inbound SPI child.
func (e *Engine) Rekey(now time.Time, id uint64, child uint32) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	if sa == nil || sa.state != stateEstablished {
		return e.end(), fmt.Errorf("ike: no established IKE SA %d", id)
	}
	if child == 0 {
		sa.queue(&ikeRekeyTask{})
		return e.end(), nil
	}
	c := sa.child(child)
	if c == nil {
		return e.end(), fmt.Errorf("ike: IKE SA %d has no Child SA %08x", id, child)
	}
	sa.queue(&childCreateTask{cfg: c.cfg, rekey: c})
	return e.end(), nil
}

// CreateChild creates another Child SA of config child on IKE SA id.
func (e *Engine) CreateChild(now time.Time, id uint64, child string) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	if sa == nil || sa.state != stateEstablished {
		return e.end(), fmt.Errorf("ike: no established IKE SA %d", id)
	}
	cfg := sa.conn.child(child)
	if cfg == nil {
		return e.end(), fmt.Errorf("ike: connection %s has no child %q", sa.conn.Name, child)
	}
	sa.queue(&childCreateTask{cfg: cfg})
	return e.end(), nil
}

// Terminate deletes the IKE SA id (with its Child SAs), or only its Child
// SA with inbound SPI child.
func (e *Engine) Terminate(now time.Time, id uint64, child uint32) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	if h := e.halfOpenByID(id); sa == nil && h != nil && child == 0 {
		e.dropHalfOpen(h, "terminated before it was established")
		return e.end(), nil
	}
	if sa == nil {
		return e.end(), fmt.Errorf("ike: no IKE SA %d", id)
	}
	if child != 0 {
		c := sa.child(child)
		if c == nil {
			return e.end(), fmt.Errorf("ike: IKE SA %d has no Child SA %08x", id, child)
		}
		sa.queue(&childDeleteTask{child: c})
		return e.end(), nil
	}
	if sa.state != stateEstablished {
		e.destroy(sa, "terminated before it was established")
		return e.end(), nil
	}
	if old := sa.collidedWith; old != nil && old.state == stateEstablished {
		// Still undecided which SA survives the rekey collision: delete
		// whichever does (the task follows the handover).
		sa = old
	}
	sa.close()
	return e.end(), nil
}

// CheckLiveness sends a liveness check (empty INFORMATIONAL) on IKE SA id.
func (e *Engine) CheckLiveness(now time.Time, id uint64) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	if sa == nil || sa.state != stateEstablished {
		return e.end(), fmt.Errorf("ike: no established IKE SA %d", id)
	}
	sa.queue(&dpdTask{})
	return e.end(), nil
}

// ChildLimit reports that the data plane hit a Child SA's byte or
// sequence-number limit: soft starts a rekey, hard deletes it.
func (e *Engine) ChildLimit(now time.Time, inSPI uint32, hard bool) []Action {
	e.begin(now)
	if c := e.children[inSPI]; c != nil {
		if hard {
			c.ike.queue(&childDeleteTask{child: c})
		} else {
			c.softExpired()
		}
	}
	return e.end()
}

// Inbound tells the engine a Child SA received traffic, which counts as
// liveness (RFC 7296 §2.4) and, for a responder's rekeyed SA, lets it
// start sending on the new SA (§2.8).
func (e *Engine) Inbound(now time.Time, inSPI uint32) []Action {
	e.begin(now)
	if c := e.children[inSPI]; c != nil {
		c.ike.heard()
		if !c.outbound && c.state == childInstalled {
			c.activateOutbound()
		}
	}
	return e.end()
}

// Shutdown deletes every IKE SA, sending Delete to each peer.
func (e *Engine) Shutdown(now time.Time) []Action {
	e.begin(now)
	for _, sa := range e.sortedSAs() {
		if sa.state == stateEstablished {
			// One unanswered Delete is all a shutting-down host can do.
			sa.sendOneShot(wire.Informational, []wire.Payload{&wire.Delete{Protocol: wire.ProtoIKE}})
		}
		e.destroy(sa, "shutdown")
	}
	for _, h := range e.sortedHalfOpen() {
		e.dropHalfOpen(h, "shutdown")
	}
	return e.end()
}

func (e *Engine) connection(name string) *Connection {
	for _, c := range e.cfg.Connections {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (c *Connection) child(name string) *ChildConfig {
	for _, ch := range c.Children {
		if ch.Name == name {
			return ch
		}
	}
	return nil
}

// random fills b from the injected source. A failing source is a broken
// host, not a protocol event: the engine cannot continue safely.
func (e *Engine) random(b []byte) {
	if _, err := io.ReadFull(e.cfg.Rand, b); err != nil {
		panic("ike: randomness source failed: " + err.Error())
	}
}

func (e *Engine) randomUint64() uint64 {
	var b [8]byte
	e.random(b[:])
	return binary.BigEndian.Uint64(b[:])
}

func (e *Engine) nonce() []byte {
	b := make([]byte, 32)
	e.random(b)
	return b
}

// newSPI returns a fresh, non-zero IKE SPI not in use here.
func (e *Engine) newSPI() uint64 {
	for {
		s := e.randomUint64()
		if p := e.cfg.SPIPrefix; p != 0 {
			s = s&^(0xff<<56) | uint64(p)<<56
		}
		if _, used := e.sas[s]; s != 0 && !used && e.halfOpen.bySPI[s] == nil {
			return s
		}
	}
}

// newChildSPI returns a fresh inbound ESP SPI; 1-255 are reserved
// (RFC 4303 §2.1).
func (e *Engine) newChildSPI() uint32 {
	for {
		var b [4]byte
		e.random(b[:])
		if p := e.cfg.SPIPrefix; p != 0 {
			b[0] = p
		}
		s := binary.BigEndian.Uint32(b[:])
		if _, used := e.children[s]; s > 255 && !used {
			e.children[s] = nil // reserved until the Child SA exists or the exchange fails
			return s
		}
	}
}

func (e *Engine) releaseChildSPI(s uint32) {
	if c, ok := e.children[s]; ok && c == nil {
		delete(e.children, s)
	}
}

func (e *Engine) emit(a Action) { e.out = append(e.out, a) }

func (e *Engine) event(sa *ikeSA, k EventKind, detail string) {
	ev := Event{Kind: k, Detail: detail}
	if sa != nil {
		ev.IKESA, ev.Conn = sa.id, sa.conn.Name
	}
	e.emit(ev)
}

func requestHash(b []byte) [32]byte { return sha256.Sum256(b) }

// Stats returns a copy of the counters.
func (e *Engine) Stats() Stats {
	s := Stats{Retransmissions: e.stats.Retransmissions, Dropped: e.stats.Dropped, Redirects: e.stats.Redirects, TCPFallbacks: e.stats.TCPFallbacks, NATRebinds: e.stats.NATRebinds, InvalidSPIHints: e.stats.InvalidSPIHints, PathErrorHints: e.stats.PathErrorHints, DroppedBy: map[DropReason]uint64{},
		LivenessChecks: e.stats.LivenessChecks, DeadPeers: e.stats.DeadPeers, PathsDead: e.stats.PathsDead,
		Exchanges: map[wire.ExchangeType]uint64{}, NotifiesSent: map[wire.NotifyType]uint64{}, NotifiesRecv: map[wire.NotifyType]uint64{}}
	for r := DropNone + 1; r < numDropReasons; r++ {
		s.DroppedBy[r] = e.drops[r]
	}
	s.ReassemblyMessages, s.ReassemblyBytes = e.fragBudget.InUse()
	for k, v := range e.stats.Exchanges {
		s.Exchanges[k] = v
	}
	for k, v := range e.stats.NotifiesSent {
		s.NotifiesSent[k] = v
	}
	for k, v := range e.stats.NotifiesRecv {
		s.NotifiesRecv[k] = v
	}
	return s
}
