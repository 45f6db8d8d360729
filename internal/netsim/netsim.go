// Package netsim runs IKE engines in one process over a simulated network
// with a virtual clock, driven by a seed: per-link delay, loss,
// duplication, reordering, links going down and addresses moving. The
// same seed gives the same run, so a failure found over thousands of seeds
// is reproduced by its seed alone.
//
// The links carry what UDP would: each node frames what its engine sends
// as its transport would (internal/conn: the non-ESP marker before IKE
// from the NAT-T port, a keepalive as the one octet 0xFF, RFC 3948) and
// sorts what arrives the same way before its engine sees it, so the
// marker, its absence and keepalives are exercised as on a real network.
//
// A node may also have interfaces (iface.go): named, with addresses,
// administratively up or down, with or without carrier, or silently
// dropping everything; each with its own path to a peer's address. Their
// changes are announced as the kernel announces them, so the daemon's own
// code can turn them into the engine's addresses and the interface
// manager's view.
package netsim

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/manager"
)

// Link is the behaviour of the path between two addresses.
type Link struct {
	Delay   time.Duration // one-way
	Jitter  time.Duration // added uniformly in [0, Jitter): reorders
	Loss    float64       // probability a datagram is dropped
	Dup     float64       // probability a datagram is delivered twice
	Reorder float64       // probability of an extra delay of up to 4×Delay
	Down    bool
	// MTU, when set, is the largest IP datagram the path carries whole:
	// a larger one would be fragmented, and this path drops IP fragments
	// (as many NATs and firewalls do, RFC 7383 §1). IP and UDP headers
	// count: 20 and 8 octets for IPv4, 40 and 8 for IPv6.
	MTU int
}

// Network holds nodes and the datagrams in flight.
type Network struct {
	Now  time.Time
	rng  *rand.Rand
	seed uint64

	Default Link
	links   map[[2]netip.Addr]Link
	// NAT rewrites a datagram in flight (addresses as seen by the
	// receiver, Data as on the wire); nil means no NAT.
	NAT func(d ike.Datagram) ike.Datagram

	nodes  []*Node
	owner  map[netip.Addr]*Node
	flight flightHeap
	seq    uint64
	steps  int
	Trace  io.Writer
	Filter Filter
	held   []held
	// MaxSteps bounds a run, so a livelock fails instead of hanging.
	MaxSteps int
}

// Node is one host: an engine, its addresses and a model of its data
// plane built from the engine's actions.
type Node struct {
	Name     string
	Engine   *ike.Engine
	net      *Network
	addrs    []netip.Addr
	wake     time.Time
	Children map[uint32]ike.ChildSA // installed Child SAs by inbound SPI
	Events   []ike.Event
	Keys     []ike.IKEKeys
	Sent     int
	// KeepalivesIn counts the NAT keepalives that reached the node
	// (RFC 3948 §2.3); NotIKE what arrived on its NAT-T port and was
	// no IKE (ESP, or no marker: netsim carries no ESP). Its transport
	// keeps both from the engine, as conn.UDP does.
	KeepalivesIn, NotIKE int
	cfg                  ike.Config
	// EAP, when set, is the node's EAP backend (ike.AskEAP): it answers
	// after EAPDelay (a RADIUS round trip), or never when ok is false
	// (a silent server).
	EAP      func(ike.AskEAP) (a ike.EAPAnswer, ok bool)
	EAPDelay time.Duration
	// OnAction, when set, sees every action of the node's engine in the
	// order the engine gave them.
	OnAction func(ike.Action)
	// OnHost, when set, receives the node's interface and address
	// changes as the kernel announces them (iface.go).
	OnHost    func(manager.HostEvent)
	ifaces    []*Interface
	nextIndex int
}

// flight is a datagram on the wire: Data as UDP carries it.
type flight struct {
	at   time.Time
	seq  uint64
	from *Node
	out  *Interface // the sender's interface, if it has interfaces
	to   *Node
	d    ike.Datagram
	// fn, when set, is no datagram but something a node's surroundings
	// do at at (an EAP backend answering, later).
	fn func()
}

type flightHeap []*flight

func (h flightHeap) Len() int { return len(h) }
func (h flightHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h flightHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *flightHeap) Push(x any)   { *h = append(*h, x.(*flight)) }
func (h *flightHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}

