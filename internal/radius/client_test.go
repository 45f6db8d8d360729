package radius

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"layeh.com/radius"

	"layeh.com/radius/rfc2865"
)

// newTestClient makes a client for servers with short timers, closed at
// the end of the test.
func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	// Short first timeouts, so silent servers cost little, but enough
	// tries and a cap that a live server on a loaded machine gets over
	// half a second to answer.
	if cfg.Timeout == 0 {
		cfg.Timeout = 50 * time.Millisecond
	}
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = 4 * cfg.Timeout
	}
	if cfg.Tries == 0 {
		cfg.Tries = 4
	}
	cfg.NAS = testNAS
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// challengeHandler answers every request with an Access-Challenge
// carrying State "st", after the replies extra makes.
func challengeHandler(t testing.TB, extra func(req []byte) [][]byte) func([]byte) [][]byte {
	return func(req []byte) [][]byte {
		var out [][]byte
		if extra != nil {
			out = extra(req)
		}
		return append(out, makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, 2, 30),
			radius.Attributes{{Type: rfc2865.State_Type, Attribute: []byte("st")}}, replyOpts{secret: testSecret}))
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// RFC 3579 §3.2: a reply with a bad Message-Authenticator is dropped
// silently and the client goes on waiting; the good one that follows is
// taken.
func TestBadMessageAuthenticatorDroppedThenGoodAccepted_RFC3579_3_2(t *testing.T) {
	f := newFakeServer(t, testSecret, challengeHandler(t, func(req []byte) [][]byte {
		return [][]byte{
			makeReply(t, req, radius.CodeAccessAccept, eapSuccess(2), nil, replyOpts{secret: testSecret, badMA: true}),
			makeReply(t, req, radius.CodeAccessAccept, eapSuccess(2), nil, replyOpts{secret: testSecret, noMA: true}),
		}
	}))
	c := newTestClient(t, Config{Servers: []Server{f.server(testSecret)}, Timeout: time.Minute})
	r, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != AccessChallenge {
		t.Errorf("took the %v, want the valid Access-Challenge", r.Code)
	}
	if n := c.Stats().BadAuthenticators.Load(); n != 2 {
		t.Errorf("BadAuthenticators = %d, want 2", n)
	}
}

// RFC 2865 §3: a wrong Response Authenticator is dropped silently; a
// reply to another identifier is ignored.
func TestWrongAuthenticatorAndIdentifierDropped_RFC2865_3(t *testing.T) {
	f := newFakeServer(t, testSecret, challengeHandler(t, func(req []byte) [][]byte {
		return [][]byte{
			makeReply(t, req, radius.CodeAccessAccept, eapSuccess(2), nil, replyOpts{secret: testSecret, badAuth: true}),
			makeReply(t, req, radius.CodeAccessAccept, eapSuccess(2), nil, replyOpts{secret: testSecret, id: int(req[1]+1) + 1}),
		}
	}))
	c := newTestClient(t, Config{Servers: []Server{f.server(testSecret)}, Timeout: time.Minute})
	r, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if r.Code != AccessChallenge || st.BadAuthenticators.Load() != 1 || st.Unexpected.Load() != 1 {
		t.Errorf("code %v, BadAuthenticators %d, Unexpected %d; want Challenge, 1, 1",
			r.Code, st.BadAuthenticators.Load(), st.Unexpected.Load())
	}
}

// RFC 5080 §2.2.1: a retransmission is the same packet, identifier and
// authenticator included.
func TestRetransmissionSameIdentifierAndAuthenticator_RFC5080_2_2_1(t *testing.T) {
	var n atomic.Int32
	f := newFakeServer(t, testSecret, func(req []byte) [][]byte {
		if n.Add(1) < 3 {
			return nil // lose the first two
		}
		return challengeHandler(t, nil)(req)
	})
	c := newTestClient(t, Config{Servers: []Server{f.server(testSecret)}, Timeout: 20 * time.Millisecond, Tries: 10})
	if _, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10)); err != nil {
		t.Fatal(err)
	}
	// At least three transmissions (more if the answer to the third was
	// slow), all the same octets.
	got := f.received()
	if len(got) < 3 {
		t.Fatalf("server got %d packets, want at least 3", len(got))
	}
	for i := 1; i < len(got); i++ {
		if !bytes.Equal(got[i], got[0]) {
			t.Errorf("transmission %d differs from the first", i+1)
		}
	}
	if r := c.Stats().Retransmissions.Load(); r != uint64(len(got)-1) {
		t.Errorf("Retransmissions = %d, want %d", r, len(got)-1)
	}
}

