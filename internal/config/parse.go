package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/ifacerule"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/ts"
	"gopkg.in/yaml.v3"
)

const (
	// A trap is a child's start action; it outlives the SAs it starts,
	// so dpd_action needs no trap of its own.
	trapDPD  = "a child with start_action trap keeps its trap after DPD clears its SAs"
	trapConn = "trap is set per child: children.NAME.start_action trap"
	childKey = "this key belongs to a child: children: {NAME: {...}}"
)

var (
	topSchema = schema{
		keys: []string{"log", "control", "metrics", "keylog", "listen", "port", "port_nat_t", "tcp_ports",
			"data_plane", "tun", "retransmit", "dos_protection", "radius", "cluster", "mptcp", "pools", "connections"},
		hints: map[string]string{
			"secrets":            "mifike has no secrets section; put the shared key on the connection as psk",
			"authorities":        "mifike has no authorities section; list CA certificates in the connection's remote.cacerts",
			"ike_port":           "the IKE port is set with port, as in strongswan.conf",
			"nat_port":           "the NAT-T port is set with port_nat_t, as in strongswan.conf",
			"natt_port":          "the NAT-T port is set with port_nat_t, as in strongswan.conf",
			"retransmit_timeout": "set it as retransmit: {timeout: ...}",
			"retransmit_base":    "set it as retransmit: {base: ...}",
			"retransmit_tries":   "set it as retransmit: {tries: ...}",
		},
		extensions: true,
	}
	logSchema        = schema{keys: []string{"level", "format"}}
	controlSchema    = schema{keys: []string{"socket", "group", "mode"}}
	metricsSchema    = schema{keys: []string{"listen"}}
	keylogSchema     = schema{keys: []string{"dir"}}
	retransmitSchema = schema{keys: []string{"timeout", "base", "tries"}}
	tunSchema        = schema{keys: []string{"name", "mtu"}}
	ifacesSchema     = schema{keys: []string{"mode", "use", "on_down", "on_return", "children", "gateway_addrs", "tcp", "multipath", "spread", "spread_measured", "spread_probe"}}
	mptcpSchema      = schema{keys: []string{"enable", "subflows", "add_addr_accepted"}}
	poolSchema       = schema{keys: []string{"addrs", "dns"}}
	connSchema       = schema{
		keys: []string{"local_addrs", "remote_addrs", "remote_port", "local", "remote", "psk",
			"proposals", "mobike", "ike_window", "return_routability", "nat_traversal", "encap", "tcp", "tcp_port", "tcp_fallback_after", "fragmentation", "fragment_size", "childless", "redirect", "clone", "interfaces", "vips", "pools", "rekey_time", "reauth_time",
			"over_time", "rand_time", "dpd_delay", "liveness_window", "dpd_action", "start_action", "unique",
			"signature_auth", "rsa_pss", "prefer", "children"},
		hints: map[string]string{
			"version":       "mifike speaks IKEv2 only; remove the key",
			"aggressive":    "aggressive mode is IKEv1; remove the key",
			"local_port":    "the local port is the top-level port (and port_nat_t)",
			"keyingtries":   "not supported; with start_action start the daemon keeps initiating",
			"dpd_timeout":   "dpd_timeout is IKEv1; IKEv2 gives up after the retransmissions (see retransmit)",
			"send_cert":     "not supported; the certificate is always sent",
			"send_certreq":  "not supported; a certificate request is sent when remote.cacerts is set",
			"pull":          "pull is IKEv1 mode config; vips requests addresses in IKEv2",
			"local_ts":      childKey,
			"remote_ts":     childKey,
			"esp_proposals": childKey,
			"mode":          childKey,
			"life_time":     childKey,
			"rekey_bytes":   childKey,
			"life_bytes":    childKey,
		},
	}
	radiusSchema       = schema{keys: []string{"servers", "nas_identifier", "timeout", "tries", "accounting", "interim_interval"}}
	clusterSchema      = schema{keys: []string{"name", "node", "addrs", "etcd", "key_file", "lease", "placement", "redirect"}}
	etcdSchema         = schema{keys: []string{"endpoints", "cacert", "cert", "key"}}
	radiusServerSchema = schema{keys: []string{"address", "secret", "auth_port", "acct_port"},
		hints: map[string]string{"port": "the ports are auth_port (1812) and acct_port (1813)"}}
	localSchema = schema{
		keys: []string{"auth", "id", "certs", "key", "eap_id", "password", "password_file", "eap_cacerts", "aaa_id"},
		hints: map[string]string{
			"cacerts": "local.cacerts is not used; append intermediate CA certificates to local.certs after our own",
			"pubkeys": "raw public keys are not supported; use certs and key",
		},
	}
	remoteSchema = schema{
		keys: []string{"auth", "id", "cacerts", "eap_id", "revocation", "crls", "ocsp_uri"},
		hints: map[string]string{
			"certs":   "pinning the peer's certificate is not supported; trust its CA with remote.cacerts",
			"key":     "a private key belongs in local.key",
			"pubkeys": "raw public keys are not supported; trust the peer's CA with remote.cacerts",
		},
	}
	redirectSchema = schema{keys: []string{"to", "follow"},
		hints: map[string]string{"from": "REDIRECTED_FROM is sent by the engine; set to, the gateway peers are sent to"}}
	cloneSchema = schema{keys: []string{"enable", "max_ike_sas", "max_child_sas", "draft00", "own_vips"}}
	childSchema = schema{
		keys: []string{"local_ts", "remote_ts", "esp_proposals", "mode", "rekey_time", "life_time",
			"rand_time", "rekey_bytes", "life_bytes", "start_action"},
		hints: map[string]string{
			"dpd_action":   "dpd_action is set on the connection",
			"ah_proposals": "AH is not supported; use esp_proposals",
			"updown":       "updown scripts are not supported",
			"close_action": "not supported",
			"proposals":    "a child's proposals are esp_proposals; proposals are the connection's, for the IKE SA",
			"local_addrs":  "local_addrs belongs to the connection",
			"remote_addrs": "remote_addrs belongs to the connection",
		},
	}
)

