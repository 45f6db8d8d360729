package manager

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/mifike/mifike/internal/ifacerule"
)

// Flow spreading (issue 20 item 2, docs/multipath.md "Flow spreading"):
// traffic that is not MPTCP has one source address per flow, so it rides
// one VPN. With spreading on, each new flow from one of the VPNs' inner
// addresses is given a VPN by a weighted hash, and its source address is
// translated to that VPN's inner address (the daemon's nftables table;
// conntrack keeps the choice for the flow's life, so a flow never moves
// between Child SAs and meets no other replay window). The data plane
// then sends it through the Child SA whose local selectors hold that
// address. SpreadTargets decides which VPNs take new flows, and how
// many; the daemon writes the rules.
//
// Weights come from the configuration only: the engine measures a
// smoothed round trip per IKE SA, but only from INFORMATIONAL exchanges
// (liveness checks, which traffic suppresses), and counts no loss per
// path; IKESAInfo exposes neither. A VPN whose interface is down (a move
// under way) takes no new flows; its flows move with it.

// SpreadTarget is a VPN's inner address with its weight among new flows
// (0: none), and the interface the VPN is on now (for logs).
type SpreadTarget struct {
	Addr   netip.Addr
	Weight int
	Iface  string
	// Leaving: the VPN is being deleted (weight 0). Flows from its
	// address are still spread while the address is there, and the
	// flows it was given are given another VPN (the daemon forgets
	// their translations): a flow is re-pinned only when its VPN fails.
	Leaving bool
}

func (t SpreadTarget) String() string {
	if t.Leaving {
		return fmt.Sprintf("%v (%s, being deleted)", t.Addr, t.Iface)
	}
	return fmt.Sprintf("%v (%s, weight %d)", t.Addr, t.Iface, t.Weight)
}

// SpreadTargets are the inner addresses of the connection's VPNs among
// which new flows are spread; nil when the policy does not spread.
func (m *Manager) SpreadTargets(ifaces []Interface, sas []SA) []SpreadTarget {
	if !m.p.Spread || m.p.Mode != PerInterface {
		return nil
	}
	return SpreadTargets(m.p.SpreadWeights, ifaces, sas)
}

// SpreadTargets is Manager.SpreadTargets for any rules: one per inner
// address of every established VPN, or one being deleted (Leaving),
// whose tunnel-mode Child SA covers it, weighted by the interface the
// VPN is on now, 0 when that interface is down or unknown (the VPN is
// about to move: new flows go elsewhere, its own flows move with it)
// or the VPN is being deleted. A flow from any of these addresses may be
// given to any of them with a weight above 0. Sorted by address.
func SpreadTargets(rules ifacerule.Rules[int], ifaces []Interface, sas []SA) []SpreadTarget {
	by := map[netip.Addr]SpreadTarget{}
	for _, s := range current(sas) {
		if !s.Established && !s.Deleting {
			continue
		}
		iface := ifaceOf(s, ifaces)
		w := rules.Lookup(iface, 1)
		if !ifaceUp(ifaces, iface) || s.Deleting {
			w = 0
		}
		for _, a := range s.VIPs {
			if !carries(s, a) {
				continue
			}
			t := SpreadTarget{Addr: a, Weight: w, Iface: iface, Leaving: s.Deleting}
			if o, dup := by[a]; dup && (o.Weight > w || o.Weight == w && !o.Leaving) {
				continue // a shared address: the larger weight, the VPN staying
			}
			by[a] = t
		}
	}
	out := make([]SpreadTarget, 0, len(by))
	for _, t := range by {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b SpreadTarget) int { return a.Addr.Compare(b.Addr) })
	return out
}

func ifaceUp(ifaces []Interface, name string) bool {
	for _, i := range ifaces {
		if i.Name == name {
			return i.Up
		}
	}
	return false
}
