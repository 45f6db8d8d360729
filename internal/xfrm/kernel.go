//go:build linux

package xfrm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// Our identifiers in the kernel's shared tables. Everything mifike
// installs carries one, so a new run can find and remove what a crashed
// one left, and never touches anyone else's SAs, policies or devices.
const (
	reqidBase          = 0x6d660000 // + n: one per Child SA policy group
	ifIDBase           = 0x6d660000 // + n: one per VPN (IKE SA)
	tableBase          = 0x6d660000 // + n: the VPN's own routing table
	DevicePrefix       = "mifike-v" // + n: the VPN's XFRM interface
	pinTableBase       = 0x6d670000 // + n: the route pinning a VPN's outer packets
	markLow            = 0x6d66     // our mark's low half; a VPN's has its number above
	pinRulePriority    = 0x6d64     // fwmark <VPN's mark> lookup <its pin table>
	vipRulePriority    = 0x6d65     // from <virtual IP> lookup <its VPN's table>
	sharedRulePriority = 0x6d66     // not fwmark <Mark> lookup <Table>
	probeSPI           = 0xfffffffe
	probeReqid         = reqidBase + 0xffff
)

// Config configures the kernel data plane.
type Config struct {
	Log *slog.Logger
	// OnLimit reports a Child SA (by inbound SPI) that crossed its soft
	// or hard byte limit (or nears a sequence number wrap). It must not
	// block.
	OnLimit func(inSPI uint32, hard bool)
	// ReplayWindow in packets (1024 when 0; at most 4096).
	ReplayWindow uint32
	// MTU of the XFRM interfaces (1400 when 0).
	MTU int
	// Mark is the firewall mark of our own packets (IKE sockets, outer
	// ESP), which bypass the tunnel's routes; Table is the shared
	// routing table. Defaults ipsec.DefaultMark and ipsec.DefaultTable,
	// as in the userspace data plane.
	Mark  uint32
	Table int
	// Sockets are the daemon's UDP sockets. Each gets a socket policy
	// that lets IKE bypass IPsec (transport-mode policies would
	// otherwise cover it); those on NATTPort also get UDP_ENCAP_ESPINUDP,
	// so the kernel decapsulates ESP in UDP arriving there (RFC 3948)
	// and passes IKE (behind its non-ESP marker) up to us.
	Sockets  []syscall.Conn
	NATTPort []bool // per socket: is it a NAT-T port socket
	// ESPInTCP: the daemon hands its TCP streams to the kernel's
	// espintcp ULP (conn.TCP.KernelESP), so Child SAs on a TCP path
	// (RFC 9329) are installed with TCP encapsulation; without it they
	// are refused. Check ProbeTCP first.
	ESPInTCP bool
	// NoMigrate forces make-before-break re-installation for moves
	// (tests use it to cover the path kernels without
	// CONFIG_XFRM_MIGRATE take).
	NoMigrate bool
	// OnAcquire asks for the Child SA of a trap (SetTraps) whose policy
	// a packet from src to dst matched with no SA (XFRM_MSG_ACQUIRE), at
	// most once per second per trap. It must not block: the netlink
	// reader calls it.
	OnAcquire func(trap int, src, dst netip.Addr)
}

// Kernel is the data plane in the Linux kernel: XFRM states and policies,
// XFRM interfaces, routes.
type Kernel struct {
	cfg Config
	log *slog.Logger
	nl  *conn
	mon *conn

	mu       sync.Mutex
	children map[uint32]*child // by inbound SPI
	bySA     map[saKey]*child  // every installed state, both directions
	groups   map[string]*group
	reqids   map[uint32]bool
	vpns     map[uint64]*vpn
	vpnN     map[uint32]bool
	streams  map[uint32]*vpn // PinStream's, by number
	shared   map[netip.Prefix][]sharedRoute
	rules    []*netlink.Rule
	nextVPN  uint32
	nextReq  uint32
	migrate  bool
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup

	// traps by reqid (trap.go), and the larval states of their acquires.
	// Under mu to change, under trapMu to read: the acquire reader must
	// not wait for a long netlink exchange under mu.
	trapMu  sync.Mutex
	traps   map[uint32]*kTrap
	larvals []pendingLarval
	// trapDev is mifike-v0's index (0: none), trapRoutes the prefixes
	// routed into it; under mu.
	trapDev    int
	trapRoutes map[netip.Prefix]bool
}

type saKey struct {
	dst netip.Addr
	spi uint32
}

// group is the policies Child SAs with the same selectors on the same
// VPN share, by reqid: a rekey's new SA takes over the old one's
// policies, so traffic never meets a gap (RFC 7296 §2.8).
type group struct {
	key       string
	reqid     uint32
	refs      int
	installed []Policy
}