func (p *parser) parse(data []byte) *Config {
	c := &Config{
		Log:       LogConfig{Level: "info", Format: "text"},
		Control:   ControlConfig{Socket: DefaultSocket, Mode: 0o600},
		Listen:    []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()},
		IKEPort:   DefaultIKEPort,
		NATTPort:  DefaultNATTPort,
		DataPlane: "none",
	}
	if blank(data) {
		// Before the YAML reader, which rejects some whitespace (a tab
		// starting a line) with a less helpful message.
		p.fail(1, "", "%s", emptyFile)
		return c
	}
	root := p.document(data)
	if root == nil || isNull(resolve(root)) {
		if len(p.errs) == 0 {
			p.fail(1, "", "%s", emptyFile)
		}
		return c
	}
	top := p.fields(root, "", 1, topSchema)
	if resolve(root).Kind == yaml.MappingNode {
		p.requireConnections(top)
	}

	l := top.sub("log", logSchema)
	c.Log.Level = l.enum("level", "info", "log level", []string{"debug", "info", "warn", "error"}, nil)
	c.Log.Format = l.enum("format", "text", "log format", []string{"text", "json"}, nil)

	p.control(top.sub("control", controlSchema), &c.Control)

	m := top.sub("metrics", metricsSchema)
	if s, ok := m.str("listen"); ok && s != "" {
		if msg := checkListen(s); msg != "" {
			m.fail("listen", "%q: %s", s, msg)
		}
		c.Metrics.Listen = s
	}

	k := top.sub("keylog", keylogSchema)
	if s, ok := k.str("dir"); ok && s != "" {
		c.KeyLog.Dir = p.path(s)
	}

	if items, set := top.list("listen"); set {
		c.Listen = p.addrs(items, false)
		if len(items) == 0 && !p.hasError("listen") {
			top.fail("listen", "needs at least one address; 0.0.0.0 and :: bind to all")
		}
	}
	c.IKEPort = top.port("port", DefaultIKEPort)
	c.NATTPort = top.port("port_nat_t", DefaultNATTPort)
	if c.IKEPort == c.NATTPort {
		top.fail("port_nat_t", "%d is also port; NAT-T needs a port of its own", c.NATTPort)
	}
	c.TCPPorts = p.tcpPorts(top, c)
	c.DataPlane = top.enum("data_plane", "auto", "data plane", []string{"none", "userspace", "kernel", "auto"}, nil)
	c.TUN = TUNConfig{Name: "mifike0", MTU: 1400}
	if top.has("tun") {
		t := top.sub("tun", tunSchema)
		if name, ok := t.str("name"); ok {
			if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t%") {
				t.fail("name", "%q is not an interface name (1 to 15 characters, no '/', '%%' or spaces)", name)
			} else {
				c.TUN.Name = name
			}
		}
		c.TUN.MTU = t.integer("mtu", 1400, 576, 9000)
	}

	if top.has("retransmit") {
		c.Retransmit = p.retransmit(top.sub("retransmit", retransmitSchema))
	}
	c.DoS = p.dos(top.sub("dos_protection", dosSchema))
	if top.has("radius") {
		c.RADIUS = p.radius(top.sub("radius", radiusSchema), top.at("radius"))
	}
	if top.has("cluster") {
		c.Cluster = p.cluster(top.sub("cluster", clusterSchema), top.at("cluster"))
	}

	c.MPTCP = MPTCPConfig{Subflows: defaultMPTCPSubflows, AddAddrAccepted: -1}
	if top.has("mptcp") {
		c.MPTCP = p.mptcp(top.sub("mptcp", mptcpSchema), top.at("mptcp"))
	}

	poolNames := map[string]bool{}
	for _, e := range p.entries(top.val["pools"], "pools", "pool") {
		c.Pools = append(c.Pools, p.pool(e))
		poolNames[e.name] = true
	}
	p.overlappingPools(c.Pools)
	for _, e := range p.entries(top.val["connections"], "connections", "connection") {
		c.Connections = append(c.Connections, p.conn(e, poolNames))
	}
	for _, cc := range c.Connections {
		for _, ch := range cc.Children {
			field := "connections." + cc.Name + ".children." + ch.Name + ".start_action"
			switch {
			case ch.StartAction != "trap":
			case c.DataPlane == "none":
				p.fail(ch.startActionLine, field, "trap needs a data plane to see the traffic that triggers it: data_plane is none")
			}
		}
		p.checkMultipath(c, cc)
		p.checkSpread(c, cc)
		if cc.Remote.Auth == "eap" && c.RADIUS == nil {
			p.fail(cc.Line, "connections."+cc.Name+".remote.auth", "eap passes the authentication to RADIUS: add a top-level radius section with servers (see docs/eap-radius.md)")
		}
	}
	return c
}

// A file that defines no connections would make the daemon delete every
// SA it has: an editor's truncated write (empty, or cut before the
// connections section, which usually comes last) reloaded by SIGHUP or
// "mifike reload" would take a gateway down. So "no connections" must be
// written out, as connections: {}, and an empty file, a file without a
// connections key and a connections key with nothing under it are errors.
// strongSwan's swanctl --load-conns unloads every connection missing from
// its files; mifike asks for the empty mapping instead, since a file
// without it is far more often a mistake than a wish.
const (
	emptyFile = "the file is empty (nothing but blanks and comments): was it truncated? " +
		"A configuration without connections must say so: connections: {}"
	noConns = "missing: the file defines no connections (was it truncated?); " +
		"a configuration without connections must say so: connections: {}"
	nullConns = "empty: no connections follow (was the file truncated?); " +
		"a configuration without connections must say so: connections: {}"
)

