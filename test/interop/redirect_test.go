package interop

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// redirectPaths joins an end user's namespace to two gateways' by one
// link each: ue 10.95.1.2 — gw1 10.95.1.1, ue 10.95.2.2 — gw2 10.95.2.1;
// gw2 protects 10.95.10.1 (on its lo).
func redirectPaths(t testing.TB) (ue, gw1, gw2 string) {
	t.Helper()
	prefix := nsPrefix("rd")
	ue, gw1, gw2 = prefix+"-ue", prefix+"-g1", prefix+"-g2"
	for _, ns := range []string{ue, gw1, gw2} {
		exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
		run(t, "ip", "netns", "add", ns)
	}
	t.Cleanup(func() {
		for _, ns := range []string{ue, gw1, gw2} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run(t, "ip", "link", "add", "e1", "netns", ue, "type", "veth", "peer", "name", "up0", "netns", gw1)
	run(t, "ip", "link", "add", "e2", "netns", ue, "type", "veth", "peer", "name", "up0", "netns", gw2)
	for _, c := range []string{
		ue + " link set lo up", gw1 + " link set lo up", gw2 + " link set lo up",
		ue + " addr add 10.95.1.2/24 dev e1", gw1 + " addr add 10.95.1.1/24 dev up0",
		ue + " addr add 10.95.2.2/24 dev e2", gw2 + " addr add 10.95.2.1/24 dev up0",
		ue + " link set e1 up", ue + " link set e2 up", gw1 + " link set up0 up", gw2 + " link set up0 up",
		gw2 + " addr add 10.95.10.1/32 dev lo",
	} {
		f := strings.Fields(c)
		run(t, "ip", append([]string{"-n", f[0]}, f[1:]...)...)
	}
	return ue, gw1, gw2
}

// redirectGateway is a mifike gateway's configuration; redirect, when
// set, is its connection's RFC 5685 redirect section.
func redirectGateway(dir, listen, dataPlane, redirect string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ncontrol: {socket: %s/mifike.sock}\nlisten: [%s]\ndata_plane: %s\n", dir, listen, dataPlane)
	if dataPlane == "userspace" {
		b.WriteString("tun: {name: mifike0}\n")
	}
	fmt.Fprintf(&b, "connections:\n  rw:\n    local: {auth: psk, id: gw.redirect.test}\n    remote: {auth: psk, id: ue.redirect.test}\n")
	fmt.Fprintf(&b, "    psk: %q\n    proposals: aes128gcm16-prfsha256-x25519\n", psk)
	if redirect != "" {
		fmt.Fprintf(&b, "    redirect: %s\n", redirect)
	}
	b.WriteString("    children:\n      lan: {local_ts: [10.95.10.0/24], esp_proposals: aes128gcm16}\n")
	return b.String()
}

// RFC 5685 §3 with strongSwan 5.9.8 as the end user: charon connects to
// a mifike gateway configured to redirect (redirect: {to: ...}); that
// gateway answers REDIRECT with charon's Ni and keeps nothing; charon
// starts over with the second mifike gateway, naming the first in
// REDIRECTED_FROM, and its SA ends there, authenticated by the identity
// the connection expects (§3: the same PAD entry). A ping passes through
// the tunnel to the second gateway's protected address.
func TestStrongSwanRedirectedAtInit(t *testing.T) {
	requireRoot(t)
	requireTools(t, charonPath, "swanctl")
	ue, gw1, gw2 := redirectPaths(t)
	dir := t.TempDir()
	g1 := startMifike(t, gw1, filepath.Join(dir, "gw1"), redirectGateway(filepath.Join(dir, "gw1"), "10.95.1.1", "none", "{to: 10.95.2.1}"))
	g2 := startMifike(t, gw2, filepath.Join(dir, "gw2"), redirectGateway(filepath.Join(dir, "gw2"), "10.95.2.1", "userspace", ""))
	// charon's inner address is its address towards gw2 (no virtual IP),
	// as in TestStrongSwanClusterTakeOver.
	swanctl := fmt.Sprintf(`connections {
 rw { version = 2
  remote_addrs = 10.95.1.1
  proposals = aes128gcm16-prfsha256-x25519
  local { auth = psk
   id = ue.redirect.test }
  remote { auth = psk
   id = gw.redirect.test }
  children { lan { local_ts = 10.95.2.2/32
    remote_ts = 10.95.10.0/24
    esp_proposals = aes128gcm16 } }
 }
}
secrets { ike-rw { id = gw.redirect.test
  secret = %q } }
`, psk)
	ch := startCharon(t, ue, filepath.Join(dir, "swan"), swanctl, nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon log (tail):\n%s", ch.logTail(40))
			t.Logf("gw1 log (tail):\n%s", g1.logTail(20))
			t.Logf("gw2 log (tail):\n%s", g2.logTail(30))
		}
	})
	ch.swanctl("--initiate", "--ike", "rw", "--child", "lan", "--timeout", "15")

	log := ch.log()
	// charon announces REDIRECT_SUPPORTED by default (follow_redirects),
	// is redirected, and names gw1 to gw2 (REDIRECTED_FROM).
	for _, want := range []string{"N(REDIR_SUP)", "N(REDIR)", "N(REDIR_FROM)"} {
		if !strings.Contains(log, want) {
			t.Errorf("charon's log has no %s", want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	var est []string
	for _, n := range ch.sas() {
		if n.vals["state"] == "ESTABLISHED" {
			est = append(est, n.vals["remote-host"])
		}
	}
	if len(est) != 1 || est[0] != "10.95.2.1" {
		t.Fatalf("charon's established SAs are with %v, want [10.95.2.1]", est)
	}
	if l := g1.sas(); len(l) != 0 {
		t.Fatalf("the redirecting gateway keeps %+v", l)
	}
	l := g2.sas()
	if len(l) != 1 || l[0].State != "ESTABLISHED" || len(l[0].Children) != 1 || !strings.HasPrefix(l[0].Remote, "10.95.2.2:") {
		t.Fatalf("gw2's SAs: %+v", l)
	}
	if !strings.Contains(g1.log(), "redirecting peer (RFC 5685 §3)") {
		t.Fatal("gw1 did not log the redirect")
	}
	run(t, "ip", "-n", ue, "route", "add", "10.95.10.0/24", "dev", "ipsec0", "src", "10.95.2.2")
	ping(t, ue, "-I", "10.95.2.2", "10.95.10.1")
}

// A plain gateway's redirect with the daemon on both ends, as a sanity
// check of the end user's side through the real daemon: mifike's end
// user is redirected from gw1 to gw2 and its SA comes up there.
func TestMifikeRedirectedAtInit(t *testing.T) {
	requireRoot(t)
	ue, gw1, gw2 := redirectPaths(t)
	dir := t.TempDir()
	g1 := startMifike(t, gw1, filepath.Join(dir, "gw1"), redirectGateway(filepath.Join(dir, "gw1"), "10.95.1.1", "none", "{to: 10.95.2.1}"))
	g2 := startMifike(t, gw2, filepath.Join(dir, "gw2"), redirectGateway(filepath.Join(dir, "gw2"), "10.95.2.1", "none", ""))
	u := startMifike(t, ue, filepath.Join(dir, "ue"), fmt.Sprintf(`log: {level: debug}
control: {socket: %s/mifike.sock}
data_plane: none
connections:
  home:
    remote_addrs: [10.95.1.1]
    local: {auth: psk, id: ue.redirect.test}
    remote: {auth: psk, id: gw.redirect.test}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    children:
      lan: {local_ts: [10.95.2.2/32], remote_ts: [10.95.10.0/24], esp_proposals: aes128gcm16}
`, filepath.Join(dir, "ue"), psk))
	u.mustCtl("initiate", "home")
	if !waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		l := u.sas()
		return len(l) == 1 && l[0].State == "ESTABLISHED" && len(l[0].Children) == 1
	}) {
		t.Fatalf("not up:\n%s\n%s\n%s", u.logTail(20), g1.logTail(10), g2.logTail(10))
	}
	l := u.sas()
	if !strings.HasPrefix(l[0].Remote, "10.95.2.1:") {
		t.Fatalf("end user's SA is with %s", l[0].Remote)
	}
	if len(g1.sas()) != 0 || len(g2.sas()) != 1 {
		t.Fatalf("gw1 %+v gw2 %+v", g1.sas(), g2.sas())
	}
	if !strings.Contains(u.log(), "event=redirected") {
		t.Fatalf("no redirected event in the end user's log:\n%s", u.logTail(30))
	}
}

// RFC 5685 §5 with strongSwan 5.9.8 as the gateway: `swanctl --redirect`
// sends mifike's end user, established with charon, an INFORMATIONAL
// REDIRECT to a mifike gateway. mifike acknowledges, sets up its SA with
// the new gateway (REDIRECTED_FROM charon's address) and then deletes
// the SA with charon (make-before-break).
func TestStrongSwanRedirectsEstablished(t *testing.T) {
	requireRoot(t)
	requireTools(t, charonPath, "swanctl")
	ue, gw1, gw2 := redirectPaths(t)
	dir := t.TempDir()
	swanctl := fmt.Sprintf(`connections {
 rw { version = 2
  local_addrs = 10.95.1.1
  proposals = aes128gcm16-prfsha256-x25519
  local { auth = psk
   id = gw.redirect.test }
  remote { auth = psk
   id = ue.redirect.test }
  children { lan { local_ts = 10.95.10.0/24
    remote_ts = 10.95.9.0/24
    esp_proposals = aes128gcm16 } }
 }
}
secrets { ike-rw { id = ue.redirect.test
  secret = %q } }
`, psk)
	// kernel-libipsec routes the end user's traffic from an address of
	// the protected subnet.
	run(t, "ip", "-n", gw1, "addr", "add", "10.95.10.1/32", "dev", "lo")
	ch := startCharon(t, gw1, filepath.Join(dir, "swan"), swanctl, nil)
	// The end user's inner address is 10.95.9.2 (no data plane here).
	g2 := startMifike(t, gw2, filepath.Join(dir, "gw2"), strings.Replace(redirectGateway(filepath.Join(dir, "gw2"), "10.95.2.1", "none", ""),
		"esp_proposals:", "remote_ts: [10.95.9.0/24], esp_proposals:", 1))
	u := startMifike(t, ue, filepath.Join(dir, "ue"), fmt.Sprintf(`log: {level: debug}
control: {socket: %s/mifike.sock}
data_plane: none
connections:
  home:
    remote_addrs: [10.95.1.1]
    local: {auth: psk, id: ue.redirect.test}
    remote: {auth: psk, id: gw.redirect.test}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    children:
      lan: {local_ts: [10.95.9.2/32], remote_ts: [10.95.10.0/24], esp_proposals: aes128gcm16}
`, filepath.Join(dir, "ue"), psk))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon log (tail):\n%s", ch.logTail(30))
			t.Logf("end user log (tail):\n%s", u.logTail(30))
		}
	})
	sleep := func() { time.Sleep(100 * time.Millisecond) }
	u.mustCtl("initiate", "home")
	if !waitFor(50, sleep, func() bool {
		l := u.sas()
		return len(l) == 1 && l[0].State == "ESTABLISHED" && len(l[0].Children) == 1
	}) {
		t.Fatal("not up with charon")
	}
	ch.swanctl("--redirect", "--ike", "rw", "--gateway", "10.95.2.1")
	if !waitFor(100, sleep, func() bool {
		l := u.sas()
		return len(l) == 1 && l[0].State == "ESTABLISHED" && len(l[0].Children) == 1 && strings.HasPrefix(l[0].Remote, "10.95.2.1:")
	}) {
		t.Fatalf("end user's SAs after the redirect: %+v", u.sas())
	}
	if l := g2.sas(); len(l) != 1 || len(l[0].Children) != 1 {
		t.Fatalf("gw2's SAs: %+v", l)
	}
	if !waitFor(30, sleep, func() bool { return len(ch.sas()) == 0 }) {
		t.Fatal("the SA with charon was not deleted")
	}
	if log := u.log(); !strings.Contains(log, "redirected by the gateway (RFC 5685 §5)") || !strings.Contains(log, "N(REDIRECTED_FROM) ]") {
		t.Fatal("no §5 redirect in the end user's log, or no REDIRECTED_FROM sent to gw2")
	}
}
