package ike

import (
	"container/heap"
	"time"
)

// timer is one pending deadline. Timers are cancelled by flag and
// removed lazily, which keeps cancel O(1) on the hot path of every
// exchange (each request arms and cancels a retransmit timer).
type timer struct {
	// at is the deadline as an offset from the engine's epoch (its first
	// clock reading): 8 octets where a time.Time takes 24 keep a timer
	// in the 32-octet size class, and a gateway has several per SA.
	// Offsets are taken with time.Time.Sub, so the monotonic readings
	// the daemon's clock carries still order them.
	at        time.Duration
	seq       uint64 // orders timers with equal deadlines: deterministic
	fn        func()
	cancelled bool
}

func (t *timer) cancel() {
	if t != nil {
		t.cancelled = true
	}
}

type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at == h[j].at {
		return h[i].seq < h[j].seq
	}
	return h[i].at < h[j].at
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(*timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

// after runs fn once the clock reaches now+d.
func (e *Engine) after(d time.Duration, fn func()) *timer { return e.at(e.now.Add(d), fn) }

// at runs fn once the clock reaches t (at once, at the next entry point,
// if t has passed).
func (e *Engine) at(t time.Time, fn func()) *timer {
	e.timerSeq++
	if e.epoch.IsZero() {
		e.epoch = t
	}
	x := &timer{at: t.Sub(e.epoch), seq: e.timerSeq, fn: fn}
	heap.Push(&e.timers, x)
	return x
}

// deadline is when t fires, zero if it does not (any more).
func (e *Engine) deadline(t *timer) time.Time {
	if t == nil || t.cancelled {
		return time.Time{}
	}
	return e.epoch.Add(t.at)
}

// runTimers fires every timer due at e.now, in deadline order.
func (e *Engine) runTimers() {
	for len(e.timers) > 0 {
		t := e.timers[0]
		if t.cancelled {
			heap.Pop(&e.timers)
			continue
		}
		if t.at > e.now.Sub(e.epoch) {
			return
		}
		heap.Pop(&e.timers)
		t.cancelled = true // fired: it has no deadline any more
		t.fn()
	}
}

// NextTimer returns the earliest pending deadline.
func (e *Engine) NextTimer() (time.Time, bool) {
	for len(e.timers) > 0 && e.timers[0].cancelled {
		heap.Pop(&e.timers)
	}
	if len(e.timers) == 0 {
		return time.Time{}, false
	}
	return e.epoch.Add(e.timers[0].at), true
}

// jitter returns d minus a random part of spread (RFC 7296 §2.8: rekey
// times SHOULD be jittered so both peers do not rekey at once).
func (e *Engine) jitter(d, spread time.Duration) time.Duration {
	if spread <= 0 || d <= 0 {
		return d
	}
	if spread > d/2 {
		spread = d / 2
	}
	var b [8]byte
	e.random(b[:])
	n := int64(0)
	for _, x := range b {
		n = n<<8 | int64(x)
	}
	if n < 0 {
		n = -n
	}
	return d - time.Duration(n%int64(spread))
}
