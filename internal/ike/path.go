package ike

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/mifike/mifike/internal/wire"
)

// Where an IKE SA goes when it must leave its path is the MOBIKE
// initiator's decision (RFC 4555 §3.5), but which path is local policy:
// the engine observes (our address went away, requests go unanswered,
// the peer refused an address, the peer's list no longer has the address
// we send to), lists what MOBIKE allows, and asks a PathPolicy. It never
// picks on its own, so whoever knows the host's interfaces (the interface
// manager) decides, and nobody has to infer afterwards what the engine
// did. Without a policy, DefaultPathPolicy tries the candidates in turn.

// PathReason is why an IKE SA needs another path.
type PathReason uint8

const (
	// PathAddressGone: our address of the path is no longer usable
	// (SetLocalAddresses). A MOBIKE responder moves only for this
	// (§3.5).
	PathAddressGone PathReason = iota + 1
	// PathUnanswered: requests on the path went unanswered through
	// several retransmissions (§3.5: the path may be dead).
	PathUnanswered
	// PathRefused: the peer refused our UPDATE_SA_ADDRESSES for the path
	// (UNACCEPTABLE_ADDRESSES, UNEXPECTED_NAT_DETECTED, §3.5, §3.9).
	PathRefused
	// PathPeerAddressGone: the peer's address list no longer has the
	// address we send to (§3.6).
	PathPeerAddressGone
)

var pathReasons = [...]string{"", "address gone", "unanswered", "refused by the peer", "peer address gone"}

func (r PathReason) String() string {
	if int(r) < len(pathReasons) {
		return pathReasons[r]
	}
	return fmt.Sprintf("reason %d", r)
}

// Path is an address pair, and the interface it is pinned to ("" lets
// the routing table choose).
type Path struct {
	Local, Remote netip.Addr
	Iface         string
}

// PathQuery is what the engine asks a policy.
type PathQuery struct {
	IKESA, Lineage uint64
	Conn           string
	Reason         PathReason
	// Tries is the retransmissions so far (PathUnanswered).
	Tries   int
	Current Path
	// Candidates are the paths MOBIKE allows: our usable addresses
	// (SetLocalAddresses) against the peer's (its announced list, else
	// the address in use), same family, the current pair excluded.
	Candidates []Path
	// Initiator: we are the SA's MOBIKE initiator (otherwise only
	// PathAddressGone is asked, §3.5).
	Initiator bool
}

// PathPolicy chooses the next path of an IKE SA. NextPath returns one of
// q.Candidates (its Iface may pin it to an interface), or false to stay
// on the current path. It is called inside the engine's entry points and
// must not call back into the engine.
type PathPolicy interface {
	NextPath(q PathQuery) (Path, bool)
}

// DefaultPathPolicy tries the candidates in turn, a different one on
// each call for the same SA (what the engine did before a policy could
// be given); when the peer dropped the address we send to, it goes to
// the address the peer's list came from.
type DefaultPathPolicy struct {
	tries map[uint64]int
}

func (d *DefaultPathPolicy) NextPath(q PathQuery) (Path, bool) {
	if len(q.Candidates) == 0 {
		return Path{}, false
	}
	if q.Reason == PathPeerAddressGone {
		// The peer's new list comes first from the address that sent
		// it (readPeerAddrs), which answers for the SA; after a cluster
		// node's takeover, the others in the list may not hold it.
		return q.Candidates[0], true
	}
	if d.tries == nil {
		d.tries = map[uint64]int{}
	}
	n := d.tries[q.IKESA]
	d.tries[q.IKESA] = n + 1
	return q.Candidates[n%len(q.Candidates)], true
}

// Forget drops what the policy keeps of a dead SA. The engine calls it
// on any policy that has it.
func (d *DefaultPathPolicy) Forget(id uint64) { delete(d.tries, id) }

