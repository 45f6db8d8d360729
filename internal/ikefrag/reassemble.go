package ikefrag

import (
	"bytes"
	"encoding/binary"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// Limits bound what reassembly holds for peers (RFC 7383 §5). A zero
// field takes its default.
type Limits struct {
	// Fragments per message: a fragment announcing a larger Total
	// Fragments is dropped before its ICV is checked. Default
	// MaxFragments; at most maxFragmentsCeiling.
	Fragments int
	// Bytes of decrypted content per message. A message that grows past
	// it is discarded and reported (DropTooLarge): §5 says the receiver
	// SHOULD then treat the peer as broken or hostile. Default 65535, the
	// most an unfragmented message can hold; §5 advises against more.
	Bytes int
	// Messages half built at a time per IKE SA. Default 4: a request and
	// a response are the usual most, window sizes above one rarely bring
	// more than one large request.
	Messages int
	// TotalMessages and TotalBytes are the same across all IKE SAs that
	// share a Budget. Defaults 1024 and 8 MiB: that many IKE_AUTH
	// messages with certificate chains of a few kB under way at once.
	TotalMessages int
	TotalBytes    int
	// Timeout after a message's first stored fragment (not its latest, so
	// trickling fragments cannot keep a set alive); then it is discarded
	// (§2.6). Default 30 s: shorter than an initiator's whole
	// retransmission schedule, as §2.6 allows to conserve memory, and
	// long enough for the peer's retransmissions to fill the gaps, since
	// fragments from another copy of the same set are kept.
	Timeout time.Duration
}

// Defaults of Limits.
const (
	DefaultBytes         = wire.MaxMessageLen
	DefaultMessages      = 4
	DefaultTotalMessages = 1024
	DefaultTotalBytes    = 8 << 20
	DefaultTimeout       = 30 * time.Second

	// maxFragmentsCeiling is the largest Limits.Fragments: the set of
	// received Fragment Numbers is a fixed bitmap, so that looking a
	// fragment up allocates nothing.
	maxFragmentsCeiling = 256
)

func (l Limits) withDefaults() Limits {
	if l.Fragments <= 0 {
		l.Fragments = MaxFragments
	}
	l.Fragments = min(l.Fragments, maxFragmentsCeiling)
	if l.Bytes <= 0 {
		l.Bytes = DefaultBytes
	}
	if l.Messages <= 0 {
		l.Messages = DefaultMessages
	}
	if l.TotalMessages <= 0 {
		l.TotalMessages = DefaultTotalMessages
	}
	if l.TotalBytes <= 0 {
		l.TotalBytes = DefaultTotalBytes
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	return l
}

// Budget is what the Reassemblers of one engine share: the limits, the
// totals held across IKE SAs, and the scratch buffer fragments are
// verified into. Like the engine that owns it, it is not safe for
// concurrent use.
type Budget struct {
	lim             Limits
	messages, bytes int
	scratch         []byte
}

// NewBudget returns a Budget with l's limits, defaults filled in.
func NewBudget(l Limits) *Budget {
	return &Budget{lim: l.withDefaults(), scratch: make([]byte, 0, 2048)}
}

// Limits returns the limits in force, defaults filled in.
func (b *Budget) Limits() Limits { return b.lim }

// InUse reports the half-built messages and their decrypted bytes held
// across all Reassemblers of b.
func (b *Budget) InUse() (messages, bytes int) { return b.messages, b.bytes }

// OpenFunc verifies the integrity of the IKE Fragment message msg (from
// the IKE header, without the non-ESP marker) whose SKF payload starts at
// skfOffset, and returns the decrypted chunk, written into dst's storage
// when it is large enough. An integrity failure is ikecrypto.ErrIntegrity.
// The receiving IKE SA's (*ikecrypto.SKCipher).UnprotectFragmentTo is one.
type OpenFunc func(dst, msg []byte, skfOffset int) ([]byte, error)

// Reassembler collects the IKE Fragment messages one IKE SA receives
// (RFC 7383 §2.6) and returns each original message once all its
// fragments are in.
//
// It is handed the opening function rather than verified plaintext so
// that it can follow §2.6's order: the checks that cost nothing (numbering,
// a smaller Total Fragments, a duplicate) come before the ICV, and only
// an authentic fragment may change what is stored, discard a set for a
// restarted one (§2.5.2), or count against a limit. A dropped fragment
// allocates nothing: it is decrypted into the Budget's scratch buffer and
// copied only when kept.
//
// The caller hands over only fragments of messages it still wants: a
// request in its window that it has not answered, or the response to a
// request it has outstanding. A retransmitted fragment of a request it
// already answered is the caller's to handle (§2.6.1: fragment 1 triggers
// the cached response, the others are ignored) and must not come here,
// or a new set would start.
type Reassembler struct {
	b    *Budget
	open OpenFunc
	sets []*set
}

// set is one message under reassembly.
type set struct {
	id       uint32
	response bool
	exchange wire.ExchangeType
	total    uint16
	first    wire.PayloadType // from fragment 1, once it is in
	hdr      wire.Header      // of the first fragment stored
	have     [maxFragmentsCeiling / 64]uint64
	chunks   []chunk
	bytes    int
	largest  int
	started  time.Time
}

type chunk struct {
	number uint16
	data   []byte
}

func (s *set) has(n uint16) bool { return s.have[(n-1)/64]&(1<<((n-1)%64)) != 0 }
func (s *set) mark(n uint16)     { s.have[(n-1)/64] |= 1 << ((n - 1) % 64) }

// NewReassembler returns the Reassembler of one IKE SA, drawing on b and
// verifying fragments with open (the SA's inbound SK cipher).
func NewReassembler(b *Budget, open OpenFunc) *Reassembler {
	return &Reassembler{b: b, open: open}
}

// Message is a reassembled message.
type Message struct {
	// Header is the IKE header of the first fragment stored (RFC 7383
	// §2.5 copies it intact into every fragment but for Next Payload and
	// Length).
	Header wire.Header
	// First is the type of the first inner payload, from fragment 1, and
	// Plain the merged content of the Encrypted payload: what
	// wire.ParsePayloads decodes. Plain is the caller's.
	First wire.PayloadType
	Plain []byte
	// Fragments is Total Fragments; Largest the size of the largest
	// fragment message (from the IKE header), which a responder may take
	// as its own fragment size (§2.5.1).
	Fragments int
	Largest   int
}

// Result says what Add did with a fragment.
type Result uint8

const (
	// Stored: the fragment is kept; the message is not complete yet.
	Stored Result = iota
	// Complete: this fragment completed the message Add returns.
	Complete
	// DropMalformed: no valid SKF framing, or a Next Payload in a fragment
	// other than 1 (§2.5), or an authentic fragment whose exchange type
	// differs from the rest of its set.
	DropMalformed
	// DropNumber: Fragment Number or Total Fragments zero, or the number
	// above the total (§2.6).
	DropNumber
	// DropTooMany: Total Fragments above Limits.Fragments.
	DropTooMany
	// DropStale: Total Fragments below that of the set under way: a
	// fragment from before the sender restarted with a smaller size
	// (§2.5.2, §2.6).
	DropStale
	// DropDuplicate: the same Message ID, Fragment Number and Total
	// Fragments are already stored (§2.6).
	DropDuplicate
	// DropIntegrity: the ICV or AEAD tag does not verify (§2.6).
	DropIntegrity
	// DropTooLarge: the message would exceed Limits.Bytes; its set is
	// discarded. §5: the caller SHOULD treat the peer as broken or
	// hostile and drop the IKE SA.
	DropTooLarge
	// DropSALimit: Limits.Messages messages are already half built for
	// this IKE SA.
	DropSALimit
	// DropBudget: Limits.TotalMessages or TotalBytes are in use across
	// all IKE SAs. The peer retransmits; the fragment is not lost for
	// good.
	DropBudget
)

var resultNames = [...]string{"stored", "complete", "malformed", "bad fragment number", "too many fragments",
	"stale total", "duplicate", "integrity", "message too large", "too many messages for the IKE SA", "reassembly budget exhausted"}

func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// skfHeaderLen is the SKF payload's generic header plus Fragment Number
// and Total Fragments (RFC 7383 §2.5).
const skfHeaderLen = 8

// Add takes one IKE Fragment message received at now: msg from the IKE
// header on (without the non-ESP marker), whose SKF payload starts at
// skfOffset (as wire.ScanPayloads finds it). On Complete it returns the
// original message.
func (r *Reassembler) Add(now time.Time, msg []byte, skfOffset int) (Message, Result) {
	r.Expire(now)
	lim := &r.b.lim
	if skfOffset < wire.HeaderLen || skfOffset > len(msg)-skfHeaderLen {
		return Message{}, DropMalformed
	}
	h, hc := wire.DecodeHeader(msg)
	if hc != wire.HeaderOK {
		return Message{}, DropMalformed
	}
	next := wire.PayloadType(msg[skfOffset])
	num := binary.BigEndian.Uint16(msg[skfOffset+4:])
	total := binary.BigEndian.Uint16(msg[skfOffset+6:])
	switch {
	case num == 0 || total == 0 || num > total:
		return Message{}, DropNumber
	case int(total) > lim.Fragments:
		return Message{}, DropTooMany
	case num != 1 && next != wire.PayloadNone:
		return Message{}, DropMalformed
	}
	s := r.find(h.MessageID, h.IsResponse())
	if s != nil {
		if total < s.total {
			return Message{}, DropStale
		}
		if total == s.total && s.has(num) {
			return Message{}, DropDuplicate
		}
	} else if total > 1 {
		// A new set: no room for it, whether authentic or not, so no
		// need to check.
		switch {
		case len(r.sets) >= lim.Messages:
			return Message{}, DropSALimit
		case r.b.messages >= lim.TotalMessages:
			return Message{}, DropBudget
		}
	}

	if cap(r.b.scratch) < len(msg) {
		r.b.scratch = make([]byte, 0, len(msg))
	}
	plain, err := r.open(r.b.scratch, msg, skfOffset)
	switch {
	case err == ikecrypto.ErrIntegrity:
		return Message{}, DropIntegrity
	case err != nil:
		return Message{}, DropMalformed
	}

	// Authentic from here on.
	if s != nil && total > s.total {
		// The sender restarted with smaller fragments (§2.5.2): start
		// over with this one (§2.6).
		r.discard(s)
		s = nil
	}
	if s != nil && h.Exchange != s.exchange {
		return Message{}, DropMalformed
	}
	have := 0
	if s != nil {
		have = s.bytes
	}
	if have+len(plain) > lim.Bytes {
		if s != nil {
			r.discard(s)
		}
		return Message{}, DropTooLarge
	}
	if total == 1 {
		// Nothing to wait for: the message is this fragment.
		return Message{Header: h, First: next, Plain: bytes.Clone(plain), Fragments: 1, Largest: len(msg)}, Complete
	}
	if r.b.bytes+len(plain) > lim.TotalBytes {
		return Message{}, DropBudget
	}
	if s == nil {
		s = &set{id: h.MessageID, response: h.IsResponse(), exchange: h.Exchange, total: total, hdr: h,
			started: now, chunks: make([]chunk, 0, total)}
		r.sets = append(r.sets, s)
		r.b.messages++
	}
	s.mark(num)
	s.chunks = append(s.chunks, chunk{number: num, data: bytes.Clone(plain)})
	s.bytes += len(plain)
	r.b.bytes += len(plain)
	s.largest = max(s.largest, len(msg))
	if num == 1 {
		s.first = next
	}
	if len(s.chunks) < int(s.total) {
		return Message{}, Stored
	}
	return r.assemble(s), Complete
}

// assemble merges a complete set in Fragment Number order and releases it.
func (r *Reassembler) assemble(s *set) Message {
	slices.SortFunc(s.chunks, func(a, b chunk) int { return int(a.number) - int(b.number) })
	plain := make([]byte, 0, s.bytes)
	for _, c := range s.chunks {
		plain = append(plain, c.data...)
	}
	m := Message{Header: s.hdr, First: s.first, Plain: plain, Fragments: int(s.total), Largest: s.largest}
	r.discard(s)
	return m
}

func (r *Reassembler) find(id uint32, response bool) *set {
	for _, s := range r.sets {
		if s.id == id && s.response == response {
			return s
		}
	}
	return nil
}

// discard drops a set and gives its share of the budget back.
func (r *Reassembler) discard(s *set) {
	i := slices.Index(r.sets, s)
	if i < 0 {
		return
	}
	r.sets = slices.Delete(r.sets, i, i+1)
	r.b.messages--
	r.b.bytes -= s.bytes
}

// Expire discards the sets whose Timeout has passed at now (RFC 7383
// §2.6: all fragments received so far for the exchange), and returns how
// many. Add calls it; the caller also calls it from a timer at Deadline so
// that a set nobody completes does not wait for the next fragment.
func (r *Reassembler) Expire(now time.Time) int {
	n := 0
	for i := 0; i < len(r.sets); {
		if s := r.sets[i]; !now.Before(s.started.Add(r.b.lim.Timeout)) {
			r.discard(s)
			n++
			continue
		}
		i++
	}
	return n
}

// Deadline is when the oldest set expires; ok is false when none is under
// way.
func (r *Reassembler) Deadline() (t time.Time, ok bool) {
	for _, s := range r.sets {
		if d := s.started.Add(r.b.lim.Timeout); !ok || d.Before(t) {
			t, ok = d, true
		}
	}
	return t, ok
}

// Discard drops the set of one message, if any: for the caller who no
// longer wants it (the request it answers was given up, the peer's request
// was answered another way).
func (r *Reassembler) Discard(messageID uint32, response bool) {
	if s := r.find(messageID, response); s != nil {
		r.discard(s)
	}
}

// Pending is the number of messages under reassembly.
func (r *Reassembler) Pending() int { return len(r.sets) }

// Close discards everything, giving the budget back: the IKE SA is gone
// (deleted, or replaced by a rekey whose keys its fragments do not use).
func (r *Reassembler) Close() {
	for len(r.sets) > 0 {
		r.discard(r.sets[len(r.sets)-1])
	}
}