// child is one Child SA in the kernel: both directions.
type child struct {
	sa     ipsec.ChildSA
	vpn    *vpn
	grp    *group
	in     *State
	out    *State // nil while it may not send (a responder's rekey, §2.8)
	routes childRoutes
	ctr    *ipsec.Counters
	// Counts of states this Child SA had before a move re-installed
	// them, and the outbound sequence number to continue from.
	baseIn, baseOut         [2]uint64 // bytes, packets
	lastInPkts, lastOutPkts uint64
	savedOSeq, savedOSeqH   uint32
	soft, hard              bool
	replay, integrity       uint32   // the kernel's drops on its inbound state
	retired                 []*State // inbound states of before a move, in their grace period
}

// Open takes over the kernel's XFRM for mifike: it removes what a
// crashed run left behind, checks that the kernel can carry ESP, and
// prepares the daemon's sockets. Close removes everything it installed.
func Open(cfg Config) (*Kernel, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReplayWindow == 0 {
		cfg.ReplayWindow = 1024
	}
	if cfg.ReplayWindow > 4096 {
		return nil, fmt.Errorf("xfrm: replay window %d: the kernel takes at most 4096", cfg.ReplayWindow)
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1400
	}
	if cfg.Mark == 0 {
		cfg.Mark = ipsec.DefaultMark
	}
	if cfg.Table == 0 {
		cfg.Table = ipsec.DefaultTable
	}
	c, err := dial(0)
	if err != nil {
		return nil, err
	}
	k := &Kernel{cfg: cfg, log: cfg.Log, nl: c, children: map[uint32]*child{}, bySA: map[saKey]*child{},
		traps: map[uint32]*kTrap{}, groups: map[string]*group{}, reqids: map[uint32]bool{}, vpns: map[uint64]*vpn{}, vpnN: map[uint32]bool{}, streams: map[uint32]*vpn{},
		shared: map[netip.Prefix][]sharedRoute{}, migrate: !cfg.NoMigrate, stop: make(chan struct{})}
	if n := k.removeLeftovers(); n > 0 {
		k.log.Warn("removed what an earlier run left in the kernel", "objects", n)
	}
	if err := probe(c); err != nil {
		c.close()
		return nil, err
	}
	fail := func(err error) (*Kernel, error) {
		k.Close()
		return nil, err
	}
	for i, s := range cfg.Sockets {
		if err := bypass(s); err != nil {
			return fail(err)
		}
		if i < len(cfg.NATTPort) && cfg.NATTPort[i] {
			if err := udpEncap(s); err != nil {
				return fail(err)
			}
		}
	}
	if err := k.sharedRules(); err != nil {
		return fail(err)
	}
	if k.mon, err = dial(1<<(groupExpire-1) | 1<<(groupAcquire-1)); err != nil {
		return fail(err)
	}
	k.wg.Add(2)
	go func() {
		defer k.wg.Done()
		k.mon.receive(func(m message) {
			switch m.typ {
			case msgExpire:
				k.expired(m)
			case msgAcquire:
				k.acquired(m)
			}
		})
		k.mon.close()
	}()
	go func() {
		defer k.wg.Done()
		k.poll()
	}()
	return k, nil
}

// Close removes every state, policy, interface, route and rule this
// backend installed.
func (k *Kernel) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	k.mu.Unlock()
	close(k.stop)
	if k.mon != nil {
		k.mon.stop()
	}
	k.wg.Wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, t := range k.traps {
		k.removeTrap(t)
	}
	k.routeTraps(nil)
	k.trapMu.Lock()
	k.traps, k.larvals = nil, nil
	k.trapMu.Unlock()
	for _, c := range k.children {
		k.remove(c)
	}
	for _, v := range k.vpns {
		k.deleteVPN(v)
	}
	for n, v := range k.streams {
		k.unpin(v)
		delete(k.streams, n)
	}
	for _, r := range k.rules {
		netlink.RuleDel(r)
	}
	k.rules = nil
	// Anything a failed operation might have left: the same sweep as at
	// start.
	k.removeLeftovers()
	return k.nl.close()
}

// Owns reports a device of ours (an XFRM interface): its addresses are
// virtual IPs, not paths for MOBIKE.
func (k *Kernel) Owns(ifname string) bool { return strings.HasPrefix(ifname, DevicePrefix) }

var _ ipsec.DataPlane = (*Kernel)(nil)

// Name describes the backend for logs.
func (k *Kernel) Name() string { return "kernel XFRM (" + DevicePrefix + "N per VPN)" }

// Counters returns a Child SA's traffic as the kernel counted it (read
// every second), nil when it is not installed.
func (k *Kernel) Counters(inSPI uint32) *ipsec.Counters {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c := k.children[inSPI]; c != nil {
		return c.ctr
	}
	return nil
}

