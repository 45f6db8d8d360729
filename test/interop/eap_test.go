package interop

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/lab"
	"github.com/mifike/mifike/internal/radiuslab"
)

// EAP in IKE_AUTH (RFC 7296 §2.16) between mifike and strongSwan 5.9.8,
// with a real FreeRADIUS (internal/radiuslab) behind whichever side is
// the gateway:
//
//   - TestEAPStrongSwanClient: charon is the EAP peer (eap-mschapv2,
//     eap-md5, eap-tls, eap-ttls); mifike is the gateway, passing EAP to
//     RADIUS (remote.auth: eap) and proving itself by PSK or certificate.
//   - TestEAPStrongSwanGateway: mifike is the EAP peer (eap-mschapv2,
//     eap-md5, eap-tls); charon is the gateway with eap-radius to the
//     same kind of FreeRADIUS. strongSwan offers no CLONE_IKE_SA_SUPPORTED
//     (RFC 7791 §5.1), so mifike's interface manager authenticates once
//     per interface instead of cloning.
//
// Both AUTH payloads after EAP are keyed with the MSK (or SK_pi/SK_pr
// for EAP-MD5, which has none), so an IKE SA that comes up proves both
// ends derived the same key. strongSwan's native EAP-TLS server is not
// tested: its TLS stack has no extended master secret (RFC 7627), which
// mifike's TLS 1.2 peer requires; eap-radius to FreeRADIUS is what a
// strongSwan gateway uses here.

// eapPlugins are the strongSwan plugins EAP needs (Debian:
// libcharon-extra-plugins, libcharon-extauth-plugins for eap-mschapv2).
var eapPlugins = []string{"eap-identity", "eap-md5", "eap-mschapv2", "eap-tls", "eap-ttls", "eap-radius", "md5"}

// eapCharonConf is strongswanConf with the EAP plugins loaded.
func eapCharonConf(dir string, extra ...string) string {
	conf := strongswanConf(dir, extra...)
	const last = " vici attr updown\n"
	if !strings.Contains(conf, last) {
		panic("strongswanConf's plugin list changed")
	}
	return strings.Replace(conf, last, " vici attr updown "+strings.Join(eapPlugins, " ")+"\n", 1)
}

// requireEAP skips without root, charon and its EAP plugins, or
// FreeRADIUS.
func requireEAP(t *testing.T) {
	t.Helper()
	requireRoot(t)
	requireTools(t, charonPath, "swanctl")
	for _, p := range eapPlugins {
		if _, err := os.Stat("/usr/lib/ipsec/plugins/libstrongswan-" + p + ".so"); err != nil {
			t.Skipf("strongSwan plugin %s not installed (Debian packages libcharon-extra-plugins, libcharon-extauth-plugins)", p)
		}
	}
	if err := radiuslab.Available(); err != nil {
		t.Skip(err)
	}
}

// eapUsers are the RADIUS accounts: one per password method, so the
// server's log and accounting tell the subtests apart. EAP-TLS needs
// none: FreeRADIUS accepts any certificate of its CA.
var eapUsers = []radiuslab.User{
	{Name: "alice", Password: "alice-pw-mschapv2"},
	{Name: "bob", Password: "bob-pw-md5"},
	{Name: "carol", Password: "carol-pw-ttls"},
}

func eapPassword(user string) string {
	for _, u := range eapUsers {
		if u.Name == user {
			return u.Password
		}
	}
	return ""
}

// startRADIUS runs FreeRADIUS in namespace ns on 127.0.0.1:1812/1813.
func startRADIUS(t *testing.T, ns string) *radiuslab.Server {
	t.Helper()
	l, err := lab.New(context.Background(), "mfkr")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { l.Close() })
	return radiuslab.Start(t, radiuslab.Options{Lab: l, NS: ns, Address: netip.MustParseAddr("127.0.0.1"),
		Users: eapUsers, StartTimeout: time.Minute})
}

