// Package manager turns a host's interfaces into VPNs: the end user's
// side of the multiple-interfaces problem (draft-mglt-mif-security-
// requirements): authenticate once, then one VPN per usable interface by
// cloning the IKE SA (RFC 7791 Appendix A) and moving each clone onto its
// interface with MOBIKE (RFC 4555); move VPNs off interfaces that fail
// and back when they return.
//
// The manager is a pure decision function, like the engine: Reconcile
// takes the interfaces and the connection's IKE SAs as they are now and
// returns commands (initiate, clone, create a Child SA, move, delete);
// the daemon carries them out and calls again on the next change. It
// remembers only each SA's home interface and the operations in flight,
// so every call converges on the policy from whatever state it finds.
// Host (host.go) holds the interfaces: a full read of the host, kept
// current by the kernel's link and address announcements applied one by
// one.
package manager

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/ifacerule"
)

// Mode is how VPNs map to interfaces.
type Mode int

const (
	// PerInterface keeps one VPN on every usable interface.
	PerInterface Mode = iota
	// Failover keeps one VPN, on the most preferred usable interface.
	Failover
)

func (m Mode) String() string {
	if m == Failover {
		return "failover"
	}
	return "per-interface"
}

// Policy is one connection's interface policy.
type Policy struct {
	Conn string
	Mode Mode
	// Use lists the eligible interfaces as names or shell patterns
	// (wlan*), most preferred first.
	Use []string
	// MoveOnDown moves a VPN whose interface fails to the best remaining
	// one (its inner address stays, so connections through it survive);
	// false deletes it.
	MoveOnDown bool
	// MoveBack returns a moved VPN to its interface when that comes back;
	// false leaves it and gives the returning interface a new VPN.
	MoveBack bool
	// Children are brought up on every clone (RFC 7791 App. A.3), and
	// again on any VPN that lost one.
	Children []string
	// AllGatewayAddrs spreads VPNs over every (interface, gateway
	// address) pair the gateway announced (RFC 7791 figures 2 and 3)
	// instead of one per interface.
	AllGatewayAddrs bool
	// Retry is how long an operation may stay unanswered before it is
	// tried again (default 20 s).
	Retry time.Duration
	// MPTCP asks for an MPTCP endpoint per VPN inner address
	// (Endpoints), with Multipath the modes by interface, the first
	// match winning (multipath.go).
	MPTCP     bool
	Multipath ifacerule.Rules[MultipathMode]
	// Spread asks for new flows that are not MPTCP to be spread over
	// the VPNs (SpreadTargets), weighted by SpreadWeights by interface,
	// the first match winning, 1 where none matches (spread.go).
	Spread        bool
	SpreadWeights ifacerule.Rules[int]
	// SpreadMeasured multiplies each VPN's configured weight by a factor
	// from its path's measured round trip and loss (spread.go).
	SpreadMeasured bool
}

// Interface is a network interface as the host sees it now.
type Interface struct {
	Name  string
	Up    bool // administratively up and with carrier
	Addrs []netip.Addr
}

// SA is one IKE SA of the connection.
type SA struct {
	ID uint64
	// Lineage names the VPN across IKE SA rekeys: the ID of the first SA
	// of the rekey chain (the ID itself changes with every rekey).
	Lineage         uint64
	Established     bool
	Local, Remote   netip.Addr
	Iface           string // pinned interface, if any
	Parent          uint64 // clone parent
	CloneSupported  bool
	MOBIKE          bool
	MOBIKEInitiator bool
	PeerAddrs       []netip.Addr
	// VIPs are the inner addresses the gateway gave us on this SA.
	VIPs     []netip.Addr
	Children []Child
	// Creating names the Child SAs the engine is making already (after
	// IKE_AUTH it makes the connection's other start children itself).
	Creating []string
	// Deleting: its Delete is under way (by us or by the engine, after
	// a rekey); it serves no slot any more.
	Deleting bool
	// Path is what the SA's exchanges measured of its path.
	Path PathStats
}

// PathStats are an SA's path as its IKE exchanges measured it
// (ike.IKESAInfo): smoothed round trip, the fraction of request
// transmissions unanswered, and the round trips they come from (0:
// not measured).
type PathStats struct {
	RTT     time.Duration
	Loss    float64
	Samples int
}

// Child is one Child SA of an IKE SA.
type Child struct {
	Name      string
	InSPI     uint32
	Transport bool
	// Covers and CoversRemote say whether its local (remote) selectors
	// cover an address.
	Covers, CoversRemote func(netip.Addr) bool
}

// Command is something the daemon must do.
type Command interface{ isCommand() }

// Initiate authenticates from Local on Iface (to Remote, or the
// connection's address when invalid); report the new SA with Bind.
type Initiate struct {
	Slot          Slot
	Local, Remote netip.Addr
	Iface         string
}

// Clone clones IKE SA ID (RFC 7791).
type Clone struct{ ID uint64 }

// CreateChild brings up child Name on IKE SA ID.
type CreateChild struct {
	ID   uint64
	Name string
}

// Move moves IKE SA ID and its Child SAs (RFC 4555).
type Move struct {
	ID            uint64
	Local, Remote netip.Addr
	Iface         string
}

// Terminate deletes IKE SA ID, or only its Child SA ChildSPI.
type Terminate struct {
	ID       uint64
	ChildSPI uint32
}

