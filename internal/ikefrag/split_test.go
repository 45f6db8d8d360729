package ikefrag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// TestSplitRoundTrip: every datagram Split makes fits the limit with its
// marker, each fragment is protected on its own (RFC 7383 §2.5), and the
// Reassembler gets the original plaintext and first payload type back
// whatever the order of arrival (§2.6).
func TestSplitRoundTrip(t *testing.T) {
	for _, s := range suites {
		c := s.cipher(t, 1)
		for _, n := range []int{0, 1, 200, 3000, 9000} {
			for _, maxDatagram := range []int{MinDatagram, 548, 1232, 1500} {
				for _, marker := range []int{0, 4} {
					inner := plaintext(n, uint64(n))
					frags, err := Split(authHeader(1), wire.PayloadIDi, inner, c, maxDatagram, marker, seeded(2))
					if err != nil {
						t.Fatalf("%s %d/%d/%d: %v", s.name, n, maxDatagram, marker, err)
					}
					for i, f := range frags {
						if len(f)+marker > maxDatagram {
							t.Errorf("%s %d/%d/%d: message %d is %d octets with the marker", s.name, n, maxDatagram, marker, i+1, len(f)+marker)
						}
					}
					if len(frags) == 1 {
						// It fitted: an ordinary SK message (§2.4).
						if _, typ, ok := wire.ScanPayloads(frags[0]); !ok || typ != wire.PayloadSK {
							t.Fatalf("%s %d/%d: one message, but not SK (%v)", s.name, n, maxDatagram, typ)
						}
						plain, err := c.Unprotect(frags[0], wire.HeaderLen)
						if err != nil || !bytes.Equal(plain, inner) {
							t.Fatalf("%s %d/%d: unfragmented message does not open: %v", s.name, n, maxDatagram, err)
						}
						continue
					}
					rs := NewReassembler(NewBudget(Limits{}), c.UnprotectFragmentTo)
					order := rand.New(rand.NewPCG(uint64(n), uint64(maxDatagram))).Perm(len(frags))
					var got Message
					for k, i := range order {
						m, r := rs.Add(t0, frags[i], skfOffset(t, frags[i]))
						want := Stored
						if k == len(frags)-1 {
							want = Complete
						}
						if r != want {
							t.Fatalf("%s %d/%d: fragment %d of %d: %v, want %v", s.name, n, maxDatagram, i+1, len(frags), r, want)
						}
						got = m
					}
					if !bytes.Equal(got.Plain, inner) || got.First != wire.PayloadIDi || got.Fragments != len(frags) {
						t.Errorf("%s %d/%d: reassembled %d octets, first %v, %d fragments", s.name, n, maxDatagram, len(got.Plain), got.First, got.Fragments)
					}
					if got.Header.MessageID != 1 || got.Header.Exchange != wire.IKEAuth || got.Largest > maxDatagram-marker {
						t.Errorf("%s: header %+v, largest %d", s.name, got.Header, got.Largest)
					}
				}
			}
		}
	}
}

// TestSplitFragmentFields: Fragment Number runs 1..Total, Next Payload is
// the first inner payload's type in fragment 1 and zero in the others,
// and every IKE header is the original's but for Next Payload (SKF) and
// Length (RFC 7383 §2.5).
func TestSplitFragmentFields(t *testing.T) {
	c := suites[0].cipher(t, 1)
	h := authHeader(9)
	frags := split(t, c, h, plaintext(4000, 1), 548)
	if len(frags) < 8 {
		t.Fatalf("%d fragments of 4000 octets at 548", len(frags))
	}
	for i, f := range frags {
		got, err := wire.ParseHeader(f)
		if err != nil {
			t.Fatal(err)
		}
		want := h
		want.NextPayload, want.Length = wire.PayloadSKF, uint32(len(f))
		if got != want {
			t.Errorf("fragment %d header %+v, want %+v", i+1, got, want)
		}
		off := skfOffset(t, f)
		next := wire.PayloadType(f[off])
		num, total := binary.BigEndian.Uint16(f[off+4:]), binary.BigEndian.Uint16(f[off+6:])
		if int(num) != i+1 || int(total) != len(frags) {
			t.Errorf("fragment %d numbered %d of %d", i+1, num, total)
		}
		if (i == 0) != (next == wire.PayloadIDi) || (i > 0 && next != wire.PayloadNone) {
			t.Errorf("fragment %d: Next Payload %v", i+1, next)
		}
		// Each is protected on its own, with its numbering covered (§2.5).
		if _, err := c.UnprotectFragment(f, off); err != nil {
			t.Errorf("fragment %d does not open alone: %v", i+1, err)
		}
		bad := bytes.Clone(f)
		binary.BigEndian.PutUint16(bad[off+6:], total+1)
		if _, err := c.UnprotectFragment(bad, off); err == nil {
			t.Errorf("fragment %d: Total Fragments is not covered by the ICV", i+1)
		}
	}
}

