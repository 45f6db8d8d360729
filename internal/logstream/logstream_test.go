package logstream

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// daemonLogger is the daemon's arrangement: its own text log at level,
// and the hub beside it.
func daemonLogger(level slog.Level) (*slog.Logger, *Hub, *bytes.Buffer) {
	hub := NewHub()
	var own bytes.Buffer
	text := slog.NewTextHandler(&own, &slog.HandlerOptions{Level: level})
	return slog.New(slog.NewMultiHandler(text, hub.Handler())), hub, &own
}

func decode(t *testing.T, line []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return m
}

func TestDebugSubscriberWhileDaemonAtInfo(t *testing.T) {
	log, hub, own := daemonLogger(slog.LevelInfo)
	log.Debug("before anyone follows")
	debug := hub.Subscribe(slog.LevelDebug)
	defer debug.Close()
	warn := hub.Subscribe(slog.LevelWarn)
	defer warn.Close()

	sa := log.With("ike_sa", 7).WithGroup("child")
	sa.Debug("sending", "spi", "c1a2b3c4")
	log.Info("up")
	log.Warn("retransmit")

	lines, dropped := debug.Take()
	if dropped != 0 || len(lines) != 3 {
		t.Fatalf("debug subscriber got %d lines, %d dropped; want 3, 0", len(lines), dropped)
	}
	first := decode(t, lines[0])
	if first["level"] != "DEBUG" || first["msg"] != "sending" || first["ike_sa"] != float64(7) {
		t.Errorf("first line %s", lines[0])
	}
	if g, _ := first["child"].(map[string]any); g["spi"] != "c1a2b3c4" {
		t.Errorf("group not rendered: %s", lines[0])
	}
	if lines, _ := warn.Take(); len(lines) != 1 || decode(t, lines[0])["msg"] != "retransmit" {
		t.Errorf("warn subscriber got %q, want only the warning", lines)
	}
	// The daemon's own log stays at info.
	if strings.Contains(own.String(), "sending") || !strings.Contains(own.String(), "msg=up") {
		t.Errorf("the daemon's own log changed with the subscriber:\n%s", own)
	}
}

func TestNoSubscriberNothingEnabled(t *testing.T) {
	log, hub, _ := daemonLogger(slog.LevelInfo)
	if log.Enabled(t.Context(), slog.LevelDebug) {
		t.Fatal("debug enabled with no one following")
	}
	s := hub.Subscribe(slog.LevelDebug)
	if !log.Enabled(t.Context(), slog.LevelDebug) {
		t.Fatal("debug not enabled for a debug subscriber")
	}
	s.Close()
	if log.Enabled(t.Context(), slog.LevelDebug) {
		t.Fatal("debug still enabled after the subscriber left")
	}
}

// A subscriber that never reads does not slow the logger: past QueueLen
// its lines are dropped and counted, and the count comes after the lines
// it kept.
func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	log, hub, _ := daemonLogger(slog.LevelError)
	slow := hub.Subscribe(slog.LevelDebug)
	defer slow.Close()
	const n = QueueLen + 500
	done := make(chan struct{})
	go func() {
		for i := range n {
			log.Debug("packet", "n", i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocked on a subscriber that does not read")
	}
	<-slow.Ready()
	lines, dropped := slow.Take()
	if len(lines) != QueueLen || dropped != n-QueueLen {
		t.Fatalf("kept %d, dropped %d; want %d, %d", len(lines), dropped, QueueLen, n-QueueLen)
	}
	if last := decode(t, lines[len(lines)-1]); last["n"] != float64(QueueLen-1) {
		t.Errorf("the queue kept %v last, want the oldest lines", last["n"])
	}
	log.Debug("after")
	if lines, dropped := slow.Take(); len(lines) != 1 || dropped != 0 {
		t.Errorf("after a Take: %d lines, %d dropped; want 1, 0", len(lines), dropped)
	}
}