func (Initiate) isCommand()    {}
func (Clone) isCommand()       {}
func (CreateChild) isCommand() {}
func (Move) isCommand()        {}
func (Terminate) isCommand()   {}

// Slot is where a VPN belongs: an interface, and in AllGatewayAddrs mode
// also a gateway address.
type Slot struct {
	Iface  string
	Remote netip.Addr
}

func (s Slot) String() string {
	if s.Remote.IsValid() {
		return s.Iface + "→" + s.Remote.String()
	}
	return s.Iface
}

// Manager holds one connection's decisions between calls. What it
// remembers of an SA is keyed by the SA's VPN (vpn: its Lineage), not by
// its ID: an IKE SA rekey replaces the SA under a new ID (RFC 7296 §2.8),
// and the replacement is the same VPN, in the same slot.
type Manager struct {
	p    Policy
	log  *slog.Logger
	home map[uint64]Slot // by VPN
	// Operations in flight, with when they started.
	initiating map[Slot]time.Time
	cloning    map[uint64][]pendingClone // by the parent's ID, in request order
	// late are clone requests given up after Retry, by parent ID: an
	// answer may still come, and a clone nobody needs any more is ours
	// to delete (not a VPN the user made).
	late map[uint64][]time.Time
	// surplus are such clones being deleted, by ID.
	surplus map[uint64]time.Time
	// deleting are the VPNs the manager deleted (on_down delete), with
	// when: until their SAs are gone they serve no slot and are no base
	// for clones, and they are not taken back as SAs the manager did not
	// start while their Delete waits behind an unanswered request.
	deleting  map[uint64]time.Time
	moving    map[uint64]moveOp    // by VPN
	replacing map[uint32]time.Time // transport Child SAs being replaced
	// creating are the Child SAs asked for, by VPN and child name, with
	// when: not asked for again within Retry.
	creating map[childKey]time.Time
	// up are the VPNs seen established; one that goes before it ever
	// was is a failed authentication.
	up map[uint64]bool
	// authHold delays the next authentication from an interface whose
	// last ones failed (wrong credentials, a gateway or RADIUS server
	// refusing or silent): Retry, doubling per failure up to
	// maxAuthHold, so a wrong password does not hit the RADIUS server
	// every 20 s for ever. A success clears it.
	authHold map[string]holdDown
	// spreadFactors are the path factors the spreading rules were last
	// given, by inner address: a factor changes only by enough
	// (spread.go, hysteresis).
	spreadFactors map[netip.Addr]int
	noClone       bool // the peer did not offer cloning: said once
	// limit is how many SAs the connection had when the peer answered a
	// clone with NO_ADDITIONAL_SAS: no clone is asked for again until
	// there are fewer (RFC 7791 §5.3: the refusal is permanent until
	// some SAs with the peer are deleted). 0: no limit known.
	limit int
	// Interfaces whose path the engine gave up on (silent failure: up,
	// but dead, NextPath) with when they may be used again; the hold
	// doubles each time.
	suspect map[string]holdDown
}

type holdDown struct {
	until time.Time
	hold  time.Duration
}

// minHold and maxHold bound how long an interface whose path failed is
// left alone before a VPN is tried on it again.
const (
	minHold = 30 * time.Second
	maxHold = 10 * time.Minute
	// maxAuthHold caps the wait between failed authentications: long
	// enough to spare the AAA servers, short enough that a fixed
	// problem (a password file corrected, a server back) shows soon.
	maxAuthHold = 5 * time.Minute
)

type moveOp struct {
	iface string
	at    time.Time
}

type pendingClone struct {
	slot Slot
	at   time.Time
	vpn  uint64 // the parent's VPN: the request dies with it
}

// vpn is the key of the VPN s belongs to: its rekey lineage.
func vpn(s SA) uint64 {
	if s.Lineage != 0 {
		return s.Lineage
	}
	return s.ID
}

// current keeps one SA per VPN. Two SAs of one VPN exist while an IKE SA
// is reauthenticated (make-before-break, RFC 7296 §2.8.3) or after a
// rekey collision until the redundant SA is deleted (§2.8.2): the one
// that carries the VPN is the established one holding its Child SAs, and
// of equals the newest.
func current(sas []SA) []SA {
	out := make([]SA, 0, len(sas))
	at := map[uint64]int{}
	for _, s := range sas {
		k := vpn(s)
		i, dup := at[k]
		if !dup {
			at[k] = len(out)
			out = append(out, s)
			continue
		}
		o := out[i]
		if better := s.Established != o.Established && s.Established ||
			s.Established == o.Established && (len(s.Children) > len(o.Children) ||
				len(s.Children) == len(o.Children) && s.ID > o.ID); better {
			out[i] = s
		}
	}
	return out
}

