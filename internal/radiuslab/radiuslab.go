//go:build linux

// Package radiuslab runs a real FreeRADIUS 3.2 server for tests, the demo
// and benchmarks: a throwaway configuration written to a temporary
// directory (users, EAP with MD5, MS-CHAPv2, TLS, TTLS and PEAP over a
// CA and certificates made here, accounting to a detail file), the server
// started in the foreground on 127.0.0.1 and free ports, or inside a
// namespace of an internal/lab Lab, and killed by Close.
//
// Nothing is read from /etc/freeradius: the package needs only the
// freeradius Debian package (and eapoltest for EAPOLTest), and root,
// since the server stays root to read the directory.
//
//	srv := radiuslab.Start(t, radiuslab.Options{Users: []radiuslab.User{{Name: "alice", Password: "pw"}}})
//	// srv.AuthAddr(), srv.Secret, srv.AccountingRecords() ...
package radiuslab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/lab"
)

// Options configure a server. The zero value is a server on 127.0.0.1,
// free ports, a random secret, no users and EAP-MD5 as the default EAP
// type.
type Options struct {
	// Secret shared with every client; random if empty.
	Secret string
	Users  []User
	// DefaultEAPType is what the server proposes after the identity
	// ("md5", "mschapv2", "tls", "ttls", "peap"); InnerEAPType is TTLS's
	// inner method ("mschapv2", "md5", "gtc" is not configured).
	DefaultEAPType, InnerEAPType string
	// Address to listen on; 127.0.0.1 if unset.
	Address netip.Addr
	// AuthPort and AcctPort: free ports if zero (1812 and 1813 inside a
	// lab namespace, where they are free by construction).
	AuthPort, AcctPort uint16
	// Lab and NS run the server inside that namespace of the lab, where
	// Address must be configured; the lab's Close kills it too.
	Lab *lab.Lab
	NS  string
	// Debug runs the server with -xx: every request is logged in
	// detail, to Output and Log. Slower; for tests that fail.
	Debug bool
	// Log, if set, gets the server's output as it comes.
	Log io.Writer
	// StartTimeout bounds the wait for "Ready to process requests";
	// 30 s if zero (a loaded machine can be slow to start it).
	StartTimeout time.Duration
}

// Server is a running FreeRADIUS.
type Server struct {
	// Dir is the configuration directory (removed by Close).
	Dir string
	// Secret is the shared secret.
	Secret             string
	Addr               netip.Addr
	AuthPort, AcctPort uint16
	// CACert is the CA's certificate (PEM) that signed the server's; a
	// peer checks the server with it. ClientCert and ClientKey are a
	// client certificate (CN ClientCertName) and its key for EAP-TLS.
	CACert, ClientCert, ClientKey string

	opts Options
	proc process
	once sync.Once
}

// process is a running server: on the host, or in a lab namespace.
type process interface {
	Done() <-chan struct{}
	Stop(grace time.Duration)
	Output() string
}

// Binary is the FreeRADIUS server; Debian installs it as freeradius.
const Binary = "freeradius"

// Available says why a server cannot be started here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("radiuslab: needs root (FreeRADIUS runs as root to read its temporary configuration); run as root")
	}
	if _, err := lookPath(Binary); err != nil {
		return errors.New("radiuslab: freeradius is not installed; run scripts/install-deps.sh (Debian package freeradius)")
	}
	return nil
}

// lookPath finds a program in PATH or /usr/sbin (not in every PATH).
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return exec.LookPath(filepath.Join("/usr/sbin", name))
}

// Start starts a server for test t and closes it at the end of the test.
// It skips the test when Available says the server cannot run here, and
// fails it when the server does not start.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FreeRADIUS output (end):\n%s", lab.LastLines(s.Output(), 60))
		}
		s.Close()
	})
	return s
}

