package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
)

// ctlBackend is a daemon stand-in: fixed lists, the latest request
// recorded, connection "missing" and IKE SA 404 unknown. With live set
// it is a daemon's event stream instead of events: each request
// publishes the events script has for it (wait_test.go).
type ctlBackend struct {
	sas       []control.SA
	conns     []control.Conn
	events    []control.Event // sent to each subscriber, then the stream ends
	reloadErr error
	start     []string // the start children initiate brings up

	live   bool
	script map[string][]control.Event // published while the request runs, by request
	later  map[string][]control.Event // published a little after its answer

	mu   sync.Mutex
	last string
	subs map[chan control.Event]bool
}

func (b *ctlBackend) saw(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = fmt.Sprintf(format, args...)
	b.publish(b.script[b.last])
	if later := b.later[b.last]; len(later) > 0 {
		go func() {
			time.Sleep(20 * time.Millisecond)
			b.mu.Lock()
			defer b.mu.Unlock()
			b.publish(later)
		}()
	}
}

// publish sends to every live subscriber; b.mu is held.
func (b *ctlBackend) publish(evs []control.Event) {
	for ch := range b.subs {
		for _, ev := range evs {
			ch <- ev // buffered for the tests' few events
		}
	}
}

func (b *ctlBackend) request() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

var errNotFound = &control.Error{Code: control.CodeNotFound, Msg: "no such thing"}

func (b *ctlBackend) ListSAs() ([]control.SA, error)     { return b.sas, nil }
func (b *ctlBackend) ListConns() ([]control.Conn, error) { return b.conns, nil }

func (b *ctlBackend) Initiate(conn, child string, _ uint64) (control.Initiated, error) {
	b.saw("initiate %s %s", conn, child)
	if conn == "missing" {
		return control.Initiated{}, &control.Error{Code: control.CodeNotFound, Msg: `no connection "missing"`}
	}
	if child != "" {
		return control.Initiated{IKESA: 7, Children: []string{child}}, nil
	}
	return control.Initiated{IKESA: 7, Children: b.start}, nil
}

func (b *ctlBackend) Terminate(id uint64, spi uint32) error {
	b.saw("terminate %d %08x", id, spi)
	if id == 404 {
		return errNotFound
	}
	return nil
}

func (b *ctlBackend) TerminateConn(conn string) ([]uint64, error) {
	b.saw("terminate-conn %s", conn)
	if conn == "idle" {
		return nil, nil
	}
	return []uint64{3, 4}, nil
}

func (b *ctlBackend) Rekey(id uint64, spi uint32) error {
	b.saw("rekey %d %08x", id, spi)
	return nil
}

func (b *ctlBackend) Clone(id uint64) error {
	b.saw("clone %d", id)
	if id == 404 {
		return errNotFound
	}
	return nil
}

func (b *ctlBackend) Move(id uint64, local, remote, iface string) (bool, error) {
	b.saw("move %d %s %s %s", id, local, remote, iface)
	return id == 8, nil
}

func (b *ctlBackend) Reload() (control.Reloaded, error) {
	b.saw("reload")
	return control.Reloaded{Added: []string{"lab"}, Removed: []string{}, Changed: []control.ChangedConn{{Name: "home", What: []string{"child net selectors"}}},
		SAs: []control.ReloadedSA{{IKESA: 3, Conn: "home", Child: "net", InSPI: "c1a2b3c4", OutSPI: "0a0b0c0d", Action: "replaced",
			Reason: "remote_ts 10.20.0.0/25 no longer covers 10.20.0.0/24; a Child SA with the new selectors replaces it"}}}, b.reloadErr
}

func (b *ctlBackend) Subscribe() (<-chan control.Event, func()) {
	if b.live {
		ch := make(chan control.Event, 64)
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.subs == nil {
			b.subs = map[chan control.Event]bool{}
		}
		b.subs[ch] = true
		return ch, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			delete(b.subs, ch)
		}
	}
	ch := make(chan control.Event, len(b.events))
	for _, ev := range b.events {
		ch <- ev
	}
	close(ch)
	return ch, func() {}
}