// New makes an empty network whose randomness all derives from seed.
func New(seed uint64) *Network {
	return &Network{
		Now:      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		rng:      rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1)),
		seed:     seed,
		Default:  Link{Delay: 10 * time.Millisecond},
		links:    map[[2]netip.Addr]Link{},
		owner:    map[netip.Addr]*Node{},
		MaxSteps: 2_000_000,
	}
}

// Seed returns the seed the network was made with.
func (n *Network) Seed() uint64 { return n.seed }

// Rand is the network's deterministic random source for test scripts.
func (n *Network) Rand() *rand.Rand { return n.rng }

// AddNode creates a node owning addrs. cfg.Rand is replaced by a
// deterministic stream derived from the seed and the node's name.
func (n *Network) AddNode(name string, cfg ike.Config, addrs ...netip.Addr) (*Node, error) {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], n.seed)
	copy(key[8:], name)
	cfg.Rand = &restartableRand{key: key}
	e, err := ike.New(cfg)
	if err != nil {
		return nil, err
	}
	node := &Node{Name: name, Engine: e, net: n, Children: map[uint32]ike.ChildSA{}, cfg: cfg}
	for _, a := range addrs {
		node.AddAddr(a)
	}
	n.nodes = append(n.nodes, node)
	return node, nil
}

// AddAddr gives the node another address, on no interface; RemoveAddr
// takes one away (datagrams to it are then lost). Addresses on interfaces
// come and go with AddIfaceAddr and RemoveIfaceAddr.
func (node *Node) AddAddr(a netip.Addr) {
	node.addrs = append(node.addrs, a)
	node.net.owner[a] = node
}

func (node *Node) RemoveAddr(a netip.Addr) {
	for i, x := range node.addrs {
		if x == a {
			node.addrs = append(node.addrs[:i], node.addrs[i+1:]...)
		}
	}
	if node.net.owner[a] == node {
		delete(node.net.owner, a)
	}
}

// Addrs returns the node's addresses.
func (node *Node) Addrs() []netip.Addr { return append([]netip.Addr(nil), node.addrs...) }

// SetLink sets the behaviour between a and b, both directions.
func (n *Network) SetLink(a, b netip.Addr, l Link) {
	n.links[[2]netip.Addr{a, b}] = l
	n.links[[2]netip.Addr{b, a}] = l
}

func (n *Network) link(a, b netip.Addr) Link {
	if l, ok := n.links[[2]netip.Addr{a, b}]; ok {
		return l
	}
	return n.Default
}

// Do runs a command on the node at the current time and applies its
// actions, e.g. net.Do(a, func(now time.Time) []ike.Action { ... }).
func (node *Node) Do(f func(now time.Time) []ike.Action) {
	node.Apply(f(node.net.Now))
}

// Apply carries out engine actions: datagrams go on the wire, Child SA
// changes update the data-plane model, timers are remembered.
func (node *Node) Apply(actions []ike.Action) {
	n := node.net
	for _, a := range actions {
		if node.OnAction != nil {
			node.OnAction(a)
		}
		switch a := a.(type) {
		case ike.Send:
			node.Sent++
			m, _ := ParseMsg(a.Data)
			n.send(node, a.Datagram, m)
		case ike.SendKeepalive:
			node.Sent++
			n.send(node, ike.Datagram{Local: a.Local, Remote: a.Remote, Iface: a.Iface}, Msg{Keepalive: true})
		case ike.ArmTimer:
			node.wake = a.At
		case ike.InstallChild:
			if _, dup := node.Children[a.SA.InSPI]; dup {
				panic(fmt.Sprintf("%s: Child SA %08x installed twice", node.Name, a.SA.InSPI))
			}
			node.Children[a.SA.InSPI] = a.SA
		case ike.UpdateChild:
			if _, ok := node.Children[a.SA.InSPI]; !ok {
				panic(fmt.Sprintf("%s: update of unknown Child SA %08x", node.Name, a.SA.InSPI))
			}
			node.Children[a.SA.InSPI] = a.SA
		case ike.DeleteChild:
			if _, ok := node.Children[a.InSPI]; !ok {
				panic(fmt.Sprintf("%s: delete of unknown Child SA %08x", node.Name, a.InSPI))
			}
			delete(node.Children, a.InSPI)
		case ike.Event:
			node.Events = append(node.Events, a)
			n.tracef("%s event %s ike=%d %s", node.Name, a.Kind, a.IKESA, a.Detail)
		case ike.IKEKeys:
			node.Keys = append(node.Keys, a)
		case ike.AskEAP:
			if node.EAP != nil {
				ask := a
				n.later(node.EAPDelay, func() {
					if ans, ok := node.EAP(ask); ok {
						acts, err := node.Engine.AnswerEAP(n.Now, ask.IKESA, ans)
						if err != nil {
							n.tracef("%s EAP answer not taken: %v", node.Name, err)
						}
						node.Apply(acts)
					}
				})
			}
		}
	}
}

