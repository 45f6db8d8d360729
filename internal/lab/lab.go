//go:build linux

// Package lab builds throwaway networks out of Linux network namespaces:
// namespaces joined by veth links, and the processes (daemons, iperf3,
// ping) that run inside them. The benchmark (mifike bench) and the demo
// use it; it needs root.
//
// Every namespace is named PREFIX-PID-NAME, so concurrent labs do not
// collide and New can remove what a killed run of the same prefix left
// behind. Every process gets SIGKILL when we die (Pdeathsig), and Close
// kills them and deletes the namespaces; New's context closes the lab
// when it is cancelled, which is how a caller ties cleanup to SIGINT and
// SIGTERM:
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	l, err := lab.New(ctx, "mfkb")
//	...
//	defer l.Close()
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/run/netns"

// Lab is a set of network namespaces and the processes running in them.
// Its methods are safe for concurrent use; after Close they fail.
type Lab struct {
	ctx    context.Context
	cancel context.CancelFunc
	prefix string // PREFIX-PID-

	mu       sync.Mutex
	closed   bool
	nss      []string
	procs    []*Proc
	unhook   func() bool
	closing  chan struct{} // closed when the first Close is done
	closeErr error
}

// New starts an empty lab. prefix should be short and name the caller
// ("mfkb" for the benchmark). The lab closes itself when ctx is done.
func New(ctx context.Context, prefix string) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: network namespaces need root; run as root (e.g. with sudo)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("lab: the ip command (iproute2) is missing; run scripts/install-deps.sh")
	}
	removeStale(prefix)
	l := &Lab{prefix: fmt.Sprintf("%s-%d-", prefix, os.Getpid()), closing: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(ctx)
	l.unhook = context.AfterFunc(l.ctx, func() { l.Close() })
	return l, nil
}

// removeStale deletes namespaces of this prefix whose process is gone (a
// run killed before its Close).
func removeStale(prefix string) {
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if !ok {
			continue
		}
		pid, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(pid)
		if err != nil || n == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its owner still runs
		}
		exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}

// AddNS creates namespace name (PREFIX-PID-name) with its loopback up
// and returns the full name, which the other methods take.
func (l *Lab) AddNS(name string) (string, error) {
	ns := l.prefix + name
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return "", errClosed
	}
	// Recorded first, so Close removes it even if the next steps fail.
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	if err := l.host("ip", "netns", "add", ns); err != nil {
		return "", err
	}
	return ns, l.IP(ns, "link", "set", "lo", "up")
}

// End is one side of a veth link: its namespace (as AddNS returned it),
// interface name and addresses in CIDR notation.
type End struct {
	NS, Dev string
	Addrs   []string
}

// Veth joins two namespaces with a veth pair, gives each end its
// addresses and brings both up.
func (l *Lab) Veth(a, b End) error {
	if err := l.host("ip", "link", "add", a.Dev, "netns", a.NS, "type", "veth", "peer", "name", b.Dev, "netns", b.NS); err != nil {
		return err
	}
	for _, e := range []End{a, b} {
		for _, addr := range e.Addrs {
			if err := l.IP(e.NS, "addr", "add", addr, "dev", e.Dev); err != nil {
				return err
			}
		}
		if err := l.IP(e.NS, "link", "set", e.Dev, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Forwarding makes namespace ns a router for IPv4 and IPv6.
func (l *Lab) Forwarding(ns string) error {
	_, err := l.Run(context.Background(), ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	return err
}

// IP runs "ip -n ns ARGS...", e.g. l.IP(ns, "route", "add", ...).
func (l *Lab) IP(ns string, args ...string) error {
	return l.host("ip", append([]string{"-n", ns}, args...)...)
}

// Run runs a command inside namespace ns until it exits and returns its
// standard output. A failure's error holds the command and what it
// printed on standard error. Cancelling ctx or closing the lab kills the
// command.
func (l *Lab) Run(ctx context.Context, ns, name string, args ...string) ([]byte, error) {
	return l.run(ctx, append([]string{"ip", "netns", "exec", ns, name}, args...))
}

func (l *Lab) host(name string, args ...string) error {
	_, err := l.run(context.Background(), append([]string{name}, args...))
	return err
}

func (l *Lab) run(ctx context.Context, argv []string) ([]byte, error) {
	if l.ctx.Err() != nil {
		return nil, errClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(l.ctx, cancel)()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if l.ctx.Err() != nil {
			return out, errClosed
		}
		if ctx.Err() != nil {
			return out, fmt.Errorf("lab: %s: %w", strings.Join(argv, " "), context.Cause(ctx))
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		return out, fmt.Errorf("lab: %s: %v: %s", strings.Join(argv, " "), err, LastLines(msg, 10))
	}
	return out, nil
}

var errClosed = errors.New("lab: closed")

// Proc is a long-running process in a namespace.
type Proc struct {
	cmd  *exec.Cmd
	out  *TailBuffer
	done chan struct{}
	err  error // set before done closes
}

// Start starts a process in namespace ns; it runs until it exits, Stop,
// or Close. Its standard output and error go to log (which may be nil)
// and the last 64 KiB of them to Output. For environment variables, run
// "env K=V NAME ARGS...". Do not call it from a goroutine locked to its
// thread (runtime.LockOSThread) that may end locked: Pdeathsig fires
// when the starting thread ends, not only when we do.
func (l *Lab) Start(ns string, log io.Writer, name string, args ...string) (*Proc, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosed
	}
	p := &Proc{out: &TailBuffer{Max: 64 << 10}, done: make(chan struct{})}
	var w io.Writer = p.out
	if log != nil {
		w = io.MultiWriter(p.out, log)
	}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	// ip netns exec execs the command in place, so the signal reaches
	// it; SIGKILL because nothing may outlive us, even a hung daemon.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: starting %s in %s: %w", name, ns, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended, once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output returns the end of what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Stop asks the process to end (SIGTERM) and kills it after grace.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Close stops every process (SIGTERM, then SIGKILL after a second) and
// deletes the namespaces. It may be called more than once and from any
// goroutine: the first call does the work, the others wait for it (so a
// deferred Close still cleans up when the context began closing).
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.closing
		return l.closeErr
	}
	l.closed = true
	procs, nss := l.procs, l.nss
	l.mu.Unlock()
	l.unhook()
	l.cancel() // kills what Run is running
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop(time.Second) })
	}
	wg.Wait()
	var errs []error
	for _, ns := range nss {
		if _, err := os.Stat(netnsDir + "/" + ns); err != nil {
			continue // never made
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("lab: deleting namespace %s: %v: %s", ns, err, bytes.TrimSpace(out)))
		}
	}
	l.closeErr = errors.Join(errs...)
	close(l.closing)
	return l.closeErr
}

// TailBuffer keeps the last Max octets written to it: a process's
// output for a failure's message (also radiuslab's).
type TailBuffer struct {
	mu  sync.Mutex
	Max int
	b   []byte
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.Max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// LastLines keeps the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
