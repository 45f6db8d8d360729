package ike

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Adopt imports an IKE SA that another engine handed to this one while
// both run (a gateway cluster's load sharing, docs/cluster.md): unlike
// Import (a restart of the same engine), the SA changes hosts, so it
// changes addresses too, and its Child SAs change keys.
//
// Export is not atomic with the other engine's Forget: between the two,
// the old owner may have sent more ESP on the Child SAs than the
// exported state knows, and its data plane's sequence numbers are not in
// the export at all. So, as after a takeover, the Child SAs are imported
// with no outbound traffic (inbound still works) and rekeyed at once; the
// new keys carry the traffic (RFC 6311 §3.4's reasoning: no ESP sequence
// number, and with AES-GCM no nonce, is ever used twice under one key).
// The Message IDs need no synchronisation: the SA was idle when exported
// (ErrBusy otherwise) and the old owner forgot it before answering more.
//
// local, when valid, is this node's address, which the SA uses from now
// on. As the SA's MOBIKE initiator (a clone the old owner made, RFC 7791
// Appendix A) we move it there with UPDATE_SA_ADDRESSES. As its MOBIKE
// responder (the peer made it) we cannot (RFC 4555 §3.5): we announce our
// addresses leaving out away, the old owner's, so that the initiator sees
// the address it sends to gone from the list (§3.6) and moves to ours,
// the list's sender. An SA without MOBIKE cannot change hosts.
func (e *Engine) Adopt(now time.Time, b []byte, local netip.Addr, away []netip.Addr) (uint64, []Action, error) {
	e.begin(now)
	x, err := decodeExport(b)
	if err != nil {
		return 0, e.end(), err
	}
	if !x.Ext.MOBIKE {
		return 0, e.end(), fmt.Errorf("ike: IKE SA %016x-%016x did not negotiate MOBIKE: it cannot move to another node", x.SPIi, x.SPIr)
	}
	for i := range x.Children {
		x.Children[i].Outbound, x.Children[i].NoSend = false, true
	}
	sa, err := e.rebuild(x)
	if err != nil {
		return 0, e.end(), fmt.Errorf("ike: adopt: %w", err)
	}
	e.event(sa, EventIKEUp, fmt.Sprintf("handed over %s %s <-> %s", sa.neg.String(), sa.local, sa.remote))
	e.log.Info("IKE SA handed over to us", "ike", sa.id, "conn", sa.conn.Name, "local", sa.local, "remote", sa.remote, "children", len(sa.children))
	local = local.Unmap()
	moved := local.IsValid() && local != sa.local.Addr()
	switch {
	case moved && sa.mobikeInitiator:
		sa.moveTo(netip.AddrPortFrom(local, sa.local.Port()), sa.remote, "", true)
	case moved:
		sa.local, sa.iface = netip.AddrPortFrom(local, sa.local.Port()), ""
		sa.updateChildren()
		for _, a := range away {
			a = a.Unmap()
			if r := sa.rareView(); a.IsValid() && a != local && !slices.Contains(r.unannounced, a) && len(r.unannounced) < maxExportAddrs {
				st := sa.rareState()
				st.unannounced = append(st.unannounced, a)
			}
		}
		sa.queue(&addressTask{})
	}
	for _, c := range sa.children {
		if c.state == childInstalled {
			sa.queue(&childCreateTask{cfg: c.cfg, rekey: c})
		}
	}
	return sa.id, e.end(), nil
}
