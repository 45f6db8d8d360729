package eap

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
)

// EAP-TLS framing (RFC 5216 §3.1): the Type-Data is a Flags octet, a
// four-octet TLS Message Length when L is set, and TLS records. A message
// longer than a fragment is split; each fragment but the last has M set,
// the first carries L and the total length, and the receiver acknowledges
// every fragment with an EAP-TLS packet carrying no data (§2.1.5).
const (
	tlsFlagLength = 0x80 // L
	tlsFlagMore   = 0x40 // M
	tlsFlagStart  = 0x20 // S

	// DefaultFragmentSize is the TLS data per EAP-TLS packet: a packet
	// of 1,010 octets fits an IKE message within a 1,280-octet IPv6 MTU
	// without IKE fragmentation in most cases.
	DefaultFragmentSize = 1000
	minFragmentSize     = 64
	maxFragmentSize     = 16384

	// maxTLSMessage caps reassembly. A TLS flight with a certificate
	// chain is a few kilobytes; 64 KiB is generous and bounds memory.
	maxTLSMessage = 64 << 10
)

type tlsPacket struct {
	flags     byte
	hasLength bool
	length    uint32
	data      []byte
}

func parseTLSData(b []byte) (tlsPacket, error) {
	if len(b) < 1 {
		return tlsPacket{}, malformed("EAP-TLS without Flags")
	}
	p := tlsPacket{flags: b[0], data: b[1:]}
	if p.flags&tlsFlagLength != 0 {
		if len(p.data) < 4 {
			return tlsPacket{}, malformed("EAP-TLS L flag without TLS Message Length")
		}
		p.hasLength = true
		p.length = binary.BigEndian.Uint32(p.data)
		p.data = p.data[4:]
	}
	return p, nil
}

// isAck: a fragment acknowledgement has no flags and no data (RFC 5216
// §2.1.5). The Start flag is not an ACK.
func (p tlsPacket) isAck() bool { return p.flags == 0 && len(p.data) == 0 }

// tlsAck is the Type-Data of an acknowledgement.
var tlsAck = []byte{0}

// tlsTransport fragments outgoing and reassembles incoming TLS messages.
type tlsTransport struct {
	fragSize int

	out []byte
	off int

	in      []byte
	inTotal int // from L, or -1
	inOpen  bool
}

func (t *tlsTransport) setOut(b []byte) { t.out, t.off = b, 0 }

func (t *tlsTransport) sending() bool { return t.off < len(t.out) }

// nextFragment is the Type-Data of the next outgoing fragment.
func (t *tlsTransport) nextFragment() []byte {
	rest := t.out[t.off:]
	n := min(len(rest), t.fragSize)
	var flags byte
	first := t.off == 0
	fragmented := len(t.out) > t.fragSize
	if n < len(rest) {
		flags |= tlsFlagMore
	}
	b := make([]byte, 0, 5+n)
	if first && fragmented {
		flags |= tlsFlagLength
		b = append(b, flags)
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.out)))
	} else {
		b = append(b, flags)
	}
	b = append(b, rest[:n]...)
	t.off += n
	if !t.sending() {
		t.out, t.off = nil, 0
	}
	return b
}

// receive adds one incoming fragment and returns the whole message once
// the last fragment (M clear) is in.
func (t *tlsTransport) receive(p tlsPacket) ([]byte, bool, error) {
	if len(p.data) == 0 {
		return nil, false, protocolErr("EAP-TLS packet without TLS data where data was due")
	}
	if !t.inOpen {
		t.inOpen, t.in, t.inTotal = true, nil, -1
		if p.hasLength {
			if p.length > maxTLSMessage || p.length == 0 {
				return nil, false, malformed("EAP-TLS message length %d (limit %d)", p.length, maxTLSMessage)
			}
			t.inTotal = int(p.length)
		}
	} else if p.hasLength && t.inTotal >= 0 && int(p.length) != t.inTotal {
		return nil, false, malformed("EAP-TLS message length changed from %d to %d", t.inTotal, p.length)
	}
	if len(t.in)+len(p.data) > maxTLSMessage || (t.inTotal >= 0 && len(t.in)+len(p.data) > t.inTotal) {
		return nil, false, malformed("EAP-TLS fragments exceed the announced or allowed length")
	}
	t.in = append(t.in, p.data...)
	if p.flags&tlsFlagMore != 0 {
		return nil, false, nil
	}
	msg := t.in
	t.in, t.inOpen = nil, false
	if t.inTotal >= 0 && len(msg) != t.inTotal {
		return nil, false, malformed("EAP-TLS message of %d octets, announced %d", len(msg), t.inTotal)
	}
	return msg, true, nil
}

