package ike

import (
	"fmt"
	"net/netip"
	"slices"
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
