package manager

import (
	"github.com/mifike/mifike/internal/ifacerule"
	"reflect"
	"testing"
)

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
		{"all 1 by default", nil, []SpreadTarget{{vip1, 1, "eth0", false}, {vip2, 1, "wlan0", false}, {vip3, 1, "wwan0", false}}},
		{"weights, LTE none", ifacerule.Rules[int]{{Pattern: "eth*", Value: 3}, {Pattern: "wlan*", Value: 2}, {Pattern: "wwan*", Value: 0}},
			[]SpreadTarget{{vip1, 3, "eth0", false}, {vip2, 2, "wlan0", false}, {vip3, 0, "wwan0", false}}},
		{"first match wins", ifacerule.Rules[int]{{Pattern: "wlan0", Value: 5}, {Pattern: "w*", Value: 0}},
			[]SpreadTarget{{vip1, 1, "eth0", false}, {vip2, 5, "wlan0", false}, {vip3, 0, "wwan0", false}}},
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
	if want := []SpreadTarget{{vip1, 0, "wwan0", false}, {vip2, 1, "wlan0", false}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after a move: %v, want %v", got, want)
	}
	stranded := vpnSA(1, eth, 0, "10.99.0.2") // eth0 down, the move not done yet
	got = m.SpreadTargets([]Interface{down(eth), wifi, lte}, []SA{stranded, vpnSA(2, wifi, 1, "10.99.0.3")})
	if want := []SpreadTarget{{vip1, 0, "eth0", false}, {vip2, 1, "wlan0", false}}; !reflect.DeepEqual(got, want) {
		t.Errorf("interface down, not moved yet: %v, want %v", got, want)
	}
	// Being deleted: still a source (its address is there), weight 0,
	// Leaving so that its flows are given another VPN.
	deleting := vpnSA(2, wifi, 1, "10.99.0.3")
	deleting.Deleting, deleting.Established = true, false
	got = m.SpreadTargets([]Interface{eth, wifi}, []SA{vpnSA(1, eth, 0, "10.99.0.2"), deleting})
	if want := []SpreadTarget{{vip1, 3, "eth0", false}, {vip2, 0, "wlan0", true}}; !reflect.DeepEqual(got, want) {
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