// tlsPeer is the peer's side of EAP-TLS (RFC 5216 §2.1; RFC 9190 with
// TLS 1.3).
type tlsPeer struct {
	cfg      *tls.Config
	tr       tlsTransport
	engine   *tlsEngine
	started  bool
	finished bool // handshake done, MSK derived
	// Written by the TLS goroutine before it reports finished.
	key   []byte
	state tls.ConnectionState
}

func newTLSPeer(pc *PeerConfig) *tlsPeer {
	cert := pc.Certificate
	m := &tlsPeer{tr: tlsTransport{fragSize: pc.FragmentSize}, engine: newTLSEngine()}
	m.cfg = &tls.Config{
		Rand:       pc.Rand,
		Time:       pc.Now,
		RootCAs:    pc.RootCAs,
		ServerName: pc.ServerName,
		MinVersion: tls.VersionTLS12,
		MaxVersion: pc.TLSMaxVersion,
		// Present the certificate whatever the CertificateRequest
		// names: the server decides, and says so with an alert.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert != nil {
				return cert, nil
			}
			return &tls.Certificate{}, nil
		},
		// EAP-TLS session resumption is not implemented.
		SessionTicketsDisabled: true,
		KeyLogWriter:           pc.keyLog,
	}
	return m
}

// work runs in the engine's goroutine.
func (m *tlsPeer) work(c net.Conn) error {
	tc := tls.Client(c, m.cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	cs := tc.ConnectionState()
	m.state = cs
	if cs.Version == tls.VersionTLS13 {
		// RFC 9190 §2.5: with TLS 1.3 the handshake can end before
		// the server has authenticated the peer, so the server
		// commits with one octet 0x00 of application data; only then
		// may the peer accept EAP-Success. Reading it also consumes
		// any NewSessionTicket sent before it.
		var b [2]byte
		n, err := tc.Read(b[:])
		if err != nil {
			return fmt.Errorf("no protected success indication: %w", err)
		}
		if n != 1 || b[0] != 0 {
			return fmt.Errorf("protected success indication of %d octets (%#x), want one 0x00", n, b[0])
		}
	}
	key, err := tlsMSK(cs)
	if err != nil {
		return err
	}
	m.key = key
	return nil
}

func (m *tlsPeer) handle(req *Packet) ([]byte, bool, error) {
	p, err := parseTLSData(req.Data)
	if err != nil {
		return nil, false, err
	}
	if !m.started {
		// RFC 5216 §2.1.1: the server begins with EAP-TLS/Start, which
		// carries no data.
		if p.flags&tlsFlagStart == 0 || len(p.data) != 0 {
			return nil, false, protocolErr("EAP-TLS did not begin with a Start")
		}
		m.started = true
		out, fin, err := m.engine.start(m.work)
		return m.after(out, fin, err)
	}
	if p.flags&tlsFlagStart != 0 {
		return nil, false, protocolErr("EAP-TLS Start after the start")
	}
	if m.tr.sending() {
		if !p.isAck() {
			return nil, false, protocolErr("EAP-TLS data while our fragments are unacknowledged")
		}
		return m.tr.nextFragment(), m.finished && !m.tr.sending(), nil
	}
	msg, complete, err := m.tr.receive(p)
	if err != nil {
		return nil, false, err
	}
	if !complete {
		return tlsAck, false, nil
	}
	if m.finished {
		return nil, false, protocolErr("EAP-TLS data after the handshake finished")
	}
	out, fin, err := m.engine.step(msg)
	return m.after(out, fin, err)
}

// after turns what the TLS side did into the next Response.
func (m *tlsPeer) after(out []byte, finished bool, err error) ([]byte, bool, error) {
	if err != nil {
		m.engine.close()
		err = fmt.Errorf("eap: EAP-TLS: %w", err)
		if len(out) > 0 {
			// A TLS alert: send it (RFC 5216 §2.1.3), then stop.
			m.tr.setOut(out)
			return m.tr.nextFragment(), false, err
		}
		return nil, false, err
	}
	m.finished = finished
	if len(out) > 0 {
		m.tr.setOut(out)
		return m.tr.nextFragment(), m.finished && !m.tr.sending(), nil
	}
	// Nothing to send: acknowledge, which also asks the server for more
	// when the handshake is not finished. After the server's last
	// flight this is the empty Response of RFC 5216 §2.1.1 that the
	// server answers with EAP-Success.
	return tlsAck, m.finished, nil
}

func (m *tlsPeer) msk() []byte {
	if !m.finished {
		return nil
	}
	return m.key
}

func (m *tlsPeer) close() { m.engine.close() }
