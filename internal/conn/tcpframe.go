package conn

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/mifike/mifike/internal/wire"
)

// TCPPrefix is the stream prefix the TCP Originator sends once, before
// its first message (RFC 9329 §4); the TCP Responder never sends it.
const TCPPrefix = "IKETCP"

const (
	// tcpLenLen is the Length field before every message on a stream,
	// which counts itself (RFC 9329 §3).
	tcpLenLen = 2
	// MaxTCPFrame is the longest frame the 16-bit Length field can say,
	// the field included (RFC 9329 §3): 65533 octets of message.
	MaxTCPFrame = 0xffff
	// tcpReadBuf is a stream reader's fixed buffer: one whole frame of
	// the largest message delivered (MaxDatagram, as on UDP; RFC 9329 §3
	// says message lengths SHOULD match UDP's) plus room to read ahead.
	// Nothing a peer sends grows it; a longer frame is skipped and
	// reported as Truncated.
	tcpReadBuf = 16 << 10
)

var (
	// ErrTCPPrefix: an accepted stream did not begin with "IKETCP"
	// (RFC 9329 §4, §6.1); the stream is closed.
	ErrTCPPrefix = errors.New("stream does not begin with the IKETCP prefix (RFC 9329 §4)")
	// ErrTCPLength: a Length field of 0 or 1, a fatal error that closes
	// the stream (RFC 9329 §3.1, §3.2).
	ErrTCPLength = errors.New("frame length 0 or 1 (RFC 9329 §3.1)")
	// ErrTCPTooLong: the message does not fit a frame (RFC 9329 §3).
	ErrTCPTooLong = errors.New("message too long for a TCP frame (RFC 9329 §3)")
	// ErrZeroSPI: an ESP packet shorter than its SPI, or with SPI zero,
	// which would read as the non-ESP marker (RFC 9329 §3.2).
	ErrZeroSPI = errors.New("ESP packet without a non-zero SPI (RFC 9329 §3.2)")
)

// AppendTCPIKE appends the frame that carries the IKE message msg on a
// stream: the Length, the non-ESP marker, the message (RFC 9329 §3.1).
func AppendTCPIKE(dst, msg []byte) ([]byte, error) {
	l := tcpLenLen + wire.NonESPMarkerLen + len(msg)
	if l > MaxTCPFrame {
		return dst, ErrTCPTooLong
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(l))
	return AppendIKE(dst, msg, true), nil
}

// AppendTCPESP appends the frame that carries the ESP packet pkt: the
// Length, the packet from its SPI on (RFC 9329 §3.2).
func AppendTCPESP(dst, pkt []byte) ([]byte, error) {
	if len(pkt) < 4 || pkt[0]|pkt[1]|pkt[2]|pkt[3] == 0 {
		return dst, ErrZeroSPI
	}
	l := tcpLenLen + len(pkt)
	if l > MaxTCPFrame {
		return dst, ErrTCPTooLong
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(l))
	return append(dst, pkt...), nil
}

// FrameReader takes the frames of one stream apart (RFC 9329 §3) from a
// fixed buffer: a frame split across many reads is kept until it is
// whole, several in one read come out one by one, and nothing a peer
// sends makes it allocate.
type FrameReader struct {
	r          io.Reader
	buf        []byte // buffered octets are buf[start:end]
	start, end int
	prefix     int // octets of the stream prefix still to check
	skip       int // octets of a too-long frame still to discard
}

// NewFrameReader reads frames from r; prefix says r is an accepted
// stream, which must begin with TCPPrefix (RFC 9329 §4, §6.1: the
// responder waits for the whole prefix before it parses anything).
func NewFrameReader(r io.Reader, prefix bool) *FrameReader {
	f := &FrameReader{r: r, buf: make([]byte, tcpReadBuf)}
	if prefix {
		f.prefix = len(TCPPrefix)
	}
	return f
}

// Next returns the next message: its Kind, as Demux sorts it (RFC 9329
// §3 sorts by the same non-ESP marker), and its octets, valid until the
// next call: for IKE the message after the marker, for ESP the packet
// from its SPI on. A message longer than MaxDatagram is skipped and
// returned as Truncated without octets; an empty one (Length 2) is
// ignored (RFC 9329 §3). A bad prefix or a Length of 0 or 1 is an error
// after which the stream must be closed; so is a read error, and the
// end of the stream inside a frame is io.ErrUnexpectedEOF (the partial
// message is discarded, RFC 9329 §6.1). The end of the stream between
// frames is io.EOF.
func (f *FrameReader) Next() (Kind, []byte, error) {
	for {
		k, b, ok, err := f.parse()
		if ok || err != nil {
			return k, b, err
		}
		if err := f.fill(); err != nil {
			return 0, nil, err
		}
	}
}

// parse takes what it can from the buffered octets; ok when it returns
// a message.
func (f *FrameReader) parse() (k Kind, b []byte, ok bool, err error) {
	if f.prefix > 0 {
		n := min(f.end-f.start, f.prefix)
		at := len(TCPPrefix) - f.prefix
		if string(f.buf[f.start:f.start+n]) != TCPPrefix[at:at+n] {
			return 0, nil, false, ErrTCPPrefix
		}
		f.prefix -= n
		f.start += n
		if f.prefix > 0 {
			return 0, nil, false, nil
		}
	}
	if f.skip > 0 {
		n := min(f.end-f.start, f.skip)
		f.skip -= n
		f.start += n
		if f.skip > 0 {
			return 0, nil, false, nil
		}
	}
	for f.end-f.start >= tcpLenLen {
		l := int(binary.BigEndian.Uint16(f.buf[f.start:]))
		switch {
		case l < tcpLenLen:
			return 0, nil, false, ErrTCPLength // RFC 9329 §3.1, §3.2
		case l == tcpLenLen:
			f.start += tcpLenLen // empty: silently ignored (RFC 9329 §3)
			continue
		case l-tcpLenLen > MaxDatagram:
			f.start += tcpLenLen
			f.skip = l - tcpLenLen
			return Truncated, nil, true, nil
		case f.end-f.start < l:
			return 0, nil, false, nil
		}
		msg := f.buf[f.start+tcpLenLen : f.start+l]
		f.start += l
		k, ike := Demux(msg)
		switch k {
		case IKE:
			return IKE, ike, true, nil
		case ESP:
			return ESP, msg, true, nil
		}
		return k, msg, true, nil // a keepalive (RFC 9329 §6.6), or no marker
	}
	return 0, nil, false, nil
}

// fill reads more: after the buffered octets, moved to the front when
// the buffer's end is reached (a frame the reader delivers always fits:
// tcpReadBuf > tcpLenLen+MaxDatagram).
func (f *FrameReader) fill() error {
	if f.start == f.end {
		f.start, f.end = 0, 0
	} else if f.end == len(f.buf) {
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
	for range 100 {
		n, err := f.r.Read(f.buf[f.end:])
		f.end += n
		switch {
		case n > 0:
			return nil
		case err == io.EOF && f.Partial():
			return io.ErrUnexpectedEOF
		case err != nil:
			return err
		}
	}
	return io.ErrNoProgress
}

// Partial says a frame (or the prefix) has begun and not ended.
func (f *FrameReader) Partial() bool {
	return f.end > f.start || f.skip > 0 || f.prefix > 0 && f.prefix < len(TCPPrefix)
}
