package ikefrag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// add hands one fragment to r at now and checks the result.
func add(t *testing.T, r *Reassembler, now time.Time, f []byte, want Result) Message {
	t.Helper()
	m, got := r.Add(now, f, skfOffset(t, f))
	if got != want {
		t.Fatalf("fragment %d/%d: %v, want %v", binary.BigEndian.Uint16(f[32:]), binary.BigEndian.Uint16(f[34:]), got, want)
	}
	return m
}

// patched is f with its SKF numbering and Next Payload rewritten; the ICV
// no longer verifies, so only checks made before it can catch it.
func patched(f []byte, next wire.PayloadType, num, total uint16) []byte {
	b := bytes.Clone(f)
	b[wire.HeaderLen] = byte(next)
	binary.BigEndian.PutUint16(b[wire.HeaderLen+4:], num)
	binary.BigEndian.PutUint16(b[wire.HeaderLen+6:], total)
	return b
}

// TestReassembleDuplicates: a fragment with the same Message ID, Fragment
// Number and Total Fragments as a stored one is a replay and discarded
// (RFC 7383 §2.6), before its ICV is checked; a retransmitted copy of the
// whole set fills the gaps of the first.
func TestReassembleDuplicates(t *testing.T) {
	for _, s := range suites {
		c := s.cipher(t, 1)
		inner := plaintext(3000, 1)
		frags := split(t, c, authHeader(1), inner, 548)
		// The retransmission is sealed again (fresh IVs): other bytes,
		// same numbering.
		again, _ := Split(authHeader(1), wire.PayloadIDi, inner, c, 548, 0, seeded(99))
		opened := 0
		r := NewReassembler(NewBudget(Limits{}), func(dst, msg []byte, off int) ([]byte, error) {
			opened++
			return c.UnprotectFragmentTo(dst, msg, off)
		})
		for i := 0; i < len(frags); i += 2 {
			add(t, r, t0, frags[i], Stored)
		}
		before := opened
		for i := 0; i < len(frags); i += 2 {
			add(t, r, t0, frags[i], DropDuplicate)
			add(t, r, t0, again[i], DropDuplicate)
		}
		if opened != before {
			t.Errorf("%s: %d duplicates had their ICV checked", s.name, opened-before)
		}
		var m Message
		for i := 1; i < len(again); i += 2 {
			want := Stored
			if i >= len(again)-2 {
				want = Complete
			}
			m = add(t, r, t0, again[i], want)
		}
		if !bytes.Equal(m.Plain, inner) {
			t.Errorf("%s: mixed copies reassemble wrong", s.name)
		}
	}
}

// TestReassembleNumbers: Fragment Number or Total Fragments zero, and a
// number above the total, are discarded (RFC 7383 §2.6), as is a Next
// Payload in a fragment other than the first (§2.5).
func TestReassembleNumbers(t *testing.T) {
	c := suites[0].cipher(t, 1)
	frags := split(t, c, authHeader(1), plaintext(3000, 1), 548)
	f := frags[1]
	r := NewReassembler(NewBudget(Limits{}), c.UnprotectFragmentTo)
	add(t, r, t0, patched(f, 0, 0, 3), DropNumber)
	add(t, r, t0, patched(f, 0, 1, 0), DropNumber)
	add(t, r, t0, patched(f, 0, 0, 0), DropNumber)
	add(t, r, t0, patched(f, 0, 4, 3), DropNumber)
	add(t, r, t0, patched(f, 0, 0xffff, 0xfffe), DropNumber)
	add(t, r, t0, patched(f, 0, 1, MaxFragments+1), DropTooMany)
	add(t, r, t0, patched(f, wire.PayloadIDi, 2, 7), DropMalformed)
	// Framing the caller should have refused is refused here too.
	if _, got := r.Add(t0, f, 4); got != DropMalformed {
		t.Errorf("SKF offset inside the IKE header: %v", got)
	}
	if _, got := r.Add(t0, f[:len(f)-1], wire.HeaderLen); got != DropMalformed {
		t.Errorf("Length field disagrees: %v", got)
	}
	if _, got := r.Add(t0, f, len(f)-7); got != DropMalformed {
		t.Errorf("SKF header past the end: %v", got)
	}
	if r.Pending() != 0 {
		t.Errorf("%d sets after only bad fragments", r.Pending())
	}
}

