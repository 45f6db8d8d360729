package esp

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// TestRoundTrip seals and opens every payload length from 0 to 1500 for
// every suite, with and without ESN, checking the packet length against
// Overhead and the alignment of RFC 4303 §2.4.
func TestRoundTrip(t *testing.T) {
	for _, k := range kinds {
		for _, esn := range []bool{false, true} {
			o, in := k.pair(t, esn)
			full := pattern(1500, 3)
			var buf []byte
			for n := 0; n <= len(full); n++ {
				payload := full[:n]
				var err error
				buf, err = o.Seal(buf[:0], payload, 4, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(buf) != n+o.Overhead(n) {
					t.Fatalf("%s: len %d, want %d", k.name, len(buf), n+o.Overhead(n))
				}
				if ct := len(buf) - o.HeaderLen() - o.icvLen; ct%o.align != 0 || ct-n-2 >= o.align {
					t.Fatalf("%s: ciphertext %d for payload %d: not minimally aligned to %d", k.name, ct, n, o.align)
				}
				if o.Overhead(n) > o.MaxOverhead() {
					t.Fatalf("%s: Overhead(%d) > MaxOverhead", k.name, n)
				}
				got, nh, err := in.Open(buf)
				if err != nil || nh != 4 || !bytes.Equal(got, payload) {
					t.Fatalf("%s ESN=%v n=%d: Open = %v nh %d", k.name, esn, n, err, nh)
				}
			}
			if o.Seq() != 1501 || in.Window().Top() != 1501 {
				t.Fatalf("Seq %d, window top %d", o.Seq(), in.Window().Top())
			}
		}
	}
}

// TestTFC seals with TFC padding (RFC 4303 §2.7): the receiver gets the
// payload followed by zeros, and TrimTFC recovers the inner IP packet.
func TestTFC(t *testing.T) {
	inner4 := pattern(60, 9)
	inner4[0] = 0x45
	binary.BigEndian.PutUint16(inner4[2:4], 60)
	inner6 := pattern(72, 10)
	inner6[0] = 0x60
	binary.BigEndian.PutUint16(inner6[4:6], 32)
	for _, k := range kinds {
		for _, esn := range []bool{false, true} {
			o, in := k.pair(t, esn)
			for _, tfc := range []int{-5, 0, 1, 3, 17, 200, 1000} {
				for _, tc := range []struct {
					inner []byte
					nh    byte
				}{{inner4, 4}, {inner6, 41}} {
					pkt := seal(t, o, tc.inner, tc.nh, tfc)
					wantLen := len(tc.inner) + max(tfc, 0)
					if len(pkt) != wantLen+o.Overhead(wantLen) {
						t.Fatalf("%s tfc %d: len %d", k.name, tfc, len(pkt))
					}
					got, nh, err := in.Open(pkt)
					if err != nil || nh != tc.nh || len(got) != wantLen {
						t.Fatalf("%s tfc %d: Open %v nh %d len %d", k.name, tfc, err, nh, len(got))
					}
					if !bytes.Equal(got[:len(tc.inner)], tc.inner) || !bytes.Equal(got[len(tc.inner):], make([]byte, wantLen-len(tc.inner))) {
						t.Fatalf("%s tfc %d: payload %x", k.name, tfc, got)
					}
					if trimmed := TrimTFC(got, nh); !bytes.Equal(trimmed, tc.inner) {
						t.Fatalf("%s tfc %d: TrimTFC gave %d octets", k.name, tfc, len(trimmed))
					}
				}
			}
		}
	}
	if _, err := kinds[0].pairOut(t).Seal(nil, make([]byte, 100), 4, MaxPayload); err != ErrTooLong {
		t.Errorf("oversized TFC: %v, want ErrTooLong", err)
	}
}

func (k suiteKind) pairOut(t testing.TB) *Outbound {
	o, _ := k.pair(t, false)
	return o
}

func TestTrimTFC(t *testing.T) {
	v4 := make([]byte, 30)
	v4[0] = 0x45
	for _, tc := range []struct {
		totalLen int
		nh       byte
		want     int
	}{{24, 4, 24}, {30, 4, 30}, {31, 4, 30}, {19, 4, 30}, {0, 4, 30}, {24, 6, 30}, {24, 41, 30}} {
		binary.BigEndian.PutUint16(v4[2:4], uint16(tc.totalLen))
		if got := len(TrimTFC(v4, tc.nh)); got != tc.want {
			t.Errorf("IPv4 total length %d nh %d: %d octets, want %d", tc.totalLen, tc.nh, got, tc.want)
		}
	}
	if got := len(TrimTFC(make([]byte, 10), 4)); got != 10 {
		t.Errorf("short: %d", got)
	}
}

// TestSealInPlace seals a payload already at offset HeaderLen of the
// packet buffer, and appends to a non-empty dst.
func TestSealInPlace(t *testing.T) {
	for _, k := range kinds {
		o, in := k.pair(t, true)
		payload := pattern(333, 5)
		buf := make([]byte, 2048)
		h := o.HeaderLen()
		copy(buf[h:], payload)
		pkt, err := o.Seal(buf[:0], buf[h:h+len(payload)], 41, 0)
		if err != nil {
			t.Fatal(err)
		}
		if &pkt[0] != &buf[0] {
			t.Fatalf("%s: Seal reallocated", k.name)
		}
		mustOpen(t, in, pkt, payload, 41)

		// Payload overlapping the destination at another offset.
		copy(buf[5:], payload)
		pkt, err = o.Seal(buf[:0], buf[5:5+len(payload)], 41, 0)
		if err != nil {
			t.Fatal(err)
		}
		mustOpen(t, in, pkt, payload, 41)

		// Appending after existing content, with and without room.
		prefix := []byte("prefix")
		for _, dst := range [][]byte{bytes.Clone(prefix), append(make([]byte, 0, 4096), prefix...)} {
			out, err := o.Seal(dst, payload, 41, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out[:len(prefix)], prefix) {
				t.Fatalf("%s: prefix clobbered", k.name)
			}
			mustOpen(t, in, out[len(prefix):], payload, 41)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	good := kindByName(t, "AES-GCM-16-128").config(t, 0x1000, false)
	cbc := kindByName(t, "AES-CBC-128-SHA256").config(t, 0x1000, false)
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		base Config
	}{
		{"SPI 0", func(c *Config) { c.SPI = 0 }, good},
		{"reserved SPI", func(c *Config) { c.SPI = 255 }, good},
		{"unknown encr", func(c *Config) { c.Encr = wire.Encr3DES }, good},
		{"bad key bits", func(c *Config) { c.KeyBits = 100 }, good},
		{"short AEAD key", func(c *Config) { c.EncKey = c.EncKey[:16] }, good},
		{"AEAD with integ", func(c *Config) { c.Integ = wire.IntegHMACSHA2256128 }, good},
		{"CBC without integ", func(c *Config) { c.Integ = wire.IntegNone }, cbc},
		{"CBC bad integ", func(c *Config) { c.Integ = wire.IntegHMACMD596 }, cbc},
		{"CBC short integ key", func(c *Config) { c.IntegKey = c.IntegKey[:20] }, cbc},
		{"CBC long key", func(c *Config) { c.EncKey = append(c.EncKey, 0) }, cbc},
		{"window 100", func(c *Config) { c.ReplayWindow = 100 }, good},
		{"window 32", func(c *Config) { c.ReplayWindow = 32 }, good},
		{"window huge", func(c *Config) { c.ReplayWindow = MaxReplayWindow + 64 }, good},
		{"window negative", func(c *Config) { c.ReplayWindow = -64 }, good},
	} {
		c := tc.base
		tc.mod(&c)
		_, errOut := NewOutbound(c)
		_, errIn := NewInbound(c)
		if errIn == nil || (errOut == nil && c.ReplayWindow == 0) {
			t.Errorf("%s: NewOutbound %v, NewInbound %v", tc.name, errOut, errIn)
		}
	}
	for _, w := range []int{0, 64, 4096, MaxReplayWindow} {
		c := good
		c.ReplayWindow = w
		in, err := NewInbound(c)
		if err != nil {
			t.Fatalf("window %d: %v", w, err)
		}
		want := w
		if w == 0 {
			want = DefaultReplayWindow
		}
		if in.Window().Size() != want {
			t.Errorf("window %d: size %d", w, in.Window().Size())
		}
	}
}

func TestParseSPI(t *testing.T) {
	for _, tc := range []struct {
		pkt  []byte
		spi  uint32
		isOK bool
	}{
		{nil, 0, false},
		{[]byte{0, 0, 1}, 0, false},
		{[]byte{0, 0, 0, 0, 1, 2}, 0, false},
		{[]byte{0, 0, 0, 255}, 255, false},
		{[]byte{0, 0, 1, 0}, 256, true},
		{[]byte{0xde, 0xad, 0xbe, 0xef, 0}, 0xdeadbeef, true},
	} {
		spi, ok := ParseSPI(tc.pkt)
		if spi != tc.spi || ok != tc.isOK {
			t.Errorf("ParseSPI(%x) = %#x %v", tc.pkt, spi, ok)
		}
	}
}
