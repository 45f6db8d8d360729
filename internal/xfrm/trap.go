//go:build linux

package xfrm

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// Traps (start_action trap) in the kernel, as strongSwan's kernel-netlink
// plugin installs them: each trap is a set of outbound XFRM policies for
// its selectors whose template no state fills. A packet they match makes
// the kernel park a larval state (SPI 0) and send XFRM_MSG_ACQUIRE to the
// XFRMNLGRP_ACQUIRE group (RFC 4301 §5.1); we map it back to the trap by
// the template's reqid and ask the daemon for the Child SA.
//
// A trap policy yields to the Child SA's own policies:
//
//   - A tunnel-mode SA's policies carry its VPN's if_id and cover what
//     routing sends into its XFRM interface. A tunnel-mode trap has an
//     XFRM interface of its own, mifike-v0 (if_id 0x6d660000, a VPN
//     number no VPN gets), and its policies carry that if_id: its remote
//     selectors are routed there in the shared table, at metric
//     trapMetric, below the VPNs' routes for the same prefixes. While the
//     SA is up its VPN's route wins; once the route goes, the trap's
//     catches the traffic again. (A trap policy without an if_id would
//     not do: the kernel looks policies without one up at route lookup,
//     before the packet reaches any XFRM interface, so it would catch
//     the VPN's traffic too.)
//   - A transport-mode SA's policies may have the trap's very selectors.
//     The kernel keeps one policy per (selector, direction, if_id, mark),
//     so the trap's carry the mark 0 under the mask trapMarkMask (they
//     cover every packet without our mark's bits, which is every packet
//     but mifike's own) and a priority of trapPriority plus the SA's: the
//     SA's policy wins while it is there (lower is preferred).
//
// Their reqids are ours (reqidBase + n, never a Child SA group's), so the
// sweep at Open and Close removes them and their larval states with the
// rest.
const (
	trapPriority = 0x10000
	trapMarkMask = markLow
	trapDevice   = DevicePrefix + "0"
	trapIfID     = ifIDBase // VPN number 0
	trapMetric   = 0x6d66
	// acquireEvery spaces a trap's calls to Config.OnAcquire, as the
	// userspace data plane does.
	acquireEvery = time.Second
	// larvalKeep is how long an acquire's larval state is remembered to
	// be deleted when a Child SA to its peer comes up; the kernel's own
	// lifetime for it (net.core.xfrm_acq_expires) is 30 s by default.
	larvalKeep = time.Minute
)

// kTrap is an installed trap.
type kTrap struct {
	ipsec.Trap
	key      string
	reqid    uint32
	policies []Policy
	firedAt  atomic.Int64 // UnixNano of the last OnAcquire
}

// pendingLarval is the larval state of an acquire, deleted once a Child
// SA to its peer is installed: while it lives the kernel sends no new
// acquire for the trap, so a Child SA closed within its lifetime would
// not come back on the next packet.
type pendingLarval struct {
	larval
	at time.Time
}

func trapKey(t ipsec.Trap) string {
	return fmt.Sprintf("%s|%s|%v|%v|%s|%s", t.Conn, t.Child, t.Peer, t.Mode, ts.Strings(t.Local), ts.Strings(t.Remote))
}

// trapPolicies are a trap's outbound policies: one per pair of its local
// (any address of the remote selector's family when it has none) and
// remote selectors, whose template names the peer (and, for a tunnel,
// lets the kernel choose our end by route).
func trapPolicies(t ipsec.Trap, reqid uint32) []Policy {
	local := t.Local
	if len(local) == 0 {
		local = []wire.Selector{ts.FromPrefix(netip.MustParsePrefix("0.0.0.0/0")), ts.FromPrefix(netip.MustParsePrefix("::/0"))}
	}
	peer := t.Peer.Unmap()
	mode := kernelMode(t.Mode)
	var out []Policy
	for _, s := range selectors(local, t.Remote) {
		if mode == modeTransport && s.Dst.Addr().Is4() != peer.Is4() {
			continue // transport mode cannot change the family
		}
		tmpl := Tmpl{Reqid: reqid, Mode: mode, Family: family(peer)}
		p := Policy{Sel: s, Dir: dirOut, Priority: trapPriority + priority(s), Tmpl: tmpl, MarkMask: trapMarkMask}
		if mode == modeTunnel {
			p.Tmpl.Dst, p.IfID = peer, trapIfID
		}
		out = append(out, p)
	}
	return out
}

// SetTraps replaces the traps: the policies of traps no longer wanted
// go, new ones are installed, unchanged ones stay (with their rate
// limit). A trap the kernel refuses is reported and left out; the
// others stay.
func (k *Kernel) SetTraps(traps []ipsec.Trap) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errors.New("xfrm: the data plane is closed")
	}
	old := map[string]*kTrap{}
	for _, t := range k.traps {
		old[t.key] = t
	}
	var errs error
	next := map[uint32]*kTrap{}
	ids := map[*kTrap]int{} // kept traps' new IDs, set under trapMu
	for _, t := range traps {
		if !t.Peer.IsValid() {
			errs = errors.Join(errs, fmt.Errorf("xfrm: trap %s/%s has no peer to initiate to", t.Conn, t.Child))
			continue
		}
		key := trapKey(t)
		if o := old[key]; o != nil {
			delete(old, key)
			ids[o] = t.ID
			next[o.reqid] = o
			continue
		}
		nt := &kTrap{Trap: t, key: key, reqid: k.allocReqid()}
		for _, p := range trapPolicies(t, nt.reqid) {
			if _, err := k.nl.request("adding trap policy", msgNewPolicy, unix.NLM_F_CREATE|unix.NLM_F_EXCL, p.newPolicy(), false); err != nil {
				errs = errors.Join(errs, fmt.Errorf("xfrm: trap %s/%s: policy %s: %w", t.Conn, t.Child, p.Sel, err))
				continue
			}
			nt.policies = append(nt.policies, p)
		}
		next[nt.reqid] = nt
	}
	for _, o := range old {
		k.removeTrap(o)
	}
	routes := map[netip.Prefix]bool{}
	for _, t := range next {
		if t.Mode == ipsec.Tunnel {
			for _, s := range t.Remote {
				for _, p := range ts.Prefixes(s) {
					routes[p] = true
				}
			}
		}
	}
	errs = errors.Join(errs, k.routeTraps(routes))
	k.trapMu.Lock()
	for o, id := range ids {
		o.ID = id
	}
	k.traps = next
	k.trapMu.Unlock()
	return errs
}

