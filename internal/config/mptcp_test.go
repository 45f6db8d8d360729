package config

import (
	"github.com/mifike/mifike/internal/ifacerule"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// An end user that spreads one MPTCP connection over its per-interface
// VPNs (RFC 8684 subflows, one per VPN inner address).
const mptcpEndUser = `data_plane: userspace
mptcp: {enable: yes, subflows: 4}
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
      multipath: {eth*: active, wwan*: backup, wlan0: off}
    children:
      net: {remote_ts: [10.1.0.0/16]}
`

func TestMPTCPParse(t *testing.T) {
	c, err := Parse("f.yaml", []byte(mptcpEndUser), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if want := (MPTCPConfig{Enable: true, Subflows: 4, AddAddrAccepted: -1, Line: 2}); c.MPTCP != want {
		t.Fatalf("mptcp = %+v, want %+v", c.MPTCP, want)
	}
	want := ifacerule.Rules[string]{{Pattern: "eth*", Value: "active"}, {Pattern: "wwan*", Value: "backup"}, {Pattern: "wlan0", Value: "off"}}
	if got := c.Connections[0].Interfaces.Multipath; !reflect.DeepEqual(got, want) {
		t.Fatalf("multipath = %+v, want %+v (file order: the first match wins)", got, want)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("warnings: %v", c.Warnings)
	}
	// Off by default: mifike leaves the kernel's MPTCP settings alone.
	d, err := Parse("f.yaml", []byte(strings.Replace(strings.Replace(mptcpEndUser, "mptcp: {enable: yes, subflows: 4}\n", "", 1),
		"      multipath: {eth*: active, wwan*: backup, wlan0: off}\n", "", 1)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if d.MPTCP.Enable || d.MPTCP.AddAddrAccepted != -1 {
		t.Fatalf("default mptcp = %+v", d.MPTCP)
	}
}

func TestMPTCPErrors(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"bad mode", "wlan0: off", "wlan0: sometimes",
			`f.yaml:13: connections.office.interfaces.multipath.wlan0: "sometimes": want active (carries traffic), backup (only when no active one is left) or off`},
		{"not a mapping", "multipath: {eth*: active, wwan*: backup, wlan0: off}", "multipath: active",
			`f.yaml:13: connections.office.interfaces.multipath: want a mapping of interface names or patterns to active (carries traffic), backup (only when no active one is left) or off, such as {eth*: active, wwan*: backup}`},
		{"bad pattern", "wlan0: off", "\"wl[\": off",
			`f.yaml:13: connections.office.interfaces.multipath: "wl[" is not an interface name or pattern`},
		{"shared inner address", "own_vips: yes", "own_vips: no",
			`f.yaml:4: connections.office.clone.own_vips: MPTCP needs an inner address per VPN, or every subflow leaves through the first VPN: set clone.own_vips: yes`},
		{"no inner address", "    vips: [0.0.0.0]\n", "",
			`f.yaml:4: connections.office.vips: MPTCP needs an inner address per VPN: request one with vips: [0.0.0.0] (and clone.own_vips: yes)`},
		{"kernel data plane", "data_plane: userspace", "data_plane: kernel",
			`f.yaml:2: mptcp.enable: MPTCP endpoints are made for the userspace data plane's inner addresses; data_plane is kernel: use userspace or auto`},
		{"too many subflows", "subflows: 4", "subflows: 9", `f.yaml:2: mptcp.subflows: 9 is out of range; use 0 to 8`},
	} {
		src := strings.Replace(mptcpEndUser, tc.from, tc.to, 1)
		if src == mptcpEndUser {
			t.Fatalf("%s: %q not in the file", tc.name, tc.from)
		}
		if got := parseErrors(t, src); !slices.Contains(got, tc.want) {
			t.Errorf("%s: errors %q, want %q", tc.name, got, tc.want)
		}
	}
	failover := strings.Replace(mptcpEndUser, "      use: [eth*, wlan0, wwan0]\n", "      mode: failover\n      use: [eth*, wlan0, wwan0]\n", 1)
	want := `f.yaml:14: connections.office.interfaces.multipath: mode failover keeps one VPN: MPTCP needs mode per-interface, a VPN on every interface`
	if got := parseErrors(t, failover); !slices.Contains(got, want) {
		t.Errorf("failover: errors %q, want %q", got, want)
	}
}

// A multipath map without the switch works (nothing happens) but is
// most likely a forgotten switch: a warning, not an error.
func TestMPTCPMapWithoutSwitchWarns(t *testing.T) {
	src := strings.Replace(mptcpEndUser, "mptcp: {enable: yes, subflows: 4}\n", "", 1)
	c, err := Parse("f.yaml", []byte(src), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0].String(), "connections.office.interfaces.multipath: has no effect: MPTCP endpoints are off; add the top-level mptcp: {enable: yes}") {
		t.Fatalf("warnings %v", c.Warnings)
	}
}
