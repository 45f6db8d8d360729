package conn

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// chunkReader returns at most n octets per Read: a stream as TCP may
// deliver it, in arbitrary pieces.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}

type frame struct {
	kind Kind
	data []byte
}

// readAll reads every frame until an error.
func readAll(r io.Reader, prefix bool) ([]frame, error) {
	f := NewFrameReader(r, prefix)
	var out []frame
	for {
		k, b, err := f.Next()
		if err != nil {
			return out, err
		}
		out = append(out, frame{k, bytes.Clone(b)})
	}
}

func mustFrame(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// RFC 9329 §3, §3.1, §3.2, §4, §6.6: a stream is the prefix, then
// Length-framed IKE behind the non-ESP marker and ESP; an empty frame is
// ignored, a keepalive is sorted as one, and whichever way the octets
// are cut into reads the same messages come out.
func TestFrameReaderRFC9329Section3(t *testing.T) {
	ike := bytes.Repeat([]byte{0x21}, 300)
	esp := append([]byte{0, 0, 1, 2}, bytes.Repeat([]byte{7}, 1000)...)
	var s []byte
	s = append(s, TCPPrefix...)
	s = mustFrame(AppendTCPIKE(s, ike))
	s = append(s, 0, 2) // empty: ignored (§3)
	s = mustFrame(AppendTCPESP(s, esp))
	s = append(s, 0, 3, 0xff) // keepalive (§6.6)
	s = mustFrame(AppendTCPIKE(s, nil))
	want := []frame{{IKE, ike}, {ESP, esp}, {Keepalive, []byte{0xff}}, {IKE, []byte{}}}
	for _, chunk := range []int{1, 2, 3, 7, 100, len(s)} {
		got, err := readAll(&chunkReader{s, chunk}, true)
		if err != io.EOF {
			t.Errorf("chunks of %d: %v, want io.EOF", chunk, err)
		}
		if len(got) != len(want) {
			t.Fatalf("chunks of %d: %d frames, want %d", chunk, len(got), len(want))
		}
		for i := range want {
			if got[i].kind != want[i].kind || !bytes.Equal(got[i].data, want[i].data) {
				t.Errorf("chunks of %d, frame %d: %v %d octets, want %v %d", chunk, i, got[i].kind, len(got[i].data), want[i].kind, len(want[i].data))
			}
		}
	}
	// The TCP Originator reads no prefix: the responder never sends one.
	if got, err := readAll(bytes.NewReader(s[len(TCPPrefix):]), false); err != io.EOF || len(got) != len(want) {
		t.Errorf("without the prefix: %d frames, %v", len(got), err)
	}
}

// RFC 9329 §3.1, §4, §6.1: a bad prefix and a Length of 0 or 1 are
// fatal; a stream that ends inside a frame loses it; a frame longer
// than the reader takes is skipped whole, and the stream stays in step.
func TestFrameReaderErrorsRFC9329(t *testing.T) {
	ok := mustFrame(AppendTCPIKE(nil, []byte{1, 2, 3}))
	long := make([]byte, MaxDatagram+1)
	long[3] = 1
	for _, c := range []struct {
		name   string
		s      []byte
		prefix bool
		frames int
		err    error
	}{
		{"bad prefix", []byte("IKETCX"), true, 0, ErrTCPPrefix},
		{"bad prefix, first octet", []byte("X"), true, 0, ErrTCPPrefix},
		{"prefix cut", []byte("IKE"), true, 0, io.ErrUnexpectedEOF},
		{"nothing at all", nil, true, 0, io.EOF},
		{"length 0", append(bytes.Clone(ok), 0, 0), false, 1, ErrTCPLength},
		{"length 1", append(bytes.Clone(ok), 0, 1, 9), false, 1, ErrTCPLength},
		{"length cut", append(bytes.Clone(ok), 0), false, 1, io.ErrUnexpectedEOF},
		{"frame cut", ok[:len(ok)-1], false, 0, io.ErrUnexpectedEOF},
		{"too long, skipped", append(mustFrame(AppendTCPESP(nil, long)), ok...), false, 2, io.EOF},
		{"too long, cut", mustFrame(AppendTCPESP(nil, long))[:500], false, 1, io.ErrUnexpectedEOF},
		{"no prefix from the initiator", ok, true, 0, ErrTCPPrefix},
	} {
		got, err := readAll(&chunkReader{c.s, 97}, c.prefix)
		if !errors.Is(err, c.err) || len(got) != c.frames {
			t.Errorf("%s: %d frames, %v; want %d, %v", c.name, len(got), err, c.frames, c.err)
		}
		if c.name == "too long, skipped" && (got[0].kind != Truncated || got[1].kind != IKE) {
			t.Errorf("%s: %v then %v", c.name, got[0].kind, got[1].kind)
		}
	}
	if _, err := AppendTCPIKE(nil, make([]byte, MaxTCPFrame)); err != ErrTCPTooLong {
		t.Errorf("a message longer than a frame: %v", err)
	}
	if _, err := AppendTCPESP(nil, []byte{0, 0, 0, 0, 1}); err != ErrZeroSPI {
		t.Errorf("ESP with SPI 0: %v", err)
	}
	if _, err := AppendTCPESP(nil, []byte{1, 2}); err != ErrZeroSPI {
		t.Errorf("ESP shorter than an SPI: %v", err)
	}
}

// FuzzFrameReader: whatever a peer sends, the reader neither panics nor
// returns more than MaxDatagram octets, reads the same messages however
// the stream is cut, and what it returns framed again reads back the
// same (RFC 9329 §3).
func FuzzFrameReader(f *testing.F) {
	seed := []byte(TCPPrefix)
	seed = mustFrame(AppendTCPIKE(seed, []byte{1, 2, 3}))
	seed = mustFrame(AppendTCPESP(seed, []byte{0, 0, 0, 9, 5}))
	f.Add(seed, uint8(3), true)
	f.Add(seed[6:], uint8(0), false)
	f.Add([]byte{0, 3, 0xff, 0, 2, 0, 1}, uint8(1), false)
	f.Add([]byte{0xff, 0xff, 0, 0, 0, 1}, uint8(200), false)
	f.Fuzz(func(t *testing.T, s []byte, chunk uint8, prefix bool) {
		whole, errWhole := readAll(bytes.NewReader(s), prefix)
		cut, errCut := readAll(&chunkReader{s, int(chunk) + 1}, prefix)
		if errWhole != errCut || len(whole) != len(cut) {
			t.Fatalf("whole: %d frames, %v; in chunks of %d: %d, %v", len(whole), errWhole, int(chunk)+1, len(cut), errCut)
		}
		var again []byte
		for i, fr := range whole {
			if fr.kind != cut[i].kind || !bytes.Equal(fr.data, cut[i].data) {
				t.Fatalf("frame %d differs when cut", i)
			}
			if len(fr.data) > MaxDatagram {
				t.Fatalf("frame %d: %d octets", i, len(fr.data))
			}
			switch fr.kind {
			case IKE:
				again = mustFrame(AppendTCPIKE(again, fr.data))
			case ESP:
				again = mustFrame(AppendTCPESP(again, fr.data))
			case Truncated:
				if fr.data != nil {
					t.Fatalf("truncated frame %d with octets", i)
				}
			default:
				again = append(again, 0, byte(tcpLenLen+len(fr.data)))
				again = append(again, fr.data...)
			}
		}
		back, err := readAll(bytes.NewReader(again), false)
		if err != io.EOF {
			t.Fatalf("reading back: %v", err)
		}
		i := 0
		for _, fr := range whole {
			if fr.kind == Truncated {
				continue
			}
			if i >= len(back) || back[i].kind != fr.kind || !bytes.Equal(back[i].data, fr.data) {
				t.Fatalf("frame %d does not read back", i)
			}
			i++
		}
		if i != len(back) {
			t.Fatalf("%d frames read back, want %d", len(back), i)
		}
	})
}
