package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
)

// fakeBackend records calls and answers from fixtures. IKE SA 404 and
// connection "missing" do not exist; fail makes every action fail.
type fakeBackend struct {
	mu    sync.Mutex
	last  string // the latest call
	n     int    // calls so far
	sas   []SA
	conns []Conn
	fail  error

	// subs receives the send side of each subscription; its channel is
	// unbuffered so a send completes only once the server has taken the
	// event.
	subs     chan chan Event
	canceled chan struct{}
	// lateSend makes cancel send one more event first, as a daemon does
	// whose cancel queues behind a send in its event loop.
	lateSend bool
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{subs: make(chan chan Event, 4), canceled: make(chan struct{}, 4)}
}

func (f *fakeBackend) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last, f.n = fmt.Sprintf(format, args...), f.n+1
	return f.fail
}

func (f *fakeBackend) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeBackend) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fakeBackend) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakeBackend) ListSAs() ([]SA, error) { return f.sas, f.record("list-sas") }
func (f *fakeBackend) Clone(id uint64) error  { return f.record("clone %d", id) }
func (f *fakeBackend) Move(id uint64, local, remote, iface string) (bool, error) {
	return id == 5, f.record("move %d %s %s %s", id, local, remote, iface)
}
func (f *fakeBackend) ListConns() ([]Conn, error) { return f.conns, f.record("list-conns") }

func (f *fakeBackend) Initiate(conn, child string, _ uint64) (Initiated, error) {
	if err := f.record("initiate %s %s", conn, child); err != nil {
		return Initiated{}, err
	}
	if conn == "missing" {
		return Initiated{}, &Error{Code: CodeNotFound, Msg: "no connection " + conn}
	}
	if child == "" {
		return Initiated{IKESA: 7}, nil
	}
	return Initiated{IKESA: 7, Children: []string{child}}, nil
}

func (f *fakeBackend) Terminate(ikeSA uint64, childSPI uint32) error {
	if err := f.record("terminate %d %08x", ikeSA, childSPI); err != nil {
		return err
	}
	if ikeSA == 404 {
		return fmt.Errorf("terminate: %w", &Error{Code: CodeNotFound, Msg: "no IKE SA 404"})
	}
	return nil
}

func (f *fakeBackend) TerminateConn(conn string) ([]uint64, error) {
	return []uint64{3, 4}, f.record("terminate-conn %s", conn)
}

func (f *fakeBackend) Rekey(ikeSA uint64, childSPI uint32) error {
	if ikeSA == 13 {
		panic("rekey bug")
	}
	return f.record("rekey %d %08x", ikeSA, childSPI)
}

func (f *fakeBackend) Reload() (Reloaded, error) {
	if err := f.record("reload"); err != nil {
		return Reloaded{}, err
	}
	if f.conns == nil {
		return Reloaded{}, errors.New("mifike.conf:3: proposals: unknown algorithm \"aes1\"\nmifike.conf:9: remote_ts: bad prefix")
	}
	return Reloaded{Added: []string{"new"}, Removed: []string{}, Changed: []ChangedConn{{Name: "home", What: []string{"pre-shared key"}}},
		SAs: []ReloadedSA{{IKESA: 3, Conn: "home", Action: "closed", Reason: "pre-shared key changed", NewIKESA: 4}}}, nil
}

func (f *fakeBackend) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event)
	f.subs <- ch
	return ch, func() {
		if f.lateSend {
			ch <- Event{Kind: "late"}
		}
		f.canceled <- struct{}{}
	}
}

// shortDir is a temporary directory with a path short enough for a unix
// socket (108 bytes on Linux), which t.TempDir does not guarantee.
func shortDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "mfk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serve runs Serve on path and waits until it answers; stop ends it and
// returns Serve's result.
func serve(t testing.TB, path string, mode os.FileMode, gid int, b Backend) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, path, mode, gid, b, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			break
		}
		if errors.Is(err, os.ErrPermission) {
			break // listening, but not for us
		}
		select {
		case err := <-errc:
			t.Fatalf("Serve: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Serve did not start listening")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-errc:
			case <-time.After(5 * time.Second):
				result = errors.New("Serve did not return after cancel")
			}
		})
		return result
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return stop
}

