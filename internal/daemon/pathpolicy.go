package daemon

import (
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/manager"
)

// pathPolicy is the engine's PathPolicy (RFC 4555 §3.5: the MOBIKE
// initiator chooses paths; this is our choice): the SAs of a connection
// with an interface manager go where that manager says, because it knows
// the host's interfaces and the connection's policy; the others, and
// every SA we are only the MOBIKE responder of, get the engine's default.
// The engine calls it inside its entry points, on the daemon's loop, so
// it reads the managers and the host table without locks.
type pathPolicy struct {
	manager func(conn string) *manager.Manager
	ifaces  func() []manager.Interface
	now     func() time.Time
	def     ike.DefaultPathPolicy
}

func (p *pathPolicy) NextPath(q ike.PathQuery) (ike.Path, bool) {
	m := p.manager(q.Conn)
	if m == nil || !q.Initiator {
		return p.def.NextPath(q)
	}
	r := manager.PathRequest{Lineage: q.Lineage, Reason: pathReason(q.Reason),
		Current: manager.Path{Local: q.Current.Local, Remote: q.Current.Remote, Iface: q.Current.Iface}}
	for _, c := range q.Candidates {
		r.Candidates = append(r.Candidates, manager.Path{Local: c.Local, Remote: c.Remote})
	}
	c, ok := m.NextPath(p.now(), p.ifaces(), r)
	return ike.Path{Local: c.Local, Remote: c.Remote, Iface: c.Iface}, ok
}

// Forget drops what the default policy keeps of a dead SA.
func (p *pathPolicy) Forget(id uint64) { p.def.Forget(id) }

func pathReason(r ike.PathReason) manager.PathReason {
	switch r {
	case ike.PathAddressGone:
		return manager.PathAddressGone
	case ike.PathUnanswered:
		return manager.PathUnanswered
	case ike.PathRefused:
		return manager.PathRefused
	default:
		return manager.PathPeerAddressGone
	}
}