// blank reports whether data holds nothing but whitespace and comments.
func blank(data []byte) bool {
	for line := range strings.Lines(strings.TrimPrefix(string(data), "\ufeff")) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

func (p *parser) requireConnections(top *fields) {
	switch line, present := top.key["connections"]; {
	case !present:
		top.fail("connections", "%s", noConns)
	case !top.has("connections"):
		p.fail(line, "connections", "%s", nullConns)
	}
}

func (p *parser) control(f *fields, c *ControlConfig) {
	if s, ok := f.str("socket"); ok {
		if !filepath.IsAbs(s) {
			f.fail("socket", "%q is not an absolute path; the CLI must find it from anywhere", s)
		} else {
			c.Socket = filepath.Clean(s)
		}
	}
	if s, ok := f.str("group"); ok && s != "" {
		c.Group = s
		c.Mode = 0o660
		p.host.group = ref{field: f.field("group"), line: f.at("group")}
	}
	s, ok := f.str("mode")
	if !ok {
		return
	}
	t := strings.TrimPrefix(strings.TrimSpace(s), "0o")
	n, err := strconv.ParseUint(t, 8, 32)
	switch {
	case err != nil || n > 0o777:
		f.fail("mode", "%q is not a file mode; write it in octal such as \"0660\"", s)
	case n&0o007 != 0:
		f.fail("mode", "%s lets every local user control the daemon; set group and use 0660", s)
	case n&0o600 != 0o600:
		f.fail("mode", "%s keeps the owner (root) from using the socket; use 0600 or 0660", s)
	default:
		c.Mode = fs.FileMode(n)
	}
}

// checkListen accepts host:port with an IP address, localhost or an empty
// host (all addresses).
func checkListen(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "want host:port such as 127.0.0.1:9847"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("port %q is not a number from 1 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "" && host != "localhost" {
		return "give an IP address or localhost as the host"
	}
	return ""
}

func (p *parser) retransmit(f *fields) ike.Retransmit {
	// strongSwan's defaults for the keys left out.
	r := ike.Retransmit{Timeout: 4 * time.Second, Base: 1.8, Tries: 5}
	if d, ok := f.duration("timeout"); ok {
		if d <= 0 {
			f.fail("timeout", "must be more than 0")
		} else {
			r.Timeout = d
		}
	}
	if s, ok := f.scalar("base", "a number"); ok {
		b, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		switch {
		case err != nil || math.IsNaN(b) || math.IsInf(b, 0):
			f.fail("base", "%q is not a number", s)
		case b < 1:
			f.fail("base", "%v would shorten each wait; use 1 (constant) or more, strongSwan uses 1.8", b)
		default:
			r.Base = b
		}
	}
	r.Tries = f.integer("tries", r.Tries, 0, 100)
	// Each wait is Timeout·Base^n: keep the last one sane.
	if days := r.Timeout.Seconds() * math.Pow(r.Base, float64(r.Tries)) / 86400; days > 1 {
		f.p.fail(f.line, f.path, "the last retransmission would wait %.0f days; lower tries or base so each wait stays within a day", math.Ceil(days))
	}
	return r
}

func (p *parser) pool(e entry) *PoolConfig {
	f := p.fields(e.val, e.field, e.line, poolSchema)
	pc := &PoolConfig{Name: e.name, Line: e.line}
	if s, ok := f.str("addrs"); ok {
		if pr, msg := parsePool(s); msg != "" {
			f.fail("addrs", "%s", msg)
		} else {
			pc.Addrs = pr
			pc.addrsLine = f.at("addrs")
		}
	} else if !f.has("addrs") {
		f.fail("addrs", "required: the pool's prefix, e.g. 10.99.0.0/24")
	}
	if items, _ := f.list("dns"); items != nil {
		pc.DNS = p.addrs(items, false)
	}
	return pc
}

// overlappingPools refuses pools whose prefixes overlap: two peers would
// be given one inner address (RFC 7296 §2.19), and one of them would lose
// its traffic. The allocator never leases an address twice, but it would
// then run out of addresses in one pool because of the other, which is
// not what a configuration that lists two pools means. Prefixes are
// either nested or disjoint, so sorted by address (the larger of two
// equal-start prefixes first), each one overlaps an earlier one exactly
// when the innermost earlier prefix still open contains it.
func (p *parser) overlappingPools(pools []*PoolConfig) {
	var ps []*PoolConfig
	for _, pc := range pools {
		if pc.Addrs.IsValid() {
			ps = append(ps, pc)
		}
	}
	slices.SortStableFunc(ps, func(a, b *PoolConfig) int {
		if c := a.Addrs.Addr().Compare(b.Addrs.Addr()); c != 0 {
			return c
		}
		return a.Addrs.Bits() - b.Addrs.Bits()
	})
	var open []*PoolConfig
	for _, pc := range ps {
		for len(open) > 0 && !open[len(open)-1].Addrs.Overlaps(pc.Addrs) {
			open = open[:len(open)-1]
		}
		if len(open) > 0 {
			first, second := open[len(open)-1], pc
			if second.line() < first.line() {
				first, second = second, first
			}
			p.fail(second.line(), "pools."+second.Name+".addrs",
				"%v overlaps pool %s (%v) at %s:%d: two clients would get the same inner address; "+
					"give each pool a prefix of its own or, to share one range between connections, list the same pool in each connection's pools",
				second.Addrs, first.Name, first.Addrs, p.file, first.line())
		}
		open = append(open, pc)
	}
}

func parsePool(s string) (netip.Prefix, string) {
	pr, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		switch _, aerr := netip.ParseAddr(strings.TrimSpace(s)); {
		case aerr == nil:
			return pr, fmt.Sprintf("%q is one address; a pool is a prefix such as 10.99.0.0/24", s)
		case strings.Contains(s, "-"):
			return pr, fmt.Sprintf("%q: address ranges are not supported; give a prefix such as 10.99.0.0/24", s)
		}
		return pr, fmt.Sprintf("%q is not a prefix such as 10.99.0.0/24", s)
	}
	if pr.Addr().Zone() != "" {
		return pr, fmt.Sprintf("%q: a pool prefix has no zone", s)
	}
	if pr.Addr().Is4In6() {
		return pr, fmt.Sprintf("%q is an IPv4-mapped prefix; write the IPv4 prefix such as 10.99.0.0/24", s)
	}
	pr = pr.Masked()
	if pr.Addr().BitLen()-pr.Bits() < 2 {
		return pr, fmt.Sprintf("%v has no room for clients; use /30 or shorter (IPv6: /126 or shorter)", pr)
	}
	return pr, ""
}

// addrs reads IP addresses; with anyOK, "%any" means every address (an
// empty result) and "%any4"/"%any6" every address of one family.
func (p *parser) addrs(items []item, anyOK bool) []netip.Addr {
	var out []netip.Addr
	all := false
	for _, it := range items {
		if anyOK {
			switch it.s {
			case "%any":
				all = true
				continue
			case "%any4":
				out = append(out, netip.IPv4Unspecified())
				continue
			case "%any6":
				out = append(out, netip.IPv6Unspecified())
				continue
			}
		}
		a, err := netip.ParseAddr(it.s)
		if err == nil {
			out = append(out, a)
			continue
		}
		p.fail(it.line, it.field, "%s", addrError(it.s, anyOK))
	}
	if all {
		return nil
	}
	return out
}

func addrError(s string, anyOK bool) string {
	if _, err := netip.ParsePrefix(s); err == nil || strings.Count(s, "-") == 1 && !looksLikeName(s) {
		if anyOK {
			return fmt.Sprintf("%q: subnets and ranges are not supported; give single IP addresses or %%any", s)
		}
		return fmt.Sprintf("%q: subnets and ranges are not supported; give single IP addresses", s)
	}
	if looksLikeName(s) {
		return fmt.Sprintf("%q: DNS names are not supported yet; give an IP address", s)
	}
	return fmt.Sprintf("%q is not an IP address", s)
}

// looksLikeName tells a host name from a mistyped address.
func looksLikeName(s string) bool {
	letter := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letter = true
		case r >= '0' && r <= '9' || r == '-' || r == '.':
		default:
			return false
		}
	}
	return letter
}

func (p *parser) proposals(f *fields, key string, parse func(string) ([]proposal.Proposal, error), def string) []proposal.Proposal {
	items, set := f.list(key)
	if !set {
		ps, _ := parse(def)
		return ps
	}
	if len(items) == 0 && !p.hasError(f.field(key)) {
		f.fail(key, "no proposals; list some or write default")
	}
	var out []proposal.Proposal
	for _, it := range items {
		ps, err := parse(it.s)
		if err != nil {
			p.fail(it.line, it.field, "%s", strings.TrimPrefix(err.Error(), "proposal: "))
			continue
		}
		out = append(out, ps...)
	}
	return out
}

