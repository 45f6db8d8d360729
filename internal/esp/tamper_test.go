package esp

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// TestTamper flips every bit of sealed packets: a flipped SPI gives ErrSPI,
// anything else ErrIntegrity (or ErrReplay when the sequence number
// becomes 0). The window never moves, and the original still opens.
func TestTamper(t *testing.T) {
	for _, k := range kinds {
		for _, esn := range []bool{false, true} {
			o, in := k.pair(t, esn)
			o.seq = 0x100
			if esn {
				// high half 1: the receiver must have seen that subspace
				o.seq = 0x1_0000_0100
				in.win.Update(0x1_0000_0000)
			}
			top := in.win.Top()
			payload := pattern(77, 2)
			pkt := seal(t, o, payload, 4, 3)
			buf := make([]byte, len(pkt))
			for bit := range 8 * len(pkt) {
				copy(buf, pkt)
				buf[bit/8] ^= 1 << (bit % 8)
				_, _, err := in.Open(buf)
				switch {
				case bit < 32:
					if err != ErrSPI {
						t.Fatalf("%s ESN=%v bit %d: %v, want ErrSPI", k.name, esn, bit, err)
					}
				case err == ErrReplay && bit < 64:
					// a sequence number bit: only 0 or one left of the
					// window is a replay
					seql := uint64(binary.BigEndian.Uint32(buf[4:8]))
					if esn {
						seql = in.win.Infer(uint32(seql))
					}
					if seql != 0 && seql+uint64(in.win.Size()) > top {
						t.Fatalf("%s ESN=%v bit %d: ErrReplay for seq %#x", k.name, esn, bit, seql)
					}
				case err != ErrIntegrity:
					t.Fatalf("%s ESN=%v bit %d: %v, want ErrIntegrity", k.name, esn, bit, err)
				}
				if in.win.Top() != top {
					t.Fatalf("%s: window moved", k.name)
				}
			}
			got, nh, err := in.Open(bytes.Clone(pkt))
			if err != nil || nh != 4 || !bytes.Equal(got[:len(payload)], payload) {
				t.Fatalf("%s: original: %v", k.name, err)
			}
		}
	}
}

// TestTruncate: every truncation and extension fails with ErrShort or
// ErrIntegrity.
func TestTruncate(t *testing.T) {
	for _, k := range kinds {
		for _, esn := range []bool{false, true} {
			o, in := k.pair(t, esn)
			pkt := seal(t, o, pattern(50, 4), 17, 0)
			for n := range len(pkt) {
				_, _, err := in.Open(bytes.Clone(pkt[:n]))
				if err != ErrShort && err != ErrIntegrity {
					t.Fatalf("%s: truncated to %d: %v", k.name, n, err)
				}
				if n < 8 && err != ErrShort {
					t.Fatalf("%s: %d octets: %v", k.name, n, err)
				}
			}
			for _, extra := range []int{1, 4, 16} {
				long := append(bytes.Clone(pkt), make([]byte, extra)...)
				if _, _, err := in.Open(long); err != ErrShort && err != ErrIntegrity {
					t.Fatalf("%s: extended by %d: %v", k.name, extra, err)
				}
			}
			mustOpen(t, in, pkt, pattern(50, 4), 17)
		}
	}
}

// sealRaw protects the plaintext pt (payload | padding | Pad Length | Next
// Header, already laid out) with the next sequence number, bypassing
// Seal's padding, to build authentic packets with bad trailers.
func sealRaw(o *Outbound, pt []byte) []byte {
	out := make([]byte, o.hdrLen+len(pt)+o.icvLen)
	copy(out[o.hdrLen:], pt)
	o.seq++
	o.protect(&o.own, out, o.seq)
	return out
}

// TestPadding opens authentic packets with bad trailers: ErrPadding, and
// the window still records them (their integrity passed, §3.4.3).
func TestPadding(t *testing.T) {
	for _, k := range kinds {
		for _, esn := range []bool{false, true} {
			o, in := k.pair(t, esn)
			bs := o.align // 4 or 16
			mk := func(n int, tail ...byte) []byte {
				pt := pattern(n, 6)
				return append(pt[:n-len(tail)], tail...)
			}
			for _, tc := range []struct {
				name string
				pt   []byte
				err  error
				want int // payload length
			}{
				{"wrong pad byte", mk(2*bs, 1, 2, 4, 3, 4), ErrPadding, 0},
				{"pad starts at 0", mk(2*bs, 0, 1, 2, 4), ErrPadding, 0},
				{"pad length too long", mk(bs, byte(bs-1), 4), ErrPadding, 0},
				{"pad length 255", mk(bs, 255, 4), ErrPadding, 0},
				{"all padding", append(seq(bs-2), byte(bs-2), 4), nil, 0},
				{"long valid padding", append(append(pattern(bs, 1), seq(2*bs-2)...), byte(2*bs-2), 4), nil, bs},
				{"no padding", mk(bs, 0, 6), nil, bs - 2},
				{"dummy", append(seq(bs-2), byte(bs-2), NextHeaderDummy), ErrDummy, 0},
				{"bad padding in a dummy", mk(bs, 1, 3, 2, NextHeaderDummy), ErrPadding, 0},
			} {
				pkt := sealRaw(o, tc.pt)
				got, _, err := in.Open(pkt)
				if err != tc.err || (err == nil && len(got) != tc.want) {
					t.Fatalf("%s %s: %v, %d octets; want %v", k.name, tc.name, err, len(got), tc.err)
				}
				if in.win.Top() != o.Seq() {
					t.Fatalf("%s %s: window not updated", k.name, tc.name)
				}
			}
			// A dummy packet through Seal.
			if _, nh, err := in.Open(seal(t, o, pattern(40, 1), NextHeaderDummy, 0)); err != ErrDummy || nh != NextHeaderDummy {
				t.Fatalf("%s: dummy: %v", k.name, err)
			}
		}
	}
}

