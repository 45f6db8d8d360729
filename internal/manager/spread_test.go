package manager

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ifacerule"
)

// st is a target without measured weighting: weight w of configured c.
func st(a netip.Addr, w, c int, iface string, leaving bool) SpreadTarget {
	return SpreadTarget{Addr: a, Weight: w, Iface: iface, Leaving: leaving, Configured: c}
}

func spreadPolicy(rules ...ifacerule.Rule[int]) Policy {
	p := policy(PerInterface)
	p.Spread, p.SpreadWeights = true, rules
	return p
}

// Every VPN's inner address is a target, weighted by its interface: the
// first matching rule, 1 where none matches, 0 kept (a flow from that
// address is still spread, but none is given to it).
func TestSpreadTargetsWeights(t *testing.T) {
	ifs := []Interface{eth, wifi, lte}
	sas := []SA{vpnSA(1, eth, 0, "10.99.0.2"), vpnSA(2, wifi, 1, "10.99.0.3"), vpnSA(3, lte, 1, "10.99.0.4")}
	for _, tc := range []struct {
		name  string
		rules ifacerule.Rules[int]
		want  []SpreadTarget
	}{
		{"all 1 by default", nil, []SpreadTarget{st(vip1, 1, 1, "eth0", false), st(vip2, 1, 1, "wlan0", false), st(vip3, 1, 1, "wwan0", false)}},
		{"weights, LTE none", ifacerule.Rules[int]{{Pattern: "eth*", Value: 3}, {Pattern: "wlan*", Value: 2}, {Pattern: "wwan*", Value: 0}},
			[]SpreadTarget{st(vip1, 3, 3, "eth0", false), st(vip2, 2, 2, "wlan0", false), st(vip3, 0, 0, "wwan0", false)}},
		{"first match wins", ifacerule.Rules[int]{{Pattern: "wlan0", Value: 5}, {Pattern: "w*", Value: 0}},
			[]SpreadTarget{st(vip1, 1, 1, "eth0", false), st(vip2, 5, 5, "wlan0", false), st(vip3, 0, 0, "wwan0", false)}},
	} {
		m := New(spreadPolicy(tc.rules...), nil)
		if got := m.SpreadTargets(ifs, sas); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A VPN takes the weight of the interface it is on now: moved by MOBIKE
// onto wwan0 it weighs as wwan0; while its interface is down and it has
// not moved yet it takes no new flows; one being deleted is no target.
func TestSpreadTargetsFollowVPNs(t *testing.T) {
	m := New(spreadPolicy(ifacerule.Rule[int]{Pattern: "eth*", Value: 3}, ifacerule.Rule[int]{Pattern: "wwan*", Value: 0}), nil)
	moved := vpnSA(1, lte, 0, "10.99.0.2")
	got := m.SpreadTargets([]Interface{down(eth), wifi, lte}, []SA{moved, vpnSA(2, wifi, 1, "10.99.0.3")})
	if want := []SpreadTarget{st(vip1, 0, 0, "wwan0", false), st(vip2, 1, 1, "wlan0", false)}; !reflect.DeepEqual(got, want) {
		t.Errorf("after a move: %v, want %v", got, want)
	}
	stranded := vpnSA(1, eth, 0, "10.99.0.2") // eth0 down, the move not done yet
	got = m.SpreadTargets([]Interface{down(eth), wifi, lte}, []SA{stranded, vpnSA(2, wifi, 1, "10.99.0.3")})
	if want := []SpreadTarget{st(vip1, 0, 3, "eth0", false), st(vip2, 1, 1, "wlan0", false)}; !reflect.DeepEqual(got, want) {
		t.Errorf("interface down, not moved yet: %v, want %v", got, want)
	}
	// Being deleted: still a source (its address is there), weight 0,
	// Leaving so that its flows are given another VPN.
	deleting := vpnSA(2, wifi, 1, "10.99.0.3")
	deleting.Deleting, deleting.Established = true, false
	got = m.SpreadTargets([]Interface{eth, wifi}, []SA{vpnSA(1, eth, 0, "10.99.0.2"), deleting})
	if want := []SpreadTarget{st(vip1, 3, 3, "eth0", false), st(vip2, 0, 1, "wlan0", true)}; !reflect.DeepEqual(got, want) {
		t.Errorf("a VPN being deleted: %v, want %v", got, want)
	}
	connecting := vpnSA(3, lte, 1, "10.99.0.4")
	connecting.Established = false
	if got := m.SpreadTargets([]Interface{lte}, []SA{connecting}); len(got) != 0 {
		t.Errorf("a VPN not up yet: %v", got)
	}
}

// Nothing without the switch, nor in failover mode (one VPN).
func TestSpreadTargetsOff(t *testing.T) {
	sas := []SA{vpnSA(1, eth, 0, "10.99.0.2")}
	if got := New(policy(PerInterface), nil).SpreadTargets([]Interface{eth}, sas); got != nil {
		t.Errorf("without spread: %v", got)
	}
	p := spreadPolicy()
	p.Mode = Failover
	if got := New(p, nil).SpreadTargets([]Interface{eth}, sas); got != nil {
		t.Errorf("failover: %v", got)
	}
}

// measuredSA is a VPN whose IKE SA measured its path.
func measuredSA(id uint64, i Interface, parent uint64, vip string, rtt time.Duration, loss float64) SA {
	s := vpnSA(id, i, parent, vip)
	s.Path = PathStats{RTT: rtt, Loss: loss, Samples: 20}
	return s
}

func measuredPolicy(rules ...ifacerule.Rule[int]) Policy {
	p := spreadPolicy(rules...)
	p.SpreadMeasured = true
	return p
}

func weights(ts []SpreadTarget) map[netip.Addr]int {
	out := map[netip.Addr]int{}
	for _, t := range ts {
		out[t.Addr] = t.Weight
	}
	return out
}

// Mathis et al.: a flow's throughput goes as 1 / (RTT · √p). A slow
// lossy path (80 ms, 10 % loss) gets far fewer new flows than a fast
// clean one (20 ms, no loss) of the same configured weight, but some
// (the factor's floor); the fast one's factor is 1.
func TestSpreadTargetsMeasuredSlowLossyPathGetsFewer(t *testing.T) {
	m := New(measuredPolicy(), nil)
	ts := m.SpreadTargets([]Interface{eth, wifi}, []SA{
		measuredSA(1, eth, 0, "10.99.0.2", 20*time.Millisecond, 0),
		measuredSA(2, wifi, 1, "10.99.0.3", 80*time.Millisecond, 0.1)})
	w := weights(ts)
	if ts[0].Factor != SpreadFactorScale || w[vip1] != SpreadFactorScale {
		t.Fatalf("the best path: %v, want factor 1 (%d/%d)", ts[0], SpreadFactorScale, SpreadFactorScale)
	}
	// 20 ms × √0.01 / (80 ms × √0.1) = 0.079 → 1/16 (the floor).
	if w[vip2] < 1 || w[vip2]*4 > w[vip1] {
		t.Fatalf("slow lossy path weight %d against the clean one's %d: want at least 1 and at most a quarter", w[vip2], w[vip1])
	}
	// Only the round trip differs (both clean): twice the round trip,
	// half the weight.
	m = New(measuredPolicy(), nil)
	w = weights(m.SpreadTargets([]Interface{eth, wifi}, []SA{
		measuredSA(1, eth, 0, "10.99.0.2", 20*time.Millisecond, 0),
		measuredSA(2, wifi, 1, "10.99.0.3", 40*time.Millisecond, 0)}))
	if w[vip1] != 2*w[vip2] {
		t.Fatalf("20 ms and 40 ms paths weigh %d and %d, want 2:1", w[vip1], w[vip2])
	}
}

// Equal paths keep the configured ratios exactly; configured 0 stays 0;
// a path not measured yet counts as the best; paths under the round-trip
// floor (10 ms) count as equal.
func TestSpreadTargetsMeasuredKeepsConfiguredRatios(t *testing.T) {
	m := New(measuredPolicy(ifacerule.Rule[int]{Pattern: "eth*", Value: 3}, ifacerule.Rule[int]{Pattern: "wlan*", Value: 2}, ifacerule.Rule[int]{Pattern: "wwan*", Value: 0}), nil)
	ts := m.SpreadTargets([]Interface{eth, wifi, lte}, []SA{
		measuredSA(1, eth, 0, "10.99.0.2", 30*time.Millisecond, 0.02),
		measuredSA(2, wifi, 1, "10.99.0.3", 30*time.Millisecond, 0.02),
		measuredSA(3, lte, 1, "10.99.0.4", 5*time.Millisecond, 0)})
	w := weights(ts)
	if w[vip1]*2 != w[vip2]*3 || w[vip3] != 0 {
		t.Fatalf("equal paths: %v, want 3:2 and 0 for the weight-0 interface", ts)
	}
	m = New(measuredPolicy(), nil)
	unmeasured := vpnSA(2, wifi, 1, "10.99.0.3")
	w = weights(m.SpreadTargets([]Interface{eth, wifi, lte}, []SA{
		measuredSA(1, eth, 0, "10.99.0.2", 2*time.Millisecond, 0),
		unmeasured,
		measuredSA(3, lte, 1, "10.99.0.4", 8*time.Millisecond, 0)}))
	if w[vip1] != w[vip2] || w[vip1] != w[vip3] {
		t.Fatalf("a path not measured and two under 10 ms: %v, want all equal", w)
	}
}

// Hysteresis: the rules are rewritten only when a factor changes by 25 %
// or more; smaller changes leave the weights (and so the ruleset text)
// as they were, and a large one goes through.
func TestSpreadTargetsMeasuredHysteresis(t *testing.T) {
	m := New(measuredPolicy(), nil)
	ifs := []Interface{eth, wifi}
	at := func(rtt2 time.Duration) map[netip.Addr]int {
		return weights(m.SpreadTargets(ifs, []SA{
			measuredSA(1, eth, 0, "10.99.0.2", 20*time.Millisecond, 0),
			measuredSA(2, wifi, 1, "10.99.0.3", rtt2, 0)}))
	}
	first := at(40 * time.Millisecond) // factor 8/16
	if first[vip2] != 8 {
		t.Fatalf("40 ms against 20 ms: weight %d, want 8 (sixteenths)", first[vip2])
	}
	for _, rtt := range []time.Duration{36 * time.Millisecond, 45 * time.Millisecond, 48 * time.Millisecond} {
		if w := at(rtt); !reflect.DeepEqual(w, first) {
			t.Fatalf("a %v path (factor within 25 %% of 8/16) changed the weights: %v → %v", rtt, first, w)
		}
	}
	if w := at(80 * time.Millisecond); w[vip2] != 4 {
		t.Fatalf("80 ms against 20 ms (factor 4/16, half the last): weight %d, want 4", w[vip2])
	}
	if w := at(20 * time.Millisecond); w[vip2] != SpreadFactorScale {
		t.Fatalf("back to equal: weight %d, want %d", w[vip2], SpreadFactorScale)
	}
}
