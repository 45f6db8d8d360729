package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/manager"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// The multiple-interfaces lab of the demo and of test/e2e, in the
// simulator: an end user with interfaces (eth0, wlan0, wwan0, and usb0 to
// add), a gateway with one (up0), the paths between them with their own
// delays. Both ends are run by the daemon's own code from the host's
// announcements to the engine and the interface manager: manager.Host,
// usableAddrs, newManagers, pathPolicy, managerSAs, runCommand and
// tellManagers. Only the event loop is the simulator's.

// mifIface is one of the end user's interfaces in the lab and its path to
// the gateway.
type mifIface struct {
	name string
	addr netip.Addr
	path netsim.Link
}

var (
	mifGW     = netip.MustParseAddr("10.92.1.2")
	mifIfaces = []mifIface{
		{"eth0", netip.MustParseAddr("10.91.1.2"), netsim.Link{Delay: 2 * time.Millisecond}},
		{"wlan0", netip.MustParseAddr("10.91.2.2"), netsim.Link{Delay: 8 * time.Millisecond, Jitter: 4 * time.Millisecond}},
		{"wwan0", netip.MustParseAddr("10.91.3.2"), netsim.Link{Delay: 30 * time.Millisecond, Jitter: 10 * time.Millisecond}},
	}
	// mifExtra is the interface that appears later (the demo's usb0).
	mifExtra = mifIface{"usb0", netip.MustParseAddr("10.91.4.2"), netsim.Link{Delay: 3 * time.Millisecond}}
)

// mifOpts is the end user's interface policy (docs/multi-interface.md);
// the zero value is the demo's: per-interface over eth0, wlan0, wwan0
// (and usb0), on_down move, on_return move-back.
type mifOpts struct {
	mode     string   // per-interface or failover
	use      []string // default: eth0, wlan0, wwan0, usb0
	onDown   string   // move or delete
	onReturn string   // move-back or new
	// ifaces are the interfaces the end user has at start (default: the
	// first three).
	ifaces []mifIface
	// rekey, when set, is both ends' IKE SA rekey time (Child SAs: a
	// quarter of it); otherwise nothing is rekeyed in the run.
	rekey time.Duration
	// services adds Child SAs, one per service (the MIF problem
	// statement's use case 2), before the lan one on both ends.
	services bool
}

// simServices are use case 2's services: one Child SA each, narrower
// than lan's, so both ends choose them first.
var simServices = []struct{ name, ts string }{
	{"web", "10.93.0.2[tcp/443]"},
	{"dns", "10.93.0.3[udp/53]"},
	{"mail", "10.93.0.4[tcp/993]"},
	{"sip", "10.93.0.5[udp/5060]"},
}

// serviceChildren is the children lines of one end ("local_ts" on the
// gateway, "remote_ts" on the end user).
func (o mifOpts) serviceChildren(key string, childLife time.Duration) string {
	if !o.services {
		return ""
	}
	var b strings.Builder
	for _, s := range simServices {
		fmt.Fprintf(&b, "      %s: {%s: [%q], esp_proposals: aes128gcm16, rekey_time: %s}\n", s.name, key, s.ts, childLife)
	}
	return b.String()
}

func (o mifOpts) ueConf() string {
	mode, onDown, onReturn, use := o.mode, o.onDown, o.onReturn, o.use
	if mode == "" {
		mode = "per-interface"
	}
	if onDown == "" {
		onDown = "move"
	}
	if onReturn == "" {
		onReturn = "move-back"
	}
	if use == nil {
		use = []string{"eth0", "wlan0", "wwan0", "usb0"}
	}
	ikeLife, childLife := o.lifetimes()
	return fmt.Sprintf(`connections:
  office:
    remote_addrs: [%s]
    local: {auth: psk, id: alice@sim.example}
    remote: {auth: psk, id: gw.sim.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    rekey_time: %s
    dpd_delay: 5s
    vips: [0.0.0.0]
    clone: {enable: true, max_ike_sas: 16, own_vips: true}
    interfaces: {mode: %s, use: [%s], on_down: %s, on_return: %s}
    children:
%s      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16, rekey_time: %s}
`, mifGW, simPSK, ikeLife, mode, strings.Join(use, ", "), onDown, onReturn, o.serviceChildren("remote_ts", childLife), childLife)
}

