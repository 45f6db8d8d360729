package esp

import (
	"fmt"
	"testing"
)

var benchKinds = []string{
	"AES-GCM-16-128", "AES-GCM-16-256", "AES-GCM-12-128", "ChaCha20-Poly1305",
	"AES-CBC-128-SHA1-96", "AES-CBC-128-SHA256", "AES-CBC-256-SHA384", "AES-CBC-256-SHA512",
}

var benchSizes = []int{64, 512, 1400}

// BenchmarkSeal seals a payload into a reused buffer (ESN on, as IKEv2
// negotiates by default).
func BenchmarkSeal(b *testing.B) {
	for _, name := range benchKinds {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				o, _ := kindByName(b, name).pair(b, true)
				payload := pattern(n, 1)
				dst := make([]byte, 0, n+o.MaxOverhead())
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := o.Seal(dst, payload, 4, 0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOpen opens packets in sequence. Open works in place, so each
// iteration first copies a pre-sealed packet into the work buffer (a
// memmove of the packet length, included in the time); every
// len(pkts) packets the window is reset so the sequence numbers repeat.
func BenchmarkOpen(b *testing.B) {
	for _, name := range benchKinds {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				o, in := kindByName(b, name).pair(b, true)
				payload := pattern(n, 1)
				pkts := make([][]byte, 256)
				for i := range pkts {
					pkts[i] = seal(b, o, payload, 4, 0)
				}
				work := make([]byte, len(pkts[0]))
				b.SetBytes(int64(n))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i == len(pkts) {
						i = 0
						in.win.reset()
					}
					copy(work, pkts[i])
					if _, _, err := in.Open(work); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkWindow measures the anti-replay check and update alone.
func BenchmarkWindow(b *testing.B) {
	w := NewWindow(DefaultReplayWindow)
	var seq uint64
	for b.Loop() {
		seq++
		s := seq
		if seq&7 == 0 {
			s -= 5 // some reordering
		}
		if w.Check(s) {
			w.Update(s)
		}
	}
}
