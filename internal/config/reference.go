package config

import (
	"fmt"
	"strings"
)

//go:generate go run ./genref -o ../../docs/config-reference.md

// The configuration reference: one entry for every key a schema of
// parse.go (and dos.go) accepts, with its type, default, allowed values,
// an example and what it does. docs/config-reference.md is generated from
// it (ReferenceMarkdown, go generate), and the tests fail when a schema
// gains a key this table does not document, when the file is stale, when
// an example does not parse, or when a literal default is not what Parse
// does without the key.

// keyDoc documents one key.
type keyDoc struct {
	Type string
	// Default is the value Parse takes without the key, as it would be
	// written in the file (the tests parse it and compare); DefaultNote
	// describes a default that cannot be written so ("required", "10% of
	// rekey_time", "the engine's 6s"). One of them, or neither for "none".
	Default, DefaultNote string
	// Values are the allowed values or range, when narrower than Type.
	Values string
	// Example is a value as written after "key: " in the file.
	Example string
	Doc     string
}

// refSection is one mapping of the file and the schema Parse reads it
// with. Path is the dotted path errors use, with <name> where the user
// names an entry (connections.<name>).
type refSection struct {
	Path   string
	Schema *schema
	Doc    string
	Keys   map[string]keyDoc
}

const (
	tDuration = "duration"
	tBool     = "boolean"
	tInt      = "integer"
	tString   = "string"
	tAddrs    = "list of IP addresses"
	tFile     = "file name"
	tFiles    = "list of file names"
	tSection  = "mapping"
	tSecret   = "secret"
)

