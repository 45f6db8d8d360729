package eap

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// tlsEngine runs crypto/tls, which wants a net.Conn, inside a sans-I/O
// state machine. The TLS side runs in its own goroutine over memConn; the
// goroutine and the caller take turns, like coroutines:
//
//   - start launches the goroutine and waits;
//   - the goroutine runs until crypto/tls reads from memConn with no
//     input left. Read then reports "want input" to the caller and blocks;
//   - step hands the goroutine the next TLS message and waits again, and
//     so on, until the goroutine's work (handshake, key export, the RFC
//     9190 success indication) returns and it reports "finished".
//
// What crypto/tls wrote meanwhile is collected and returned by start and
// step. Because exactly one side runs at a time, the injected Rand and
// Now are never used concurrently, and a Peer stays single-threaded to its
// caller.
//
// Lifecycle: the goroutine ends when its work returns, or when close is
// called (Read and the event hand-off then return at once), and close
// waits for it. After finished or close no goroutine is left.
type tlsEngine struct {
	conn    *memConn
	events  chan tlsEvent
	input   chan []byte
	quit    chan struct{}
	exited  chan struct{}
	started bool
	ended   bool // finished was reported or close ran
	once    sync.Once
}

type tlsEvent struct {
	finished bool
	err      error
}

// errEngineClosed is what crypto/tls reads once the engine is closed.
var errEngineClosed = errors.New("eap: TLS engine closed")

func newTLSEngine() *tlsEngine {
	e := &tlsEngine{
		events: make(chan tlsEvent),
		input:  make(chan []byte),
		quit:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	e.conn = &memConn{e: e}
	return e
}

// start runs work (given the engine's connection) in the goroutine until
// it first wants input or finishes.
func (e *tlsEngine) start(work func(net.Conn) error) ([]byte, bool, error) {
	e.started = true
	go func() {
		defer close(e.exited)
		err := work(e.conn)
		select {
		case e.events <- tlsEvent{finished: true, err: err}:
		case <-e.quit:
		}
	}()
	return e.wait()
}

// step gives the goroutine one complete incoming TLS message.
func (e *tlsEngine) step(in []byte) ([]byte, bool, error) {
	if !e.started || e.ended {
		return nil, false, errEngineClosed
	}
	select {
	case e.input <- in:
	case <-e.exited:
		return nil, false, errEngineClosed
	}
	return e.wait()
}

func (e *tlsEngine) wait() ([]byte, bool, error) {
	ev := <-e.events
	out := e.conn.takeOutput()
	if ev.finished {
		e.ended = true
		<-e.exited
	}
	return out, ev.finished, ev.err
}

// close ends the goroutine, if running, and waits for it.
func (e *tlsEngine) close() {
	e.once.Do(func() {
		close(e.quit)
		e.ended = true
		if e.started {
			<-e.exited
		}
	})
}

// memConn is the net.Conn crypto/tls reads and writes. Writes are buffered
// for the EAP side; reads are served from the message step delivered.
type memConn struct {
	e       *tlsEngine
	mu      sync.Mutex
	pending []byte // input not yet read
	out     []byte // output not yet taken
}

func (c *memConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for len(c.pending) == 0 {
		// Tell the caller we are waiting, then wait.
		select {
		case c.e.events <- tlsEvent{}:
		case <-c.e.quit:
			return 0, errEngineClosed
		}
		select {
		case in := <-c.e.input:
			c.pending = in
		case <-c.e.quit:
			return 0, errEngineClosed
		}
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.out)+len(b) > maxTLSMessage {
		return 0, errors.New("eap: TLS output exceeds the reassembly limit")
	}
	c.out = append(c.out, b...)
	return len(b), nil
}

func (c *memConn) takeOutput() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.out
	c.out = nil
	return out
}

func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return eapAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return eapAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

type eapAddr struct{}

func (eapAddr) Network() string { return "eap" }
func (eapAddr) String() string  { return "eap" }

// tlsMSK derives the EAP-TLS MSK from a finished handshake.
//
// TLS 1.2 (RFC 5216 §2.3): Key_Material = TLS-PRF-128(master_secret,
// "client EAP encryption", client.random | server.random), MSK its first
// 64 octets. That is RFC 5705's exporter without a context, which
// crypto/tls computes for a nil context. crypto/tls refuses to export
// from a TLS 1.2 session without the extended master secret (RFC 7627);
// FreeRADIUS with OpenSSL 1.1 or later negotiates it, and a server that
// does not fails the method here rather than yield a weaker key. Among
// those is strongSwan's own eap-tls server: its libtls (5.9.8, and master
// as of this writing) names the extension but does not implement it, so
// this peer does EAP-TLS 1.2 with a strongSwan gateway only when the
// gateway relays EAP to FreeRADIUS (eap-radius).
//
// TLS 1.3 (RFC 9190 §2.3): Key_Material = TLS-Exporter(
// "EXPORTER_EAP_TLS_Key_Material", Type-Code 0x0D, 128), MSK its first 64
// octets. FreeRADIUS 3.2.1 computes exactly this (eaptls_success in
// libeap/eap_tls.c, through SSL_export_keying_material with the one-octet
// type context). strongSwan 5.9.8 does not: until 5.9.10 (commit
// 06abdf1d "tls-crypto: Fix MSK calculation for TLS 1.3") it used the label
// "client EAP encryption" with an empty context, and it sends no protected
// success indication before 5.9.10 (commit 5401a74d). Hence the default
// maximum version of TLS 1.2, where all three agree.
//
// strongSwan's eap-radius builds the MSK of a RADIUS-backed EAP-TLS as
// MS-MPPE-Recv-Key | MS-MPPE-Send-Key, which FreeRADIUS fills with octets
// 0-31 and 32-63 of the Key_Material: the same 64 octets.
func tlsMSK(cs tls.ConnectionState) ([]byte, error) {
	label, context := "client EAP encryption", []byte(nil)
	if cs.Version == tls.VersionTLS13 {
		label, context = "EXPORTER_EAP_TLS_Key_Material", []byte{byte(TypeTLS)}
	}
	km, err := cs.ExportKeyingMaterial(label, context, 128)
	if err != nil {
		return nil, err
	}
	msk := make([]byte, 64)
	copy(msk, km)
	clear(km)
	return msk, nil
}