// radiusAccepted waits until FreeRADIUS has logged n accepted
// authentications of user ("Login OK: [user]", log.auth) and, when
// acct, n Accounting-Request Starts with that User-Name (RFC 2866).
// The names match at their end: strongSwan's EAP identity for EAP-TLS is
// the DER encoding of its certificate's DN, which FreeRADIUS prints
// escaped, ending in the CN.
func radiusAccepted(t *testing.T, srv *radiuslab.Server, user string, n int, acct bool) {
	t.Helper()
	logins := func() int {
		k := 0
		for _, l := range strings.Split(srv.Output(), "\n") {
			_, name, ok := strings.Cut(l, "Login OK: [")
			if name, _, _ = strings.Cut(name, "]"); ok && strings.HasSuffix(name, user) {
				k++
			}
		}
		return k
	}
	started := func() int {
		recs, _ := srv.AccountingRecords()
		k := 0
		for _, r := range recs {
			if strings.HasSuffix(r.Get("User-Name"), user) && r.Get("Acct-Status-Type") == "Start" {
				k++
			}
		}
		return k
	}
	if !waitFor(100, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		return logins() >= n && (!acct || started() >= n)
	}) {
		recs, _ := srv.AccountingRecords()
		t.Fatalf("FreeRADIUS: %d logins of %q (want %d), %d accounting Starts; records %v\n%s",
			logins(), user, n, started(), recs, tail([]byte(srv.Output()), 30))
	}
}

// upOne waits until d has exactly one established IKE SA of conn with
// one Child SA and returns it.
func upOne(t *testing.T, d *daemon, conn string, more ...string) sa {
	t.Helper()
	var got sa
	if !waitFor(200, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		n := 0
		for _, x := range d.sas() {
			if x.Conn == conn && x.State == "ESTABLISHED" && len(x.Children) == 1 {
				got = x
				n++
			}
		}
		return n == 1
	}) {
		t.Fatalf("%s not up:\n%s\nmifike log:\n%s\n%s", conn, d.mustCtl("list-sas"), d.logTail(40), strings.Join(more, "\n"))
	}
	return got
}

// noSAs waits until neither daemon has an IKE SA left.
func noSAs(t *testing.T, d *daemon, c *charon) {
	t.Helper()
	if !waitFor(100, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		return len(d.sas()) == 0 && len(c.sas()) == 0
	}) {
		t.Fatalf("SAs left:\n%s\n%s", d.mustCtl("list-sas"), c.swanctl("--list-sas"))
	}
}

// checkEAP checks the EAP identity and method mifike shows for an SA.
func checkEAP(t *testing.T, x sa, identity, method string) {
	t.Helper()
	if x.EAPMethod != method || !strings.Contains(x.EAPIdentity, identity) {
		t.Fatalf("mifike shows %s as %q, want %s as %q", x.EAPMethod, x.EAPIdentity, method, identity)
	}
}

// charonEAPSA finds charon's established IKE SA of conn and checks that
// it agrees with mifike's x (SPIs) and, when charon is the gateway
// (eapUser set), that it names the peer's EAP identity.
func charonEAPSA(t *testing.T, c *charon, conn string, x sa, eapUser string) {
	t.Helper()
	for _, n := range c.sas() {
		if n.vals["name"] != conn || n.vals["state"] != "ESTABLISHED" {
			continue
		}
		if n.vals["initiator-spi"] != x.SPIi || n.vals["responder-spi"] != x.SPIr {
			t.Fatalf("charon's %s has SPIs %s_i %s_r, mifike's %s_i %s_r", conn, n.vals["initiator-spi"], n.vals["responder-spi"], x.SPIi, x.SPIr)
		}
		if eapUser != "" && n.vals["remote-eap-id"] != eapUser {
			t.Fatalf("charon's %s has EAP identity %q, want %q", conn, n.vals["remote-eap-id"], eapUser)
		}
		if cs := n.subs["child-sas"]; cs == nil || len(cs.order) != 1 {
			t.Fatalf("charon's %s has no Child SA:\n%s", conn, c.swanctl("--list-sas"))
		}
		return
	}
	t.Fatalf("charon has no established %s:\n%s\ncharon log:\n%s", conn, c.swanctl("--list-sas"), c.logTail(40))
}

