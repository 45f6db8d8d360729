package ike

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/ikefrag"
	"github.com/mifike/mifike/internal/wire"
)

// message is a received, authenticated (or IKE_SA_INIT) message.
type message struct {
	wire.Header
	payloads []wire.Payload
	raw      []byte // from the IKE header on, as Datagram.Data
	d        Datagram
	// staleUpdate, staleList: an older MOBIKE update or address list
	// than one already taken (RFC 4555 §3.5, §3.6).
	staleUpdate, staleList bool
}

func (m *message) notify(t wire.NotifyType) *wire.Notify {
	for _, p := range m.payloads {
		if n, ok := p.(*wire.Notify); ok && n.NotifyType == t {
			return n
		}
	}
	return nil
}

func (m *message) String() string {
	return (&wire.Message{Header: m.Header, Payloads: m.payloads}).String()
}

// errorNotify returns the first notify of an error type (RFC 7296 §3.10.1).
func (m *message) errorNotify() *wire.Notify {
	for _, p := range m.payloads {
		if n, ok := p.(*wire.Notify); ok && n.NotifyType.IsError() {
			return n
		}
	}
	return nil
}

// receive demultiplexes one datagram to its IKE SA (by SPI only, never by
// address: RFC 7296 §2.6) and checks message IDs and integrity. Everything
// that decides a drop comes first and works on the driver's buffer in
// place: the header and framing (inspect), the SA, the window, then the
// integrity check into the engine's scratch buffer. Only a message that
// passes is copied and decoded, so a dropped datagram allocates nothing,
// and what the engine keeps never aliases the driver's buffer, which the
// driver reuses.
func (e *Engine) receive(d Datagram) {
	in, r := inspect(d.Data)
	if badSource(d.Remote) {
		r = DropBadSource // before anything is answered (a version error)
	}
	if r != DropNone {
		if r == DropVersion && in.answersVersion() {
			e.answerVersion(d, &in.h)
		}
		w := dropped{from: d.Remote}
		if r != DropShort {
			w.h = &in.h
		}
		e.drop(r, w)
		return
	}
	h := &in.h
	if h.Exchange == wire.IKESAInit {
		if h.IsResponse() {
			e.receiveInitResponse(d, &in)
		} else {
			e.receiveInitRequest(d, &in)
		}
		return
	}
	// The I flag says whose SPI comes first: a message from the original
	// initiator is addressed to the responder's SPI.
	ourSPI, theirSPI := h.SPIi, h.SPIr
	if h.FromInitiator() {
		ourSPI, theirSPI = h.SPIr, h.SPIi
	}
	sa := e.sas[ourSPI]
	if sa == nil {
		// A half-open SA becomes a full one on its first authentic
		// IKE_AUTH request (halfopen.go).
		var gone bool
		if sa, gone = e.completeHalfOpen(ourSPI, d, &in); gone {
			return
		}
	}
	if sa == nil || sa.state == stateDead {
		e.drop(DropUnknownSPI, dropped{from: d.Remote, h: h})
		return
	}
	if sa.initiator == h.FromInitiator() || sa.remoteSPI() != theirSPI {
		e.drop(DropSPIMismatch, dropped{sa: sa, from: d.Remote, h: h})
		return
	}
	if h.IsResponse() {
		sa.receiveResponse(d, &in)
	} else {
		sa.receiveRequest(d, &in)
	}
	if in.authentic {
		sa.idleCiphers()
	}
}

// idleCiphers lets an established SA with no request of ours in flight
// keep only its keys (ikecrypto.SKCipher.Idle): most of a gateway's SAs
// are silent for minutes, and the keyed ciphers were a fifth of an
// idle SA's memory. Only after an authentic message: forgeries with the
// SA's SPIs find the cipher keyed and cost no allocation.
func (sa *ikeSA) idleCiphers() {
	if sa.state != stateEstablished || sa.hs != nil || len(sa.outstanding) != 0 || sa.in == nil || sa.out == nil {
		return
	}
	sa.in.Idle()
	sa.out.Idle()
}

