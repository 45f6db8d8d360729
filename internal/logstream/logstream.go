// Package logstream follows the daemon's log from outside it, as
// `swanctl --log` follows charon's: a slog.Handler (Hub) that hands every
// record to the subscribers that asked for its level, each at its own
// level, independently of the level the daemon's own log is written at.
//
// A subscriber is a bounded queue. The daemon never waits for one: when a
// subscriber's queue is full its newer lines are dropped and counted, and
// the reader learns how many at its next Take, so a stalled `mifike log`
// costs the daemon a few kilobytes, never a blocked goroutine.
//
// The lines are the records the daemon logs anyway, rendered as slog's
// JSON handler renders them; the daemon's log lines carry no key material
// or passwords (keys go to the key log only, key_log.dir), so neither do
// these.
package logstream

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
)

// QueueLen is how many lines wait for a slow subscriber before newer
// ones are dropped.
const QueueLen = 1024

// Hub fans log records out to its subscribers. Its zero value is not
// usable; make one with NewHub. Handler returns the slog.Handler side.
type Hub struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
	// min is the lowest level any subscriber wants, math.MaxInt64 with
	// none: Enabled reads it on every log call, so without subscribers
	// the hub costs one atomic load.
	min atomic.Int64
}

// NewHub returns a hub without subscribers.
func NewHub() *Hub {
	h := &Hub{subs: map[*Subscription]struct{}{}}
	h.min.Store(math.MaxInt64)
	return h
}

// Handler is the hub as a slog.Handler; combine it with the daemon's own
// handler (slog.NewMultiHandler) so that each keeps its level.
func (h *Hub) Handler() slog.Handler { return &handler{hub: h} }

// Subscribe adds a subscriber that receives every record at level and
// above from now on, until Close.
func (h *Hub) Subscribe(level slog.Level) *Subscription {
	s := &Subscription{hub: h, level: level, ready: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.updateMin()
	h.mu.Unlock()
	return s
}

// updateMin recomputes the lowest level wanted; h.mu is held.
func (h *Hub) updateMin() {
	m := int64(math.MaxInt64)
	for s := range h.subs {
		m = min(m, int64(s.level))
	}
	h.min.Store(m)
}

func (h *Hub) enabled(l slog.Level) bool { return int64(l) >= h.min.Load() }

// publish hands line to every subscriber that wants level.
func (h *Hub) publish(level slog.Level, line []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if level >= s.level {
			s.push(line)
		}
	}
}

// Subscription is one follower's bounded queue of lines.
type Subscription struct {
	hub   *Hub
	level slog.Level

	mu      sync.Mutex
	lines   [][]byte
	dropped uint64
	ready   chan struct{} // 1-buffered: something to take
}

// Ready is signalled when lines (or a count of dropped ones) wait.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the waiting lines, each one JSON object without newline,
// and how many were dropped after them (the queue drops only when full,
// and Take empties it, so every dropped line came after these).
func (s *Subscription) Take() (lines [][]byte, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines, dropped = s.lines, s.dropped
	s.lines, s.dropped = nil, 0
	return lines, dropped
}

// Close ends the subscription; no line is queued after it returns.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	delete(h.subs, s)
	h.updateMin()
	h.mu.Unlock()
}

func (s *Subscription) push(line []byte) {
	s.mu.Lock()
	if len(s.lines) < QueueLen {
		s.lines = append(s.lines, line)
	} else {
		s.dropped++
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// handler is the slog side of a Hub. WithAttrs and WithGroup are kept as
// a list and replayed on a fresh JSON handler for each record: that costs
// a little per record, paid only while someone follows the log, and
// renders groups and attributes exactly as slog's JSON handler does.
type handler struct {
	hub *Hub
	ops []func(slog.Handler) slog.Handler
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return h.hub.enabled(l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if !h.hub.enabled(r.Level) {
		return nil
	}
	var buf bytes.Buffer
	var j slog.Handler = slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.Level(math.MinInt)})
	for _, op := range h.ops {
		j = op(j)
	}
	if err := j.Handle(ctx, r); err != nil {
		return err
	}
	h.hub.publish(r.Level, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(func(j slog.Handler) slog.Handler { return j.WithAttrs(attrs) })
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(func(j slog.Handler) slog.Handler { return j.WithGroup(name) })
}

func (h *handler) with(op func(slog.Handler) slog.Handler) slog.Handler {
	return &handler{hub: h.hub, ops: append(h.ops[:len(h.ops):len(h.ops)], op)}
}