func (p *parser) conn(e entry, pools map[string]bool) *ConnConfig {
	f := p.fields(e.val, e.field, e.line, connSchema)
	c := &ConnConfig{Name: e.name, Line: e.line}

	items, _ := f.list("local_addrs")
	c.LocalAddrs = p.addrs(items, true)
	items, _ = f.list("remote_addrs")
	c.RemoteAddrs = p.addrs(items, true)
	c.RemotePort = f.port("remote_port", DefaultIKEPort)

	c.PSK = psk(f)
	if len(c.PSK) > 0 {
		p.host.inline = append(p.host.inline, ref{field: f.field("psk"), line: f.at("psk")})
		p.shortPSK(f, len(c.PSK))
	}
	local := f.sub("local", localSchema)
	remote := f.sub("remote", remoteSchema)
	c.Local = p.auth(local, true)
	c.Remote = p.auth(remote, false)
	p.checkAuth(f, c, local, remote)

	c.IKE = p.proposals(f, "proposals", proposal.ParseIKEList, proposal.DefaultIKE)
	c.MOBIKE = f.boolean("mobike", true)
	c.IKEWindow = f.integer("ike_window", 4, 1, 64)
	c.ReturnRoutability = f.boolean("return_routability", false)
	c.NoNATT = !f.boolean("nat_traversal", true)
	if c.NoNATT && f.has("encap") && f.boolean("encap", false) {
		f.fail("encap", "forcing UDP encapsulation needs nat_traversal (leave it on)")
	}
	c.Encap = f.boolean("encap", false)
	p.connTCP(f, c)
	// RFC 7383: on by default, as strongSwan; 0 takes §2.5.1's sizes.
	c.Fragmentation = f.boolean("fragmentation", true)
	c.FragmentSize = f.integer("fragment_size", 0, 0, 65535)
	// RFC 6023: offered and taken by default, as strongSwan's allow.
	c.NoChildless = !f.boolean("childless", true)
	if c.FragmentSize != 0 && c.FragmentSize < 576 {
		f.fail("fragment_size", "the largest IP datagram of an IKE fragment: at least 576 (every IPv4 path carries that), or 0 for 576 on IPv4 and 1280 on IPv6")
	}

	p.redirect(f.sub("redirect", redirectSchema), c)

	cl := f.sub("clone", cloneSchema)
	c.Clone = CloneConfig{Enable: cl.boolean("enable", false), MaxIKESAs: cl.integer("max_ike_sas", 8, 1, 1024),
		MaxChildSAs: cl.integer("max_child_sas", 0, 0, 65536), Draft00: cl.boolean("draft00", false),
		OwnVIPs: cl.boolean("own_vips", false)}

	items, _ = f.list("vips")
	for _, it := range items {
		for _, a := range p.addrs([]item{it}, false) {
			if !a.IsUnspecified() {
				p.fail(it.line, it.field, "requesting a specific address (%v) is not supported; use 0.0.0.0 for IPv4 or :: for IPv6", a)
				continue
			}
			c.VIPs = append(c.VIPs, a)
		}
	}
	items, _ = f.list("pools")
	for _, it := range items {
		if !pools[it.s] {
			p.fail(it.line, it.field, "%s", unknownPool(it.s, pools))
			continue
		}
		c.Pools = append(c.Pools, it.s)
	}

	p.ikeTimes(f, c)

	c.DPDAction = f.enum("dpd_action", "clear", "DPD action", []string{"clear", "restart", "none"},
		map[string]string{"trap": trapDPD, "hold": trapDPD})
	c.StartAction = f.enum("start_action", "none", "start action", []string{"none", "start"},
		map[string]string{"trap": trapConn})
	// The engine initiates to the first remote address.
	if c.StartAction == "start" && (len(c.RemoteAddrs) == 0 || c.RemoteAddrs[0].IsUnspecified()) && !p.hasError(f.field("remote_addrs")) {
		f.fail("start_action", "start needs a peer to contact: give its IP address first in remote_addrs")
	}
	c.SendInitialContact = f.enum("unique", "replace", "uniqueness policy", []string{"replace", "no"},
		map[string]string{"keep": "not supported", "never": "not supported"}) == "replace"
	c.ClassicSignatures = f.enum("signature_auth", "rfc7427", "signature scheme", []string{"rfc7427", "classic"}, nil) == "classic"
	c.RSAPSS = f.boolean("rsa_pss", false)
	c.PreferPeerProposals = f.enum("prefer", "local", "preference", []string{"local", "peer"}, nil) == "peer"

	for _, ce := range p.entries(f.val["children"], f.field("children"), "child") {
		c.Children = append(c.Children, p.child(ce))
	}
	if !f.has("ike_window") {
		// A new interface's clone asks for every Child SA and the move
		// at once (RFC 7791 App. A.3/A.4); a window that holds them all
		// keeps that at one round trip with one Child SA per service (the
		// MIF problem statement's use case 2).
		c.IKEWindow = min(max(c.IKEWindow, len(c.Children)+1), 64)
	}
	if f.has("interfaces") {
		c.Interfaces = p.interfaces(f.sub("interfaces", ifacesSchema), c)
	}
	p.traps(f, c)
	return c
}

// traps checks the children with start_action trap: their first packet
// makes us initiate (docs/walkthrough.md, "On-demand Child SAs"), which
// needs a peer address to initiate to.
func (p *parser) traps(f *fields, c *ConnConfig) {
	for _, ch := range c.Children {
		if ch.StartAction != "trap" {
			continue
		}
		field := f.field("children." + ch.Name + ".start_action")
		switch {
		case (len(c.RemoteAddrs) == 0 || c.RemoteAddrs[0].IsUnspecified()) && !p.hasError(f.field("remote_addrs")):
			p.fail(ch.startActionLine, field, "trap needs a peer to initiate to when traffic comes: give its IP address first in remote_addrs (%%any cannot be initiated to)")
		case f.has("interfaces"):
			p.fail(ch.startActionLine, field, "trap is not supported with an interfaces section: the interface manager brings the connection up itself")
		}
	}
}

// redirect is the connection's RFC 5685 section: to, a single unicast
// gateway address other than our own; follow, a boolean.
func (p *parser) redirect(f *fields, c *ConnConfig) {
	c.Redirect.NoFollow = !f.boolean("follow", true)
	s, ok := f.str("to")
	if !ok {
		return
	}
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		f.fail("to", "%s", addrError(s, false))
	case a.Zone() != "":
		f.fail("to", "%q: a peer cannot use a zoned address; give the gateway's global address", s)
	case a.Unmap().IsUnspecified() || a.IsMulticast() || a.Unmap() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		f.fail("to", "%v is no gateway's address; give the unicast address peers should use instead of this gateway", a)
	case slices.Contains(c.LocalAddrs, a.Unmap()):
		f.fail("to", "%v is this connection's own address (in local_addrs): redirecting peers to ourselves is a loop (RFC 5685 §7)", a)
	default:
		c.Redirect.To = a.Unmap()
	}
}

// interfaces is the multi-interface manager's policy for a connection.
func (p *parser) interfaces(f *fields, c *ConnConfig) *InterfacesConfig {
	ic := &InterfacesConfig{
		Mode:         f.enum("mode", "per-interface", "interface mode", []string{"per-interface", "failover"}, nil),
		OnDown:       f.enum("on_down", "move", "action when an interface goes", []string{"move", "delete"}, nil),
		OnReturn:     f.enum("on_return", "move-back", "action when an interface returns", []string{"move-back", "new"}, nil),
		GatewayAddrs: f.enum("gateway_addrs", "one", "gateway address use", []string{"one", "all"}, nil),
	}
	items, set := f.list("use")
	if !set || len(items) == 0 {
		f.fail("use", "list the interfaces the VPNs may use, most preferred first (names or patterns such as wlan*)")
	}
	for _, it := range items {
		if _, err := path.Match(it.s, ""); err != nil || it.s == "" {
			p.fail(it.line, it.field, "%q is not an interface name or pattern", it.s)
			continue
		}
		ic.Use = append(ic.Use, it.s)
	}
	items, set = f.list("children")
	names := map[string]bool{}
	for _, ch := range c.Children {
		names[ch.Name] = true
	}
	for _, it := range items {
		if !names[it.s] {
			p.fail(it.line, it.field, "no child %q in this connection", it.s)
			continue
		}
		ic.Children = append(ic.Children, it.s)
	}
	if !set {
		for _, ch := range c.Children {
			ic.Children = append(ic.Children, ch.Name)
		}
	}
	if len(c.RemoteAddrs) == 0 || c.RemoteAddrs[0].IsUnspecified() {
		f.fail("use", "the interface manager dials out: give the gateway's address first in remote_addrs")
	}
	if ic.Mode == "per-interface" && !c.Clone.Enable {
		// Still works (one authentication per interface), but say why.
		ic.NoClone = true
	}
	if f.has("tcp") {
		ic.TCP = p.ifaceTCP(f)
	}
	if f.has("multipath") {
		ic.Multipath = p.ifaceMultipath(f)
		ic.multipathLine = f.at("multipath")
	}
	if f.has("spread") {
		ic.Spread = p.ifaceSpread(f)
		ic.spreadLine = f.at("spread")
	}
	ic.SpreadMeasured, ic.SpreadProbe = p.spreadMeasurement(f)
	return ic
}

