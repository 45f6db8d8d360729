package esp

// Window is the anti-replay window of RFC 4303 §3.4.3 and Appendix A2: a
// bitmap of the last W sequence numbers ending at T, the highest sequence
// number authenticated so far. Sequence numbers are full 64-bit values;
// without ESN they simply stay below 2^32.
//
// The bitmap is a ring of 64-bit words indexed by seq/64, one word longer
// than W needs, so that sliding the window clears whole words and never
// shifts bits. The ring has exactly that many words (17 for the default
// 1,024 packets), indexed modulo its length: rounding it to a power of
// two for a mask took 32 words, 15 more for every inbound SA a
// gateway holds, to save a division per packet that costs a few
// nanoseconds beside the packet's AEAD.
type Window struct {
	top   uint64 // T; 0 before the first packet (sequence numbers start at 1)
	size  uint64 // W
	n     uint64 // len(words): W/64 + 1
	words []uint64
}

// NewWindow returns an empty window of size packets, rounded up to a
// multiple of 64 and clamped to [MinReplayWindow, MaxReplayWindow].
func NewWindow(size int) *Window {
	w := new(Window)
	w.init(size)
	return w
}

func (w *Window) init(size int) {
	size = min(max(size, MinReplayWindow), MaxReplayWindow)
	size = (size + 63) &^ 63
	// size/64 words hold W bits only when T sits at a word's last bit;
	// one more word covers every alignment.
	n := uint64(size/64) + 1
	w.top, w.size, w.n = 0, uint64(size), n
	w.words = make([]uint64, n)
}

// Size returns W.
func (w *Window) Size() int { return int(w.size) }

// Top returns T, the highest sequence number marked seen (0 if none).
func (w *Window) Top() uint64 { return w.top }

// reset empties the window.
func (w *Window) reset() {
	w.top = 0
	clear(w.words)
}

// Check reports whether seq would be accepted: it is right of the window,
// or inside it and not yet seen. Sequence number 0 is never sent
// (§3.3.3) and never accepted.
func (w *Window) Check(seq uint64) bool {
	switch {
	case seq == 0:
		return false
	case seq > w.top:
		return true
	case w.top-seq >= w.size:
		return false // left of the window
	}
	return w.words[(seq>>6)%w.n]&(1<<(seq&63)) == 0
}

// Update marks seq seen, sliding the window right if seq > T (Appendix
// A2.1). Call it only after the packet's integrity check passed (§3.4.3).
// Sequence numbers left of the window are ignored.
func (w *Window) Update(seq uint64) {
	if seq == 0 {
		return
	}
	if seq > w.top {
		cur, next := w.top>>6, seq>>6
		if next-cur >= w.n {
			clear(w.words)
		} else {
			for k := cur + 1; k <= next; k++ {
				w.words[k%w.n] = 0
			}
		}
		w.top = seq
	} else if w.top-seq >= w.size {
		return
	}
	w.words[(seq>>6)%w.n] |= 1 << (seq & 63)
}

// Infer reconstructs the full 64-bit sequence number of a packet from the
// low 32 bits seql it carries, relative to the window (RFC 4303 Appendix
// A2.2). It returns 0, which Check rejects, for a packet that would fall
// before the SA's first subspace or beyond the last.
func (w *Window) Infer(seql uint32) uint64 {
	tl, th := uint32(w.top), uint32(w.top>>32)
	wsz := uint32(w.size) // W <= MaxReplayWindow < 2^31 (A2)
	bl := tl - wsz + 1    // mod 2^32
	var seqh uint32
	if tl >= wsz-1 { // Case A: the window lies within one subspace
		if seql >= bl {
			seqh = th
		} else {
			if th == ^uint32(0) {
				return 0
			}
			seqh = th + 1
		}
	} else { // Case B: the window spans subspaces Th-1 and Th
		if seql >= bl {
			if th == 0 {
				return 0
			}
			seqh = th - 1
		} else {
			seqh = th
		}
	}
	return uint64(seqh)<<32 | uint64(seql)
}