// Drops are the inbound packets the kernel dropped on the installed
// SAs (as of the last poll), by the userspace data plane's reasons.
func (k *Kernel) Drops() map[string]uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var replay, integrity uint64
	for _, c := range k.children {
		replay += uint64(c.replay)
		integrity += uint64(c.integrity)
	}
	return map[string]uint64{ipsec.DropReplay: replay, ipsec.DropIntegrity: integrity}
}

// groupKey identifies the Child SAs that share policies: one IKE SA, one
// mode, the same selectors.
func groupKey(sa ipsec.ChildSA) string {
	return fmt.Sprintf("%d|%v|%s|%s", sa.IKESA, sa.Mode, ts.Strings(sa.LocalTS), ts.Strings(sa.RemoteTS))
}

func kernelMode(m ipsec.Mode) uint8 {
	if m == ipsec.Transport {
		return modeTransport
	}
	return modeTunnel
}

// states builds both directions of a Child SA for the kernel.
func (k *Kernel) states(sa ipsec.ChildSA, reqid, ifID uint32) (in, out *State, err error) {
	mark := k.cfg.Mark
	if v := k.vpns[sa.IKESA]; v != nil && sa.Mode == ipsec.Tunnel {
		mark = v.mark()
	}
	local, remote := sa.Local.Addr().Unmap(), sa.Remote.Addr().Unmap()
	if !local.IsValid() || !remote.IsValid() || local.Is4() != remote.Is4() {
		return nil, nil, fmt.Errorf("xfrm: Child SA %08x has no usable outer addresses (%v, %v)", sa.InSPI, sa.Local, sa.Remote)
	}
	mk := func(src, dst netip.Addr, spi uint32, enc, integ []byte, sport, dport uint16) (*State, error) {
		aead, crypt, auth, err := algorithms(sa.Encr, sa.KeyBits, sa.Integ, enc, integ)
		if err != nil {
			return nil, err
		}
		s := &State{Src: src, Dst: dst, SPI: spi, Reqid: reqid, Mode: kernelMode(sa.Mode), AEAD: aead, Crypt: crypt, Auth: auth,
			ESN: sa.ESN, ReplayWindow: k.cfg.ReplayWindow, Encap: sa.Encap || sa.TCP, TCP: sa.TCP, EncapSrc: sport, EncapDst: dport,
			SoftBytes: sa.SoftBytes, HardBytes: sa.HardBytes, IfID: ifID}
		if !sa.ESN {
			// Rekey before the 32-bit sequence number wraps (RFC 4303
			// §3.3.3): the kernel tells us at this many packets.
			s.SoftPackets = 1<<32 - 1<<30
		}
		return s, nil
	}
	if in, err = mk(remote, local, sa.InSPI, sa.EncKeyIn, sa.IntegKeyIn, sa.Remote.Port(), sa.Local.Port()); err != nil {
		return nil, nil, err
	}
	if out, err = mk(local, remote, sa.OutSPI, sa.EncKeyOut, sa.IntegKeyOut, sa.Local.Port(), sa.Remote.Port()); err != nil {
		return nil, nil, err
	}
	out.OutputMark = mark
	return in, out, nil
}