func testBackend() *ctlBackend {
	// Taken now, not when the tests started: list-sas prints the age.
	since := time.Now().Add(-(2*time.Minute + 14*time.Second))
	return &ctlBackend{
		sas: []control.SA{{ID: 3, Conn: "home", State: ike.StateEstablished, Initiator: true,
			SPIi: "1122334455667788", SPIr: "99aabbccddeeff00", Local: "192.0.2.10:4500", Remote: "198.51.100.1:4500",
			LocalID: "ue.example", RemoteID: "gw.example", Proposal: "aes128gcm16-prfsha256-x25519", Established: since,
			NATLocal: true, Encap: true, MOBIKE: true, VirtualIPs: []string{"10.99.0.2"},
			Children: []control.Child{{Name: "net", State: "INSTALLED", Mode: "tunnel", InSPI: "c1a2b3c4", OutSPI: "d4e5f6a7",
				Proposal: "aes128gcm16", LocalTS: []string{"10.99.0.2"}, RemoteTS: []string{"10.20.0.0/24"},
				Encap: true, Outbound: true, Established: since, BytesIn: 3 << 20, PacketsIn: 2500}}},
			{ID: 4, Conn: "road", State: ike.StateConnecting, SPIi: "0102030405060708", SPIr: "0000000000000000",
				Local: "[2001:db8::2]:500", Remote: "[2001:db8::1]:500"}},
		conns: []control.Conn{{Name: "home", LocalAddrs: []string{"192.0.2.10"}, LocalID: "ue.example", RemoteID: "gw.example",
			LocalAuth: "psk", RemoteAuth: "pubkey", Proposals: []string{"aes128gcm16-prfsha256-x25519", "aes128-sha256-prfsha256-modp2048"},
			MOBIKE: true, Clone: true, StartAction: "start", SAs: 1,
			Children: []control.ConnChild{{Name: "net", LocalTS: []string{"dynamic"}, RemoteTS: []string{"10.20.0.0/24", "10.30.0.0/16"},
				Proposals: []string{"aes128gcm16", "aes128-sha256"}, Mode: "tunnel", StartAction: "start"},
				{Name: "dc", LocalTS: []string{"dynamic"}, RemoteTS: []string{"10.40.0.0/16"},
					Proposals: []string{"aes128gcm16"}, Mode: "tunnel", StartAction: "trap"}}}},
		events: []control.Event{
			{Time: time.Date(2025, 3, 1, 8, 14, 3, 123e6, time.UTC), Kind: "ike-up", IKESA: 3, Conn: "home", Detail: "aes128gcm16-prfsha256-x25519"},
			{Time: time.Date(2025, 3, 1, 8, 14, 4, 0, time.UTC), Kind: "child-rekeyed", IKESA: 3, Conn: "home", Child: "c1a2b3c4"},
			{Time: time.Date(2025, 3, 1, 8, 14, 5, 0, time.UTC), Kind: "ike-failed", IKESA: 4, Notify: "AUTHENTICATION_FAILED"},
		},
	}
}