// TestReassembleIntegrity: a fragment whose ICV fails is discarded and
// changes nothing (RFC 7383 §2.6, Appendix A: forged fragments never
// enter the queue).
func TestReassembleIntegrity(t *testing.T) {
	for _, s := range suites {
		c := s.cipher(t, 1)
		other := s.cipher(t, 2) // another SA's keys
		frags := split(t, c, authHeader(1), plaintext(3000, 1), 548)
		b := NewBudget(Limits{})
		r := NewReassembler(b, c.UnprotectFragmentTo)
		forged := bytes.Clone(frags[0])
		forged[len(forged)-1] ^= 1
		add(t, r, t0, forged, DropIntegrity)
		foreign := split(t, other, authHeader(1), plaintext(3000, 1), 548)
		// A forged set with a larger total must not discard the real one.
		add(t, r, t0, frags[0], Stored)
		bigger := split(t, other, authHeader(1), plaintext(3000, 1), 300)
		add(t, r, t0, bigger[0], DropIntegrity)
		add(t, r, t0, foreign[1], DropIntegrity)
		if msgs, n := b.InUse(); msgs != 1 || r.Pending() != 1 || n == 0 {
			t.Fatalf("%s: forged fragments changed the queue: %d messages, %d octets", s.name, msgs, n)
		}
		for _, f := range frags[1 : len(frags)-1] {
			add(t, r, t0, f, Stored)
		}
		add(t, r, t0, frags[len(frags)-1], Complete)
	}
}

// TestReassembleRestart: a larger Total Fragments for the same message
// means the sender started over with smaller fragments (RFC 7383 §2.5.2):
// the old fragments are discarded and reassembly restarts with the new
// one; a fragment of the older, smaller set is discarded afterwards
// (§2.6).
func TestReassembleRestart(t *testing.T) {
	c := suites[2].cipher(t, 1)
	inner := plaintext(5000, 4)
	large := split(t, c, authHeader(3), inner, 1232)
	small := split(t, c, authHeader(3), inner, 548)
	if len(small) <= len(large) {
		t.Fatalf("%d small fragments, %d large", len(small), len(large))
	}
	b := NewBudget(Limits{})
	r := NewReassembler(b, c.UnprotectFragmentTo)
	add(t, r, t0, large[0], Stored)
	add(t, r, t0, large[1], Stored)
	add(t, r, t0, small[2], Stored)
	if msgs, n := b.InUse(); msgs != 1 || n > 548 {
		t.Fatalf("old set kept after the restart: %d messages, %d octets held", msgs, n)
	}
	add(t, r, t0, large[2], DropStale)
	add(t, r, t0, large[0], DropStale)
	var m Message
	for i, f := range small {
		if i == 2 {
			continue
		}
		want := Stored
		if i == len(small)-1 {
			want = Complete
		}
		m = add(t, r, t0, f, want)
	}
	if !bytes.Equal(m.Plain, inner) || m.Fragments != len(small) {
		t.Fatalf("restarted set reassembled %d octets of %d fragments", len(m.Plain), m.Fragments)
	}
	if msgs, n := b.InUse(); msgs != 0 || n != 0 {
		t.Errorf("after completion: %d messages, %d octets held", msgs, n)
	}
}

