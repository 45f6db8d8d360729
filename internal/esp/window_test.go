package esp

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestWindow walks the anti-replay rules of RFC 4303 §3.4.3 for windows
// of 64, 1024 and 4096 packets.
func TestWindow(t *testing.T) {
	for _, size := range []int{64, 1024, 4096} {
		w := NewWindow(size)
		W := uint64(size)
		accept := func(seq uint64) {
			t.Helper()
			if !w.Check(seq) {
				t.Fatalf("W=%d top=%d: %d rejected", size, w.Top(), seq)
			}
			w.Update(seq)
			if w.Check(seq) {
				t.Fatalf("W=%d: %d accepted twice", size, seq)
			}
		}
		reject := func(seq uint64) {
			t.Helper()
			if w.Check(seq) {
				t.Fatalf("W=%d top=%d: %d accepted", size, w.Top(), seq)
			}
		}
		reject(0) // never sent (§3.3.3)
		// In order, with duplicates.
		for s := uint64(1); s <= 3*W; s++ {
			accept(s)
			reject(s)
		}
		top := 3 * W
		// Everything still inside the window was seen; just left of it is too old.
		reject(top - W + 1)
		reject(top - W)
		reject(1)
		// Out of order inside the window: jump ahead leaving holes.
		accept(top + 10)
		for s := top + 9; s > top; s-- {
			accept(s)
		}
		top += 10
		// The oldest in-window sequence number, and one past it.
		accept(top + W) // top' = top+W: window is [top+1, top+W]
		reject(top)     // just left of the window
		accept(top + 1) // the left edge, not seen
		reject(top + 1)
		top += W
		// Large jump: the whole bitmap is cleared.
		far := top + 1_000_000
		accept(far)
		for s := far - W + 1; s < far; s += 7 {
			accept(s)
		}
		reject(far - W)
		reject(top)
		// A jump by exactly the ring length, and by less than a word.
		accept(far + 64*uint64(len(w.words)))
		accept(far + 64*uint64(len(w.words)) + 3)
		if w.Top() != far+64*uint64(len(w.words))+3 {
			t.Fatalf("top %d", w.Top())
		}
	}
}

// TestWindowEdges checks every offset around the left edge after each
// possible alignment of T within a word.
func TestWindowEdges(t *testing.T) {
	for _, size := range []int{64, 128, 1024} {
		W := uint64(size)
		for align := uint64(0); align < 64; align++ {
			w := NewWindow(size)
			top := 10*W + align
			// Mark everything from 1 to top as seen, in order.
			for s := uint64(1); s <= top; s++ {
				w.Update(s)
			}
			for s := top - W - 70; s <= top+70; s++ {
				want := s > top
				if got := w.Check(s); got != want {
					t.Fatalf("W=%d T=%d: Check(%d) = %v", size, top, s, got)
				}
			}
			// Now a fresh window with only T seen: everything in
			// [T-W+1, T) is acceptable, T-W is not.
			w = NewWindow(size)
			w.Update(top)
			for s := top - W - 70; s <= top+70; s++ {
				want := s != top && s+W > top
				if got := w.Check(s); got != want {
					t.Fatalf("W=%d only T=%d: Check(%d) = %v", size, top, s, got)
				}
			}
		}
	}
}

// TestInfer checks the ESN reconstruction of RFC 4303 Appendix A2.2 on
// both cases of Figures 1 and 2.
func TestInfer(t *testing.T) {
	const W = 1024
	for _, tc := range []struct {
		name string
		top  uint64
		seql uint32
		want uint64
	}{
		// Case A: Tl >= W-1, window [Tl-W+1, Tl] within subspace Th.
		{"A: inside window", 1<<32 | 0x1000, 0x0fff, 1<<32 | 0x0fff},
		{"A: left edge Bl", 1<<32 | 0x1000, 0x1000 - W + 1, 1<<32 | (0x1000 - W + 1)},
		{"A: ahead", 1<<32 | 0x1000, 0x2000, 1<<32 | 0x2000},
		{"A: below Bl is next subspace", 1<<32 | 0x1000, 0x0500, 2<<32 | 0x0500},
		{"A: Tl = W-1 exactly", 5<<32 | (W - 1), 0, 5 << 32},
		{"A: end of subspace", 1<<32 | 0xffffffff, 0xfffffc00, 1<<32 | 0xfffffc00},
		{"A: wrap into next", 1<<32 | 0xffffffff, 3, 2<<32 | 3},
		// Case B: Tl < W-1, window spans Th-1 and Th.
		{"B: previous subspace", 1<<32 | 0x10, 0xffffff00, 0xffffff00},
		{"B: below Bl", 1<<32 | 0x10, 0xfffffc10, 1<<32 | 0xfffffc10},
		{"B: Bl exactly", 1<<32 | 0x10, 0xfffffc11, 0xfffffc11}, // Bl = 0x10-W+1 mod 2^32
		{"B: current subspace", 1<<32 | 0x10, 5, 1<<32 | 5},
		{"B: ahead", 1<<32 | 0x10, 0x20000, 1<<32 | 0x20000},
		// Start of the SA: there is no subspace before 0.
		{"start", 0, 1, 1},
		{"start: before 0", 0, 0xffffffff, 0},
		{"start: Bl-1", 0, 0xfffffc00, 0xfffffc00}, // Bl = 0xfffffc01
		{"last subspace: no next", 0xffffffff<<32 | 0xffff0000, 5, 0},
	} {
		w := NewWindow(W)
		w.top = tc.top
		if got := w.Infer(tc.seql); got != tc.want {
			t.Errorf("%s: Infer(%#x) with T=%#x = %#x, want %#x", tc.name, tc.seql, tc.top, got, tc.want)
		}
	}
}

