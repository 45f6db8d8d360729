package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/logstream"
)

// eventQueueLen is how many events wait for a slow client before newer
// ones are dropped.
const eventQueueLen = 256

// Serve listens on the unix socket path, with permissions mode and group
// gid (when gid >= 0), and serves until ctx is done: Listen, then
// Listener.Serve.
func Serve(ctx context.Context, path string, mode os.FileMode, gid int, b Backend, log *slog.Logger) error {
	l, err := Listen(path, mode, gid)
	if err != nil {
		return err
	}
	return l.Serve(ctx, b, log)
}

// Listener is a bound control socket that does not answer yet. A daemon
// binds it before it tells its service manager it is ready (sd_notify
// READY=1), so that a client run right after "systemctl start" finds it.
type Listener struct {
	path string
	l    *net.UnixListener
	info os.FileInfo
}

// Listen binds the unix socket path, with permissions mode and group gid
// (when gid >= 0). A stale socket file is replaced; if another daemon
// answers at path, or path is not a socket, Listen refuses.
func Listen(path string, mode os.FileMode, gid int) (*Listener, error) {
	if err := checkStale(path); err != nil {
		return nil, err
	}
	l, info, err := listen(path, mode, gid)
	if err != nil {
		return nil, err
	}
	return &Listener{path: path, l: l, info: info}, nil
}

// Serve answers on the socket until ctx is done. It returns once every
// connection has ended (the Backend must keep answering until then) and
// removes the socket file.
func (cl *Listener) Serve(ctx context.Context, b Backend, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, info, path := cl.l, cl.info, cl.path
	s := &server{b: b, log: log, conns: map[net.Conn]struct{}{}}
	go func() {
		<-ctx.Done()
		l.Close()
		s.closeAll()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				// Accept fails only for resource limits here (EMFILE);
				// back off instead of spinning.
				log.Warn("control: accept", "err", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			break
		}
		if !s.track(c) {
			c.Close()
			continue
		}
		go s.serveConn(ctx, c)
	}
	s.wg.Wait()
	// Remove the socket only if it is still ours, not a successor's.
	if fi, err := os.Lstat(path); err == nil && os.SameFile(fi, info) {
		os.Remove(path)
	}
	return nil
}

// checkStale lets Serve replace a socket nobody answers on (a daemon that
// crashed) but never another live daemon's socket or a non-socket file.
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket; remove it or choose another path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another mifike daemon is running there", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	return nil
}

// listen binds in a private directory, sets mode and group, and only then
// renames the socket into place: no client can connect before the
// permissions are right, and a stale socket is replaced atomically.
func listen(path string, mode os.FileMode, gid int) (*net.UnixListener, os.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".mifike-ctl-")
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false) // the bound name moves; Serve removes the final one
	err = os.Chmod(bound, mode.Perm())
	if err == nil && gid >= 0 {
		err = os.Chown(bound, -1, gid)
	}
	if err == nil {
		err = os.Rename(bound, path)
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Lstat(path)
	}
	if err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, fi, nil
}

type server struct {
	b   Backend
	log *slog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// track registers a connection so shutdown can close it; false once
// shutting down.
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// closeAll ends every connection, which also unblocks writes to clients
// that stopped reading.
func (s *server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

var errTooLong = fmt.Errorf("request longer than %d bytes", maxRequest)

// readLine returns the next line without its newline; a last line without
// one counts too (a client that half-closes after writing).
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > maxRequest+1 { // +1: the newline
			return nil, errTooLong
		}
		line = append(line, frag...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(line) > 0:
			return line, nil
		case err != nil:
			return nil, err
		}
		return line[:len(line)-1], nil
	}
}

func (s *server) serveConn(ctx context.Context, c net.Conn) {
	defer s.untrack(c)
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := readLine(r)
		if errors.Is(err, errTooLong) {
			// The rest of the line cannot be told from a next request.
			s.write(c, errorResponse(&Error{Code: CodeInvalid, Msg: err.Error()}))
			return
		}
		if err != nil {
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		resp, stream := s.handle(line)
		if stream != nil {
			stream(ctx, c, r)
			return
		}
		if !s.write(c, resp) {
			return
		}
	}
}

func (s *server) write(c net.Conn, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("control: encoding a response", "err", err)
		b, _ = json.Marshal(errorResponse(&Error{Code: CodeFailed, Msg: "internal error: " + err.Error()}))
	}
	_, err = c.Write(append(b, '\n'))
	return err == nil
}