// TestReassembleTimeout: a set not completed within the timeout after its
// first fragment is discarded (RFC 7383 §2.6), by Expire from the
// caller's timer at Deadline or by the next Add; trickled fragments do
// not extend it.
func TestReassembleTimeout(t *testing.T) {
	c := suites[0].cipher(t, 1)
	frags := split(t, c, authHeader(1), plaintext(3000, 1), 548)
	b := NewBudget(Limits{Timeout: 10 * time.Second})
	r := NewReassembler(b, c.UnprotectFragmentTo)
	if _, ok := r.Deadline(); ok {
		t.Fatal("a deadline with nothing under way")
	}
	add(t, r, t0, frags[0], Stored)
	add(t, r, t0.Add(9*time.Second), frags[1], Stored)
	if d, ok := r.Deadline(); !ok || !d.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("deadline %v %v, want first fragment + 10 s", d, ok)
	}
	if n := r.Expire(t0.Add(10*time.Second - 1)); n != 0 {
		t.Fatal("expired early")
	}
	if n := r.Expire(t0.Add(10 * time.Second)); n != 1 || r.Pending() != 0 {
		t.Fatalf("Expire discarded %d, %d left", n, r.Pending())
	}
	if msgs, n := b.InUse(); msgs != 0 || n != 0 {
		t.Fatalf("budget after expiry: %d, %d", msgs, n)
	}
	// By Add: the stale set goes, the late fragment starts a new one.
	add(t, r, t0.Add(20*time.Second), frags[0], Stored)
	add(t, r, t0.Add(31*time.Second), frags[1], Stored)
	if r.Pending() != 1 {
		t.Fatalf("%d sets", r.Pending())
	}
	if _, n := b.InUse(); n > 2*548 {
		t.Fatalf("expired fragments still counted: %d octets", n)
	}
}

// TestReassembleRequestAndResponse: the peer's request and its response
// to ours may carry the same Message ID; they are different messages.
func TestReassembleRequestAndResponse(t *testing.T) {
	c := suites[0].cipher(t, 1)
	req := plaintext(2000, 1)
	resp := plaintext(2000, 2)
	rh := authHeader(1)
	rh.Flags = wire.FlagResponse
	fq := split(t, c, authHeader(1), req, 548)
	fr := split(t, c, rh, resp, 548)
	r := NewReassembler(NewBudget(Limits{}), c.UnprotectFragmentTo)
	for i := range fq[:len(fq)-1] {
		add(t, r, t0, fq[i], Stored)
		add(t, r, t0, fr[i], Stored)
	}
	if m := add(t, r, t0, fq[len(fq)-1], Complete); !bytes.Equal(m.Plain, req) || m.Header.IsResponse() {
		t.Error("request reassembled wrong")
	}
	if m := add(t, r, t0, fr[len(fr)-1], Complete); !bytes.Equal(m.Plain, resp) || !m.Header.IsResponse() {
		t.Error("response reassembled wrong")
	}
}

// TestReassembleExchangeMismatch: fragments of one Message ID carry one
// header (RFC 7383 §2.5); an authentic one of another exchange type does
// not join the set.
func TestReassembleExchangeMismatch(t *testing.T) {
	c := suites[0].cipher(t, 1)
	h := authHeader(1)
	h.Exchange = wire.Informational
	a := split(t, c, authHeader(1), plaintext(2000, 1), 548)
	b := split(t, c, h, plaintext(2000, 1), 548)
	r := NewReassembler(NewBudget(Limits{}), c.UnprotectFragmentTo)
	add(t, r, t0, a[0], Stored)
	add(t, r, t0, b[1], DropMalformed)
}