// TestESNBoundary sends across the 2^32 boundary with ESN and receives in
// order, reordered across the boundary, and replayed.
func TestESNBoundary(t *testing.T) {
	for _, name := range []string{"AES-GCM-16-128", "ChaCha20-Poly1305", "AES-CBC-128-SHA256"} {
		k := kindByName(t, name)
		o, in := k.pair(t, true)
		o.seq = 1<<32 - 6
		var pkts [][]byte
		for range 12 { // 2^32-5 .. 2^32+6
			pkts = append(pkts, seal(t, o, []byte{byte(len(pkts))}, 4, 0))
		}
		if o.Seq() != 1<<32+6 {
			t.Fatalf("Seq %#x", o.Seq())
		}
		if got := pkts[5][4:8]; !bytes.Equal(got, []byte{0, 0, 0, 0}) {
			t.Fatalf("low half of 2^32: %x", got)
		}
		// The receiver has seen 2^32-200 (Case A)...
		in.win.Update(1<<32 - 200)
		// ...receives after the boundary (Case A then B), then the late
		// ones from before it (Case B, Seqh = Th-1).
		order := []int{1, 7, 5, 6, 0, 2, 11, 3, 4, 10, 8, 9}
		for _, i := range order {
			mustOpen(t, in, pkts[i], []byte{byte(i)}, 4)
		}
		if in.win.Top() != 1<<32+6 {
			t.Fatalf("top %#x", in.win.Top())
		}
		for i := range pkts {
			if _, _, err := in.Open(bytes.Clone(pkts[i])); err != ErrReplay {
				t.Fatalf("%s: replay of %d: %v", name, i, err)
			}
		}
		// Without ESN the same receiver logic must not guess a high half:
		// a packet whose 32-bit number is below the window is too old.
		o2, in2 := k.pair(t, false)
		o2.seq = 5000
		p := seal(t, o2, nil, 4, 0)
		o2.seq = 1
		q := seal(t, o2, nil, 4, 0)
		mustOpen(t, in2, p, nil, 4)
		if _, _, err := in2.Open(q); err != ErrReplay {
			t.Fatalf("%s: old packet %v", name, err)
		}
	}
}

// TestWindowAfterIntegrity: a forged packet with a high sequence number
// must not move the window (§3.4.3: update only after integrity passes).
func TestWindowAfterIntegrity(t *testing.T) {
	for _, k := range kinds {
		for _, esn := range []bool{false, true} {
			o, in := k.pair(t, esn)
			good := seal(t, o, []byte("hello"), 4, 0)
			mustOpen(t, in, good, []byte("hello"), 4)
			o.seq = 100_000
			forged := seal(t, o, []byte("forged"), 4, 0)
			forged[len(forged)-1] ^= 1
			if _, _, err := in.Open(forged); err != ErrIntegrity {
				t.Fatalf("%s: forged: %v", k.name, err)
			}
			if in.win.Top() != 1 {
				t.Fatalf("%s: forged packet moved the window to %d", k.name, in.win.Top())
			}
			o.seq = 1
			second := seal(t, o, []byte("second"), 4, 0)
			mustOpen(t, in, second, []byte("second"), 4)
		}
	}
}

// TestWindowModel checks the ring against the definition (RFC 4303
// §3.4.3): a set of the sequence numbers seen and T, over random runs of
// in-order packets, reordering, duplicates and jumps, for window sizes
// whose rings wrap at different word counts.
func TestWindowModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{64, 128, 192, 960, 1024, 4096} {
		w := NewWindow(size)
		seen := map[uint64]bool{}
		var top uint64
		for i := 0; i < 200000; i++ {
			var seq uint64
			switch k := r.IntN(100); {
			case k < 60:
				seq = top + 1 + uint64(r.IntN(3))
			case k < 90:
				seq = top - min(top, uint64(r.IntN(size+130)))
			case k < 97:
				seq = top + uint64(r.IntN(3*size))
			default:
				seq = top + uint64(r.IntN(100*size)) // far beyond the ring
			}
			want := seq != 0 && (seq > top || (top-seq < uint64(size) && !seen[seq]))
			if got := w.Check(seq); got != want {
				t.Fatalf("size %d, step %d: Check(%d) = %v with T %d, want %v", size, i, seq, got, top, want)
			}
			if want {
				w.Update(seq)
				seen[seq] = true
				top = max(top, seq)
			}
			if w.Top() != top {
				t.Fatalf("size %d: T %d, want %d", size, w.Top(), top)
			}
		}
	}
}