// routeTraps routes exactly the prefixes in want into the trap device
// (in the shared table, at trapMetric), creating the device for the
// first and deleting it with the last.
func (k *Kernel) routeTraps(want map[netip.Prefix]bool) error {
	if len(want) == 0 {
		if k.trapDev != 0 {
			netlink.LinkDel(&netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: trapDevice, Index: k.trapDev}})
			k.trapDev, k.trapRoutes = 0, nil
		}
		return nil
	}
	if k.trapDev == 0 {
		idx, err := k.addXfrmi(trapDevice, trapIfID)
		if err != nil {
			return fmt.Errorf("xfrm: the traps' device: %w", err)
		}
		k.trapDev, k.trapRoutes = idx, map[netip.Prefix]bool{}
	}
	route := func(p netip.Prefix) *netlink.Route {
		return &netlink.Route{LinkIndex: k.trapDev, Dst: ipNet(p), Table: k.cfg.Table, Scope: netlink.SCOPE_LINK, Priority: trapMetric}
	}
	for p := range k.trapRoutes {
		if !want[p] {
			netlink.RouteDel(route(p))
			delete(k.trapRoutes, p)
		}
	}
	var errs error
	for p := range want {
		if k.trapRoutes[p] {
			continue
		}
		if err := netlink.RouteReplace(route(p)); err != nil {
			errs = errors.Join(errs, fmt.Errorf("xfrm: trap route %v into %s: %w", p, trapDevice, err))
			continue
		}
		k.trapRoutes[p] = true
	}
	return errs
}

// allocReqid takes a reqid of ours no Child SA group or trap holds.
func (k *Kernel) allocReqid() uint32 {
	n := k.nextReq
	for {
		n = n%0xfffe + 1
		if !k.reqids[reqidBase+n] {
			break
		}
	}
	k.nextReq = n
	k.reqids[reqidBase+n] = true
	return reqidBase + n
}

func (k *Kernel) removeTrap(t *kTrap) {
	for _, p := range t.policies {
		k.nl.request("deleting trap policy", msgDelPolicy, 0, p.policyID(), false)
	}
	delete(k.reqids, t.reqid)
}

// acquired handles XFRM_MSG_ACQUIRE on the monitor socket's reader. It
// never waits for the daemon: OnAcquire must not block, and it is called
// at most once per acquireEvery per trap (the kernel asks again for each
// new larval state, and more than one of a trap's flows may ask).
func (k *Kernel) acquired(m message) {
	a, err := parseAcquire(m.data)
	if err != nil {
		k.log.Debug("unreadable XFRM acquire", "err", err)
		return
	}
	now := time.Now()
	k.trapMu.Lock()
	t := k.traps[a.Reqid]
	if t == nil || a.Priority < trapPriority {
		k.trapMu.Unlock()
		return // someone else's policy, or a trap of before a SetTraps
	}
	k.larvals = slices.DeleteFunc(k.larvals, func(l pendingLarval) bool { return now.Sub(l.at) > larvalKeep })
	k.larvals = append(k.larvals, pendingLarval{larval: larval{Seq: a.Seq, Dst: a.Dst, Src: a.Src, Family: a.Family,
		Mode: a.Mode, Reqid: a.Reqid, Mark: a.Mark, MarkMask: a.MarkMask}, at: now})
	id, last := t.ID, t.firedAt.Load()
	fire := now.UnixNano()-last >= int64(acquireEvery) && t.firedAt.CompareAndSwap(last, now.UnixNano())
	k.trapMu.Unlock()
	if fire && k.cfg.OnAcquire != nil {
		k.cfg.OnAcquire(id, a.FlowSrc, a.FlowDst)
	}
}

// dropLarvals deletes the larval states of acquires towards peer: a
// Child SA to it is installed now. k.mu is held.
func (k *Kernel) dropLarvals(peer netip.Addr) {
	k.trapMu.Lock()
	var drop []larval
	k.larvals = slices.DeleteFunc(k.larvals, func(l pendingLarval) bool {
		if l.Dst == peer {
			drop = append(drop, l.larval)
			return true
		}
		return false
	})
	k.trapMu.Unlock()
	for _, l := range drop {
		k.deleteLarval(l)
	}
}

// deleteLarval removes a larval state: it gets an SPI (XFRM_MSG_ALLOCSPI
// finds it by its acquire seq) and is then deleted by it.
func (k *Kernel) deleteLarval(l larval) error {
	msgs, err := k.nl.request("naming a larval state", msgAllocSPI, 0, l.allocSPI(0x100, 0xffffffff), false)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.typ != msgNewSA {
			continue
		}
		s, err := parseState(m.data)
		if err != nil {
			return err
		}
		return k.delState(&State{Dst: s.Dst, SPI: s.SPI})
	}
	return errors.New("xfrm: no state in the answer to XFRM_MSG_ALLOCSPI")
}