// A silent first server: the request fails over to the second, the
// first is then held down (not tried at all) and tried again once the
// hold-down is over.
func TestFailoverAndHoldDown(t *testing.T) {
	silent, silentGot := silentPort(t)
	live := newFakeServer(t, testSecret, challengeHandler(t, nil))
	c := newTestClient(t, Config{Servers: []Server{
		{Address: "127.0.0.1", AuthPort: silent, Secret: NewSecret(testSecret)},
		live.server(testSecret),
	}, HoldDown: time.Hour})
	tries := c.cfg.Tries
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	round := func() {
		t.Helper()
		if _, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10)); err != nil {
			t.Fatal(err)
		}
	}
	round()
	if silentGot() != tries || c.Stats().Failovers.Load() != 1 {
		t.Fatalf("first round: silent server got %d, failovers %d; want %d, 1", silentGot(), c.Stats().Failovers.Load(), tries)
	}
	round()
	if silentGot() != tries {
		t.Fatalf("in hold-down: silent server got %d, want still %d", silentGot(), tries)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	round()
	if silentGot() != 2*tries {
		t.Fatalf("after hold-down: silent server got %d, want %d", silentGot(), 2*tries)
	}
}

// All servers silent: the error names each with what it was sent.
func TestAllServersSilentTimeout(t *testing.T) {
	p1, _ := silentPort(t)
	p2, _ := silentPort(t)
	c := newTestClient(t, Config{Servers: []Server{
		{Address: "127.0.0.1", AuthPort: p1, Secret: NewSecret(testSecret)},
		{Address: "127.0.0.1", AuthPort: p2, Secret: NewSecret(testSecret)},
	}, Tries: 2})
	_, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10))
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want a TimeoutError", err)
	}
	for _, p := range []uint16{p1, p2} {
		if want := fmt.Sprintf("127.0.0.1:%d (sent 2)", p); !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
	if te.Cause != nil || c.Stats().Timeouts.Load() != 2 {
		t.Errorf("cause %v, timeouts %d; want nil, 2", te.Cause, c.Stats().Timeouts.Load())
	}
}

// The caller's deadline bounds the exchange, retransmissions and
// failover included.
func TestContextDeadlineBoundsExchange(t *testing.T) {
	p1, _ := silentPort(t)
	c := newTestClient(t, Config{Servers: []Server{{Address: "127.0.0.1", AuthPort: p1, Secret: NewSecret(testSecret)}},
		Timeout: time.Hour, Tries: 100})
	_, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, 100*time.Millisecond), eapPacket(2, 1, 10))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a TimeoutError from the deadline", err)
	}
}

// RFC 2865 §4.3: an Access-Reject ends the conversation; its EAP-Failure
// is returned to forward, with a RejectError carrying Reply-Message.
func TestAccessReject_RFC2865_4_3(t *testing.T) {
	f := newFakeServer(t, testSecret, func(req []byte) [][]byte {
		return [][]byte{makeReply(t, req, radius.CodeAccessReject, eapFailure(2),
			radius.Attributes{{Type: rfc2865.ReplyMessage_Type, Attribute: []byte("bad password")}}, replyOpts{secret: testSecret})}
	})
	c := newTestClient(t, Config{Servers: []Server{f.server(testSecret)}})
	cv := c.NewConversation("alice", "", "")
	r, err := cv.Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10))
	var re *RejectError
	if !errors.As(err, &re) || re.ReplyMessage != "bad password" {
		t.Fatalf("got %v, want a RejectError with the Reply-Message", err)
	}
	if r == nil || r.Code != AccessReject || !bytes.Equal(r.EAPMessage, eapFailure(2)) {
		t.Errorf("reply %+v, want the Access-Reject with EAP-Failure", r)
	}
	if _, err := cv.Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10)); !errors.Is(err, ErrConversationOver) {
		t.Errorf("round after the reject: %v", err)
	}
}