// receiveInitResponse hands an IKE_SA_INIT response to the half-made SA
// that waits for it.
func (e *Engine) receiveInitResponse(d Datagram, in *inspected) {
	sa := e.sas[in.h.SPIi]
	if sa == nil || !sa.initiator || sa.state != stateConnecting || len(sa.outstanding) != 1 || sa.outstanding[0].exchange != wire.IKESAInit {
		e.drop(DropNoRequest, dropped{from: d.Remote, h: &in.h})
		return
	}
	if m, _, ok := e.decode(d, in); ok {
		e.initResponse(sa, m)
	}
}

// receiveInitRequest decodes an IKE_SA_INIT request for the responder.
func (e *Engine) receiveInitRequest(d Datagram, in *inspected) {
	if m, crit, ok := e.decode(d, in); ok {
		e.initRequest(m, crit)
	}
}

// decode copies an IKE_SA_INIT message out of the driver's buffer and
// decodes it. An unsupported critical payload is returned with the
// message: a request gets the notify (§2.5).
func (e *Engine) decode(d Datagram, in *inspected) (*message, *wire.UnsupportedCriticalError, bool) {
	raw := bytes.Clone(in.ike)
	m, err := wire.ParseMessage(raw)
	var crit *wire.UnsupportedCriticalError
	if err != nil && !errors.As(err, &crit) {
		e.drop(DropMalformed, dropped{from: d.Remote, h: &in.h})
		return nil, nil, false
	}
	e.stats.Exchanges[m.Exchange]++
	d.Data = nil // the driver's
	return &message{Header: m.Header, payloads: m.Payloads, raw: raw, d: d}, crit, true
}

// open verifies and decrypts the SK payload into the engine's scratch
// buffer. Integrity failures are silent drops (§2.21: nothing is sent
// for a message we cannot authenticate), and cost no allocation.
func (sa *ikeSA) open(in *inspected) ([]byte, DropReason) {
	if sa.in == nil {
		return nil, DropNoKeys
	}
	e := sa.e
	if cap(e.scratch) < len(in.ike) {
		// Grows to the largest protected message seen, at most
		// wire.MaxMessageLen; the plaintext is never longer.
		e.scratch = make([]byte, 0, len(in.ike))
	}
	plain, err := sa.in.UnprotectTo(e.scratch, in.ike, in.sk)
	switch err {
	case nil:
		return plain, DropNone
	case ikecrypto.ErrIntegrity:
		return nil, DropIntegrity
	default:
		return nil, DropMalformed
	}
}

// openMessage verifies, decrypts and decodes a protected message, or
// with fragments (RFC 7383) adds one to its message and decodes the
// message once complete; ok false means dropped, or not complete yet.
func (sa *ikeSA) openMessage(d Datagram, in *inspected) (msg *message, ps []wire.Payload, err error, ok bool) {
	if in.skType == wire.PayloadSKF {
		return sa.reassemble(d, in)
	}
	plain, why := sa.open(in)
	if why != DropNone {
		sa.e.drop(why, dropped{sa: sa, from: d.Remote, h: &in.h})
		return nil, nil, nil, false
	}
	msg, ps, err = sa.accept(d, in, plain)
	return msg, ps, err, true
}

// accept makes the engine's own copy of an authentic message and decodes
// its inner payloads: the datagram is in the driver's buffer and the
// plaintext in the scratch buffer, both reused for the next datagram.
func (sa *ikeSA) accept(d Datagram, in *inspected, plain []byte) (*message, []wire.Payload, error) {
	raw := bytes.Clone(in.ike)
	in.authentic = true
	ps, err := wire.ParsePayloads(wire.PayloadType(in.ike[in.sk]), bytes.Clone(plain))
	sa.e.stats.Exchanges[in.h.Exchange]++
	d.Data = nil // the driver's
	return &message{Header: in.h, raw: raw, d: d}, ps, err
}