// ifaceRules reads a mapping of interface names or patterns to values
// (interfaces.tcp, multipath and spread), in file order, the first match
// winning. value turns one scalar into a value, or reports false; want
// says what a value may be, in the error.
func ifaceRules[V any](p *parser, f *fields, key, example, want string, value func(string) (V, bool)) ifacerule.Rules[V] {
	field := f.field(key)
	n := resolve(f.val[key])
	if n == nil || n.Kind != yaml.MappingNode {
		f.fail(key, "want a mapping of interface names or patterns to %s, such as %s", want, example)
		return nil
	}
	out := ifacerule.Rules[V]{} // {} is a setting of its own: spread: {} spreads, every VPN weighing 1
	for _, pr := range p.pairs(n, field) {
		k, v := pr.key, resolve(pr.val)
		kf := join(field, k.Value)
		if k.Kind != yaml.ScalarNode || !ifacerule.ValidPattern(k.Value) {
			p.fail(k.Line, field, "%q is not an interface name or pattern", k.Value)
			continue
		}
		if v == nil || v.Kind != yaml.ScalarNode {
			p.fail(k.Line, kf, "want %s", want)
			continue
		}
		x, ok := value(v.Value)
		if !ok {
			p.fail(v.Line, kf, "%q: want %s", v.Value, want)
			continue
		}
		out = append(out, ifacerule.Rule[V]{Pattern: k.Value, Value: x})
	}
	return out
}

// ifaceTCP reads interfaces.tcp: the TCP encapsulation policy of the
// VPNs on the interfaces named (RFC 9329): tcp: {wwan*: always, wlan0: fallback}.
func (p *parser) ifaceTCP(f *fields) ifacerule.Rules[ike.TCPPolicy] {
	return ifaceRules(p, f, "tcp", "{wwan*: always}", "never, fallback or always", func(s string) (ike.TCPPolicy, bool) {
		switch s {
		case "never":
			return ike.TCPNever, true
		case "fallback":
			return ike.TCPFallback, true
		case "always":
			return ike.TCPAlways, true
		}
		return 0, false
	})
}

func unknownPool(name string, pools map[string]bool) string {
	if len(pools) == 0 {
		return fmt.Sprintf("no pool %q: define it under the top-level pools", name)
	}
	names := make([]string, 0, len(pools))
	for n := range pools {
		names = append(names, n)
	}
	slices.Sort(names)
	if s := suggest(name, names); s != "" {
		return fmt.Sprintf("no pool %q; did you mean %s?", name, s)
	}
	return fmt.Sprintf("no pool %q; defined pools are %s", name, strings.Join(names, ", "))
}

const eapWithPSK = "EAP with a gateway authenticated by a pre-shared key: RFC 7296 §2.16 wants the gateway's signature (auth: pubkey)"

// minPSK is the shortest pre-shared key not warned about. RFC 7296
// §2.15: a key "derived from some password" is open to a dictionary
// attack on one recorded IKE_AUTH, so the key needs the entropy of a
// key, not of a word; 20 random octets is 160 bits, HMAC-SHA-1's key
// size and as strongSwan's documentation advises.
const minPSK = 20

func (p *parser) shortPSK(f *fields, n int) {
	if n >= minPSK {
		return
	}
	f.p.warn(f.at("psk"), f.field("psk"), "%d octets is short: a pre-shared key needs the entropy of a key, or one recorded "+
		"IKE_AUTH lets anyone guess it offline (RFC 7296 §2.15); use at least %d random octets (openssl rand -base64 32 makes one; write it as 0s...)", n, minPSK)
}

// psk decodes the shared key as strongSwan does: "0x" hex, "0s" base64,
// else the text itself. Messages never repeat the secret.
func psk(f *fields) []byte { return secret(f, "psk") }

// secret decodes a secret under key as psk does.
func secret(f *fields, key string) []byte {
	s, ok := f.str(key)
	if !ok {
		return nil
	}
	var b []byte
	var err error
	switch {
	case strings.HasPrefix(s, "0x"):
		if b, err = hex.DecodeString(s[2:]); err != nil {
			f.fail(key, "the text after 0x is not hexadecimal")
			return nil
		}
	case strings.HasPrefix(s, "0s"):
		if b, err = base64.StdEncoding.DecodeString(s[2:]); err != nil {
			f.fail(key, "the text after 0s is not base64")
			return nil
		}
	default:
		b = []byte(s)
	}
	if len(b) == 0 {
		f.fail(key, "empty; give the shared secret (0x... for hex, 0s... for base64)")
	}
	return b
}