// TestReassembleLimits: each limit holds, and a dropped fragment leaves
// the queue as it was.
func TestReassembleLimits(t *testing.T) {
	c := suites[0].cipher(t, 1)
	t.Run("fragments per message", func(t *testing.T) {
		frags := split(t, c, authHeader(1), plaintext(3000, 1), 300)
		r := NewReassembler(NewBudget(Limits{Fragments: len(frags) - 1}), c.UnprotectFragmentTo)
		add(t, r, t0, frags[0], DropTooMany)
	})
	t.Run("bytes per message (RFC 7383 §5)", func(t *testing.T) {
		frags := split(t, c, authHeader(1), plaintext(3000, 1), 548)
		b := NewBudget(Limits{Bytes: 700})
		r := NewReassembler(b, c.UnprotectFragmentTo)
		add(t, r, t0, frags[0], Stored)
		add(t, r, t0, frags[1], DropTooLarge)
		if msgs, n := b.InUse(); msgs != 0 || n != 0 || r.Pending() != 0 {
			t.Fatalf("an oversized message's fragments are kept: %d messages, %d octets", msgs, n)
		}
	})
	t.Run("messages per IKE SA", func(t *testing.T) {
		b := NewBudget(Limits{Messages: 2})
		r := NewReassembler(b, c.UnprotectFragmentTo)
		for id := uint32(1); id <= 3; id++ {
			want := Stored
			if id == 3 {
				want = DropSALimit
			}
			add(t, r, t0, split(t, c, authHeader(id), plaintext(2000, 1), 548)[0], want)
		}
		// A set under way still takes its fragments.
		add(t, r, t0, split(t, c, authHeader(1), plaintext(2000, 1), 548)[1], Stored)
	})
	t.Run("all IKE SAs", func(t *testing.T) {
		b := NewBudget(Limits{TotalMessages: 3, TotalBytes: 4000})
		var rs []*Reassembler
		for i := range 4 {
			rs = append(rs, NewReassembler(b, c.UnprotectFragmentTo))
			want := Stored
			if i == 3 {
				want = DropBudget
			}
			add(t, rs[i], t0, split(t, c, authHeader(1), plaintext(2000, 1), 548)[0], want)
		}
		rs[0].Close()
		add(t, rs[3], t0, split(t, c, authHeader(1), plaintext(2000, 1), 548)[0], Stored)
		// Bytes: the three sets hold about 1500 octets; more fragments
		// fill the budget to its 4000.
		frags := split(t, c, authHeader(1), plaintext(9000, 1), 548)
		n := 1
		for ; n < len(frags); n++ {
			if _, r := rs[1].Add(t0, frags[n], wire.HeaderLen); r == DropBudget {
				break
			} else if r != Stored {
				t.Fatalf("fragment %d: %v", n+1, r)
			}
		}
		if _, held := b.InUse(); n == len(frags) || held > 4000 {
			t.Fatalf("budget of 4000 octets holds %d after %d fragments", held, n)
		}
		for _, r := range rs {
			r.Close()
		}
		if msgs, held := b.InUse(); msgs != 0 || held != 0 {
			t.Fatalf("closed reassemblers still hold %d messages, %d octets", msgs, held)
		}
	})
}

// TestReassembleDropAllocatesNothing: whatever the reason a fragment is
// dropped, dropping it allocates nothing, so a flood of them costs no
// garbage (the same rule as the engine's drop path).
func TestReassembleDropAllocatesNothing(t *testing.T) {
	for _, s := range suites {
		c := s.cipher(t, 1)
		frags := split(t, c, authHeader(1), plaintext(3000, 1), 548)
		forged := bytes.Clone(frags[1])
		forged[len(forged)-1] ^= 1
		foreign := split(t, s.cipher(t, 2), authHeader(1), plaintext(3000, 1), 548)
		b := NewBudget(Limits{Messages: 1, TotalBytes: 1600})
		r := NewReassembler(b, c.UnprotectFragmentTo)
		add(t, r, t0, frags[0], Stored)
		add(t, r, t0, frags[1], Stored)
		add(t, r, t0, frags[2], Stored)
		other := split(t, c, authHeader(2), plaintext(3000, 1), 548)
		large := split(t, c, authHeader(1), plaintext(3000, 1), 1232)
		for name, f := range map[string][]byte{
			"forged":          forged,
			"foreign":         foreign[3],
			"duplicate":       frags[0],
			"stale total":     large[0],
			"bad number":      patched(frags[3], 0, 0, 3),
			"too many":        patched(frags[3], 0, 1, 1000),
			"SA limit":        other[0],
			"budget":          frags[4],
			"foreign, new ID": split(t, s.cipher(t, 2), authHeader(5), plaintext(3000, 1), 548)[0],
		} {
			_, want := r.Add(t0, f, wire.HeaderLen)
			if want == Stored || want == Complete {
				t.Fatalf("%s: %s fragment stored", s.name, name)
			}
			if n := testing.AllocsPerRun(100, func() { r.Add(t0, f, wire.HeaderLen) }); n != 0 {
				t.Errorf("%s: dropping a %s fragment (%v) allocates %.0f times", s.name, name, want, n)
			}
		}
	}
}