// eapClientCase is one strongSwan EAP peer towards mifike.
type eapClientCase struct {
	method   string // strongSwan's auth: eap-mschapv2, ...
	user     string // EAP identity
	gwAuth   string // how mifike proves itself: psk or pubkey
	proposal string
	want     string // the method mifike shows
}

var eapClientCases = []eapClientCase{
	{"eap-mschapv2", "alice", "psk", "aes128-sha256-x25519", "EAP-MSCHAPv2"},
	// SHA-384's HMAC block is 128 octets: the 64-octet MSK of
	// strongSwan's eap-mschapv2 and the 32 octets from RADIUS still
	// agree (see internal/eap's mschapMSK).
	{"eap-mschapv2", "alice", "pubkey", "aes256gcm16-prfsha384-ecp384", "EAP-MSCHAPv2"},
	{"eap-md5", "bob", "pubkey", "aes128-sha256-x25519", "EAP-MD5"},
	{"eap-tls", "CN=" + radiuslab.ClientCertName, "pubkey", "aes128-sha256-x25519", "EAP-TLS"},
	{"eap-ttls", "carol", "pubkey", "aes128-sha256-x25519", "EAP-TTLS"},
	// EAP-only authentication (RFC 5998): charon always offers
	// EAP_ONLY_AUTHENTICATION; mifike's eap-only gateway has no
	// certificate and sends no AUTH until the MSK-keyed last one.
	{"eap-tls", "CN=" + radiuslab.ClientCertName, "eap-only", "aes128-sha256-x25519", "EAP-TLS"},
}

// eapOnlyUnsafe is an EAP-only attempt with a method that does not
// authenticate the server: mifike's gateway refuses it even though
// FreeRADIUS accepts the password (RFC 5998 §4).
var eapOnlyUnsafe = eapClientCase{"eap-mschapv2", "alice", "eap-only", "aes128-sha256-x25519", ""}

func (c eapClientCase) name() string { return c.method + "-" + c.gwAuth + "-" + slug(c.proposal) }

// clientSwanctl is charon's side of TestEAPStrongSwanClient: one
// initiator per case; the IKE identity names the case (mifike picks its
// connection by it).
func clientSwanctl(tp *topology) string {
	var b strings.Builder
	b.WriteString("connections {\n")
	for _, c := range append(eapClientCases, eapOnlyUnsafe) {
		fmt.Fprintf(&b, "%s { version = 2\n remote_addrs = %s\n proposals = %s\n", c.name(), tp.mAddr, c.proposal)
		fmt.Fprintf(&b, " local { auth = %s\n id = s-%s.test\n eap_id = \"%s\"\n", c.method, c.name(), c.user)
		if c.method == "eap-tls" || c.method == "eap-ttls" {
			// The TLS server is FreeRADIUS: its certificate is checked
			// for aaa_id, not for the gateway's identity.
			fmt.Fprintf(&b, " aaa_id = %s\n", radiuslab.ServerCertName)
		}
		b.WriteString(" }\n")
		switch c.gwAuth {
		case "psk":
			b.WriteString(" remote { auth = psk\n id = m-gw-psk.test }\n")
		case "eap-only":
			b.WriteString(" remote { auth = eap\n id = m-gw-eaponly.test }\n")
		default:
			b.WriteString(" remote { auth = pubkey\n id = m-gw.test\n cacerts = ca.crt }\n")
		}
		fmt.Fprintf(&b, " children { net { local_ts = %s\n remote_ts = %s\n esp_proposals = aes128gcm16 } }\n}\n", tp.sNet, tp.mNet)
	}
	b.WriteString("}\nsecrets {\n")
	for _, u := range eapUsers {
		fmt.Fprintf(&b, " eap-%s { id = %s\n secret = \"%s\" }\n", u.Name, u.Name, u.Password)
	}
	fmt.Fprintf(&b, " ike-gw { id = m-gw-psk.test\n secret = \"%s\" }\n}\n", psk)
	return b.String()
}