// New writes the configuration and starts the server; it returns once
// the server is ready to process requests. ctx bounds the start; the
// server runs until Close.
func New(ctx context.Context, o Options) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if !o.Address.IsValid() {
		o.Address = netip.MustParseAddr("127.0.0.1")
	}
	if o.Secret == "" {
		var b [12]byte
		rand.Read(b[:])
		o.Secret = hex.EncodeToString(b[:])
	}
	if o.DefaultEAPType == "" {
		o.DefaultEAPType = "md5"
	}
	if o.InnerEAPType == "" {
		o.InnerEAPType = "mschapv2"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	if (o.Lab == nil) != (o.NS == "") {
		return nil, errors.New("radiuslab: Lab and NS go together")
	}
	if o.Lab != nil {
		if o.AuthPort == 0 {
			o.AuthPort = 1812
		}
		if o.AcctPort == 0 {
			o.AcctPort = 1813
		}
	}
	// A port found free may be taken before the server binds it: try
	// again with others (only for ports we picked).
	var err error
	for range 3 {
		var s *Server
		s, err = start(ctx, o)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errBind) || o.AuthPort != 0 || o.Lab != nil {
			break
		}
	}
	return nil, err
}

var errBind = errors.New("radiuslab: could not bind its ports")

func start(ctx context.Context, o Options) (*Server, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("mifike-radiuslab-%d-", os.Getpid()))
	if err != nil {
		return nil, err
	}
	s := &Server{
		Dir: dir, Secret: o.Secret, Addr: o.Address, AuthPort: o.AuthPort, AcctPort: o.AcctPort,
		CACert: filepath.Join(dir, caCertFile), ClientCert: filepath.Join(dir, clientCertFile),
		ClientKey: filepath.Join(dir, clientKeyFile), opts: o,
	}
	fail := func(err error) (*Server, error) {
		s.Close()
		return nil, err
	}
	if s.AuthPort == 0 {
		if s.AuthPort, s.AcctPort, err = freePorts(o.Address); err != nil {
			return fail(err)
		}
	}
	err = writeConfig(dir, confData{
		Dir: dir, Addr: o.Address, AuthPort: s.AuthPort, AcctPort: s.AcctPort, Secret: o.Secret,
		DefaultEAPType: o.DefaultEAPType, InnerEAPType: o.InnerEAPType,
	}, o.Users)
	if err != nil {
		return fail(err)
	}
	bin, err := lookPath(Binary)
	if err != nil {
		return fail(err)
	}
	args := []string{"-f", "-l", "stdout", "-d", dir}
	if o.Debug {
		args = append(args, "-xx")
	}
	ready := newReadyWriter("Ready to process requests")
	var log io.Writer = ready
	if o.Log != nil {
		log = io.MultiWriter(ready, o.Log)
	}
	if o.Lab != nil {
		var p *lab.Proc
		if p, err = o.Lab.Start(o.NS, log, bin, args...); err == nil {
			s.proc = p
		}
	} else {
		var p *hostProc
		if p, err = startHost(log, bin, args...); err == nil {
			s.proc = p
		}
	}
	if err != nil {
		return fail(fmt.Errorf("radiuslab: starting %s: %w", bin, err))
	}
	timer := time.NewTimer(o.StartTimeout)
	defer timer.Stop()
	select {
	case <-ready.ready:
		return s, nil
	case <-s.proc.Done():
		out := s.proc.Output()
		err := fmt.Errorf("radiuslab: freeradius exited before it was ready:\n%s", lab.LastLines(out, 30))
		if strings.Contains(out, "Failed binding") || strings.Contains(out, "Address already in use") {
			err = fmt.Errorf("%w: %w", errBind, err)
		}
		return fail(err)
	case <-timer.C:
		return fail(fmt.Errorf("radiuslab: freeradius not ready after %v:\n%s", o.StartTimeout, lab.LastLines(s.proc.Output(), 30)))
	case <-ctx.Done():
		return fail(context.Cause(ctx))
	}
}

// freePorts returns two UDP ports free on addr now.
func freePorts(addr netip.Addr) (uint16, uint16, error) {
	var ports []uint16
	for range 2 {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		if err != nil {
			return 0, 0, fmt.Errorf("radiuslab: finding a free port on %s: %w", addr, err)
		}
		defer c.Close()
		ports = append(ports, uint16(c.LocalAddr().(*net.UDPAddr).Port))
	}
	return ports[0], ports[1], nil
}

