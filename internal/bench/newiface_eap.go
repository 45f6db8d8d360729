//go:build linux

package bench

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mifike/mifike/internal/lab"
	"github.com/mifike/mifike/internal/radiuslab"
)

// EAP in the new-interface suite. The end user authenticates by EAP
// (MS-CHAPv2 or TLS) and the gateway, which proves itself with its
// ECDSA certificate, passes each EAP round to a real FreeRADIUS 3.2
// (internal/radiuslab) as strongSwan's eap-radius does. FreeRADIUS runs
// in a namespace of its own behind the router:
//
//	[gw] up0 ── router ── rad-a 10.94.0.1 ── eth0 10.94.0.2 [rad] FreeRADIUS
//
// so its packets cross the router's delay line too, where they wait for
// a delay of their own (the RADIUS RTT, --radius-rtt) and are counted:
// Access-Requests, Accounting-Requests and bytes as they cross the
// link, independent of mifike's RADIUS client. FreeRADIUS's own log
// gives the authentications it accepted ("Login OK").
//
// A clone needs no new authentication (RFC 7791 §1: the clone inherits
// the authentication of the IKE SA it was made from), so it should send
// no Access-Request; a new authentication on the new interface runs the
// whole EAP conversation again, as strongSwan must.

const (
	radiusNet    = "10.94.0.0/24"
	radiusRouter = "10.94.0.1"
	radiusAddr   = "10.94.0.2"
	eapUser      = "carol"
	eapPassword  = "bench-eap-password"
)

// DefaultRADIUSRTT is the RADIUS link's round-trip time unless set: a
// gateway and its AAA server are usually in the same operator network,
// closer to each other than the end user is to either.
const DefaultRADIUSRTT = 10 * time.Millisecond

// isEAP: auth is one of the EAP methods of the suite.
func isEAP(auth string) bool { return strings.HasPrefix(auth, "eap-") }

// radiusSite is the FreeRADIUS namespace and the server running in it.
type radiusSite struct {
	m      *mifLab
	ns     string
	srv    *radiuslab.Server
	logins *loginCounter
}

// newRADIUSSite makes the namespace, links it to the router and routes
// the gateway to it; the delay line takes its packets with delay rtt.
func newRADIUSSite(m *mifLab, dl *delayLine, rtt time.Duration) (*radiusSite, error) {
	if err := radiuslab.Available(); err != nil {
		return nil, err
	}
	ns, err := m.AddNS("rad")
	if err != nil {
		return nil, err
	}
	if err := m.Veth(lab.End{NS: m.Net, Dev: "rad-a", Addrs: []string{radiusRouter + "/24"}},
		lab.End{NS: ns, Dev: "eth0", Addrs: []string{radiusAddr + "/24"}}); err != nil {
		return nil, err
	}
	for _, r := range [][]string{
		{ns, "route", "add", "default", "via", radiusRouter},
		{m.GW, "route", "add", radiusNet, "via", "10.92.1.1"},
	} {
		if err := m.IP(r[0], r[1:]...); err != nil {
			return nil, err
		}
	}
	dl.setRADIUS(netip.MustParsePrefix(radiusNet), rtt)
	return &radiusSite{m: m, ns: ns}, nil
}

// start runs a fresh FreeRADIUS that proposes auth's EAP type first
// (no Nak round), with the user of EAP-MSCHAPv2; EAP-TLS uses the
// harness's client certificate.
func (r *radiusSite) start(e *suiteEnv, auth string) error {
	r.stop()
	typ := strings.TrimPrefix(auth, "eap-")
	r.logins = &loginCounter{}
	srv, err := radiuslab.New(e.ctx, radiuslab.Options{Lab: r.m.Lab, NS: r.ns, Address: netip.MustParseAddr(radiusAddr),
		// The end user's IKE identity is a user too, for a gateway that
		// takes it as the EAP identity (remote.eap_id: ike).
		DefaultEAPType: typ, Users: []radiuslab.User{{Name: eapUser, Password: eapPassword}, {Name: ueID, Password: eapPassword}}, Log: r.logins})
	if err != nil {
		return err
	}
	r.srv = srv
	return nil
}

