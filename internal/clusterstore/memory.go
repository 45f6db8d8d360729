package clusterstore

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is a Store in memory, with etcd's semantics: one revision
// counter for the whole store, a key's revision the revision of its last
// write, leases that delete their keys when they expire, watches that
// replay from a revision. Time is the clock given to NewMemory, so the
// simulator decides when leases run out; expired leases are swept by
// every call and by Expire.
type Memory struct {
	mu        sync.Mutex
	now       func() time.Time
	rev       int64
	keys      map[string]Value
	leases    map[Lease]*memLease
	nextLease Lease
	// history is the events of the last memHistory revisions, for
	// watches from a revision; older ones are compacted.
	history  []Event
	watchers map[*memWatcher]struct{}
}

// memHistory is how many events Memory keeps for watches from a past
// revision (etcd keeps what its compaction leaves).
const memHistory = 10000

// memWatcherQueue caps the events a watcher may leave unread; past it
// the watch ends with ErrCompacted, as etcd cancels a watcher it cannot
// keep up with.
const memWatcherQueue = 100000

type memLease struct {
	ttl     time.Duration
	expires time.Time
	keys    map[string]bool
}

type memWatcher struct {
	prefix  string
	mu      sync.Mutex
	pending []Event
	kick    chan struct{}
	failed  error
}

// NewMemory is an empty store on clock now (time.Now if nil).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, keys: map[string]Value{}, leases: map[Lease]*memLease{}, watchers: map[*memWatcher]struct{}{}}
}

// Expire deletes the keys of leases that ran out by the clock.
func (m *Memory) Expire() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
}

func (m *Memory) expire() {
	now := m.now()
	var gone []Lease
	for id, l := range m.leases {
		if !now.Before(l.expires) {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone) // one order for every run of the simulator
	for _, id := range gone {
		m.revoke(id)
	}
}

func (m *Memory) revoke(id Lease) {
	l := m.leases[id]
	delete(m.leases, id)
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		m.del(k)
	}
}

func (m *Memory) del(key string) {
	v := m.keys[key]
	delete(m.keys, key)
	if l := m.leases[v.Lease]; l != nil {
		delete(l.keys, key)
	}
	m.rev++
	m.publish(Event{Kind: EventDelete, Value: Value{Key: key, Revision: m.rev}})
}

func (m *Memory) publish(ev Event) {
	m.history = append(m.history, ev)
	if len(m.history) > memHistory {
		m.history = slices.Delete(m.history, 0, len(m.history)-memHistory)
	}
	for w := range m.watchers {
		if strings.HasPrefix(ev.Value.Key, w.prefix) {
			w.push(ev)
		}
	}
}

func (w *memWatcher) push(ev Event) {
	w.mu.Lock()
	if w.failed == nil {
		if len(w.pending) >= memWatcherQueue {
			w.failed, w.pending = ErrCompacted, nil
		} else {
			ev.Value.Data = slices.Clone(ev.Value.Data)
			w.pending = append(w.pending, ev)
		}
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (m *Memory) Get(_ context.Context, key string) (Value, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	v, ok := m.keys[key]
	if !ok {
		return Value{}, ErrNotFound
	}
	v.Data = slices.Clone(v.Data)
	return v, nil
}

func (m *Memory) List(_ context.Context, prefix string) ([]Value, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	var out []Value
	for k, v := range m.keys {
		if strings.HasPrefix(k, prefix) {
			v.Data = slices.Clone(v.Data)
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b Value) int { return strings.Compare(a.Key, b.Key) })
	return out, m.rev, nil
}

func (m *Memory) Put(_ context.Context, key string, data []byte, rev int64, lease Lease) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	old, exists := m.keys[key]
	if (rev == 0 && exists) || (rev != 0 && (!exists || old.Revision != rev)) {
		return 0, ErrConflict
	}
	var l *memLease
	if lease != 0 {
		if l = m.leases[lease]; l == nil {
			return 0, ErrLeaseExpired
		}
	}
	if ol := m.leases[old.Lease]; exists && ol != nil {
		delete(ol.keys, key)
	}
	m.rev++
	v := Value{Key: key, Data: slices.Clone(data), Revision: m.rev, Lease: lease}
	m.keys[key] = v
	if l != nil {
		l.keys[key] = true
	}
	m.publish(Event{Kind: EventPut, Value: v})
	return m.rev, nil
}

func (m *Memory) Delete(_ context.Context, key string, rev int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	v, ok := m.keys[key]
	switch {
	case !ok:
		return ErrNotFound
	case v.Revision != rev:
		return ErrConflict
	}
	m.del(key)
	return nil
}

func (m *Memory) Grant(_ context.Context, ttl time.Duration) (Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	m.nextLease++
	m.leases[m.nextLease] = &memLease{ttl: ttl, expires: m.now().Add(ttl), keys: map[string]bool{}}
	return m.nextLease, nil
}

func (m *Memory) Renew(_ context.Context, id Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	l := m.leases[id]
	if l == nil {
		return ErrLeaseExpired
	}
	l.expires = m.now().Add(l.ttl)
	return nil
}

func (m *Memory) Revoke(_ context.Context, id Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	if m.leases[id] == nil {
		return ErrLeaseExpired
	}
	m.revoke(id)
	return nil
}

func (m *Memory) Watch(ctx context.Context, prefix string, from int64) <-chan Event {
	out := make(chan Event)
	w := &memWatcher{prefix: prefix, kick: make(chan struct{}, 1)}
	m.mu.Lock()
	m.expire()
	if from > 0 {
		oldest := m.rev + 1
		if len(m.history) > 0 {
			oldest = m.history[0].Value.Revision
		}
		if from < oldest && from <= m.rev {
			w.failed = ErrCompacted
		} else {
			for _, ev := range m.history {
				if ev.Value.Revision >= from && strings.HasPrefix(ev.Value.Key, prefix) {
					ev.Value.Data = slices.Clone(ev.Value.Data)
					w.pending = append(w.pending, ev)
				}
			}
		}
	}
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	go func() {
		defer func() {
			m.mu.Lock()
			delete(m.watchers, w)
			m.mu.Unlock()
			close(out)
		}()
		for {
			w.mu.Lock()
			evs, failed := w.pending, w.failed
			w.pending = nil
			w.mu.Unlock()
			for _, ev := range evs {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			if failed != nil {
				select {
				case out <- Event{Err: failed}:
				case <-ctx.Done():
				}
				return
			}
			select {
			case <-w.kick:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