// AuthAddr and AcctAddr are where the server listens.
func (s *Server) AuthAddr() netip.AddrPort { return netip.AddrPortFrom(s.Addr, s.AuthPort) }
func (s *Server) AcctAddr() netip.AddrPort { return netip.AddrPortFrom(s.Addr, s.AcctPort) }

// Output returns the end of what the server printed.
func (s *Server) Output() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.Output()
}

// Close kills the server and removes its directory.
func (s *Server) Close() error {
	s.once.Do(func() {
		if s.proc != nil {
			s.proc.Stop(time.Second)
		}
		os.RemoveAll(s.Dir)
	})
	return nil
}

// readyWriter watches output lines for a marker and closes ready when
// it appears: the server says it is listening, so no sleeping.
type readyWriter struct {
	marker []byte
	ready  chan struct{}
	mu     sync.Mutex
	line   []byte
	seen   bool
}

func newReadyWriter(marker string) *readyWriter {
	return &readyWriter{marker: []byte(marker), ready: make(chan struct{})}
}

func (r *readyWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen {
		return len(p), nil
	}
	r.line = append(r.line, p...)
	for {
		i := bytes.IndexByte(r.line, '\n')
		if i < 0 {
			break
		}
		if bytes.Contains(r.line[:i], r.marker) {
			r.seen = true
			r.line = nil
			close(r.ready)
			return len(p), nil
		}
		r.line = r.line[i+1:]
	}
	return len(p), nil
}

// hostProc is a server on the host.
type hostProc struct {
	cmd  *exec.Cmd
	out  *lab.TailBuffer
	done chan struct{}
}

func startHost(log io.Writer, name string, args ...string) (*hostProc, error) {
	p := &hostProc{out: &lab.TailBuffer{Max: 256 << 10}, done: make(chan struct{})}
	w := io.MultiWriter(p.out, log)
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	// Nothing may outlive the test, even when it is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *hostProc) Done() <-chan struct{} { return p.done }
func (p *hostProc) Output() string        { return p.out.String() }

func (p *hostProc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Record is one accounting request as the detail module wrote it:
// attribute name to values, in order (strings unquoted).
type Record map[string][]string

// Get returns the first value of an attribute, or "".
func (r Record) Get(name string) string {
	if v := r[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// AccountingRecords reads the detail file: every Accounting-Request the
// server accepted so far, oldest first. No file yet: no records.
func (s *Server) AccountingRecords() ([]Record, error) {
	f, err := os.Open(filepath.Join(s.Dir, "acct", "detail"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	var cur Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != nil {
				recs = append(recs, cur)
				cur = nil
			}
		case !strings.HasPrefix(line, "\t"):
			cur = Record{} // the time header of a record
		case cur != nil:
			name, val, ok := strings.Cut(strings.TrimSpace(line), " = ")
			if ok {
				cur[name] = append(cur[name], strings.Trim(val, `"`))
			}
		}
	}
	if cur != nil {
		recs = append(recs, cur)
	}
	return recs, sc.Err()
}

// EAPOLTest runs wpa_supplicant's eapol_test (Debian package eapoltest)
// against the server with the given network block (wpa_supplicant.conf
// syntax) and extra arguments (e.g. "-n" when the method derives no
// MSK), and returns its output. It runs inside the lab namespace if the
// server does.
func (s *Server) EAPOLTest(ctx context.Context, network string, args ...string) (string, error) {
	bin, err := exec.LookPath("eapol_test")
	if err != nil {
		return "", errors.New("radiuslab: eapol_test is not installed; run scripts/install-deps.sh (Debian package eapoltest)")
	}
	f, err := os.CreateTemp(s.Dir, "eapol-*.conf")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(network + "\n"); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	argv := append([]string{"-c", f.Name(), "-a", s.Addr.String(), "-p", fmt.Sprint(s.AuthPort), "-s", s.Secret, "-t", "20"}, args...)
	if s.opts.Lab != nil {
		out, err := s.opts.Lab.Run(ctx, s.opts.NS, bin, argv...)
		return string(out), err
	}
	out, err := exec.CommandContext(ctx, bin, argv...).CombinedOutput()
	return string(out), err
}