// A conversation echoes State and stays with the server that answered
// its first round (RFC 2865 §5.24; the State is that server's).
func TestConversationEchoesStateAndStaysWithServer(t *testing.T) {
	silent, silentGot := silentPort(t)
	var round atomic.Int32
	live := newFakeServer(t, testSecret, func(req []byte) [][]byte {
		p, _ := radius.Parse(req, []byte(testSecret))
		n := round.Add(1)
		if want := fmt.Sprintf("state-%d", n-1); n > 1 && string(rfc2865.State_Get(p)) != want {
			t.Errorf("round %d: State %q, want %q", n, rfc2865.State_Get(p), want)
		}
		if n < 3 {
			return [][]byte{makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, byte(n), 30),
				radius.Attributes{{Type: rfc2865.State_Type, Attribute: fmt.Appendf(nil, "state-%d", n)}}, replyOpts{secret: testSecret})}
		}
		return [][]byte{makeReply(t, req, radius.CodeAccessAccept, eapSuccess(3), nil, replyOpts{secret: testSecret})}
	})
	c := newTestClient(t, Config{Servers: []Server{
		{Address: "127.0.0.1", AuthPort: silent, Secret: NewSecret(testSecret)}, live.server(testSecret)}})
	cv := c.NewConversation("alice", "", "")
	var last *Reply
	for i := range 3 {
		r, err := cv.Round(ctxTimeout(t, time.Minute), eapPacket(2, byte(i), 10))
		if err != nil {
			t.Fatalf("round %d: %v", i+1, err)
		}
		last = r
	}
	if last.Code != AccessAccept || silentGot() != c.cfg.Tries || c.Stats().Challenges.Load() != 2 || c.Stats().Accepts.Load() != 1 {
		t.Errorf("last %v, silent server got %d (want %d: first round only), challenges %d, accepts %d",
			last.Code, silentGot(), c.cfg.Tries, c.Stats().Challenges.Load(), c.Stats().Accepts.Load())
	}
}

// Malformed and oversized replies are dropped; the client waits on.
func TestMalformedAndOversizedRepliesDropped(t *testing.T) {
	f := newFakeServer(t, testSecret, challengeHandler(t, func(req []byte) [][]byte {
		big := makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, 2, 30), nil, replyOpts{secret: testSecret,
			modifyRaw: func(b []byte) []byte { b[2], b[3] = 0x13, 0x88; return append(b, make([]byte, 5000)...) }}) // Length 5000
		return [][]byte{{1}, req[:19], big,
			makeReply(t, req, radius.CodeAccessChallenge, nil, nil, replyOpts{secret: testSecret})}
	}))
	c := newTestClient(t, Config{Servers: []Server{f.server(testSecret)}, Timeout: time.Minute})
	r, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10))
	if err != nil || r.Code != AccessChallenge {
		t.Fatalf("got %v, %v", r, err)
	}
	// {1} has no identifier: counted by the reader; the others by the
	// request.
	if m := c.Stats().Malformed.Load(); m != 4 {
		t.Errorf("Malformed = %d, want 4", m)
	}
}

// RFC 5080 §2.2.1 / RFC 2865 §3: no identifier is reused while its
// request is in flight. With 256 in flight on a socket, the next request
// waits for one to be freed.
func TestIdentifierExhaustionWaits(t *testing.T) {
	var mu sync.Mutex
	held := map[byte][]byte{}
	f := newFakeServer(t, testSecret, func(req []byte) [][]byte { return nil })
	f.mu.Lock()
	f.seen = make(chan []byte, 1024)
	f.mu.Unlock()
	c := newTestClient(t, Config{Servers: []Server{f.server(testSecret)}, Timeout: time.Hour, Tries: 1})
	ctx := ctxTimeout(t, time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 257)
	start := func() {
		wg.Go(func() {
			_, err := c.NewConversation("alice", "", "").Round(ctx, eapPacket(2, 1, 10))
			errs <- err
		})
	}
	for range 256 {
		start()
	}
	for range 256 {
		req := <-f.seen
		mu.Lock()
		if _, dup := held[req[1]]; dup {
			t.Errorf("identifier %d reused while in flight", req[1])
		}
		held[req[1]] = req
		mu.Unlock()
	}
	start()
	for c.Stats().IdentifierWaits.Load() == 0 {
		runtime.Gosched() // until the 257th is blocked waiting
	}
	select {
	case req := <-f.seen:
		t.Fatalf("a 257th request went out with identifier %d", req[1])
	default:
	}
	// Answer one: its identifier is freed and the waiting request takes
	// it.
	var freed byte
	for id, req := range held {
		freed = id
		f.conn.WriteToUDP(makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, 2, 30), nil, replyOpts{secret: testSecret}), clientAddr(t, c))
		break
	}
	if err := <-errs; err != nil {
		t.Fatalf("answered request: %v", err)
	}
	req := <-f.seen
	if req[1] != freed {
		t.Errorf("257th request took identifier %d, want the freed %d", req[1], freed)
	}
	c.Close() // ends the 256 still waiting
	wg.Wait()
	for range 256 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
	}
}

