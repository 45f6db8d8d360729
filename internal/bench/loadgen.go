//go:build linux

package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// The load generator ("mifike bench loadgen", hidden) is the initiator
// of the handshake and scale suites: mifike's protocol engine driven
// in-process over real UDP sockets, one engine per source address, with
// a bounded number of handshakes in flight. It drives mifike's and
// strongSwan's responders alike, so the two are measured against the
// same initiator. It runs as a process of its own inside the initiator's
// namespace, so its CPU time is its own.

// loadConn is the name of the initiator's connection in the load
// generator's configuration file.
const loadConn = "bench"

// LoadConfig configures the load generator.
type LoadConfig struct {
	// Config is a mifike configuration file with the connection
	// "bench": the initiator's side (proposals, identities, Child SA).
	Config string
	// Addrs are the source addresses, one initiator (engine) each; they
	// must be on an interface of the namespace we run in.
	Addrs []netip.Addr
	// Remotes, when set, are the responders' addresses: handshake k of
	// the run goes to Remotes[k mod len], whichever initiator starts it,
	// so the load is spread evenly over them (the cluster suite's nodes).
	// Unset, every handshake goes to the connection's remote address.
	Remotes []netip.Addr
	// N handshakes in all, at most Window in flight.
	N, Window int
	// Warmup handshakes come first, untimed.
	Warmup int
	// Hold keeps the SAs up after the last handshake until ctx ends.
	Hold bool
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Deadline, when set, ends the timed phase early: no handshake
	// starts after it, and the result counts those that ended (with
	// Partial set). The scale suite holds what a slow responder reached.
	Deadline time.Duration
}

// LoadResult is what the load generator measured. A handshake is
// IKE_SA_INIT and IKE_AUTH with the first Child SA, timed from the first
// request until the Child SA is up.
type LoadResult struct {
	OK          int     `json:"ok"`
	Failed      int     `json:"failed"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"rate"` // handshakes/s
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Retransmits uint64  `json:"retransmits"`
	Cookies     uint64  `json:"cookies"` // COOKIE round trips the responder asked for
	// CPUSeconds is this process's CPU time over the handshakes.
	CPUSeconds float64 `json:"cpu_seconds"`
	Error      string  `json:"error,omitempty"`
	// Partial: the Deadline passed before N handshakes.
	Partial bool `json:"partial,omitempty"`
}

