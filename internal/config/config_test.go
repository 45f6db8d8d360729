package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/proposal"
)

// none says there are no connections; cases about other sections append
// it, since a file without a connections key is itself an error.
const none = "connections: {}\n"

// base is a valid connection; cases append lines from line 6 on.
const base = `connections:
  c:
    local: {auth: psk, id: "@a"}
    remote: {auth: psk}
    psk: secret
`

func parseErrors(t *testing.T, src string) []string {
	t.Helper()
	_, err := Parse("f.yaml", []byte(src), t.TempDir())
	if err == nil {
		return nil
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	return strings.Split(err.Error(), "\n")
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // whole lines; a trailing "…" matches a prefix
	}{
		// Structure.
		{"unknown top key with suggestion", "lsiten: [\"::\"]\n" + none,
			[]string{`f.yaml:1: lsiten: unknown key; did you mean listen?`}},
		{"unknown key lists known keys", base + "    zzzzzz: 1\n",
			[]string{`f.yaml:6: connections.c.zzzzzz: unknown key; known keys are local_addrs, remote_addrs, …`}},
		{"strongSwan key with a hint", "secrets: {}\n" + none,
			[]string{`f.yaml:1: secrets: mifike has no secrets section; put the shared key on the connection as psk`}},
		{"unknown top key without a close match", base + "    children: {}\nx:\n",
			[]string{`f.yaml:7: x: unknown key; known keys are …`}},
		{"list where a string belongs", `connections:
  c:
    local: {auth: psk, id: [a, b]}
    remote: {auth: psk}
    psk: secret
`, []string{`f.yaml:3: connections.c.local.id: want a single value, not a list`}},
		{"mapping where a list belongs", "listen: {a: b}\n" + none,
			[]string{`f.yaml:1: listen: want a list or a comma-separated string, not a mapping`}},
		{"scalar where a mapping belongs", "log: debug\n" + none,
			[]string{`f.yaml:1: log: want a mapping of settings (key: value lines), not the value "debug"`}},
		{"connections not a mapping", "connections: [a]\n",
			[]string{`f.yaml:1: connections: want a mapping of connection names to their settings, not a list`}},
		{"duplicate connection", base + "  c:\n    psk: x\n",
			[]string{`f.yaml:6: connections.c: duplicate connection name; it is already defined on line 2`}},
		{"duplicate child", base + "    children:\n      net: {}\n      net: {}\n",
			[]string{`f.yaml:8: connections.c.children.net: duplicate child name; it is already defined on line 7`}},
		{"duplicate pool", "pools:\n  p: {addrs: 10.0.0.0/24}\n  p: {addrs: 10.1.0.0/24}\n" + none,
			[]string{`f.yaml:3: pools.p: duplicate pool name; it is already defined on line 2`}},
		{"duplicate key", base + "    psk: other\n",
			[]string{`f.yaml:6: connections.c.psk: duplicate key; it is already set on line 5`}},
		{"bad name", "connections:\n  \"a b\": {}\n",
			[]string{`f.yaml:2: connections.a b: name "a b" has ' '; use letters, digits, '-', '_' and '.'`}},
		{"yaml syntax", "log:\n  level: [\n",
			[]string{`f.yaml:2: YAML syntax: did not find expected node content`}},
		{"second document", "log: {}\n" + none + "---\nlog: {}\n",
			[]string{`f.yaml:3: a second YAML document (after ---); keep the whole configuration in one document`}},
		{"control character", "log: {}\n\x01\n",
			[]string{`f.yaml:2: control character U+0001; the file must be plain text`}},
		{"merge of a scalar", base + "    <<: 5\n",
			[]string{`f.yaml:6: connections.c: << merges a mapping (an alias such as *defaults), not the value "5"`}},

		// Addresses and pools.
		{"bad local address", base + "    local_addrs: 10.0.0.256\n",
			[]string{`f.yaml:6: connections.c.local_addrs: "10.0.0.256" is not an IP address`}},
		{"DNS name", base + "    remote_addrs: [vpn.example.org]\n",
			[]string{`f.yaml:6: connections.c.remote_addrs[0]: "vpn.example.org": DNS names are not supported yet; give an IP address`}},
		{"subnet as remote", base + "    remote_addrs: 10.0.0.1, 10.0.0.0/8\n",
			[]string{`f.yaml:6: connections.c.remote_addrs[1]: "10.0.0.0/8": subnets and ranges are not supported; give single IP addresses or %any`}},
		// RFC 9329 TCP encapsulation.
		{"tcp policy", base + "    tcp: sometimes\n",
			[]string{`f.yaml:6: connections.c.tcp: …`}},
		{"tcp_fallback_after without fallback", base + "    tcp: always\n    tcp_fallback_after: 5s\n",
			[]string{`f.yaml:7: connections.c.tcp_fallback_after: applies to tcp: fallback only (this connection has tcp: always)`}},
		{"tcp_fallback_after too short", base + "    tcp: fallback\n    tcp_fallback_after: 100ms\n",
			[]string{`f.yaml:7: connections.c.tcp_fallback_after: 100ms is too short (UDP needs a retransmission before TCP, RFC 9329 §5.1); use 1s or more`}},
		{"tcp_port without tcp", base + "    tcp_port: 443\n",
			[]string{`f.yaml:6: connections.c.tcp_port: applies when the connection uses TCP: set tcp: fallback or always`}},
		{"tcp_ports not a port", "tcp_ports: [4500, https]\n" + none,
			[]string{`f.yaml:1: tcp_ports[1]: "https" is not a TCP port (1 to 65535); RFC 9329 wants 4500 among them`}},
		{"interfaces tcp policy", base + "    remote_addrs: [192.0.2.1]\n    interfaces: {use: [eth0, wwan0], tcp: {wwan0: sometimes}}\n",
			[]string{`f.yaml:7: connections.c.interfaces.tcp.wwan0: "sometimes": want never, fallback or always`}},
		{"interfaces tcp not a mapping", base + "    remote_addrs: [192.0.2.1]\n    interfaces: {use: [eth0], tcp: always}\n",
			[]string{`f.yaml:7: connections.c.interfaces.tcp: want a mapping of interface names or patterns to never, fallback or always, such as {wwan*: always}`}},
		{"tcp_ports twice", "tcp_ports: [4500, 4500]\n" + none,
			[]string{`f.yaml:1: tcp_ports[1]: 4500 is listed twice`}},
		{"listen name", "listen: [localhost]\n" + none,
			[]string{`f.yaml:1: listen[0]: "localhost": DNS names are not supported yet; give an IP address`}},
		{"empty listen", "listen: []\n" + none,
			[]string{`f.yaml:1: listen: needs at least one address; 0.0.0.0 and :: bind to all`}},
		{"bad pool prefix", "pools:\n  p: {addrs: 10.0.0/24}\n" + none,
			[]string{`f.yaml:2: pools.p.addrs: "10.0.0/24" is not a prefix such as 10.99.0.0/24`}},
		{"pool of one address", "pools:\n  p: {addrs: 10.0.0.1}\n" + none,
			[]string{`f.yaml:2: pools.p.addrs: "10.0.0.1" is one address; a pool is a prefix such as 10.99.0.0/24`}},
		{"pool range", "pools:\n  p: {addrs: 10.0.0.1-10.0.0.9}\n" + none,
			[]string{`f.yaml:2: pools.p.addrs: "10.0.0.1-10.0.0.9": address ranges are not supported; give a prefix such as 10.99.0.0/24`}},
		{"pool too small", "pools:\n  p: {addrs: 10.0.0.0/31}\n" + none,
			[]string{`f.yaml:2: pools.p.addrs: 10.0.0.0/31 has no room for clients; use /30 or shorter (IPv6: /126 or shorter)`}},
		{"pool without addrs", "pools:\n  p:\n    dns: 10.0.0.53\n" + none,
			[]string{`f.yaml:2: pools.p.addrs: required: the pool's prefix, e.g. 10.99.0.0/24`}},
		{"pool dns", "pools:\n  p: {addrs: 10.0.0.0/24, dns: [10.0.0.1.5]}\n" + none,
			[]string{`f.yaml:2: pools.p.dns[0]: "10.0.0.1.5" is not an IP address`}},
		{"unknown pool", "pools:\n  roadwarriors: {addrs: 10.0.0.0/24}\n" + base + "    pools: [roadwarrior]\n",
			[]string{`f.yaml:8: connections.c.pools[0]: no pool "roadwarrior"; did you mean roadwarriors?`}},
		{"no pools at all", base + "    pools: rw\n",
			[]string{`f.yaml:6: connections.c.pools: no pool "rw": define it under the top-level pools`}},
		{"overlapping pools", "pools:\n  a: {addrs: 10.1.0.0/24}\n  b: {addrs: 10.1.0.128/25}\n" + none,
			[]string{`f.yaml:3: pools.b.addrs: 10.1.0.128/25 overlaps pool a (10.1.0.0/24) at f.yaml:2: two clients would get the same inner address; give each pool a prefix of its own or, to share one range between connections, list the same pool in each connection's pools`}},
		{"overlapping pools, smaller first", "pools:\n  a:\n    addrs: fd00:99::/120\n  b:\n    dns: fd00::53\n    addrs: fd00:99::/64\n" + none,
			[]string{`f.yaml:6: pools.b.addrs: fd00:99::/64 overlaps pool a (fd00:99::/120) at f.yaml:3: two clients would get the same inner address; give each pool a prefix of its own or, to share one range between connections, list the same pool in each connection's pools`}},
		{"one prefix twice", "pools:\n  a: {addrs: 10.1.0.0/24}\n  b: {addrs: 10.1.0.0/24}\n" + none,
			[]string{`f.yaml:3: pools.b.addrs: 10.1.0.0/24 overlaps pool a (10.1.0.0/24) at f.yaml:2: …`}},
		{"two pools inside a third", "pools:\n  b: {addrs: 10.1.2.0/24}\n  all: {addrs: 10.1.0.0/16}\n  c: {addrs: 10.1.3.0/24}\n  d: {addrs: 10.2.0.0/16}\n  e: {addrs: \"fd00::/64\"}\n" + none,
			[]string{`f.yaml:3: pools.all.addrs: 10.1.0.0/16 overlaps pool b (10.1.2.0/24) at f.yaml:2: …`,
				`f.yaml:4: pools.c.addrs: 10.1.3.0/24 overlaps pool all (10.1.0.0/16) at f.yaml:3: …`}},
		{"IPv4-mapped pool", "pools:\n  p: {addrs: \"::ffff:10.1.0.0/120\"}\n" + none,
			[]string{`f.yaml:2: pools.p.addrs: "::ffff:10.1.0.0/120" is an IPv4-mapped prefix; write the IPv4 prefix such as 10.99.0.0/24`}},
		{"specific vip", base + "    vips: [0.0.0.0, 10.0.0.5]\n",
			[]string{`f.yaml:6: connections.c.vips[1]: requesting a specific address (10.0.0.5) is not supported; use 0.0.0.0 for IPv4 or :: for IPv6`}},

		// Proposals and selectors.
		{"bad proposal", base + "    proposals: aes128-sha256-modp2048, aes999-sha1\n",
			[]string{`f.yaml:6: connections.c.proposals[1]: IKE proposal "aes999-sha1"…`}},
		{"empty proposals", base + "    proposals: []\n",
			[]string{`f.yaml:6: connections.c.proposals: no proposals; list some or write default`}},
		{"bad esp proposal", base + "    children:\n      net:\n        esp_proposals: [aes128gcm16-prfsha256]\n",
			[]string{`f.yaml:8: connections.c.children.net.esp_proposals[0]: ESP proposal "aes128gcm16-prfsha256"…`}},
		{"bad selector", base + "    children:\n      net: {local_ts: 10.0.0.0/33}\n",
			[]string{`f.yaml:7: connections.c.children.net.local_ts: traffic selector "10.0.0.0/33"…`}},
		{"dynamic combined", base + "    children:\n      net: {remote_ts: [dynamic, 10.0.0.0/8]}\n",
			[]string{`f.yaml:7: connections.c.children.net.remote_ts[0]: dynamic stands alone; it cannot be combined with other selectors`}},
		{"no selectors", base + "    children:\n      net: {remote_ts: \"\"}\n",
			[]string{`f.yaml:7: connections.c.children.net.remote_ts: needs at least one traffic selector, or dynamic`}},

		// Enumerations.
		{"mode", base + "    children:\n      net:\n        mode: tunel\n",
			[]string{`f.yaml:8: connections.c.children.net.mode: "tunel" is not a mode; use tunnel or transport`}},
		{"mode pass", base + "    children:\n      net: {mode: pass}\n",
			[]string{`f.yaml:7: connections.c.children.net.mode: "pass": shunt policies are not supported; use tunnel or transport`}},
		{"auth eap-tls without a certificate", `connections:
  c:
    local: {auth: eap-tls, id: "@a"}
    remote: {auth: psk}
    psk: secret
`, []string{`f.yaml:3: connections.c.local.certs: required for eap-tls authentication: our certificate file (PEM) (or set auth: psk to use the psk)`,
			`f.yaml:3: connections.c.local.key: required for eap-tls authentication: the private key file (PEM) of the certificate (or set auth: psk to use the psk)`}},
		{"auth eap without a password", `connections:
  c:
    local: {auth: eap-mschapv2, id: "@a"}
    remote: {auth: psk}
    psk: secret
`, []string{`f.yaml:3: connections.c.local.password: required for eap-mschapv2: the EAP password (or password_file, a file whose first line is it)`}},
		{"auth eap both sides", `connections:
  c:
    local: {auth: eap-md5, id: "@a", password: pw}
    remote: {auth: eap}
radius: {servers: {r: {address: 10.0.0.5, secret: s}}}
`, []string{`f.yaml:4: connections.c.remote.auth: one side of an EAP authentication proves itself by psk or pubkey (RFC 7296 §2.16); for a gateway that authenticates by EAP alone (RFC 5998) write remote.auth: eap-only`}},
		{"eap-only gateway without EAP peers", `connections:
  c:
    local: {auth: eap-only, id: "@gw"}
    remote: {auth: psk}
    psk: secret
`, []string{`f.yaml:3: connections.c.local.auth: eap-only is the gateway's side of EAP-only authentication (RFC 5998): it needs remote.auth: eap-radius; an end user writes remote.auth: eap-only`}},
		{"eap-only end user without EAP", `connections:
  c:
    local: {auth: psk, id: "@a"}
    remote: {auth: eap-only}
    psk: secret
`, []string{`f.yaml:4: connections.c.remote.auth: eap-only is the end user's side of EAP-only authentication (RFC 5998): it needs local.auth eap-tls (or eap with a certificate); a gateway writes local.auth: eap-only`}},
		{"eap-only with mschapv2", `connections:
  c:
    local: {auth: eap-mschapv2, id: "@a", password: pw}
    remote: {auth: eap-only}
`, []string{`f.yaml:3: connections.c.local.auth: EAP-only authentication (RFC 5998) needs a method that authenticates the EAP server and derives a key; eap-mschapv2 does not: use eap-tls with a certificate`}},
		{"eap-only gateway with a password", `radius: {servers: {r: {address: 10.0.0.5, secret: s}}}
connections:
  c:
    local: {auth: eap-only, id: "@gw", password: pw}
    remote: {auth: eap-radius}
`, []string{`f.yaml:4: connections.c.local.password: only for local.auth eap, eap-mschapv2, eap-md5 or eap-tls`}},
		{"auth eap without radius", `connections:
  c:
    local: {auth: psk, id: "@a"}
    remote: {auth: eap-radius}
    psk: secret
`, []string{`f.yaml:2: connections.c.remote.auth: eap passes the authentication to RADIUS: add a top-level radius section with servers (see docs/eap-radius.md)`}},
		{"cluster without anything", "cluster: {lease: 2s}\n" + none,
			[]string{`f.yaml:1: cluster.name: required: the cluster's name, the same on every node (letters, digits, - and _; no slashes)`,
				`f.yaml:1: cluster.node: required: this node's ID, 1 to 255, different on every node (it is the first octet of the SPIs it chooses)`,
				`f.yaml:1: cluster.key_file: required: the key-encryption key that seals SA state in etcd (64 hex digits, mode 600; openssl rand -hex 32), the same on every node and never in etcd`,
				`f.yaml:1: cluster.etcd: required: the etcd cluster, e.g. etcd: {endpoints: [https://10.0.0.1:2379], cacert: ca.pem, cert: node.pem, key: node.key}`}},
		{"cluster placement", "cluster:\n  name: vpn\n  node: 3\n  key_file: k\n  placement: bytes\n  etcd: {endpoints: [http://10.0.0.1:2379]}\n" + none,
			[]string{`f.yaml:5: cluster.placement: "bytes": balancing by traffic is not built yet; use ike_sas, child_sas or none`}},
		{"cluster etcd", "cluster:\n  name: vpn\n  node: 300\n  key_file: k\n  etcd:\n    endpoints: [10.0.0.1:2379, https://10.0.0.2:2379]\n    cert: c.pem\n" + none,
			[]string{`f.yaml:3: cluster.node: 300 is out of range; use 1 to 255`,
				`f.yaml:5: cluster.etcd.key: cert and key go together: the client certificate etcd checks and its private key`,
				`f.yaml:5: cluster.etcd.cacert: required with https endpoints: the CA that issued the etcd members' certificates`,
				`f.yaml:6: cluster.etcd.endpoints[0]: "10.0.0.1:2379": an etcd endpoint is a URL, e.g. https://10.0.0.1:2379`}},
		{"radius server without a secret", `radius: {servers: {r: {address: 10.0.0.5}}}
connections:
  c:
    local: {auth: psk, id: "@a"}
    remote: {auth: eap}
    psk: secret
`, []string{`f.yaml:1: radius.servers.r.secret: required: the shared secret of this NAS and the server (0x... for hex, 0s... for base64)`}},
		{"remote eap_id", `radius: {servers: {r: {address: 10.0.0.5, secret: s}}}
connections:
  c:
    local: {auth: psk, id: "@a"}
    remote: {auth: eap, eap_id: "%any"}
    psk: secret
`, []string{`f.yaml:5: connections.c.remote.eap_id: "%any": ask has the gateway ask the identity, ike takes the IKE identity as the EAP identity; use ask or ike`}},
		{"eap keys with psk", `connections:
  c:
    local: {auth: psk, id: "@a", password: pw}
    remote: {auth: psk}
    psk: secret
`, []string{`f.yaml:3: connections.c.local.password: only for local.auth eap, eap-mschapv2, eap-md5 or eap-tls`}},
		{"auth other", `connections:
  c:
    local: {auth: psk, id: "@a"}
    remote: {auth: password}
    psk: secret
`, []string{`f.yaml:4: connections.c.remote.auth: "password" is not an authentication method; use psk, pubkey, eap, eap-radius or eap-only`}},
		{"dpd_action", base + "    dpd_action: hold\n",
			[]string{`f.yaml:6: connections.c.dpd_action: "hold": a child with start_action trap keeps its trap after DPD clears its SAs; use clear, restart or none`}},
		{"connection trap", base + "    start_action: trap\n",
			[]string{`f.yaml:6: connections.c.start_action: "trap": trap is set per child: children.NAME.start_action trap; use none or start`}},
		{"start_action", base + "    start_action: always\n",
			[]string{`f.yaml:6: connections.c.start_action: "always" is not a start action; use none or start`}},
		{"child start_action", base + "    children:\n      net: {start_action: always}\n",
			[]string{`f.yaml:7: connections.c.children.net.start_action: "always" is not a start action; use start, none or trap`}},
		{"trap without a peer", base + "    children:\n      net: {start_action: trap}\n",
			[]string{`f.yaml:7: connections.c.children.net.start_action: trap needs a peer to initiate to when traffic comes: give its IP address first in remote_addrs (%any cannot be initiated to)`}},
		{"trap to %any", base + "    remote_addrs: \"%any\"\n    children:\n      net:\n        remote_ts: 10.2.0.0/24\n        start_action: trap\n",
			[]string{`f.yaml:10: connections.c.children.net.start_action: trap needs a peer to initiate to when traffic comes: give its IP address first in remote_addrs (%any cannot be initiated to)`}},
		{"trap without a data plane", "data_plane: none\n" + base + "    remote_addrs: 192.0.2.1\n    children:\n      net: {start_action: trap}\n",
			[]string{`f.yaml:9: connections.c.children.net.start_action: trap needs a data plane to see the traffic that triggers it: data_plane is none`}},
		{"start without a peer", base + "    start_action: start\n",
			[]string{`f.yaml:6: connections.c.start_action: start needs a peer to contact: give its IP address first in remote_addrs`}},
		{"start to %any4", base + "    remote_addrs: \"%any4, 192.0.2.1\"\n    start_action: start\n",
			[]string{`f.yaml:7: connections.c.start_action: start needs a peer to contact: give its IP address first in remote_addrs`}},
		{"child key on the connection", base + "    remote_ts: 10.0.0.0/8\n",
			[]string{`f.yaml:6: connections.c.remote_ts: this key belongs to a child: children: {NAME: {...}}`}},
		{"IKE proposals on a child", base + "    children:\n      n: {proposals: default}\n",
			[]string{`f.yaml:7: connections.c.children.n.proposals: a child's proposals are esp_proposals; proposals are the connection's, for the IKE SA`}},
		{"unique keep", base + "    unique: keep\n",
			[]string{`f.yaml:6: connections.c.unique: "keep": not supported; use replace or no`}},
		{"signature_auth", base + "    signature_auth: rfc7428\n",
			[]string{`f.yaml:6: connections.c.signature_auth: "rfc7428" is not a signature scheme; use rfc7427 or classic`}},
		{"prefer", base + "    prefer: remote\n",
			[]string{`f.yaml:6: connections.c.prefer: "remote" is not a preference; use local or peer`}},
		{"ike_window", base + "    ike_window: 0\n",
			[]string{`f.yaml:6: connections.c.ike_window: 0 is out of range; use 1 to 64`}},
		{"fragment_size", base + "    fragment_size: 500\n",
			[]string{`f.yaml:6: connections.c.fragment_size: the largest IP datagram of an IKE fragment: at least 576 (every IPv4 path carries that), or 0 for 576 on IPv4 and 1280 on IPv6`}},
		{"boolean", base + "    mobike: maybe\n",
			[]string{`f.yaml:6: connections.c.mobike: "maybe" is not a boolean; use yes or no`}},
		{"log level", "log: {level: verbose}\n" + none,
			[]string{`f.yaml:1: log.level: "verbose" is not a log level; use debug, info, warn or error`}},
		{"log format", "log:\n  format: xml\n" + none,
			[]string{`f.yaml:2: log.format: "xml" is not a log format; use text or json`}},
		{"data plane", "data_plane: dpdk\n" + none,
			[]string{`f.yaml:1: data_plane: "dpdk" is not a data plane; use none, userspace, kernel or auto`}},

		// Authentication.
		{"psk auth without psk", "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n",
			[]string{`f.yaml:2: connections.c.psk: required because local.auth is psk; give the shared secret (0x... for hex, 0s... for base64)`}},
		{"empty psk", "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: \"\"\n",
			[]string{`f.yaml:5: connections.c.psk: empty; give the shared secret (0x... for hex, 0s... for base64)`}},
		{"bad hex psk", "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: 0xnothex\n",
			[]string{`f.yaml:5: connections.c.psk: the text after 0x is not hexadecimal`}},
		{"pubkey without certs or key", "connections:\n  c:\n    local:\n      auth: pubkey\n    remote: {auth: psk}\n    psk: secret\n", []string{
			`f.yaml:3: connections.c.local.certs: required for pubkey authentication: our certificate file (PEM) (or set auth: psk to use the psk)`,
			`f.yaml:3: connections.c.local.key: required for pubkey authentication: the private key file (PEM) of the certificate (or set auth: psk to use the psk)`,
		}},
		{"remote pubkey without cacerts", "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote:\n      id: \"@b\"\n    psk: secret\n",
			[]string{`f.yaml:4: connections.c.remote.cacerts: required for pubkey authentication: the CA certificate file (PEM) that issued the peer's certificate (or set auth: psk to use the psk)`}},
		{"no sections at all", "connections:\n  c: {}\n", []string{
			`f.yaml:2: connections.c.local.certs: required for pubkey authentication: our certificate file (PEM)`,
			`f.yaml:2: connections.c.local.key: required for pubkey authentication: the private key file (PEM) of the certificate`,
			`f.yaml:2: connections.c.remote.cacerts: required for pubkey authentication: the CA certificate file (PEM) that issued the peer's certificate`,
		}},
		{"psk without local id", "connections:\n  c:\n    local: {auth: psk}\n    remote: {auth: psk}\n    psk: secret\n",
			[]string{`f.yaml:3: connections.c.local.id: required with psk authentication; give e.g. @vpn.example.org, an email address or an IP address`}},
		{"local id any", "connections:\n  c:\n    local: {auth: psk, id: \"%any\"}\n    remote: {auth: psk}\n    psk: secret\n",
			[]string{`f.yaml:3: connections.c.local.id: our own identity cannot be %any; give e.g. @vpn.example.org, an email address or an IP address`}},
		{"bad id", "connections:\n  c:\n    local: {auth: psk, id: \"CN=\"}\n    remote: {auth: psk}\n    psk: secret\n",
			[]string{`f.yaml:3: connections.c.local.id: identity "CN=" is not a distinguished name…`}},
		{"duplicate section", base + "    remote: {certs: x}\n",
			[]string{`f.yaml:6: connections.c.remote: duplicate key; it is already set on line 4`}},
		{"pinning hint", "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk, certs: peer.crt}\n    psk: secret\n",
			[]string{`f.yaml:4: connections.c.remote.certs: pinning the peer's certificate is not supported; trust its CA with remote.cacerts`}},

		// Numbers, durations and sizes.
		{"bad duration", base + "    rekey_time: 4 hours\n",
			[]string{`f.yaml:6: connections.c.rekey_time: "4 hours" is not a duration; write e.g. 90s, 30m, 4h, 1h30m, 1d or a number of seconds`}},
		{"negative duration", base + "    dpd_delay: -30s\n",
			[]string{`f.yaml:6: connections.c.dpd_delay: "-30s" must not be negative`}},
		{"bad size", base + "    children:\n      net: {rekey_bytes: 5 MB}\n",
			[]string{`f.yaml:7: connections.c.children.net.rekey_bytes: "5 MB" is not a byte count; write e.g. 1000000, 500K, 500M or 2G (powers of 1024)`}},
		{"negative size", base + "    children:\n      net: {life_bytes: -1}\n",
			[]string{`f.yaml:7: connections.c.children.net.life_bytes: "-1" must not be negative`}},
		{"negative number", base + "    clone: {max_ike_sas: -2}\n",
			[]string{`f.yaml:6: connections.c.clone.max_ike_sas: "-2" must not be negative`}},
		// RFC 5685 redirect.
		{"redirect to a name", base + "    redirect: {to: gw2.example.org}\n",
			[]string{`f.yaml:6: connections.c.redirect.to: "gw2.example.org": DNS names are not supported yet; give an IP address`}},
		{"redirect to a subnet", base + "    redirect: {to: 192.0.2.0/24}\n",
			[]string{`f.yaml:6: connections.c.redirect.to: "192.0.2.0/24": subnets and ranges are not supported; give single IP addresses`}},
		{"redirect to any", base + "    redirect: {to: 0.0.0.0}\n",
			[]string{`f.yaml:6: connections.c.redirect.to: 0.0.0.0 is no gateway's address; give the unicast address peers should use instead of this gateway`}},
		{"redirect to multicast", base + "    redirect: {to: \"ff02::1\"}\n",
			[]string{`f.yaml:6: connections.c.redirect.to: ff02::1 is no gateway's address; give the unicast address peers should use instead of this gateway`}},
		{"redirect to a list", base + "    redirect: {to: [192.0.2.7, 192.0.2.8]}\n",
			[]string{`f.yaml:6: connections.c.redirect.to: want a single value, not a list`}},
		{"redirect to ourselves", base + "    local_addrs: [192.0.2.1]\n    redirect:\n      to: 192.0.2.1\n",
			[]string{`f.yaml:8: connections.c.redirect.to: 192.0.2.1 is this connection's own address (in local_addrs): redirecting peers to ourselves is a loop (RFC 5685 §7)`}},
		{"redirect follow not a boolean", base + "    redirect: {follow: sometimes}\n",
			[]string{`f.yaml:6: connections.c.redirect.follow: "sometimes" is not…`}},
		{"redirect unknown key", base + "    redirect: {too: 192.0.2.7}\n",
			[]string{`f.yaml:6: connections.c.redirect.too: unknown key; did you mean to?`}},
		{"zero clones", base + "    clone: {max_ike_sas: 0}\n",
			[]string{`f.yaml:6: connections.c.clone.max_ike_sas: 0 is out of range; use 1 to 1024`}},
		{"interfaces without use", base + "    remote_addrs: [192.0.2.1]\n    interfaces: {mode: failover}\n",
			[]string{`f.yaml:7: connections.c.interfaces.use: list the interfaces the VPNs may use, most preferred first (names or patterns such as wlan*)`}},
		{"interfaces bad mode", base + "    remote_addrs: [192.0.2.1]\n    interfaces: {mode: all, use: [eth0]}\n",
			[]string{`f.yaml:7: connections.c.interfaces.mode: "all" is not an interface mode; use per-interface or failover`}},
		{"interfaces unknown child", base + "    remote_addrs: [192.0.2.1]\n    interfaces: {use: [eth0], children: [nope]}\n",
			[]string{`f.yaml:7: connections.c.interfaces.children[0]: no child "nope" in this connection`}},
		{"interfaces need a gateway", base + "    interfaces: {use: [\"wlan[\"]}\n",
			[]string{`f.yaml:6: connections.c.interfaces.use[0]: "wlan[" is not an interface name or pattern`,
				`f.yaml:6: connections.c.interfaces.use: the interface manager dials out: give the gateway's address first in remote_addrs`}},
		{"not a number", "retransmit: {tries: many}\n" + none,
			[]string{`f.yaml:1: retransmit.tries: "many" is not a whole number`}},
		{"retransmit base", "retransmit: {base: 0.5}\n" + none,
			[]string{`f.yaml:1: retransmit.base: 0.5 would shorten each wait; use 1 (constant) or more, strongSwan uses 1.8`}},
		{"retransmit too long", "retransmit:\n  tries: 20\n" + none,
			[]string{`f.yaml:1: retransmit: the last retransmission would wait 6 days; lower tries or base so each wait stays within a day`}},
		{"port out of range", base + "    remote_port: 70000\n",
			[]string{`f.yaml:6: connections.c.remote_port: 70000 is out of range; use 1 to 65535`}},
		{"port zero", "port: 0\n" + none,
			[]string{`f.yaml:1: port: 0 is out of range; use 1 to 65535`}},
		{"same ports", "port: 4500\n" + none,
			[]string{`f.yaml:1: port_nat_t: 4500 is also port; NAT-T needs a port of its own`}},
		{"life before rekey", base + "    children:\n      net: {rekey_time: 1h, life_time: 30m}\n",
			[]string{`f.yaml:7: connections.c.children.net.life_time: 30m0s must be longer than rekey_time (1h0m0s), or the SA expires before it is rekeyed`}},
		{"child rand too long", base + "    children:\n      net: {rekey_time: 10m, rand_time: 10m}\n",
			[]string{`f.yaml:7: connections.c.children.net.rand_time: 10m0s must be shorter than rekey_time (10m0s): it is subtracted from it`}},
		{"ike rand too long", base + "    rekey_time: 1h\n    rand_time: 2h\n",
			[]string{`f.yaml:7: connections.c.rand_time: 2h0m0s must be shorter than rekey_time and reauth_time (1h0m0s): it is subtracted from them`}},
		{"life bytes before rekey", base + "    children:\n      net: {rekey_bytes: 1G, life_bytes: 1G}\n",
			[]string{`f.yaml:7: connections.c.children.net.life_bytes: 1073741824 must be more than rekey_bytes (1073741824), or the SA expires before it is rekeyed`}},

		// Daemon sections.
		{"control mode too open", "control: {mode: \"0666\"}\n" + none,
			[]string{`f.yaml:1: control.mode: 0666 lets every local user control the daemon; set group and use 0660`}},
		{"control mode not octal", "control:\n  mode: rw-rw----\n" + none,
			[]string{`f.yaml:2: control.mode: "rw-rw----" is not a file mode; write it in octal such as "0660"`}},
		{"relative socket", "control: {socket: mifike.sock}\n" + none,
			[]string{`f.yaml:1: control.socket: "mifike.sock" is not an absolute path; the CLI must find it from anywhere`}},
		{"metrics listen", "metrics: {listen: 9847}\n" + none,
			[]string{`f.yaml:1: metrics.listen: "9847": want host:port such as 127.0.0.1:9847`}},
		{"metrics host name", "metrics: {listen: \"metrics.example.org:9847\"}\n" + none,
			[]string{`f.yaml:1: metrics.listen: "metrics.example.org:9847": give an IP address or localhost as the host`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseErrors(t, tc.src)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if p, ok := strings.CutSuffix(w, "…"); ok {
					if !strings.HasPrefix(got[i], p) {
						t.Errorf("error %d:\n got %s\nwant %s", i, got[i], w)
					}
				} else if got[i] != w {
					t.Errorf("error %d:\n got %s\nwant %s", i, got[i], w)
				}
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	_, err := Parse("f.yaml", []byte(base+"    mobike: perhaps\n"), "")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	want := Error{File: "f.yaml", Line: 6, Field: "connections.c.mobike", Msg: `"perhaps" is not a boolean; use yes or no`}
	if *e != want {
		t.Errorf("got %+v, want %+v", *e, want)
	}
	if (&Error{File: "f", Line: 2, Msg: "m"}).Error() != "f:2: m" {
		t.Error("an Error without a field must not print an empty field")
	}
}

func TestSuggest(t *testing.T) {
	keys := connSchema.keys
	for in, want := range map[string]string{
		"lcoal_addrs":  "local_addrs",
		"local-addrs":  "local_addrs",
		"Remote_Addrs": "remote_addrs",
		"esp_proposal": "", // a child key is not a connection key
		"proposal":     "proposals",
		"rekeytime":    "rekey_time",
		"mobikes":      "mobike",
		"xyz":          "",
		"dpd":          "",
	} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
	if d := levenshtein("kitten", "sitting"); d != 3 {
		t.Errorf("levenshtein = %d, want 3", d)
	}
}

// Every error of a file comes back at once, in line order, whatever order
// they were found in (pools are read before connections).
func TestMultipleErrors(t *testing.T) {
	src := `connections:
  c:
    lcoal_addrs: 10.0.0.1
    local: {auth: psk, id: "@a"}
    remote: {auth: psk}
    psk: secret
    children:
      net: {mode: tunel, rekey_time: soon}
log: {level: loud}
pools:
  p: {addrs: nope}
`
	got := parseErrors(t, src)
	want := []string{
		`f.yaml:3: connections.c.lcoal_addrs: unknown key; did you mean local_addrs?`,
		`f.yaml:8: connections.c.children.net.mode: "tunel" is not a mode; use tunnel or transport`,
		`f.yaml:8: connections.c.children.net.rekey_time: "soon" is not a duration; write e.g. 90s, 30m, 4h, 1h30m, 1d or a number of seconds`,
		`f.yaml:9: log.level: "loud" is not a log level; use debug, info, warn or error`,
		`f.yaml:11: pools.p.addrs: "nope" is not a prefix such as 10.99.0.0/24`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("f.yaml", []byte(base+"    children:\n      net:\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Log != (LogConfig{Level: "info", Format: "text"}) || c.Log.SlogLevel().String() != "INFO" {
		t.Errorf("log = %+v", c.Log)
	}
	if c.Control != (ControlConfig{Socket: DefaultSocket, Mode: 0o600}) {
		t.Errorf("control = %+v", c.Control)
	}
	if c.Metrics.Listen != "" || c.KeyLog.Dir != "" || c.DataPlane != "auto" || c.TUN != (TUNConfig{Name: "mifike0", MTU: 1400}) || c.Retransmit != (ike.Retransmit{}) {
		t.Errorf("metrics %+v keylog %+v data_plane %q retransmit %+v", c.Metrics, c.KeyLog, c.DataPlane, c.Retransmit)
	}
	if !reflect.DeepEqual(c.Listen, []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}) || c.IKEPort != 500 || c.NATTPort != 4500 {
		t.Errorf("listen %v ports %d %d", c.Listen, c.IKEPort, c.NATTPort)
	}
	cc := c.Connections[0]
	if cc.Redirect != (RedirectConfig{}) {
		t.Errorf("RFC 5685 redirect %+v, want followed, no gateway to send peers to", cc.Redirect)
	}
	if !cc.Fragmentation || cc.FragmentSize != 0 {
		t.Errorf("RFC 7383 fragmentation %v size %d, want on with the RFC's sizes", cc.Fragmentation, cc.FragmentSize)
	}
	defIKE, _ := proposal.ParseIKEList(proposal.DefaultIKE)
	defESP, _ := proposal.ParseESPList(proposal.DefaultESP)
	if cc.Name != "c" || cc.Line != 2 || cc.LocalAddrs != nil || cc.RemoteAddrs != nil || cc.RemotePort != 500 {
		t.Errorf("conn %+v", cc)
	}
	if !reflect.DeepEqual(cc.IKE, defIKE) || !cc.MOBIKE || cc.Encap || cc.Clone != (CloneConfig{MaxIKESAs: 8}) {
		t.Errorf("ike %v mobike %v encap %v clone %+v", cc.IKE, cc.MOBIKE, cc.Encap, cc.Clone)
	}
	if cc.RekeyTime != 4*time.Hour || cc.ReauthTime != 0 || cc.OverTime != 24*time.Minute || cc.RandTime != 24*time.Minute || cc.DPDDelay != 0 {
		t.Errorf("times %v %v %v %v %v", cc.RekeyTime, cc.ReauthTime, cc.OverTime, cc.RandTime, cc.DPDDelay)
	}
	if cc.DPDAction != "clear" || cc.StartAction != "none" || !cc.SendInitialContact || cc.ClassicSignatures || cc.RSAPSS || cc.PreferPeerProposals {
		t.Errorf("flags %+v", cc)
	}
	if string(cc.PSK) != "secret" || cc.Remote.ID != "" || cc.Remote.Auth != "psk" {
		t.Errorf("psk %q remote %+v", cc.PSK, cc.Remote)
	}
	ch := cc.Children[0]
	if ch.Name != "net" || ch.Line != 7 || !reflect.DeepEqual(ch.LocalTS, []string{"dynamic"}) || !reflect.DeepEqual(ch.RemoteTS, []string{"dynamic"}) {
		t.Errorf("child %+v", ch)
	}
	if !reflect.DeepEqual(ch.ESP, defESP) || ch.Mode != ike.Tunnel || ch.RekeyTime != time.Hour || ch.LifeTime != 0 || ch.RandTime != 6*time.Minute {
		t.Errorf("child %+v", ch)
	}
	if ch.RekeyBytes != 0 || ch.LifeBytes != 0 || ch.StartAction != "start" {
		t.Errorf("child %+v", ch)
	}

	// Over and rand follow the longer soft time; rand follows life-rekey.
	c, err = Parse("f.yaml", []byte(base+"    reauth_time: 10h\n    children:\n      n: {rekey_time: 1h, life_time: 90m, rekey_bytes: 1000}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if cc := c.Connections[0]; cc.OverTime != time.Hour || cc.RandTime != time.Hour {
		t.Errorf("over %v rand %v, want 1h (10%% of reauth_time)", cc.OverTime, cc.RandTime)
	}
	if ch := c.Connections[0].Children[0]; ch.RandTime != 30*time.Minute || ch.LifeBytes != 1100 {
		t.Errorf("child rand %v life_bytes %d, want 30m and 1100", ch.RandTime, ch.LifeBytes)
	}

	// A group opens the socket to it.
	c, err = Parse("f.yaml", []byte("control: {group: vpn}\n"+none), "")
	if err != nil || c.Control.Mode != 0o660 {
		t.Errorf("group mode: %v %v", c.Control.Mode, err)
	}
	// A daemon without connections says so.
	if c, err := Parse("f.yaml", []byte(none), ""); err != nil || len(c.Connections) != 0 {
		t.Errorf("connections: {}: %v", err)
	}
}

// A file that defines no connections would delete every SA on a reload:
// an editor's truncated write (empty, or cut before the connections
// section) must be refused with the file and line, and what to write to
// mean "no connections". Only connections: {} written out means that.
func TestNoConnectionsMustBeExplicit(t *testing.T) {
	const (
		empty = `f.yaml:1: the file is empty (nothing but blanks and comments): was it truncated? A configuration without connections must say so: connections: {}`
		miss  = `f.yaml:1: connections: missing: the file defines no connections (was it truncated?); a configuration without connections must say so: connections: {}`
	)
	null := func(line int) string {
		return fmt.Sprintf("f.yaml:%d: connections: empty: no connections follow (was the file truncated?); a configuration without connections must say so: connections: {}", line)
	}
	for _, tc := range []struct {
		name, src string
		want      []string // nil: valid
	}{
		{"empty", "", []string{empty}},
		{"blank lines", "\n\n  \n\t\n", []string{empty}},
		{"comments", "# mifike\n\n  # connections:\n", []string{empty}},
		{"CRLF blanks", "\r\n\r\n", []string{empty}},
		{"document marker", "---\n# nothing\n", []string{empty}},
		{"null document", "~\n", []string{empty}},
		{"cut before connections", "log: {level: info}\npools:\n  rw: {addrs: 10.99.0.0/24}\n", []string{miss}},
		{"only extensions", "x-defaults: &d {mobike: no}\n", []string{miss}},
		{"cut after the key", "log: {level: info}\nconnections:\n", []string{null(2)}},
		{"every connection commented out", "connections:\n#  home:\n#    psk: x\n", []string{null(1)}},
		{"null connections", "connections: ~\n", []string{null(1)}},
		{"explicit none", "connections: {}\n", nil},
		{"explicit none with settings", "# a gateway being set up\nlog: {level: debug}\nconnections: {}  # none yet\n", nil},
		{"other errors are reported too", "log: {level: loud}\n", []string{miss,
			`f.yaml:1: log.level: "loud" is not a log level; use debug, info, warn or error`}},
		{"a misspelt key", "connection: {}\n", []string{
			`f.yaml:1: connection: unknown key; did you mean connections?`, miss}},
		{"whitespace and a byte order mark", "\ufeff \n\t\n", []string{empty}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("f.yaml", []byte(tc.src), "")
			if tc.want == nil {
				if err != nil || len(c.Connections) != 0 {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if got := parseErrors(t, tc.src); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestParseFull(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("full.yaml", data, "/etc/mifike")
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "debug" || c.Log.Format != "json" || c.Log.SlogLevel().String() != "DEBUG" {
		t.Errorf("log %+v", c.Log)
	}
	if c.Control != (ControlConfig{Socket: "/tmp/mifike-test.sock", Group: "wheel", Mode: 0o640}) {
		t.Errorf("control %+v", c.Control)
	}
	if c.Metrics.Listen != "127.0.0.1:9847" || c.KeyLog.Dir != "/etc/mifike/keys" || c.DataPlane != "userspace" {
		t.Errorf("metrics %+v keylog %+v dataplane %s", c.Metrics, c.KeyLog, c.DataPlane)
	}
	if c.IKEPort != 1500 || c.NATTPort != 14500 || len(c.Listen) != 2 || c.Listen[1] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("ports %d %d listen %v", c.IKEPort, c.NATTPort, c.Listen)
	}
	if c.Retransmit != (ike.Retransmit{Timeout: 2 * time.Second, Base: 1.8, Tries: 3}) {
		t.Errorf("retransmit %+v", c.Retransmit)
	}
	if len(c.Pools) != 2 || c.Pools[1].Name != "v6" || c.Pools[1].Addrs != netip.MustParsePrefix("fd00:99::/64") ||
		!reflect.DeepEqual(c.Pools[0].DNS, []netip.Addr{netip.MustParseAddr("10.20.0.53"), netip.MustParseAddr("10.20.0.54")}) || c.Pools[0].Line != 13 {
		t.Errorf("pools %+v %+v", c.Pools[0], c.Pools[1])
	}
	site := c.Connections[0]
	if site.Name != "site" || site.Line != 16 || site.RemotePort != 4501 || len(site.RemoteAddrs) != 2 || len(site.IKE) != 2 {
		t.Errorf("site %+v", site)
	}
	if string(site.PSK) != "\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff" {
		t.Errorf("psk %x", site.PSK)
	}
	if site.MOBIKE || !site.Encap || site.Clone != (CloneConfig{Enable: true, MaxIKESAs: 3, MaxChildSAs: 12, Draft00: true}) || len(site.VIPs) != 2 {
		t.Errorf("site flags %+v", site)
	}
	if site.RekeyTime != 2*time.Hour || site.ReauthTime != 12*time.Hour || site.OverTime != 5*time.Minute || site.RandTime != 10*time.Minute || site.DPDDelay != 45*time.Second {
		t.Errorf("site times %+v", site)
	}
	if site.DPDAction != "restart" || site.StartAction != "start" || site.SendInitialContact || !site.ClassicSignatures || !site.RSAPSS || !site.PreferPeerProposals {
		t.Errorf("site flags %+v", site)
	}
	lan := site.Children[0]
	if !reflect.DeepEqual(lan.LocalTS, []string{"10.20.0.0/24", "192.0.2.1[udp/500]"}) || lan.Mode != ike.Transport || lan.StartAction != "none" {
		t.Errorf("lan %+v", lan)
	}
	if lan.RekeyTime != 30*time.Minute || lan.LifeTime != 40*time.Minute || lan.RandTime != 10*time.Minute || lan.RekeyBytes != 500<<20 || lan.LifeBytes != 1<<30 {
		t.Errorf("lan %+v", lan)
	}
	rw := c.Connections[1]
	if rw.Local.Auth != "pubkey" || rw.Local.ID != "" || !reflect.DeepEqual(rw.Local.Certs, []string{"/etc/mifike/certs/chain.crt"}) ||
		rw.Local.Key != "/etc/mifike/private/gw.key" || !reflect.DeepEqual(rw.Remote.CACerts, []string{"/etc/mifike/certs/ca.crt"}) {
		t.Errorf("rw auth %+v %+v", rw.Local, rw.Remote)
	}
	if !reflect.DeepEqual(rw.Pools, []string{"v4", "v6"}) || len(rw.Children) != 1 || rw.Children[0].RemoteTS[0] != "dynamic" {
		t.Errorf("rw %+v", rw)
	}
}

func TestMergeKeys(t *testing.T) {
	src := `x-defaults: &d
  local: {auth: psk, id: "@gw"}
  remote: {auth: psk}
  psk: shared
  dpd_delay: 30s
x-more: &m
  mobike: no
  dpd_delay: 99s
connections:
  a:
    <<: [*d, *m]
    dpd_delay: 10s
  b:
    <<: *d
`
	c, err := Parse("f.yaml", []byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Connections[0], c.Connections[1]
	if a.DPDDelay != 10*time.Second || a.MOBIKE || string(a.PSK) != "shared" || a.Local.ID != "@gw" {
		t.Errorf("a: dpd %v mobike %v psk %q id %q", a.DPDDelay, a.MOBIKE, a.PSK, a.Local.ID)
	}
	if b.DPDDelay != 30*time.Second || !b.MOBIKE {
		t.Errorf("b: dpd %v mobike %v", b.DPDDelay, b.MOBIKE)
	}
	// Merged values keep the line where they are written.
	got := parseErrors(t, "x-d: &d\n  mobike: sometimes\nconnections:\n  a:\n    <<: *d\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: s\n")
	want := []string{`f.yaml:2: connections.a.mobike: "sometimes" is not a boolean; use yes or no`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Merges of merges are expanded once per mapping, not once per use: this
// file would otherwise take 12^7 steps.
func TestMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-0: &m0 {mobike: yes}\n")
	for i := 1; i <= 7; i++ {
		fmt.Fprintf(&b, "x-%d: &m%d\n  <<: [%s]\n", i, i, strings.Repeat(fmt.Sprintf("*m%d, ", i-1), 11)+fmt.Sprintf("*m%d", i-1))
	}
	b.WriteString(base + "    <<: *m7\n")
	start := time.Now()
	if _, err := Parse("f.yaml", []byte(b.String()), ""); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	got := parseErrors(t, base+"  d: &d\n    <<: *d\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: s\n")
	want := `f.yaml:6: connections.d: this mapping merges itself (<<)`
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLists(t *testing.T) {
	// swanctl's comma-separated strings and YAML lists are the same.
	src := base + `    remote_addrs: "192.0.2.1, 2001:db8::1"
    local_addrs: [192.0.2.9, "%any6"]
    proposals: aes128gcm16-prfsha256-x25519, default
    children:
      a: {remote_ts: "10.0.0.0/8,10.1.0.0/16", local_ts: [10.9.0.0/16]}
`
	c, err := Parse("f.yaml", []byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Connections[0]
	if len(cc.RemoteAddrs) != 2 || cc.RemoteAddrs[1] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("remote_addrs %v", cc.RemoteAddrs)
	}
	if len(cc.LocalAddrs) != 2 || cc.LocalAddrs[1] != netip.IPv6Unspecified() {
		t.Errorf("local_addrs %v", cc.LocalAddrs)
	}
	if def, _ := proposal.ParseIKEList(proposal.DefaultIKE); len(cc.IKE) != 1+len(def) {
		t.Errorf("%d proposals", len(cc.IKE))
	}
	if ch := cc.Children[0]; !reflect.DeepEqual(ch.RemoteTS, []string{"10.0.0.0/8", "10.1.0.0/16"}) || !reflect.DeepEqual(ch.LocalTS, []string{"10.9.0.0/16"}) {
		t.Errorf("ts %v %v", ch.LocalTS, ch.RemoteTS)
	}
	// %any among addresses means any address.
	c, err = Parse("f.yaml", []byte(base+"    remote_addrs: 192.0.2.1, %any\n"), "")
	if err != nil || c.Connections[0].RemoteAddrs != nil {
		t.Errorf("%%any: %v %v", c.Connections[0].RemoteAddrs, err)
	}
}

func TestPSKEncodings(t *testing.T) {
	for in, want := range map[string]string{
		`"0x616263"`: "abc",
		`0sYWJj`:     "abc",
		`"p4ss: #1"`: "p4ss: #1",
		`12345`:      "12345",
	} {
		c, err := Parse("f.yaml", []byte("connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: "+in+"\n"), "")
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := string(c.Connections[0].PSK); got != want {
			t.Errorf("psk %s = %q, want %q", in, got, want)
		}
	}
	// The secret never shows up in a message.
	got := parseErrors(t, "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: 0sTOPSECRET!\n")
	if len(got) != 1 || strings.Contains(got[0], "TOPSECRET") {
		t.Errorf("errors %q", got)
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"4h", 4 * time.Hour, ""},
		{"30m", 30 * time.Minute, ""},
		{"90s", 90 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"3600", time.Hour, ""},
		{" 0 ", 0, ""},
		{"2d", 48 * time.Hour, ""},
		{"-1", 0, `"-1" must not be negative`},
		{"-5m", 0, `"-5m" must not be negative`},
		{"5 m", 0, `"5 m" is not a duration; write e.g. 90s, 30m, 4h, 1h30m, 1d or a number of seconds`},
		{"1.5", 0, `"1.5" is not a duration; write e.g. 90s, 30m, 4h, 1h30m, 1d or a number of seconds`},
		{"", 0, `"" is not a duration; write e.g. 90s, 30m, 4h, 1h30m, 1d or a number of seconds`},
		{"99999999999999999999", 0, `"99999999999999999999" is not a duration; write e.g. 90s, 30m, 4h, 1h30m, 1d or a number of seconds`},
		{"9999999999999", 0, `"9999999999999" is too long`},
		{"999999d", 0, `"999999d" is too long`},
		{"999999999h", 0, `"999999999h" is too long`},
	} {
		got, err := parseDuration(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("parseDuration(%q) error = %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  string
	}{
		{"1000000", 1000000, ""},
		{"500K", 500 << 10, ""},
		{"500k", 500 << 10, ""},
		{"500M", 500 << 20, ""},
		{"1G", 1 << 30, ""},
		{"2T", 2 << 40, ""},
		{"0", 0, ""},
		{"18446744073709551615", 1<<64 - 1, ""},
		{"18446744073709551616", 0, `"18446744073709551616" is too large`},
		{"16777216T", 0, `"16777216T" is too large`},
		{"-1K", 0, `"-1K" must not be negative`},
		{"1.5G", 0, `"1.5G" is not a byte count; write e.g. 1000000, 500K, 500M or 2G (powers of 1024)`},
		{"500MB", 0, `"500MB" is not a byte count; write e.g. 1000000, 500K, 500M or 2G (powers of 1024)`},
		{"G", 0, `"G" is not a byte count; write e.g. 1000000, 500K, 500M or 2G (powers of 1024)`},
		{"", 0, `"" is not a byte count; write e.g. 1000000, 500K, 500M or 2G (powers of 1024)`},
	} {
		got, err := parseSize(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("parseSize(%q) error = %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mifike.yaml")
	if err := os.WriteFile(path, []byte("keylog: {dir: keys}\n"+none), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != path || c.KeyLog.Dir != filepath.Join(dir, "keys") {
		t.Errorf("file %q keylog %q", c.File, c.KeyLog.Dir)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("log: {level: x}\n"+none), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":1: log.level: ") {
		t.Errorf("error does not name the file: %v", err)
	}
}

// A child with start_action trap is accepted with a peer to initiate to,
// and is not brought up with its IKE SA: its traffic brings it up.
func TestTrapAccepted(t *testing.T) {
	c, err := Parse("f.yaml", []byte(base+"    remote_addrs: 192.0.2.1\n    children:\n"+
		"      onDemand: {remote_ts: 10.2.0.0/24, start_action: trap}\n      always: {remote_ts: 10.3.0.0/24}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Connections[0].Children[0].StartAction; got != "trap" {
		t.Fatalf("start_action %q, want trap", got)
	}
	conns, _, err := c.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if ch := conns[0].Children; ch[0].Start || !ch[1].Start {
		t.Errorf("Start: trap child %v, start child %v; want false, true", ch[0].Start, ch[1].Start)
	}
}

// The kernel data plane traps too (XFRM trap policies and
// XFRM_MSG_ACQUIRE), so data_plane: kernel takes start_action trap; only
// data_plane: none, which sees no traffic, refuses it.
func TestTrapKernelDataPlane(t *testing.T) {
	for _, plane := range []string{"kernel", "userspace", "auto"} {
		_, err := Parse("f.yaml", []byte("data_plane: "+plane+"\n"+base+"    remote_addrs: 192.0.2.1\n    children:\n      net: {remote_ts: 10.2.0.0/24, start_action: trap}\n"), "")
		if err != nil {
			t.Errorf("data_plane %s with a trap: %v", plane, err)
		}
	}
}