// Install adds both directions of a Child SA, its policies (shared with
// the SA it rekeys) and, in tunnel mode, its VPN's XFRM interface and
// routes. A refusal leaves nothing behind and says what the kernel lacks.
func (k *Kernel) Install(sa ipsec.ChildSA) (err error) {
	if sa.Protocol != wire.ProtoESP {
		return fmt.Errorf("xfrm: Child SA %08x uses %v; only ESP is carried", sa.InSPI, sa.Protocol)
	}
	if sa.TCP && !k.cfg.ESPInTCP {
		return errTCP(sa)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errors.New("xfrm: the data plane is closed")
	}
	if k.children[sa.InSPI] != nil {
		return fmt.Errorf("xfrm: Child SA %08x is already installed", sa.InSPI)
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	c := &child{sa: sa, ctr: new(ipsec.Counters)}
	var ifID uint32
	if sa.Mode == ipsec.Tunnel {
		v := k.vpns[sa.IKESA]
		if v == nil {
			if v, err = k.newVPN(sa.IKESA); err != nil {
				return err
			}
		}
		if err = k.pin(v, sa.Iface, sa.Local.Addr().Unmap(), sa.Remote.Addr().Unmap()); err != nil {
			k.releaseVPNIfUnused(v)
			return err
		}
		v.refs++
		c.vpn, ifID = v, v.ifID()
		undo = append(undo, func() { k.releaseVPN(v) })
	}
	g := k.group(sa)
	c.grp = g
	undo = append(undo, func() { k.releaseGroup(g) })
	in, out, err := k.states(sa, g.reqid, ifID)
	if err != nil {
		return err
	}
	if err = k.addState(in); err != nil {
		return k.refused("inbound", sa, in, err)
	}
	c.in = in
	undo = append(undo, func() { k.delState(in) })
	if sa.Outbound {
		if err = k.addState(out); err != nil {
			return k.refused("outbound", sa, out, err)
		}
		c.out = out
		undo = append(undo, func() { k.delState(out) })
	}
	if g.refs == 1 {
		for _, p := range policies(selectors(sa.LocalTS, sa.RemoteTS), kernelMode(sa.Mode), in.Dst, in.Src, g.reqid, ifID) {
			if _, err = k.nl.request("adding policy", msgNewPolicy, unix.NLM_F_CREATE|unix.NLM_F_EXCL, p.newPolicy(), false); err != nil {
				return fmt.Errorf("xfrm: Child SA %08x: policy %s (dir %d): %w", sa.InSPI, p.Sel, p.Dir, err)
			}
			g.installed = append(g.installed, p)
		}
	}
	if c.vpn != nil {
		if c.routes, err = k.addRoutes(c.vpn, sa); err != nil {
			return err
		}
	}
	k.children[sa.InSPI] = c
	k.bySA[saKey{in.Dst, in.SPI}] = c
	if c.out != nil {
		k.bySA[saKey{out.Dst, out.SPI}] = c
	}
	// The SA a trap asked for (or any to its peer): the acquire's larval
	// state can go, so that the trap asks again as soon as this SA is
	// gone, not only once the kernel expires it.
	k.dropLarvals(in.Src)
	return nil
}

// refused explains a state the kernel would not take.
func (k *Kernel) refused(dir string, sa ipsec.ChildSA, s *State, err error) error {
	return fmt.Errorf("xfrm: the kernel refused the %s SA %08x of Child SA %s: %w", dir, s.SPI, sa.Name, explainState(s, err))
}

// explainState names what the kernel lacks for s.
func explainState(s *State, err error) error {
	var ke *KernelError
	if !errors.As(err, &ke) {
		return err
	}
	alg := ""
	switch {
	case s.AEAD != nil:
		alg = s.AEAD.Name
	case s.Crypt != nil:
		alg = s.Crypt.Name + " with " + s.Auth.Name
	}
	switch {
	case strings.Contains(ke.Msg, "algorithm not found") || strings.Contains(ke.Msg, "unable to initialize crypto"):
		mods := ""
		if s.AEAD != nil {
			mods = modulesFor(s.AEAD.Name)
		} else if s.Crypt != nil {
			mods = modulesFor(s.Crypt.Name) + ", " + modulesFor(s.Auth.Name)
		}
		return fmt.Errorf("%w: the kernel has no %s: load its crypto modules (%s; seqiv/echainiv need drbg) or choose another ESP proposal", err, alg, mods)
	case ke.Errno == unix.EPROTONOSUPPORT:
		m := "esp4 (CONFIG_INET_ESP)"
		if s.Dst.Is6() {
			m = "esp6 (CONFIG_INET6_ESP)"
		}
		return fmt.Errorf("%w: the kernel has no ESP transform: load %s", err, m)
	case ke.Errno == unix.ENOENT && s.Encap:
		return fmt.Errorf("%w: the kernel cannot encapsulate ESP in UDP here", err)
	}
	return err
}

func (k *Kernel) addState(s *State) error {
	b, err := s.newSA()
	if err != nil {
		return err
	}
	_, err = k.nl.request("adding state", msgNewSA, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b, false)
	return err
}

// delState removes a state; one already gone (a hard expiry) is fine.
func (k *Kernel) delState(s *State) error {
	_, err := k.nl.request("deleting state", msgDelSA, 0, saID(s.Src, s.Dst, s.SPI), false)
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// getState reads a state back: its counters and replay state.
func (k *Kernel) getState(s *State) (stateInfo, error) {
	m, err := k.nl.request("reading state", msgGetSA, 0, saID(s.Src, s.Dst, s.SPI), false)
	if err != nil {
		return stateInfo{}, err
	}
	for _, x := range m {
		if x.typ == msgNewSA {
			return parseState(x.data)
		}
	}
	return stateInfo{}, fmt.Errorf("xfrm: no answer reading state %08x", s.SPI)
}

func (k *Kernel) group(sa ipsec.ChildSA) *group {
	key := groupKey(sa)
	g := k.groups[key]
	if g == nil {
		g = &group{key: key, reqid: k.allocReqid()}
		k.groups[key] = g
	}
	g.refs++
	return g
}

func (k *Kernel) releaseGroup(g *group) {
	if g.refs--; g.refs > 0 {
		return
	}
	for _, p := range g.installed {
		k.nl.request("deleting policy", msgDelPolicy, 0, p.policyID(), false)
	}
	delete(k.groups, g.key)
	delete(k.reqids, g.reqid)
}

func (k *Kernel) releaseVPNIfUnused(v *vpn) {
	if v.refs <= 0 {
		k.deleteVPN(v)
	}
}

func (k *Kernel) releaseVPN(v *vpn) {
	if v.refs--; v.refs <= 0 {
		k.deleteVPN(v)
	}
}

// Update applies what a later exchange changed: the outer addresses and
// interface (a MOBIKE move, RFC 4555 §3.5), or whether the SA may send.
func (k *Kernel) Update(sa ipsec.ChildSA) error {
	if sa.TCP && !k.cfg.ESPInTCP {
		return errTCP(sa)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.children[sa.InSPI]
	if c == nil {
		return fmt.Errorf("xfrm: no Child SA %08x to update", sa.InSPI)
	}
	var errs error
	if c.vpn != nil {
		errs = errors.Join(errs, k.pin(c.vpn, sa.Iface, sa.Local.Addr().Unmap(), sa.Remote.Addr().Unmap()))
	}
	if sa.Local != c.sa.Local || sa.Remote != c.sa.Remote || sa.Encap != c.sa.Encap || sa.TCP != c.sa.TCP {
		errs = errors.Join(errs, k.move(c, sa))
	}
	c.sa.Local, c.sa.Remote, c.sa.Encap, c.sa.TCP, c.sa.Iface = sa.Local, sa.Remote, sa.Encap, sa.TCP, sa.Iface
	switch {
	case sa.Outbound && c.out == nil:
		errs = errors.Join(errs, k.startSending(c))
	case !sa.Outbound && c.out != nil:
		errs = errors.Join(errs, k.stopSending(c))
	}
	c.sa.Outbound = sa.Outbound
	return errs
}

// startSending installs the outbound state. It is the newest of its
// reqid, so the kernel picks it over the one it replaces
// (xfrm_state_look_at prefers the latest added).
func (k *Kernel) startSending(c *child) error {
	_, out, err := k.states(c.sa, c.grp.reqid, c.in.IfID)
	if err != nil {
		return err
	}
	out.OSeq, out.OSeqHi = c.savedOSeq, c.savedOSeqH
	if err := k.addState(out); err != nil {
		return k.refused("outbound", c.sa, out, err)
	}
	c.out = out
	k.bySA[saKey{out.Dst, out.SPI}] = c
	return nil
}

// stopSending removes the outbound state, keeping its count and where
// its sequence numbers stood.
func (k *Kernel) stopSending(c *child) error {
	if info, err := k.getState(c.out); err == nil {
		c.baseOut[0] += info.Bytes
		c.baseOut[1] += info.Packets
		c.savedOSeq, c.savedOSeqH = info.OSeq, info.OSeqHi
	}
	delete(k.bySA, saKey{c.out.Dst, c.out.SPI})
	err := k.delState(c.out)
	c.out = nil
	return err
}

// Delete removes a Child SA, and its policies, routes and VPN interface
// when no other Child SA needs them.
func (k *Kernel) Delete(inSPI uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c := k.children[inSPI]; c != nil {
		k.remove(c)
	}
}

func (k *Kernel) remove(c *child) {
	if c.out != nil {
		delete(k.bySA, saKey{c.out.Dst, c.out.SPI})
		if err := k.delState(c.out); err != nil {
			k.log.Warn("cannot delete outbound SA", "spi", fmt.Sprintf("%08x", c.out.SPI), "err", err)
		}
	}
	for _, r := range c.retired {
		k.retire(r)
	}
	c.retired = nil
	delete(k.bySA, saKey{c.in.Dst, c.in.SPI})
	if err := k.delState(c.in); err != nil {
		k.log.Warn("cannot delete inbound SA", "spi", fmt.Sprintf("%08x", c.in.SPI), "err", err)
	}
	if c.vpn != nil {
		k.delRoutes(c.vpn, c.routes)
	}
	k.releaseGroup(c.grp)
	if c.vpn != nil {
		k.releaseVPN(c.vpn)
	}
	delete(k.children, c.sa.InSPI)
}

// move carries a Child SA to new outer addresses, make-before-break.
//
// Inbound: a new local address gets a new state next to the old one (the
// replay window copied); the old one keeps taking what was already on
// its way for a grace period (the in and fwd templates name no
// addresses, so both pass the policy check). Outbound: XFRM_MIGRATE
// when the kernel has it (the state keeps its keys, counters and
// sequence numbers), else a new state with the sequence numbers carried
// on, the out policies switched to it, then the old one removed.
func (k *Kernel) move(c *child, sa ipsec.ChildSA) error {
	newL, newR := sa.Local.Addr().Unmap(), sa.Remote.Addr().Unmap()
	in, out, err := k.states(sa, c.grp.reqid, c.in.IfID)
	if err != nil {
		return err
	}
	errs := k.moveInbound(c, in)
	// XFRM_MIGRATE finds states by addresses and reqid, not SPI, and
	// cannot take UDP encapsulation away: only a lone SA of its group
	// moves that way. An SA on a TCP stream, or going to or from one, is
	// re-installed: the migrated state would keep the stream it found
	// before (the kernel caches it in the state), and re-installation
	// is the path every kernel has.
	if k.migrate && c.grp.refs == 1 && !(c.sa.Encap && !sa.Encap) && !c.sa.TCP && !sa.TCP && newL.Is4() == c.in.Dst.Is4() {
		err := k.migrateOut(c, sa, newL, newR)
		if err == nil {
			return errs
		}
		if errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP) {
			k.log.Info("the kernel has no XFRM_MIGRATE (CONFIG_XFRM_MIGRATE); moving SAs by re-installing them")
			k.migrate = false
		} else {
			k.log.Warn("XFRM_MIGRATE failed; re-installing the SA instead", "spi", fmt.Sprintf("%08x", sa.InSPI), "err", err)
		}
	}
	return errors.Join(errs, k.reinstallOut(c, sa, out))
}

// graceInbound is how long a moved SA's old inbound state keeps
// receiving: packets the peer sent before it learnt the new address.
const graceInbound = 3 * time.Second

func (k *Kernel) moveInbound(c *child, in *State) error {
	old := c.in
	if in.Dst == old.Dst && in.Encap == old.Encap && in.TCP == old.TCP {
		// Same (address, SPI) and the same framing: the state takes the
		// peer's new address as it is (the kernel finds inbound SAs by
		// destination and SPI, and the in templates name no source).
		c.in.Src, c.in.EncapSrc, c.in.EncapDst = in.Src, in.EncapSrc, in.EncapDst
		return nil
	}
	if info, err := k.getState(old); err == nil {
		in.Seq, in.SeqHi, in.Bitmap = info.Seq, info.SeqHi, info.Bitmap
		c.baseIn[0] += info.Bytes
		c.baseIn[1] += info.Packets
	}
	if in.Dst == old.Dst {
		// Only the framing changed: one state per (address, SPI).
		delete(k.bySA, saKey{old.Dst, old.SPI})
		k.delState(old)
	}
	for i, r := range c.retired {
		if r.Dst == in.Dst {
			// Back to an address whose state is still in its grace
			// period: the new one takes its place.
			c.retired = slices.Delete(c.retired, i, i+1)
			k.delState(r)
			break
		}
	}
	if err := k.addState(in); err != nil {
		return k.refused("inbound", c.sa, in, err)
	}
	c.in = in
	k.bySA[saKey{in.Dst, in.SPI}] = c
	if in.Dst != old.Dst {
		c.retired = append(c.retired, old)
		time.AfterFunc(graceInbound, func() {
			k.mu.Lock()
			defer k.mu.Unlock()
			if i := slices.Index(c.retired, old); i >= 0 && !k.closed {
				c.retired = slices.Delete(c.retired, i, i+1)
				k.retire(old)
			}
		})
	}
	return nil
}

// retire deletes a moved SA's old inbound state.
func (k *Kernel) retire(s *State) {
	if k.bySA[saKey{s.Dst, s.SPI}] != nil && k.bySA[saKey{s.Dst, s.SPI}].in != s {
		delete(k.bySA, saKey{s.Dst, s.SPI})
	}
	k.delState(s)
}

// migrateOut moves the outbound state and the out policies' templates by
// XFRM_MSG_MIGRATE, one message per out policy (the first moves the
// state; the others find it moved and only update their template).
func (k *Kernel) migrateOut(c *child, sa ipsec.ChildSA, newL, newR netip.Addr) error {
	oldL, oldR := c.sa.Local.Addr().Unmap(), c.sa.Remote.Addr().Unmap()
	n := 0
	for i := range c.grp.installed {
		p := &c.grp.installed[i]
		if p.Dir != dirOut {
			continue
		}
		m := Migration{Policy: p, Encap: sa.Encap, EncapSrc: sa.Local.Port(), EncapDst: sa.Remote.Port(),
			OldSrc: oldL, OldDst: oldR, NewSrc: newL, NewDst: newR}
		if _, err := k.nl.request("migrating", msgMigrate, 0, m.msg(), false); err != nil {
			if n == 0 {
				return err
			}
			return fmt.Errorf("xfrm: migrate stopped half way: %w", err)
		}
		n++
		if p.Tmpl.Dst.IsValid() {
			p.Tmpl.Src, p.Tmpl.Dst = newL, newR
		}
	}
	if out := c.out; out != nil {
		delete(k.bySA, saKey{out.Dst, out.SPI})
		out.Src, out.Dst, out.Encap, out.EncapSrc, out.EncapDst = newL, newR, sa.Encap, sa.Local.Port(), sa.Remote.Port()
		k.bySA[saKey{out.Dst, out.SPI}] = c
	}
	return nil
}

// reinstallOut is the outbound move without XFRM_MIGRATE. The new state
// continues the sequence numbers a little ahead, so what the old state
// sends meanwhile is no replay of the new one's.
func (k *Kernel) reinstallOut(c *child, sa ipsec.ChildSA, out *State) error {
	if old := c.out; old != nil {
		if info, err := k.getState(old); err == nil {
			seq := uint64(info.OSeqHi)<<32 | uint64(info.OSeq)
			seq += uint64(k.cfg.ReplayWindow / 4)
			out.OSeq, out.OSeqHi = uint32(seq), uint32(seq>>32)
			c.baseOut[0] += info.Bytes
			c.baseOut[1] += info.Packets
		}
		same := out.Dst == old.Dst
		if same {
			delete(k.bySA, saKey{old.Dst, old.SPI})
			k.delState(old)
		}
		if err := k.addState(out); err != nil {
			c.out = nil
			return k.refused("outbound", sa, out, err)
		}
		delete(k.bySA, saKey{old.Dst, old.SPI})
		c.out = out
		k.bySA[saKey{out.Dst, out.SPI}] = c
		if !same {
			defer k.delState(old)
		}
	}
	var errs error
	for i := range c.grp.installed {
		p := &c.grp.installed[i]
		if p.Dir != dirOut || !p.Tmpl.Dst.IsValid() {
			continue // transport-mode templates and in/fwd name no addresses
		}
		p.Tmpl.Src, p.Tmpl.Dst = out.Src, out.Dst
		_, err := k.nl.request("updating policy", msgUpdPolicy, 0, p.newPolicy(), false)
		errs = errors.Join(errs, err)
	}
	return errs
}

// poll reads every state's counters once a second: traffic for list-sas,
// authentic inbound packets as liveness (RFC 7296 §2.4), and byte limits
// should an expire message have been missed.
func (k *Kernel) poll() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			k.refresh()
			k.mu.Lock()
			if !k.closed {
				k.retryPins()
			}
			k.mu.Unlock()
		}
	}
}