// clientAddr is the local address of c's auth socket to its first
// server.
func clientAddr(t testing.TB, c *Client) *net.UDPAddr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[0].auth.conn.LocalAddr().(*net.UDPAddr)
}

// Accounting Start, Interim-Update and Stop reach the server and their
// responses are verified (RFC 2866 §4).
func TestAccounting_RFC2866(t *testing.T) {
	var statuses []uint32
	var mu sync.Mutex
	f := newFakeServer(t, testSecret, func(req []byte) [][]byte {
		p, err := radius.Parse(req, []byte(testSecret))
		if err != nil || !radius.IsAuthenticRequest(req, []byte(testSecret)) {
			t.Errorf("bad Accounting-Request: %v", err)
			return nil
		}
		s, _ := radius.Integer(p.Get(40))
		mu.Lock()
		statuses = append(statuses, s)
		mu.Unlock()
		resp := p.Response(radius.CodeAccountingResponse)
		ok, _ := resp.Encode()
		bad := append([]byte(nil), ok...)
		bad[10] ^= 1
		return [][]byte{bad, ok}
	})
	c := newTestClient(t, Config{Servers: []Server{f.server(testSecret)}, Timeout: time.Minute})
	for _, s := range []AcctStatus{AcctStart, AcctInterimUpdate, AcctStop} {
		if err := c.Account(ctxTimeout(t, time.Minute), &AccountingRequest{Status: s, SessionID: "s1", UserName: "alice"}); err != nil {
			t.Fatalf("%v: %v", s, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(statuses) != "[1 3 2]" || c.Stats().AccountingResponses.Load() != 3 || c.Stats().BadAuthenticators.Load() != 3 {
		t.Errorf("statuses %v, responses %d, bad %d", statuses, c.Stats().AccountingResponses.Load(), c.Stats().BadAuthenticators.Load())
	}
}

// The shared secret appears in no error, log line or printed value, even
// when the server has another secret (the case most likely to be logged).
func TestSecretNeverPrinted(t *testing.T) {
	const secret = "Very-Secret-Value-9f3e"
	other := newFakeServer(t, "another", challengeHandler(t, nil)) // signs with testSecret: all replies bad for us
	var logs bytes.Buffer
	cfg := Config{
		Servers: []Server{{Address: "127.0.0.1", AuthPort: other.port(), AcctPort: other.port(), Secret: NewSecret(secret)}},
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	c := newTestClient(t, cfg)
	_, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10))
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "Response Authenticator") {
		t.Errorf("error %q should say replies were dropped for their authenticator", err)
	}
	aerr := c.Account(ctxTimeout(t, time.Minute), &AccountingRequest{Status: AcctStart, SessionID: "x"})
	cfg.Logger = nil
	s := cfg.Servers[0].Secret
	var printed []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		printed = append(printed, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, cfg.Servers[0]), fmt.Sprintf(verb, s))
	}
	mt, _ := s.MarshalText()
	printed = append(printed, err.Error(), aerr.Error(), logs.String(), string(mt), fmt.Sprint(c.cfg))
	for _, p := range printed {
		for _, leak := range []string{secret, fmt.Sprintf("%x", secret), fmt.Sprint([]byte(secret))} {
			if strings.Contains(p, leak) {
				t.Errorf("secret printed in %q", p)
			}
		}
	}
	if !strings.Contains(logs.String(), "dropped reply") {
		t.Error("no dropped reply logged (the test would prove nothing)")
	}
}

// Close ends every goroutine the client started.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	f := newFakeServer(t, testSecret, func(req []byte) [][]byte {
		if req[0] == byte(radius.CodeAccountingRequest) {
			p, _ := radius.Parse(req, []byte(testSecret))
			b, _ := p.Response(radius.CodeAccountingResponse).Encode()
			return [][]byte{b}
		}
		return challengeHandler(t, nil)(req)
	})
	c, err := New(Config{Servers: []Server{f.server(testSecret)}, NAS: testNAS})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapPacket(2, 1, 10)); err != nil {
			t.Fatal(err)
		}
		if err := c.Account(ctxTimeout(t, time.Minute), &AccountingRequest{Status: AcctStart, SessionID: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	// Counting goroutines by their function, not runtime.NumGoroutine:
	// other tests' goroutines may still be on their way out.
	if n := readers(); n != 2 {
		t.Fatalf("%d socket readers running, want 2 (auth and acct)", n)
	}
	c.Close()
	if n := readers(); n != 0 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d socket readers after Close:\n%s", n, buf[:runtime.Stack(buf, true)])
	}
}

// readers counts the goroutines running socket.read.
func readers() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "radius.(*socket).read(")
}
