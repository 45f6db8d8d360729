package clusterstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mifike/mifike/internal/clusterstore"
	"github.com/mifike/mifike/internal/etcdlab"
)

// The same conformance tests run on Memory and on a real 3-member etcd
// cluster (etcdlab), so the simulator's store behaves as etcd does.

// backend is a store under test and how to let a lease run out.
type backend struct {
	s clusterstore.Store
	// pass lets d pass on the store's clock (and waits for etcd).
	pass func(d time.Duration)
}

func memoryBackend(t *testing.T) backend {
	var mu sync.Mutex
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	m := clusterstore.NewMemory(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	return backend{s: m, pass: func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
		m.Expire()
	}}
}

var (
	etcdOnce sync.Once
	etcdLab  *etcdlab.Cluster
	etcdDir  string
	etcdErr  error
)

// etcdBackend is a client of the package's shared 3-member cluster;
// each test works under a prefix of its own.
func etcdBackend(t *testing.T) (backend, string) {
	t.Helper()
	etcdOnce.Do(func() {
		etcdDir, etcdErr = os.MkdirTemp("", "mifike-etcdlab-")
		if etcdErr != nil {
			return
		}
		etcdLab, etcdErr = etcdlab.Start(etcdDir, 3, etcdlab.Options{})
	})
	if etcdErr != nil {
		t.Fatalf("embedded etcd: %v", etcdErr)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: etcdLab.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return backend{s: clusterstore.NewEtcd(c), pass: func(d time.Duration) {
		// etcd's leases run on its own clock, in whole seconds, and it
		// may grant a little more than asked: wait it out generously.
		time.Sleep(d + 1500*time.Millisecond)
	}}, fmt.Sprintf("/%s/", t.Name())
}

func TestMain(m *testing.M) {
	code := m.Run()
	if etcdLab != nil {
		etcdLab.Close()
	}
	if etcdDir != "" {
		os.RemoveAll(etcdDir)
	}
	os.Exit(code)
}

func forEachBackend(t *testing.T, f func(t *testing.T, b backend, prefix string)) {
	t.Run("memory", func(t *testing.T) { f(t, memoryBackend(t), "/") })
	t.Run("etcd", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: no embedded etcd")
		}
		b, p := etcdBackend(t)
		f(t, b, p)
	})
}

// Compare-and-swap: a write names the revision it read; a stale one
// changes nothing. This is how ownership of an SA moves between nodes.
func TestCompareAndSwap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, p string) {
		ctx := context.Background()
		k := p + "sa/1/owner"
		if _, err := b.s.Get(ctx, k); !errors.Is(err, clusterstore.ErrNotFound) {
			t.Fatalf("Get of nothing: %v", err)
		}
		r1, err := b.s.Put(ctx, k, []byte("node-a"), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.s.Put(ctx, k, []byte("node-b"), 0, 0); !errors.Is(err, clusterstore.ErrConflict) {
			t.Fatalf("create of an existing key: %v", err)
		}
		r2, err := b.s.Put(ctx, k, []byte("node-b"), r1, 0)
		if err != nil || r2 <= r1 {
			t.Fatalf("swap at the read revision: rev %d, %v", r2, err)
		}
		if _, err := b.s.Put(ctx, k, []byte("node-c"), r1, 0); !errors.Is(err, clusterstore.ErrConflict) {
			t.Fatalf("swap at a stale revision: %v", err)
		}
		v, err := b.s.Get(ctx, k)
		if err != nil || string(v.Data) != "node-b" || v.Revision != r2 {
			t.Fatalf("after the swaps: %+v, %v", v, err)
		}
		if err := b.s.Delete(ctx, k, r1); !errors.Is(err, clusterstore.ErrConflict) {
			t.Fatalf("delete at a stale revision: %v", err)
		}
		if err := b.s.Delete(ctx, k, r2); err != nil {
			t.Fatal(err)
		}
		if err := b.s.Delete(ctx, k, r2); !errors.Is(err, clusterstore.ErrNotFound) {
			t.Fatalf("delete of a deleted key: %v", err)
		}
	})
}