// RunLoad runs the load generator: Warmup handshakes first (untimed),
// then the line {"warm":true} on out; after start is closed (or at once
// when it is nil), N timed handshakes and their LoadResult as one JSON
// line. With Hold it then waits for ctx, keeping the SAs up.
func RunLoad(ctx context.Context, cfg LoadConfig, start <-chan struct{}, out io.Writer) error {
	if len(cfg.Addrs) == 0 || cfg.N <= 0 || cfg.Window <= 0 {
		return errors.New("loadgen: needs source addresses, N > 0 and a window > 0")
	}
	c, err := config.Load(cfg.Config)
	if err != nil {
		return err
	}
	conns, _, err := c.Build(nil)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(conns, func(x *ike.Connection) bool { return x.Name == loadConn }) {
		return fmt.Errorf("loadgen: %s has no connection %q", cfg.Config, loadConn)
	}
	lg := &loadGen{tokens: make(chan struct{}, cfg.Window), remotes: cfg.Remotes}
	for _, a := range cfg.Addrs {
		in, err := newInitiator(lg, a, conns, c.Retransmit)
		if err != nil {
			lg.close()
			return err
		}
		lg.inits = append(lg.inits, in)
	}
	defer lg.close()
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer lg.stop()
	for _, in := range lg.inits {
		wg.Go(func() { in.run(ctx) })
	}
	if cfg.Warmup > 0 {
		select {
		case <-lg.phase(cfg.Warmup):
		case <-ctx.Done():
			return errors.New("loadgen: timed out warming up")
		}
	}
	fmt.Fprintln(out, `{"warm":true}`)
	if start != nil {
		select {
		case <-start:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cpu0, _ := cpuSeconds(os.Getpid())
	t0 := time.Now()
	done := lg.phase(cfg.N)
	var deadline <-chan time.Time
	if cfg.Deadline > 0 {
		deadline = time.After(cfg.Deadline)
	}
	var res LoadResult
	select {
	case <-done:
	case <-deadline:
		// Start no more; give those in flight a moment to end.
		lg.left.Store(0)
		for i := 0; i < 100 && len(lg.tokens) > 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		res.Partial = true
	case <-ctx.Done():
		res.Error = "timed out before every handshake ended"
	}
	res.Seconds = time.Since(t0).Seconds()
	cpu1, _ := cpuSeconds(os.Getpid())
	res.CPUSeconds = cpu1 - cpu0
	lg.mu.Lock()
	lat := slices.Clone(lg.lat)
	res.OK, res.Failed = len(lg.lat), lg.failed
	lg.mu.Unlock()
	for _, in := range lg.inits {
		res.Retransmits += in.retransmits.Load()
		res.Cookies += in.cookies.Load()
	}
	if res.Seconds > 0 {
		res.Rate = float64(res.OK) / res.Seconds
	}
	res.P50ms, res.P99ms = percentile(lat, 0.50)*1e3, percentile(lat, 0.99)*1e3
	b, _ := json.Marshal(res)
	fmt.Fprintf(out, "%s\n", b)
	if cfg.Hold && res.Error == "" {
		<-ctx.Done() // the SAs stay up while the caller measures the responder
	}
	return nil
}

// percentile of durations in seconds (nearest rank); 0 for none.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(int(p*float64(len(s))), len(s)-1)]
}

type loadGen struct {
	inits  []*initiator
	left   atomic.Int64  // handshakes of this phase not started yet
	tokens chan struct{} // one per handshake in flight
	// remotes are LoadConfig.Remotes; started counts the handshakes
	// started, to take them in turn.
	remotes []netip.Addr
	started atomic.Uint64

	mu       sync.Mutex
	n        int       // handshakes in this phase
	lat      []float64 // seconds, one per handshake that succeeded
	failed   int
	done     chan struct{}
	finished bool
	stopOnce sync.Once
}

// phase starts n handshakes and returns a channel closed when all have
// ended. The previous phase must have ended.
func (lg *loadGen) phase(n int) <-chan struct{} {
	lg.mu.Lock()
	lg.n, lg.lat, lg.failed, lg.finished = n, nil, 0, false
	lg.done = make(chan struct{})
	done := lg.done
	lg.mu.Unlock()
	lg.left.Store(int64(n))
	for _, in := range lg.inits {
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
	return done
}

// end records a finished handshake and frees its place in the window.
func (lg *loadGen) end(took time.Duration, ok bool) {
	<-lg.tokens
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if ok {
		lg.lat = append(lg.lat, took.Seconds())
	} else {
		lg.failed++
	}
	if !lg.finished && len(lg.lat)+lg.failed >= lg.n {
		lg.finished = true
		close(lg.done)
	}
}

func (lg *loadGen) stop() {
	lg.stopOnce.Do(func() {
		for _, in := range lg.inits {
			close(in.quit)
		}
	})
}

func (lg *loadGen) close() {
	for _, in := range lg.inits {
		in.close()
	}
}

// initiator is one engine with its two sockets (IKE and NAT-T ports of
// one source address); only run touches the engine.
type initiator struct {
	lg     *loadGen
	engine *ike.Engine
	addr   netip.Addr
	bind   *conn.UDP
	rx     chan ike.Datagram
	quit   chan struct{}
	wake   chan struct{} // a phase began
	// Handshakes in flight: when each started.
	pending     map[uint64]time.Time
	retransmits atomic.Uint64
	cookies     atomic.Uint64
}

func newInitiator(lg *loadGen, addr netip.Addr, conns []*ike.Connection, rt ike.Retransmit) (*initiator, error) {
	e, err := ike.New(ike.Config{Connections: conns, Rand: rand.Reader, Retransmit: rt,
		Logger:      slog.New(slog.DiscardHandler),
		MaxHalfOpen: 1 << 20, MaxIKESAs: 1 << 22, CookieThreshold: 1 << 20})
	if err != nil {
		return nil, err
	}
	in := &initiator{lg: lg, engine: e, addr: addr, bind: new(conn.UDP),
		rx: make(chan ike.Datagram, 1024), quit: make(chan struct{}), wake: make(chan struct{}, 1), pending: map[uint64]time.Time{}}
	for _, port := range []uint16{500, 4500} {
		if _, err := in.bind.Listen(addr, port, port == 4500); err != nil {
			in.close()
			return nil, fmt.Errorf("loadgen: %w (is %v an address of this namespace?)", err, addr)
		}
	}
	for _, s := range in.bind.Sockets() {
		// Bursts of answers must not overflow the default buffer.
		s.Conn.SetReadBuffer(4 << 20)
	}
	fns, err := in.bind.Open(0)
	if err != nil {
		in.close()
		return nil, err
	}
	for _, recv := range fns {
		go in.read(recv)
	}
	return in, nil
}

func (in *initiator) close() { in.bind.Close() }

// read passes the IKE messages recv returns to the engine's loop; NAT
// keepalives (RFC 3948 §2.3) and anything cut short are not for it.
func (in *initiator) read(recv conn.ReceiveFunc) {
	pkts := make([]conn.Packet, in.bind.BatchSize())
	for {
		n, err := recv(pkts)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for _, p := range pkts[:n] {
			if p.Kind != conn.IKE {
				continue
			}
			d := ike.Datagram{Local: p.Local, Remote: p.Remote, Data: bytes.Clone(p.Data())}
			select {
			case in.rx <- d:
			case <-in.quit:
				return
			}
		}
	}
}

// run starts handshakes while the window and the count allow, and feeds
// the engine what arrives, until quit.
func (in *initiator) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	lg := in.lg
	for {
		// Offer to take a place in the window only while handshakes are
		// left to start.
		var tokens chan struct{}
		if lg.left.Load() > 0 {
			tokens = lg.tokens
		}
		select {
		case tokens <- struct{}{}:
			if lg.left.Add(-1) < 0 {
				<-lg.tokens
				continue
			}
			now := time.Now()
			o := ike.InitiateOptions{Conn: loadConn, Local: netip.AddrPortFrom(in.addr, 500)}
			if len(lg.remotes) > 0 {
				k := lg.started.Add(1) - 1
				o.Remote = netip.AddrPortFrom(lg.remotes[k%uint64(len(lg.remotes))], 0) // port 0: the connection's
			}
			id, acts, err := in.engine.Initiate(now, o)
			if err != nil {
				lg.end(0, false)
			} else {
				in.pending[id] = now
			}
			in.apply(acts, timer)
		case d := <-in.rx:
			in.apply(in.engine.Receive(time.Now(), d), timer)
		case <-timer.C:
			in.apply(in.engine.Tick(time.Now()), timer)
		case <-in.wake:
		case <-in.quit:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (in *initiator) apply(acts []ike.Action, timer *time.Timer) {
	for _, a := range acts {
		switch a := a.(type) {
		case ike.Send:
			if in.bind.Send(a.Data, a.Local, a.Remote, "") == conn.ErrNoSocket {
				in.bind.Send(a.Data, netip.AddrPortFrom(in.addr, 4500), a.Remote, "")
			}
		case ike.SendKeepalive:
			in.bind.SendKeepalive(a.Local, a.Remote, "")
		case ike.ArmTimer:
			timer.Reset(max(time.Until(a.At), 0))
		case ike.Event:
			in.event(a)
		}
	}
}

func (in *initiator) event(e ike.Event) {
	ok := false
	switch e.Kind {
	case ike.EventRetransmit:
		in.retransmits.Add(1)
		return
	case ike.EventChildUp:
		ok = true
	case ike.EventIKEFailed, ike.EventIKEDown, ike.EventChildFailed:
	default:
		return
	}
	t, pending := in.pending[e.IKESA]
	if !pending {
		return
	}
	delete(in.pending, e.IKESA)
	in.cookies.Store(in.engine.Stats().NotifiesRecv[wire.NotifyCookie])
	in.lg.end(time.Since(t), ok)
}
