package esp

import (
	"bytes"
	"sync"
	"testing"
)

// An SA keys its AEAD on the first packet, not at creation, and Idle
// drops the context: the next packet keys it again and gets through
// (RFC 4106 §4: the context is a function of the key and salt alone, so
// keying it again changes no packet). CBC SAs have nothing to drop.
func TestAEADKeyedOnUseAndDroppedWhenIdle(t *testing.T) {
	for _, k := range kinds {
		o, in := k.pair(t, true)
		aead := o.Concurrent()
		if o.Keyed() || in.Keyed() {
			t.Fatalf("%s: keyed before any packet: out %v in %v", k.name, o.Keyed(), in.Keyed())
		}
		payload := pattern(300, 9)
		for round := range 3 {
			pkt, err := o.Seal(nil, payload, 4, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := in.Open(pkt)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("%s round %d: Open = %v", k.name, round, err)
			}
			if o.Keyed() != aead || in.Keyed() != aead {
				t.Fatalf("%s round %d: keyed out %v in %v after a packet, want %v (AEAD)", k.name, round, o.Keyed(), in.Keyed(), aead)
			}
			o.Idle()
			in.Idle()
			if o.Keyed() || in.Keyed() {
				t.Fatalf("%s round %d: Idle left the AEAD keyed", k.name, round)
			}
		}
	}
}

// A packet sealed by an SA that was idle opens on one that was not, and
// the other way round: the two directions' contexts are independent.
func TestAEADIdleOnOneSideOnly(t *testing.T) {
	k := kindByName(t, "AES-GCM-16-256")
	o, in := k.pair(t, false)
	for i := range 10 {
		if i%2 == 0 {
			o.Idle()
		} else {
			in.Idle()
		}
		pkt, err := o.Seal(nil, pattern(64, byte(i)), 4, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := in.Open(pkt); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
}

// Idle is safe while other goroutines seal and open (SealSeq and OpenSeq
// run concurrently for AEAD SAs): run with -race.
func TestAEADIdleConcurrentWithSealing(t *testing.T) {
	k := kindByName(t, "AES-GCM-16-128")
	o, in := k.pair(t, false)
	const workers, per = 4, 200
	pkts := make([][]byte, workers*per)
	seqs := make([]uint64, len(pkts))
	for n := range pkts {
		seq, err := o.Next()
		if err != nil {
			t.Fatal(err)
		}
		seqs[n] = seq
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				o.Idle()
				in.Idle()
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sc Scratch
			for n := w * per; n < (w+1)*per; n++ {
				pkt, err := o.SealSeq(&sc, nil, pattern(100, byte(n)), 4, 0, seqs[n])
				if err != nil {
					t.Error(err)
					return
				}
				pkts[n] = pkt
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sc Scratch
			for n := w * per; n < (w+1)*per; n++ {
				got, _, err := in.OpenSeq(&sc, pkts[n], seqs[n])
				if err != nil || !bytes.Equal(got, pattern(100, byte(n))) {
					t.Errorf("packet %d: %v", n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
}

// BenchmarkSealAfterIdle is the cost of the first packet after Idle:
// keying the AEAD again, then sealing 1,400 octets (compare with
// BenchmarkSeal/AES-GCM-16-128/1400).
func BenchmarkSealAfterIdle(b *testing.B) {
	k := kindByName(b, "AES-GCM-16-128")
	o, _ := k.pair(b, false)
	payload, buf := pattern(1400, 1), make([]byte, 0, 1600)
	b.ReportAllocs()
	for b.Loop() {
		o.Idle()
		if _, err := o.Seal(buf[:0], payload, 4, 0); err != nil {
			b.Fatal(err)
		}
	}
}