func (o mifOpts) gwConf() string {
	ikeLife, childLife := o.lifetimes()
	return fmt.Sprintf(`pools:
  vpn: {addrs: 10.99.0.0/24}
connections:
  roadwarrior:
    local: {auth: psk, id: gw.sim.example}
    remote: {auth: psk, id: alice@sim.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    rekey_time: %s
    dpd_delay: 7s
    clone: {enable: true, max_ike_sas: 16}
    pools: [vpn]
    children:
%s      lan: {local_ts: [10.93.0.0/24], esp_proposals: aes128gcm16, rekey_time: %s}
`, simPSK, ikeLife, o.serviceChildren("local_ts", childLife), childLife)
}

func (o mifOpts) lifetimes() (ikeLife, childLife time.Duration) {
	if o.rekey == 0 {
		return 24 * time.Hour, 24 * time.Hour
	}
	return o.rekey, o.rekey / 4
}

// simd is one daemon in the simulator: its engine on a netsim node, its
// host table kept by the node's announcements, its interface managers.
// It reconciles when the daemon's event loop would: after a host change
// or an engine event that asks for it, and every second.
type simd struct {
	net      *netsim.Network
	node     *netsim.Node
	pools    map[string]*ike.Pool
	host     manager.Host
	conns    []*ike.Connection
	managers map[string]*manager.Manager
	soon     bool
	nextTick time.Time
	errs     []string // commands the engine refused
	// onPath, when set, sees every question the engine asks its path
	// policy, before the policy answers.
	onPath func(ike.PathQuery)
}

// observedPolicy is the daemon's pathPolicy with the questions shown to
// the test (simd.onPath).
type observedPolicy struct {
	*pathPolicy
	d *simd
}

func (o observedPolicy) NextPath(q ike.PathQuery) (ike.Path, bool) {
	if o.d.onPath != nil {
		o.d.onPath(q)
	}
	return o.pathPolicy.NextPath(q)
}

// listenAny is the daemon's default listen list: every address.
var listenAny = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}

// noDevice: the simulated hosts have no data-plane devices to skip.
func noDevice(string) bool { return false }

func newSimd(t testing.TB, net *netsim.Network, name, yaml string, setup func(*netsim.Node)) *simd {
	t.Helper()
	conns, pools, cfg := simConns(t, name+".yaml", yaml)
	d := &simd{net: net, pools: pools, conns: conns, nextTick: net.Now.Add(time.Second)}
	// As New: the engine asks the managers for paths (pathPolicy).
	policy := &pathPolicy{manager: func(c string) *manager.Manager { return d.managers[c] },
		ifaces: func() []manager.Interface { return d.host.Interfaces(noDevice) }, now: func() time.Time { return net.Now }}
	var elog *slog.Logger
	if os.Getenv("SIMTRACE") != "" {
		elog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.String("sim", net.Now.Format("15:04:05.000"))
			}
			return a
		}})).With("node", name, "engine", true)
	}
	node, err := net.AddNode(name, ike.Config{Connections: conns, PathPolicy: observedPolicy{policy, d}, Logger: elog})
	if err != nil {
		t.Fatal(err)
	}
	d.node = node
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("SIMTRACE") != "" {
		simTime := func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.String("sim", net.Now.Format("15:04:05.000"))
			}
			return a
		}
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: simTime}))
	}
	// The daemon's own reading of the configuration into policies.
	dm := &Daemon{policies: map[string]manager.Policy{}, log: log.With("node", name)}
	dm.newManagers(cfg)
	d.managers = dm.managers
	setup(node)
	node.OnAction = func(a ike.Action) {
		if ev, ok := a.(ike.Event); ok && tellManagers(d.managers, node.Engine, ev) {
			d.soon = true
		}
	}
	// As Daemon.Run: a full read at start, then the announcements.
	d.host.Reset(node.Links())
	node.OnHost = func(ev manager.HostEvent) {
		if d.host.Apply(ev) {
			d.hostChanged()
		}
	}
	d.hostChanged()
	return d
}

// hostChanged is Daemon.hostChanged: the engine gets the usable
// addresses, the managers run soon.
func (d *simd) hostChanged() {
	addrs := usableAddrs(d.host.Links(), listenAny, noDevice)
	d.node.Do(func(now time.Time) []ike.Action { return d.node.Engine.SetLocalAddresses(now, addrs) })
	d.soon = true
}

