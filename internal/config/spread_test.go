package config

import (
	"github.com/mifike/mifike/internal/ifacerule"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// An end user that spreads its flows that are not MPTCP over its
// per-interface VPNs (RFC 7791 clones, one inner address each).
const spreadEndUser = `data_plane: userspace
connections:
  office:
    remote_addrs: [192.0.2.1]
    vips: [0.0.0.0]
    clone: {enable: yes, own_vips: yes}
    local: {auth: psk, id: "@ue"}
    remote: {auth: psk, id: "@gw"}
    psk: secretsecretsecretsecret
    interfaces:
      use: [eth*, wlan0, wwan0]
      spread: {eth*: 3, wlan*: 2, wwan*: 0}
    children:
      net: {remote_ts: [10.1.0.0/16]}
`

func TestSpreadParse(t *testing.T) {
	c, err := Parse("f.yaml", []byte(spreadEndUser), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := ifacerule.Rules[int]{{Pattern: "eth*", Value: 3}, {Pattern: "wlan*", Value: 2}, {Pattern: "wwan*", Value: 0}}
	if got := c.Connections[0].Interfaces.Spread; !reflect.DeepEqual(got, want) {
		t.Fatalf("spread = %+v, want %+v (file order: the first match wins)", got, want)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("warnings: %v", c.Warnings)
	}
	// {} is on, every VPN weighing 1; no key is off.
	on, err := Parse("f.yaml", []byte(strings.Replace(spreadEndUser, "{eth*: 3, wlan*: 2, wwan*: 0}", "{}", 1)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s := on.Connections[0].Interfaces.Spread; s == nil || len(s) != 0 {
		t.Fatalf("spread: {} = %#v, want on with no rules", s)
	}
	off, err := Parse("f.yaml", []byte(strings.Replace(spreadEndUser, "      spread: {eth*: 3, wlan*: 2, wwan*: 0}\n", "", 1)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s := off.Connections[0].Interfaces.Spread; s != nil {
		t.Fatalf("default spread = %#v, want off", s)
	}
}

func TestSpreadErrors(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"negative weight", "wwan*: 0", "wwan*: -1",
			`f.yaml:12: connections.office.interfaces.spread.wwan*: "-1": want a weight from 0 (no new flows) to 100`},
		{"weight too large", "eth*: 3", "eth*: 101",
			`f.yaml:12: connections.office.interfaces.spread.eth*: "101": want a weight from 0 (no new flows) to 100`},
		{"not a number", "wlan*: 2", "wlan*: active",
			`f.yaml:12: connections.office.interfaces.spread.wlan*: "active": want a weight from 0 (no new flows) to 100`},
		{"not a mapping", "spread: {eth*: 3, wlan*: 2, wwan*: 0}", "spread: 3",
			`f.yaml:12: connections.office.interfaces.spread: want a mapping of interface names or patterns to a weight from 0 (no new flows) to 100, such as {eth*: 3, wlan*: 2, wwan*: 0}`},
		{"bad pattern", "wwan*: 0", "\"ww[\": 0",
			`f.yaml:12: connections.office.interfaces.spread: "ww[" is not an interface name or pattern`},
		{"nothing gets a flow", "{eth*: 3, wlan*: 2, wwan*: 0}", "{eth*: 0, \"*\": 0}",
			`f.yaml:12: connections.office.interfaces.spread: every weight is 0 and every interface is named by a pattern: no VPN would get a new flow; give one a weight above 0`},
		{"shared inner address", "own_vips: yes", "own_vips: no",
			`f.yaml:3: connections.office.clone.own_vips: interfaces.spread puts flows on VPNs by their source address: every VPN needs its own inner address; set clone.own_vips: yes`},
		{"no inner address", "    vips: [0.0.0.0]\n", "",
			`f.yaml:3: connections.office.vips: interfaces.spread puts flows on VPNs by their source address, one inner address per VPN: request one with vips: [0.0.0.0] (and clone.own_vips: yes)`},
		{"kernel data plane", "data_plane: userspace", "data_plane: kernel",
			`f.yaml:12: connections.office.interfaces.spread: flows are spread over the userspace data plane's TUN device; data_plane is kernel: use userspace or auto`},
		{"failover", "      use: [eth*, wlan0, wwan0]\n", "      mode: failover\n      use: [eth*, wlan0, wwan0]\n",
			`f.yaml:13: connections.office.interfaces.spread: mode failover keeps one VPN: spreading flows needs mode per-interface, a VPN on every interface`},
	} {
		src := strings.Replace(spreadEndUser, tc.from, tc.to, 1)
		if src == spreadEndUser {
			t.Fatalf("%s: %q not in the file", tc.name, tc.from)
		}
		if got := parseErrors(t, src); !slices.Contains(got, tc.want) {
			t.Errorf("%s: errors %q, want %q", tc.name, got, tc.want)
		}
	}
	// Every mistake at once, so that one --check shows them all.
	both := strings.Replace(strings.Replace(spreadEndUser, "own_vips: yes", "own_vips: no", 1), "data_plane: userspace", "data_plane: kernel", 1)
	got := parseErrors(t, both)
	for _, w := range []string{"connections.office.clone.own_vips: interfaces.spread", "connections.office.interfaces.spread: flows are spread over the userspace data plane's TUN device; data_plane is kernel"} {
		if !slices.ContainsFunc(got, func(e string) bool { return strings.Contains(e, w) }) {
			t.Errorf("own_vips: no and data_plane: kernel: errors %q, want one with %q", got, w)
		}
	}
	// Weights of 0 beside interfaces no pattern names (weight 1) are fine.
	if _, err := Parse("f.yaml", []byte(strings.Replace(spreadEndUser, "{eth*: 3, wlan*: 2, wwan*: 0}", "{wwan*: 0}", 1)), t.TempDir()); err != nil {
		t.Fatalf("{wwan*: 0}: %v", err)
	}
}