// handle decodes and runs one request. A stream means the client asked
// for events or the log: the caller runs it, which answers and streams.
func (s *server) handle(line []byte) (resp response, stream func(context.Context, net.Conn, *bufio.Reader)) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return errorResponse(&Error{Code: CodeInvalid, Msg: "malformed request: " + err.Error()}), nil
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorResponse(&Error{Code: CodeInvalid, Msg: "malformed request: more than one JSON value on the line"}), nil
	}
	switch req.Cmd {
	case "events":
		return response{OK: true}, s.streamEvents
	case "log":
		lb, ok := s.b.(LogBackend)
		if !ok {
			return errorResponse(&Error{Code: CodeFailed, Msg: "this daemon cannot stream its log"}), nil
		}
		if req.Level == "" {
			req.Level = "info"
		}
		sub, err := lb.FollowLog(req.Level)
		if err != nil {
			return errorResponse(&Error{Code: CodeInvalid, Msg: err.Error()}), nil
		}
		return response{OK: true}, func(ctx context.Context, c net.Conn, r *bufio.Reader) {
			defer sub.Close()
			s.streamLog(ctx, c, r, sub)
		}
	}
	data, err := s.dispatch(req)
	if err != nil {
		return errorResponse(err), nil
	}
	resp = response{OK: true}
	if data != nil {
		if resp.Data, err = json.Marshal(data); err != nil {
			return errorResponse(err), nil
		}
	}
	return resp, nil
}

// dispatch runs a command; a panic in the Backend fails the request
// instead of the daemon.
func (s *server) dispatch(req request) (data any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("control: backend panic", "cmd", req.Cmd, "panic", p)
			data, err = nil, &Error{Code: CodeFailed, Msg: fmt.Sprintf("internal error in %s", req.Cmd)}
		}
	}()
	need := func(ok bool, what string) error {
		if ok {
			return nil
		}
		return &Error{Code: CodeInvalid, Msg: fmt.Sprintf("%s needs %s", req.Cmd, what)}
	}
	switch req.Cmd {
	case "list-sas":
		l, err := s.b.ListSAs()
		if l == nil {
			l = []SA{}
		}
		return l, err
	case "list-conns":
		l, err := s.b.ListConns()
		if l == nil {
			l = []Conn{}
		}
		return l, err
	case "initiate":
		if err := need(req.Conn != "", `"conn"`); err != nil {
			return nil, err
		}
		if err := need(req.IKESA == 0 || req.Child != "", `"child" with "ike_sa"`); err != nil {
			return nil, err
		}
		s.log.Info("control: initiate", "conn", req.Conn, "child", req.Child, "ike_sa", req.IKESA)
		in, err := s.b.Initiate(req.Conn, req.Child, req.IKESA)
		if in.Children == nil {
			in.Children = []string{}
		}
		return in, err
	case "terminate":
		if err := need(req.IKESA != 0, `"ike_sa"`); err != nil {
			return nil, err
		}
		s.log.Info("control: terminate", "ike_sa", req.IKESA, "child_spi", spi(req.ChildSPI))
		return nil, s.b.Terminate(req.IKESA, req.ChildSPI)
	case "terminate-conn":
		if err := need(req.Conn != "", `"conn"`); err != nil {
			return nil, err
		}
		s.log.Info("control: terminate", "conn", req.Conn)
		ids, err := s.b.TerminateConn(req.Conn)
		if ids == nil {
			ids = []uint64{}
		}
		return Terminated{len(ids), ids}, err
	case "rekey":
		if err := need(req.IKESA != 0, `"ike_sa"`); err != nil {
			return nil, err
		}
		s.log.Info("control: rekey", "ike_sa", req.IKESA, "child_spi", spi(req.ChildSPI))
		return nil, s.b.Rekey(req.IKESA, req.ChildSPI)
	case "clone":
		if err := need(req.IKESA != 0, `"ike_sa"`); err != nil {
			return nil, err
		}
		s.log.Info("control: clone", "ike_sa", req.IKESA)
		return nil, s.b.Clone(req.IKESA)
	case "move":
		if err := need(req.IKESA != 0 && req.Local != "", `"ike_sa" and "local"`); err != nil {
			return nil, err
		}
		s.log.Info("control: move", "ike_sa", req.IKESA, "local", req.Local, "remote", req.Remote, "iface", req.Iface)
		unchanged, err := s.b.Move(req.IKESA, req.Local, req.Remote, req.Iface)
		return Moved{unchanged}, err
	case "reload":
		s.log.Info("control: reload")
		r, err := s.b.Reload()
		return r, err
	case "log-level":
		lb, ok := s.b.(LogLevelBackend)
		if !ok {
			return nil, &Error{Code: CodeFailed, Msg: "this daemon cannot change its log level"}
		}
		if err := need(req.Level != "", `"level"`); err != nil {
			return nil, err
		}
		prev, err := lb.SetLogLevel(req.Level)
		if err != nil {
			return nil, &Error{Code: CodeInvalid, Msg: err.Error()}
		}
		return LogLevel{Level: strings.ToLower(req.Level), Previous: prev}, nil
	case "list-pools", "list-certs", "stats":
		sb, ok := s.b.(StatusBackend)
		if !ok {
			return nil, &Error{Code: CodeFailed, Msg: fmt.Sprintf("this daemon cannot answer %s", req.Cmd)}
		}
		switch req.Cmd {
		case "list-pools":
			l, err := sb.ListPools()
			if l == nil {
				l = []Pool{}
			}
			return l, err
		case "list-certs":
			l, err := sb.ListCerts()
			if l == nil {
				l = []Cert{}
			}
			return l, err
		}
		return sb.Stats()
	case "cluster-status", "cluster-move":
		cb, ok := s.b.(ClusterBackend)
		if !ok {
			return nil, &Error{Code: CodeFailed, Msg: "this daemon is not a cluster node (no cluster section)"}
		}
		if req.Cmd == "cluster-status" {
			return cb.ClusterStatus()
		}
		if err := need(req.IKESA != 0 && req.Node != 0, `"ike_sa" and "node"`); err != nil {
			return nil, err
		}
		s.log.Info("control: cluster move", "ike_sa", req.IKESA, "node", req.Node)
		return nil, cb.ClusterMove(req.IKESA, req.Node)
	case "":
		return nil, &Error{Code: CodeInvalid, Msg: `request without "cmd"`}
	}
	return nil, &Error{Code: CodeInvalid, Msg: fmt.Sprintf("unknown command %q", req.Cmd)}
}