// seq returns 1, 2, ..., n: valid padding (RFC 4303 §2.4).
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}

// TestSeqExhaustion: the counter must not cycle (RFC 4303 §3.3.3).
func TestSeqExhaustion(t *testing.T) {
	for _, name := range []string{"AES-GCM-16-128", "AES-CBC-128-SHA256"} {
		k := kindByName(t, name)
		o, in := k.pair(t, false)
		o.seq = softSeq32 - 1
		if o.SoftLimit() {
			t.Fatal("soft limit too early")
		}
		seal(t, o, nil, 4, 0)
		if !o.SoftLimit() {
			t.Fatal("soft limit not reached at 2^32-2^30")
		}
		o.seq = 1<<32 - 3
		in.win.Update(1<<32 - 3)
		for _, want := range []uint64{1<<32 - 2, 1<<32 - 1} {
			pkt := seal(t, o, []byte{1}, 4, 0)
			if o.Seq() != want {
				t.Fatalf("Seq %#x, want %#x", o.Seq(), want)
			}
			mustOpen(t, in, pkt, []byte{1}, 4)
		}
		dst := []byte("keep")
		out, err := o.Seal(dst, []byte{1}, 4, 0)
		if err != ErrSeqExhausted || !bytes.Equal(out, dst) || o.Seq() != 1<<32-1 {
			t.Fatalf("%s: after 2^32-1: %v %q seq %#x", name, err, out, o.Seq())
		}
		if _, err := o.Seal(nil, nil, 4, 0); err != ErrSeqExhausted {
			t.Fatal("exhaustion not sticky")
		}

		// ESN: the 64-bit counter.
		o, _ = k.pair(t, true)
		o.seq = softSeq64 - 1
		if o.SoftLimit() {
			t.Fatal("ESN soft limit too early")
		}
		seal(t, o, nil, 4, 0)
		if !o.SoftLimit() {
			t.Fatal("ESN soft limit not reached")
		}
		o.seq = 1<<64 - 2
		seal(t, o, nil, 4, 0)
		if _, err := o.Seal(nil, nil, 4, 0); err != ErrSeqExhausted {
			t.Fatalf("%s ESN: %v", name, err)
		}
		// Crossing 2^32 is fine with ESN.
		o, _ = k.pair(t, true)
		o.seq = 1<<32 - 1
		if _, err := o.Seal(nil, nil, 4, 0); err != nil || o.Seq() != 1<<32 {
			t.Fatalf("%s ESN across 2^32: %v", name, err)
		}
	}
}

// TestAllocs: Seal and Open must not allocate on the hot path.
func TestAllocs(t *testing.T) {
	for _, name := range []string{"AES-GCM-16-128", "AES-GCM-16-256", "ChaCha20-Poly1305", "AES-CBC-128-SHA256", "AES-CBC-256-SHA512", "AES-CBC-128-SHA1-96"} {
		for _, esn := range []bool{false, true} {
			k := kindByName(t, name)
			o, in := k.pair(t, esn)
			payload := pattern(1400, 8)
			dst := make([]byte, 0, 2048)
			const runs = 200
			pkts := make([][]byte, runs+1)
			for i := range pkts {
				pkts[i] = seal(t, o, payload, 4, 0)
			}
			if a := testing.AllocsPerRun(runs, func() {
				if _, err := o.Seal(dst, payload, 4, 0); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("%s ESN=%v: Seal allocates %.1f", name, esn, a)
			}
			i := 0
			if a := testing.AllocsPerRun(runs, func() {
				if _, _, err := in.Open(pkts[i]); err != nil {
					t.Fatal(err)
				}
				i++
			}); a != 0 {
				t.Errorf("%s ESN=%v: Open allocates %.1f", name, esn, a)
			}
			// Rejections do not allocate either.
			bad := seal(t, o, payload, 4, 0)
			bad[20] ^= 1
			if a := testing.AllocsPerRun(runs, func() {
				if _, _, err := in.Open(bad); err != ErrIntegrity {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("%s ESN=%v: rejecting allocates %.1f", name, esn, a)
			}
		}
	}
}