// gatewayConf is mifike's side of TestEAPStrongSwanClient: a gateway
// connection per case, EAP passed to FreeRADIUS in its namespace.
func gatewayConf(tp *topology, dir, pki string, srv *radiuslab.Server) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ncontrol: {socket: %s/mifike.sock}\nkeylog: {dir: %s/keys}\nlisten: [%s]\ndata_plane: userspace\ntun: {name: mfk0}\n",
		dir, dir, tp.mAddr)
	fmt.Fprintf(&b, "radius:\n  servers: {lab: {address: %s, secret: %q, auth_port: %d, acct_port: %d}}\n  nas_identifier: mifike-interop\n  timeout: 3s\n",
		srv.Addr, srv.Secret, srv.AuthPort, srv.AcctPort)
	b.WriteString("connections:\n")
	for _, c := range append(eapClientCases, eapOnlyUnsafe) {
		fmt.Fprintf(&b, "  %s:\n    proposals: %q\n", c.name(), c.proposal)
		switch c.gwAuth {
		case "psk":
			fmt.Fprintf(&b, "    local: {auth: psk, id: m-gw-psk.test}\n    psk: %q\n", psk)
		case "eap-only":
			b.WriteString("    local: {auth: eap-only, id: m-gw-eaponly.test}\n")
		default:
			fmt.Fprintf(&b, "    local: {auth: pubkey, id: m-gw.test, certs: [%[1]s/m-gw.test.crt], key: %[1]s/m-gw.test.key}\n", pki)
		}
		fmt.Fprintf(&b, "    remote: {auth: eap, id: s-%s.test}\n", c.name())
		fmt.Fprintf(&b, "    children:\n      net: {local_ts: [%s], remote_ts: [%s], esp_proposals: aes128gcm16}\n", tp.mNet, tp.sNet)
	}
	return b.String()
}