func errorResponse(err error) response {
	var e *Error
	if errors.As(err, &e) {
		code := e.Code
		if code == "" {
			code = CodeFailed
		}
		// err.Error() keeps any context the backend wrapped around e.
		return response{Error: err.Error(), Code: code}
	}
	return response{Error: err.Error(), Code: CodeFailed}
}

// streamEvents serves an events subscription until the client goes, the
// backend ends the stream or the server stops. A pump goroutine drains the
// backend's channel into a bounded queue at once, so the backend never
// waits for this client; this goroutine writes the queue out.
func (s *server) streamEvents(ctx context.Context, c net.Conn, r *bufio.Reader) {
	events, cancel := s.b.Subscribe()
	q := &eventQueue{ready: make(chan struct{}, 1)}
	stop, pumped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pumped)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					q.end()
					return
				}
				q.push(ev)
			case <-stop:
				return
			}
		}
	}()
	// The pump drains until cancel has returned, so a backend that sends
	// without a timeout, or whose cancel waits for its own event loop,
	// cannot block on this subscriber.
	defer func() {
		cancel()
		close(stop)
		<-pumped
	}()
	if !s.write(c, response{OK: true}) {
		return
	}
	gone := make(chan struct{})
	go func() {
		// Nothing more is read from the client; EOF means it left.
		io.Copy(io.Discard, r)
		close(gone)
	}()
	w := bufio.NewWriter(c)
	for {
		select {
		case <-q.ready:
		case <-gone:
			return
		case <-ctx.Done():
			return
		}
		batch, dropped, ended := q.take()
		for _, ev := range batch {
			if !encodeLine(w, ev) {
				return
			}
		}
		// Every dropped event came after the batch: the queue drops only
		// when full, and take empties it.
		if dropped > 0 && !encodeLine(w, droppedMarker{dropped}) {
			return
		}
		if w.Flush() != nil || ended {
			return
		}
	}
}

// streamLog serves a log subscription until the client goes or the
// server stops. The subscription is the bounded queue (package
// logstream), filled by the daemon's logging without ever waiting; this
// goroutine writes it out, with {"dropped":N} where lines were lost.
func (s *server) streamLog(ctx context.Context, c net.Conn, r *bufio.Reader, sub *logstream.Subscription) {
	if !s.write(c, response{OK: true}) {
		return
	}
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(gone)
	}()
	w := bufio.NewWriter(c)
	for {
		select {
		case <-sub.Ready():
		case <-gone:
			return
		case <-ctx.Done():
			return
		}
		lines, dropped := sub.Take()
		for _, l := range lines {
			w.Write(l)
			w.WriteByte('\n')
		}
		if dropped > 0 && !encodeLine(w, droppedMarker{dropped}) {
			return
		}
		if w.Flush() != nil {
			return
		}
	}
}

func encodeLine(w *bufio.Writer, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return true // an event that cannot be encoded is skipped, not fatal
	}
	w.Write(b)
	return w.WriteByte('\n') == nil
}

// eventQueue holds up to eventQueueLen events for one client and counts
// what it had to drop.
type eventQueue struct {
	mu      sync.Mutex
	events  []Event
	dropped uint64
	ended   bool
	ready   chan struct{} // 1-buffered: something to take
}

func (q *eventQueue) push(ev Event) {
	q.mu.Lock()
	if len(q.events) < eventQueueLen {
		q.events = append(q.events, ev)
	} else {
		q.dropped++
	}
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) end() {
	q.mu.Lock()
	q.ended = true
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() (events []Event, dropped uint64, ended bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	events, dropped, ended = q.events, q.dropped, q.ended
	q.events, q.dropped = nil, 0
	return events, dropped, ended
}