// nextPath asks the policy where sa goes for reason; ok false: it stays.
// An answer that is not one of the candidates is refused (and logged):
// the policy may not send the SA where MOBIKE does not allow.
func (sa *ikeSA) nextPath(reason PathReason, tries int) (path, string, bool) {
	e := sa.e
	port := e.cfg.NATTPort
	q := PathQuery{IKESA: sa.id, Lineage: sa.lineageID(), Conn: sa.conn.Name, Reason: reason, Tries: tries,
		Current: Path{Local: sa.local.Addr(), Remote: sa.remote.Addr(), Iface: sa.iface}, Initiator: sa.mobikeInitiator}
	remotes := sa.peerAddrs // the peer's list, when it sent one, replaces older knowledge
	if len(remotes) == 0 {
		remotes = []netip.Addr{sa.remote.Addr()}
	}
	locals := e.localAddrs
	if len(locals) == 0 {
		locals = []netip.Addr{sa.local.Addr()}
	}
	for _, l := range locals {
		for _, r := range remotes {
			if l.Is4() != r.Is4() || (l == sa.local.Addr() && r == sa.remote.Addr()) {
				continue
			}
			if p := (Path{Local: l, Remote: r}); !slices.Contains(q.Candidates, p) {
				q.Candidates = append(q.Candidates, p)
			}
		}
	}
	p, ok := e.pathPolicy.NextPath(q)
	if !ok {
		return path{}, "", false
	}
	if !slices.ContainsFunc(q.Candidates, func(c Path) bool { return c.Local == p.Local && c.Remote == p.Remote }) {
		e.log.Warn("path policy chose a path MOBIKE does not allow; staying", "ike", sa.id, "local", p.Local, "remote", p.Remote)
		return path{}, "", false
	}
	return path{netip.AddrPortFrom(p.Local, port), netip.AddrPortFrom(p.Remote, port)}, p.Iface, true
}

// rotateInitPath is RFC 4555 §3.1 for an IKE_SA_INIT that goes
// unanswered: after probeAfter sends on one address pair, the initiator
// tries the next of the pairs its configuration and host allow (every
// remote address of the connection, and, unless the SA is pinned to an
// interface or the connection to local addresses, every local address of
// the family), in turn. The request is built anew for the pair (NAT-D
// hashes its addresses) and keeps its count of tries, so the pairs share
// the usual retransmission budget. It reports whether it moved (and sent).
func (sa *ikeSA) rotateInitPath(p *request) bool {
	e := sa.e
	t, ok := p.task.(*ikeInitTask)
	if !ok || !sa.initiator || sa.state != stateConnecting || p.exchange != wire.IKESAInit {
		return false
	}
	if sa.initPairSends++; sa.initPairSends < probeAfter {
		return false
	}
	remotes := sa.conn.RemoteAddrs
	if len(remotes) == 0 {
		remotes = []netip.Addr{sa.remote.Addr()}
	}
	locals := []netip.Addr{sa.local.Addr()}
	if sa.iface == "" && len(e.localAddrs) > 0 {
		locals = nil
		for _, a := range e.localAddrs {
			if len(sa.conn.LocalAddrs) == 0 || addrAllowed(sa.conn.LocalAddrs, a) {
				locals = append(locals, a)
			}
		}
	}
	var pairs []path
	cur := -1
	for _, r := range remotes {
		for _, l := range locals {
			if l.Is4() != r.Unmap().Is4() {
				continue
			}
			if l == sa.local.Addr() && r.Unmap() == sa.remote.Addr() {
				cur = len(pairs)
			}
			pairs = append(pairs, path{netip.AddrPortFrom(l, sa.local.Port()), netip.AddrPortFrom(r.Unmap(), sa.remote.Port())})
		}
	}
	if len(pairs) < 2 {
		return false
	}
	next := pairs[(cur+1)%len(pairs)]
	e.event(sa, EventPathProbe, fmt.Sprintf("no answer to IKE_SA_INIT on %v - %v, trying %v - %v", sa.local, sa.remote, next.local, next.remote))
	e.log.Info("no answer to IKE_SA_INIT; trying another address pair (RFC 4555 §3.1)", "ike", sa.id, "local", next.local, "remote", next.remote)
	sa.local, sa.remote, sa.initPairSends = next.local, next.remote, 0
	tries := p.tries + 1
	e.stats.Retransmissions++
	if err := t.send(sa); err != nil {
		e.destroy(sa, err.Error())
		return true
	}
	sa.outstanding[0].tries = tries
	return true
}

// addrSet is a small set of addresses: an SA's peer addresses that
// passed a return routability check (RFC 4555 §3.7), one for nearly
// every SA. A slice, not a map: a one-entry map is ten times the size,
// and a gateway holds one per IKE SA.
type addrSet []netip.Addr

func (s addrSet) has(a netip.Addr) bool { return slices.Contains(s, a) }

func (s *addrSet) add(a netip.Addr) {
	if !s.has(a) {
		*s = append(*s, a)
	}
}