// TestSplitIKESAInit: IKE_SA_INIT has no Encrypted payload and is never
// fragmented (RFC 7383 §2.2).
func TestSplitIKESAInit(t *testing.T) {
	c := suites[0].cipher(t, 1)
	h := authHeader(0)
	h.Exchange = wire.IKESAInit
	if _, err := Split(h, wire.PayloadSA, plaintext(3000, 1), c, 548, 0, seeded(1)); !errors.Is(err, ErrInitNotFragmented) {
		t.Fatalf("IKE_SA_INIT split: %v", err)
	}
}

// TestSplitMinimum: a limit below MinDatagram is raised to it rather than
// making fragments that carry almost nothing (RFC 7383 §2.2).
func TestSplitMinimum(t *testing.T) {
	for _, s := range suites {
		c := s.cipher(t, 1)
		inner := plaintext(2000, 3)
		low, err := Split(authHeader(1), wire.PayloadIDi, inner, c, 60, 4, seeded(1))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		atMin, _ := Split(authHeader(1), wire.PayloadIDi, inner, c, MinDatagram, 4, seeded(1))
		if len(low) != len(atMin) {
			t.Errorf("%s: %d fragments at 60 octets, %d at MinDatagram", s.name, len(low), len(atMin))
		}
		for _, f := range low {
			if len(f)+4 > MinDatagram {
				t.Errorf("%s: %d-octet fragment", s.name, len(f)+4)
			}
		}
	}
}

// TestSplitCap: a message that would take more than MaxFragments
// fragments is refused, not sent in pieces a receiver drops.
func TestSplitCap(t *testing.T) {
	c := suites[0].cipher(t, 1)
	if _, err := Split(authHeader(1), wire.PayloadIDi, plaintext(60000, 1), c, MinDatagram, 0, seeded(1)); err == nil {
		t.Fatal("60000 octets in MinDatagram fragments accepted")
	}
	frags, err := Split(authHeader(1), wire.PayloadIDi, plaintext(60000, 1), c, 1232, 0, seeded(1))
	if err != nil || len(frags) > MaxFragments {
		t.Fatalf("60000 octets at 1232: %d fragments, %v", len(frags), err)
	}
}

// TestMaxDatagram: RFC 7383 §2.5.1's 1280 (IPv6) and 576 (IPv4) octets
// less the IP and UDP headers, a configured IP datagram size instead when
// given, never below MinDatagram.
func TestMaxDatagram(t *testing.T) {
	for _, c := range []struct {
		addr       string
		configured int
		want       int
	}{
		{"192.0.2.1", 0, 576 - 20 - 8},
		{"2001:db8::1", 0, 1280 - 40 - 8},
		{"::ffff:192.0.2.1", 0, 576 - 20 - 8},
		{"192.0.2.1", 1400, 1400 - 28},
		{"2001:db8::1", 1400, 1400 - 48},
		{"192.0.2.1", 100, MinDatagram},
		{"2001:db8::1", -1, 1232},
	} {
		if got := MaxDatagram(netip.MustParseAddr(c.addr), c.configured); got != c.want {
			t.Errorf("MaxDatagram(%s, %d) = %d, want %d", c.addr, c.configured, got, c.want)
		}
	}
}
