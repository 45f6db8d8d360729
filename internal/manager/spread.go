package manager

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

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
// A VPN's weight is its configured one (by the interface it is on now)
// times a factor from its path as the IKE SA measured it (SpreadMeasured;
// the engine's round trip and loss, ike.IKESAInfo, kept fresh under
// traffic by the connection's path probe). A VPN whose interface is down
// (a move under way) takes no new flows; its flows move with it.
//
// The factor. A TCP flow's throughput on a path is about
// MSS / (RTT · √p) (Mathis, Semke, Mahdavi, Ott, "The macroscopic
// behavior of the TCP congestion avoidance algorithm", 1997), p the
// loss rate: a path with twice the round trip, or four times the loss,
// gives a flow half as much. New flows are therefore weighted by
// 1 / (RTT · √p), normalised to the best path of the connection (factor
// 1), so that equal paths keep exactly the configured ratios. Guards:
//
//   - p has a floor of 1 % (spreadLossFloor): a path with no loss seen
//     would otherwise weigh infinitely, and the few probes a minute
//     cannot tell 0 from 0.5 % anyway.
//   - RTT has a floor of 10 ms (spreadRTTFloor): below it the IKE round
//     trip is mostly the peers' processing and scheduling, and flows on
//     such paths are limited by the link, not the round trip.
//   - The factor is clamped to [1/16, 1]: the worst path keeps a
//     sixteenth of its configured share, so it goes on carrying some new
//     flows (whose fate is itself a measurement of sorts, and whose
//     IKE figures may be a moment's noise) and a path the formula
//     misjudges is never starved; only the configured weight 0 gives
//     none.
//   - Quantised to sixteenths, with hysteresis: the factor given to the
//     rules moves only when the new one differs from it by 25 % or more
//     (spreadHysteresis). Rewriting the rules costs an nft transaction
//     and affects only new flows anyway; the round trip measured on a
//     busy path includes its queue, which the flows given to it fill, so
//     a factor that followed every sample would make the rules flap.
//
// A path not measured yet (no round trip sample) counts as the best: it
// is measured within a probe interval, and unknown must not mean worse.
// The loss measured is of a round trip (request or answer lost), about
// twice a one-way loss; it weighs every path alike, so the normalised
// factor hardly changes.
const (
	// SpreadFactorScale is the factor 1 (the best path): factors are in
	// sixteenths, 1 to 16.
	SpreadFactorScale = 16
	spreadLossFloor   = 0.01
	spreadRTTFloor    = 10 * time.Millisecond
	spreadHysteresis  = 0.25
)

// SpreadTarget is a VPN's inner address with its weight among new flows
// (0: none), and the interface the VPN is on now (for logs).
type SpreadTarget struct {
	Addr netip.Addr
	// Weight is the effective weight: Configured × Factor (Configured
	// alone when the weighting by measurement is off), 0 when the VPN
	// takes no new flows.
	Weight int
	Iface  string
	// Leaving: the VPN is being deleted (weight 0). Flows from its
	// address are still spread while the address is there, and the
	// flows it was given are given another VPN (the daemon forgets
	// their translations): a flow is re-pinned only when its VPN fails.
	Leaving bool
	// Configured is the weight of the interface the VPN is on, as
	// configured; Factor the path factor in sixteenths (0: not applied,
	// measured weighting off), and Path what it came from.
	Configured int
	Factor     int
	Path       PathStats
}

func (t SpreadTarget) String() string {
	if t.Leaving {
		return fmt.Sprintf("%v (%s, being deleted)", t.Addr, t.Iface)
	}
	if t.Factor == 0 {
		return fmt.Sprintf("%v (%s, weight %d)", t.Addr, t.Iface, t.Weight)
	}
	return fmt.Sprintf("%v (%s, weight %d = %d × %d/%d, %s)", t.Addr, t.Iface, t.Weight, t.Configured, t.Factor, SpreadFactorScale, t.Path)
}