// Refresh reads the counters now (tests; the poll does it every second).
func (k *Kernel) Refresh() { k.refresh() }

func (k *Kernel) refresh() {
	msgs, err := k.nl.request("listing states", msgGetSA, 0, nil, true)
	if err != nil {
		k.log.Debug("cannot list XFRM states", "err", err)
		return
	}
	now := time.Now().UnixNano()
	var limits []limitHit
	k.mu.Lock()
	for _, m := range msgs {
		if m.typ != msgNewSA {
			continue
		}
		s, err := parseState(m.data)
		if err != nil || s.Reqid&^0xffff != reqidBase {
			continue
		}
		c := k.bySA[saKey{s.Dst, s.SPI}]
		if c == nil {
			continue
		}
		var bytes uint64
		if s.SPI == c.in.SPI && s.Dst == c.in.Dst {
			bytes = c.baseIn[0] + s.Bytes
			c.ctr.BytesIn.Store(bytes)
			c.ctr.PacketsIn.Store(c.baseIn[1] + s.Packets)
			c.replay, c.integrity = s.ReplayDrops, s.IntegrityFailed
			if p := c.baseIn[1] + s.Packets; p != c.lastInPkts {
				c.lastInPkts = p
				c.ctr.LastIn.Store(now)
				c.ctr.LastOnPath.Store(now) // the kernel's counters do not say from where
			}
		} else {
			bytes = c.baseOut[0] + s.Bytes
			c.ctr.BytesOut.Store(bytes)
			c.ctr.PacketsOut.Store(c.baseOut[1] + s.Packets)
			// The state's curlft.use_time is when it was first used, not
			// last (the kernel sets it once), so a change in the count
			// between polls dates the last packet, to the poll's second.
			if p := c.baseOut[1] + s.Packets; p != c.lastOutPkts {
				c.lastOutPkts = p
				c.ctr.LastOut.Store(now)
			}
		}
		limits = c.checkLimits(bytes, limits)
	}
	k.mu.Unlock()
	k.report(limits)
}