func (sa *ikeSA) receiveResponse(d Datagram, in *inspected) {
	e := sa.e
	h := &in.h
	p := sa.request(h.MessageID)
	if p == nil || p.exchange != h.Exchange {
		e.drop(DropNoRequest, dropped{sa: sa, from: d.Remote, h: h})
		return
	}
	msg, ps, err, ok := sa.openMessage(d, in)
	if !ok {
		return
	}
	var crit *wire.UnsupportedCriticalError
	if err != nil && !errors.As(err, &crit) {
		// A verified response we cannot parse: the peers disagree
		// about the SA; clean up (§2.21).
		e.log.Warn("malformed response", "ike", sa.id, "err", err)
		p.timer.cancel()
		sa.settle(p)
		e.destroy(sa, "malformed response: "+err.Error())
		return
	}
	msg.payloads = ps
	sa.measureRTT(p)
	sa.measureLoss(p)
	sa.heard()
	sa.followNAT(msg)
	sa.followStream(msg)
	p.timer.cancel()
	sa.settle(p)
	sa.readWindow(msg)
	sa.peerHeard()
	e.log.Debug("received "+msg.String(), "ike", sa.id)
	sa.countNotifies(ps, false)
	if n := msg.notify(wire.NotifyInvalidSyntax); n != nil {
		// Fatal on both peers (§2.21.3).
		if p.task != nil {
			p.task.abort(sa, "peer answered INVALID_SYNTAX")
		}
		e.destroy(sa, "peer answered INVALID_SYNTAX")
		return
	}
	if p.task != nil {
		p.task.process(sa, msg)
	}
	if !sa.childRequestInFlight() {
		// Early Deletes wait for the answers that may create their SAs;
		// with several requests out, not only for this one.
		sa.earlyDeletes = nil
	}
	sa.next()
}

func (sa *ikeSA) receiveRequest(d Datagram, in *inspected) {
	e := sa.e
	h := &in.h
	switch {
	case sa.state == stateConnecting && h.Exchange != wire.IKEAuth &&
		!(h.Exchange == wire.Informational && sa.hs != nil && sa.hs.auth != nil):
		// Until IKE_AUTH completes the peer is not authenticated: its
		// other requests wait (it retransmits), they are not answered.
		// Between the rounds of a multi-round IKE_AUTH (EAP) the
		// initiator may refuse us in an INFORMATIONAL (§2.21.2):
		// only the holder of this SA's keys can send it, and it ends
		// the half-open SA now instead of at its timeout.
		e.drop(DropNotAuthed, dropped{sa: sa, from: d.Remote, h: h})
		return
	case sa.hs != nil && sa.hs.auth != nil && sa.hs.auth.held != nil && sa.hs.auth.held.MessageID == h.MessageID:
		// The request an EAP backend is being asked about, again: its
		// answer makes the response (eap.go).
		e.drop(DropAwaitingBackend, dropped{sa: sa, from: d.Remote, h: h})
		return
	case h.MessageID == 0 && h.Exchange == wire.Informational && sa.ext.midSync && sa.state == stateEstablished &&
		(sa.cachedResponse(0) == nil || sa.cachedResponse(0).hash != requestHash(in.ike)):
		// Perhaps an RFC 6311 synchronisation (midsync.go).
		sa.receiveIDZero(d, in)
		return
	case sa.cachedResponse(h.MessageID) != nil:
		r := sa.cachedResponse(h.MessageID)
		if h.Exchange != r.exchange {
			e.drop(DropReusedID, dropped{sa: sa, from: d.Remote, h: h})
			return
		}
		// A retransmitted request: resend the cached response, but only
		// for the same (authentic) request, so forged copies cannot make
		// us amplify (§2.1). It goes where this copy came from (§2.11): a
		// MOBIKE initiator whose old path died retransmits from its new
		// address before its UPDATE_SA_ADDRESSES can pass.
		if in.skType == wire.PayloadSKF {
			// RFC 7383 §2.6.1: only an authentic fragment 1 brings the
			// response again; the other fragments are ignored.
			why := sa.openFragment(in)
			if why == DropNone && fragmentNumber(in) != 1 {
				why = DropFragmentRejected
			}
			if why != DropNone {
				e.drop(why, dropped{sa: sa, from: d.Remote, h: h})
				return
			}
		} else if requestHash(in.ike) != r.hash {
			if _, why := sa.open(in); why != DropNone {
				e.drop(why, dropped{sa: sa, from: d.Remote, h: h})
				return
			}
		}
		for _, pkt := range r.packets {
			sa.transmitTo(d.Local, d.Remote, d.TCP, pkt)
		}
		e.stats.Retransmissions++
		return
	case h.MessageID >= sa.expectReq && uint64(h.MessageID) < uint64(sa.expectReq)+uint64(sa.window()):
		// In our window and not answered yet; requests may pass one
		// another on the way (§2.3), so any order is fine.
	default:
		e.drop(DropWindow, dropped{sa: sa, from: d.Remote, h: h})
		return
	}
	msg, ps, err, ok := sa.openMessage(d, in)
	if !ok {
		return
	}
	sa.handleOpened(msg, ps, err)
}

