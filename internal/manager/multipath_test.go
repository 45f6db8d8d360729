package manager

import (
	"github.com/mifike/mifike/internal/ifacerule"
	"net/netip"
	"reflect"
	"testing"
)

// vpnSA is sa with inner address vip, its tunnel-mode Child SA sending
// from it (RFC 7791 App. A.3: each clone its own inner address).
func vpnSA(id uint64, i Interface, parent uint64, vip string) SA {
	s := sa(id, i, parent)
	a := netip.MustParseAddr(vip)
	s.VIPs = []netip.Addr{a}
	s.Children = []Child{{Name: "net", InSPI: uint32(id), Covers: func(x netip.Addr) bool { return x == a }}}
	return s
}

func mptcpPolicy(rules ...ifacerule.Rule[MultipathMode]) Policy {
	p := policy(PerInterface)
	p.MPTCP, p.Multipath = true, rules
	return p
}

var (
	vip1, vip2, vip3 = netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("10.99.0.4")
)

// One endpoint per VPN inner address, each with its interface's mode:
// the first matching rule, active when none matches, none for off.
func TestEndpointsPerVPN(t *testing.T) {
	ifs := []Interface{eth, wifi, lte}
	sas := []SA{vpnSA(1, eth, 0, "10.99.0.2"), vpnSA(2, wifi, 1, "10.99.0.3"), vpnSA(3, lte, 1, "10.99.0.4")}
	for _, tc := range []struct {
		name  string
		rules ifacerule.Rules[MultipathMode]
		want  []Endpoint
	}{
		{"all active by default", nil, []Endpoint{{vip1, false, "eth0"}, {vip2, false, "wlan0"}, {vip3, false, "wwan0"}}},
		{"metered LTE as backup", ifacerule.Rules[MultipathMode]{{Pattern: "wwan*", Value: MultipathBackup}},
			[]Endpoint{{vip1, false, "eth0"}, {vip2, false, "wlan0"}, {vip3, true, "wwan0"}}},
		{"first match wins", ifacerule.Rules[MultipathMode]{{Pattern: "wlan0", Value: MultipathOff}, {Pattern: "w*", Value: MultipathBackup}},
			[]Endpoint{{vip1, false, "eth0"}, {vip3, true, "wwan0"}}},
	} {
		m := New(mptcpPolicy(tc.rules...), nil)
		if got := m.Endpoints(ifs, sas); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Endpoints follow their VPNs: a VPN that moves (MOBIKE) takes the mode
// of its new interface; one being deleted, or not yet carrying its inner
// address, has none; a rekey's two SAs of one VPN give one endpoint.
func TestEndpointsFollowVPNs(t *testing.T) {
	m := New(mptcpPolicy(ifacerule.Rule[MultipathMode]{Pattern: "wwan*", Value: MultipathBackup}), nil)
	ifs := []Interface{down(eth), wifi, lte}
	moved := vpnSA(1, lte, 0, "10.99.0.2") // eth0 went down: its VPN is on wwan0 now
	want := []Endpoint{{vip1, true, "wwan0"}, {vip2, false, "wlan0"}}
	if got := m.Endpoints(ifs, []SA{moved, vpnSA(2, wifi, 1, "10.99.0.3")}); !reflect.DeepEqual(got, want) {
		t.Errorf("after a move: %v, want %v", got, want)
	}
	deleting := vpnSA(2, wifi, 1, "10.99.0.3")
	deleting.Deleting = true
	noChild := vpnSA(3, lte, 1, "10.99.0.4")
	noChild.Children = nil
	connecting := vpnSA(4, eth, 1, "10.99.0.5")
	connecting.Established = false
	if got := m.Endpoints(ifs, []SA{deleting, noChild, connecting}); len(got) != 0 {
		t.Errorf("no VPN carries its address: %v", got)
	}
	old, rekeyed := vpnSA(5, wifi, 1, "10.99.0.3"), vpnSA(6, wifi, 1, "10.99.0.3")
	rekeyed.Lineage = 5
	if got := m.Endpoints(ifs, []SA{old, rekeyed}); !reflect.DeepEqual(got, []Endpoint{{vip2, false, "wlan0"}}) {
		t.Errorf("a rekeyed VPN: %v", got)
	}
}

// Nothing without the switch, nor in failover mode (one VPN).
func TestEndpointsOff(t *testing.T) {
	sas := []SA{vpnSA(1, eth, 0, "10.99.0.2")}
	if got := New(policy(PerInterface), nil).Endpoints([]Interface{eth}, sas); got != nil {
		t.Errorf("without MPTCP: %v", got)
	}
	p := mptcpPolicy()
	p.Mode = Failover
	if got := New(p, nil).Endpoints([]Interface{eth}, sas); got != nil {
		t.Errorf("failover: %v", got)
	}
	if _, err := ParseMultipathMode("sometimes"); err == nil {
		t.Error("sometimes parsed")
	}
}
