package dataplane

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/mifike/mifike/internal/ipsec"
)

// Trap is an on-demand Child SA (ipsec.Trap). The packet that finds a
// trap and no SA is dropped, as the kernel drops it while it acquires
// (net.core.xfrm_larval_drop, 1 by default): the sender's
// retransmission, or its next packet, goes through once the SA is up.
type Trap = ipsec.Trap

// acquireEvery spaces a trap's OnAcquire calls: a stream of packets while
// the IKE SA is negotiated costs a counter each, and the daemon hears of
// the trap once a second at most.
const acquireEvery = time.Second

// trap is an installed Trap and when it last fired (UnixNano).
type trap struct {
	Trap
	firedAt atomic.Int64
}

func (t *trap) matches(f *flow) bool {
	return matchAny(t.Remote, f.dst, f.proto, f.dport) && (len(t.Local) == 0 || matchAny(t.Local, f.src, f.proto, f.sport))
}

// SetTraps replaces the traps. A trap ID kept across calls keeps its
// rate limit.
func (p *Plane) SetTraps(traps []Trap) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.traps
	p.traps = make([]*trap, 0, len(traps))
	for _, t := range traps {
		nt := &trap{Trap: Trap{ID: t.ID, Conn: t.Conn, Child: t.Child, Local: slices.Clone(t.Local), Remote: slices.Clone(t.Remote)}}
		for _, o := range old {
			if o.ID == t.ID {
				nt.firedAt.Store(o.firedAt.Load())
			}
		}
		p.traps = append(p.traps, nt)
	}
}

// acquire handles an outbound packet no SA covers: true if a trap took
// it (and told the daemon, unless it did so within acquireEvery). p.mu
// is held for reading.
func (p *Plane) acquire(f *flow) bool {
	for _, t := range p.traps {
		if !t.matches(f) {
			continue
		}
		// Quiet: the daemon logs the trap it fires.
		p.drops.addQuiet(DropAcquire)
		now := time.Now().UnixNano()
		last := t.firedAt.Load()
		if now-last >= int64(acquireEvery) && t.firedAt.CompareAndSwap(last, now) && p.cfg.OnAcquire != nil {
			p.cfg.OnAcquire(t.ID, f.src, f.dst)
		}
		return true
	}
	return false
}

// DropAcquire counts packets a trap dropped while its SA was not up.
const DropAcquire = ipsec.DropAcquire