// handleOpened answers an authentic request in our window.
func (sa *ikeSA) handleOpened(msg *message, ps []wire.Payload, err error) {
	e := sa.e
	var crit *wire.UnsupportedCriticalError
	if err != nil && !errors.As(err, &crit) {
		// Authentic but malformed: INVALID_SYNTAX, fatal to the SA (§2.21.3).
		sa.respond(msg, []wire.Payload{wire.NewNotify(wire.NotifyInvalidSyntax, nil)})
		e.destroy(sa, "malformed request: "+err.Error())
		return
	}
	msg.payloads = ps
	sa.heard()
	sa.followNAT(msg)
	sa.followStream(msg)
	sa.readWindow(msg)
	sa.peerHeard()
	e.log.Debug("received "+msg.String(), "ike", sa.id)
	sa.countNotifies(ps, false)
	if crit != nil {
		// §2.5: reject the whole request, naming the payload type.
		sa.respond(msg, []wire.Payload{wire.NewNotify(wire.NotifyUnsupportedCriticalPayload, []byte{byte(crit.Type)})})
		return
	}
	sa.handleRequest(msg)
	sa.next()
}

// handleRequest dispatches an authenticated request to its exchange.
func (sa *ikeSA) handleRequest(msg *message) {
	sa.takeOverFromCollision(msg)
	switch msg.Exchange {
	case wire.IKEAuth:
		sa.respondAuth(msg)
	case wire.CreateChildSA:
		if sa.state != stateEstablished && sa.state != stateRekeyed && sa.state != stateDeleting {
			sa.respond(msg, []wire.Payload{wire.NewNotify(wire.NotifyInvalidSyntax, nil)})
			return
		}
		sa.respondCreateChild(msg)
	case wire.Informational:
		sa.respondInformational(msg)
	default:
		// Unknown exchange types in an authenticated request (§2.21.3:
		// every erroneous request gets an answer).
		sa.respond(msg, []wire.Payload{wire.NewNotify(wire.NotifyInvalidSyntax, nil)})
		sa.e.destroy(sa, "request of unknown exchange type "+msg.Exchange.String())
	}
}

// respond protects and sends the response to msg and caches it for
// retransmitted requests.
func (sa *ikeSA) respond(msg *message, ps []wire.Payload) {
	e := sa.e
	h := sa.header(msg.Exchange, msg.MessageID, true)
	pkts, _, err := sa.protect(h, ps, msg.d.Local, msg.d.Remote)
	if err != nil {
		e.log.Error("cannot build response", "ike", sa.id, "err", err)
		return
	}
	sa.remember(&response{id: msg.MessageID, exchange: msg.Exchange, hash: requestHash(msg.raw), packets: pkts})
	sa.countNotifies(ps, true)
	e.log.Debug("sending "+(&wire.Message{Header: h, Payloads: ps}).String(), "ike", sa.id)
	// Responses go back where the request came from (§2.11), from the
	// address it arrived on.
	for _, pkt := range pkts {
		sa.transmitTo(msg.d.Local, msg.d.Remote, msg.d.TCP, pkt)
	}
}

// protect encodes and protects a message to remote from local: one
// datagram, or with fragmentation negotiated and a message too large
// for the path, its fragments (RFC 7383 §2.5). With fragmentation it
// also returns the encoded payloads, so a request can be cut again.
func (sa *ikeSA) protect(h wire.Header, ps []wire.Payload, local, remote netip.AddrPort) ([][]byte, *request, error) {
	first, inner, err := wire.EncodePayloads(ps)
	if err != nil {
		return nil, nil, err
	}
	if sa.ext.fragmentation {
		size := sa.maxDatagram(remote)
		pkts, err := ikefrag.Split(h, first, inner, sa.out, size, sa.e.markerLen(local), sa.e.cfg.Rand)
		return pkts, &request{hdr: h, first: first, inner: inner, size: size}, err
	}
	pkt, err := sa.out.Protect(h, first, inner, sa.e.cfg.Rand)
	if err != nil {
		return nil, nil, err
	}
	return [][]byte{pkt}, nil, nil
}