// reference lists the sections in the order the document presents them.
var reference = []refSection{
	{Path: "", Schema: &topSchema,
		Doc: "The top level of the file. Keys starting with `x-` are ignored, so they can hold YAML anchors that connections merge with `<<`.",
		Keys: map[string]keyDoc{
			"log":     {Type: tSection, Example: "{level: debug}", Doc: "Logging; see [log](#log)."},
			"control": {Type: tSection, Example: "{group: vpnadmin}", Doc: "The control socket the `mifike` CLI talks to; see [control](#control)."},
			"metrics": {Type: tSection, Example: "{listen: 127.0.0.1:9847}", Doc: "The Prometheus endpoint; see [metrics](#metrics)."},
			"keylog":  {Type: tSection, Example: "{dir: /var/lib/mifike/keys}", Doc: "Writes every SA's keys for Wireshark; see [keylog](#keylog)."},
			"listen": {Type: tAddrs, Default: `[0.0.0.0, "::"]`, Example: "[192.0.2.1, 2001:db8::1]",
				Doc: "The addresses the IKE sockets bind to, each on `port` and `port_nat_t`. At least one; `0.0.0.0` and `::` bind to every address of their family. A gateway that announces its addresses with MOBIKE announces these."},
			"port":       {Type: tInt, Default: "500", Values: "1 to 65535", Example: "500", Doc: "The IKE port (RFC 7296 §2)."},
			"port_nat_t": {Type: tInt, Default: "4500", Values: "1 to 65535, not `port`", Example: "4500", Doc: "The NAT-T port: IKE after a NAT is found or with MOBIKE, and ESP in UDP (RFC 3948). An initiator floats to this same port number on its peer."},
			"tcp_ports": {Type: "list of ports", Values: "1 to 65535, each once", Example: "[4500, 443]",
				Doc: "TCP ports on which a gateway accepts IKE and ESP in TCP (RFC 9329), on every listen address; RFC 9329 wants 4500 among them. None by default: a listening TCP port is the operator's choice. See docs/hostile-paths.md."},
			"data_plane": {Type: tString, Default: "auto", Values: "`auto`, `kernel`, `userspace`, `none`", Example: "userspace",
				Doc: "Where ESP is carried. `kernel`: the kernel's XFRM (the daemon refuses to start when the kernel cannot). `userspace`: mifike's own ESP over the TUN device `tun`. `auto`: the kernel when it can carry ESP, else userspace, and the log says why. `none`: SAs are negotiated but carry no traffic. See docs/kernel-backend.md."},
			"tun":            {Type: tSection, Example: "{name: mifike0, mtu: 1400}", Doc: "The userspace data plane's TUN device; see [tun](#tun)."},
			"retransmit":     {Type: tSection, Example: "{timeout: 2s}", Doc: "When unanswered requests are sent again; see [retransmit](#retransmit)."},
			"dos_protection": {Type: tSection, Example: "{cookie_threshold: 100}", Doc: "Limits on half-open IKE SAs, cookies and puzzles; see [dos_protection](#dos_protection). Always in force with its defaults."},
			"radius":         {Type: tSection, Example: "{servers: {a: {address: 10.0.0.5, secret: \"...\"}}}", Doc: "The RADIUS servers a gateway passes EAP to; see [radius](#radius). Required when a connection has `remote.auth: eap`."},
			"cluster":        {Type: tSection, Example: "{name: vpn, node: 1, key_file: kek, etcd: {endpoints: [\"http://10.0.0.1:2379\"]}}", Doc: "This gateway as a node of a cluster; see [cluster](#cluster) and docs/cluster.md."},
			"mptcp":          {Type: tSection, Example: "{enable: yes}", Doc: "MPTCP over the interface manager's VPNs: one subflow through each; see [mptcp](#mptcp) and docs/multipath.md. Off by default."},
			"pools":          {Type: "mapping of names to pools", Example: "{rw: {addrs: 10.99.0.0/24}}", Doc: "Pools of inner addresses a gateway hands out; see [pools.&lt;name&gt;](#poolsname). Pools must not overlap; list one pool in several connections to share it."},
			"connections": {Type: "mapping of names to connections", DefaultNote: "required", Example: "{}",
				Doc: "The connections; see [connections.&lt;name&gt;](#connectionsname). A file must have this key with something under it: an empty file, or one without connections, is refused (a truncated file must not delete every SA on a reload); a configuration without connections says so with `connections: {}`. Names are letters, digits, `-`, `_` and `.`."},
		}},
	{Path: "log", Schema: &logSchema, Doc: "Logging. `mifike loglevel` changes the level until the next reload or restart.",
		Keys: map[string]keyDoc{
			"level":  {Type: tString, Default: "info", Values: "`debug`, `info`, `warn`, `error`", Example: "debug", Doc: "The lowest level logged. A reload applies a new level."},
			"format": {Type: tString, Default: "text", Values: "`text`, `json`", Example: "json", Doc: "`text` (key=value) or `json` (one object per line). A new format needs a restart."},
		}},
	{Path: "control", Schema: &controlSchema, Doc: "The Unix socket the `mifike` CLI talks to (`-s PATH` or MIFIKE_SOCKET tell the CLI another one).",
		Keys: map[string]keyDoc{
			"socket": {Type: "absolute file name", Default: DefaultSocket, Example: "/run/mifike/office.sock", Doc: "The socket's path."},
			"group": {Type: tString, Example: "vpnadmin",
				Doc: "A group whose members may use the socket too; the mode becomes 0660. Warned about when this machine lacks the group: the daemon does not start until it exists."},
			"mode": {Type: "octal file mode", Default: `"0600"`, DefaultNote: "0660 with group", Values: "octal; the owner (root) reads and writes, others get nothing: 0600, 0640, 0660", Example: `"0660"`,
				Doc: "The socket file's mode. Others may never use it: every user able to write to it controls the daemon."},
		}},
	{Path: "metrics", Schema: &metricsSchema, Doc: "The Prometheus endpoint (docs/metrics.md lists the metrics).",
		Keys: map[string]keyDoc{
			"listen": {Type: "host:port", Example: "127.0.0.1:9847",
				Doc: "Where `/metrics` is served, over plain HTTP without authentication: keep it local. The host is an IP address, `localhost` or empty (every address). Off when absent."},
		}},
	{Path: "keylog", Schema: &keylogSchema, Doc: "Key logs for Wireshark. WARNING: anyone who can read them can decrypt all recorded traffic; enable only to debug, on a test system.",
		Keys: map[string]keyDoc{
			"dir": {Type: tFile, Example: "/var/lib/mifike/keys",
				Doc: "A directory that receives `ikev2_decryption_table` and `esp_sa`, the files strongSwan's save-keys plugin writes, with every IKE and ESP key. Off when absent."},
		}},
	{Path: "tun", Schema: &tunSchema, Doc: "The TUN device of the userspace data plane.",
		Keys: map[string]keyDoc{
			"name": {Type: tString, Default: "mifike0", Values: "1 to 15 characters, no `/`, `%` or spaces", Example: "vpn0", Doc: "The device's name."},
			"mtu":  {Type: tInt, Default: "1400", Values: "576 to 9000", Example: "1380", Doc: "The device's MTU: the largest inner packet before ESP."},
		}},
	{Path: "retransmit", Schema: &retransmitSchema,
		Doc: "When a request is sent again (strongSwan's charon.retransmit_*). Without the section the engine uses the same defaults. Each wait is timeout·base^n, and the last one must stay within a day.",
		Keys: map[string]keyDoc{
			"timeout": {Type: tDuration, Default: "4s", Values: "more than 0", Example: "2s", Doc: "The first wait for an answer."},
			"base":    {Type: "number", Default: "1.8", Values: "1 or more", Example: "1.5", Doc: "Each wait is this many times the one before."},
			"tries":   {Type: tInt, Default: "5", Values: "0 to 100", Example: "3", Doc: "Retransmissions before the peer is taken for dead (after one more wait): about 165 s with the defaults."},
		}},
	{Path: "dos_protection", Schema: &dosSchema,
		Doc: "What unauthenticated peers can make a responder keep between IKE_SA_INIT and IKE_AUTH (RFC 7296 §2.6, RFC 8019); docs/dos-protection.md explains how the limits work together. A reload cannot change them: they need a restart.",
		Keys: map[string]keyDoc{
			"half_open_timeout":      {Type: tDuration, Default: "30s", Values: "2s to 1h", Example: "20s", Doc: "A half-open IKE SA without IKE_AUTH by then is dropped."},
			"max_half_open":          {Type: tInt, Default: "5000", Values: "1 to 10000000", Example: "20000", Doc: "Half-open IKE SAs in all (strongSwan's init_limit_half_open); beyond it requests are dropped."},
			"cookie_threshold":       {Type: tInt, Default: "10", Values: "1 to max_half_open", Example: "50", Doc: "From this many half-open SAs on, every request returns a COOKIE first (charon.cookie_threshold)."},
			"half_open_per_source":   {Type: tInt, Default: "5", Values: "0 (no limit) to 10000000", Example: "10", Doc: "Half-open SAs made with a returned COOKIE from one address (strongSwan's block_threshold); a source at the limit gets nothing."},
			"half_open_per_prefix":   {Type: tInt, Default: "50", Values: "0 (no limit) to 10000000", Example: "200", Doc: "The same per /prefix_v4 or /prefix_v6 (RFC 8019 §4.2). Raise it for many users behind one NAT."},
			"prefix_v4":              {Type: tInt, Default: "24", Values: "8 to 32", Example: "22", Doc: "The IPv4 prefix length half_open_per_prefix counts by."},
			"prefix_v6":              {Type: tInt, Default: "64", Values: "16 to 128", Example: "56", Doc: "The IPv6 prefix length half_open_per_prefix counts by."},
			"cookie_secret_lifetime": {Type: tDuration, Default: "60s", Values: "10s to 24h", Example: "5m", Doc: "A new COOKIE secret this often (RFC 7296 §2.6)."},
			"cookie_grace":           {Type: tDuration, Default: "10s", Values: "1s to cookie_secret_lifetime", Example: "30s", Doc: "Cookies made with the previous secret still count this long."},
			"puzzle_difficulty":      {Type: tInt, Default: "0", Values: "0 (off) or 8 to 24", Example: "16", Doc: "RFC 8019 puzzles: from puzzle_threshold half-open SAs on, every new one needs a puzzle of this many bits solved. Off by default: initiators that cannot solve puzzles (strongSwan's, for one) are refused meanwhile."},
			"puzzle_threshold":       {Type: tInt, Default: "2500", DefaultNote: "half of max_half_open", Values: "1 to max_half_open", Example: "1000", Doc: "How many half-open SAs make puzzles required."},
			"puzzle_max_difficulty":  {Type: tInt, Default: "18", Values: "0 (never solve one) to 24", Example: "20", Doc: "As initiator: the hardest puzzle a gateway may give us that we solve."},
		}},
	{Path: "radius", Schema: &radiusSchema, Doc: "The RADIUS servers a gateway passes EAP authentications to (remote.auth `eap`, as strongSwan's eap-radius plugin), and accounting (RFC 2866). See docs/eap-radius.md.",
		Keys: map[string]keyDoc{
			"servers":          {Type: "mapping of names to servers", DefaultNote: "required", Example: "{primary: {address: 10.0.0.5, secret: \"0sbG9uZyByYW5kb20gc2hhcmVkIHNlY3JldA==\"}}", Doc: "At least one server; see [radius.servers.&lt;name&gt;](#radiusserversname). The first that answers is used, in file order."},
			"nas_identifier":   {Type: tString, Default: "mifike", Values: "1 to 253 characters", Example: "vpn1.example.org", Doc: "NAS-Identifier in every request."},
			"timeout":          {Type: tDuration, Default: "2s", Values: "100ms to 60s", Example: "3s", Doc: "The first retransmission timeout to a server, doubling."},
			"tries":            {Type: tInt, Default: "3", Values: "1 to 10", Example: "2", Doc: "How often a request goes to one server before the next is tried."},
			"accounting":       {Type: tBool, Default: "yes", Example: "no", Doc: "Send Accounting Start, Interim-Update and Stop for every authentication, clones included (RFC 7791 §8)."},
			"interim_interval": {Type: tDuration, Default: "0", Values: "0 to 24h", Example: "10m", Doc: "How often Interim-Updates go when the server names no Acct-Interim-Interval; 0: only when it does."},
		}},
	{Path: "radius.servers.<name>", Schema: &radiusServerSchema, Doc: "One RADIUS server.",
		Keys: map[string]keyDoc{
			"address":   {Type: tString, DefaultNote: "required", Example: "10.0.0.5", Doc: "The server's address or host name."},
			"secret":    {Type: tSecret, DefaultNote: "required", Example: `"0sbG9uZyByYW5kb20gc2hhcmVkIHNlY3JldA=="`, Doc: "The secret this NAS shares with the server: `0x` hex, `0s` base64, else the text. Warned about when the file is readable by every user."},
			"auth_port": {Type: tInt, Default: "1812", Values: "1 to 65535", Example: "1645", Doc: "The authentication port."},
			"acct_port": {Type: tInt, Default: "1813", Values: "1 to 65535", Example: "1646", Doc: "The accounting port."},
		}},
	{Path: "cluster", Schema: &clusterSchema, Doc: "This gateway as one node of a cluster whose state is in etcd (docs/cluster.md).",
		Keys: map[string]keyDoc{
			"name": {Type: tString, DefaultNote: "required", Values: "letters, digits, `-` and `_`; no slashes", Example: "vpn", Doc: "The cluster's name, the same on every node."},
			"node": {Type: tInt, DefaultNote: "required", Values: "1 to 255, different on every node", Example: "1", Doc: "This node's ID: the first octet of the SPIs it chooses."},
			"addrs": {Type: tAddrs, DefaultNote: "the specific listen addresses; required when listen has only 0.0.0.0 and ::", Example: "[192.0.2.11]",
				Doc: "The node's own IKE addresses, which it publishes to the other nodes: clients are redirected to them."},
			"etcd":      {Type: tSection, DefaultNote: "required", Example: "{endpoints: [\"https://10.0.0.1:2379\"], cacert: ca.pem}", Doc: "The etcd cluster; see [cluster.etcd](#clusteretcd)."},
			"key_file":  {Type: tFile, DefaultNote: "required", Example: "/etc/mifike/cluster.kek", Doc: "The key-encryption key that seals SA state in etcd: 64 hex digits (`openssl rand -hex 32`), the same on every node, never in etcd. Mode 600, or mifike warns."},
			"lease":     {Type: tDuration, Default: "2s", Values: "1s to 1m", Example: "5s", Doc: "How long a node that stopped renewing is still taken for alive."},
			"placement": {Type: tString, Default: "ike_sas", Values: "`ike_sas`, `child_sas`, `none`", Example: "child_sas", Doc: "How new clones spread over the live nodes: balancing IKE SAs, Child SAs, or not at all (`mifike cluster move` still hands them over)."},
			"redirect":  {Type: tBool, Default: "yes", Example: "no", Doc: "Send new clients that support it to the least loaded node at IKE_SA_INIT (RFC 5685)."},
		}},
	{Path: "cluster.etcd", Schema: &etcdSchema, Doc: "The etcd cluster that holds the cluster's state.",
		Keys: map[string]keyDoc{
			"endpoints": {Type: "list of URLs", DefaultNote: "required", Example: "[\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\"]", Doc: "The etcd members' client URLs (`http://` or `https://`)."},
			"cacert":    {Type: tFile, DefaultNote: "required with https endpoints", Example: "ca.pem", Doc: "The CA that issued the etcd members' certificates."},
			"cert":      {Type: tFile, Example: "node.pem", Doc: "The client certificate etcd checks; goes with key."},
			"key":       {Type: tFile, Example: "node.key", Doc: "The client certificate's private key; goes with cert. Mode 600, or mifike warns."},
		}},
	{Path: "mptcp", Schema: &mptcpSchema, Doc: "MPTCP (RFC 8684) over the VPNs of the interface manager (docs/multipath.md): the daemon keeps a Linux MPTCP endpoint (`ip mptcp endpoint`, flag `subflow`) for the inner address of every VPN of a `per-interface` connection, so an application's MPTCP connection gets one subflow through each VPN, and goes on over the others when one fails. Endpoints follow the VPNs as they come, move and go; `interfaces.multipath` says which interfaces are `active`, `backup` or `off`. Needs the userspace data plane and an inner address per VPN (vips, clone.own_vips).",
		Keys: map[string]keyDoc{
			"enable": {Type: tBool, Default: "no", Example: "yes", Doc: "Keep MPTCP endpoints for the VPNs' inner addresses (the daemon removes them when it stops). Without it mifike leaves the kernel's MPTCP settings alone."},
			"subflows": {Type: tInt, Default: "8", Values: "0 to 8", Example: "4",
				Doc: "The namespace's limit on extra subflows per MPTCP connection (`ip mptcp limits set subflow N`), set at start: at least the number of VPNs less one."},
			"add_addr_accepted": {Type: tInt, DefaultNote: "left as the kernel has it", Values: "0 to 8", Example: "0",
				Doc: "The namespace's limit on the server's announced addresses (ADD_ADDR) a connection uses (`ip mptcp limits set add_addr_accepted N`), set at start."},
		}},
	{Path: "pools.<name>", Schema: &poolSchema, Doc: "A pool of inner addresses (RFC 7296 §2.19) that connections list in their `pools`. No address is handed out twice, whatever the pools.",
		Keys: map[string]keyDoc{
			"addrs": {Type: "IP prefix", DefaultNote: "required", Values: "/30 or shorter (IPv6: /126 or shorter); no ranges", Example: "10.99.0.0/24",
				Doc: "The pool's prefix. For IPv4 the network address, the first host (the gateway's inner address) and the broadcast address are not handed out."},
			"dns": {Type: tAddrs, Example: "[10.20.0.53]", Doc: "DNS servers sent with the address (INTERNAL_IP4_DNS, INTERNAL_IP6_DNS)."},
		}},
	{Path: "connections.<name>", Schema: &connSchema,
		Doc: "One connection: the IKE SA's peers, authentication and options. An end user's connection names the gateway in `remote_addrs`; a gateway's accepts whoever authenticates.",
		Keys: map[string]keyDoc{
			"local_addrs":  {Type: tAddrs, Default: `"%any"`, Values: "IP addresses, `%any`, `%any4`, `%any6`", Example: "[192.0.2.10]", Doc: "Our addresses for this connection; `%any` is any (the route to the peer picks one). No subnets, ranges or DNS names."},
			"remote_addrs": {Type: tAddrs, Default: `"%any"`, Values: "IP addresses, `%any`, `%any4`, `%any6`", Example: "203.0.113.10", Doc: "The peer's addresses. An initiator (start_action `start`, or an interfaces section) dials the first, which must be an IP address: DNS names are not supported yet."},
			"remote_port":  {Type: tInt, Default: "500", Values: "1 to 65535", Example: "500", Doc: "The peer's IKE port when we initiate."},
			"local":        {Type: tSection, Example: "{auth: psk, id: \"@laptop.example.org\"}", Doc: "How we authenticate; see [connections.&lt;name&gt;.local](#connectionsnamelocal)."},
			"remote":       {Type: tSection, Example: "{auth: pubkey, cacerts: [ca.crt]}", Doc: "How the peer must authenticate; see [connections.&lt;name&gt;.remote](#connectionsnameremote)."},
			"psk": {Type: tSecret, DefaultNote: "required when local.auth or remote.auth is psk", Example: `"0sog9DNIqpVLE4mlB1iGxjtwPQMKg4kJViIDKKHASyk4U="`,
				Doc: "The pre-shared key: `0x` hex, `0s` base64, else the text itself; quote it. Under 20 octets is warned about (RFC 7296 §2.15: a recorded IKE_AUTH lets anyone guess a weak key offline); `openssl rand -base64 32` makes a good one. Warned about when the file is readable by every user."},
			"proposals": {Type: "list of IKE proposals", Default: "default", Example: "aes256gcm16-prfsha384-ecp384",
				Doc: "IKE SA algorithms in strongSwan's syntax, most preferred first; `default` is aes128gcm16-prfsha256-x25519-ecp256-modp2048, aes256gcm16-prfsha384-ecp384, aes128-sha256-x25519-ecp256-modp2048."},
			"mobike":             {Type: tBool, Default: "yes", Example: "no", Doc: "MOBIKE (RFC 4555): the initiator moves the SAs when its addresses change. The interface manager needs it."},
			"ike_window":         {Type: tInt, DefaultNote: "4, or the number of children + 1 when that is more", Values: "1 to 64", Example: "1", Doc: "How many of the peer's requests we keep state for (SET_WINDOW_SIZE, RFC 7296 §2.3); 1 does not overlap requests. A clone asks for all its Child SAs and its move at once, so the default holds them all."},
			"return_routability": {Type: tBool, Default: "no", Example: "yes", Doc: "As responder, check a peer's new address (COOKIE2) before moving the Child SAs there (RFC 4555 §3.7); off by default, as strongSwan, since it costs each move a round trip."},
			"nat_traversal":      {Type: tBool, Default: "yes", Example: "no", Doc: "NAT detection and UDP encapsulation (RFC 7296 §2.23). With `no`, MOBIKE sends NO_NATS_ALLOWED (RFC 4555 §3.9)."},
			"encap":              {Type: tBool, Default: "no", Example: "yes", Doc: "Always encapsulate ESP in UDP on port_nat_t, NAT or not; needs nat_traversal."},
			"tcp": {Type: tString, Default: "never", Values: "`never`, `fallback`, `always`", Example: "fallback",
				Doc: "As initiator, IKE and ESP in TCP (RFC 9329): `fallback` tries UDP first for tcp_fallback_after, `always` starts in TCP. The gateway needs tcp_ports. See docs/hostile-paths.md."},
			"tcp_port":           {Type: tInt, DefaultNote: "4500", Values: "1 to 65535; only with tcp fallback or always", Example: "443", Doc: "The gateway's TCP port."},
			"tcp_fallback_after": {Type: tDuration, DefaultNote: "6s", Values: "1s to 10m; only with tcp fallback", Example: "10s", Doc: "How long UDP is tried before TCP (it must have been retransmitted at least once, RFC 9329 §5.1)."},
			"fragmentation":      {Type: tBool, Default: "yes", Example: "no", Doc: "IKE fragmentation (RFC 7383): large messages (certificates) pass paths that drop IP fragments."},
			"fragment_size":      {Type: tInt, Default: "0", Values: "0, or 576 to 65535", Example: "1280", Doc: "The largest IP datagram of an IKE fragment; 0 takes 576 octets on IPv4 and 1280 on IPv6 (RFC 7383 §2.5.1)."},
			"childless":          {Type: tBool, Default: "yes", Example: "no", Doc: "IKE_AUTH without a Child SA (RFC 6023), offered and accepted."},
			"redirect":           {Type: tSection, Example: "{follow: no}", Doc: "Gateway redirection (RFC 5685); see [connections.&lt;name&gt;.redirect](#connectionsnameredirect)."},
			"clone":              {Type: tSection, Example: "{enable: yes}", Doc: "Cloning IKE SAs (RFC 7791); see [connections.&lt;name&gt;.clone](#connectionsnameclone)."},
			"interfaces":         {Type: tSection, Example: "{use: [eth*, wl*, ww*]}", Doc: "Hands the connection to the interface manager, which dials it on the end user's interfaces; see [connections.&lt;name&gt;.interfaces](#connectionsnameinterfaces)."},
			"vips": {Type: tAddrs, Values: "`0.0.0.0` and `::` only", Example: "[0.0.0.0, \"::\"]",
				Doc: "Ask the peer for an inner address of each family (RFC 7296 §2.19); a specific address cannot be asked for."},
			"pools":           {Type: "list of pool names", Example: "[roadwarriors]", Doc: "Pools (top-level `pools`) whose addresses the gateway hands to peers that ask."},
			"rekey_time":      {Type: tDuration, Default: "4h", Example: "8h", Doc: "The IKE SA is rekeyed after this; 0 never."},
			"reauth_time":     {Type: tDuration, Default: "0", Example: "24h", Doc: "The IKE SA is authenticated anew after this (RFC 7296 §2.8.3); 0 never."},
			"over_time":       {Type: tDuration, DefaultNote: "10% of the longer of rekey_time and reauth_time", Example: "30m", Doc: "How long an IKE SA lives after rekey_time or reauth_time before it is deleted."},
			"rand_time":       {Type: tDuration, DefaultNote: "10% of the longer of rekey_time and reauth_time", Values: "shorter than rekey_time and reauth_time", Example: "10m", Doc: "Up to this much is subtracted at random from rekey_time and reauth_time, so the two peers do not rekey at once."},
			"dpd_delay":       {Type: tDuration, Default: "0", Example: "30s", Doc: "Liveness check (an empty INFORMATIONAL) after this long without a message from the peer; 0 none."},
			"liveness_window": {Type: tDuration, Default: "0", Example: "300ms", Doc: "Liveness check as soon as ESP went out this long (or 4 round trips, if longer) with nothing received from the peer's path (RFC 7296 §2.4); its probes are repeated every 3 round trips (at least 40 ms), and after 12 unanswered ones the path is judged dead and the MOBIKE initiator moves to another (RFC 4555 §3.5). For an end user with several interfaces; 0 none."},
			"dpd_action":      {Type: tString, Default: "clear", Values: "`clear`, `restart`, `none`", Example: "restart", Doc: "When the peer does not answer: delete its SAs (`clear`); delete them and initiate the connection again if we initiated it (`restart`); `none` behaves as `clear` (the dead SA is deleted either way)."},
			"start_action": {Type: tString, Default: "none", Values: "`none`, `start`", Example: "start",
				Doc: "`start` initiates the connection when the daemon starts or the connection is loaded; it needs the peer's address first in remote_addrs. A connection with an interfaces section is started by the interface manager instead."},
			"unique":         {Type: tString, Default: "replace", Values: "`replace`, `no`", Example: "no", Doc: "`replace` sends INITIAL_CONTACT in our first IKE_AUTH with a peer, so that it deletes what it still holds of ours (RFC 7296 §2.4). A responder always honours the INITIAL_CONTACT it receives."},
			"signature_auth": {Type: tString, Default: "rfc7427", Values: "`rfc7427`, `classic`", Example: "classic", Doc: "Certificate signatures by RFC 7427 digital signature authentication, or the classic RSA and ECDSA methods of RFC 7296 §3.8."},
			"rsa_pss":        {Type: tBool, Default: "no", Example: "yes", Doc: "Sign with RSASSA-PSS when our key is RSA (RFC 7427)."},
			"prefer":         {Type: tString, Default: "local", Values: "`local`, `peer`", Example: "peer", Doc: "As responder, whose order of proposals wins: ours or the initiator's."},
			"children":       {Type: "mapping of names to Child SAs", Example: "{net: {remote_ts: 10.20.0.0/24}}", Doc: "The Child SAs; see [connections.&lt;name&gt;.children.&lt;name&gt;](#connectionsnamechildrenname)."},
		}},
	{Path: "connections.<name>.local", Schema: &localSchema, Doc: "How we authenticate. Relative file names are relative to the configuration file.",
		Keys: map[string]keyDoc{
			"auth": {Type: tString, Default: "pubkey", Values: "`psk`, `pubkey`, `eap`, `eap-mschapv2`, `eap-md5`, `eap-tls`, `eap-only`", Example: "psk",
				Doc: "`psk`: the connection's psk. `pubkey`: a certificate and its key. The `eap` methods make us the EAP peer (the end user): `eap` any method our credentials allow, or one method. `eap-only` is the gateway's side of EAP-only authentication (RFC 5998): it proves itself by the EAP method's key alone."},
			"id": {Type: "identity", DefaultNote: "with pubkey: our certificate's subject; else required", Values: "`@fqdn`, `user@domain`, an IP address, a distinguished name (`CN=gw, O=example`), `@#hex` (key ID)", Example: `"@vpn.example.org"`,
				Doc: "Our IKE identity. With a certificate it must be its subject or one of its subjectAltNames (`@vpn.example.org` matches DNS:vpn.example.org)."},
			"certs": {Type: tFiles, DefaultNote: "required with pubkey and eap-tls", Example: "[certs/gateway.crt]", Doc: "Our certificate (PEM), then any intermediate CA certificates to send."},
			"key":   {Type: tFile, DefaultNote: "required with certs", Example: "private/gateway.key", Doc: "The certificate's private key: PEM, unencrypted. Mode 600, or mifike warns."},
			"eap_id": {Type: tString, DefaultNote: "our id without its @", Example: "alice",
				Doc: "Our EAP identity (local EAP methods only)."},
			"password":      {Type: tSecret, DefaultNote: "required for eap-mschapv2 and eap-md5, unless password_file", Example: `"correct horse battery staple"`, Doc: "Our EAP password. Warned about when the file is readable by every user; password_file keeps it out of this file."},
			"password_file": {Type: tFile, Example: "eap-password", Doc: "A file whose first line is the EAP password, read when the configuration is loaded. Not with password. Mode 600, or mifike warns."},
			"eap_cacerts":   {Type: tFiles, DefaultNote: "remote.cacerts", Example: "[certs/radius-ca.crt]", Doc: "EAP-TLS: the CAs that issued the EAP server's certificate."},
			"aaa_id":        {Type: tString, DefaultNote: "remote.id without its @", Example: "radius.example.org", Doc: "EAP-TLS: the name the EAP server's certificate must carry."},
		}},
	{Path: "connections.<name>.remote", Schema: &remoteSchema, Doc: "How the peer must authenticate.",
		Keys: map[string]keyDoc{
			"auth": {Type: tString, Default: "pubkey", Values: "`psk`, `pubkey`, `eap` (or `eap-radius`), `eap-only`", Example: "psk",
				Doc: "`psk` or `pubkey` as for local. `eap`: the peer authenticates by EAP through the radius section's servers (we are the gateway). `eap-only`: the end user's side of EAP-only authentication (RFC 5998), the gateway proving itself by the EAP key alone."},
			"id": {Type: "identity", DefaultNote: "`%any`", Values: "as local.id, or `%any`", Example: `"@laptop.example.org"`,
				Doc: "The identity the peer must have; `%any` accepts any that authenticates. With pubkey it must be in the peer's certificate."},
			"cacerts": {Type: tFiles, DefaultNote: "required with pubkey", Example: "[certs/ca.crt]", Doc: "The CA certificates (PEM) the peer's certificate must chain to; their hashes go in our CERTREQ."},
			"eap_id":  {Type: tString, Default: "ask", Values: "`ask`, `ike` (only with auth eap)", Example: "ike", Doc: "`ask` asks the EAP identity; `ike` takes the IKE identity as it and saves a round trip."},
			"revocation": {Type: tString, Default: "none", Values: "`none`, `relaxed`, `ifuri`, `strict`", Example: "strict",
				Doc: "Checking the peer's certificates (and intermediates) for revocation by CRL and OCSP, as strongSwan's: `strict` wants each status known good; `ifuri` fails when a certificate names a CRL or OCSP URI (or ocsp_uri is set) and its status could not be had; `relaxed` fails only on a revoked certificate; `none` checks nothing. Statuses are fetched by the daemon and cached (CRLs until nextUpdate); a status not cached yet is unknown for that attempt (see [docs/revocation.md](revocation.md))."},
			"crls":     {Type: tFiles, Example: "[crls/ca.crl]", Doc: "CRL files (PEM or DER), each used for the certificates of the CA that signed it; they are checked before anything is fetched. Only with revocation."},
			"ocsp_uri": {Type: "URL", Example: `"http://ocsp.example.org"`, Doc: "The OCSP responder to ask instead of the one in each certificate's Authority Information Access. Only with revocation."},
		}},
	{Path: "connections.<name>.redirect", Schema: &redirectSchema, Doc: "Gateway redirection (RFC 5685).",
		Keys: map[string]keyDoc{
			"to": {Type: "IP address", Example: "192.0.2.20",
				Doc: "Sends every peer that takes redirects to this gateway in IKE_SA_INIT, keeping no state (§3): for a gateway being drained. Peers that do not take redirects are served here. Not our own address."},
			"follow": {Type: tBool, Default: "yes", Example: "no", Doc: "As initiator, announce REDIRECT_SUPPORTED and follow a gateway's redirects."},
		}},
	{Path: "connections.<name>.clone", Schema: &cloneSchema, Doc: "Cloning IKE SAs (RFC 7791): several IKE SAs of one authentication, e.g. one per interface. Both ends must enable it.",
		Keys: map[string]keyDoc{
			"enable":        {Type: tBool, Default: "no", Example: "yes", Doc: "Announce and accept CLONE_IKE_SA_SUPPORTED; `mifike clone` and the interface manager clone only when both ends do."},
			"max_ike_sas":   {Type: tInt, Default: "8", Values: "1 to 1024", Example: "4", Doc: "As responder, IKE SAs per authenticated peer (its clone family); one more clone is refused with NO_ADDITIONAL_SAS (§5.3)."},
			"max_child_sas": {Type: tInt, Default: "0", Values: "0 (no cap) to 65536", Example: "16", Doc: "Child SAs per peer over all its IKE SAs (§8)."},
			"draft00":       {Type: tBool, Default: "no", Example: "yes", Doc: "Also speak draft-mglt-ipsecme-clone-ike-sa-00, for peers that announce support in an INFORMATIONAL."},
			"own_vips":      {Type: tBool, Default: "no", Example: "yes", Doc: "Each clone asks for an inner address of its own (RFC 7791 App. A.3); without it clones share the first one's."},
		}},
	{Path: "connections.<name>.interfaces", Schema: &ifacesSchema, Doc: "The interface manager (docs/multi-interface.md): the connection is dialled on the end user's interfaces and kept there as they come and go. It needs the gateway's address first in remote_addrs, and starts the connection itself.",
		Keys: map[string]keyDoc{
			"mode": {Type: tString, Default: "per-interface", Values: "`per-interface`, `failover`", Example: "failover",
				Doc: "`per-interface`: a VPN on every usable interface, the first authenticated, the others clones (or, without clone.enable, one authentication each). `failover`: one VPN, on the most preferred usable interface."},
			"use": {Type: "list of interface names or patterns", DefaultNote: "required", Example: "[eth*, wl*, ww*]",
				Doc: "The interfaces the VPNs may use, most preferred first, as names or shell patterns. An interface is usable when it is up, has carrier and an address of the gateway's family."},
			"on_down":       {Type: tString, Default: "move", Values: "`move`, `delete`", Example: "delete", Doc: "A VPN whose interface goes moves to the best other one (its inner address stays), or is deleted."},
			"on_return":     {Type: tString, Default: "move-back", Values: "`move-back`, `new`", Example: "new", Doc: "When the interface returns its VPN moves back, or it gets a new clone."},
			"children":      {Type: "list of child names", DefaultNote: "all of the connection's", Example: "[office-net]", Doc: "The Child SAs made on every clone."},
			"gateway_addrs": {Type: tString, Default: "one", Values: "`one`, `all`", Example: "all", Doc: "`all` keeps a VPN on every pair of interface and gateway address the gateway announced (RFC 7791 figures 2 and 3)."},
			"tcp": {Type: "mapping of interface patterns to never, fallback or always", Example: "{ww*: always}",
				Doc: "The connection's tcp for VPNs on the interfaces that match, the first match winning (RFC 9329)."},
			"multipath": {Type: "mapping of interface patterns to active, backup or off", DefaultNote: "every interface active", Example: "{eth*: active, wwan*: backup}",
				Doc: "With the top-level mptcp enabled: the MPTCP role of a VPN's inner address by the interface the VPN is on now, the first match winning, an interface no pattern matches `active`. `active` subflows carry traffic together; `backup` ones (endpoint flag `backup`, a metered link) carry it only when no active one is left; `off` has no endpoint. A VPN that moves takes the role of its new interface. See docs/multipath.md."},
			"spread": {Type: "mapping of interface patterns to weights (0 to 100)", DefaultNote: "off: a flow rides the VPN of its source address", Example: "{eth*: 3, wlan*: 2, wwan*: 0}",
				Doc: "Flow spreading for traffic that is not MPTCP: each new connection from a VPN's inner address through the TUN device is given one VPN by a hash of its addresses and ports weighted by these numbers (the daemon's nftables table `mifike_spread` translates its source to that VPN's inner address; conntrack keeps it for the flow's life, so a flow never changes SA). A VPN's weight is that of the interface it is on now, the first match winning, 1 where no pattern matches; 0: no new flows. `{}` weighs every VPN 1. Needs `nft`, the userspace data plane and an inner address per VPN. See docs/multipath.md, \"Flow spreading\"."},
			"spread_measured": {Type: tBool, Default: "yes", Example: "no",
				Doc: "With spread: each VPN's weight is multiplied by a factor from its path's round trip and loss as its IKE SA measures them (`mifike list-sas`), 1 for the best path, down to 1/16, after TCP's throughput ∝ 1/(RTT·√loss); equal paths keep the weights' ratios, weight 0 stays 0, and the rules change only when a factor moves by 25 % or more. `no`: the weights alone."},
			"spread_probe": {Type: tDuration, Default: "10s", Values: "0, or 100ms to 1h", Example: "30s",
				Doc: "With spread and spread_measured: an empty INFORMATIONAL on a VPN that sent no IKE request for this long, so that busy paths (which need no liveness check) are measured too; under a hundred bytes each way. 0: only the exchanges there are anyway."},
		}},
	{Path: "connections.<name>.children.<name>", Schema: &childSchema, Doc: "One Child SA: what traffic it carries and for how long its keys live.",
		Keys: map[string]keyDoc{
			"local_ts":      {Type: "list of traffic selectors", Default: "dynamic", Example: "[10.20.0.0/24]", Doc: "Our side's traffic: prefixes, optionally with `[protocol/port]`; `dynamic` is our inner address, else our IKE address (alone, not in a list with others)."},
			"remote_ts":     {Type: "list of traffic selectors", Default: "dynamic", Example: "[10.20.0.0/24, \"fd00:20::/64\"]", Doc: "The peer's traffic, as local_ts; `dynamic` is the peer's inner address, else its IKE address."},
			"esp_proposals": {Type: "list of ESP proposals", Default: "default", Example: "aes256gcm16-x25519", Doc: "ESP algorithms in strongSwan's syntax; `default` is aes128gcm16, aes256gcm16, chacha20poly1305, aes128-sha256. A DH group gives PFS on rekeys."},
			"mode":          {Type: tString, Default: "tunnel", Values: "`tunnel`, `transport`", Example: "transport", Doc: "ESP tunnel or transport mode."},
			"rekey_time":    {Type: tDuration, Default: "1h", Example: "30m", Doc: "The Child SA is rekeyed after this; 0 never."},
			"life_time":     {Type: tDuration, DefaultNote: "110% of rekey_time", Values: "longer than rekey_time", Example: "75m", Doc: "The Child SA is deleted after this if it was not rekeyed."},
			"rand_time":     {Type: tDuration, DefaultNote: "life_time minus rekey_time, else 10% of rekey_time", Values: "shorter than rekey_time", Example: "5m", Doc: "Up to this much is subtracted at random from rekey_time."},
			"rekey_bytes":   {Type: "byte count", Default: "0", Example: "3G", Doc: "Rekey after this much traffic; K, M, G, T are powers of 1024; 0 never."},
			"life_bytes":    {Type: "byte count", DefaultNote: "rekey_bytes plus 10%", Values: "more than rekey_bytes", Example: "4G", Doc: "The Child SA is deleted after this much traffic if it was not rekeyed."},
			"start_action":  {Type: tString, Default: "start", Values: "`start`, `none`, `trap`", Example: "trap", Doc: "`start` brings the Child SA up with its IKE SA; `none` leaves it to `mifike initiate CONN --child NAME`; `trap` brings it up, with an IKE SA if none is up, when a packet to remote_ts finds no SA (strongSwan's trap policy; that packet is dropped). The trap stays after the SA closes. It needs the peer's address first in remote_addrs and a data plane (userspace or kernel: the kernel's installs XFRM trap policies and hears XFRM acquires); see [On-demand Child SAs](walkthrough.md#on-demand-child-sas)."},
		}},
}