// startDaemon serves b on a fresh socket for the test's duration.
func startDaemon(t *testing.T, b control.Backend) string {
	dir, err := os.MkdirTemp("", "mfk") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ctl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, path, 0o600, -1, b, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		os.RemoveAll(dir)
	})
	for i := 0; ; i++ {
		if c, err := control.Dial(path); err == nil {
			c.Close()
			return path
		}
		if i == 500 {
			t.Fatal("control socket not up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func runCtl(args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (r result) check(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

func TestListSAs(t *testing.T) {
	b := testBackend()
	sock := startDaemon(t, b)
	r := runCtl("list-sas", "-s", sock)
	r.check(t, 0, []string{
		"[3] home: ESTABLISHED 2m14s ago, initiator\n",
		"  local  ue.example @ 192.0.2.10[4500], virtual IP 10.99.0.2\n",
		"  remote gw.example @ 198.51.100.1[4500]\n",
		"  aes128gcm16-prfsha256-x25519, SPIs 1122334455667788_i* 99aabbccddeeff00_r, MOBIKE, NAT-T(local)\n",
		"  net: INSTALLED tunnel aes128gcm16, SPIs c1a2b3c4_i d4e5f6a7_o\n",
		"    10.99.0.2 === 10.20.0.0/24\n",
		"    in 3.0 MiB (2500 packets), out 0 B (0 packets)\n",
		"[4] road: CONNECTING, responder\n",
		"  local  2001:db8::2[500]\n",
		"  SPIs 0102030405060708_i 0000000000000000_r*\n",
	}, nil)
	if r.stderr != "" {
		t.Errorf("stderr: %s", r.stderr)
	}
	t.Logf("list-sas:\n%s", r.stdout)

	r = runCtl("list-sas", "--json", "--socket", sock)
	var sas []control.SA
	if err := json.Unmarshal([]byte(r.stdout), &sas); err != nil || r.code != 0 || len(sas) != 2 || sas[0].Children[0].InSPI != "c1a2b3c4" {
		t.Fatalf("list-sas --json: exit %d, %v: %s", r.code, err, r.stdout)
	}

	t.Setenv("MIFIKE_SOCKET", startDaemon(t, &ctlBackend{}))
	runCtl("list-sas").check(t, 0, []string{"no IKE SAs\n"}, nil)
	r = runCtl("list-sas", "--json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("list-sas --json without SAs: %q", r.stdout)
	}
}

func TestListConns(t *testing.T) {
	sock := startDaemon(t, testBackend())
	r := runCtl("list-conns", "-s", sock)
	r.check(t, 0, []string{
		"home: 1 IKE SA, start action start, MOBIKE, clone\n",
		"  local  ue.example (psk) @ 192.0.2.10\n",
		"  remote gw.example (pubkey) @ %any\n",
		"  ike    aes128gcm16-prfsha256-x25519, aes128-sha256-prfsha256-modp2048\n",
		"  net: tunnel, esp aes128gcm16, aes128-sha256\n",
		"    dynamic === 10.20.0.0/24, 10.30.0.0/16\n",
		"  dc: tunnel, esp aes128gcm16, trapped (its traffic brings it up)\n",
	}, nil)
	t.Logf("list-conns:\n%s", r.stdout)
	r = runCtl("list-conns", "-s", sock, "--json")
	var conns []control.Conn
	if err := json.Unmarshal([]byte(r.stdout), &conns); err != nil || len(conns) != 1 || !conns[0].Clone {
		t.Fatalf("list-conns --json: %v: %s", err, r.stdout)
	}
	runCtl("list-conns", "-s", startDaemon(t, &ctlBackend{})).check(t, 0, []string{"no connections\n"}, nil)
}

// TestActions: with --no-wait the action verbs print what they printed
// before they waited for the outcome (wait_test.go has that).
func TestActions(t *testing.T) {
	b := testBackend()
	sock := startDaemon(t, b)
	for _, tc := range []struct {
		args    []string
		stdout  string
		request string
	}{
		{[]string{"initiate", "home"}, "initiating home: IKE SA 7\n", "initiate home "},
		{[]string{"initiate", "home", "--child", "net"}, "initiating home child net: IKE SA 7\n", "initiate home net"},
		{[]string{"initiate", "--json", "home"}, "{\n  \"children\": [],\n  \"ike_sa\": 7,\n  \"state\": \"REQUESTED\"\n}\n", "initiate home "},
		{[]string{"terminate", "3"}, "terminating IKE SA 3\n", "terminate 3 00000000"},
		{[]string{"terminate", "3", "--child", "0xC1A2B3C4"}, "terminating Child SA c1a2b3c4 of IKE SA 3\n", "terminate 3 c1a2b3c4"},
		{[]string{"terminate", "--child", "c1a2b3c4", "3"}, "terminating Child SA c1a2b3c4 of IKE SA 3\n", "terminate 3 c1a2b3c4"},
		{[]string{"terminate", "home"}, "terminating home: 2 IKE SAs\n", "terminate-conn home"},
		{[]string{"terminate", "idle"}, "idle has no IKE SAs\n", "terminate-conn idle"},
		{[]string{"terminate", "--json", "home"}, "{\n  \"ike_sas\": [\n    3,\n    4\n  ],\n  \"state\": \"REQUESTED\",\n  \"terminated\": 2\n}\n", "terminate-conn home"},
		{[]string{"terminate", "--", "-odd-name"}, "terminating -odd-name: 2 IKE SAs\n", "terminate-conn -odd-name"},
		{[]string{"rekey", "3"}, "rekeying IKE SA 3\n", "rekey 3 00000000"},
		{[]string{"rekey", "3", "--child", "f"}, "rekeying Child SA 0000000f of IKE SA 3\n", "rekey 3 0000000f"},
		{[]string{"rekey", "3", "--json"}, "{\n  \"ike_sa\": 3,\n  \"state\": \"REQUESTED\"\n}\n", "rekey 3 00000000"},
	} {
		r := runCtl(append([]string{tc.args[0], "-s", sock, "--no-wait"}, tc.args[1:]...)...)
		if r.code != 0 || r.stdout != tc.stdout || r.stderr != "" || b.request() != tc.request {
			t.Errorf("%q: exit %d, stdout %q, stderr %q, daemon saw %q; want stdout %q, request %q",
				tc.args, r.code, r.stdout, r.stderr, b.request(), tc.stdout, tc.request)
		}
	}
	// reload waits by itself: the daemon answers once it is done.
	for _, tc := range []struct {
		args    []string
		stdout  string
		request string
	}{
		{[]string{"reload"}, "configuration reloaded\nadded: lab\nchanged: home (child net selectors)\n" +
			"IKE SA  conn  child  in SPI    out SPI   action    reason\n" +
			"3       home  net    c1a2b3c4  0a0b0c0d  replaced  remote_ts 10.20.0.0/25 no longer covers 10.20.0.0/24; a Child SA with the new selectors replaces it\n", "reload"},
		{[]string{"reload", "--json"}, `{
  "added": [
    "lab"
  ],
  "removed": [],
  "changed": [
    {
      "name": "home",
      "what": [
        "child net selectors"
      ]
    }
  ],
  "sas": [
    {
      "ike_sa": 3,
      "conn": "home",
      "child": "net",
      "in_spi": "c1a2b3c4",
      "out_spi": "0a0b0c0d",
      "action": "replaced",
      "reason": "remote_ts 10.20.0.0/25 no longer covers 10.20.0.0/24; a Child SA with the new selectors replaces it"
    }
  ]
}
`, "reload"},
	} {
		r := runCtl(append([]string{tc.args[0], "-s", sock}, tc.args[1:]...)...)
		if r.code != 0 || r.stdout != tc.stdout || r.stderr != "" || b.request() != tc.request {
			t.Errorf("%q: exit %d, stdout %q, stderr %q, daemon saw %q; want stdout %q, request %q",
				tc.args, r.code, r.stdout, r.stderr, b.request(), tc.stdout, tc.request)
		}
	}
}

func TestRefusedAndUsage(t *testing.T) {
	b := testBackend()
	b.reloadErr = errors.New("/etc/mifike.conf:3: proposals: unknown algorithm \"aes1\"\n/etc/mifike.conf:9: remote_ts: bad prefix")
	sock := startDaemon(t, b)

	// The daemon refuses: exit 1, its message on stderr.
	runCtl("initiate", "missing", "-s", sock).check(t, 1, nil, []string{"mifike: no connection \"missing\"\n"})
	runCtl("terminate", "404", "-s", sock).check(t, 1, nil, []string{"mifike: no such thing\n"})
	r := runCtl("reload", "-s", sock)
	r.check(t, 1, nil, nil)
	if want := "mifike: /etc/mifike.conf:3: proposals: unknown algorithm \"aes1\"\nmifike: /etc/mifike.conf:9: remote_ts: bad prefix\n"; r.stderr != want || r.stdout != "" {
		t.Errorf("reload failure: stdout %q, stderr %q; want stderr %q", r.stdout, r.stderr, want)
	}

	// Usage errors: exit 2, nothing sent to the daemon.
	b.saw("")
	for _, args := range [][]string{
		{"list-sas", "extra"}, {"list-sas", "--bogus"}, {"initiate"}, {"initiate", "a", "b"},
		{"terminate"}, {"terminate", "home", "--child", "c1a2b3c4"}, {"terminate", "3", "--child", "xyz"},
		{"terminate", "3", "--child", "123456789"}, {"terminate", "3", "--child", "0"}, {"terminate", "0"},
		{"rekey", "home"}, {"rekey", "3", "--child"}, {"reload", "now"}, {"events", "x"}, {"list-conns", "-s"},
	} {
		r := runCtl(append(args, "-s", sock)...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "mifike: ") && !strings.Contains(r.stderr, "usage: mifike") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a usage message", args, r.code, r.stderr)
		}
	}
	if got := b.request(); got != "" {
		t.Errorf("usage errors reached the daemon: %q", got)
	}

	// -h explains the verb and the exit codes, on stdout as cobra (and
	// GNU) put asked-for help.
	r = runCtl("terminate", "-h")
	r.check(t, 0, []string{"mifike terminate ID|CONN [--child SPI]", "-s, --socket PATH", "--json", "3 the daemon is unreachable"}, nil)
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	runCtl("list-sas", "-s", filepath.Join(dir, "none.sock")).check(t, 3, nil,
		[]string{"mifike: cannot reach mifike at " + filepath.Join(dir, "none.sock") + ": is the daemon running? (mifike daemon -c FILE)\n"})
	t.Setenv("MIFIKE_SOCKET", filepath.Join(dir, "env.sock"))
	for _, verb := range [][]string{{"list-conns"}, {"initiate", "home"}, {"terminate", "home"}, {"rekey", "1"}, {"reload"}, {"events"}} {
		runCtl(verb...).check(t, 3, nil, []string{"env.sock"})
	}
}

func TestEvents(t *testing.T) {
	b := testBackend()
	sock := startDaemon(t, b)
	r := runCtl("events", "-s", sock)
	// The backend ends the stream after its events, as a stopping daemon does.
	r.check(t, 3, nil, []string{"ended the event stream"})
	clock := func(h, m, s, ms int) string {
		return time.Date(2025, 3, 1, h, m, s, ms*1e6, time.UTC).Local().Format("15:04:05.000")
	}
	want := clock(8, 14, 3, 123) + " ike-up home[3] aes128gcm16-prfsha256-x25519\n" +
		clock(8, 14, 4, 0) + " child-rekeyed home[3] child c1a2b3c4\n" +
		clock(8, 14, 5, 0) + " ike-failed [4] N(AUTHENTICATION_FAILED)\n"
	if r.stdout != want {
		t.Errorf("events:\n%s\nwant:\n%s", r.stdout, want)
	}

	// With --json the end of the stream is a line too, the error.
	r = runCtl("events", "--json", "-s", sock)
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	var n int
	for sc.Scan() {
		if n == len(b.events) {
			var f failure
			if err := json.Unmarshal(sc.Bytes(), &f); err != nil || f.Code != codeUnreachable || !strings.Contains(f.Msg, "ended the event stream") {
				t.Errorf("events --json last line: %v: %s", err, sc.Text())
			}
			n++
			continue
		}
		var ev control.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || n > len(b.events) || ev != b.events[n] {
			t.Errorf("events --json line %d: %v: %s", n, err, sc.Text())
		}
		n++
	}
	if n != len(b.events)+1 || r.code != exitUnreachable || r.stderr != "" {
		t.Errorf("events --json printed %d lines, want %d and the error, exit %d, stderr %q:\n%s", n, len(b.events), r.code, r.stderr, r.stdout)
	}

	// A gap in the stream is shown, not hidden.
	var out bytes.Buffer
	writeEvent(&out, control.Event{Dropped: 12})
	writeEventJSON(&out, control.Event{Dropped: 12})
	if want := "-- 12 events dropped: this client read too slowly --\n{\"dropped\":12}\n"; out.String() != want {
		t.Errorf("dropped marker: %q, want %q", out.String(), want)
	}
}

func TestHelpListsControlVerbs(t *testing.T) {
	r := runCtl("help")
	r.check(t, 0, []string{"list-sas [--json]", "terminate ID|CONN [--child SPI]", "events [--json]"}, nil)
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 14 * time.Second: "14s", 134*time.Second + 400*time.Millisecond: "2m14s",
		3*time.Hour + 2*time.Minute + 59*time.Second: "3h02m", 50 * time.Hour: "2d02h", // truncated, as ages are
	} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestCloneAndMoveVerbs(t *testing.T) {
	b := &ctlBackend{}
	sock := startDaemon(t, b)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"clone", "3", "--no-wait"}, 0, "clone 3"},
		{[]string{"clone", "404"}, 1, "clone 404"},
		{[]string{"clone", "home"}, 2, ""},
		{[]string{"move", "3", "--local", "192.0.2.7%wlan0", "--no-wait"}, 0, "move 3 192.0.2.7  wlan0"},
		{[]string{"move", "3", "--no-wait", "--local", "2001:db8::7", "--remote", "2001:db8::1"}, 0, "move 3 2001:db8::7 2001:db8::1 "},
		{[]string{"move", "3"}, 2, ""},
		{[]string{"move", "3", "--local", "nonsense"}, 2, ""},
	} {
		var out, errb bytes.Buffer
		b.saw("")
		code := run(append(c.args, "-s", sock), &out, &errb)
		if code != c.code {
			t.Errorf("%v: exit %d (%s), want %d", c.args, code, errb.String(), c.code)
		}
		if c.want != "" && b.request() != c.want {
			t.Errorf("%v: daemon saw %q, want %q", c.args, b.request(), c.want)
		}
	}
}