func (r *radiusSite) stop() {
	if r != nil && r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

// loginCount is how many authentications FreeRADIUS accepted so far.
func (r *radiusSite) loginCount() int {
	if r == nil || r.logins == nil {
		return 0
	}
	return r.logins.count()
}

// loginCounter counts FreeRADIUS's "Login OK" log lines (log { auth =
// yes }): one per Access-Accept it sent.
type loginCounter struct {
	mu   sync.Mutex
	line []byte
	n    int
}

func (l *loginCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line = append(l.line, p...)
	for {
		i := strings.IndexByte(string(l.line), '\n')
		if i < 0 {
			break
		}
		if strings.Contains(string(l.line[:i]), "Login OK") {
			l.n++
		}
		l.line = l.line[i+1:]
	}
	return len(p), nil
}

func (l *loginCounter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

var _ io.Writer = (*loginCounter)(nil)

// writeEAPAuth is writeMifAuth for the EAP methods: the end user by EAP,
// the gateway by its certificate and RADIUS.
func writeEAPAuth(b *strings.Builder, o mifOpts, me, peer string) {
	if me == gwID {
		fmt.Fprintf(b, "    local: {auth: pubkey, id: %s, certs: [%s], key: %s}\n", me, o.pki.cert(me), o.pki.key(me))
		if o.eapID == "ike" {
			fmt.Fprintf(b, "    remote: {auth: eap, id: %s, eap_id: ike}\n", peer)
		} else {
			fmt.Fprintf(b, "    remote: {auth: eap, id: %s}\n", peer)
		}
		return
	}
	switch o.auth {
	case "eap-tls":
		s := o.rad.srv
		fmt.Fprintf(b, "    local: {auth: eap-tls, id: %s, eap_id: %s, certs: [%s], key: %s, eap_cacerts: [%s], aaa_id: %s}\n",
			me, radiuslab.ClientCertName, s.ClientCert, s.ClientKey, s.CACert, radiuslab.ServerCertName)
	default:
		fmt.Fprintf(b, "    local: {auth: %s, id: %s, eap_id: %s, password: %q}\n", o.auth, me, eapUser, eapPassword)
	}
	fmt.Fprintf(b, "    remote: {auth: pubkey, id: %s, cacerts: [%s]}\n", peer, o.pki.ca())
}

// writeRADIUS is the gateway's radius section.
func writeRADIUS(b *strings.Builder, r *radiusSite) {
	fmt.Fprintf(b, "radius: {servers: {lab: {address: %s, secret: %q}}, nas_identifier: mifike-bench}\n", radiusAddr, r.srv.Secret)
}

// EAPFamilyRun is the end user bringing up a VPN on one interface after
// another, the first by an EAP authentication: what FreeRADIUS saw in
// all after each.
type EAPFamilyRun struct {
	Auth   string  `json:"auth"`
	Method string  `json:"method"` // clone, or auth (a new EAP authentication each)
	RTTms  float64 `json:"rtt_ms"`
	// Interfaces, in the order their VPNs came up; the others are
	// totals since the daemons started, one after each of them.
	Interfaces         []string `json:"interfaces"`
	AccessRequests     []int    `json:"access_requests"`
	AccountingRequests []int    `json:"accounting_requests"`
	Logins             []int    `json:"logins"` // FreeRADIUS's "Login OK"
}

// familyIfaces are brought up in turn: eth0 first, by the EAP login.
var familyIfaces = []string{"eth0", "wlan0", "wwan0", "usb0"}

// eapFamily runs one EAPFamilyRun at rtt: wlan0 and wwan0 start down
// and usb0 without an address, the daemons start, and each interface
// comes up once the VPN on the one before is up.
func eapFamily(e *suiteEnv, m *mifLab, dl *delayLine, rtt time.Duration, o mifOpts, tag string) (EAPFamilyRun, error) {
	run := EAPFamilyRun{Auth: o.auth, Method: "auth", RTTms: float64(rtt) / 1e6}
	if o.clone {
		run.Method = "clone"
	}
	o.use = familyIfaces
	dl.setRTT(rtt)
	for _, dev := range []string{"wlan0", "wwan0"} {
		if err := m.setLink(dev, false); err != nil {
			return run, err
		}
		defer m.setLink(dev, true)
	}
	if _, err := settle(e.ctx, dl, rtt); err != nil {
		return run, err
	}
	logins0 := o.rad.loginCount()
	gw, err := startMif(e.ctx, e, m, "gw-"+tag, m.GW, mifGWConf(o))
	if err != nil {
		return run, err
	}
	defer gw.proc.Stop(5 * time.Second)
	ue, err := startMif(e.ctx, e, m, "ue-"+tag, m.UE, mifUEConf(o))
	if err != nil {
		return run, err
	}
	defer ue.proc.Stop(5 * time.Second)
	defer m.plugUSB(false)
	var total radiusCount
	for i, dev := range familyIfaces {
		switch dev {
		case "eth0": // up from the start
		case "usb0":
			err = m.plugUSB(true)
		default:
			err = m.setLink(dev, true)
		}
		if err != nil {
			return run, err
		}
		if _, err := waitVPN(e.ctx, ue, dev, 20*time.Second+20*rtt); err != nil {
			return run, fmt.Errorf("VPN %d of %d: %w", i+1, len(familyIfaces), err)
		}
		c, err := settle(e.ctx, dl, rtt)
		if err != nil {
			return run, err
		}
		total.add(c.RADIUS)
		run.Interfaces = append(run.Interfaces, dev)
		run.AccessRequests = append(run.AccessRequests, total.AccessRequests)
		run.AccountingRequests = append(run.AccountingRequests, total.AccountingRequests)
		run.Logins = append(run.Logins, o.rad.loginCount()-logins0)
	}
	return run, nil
}

// eapCases runs the EAP cases of one method: FreeRADIUS started for it,
// the per-interface trials of a clone and of a new EAP authentication,
// and the family of four interfaces both ways.
func eapCases(e *suiteEnv, m *mifLab, dl *delayLine, cfg NewInterfaceConfig, rad *radiusSite, base mifOpts) ([]NewInterfaceRun, []EAPFamilyRun, error) {
	if err := rad.start(e, base.auth); err != nil {
		return nil, nil, err
	}
	defer rad.stop()
	var runs []NewInterfaceRun
	var fams []EAPFamilyRun
	for i, clone := range []bool{true, false} {
		o := base
		o.clone, o.rad = clone, rad
		method := map[bool]string{true: "clone", false: "auth"}[clone]
		e.say("new-interface %s: mifike (%s), RADIUS RTT %v", o.auth, method, cfg.RADIUSRTT)
		rs, err := newIfaceMifike(e, m, dl, cfg, o, fmt.Sprintf("%s-%d", o.auth, i))
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w\n%s", o.auth, method, err, lastLines(rad.srv.Output(), 20))
		}
		for _, x := range rs {
			e.say("  RTT %3.0f ms: up in %.1f ms, %d round trips, %d Access-Requests", x.RTTms, x.UpMs, x.Exchanges, x.AccessRequests)
		}
		runs = append(runs, rs...)
	}
	for i, clone := range []bool{true, false} {
		o := base
		o.clone, o.rad = clone, rad
		f, err := eapFamily(e, m, dl, cfg.RTTs[0], o, fmt.Sprintf("%s-fam%d", o.auth, i))
		if err != nil {
			return nil, nil, fmt.Errorf("%s family (clone %t): %w\n%s", o.auth, clone, err, lastLines(rad.srv.Output(), 20))
		}
		e.say("  %s, %d VPNs: Access-Requests %v, FreeRADIUS logins %v", f.Method, len(f.Interfaces), f.AccessRequests, f.Logins)
		fams = append(fams, f)
	}
	return runs, fams, nil
}

// shortSequence writes runs of one exchange type once with a count:
// an EAP conversation is many IKE_AUTH exchanges in a row.
func shortSequence(seq string) string {
	if seq == "" {
		return ""
	}
	parts := strings.Split(seq, ", ")
	var out []string
	for i := 0; i < len(parts); {
		j := i
		for j < len(parts) && parts[j] == parts[i] {
			j++
		}
		if n := j - i; n > 1 {
			out = append(out, fmt.Sprintf("%s x%d", parts[i], n))
		} else {
			out = append(out, parts[i])
		}
		i = j
	}
	return strings.Join(out, ", ")
}

// writeEAPTables prints the EAP rows and the families.
func (r *NewInterfaceResult) writeEAPTables(w io.Writer) {
	var eap []NewInterfaceRun
	for _, x := range r.Runs {
		if isEAP(x.Auth) {
			eap = append(eap, x)
		}
	}
	if len(eap) == 0 {
		return
	}
	fmt.Fprintf(w, "\nEAP through FreeRADIUS: clone versus new authentication (mifike; gateway by ECDSA certificate, end user by EAP;\n")
	fmt.Fprintf(w, "FreeRADIUS behind the router, RADIUS RTT %.0f ms; RADIUS counted where it crosses the link; counts: the most of any run)\n\n", r.RADIUSRTTms)
	t := table{head: []string{"method", "auth", "RTT ms", "up ms", "round trips", "messages", "bytes", "GW CPU ms", "UE CPU ms",
		"Access-Req", "Acct-Req", "RADIUS bytes", "logins", "requests"}}
	for _, x := range eap {
		t.add(x.Method, x.Auth, f0(x.RTTms), f1(x.UpMs), fmt.Sprint(x.Exchanges), fmt.Sprint(x.Messages), fmt.Sprint(x.Bytes),
			f2(x.GWCPUms), f2(x.UECPUms), fmt.Sprint(x.AccessRequests), fmt.Sprint(x.AccountingRequests), fmt.Sprint(x.RADIUSBytes),
			fmt.Sprint(x.Logins), shortSequence(x.Sequence))
	}
	t.write(w)
	if len(r.Families) == 0 {
		return
	}
	fmt.Fprintf(w, "\nOne login, more interfaces: VPNs brought up one after another (the first by EAP); totals at FreeRADIUS after each\n\n")
	t = table{head: []string{"method", "auth", "RTT ms", "VPNs on", "Access-Requests", "Accounting-Requests", "logins"}}
	for _, f := range r.Families {
		t.add(f.Method, f.Auth, f0(f.RTTms), strings.Join(f.Interfaces, "+"), joinInts(f.AccessRequests), joinInts(f.AccountingRequests), joinInts(f.Logins))
	}
	t.write(w)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, " / ")
}