// ReferenceMarkdown is docs/config-reference.md: every section and key of
// the reference table, in order.
func ReferenceMarkdown() []byte {
	var b strings.Builder
	b.WriteString(`# Configuration reference

<!-- Generated from internal/config/reference.go by "go generate ./internal/config"; edit that file, not this one. -->

mifike reads one YAML file (` + "`mifike daemon -c FILE`" + `, default /etc/mifike/mifike.yaml). Its
keys follow strongSwan's swanctl.conf. This page lists every key the parser accepts, generated
from the parser's own key lists, so none is missing. [examples/](../examples/) has commented
files that work together, and [walkthrough.md](walkthrough.md) sets up two hosts with them.
` + "`mifike daemon -c FILE --check`" + ` checks a file, its keys and certificates, and prints its
warnings.

Values:

- **durations**: Go syntax (` + "`90s`, `30m`, `4h`, `1h30m`" + `), ` + "`d`" + ` for days (` + "`1d`" + `), or a bare number of seconds.
- **byte counts**: a number with an optional ` + "`K`, `M`, `G` or `T`" + ` suffix, in powers of 1024.
- **booleans**: ` + "`yes`/`no`, `true`/`false`, `on`/`off`" + `.
- **lists**: a YAML list or, as in swanctl.conf, a comma-separated string.
- **secrets**: ` + "`0x`" + ` then hex, ` + "`0s`" + ` then base64, else the text itself; quote them. A file that holds
  one, or a key file, that every local user can read is warned about.
- **file names**: relative ones are relative to the configuration file's directory.
- **names** of connections, children, pools and servers: letters, digits, ` + "`-`, `_` and `.`" + `.
- Top-level keys starting with ` + "`x-`" + ` are ignored; they can hold YAML anchors that connections
  merge with ` + "`<<`" + ` (the connection's own keys win).

An unknown key is an error, with the closest known key or, for a swanctl.conf key mifike does not
have, what to write instead. Every error names the file, the line and the dotted path of the key.

## Sections

`)
	for _, s := range reference {
		fmt.Fprintf(&b, "- [%s](#%s)\n", sectionTitle(s.Path), anchor(s.Path))
	}
	for _, s := range reference {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", sectionTitle(s.Path), s.Doc)
		b.WriteString("| key | type | default | values | example | what it does |\n|---|---|---|---|---|---|\n")
		for _, k := range s.Schema.keys {
			d := s.Keys[k]
			def := "none"
			switch {
			case d.Type == tSection && d.Default == "" && d.DefaultNote == "":
				def = "see its keys"
			case d.Default != "" && d.DefaultNote != "":
				def = "`" + d.Default + "` (" + d.DefaultNote + ")"
			case d.Default != "":
				def = "`" + d.Default + "`"
			case d.DefaultNote != "":
				def = d.DefaultNote
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | `%s: %s` | %s |\n",
				k, cell(d.Type), cell(def), cell(d.Values), k, cell(d.Example), cell(d.Doc))
		}
	}
	return []byte(b.String())
}

func sectionTitle(path string) string {
	if path == "" {
		return "Top level"
	}
	return "`" + path + "`"
}

// anchor is GitHub's anchor for a section heading: lower case, without
// punctuation but for hyphens.
func anchor(path string) string {
	if path == "" {
		return "top-level"
	}
	var b strings.Builder
	for _, r := range strings.ToLower(path) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cell escapes a table cell's pipes.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