// recut cuts an outstanding request again for the SA's current path
// when that path takes another fragment size (RFC 7383 §2.5.2: a
// retransmission may use other fragments, with the same Message ID).
func (sa *ikeSA) recut(p *request) {
	if p.inner == nil {
		return
	}
	size := sa.maxDatagram(sa.remote)
	if size == p.size {
		return
	}
	if pkts, err := ikefrag.Split(p.hdr, p.first, p.inner, sa.out, size, sa.e.markerLen(sa.local), sa.e.cfg.Rand); err == nil {
		p.packets, p.size = pkts, size
	}
}

// queue adds a task; it runs when the window lets it (§2.3).
func (sa *ikeSA) queue(t task) {
	if sa.state == stateDead {
		t.abort(sa, "IKE SA is gone")
		return
	}
	sa.tasks = append(sa.tasks, t)
	sa.next()
}

// next starts queued tasks as far as the window lets it.
func (sa *ikeSA) next() {
	for len(sa.tasks) > 0 && sa.state != stateDead && sa.mayStart(sa.tasks[0]) {
		if sa.state == stateConnecting && sa.in == nil {
			return // IKE_SA_INIT still under way; its task sends directly
		}
		t := sa.tasks[0]
		sa.tasks = sa.tasks[1:]
		x, ps, err := t.build(sa)
		if err != nil {
			if !errors.Is(err, errSkip) {
				sa.e.log.Info("task not started", "ike", sa.id, "task", fmt.Sprint(t), "err", err)
			}
			continue
		}
		if _, sync := t.(*midSyncTask); sync {
			sa.sendRequestID(t, x, ps, 0) // RFC 6311 §5.1: Message ID zero
			continue
		}
		sa.sendRequest(t, x, ps)
	}
}

// errSkip tells next that a task has nothing to do any more (its Child SA
// vanished, a collision made it moot).
var errSkip = errors.New("skip")

// sendRequest sends a protected request and arms its retransmission.
func (sa *ikeSA) sendRequest(t task, x wire.ExchangeType, ps []wire.Payload) {
	id := sa.nextReq
	if id == math.MaxUint32 {
		// §2.2: Message IDs must not wrap; the SA must be rekeyed or closed.
		sa.e.destroy(sa, "message IDs exhausted")
		return
	}
	if sa.sendRequestID(t, x, ps, id) {
		sa.nextReq++
	}
}

// sendRequestID sends a request with Message ID id, outside the order
// of nextReq (RFC 6311's synchronisation uses ID zero). It reports
// whether the request went out (false: it could not be built; the task
// was aborted).
func (sa *ikeSA) sendRequestID(t task, x wire.ExchangeType, ps []wire.Payload, id uint32) bool {
	e := sa.e
	h := sa.header(x, id, false)
	pkts, p, err := sa.protect(h, ps, sa.local, sa.remote)
	if err != nil {
		e.log.Error("cannot build request", "ike", sa.id, "err", err)
		t.abort(sa, err.Error())
		return false
	}
	if p == nil {
		p = &request{}
	}
	p.id, p.exchange, p.packets, p.task, p.pathGen = id, x, pkts, t, sa.updateGen
	p.keyed = slices.ContainsFunc(ps, func(p wire.Payload) bool { return p.Type() == wire.PayloadKE })
	sa.outstanding = append(sa.outstanding, p)
	sa.countNotifies(ps, true)
	e.log.Debug("sending "+(&wire.Message{Header: h, Payloads: ps}).String(), "ike", sa.id)
	sa.transmitRequest(p)
	return true
}

// sendOneShot sends a request nobody waits for (a Delete at shutdown, an
// AUTHENTICATION_FAILED report after IKE_AUTH, §2.21.2).
func (sa *ikeSA) sendOneShot(x wire.ExchangeType, ps []wire.Payload) {
	if sa.out == nil {
		return
	}
	h := sa.header(x, sa.nextReq, false)
	pkts, _, err := sa.protect(h, ps, sa.local, sa.remote)
	if err != nil {
		return
	}
	sa.nextReq++
	// Counted like any request's: an operator graphing
	// AUTHENTICATION_FAILED sent must see the initiator's (§2.21.2) too.
	sa.countNotifies(ps, true)
	for _, pkt := range pkts {
		sa.transmit(pkt)
	}
}