type limitHit struct {
	inSPI uint32
	hard  bool
}

func (c *child) checkLimits(bytes uint64, l []limitHit) []limitHit {
	if c.sa.SoftBytes != 0 && bytes >= c.sa.SoftBytes && !c.soft {
		c.soft = true
		l = append(l, limitHit{c.sa.InSPI, false})
	}
	if c.sa.HardBytes != 0 && bytes >= c.sa.HardBytes && !c.hard {
		c.hard = true
		l = append(l, limitHit{c.sa.InSPI, true})
	}
	return l
}

func (k *Kernel) report(l []limitHit) {
	if k.cfg.OnLimit == nil {
		return
	}
	for _, h := range l {
		k.cfg.OnLimit(h.inSPI, h.hard)
	}
}

// expired handles XFRM_MSG_EXPIRE: the kernel saw a state cross its soft
// limit (rekey now) or its hard one (the kernel has removed the state;
// the engine deletes the Child SA).
func (k *Kernel) expired(m message) {
	if m.typ != msgExpire {
		return
	}
	s, hard, err := parseExpire(m.data)
	if err != nil || s.Reqid&^0xffff != reqidBase {
		return
	}
	var l []limitHit
	k.mu.Lock()
	if c := k.bySA[saKey{s.Dst, s.SPI}]; c != nil {
		switch {
		case hard && !c.hard:
			c.hard = true
			l = append(l, limitHit{c.sa.InSPI, true})
		case !hard && !c.soft:
			c.soft = true
			l = append(l, limitHit{c.sa.InSPI, false})
		}
	}
	k.mu.Unlock()
	k.report(l)
}