// New makes a manager for p.
func New(p Policy, log *slog.Logger) *Manager {
	if p.Retry == 0 {
		p.Retry = 20 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{p: p, log: log.With("conn", p.Conn, "policy", p.Mode.String()), home: map[uint64]Slot{},
		initiating: map[Slot]time.Time{}, cloning: map[uint64][]pendingClone{}, late: map[uint64][]time.Time{}, surplus: map[uint64]time.Time{}, deleting: map[uint64]time.Time{}, moving: map[uint64]moveOp{},
		replacing: map[uint32]time.Time{}, suspect: map[string]holdDown{}, creating: map[childKey]time.Time{},
		up: map[uint64]bool{}, authHold: map[string]holdDown{}, spreadFactors: map[netip.Addr]int{}}
}

// PathReason is why the engine asks for another path (see NextPath).
type PathReason uint8

const (
	PathAddressGone     PathReason = iota + 1 // our address of the path went away
	PathUnanswered                            // requests unanswered through retransmissions
	PathRefused                               // the peer refused our update to the path
	PathPeerAddressGone                       // the peer no longer lists the address we send to
)

// Path is an address pair and the interface it is pinned to.
type Path struct {
	Local, Remote netip.Addr
	Iface         string
}

// PathRequest is the engine's question: the VPN (its lineage), why, where
// it is, and the paths MOBIKE allows.
type PathRequest struct {
	Lineage    uint64
	Reason     PathReason
	Current    Path
	Candidates []Path
}

// NextPath is the engine's path policy for this connection (RFC 4555
// §3.5: the MOBIKE initiator decides where an SA goes; this is how). The
// engine asks when it must leave a path, and this is where the manager
// learns it, not by inferring it afterwards:
//   - requests unanswered on an interface that is still up is a silent
//     failure: VPNs stay off that interface for a while, twice as long
//     each time (ifaces is the host's table now);
//   - the VPN goes to its home interface if that is usable and not the
//     one that failed, else to the first usable interface in the
//     policy's order that is not held down;
//   - with nowhere good to go it stays and liveness checks decide, except
//     when its address is gone: then any allowed path, so that at least
//     the Delete the policy may send next can leave.
//
// The move is remembered as the manager's own, so Reconcile does not undo
// it.
func (m *Manager) NextPath(now time.Time, ifaces []Interface, q PathRequest) (Path, bool) {
	cur := q.Current.Iface
	if cur == "" {
		for _, i := range ifaces {
			if slices.Contains(i.Addrs, q.Current.Local) {
				cur = i.Name
			}
		}
	}
	if q.Reason == PathUnanswered && cur != "" && !now.Before(m.suspect[cur].until) {
		// One failure of an interface, however many VPNs on it ask: the
		// hold doubles per failure, not per VPN.
		for _, i := range ifaces {
			if i.Name == cur && i.Up && addrOf(i, q.Current.Remote).IsValid() {
				h := min(max(m.suspect[cur].hold*2, minHold), maxHold)
				m.suspect[cur] = holdDown{until: now.Add(h), hold: h}
				m.log.Warn("path over interface failed while it is up; avoiding it for a while", "iface", cur, "vpn", q.Lineage, "for", h)
			}
		}
	}
	use := slices.DeleteFunc(m.usable(ifaces, q.Current.Remote), func(u usable) bool {
		return now.Before(m.suspect[u.Name].until) || (u.Name == cur && q.Reason != PathPeerAddressGone)
	})
	if home, ok := m.home[q.Lineage]; ok {
		if i := slices.IndexFunc(use, func(u usable) bool { return u.Name == home.Iface }); i > 0 {
			use[0], use[i] = use[i], use[0] // home first
		}
	}
	for _, u := range use {
		for _, c := range q.Candidates {
			if slices.Contains(u.Addrs, c.Local) {
				c.Iface = u.Name
				m.moving[q.Lineage] = moveOp{u.Name, now}
				if home, ok := m.home[q.Lineage]; ok && !m.p.MoveBack && home.Iface != u.Name {
					// on_return new: the VPN stays where it goes, and the
					// interface it left gets a fresh clone when it returns
					// (as followInterface does for a move it makes).
					m.home[q.Lineage] = Slot{Iface: u.Name, Remote: home.Remote}
				}
				m.log.Info("engine asked for a path", "vpn", q.Lineage, "reason", q.Reason, "from", cur, "to", u.Name)
				return c, true
			}
		}
	}
	if q.Reason == PathAddressGone && len(q.Candidates) > 0 {
		return q.Candidates[0], true
	}
	return Path{}, false
}

// CloneRefused tells the manager the peer refused a clone of parent with
// NO_ADDITIONAL_SAS while the connection had n IKE SAs.
func (m *Manager) CloneRefused(parent uint64, n int) {
	m.limit = n
	if q := m.cloning[parent]; len(q) > 0 {
		m.cloning[parent] = q[1:] // the refused request's slot is free again
	}
	m.log.Warn("the gateway allows no more IKE SAs (NO_ADDITIONAL_SAS); no more clones until one goes", "have", n)
}

// ClearAuthHolds clears the waits after failed authentications: the
// configuration was reloaded (a corrected password, another server), so
// the next authentication goes at once.
func (m *Manager) ClearAuthHolds() { clear(m.authHold) }

// Bind tells the manager which SA an Initiate made (a new SA: its ID is
// its VPN's key).
func (m *Manager) Bind(s Slot, id uint64) { m.home[id] = s }

// Deleting reports whether the manager deleted VPN lineage and its SAs
// are still there (their Delete not answered yet).
func (m *Manager) Deleting(lineage uint64) bool {
	_, ok := m.deleting[lineage]
	return ok
}

// Home is the slot of the VPN with key lineage, for displays.
func (m *Manager) Home(lineage uint64) (Slot, bool) {
	s, ok := m.home[lineage]
	return s, ok
}

// usable is an eligible interface that is up with an address of the
// peer's family.
type usable struct {
	Interface
	rank int
}

func (m *Manager) usable(ifaces []Interface, family netip.Addr) []usable {
	var out []usable
	for _, i := range ifaces {
		rank := -1
		for k, pat := range m.p.Use {
			if ok, _ := path.Match(pat, i.Name); ok {
				rank = k
				break
			}
		}
		if rank < 0 || !i.Up || !addrOf(i, family).IsValid() {
			continue
		}
		out = append(out, usable{i, rank})
	}
	slices.SortStableFunc(out, func(a, b usable) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// addrOf picks the interface's address of the peer's family.
func addrOf(i Interface, family netip.Addr) netip.Addr {
	for _, a := range i.Addrs {
		if !family.IsValid() || a.Is4() == family.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// ifaceOf is the interface an SA uses now: its pin, or the owner of its
// local address.
func ifaceOf(s SA, ifaces []Interface) string {
	if s.Iface != "" {
		return s.Iface
	}
	for _, i := range ifaces {
		if slices.Contains(i.Addrs, s.Local) {
			return i.Name
		}
	}
	return ""
}

// Reconcile compares the SAs with the policy and returns what to do.
// gateway is the connection's configured remote address (for the family
// and the first authentication). Each step below applies one rule of the
// policy, in this order: what the manager remembers is brought up to date
// first, then VPNs are placed and moved, and last the slots still empty
// are filled.
func (m *Manager) Reconcile(now time.Time, gateway netip.Addr, ifaces []Interface, sas []SA) []Command {
	r := m.newRound(now, gateway, ifaces, sas)
	m.forgetGoneVPNs(r)
	m.expireMoves(r)
	r.use = m.usableNow(r)

	m.placeReadyClones(r)
	m.expireCloneRequests(r)
	m.homeAtGatewayAddress(r)
	m.adoptUnmanagedSAs(r)
	m.expireInitiations(r)
	m.abandonStrandedAuthentications(r)
	m.releaseAuthenticatedSlots(r)
	m.followInterfaces(r)
	m.preferBest(r)
	m.restoreChildren(r)

	want := m.slots(r.use, r.sas)
	served := m.served()
	m.placeOrphanClones(r, want, served)
	m.expireLateClones(r)
	if m.p.Mode == Failover && (len(m.home) > 0 || len(m.initiating) > 0 || len(m.cloning) > 0) {
		return r.cmds // one VPN, wherever it is now
	}
	m.fillEmptySlots(r, want, served)
	return r.cmds
}

// round is one Reconcile call: what it was given, what it derived, and
// the commands decided so far.
type round struct {
	now     time.Time
	gateway netip.Addr
	ifaces  []Interface
	sas     []SA          // one per VPN (current)
	byVPN   map[uint64]SA // the same, by VPN
	use     []usable      // where a VPN may go now, most preferred first
	orphans []SA          // clones that came up with no request waiting for them
	cmds    []Command
}

func (m *Manager) newRound(now time.Time, gateway netip.Addr, ifaces []Interface, sas []SA) *round {
	// A VPN being deleted is gone as far as the rules go: one the manager
	// deleted, or one whose SAs are all being deleted (the CLI). An SA
	// being deleted is gone too (the old SA of a rekey is, while its
	// successor carries the VPN).
	left, live := map[uint64]bool{}, map[uint64]bool{}
	for _, s := range sas {
		left[vpn(s)] = true
		if !s.Deleting {
			live[vpn(s)] = true
		}
	}
	for k := range left {
		if !live[k] {
			if _, ok := m.deleting[k]; !ok {
				m.deleting[k] = now
			}
		}
	}
	for k := range m.deleting {
		if !left[k] {
			delete(m.deleting, k) // its SAs are gone
		}
	}
	sas = slices.DeleteFunc(slices.Clone(sas), func(s SA) bool {
		_, going := m.deleting[vpn(s)]
		return going || s.Deleting
	})
	r := &round{now: now, gateway: gateway, ifaces: ifaces, sas: current(sas), byVPN: map[uint64]SA{}}
	for _, s := range r.sas {
		r.byVPN[vpn(s)] = s
	}
	return r
}

// usable finds interface name among those a VPN may use now.
func (r *round) usable(name string) (usable, bool) {
	for _, u := range r.use {
		if u.Name == name {
			return u, true
		}
	}
	return usable{}, false
}

func (r *round) ifaceOf(s SA) string { return ifaceOf(s, r.ifaces) }

func (r *round) add(cmds ...Command) { r.cmds = append(r.cmds, cmds...) }

// forgetGoneVPNs drops the home and the move in flight of every VPN that
// no longer has an SA.
func (m *Manager) forgetGoneVPNs(r *round) {
	for _, s := range r.sas {
		if s.Established && !m.up[vpn(s)] {
			m.up[vpn(s)] = true
			if slot, ok := m.home[vpn(s)]; ok {
				delete(m.authHold, slot.Iface) // it worked
			}
		}
	}
	for k, slot := range m.home {
		if _, ok := r.byVPN[k]; !ok {
			if !m.up[k] {
				// Gone before it was ever up: the authentication failed.
				h := min(max(m.authHold[slot.Iface].hold*2, m.p.Retry), maxAuthHold)
				m.authHold[slot.Iface] = holdDown{until: r.now.Add(h), hold: h}
				delete(m.initiating, slot)
				m.log.Warn("authentication failed; trying again later", "iface", slot.Iface, "in", h)
			}
			delete(m.home, k)
			delete(m.moving, k)
		}
	}
	for k := range m.up {
		if _, ok := r.byVPN[k]; !ok {
			if _, going := m.deleting[k]; !going {
				delete(m.up, k)
			}
		}
	}
}

// expireMoves forgets moves that are done (the SA is there) or stale, so
// a later move may go ahead, and transport-mode replacements that are
// long stale.
func (m *Manager) expireMoves(r *round) {
	for k, op := range m.moving {
		if s, ok := r.byVPN[k]; (ok && r.ifaceOf(s) == op.iface) || r.now.Sub(op.at) > m.p.Retry {
			delete(m.moving, k)
		}
	}
	for spi, t := range m.replacing {
		if r.now.Sub(t) > 2*m.p.Retry {
			delete(m.replacing, spi)
		}
	}
}

// usableNow are the eligible interfaces that are up, with an address of
// the gateway's family, and not held down after a silent failure.
func (m *Manager) usableNow(r *round) []usable {
	use := m.usable(r.ifaces, r.gateway)
	return slices.DeleteFunc(use, func(u usable) bool { return r.now.Before(m.suspect[u.Name].until) })
}

// placeReadyClones gives each clone that came up the slot its request was
// made for, in request order: it gets its Child SAs and moves there (RFC
// 7791 App. A.3, A.4). A clone no request waits for is an orphan, placed
// later (placeOrphanClones).
func (m *Manager) placeReadyClones(r *round) {
	for _, s := range r.sas {
		if _, known := m.home[vpn(s)]; known || s.Parent == 0 || !s.Established {
			continue
		}
		q := m.cloning[s.Parent]
		if len(q) == 0 {
			r.orphans = append(r.orphans, s)
			continue
		}
		m.cloning[s.Parent] = q[1:]
		r.add(m.place(r.now, s, q[0].slot, r.usable)...)
	}
}

// expireCloneRequests gives up clone requests not answered within Retry
// (their slots are tried again; a late answer is remembered in late) and
// those whose parent's VPN is gone.
func (m *Manager) expireCloneRequests(r *round) {
	for parent, q := range m.cloning {
		for len(q) > 0 && r.now.Sub(q[0].at) > m.p.Retry {
			m.late[parent] = append(m.late[parent], q[0].at)
			q = q[1:]
		}
		if len(q) > 0 {
			// The parent's VPN is gone, and its requests with it; one
			// being deleted still answers them (the Delete waits behind
			// the clone exchanges, RFC 7296 §2.3), and its clones are
			// VPNs of their own.
			if _, ok := r.byVPN[q[0].vpn]; !ok && !m.Deleting(q[0].vpn) {
				q = nil
			}
		}
		if len(q) == 0 {
			delete(m.cloning, parent)
		} else {
			m.cloning[parent] = q
		}
	}
}

// homeAtGatewayAddress: with AllGatewayAddrs (RFC 7791 figures 2 and 3),
// a VPN made before the gateway's addresses were known belongs to the
// address it uses.
func (m *Manager) homeAtGatewayAddress(r *round) {
	if !m.p.AllGatewayAddrs {
		return
	}
	for k, slot := range m.home {
		if s, ok := r.byVPN[k]; ok && !slot.Remote.IsValid() && s.Established {
			m.home[k] = Slot{Iface: slot.Iface, Remote: s.Remote}
		}
	}
}

// adoptUnmanagedSAs: SAs the manager did not start (start_action, the
// CLI) belong where they are, and an authentication of ours for that
// interface is no longer needed.
func (m *Manager) adoptUnmanagedSAs(r *round) {
	for _, s := range r.sas {
		if _, known := m.home[vpn(s)]; known || s.Parent != 0 {
			continue
		}
		cur := r.ifaceOf(s)
		if cur == "" {
			continue
		}
		m.home[vpn(s)] = Slot{Iface: cur}
		if m.p.AllGatewayAddrs {
			m.home[vpn(s)] = Slot{Iface: cur, Remote: s.Remote}
		}
		for slot := range m.initiating {
			if slot.Iface == cur {
				delete(m.initiating, slot)
			}
		}
	}
}

// expireInitiations gives up authentications not answered within Retry:
// their slots are tried again.
func (m *Manager) expireInitiations(r *round) {
	for slot, t := range m.initiating {
		if r.now.Sub(t) > m.p.Retry {
			delete(m.initiating, slot)
		}
	}
}

// abandonStrandedAuthentications gives up authentications whose local
// address went away before they were established, and those not done
// within Retry when their interface lost its carrier or another one is
// there to try (a silent link, RFC 4555 §3.1: the initiator tries other
// addresses for the initial exchange): IKE_AUTH cannot move
// (MOBIKE is only negotiated by it, RFC 4555 §3.2), so such an SA would
// hold its slot, and as the first authentication every other VPN, until
// the engine gave it up minutes later. It is deleted, and the slot is
// filled again from an interface that is there.
func (m *Manager) abandonStrandedAuthentications(r *round) {
	for _, s := range r.sas {
		if s.Established || !s.Local.IsValid() {
			continue
		}
		slot, ours := m.home[vpn(s)]
		if !ours {
			continue
		}
		up, has := m.addrState(r.ifaces, s)
		_, young := m.initiating[slot]
		other := slices.ContainsFunc(r.use, func(u usable) bool { return u.Name != slot.Iface })
		if has && (young || up && !other) {
			continue
		}
		if has && up {
			// Up but unanswered: the link is silent, avoided for a
			// while as a path the engine gave up on is (NextPath).
			h := min(max(m.suspect[slot.Iface].hold*2, minHold), maxHold)
			m.suspect[slot.Iface] = holdDown{until: r.now.Add(h), hold: h}
			r.use = slices.DeleteFunc(r.use, func(u usable) bool { return u.Name == slot.Iface })
			m.log.Warn("authentication unanswered over an interface that is up; avoiding it for a while", "ike", s.ID, "iface", slot.Iface, "for", h)
		} else {
			m.log.Info("the address an authentication began from went away: starting again", "ike", s.ID, "local", s.Local, "slot", slot.String())
		}
		r.add(Terminate{ID: s.ID})
		delete(m.home, vpn(s))
		delete(m.initiating, slot)
		m.deleting[vpn(s)] = r.now
	}
	r.sas = slices.DeleteFunc(r.sas, func(s SA) bool {
		_, going := m.deleting[vpn(s)]
		return going
	})
	for k := range r.byVPN {
		if _, going := m.deleting[k]; going {
			delete(r.byVPN, k)
		}
	}
}

// addrState reports whether an interface holds s's local address (its
// pinned interface, if it has one), and whether that interface is up.
// One that lost its carrier keeps its address: the authentication goes
// on when the carrier is back, rather than start again (an EAP login may
// need the user), unless that takes longer than Retry.
func (m *Manager) addrState(ifaces []Interface, s SA) (up, has bool) {
	for _, i := range ifaces {
		if (s.Iface == "" || s.Iface == i.Name) && slices.Contains(i.Addrs, s.Local) {
			return i.Up, true
		}
	}
	return false, false
}

// releaseAuthenticatedSlots: an authentication that came up no longer
// holds its slot (its SA does, while it lives), so when that SA goes the
// slot's next VPN may start at once, not Retry after the first.
func (m *Manager) releaseAuthenticatedSlots(r *round) {
	for k, slot := range m.home {
		if s, ok := r.byVPN[k]; ok && s.Established {
			for is := range m.initiating {
				if is.Iface == slot.Iface && (is.Remote == slot.Remote || !is.Remote.IsValid()) {
					delete(m.initiating, is)
				}
			}
		}
	}
}

// followInterfaces moves or deletes VPNs whose interface went away and
// returns those whose interface came back (RFC 4555 §3.5: we are the
// MOBIKE initiator, so we choose the path); transport-mode Child SAs
// follow their IKE SA's address.
func (m *Manager) followInterfaces(r *round) {
	for _, s := range r.sas {
		slot, ok := m.home[vpn(s)]
		if !ok || !s.Established {
			continue
		}
		if stop := m.followInterface(r, s, slot); stop {
			continue
		}
		r.add(m.transportFollow(r.now, s)...)
	}
}

// followInterface applies the interface rules to VPN s at home in slot.
// stop: nothing more is done with s this round (deleted, or nowhere to
// go).
func (m *Manager) followInterface(r *round, s SA, slot Slot) (stop bool) {
	cur := r.ifaceOf(s)
	home, homeUp := r.usable(slot.Iface)
	_, curUp := r.usable(cur)
	switch {
	case homeUp && cur != slot.Iface && (m.p.MoveBack || !curUp):
		// Home is back (MoveBack), or where the VPN is now is gone too.
		if c := m.move(r.now, s, home, slot.Remote); c != nil {
			m.log.Info("interface back: moving its VPN home", "ike", s.ID, "iface", slot.Iface)
			r.add(c)
		}
	case !homeUp && (!m.p.MoveOnDown || !s.MOBIKE || !s.MOBIKEInitiator):
		// Deleted even when the engine already moved it off the dead
		// path: that path is where the Delete can still arrive.
		m.log.Info("interface gone: deleting its VPN", "ike", s.ID, "iface", slot.Iface)
		r.add(Terminate{ID: s.ID})
		delete(m.home, vpn(s))
		m.deleting[vpn(s)] = r.now
		return true
	case !homeUp && !curUp:
		if len(r.use) == 0 {
			return true // nowhere to go; liveness checks decide
		}
		if c := m.move(r.now, s, r.use[0], netip.Addr{}); c != nil {
			m.log.Info("interface gone: moving its VPN", "ike", s.ID, "from", slot.Iface, "to", r.use[0].Name)
			r.add(c)
			if !m.p.MoveBack {
				m.home[vpn(s)] = Slot{Iface: r.use[0].Name, Remote: slot.Remote}
			}
		}
	}
	return false
}

// preferBest: in failover mode the VPN's home is the most preferred usable
// interface, and with on_return move-back it moves there whenever a more
// preferred one is (again) usable, also one that was absent when the VPN
// was authenticated (which used to leave it on a worse interface for
// good).
func (m *Manager) preferBest(r *round) {
	if m.p.Mode != Failover || !m.p.MoveBack || len(r.use) == 0 {
		return
	}
	best := r.use[0]
	for _, s := range r.sas {
		slot, ok := m.home[vpn(s)]
		if !ok || !s.Established || slot.Iface == best.Name {
			continue
		}
		m.home[vpn(s)] = Slot{Iface: best.Name, Remote: slot.Remote}
		if c := m.move(r.now, s, best, slot.Remote); c != nil {
			m.log.Info("a more preferred interface is usable: moving the VPN there", "ike", s.ID, "from", slot.Iface, "to", best.Name)
			r.add(c)
		}
	}
}

// childKey names one Child SA of a VPN.
type childKey struct {
	vpn  uint64
	name string
}

// restoreChildren gives a VPN at home back a Child SA of the policy that
// it lost (a rekey lost among IKE SA rekeys, a Child SA the peer
// deleted, a first Child SA refused): a VPN without its tunnel carries
// nothing, and nothing else would make it again (strongSwan's
// close_action = start does this for a connection). Asked for once per
// Retry.
func (m *Manager) restoreChildren(r *round) {
	for k, at := range m.creating {
		if r.now.Sub(at) > m.p.Retry {
			delete(m.creating, k)
		}
	}
	for _, s := range r.sas {
		if _, home := m.home[vpn(s)]; !home || !s.Established {
			continue
		}
		for _, name := range m.p.Children {
			k := childKey{vpn(s), name}
			if _, asked := m.creating[k]; asked || slices.Contains(s.Creating, name) ||
				slices.ContainsFunc(s.Children, func(c Child) bool { return c.Name == name }) {
				continue
			}
			m.log.Info("VPN without its Child SA: making it again", "ike", s.ID, "child", name)
			m.creating[k] = r.now
			r.add(CreateChild{ID: s.ID, Name: name})
		}
	}
}

// served are the slots that have a VPN, established or still being set
// up (home), or an operation under way for one.
func (m *Manager) served() map[Slot]bool {
	served := map[Slot]bool{}
	for _, slot := range m.home {
		served[slot] = true
	}
	for _, q := range m.cloning {
		for _, p := range q {
			served[p.slot] = true
		}
	}
	for slot := range m.initiating {
		served[slot] = true
	}
	return served
}

// placeOrphanClones: a clone without a pending request (one given up
// after Retry, one made with the CLI or by the peer) serves a slot that
// has no VPN. Otherwise a late answer to our own request is surplus and
// goes (we asked for it, so it is not a VPN the user made); anything else
// belongs where it is, as SAs the manager did not start do.
func (m *Manager) placeOrphanClones(r *round, want []Slot, served map[Slot]bool) {
	for _, s := range r.orphans {
		if _, going := m.surplus[s.ID]; going {
			continue
		}
		slot := Slot{Iface: r.ifaceOf(s)}
		if m.p.AllGatewayAddrs {
			slot.Remote = s.Remote
		}
		free := false
		for _, w := range want {
			if !served[w] {
				slot, free = w, true
				break
			}
		}
		ours := len(m.late[s.Parent]) > 0
		if ours {
			m.late[s.Parent] = m.late[s.Parent][1:]
		}
		switch {
		case free || !ours:
			if slot.Iface == "" {
				continue
			}
			served[slot] = true
			r.add(m.place(r.now, s, slot, r.usable)...)
		default:
			m.log.Info("late clone not needed any more: deleting it", "ike", s.ID, "parent", s.Parent)
			r.add(Terminate{ID: s.ID})
			m.surplus[s.ID] = r.now
		}
	}
}

// expireLateClones forgets surplus clones being deleted after Retry (gone
// by now, or the Delete failed with its SA) and late clone requests after
// 10 Retry (no answer will come now: the engine gave up).
func (m *Manager) expireLateClones(r *round) {
	for id, at := range m.surplus {
		if r.now.Sub(at) > m.p.Retry {
			delete(m.surplus, id)
		}
	}
	for parent, l := range m.late {
		for len(l) > 0 && r.now.Sub(l[0]) > 10*m.p.Retry {
			l = l[1:]
		}
		if len(l) == 0 {
			delete(m.late, parent)
		} else {
			m.late[parent] = l
		}
	}
}

// fillEmptySlots gives every slot without a VPN one: the first by
// authenticating, the others by cloning the base SA (RFC 7791), or, for a
// peer that cannot clone, by authenticating again. A peer that refused a
// clone with NO_ADDITIONAL_SAS gets no more until one of the SAs goes
// (RFC 7791 §5.3). In Failover mode only the first slot is filled.
func (m *Manager) fillEmptySlots(r *round, want []Slot, served map[Slot]bool) {
	base := m.base(r.sas, r.use)
	if m.limit > 0 && len(r.sas) < m.limit {
		m.limit = 0 // an SA went: the peer may take a clone again
	}
	for _, slot := range want {
		if served[slot] {
			continue
		}
		u, _ := r.usable(slot.Iface)
		local := addrOf(u.Interface, r.gateway)
		held := r.now.Before(m.authHold[slot.Iface].until)
		switch {
		case held && (base == nil || !base.CloneSupported || !base.MOBIKE || !base.MOBIKEInitiator):
			// Its authentications failed lately: wait (authHold).
		case base == nil && len(m.home) == 0 && len(m.initiating) == 0:
			m.log.Info("authenticating", "iface", slot.Iface, "local", local)
			r.add(Initiate{Slot: slot, Local: local, Remote: slot.Remote, Iface: slot.Iface})
			m.initiating[slot] = r.now
		case base == nil:
			// The first authentication is still under way.
		case m.limit > 0 && base.CloneSupported:
			// Refused for good (RFC 7791 §5.3): wait for an SA to go.
		case base.CloneSupported && base.MOBIKE && base.MOBIKEInitiator:
			m.log.Info("new interface: cloning the IKE SA for it", "iface", slot.Iface, "parent", base.ID)
			r.add(Clone{ID: base.ID})
			m.cloning[base.ID] = append(m.cloning[base.ID], pendingClone{slot: slot, at: r.now, vpn: vpn(*base)})
		default:
			if !m.noClone {
				m.noClone = true
				m.log.Warn("the peer does not offer cloning (no CLONE_IKE_SA_SUPPORTED, or no MOBIKE): authenticating again on every interface", "ike", base.ID)
			}
			r.add(Initiate{Slot: slot, Local: local, Remote: slot.Remote, Iface: slot.Iface})
			m.initiating[slot] = r.now
		}
		if m.p.Mode == Failover {
			break
		}
	}
}

// place makes clone s the VPN of slot: it gets its Child SAs and moves
// there (RFC 7791 App. A.3, A.4).
func (m *Manager) place(now time.Time, s SA, slot Slot, isUsable func(string) (usable, bool)) []Command {
	m.home[vpn(s)] = slot
	m.log.Info("clone ready: adding its Child SAs and moving it", "ike", s.ID, "parent", s.Parent, "slot", slot.String())
	var cmds []Command
	for _, c := range m.p.Children {
		cmds = append(cmds, CreateChild{ID: s.ID, Name: c})
		m.creating[childKey{vpn(s), c}] = now
	}
	if u, ok := isUsable(slot.Iface); ok {
		if c := m.move(now, s, u, slot.Remote); c != nil {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// slots are the places that should have a VPN.
func (m *Manager) slots(use []usable, sas []SA) []Slot {
	if len(use) == 0 {
		return nil
	}
	if m.p.Mode == Failover {
		return []Slot{{Iface: use[0].Name}}
	}
	var gws []netip.Addr
	if m.p.AllGatewayAddrs {
		for _, s := range sas {
			if s.Established && len(s.PeerAddrs) > 0 {
				gws = s.PeerAddrs
				break
			}
		}
	}
	var out []Slot
	for _, u := range use {
		if len(gws) == 0 {
			out = append(out, Slot{Iface: u.Name})
			continue
		}
		for _, g := range gws {
			if addrOf(u.Interface, g).IsValid() {
				out = append(out, Slot{Iface: u.Name, Remote: g})
			}
		}
	}
	return out
}

// base is the SA to clone: the established one on the most preferred
// interface.
func (m *Manager) base(sas []SA, use []usable) *SA {
	var best *SA
	bestRank := 1 << 30
	for i := range sas {
		s := &sas[i]
		if !s.Established {
			continue
		}
		rank := 1 << 20
		if slot, ok := m.home[vpn(*s)]; ok {
			for k, u := range use {
				if u.Name == slot.Iface {
					rank = k
				}
			}
		}
		if best == nil || rank < bestRank || (rank == bestRank && s.ID < best.ID) {
			best, bestRank = s, rank
		}
	}
	return best
}

// move returns the command putting s on interface u (towards remote, or
// its current peer address), unless it is there or a move is under way.
func (m *Manager) move(now time.Time, s SA, u usable, remote netip.Addr) Command {
	if !s.MOBIKE || !s.MOBIKEInitiator {
		return nil
	}
	if !remote.IsValid() {
		remote = s.Remote
	}
	local := addrOf(u.Interface, remote)
	if s.Local == local && s.Remote == remote && s.Iface == u.Name {
		return nil
	}
	if op, ok := m.moving[vpn(s)]; ok && op.iface == u.Name && now.Sub(op.at) < m.p.Retry/4 {
		return nil
	}
	m.moving[vpn(s)] = moveOp{u.Name, now}
	return Move{ID: s.ID, Local: local, Remote: remote, Iface: u.Name}
}

// transportFollow replaces transport-mode Child SAs whose selectors
// still name an address the SA no longer uses, ours or the peer's:
// MOBIKE moves the outer addresses, but in transport mode they are the
// selectors too (the MIF problem statement's UC3, mobility and
// multihoming: the peer's address changes when we move to another of the
// addresses it announced), so a new Child SA is made for the new
// addresses and the old one deleted.
func (m *Manager) transportFollow(now time.Time, s SA) []Command {
	var cmds []Command
	for _, c := range s.Children {
		if !c.Transport || c.Covers == nil {
			continue
		}
		if c.Covers(s.Local) && (c.CoversRemote == nil || !s.Remote.IsValid() || c.CoversRemote(s.Remote)) {
			continue
		}
		if t, ok := m.replacing[c.InSPI]; ok && now.Sub(t) < m.p.Retry {
			continue
		}
		m.replacing[c.InSPI] = now
		m.log.Info("transport-mode Child SA follows its IKE SA to the new addresses", "ike", s.ID, "child", c.Name, "local", s.Local, "remote", s.Remote)
		cmds = append(cmds, CreateChild{ID: s.ID, Name: c.Name}, Terminate{ID: s.ID, ChildSPI: c.InSPI})
	}
	return cmds
}

// Describe is a one-line summary for logs and the CLI.
func (p Policy) Describe() string {
	down := "delete"
	if p.MoveOnDown {
		down = "move"
	}
	back := "new VPN"
	if p.MoveBack {
		back = "move back"
	}
	d := fmt.Sprintf("%s over %v; interface down: %s; interface back: %s", p.Mode, p.Use, down, back)
	if p.MPTCP {
		d += "; MPTCP endpoints " + p.Multipath.String()
	}
	if p.Spread {
		d += "; flows spread " + p.SpreadWeights.String()
		if p.SpreadMeasured {
			d += " × measured path factor"
		}
	}
	return d
}