// strongSwan as the EAP peer, mifike as the gateway with FreeRADIUS:
// for each method the IKE SA and Child SA come up on both ends with the
// same SPIs, ping passes the tunnel both ways, mifike shows the EAP
// identity and method, and FreeRADIUS logged the login and got mifike's
// accounting Start. tshark then decrypts the EAP payloads of the
// IKE_AUTH exchanges with mifike's key log.
func TestEAPStrongSwanClient(t *testing.T) {
	requireEAP(t)
	requireTools(t, "tshark")
	tp := newTopology(t, "mfke")
	dir := t.TempDir()
	srv := startRADIUS(t, tp.m)
	pki := filepath.Join(dir, "pki")
	os.MkdirAll(pki, 0o700)
	writePKI(t, pki, "m-gw.test")
	files := map[string]string{"x509ca/ca.crt": filepath.Join(pki, "ca.crt"), "x509ca/radius-ca.pem": srv.CACert,
		"x509/tls-user.pem": srv.ClientCert, "private/tls-user.key": srv.ClientKey}
	capture := startCapture(t, tp.m, "m0", filepath.Join(dir, "ike.pcap"))
	md := startMifike(t, tp.m, filepath.Join(dir, "mifike"), gatewayConf(tp, filepath.Join(dir, "mifike"), pki, srv))
	ch := startCharonConf(t, tp.s, filepath.Join(dir, "swan"), eapCharonConf(filepath.Join(dir, "swan")), clientSwanctl(tp), files)
	// kernel-libipsec's device; charon installs no routes here.
	run(t, "ip", "-n", tp.s, "route", "add", tp.mNet, "dev", "ipsec0", "src", "10.77.20.1")

	logins := map[string]int{}
	for _, c := range eapClientCases {
		t.Run(c.name(), func(t *testing.T) {
			ch.t, md.t = t, t
			ch.swanctl("--initiate", "--ike", c.name(), "--child", "net", "--timeout", "60")
			x := upOne(t, md, c.name(), "charon log:\n"+ch.logTail(40))
			if x.Initiator || x.Proposal != c.proposal {
				t.Fatalf("mifike's SA: initiator=%v proposal %q, want %q", x.Initiator, x.Proposal, c.proposal)
			}
			checkEAP(t, x, strings.TrimPrefix(c.user, "CN="), c.want)
			charonEAPSA(t, ch, c.name(), x, "")
			ping(t, tp.s, "-I", "10.77.20.1", "10.77.10.1")
			ping(t, tp.m, "-I", "10.77.10.1", "10.77.20.1")
			user := strings.TrimPrefix(c.user, "CN=")
			logins[user]++
			radiusAccepted(t, srv, user, logins[user], true)
			t.Logf("%s as %q: %s", x.EAPMethod, x.EAPIdentity, x.Proposal)
			ch.swanctl("--terminate", "--ike", c.name())
			noSAs(t, md, ch)
		})
	}
	t.Run(eapOnlyUnsafe.name(), func(t *testing.T) {
		ch.t, md.t = t, t
		c := eapOnlyUnsafe
		ch.swanctlErr("--initiate", "--ike", c.name(), "--child", "net", "--timeout", "30")
		noSAs(t, md, ch)
		if !strings.Contains(md.log(), "does not authenticate the gateway") {
			t.Fatalf("mifike's log does not say why it refused EAP-only with MSCHAPv2:\n%s", md.logTail(30))
		}
		logins["alice"]++ // FreeRADIUS accepted the password; mifike did not
		radiusAccepted(t, srv, "alice", logins["alice"], false)
	})

	// Wireshark agrees: every protected IKE message of the capture
	// decrypts with mifike's key log, and the EAP payloads inside show
	// the methods (RFC 3748 types 1, 4, 13, 21, 26).
	t.Run("tshark-decrypts-eap", func(t *testing.T) {
		capture.stop()
		conf := filepath.Join(dir, "wireshark")
		os.MkdirAll(conf, 0o700)
		keys, err := os.ReadFile(filepath.Join(dir, "mifike", "keys", "ikev2_decryption_table"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(conf, "ikev2_decryption_table"), keys, 0o600)
		tshark := func(args ...string) string {
			cmd := exec.Command("tshark", append([]string{"-n", "-r", capture.file}, args...)...)
			cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf, "HOME="+dir)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("tshark %v: %v", args, err)
			}
			return string(out)
		}
		v := tshark("-Y", "isakmp.enc.icd", "-V")
		total := countProtected(t, capture.file, conf, dir)
		correct, incorrect := strings.Count(v, "[correct]"), strings.Count(v, "[incorrect")
		types := map[string]bool{}
		for _, f := range strings.Fields(tshark("-Y", "eap", "-T", "fields", "-e", "eap.type")) {
			for _, ty := range strings.Split(f, ",") {
				types[ty] = true
			}
		}
		t.Logf("%d protected IKE messages, %d checksums correct, %d incorrect; EAP types seen %v", total, correct, incorrect, types)
		if total == 0 || correct != total || incorrect != 0 {
			t.Fatalf("tshark verified %d of %d protected IKE messages (%d incorrect)", correct, total, incorrect)
		}
		for _, ty := range []string{"1", "4", "13", "21", "26"} {
			if !types[ty] {
				t.Errorf("no EAP type %s in the decrypted IKE_AUTH messages", ty)
			}
		}
	})
}

// eapUserCase is one mifike EAP peer towards strongSwan.
type eapUserCase struct {
	auth   string // mifike's local.auth
	user   string
	gwAuth string // how strongSwan proves itself
	want   string
}

var eapUserCases = []eapUserCase{
	{"eap-mschapv2", "alice", "pubkey", "EAP-MSCHAPv2"},
	{"eap-md5", "bob", "psk", "EAP-MD5"},
	{"eap-tls", radiuslab.ClientCertName, "pubkey", "EAP-TLS"},
}

// gatewaySwanctl is charon's side of TestEAPStrongSwanGateway: a
// gateway connection per case and one for the per-interface end user,
// all passing EAP to FreeRADIUS (eap-radius) after asking the identity
// itself (eap_id = %any: EAP-Identity, RFC 3748 §5.1).
func gatewaySwanctl() string {
	var b strings.Builder
	b.WriteString("connections {\n")
	conn := func(name, gwAuth string) {
		fmt.Fprintf(&b, "%s { version = 2\n proposals = aes128-sha256-x25519\n", name)
		if gwAuth == "psk" {
			b.WriteString(" local { auth = psk\n id = s-gw-psk.test }\n")
		} else {
			b.WriteString(" local { auth = pubkey\n id = s-gw.test\n certs = s-gw.test.crt }\n")
		}
		fmt.Fprintf(&b, " remote { auth = eap-radius\n id = m-%s.test\n eap_id = %%any }\n", name)
		b.WriteString(" children { net { local_ts = 10.78.10.0/24\n remote_ts = 10.78.20.0/24\n esp_proposals = aes128gcm16 } }\n}\n")
	}
	for _, c := range eapUserCases {
		conn(c.auth, c.gwAuth)
	}
	conn("per-iface", "pubkey")
	fmt.Fprintf(&b, "}\nsecrets {\n ike-gw { id = s-gw-psk.test\n secret = \"%s\" }\n}\n", psk)
	return b.String()
}

