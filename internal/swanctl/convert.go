package swanctl

import (
	"bytes"
	"crypto"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/mifike/mifike/internal/ikeauth"
	"gopkg.in/yaml.v3"
)

// Warning is a setting of the swanctl.conf that has no equivalent in
// mifike, or was converted with a difference worth knowing.
type Warning struct {
	File  string
	Line  int
	Field string // dotted, as in swanctl.conf: connections.home.children.net.updown
	Msg   string
}

func (w Warning) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", w.File, w.Line, w.Field, w.Msg)
}

// Convert turns a parsed swanctl.conf into mifike's YAML. Dir is the
// swanctl directory (the file's), where strongSwan looks for relative
// certificate (x509/), CA (x509ca/) and key (private/, ...) files; the
// YAML names them by absolute path. The warnings are sorted by file and
// line.
func Convert(root *Section, dir string) ([]byte, []Warning) {
	c := &converter{dir: dir, secrets: root.Sub("secrets")}
	out := mapping()
	for _, k := range root.Keys {
		c.warn(k.File, k.Line, k.Name, "a top-level key has no meaning in swanctl.conf")
	}
	if pools := root.Sub("pools"); pools != nil {
		if n := c.pools(pools); len(n.Content) > 0 {
			add(out, "pools", n)
		}
	}
	conns := mapping()
	if cs := root.Sub("connections"); cs != nil {
		for _, k := range cs.Keys {
			c.warn(k.File, k.Line, "connections."+k.Name, "not a connection (a section is)")
		}
		for _, s := range cs.Sections {
			add(conns, s.Name, c.conn(s, cs))
		}
	}
	add(out, "connections", conns)
	for _, s := range root.Sections {
		switch s.Name {
		case "connections", "pools":
		case "secrets":
			c.checkSecrets(s)
		case "authorities":
			c.warn(s.File, s.Line, s.Name, "mifike has no authorities section; CA certificates go in each connection's remote.cacerts, CRLs in remote.crls, the OCSP responder in remote.ocsp_uri")
		default:
			c.warn(s.File, s.Line, s.Name, "not a swanctl.conf section")
		}
	}
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{out},
		HeadComment: "Converted from swanctl.conf by mifike import-swanctl; check it with mifike daemon --check."}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		panic(err) // nodes built here always encode
	}
	data := buf.Bytes()
	sort.SliceStable(c.warns, func(i, j int) bool {
		if c.warns[i].File != c.warns[j].File {
			return c.warns[i].File < c.warns[j].File
		}
		return c.warns[i].Line < c.warns[j].Line
	})
	return data, c.warns
}

type converter struct {
	dir     string
	secrets *Section
	warns   []Warning
	usedSec map[*Section]bool
}

func (c *converter) warn(file string, line int, field, format string, args ...any) {
	c.warns = append(c.warns, Warning{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *converter) warnKey(k *Key, path, format string, args ...any) {
	c.warn(k.File, k.Line, path+"."+k.Name, format, args...)
}

// YAML nodes, in the order written.
func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

func seq(vs []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, v := range vs {
		n.Content = append(n.Content, scalar(v))
	}
	return n
}

// quoted is a scalar that stays a string whatever it reads like (a
// secret "yes" or "0123").
func quoted(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: v, Style: yaml.DoubleQuotedStyle}
}

func add(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, scalar(key), v)
}