func (p *parser) auth(f *fields, local bool) AuthConfig {
	allowed := []string{"psk", "pubkey", "eap", "eap-radius", "eap-only"}
	why := map[string]string{
		"xauth":     "XAuth is IKEv1",
		"rsa":       "the signature key type follows the certificate",
		"ecdsa":     "the signature key type follows the certificate",
		"eap-ttls":  "the gateway passes EAP-TTLS through to RADIUS (remote.auth: eap); as the end user, use eap-tls, eap-mschapv2 or eap-md5",
		"eap-peap":  "PEAP is not supported; use eap-tls or eap-mschapv2",
		"eap-gtc":   "EAP-GTC is not supported; use eap-mschapv2",
		"eap-sim":   "EAP-SIM is not supported",
		"eap-aka":   "EAP-AKA is not supported",
		"eap-ident": "EAP-Identity alone authenticates nothing",
	}
	if local {
		allowed = []string{"psk", "pubkey", "eap", "eap-mschapv2", "eap-md5", "eap-tls", "eap-only"}
		why["eap-radius"] = "eap-radius is the gateway's side: remote.auth: eap-radius; as the end user use eap, eap-mschapv2, eap-md5 or eap-tls"
	}
	a := AuthConfig{Auth: f.enum("auth", "pubkey", "authentication method", allowed, why)}
	if a.Auth == "eap-radius" {
		a.Auth = "eap"
	}
	if local && isEAPPeer(a.Auth) {
		if s, ok := f.str("eap_id"); ok {
			a.EAPID = strings.TrimSpace(s)
		}
		if s, ok := f.str("aaa_id"); ok {
			a.AAAID = strings.TrimSpace(s)
		}
		a.Password = p.password(f)
	} else if !local && a.Auth == "eap" {
		// The gateway asks the EAP identity (ask, the default: works
		// whatever the client's IKE identity), or takes the IKE identity
		// as the EAP identity and saves that round trip (ike, as
		// strongSwan's eap-radius does by default).
		a.EAPID = f.enum("eap_id", "ask", "EAP identity", []string{"ask", "ike"},
			map[string]string{"%any": "ask has the gateway ask the identity, ike takes the IKE identity as the EAP identity"})
	} else {
		for _, k := range []string{"eap_id", "password", "password_file", "eap_cacerts", "aaa_id"} {
			if f.has(k) {
				f.fail(k, "only for local.auth eap, eap-mschapv2, eap-md5 or eap-tls")
			}
		}
	}
	if s, ok := f.str("id"); ok {
		a.ID = strings.TrimSpace(s)
		if a.ID == "%any" && local {
			f.fail("id", "our own identity cannot be %%any; give e.g. @vpn.example.org, an email address or an IP address")
		} else if a.ID != "%any" && a.ID != "" {
			if _, _, err := ikeauth.ParseID(a.ID); err != nil {
				f.fail("id", "%s", strings.TrimPrefix(err.Error(), "ikeauth: "))
			}
		}
	}
	files := func(key string) ([]string, []ref) {
		items, _ := f.list(key)
		var paths []string
		var refs []ref
		for _, it := range items {
			paths = append(paths, p.path(it.s))
			refs = append(refs, ref{field: it.field, line: it.line})
		}
		return paths, refs
	}
	if local {
		a.EAPCACerts, a.eapCARefs = files("eap_cacerts")
		a.Certs, a.certRefs = files("certs")
		if s, ok := f.str("key"); ok && strings.TrimSpace(s) != "" {
			a.Key = p.path(strings.TrimSpace(s))
			a.keyRef = ref{field: f.field("key"), line: f.at("key")}
			p.host.file(a.Key, a.keyRef)
		}
	} else {
		a.CACerts, a.caRefs = files("cacerts")
		p.revocation(f, &a, files)
	}
	a.idRef = ref{field: f.field("id"), line: f.at("id")}
	return a
}

// revocation reads remote.revocation, crls and ocsp_uri: how the peer's
// certificates are checked for revocation (internal/revocation).
func (p *parser) revocation(f *fields, a *AuthConfig, files func(string) ([]string, []ref)) {
	a.Revocation = f.enum("revocation", "none", "revocation policy", []string{"none", "relaxed", "ifuri", "strict"},
		map[string]string{"yes": "strict needs a known good status, ifuri fails only when a CRL/OCSP URI exists and the check fails, relaxed only on revoked"})
	a.CRLs, a.crlRefs = files("crls")
	if s, ok := f.str("ocsp_uri"); ok {
		a.OCSPURI = strings.TrimSpace(s)
		if u, err := url.Parse(a.OCSPURI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			f.fail("ocsp_uri", "%q is not an http:// or https:// URL of an OCSP responder", a.OCSPURI)
		}
	}
	if a.Auth != "pubkey" {
		for _, k := range []string{"revocation", "crls", "ocsp_uri"} {
			if f.has(k) {
				f.fail(k, "only for remote.auth pubkey: revocation is checked on the peer's certificate")
			}
		}
	}
	if a.Revocation == "none" && (len(a.CRLs) > 0 || a.OCSPURI != "") {
		f.fail("revocation", "crls or ocsp_uri are set but revocation is not: set revocation to strict, ifuri or relaxed")
	}
}

// password is local.password, or the first line of local.password_file,
// for EAP-MD5 and EAP-MSCHAPv2 (a file keeps it out of the
// configuration, which is often world-readable).
func (p *parser) password(f *fields) []byte {
	s, inline := f.str("password")
	if inline && f.has("password_file") {
		f.fail("password_file", "give password or password_file, not both")
		return nil
	}
	if name, ok := f.str("password_file"); ok {
		path := p.path(strings.TrimSpace(name))
		p.host.file(path, ref{field: f.field("password_file"), line: f.at("password_file")})
		b, err := os.ReadFile(path)
		if err != nil {
			f.fail("password_file", "%s: %v", path, errors.Unwrap(err))
			return nil
		}
		line, _, _ := strings.Cut(string(b), "\n")
		line = strings.TrimRight(line, "\r")
		if line == "" {
			f.fail("password_file", "%s: the first line is empty", path)
			return nil
		}
		return []byte(line)
	}
	if inline && s == "" {
		f.fail("password", "empty")
		return nil
	}
	if inline {
		p.host.inline = append(p.host.inline, ref{field: f.field("password"), line: f.at("password")})
		return []byte(s)
	}
	return nil
}

// cluster reads the cluster section (docs/cluster.md): this node's ID
// and addresses, the etcd cluster, the key-encryption key.
func (p *parser) cluster(f *fields, line int) *ClusterConfig {
	c := &ClusterConfig{Line: line}
	if s, ok := f.str("name"); ok && strings.TrimSpace(s) != "" && !strings.ContainsAny(s, "/ \t") {
		c.Name = strings.TrimSpace(s)
	} else {
		f.fail("name", "required: the cluster's name, the same on every node (letters, digits, - and _; no slashes)")
	}
	c.Node = uint8(f.integer("node", 0, 1, 255))
	if !f.has("node") {
		f.fail("node", "required: this node's ID, 1 to 255, different on every node (it is the first octet of the SPIs it chooses)")
	}
	if items, ok := f.list("addrs"); ok {
		c.Addrs = p.addrs(items, false)
	}
	c.Lease = f.durationIn("lease", 2*time.Second, time.Second, time.Minute, "how long a node that stopped renewing is still taken for alive")
	c.Placement = f.enum("placement", "ike_sas", "placement", []string{"ike_sas", "child_sas", "none"},
		map[string]string{"bytes": "balancing by traffic is not built yet"})
	c.Redirect = f.boolean("redirect", true)
	if s, ok := f.str("key_file"); ok && strings.TrimSpace(s) != "" {
		c.KeyFile = p.path(strings.TrimSpace(s))
		p.host.file(c.KeyFile, ref{field: f.field("key_file"), line: f.at("key_file")})
	} else {
		f.fail("key_file", "required: the key-encryption key that seals SA state in etcd (64 hex digits, mode 600; openssl rand -hex 32), the same on every node and never in etcd")
	}
	if !f.has("etcd") {
		f.fail("etcd", "required: the etcd cluster, e.g. etcd: {endpoints: [https://10.0.0.1:2379], cacert: ca.pem, cert: node.pem, key: node.key}")
		return c
	}
	e := f.sub("etcd", etcdSchema)
	items, _ := e.list("endpoints")
	for _, it := range items {
		u := strings.TrimSpace(it.s)
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			p.fail(it.line, it.field, "%q: an etcd endpoint is a URL, e.g. https://10.0.0.1:2379", u)
			continue
		}
		c.Endpoints = append(c.Endpoints, u)
	}
	if len(items) == 0 && !p.hasError(e.field("endpoints")) {
		e.fail("endpoints", "required: at least one etcd member, e.g. [https://10.0.0.1:2379]")
	}
	for key, dst := range map[string]*string{"cacert": &c.CACert, "cert": &c.Cert, "key": &c.Key} {
		if s, ok := e.str(key); ok && strings.TrimSpace(s) != "" {
			*dst = p.path(strings.TrimSpace(s))
			if key == "key" {
				p.host.file(*dst, ref{field: e.field(key), line: e.at(key)})
			}
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		e.fail("key", "cert and key go together: the client certificate etcd checks and its private key")
	}
	for _, u := range c.Endpoints {
		if strings.HasPrefix(u, "https://") && c.CACert == "" && !p.hasError(e.field("cacert")) {
			e.fail("cacert", "required with https endpoints: the CA that issued the etcd members' certificates")
			break
		}
	}
	return c
}

