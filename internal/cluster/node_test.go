package cluster

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/clusterstore"
)

// clock is a settable clock for the in-memory store and the nodes.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *clock) add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// cutOff is a store a node cannot reach: every call fails.
type cutOff struct {
	clusterstore.Store
	cut bool
}

var errUnreachable = errors.New("store unreachable")

func (c *cutOff) Renew(ctx context.Context, id clusterstore.Lease) error {
	if c.cut {
		return errUnreachable
	}
	return c.Store.Renew(ctx, id)
}

func testConfig(id uint8) Config {
	return Config{Name: "lab", Node: id, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 92, 1, id})}, TTL: 2 * time.Second}
}

func TestJoinAndMembers(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := clusterstore.NewMemory(clk.Now)
	a, err := Join(ctx, st, testConfig(1), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(ctx, st, testConfig(2), clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := Join(ctx, st, testConfig(1), clk.Now()); err == nil {
		t.Fatal("a second node 1 joined while the first is alive")
	}
	ms, err := Members(ctx, st, testConfig(1))
	if err != nil || len(ms) != 2 || ms[0].ID != 1 || ms[1].ID != 2 || ms[0].Addrs[0] != testConfig(1).Addrs[0] {
		t.Fatalf("members %+v, %v", ms, err)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if ms, _ := Members(ctx, st, testConfig(1)); len(ms) != 1 || ms[0].ID != 2 {
		t.Fatalf("after node 1 left: %+v", ms)
	}
	if _, err := Join(ctx, st, Config{Name: "a/b", Node: 3}, clk.Now()); err == nil {
		t.Fatal("a cluster name with a slash was taken")
	}
	if _, err := Join(ctx, st, Config{Name: "lab"}, clk.Now()); err == nil {
		t.Fatal("node ID 0 was taken")
	}
}

// Fencing: a node cut off from the store stops serving half a TTL after
// its last renewal; the store lets its lease (and membership) expire no
// earlier than a full TTL after it, so no survivor can take its SAs
// while it may still send.
func TestFencingBeforeExpiry(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	mem := clusterstore.NewMemory(clk.Now)
	st := &cutOff{Store: mem}
	cfg := testConfig(1)
	n, err := Join(ctx, st, cfg, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Ticks every 100 ms keep it alive for a long while.
	for range 100 {
		if err := n.Tick(ctx, clk.add(100*time.Millisecond)); err != nil {
			t.Fatalf("a node that renews was fenced at %v: %v", clk.Now(), err)
		}
	}
	if ms, _ := Members(ctx, mem, cfg); len(ms) != 1 {
		t.Fatal("a renewing node lost its membership")
	}
	st.cut = true
	var fencedAt, expiredAt time.Time
	for i := 0; i < 100 && (fencedAt.IsZero() || expiredAt.IsZero()); i++ {
		now := clk.add(50 * time.Millisecond)
		if fencedAt.IsZero() && n.Tick(ctx, now) != nil {
			fencedAt = now
		}
		if ms, _ := Members(ctx, mem, cfg); expiredAt.IsZero() && len(ms) == 0 {
			expiredAt = now
		}
	}
	if fencedAt.IsZero() || expiredAt.IsZero() {
		t.Fatalf("fenced at %v, membership expired at %v", fencedAt, expiredAt)
	}
	if margin := expiredAt.Sub(fencedAt); margin < cfg.TTL/2-50*time.Millisecond {
		t.Fatalf("fenced only %v before the lease expired", margin)
	}
	t.Logf("cut off: fenced after the last renewal + %v, lease expired %v later", cfg.TTL/2, expiredAt.Sub(fencedAt))
	// Back in touch, the lease is gone: still fenced, it must join anew.
	st.cut = false
	if err := n.Tick(ctx, clk.add(10*time.Millisecond)); !errors.Is(err, ErrFenced) {
		t.Fatalf("after its lease expired: %v", err)
	}
	if _, err := Join(ctx, st, cfg, clk.Now()); err != nil {
		t.Fatalf("joining again: %v", err)
	}
}