func has(m *yaml.Node, key string) bool {
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// list splits a swanctl list: comma (or blank) separated.
func list(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

func (c *converter) pools(s *Section) *yaml.Node {
	out := mapping()
	for _, k := range s.Keys {
		c.warnKey(k, "pools", "not a pool (a section is)")
	}
	for _, p := range s.Sections {
		path := "pools." + p.Name
		pm := mapping()
		for _, k := range p.Keys {
			switch k.Name {
			case "addrs":
				if pfx, err := netip.ParsePrefix(k.Value); err == nil {
					add(pm, "addrs", scalar(pfx.String()))
				} else if pfx, ok := rangePrefix(k.Value); ok {
					add(pm, "addrs", scalar(pfx.String()))
					c.warnKey(k, path, "mifike pools are prefixes: the range %s became %s, which may hand out more addresses", k.Value, pfx)
				} else {
					c.warnKey(k, path, "%q is neither a prefix nor a range of addresses; the pool is left out", k.Value)
					pm = nil
				}
			case "dns":
				add(pm, "dns", seq(list(k.Value)))
			default:
				c.warnKey(k, path, "no equivalent in mifike (a pool has addrs and dns)")
			}
			if pm == nil {
				break
			}
		}
		for _, sub := range p.Sections {
			c.warn(sub.File, sub.Line, path+"."+sub.Name, "no equivalent in mifike")
		}
		if pm != nil && has(pm, "addrs") {
			add(out, p.Name, pm)
		} else if pm != nil {
			c.warn(p.File, p.Line, path, "no addrs; the pool is left out")
		}
	}
	return out
}

// rangePrefix is the smallest prefix holding the range "a-b".
func rangePrefix(v string) (netip.Prefix, bool) {
	a, b, ok := strings.Cut(v, "-")
	if !ok {
		return netip.Prefix{}, false
	}
	lo, err1 := netip.ParseAddr(strings.TrimSpace(a))
	hi, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo.Is4() != hi.Is4() {
		return netip.Prefix{}, false
	}
	for bits := lo.BitLen(); bits >= 0; bits-- {
		p, _ := lo.Prefix(bits)
		if p.Contains(hi) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// connection keys with the same name and meaning in mifike.
var sameConnKeys = map[string]bool{
	"proposals": true, "mobike": true, "encap": true, "dpd_delay": true, "rekey_time": true,
	"reauth_time": true, "over_time": true, "rand_time": true, "remote_port": true,
}

// connection keys without an equivalent, and why.
var connWhy = map[string]string{
	"local_port":   "the local port is mifike's top-level port (and port_nat_t)",
	"keyingtries":  "not supported; with start_action start the daemon keeps initiating",
	"dpd_timeout":  "dpd_timeout is IKEv1; IKEv2 gives up after the retransmissions (mifike's retransmit section)",
	"send_cert":    "not supported; mifike always sends its certificate",
	"send_certreq": "not supported; mifike sends a certificate request when remote.cacerts is set",
	"pull":         "pull is IKEv1 mode config; vips requests addresses in IKEv2",
	"aggressive":   "aggressive mode is IKEv1",
	"dscp":         "not supported",
	"if_id_in":     "not supported (mifike makes its own XFRM interface per VPN)",
	"if_id_out":    "not supported (mifike makes its own XFRM interface per VPN)",
	"mediation":    "mediation (IKEv2 mediation extension) is not supported",
	"ppk_id":       "post-quantum preshared keys (RFC 8784) are not supported",
	"ppk_required": "post-quantum preshared keys (RFC 8784) are not supported",
	"ocsp":         "OCSP requests in IKE (RFC 4806) are not supported; remote.revocation fetches OCSP over HTTP",
	"split":        "not supported",
}

func (c *converter) conn(s *Section, parent *Section) *yaml.Node {
	path := "connections." + s.Name
	m := mapping()
	if len(s.Refs) > 0 {
		c.warn(s.File, s.Line, path, "inherits from %s: the settings of those sections are not merged in; copy them", strings.Join(s.Refs, ", "))
	}
	var local, remote *Section
	peerAddr := false
	for _, k := range s.Keys {
		switch {
		case k.Name == "version":
			if k.Value == "1" {
				c.warnKey(k, path, "IKEv1 is not supported; converted as IKEv2")
			}
		case k.Name == "local_addrs" || k.Name == "remote_addrs":
			var addrs []string
			for _, a := range list(k.Value) {
				if a == "%any" || a == "%any4" || a == "%any6" {
					continue
				}
				if ip, err := netip.ParseAddr(a); err == nil {
					addrs = append(addrs, ip.String())
				} else {
					c.warnKey(k, path, "%q: mifike takes IP addresses only (no names, prefixes or ranges); left out", a)
				}
			}
			if len(addrs) > 0 {
				add(m, k.Name, seq(addrs))
			}
			if k.Name == "remote_addrs" {
				peerAddr = len(addrs) > 0
			}
		case sameConnKeys[k.Name]:
			if k.Name == "proposals" && k.Value == "default" {
				continue
			}
			add(m, k.Name, scalar(k.Value))
		case k.Name == "vips" || k.Name == "pools":
			add(m, k.Name, seq(list(k.Value)))
		case k.Name == "fragmentation":
			switch k.Value {
			case "yes", "accept":
				// accept: strongSwan fragments only when the peer
				// announces support, as mifike does with yes.
			case "no":
				add(m, "fragmentation", scalar("no"))
			case "force":
				c.warnKey(k, path, "mifike does not fragment IKE_SA_INIT; converted as yes")
			default:
				c.warnKey(k, path, "%q is not a fragmentation setting", k.Value)
			}
		case k.Name == "unique":
			switch k.Value {
			case "replace":
			case "no", "never":
				add(m, "unique", scalar("no"))
			case "keep":
				c.warnKey(k, path, "keep is not supported; converted as no (new SAs are not refused)")
				add(m, "unique", scalar("no"))
			default:
				c.warnKey(k, path, "%q is not a uniqueness policy", k.Value)
			}
		case k.Name == "childless":
			switch k.Value {
			case "allow":
			case "never":
				add(m, "childless", scalar("no"))
			default:
				c.warnKey(k, path, "childless %s is not supported; mifike allows childless IKE SAs (RFC 6023) without requiring them", k.Value)
			}
		default:
			if why, ok := connWhy[k.Name]; ok {
				c.warnKey(k, path, "%s", why)
			} else {
				c.warnKey(k, path, "no equivalent in mifike")
			}
		}
	}
	var children *Section
	for _, sub := range s.Sections {
		switch {
		case sub.Name == "local" || sub.Name == "remote":
			if sub.Name == "local" {
				local = sub
			} else {
				remote = sub
			}
		case strings.HasPrefix(sub.Name, "local") || strings.HasPrefix(sub.Name, "remote"):
			side := "local"
			if strings.HasPrefix(sub.Name, "remote") {
				side = "remote"
			}
			if sub.Name == side+"-1" && (side == "local" && local == nil || side == "remote" && remote == nil) {
				if side == "local" {
					local = sub
				} else {
					remote = sub
				}
				continue
			}
			c.warn(sub.File, sub.Line, path+"."+sub.Name, "multiple authentication rounds (RFC 4739) are not supported; only the first round is converted")
		case sub.Name == "children":
			children = sub
		default:
			c.warn(sub.File, sub.Line, path+"."+sub.Name, "no equivalent in mifike")
		}
	}
	var localID, remoteID, localAuth, remoteAuth string
	if local != nil {
		n, id, auth := c.side(local, path+"."+local.Name, true)
		add(m, "local", n)
		localID, localAuth = id, auth
	}
	if remote != nil {
		n, id, auth := c.side(remote, path+"."+remote.Name, false)
		add(m, "remote", n)
		remoteID, remoteAuth = id, auth
	}
	if localAuth == "psk" || remoteAuth == "psk" {
		if sec := c.secret("ike", []string{localID, remoteID}); sec != "" {
			add(m, "psk", quoted(sec))
		} else {
			c.warn(s.File, s.Line, path, "psk authentication but no ike secret in secrets for %s or %s", or(localID, "%any"), or(remoteID, "%any"))
		}
	}
	if localAuth != "" && strings.HasPrefix(localAuth, "eap") && localAuth != "eap-only" && local != nil {
		eapID := localID
		if k, ok := local.Get("eap_id"); ok {
			eapID = k.Value
		}
		if sec := c.secret("eap", []string{eapID, localID}); sec != "" {
			ln := m.Content[slices.IndexFunc(m.Content, func(n *yaml.Node) bool { return n.Value == "local" })+1]
			add(ln, "password", quoted(sec))
		}
	}
	if children != nil {
		cm, start, dpd := c.children(children, path, peerAddr)
		switch {
		case start && !peerAddr:
			c.warn(children.File, children.Line, path+".children", "a child has start_action start, but mifike initiates only to an IP address in remote_addrs; the connection is not started")
		case start:
			add(m, "start_action", scalar("start"))
		}
		if dpd != "" {
			add(m, "dpd_action", scalar(dpd))
		}
		add(m, "children", cm)
	}
	return m
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// authMethod maps swanctl's auth to mifike's, "" when there is none.
func (c *converter) authMethod(k *Key, path string, local bool) string {
	v := k.Value
	switch {
	case v == "pubkey" || v == "psk" || v == "eap" || v == "eap-radius":
		return v
	case strings.HasPrefix(v, "rsa") || strings.HasPrefix(v, "ecdsa") || strings.HasPrefix(v, "pubkey-") || strings.HasPrefix(v, "ed25519") || strings.HasPrefix(v, "ed448"):
		c.warnKey(k, path, "%s: the signature scheme follows the certificate's key in mifike (RFC 7427); converted as pubkey", v)
		return "pubkey"
	case local && (v == "eap-mschapv2" || v == "eap-md5" || v == "eap-tls"):
		return v
	case !local && strings.HasPrefix(v, "eap-"):
		c.warnKey(k, path, "mifike passes the peer's EAP to the radius section's servers (whatever the method); converted as eap")
		return "eap"
	case strings.HasPrefix(v, "xauth"):
		c.warnKey(k, path, "XAuth is IKEv1; not converted")
		return ""
	}
	c.warnKey(k, path, "%s is not supported by mifike", v)
	return ""
}

func (c *converter) side(s *Section, path string, local bool) (*yaml.Node, string, string) {
	m := mapping()
	auth := "pubkey"
	if k, ok := s.Get("auth"); ok {
		auth = c.authMethod(k, path, local)
		if auth != "" && auth != "pubkey" {
			add(m, "auth", scalar(auth))
		}
	}
	var id string
	for _, k := range s.Keys {
		switch {
		case k.Name == "auth":
		case k.Name == "id":
			id = k.Value
			add(m, "id", quoted(k.Value))
		case local && k.Name == "certs":
			var paths []string
			for _, f := range list(k.Value) {
				paths = append(paths, c.file("x509", f))
			}
			add(m, "certs", seq(paths))
			if key := c.keyFor(paths); key != "" {
				add(m, "key", scalar(key))
			} else if len(paths) > 0 {
				guess := filepath.Join(c.dir, "private", strings.TrimSuffix(filepath.Base(paths[0]), filepath.Ext(paths[0]))+".key")
				add(m, "key", scalar(guess))
				c.warnKey(k, path, "strongSwan finds the private key by the certificate; mifike needs local.key: no key in %s matched, so %s is a guess", filepath.Join(c.dir, "private"), guess)
			}
		case !local && k.Name == "cacerts":
			var paths []string
			for _, f := range list(k.Value) {
				paths = append(paths, c.file("x509ca", f))
			}
			add(m, "cacerts", seq(paths))
		case !local && k.Name == "revocation":
			add(m, "revocation", scalar(k.Value))
		case local && (k.Name == "eap_id" || k.Name == "aaa_id"):
			add(m, k.Name, quoted(k.Value))
		case !local && k.Name == "eap_id":
			if auth == "eap" || auth == "eap-radius" {
				if k.Value != "%any" {
					c.warnKey(k, path, "mifike asks the peer its EAP identity (eap_id: ask) and does not pin it; RADIUS decides")
				}
			} else {
				c.warnKey(k, path, "only with EAP")
			}
		case !local && k.Name == "certs":
			c.warnKey(k, path, "pinning the peer's certificate is not supported; trust its CA with remote.cacerts")
		case local && k.Name == "cacerts":
			c.warnKey(k, path, "local.cacerts is not used; append intermediate CA certificates to local.certs after our own")
		case k.Name == "pubkeys":
			c.warnKey(k, path, "raw public keys are not supported")
		default:
			c.warnKey(k, path, "no equivalent in mifike")
		}
	}
	if !local && auth == "pubkey" {
		// swanctl's default is relaxed (its revocation plugin), mifike's
		// none: written out, the conversion checks as strongSwan did.
		// strongSwan loads every CRL in x509crl/.
		if !has(m, "revocation") {
			add(m, "revocation", scalar("relaxed"))
		}
		if crls := c.allIn("x509crl"); len(crls) > 0 {
			add(m, "crls", seq(crls))
		}
	}
	if !local && auth == "pubkey" && !has(m, "cacerts") {
		// strongSwan trusts every CA in x509ca/; mifike wants them named.
		if cas := c.allIn("x509ca"); len(cas) > 0 {
			add(m, "cacerts", seq(cas))
			c.warn(s.File, s.Line, path, "no cacerts: strongSwan trusts every CA in x509ca/, so all %d of them are listed", len(cas))
		} else {
			c.warn(s.File, s.Line, path, "pubkey authentication needs remote.cacerts in mifike; none found in %s", filepath.Join(c.dir, "x509ca"))
		}
	}
	for _, sub := range s.Sections {
		c.warn(sub.File, sub.Line, path+"."+sub.Name, "no equivalent in mifike")
	}
	return m, id, auth
}

// file is a credential file as strongSwan finds it: relative names are in
// the swanctl directory's sub.
func (c *converter) file(sub, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(c.dir, sub, name)
}

func (c *converter) allIn(sub string) []string {
	entries, err := os.ReadDir(filepath.Join(c.dir, sub))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			out = append(out, filepath.Join(c.dir, sub, e.Name()))
		}
	}
	return out
}

// keyFor finds, as charon does, the private key of the first certificate
// among the swanctl directory's key folders; "" if none matches (or the
// files cannot be read here).
func (c *converter) keyFor(certs []string) string {
	if len(certs) == 0 {
		return ""
	}
	data, err := os.ReadFile(certs[0])
	if err != nil {
		return ""
	}
	cs, err := ikeauth.LoadCertificates(data)
	if err != nil || len(cs) == 0 {
		return ""
	}
	for _, sub := range []string{"private", "rsa", "ecdsa", "pkcs8"} {
		for _, path := range c.allIn(sub) {
			kd, err := os.ReadFile(path)
			if err != nil || len(kd) > 1<<20 {
				continue
			}
			key, err := ikeauth.LoadPrivateKey(kd)
			if err != nil {
				continue
			}
			if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(cs[0].PublicKey) {
				return path
			}
		}
	}
	return ""
}

// secret is the secret of a secrets section of kind (ike, eap) whose ids
// name the most of ids; a section with no id matches any, as in
// strongSwan, but less well than one naming an id.
func (c *converter) secret(kind string, ids []string) string {
	if c.secrets == nil {
		return ""
	}
	best, score := "", -1
	var bestSec *Section
	for _, s := range c.secrets.Sections {
		if !strings.HasPrefix(s.Name, kind) {
			continue
		}
		sec, ok := s.Get("secret")
		if !ok {
			continue
		}
		n, any := 0, true
		for _, k := range s.Keys {
			if k.Name == "id" || strings.HasPrefix(k.Name, "id-") {
				any = false
				if k.Value != "" && slices.Contains(ids, k.Value) {
					n++
				}
			}
		}
		if !any && n == 0 {
			continue
		}
		if n > score {
			best, score, bestSec = sec.Value, n, s
		}
	}
	if bestSec != nil {
		if c.usedSec == nil {
			c.usedSec = map[*Section]bool{}
		}
		c.usedSec[bestSec] = true
	}
	return best
}

// checkSecrets warns about the secrets that have no place in mifike.
func (c *converter) checkSecrets(s *Section) {
	for _, k := range s.Keys {
		c.warnKey(k, "secrets", "not a secret (a section is)")
	}
	for _, sec := range s.Sections {
		path := "secrets." + sec.Name
		switch {
		case strings.HasPrefix(sec.Name, "ike") || strings.HasPrefix(sec.Name, "eap"):
			if !c.usedSec[sec] {
				c.warn(sec.File, sec.Line, path, "no converted connection uses this secret")
			}
		case strings.HasPrefix(sec.Name, "xauth"):
			c.warn(sec.File, sec.Line, path, "XAuth is IKEv1")
		case strings.HasPrefix(sec.Name, "private") || strings.HasPrefix(sec.Name, "rsa") || strings.HasPrefix(sec.Name, "ecdsa") || strings.HasPrefix(sec.Name, "pkcs"):
			c.warn(sec.File, sec.Line, path, "mifike reads unencrypted PEM keys named by local.key; decrypt the key and name it there")
		default:
			c.warn(sec.File, sec.Line, path, "no equivalent in mifike")
		}
	}
}

// child keys with the same name and meaning in mifike.
var sameChildKeys = map[string]bool{
	"esp_proposals": true, "rekey_time": true, "life_time": true, "rand_time": true, "rekey_bytes": true, "life_bytes": true,
}

var childWhy = map[string]string{
	"ah_proposals":  "AH is not supported",
	"updown":        "updown scripts are not supported; `mifike events` reports SAs coming and going",
	"close_action":  "not supported",
	"inactivity":    "not supported",
	"hostaccess":    "not supported",
	"policies":      "mifike always installs policies",
	"ipcomp":        "IPComp is not supported",
	"reqid":         "not supported (mifike picks its own)",
	"priority":      "not supported",
	"interface":     "not supported",
	"rekey_packets": "packet limits are not supported; use rekey_bytes",
	"life_packets":  "packet limits are not supported; use life_bytes",
	"hw_offload":    "not supported",
	"replay_window": "not supported (mifike's replay window is fixed)",
}

func (c *converter) children(s *Section, connPath string, peerAddr bool) (*yaml.Node, bool, string) {
	out := mapping()
	start, dpd := false, ""
	var idle []*yaml.Node // children strongSwan does not start
	for _, ch := range s.Sections {
		path := connPath + ".children." + ch.Name
		m := mapping()
		started := false
		var trapKey *Key // start_action with trap
		for _, k := range ch.Keys {
			switch {
			case k.Name == "local_ts" || k.Name == "remote_ts":
				add(m, k.Name, seq(list(k.Value)))
			case sameChildKeys[k.Name]:
				if k.Name == "esp_proposals" && k.Value == "default" {
					continue
				}
				add(m, k.Name, scalar(k.Value))
			case k.Name == "mode":
				switch k.Value {
				case "tunnel":
				case "transport":
					add(m, "mode", scalar("transport"))
				default:
					c.warnKey(k, path, "mode %s is not supported; converted as tunnel", k.Value)
				}
			case k.Name == "start_action":
				for _, a := range strings.Split(k.Value, "|") {
					switch a {
					case "start":
						start, started = true, true
					case "trap":
						trapKey = k
					case "none":
					}
				}
			case k.Name == "dpd_action":
				a := k.Value
				switch a {
				case "clear", "restart", "none":
				case "trap":
					// A child with start_action trap keeps its trap
					// when DPD clears its SAs; mifike has no DPD-only
					// trap.
					c.warnKey(k, path, "mifike has no dpd_action trap (a child with start_action trap keeps its trap after DPD); converted as restart")
					a = "restart"
				default:
					c.warnKey(k, path, "%q is not a DPD action", a)
					continue
				}
				if dpd != "" && dpd != a {
					c.warnKey(k, path, "mifike has one dpd_action per connection; %s from an earlier child is kept", dpd)
				} else if a != "clear" {
					dpd = a
				}
			default:
				if why, ok := childWhy[k.Name]; ok {
					c.warnKey(k, path, "%s", why)
				} else {
					c.warnKey(k, path, "no equivalent in mifike")
				}
			}
		}
		switch {
		case trapKey == nil:
		case started:
			c.warnKey(trapKey, path, "a mifike child either starts or traps (start_action start or trap); converted as start, which sets the SA up at start and not again on traffic")
		case !peerAddr:
			c.warnKey(trapKey, path, "a trap initiates to the peer's IP address when traffic comes, and remote_addrs has none; converted as none (mifike initiate CONN --child %s)", ch.Name)
		default:
			add(m, "start_action", scalar("trap"))
			started = true // not an idle child: it comes up on traffic
		}
		for _, sub := range ch.Sections {
			c.warn(sub.File, sub.Line, path+"."+sub.Name, "no equivalent in mifike")
		}
		if !started {
			idle = append(idle, m)
		}
		add(out, ch.Name, m)
	}
	if start {
		// In strongSwan only the started children come up (none is
		// the default); in mifike a started connection brings up every
		// child but those with start_action none.
		for _, m := range idle {
			add(m, "start_action", scalar("none"))
		}
	}
	return out, start, dpd
}