// removeLeftovers deletes every state and policy with a reqid or if_id
// of ours, and our interfaces and rules: what a run that died left.
func (k *Kernel) removeLeftovers() int {
	n := 0
	if msgs, err := k.nl.request("listing states", msgGetSA, 0, nil, true); err == nil {
		for _, m := range msgs {
			s, err := parseState(m.data)
			if m.typ != msgNewSA || err != nil || (s.Reqid&^0xffff != reqidBase && s.IfID&^0xffff != ifIDBase) {
				continue
			}
			if s.SPI == 0 {
				// A trap's larval state (an acquire's).
				l := larval{Seq: s.KmSeq, Dst: s.Dst, Src: s.Src, Family: s.Family, Mode: s.Mode, Reqid: s.Reqid, Mark: s.Mark, MarkMask: s.MarkMask}
				if k.deleteLarval(l) == nil {
					n++
				}
				continue
			}
			if _, err := k.nl.request("deleting state", msgDelSA, 0, saID(s.Src, s.Dst, s.SPI), false); err == nil {
				n++
			}
		}
	}
	if msgs, err := k.nl.request("listing policies", msgGetPolicy, 0, make([]byte, sizePolicyID), true); err == nil {
		for _, m := range msgs {
			p, err := parsePolicy(m.data)
			if err != nil || (p.Reqid&^0xffff != reqidBase && p.IfID&^0xffff != ifIDBase) {
				continue
			}
			if _, err := k.nl.request("deleting policy", msgDelPolicy, 0, rawPolicyID(p), false); err == nil {
				n++
			}
		}
	}
	return n + k.removeLeftoverLinks()
}