// TestReassembleFlood: authenticated peers sending incomplete fragment
// sets for every Message ID, restarts with ever larger totals, and
// forgeries, across many IKE SAs sharing a budget (the RFC 7383 §5
// attack), never make the reassemblers hold more than the limits, and the
// heap stays within what the limits allow.
func TestReassembleFlood(t *testing.T) {
	lim := Limits{Messages: 2, TotalMessages: 120, TotalBytes: 160 << 10, Bytes: 8 << 10}
	b := NewBudget(lim)
	type peer struct {
		c *ikecrypto.SKCipher
		r *Reassembler
	}
	var peers []peer
	for i := range 50 {
		c := suites[i%len(suites)].cipher(t, uint64(i))
		peers = append(peers, peer{c, NewReassembler(b, c.UnprotectFragmentTo)})
	}
	// Each peer's fragments for 20 Message IDs at three sizes, all but the
	// last fragment of every set.
	var floods [][][]byte
	for i, p := range peers {
		var fs [][]byte
		for id := uint32(1); id <= 20; id++ {
			for _, size := range []int{1232, 548, MinDatagram} {
				set := split(t, p.c, authHeader(id), plaintext(3000, uint64(i)), size)
				fs = append(fs, set[:len(set)-1]...)
			}
		}
		floods = append(floods, fs)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	now := t0
	counts := map[Result]int{}
	for round := range 3 {
		for k := 0; ; k++ {
			done := true
			for i, p := range peers {
				if k >= len(floods[i]) {
					continue
				}
				done = false
				f := floods[i][k]
				if k%7 == 3 {
					f = bytes.Clone(f)
					f[len(f)-1] ^= 0x80
				}
				_, res := p.r.Add(now, f, wire.HeaderLen)
				counts[res]++
				if res == Complete {
					t.Fatal("an incomplete set completed")
				}
				msgs, held := b.InUse()
				if msgs > lim.TotalMessages || held > lim.TotalBytes || p.r.Pending() > lim.Messages {
					t.Fatalf("round %d: %d messages, %d octets held, %d for one SA", round, msgs, held, p.r.Pending())
				}
			}
			if done {
				break
			}
			now = now.Add(10 * time.Millisecond)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(floods)
	runtime.KeepAlive(peers)
	msgs, held := b.InUse()
	// What the limits allow: the content, a chunk header per fragment
	// and a set per message, and the scratch buffer.
	bound := uint64(lim.TotalBytes + lim.TotalMessages*(MaxFragments*32+256) + 64<<10)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("results %v; held %d messages, %d octets; heap grew %d octets (bound %d)", counts, msgs, held, grew, bound)
	if grew > int64(bound) {
		t.Errorf("heap grew %d octets, more than the %d the limits allow", grew, bound)
	}
	if counts[DropBudget] == 0 || counts[DropSALimit] == 0 || counts[DropIntegrity] == 0 {
		t.Errorf("the flood did not reach every limit: %v", counts)
	}
}

// TestReassembleOpenErrors: an opener failing other than on integrity
// (framing the cipher refuses) is a malformed drop.
func TestReassembleOpenErrors(t *testing.T) {
	c := suites[0].cipher(t, 1)
	f := split(t, c, authHeader(1), plaintext(2000, 1), 548)[0]
	r := NewReassembler(NewBudget(Limits{}), func(dst, msg []byte, off int) ([]byte, error) {
		return nil, errors.New("framing")
	})
	add(t, r, t0, f, DropMalformed)
	r = NewReassembler(NewBudget(Limits{}), func(dst, msg []byte, off int) ([]byte, error) {
		return nil, ikecrypto.ErrIntegrity
	})
	add(t, r, t0, f, DropIntegrity)
}

func TestResultString(t *testing.T) {
	for r := Stored; r <= DropBudget; r++ {
		if r.String() == "unknown" {
			t.Errorf("result %d has no name", r)
		}
	}
	if Result(200).String() != "unknown" {
		t.Error("out of range result named")
	}
}
