package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/radiuslab"
)

// EAP in IKE_AUTH (RFC 7296 §2.16) end to end: the end user authenticates
// by EAP, the gateway passes the conversation to a real FreeRADIUS 3.2
// (RFC 3579) in the lab's aaa namespace and accounts for the family of
// IKE SAs (RFC 2866, RFC 7791 §8). No mock RADIUS server: what FreeRADIUS
// itself logged and wrote to its detail file is checked next to
// mifike's own counters.

// metricsAddr is each daemon's metrics address, in its own namespace.
const metricsAddr = "127.0.0.1:9464"

// eapLab is lab with FreeRADIUS; it skips when FreeRADIUS cannot run.
func eapLab(t *testing.T, o demo.Options) (*demo.Topology, *demo.Daemon, *demo.Daemon) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces (CI runs as root)")
	}
	if err := radiuslab.Available(); err != nil {
		t.Skip(err)
	}
	if o.Metrics == "" {
		o.Metrics = metricsAddr
	}
	top, ue, gw := lab(t, o)
	t.Cleanup(func() {
		if t.Failed() && top.RADIUS != nil {
			t.Logf("FreeRADIUS output (tail):\n%s", tail(top.RADIUS.Output(), 30))
		}
	})
	return top, ue, gw
}

// radiusMetrics scrapes a daemon's mifike_radius_* series.
func radiusMetrics(t *testing.T, d *demo.Daemon) map[string]float64 {
	t.Helper()
	m, err := demo.Scrape(d.NS, metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "mifike_radius_") {
			out[k] = v
		}
	}
	return out
}

const (
	accepts    = `mifike_radius_responses_total{code="access-accept"}`
	rejects    = `mifike_radius_responses_total{code="access-reject"}`
	challenges = `mifike_radius_responses_total{code="access-challenge"}`
	acctResps  = `mifike_radius_responses_total{code="accounting-response"}`
	timeouts   = "mifike_radius_timeouts_total"
	badAuths   = `mifike_radius_dropped_responses_total{reason="bad-authenticator"}`
	convs      = "mifike_radius_eap_conversations"
	sessions   = "mifike_radius_accounting_sessions"
)

// accounting returns FreeRADIUS's accounting records with status (Start,
// Interim-Update, Stop).
func accounting(t *testing.T, top *demo.Topology, status string) []radiuslab.Record {
	t.Helper()
	recs, err := top.RADIUS.AccountingRecords()
	if err != nil {
		t.Fatal(err)
	}
	var out []radiuslab.Record
	for _, r := range recs {
		if r.Get("Acct-Status-Type") == status {
			out = append(out, r)
		}
	}
	return out
}

// classIs reports whether a detail-file Class is c: the detail module
// writes the octets as 0x... hex.
func classIs(got, c string) bool {
	return got == c || got == "0x"+hex.EncodeToString([]byte(c))
}

// noSAs waits until neither daemon holds an IKE SA, in any state, and
// the gateway has no EAP conversation left: a failed authentication
// leaves no half-open state on either side (RFC 7296 §2.21.2).
func noSAs(t *testing.T, ue, gw *demo.Daemon, timeout time.Duration) {
	t.Helper()
	var m map[string]float64
	if !demo.WaitFor(timeout, func() bool {
		if len(sas(t, ue)) != 0 || len(sas(t, gw)) != 0 {
			return false
		}
		m = radiusMetrics(t, gw)
		return m[convs] == 0
	}) {
		t.Fatalf("state left after the failure: end user:\n%s\ngateway:\n%s\nconversations: %v",
			ue.Table(context.Background()), gw.Table(context.Background()), m[convs])
	}
}

