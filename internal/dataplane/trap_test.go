package dataplane

import (
	"net/netip"
	"testing"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/wire"
)

type acquired struct {
	trap     int
	src, dst netip.Addr
}

// A packet a trap covers, with no SA up, is dropped and asks for the SA
// once per acquireEvery; once the SA is installed the packet goes out,
// and after the SA is deleted the trap fires again.
func TestTrapAcquires(t *testing.T) {
	a, b := newEnd(t), newEnd(t)
	var got []acquired
	a.p.cfg.OnAcquire = func(trap int, src, dst netip.Addr) { got = append(got, acquired{trap, src, dst}) }
	a.p.SetTraps([]Trap{
		{ID: 1, Remote: sel("10.2.0.0/24")},
		{ID: 2, Local: sel("10.1.0.0/24"), Remote: sel("10.3.0.0/24")},
	})
	ping := func(src, dst string) []byte { return ipv4Packet(src, dst, protoICMP, []byte{8, 0, 0, 0}) }

	for range 3 {
		if _, ok := a.out(t, ping("10.1.0.5", "10.2.0.9")); ok {
			t.Fatal("a trapped packet was sent with no SA")
		}
	}
	want := acquired{1, netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9")}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("acquires %v, want one %v (rate-limited)", got, want)
	}
	if d := a.p.Drops(); d[DropAcquire] != 3 || d[DropNoPolicy] != 0 {
		t.Errorf("drops %v, want 3 acquire", d)
	}
	// Trap 2 wants its local selectors: another source is no policy.
	a.out(t, ping("172.16.0.1", "10.3.0.9"))
	if len(got) != 1 || a.p.Drops()[DropNoPolicy] != 1 {
		t.Fatalf("trap 2 fired for a source outside its local_ts: %v", got)
	}
	a.out(t, ping("10.1.0.7", "10.3.0.9"))
	if len(got) != 2 || got[1].trap != 2 {
		t.Fatalf("trap 2 did not fire: %v", got)
	}

	// The SA is up: traffic flows and no acquire follows.
	pair(t, a, b, 0x1001, 0x2001, ipsec.Tunnel, "10.1.0.0/24", "10.2.0.0/24", wire.EncrAESGCM16)
	sent, ok := a.out(t, ping("10.1.0.5", "10.2.0.9"))
	if !ok || len(b.in(sent)) != 1 {
		t.Fatal("no traffic through the SA the trap asked for")
	}
	// The SA closes; the trap stays and fires again once the spacing
	// allows.
	a.p.Delete(0x1001)
	for _, tr := range a.p.traps {
		tr.firedAt.Store(0) // as if acquireEvery had passed
	}
	a.out(t, ping("10.1.0.5", "10.2.0.9"))
	if len(got) != 3 || got[2].trap != 1 {
		t.Fatalf("after the SA closed: acquires %v", got)
	}

	// No traps: no acquire, a plain no-policy drop.
	a.p.SetTraps(nil)
	a.out(t, ping("10.1.0.5", "10.2.0.9"))
	if len(got) != 3 {
		t.Fatalf("a removed trap fired: %v", got)
	}
}