// endUserConf is mifike's side of TestEAPStrongSwanGateway: a
// connection per case, or (perIface) the one its interface manager runs.
func endUserConf(dir, pki string, srv *radiuslab.Server, perIface bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ncontrol: {socket: %s/mifike.sock}\nkeylog: {dir: %s/keys}\ndata_plane: userspace\ntun: {name: mfk0}\nconnections:\n", dir, dir)
	remote := func(gwAuth string) string {
		if gwAuth == "psk" {
			return fmt.Sprintf("    remote: {auth: psk, id: s-gw-psk.test}\n    psk: %q\n", psk)
		}
		return fmt.Sprintf("    remote: {auth: pubkey, id: s-gw.test, cacerts: [%s/ca.crt]}\n", pki)
	}
	const child = "    children:\n      net: {local_ts: [10.78.20.0/24], remote_ts: [10.78.10.0/24], esp_proposals: aes128gcm16}\n"
	if perIface {
		// One VPN per interface, without cloning: one EAP authentication each.
		b.WriteString("  per-iface:\n    remote_addrs: [10.78.100.1]\n    proposals: aes128-sha256-x25519\n")
		fmt.Fprintf(&b, "    local: {auth: eap-mschapv2, id: m-per-iface.test, eap_id: alice, password: %q}\n", eapPassword("alice"))
		b.WriteString(remote("pubkey") + child)
		b.WriteString("    interfaces: {mode: per-interface, use: [s0, s1]}\n")
		return b.String()
	}
	for _, c := range eapUserCases {
		fmt.Fprintf(&b, "  %s:\n    remote_addrs: [10.78.100.1]\n    proposals: aes128-sha256-x25519\n", c.auth)
		switch c.auth {
		case "eap-tls":
			fmt.Fprintf(&b, "    local: {auth: eap-tls, id: m-%s.test, eap_id: %s, certs: [%s], key: %s, eap_cacerts: [%s], aaa_id: %s}\n",
				c.auth, c.user, srv.ClientCert, srv.ClientKey, srv.CACert, radiuslab.ServerCertName)
		default:
			fmt.Fprintf(&b, "    local: {auth: %s, id: m-%s.test, eap_id: %s, password: %q}\n", c.auth, c.auth, c.user, eapPassword(c.user))
		}
		b.WriteString(remote(c.gwAuth) + child)
	}
	return b.String()
}

