package cluster

import (
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/mifike/mifike/internal/ike"
)

// Redirects sends new clients to the least loaded node at IKE_SA_INIT
// (RFC 5685 §3), the placement for clients that cannot clone
// (strongSwan, Windows): a client with one VPN lands on a node by
// redirect, a client with several spreads its clones by hand-over
// (Coordinator.place). It is the engine's ike.Redirector; the node's
// coordinator goroutine updates its view after every step, and the
// engine's event loop reads it, hence the lock.
//
// Between two steps the loads are estimates: every new client counts at
// once on the node chosen for it, so that a burst of clients does not all
// go to the node that was lightest at the last step.
type Redirects struct {
	mu    sync.Mutex
	self  uint8
	loads map[uint8]int
	addrs map[uint8][]netip.Addr
	ids   []uint8
}

// Update sets the live nodes and their IKE SAs as of the last step.
func (r *Redirects) Update(self uint8, loads map[uint8]int, members []NodeInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.self, r.loads, r.addrs, r.ids = self, maps.Clone(loads), map[uint8][]netip.Addr{}, nil
	if r.loads == nil {
		r.loads = map[uint8]int{}
	}
	for _, m := range members {
		r.addrs[m.ID] = m.Addrs
		r.ids = append(r.ids, m.ID)
	}
	slices.Sort(r.ids)
}

// Choose is the ike.Redirector: the address of the live node with the
// fewest IKE SAs when that is not this node (ties stay here). A client
// the cluster redirected already (REDIRECTED_FROM) stays wherever it
// arrives, so it is never passed on twice.
func (r *Redirects) Choose(q ike.RedirectQuery) (netip.Addr, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q.RedirectedFrom.IsValid() || len(r.ids) < 2 || !slices.Contains(r.ids, r.self) {
		return netip.Addr{}, false
	}
	best := r.self
	var to netip.Addr
	for _, n := range r.ids {
		if n == r.self || r.loads[n] >= r.loads[best] {
			continue
		}
		// An address of the client's family.
		for _, a := range r.addrs[n] {
			if a.Is4() == q.Local.Addr().Unmap().Is4() {
				best, to = n, a
				break
			}
		}
	}
	r.loads[best]++
	if best == r.self {
		return netip.Addr{}, false
	}
	return to, true
}
