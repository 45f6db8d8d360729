package control

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/logstream"
)

// logBackend is a daemon whose log can be followed: it logs at info
// itself, through a hub.
type logBackend struct {
	*fakeBackend
	hub *logstream.Hub
	log *slog.Logger
}

func newLogBackend() *logBackend {
	hub := logstream.NewHub()
	own := slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelInfo})
	return &logBackend{newFakeBackend(), hub, slog.New(slog.NewMultiHandler(own, hub.Handler()))}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (b *logBackend) FollowLog(level string) (*logstream.Subscription, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return b.hub.Subscribe(l), nil
}

func TestFollowLog(t *testing.T) {
	b := newLogBackend()
	c := dial(t, startServer(t, b))
	got := make(chan json.RawMessage, 10)
	errc := make(chan error, 1)
	go func() {
		errc <- c.FollowLog("debug", func(rec json.RawMessage, dropped uint64) bool {
			got <- rec
			return len(got) < 2
		})
	}()
	// Log until the subscription is in place; then a debug and an info
	// line must come through although the daemon logs at info.
	deadline := time.After(5 * time.Second)
	for !b.log.Enabled(t.Context(), slog.LevelDebug) {
		select {
		case <-deadline:
			t.Fatal("no subscription")
		case <-time.After(time.Millisecond):
		}
	}
	b.log.Debug("sending", "ike_sa", 3)
	b.log.Info("up", "ike_sa", 3)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var first, second map[string]any
	json.Unmarshal(<-got, &first)
	json.Unmarshal(<-got, &second)
	if first["level"] != "DEBUG" || first["msg"] != "sending" || second["msg"] != "up" {
		t.Errorf("got %v, %v", first, second)
	}
}

func TestFollowLogBadLevel(t *testing.T) {
	c := dial(t, startServer(t, newLogBackend()))
	err := c.FollowLog("loud", func(json.RawMessage, uint64) bool { return false })
	if err == nil || !strings.Contains(err.Error(), "want debug") {
		t.Fatalf("err %v", err)
	}
}

func TestFollowLogUnsupported(t *testing.T) {
	c := dial(t, startServer(t, newFakeBackend()))
	err := c.FollowLog("debug", func(json.RawMessage, uint64) bool { return false })
	if err == nil || !strings.Contains(err.Error(), "cannot stream its log") {
		t.Fatalf("err %v", err)
	}
}

// A client that does not read gets the lines that fit and then a count
// of the rest; the logger never waits for it.
func TestFollowLogSlowClient(t *testing.T) {
	b := newLogBackend()
	path := startServer(t, b)
	r := dialRaw(t, path)
	r.c.SetDeadline(time.Time{})
	r.send(`{"cmd":"log","level":"debug"}` + "\n")
	if m := r.recv(); m["ok"] != true {
		t.Fatal(m)
	}
	const total = 20000
	start := time.Now()
	for i := range total {
		b.log.Debug("packet", "n", i, "pad", strings.Repeat("x", 100))
	}
	t.Logf("%d lines logged in %v with a stalled follower", total, time.Since(start))
	var delivered, dropped uint64
	last := -1
	for delivered+dropped < total {
		r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		m := r.recv()
		if d, ok := m["dropped"].(float64); ok && m["msg"] == nil {
			dropped += uint64(d)
			continue
		}
		n := int(m["n"].(float64))
		if n <= last {
			t.Fatalf("line %d after %d", n, last)
		}
		last = n
		delivered++
	}
	if dropped == 0 {
		t.Fatalf("delivered %d, none dropped: the test did not stall the client", delivered)
	}
	t.Logf("delivered %d, dropped %d", delivered, dropped)
}