// mifike as the EAP peer, strongSwan as the gateway with eap-radius to
// FreeRADIUS: for each method the SAs come up on both ends, ping passes
// the tunnel, mifike shows the method, FreeRADIUS logged the login and
// got strongSwan's accounting Start. Then the clone-less fallback: a
// connection managed per interface over both of the end user's links,
// which strongSwan cannot clone, gets one VPN per interface, each its own
// EAP authentication.
func TestEAPStrongSwanGateway(t *testing.T) {
	requireEAP(t)
	m, s := twoPaths(t, "mfkg")
	dir := t.TempDir()
	srv := startRADIUS(t, m)
	pki := filepath.Join(dir, "pki")
	os.MkdirAll(pki, 0o700)
	writePKI(t, pki, "s-gw.test")
	files := map[string]string{"x509ca/ca.crt": filepath.Join(pki, "ca.crt"),
		"x509/s-gw.test.crt": filepath.Join(pki, "s-gw.test.crt"), "private/s-gw.test.key": filepath.Join(pki, "s-gw.test.key")}
	swan := filepath.Join(dir, "swan")
	ch := startCharonConf(t, m, swan, eapCharonConf(swan, fmt.Sprintf(`    plugins {
        eap-radius {
            accounting = yes
            nas_identifier = strongswan-interop
            servers {
                lab {
                    address = %s
                    secret = %s
                    auth_port = %d
                    acct_port = %d
                }
            }
        }
    }`, srv.Addr, srv.Secret, srv.AuthPort, srv.AcctPort)), gatewaySwanctl(), files)
	run(t, "ip", "-n", m, "route", "add", "10.78.20.0/24", "dev", "ipsec0", "src", "10.78.10.1")
	md := startMifike(t, s, filepath.Join(dir, "mifike"), endUserConf(filepath.Join(dir, "mifike"), pki, srv, false))

	logins := map[string]int{}
	for _, c := range eapUserCases {
		t.Run(c.auth+"-"+c.gwAuth, func(t *testing.T) {
			ch.t, md.t = t, t
			md.mustCtl("initiate", c.auth)
			x := upOne(t, md, c.auth, "charon log:\n"+ch.logTail(40))
			if !x.Initiator {
				t.Fatalf("mifike's SA is not the initiator's: %+v", x)
			}
			checkEAP(t, x, c.user, c.want)
			charonEAPSA(t, ch, c.auth, x, c.user)
			ping(t, s, "-I", "10.78.20.1", "10.78.10.1")
			ping(t, m, "-I", "10.78.10.1", "10.78.20.1")
			logins[c.user]++
			radiusAccepted(t, srv, c.user, logins[c.user], true)
			md.mustCtl("terminate", fmt.Sprint(x.ID))
			noSAs(t, md, ch)
		})
	}

	t.Run("per-interface-without-clone", func(t *testing.T) {
		// The interface manager starts its VPNs itself: a daemon of its own.
		md.stop()
		md = startMifike(t, s, filepath.Join(dir, "mifike-iface"), endUserConf(filepath.Join(dir, "mifike-iface"), pki, srv, true))
		ch.t = t
		var vpns []sa
		if !waitFor(300, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
			vpns = vpns[:0]
			ifaces := map[string]bool{}
			for _, x := range md.sas() {
				if x.Conn == "per-iface" && x.State == "ESTABLISHED" && len(x.Children) == 1 {
					vpns = append(vpns, x)
					ifaces[x.Iface] = true
				}
			}
			return len(vpns) == 2 && ifaces["s0"] && ifaces["s1"]
		}) {
			t.Fatalf("want one VPN on s0 and one on s1:\n%s\nmifike log:\n%s\ncharon log:\n%s", md.mustCtl("list-sas"), md.logTail(40), ch.logTail(40))
		}
		for _, x := range vpns {
			if x.CloneSupported || x.Parent != 0 {
				t.Fatalf("strongSwan cannot clone, yet %+v", x)
			}
			checkEAP(t, x, "alice", "EAP-MSCHAPv2")
			if vpns[0].Family == vpns[1].Family {
				t.Fatalf("two VPNs of one authentication without cloning: %+v", vpns)
			}
		}
		// Each VPN authenticated by itself: two more logins of alice.
		logins["alice"] += 2
		radiusAccepted(t, srv, "alice", logins["alice"], true)
		n := 0
		for _, x := range ch.sas() {
			if x.vals["name"] == "per-iface" && x.vals["state"] == "ESTABLISHED" {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("charon has %d per-iface IKE SAs, want 2:\n%s", n, ch.swanctl("--list-sas"))
		}
		// Both stay up (no INITIAL_CONTACT, RFC 7296 §2.4, made the
		// gateway drop the first), and the tunnel carries traffic.
		time.Sleep(2 * time.Second)
		ping(t, s, "-I", "10.78.20.1", "10.78.10.1")
		if got := len(md.sas()); got != 2 {
			t.Fatalf("%d IKE SAs after 2 s, want 2:\n%s", got, md.mustCtl("list-sas"))
		}
		t.Logf("end user:\n%s\ngateway:\n%s", md.mustCtl("list-sas"), ch.swanctl("--list-sas"))
	})
}