// send passes what a node's engine sent through the filter, then puts
// it on the link framed as the node's transport would.
func (n *Network) send(from *Node, d ike.Datagram, m Msg) {
	framed := from.frame(d, m)
	m.Wire = len(framed.Data)
	if n.Filter != nil {
		switch n.Filter(from, d, m) {
		case Drop:
			n.tracef("%s filter dropped %s -> %s", from.Name, d.Local, d.Remote)
			return
		case Hold:
			n.tracef("%s filter held %s -> %s", from.Name, d.Local, d.Remote)
			n.held = append(n.held, held{from, framed})
			return
		}
	}
	n.transmit(from, framed)
}

// frame is the datagram the node's transport makes of what its engine
// sent: a keepalive's one octet, or the IKE message behind the non-ESP
// marker from the NAT-T port (conn.AppendIKE). Data is a copy: the
// engine's own bytes never travel.
func (node *Node) frame(d ike.Datagram, m Msg) ike.Datagram {
	if m.Keepalive {
		d.Data = []byte{conn.KeepaliveOctet}
	} else {
		d.Data = conn.AppendIKE(nil, d.Data, d.TCP || node.natt(d.Local.Port())) // a TCP frame's IKE has the marker (RFC 9329 §3.1)
	}
	return d
}

// natt reports whether port is the node's NAT-T port, where IKE shares
// the port with ESP: every port but its IKE port (ike.Config.IKEPort,
// 500 by default), as the engine sees it.
func (node *Node) natt(port uint16) bool {
	ikePort := node.cfg.IKEPort
	if ikePort == 0 {
		ikePort = 500
	}
	return port != ikePort
}

// transmit puts a datagram, framed for the wire, on the link.
func (n *Network) transmit(from *Node, d ike.Datagram) {
	out, ok := from.egress(d)
	if !ok {
		n.tracef("%s cannot send %s -> %s (no such address or interface %q)", from.Name, d.Local, d.Remote, d.Iface)
		return
	}
	if out != nil && !out.carries() {
		n.tracef("%s: %s passes nothing, lost %s -> %s", from.Name, out.Name, d.Local, d.Remote)
		return
	}
	var dst *Interface
	if to := n.owner[d.Remote.Addr()]; to != nil {
		dst = to.ifaceOf(d.Remote.Addr())
	}
	l := n.path(out, d.Local.Addr(), d.Remote.Addr(), dst)
	// A TCP stream (RFC 9329) is reliable and in order, and segments
	// what it carries: a link that is up loses, repeats, reorders and
	// cuts nothing of it.
	if hdr := 28; l.MTU > 0 && !d.TCP {
		if d.Remote.Addr().Is6() && !d.Remote.Addr().Is4In6() {
			hdr = 48
		}
		if len(d.Data)+hdr > l.MTU {
			n.tracef("%s: %d octets to %s need IP fragments, dropped", from.Name, len(d.Data), d.Remote)
			return
		}
	}
	if l.Down || (!d.TCP && n.rng.Float64() < l.Loss) {
		n.tracef("%s lost %s -> %s (%d octets)", from.Name, d.Local, d.Remote, len(d.Data))
		return
	}
	copies := 1
	if !d.TCP && n.rng.Float64() < l.Dup {
		copies = 2
	}
	for i := 0; i < copies; i++ {
		delay := l.Delay
		if l.Jitter > 0 && !d.TCP {
			delay += time.Duration(n.rng.Int64N(int64(l.Jitter)))
		}
		if !d.TCP && l.Reorder > 0 && n.rng.Float64() < l.Reorder {
			delay += time.Duration(n.rng.Int64N(int64(4*l.Delay) + 1))
		}
		in := ike.Datagram{Local: d.Remote, Remote: d.Local, Data: append([]byte(nil), d.Data...), TCP: d.TCP}
		if n.NAT != nil {
			in = n.NAT(in)
		}
		to := n.owner[in.Local.Addr()]
		if to == nil {
			n.tracef("%s sent to nobody at %s", from.Name, d.Remote)
			return
		}
		n.seq++
		heap.Push(&n.flight, &flight{at: n.Now.Add(delay), seq: n.seq, from: from, out: out, to: to, d: in})
	}
}

