package dataplane

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/wire"
)

// Trap is an on-demand Child SA (strongSwan's trap policy, start_action
// trap): a packet towards its remote selectors that no installed SA
// covers asks the daemon to bring the Child SA up (Config.OnAcquire),
// as an XFRM policy without state makes the kernel send an ACQUIRE
// (RFC 4301 §5.1: the SPD entry's "PROTECT" with no SA yet). The packet
// itself is dropped, as the kernel drops it while it acquires
// (net.core.xfrm_larval_drop): the sender's retransmission, or its next
// packet, goes through once the SA is up.
type Trap struct {
	// ID is the daemon's name for the trap, passed back to OnAcquire.
	ID int
	// Remote are the selectors that trigger. Local narrows them to
	// packets from inside these selectors; empty means any source (a
	// child with local_ts dynamic: its address is known only once the
	// IKE SA is up).
	Local, Remote []wire.Selector
}

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
		nt := &trap{Trap: Trap{ID: t.ID, Local: slices.Clone(t.Local), Remote: slices.Clone(t.Remote)}}
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
		p.drops.add(DropAcquire)
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