// reconcile is Daemon.reconcile, over the connections in order.
func (d *simd) reconcile() {
	d.soon = false
	if len(d.managers) == 0 {
		return
	}
	ifaces := d.host.Interfaces(noDevice)
	all := d.node.Engine.IKESAs()
	for _, c := range d.conns {
		m := d.managers[c.Name]
		if m == nil || len(c.RemoteAddrs) == 0 {
			continue
		}
		for _, cmd := range m.Reconcile(d.net.Now, c.RemoteAddrs[0], ifaces, managerSAs(all, c.Name)) {
			d.node.Do(func(now time.Time) []ike.Action {
				acts, err := runCommand(d.node.Engine, now, m, c, cmd)
				if err != nil {
					d.errs = append(d.errs, fmt.Sprintf("%v: %#v: %v", now.Format("15:04:05.000"), cmd, err))
				}
				return acts
			})
		}
	}
}

// mifSim is the lab: the end user, the gateway and the network.
type mifSim struct {
	t      testing.TB
	net    *netsim.Network
	ue, gw *simd
	pool   *ike.Pool
	opts   mifOpts
	auths  int       // IKE_AUTH requests the end user sent
	start  time.Time // when the daemons started
	// firstPacket is when the end user sent its first message (since
	// start); sent says it has.
	firstPacket time.Duration
	sent        bool
}

func newMIFSim(t testing.TB, seed uint64, o mifOpts) *mifSim {
	t.Helper()
	if o.ifaces == nil {
		o.ifaces = mifIfaces
	}
	net := netsim.New(seed)
	net.Default = netsim.Link{Delay: 5 * time.Millisecond}
	if os.Getenv("SIMTRACE") != "" {
		net.Trace = os.Stderr
	}
	s := &mifSim{t: t, net: net, opts: o}
	s.gw = newSimd(t, net, "gw", o.gwConf(), func(n *netsim.Node) { n.AddInterface("up0", mifGW) })
	s.pool = s.gw.pools["vpn"]
	s.ue = newSimd(t, net, "ue", o.ueConf(), func(n *netsim.Node) {
		for _, i := range o.ifaces {
			s.addIface(n, i)
		}
	})
	net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == s.ue.node && m.Exchange == uint8(wire.IKEAuth) && !m.Response {
			s.auths++
		}
		if from == s.ue.node && !s.sent {
			s.sent, s.firstPacket = true, s.since()
		}
		return netsim.Deliver
	}
	s.start = net.Now
	return s
}

// addIface gives the end user interface i with its path to the gateway.
func (s *mifSim) addIface(n *netsim.Node, i mifIface) {
	n.AddInterface(i.name)
	n.SetPath(i.name, mifGW, i.path)
	n.AddIfaceAddr(i.name, i.addr)
}

// AddInterface plugs in a new interface (its announcements follow).
func (s *mifSim) AddInterface(i mifIface) { s.addIface(s.ue.node, i) }

// run advances the simulated time by d, reconciling as the daemons'
// event loops would.
func (s *mifSim) run(d time.Duration) { s.runUntil(d, func() bool { return false }) }

// runUntil runs until cond holds (checked after every event and tick) or
// d passes, and reports whether cond held.
func (s *mifSim) runUntil(d time.Duration, cond func() bool) bool {
	end := s.net.Now.Add(d)
	for {
		for _, x := range []*simd{s.ue, s.gw} {
			if x.soon {
				x.reconcile()
			}
		}
		if cond() {
			return true
		}
		next := end
		for _, x := range []*simd{s.ue, s.gw} {
			if x.nextTick.Before(next) {
				next = x.nextTick
			}
		}
		if s.net.Step(next) {
			continue
		}
		if s.net.Now.Before(next) {
			s.net.Now = next
		}
		for _, x := range []*simd{s.ue, s.gw} {
			if !s.net.Now.Before(x.nextTick) {
				x.nextTick = x.nextTick.Add(time.Second)
				x.soon = true
			}
		}
		if !s.net.Now.Before(end) {
			for _, x := range []*simd{s.ue, s.gw} {
				if x.soon {
					x.reconcile()
				}
			}
			return cond()
		}
	}
}

// since is the simulated time since the daemons started.
func (s *mifSim) since() time.Duration { return s.net.Now.Sub(s.start) }

