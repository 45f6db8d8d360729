package esp

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// fuzzSealed returns, for every suite and ESN setting, the Outbound
// configuration and a set of packets sealed deterministically (CBC IVs
// are fixed), so that every fuzzing process computes the same set.
func fuzzSealed(t testing.TB) (cfgs []Config, sealed []map[string]bool, seeds [][]byte) {
	for _, k := range kinds {
		for _, esn := range []bool{false, true} {
			c := k.config(t, 0x0a0b0c0d, esn)
			// Distinct keys per configuration: suites that share an
			// integrity transform would otherwise accept each other's
			// packets (with garbage plaintext, so ErrPadding).
			c.EncKey = pattern(len(c.EncKey), byte(100+len(cfgs)))
			c.IntegKey = pattern(len(c.IntegKey), byte(200+len(cfgs)))
			o, err := NewOutbound(c)
			if err != nil {
				t.Fatal(err)
			}
			set := map[string]bool{}
			for i, n := range []int{0, 1, 3, 20, 64, 100} {
				o.testIV = pattern(o.ivLen, byte(i))
				for _, nh := range []byte{4, NextHeaderDummy} {
					pkt := seal(t, o, pattern(n, byte(n)), nh, i%3)
					set[string(pkt)] = true
					seeds = append(seeds, append([]byte{byte(len(cfgs))}, pkt...))
				}
			}
			cfgs = append(cfgs, c)
			sealed = append(sealed, set)
		}
	}
	return cfgs, sealed, seeds
}

// FuzzOpen feeds arbitrary packets to an Inbound of every suite: Open must
// not panic, and may only accept (nil, ErrDummy, or ErrPadding, which
// follow a passed integrity check) packets that were really sealed; an
// accepted packet replayed must give ErrReplay.
func FuzzOpen(f *testing.F) {
	cfgs, sealed, seeds := fuzzSealed(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{0})
	f.Add([]byte{3, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		idx := int(data[0]) % len(cfgs)
		pkt := data[1:]
		in, err := NewInbound(cfgs[idx])
		if err != nil {
			t.Fatal(err)
		}
		buf := bytes.Clone(pkt)
		payload, _, err := in.Open(buf)
		switch err {
		case nil, ErrDummy, ErrPadding:
			if !sealed[idx][string(pkt)] {
				t.Fatalf("suite %d accepted a packet it never sealed: %x (%v)", idx, pkt, err)
			}
			if err == nil && len(payload) > len(pkt) {
				t.Fatal("payload longer than packet")
			}
			if _, _, err := in.Open(bytes.Clone(pkt)); err != ErrReplay {
				t.Fatalf("replay: %v", err)
			}
		case ErrShort, ErrSPI, ErrReplay, ErrIntegrity:
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// windowModel is the reference anti-replay model: the set of sequence
// numbers seen and the highest one.
type windowModel struct {
	seen map[uint64]bool
	top  uint64
	size uint64
}

func (m *windowModel) check(seq uint64) bool {
	return seq != 0 && !m.seen[seq] && (seq > m.top || m.top-seq < m.size)
}

func (m *windowModel) update(seq uint64) {
	if !m.check(seq) {
		return
	}
	m.seen[seq] = true
	m.top = max(m.top, seq)
}

// FuzzWindow drives a Window and the reference model with the same
// sequence numbers. Each 4-octet step picks a move relative to the
// highest number (small steps around the window's edges, word-sized and
// huge jumps) and whether the packet's integrity check "passes".
func FuzzWindow(f *testing.F) {
	f.Add(uint8(0), []byte{0, 1, 0, 0, 0, 5, 0, 0, 1, 0, 0, 2})
	f.Add(uint8(1), []byte{2, 0, 4, 0, 1, 0, 255, 0, 0, 3, 255, 255, 2, 0, 0, 1})
	f.Add(uint8(2), bytes.Repeat([]byte{0, 1, 0, 3, 1, 0x80, 0, 1}, 40))
	f.Fuzz(func(t *testing.T, sizeSel uint8, ops []byte) {
		size := []int{64, 128, 1024, 4096}[sizeSel%4]
		w := NewWindow(size)
		m := &windowModel{seen: map[uint64]bool{}, size: uint64(size)}
		for ; len(ops) >= 4; ops = ops[4:] {
			v := uint64(binary.BigEndian.Uint16(ops[2:4]))
			var seq uint64
			switch ops[0] % 4 {
			case 0: // ahead of the top by a little
				seq = m.top + v%(2*m.size)
			case 1: // behind the top, around the left edge
				seq = m.top - v%(2*m.size)
			case 2: // far ahead
				seq = m.top + v<<(ops[1]%40)
			case 3: // absolute small value
				seq = v
			}
			if seq > 1<<62 { // keep away from wrapping the model
				continue
			}
			if got, want := w.Check(seq), m.check(seq); got != want {
				t.Fatalf("W=%d top=%d: Check(%d) = %v, model %v", size, m.top, seq, got, want)
			}
			if ops[1]&0x80 == 0 { // integrity passed: mark seen
				if w.Check(seq) {
					w.Update(seq)
				}
				m.update(seq)
			}
			if w.Top() != m.top {
				t.Fatalf("top %d, model %d", w.Top(), m.top)
			}
		}
		// The bitmap agrees with the model over the whole window and a
		// margin around it.
		lo := uint64(0)
		if m.top > m.size+200 {
			lo = m.top - m.size - 200
		}
		for s := lo; s <= m.top+200; s++ {
			if got, want := w.Check(s), m.check(s); got != want {
				t.Fatalf("final W=%d top=%d: Check(%d) = %v, model %v", size, m.top, s, got, want)
			}
		}
	})
}