// radius reads the radius section: named servers, as strongSwan's
// eap-radius.servers.
func (p *parser) radius(f *fields, line int) *RADIUSConfig {
	r := &RADIUSConfig{NASIdentifier: "mifike", Timeout: 2 * time.Second, Tries: 3, Accounting: true, Line: line}
	for _, e := range p.entries(f.val["servers"], f.field("servers"), "server") {
		sf := p.fields(e.val, e.field, e.line, radiusServerSchema)
		s := RADIUSServer{Name: e.name, AuthPort: sf.port("auth_port", 1812), AcctPort: sf.port("acct_port", 1813)}
		if a, ok := sf.str("address"); ok && strings.TrimSpace(a) != "" {
			s.Address = strings.TrimSpace(a)
		} else {
			sf.fail("address", "required: the RADIUS server's address or host name")
		}
		s.Secret = secret(sf, "secret")
		if len(s.Secret) > 0 {
			p.host.inline = append(p.host.inline, ref{field: sf.field("secret"), line: sf.at("secret")})
		}
		if s.Secret == nil && !p.hasError(sf.field("secret")) {
			sf.fail("secret", "required: the shared secret of this NAS and the server (0x... for hex, 0s... for base64)")
		}
		r.Servers = append(r.Servers, s)
	}
	if len(r.Servers) == 0 && !p.hasError(f.field("servers")) {
		f.fail("servers", "required: at least one server, e.g. servers: {primary: {address: 10.0.0.5, secret: ...}}")
	}
	if s, ok := f.str("nas_identifier"); ok {
		if s = strings.TrimSpace(s); s == "" || len(s) > 253 {
			f.fail("nas_identifier", "1 to 253 characters")
		} else {
			r.NASIdentifier = s
		}
	}
	r.Timeout = f.durationIn("timeout", 2*time.Second, 100*time.Millisecond, 60*time.Second, "the first retransmission timeout to a RADIUS server")
	r.Tries = f.integer("tries", 3, 1, 10)
	r.Accounting = f.boolean("accounting", true)
	r.InterimInterval = f.durationIn("interim_interval", 0, 0, 24*time.Hour, "how often accounting Interim-Updates go (0: only when the server asks)")
	return r
}

// hasError reports whether field or one of its list entries already has
// an error, so a missing-value error does not pile on top of it.
func (p *parser) hasError(field string) bool {
	return slices.ContainsFunc(p.errs, func(e *Error) bool {
		return e.Field == field || strings.HasPrefix(e.Field, field+"[")
	})
}

// isEAPPeer reports whether local.auth makes us the EAP peer (the end
// user): every eap method but the gateway's eap-only.
func isEAPPeer(auth string) bool { return strings.HasPrefix(auth, "eap") && auth != "eap-only" }

// authName names the method a certificate is needed for.
func authName(auth string) string {
	if auth == "eap" {
		return "eap-tls"
	}
	return auth
}

// checkAuth enforces what each auth method needs.
func (p *parser) checkAuth(f *fields, c *ConnConfig, local, remote *fields) {
	hint := ""
	if len(c.PSK) > 0 {
		hint = " (or set auth: psk to use the psk)"
	}
	// A side whose auth is already wrong gets no follow-on errors.
	switch {
	case p.hasError(local.field("auth")):
	case c.Local.Auth == "pubkey" || c.Local.Auth == "eap-tls" || c.Local.Auth == "eap" && len(c.Local.Password) == 0 && len(c.Local.Certs) > 0:
		if len(c.Local.Certs) == 0 && !p.hasError(local.field("certs")) {
			local.fail("certs", "required for %s authentication: our certificate file (PEM)%s", authName(c.Local.Auth), hint)
		}
		if c.Local.Key == "" && !p.hasError(local.field("key")) {
			local.fail("key", "required for %s authentication: the private key file (PEM) of the certificate%s", authName(c.Local.Auth), hint)
		}
	case c.Local.ID == "" && !p.hasError(local.field("id")):
		local.fail("id", "required with %s authentication; give e.g. @vpn.example.org, an email address or an IP address", c.Local.Auth)
	}
	if isEAPPeer(c.Local.Auth) && c.Local.Auth != "eap-tls" && len(c.Local.Password) == 0 && len(c.Local.Certs) == 0 &&
		!p.hasError(local.field("password")) && !p.hasError(local.field("password_file")) {
		local.fail("password", "required for %s: the EAP password (or password_file, a file whose first line is it)", c.Local.Auth)
	}
	// EAP-only authentication (RFC 5998): the gateway proves itself by
	// the EAP method's key alone. It is eap-only on both ends: the
	// gateway's local side, the end user's remote side.
	switch {
	case p.hasError(local.field("auth")) || p.hasError(remote.field("auth")):
	case isEAPPeer(c.Local.Auth) && c.Remote.Auth == "eap":
		remote.fail("auth", "one side of an EAP authentication proves itself by psk or pubkey (RFC 7296 §2.16); for a gateway that authenticates by EAP alone (RFC 5998) write remote.auth: eap-only")
	case c.Local.Auth == "eap-only" && c.Remote.Auth != "eap":
		local.fail("auth", "eap-only is the gateway's side of EAP-only authentication (RFC 5998): it needs remote.auth: eap-radius; an end user writes remote.auth: eap-only")
	case c.Remote.Auth == "eap-only" && !isEAPPeer(c.Local.Auth):
		remote.fail("auth", "eap-only is the end user's side of EAP-only authentication (RFC 5998): it needs local.auth eap-tls (or eap with a certificate); a gateway writes local.auth: eap-only")
	case c.Remote.Auth == "eap-only" && (c.Local.Auth == "eap-mschapv2" || c.Local.Auth == "eap-md5" || c.Local.Auth == "eap" && len(c.Local.Certs) == 0):
		local.fail("auth", "EAP-only authentication (RFC 5998) needs a method that authenticates the EAP server and derives a key; %s does not: use eap-tls with a certificate", c.Local.Auth)
	}
	if !p.hasError(remote.field("auth")) && c.Remote.Auth == "pubkey" && len(c.Remote.CACerts) == 0 && !p.hasError(remote.field("cacerts")) {
		remote.fail("cacerts", "required for pubkey authentication: the CA certificate file (PEM) that issued the peer's certificate%s", hint)
	}
	// RFC 7296 §2.16 has EAP used "in conjunction with" a responder
	// authenticated by its signature; a pre-shared key works (labs,
	// benchmarks) but is said, at the gateway's auth.
	switch {
	case p.hasError(local.field("auth")) || p.hasError(remote.field("auth")):
	case isEAPPeer(c.Local.Auth) && c.Remote.Auth == "psk":
		p.warn(remote.at("auth"), remote.field("auth"), "%s", eapWithPSK)
	case c.Remote.Auth == "eap" && c.Local.Auth == "psk":
		p.warn(local.at("auth"), local.field("auth"), "%s", eapWithPSK)
	}
	if (c.Local.Auth == "psk" || c.Remote.Auth == "psk") && len(c.PSK) == 0 && !p.hasError(f.field("psk")) {
		side := "local"
		if c.Local.Auth != "psk" {
			side = "remote"
		}
		f.fail("psk", "required because %s.auth is psk; give the shared secret (0x... for hex, 0s... for base64)", side)
	}
}