func startServer(t testing.TB, b Backend) string {
	path := filepath.Join(shortDir(t), "ctl.sock")
	serve(t, path, 0o600, -1, b)
	return path
}

func dial(t testing.TB, path string) *Client {
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var established = time.Date(2025, 3, 1, 8, 14, 3, 0, time.UTC)

func fixtureSAs() []SA {
	return []SA{{ID: 3, Conn: "home", State: ike.StateEstablished, Initiator: true,
		SPIi: "1122334455667788", SPIr: "99aabbccddeeff00", Local: "192.0.2.10:4500", Remote: "198.51.100.1:4500",
		LocalID: "ue.example", RemoteID: "gw.example", Proposal: "aes128gcm16-prfsha256-x25519", Established: established,
		NATLocal: true, Encap: true, MOBIKE: true, VirtualIPs: []string{"10.99.0.2"}, PeerVirtualIPs: []string{},
		Children: []Child{{Name: "net", State: "INSTALLED", Mode: "tunnel", InSPI: "c1a2b3c4", OutSPI: "d4e5f6a7",
			Proposal: "aes128gcm16", LocalTS: []string{"10.99.0.2"}, RemoteTS: []string{"10.20.0.0/24"},
			Encap: true, Outbound: true, Established: established, BytesIn: 1 << 20}}}}
}

func fixtureConns() []Conn {
	return []Conn{{Name: "home", LocalAddrs: []string{"192.0.2.10"}, RemoteAddrs: []string{"198.51.100.1"},
		LocalID: "ue.example", RemoteID: "gw.example", LocalAuth: "psk", RemoteAuth: "psk",
		Proposals: []string{"aes128gcm16-prfsha256-x25519"}, MOBIKE: true, Clone: true, StartAction: "start",
		Children: []ConnChild{{Name: "net", LocalTS: []string{"dynamic"}, RemoteTS: []string{"10.20.0.0/24"},
			Proposals: []string{"aes128gcm16", "aes128-sha256"}, Mode: "tunnel"}}, SAs: 1}}
}

func TestCommands(t *testing.T) {
	b := newFakeBackend()
	b.sas, b.conns = fixtureSAs(), fixtureConns()
	c := dial(t, startServer(t, b))

	var sas []SA
	if err := c.Call("list-sas", nil, &sas); err != nil || !reflect.DeepEqual(sas, b.sas) {
		t.Fatalf("list-sas: %v\n got %+v\nwant %+v", err, sas, b.sas)
	}
	var conns []Conn
	if err := c.Call("list-conns", nil, &conns); err != nil || !reflect.DeepEqual(conns, b.conns) {
		t.Fatalf("list-conns: %v\n got %+v\nwant %+v", err, conns, b.conns)
	}

	for _, tc := range []struct {
		cmd  string
		args map[string]any
		call string // what the backend must have seen
		data string // the answer's data as JSON
	}{
		{"initiate", map[string]any{"conn": "home"}, "initiate home ", `{"ike_sa":7,"children":[]}`},
		{"initiate", map[string]any{"conn": "home", "child": "net"}, "initiate home net", `{"ike_sa":7,"children":["net"]}`},
		{"terminate", map[string]any{"ike_sa": 3}, "terminate 3 00000000", `null`},
		{"terminate", map[string]any{"ike_sa": 3, "child_spi": 0xc1a2b3c4}, "terminate 3 c1a2b3c4", `null`},
		{"terminate-conn", map[string]any{"conn": "home"}, "terminate-conn home", `{"terminated":2,"ike_sas":[3,4]}`},
		{"move", map[string]any{"ike_sa": 3, "local": "192.0.2.7"}, "move 3 192.0.2.7  ", `{}`},
		{"move", map[string]any{"ike_sa": 5, "local": "192.0.2.7", "iface": "wlan0"}, "move 5 192.0.2.7  wlan0", `{"unchanged":true}`},
		{"rekey", map[string]any{"ike_sa": 3}, "rekey 3 00000000", `null`},
		{"rekey", map[string]any{"ike_sa": 3, "child_spi": 0xc1a2b3c4}, "rekey 3 c1a2b3c4", `null`},
		{"reload", nil, "reload", `{"added":["new"],"removed":[],"changed":[{"name":"home","what":["pre-shared key"]}],` +
			`"sas":[{"ike_sa":3,"conn":"home","action":"closed","reason":"pre-shared key changed","new_ike_sa":4}]}`},
	} {
		var data json.RawMessage
		if err := c.Call(tc.cmd, tc.args, &data); err != nil {
			t.Fatalf("%s %v: %v", tc.cmd, tc.args, err)
		}
		if data == nil {
			data = json.RawMessage("null")
		}
		if got := b.lastCall(); got != tc.call || string(data) != tc.data {
			t.Errorf("%s %v: backend saw %q, data %s; want %q, %s", tc.cmd, tc.args, got, data, tc.call, tc.data)
		}
	}
}

// statusBackend adds the status views to fakeBackend, with nothing to
// show.
type statusBackend struct{ *fakeBackend }

func (statusBackend) ListPools() ([]Pool, error) { return nil, nil }
func (statusBackend) ListCerts() ([]Cert, error) { return nil, nil }
func (statusBackend) Stats() (Stats, error)      { return Stats{Version: "v"}, nil }

func TestEmptyListsAreArrays(t *testing.T) {
	c := dial(t, startServer(t, statusBackend{newFakeBackend()}))
	var st Stats
	if err := c.Call("stats", nil, &st); err != nil || st.Version != "v" {
		t.Errorf("stats: %+v, %v", st, err)
	}
	for _, cmd := range []string{"list-sas", "list-conns", "list-pools", "list-certs"} {
		var raw json.RawMessage
		if err := c.Call(cmd, nil, &raw); err != nil || string(raw) != "[]" {
			t.Errorf("%s with nothing: %s, %v; want []", cmd, raw, err)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	b := newFakeBackend()
	c := dial(t, startServer(t, b))
	for _, tc := range []struct {
		cmd       string
		args      map[string]any
		code, msg string
	}{
		{"initiate", map[string]any{"conn": "missing"}, CodeNotFound, "no connection missing"},
		{"terminate", map[string]any{"ike_sa": 404}, CodeNotFound, "terminate: no IKE SA 404"},
		{"reload", nil, CodeFailed, "mifike.conf:3: proposals: unknown algorithm \"aes1\"\nmifike.conf:9: remote_ts: bad prefix"},
		{"rekey", map[string]any{"ike_sa": 13}, CodeFailed, "internal error in rekey"},
		{"initiate", nil, CodeInvalid, `initiate needs "conn"`},
		{"terminate", map[string]any{"conn": "home"}, CodeInvalid, `terminate needs "ike_sa"`},
		{"terminate-conn", nil, CodeInvalid, `terminate-conn needs "conn"`},
		{"rekey", nil, CodeInvalid, `rekey needs "ike_sa"`},
		{"frobnicate", nil, CodeInvalid, `unknown command "frobnicate"`},
		{"list-pools", nil, CodeFailed, "this daemon cannot answer list-pools"},
		{"stats", nil, CodeFailed, "this daemon cannot answer stats"},
		{"", nil, CodeInvalid, `request without "cmd"`},
		{"terminate", map[string]any{"ike_sa": "three"}, CodeInvalid, "malformed request"},
		{"terminate", map[string]any{"ike_sa": 3, "child_spi": 1 << 32}, CodeInvalid, "malformed request"},
		{"initiate", map[string]any{"connection": "home"}, CodeInvalid, `unknown field "connection"`},
	} {
		err := c.Call(tc.cmd, tc.args, nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("%s %v: %v (%#v); want code %s, message %q", tc.cmd, tc.args, err, e, tc.code, tc.msg)
		}
	}
	// A failure the backend did not classify is "failed".
	b.setFail(errors.New("engine stopped"))
	var e *Error
	if err := c.Call("terminate-conn", map[string]any{"conn": "home"}, nil); !errors.As(err, &e) || e.Code != CodeFailed || e.Msg != "engine stopped" {
		t.Errorf("plain error: %v", err)
	}
	b.setFail(&Error{Msg: "no code"})
	if err := c.Call("reload", nil, nil); !errors.As(err, &e) || e.Code != CodeFailed {
		t.Errorf("Error without a code: %#v", err)
	}
	b.setFail(&Error{Code: CodeUnavailable, Msg: "shutting down"})
	if err := c.Call("reload", nil, nil); !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Errorf("unavailable: %#v", err)
	}
}

// rawConn speaks the protocol by hand, for what Client never sends.
type rawConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, path string) *rawConn {
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t, c, bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) recv() map[string]any {
	r.t.Helper()
	line, err := r.r.ReadBytes('\n')
	if err != nil {
		r.t.Fatalf("reading a response: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		r.t.Fatalf("response %q: %v", line, err)
	}
	return m
}

func TestMalformedRequests(t *testing.T) {
	b := newFakeBackend()
	r := dialRaw(t, startServer(t, b))
	for _, line := range []string{
		`{"cmd":`, `not json`, `[1,2]`, `"list-sas"`, `{"cmd":"list-sas"} {"cmd":"reload"}`,
		`{"cmd":"list-sas"}}`, "\x00\xff", `{"cmd":"list-sas","cmd":7}`,
	} {
		r.send(line + "\n")
		if m := r.recv(); m["ok"] != false || m["code"] != CodeInvalid {
			t.Errorf("%q: %v", line, m)
		}
	}
	// Blank lines are skipped; the connection still serves requests, and
	// a last request without a newline is answered too.
	r.send("\n  \r\n{\"cmd\":\"list-conns\"}\r\n")
	if m := r.recv(); m["ok"] != true {
		t.Errorf("after malformed lines: %v", m)
	}
	r.send(`{"cmd":"list-sas"}`)
	r.c.(*net.UnixConn).CloseWrite()
	if m := r.recv(); m["ok"] != true {
		t.Errorf("unterminated last line: %v", m)
	}
	if n := b.callCount(); n != 2 {
		t.Errorf("backend called %d times, want twice (list-conns, list-sas)", n)
	}
}

func TestOversizedRequest(t *testing.T) {
	path := startServer(t, newFakeBackend())
	r := dialRaw(t, path)
	// Exactly the limit is fine.
	pad := strings.Repeat(" ", maxRequest-len(`{"cmd":"list-sas"}`))
	r.send(`{"cmd":"list-sas"}` + pad + "\n")
	if m := r.recv(); m["ok"] != true {
		t.Fatalf("request of %d bytes: %v", maxRequest, m)
	}
	go r.c.Write([]byte(`{"cmd":"list-sas","conn":"` + strings.Repeat("a", maxRequest) + "\"}\n"))
	if m := r.recv(); m["code"] != CodeInvalid || !strings.Contains(m["error"].(string), "longer than 65536 bytes") {
		t.Fatalf("oversized: %v", m)
	}
	if _, err := r.r.ReadByte(); err == nil {
		t.Error("connection still open after an oversized request")
	}
	// The server itself is unharmed.
	if err := dial(t, path).Call("list-sas", nil, nil); err != nil {
		t.Error(err)
	}
}

func TestSocketFile(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "sub", "ctl.sock") // the directory is created
	stop := serve(t, path, 0o660, os.Getgid(), newFakeBackend())
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; int(gid) != os.Getgid() {
		t.Errorf("socket group %d, want %d", gid, os.Getgid())
	}
	// No temporary directory is left beside the socket.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the socket", len(ents))
	}

	// A second daemon on a live socket refuses and leaves it alone.
	err = Serve(context.Background(), path, 0o600, -1, newFakeBackend(), nil)
	if err == nil || !strings.Contains(err.Error(), "another mifike daemon is running") {
		t.Fatalf("second Serve: %v", err)
	}
	if err := dial(t, path).Call("reload", nil, nil); err == nil || !strings.Contains(err.Error(), "mifike.conf:3") {
		t.Fatalf("first server after a refused second one: %v", err)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after shutdown: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(shortDir(t), "ctl.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // a crashed daemon's socket: the file stays, nobody answers
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	serve(t, path, 0o600, -1, newFakeBackend())
	if err := dial(t, path).Call("list-sas", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestNotASocketRefused(t *testing.T) {
	path := filepath.Join(shortDir(t), "ctl.sock")
	os.WriteFile(path, []byte("precious"), 0o600)
	err := Serve(context.Background(), path, 0o600, -1, newFakeBackend(), nil)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("Serve touched a regular file")
	}
}

func TestDialErrors(t *testing.T) {
	dir := shortDir(t)
	_, err := Dial(filepath.Join(dir, "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "is the daemon running? (mifike daemon -c FILE)") {
		t.Errorf("no socket: %v", err)
	}
	path := filepath.Join(dir, "stale.sock")
	l, _ := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := Dial(path); err == nil || !strings.Contains(err.Error(), "is the daemon running?") {
		t.Errorf("stale socket: %v", err)
	}
	// Root passes permission checks, so the error is built by hand.
	eacces := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
	if err := dialError(path, eacces); !strings.Contains(err.Error(), "permission denied: run as root or as a member of the control group") {
		t.Errorf("no permission: %v", err)
	}
	if os.Geteuid() != 0 {
		serve(t, filepath.Join(dir, "ctl.sock"), 0o000, -1, newFakeBackend())
		if _, err := Dial(filepath.Join(dir, "ctl.sock")); err == nil || !strings.Contains(err.Error(), "run as root") {
			t.Errorf("no permission: %v", err)
		}
	}
}

// subscription is the backend's side of one events client.
func subscription(t testing.TB, b *fakeBackend) chan Event {
	t.Helper()
	select {
	case ch := <-b.subs:
		return ch
	case <-time.After(5 * time.Second):
		t.Fatal("no subscription")
		return nil
	}
}

func TestEventsInOrder(t *testing.T) {
	b := newFakeBackend()
	c := dial(t, startServer(t, b))
	const n = eventQueueLen // a burst the queue always holds, however slow the writer
	got := make(chan Event, n)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(func(ev Event) bool {
			got <- ev
			return len(got) < n && ev.Dropped == 0
		})
	}()
	ch := subscription(t, b)
	for i := range n {
		ch <- Event{Time: established.Add(time.Duration(i) * time.Millisecond), Kind: "child-up", IKESA: uint64(i), Child: "c1a2b3c4"}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(got)
	i := 0
	for ev := range got {
		if ev.IKESA != uint64(i) || ev.Kind != "child-up" || ev.Dropped != 0 || !ev.Time.Equal(established.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("event %d: %+v", i, ev)
		}
		i++
	}
	// Closing the client ends the subscription.
	c.Close()
	select {
	case <-b.canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not canceled after the client left")
	}
}

func TestCancelWhileSending(t *testing.T) {
	b := newFakeBackend()
	b.lateSend = true
	c := dial(t, startServer(t, b))
	go func() {
		c.Events(func(Event) bool { return false })
		c.Close()
	}()
	subscription(t, b) <- Event{Kind: "ike-up"}
	select {
	case <-b.canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("cancel blocked: the server stopped reading before cancel returned")
	}
}

func TestEventsEndedByBackend(t *testing.T) {
	b := newFakeBackend()
	c := dial(t, startServer(t, b))
	done := make(chan error, 1)
	var got []Event
	go func() { done <- c.Events(func(ev Event) bool { got = append(got, ev); return true }) }()
	ch := subscription(t, b)
	ch <- Event{Kind: "ike-up", IKESA: 1}
	ch <- Event{Kind: "ike-down", IKESA: 1}
	close(ch)
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "ended the event stream") {
		t.Fatalf("Events after the backend closed: %v", err)
	}
	if len(got) != 2 || got[1].Kind != "ike-down" {
		t.Errorf("events before the end lost: %+v", got)
	}
}

// TestSlowEventsClient shows that a client that stops reading never holds
// up the backend: every send is taken at once, the client later gets
// what fitted, then {"dropped":N}, and every event is accounted for.
func TestSlowEventsClient(t *testing.T) {
	b := newFakeBackend()
	path := startServer(t, b)
	r := dialRaw(t, path)
	r.c.SetDeadline(time.Time{})
	r.send(`{"cmd":"events"}` + "\n")
	ch := subscription(t, b)
	if m := r.recv(); m["ok"] != true {
		t.Fatal(m)
	}

	// Far more than the queue and the socket buffers hold.
	const total = 20000
	var slowest time.Duration
	for i := range total {
		start := time.Now()
		select {
		case ch <- Event{Kind: "retransmit", IKESA: uint64(i + 1), Detail: strings.Repeat("x", 100)}:
		case <-time.After(2 * time.Second):
			t.Fatalf("backend blocked on event %d by a client that does not read", i)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("slowest send of %d: %v", total, slowest)

	lines := make(chan map[string]any, 64)
	go func() {
		for {
			line, err := r.r.ReadBytes('\n')
			if err != nil {
				close(lines)
				return
			}
			var m map[string]any
			json.Unmarshal(line, &m)
			lines <- m
		}
	}()
	next := func() map[string]any {
		select {
		case m := <-lines:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("event stream stalled")
			return nil
		}
	}
	var delivered, dropped, markers, last uint64
	for delivered+dropped < total {
		m := next()
		if d, ok := m["dropped"].(float64); ok {
			dropped += uint64(d)
			markers++
			continue
		}
		id := uint64(m["ike_sa"].(float64))
		if id <= last {
			t.Fatalf("event %d after %d: order lost", id, last)
		}
		last = id
		delivered++
	}
	if delivered+dropped != total || markers == 0 || dropped == 0 {
		t.Fatalf("delivered %d + dropped %d (in %d markers), want %d with drops", delivered, dropped, markers, total)
	}
	t.Logf("delivered %d, dropped %d in %d markers", delivered, dropped, markers)

	// Caught up, the client gets everything again.
	for i := range 5 {
		ch <- Event{Kind: "ike-up", IKESA: uint64(total + i + 1)}
		if m := next(); m["ike_sa"] != float64(total+i+1) {
			t.Fatalf("after catching up: %v", m)
		}
	}
}

// TestShutdownWithStuckClient: Serve returns although a client has
// stopped reading its events.
func TestShutdownWithStuckClient(t *testing.T) {
	b := newFakeBackend()
	path := filepath.Join(shortDir(t), "ctl.sock")
	stop := serve(t, path, 0o600, -1, b)
	r := dialRaw(t, path)
	r.send(`{"cmd":"events"}` + "\n")
	ch := subscription(t, b)
	for range 5000 {
		ch <- Event{Kind: "retransmit", Detail: strings.Repeat("x", 200)}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.canceled:
	default:
		t.Error("subscription still active after Serve returned")
	}
}
