package spread

import (
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

var (
	eth, wlan, wwan = netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("10.99.0.4")
)

// Each VPN gets as many of the hash's buckets as its weight, reduced by
// the weights' common divisor; weight 0 gets none; one VPN left gets one.
func TestBuckets(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   []Target
		want []netip.Addr
	}{
		{"3:2:0", []Target{{wwan, 0}, {eth, 3}, {wlan, 2}}, []netip.Addr{eth, eth, eth, wlan, wlan}},
		{"6:4 as 3:2", []Target{{eth, 6}, {wlan, 4}}, []netip.Addr{eth, eth, eth, wlan, wlan}},
		{"equal", []Target{{eth, 5}, {wlan, 5}, {wwan, 5}}, []netip.Addr{eth, wlan, wwan}},
		{"one with weight", []Target{{eth, 0}, {wlan, 7}}, []netip.Addr{wlan}},
		{"none with weight", []Target{{eth, 0}, {wlan, 0}}, nil},
		{"no targets", nil, nil},
	} {
		if got := Buckets(tc.ts); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The table for three VPNs weighted 3:2:0: flows from any of their
// inner addresses leaving through the TUN device; MPTCP and connections
// picked up in the middle keep their address; the others get a VPN by
// jhash over the 5-tuple into five buckets.
func TestRulesetWeighted(t *testing.T) {
	got := Rules("mifike0", []Group{{Conn: "office", Targets: []Target{{eth, 3}, {wlan, 2}, {wwan, 0}}}})
	want := `flush chain inet mifike_spread spread
table inet mifike_spread {
	chain spread {
		oifname "mifike0" ip saddr { 10.99.0.2, 10.99.0.3, 10.99.0.4 } tcp option mptcp exists return comment "office: MPTCP places its own subflows"
		oifname "mifike0" ip saddr { 10.99.0.2, 10.99.0.3, 10.99.0.4 } tcp flags & (syn | ack) != syn return comment "office: a connection seen first in its middle keeps its address"
		oifname "mifike0" ip saddr { 10.99.0.2, 10.99.0.3, 10.99.0.4 } snat ip to jhash ip saddr . ip daddr . meta l4proto . th sport . th dport mod 5 seed 0x6d696b65 map { 0 : 10.99.0.2, 1 : 10.99.0.2, 2 : 10.99.0.2, 3 : 10.99.0.3, 4 : 10.99.0.3 } comment "office: new flows spread by weight"
	}
}
`
	if got != want {
		t.Fatalf("rules:\n%s\nwant:\n%s", got, want)
	}
	// The base chain in the nat hook is made once and jumps to them.
	if setup := Setup(); !strings.Contains(setup, "type nat hook postrouting priority srcnat; policy accept;\n\t\tct state new jump spread") {
		t.Fatalf("setup:\n%s", setup)
	}
	checkNft(t, Setup()+got)
}

// One VPN with weight: every new flow goes to it, no hash. IPv6 inner
// addresses get their own rules; a family without a VPN of weight above
// 0, and a group without targets, get none (their flows keep their
// address). No group: an empty table.
func TestRulesetFamiliesAndEdges(t *testing.T) {
	v6a, v6b := netip.MustParseAddr("fd00:99::2"), netip.MustParseAddr("fd00:99::3")
	got := Rules("tun7", []Group{
		{Conn: "a", Targets: []Target{{eth, 0}, {wlan, 1}, {v6a, 1}, {v6b, 1}}},
		{Conn: "b", Targets: []Target{{wwan, 0}}},
		{Conn: "c"},
	})
	for _, w := range []string{
		`oifname "tun7" ip saddr { 10.99.0.2, 10.99.0.3 } snat ip to 10.99.0.3 comment "a: one VPN takes new flows"`,
		`oifname "tun7" ip6 saddr { fd00:99::2, fd00:99::3 } snat ip6 to jhash ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport mod 2 seed 0x6d696b65 map { 0 : fd00:99::2, 1 : fd00:99::3 } comment "a: new flows spread by weight"`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("ruleset lacks\n%s\nin\n%s", w, got)
		}
	}
	if strings.Contains(got, `"b:`) || strings.Contains(got, `"c:`) {
		t.Errorf("groups without a weighted VPN got rules:\n%s", got)
	}
	checkNft(t, Setup()+got)
	empty := Rules("mifike0", nil)
	if strings.Contains(empty, "oifname") {
		t.Errorf("no groups: %s", empty)
	}
	checkNft(t, Setup()+empty)
	checkNft(t, RemoveScript())
}

// checkNft has nft parse and check the script against the kernel
// without applying it (nft -c), where nft and the privilege are here.
func checkNft(t *testing.T, script string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: the script is not checked by nft -c")
		return
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Log("no nft here: the script is not checked by nft -c")
		return
	}
	cmd := exec.Command("nft", "-c", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -c: %v: %s\n%s", err, out, script)
	}
}
