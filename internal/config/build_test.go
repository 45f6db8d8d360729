package config

import (
	"fmt"
	"github.com/mifike/mifike/internal/ifacerule"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// fullConfig parses testdata/full.yaml next to freshly made certificates.
func fullConfig(t *testing.T) (*Config, *testPKI) {
	t.Helper()
	dir := t.TempDir()
	pki := newPKI(t, dir)
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("full.yaml", data, dir)
	if err != nil {
		t.Fatal(err)
	}
	return c, pki
}

func TestBuild(t *testing.T) {
	c, pki := fullConfig(t)
	conns, pools, err := c.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 2 || len(pools.ByName) != 2 {
		t.Fatalf("%d connections, %d pools", len(conns), len(pools.ByName))
	}
	v4, v6 := pools.ByName["v4"], pools.ByName["v6"]
	if v4.Leases() != pools.Leases || v6.Leases() != pools.Leases {
		t.Error("the pools do not share the returned lease registry")
	}
	if v4.Name != "v4" || v4.Prefix != netip.MustParsePrefix("10.99.0.0/24") || len(v4.DNS) != 2 || v6.DNS[0] != netip.MustParseAddr("fd00:20::53") {
		t.Errorf("pools %+v %+v", v4, v6)
	}

	site := conns[0]
	want := &ike.Connection{
		Name:                "site",
		LocalAddrs:          []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		RemoteAddrs:         []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8:2::7")},
		RemotePort:          4501,
		LocalID:             ike.ID{Type: wire.IDFQDN, Data: []byte("gw.example.org")},
		RemoteID:            ike.ID{Type: wire.IDIPv4Addr, Data: []byte{198, 51, 100, 7}},
		LocalAuth:           ike.AuthPSK,
		RemoteAuth:          ike.AuthPSK,
		PSK:                 []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
		RSAPSS:              true,
		ClassicSignatures:   true,
		IKE:                 c.Connections[0].IKE,
		RekeyTime:           2 * time.Hour,
		ReauthTime:          12 * time.Hour,
		OverTime:            5 * time.Minute,
		RandTime:            10 * time.Minute,
		DPDDelay:            45 * time.Second,
		MOBIKE:              false,
		Window:              4,
		RequestVIP4:         true,
		RequestVIP6:         true,
		SendInitialContact:  false,
		PreferPeerProposals: true,
		ForceEncap:          true,
		Fragmentation:       true, // the default (RFC 7383)
		Clone:               true,
		MaxIKESAs:           3,
		MaxChildSAs:         12,
		Draft00Clone:        true,
	}
	children := site.Children
	site.Children = nil
	if !reflect.DeepEqual(site, want) {
		t.Errorf("site:\n got %+v\nwant %+v", site, want)
	}
	if len(children) != 2 {
		t.Fatalf("%d children", len(children))
	}
	lan, all := children[0], children[1]
	if lan.Name != "lan" || lan.Mode != ike.Transport || lan.Start || lan.DynamicLocal || lan.DynamicRemote ||
		ts.Strings(lan.LocalTS) != "10.20.0.0/24, 192.0.2.1[udp/500]" || ts.Strings(lan.RemoteTS) != "10.30.0.0/16" {
		t.Errorf("lan %+v", lan)
	}
	if lan.RekeyTime != 30*time.Minute || lan.LifeTime != 40*time.Minute || lan.RandTime != 10*time.Minute || lan.RekeyBytes != 500<<20 || lan.LifeBytes != 1<<30 {
		t.Errorf("lan limits %+v", lan)
	}
	if len(lan.ESP) != 1 || len(lan.ESP[0].DH) != 1 || lan.ESP[0].DH[0] != wire.DHCurve25519 {
		t.Errorf("lan ESP %+v", lan.ESP)
	}
	if all.Name != "all" || !all.DynamicLocal || !all.DynamicRemote || all.LocalTS != nil || !all.Start || all.Mode != ike.Tunnel || len(all.ESP) == 0 {
		t.Errorf("all %+v", all)
	}

	rw := conns[1]
	if rw.LocalAuth != ike.AuthPubkey || rw.RemoteAuth != ike.AuthPubkey || rw.PSK != nil {
		t.Errorf("rw auth %v %v", rw.LocalAuth, rw.RemoteAuth)
	}
	// chain.crt lists the CA first; our certificate must lead.
	if len(rw.Certs) != 2 || !rw.Certs[0].Equal(pki.gw) || !rw.Certs[1].Equal(pki.ca) {
		t.Errorf("rw certs not end-entity first: %v", rw.Certs)
	}
	if len(rw.CAs) != 1 || !rw.CAs[0].Equal(pki.ca) || !pki.gwKey.PublicKey.Equal(rw.Key.Public()) {
		t.Errorf("rw CAs %v key %v", rw.CAs, rw.Key)
	}
	// No local.id: the certificate's subject, as in strongSwan.
	if rw.LocalID.Type != wire.IDDERASN1DN || ikeauth.FormatID(rw.LocalID.Type, rw.LocalID.Data) != "O=mifike test, CN=gw.example.org" {
		t.Errorf("rw local ID %v %q", rw.LocalID.Type, ikeauth.FormatID(rw.LocalID.Type, rw.LocalID.Data))
	}
	if !rw.RemoteID.Any() || len(rw.Pools) != 2 || rw.Pools[0] != v4 || rw.Pools[1] != v6 || rw.RequestVIP4 || !rw.MOBIKE || !rw.SendInitialContact {
		t.Errorf("rw %+v", rw)
	}
	if ch := rw.Children[0]; !ch.DynamicRemote || ch.DynamicLocal || ts.Strings(ch.LocalTS) != "10.20.0.0/24" {
		t.Errorf("rw child %+v", ch)
	}
	for _, ic := range conns {
		if err := ic.Validate(); err != nil {
			t.Error(err)
		}
	}
}

func TestBuildExplicitLocalID(t *testing.T) {
	dir := t.TempDir()
	newPKI(t, dir)
	src := `connections:
  gw:
    local:
      id: "@vpn.example.org"
      certs: certs/gw.crt
      key: private/gw.key
    remote: {cacerts: [certs/ca.crt], id: "CN=client"}
`
	c, err := Parse("f.yaml", []byte(src), dir)
	if err != nil {
		t.Fatal(err)
	}
	conns, _, err := c.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := conns[0].LocalID; id.Type != wire.IDFQDN || string(id.Data) != "vpn.example.org" {
		t.Errorf("local ID %v %q", id.Type, id.Data)
	}
	if id := conns[0].RemoteID; id.Type != wire.IDDERASN1DN {
		t.Errorf("remote ID %v", id.Type)
	}
}

// EAP-only authentication (RFC 5998): the gateway's local.auth eap-only
// and the end user's remote.auth eap-only are both sides EAP, the
// gateway with no EAP credentials of its own, the end user with EAP-TLS.
func TestBuildEAPOnly(t *testing.T) {
	dir := t.TempDir()
	newPKI(t, dir)
	src := `radius: {servers: {r: {address: 10.0.0.5, secret: s}}}
connections:
  gw:
    local: {auth: eap-only, id: "@vpn.example.org"}
    remote: {auth: eap-radius}
  ue:
    remote_addrs: 192.0.2.1
    local:
      auth: eap-tls
      id: "@gw.example.org"
      certs: certs/gw.crt
      key: private/gw.key
      eap_cacerts: certs/ca.crt
      aaa_id: radius.example.org
    remote: {auth: eap-only, id: "@vpn.example.org"}
`
	c, err := Parse("f.yaml", []byte(src), dir)
	if err != nil {
		t.Fatal(err)
	}
	conns, _, err := c.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	gw, ue := conns[0], conns[1]
	if gw.LocalAuth != ike.AuthEAP || gw.RemoteAuth != ike.AuthEAP || gw.EAP != nil {
		t.Errorf("gateway: local %v remote %v, EAP peer %v", gw.LocalAuth, gw.RemoteAuth, gw.EAP)
	}
	if ue.LocalAuth != ike.AuthEAP || ue.RemoteAuth != ike.AuthEAP || ue.EAP == nil || ue.EAP.Certificate == nil || ue.EAP.RootCAs == nil {
		t.Errorf("end user: local %v remote %v, EAP peer %+v", ue.LocalAuth, ue.RemoteAuth, ue.EAP)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		local string // the local section, lines 3-6
		want  []string
	}{
		{"missing certificate", `    local:
      id: "@vpn.example.org"
      certs: [certs/gw.crt, certs/missing.crt]
      key: private/gw.key`, []string{
			`f.yaml:5: connections.gw.local.certs[1]: cannot read DIR/certs/missing.crt: no such file or directory`,
		}},
		{"missing key", `    local:
      id: "@vpn.example.org"
      certs: certs/gw.crt
      key: private/nokey.pem`, []string{
			`f.yaml:6: connections.gw.local.key: cannot read DIR/private/nokey.pem: no such file or directory`,
		}},
		{"key of another certificate", `    local:
      id: "@vpn.example.org"
      certs: certs/gw.crt
      key: private/other.key`, []string{
			`f.yaml:6: connections.gw.local.key: DIR/private/other.key does not belong to any certificate in local.certs; give the key of our own certificate`,
		}},
		{"not PEM", `    local:
      id: "@vpn.example.org"
      certs: private/garbage.pem
      key: private/garbage.pem`, []string{
			`f.yaml:5: connections.gw.local.certs: DIR/private/garbage.pem: no PEM data found; certificates must be PEM (-----BEGIN CERTIFICATE-----), convert DER with openssl x509 -inform der`,
			`f.yaml:6: connections.gw.local.key: DIR/private/garbage.pem: no PEM data found; the key must be PEM (-----BEGIN PRIVATE KEY-----), convert DER with openssl pkey -inform der`,
		}},
		{"a key where the certificate belongs", `    local:
      id: "@vpn.example.org"
      certs: private/gw.key
      key: private/gw.key`, []string{
			`f.yaml:5: connections.gw.local.certs: DIR/private/gw.key: no CERTIFICATE in the PEM data (it holds PRIVATE KEY)`,
		}},
		{"identity not in the certificate", `    local:
      id: "@other.example.org"
      certs: certs/gw.crt
      key: private/gw.key`, []string{
			`f.yaml:4: connections.gw.local.id: "@other.example.org" is not in our certificate (subject "CN=gw.example.org,O=mifike test"); use its subject or one of its subjectAltNames`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			newPKI(t, dir)
			src := "connections:\n  gw:\n" + tc.local + "\n    remote: {cacerts: certs/ca.crt}\n"
			c, err := Parse("f.yaml", []byte(src), dir)
			if err != nil {
				t.Fatal(err)
			}
			conns, pools, err := c.Build(nil)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			if conns != nil || pools != nil {
				t.Error("Build returned results with an error")
			}
			got := strings.Split(strings.ReplaceAll(err.Error(), dir, "DIR"), "\n")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// Build also works on a Config made in code, and reports Validate's
// errors against the connection.
func TestBuildHandMade(t *testing.T) {
	c := &Config{File: "api", Connections: []*ConnConfig{{
		Name: "x", Line: 7,
		Local:  AuthConfig{Auth: "psk", ID: "@a"},
		Remote: AuthConfig{Auth: "psk"},
		PSK:    []byte("k"),
	}}}
	_, _, err := c.Build(nil)
	if err == nil || err.Error() != "api:7: connections.x: no IKE proposals" {
		t.Errorf("got %v", err)
	}
	c.Connections[0].Local = AuthConfig{Auth: "pubkey", Certs: []string{"/nonexistent/c.crt"}}
	_, _, err = c.Build(nil)
	if err == nil || err.Error() != "api:7: connections.x.local.certs: cannot read /nonexistent/c.crt: no such file or directory" {
		t.Errorf("got %v", err)
	}
}

// A reload keeps a pool (and its leases) whose name and prefix are
// unchanged, and replaces one whose prefix changed.
func TestPoolReuse(t *testing.T) {
	parse := func(pools string) *Config {
		t.Helper()
		c, err := Parse("f.yaml", []byte("pools:\n"+pools+base+"    pools: [a, b]\n"), "")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	_, first, err := parse("  a: {addrs: 10.1.0.0/24, dns: 10.0.0.53}\n  b: {addrs: 10.2.0.0/24}\n  gone: {addrs: 10.3.0.0/24}\n").Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := first.ByName["a"].Acquire("peer-1")
	if err != nil {
		t.Fatal(err)
	}
	conns, second, err := parse("  a: {addrs: 10.1.0.0/24, dns: 10.0.0.54}\n  b: {addrs: 10.2.0.0/23}\n").Build(first)
	if err != nil {
		t.Fatal(err)
	}
	if second.ByName["a"] != first.ByName["a"] || second.ByName["a"].InUse() != 1 {
		t.Error("pool a was not reused with its lease")
	}
	if got, _ := second.ByName["a"].Acquire("peer-1"); got != addr {
		t.Errorf("peer-1 got %v after reload, had %v", got, addr)
	}
	if second.ByName["a"].DNS[0] != netip.MustParseAddr("10.0.0.54") {
		t.Errorf("reused pool kept old DNS %v", second.ByName["a"].DNS)
	}
	if second.ByName["b"] == first.ByName["b"] || second.ByName["b"].Prefix != netip.MustParsePrefix("10.2.0.0/23") {
		t.Error("pool b with a new prefix was reused")
	}
	if _, ok := second.ByName["gone"]; ok || len(second.ByName) != 2 {
		t.Errorf("pools after reload: %v", second.ByName)
	}
	if second.Leases != first.Leases {
		t.Error("the reload did not carry the lease registry over")
	}
	if conns[0].Pools[0] != first.ByName["a"] || conns[0].Pools[1] != second.ByName["b"] {
		t.Error("connection does not use the returned pools")
	}
}

// Pools that do not overlap are accepted: adjacent prefixes, and IPv4
// next to IPv6.
func TestPoolsThatDoNotOverlap(t *testing.T) {
	src := "pools:\n  a: {addrs: 10.1.0.0/24}\n  b: {addrs: 10.1.1.0/24}\n  c: {addrs: \"fd00::/64\"}\n  d: {addrs: \"fd00:0:0:1::/64\"}\n" + none
	c, err := Parse("f.yaml", []byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Pools) != 4 {
		t.Fatalf("%d pools", len(c.Pools))
	}
}

// A Config built by hand (or changed after Parse) skips Parse's overlap
// check: the pools Build makes still share one lease registry, so two
// connections with overlapping pools never lease one address to two
// peers (RFC 7296 §2.19).
func TestBuildOverlappingPoolsNeverShareAnAddress(t *testing.T) {
	src := "pools:\n  a: {addrs: 10.1.0.0/28}\n  b: {addrs: 10.2.0.0/28}\n" + base + "    pools: [a]\n" +
		"  d:\n    local: {auth: psk, id: \"@d\"}\n    remote: {auth: psk}\n    psk: secret\n    pools: [b]\n"
	c, err := Parse("f.yaml", []byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	c.Pools[1].Addrs = netip.MustParsePrefix("10.1.0.0/29") // now inside a
	conns, _, err := c.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := conns[0].Pools[0], conns[1].Pools[0]
	if !pa.Prefix.Overlaps(pb.Prefix) {
		t.Fatal("setup: the pools do not overlap")
	}
	owner := map[netip.Addr]string{}
	for i := 0; i < 20; i++ {
		for _, x := range []struct {
			who string
			p   *ike.Pool
		}{{fmt.Sprint("c|peer", i), pb}, {fmt.Sprint("d|peer", i), pa}} {
			a, err := x.p.Acquire(x.who)
			if err != nil {
				continue // full
			}
			if prev, dup := owner[a]; dup {
				t.Fatalf("%v leased to %s while %s holds it", a, x.who, prev)
			}
			owner[a] = x.who
		}
	}
	if len(owner) != 13 { // 10.1.0.2 to .14
		t.Errorf("%d addresses leased, want the 13 of 10.1.0.0/28", len(owner))
	}
}

// A reload carries the lease registry over even when a configuration in
// between has no pools: a pool renamed or dropped while a peer holds one
// of its addresses does not let a new pool hand it out (RFC 7296 §2.19).
func TestReloadKeepsLeasesOfDroppedPools(t *testing.T) {
	build := func(pools, use string, prev *Pools) *Pools {
		t.Helper()
		src := base + use
		if pools != "" {
			src = "pools:\n" + pools + src
		}
		c, err := Parse("f.yaml", []byte(src), "")
		if err != nil {
			t.Fatal(err)
		}
		_, ps, err := c.Build(prev)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	first := build("  a: {addrs: 10.5.0.0/30}\n", "    pools: [a]\n", nil) // one address: .2
	held, err := first.ByName["a"].Acquire("c|peer-1")
	if err != nil {
		t.Fatal(err)
	}
	renamed := build("  b: {addrs: 10.5.0.0/30}\n", "    pools: [b]\n", first)
	if a, err := renamed.ByName["b"].Acquire("c|peer-2"); err == nil {
		t.Fatalf("renamed pool handed out %v, which peer-1 holds", a)
	}
	without := build("", "", renamed)
	if len(without.ByName) != 0 || without.Leases.Len() != 1 {
		t.Fatalf("without pools: %d pools, %d leases; want 0 and peer-1's", len(without.ByName), without.Leases.Len())
	}
	again := build("  c: {addrs: 10.5.0.0/29}\n", "    pools: [c]\n", without)
	for i := range 5 { // .3 to .6, then full
		a, err := again.ByName["c"].Acquire(fmt.Sprint("c|new-", i))
		if a == held {
			t.Fatalf("pool c handed out %v, which peer-1 holds", a)
		}
		if (err != nil) != (i == 4) {
			t.Fatalf("acquisition %d: %v", i, err)
		}
	}
	first.ByName["a"].Release(held) // peer-1's IKE SA ends
	if a, err := again.ByName["c"].Acquire("c|new-4"); a != held {
		t.Fatalf("after peer-1 left: %v %v, want %v", a, err, held)
	}
}

// RFC 5685: redirect.to makes a plain redirecting gateway, redirect.follow
// no an end user that neither announces nor follows redirects.
func TestBuildRedirect(t *testing.T) {
	src := base + "    redirect: {to: \"::ffff:192.0.2.7\", follow: no}\n"
	c, err := Parse("f.yaml", []byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	conns, _, err := c.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := conns[0]; got.RedirectTo != netip.MustParseAddr("192.0.2.7") || !got.NoRedirect {
		t.Fatalf("RedirectTo %v NoRedirect %v", got.RedirectTo, got.NoRedirect)
	}
	c, err = Parse("f.yaml", []byte(base), "")
	if err != nil {
		t.Fatal(err)
	}
	if conns, _, err = c.Build(nil); err != nil || conns[0].RedirectTo.IsValid() || conns[0].NoRedirect {
		t.Fatalf("defaults: %v %+v", err, conns[0])
	}
}

// RFC 9329 settings reach the engine: the gateway's TCP ports, the end
// user's policy, port and fallback time, and the per-interface policy
// in file order.
func TestBuildTCP(t *testing.T) {
	src := `tcp_ports: [4500, 443]
connections:
  office:
    remote_addrs: [192.0.2.1]
    local: {auth: psk, id: "@a"}
    remote: {auth: psk}
    psk: secret
    tcp: fallback
    tcp_port: 443
    tcp_fallback_after: 3s
    interfaces: {use: [eth0, "wwan*"], tcp: {"wwan*": always, eth0: never}}
`
	c, err := Parse("f.yaml", []byte(src), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.TCPPorts) != "[4500 443]" {
		t.Errorf("tcp_ports %v", c.TCPPorts)
	}
	conns, _, err := c.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	ic := conns[0]
	want := ifacerule.Rules[ike.TCPPolicy]{{Pattern: "wwan*", Value: ike.TCPAlways}, {Pattern: "eth0", Value: ike.TCPNever}}
	if ic.TCP != ike.TCPFallback || ic.TCPPort != 443 || ic.TCPFallbackAfter != 3*time.Second || !slices.Equal(ic.TCPIfaces, want) {
		t.Errorf("tcp %v port %d after %v ifaces %v", ic.TCP, ic.TCPPort, ic.TCPFallbackAfter, ic.TCPIfaces)
	}
}
