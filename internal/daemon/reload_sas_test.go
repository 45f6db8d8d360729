package daemon

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ts"
)

// reloadPair is a gateway and a client daemon in this process, over
// 127.0.0.1, whose connection sections the tests rewrite and reload.
type reloadPair struct {
	t              *testing.T
	gwHead, ueHead string
	gw, ue         *runningDaemon
}

// The gateway's rw and the client's home, as the tests start them; the
// gateway accepts any client identity, so that a client's new one is
// authenticated again without editing the gateway.
const (
	gwRW = `  rw:
    local: {auth: psk, id: "@gw.test"}
    remote: {auth: psk}
    psk: a shared secret of sufficient length
    mobike: no
    pools: [rw]
    children:
      net: {local_ts: 10.20.0.0/24}
`
	ueHome = `  home:
    remote_addrs: [127.0.0.1]
    remote_port: %d
    local: {auth: psk, id: "@ue.test"}
    remote: {auth: psk, id: "@gw.test"}
    psk: a shared secret of sufficient length
    mobike: no
    vips: [0.0.0.0]
    start_action: start
    children:
      net: {remote_ts: 10.20.0.0/24}
`
)

func startReloadPair(t *testing.T) *reloadPair {
	t.Helper()
	dir := t.TempDir()
	p := freePorts(t, 4)
	l := &reloadPair{t: t}
	l.gwHead = fmt.Sprintf("listen: [127.0.0.1]\nport: %d\nport_nat_t: %d\ndata_plane: none\ncontrol: {socket: %s}\n"+
		"pools:\n  rw: {addrs: 10.99.0.0/24}\nconnections:\n", p[0], p[1], filepath.Join(dir, "gw.sock"))
	l.ueHead = fmt.Sprintf("listen: [127.0.0.1]\nport: %d\nport_nat_t: %d\ndata_plane: none\ncontrol: {socket: %s}\nconnections:\n",
		p[2], p[3], filepath.Join(dir, "ue.sock"))
	gwPath, uePath := filepath.Join(dir, "gw.yaml"), filepath.Join(dir, "ue.yaml")
	writeFile(t, gwPath, l.gwHead+gwRW)
	writeFile(t, uePath, l.ueHead+fmt.Sprintf(ueHome, p[0]))
	l.gw = startDaemon(t, gwPath)
	l.ue = startDaemon(t, uePath)
	l.waitUp("the first IKE SA")
	return l
}

// ueHome is the client's connection to this pair's gateway.
func (l *reloadPair) ueHome() string {
	return fmt.Sprintf(ueHome, l.gw.d.cfg.IKEPort)
}

// waitUp waits until each side has one established IKE SA with one
// Child SA, the two agreeing on the SPIs.
func (l *reloadPair) waitUp(what string) {
	l.t.Helper()
	waitFor(l.t, what, func() bool {
		g, u := l.gw.established(), l.ue.established()
		return len(g) == 1 && len(u) == 1 && len(g[0].Children) == 1 && len(u[0].Children) == 1 &&
			g[0].SPIi == u[0].SPIi && g[0].Children[0].InSPI == u[0].Children[0].OutSPI && g[0].Children[0].OutSPI == u[0].Children[0].InSPI
	})
}

// reload rewrites r's connections and reloads it through the control
// socket's backend, as mifike reload does.
func (l *reloadPair) reload(r *runningDaemon, head, conns string) control.Reloaded {
	l.t.Helper()
	writeFile(l.t, r.path, head+conns)
	res, err := backend{r.d}.Reload()
	if err != nil {
		l.t.Fatalf("reload of %s: %v", r.path, err)
	}
	return res
}