// Two writers race on one key from the same revision: exactly one wins.
func TestCompareAndSwapRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, p string) {
		ctx := context.Background()
		k := p + "race"
		r, err := b.s.Put(ctx, k, []byte("start"), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		var wins int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, err := b.s.Put(ctx, k, fmt.Appendf(nil, "w%d", i), r, 0)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, clusterstore.ErrConflict):
					t.Errorf("writer %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d writers won the same revision", wins)
		}
	})
}

// Leases: a key tied to a lease goes when the lease runs out unrenewed,
// stays while it is renewed, and a write on an expired lease fails.
func TestLeases(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, p string) {
		ctx := context.Background()
		l, err := b.s.Grant(ctx, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.s.Put(ctx, p+"node/a", []byte("alive"), 0, l); err != nil {
			t.Fatal(err)
		}
		if err := b.s.Renew(ctx, l); err != nil {
			t.Fatal(err)
		}
		if _, err := b.s.Get(ctx, p+"node/a"); err != nil {
			t.Fatalf("key gone while its lease is renewed: %v", err)
		}
		b.pass(2 * time.Second)
		if _, err := b.s.Get(ctx, p+"node/a"); !errors.Is(err, clusterstore.ErrNotFound) {
			t.Fatalf("key of an expired lease: %v", err)
		}
		if err := b.s.Renew(ctx, l); !errors.Is(err, clusterstore.ErrLeaseExpired) {
			t.Fatalf("renewal of an expired lease: %v", err)
		}
		if _, err := b.s.Put(ctx, p+"node/a", []byte("again"), 0, l); !errors.Is(err, clusterstore.ErrLeaseExpired) {
			t.Fatalf("write on an expired lease: %v", err)
		}
		l2, err := b.s.Grant(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.s.Put(ctx, p+"node/b", nil, 0, l2); err != nil {
			t.Fatal(err)
		}
		if err := b.s.Revoke(ctx, l2); err != nil {
			t.Fatal(err)
		}
		if _, err := b.s.Get(ctx, p+"node/b"); !errors.Is(err, clusterstore.ErrNotFound) {
			t.Fatalf("key of a revoked lease: %v", err)
		}
	})
}

// A watch from the revision after a List sees every later change under
// the prefix, in order, including a lease's expiry, and nothing else.
func TestListThenWatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend, p string) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if _, err := b.s.Put(ctx, p+"sa/1", []byte("one"), 0, 0); err != nil {
			t.Fatal(err)
		}
		vs, rev, err := b.s.List(ctx, p+"sa/")
		if err != nil || len(vs) != 1 || string(vs[0].Data) != "one" {
			t.Fatalf("List: %+v, %v", vs, err)
		}
		w := b.s.Watch(ctx, p+"sa/", rev+1)
		l, err := b.s.Grant(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r2, _ := b.s.Put(ctx, p+"sa/2", []byte("two"), 0, l)
		b.s.Put(ctx, p+"other", []byte("not watched"), 0, 0)
		r1, _ := b.s.Put(ctx, p+"sa/1", []byte("one again"), vs[0].Revision, 0)
		b.pass(time.Second)
		b.s.Get(ctx, p+"sa/2") // an operation sweeps the memory store
		want := []struct {
			kind clusterstore.EventKind
			key  string
			data string
			rev  int64
		}{{clusterstore.EventPut, p + "sa/2", "two", r2}, {clusterstore.EventPut, p + "sa/1", "one again", r1}, {clusterstore.EventDelete, p + "sa/2", "", 0}}
		for i, x := range want {
			select {
			case ev, ok := <-w:
				if !ok || ev.Err != nil {
					t.Fatalf("event %d: watch ended: %v", i, ev.Err)
				}
				if ev.Kind != x.kind || ev.Value.Key != x.key || string(ev.Value.Data) != x.data || (x.rev != 0 && ev.Value.Revision != x.rev) {
					t.Fatalf("event %d: %+v, want %+v", i, ev, x)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("event %d (%+v) did not come", i, x)
			}
		}
	})
}
