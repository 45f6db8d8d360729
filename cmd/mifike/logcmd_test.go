package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/logstream"
)

// logBackend logs at info itself and lets `mifike log` follow it.
type logBackend struct {
	*ctlBackend
	hub *logstream.Hub
}

func (b *logBackend) FollowLog(level string) (*logstream.Subscription, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return b.hub.Subscribe(l), nil
}

// syncBuffer is written by the verb while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// followLog runs `mifike log args...` against a daemon that logs what
// logSome logs once the follower is subscribed, and returns what the
// verb printed once it has printed want lines; the daemon then stops,
// which ends the verb.
func followLog(t *testing.T, want int, logSome func(*slog.Logger), args ...string) (string, int) {
	t.Helper()
	hub := logstream.NewHub()
	var own bytes.Buffer
	log := slog.New(slog.NewMultiHandler(slog.NewTextHandler(&own, nil), hub.Handler()))
	dir, err := os.MkdirTemp("", "mfk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ctl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- control.Serve(ctx, path, 0o600, -1, &logBackend{testBackend(), hub}, nil) }()
	defer func() { cancel(); <-served }()

	for i := 0; ; i++ {
		if c, err := control.Dial(path); err == nil {
			c.Close()
			break
		}
		if i == 500 {
			t.Fatal("control socket not up")
		}
		time.Sleep(5 * time.Millisecond)
	}

	var out, errb syncBuffer
	code := make(chan int, 1)
	go func() { code <- run(append([]string{"-s", path, "log"}, args...), &out, &errb) }()
	deadline := time.Now().Add(5 * time.Second)
	for !hub.Handler().Enabled(context.Background(), slog.LevelError) {
		if time.Now().After(deadline) {
			t.Fatalf("mifike log did not subscribe; stderr %s", errb.String())
		}
		time.Sleep(time.Millisecond)
	}
	logSome(log)
	for strings.Count(out.String(), "\n") < want {
		if time.Now().After(deadline) {
			t.Fatalf("mifike log printed:\n%s\nstderr %s", out.String(), errb.String())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case c := <-code:
		if !strings.Contains(errb.String()+out.String(), "ended the log stream") {
			t.Errorf("stderr after the daemon stopped: %q", errb.String())
		}
		if strings.Contains(own.String(), "level=DEBUG") {
			t.Errorf("the daemon's own log took the follower's level:\n%s", own.String())
		}
		return out.String(), c
	case <-time.After(5 * time.Second):
		t.Fatal("mifike log did not end with the daemon")
	}
	return "", 0
}

func logLines(log *slog.Logger) {
	log.Debug("sending", "ike_sa", 3, "exchange", "INFORMATIONAL")
	log.With("conn", "home").WithGroup("child").Info("installed", "spi", "c1a2b3c4", "ts", "10.0.0.0/24 === 10.1.0.0/24")
	log.Info("not yet")
}

func TestLogText(t *testing.T) {
	out, _ := followLog(t, 3, logLines, "--level", "debug")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines:\n%s", len(lines), out)
	}
	for i, want := range []string{
		" DEBUG sending ike_sa=3 exchange=INFORMATIONAL",
		` INFO  installed conn=home child.spi=c1a2b3c4 child.ts="10.0.0.0/24 === 10.1.0.0/24"`,
	} {
		if !strings.HasSuffix(lines[i], want) || len(lines[i]) != len("15:04:05.000")+len(want) {
			t.Errorf("line %d %q, want time then %q", i, lines[i], want)
		}
	}
}

func TestLogDefaultLevelInfo(t *testing.T) {
	out, _ := followLog(t, 2, logLines)
	if strings.Contains(out, "sending") || !strings.Contains(out, "installed") {
		t.Errorf("mifike log without --level:\n%s", out)
	}
}

func TestLogJSON(t *testing.T) {
	out, _ := followLog(t, 2, logLines, "--json", "--level", "debug")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.Contains(lines[0], `"level":"DEBUG","msg":"sending","ike_sa":3,"exchange":"INFORMATIONAL"}`) ||
		!strings.Contains(lines[1], `"conn":"home","child":{"spi":"c1a2b3c4"`) {
		t.Errorf("--json:\n%s", out)
	}
}

func TestLogRecordText(t *testing.T) {
	var b bytes.Buffer
	writeLogRecord(&b, []byte(`{"time":"x","level":"INFO","msg":"m","n":1.5,"s":"","q":"a\"b"}`))
	if got, want := b.String(), "x INFO  m n=1.5 s=\"\" q=\"a\\\"b\"\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	b.Reset()
	writeLogRecord(&b, []byte(`not json`))
	if b.String() != "not json\n" {
		t.Errorf("unreadable record printed as %q", b.String())
	}
}