func (p *parser) ikeTimes(f *fields, c *ConnConfig) {
	c.RekeyTime = 4 * time.Hour
	if d, ok := f.duration("rekey_time"); ok {
		c.RekeyTime = d
	}
	c.ReauthTime, _ = f.duration("reauth_time")
	// strongSwan: 10% of the longer soft time.
	tenth := max(c.RekeyTime, c.ReauthTime) / 10
	var set bool
	if c.OverTime, set = f.duration("over_time"); !set {
		c.OverTime = tenth
	}
	if c.RandTime, set = f.duration("rand_time"); !set {
		c.RandTime = tenth
	} else if shortest := minPositive(c.RekeyTime, c.ReauthTime); c.RandTime > 0 && shortest > 0 && c.RandTime >= shortest {
		f.fail("rand_time", "%v must be shorter than rekey_time and reauth_time (%v): it is subtracted from them", c.RandTime, shortest)
	}
	c.DPDDelay, _ = f.duration("dpd_delay")
	c.LivenessWindow, _ = f.duration("liveness_window")
}

func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

func (p *parser) child(e entry) *ChildConfig {
	f := p.fields(e.val, e.field, e.line, childSchema)
	ch := &ChildConfig{Name: e.name, Line: e.line}
	ch.LocalTS = p.selectors(f, "local_ts")
	ch.RemoteTS = p.selectors(f, "remote_ts")
	ch.ESP = p.proposals(f, "esp_proposals", proposal.ParseESPList, proposal.DefaultESP)
	mode := f.enum("mode", "tunnel", "mode", []string{"tunnel", "transport"}, map[string]string{
		"pass": "shunt policies are not supported",
		"drop": "shunt policies are not supported",
		"beet": "BEET mode is not supported",
	})
	if mode == "transport" {
		ch.Mode = ike.Transport
	}

	ch.RekeyTime = time.Hour
	if d, ok := f.duration("rekey_time"); ok {
		ch.RekeyTime = d
	}
	life, lifeSet := f.duration("life_time")
	if lifeSet && life > 0 && ch.RekeyTime > 0 && life <= ch.RekeyTime {
		f.fail("life_time", "%v must be longer than rekey_time (%v), or the SA expires before it is rekeyed", life, ch.RekeyTime)
	}
	ch.LifeTime = life
	if rnd, ok := f.duration("rand_time"); ok {
		if rnd > 0 && ch.RekeyTime > 0 && rnd >= ch.RekeyTime {
			f.fail("rand_time", "%v must be shorter than rekey_time (%v): it is subtracted from it", rnd, ch.RekeyTime)
		}
		ch.RandTime = rnd
	} else if lifeSet && life > ch.RekeyTime && ch.RekeyTime > 0 {
		ch.RandTime = life - ch.RekeyTime // strongSwan's default
	} else {
		ch.RandTime = ch.RekeyTime / 10
	}

	ch.RekeyBytes, _ = f.size("rekey_bytes")
	if n, ok := f.size("life_bytes"); ok {
		if n > 0 && ch.RekeyBytes > 0 && n <= ch.RekeyBytes {
			f.fail("life_bytes", "%d must be more than rekey_bytes (%d), or the SA expires before it is rekeyed", n, ch.RekeyBytes)
		}
		ch.LifeBytes = n
	} else if ch.RekeyBytes > 0 {
		ch.LifeBytes = ch.RekeyBytes + min(ch.RekeyBytes/10, math.MaxUint64-ch.RekeyBytes)
	}
	ch.StartAction = f.enum("start_action", "start", "start action", []string{"start", "none", "trap"}, nil)
	ch.startActionLine = f.at("start_action")
	return ch
}

// selectors checks traffic selectors as written; Build parses them again.
func (p *parser) selectors(f *fields, key string) []string {
	items, set := f.list(key)
	if !set {
		return []string{"dynamic"}
	}
	if len(items) == 0 && !p.hasError(f.field(key)) {
		f.fail(key, "needs at least one traffic selector, or dynamic")
	}
	var out []string
	for _, it := range items {
		if strings.EqualFold(it.s, "dynamic") {
			if len(items) > 1 {
				p.fail(it.line, it.field, "dynamic stands alone; it cannot be combined with other selectors")
				continue
			}
			out = append(out, "dynamic")
			continue
		}
		if _, err := ts.Parse(it.s); err != nil {
			p.fail(it.line, it.field, "%v", err)
			continue
		}
		out = append(out, it.s)
	}
	return out
}

// tcpPorts are the TCP ports a gateway accepts TCP-encapsulated IKE and
// ESP on (RFC 9329 §2: 4500, and any other such as 443). None by
// default: a listening TCP port is something an operator opens.
func (p *parser) tcpPorts(top *fields, c *Config) []uint16 {
	items, set := top.list("tcp_ports")
	if !set {
		return nil
	}
	var out []uint16
	for _, it := range items {
		n, err := strconv.ParseUint(it.s, 10, 16)
		switch {
		case err != nil || n == 0:
			p.fail(it.line, it.field, "%q is not a TCP port (1 to 65535); RFC 9329 wants 4500 among them", it.s)
		case slices.Contains(out, uint16(n)):
			p.fail(it.line, it.field, "%d is listed twice", n)
		default:
			out = append(out, uint16(n))
		}
	}
	if len(out) == 0 && !p.hasError("tcp_ports") {
		top.fail("tcp_ports", "is empty; leave it out for no TCP, or list 4500 (RFC 9329 §2)")
	}
	return out
}

// connTCP reads a connection's TCP encapsulation (RFC 9329): when its
// initiator uses it, the peer's TCP port, and how long UDP gets first.
func (p *parser) connTCP(f *fields, c *ConnConfig) {
	switch f.enum("tcp", "never", "TCP encapsulation", []string{"never", "fallback", "always"}, nil) {
	case "fallback":
		c.TCP = ike.TCPFallback
	case "always":
		c.TCP = ike.TCPAlways
	}
	// Unset, 0: the engine's defaults (4500, ike.DefaultTCPFallbackAfter).
	c.TCPPort = f.port("tcp_port", 0)
	c.TCPFallbackAfter = f.durationIn("tcp_fallback_after", 0, time.Second, 10*time.Minute,
		"UDP needs a retransmission before TCP, RFC 9329 §5.1")
	if c.TCP != ike.TCPFallback && f.has("tcp_fallback_after") {
		f.fail("tcp_fallback_after", "applies to tcp: fallback only (this connection has tcp: %s)", c.TCP)
	}
	if c.TCP == ike.TCPNever && f.has("tcp_port") {
		f.fail("tcp_port", "applies when the connection uses TCP: set tcp: fallback or always")
	}
}