// vpn is one of the end user's VPNs as a test sees it: the IKE SA that
// carries it now and the interface it is on.
type vpn struct {
	ike.IKESAInfo
	iface string
}

// vpns are the end user's VPNs now: one per lineage (the established SA,
// of a rekey pair the one with the Child SAs), by lineage.
func (s *mifSim) vpns() map[uint64]vpn {
	out := map[uint64]vpn{}
	for _, sa := range s.ue.node.Engine.IKESAs() {
		if sa.State != ike.StateEstablished || sa.Conn != "office" {
			continue
		}
		if o, ok := out[sa.Lineage]; ok && len(o.Children) >= len(sa.Children) {
			continue
		}
		iface := sa.Iface
		if iface == "" {
			iface = s.ue.node.InterfaceOf(sa.Local.Addr())
		}
		out[sa.Lineage] = vpn{sa, iface}
	}
	return out
}

// perIface counts the VPNs on each interface.
func (s *mifSim) perIface() map[string]int {
	per := map[string]int{}
	for _, v := range s.vpns() {
		per[v.iface]++
	}
	return per
}

// vpnOn is the VPN on interface name, when exactly one is there.
func (s *mifSim) vpnOn(name string) (vpn, bool) {
	var found []vpn
	for _, v := range s.vpns() {
		if v.iface == name {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		return vpn{}, false
	}
	return found[0], true
}

// oneEach says whether each named interface has exactly one VPN with
// Child SAs and there are no others.
func (s *mifSim) oneEach(names ...string) func() bool {
	return func() bool {
		vs := s.vpns()
		if len(vs) != len(names) {
			return false
		}
		for _, n := range names {
			v, ok := s.vpnOn(n)
			if !ok || len(v.Children) == 0 {
				return false
			}
		}
		return true
	}
}

// allChildren says whether each named interface's VPN has a Child SA
// of every name in want (and each has one VPN, as oneEach).
func (s *mifSim) allChildren(want []string, names ...string) func() bool {
	each := s.oneEach(names...)
	return func() bool {
		if !each() {
			return false
		}
		for _, n := range names {
			v, _ := s.vpnOn(n)
			for _, w := range want {
				if !slices.ContainsFunc(v.Children, func(c ike.ChildInfo) bool { return c.Name == w }) {
					return false
				}
			}
		}
		return true
	}
}

// quiet runs until nothing is in flight (at most 10 s): the moment
// netsim.CheckConsistent compares the peers at.
func (s *mifSim) quiet() {
	s.t.Helper()
	if !s.runUntil(10*time.Second, s.net.Quiet) {
		s.t.Fatalf("the network was never quiet")
	}
}

// dataPathErrors is what would keep a VPN's traffic from flowing: the
// peers disagree (netsim.CheckConsistent: IKE and Child SAs, SPIs, keys,
// addresses, data planes), a Child SA is not on its IKE SA's path, its
// interface is not the VPN's, or the network would not carry ESP between
// its outer addresses, either way. Call it when the network is quiet.
func (s *mifSim) dataPathErrors() []string {
	var errs []string
	if err := netsim.CheckConsistent(s.ue.node, s.gw.node); err != nil {
		errs = append(errs, strings.Split(err.Error(), "\n")...)
	}
	gwChild := map[uint32]ike.ChildInfo{}
	for _, sa := range s.gw.node.Engine.IKESAs() {
		for _, c := range sa.Children {
			gwChild[c.InSPI] = c
		}
	}
	for _, v := range s.vpns() {
		if len(v.Children) == 0 {
			errs = append(errs, fmt.Sprintf("VPN %d (IKE SA %d) on %s has no Child SA", v.Lineage, v.ID, v.iface))
		}
		for _, c := range v.Children {
			out := ike.Datagram{Local: c.Local, Remote: c.Remote, Iface: c.Iface}
			if v.iface == "" || s.ue.node.InterfaceOf(c.Local.Addr()) != v.iface {
				errs = append(errs, fmt.Sprintf("VPN %d: Child SA %08x leaves from %v, not from its interface %q", v.Lineage, c.InSPI, c.Local, v.iface))
			}
			if !s.net.Delivers(out) {
				errs = append(errs, fmt.Sprintf("VPN %d: ESP of Child SA %08x from %v (%s) to %v would be lost", v.Lineage, c.InSPI, c.Local, v.iface, c.Remote))
			}
			g, ok := gwChild[c.OutSPI]
			if !ok {
				continue // CheckConsistent said so
			}
			if g.Local != c.Remote || g.Remote != c.Local {
				errs = append(errs, fmt.Sprintf("VPN %d: the gateway sends Child SA %08x's ESP %v -> %v, the end user expects it at %v", v.Lineage, g.OutSPI, g.Local, g.Remote, c.Local))
			}
			if !s.net.Delivers(ike.Datagram{Local: g.Local, Remote: g.Remote, Iface: g.Iface}) {
				errs = append(errs, fmt.Sprintf("VPN %d: the gateway's ESP of Child SA %08x to %v would be lost", v.Lineage, g.OutSPI, g.Remote))
			}
		}
	}
	return errs
}

// sharedInnerAddrs: no two VPNs that carry traffic (have Child SAs) share
// an inner address (RFC 7791 with own_vips). A clone is given its own in
// its first CREATE_CHILD_SA (RFC 7296 §2.19); until then it shows its
// parent's.
func (s *mifSim) sharedInnerAddrs() []string {
	var errs []string
	seen := map[netip.Addr]uint64{}
	for _, v := range s.vpns() {
		if len(v.Children) == 0 {
			continue
		}
		for _, a := range v.VirtualIPs {
			if o, dup := seen[a]; dup {
				errs = append(errs, fmt.Sprintf("inner address %v is held by VPNs %d and %d", a, min(o, v.Lineage), max(o, v.Lineage)))
			}
			seen[a] = v.Lineage
		}
	}
	return errs
}

// innerAddrErrors: every VPN has its own inner address, and the gateway
// leases exactly the ones in use.
func (s *mifSim) innerAddrErrors() []string {
	errs := s.sharedInnerAddrs()
	seen := map[netip.Addr]bool{}
	for _, v := range s.vpns() {
		if len(v.VirtualIPs) != 1 {
			errs = append(errs, fmt.Sprintf("VPN %d on %s has inner addresses %v, want one", v.Lineage, v.iface, v.VirtualIPs))
		}
		for _, a := range v.VirtualIPs {
			seen[a] = true
		}
	}
	if n := s.pool.InUse(); n != len(seen) {
		errs = append(errs, fmt.Sprintf("the gateway leases %d inner addresses, the end user holds %d", n, len(seen)))
	}
	return errs
}

// check fails the test with what is wrong with the data path and the
// inner addresses now (after running until quiet).
func (s *mifSim) check(what string) {
	s.t.Helper()
	s.quiet()
	errs := append(s.dataPathErrors(), s.innerAddrErrors()...)
	if len(errs) > 0 {
		s.t.Fatalf("%s, at +%v:\n%s\n%s", what, s.since(), strings.Join(errs, "\n"), s.table())
	}
}

// table lists the end user's VPNs, for failure messages.
func (s *mifSim) table() string {
	var b strings.Builder
	vs := s.vpns()
	keys := make([]uint64, 0, len(vs))
	for k := range vs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := vs[k]
		fmt.Fprintf(&b, "  VPN %d: IKE SA %d on %-6s %v - %v parent %d inner %v children %d\n", k, v.ID, v.iface, v.Local, v.Remote, v.Parent, v.VirtualIPs, len(v.Children))
	}
	for _, i := range s.ue.node.Interfaces() {
		fmt.Fprintf(&b, "  %s: up %v carrier %v silent %v %v\n", i.Name, i.Up, i.Carrier, i.Silent, i.Addrs)
	}
	if len(s.ue.errs) > 0 {
		fmt.Fprintf(&b, "  refused commands:\n    %s\n", strings.Join(s.ue.errs, "\n    "))
	}
	return b.String()
}

// at says whether VPN lineage is on interface name and the gateway's SA
// agrees on its addresses (the MOBIKE update went through).
func (s *mifSim) at(lineage uint64, name string) bool {
	v, ok := s.vpns()[lineage]
	if !ok || v.iface != name {
		return false
	}
	for _, g := range s.gw.node.Engine.IKESAs() {
		if g.SPIi == v.SPIi && g.SPIr == v.SPIr {
			return g.State == ike.StateEstablished && g.Remote == v.Local && g.Local == v.Remote
		}
	}
	return false
}