// ikeFailed waits for the end user's log to report an authentication
// that failed because of why (the gateway's EAP-Failure, RFC 3748 §4.2,
// or its AUTHENTICATION_FAILED, RFC 7296 §2.21.2) and returns the line.
func ikeFailed(t *testing.T, ue *demo.Daemon, why string) string {
	t.Helper()
	var line string
	if !demo.WaitFor(40*time.Second, func() bool {
		for _, l := range strings.Split(ue.Log(), "\n") {
			if strings.Contains(l, "event=ike-failed") && strings.Contains(l, why) {
				line = l
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the end user did not report a failed authentication (%s):\n%s", why, tail(ue.Log(), 20))
	}
	return line
}

// noSecrets checks that none of secrets appears in either daemon's log
// or key log files.
func noSecrets(t *testing.T, secrets []string, ds ...*demo.Daemon) {
	t.Helper()
	for _, d := range ds {
		files := []string{filepath.Join(d.Dir, "mifike.log")}
		keys, _ := filepath.Glob(filepath.Join(d.Dir, "keys", "*"))
		files = append(files, keys...)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				if strings.Contains(string(b), s) {
					t.Errorf("%s contains the secret %q", f, s)
				}
			}
		}
	}
}

// One EAP-MSCHAPv2 authentication through FreeRADIUS serves a VPN on
// every interface: the clones are not authenticated again (RFC 7791 §4).
// Accounting follows the family (RFC 7791 §8): one Start with the user
// and FreeRADIUS's Class, no Stop while any of its IKE SAs lives, even
// when the authenticated one goes, and one Stop with the family's bytes
// once the last goes.
func TestEAPMSCHAPv2OneAuthenticationForAllVPNs(t *testing.T) {
	top, ue, gw := eapLab(t, demo.Options{EAP: "eap-mschapv2", OnDown: "delete"})
	v := waitVPNs(t, ue, all3, 40*time.Second)
	for _, dev := range all3 {
		pingThrough(t, top, ue, v[dev])
	}

	// FreeRADIUS's view and mifike's agree: one authentication.
	ok, incorrect := top.RADIUSLogins()
	if ok != 1 || incorrect != 0 {
		t.Fatalf("FreeRADIUS logged %d successful and %d failed logins for %d VPNs, want 1 and 0", ok, incorrect, len(v))
	}
	m := radiusMetrics(t, gw)
	if m[accepts] != 1 || m[rejects] != 0 || m[challenges] < 1 {
		t.Fatalf("the gateway's RADIUS client: %v; want 1 Access-Accept after Access-Challenges, no reject", m)
	}
	t.Logf("%d VPNs for 1 RADIUS authentication (FreeRADIUS: %d Login OK; mifike: %v Access-Challenges, %v Access-Accept)",
		len(v), ok, m[challenges], m[accepts])

	// Both ends show how the family was authenticated, on every SA.
	for _, d := range []*demo.Daemon{ue, gw} {
		table := d.Table(context.Background())
		if n := strings.Count(table, `EAP-MSCHAPv2 as "alice"`); n != 3 {
			t.Fatalf("%s's list-sas shows the EAP method and identity on %d IKE SAs, want 3:\n%s", d.Name, n, table)
		}
	}

	// Accounting Start, once, with the user name and Class.
	var starts []radiuslab.Record
	if !demo.WaitFor(20*time.Second, func() bool {
		starts = accounting(t, top, "Start")
		return len(starts) > 0
	}) {
		t.Fatal("FreeRADIUS received no Accounting-Request Start")
	}
	start := starts[0]
	if len(starts) != 1 || start.Get("User-Name") != demo.EAPUser || !classIs(start.Get("Class"), demo.RADIUSClass) {
		t.Fatalf("accounting Starts %v; want one for %s with Class %s", starts, demo.EAPUser, demo.RADIUSClass)
	}

	// The authenticated IKE SA goes (eth0 down, on_down: delete); its
	// clones keep the family, and so its accounting session, alive.
	if err := top.SetLink("eth0", false); err != nil {
		t.Fatal(err)
	}
	if !demo.WaitFor(20*time.Second, func() bool {
		for _, s := range sas(t, gw) {
			if s.ID == v["eth0"].ID {
				return false
			}
		}
		return len(sas(t, gw)) == 2
	}) {
		t.Fatalf("the gateway still has eth0's IKE SA %d or lost the others:\n%s", v["eth0"].ID, gw.Table(context.Background()))
	}
	// The gauge is read on the event loop after the Delete was handled:
	// had the family ended, its session would be gone with it.
	if m := radiusMetrics(t, gw); m[sessions] != 1 {
		t.Fatalf("accounting sessions after the authenticated SA went, its clones alive: %v, want 1", m[sessions])
	}
	if stops := accounting(t, top, "Stop"); len(stops) != 0 {
		t.Fatalf("accounting Stop while the family lives: %v", stops)
	}
	pingThrough(t, top, ue, v["wlan0"])

	// The end user stops: it deletes the rest, and the family's one Stop
	// goes with everything it carried.
	ue.Stop(15 * time.Second)
	var stops []radiuslab.Record
	if !demo.WaitFor(30*time.Second, func() bool {
		stops = accounting(t, top, "Stop")
		return len(stops) > 0
	}) {
		t.Fatalf("no accounting Stop after the end user left:\n%s", gw.Table(context.Background()))
	}
	stop := stops[0]
	if len(stops) != 1 || stop.Get("Acct-Session-Id") != start.Get("Acct-Session-Id") || stop.Get("User-Name") != demo.EAPUser {
		t.Fatalf("accounting Stops %v; want one, for session %s", stops, start.Get("Acct-Session-Id"))
	}
	if stop.Get("Acct-Input-Octets") == "0" || stop.Get("Acct-Output-Octets") == "0" || stop.Get("Acct-Input-Octets") == "" {
		t.Fatalf("the Stop counts no traffic after 12 pings: %v", stop)
	}
	t.Logf("accounting session %s: Start, then Stop with %s octets in, %s out, %s s",
		stop.Get("Acct-Session-Id"), stop.Get("Acct-Input-Octets"), stop.Get("Acct-Output-Octets"), stop.Get("Acct-Session-Time"))
}

// EAP-TLS with the client certificate radiuslab made: FreeRADIUS checks
// it, the MSK keys the AUTH payloads, and the VPNs carry traffic.
func TestEAPTLS(t *testing.T) {
	two := []string{"eth0", "wlan0"}
	top, ue, gw := eapLab(t, demo.Options{EAP: "eap-tls", Use: two})
	v := waitVPNs(t, ue, two, 60*time.Second)
	for _, dev := range two {
		pingThrough(t, top, ue, v[dev])
	}
	if ok, _ := top.RADIUSLogins(); ok != 1 {
		t.Fatalf("FreeRADIUS logged %d successful logins for %d VPNs, want 1", ok, len(v))
	}
	want := fmt.Sprintf("EAP-TLS as %q", radiuslab.ClientCertName)
	for _, d := range []*demo.Daemon{ue, gw} {
		if table := d.Table(context.Background()); strings.Count(table, want) != 2 {
			t.Fatalf("%s's list-sas does not show %s on both IKE SAs:\n%s", d.Name, want, table)
		}
	}
}

// EAP-only authentication (RFC 5998): the gateway has no certificate and
// proves itself by the EAP-TLS MSK that FreeRADIUS hands it; the end
// user checked FreeRADIUS's certificate inside EAP-TLS. The VPNs carry
// traffic and FreeRADIUS saw one login for both.
func TestEAPOnlyTLS(t *testing.T) {
	two := []string{"eth0", "wlan0"}
	top, ue, gw := eapLab(t, demo.Options{EAP: "eap-tls", EAPOnly: true, Use: two})
	if strings.Contains(demo.GWConfig(demo.Options{EAP: "eap-tls", EAPOnly: true}), "certs:") {
		t.Fatal("the EAP-only gateway's configuration has a certificate")
	}
	v := waitVPNs(t, ue, two, 60*time.Second)
	for _, dev := range two {
		pingThrough(t, top, ue, v[dev])
	}
	if ok, _ := top.RADIUSLogins(); ok != 1 {
		t.Fatalf("FreeRADIUS logged %d successful logins for %d VPNs, want 1", ok, len(v))
	}
	want := fmt.Sprintf("EAP-TLS as %q", radiuslab.ClientCertName)
	for _, d := range []*demo.Daemon{ue, gw} {
		if table := d.Table(context.Background()); strings.Count(table, want) != 2 {
			t.Fatalf("%s's list-sas does not show %s on both IKE SAs:\n%s", d.Name, want, table)
		}
	}
}

// A wrong password: FreeRADIUS rejects, the gateway says so in its log
// and passes the EAP-Failure on (which, as strongSwan does, it sends
// instead of AUTHENTICATION_FAILED: the EAP payload says it), nothing is left on either side, and
// no password or secret reaches a log or key log. With the right
// password (a reload) the same gateway serves the end user at once.
func TestEAPWrongPassword(t *testing.T) {
	two := []string{"eth0", "wlan0"}
	const wrong = "not-alices-password-7781"
	top, ue, gw := eapLab(t, demo.Options{EAP: "eap-mschapv2", EAPPassword: wrong, Use: two, KeyLog: true})
	if !demo.WaitFor(30*time.Second, func() bool {
		_, incorrect := top.RADIUSLogins()
		return incorrect > 0 && strings.Contains(gw.Log(), "RADIUS Access-Reject from "+demo.RADIUSAddr.String())
	}) {
		t.Fatalf("no Access-Reject in FreeRADIUS's output and the gateway's log:\n%s", tail(gw.Log(), 20))
	}
	t.Logf("the end user: %s", ikeFailed(t, ue, "EAP-Failure"))
	noSAs(t, ue, gw, 15*time.Second)
	if m := radiusMetrics(t, gw); m[rejects] < 1 || m[accepts] != 0 {
		t.Fatalf("the gateway's RADIUS client: %v; want rejects and no accept", m)
	}
	noSecrets(t, []string{wrong, demo.EAPUserPassword, demo.RADIUSSecret}, ue, gw)

	if err := top.SetEAPPassword(demo.EAPUserPassword); err != nil {
		t.Fatal(err)
	}
	if err := ue.Call("reload", nil); err != nil {
		t.Fatal(err)
	}
	v := waitVPNs(t, ue, two, 40*time.Second)
	for _, dev := range two {
		pingThrough(t, top, ue, v[dev])
	}
	noSecrets(t, []string{wrong, demo.EAPUserPassword, demo.RADIUSSecret}, ue, gw)
}

// silenceLab starts the lab with the end user's only eligible interface
// not there yet, silences RADIUS as o says, then plugs the interface in:
// the first Access-Request meets whatever fault is set up.
func silentStart(t *testing.T, o demo.Options, fault func(top *demo.Topology)) (*demo.Topology, *demo.Daemon, *demo.Daemon) {
	t.Helper()
	o.Use = []string{demo.Extra.Dev}
	top, ue, gw := eapLab(t, o)
	if fault != nil {
		fault(top)
	}
	if err := top.AddInterface(demo.Extra); err != nil {
		t.Fatal(err)
	}
	return top, ue, gw
}

// A RADIUS server that never answers: the gateway gives up within its
// bound (timeout 500 ms, 2 tries), logs which servers it tried, fails
// the authentication cleanly (an EAP-Failure, RFC 3579 §2.6.3: what a NAS
// sends when no server answers), and serves the end user once the server
// is back.
func TestEAPRADIUSSilent(t *testing.T) {
	top, ue, gw := silentStart(t, demo.Options{EAP: "eap-mschapv2", RADIUS: []string{"timeout: 500ms", "tries: 2"}},
		func(top *demo.Topology) {
			if err := top.SilenceRADIUS(context.Background(), true); err != nil {
				t.Fatal(err)
			}
		})
	tried := "no valid reply from " + demo.RADIUSAddr.String() + ":1812 (sent 2)"
	if !demo.WaitFor(40*time.Second, func() bool { return strings.Contains(gw.Log(), tried) }) {
		t.Fatalf("the gateway's log does not name the silent server (%q):\n%s", tried, tail(gw.Log(), 20))
	}
	t.Logf("the end user: %s", ikeFailed(t, ue, "EAP-Failure"))
	noSAs(t, ue, gw, 20*time.Second)
	if m := radiusMetrics(t, gw); m[timeouts] < 1 || m[accepts] != 0 {
		t.Fatalf("the gateway's RADIUS client: %v; want a timeout and no accept", m)
	}
	if ok, incorrect := top.RADIUSLogins(); ok+incorrect != 0 {
		t.Fatalf("FreeRADIUS decided %d logins behind the silencing rule", ok+incorrect)
	}

	if err := top.SilenceRADIUS(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := ue.Call("reload", nil); err != nil {
		t.Fatal(err)
	}
	v := waitVPNs(t, ue, []string{demo.Extra.Dev}, 60*time.Second)
	pingThrough(t, top, ue, v[demo.Extra.Dev])
}

// A wrong RADIUS shared secret on the gateway: FreeRADIUS drops its
// requests (their Message-Authenticator does not verify, RFC 3579 §3.2)
// and says so; the gateway times out as with a silent server, naming it,
// and neither secret nor the password reaches a log or key log.
func TestEAPWrongRADIUSSecret(t *testing.T) {
	const wrongSecret = "not-the-radius-secret-4410"
	top, ue, gw := silentStart(t, demo.Options{EAP: "eap-mschapv2", GatewayRADIUSSecret: wrongSecret,
		RADIUS: []string{"timeout: 500ms", "tries: 2"}, KeyLog: true}, nil)
	tried := "no valid reply from " + demo.RADIUSAddr.String() + ":1812 (sent 2)"
	if !demo.WaitFor(40*time.Second, func() bool { return strings.Contains(gw.Log(), tried) }) {
		t.Fatalf("the gateway's log does not name the server (%q):\n%s", tried, tail(gw.Log(), 20))
	}
	if !strings.Contains(top.RADIUS.Output(), "Shared secret is incorrect") {
		t.Fatalf("FreeRADIUS did not report the wrong secret:\n%s", tail(top.RADIUS.Output(), 20))
	}
	t.Logf("the end user: %s", ikeFailed(t, ue, "EAP-Failure"))
	noSAs(t, ue, gw, 20*time.Second)
	if ok, incorrect := top.RADIUSLogins(); ok+incorrect != 0 {
		t.Fatalf("FreeRADIUS decided %d logins for requests with a wrong secret", ok+incorrect)
	}
	noSecrets(t, []string{wrongSecret, demo.RADIUSSecret, demo.EAPUserPassword}, ue, gw)
}