// spis names every SA of a daemon by its SPIs: what a reload that keeps
// the SAs must leave as it was.
func spis(r *runningDaemon) string {
	var out []string
	for _, s := range r.established() {
		out = append(out, fmt.Sprintf("%016x/%016x", s.SPIi, s.SPIr))
		for _, c := range s.Children {
			out = append(out, fmt.Sprintf("%08x/%08x", c.InSPI, c.OutSPI))
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func onlyChild(t *testing.T, r *runningDaemon) (ike.IKESAInfo, ike.ChildInfo) {
	t.Helper()
	s := r.established()
	if len(s) != 1 || len(s[0].Children) != 1 {
		t.Fatalf("%s: IKE SAs %+v, want one with one Child SA", r.path, s)
	}
	return s[0], s[0].Children[0]
}

// A reload of the same file, or of one that changes only proposals,
// leaves every SA as it is: same SPIs on both peers. Changed proposals
// are for the next rekey, and the reply says so.
func TestReloadKeepsSAsOfUnchangedConnections(t *testing.T) {
	l := startReloadPair(t)
	gwBefore, ueBefore := spis(l.gw), spis(l.ue)
	for _, side := range []struct {
		r          *runningDaemon
		head, conn string
	}{{l.gw, l.gwHead, gwRW}, {l.ue, l.ueHead, l.ueHome()}} {
		// The same connections, moved down by a comment: line numbers
		// are no change.
		res := l.reload(side.r, side.head, "  # moved\n"+side.conn)
		if len(res.Added)+len(res.Removed)+len(res.Changed)+len(res.SAs) != 0 {
			t.Fatalf("%s: an unchanged reload answered %+v", side.r.path, res)
		}
	}
	time.Sleep(200 * time.Millisecond) // anything the reload sent would be answered by now
	if g, u := spis(l.gw), spis(l.ue); g != gwBefore || u != ueBefore {
		t.Fatalf("an unchanged reload changed the SAs: gateway %s (was %s), client %s (was %s)", g, gwBefore, u, ueBefore)
	}

	// New proposals on the gateway, without the negotiated ones.
	changed := strings.Replace(gwRW, "    mobike: no\n", "    mobike: no\n    proposals: [aes256gcm16-prfsha384-ecp384, aes128-sha256-x25519]\n", 1)
	changed = strings.Replace(changed, "{local_ts: 10.20.0.0/24}", "{local_ts: 10.20.0.0/24, esp_proposals: [aes256gcm16, aes128-sha256]}", 1)
	res := l.reload(l.gw, l.gwHead, changed)
	if len(res.Changed) != 1 || fmt.Sprint(res.Changed[0].What) != "[IKE proposals child net proposals]" {
		t.Fatalf("the reply's changed connections are %+v", res.Changed)
	}
	if len(res.SAs) != 2 || res.SAs[0].Action != "kept" || res.SAs[1].Action != "kept" ||
		!strings.Contains(res.SAs[0].Reason, "next rekey") || !strings.Contains(res.SAs[1].Reason, "next rekey") {
		t.Fatalf("the reply's SAs are %+v, want the IKE and the Child SA kept until the next rekey", res.SAs)
	}
	time.Sleep(200 * time.Millisecond)
	if g, u := spis(l.gw), spis(l.ue); g != gwBefore || u != ueBefore {
		t.Fatalf("a proposals-only reload changed the SAs: gateway %s (was %s), client %s (was %s)", g, gwBefore, u, ueBefore)
	}
}

// Narrowing the client's remote_ts deletes the Child SA outside it
// (INFORMATIONAL Delete, RFC 7296 §1.4.1) and creates its replacement on
// the same IKE SA with CREATE_CHILD_SA; the gateway narrows the request
// against its local_ts (§2.9), and both sides end with the new selectors.
func TestReloadNarrowedRemoteTSReplacesChildSA(t *testing.T) {
	l := startReloadPair(t)
	ikeBefore, old := onlyChild(t, l.ue)
	res := l.reload(l.ue, l.ueHead, strings.Replace(l.ueHome(), "remote_ts: 10.20.0.0/24", "remote_ts: 10.20.0.0/25", 1))
	if len(res.Changed) != 1 || fmt.Sprint(res.Changed[0].What) != "[child net selectors]" {
		t.Fatalf("the reply's changed connections are %+v", res.Changed)
	}
	if len(res.SAs) != 2 || res.SAs[1].Action != "replaced" || res.SAs[1].InSPI != fmt.Sprintf("%08x", old.InSPI) ||
		!strings.Contains(res.SAs[1].Reason, "remote_ts 10.20.0.0/25 no longer covers 10.20.0.0/24") {
		t.Fatalf("the reply's SAs are %+v, want Child SA %08x replaced", res.SAs, old.InSPI)
	}
	waitFor(t, "the replacement", func() bool {
		g, u := l.gw.established(), l.ue.established()
		return len(g) == 1 && len(u) == 1 && len(g[0].Children) == 1 && len(u[0].Children) == 1 &&
			u[0].Children[0].InSPI != old.InSPI && g[0].Children[0].InSPI == u[0].Children[0].OutSPI
	})
	ikeAfter, ue := onlyChild(t, l.ue)
	_, gw := onlyChild(t, l.gw)
	if ikeAfter.ID != ikeBefore.ID || ikeAfter.SPIi != ikeBefore.SPIi {
		t.Fatalf("the IKE SA was replaced too: %+v, was %+v", ikeAfter, ikeBefore)
	}
	if got := ts.Strings(ue.RemoteTS); got != "10.20.0.0/25" {
		t.Errorf("the client's Child SA has remote_ts %s, want 10.20.0.0/25", got)
	}
	if got := ts.Strings(gw.LocalTS); got != "10.20.0.0/25" {
		t.Errorf("the gateway's Child SA has local_ts %s, want 10.20.0.0/25", got)
	}
	if ts.Strings(ue.LocalTS) != ts.Strings(gw.RemoteTS) || ts.Strings(ue.LocalTS) != ts.Strings(old.LocalTS) {
		t.Errorf("the client's side: client local_ts %s, gateway remote_ts %s, want both %s (its virtual IP)",
			ts.Strings(ue.LocalTS), ts.Strings(gw.RemoteTS), ts.Strings(old.LocalTS))
	}
}

// A connection removed by a reload has its IKE SA and Child SAs deleted,
// the peer told (RFC 7296 §1.4.1): neither side keeps anything.
func TestReloadRemovedConnectionClosesSAsOnBothPeers(t *testing.T) {
	l := startReloadPair(t)
	ikeSA, child := onlyChild(t, l.gw)
	other := "  other:\n    local: {auth: psk, id: \"@gw.test\"}\n    remote: {auth: psk, id: \"@other.test\"}\n    psk: another secret of sufficient length\n"
	res := l.reload(l.gw, l.gwHead, other)
	if fmt.Sprint(res.Added, res.Removed) != "[other] [rw]" {
		t.Fatalf("the reply adds %v and removes %v, want [other] and [rw]", res.Added, res.Removed)
	}
	want := []control.ReloadedSA{
		{IKESA: ikeSA.ID, Conn: "rw", Action: "closed", Reason: "connection removed"},
		{IKESA: ikeSA.ID, Conn: "rw", Child: "net", InSPI: fmt.Sprintf("%08x", child.InSPI), OutSPI: fmt.Sprintf("%08x", child.OutSPI),
			Action: "closed", Reason: "its IKE SA is deleted"},
	}
	if !slices.Equal(res.SAs, want) {
		t.Fatalf("the reply's SAs are %+v, want %+v", res.SAs, want)
	}
	waitFor(t, "the deletion on both peers", func() bool { return len(l.gw.established()) == 0 && len(l.ue.established()) == 0 })
	if !strings.Contains(l.gw.log.String(), "reload: closed") {
		t.Errorf("the gateway's log does not show the closed SAs:\n%s", l.gw.log.String())
	}
}

// A new pre-shared key no longer authenticates the IKE SA (RFC 7296
// §2.15): the gateway's reload deletes it, and the client's reload sets
// its connection (start_action start) up again with the new key. A new
// identity on the client, which set the SA up, makes the client delete
// it and authenticate again at once.
func TestReloadChangedCredentialsReauthenticate(t *testing.T) {
	l := startReloadPair(t)
	first, _ := onlyChild(t, l.ue)
	newPSK := func(s string) string {
		return strings.Replace(s, "psk: a shared secret of sufficient length", "psk: a new shared secret, also long enough", 1)
	}
	res := l.reload(l.gw, l.gwHead, newPSK(gwRW))
	if len(res.SAs) != 2 || res.SAs[0].Action != "closed" || res.SAs[0].Reason != "pre-shared key changed" || res.SAs[0].NewIKESA != 0 {
		t.Fatalf("the gateway's reply: %+v, want its IKE SA closed for the key and not set up again (the client set it up)", res.SAs)
	}
	waitFor(t, "the deletion on both peers", func() bool { return len(l.gw.established()) == 0 && len(l.ue.established()) == 0 })
	res = l.reload(l.ue, l.ueHead, newPSK(l.ueHome()))
	if len(res.Changed) != 1 || fmt.Sprint(res.Changed[0].What) != "[pre-shared key]" ||
		len(res.SAs) != 1 || res.SAs[0].Action != "created" || res.SAs[0].IKESA == 0 {
		t.Fatalf("the client's reply: %+v, want home changed and set up again", res)
	}
	l.waitUp("the IKE SA with the new key")
	second, _ := onlyChild(t, l.ue)
	if second.SPIi == first.SPIi || second.ID != res.SAs[0].IKESA {
		t.Fatalf("the IKE SA after the new key is %+v, want a new one, %d", second, res.SAs[0].IKESA)
	}

	res = l.reload(l.ue, l.ueHead, strings.Replace(newPSK(l.ueHome()), `id: "@ue.test"`, `id: "@ue2.test"`, 1))
	if len(res.SAs) != 2 || res.SAs[0].Action != "closed" || res.SAs[0].IKESA != second.ID || res.SAs[0].NewIKESA == 0 ||
		!strings.Contains(res.SAs[0].Reason, "local identity changed") {
		t.Fatalf("the client's reply: %+v, want IKE SA %d closed for its identity and set up again", res.SAs, second.ID)
	}
	waitFor(t, "the IKE SA with the new identity", func() bool {
		g, u := l.gw.established(), l.ue.established()
		return len(g) == 1 && len(u) == 1 && g[0].RemoteID == "ue2.test" && u[0].ID == res.SAs[0].NewIKESA
	})
}

// A connection reads the same wherever the file has it; a setting the
// engine does not compare (rekey_time) still makes it changed.
func TestSameConnConfig(t *testing.T) {
	src := "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: secret\n    children:\n      net: {local_ts: 10.20.0.0/24}\n"
	parse := func(s string) *config.ConnConfig {
		t.Helper()
		c, err := config.Parse("f.yaml", []byte(s), "")
		if err != nil {
			t.Fatal(err)
		}
		return c.Connections[0]
	}
	a := parse(src)
	if !sameConnConfig(a, parse("# moved\n\n"+src)) {
		t.Error("the same connection two lines down reads as changed")
	}
	if sameConnConfig(a, parse(strings.Replace(src, "psk: secret\n", "psk: secret\n    rekey_time: 1h\n", 1))) {
		t.Error("a new rekey_time reads as unchanged")
	}
}
