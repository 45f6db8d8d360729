package ike

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// RFC 8019 client puzzles in IKE_SA_INIT (§7.1). Under heavy load the
// responder sends PUZZLE with its COOKIE; the initiator returns the COOKIE
// with a Puzzle Solution: four keys K such that PRF(K, cookie) ends in at
// least the asked number of zero bits (§7.1.3). Puzzles bound how fast one
// attacking host can make half-open SAs by its CPU (§4.4); per-prefix
// limits bound how many it can hold (§4.2). Puzzles in IKE_AUTH (§7.2) are
// not implemented.

// puzzlePRFs are the PRFs a puzzle may use, ours preferred first; the
// puzzle uses one the initiator offered (§7.1.1.2).
var puzzlePRFs = []wire.PRFID{wire.PRFHMACSHA2256, wire.PRFHMACSHA2384, wire.PRFHMACSHA2512, wire.PRFHMACSHA1}

// maxPuzzleBits caps the difficulty either side accepts in configuration:
// 4·2^24 PRF evaluations take minutes on a phone (§9).
const maxPuzzleBits = 24

// puzzlePRF picks the PRF for a puzzle: ours most preferred among those
// the initiator's SA payload offers. With none, IKE SA negotiation would
// fail anyway (§7.1.1.2).
func puzzlePRF(offered *wire.SA) (wire.PRFID, bool) {
	for _, want := range puzzlePRFs {
		for _, p := range offered.Proposals {
			for _, t := range p.Transforms {
				if t.Type == wire.TransformPRF && wire.PRFID(t.ID) == want {
					return want, true
				}
			}
		}
	}
	return 0, false
}

// puzzleNotify is the PUZZLE notification's data: PRF (2 octets) and
// difficulty (1 octet) (§8.1).
func puzzleNotify(info cookieInfo) *wire.Notify {
	return wire.NewNotify(wire.NotifyPuzzle, []byte{byte(info.prf >> 8), byte(info.prf), info.bits})
}

// trailingZeros is the length of the zero-bit run at the end of b (§4.4).
func trailingZeros(b []byte) int {
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return n + bits.TrailingZeros8(b[i])
		}
		n += 8
	}
	return n
}

// puzzleSolved checks a Puzzle Solution against the puzzle the cookie
// says was given: four different keys of equal size, each at most the
// PRF's preferred key length, each making PRF(key, cookie) end in at
// least info.bits zero bits. All four are checked (§7.1.4, §8.2).
func puzzleSolved(info cookieInfo, cookie []byte, ps *wire.PuzzleSolution) bool {
	prf, err := ikecrypto.NewPRF(info.prf)
	if err != nil || ps == nil || len(ps.Data)/wire.PuzzleKeys > prf.Size() {
		return false
	}
	keys := ps.Keys()
	for i, k := range keys {
		for _, o := range keys[:i] {
			if bytes.Equal(k, o) {
				return false
			}
		}
		if trailingZeros(prf.Sum(k, cookie)) < int(info.bits) {
			return false
		}
	}
	return true
}

// The initiator solves a puzzle in turns of puzzleChunk PRF evaluations,
// puzzleYield apart: the engine is single-threaded and sans-I/O, so a
// solve done at once would stall every other SA (and the daemon's event
// loop) for as long as it takes: a second or more at 18 bits. Between
// turns the engine handles whatever else arrives. The work is bounded
// twice: by the configured maximum difficulty (harder puzzles are not
// attempted, §9) and by puzzleBudget·2^bits evaluations, 8 times the
// expected 4·2^bits, after which the cookie is sent without a solution.
const (
	puzzleChunk  = 2048
	puzzleYield  = time.Millisecond
	puzzleBudget = 32
)

// puzzleSolver is a puzzle being solved: candidate keys are 4-octet
// counters (§8.2: "in most cases, the keys will be 4 (or even less)
// octets"), tried in order.
type puzzleSolver struct {
	prf    *ikecrypto.PRF
	cookie []byte
	bits   int
	next   uint32
	keys   []byte // the keys found so far, 4 octets each
	left   uint64 // PRF evaluations left in the budget
}

// newPuzzleSolver reads a PUZZLE notification. It returns an error for a
// puzzle we do not attempt: malformed, an unknown PRF, or harder than
// maxBits (difficulty 0 leaves the choice to us, §7.1.1.1: we take maxBits).
func newPuzzleSolver(n *wire.Notify, cookie []byte, maxBits int) (*puzzleSolver, error) {
	if len(n.Data) != 3 {
		return nil, fmt.Errorf("PUZZLE notification of %d octets, want 3", len(n.Data))
	}
	prf, err := ikecrypto.NewPRF(wire.PRFID(binary.BigEndian.Uint16(n.Data)))
	if err != nil {
		return nil, err
	}
	b := int(n.Data[2])
	if b == 0 {
		b = maxBits
	}
	if b > maxBits {
		return nil, fmt.Errorf("puzzle of %d bits is harder than our maximum of %d", b, maxBits)
	}
	return &puzzleSolver{prf: prf, cookie: cookie, bits: b, left: puzzleBudget << b}, nil
}

// work tries up to n keys and reports whether the solver is done: solved,
// or out of budget.
func (s *puzzleSolver) work(n int) bool {
	var k [4]byte
	for ; n > 0 && s.left > 0 && len(s.keys) < wire.PuzzleKeys*4; n-- {
		binary.BigEndian.PutUint32(k[:], s.next)
		s.next++
		s.left--
		if trailingZeros(s.prf.Sum(k[:], s.cookie)) >= s.bits {
			s.keys = append(s.keys, k[:]...)
		}
	}
	return len(s.keys) == wire.PuzzleKeys*4 || s.left == 0
}

// solution is the Puzzle Solution payload, or nil if the budget ran out.
func (s *puzzleSolver) solution() *wire.PuzzleSolution {
	if len(s.keys) != wire.PuzzleKeys*4 {
		return nil
	}
	return &wire.PuzzleSolution{Data: s.keys}
}
