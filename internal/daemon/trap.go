package daemon

import (
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
)

// trapper is a data plane that traps: *dataplane.Linux and *xfrm.Kernel.
// SetTraps replaces the traps; each plane calls back through its
// OnAcquire (d.onAcquire).
type trapper interface {
	SetTraps([]ipsec.Trap) error
}

// installTraps gives the data plane a trap for each child with
// start_action trap, at start and after each reload. A trap stays while
// its SAs come and go (terminate, DPD, rekeys): the next packet starts
// them again, as strongSwan's trap policies do.
func (d *Daemon) installTraps() {
	var traps []ipsec.Trap
	for i, cc := range d.cfg.Connections {
		c := d.conns[i]
		for j, ch := range cc.Children {
			if ch.StartAction != "trap" || len(c.RemoteAddrs) == 0 {
				continue // config refuses both; a trap needs a peer to initiate to
			}
			traps = append(traps, trapFor(len(traps), c, c.Children[j]))
		}
	}
	d.traps = traps
	// Both data planes trap: the userspace one routes the remote
	// selectors into its TUN device and matches packets there; the
	// kernel's installs XFRM trap policies and hears XFRM_MSG_ACQUIRE.
	// Either calls d.onAcquire, rate-limited per trap.
	tp, ok := d.plane.(trapper)
	if !ok {
		if len(traps) > 0 {
			d.log.Warn("this data plane cannot trap: children with start_action trap come up only by mifike initiate", "traps", len(traps))
		}
		return
	}
	if err := tp.SetTraps(traps); err != nil {
		d.log.Error("installing traps", "err", err)
	}
	for _, t := range traps {
		d.log.Info("trap installed", "conn", t.Conn, "child", t.Child, "remote_ts", ts.Strings(t.Remote))
	}
}

// trapFor is the trap of child ch of c: its remote selectors, where
// dynamic is the peer's first address (the one we initiate to), and its
// local selectors unless dynamic, whose address only the IKE SA tells.
func trapFor(id int, c *ike.Connection, ch *ike.ChildConfig) ipsec.Trap {
	t := ipsec.Trap{ID: id, Conn: c.Name, Child: ch.Name, Remote: ch.RemoteTS, Peer: c.RemoteAddrs[0], Mode: ch.Mode}
	if ch.DynamicRemote {
		t.Remote = append(t.Remote[:len(t.Remote):len(t.Remote)], ts.FromAddr(c.RemoteAddrs[0]))
	}
	if !ch.DynamicLocal {
		t.Local = ch.LocalTS
	}
	return t
}

// onAcquire hears of a trap from the data plane (rate-limited per trap
// there) and posts it to the event loop. It must not block the data
// plane, so a goroutine waits for the loop; the rate limit bounds how
// many.
func (d *Daemon) onAcquire(id int, src, dst netip.Addr) {
	go func() {
		select {
		case d.calls <- func() { d.acquire(id, src, dst) }:
		case <-d.stopped:
		}
	}()
}

// acquire brings up the Child SA a trap asks for (the data plane saw a
// packet for it and no SA), on the event loop. Nothing happens when the
// SA is up or on its way: a packet raced its install, or the IKE SA is
// still being set up.
func (d *Daemon) acquire(id int, src, dst netip.Addr) {
	if id >= len(d.traps) {
		return // a trap of before a reload
	}
	t := d.traps[id]
	var c *ike.Connection
	for _, x := range d.conns {
		if x.Name == t.Conn {
			c = x
		}
	}
	if c == nil {
		return
	}
	log := d.log.With("conn", t.Conn, "child", t.Child, "src", src, "dst", dst)
	sas := d.engine.IKESAs()
	up := map[uint64]bool{}
	for _, s := range sas {
		if s.Conn != t.Conn {
			continue
		}
		switch s.State {
		case ike.StateConnecting:
			log.Debug("trap: the IKE SA is being set up", "ike_sa", s.ID)
			return
		case ike.StateEstablished:
			up[s.ID] = true
		}
	}
	for _, ch := range d.children {
		if ch.name == t.Child && up[ch.ikeSA] {
			return
		}
	}
	for _, s := range sas {
		if up[s.ID] {
			log.Info("trap: creating the Child SA on the IKE SA", "ike_sa", s.ID)
			acts, err := d.engine.CreateChild(time.Now(), s.ID, t.Child)
			d.apply(acts)
			if err != nil {
				log.Warn("trap: creating the Child SA", "ike_sa", s.ID, "err", err)
			}
			return
		}
	}
	sa, err := d.initiate(c, t.Child)
	if err != nil {
		log.Warn("trap: initiating", "err", err)
		return
	}
	log.Info("trap: initiating", "ike_sa", sa)
}