func (sa *ikeSA) transmitRequest(p *request) {
	sa.sentRequest(p)
	p.sent = sa.e.now
	if p.since.IsZero() {
		p.since = sa.e.now
	}
	for _, pkt := range p.packets {
		sa.transmit(pkt)
	}
	sa.armRetransmit(p)
}

// armRetransmit schedules p's next retransmission, backing off with its
// tries (§2.4).
func (sa *ikeSA) armRetransmit(p *request) {
	if p.quick > 0 {
		p.timer = sa.e.after(sa.probeInterval(), func() { sa.retransmit(p) })
		return
	}
	r := sa.e.cfg.Retransmit
	// Past the configured tries (waitsForMove) the interval stays at
	// the last one.
	timeout := time.Duration(float64(r.Timeout) * math.Pow(r.Base, float64(min(p.tries, r.Tries))))
	if p.tries >= 1 {
		// Retransmitted over UDP once: the fallback to TCP comes when
		// it is due, not at the next retransmission (RFC 9329 §5.1).
		if due := sa.fallbackDue(p); !due.IsZero() {
			timeout = min(timeout, max(due.Sub(sa.e.now), fallbackGrace))
		}
	}
	p.timer = sa.e.after(timeout, func() { sa.retransmit(p) })
}

// retransmit resends the outstanding request unchanged from the IKE header
// on (§2.1), or gives the peer up after the last try (§2.4).
func (sa *ikeSA) retransmit(p *request) {
	if sa.request(p.id) != p || sa.state == stateDead {
		return
	}
	if p.quick > 0 {
		sa.quickRetransmit(p) // liveness.go
		return
	}
	if sa.fallBackToTCP(p) {
		return
	}
	if p.tries >= sa.e.cfg.Retransmit.Tries && !sa.waitsForMove(p) {
		sa.e.log.Info("peer does not answer, giving up", "ike", sa.id, "request", p.id, "tries", p.tries+1)
		if p.task != nil {
			p.task.abort(sa, "peer did not answer")
		}
		sa.settle(p)
		wasUp := sa.state == stateEstablished
		if wasUp {
			sa.e.stats.DeadPeers++
		}
		sa.e.destroy(sa, "peer did not answer "+p.exchange.String())
		if wasUp && sa.conn.RestartOnDead && sa.initiator {
			sa.e.restart(sa)
		}
		return
	}
	if sa.rotateInitPath(p) {
		return
	}
	p.tries++
	sa.e.stats.Retransmissions++
	if p.pathGen != sa.updateGen {
		p.pathGen, p.pathTries = sa.updateGen, 0 // a new path: its own count
	}
	p.pathTries++
	gen := sa.updateGen
	sa.probePath(p.pathTries)
	if sa.updateGen != gen {
		// Moved to another path: moveTo sent every outstanding request,
		// this one too, on it (resendOutstanding).
		sa.armRetransmit(p)
		return
	}
	sa.recut(p)
	sa.e.event(sa, EventRetransmit, fmt.Sprintf("%s request %d, try %d", p.exchange, p.id, p.tries+1))
	sa.transmitRequest(p)
}

// mobikeResponderPatience is how long a MOBIKE responder retransmits
// before it gives up: RFC 4555 §3.11 suggests at least 5 minutes, since
// only the initiator can move the SA to a working path, which may take a
// while (a laptop resumed, a new network joined).
const mobikeResponderPatience = 5 * time.Minute

// waitsForMove: the MOBIKE responder goes on retransmitting p past the
// configured tries, at the last interval, until mobikeResponderPatience
// has passed since p first went out (RFC 4555 §3.11).
func (sa *ikeSA) waitsForMove(p *request) bool {
	return sa.ext.mobike && !sa.mobikeInitiator && sa.state == stateEstablished &&
		sa.e.now.Sub(p.since) < mobikeResponderPatience
}

