package ikefrag

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// fuzzLimits are small so that a short input reaches every limit.
var fuzzLimits = Limits{Fragments: 8, Bytes: 600, Messages: 2, TotalMessages: 4, TotalBytes: 1000, Timeout: 10 * time.Second}

// checksumOpen stands for an SK cipher in FuzzReassemble: a fragment is
// "authentic" when its last octet is the sum of the others, and its
// "plaintext" is what lies between the SKF header and that octet. With a
// real cipher the fuzzer could never make an authentic fragment with
// numbers of its choosing; with this one it explores what authentic
// fragments do to the queue.
func checksumOpen(dst, msg []byte, off int) ([]byte, error) {
	if len(msg) < off+skfHeaderLen+1 {
		return nil, ikecrypto.ErrFraming
	}
	if checksum(msg[:len(msg)-1]) != msg[len(msg)-1] {
		return nil, ikecrypto.ErrIntegrity
	}
	return append(dst[:0], msg[off+skfHeaderLen:len(msg)-1]...), nil
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// fuzzFragment builds an IKE Fragment message whose content is n octets
// of the value num, so that a reassembled message must read 1…1 2…2 …
func fuzzFragment(id uint32, response bool, x wire.ExchangeType, next wire.PayloadType, num, total uint16, n int, forged bool) []byte {
	h := wire.Header{SPIi: 1, SPIr: 2, MajorVersion: 2, Exchange: x, MessageID: id, NextPayload: wire.PayloadSKF}
	if response {
		h.Flags = wire.FlagResponse
	}
	h.Length = uint32(wire.HeaderLen + skfHeaderLen + n + 1)
	b := h.AppendTo(nil)
	b = append(b, byte(next), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(skfHeaderLen+n+1))
	b = binary.BigEndian.AppendUint16(b, num)
	b = binary.BigEndian.AppendUint16(b, total)
	b = append(b, bytes.Repeat([]byte{byte(num)}, n)...)
	sum := checksum(b)
	if forged {
		sum++
	}
	return append(b, sum)
}

// FuzzReassemble drives three IKE SAs' Reassemblers, sharing one Budget,
// with fragments whose every field the fuzzer chooses (6 input octets per
// fragment). Nothing may panic; after every fragment the limits hold, the
// budget matches what the reassemblers hold, a dropped fragment changes
// nothing (but a too-large message's discarded set), and a completed
// message is its fragments in Fragment Number order.
func FuzzReassemble(f *testing.F) {
	// A complete 3-fragment message, out of order, with a duplicate.
	f.Add([]byte{0, 1, 3, 2, 10, 0, 0, 1, 3, 1, 10, 0, 0, 1, 3, 1, 10, 0, 0, 1, 3, 3, 5, 0})
	// A restart with a larger total (RFC 7383 §2.5.2), then a stale one.
	f.Add([]byte{1, 2, 2, 1, 50, 0, 1, 2, 4, 2, 50, 0, 1, 2, 2, 2, 50, 0, 1, 2, 4, 1, 50, 0})
	// Forged, zero numbers, too many, and a timeout.
	f.Add([]byte{0x40, 0, 2, 1, 9, 0, 0, 0, 0, 0, 9, 0, 0, 0, 9, 1, 9, 0, 2, 3, 2, 1, 9, 200, 2, 3, 2, 2, 9, 0})
	// Flood: many message IDs and large chunks across the SAs.
	f.Add(bytes.Repeat([]byte{0x01, 0x03, 0x07, 0x02, 0xff, 0x01, 0x82, 0x02, 0x05, 0x03, 0xf0, 0x00}, 12))
	f.Fuzz(reassembleOps)
}

// reassembleOps is FuzzReassemble's body.
func reassembleOps(t *testing.T, ops []byte) {
	b := NewBudget(fuzzLimits)
	lim := b.Limits()
	rs := []*Reassembler{NewReassembler(b, checksumOpen), NewReassembler(b, checksumOpen), NewReassembler(b, checksumOpen)}
	now := t0
	for ; len(ops) >= 6; ops = ops[6:] {
		op := ops[:6]
		r := rs[int(op[0]&0x3f)%len(rs)]
		response, forged := op[0]&0x80 != 0, op[0]&0x40 != 0
		id := uint32(op[1] % 4)
		total, num := uint16(op[2]%12), uint16(op[3]%13)
		n := int(op[4])
		x := wire.IKEAuth
		if op[5]&1 != 0 {
			x = wire.Informational
		}
		next := wire.PayloadNone
		if num == 1 || op[5]&2 != 0 {
			next = wire.PayloadIDi
		}
		now = now.Add(time.Duration(op[5]>>2) * 250 * time.Millisecond)
		frag := fuzzFragment(id, response, x, next, num, total, n, forged)

		for _, r := range rs {
			r.Expire(now)
		}
		msgsBefore, bytesBefore := b.InUse()
		m, res := r.Add(now, frag, wire.HeaderLen)

		msgs, held := b.InUse()
		pending := 0
		for _, r := range rs {
			if r.Pending() > lim.Messages {
				t.Fatalf("%d messages half built for one SA, limit %d", r.Pending(), lim.Messages)
			}
			pending += r.Pending()
		}
		if msgs != pending || msgs > lim.TotalMessages || held > lim.TotalBytes || held < 0 {
			t.Fatalf("budget says %d messages (%d pending), %d octets: limits %d, %d", msgs, pending, held, lim.TotalMessages, lim.TotalBytes)
		}
		switch res {
		case Stored:
			if forged {
				t.Fatal("a forged fragment was stored")
			}
		case Complete:
			if forged || len(m.Plain) > lim.Bytes || m.Fragments != int(total) || m.Header.MessageID != id {
				t.Fatalf("completed %+v from fragment %d/%d forged=%v", m, num, total, forged)
			}
			// Runs of 1, 2, …, total in order: Fragment Number order.
			for i, c := range m.Plain {
				if c == 0 || c > byte(total) || (i > 0 && c < m.Plain[i-1]) {
					t.Fatalf("reassembled out of order: %v", m.Plain)
				}
			}
		case DropTooLarge:
			if forged || msgs > msgsBefore || held > bytesBefore {
				t.Fatalf("too large: %d→%d messages, %d→%d octets", msgsBefore, msgs, bytesBefore, held)
			}
		default:
			if forged && res != DropIntegrity && res != DropNumber && res != DropTooMany &&
				res != DropMalformed && res != DropDuplicate && res != DropStale && res != DropSALimit && res != DropBudget {
				t.Fatalf("forged fragment: %v", res)
			}
			// A dropped fragment changes nothing, except that an
			// authentic one with a larger total discards the old set
			// before a limit refuses it.
			if msgs > msgsBefore || held > bytesBefore || (forged && (msgs != msgsBefore || held != bytesBefore)) {
				t.Fatalf("%v: %d→%d messages, %d→%d octets", res, msgsBefore, msgs, bytesBefore, held)
			}
		}
	}
	for _, r := range rs {
		r.Close()
	}
	if msgs, held := b.InUse(); msgs != 0 || held != 0 {
		t.Fatalf("closed reassemblers leave %d messages, %d octets", msgs, held)
	}
}

// FuzzReassembleWire hands arbitrary datagrams to a Reassembler keyed
// with a real AES-GCM cipher that holds part of an authentic set. Nothing
// may panic, and nothing that does not verify is stored or changes what
// is held.
func FuzzReassembleWire(f *testing.F) {
	c := suites[0].cipher(f, 1)
	inner := plaintext(1500, 1)
	frags := split(f, c, authHeader(1), inner, 548)
	smaller := split(f, c, authHeader(1), inner, MinDatagram)
	for _, fr := range append(frags, smaller...) {
		f.Add(fr)
	}
	f.Add(patched(frags[1], 0, 0, 3))
	f.Fuzz(func(t *testing.T, msg []byte) {
		b := NewBudget(Limits{})
		r := NewReassembler(b, c.UnprotectFragmentTo)
		for _, fr := range frags[:len(frags)-1] {
			if i := binary.BigEndian.Uint16(fr[32:]); i != 2 {
				r.Add(t0, fr, wire.HeaderLen)
			}
		}
		_, held := b.InUse()
		off, typ, ok := wire.ScanPayloads(msg)
		if !ok || typ != wire.PayloadSKF {
			off = wire.HeaderLen
		}
		_, res := r.Add(t0, msg, off)
		msgs, now := b.InUse()
		if res == Stored || res == Complete || now != held {
			// Only an authentic fragment is kept, completes a set, or
			// makes one be discarded (a restart, a message too large).
			if _, err := c.UnprotectFragment(msg, off); err != nil {
				t.Fatalf("%v from a fragment that does not verify (%v): %d→%d octets held", res, err, held, now)
			}
		}
		if msgs > b.Limits().TotalMessages || now > b.Limits().TotalBytes {
			t.Fatalf("limits exceeded: %d messages, %d octets", msgs, now)
		}
	})
}
