package radius

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"
)

// Client sends Access-Requests and Accounting-Requests to the configured
// servers. It is safe for concurrent use; Close ends it.
type Client struct {
	cfg   Config
	stats Stats
	log   *slog.Logger
	now   func() time.Time // a test's clock for the hold-down
	done  chan struct{}    // closed by Close
	wg    sync.WaitGroup   // the sockets' readers

	mu      sync.Mutex
	closed  bool
	servers []*serverState
}

// serverState is one configured server: its sockets, made on first use,
// and until when it is held down.
type serverState struct {
	cfg       Server
	auth      *socket
	acct      *socket
	downUntil time.Time
}

// New makes a client; it opens no socket until the first request.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, now: time.Now, done: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, s := range cfg.Servers {
		c.servers = append(c.servers, &serverState{cfg: s})
	}
	return c, nil
}

// Stats returns the client's counters.
func (c *Client) Stats() *Stats { return &c.stats }

// Close closes the sockets and waits for their readers to end; requests
// in flight return ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	var errs []error
	for _, s := range c.servers {
		for _, sk := range []*socket{s.auth, s.acct} {
			if sk != nil {
				errs = append(errs, sk.conn.Close())
			}
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
	return errors.Join(errs...)
}

// port says which of a server's two sockets a request uses.
type port int

const (
	authPort port = iota
	acctPort
)

// candidates returns the servers to try, in order: pinned alone if it is
// set (an EAP conversation stays with the server holding its State),
// otherwise those not held down in order of preference, and if all are
// held down, all of them (better a late answer than none).
func (c *Client) candidates(pinned int) []int {
	if pinned >= 0 {
		return []int{pinned}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var up, all []int
	for i, s := range c.servers {
		all = append(all, i)
		if !now.Before(s.downUntil) {
			up = append(up, i)
		}
	}
	if len(up) == 0 {
		return all
	}
	return up
}

// socketFor returns server i's socket for p, dialling it on first use.
func (c *Client) socketFor(ctx context.Context, i int, p port) (*socket, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	s := c.servers[i]
	slot, addr := &s.auth, s.cfg.authAddr()
	if p == acctPort {
		slot, addr = &s.acct, s.cfg.acctAddr()
	}
	if *slot != nil {
		return *slot, nil
	}
	d := net.Dialer{}
	if c.cfg.Source.IsValid() {
		d.LocalAddr = &net.UDPAddr{IP: c.cfg.Source.AsSlice()}
	}
	// A connected socket: the kernel passes up only datagrams from the
	// server's address and port (RFC 2865 §3 replies come from there).
	nc, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("radius: %s: %w", addr, err)
	}
	sk := newSocket(nc.(*net.UDPConn), addr)
	*slot = sk
	c.wg.Go(func() { sk.read(&c.stats) })
	return sk, nil
}

// markDown holds server i down after it used up its tries; markUp
// clears that once it answers.
func (c *Client) markDown(i int) {
	c.mu.Lock()
	c.servers[i].downUntil = c.now().Add(c.cfg.HoldDown)
	c.mu.Unlock()
}

func (c *Client) markUp(i int) {
	c.mu.Lock()
	c.servers[i].downUntil = time.Time{}
	c.mu.Unlock()
}

// exchange sends a request built by encode to the candidate servers in
// turn until decode accepts a reply, and returns the server that gave
// it. encode gets the identifier and the server's secret; decode gets a
// received datagram and the request and says whether it is the valid
// reply (nil) or to be dropped.
func (c *Client) exchange(ctx context.Context, p port, pinned int,
	encode func(id byte, secret Secret) ([]byte, error),
	decode func(b, request []byte, secret Secret) error,
) (int, error) {
	var tried []ServerAttempt
	for n, i := range c.candidates(pinned) {
		if n > 0 {
			c.stats.Failovers.Add(1)
		}
		a, err := c.try(ctx, i, p, encode, decode)
		if a.Sent > 0 || a.LastErr != nil {
			tried = append(tried, a)
		}
		switch {
		case err == nil:
			c.markUp(i)
			return i, nil
		case errors.Is(err, errNoReply):
			c.stats.Timeouts.Add(1)
			c.markDown(i)
			c.log.Info("radius: server did not answer; trying the next", "server", a.String())
		case ctx.Err() != nil:
			return -1, &TimeoutError{Tried: tried, Cause: context.Cause(ctx)}
		default:
			return -1, err
		}
	}
	return -1, &TimeoutError{Tried: tried}
}

// errNoReply: a server used up its tries.
var errNoReply = errors.New("radius: no reply")

// try sends one request to server i: Tries transmissions of the same
// packet (same identifier and authenticator, RFC 5080 §2.2.1, so the
// server can recognise a retransmission), the timeout doubling from
// Timeout to MaxTimeout with ±10% jitter.
func (c *Client) try(ctx context.Context, i int, p port,
	encode func(id byte, secret Secret) ([]byte, error),
	decode func(b, request []byte, secret Secret) error,
) (ServerAttempt, error) {
	secret := c.servers[i].cfg.Secret
	sk, err := c.socketFor(ctx, i, p)
	if errors.Is(err, ErrClosed) {
		return ServerAttempt{}, err
	}
	if err != nil {
		// Cannot resolve or bind: as good as silent, try the next.
		addr := c.servers[i].cfg.authAddr()
		if p == acctPort {
			addr = c.servers[i].cfg.acctAddr()
		}
		return ServerAttempt{Server: addr, LastErr: err}, errNoReply
	}
	a := ServerAttempt{Server: sk.addr}
	id, replies, err := sk.acquire(ctx, c.done, &c.stats)
	if err != nil {
		a.LastErr = err // the TimeoutError then says it waited for an identifier
		return a, err
	}
	defer sk.release(id)
	req, err := encode(id, secret)
	if err != nil {
		return a, err
	}
	rt := jitter(c.cfg.Timeout)
	timer := time.NewTimer(rt)
	defer timer.Stop()
	for {
		if a.Sent == 0 {
			c.stats.Requests.Add(1)
		} else {
			c.stats.Retransmissions.Add(1)
		}
		a.Sent++
		// A send error (an ICMP error reported on the connected socket,
		// no route yet) is like a lost datagram: the timer decides.
		if _, err := sk.conn.Write(req); err != nil {
			c.log.Debug("radius: send failed", "server", sk.addr, "err", err)
		}
	wait:
		for {
			select {
			case b := <-replies:
				err := decode(b, req, secret)
				if err == nil {
					return a, nil
				}
				a.Dropped++
				a.LastErr = err
				if errors.Is(err, ErrAuthenticator) || errors.Is(err, ErrMessageAuthenticator) {
					c.stats.BadAuthenticators.Add(1)
				} else {
					c.stats.Malformed.Add(1)
				}
				c.log.Debug("radius: dropped reply", "server", sk.addr, "id", id, "err", err)
			case <-timer.C:
				break wait
			case <-ctx.Done():
				return a, ctx.Err()
			case <-c.done:
				return a, ErrClosed
			}
		}
		if a.Sent >= c.cfg.Tries {
			return a, errNoReply
		}
		rt = jitter(min(2*rt, c.cfg.MaxTimeout))
		timer.Reset(rt)
	}
}

// jitter adds RFC 5080 §2.2.1's RAND, uniform in ±10%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((mrand.Float64()*0.2-0.1)*float64(d))
}

// randomAuthenticator is a fresh Request Authenticator: RFC 2865 §3 wants
// it unpredictable and unique over the secret's lifetime.
func randomAuthenticator() [16]byte {
	var a [16]byte
	rand.Read(a[:])
	return a
}

// Account sends one Accounting-Request, failing over between servers
// like an Access-Request, and returns once a server acknowledged it.
func (c *Client) Account(ctx context.Context, r *AccountingRequest) error {
	_, err := c.exchange(ctx, acctPort, -1,
		func(id byte, s Secret) ([]byte, error) { return EncodeAccountingRequest(r, c.cfg.NAS, id, s) },
		func(b, req []byte, s Secret) error { return DecodeAccountingResponse(b, req, s) },
	)
	if err == nil {
		c.stats.AccountingResponses.Add(1)
	}
	return err
}