// resendOutstanding sends the outstanding requests again at once after
// the SA changed paths. RFC 4555 §3.5 has them "continue retransmitting
// using the new addresses"; waiting for their timers would leave the SA
// silent for up to a minute after a few tries (the backoff of §2.4), and
// while a request waits for its answer the window keeps the
// UPDATE_SA_ADDRESSES (and any clone or rekey) from going out, so the
// peer would go on sending to an address that is gone. The timers stay
// as they are, and so do the tries, except that a request at its last
// try gets one more retransmission: this send on the new path may be
// lost as well (the path just changed), and giving the SA up then,
// while the peer is reachable, is what the soak found: a gateway whose
// liveness check at its last try reached the end user just as the end
// user's next interface went silent gave up an SA the end user kept.
func (sa *ikeSA) resendOutstanding() {
	for _, p := range sa.outstanding {
		p.tries = min(p.tries, sa.e.cfg.Retransmit.Tries-1)
		sa.sentRequest(p)
		p.sent = sa.e.now
		sa.recut(p)
		sa.e.stats.Retransmissions++
		sa.e.event(sa, EventRetransmit, fmt.Sprintf("%s request %d on the new path", p.exchange, p.id))
		for _, pkt := range p.packets {
			sa.transmit(pkt)
		}
	}
}

// peerHeard: an authentic message from the peer proves it is there and
// reachable (§2.4). A request of ours it has left unanswered through a
// retransmission or more was probably lost while a path was down (ours
// or the peer's, which we cannot see): send it again now, count and
// timer left alone, rather than let its last and longest wait run out
// and give up on a peer that is talking to us.
func (sa *ikeSA) peerHeard() {
	for _, p := range sa.outstanding {
		if p.tries > 0 && sa.e.now.Sub(p.sent) >= sa.e.cfg.Retransmit.Timeout {
			sa.sentRequest(p)
			p.sent = sa.e.now
			sa.e.stats.Retransmissions++
			sa.e.event(sa, EventRetransmit, fmt.Sprintf("%s request %d, the peer heard from", p.exchange, p.id))
			for _, pkt := range p.packets {
				sa.transmit(pkt)
			}
		}
	}
}

// sendOutstandingAgain sends the outstanding requests once more, as they
// are, leaving their retransmission timers and counts alone.
func (sa *ikeSA) sendOutstandingAgain() {
	for _, p := range sa.outstanding {
		sa.sentRequest(p)
		p.sent = sa.e.now
		sa.e.stats.Retransmissions++
		sa.e.event(sa, EventRetransmit, fmt.Sprintf("%s request %d, its address back", p.exchange, p.id))
		for _, pkt := range p.packets {
			sa.transmit(pkt)
		}
	}
}

// transmit sends from the IKE SA's current addresses.
func (sa *ikeSA) transmit(pkt []byte) { sa.transmitTo(sa.local, sa.remote, sa.tcp, pkt) }

// transmitTo sends from local to remote, in the SA's TCP stream or in
// UDP (a response goes back in the transport its request came in).
func (sa *ikeSA) transmitTo(local, remote netip.AddrPort, tcp bool, pkt []byte) {
	sa.lastSent = sa.e.now
	iface := ""
	if local == sa.local {
		iface = sa.iface
	}
	sa.e.emit(Send{Datagram{Local: local, Remote: remote, Data: pkt, Iface: iface, TCP: tcp}})
}

func (sa *ikeSA) countNotifies(ps []wire.Payload, sent bool) {
	for _, p := range ps {
		if n, ok := p.(*wire.Notify); ok {
			if sent {
				sa.e.stats.NotifiesSent[n.NotifyType]++
			} else {
				sa.e.stats.NotifiesRecv[n.NotifyType]++
			}
		}
	}
}

// answerVersion sends INVALID_MAJOR_VERSION for a request of a newer IKE
// (§2.5), unprotected, with our highest version in the header.
func (e *Engine) answerVersion(d Datagram, h *wire.Header) {
	resp := &wire.Message{Header: wire.Header{SPIi: h.SPIi, SPIr: h.SPIr, MajorVersion: 2, Exchange: h.Exchange,
		Flags: wire.FlagResponse, MessageID: h.MessageID},
		Payloads: []wire.Payload{wire.NewNotify(wire.NotifyInvalidMajorVersion, nil)}}
	if b, err := resp.Marshal(); err == nil {
		e.emit(Send{Datagram{Local: d.Local, Remote: d.Remote, Data: b, TCP: d.TCP}})
	}
}