// Step runs the next event (a delivery or a timer) if it is due by
// until, and reports whether one ran.
func (n *Network) Step(until time.Time) bool {
	var next time.Time
	var timerNode *Node
	for _, node := range n.nodes {
		if !node.wake.IsZero() && (timerNode == nil || node.wake.Before(next)) {
			next, timerNode = node.wake, node
		}
	}
	var f *flight
	if len(n.flight) > 0 && (timerNode == nil || !n.flight[0].at.After(next)) {
		f = n.flight[0]
		next = f.at
	}
	if (f == nil && timerNode == nil) || next.After(until) {
		return false
	}
	n.steps++
	if n.steps > n.MaxSteps {
		panic(fmt.Sprintf("netsim: more than %d steps (livelock?), seed %d", n.MaxSteps, n.seed))
	}
	if next.After(n.Now) {
		n.Now = next
	}
	if f != nil {
		heap.Pop(&n.flight)
		if f.fn != nil {
			f.fn()
			return true
		}
		// What happened to the path or either end's interface while the
		// datagram was on its way counts.
		in := f.to.ifaceOf(f.d.Local.Addr())
		l := n.path(f.out, f.d.Remote.Addr(), f.d.Local.Addr(), in)
		gone := f.out != nil && (!f.out.carries() || f.from.iface(f.out.Name) != f.out)
		if l.Down || gone || (in != nil && !in.carries()) || !f.to.owns(f.d.Local.Addr()) {
			n.tracef("undeliverable to %s at %s", f.to.Name, f.d.Local)
			return true
		}
		f.to.receive(f.d)
		return true
	}
	timerNode.wake = time.Time{}
	timerNode.Apply(timerNode.Engine.Tick(n.Now))
	return true
}

// later runs fn after d of simulated time, in order with the datagrams.
func (n *Network) later(d time.Duration, fn func()) {
	n.seq++
	heap.Push(&n.flight, &flight{at: n.Now.Add(d), seq: n.seq, fn: fn})
}

// receive sorts a datagram off the wire as the node's transport would
// (conn.Demux on its NAT-T port) and gives IKE, without its marker, to
// the engine.
func (node *Node) receive(d ike.Datagram) {
	n := node.net
	if d.TCP || node.natt(d.Local.Port()) {
		kind, msg := conn.Demux(d.Data)
		switch kind {
		case conn.Keepalive:
			node.KeepalivesIn++
			n.tracef("%s <- %s keepalive", node.Name, d.Remote)
			return
		case conn.IKE:
			d.Data = msg
		default:
			node.NotIKE++
			n.tracef("%s <- %s %d octets of %v, not for the engine", node.Name, d.Remote, len(d.Data), kind)
			return
		}
	}
	n.tracef("%s <- %s %s", node.Name, d.Remote, describe(d.Data))
	node.Apply(node.Engine.Receive(n.Now, d))
}

func (node *Node) owns(a netip.Addr) bool {
	for _, x := range node.addrs {
		if x == a {
			return true
		}
	}
	return false
}

// RunFor advances the clock by d, running everything due.
func (n *Network) RunFor(d time.Duration) {
	until := n.Now.Add(d)
	for n.Step(until) {
	}
	n.Now = until
}

// RunUntil runs until cond holds or d passes; it reports whether cond held.
func (n *Network) RunUntil(d time.Duration, cond func() bool) bool {
	until := n.Now.Add(d)
	for !cond() {
		if !n.Step(until) {
			n.Now = until
			return cond()
		}
	}
	return true
}

// Quiet reports whether nothing is in flight.
func (n *Network) Quiet() bool { return len(n.flight) == 0 }

func (n *Network) tracef(format string, args ...any) {
	if n.Trace != nil {
		fmt.Fprintf(n.Trace, "%s "+format+"\n", append([]any{n.Now.Format("15:04:05.000")}, args...)...)
	}
}

func describe(b []byte) string {
	if len(b) < 28 {
		return fmt.Sprintf("%d octets", len(b))
	}
	return fmt.Sprintf("exch=%d flags=%02x id=%d len=%d", b[18], b[19], binary.BigEndian.Uint32(b[20:24]), len(b))
}