func (p PathStats) String() string {
	if p.Samples == 0 {
		return "path not measured yet"
	}
	return fmt.Sprintf("rtt %v, loss %.1f%%", p.RTT.Round(100*time.Microsecond), 100*p.Loss)
}

// SpreadTargets are the inner addresses of the connection's VPNs among
// which new flows are spread; nil when the policy does not spread. With
// measured weighting the factors it returns are remembered: the next
// call changes one only by enough (hysteresis).
func (m *Manager) SpreadTargets(ifaces []Interface, sas []SA) []SpreadTarget {
	if !m.p.Spread || m.p.Mode != PerInterface {
		return nil
	}
	ts := SpreadTargets(m.p.SpreadWeights, ifaces, sas)
	if !m.p.SpreadMeasured {
		return ts
	}
	ApplyPathFactors(ts, m.spreadFactors)
	clear(m.spreadFactors)
	for _, t := range ts {
		if t.Factor > 0 {
			m.spreadFactors[t.Addr] = t.Factor
		}
	}
	return ts
}

// SpreadTargets is Manager.SpreadTargets for any rules, without
// measured weighting: one per inner address of every established VPN,
// or one being deleted (Leaving), whose tunnel-mode Child SA covers it,
// weighted by the interface the VPN is on now, 0 when that interface is
// down or unknown (the VPN is about to move: new flows go elsewhere, its
// own flows move with it) or the VPN is being deleted. A flow from any
// of these addresses may be given to any of them with a weight above 0.
// Sorted by address.
func SpreadTargets(rules ifacerule.Rules[int], ifaces []Interface, sas []SA) []SpreadTarget {
	by := map[netip.Addr]SpreadTarget{}
	for _, s := range current(sas) {
		if !s.Established && !s.Deleting {
			continue
		}
		iface := ifaceOf(s, ifaces)
		conf := rules.Lookup(iface, 1)
		w := conf
		if !ifaceUp(ifaces, iface) || s.Deleting {
			w = 0
		}
		for _, a := range s.VIPs {
			if !carries(s, a) {
				continue
			}
			t := SpreadTarget{Addr: a, Weight: w, Iface: iface, Leaving: s.Deleting, Configured: conf, Path: s.Path}
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

// ApplyPathFactors multiplies the weights of the targets taking new
// flows by their path factors (see the top of this file), in place.
// prev holds the factors last applied, by address: a new factor replaces
// the previous one only when it differs by spreadHysteresis or more.
func ApplyPathFactors(ts []SpreadTarget, prev map[netip.Addr]int) {
	best := 0.0
	for _, t := range ts {
		if t.Weight > 0 && t.Path.Samples > 0 {
			best = max(best, pathScore(t.Path))
		}
	}
	for i := range ts {
		t := &ts[i]
		if t.Weight == 0 {
			continue
		}
		f := SpreadFactorScale
		if t.Path.Samples > 0 && best > 0 {
			x := pathScore(t.Path) / best // in (0, 1]
			f = min(max(int(math.Round(x*SpreadFactorScale)), 1), SpreadFactorScale)
		}
		if p, ok := prev[t.Addr]; ok && math.Abs(float64(f-p)) < spreadHysteresis*float64(p) {
			f = p // not enough of a change to rewrite the rules for
		}
		t.Factor = f
		t.Weight = t.Configured * f
	}
}

// pathScore is 1 / (RTT · √p) with the floors above: what a TCP flow's
// throughput on the path is proportional to (Mathis et al.).
func pathScore(p PathStats) float64 {
	rtt := max(p.RTT, spreadRTTFloor).Seconds()
	return 1 / (rtt * math.Sqrt(max(p.Loss, spreadLossFloor)))
}

func ifaceUp(ifaces []Interface, name string) bool {
	for _, i := range ifaces {
		if i.Name == name {
			return i.Up
		}
	}
	return false
}
