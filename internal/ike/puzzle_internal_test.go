package ike

import (
	"bytes"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// RFC 8019 §4.4: the puzzle counts the zero bits at the end of the PRF
// output.
func TestRFC8019Section4_4TrailingZeros(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want int
	}{
		{[]byte{0xff, 0x01}, 0},
		{[]byte{0xff, 0x80}, 7},
		{[]byte{0x01, 0x00}, 8},
		{[]byte{0x06, 0x00, 0x00}, 17},
		{[]byte{0, 0}, 16},
		{nil, 0},
	} {
		if got := trailingZeros(c.b); got != c.want {
			t.Errorf("trailingZeros(%x) = %d, want %d", c.b, got, c.want)
		}
	}
}

// RFC 8019 §7.1.3, §7.1.4, §8.2: what the initiator's solver finds, the
// responder's check takes; four keys that are not all different, keys
// longer than the PRF's key, or too few zero bits are refused; all four
// keys are checked.
func TestRFC8019Section7_1_4PuzzleCheck(t *testing.T) {
	cookie := []byte("a cookie of the responder, opaque to the initiator")
	info := cookieInfo{bits: 10, prf: wire.PRFHMACSHA2256}
	s, err := newPuzzleSolver(puzzleNotify(info), cookie, 12)
	if err != nil {
		t.Fatal(err)
	}
	for !s.work(puzzleChunk) {
	}
	ps := s.solution()
	if ps == nil || len(ps.Data) != 16 {
		t.Fatalf("no solution of 4 4-octet keys: %v", ps)
	}
	if !puzzleSolved(info, cookie, ps) {
		t.Fatal("the solver's solution does not check")
	}
	keys := ps.Keys()
	for i, k := range keys {
		if z := trailingZeros(s.prf.Sum(k, cookie)); z < 10 {
			t.Fatalf("key %d gives %d zero bits", i, z)
		}
	}
	if puzzleSolved(cookieInfo{bits: 30, prf: info.prf}, cookie, ps) {
		t.Error("a 10-bit solution passed a 30-bit puzzle")
	}
	if puzzleSolved(cookieInfo{bits: 10, prf: wire.PRFHMACSHA2384}, cookie, ps) {
		t.Error("a solution for one PRF passed for another")
	}
	if puzzleSolved(info, append(bytes.Clone(cookie), 0), ps) {
		t.Error("a solution for one cookie passed for another")
	}
	same := &wire.PuzzleSolution{Data: bytes.Repeat(keys[0], 4)}
	if puzzleSolved(info, cookie, same) {
		t.Error("four copies of one key passed")
	}
	last := bytes.Clone(ps.Data)
	copy(last[12:], []byte{0xde, 0xad, 0xbe, 0xef})
	if trailingZeros(s.prf.Sum(last[12:], cookie)) < 10 && puzzleSolved(info, cookie, &wire.PuzzleSolution{Data: last}) {
		t.Error("a bad fourth key passed: not all keys are checked")
	}
	long := &wire.PuzzleSolution{Data: make([]byte, 4*33)}
	if puzzleSolved(cookieInfo{bits: 0, prf: info.prf}, cookie, long) {
		t.Error("keys longer than the PRF's preferred key length passed")
	}
	if puzzleSolved(cookieInfo{bits: 1, prf: 999}, cookie, ps) || puzzleSolved(info, cookie, nil) {
		t.Error("an unknown PRF or a missing solution passed")
	}
}

// RFC 8019 §7.1.1.1, §9: the initiator takes difficulty 0 as "what we can
// afford" (our maximum), refuses puzzles harder than its maximum and
// malformed PUZZLE notifications, and gives up when its work budget is
// spent.
func TestRFC8019Section9SolverBounds(t *testing.T) {
	cookie := []byte("cookie")
	s, err := newPuzzleSolver(wire.NewNotify(wire.NotifyPuzzle, []byte{0, 5, 0}), cookie, 9)
	if err != nil || s.bits != 9 {
		t.Fatalf("difficulty 0: %v, %d bits", err, s.bits)
	}
	if s.left != puzzleBudget<<9 {
		t.Errorf("budget %d, want %d", s.left, puzzleBudget<<9)
	}
	if _, err := newPuzzleSolver(wire.NewNotify(wire.NotifyPuzzle, []byte{0, 5, 10}), cookie, 9); err == nil {
		t.Error("a 10-bit puzzle accepted with a maximum of 9")
	}
	if _, err := newPuzzleSolver(wire.NewNotify(wire.NotifyPuzzle, []byte{0, 5}), cookie, 9); err == nil {
		t.Error("a 2-octet PUZZLE accepted")
	}
	if _, err := newPuzzleSolver(wire.NewNotify(wire.NotifyPuzzle, []byte{0, 1, 8}), cookie, 9); err == nil {
		t.Error("a puzzle with PRF_HMAC_MD5 accepted")
	}
	hard, _ := newPuzzleSolver(wire.NewNotify(wire.NotifyPuzzle, []byte{0, 5, 24}), cookie, 24)
	hard.left = 1000
	if !hard.work(puzzleChunk) || hard.solution() != nil || hard.next != 1000 {
		t.Fatalf("budget not enforced: tried %d keys", hard.next)
	}
}