// InstalledStates lists the states of ours in the kernel (tests check
// that nothing is left behind).
func InstalledStates() (int, error) {
	c, err := dial(0)
	if err != nil {
		return 0, err
	}
	defer c.close()
	msgs, err := c.request("listing states", msgGetSA, 0, nil, true)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range msgs {
		if s, err := parseState(m.data); err == nil && m.typ == msgNewSA && s.Reqid&^0xffff == reqidBase {
			n++
		}
	}
	pm, err := c.request("listing policies", msgGetPolicy, 0, make([]byte, sizePolicyID), true)
	if err != nil {
		return n, err
	}
	for _, m := range pm {
		if p, err := parsePolicy(m.data); err == nil && (p.Reqid&^0xffff == reqidBase || p.IfID&^0xffff == ifIDBase) {
			n++
		}
	}
	return n, nil
}

// errTCP: the kernel carries ESP in TCP only through an espintcp socket
// (Linux 5.6, CONFIG_INET_ESPINTCP) that the IKE daemon hands its
// stream to (Config.ESPInTCP); without one, the backend says so rather
// than send the SA's ESP where the peer does not expect it.
func errTCP(sa ipsec.ChildSA) error {
	return fmt.Errorf("xfrm: Child SA %08x is on a TCP path (RFC 9329), and this data plane was opened without espintcp (the kernel has none): use data_plane: userspace for connections with tcp: fallback or always", sa.InSPI)
}