// EventsOf returns the node's events of kind k.
func (node *Node) EventsOf(k ike.EventKind) []ike.Event {
	var out []ike.Event
	for _, e := range node.Events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// Established returns the node's established IKE SAs.
func (node *Node) Established() []ike.IKESAInfo {
	var out []ike.IKESAInfo
	for _, s := range node.Engine.IKESAs() {
		if s.State == ike.StateEstablished {
			out = append(out, s)
		}
	}
	return out
}

// CheckConsistent verifies what must hold between two peers once nothing
// is in flight: the same established IKE SAs (SPIs, keys), the same Child
// SAs with crossed SPIs and keys, and a data plane holding exactly the
// engine's Child SAs (nothing leaked, nothing missing).
func CheckConsistent(a, b *Node) error {
	var errs []string
	for _, node := range []*Node{a, b} {
		engine := map[uint32]bool{}
		for _, s := range node.Engine.IKESAs() {
			for _, c := range s.Children {
				engine[c.InSPI] = true
				if _, ok := node.Children[c.InSPI]; !ok {
					errs = append(errs, fmt.Sprintf("%s: Child SA %08x of IKE SA %d not in the data plane", node.Name, c.InSPI, s.ID))
				}
			}
		}
		for spi := range node.Children {
			if !engine[spi] {
				errs = append(errs, fmt.Sprintf("%s: data plane holds Child SA %08x the engine forgot (leak)", node.Name, spi))
			}
		}
	}
	type pair struct{ i, r uint64 }
	sas := func(node *Node) map[pair]ike.IKESAInfo {
		m := map[pair]ike.IKESAInfo{}
		for _, s := range node.Established() {
			m[pair{s.SPIi, s.SPIr}] = s
		}
		return m
	}
	as, bs := sas(a), sas(b)
	for p, x := range as {
		y, ok := bs[p]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s has IKE SA %016x/%016x (id %d) that %s lacks", a.Name, p.i, p.r, x.ID, b.Name))
			continue
		}
		if x.KeyID != y.KeyID {
			errs = append(errs, fmt.Sprintf("IKE SA %016x/%016x: keys differ", p.i, p.r))
		}
		if x.Initiator == y.Initiator {
			errs = append(errs, fmt.Sprintf("IKE SA %016x/%016x: both sides think they initiated=%v", p.i, p.r, x.Initiator))
		}
		if a.net.NAT == nil && (x.Local != y.Remote || x.Remote != y.Local) {
			errs = append(errs, fmt.Sprintf("IKE SA %016x/%016x: %s uses %v - %v, %s %v - %v", p.i, p.r, a.Name, x.Local, x.Remote, b.Name, y.Local, y.Remote))
		}
		for _, s := range []ike.IKESAInfo{x, y} {
			for _, c := range s.Children {
				if c.Local != s.Local || c.Remote != s.Remote {
					errs = append(errs, fmt.Sprintf("Child SA %08x is on %v - %v but its IKE SA %d on %v - %v", c.InSPI, c.Local, c.Remote, s.ID, s.Local, s.Remote))
				}
			}
		}
		errs = append(errs, checkChildren(a.Name, b.Name, x, y)...)
	}
	for p, y := range bs {
		if _, ok := as[p]; !ok {
			errs = append(errs, fmt.Sprintf("%s has IKE SA %016x/%016x (id %d) that %s lacks", b.Name, p.i, p.r, y.ID, a.Name))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

func checkChildren(an, bn string, x, y ike.IKESAInfo) []string {
	var errs []string
	byIn := map[uint32]ike.ChildInfo{}
	for _, c := range y.Children {
		byIn[c.InSPI] = c
	}
	for _, c := range x.Children {
		d, ok := byIn[c.OutSPI]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: Child SA %08x/%08x has no peer on %s", an, c.InSPI, c.OutSPI, bn))
			continue
		}
		delete(byIn, c.OutSPI)
		if d.OutSPI != c.InSPI || string(d.EncKeyIn) != string(c.EncKeyOut) || string(d.EncKeyOut) != string(c.EncKeyIn) ||
			string(d.IntegKeyIn) != string(c.IntegKeyOut) || string(d.IntegKeyOut) != string(c.IntegKeyIn) {
			errs = append(errs, fmt.Sprintf("Child SA %08x/%08x: SPIs or keys do not cross", c.InSPI, c.OutSPI))
		}
	}
	for _, d := range byIn {
		errs = append(errs, fmt.Sprintf("%s: Child SA %08x/%08x has no peer on %s", bn, d.InSPI, d.OutSPI, an))
	}
	return errs
}

// AddNAT puts a NAT in front of inside: datagrams from it appear to come
// from public with a mapped port, and answers to that mapping reach it.
// It composes with NATs added before.
func (n *Network) AddNAT(inside netip.Addr, public netip.Addr) {
	out := map[netip.AddrPort]netip.AddrPort{}
	back := map[netip.AddrPort]netip.AddrPort{}
	next := uint16(30000)
	prev := n.NAT
	n.NAT = func(d ike.Datagram) ike.Datagram {
		if prev != nil {
			d = prev(d)
		}
		// d is as the receiver sees it: Remote is the sender.
		if d.Remote.Addr() == inside {
			m, ok := out[d.Remote]
			if !ok {
				m = netip.AddrPortFrom(public, next)
				next++
				out[d.Remote], back[m] = m, d.Remote
			}
			d.Remote = m
		} else if o, ok := back[d.Local]; ok {
			d.Local = o
		}
		return d
	}
}

// Restart replaces the node's engine with a fresh one of the same
// configuration, as after a crash: all state and installed SAs are lost.
func (node *Node) Restart() {
	e, err := ike.New(node.cfg)
	if err != nil {
		panic(err)
	}
	node.Engine = e
	node.Children = map[uint32]ike.ChildSA{}
	node.wake = time.Time{}
}

// restartableRand is a ChaCha8 stream; a restarted engine continues it
// rather than repeating it (a real host would not reuse its randomness).
type restartableRand struct {
	key [32]byte
	c   *rand.ChaCha8
}

func (r *restartableRand) Read(b []byte) (int, error) {
	if r.c == nil {
		r.c = rand.NewChaCha8(r.key)
	}
	return r.c.Read(b)
}

// Verdict is what a Filter decides for a datagram about to be sent.
type Verdict int

const (
	Deliver Verdict = iota
	Drop
	Hold // kept until Release
)

// Filter, when set, sees every datagram a node's engine sends, as it
// sent it (an IKE message, no marker), before its transport frames it
// and before the link. Tests use it to delay or drop one particular
// message.
type Filter func(from *Node, d ike.Datagram, m Msg) Verdict

// Msg is what a filter knows about a datagram: its IKE header, or that
// it is a NAT keepalive (ike.SendKeepalive; d.Data is then empty).
type Msg struct {
	Exchange  uint8 // wire.ExchangeType
	Response  bool
	MessageID uint32
	SPIi      uint64
	Keepalive bool
	// Wire is the UDP payload's length as the transport frames it:
	// the non-ESP marker from the NAT-T port included.
	Wire int
}

// ParseMsg reads the IKE header of a message.
func ParseMsg(b []byte) (Msg, bool) {
	if len(b) < 28 {
		return Msg{}, false
	}
	return Msg{Exchange: b[18], Response: b[19]&0x20 != 0, MessageID: binary.BigEndian.Uint32(b[20:24]),
		SPIi: binary.BigEndian.Uint64(b[0:8])}, true
}

type held struct {
	from *Node
	d    ike.Datagram // framed for the wire
}

// Held is the number of datagrams held by the filter.
func (n *Network) Held() int { return len(n.held) }

// Release sends the i-th held datagram now (through the link).
func (n *Network) Release(i int) {
	h := n.held[i]
	n.held = append(n.held[:i], n.held[i+1:]...)
	n.transmit(h.from, h.d)
}

// Inject sends a hand-made IKE message from an address no engine owns
// (or any address), as an attacker or a broken peer would, framed for
// the port it goes to: behind the non-ESP marker where that port is its
// receiver's NAT-T port (RFC 3948 §2.2).
func (n *Network) Inject(from, to netip.AddrPort, msg []byte) {
	natt := to.Port() != 500
	if node := n.owner[to.Addr()]; node != nil {
		natt = node.natt(to.Port())
	}
	n.InjectWire(from, to, conn.AppendIKE(nil, msg, natt))
}

// InjectWire sends a hand-made datagram exactly as given, marker or not.
func (n *Network) InjectWire(from, to netip.AddrPort, data []byte) {
	n.transmit(&Node{Name: "injector", net: n}, ike.Datagram{Local: from, Remote: to, Data: data})
}

// Config is the engine configuration the node was made with (to make
// another node like it).
func (n *Node) Config() ike.Config { return n.cfg }
