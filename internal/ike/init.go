package ike

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// maxInitRetries bounds COOKIE and INVALID_KE_PAYLOAD round trips, so an
// unauthenticated responder cannot keep us looping (§2.21.1).
const maxInitRetries = 4

// ikeInitTask is the initiator's IKE_SA_INIT (RFC 7296 §1.2).
type ikeInitTask struct {
	group   wire.DHGroup
	cookie  []byte
	retries int
	offered *wire.SA
	// solution answers the responder's puzzle (RFC 8019 §7.1.2).
	solution *wire.PuzzleSolution
}

func (e *Engine) initiate(c *Connection, local, remote netip.AddrPort, only *ChildConfig, iface string) (*ikeSA, error) {
	return e.initiateFrom(c, local, remote, only, iface, netip.Addr{})
}

// initiateFrom is initiate for a redirected SA: from, when valid, is the
// gateway that redirected us (REDIRECTED_FROM, RFC 5685 §3).
func (e *Engine) initiateFrom(c *Connection, local, remote netip.AddrPort, only *ChildConfig, iface string, from netip.Addr) (*ikeSA, error) {
	if len(e.sas) >= e.cfg.MaxIKESAs {
		return nil, fmt.Errorf("ike: limit of %d IKE SAs reached", e.cfg.MaxIKESAs)
	}
	if c.LocalAuth == AuthEAP && c.EAP == nil {
		return nil, fmt.Errorf("ike: connection %s authenticates its peers by EAP-only (RFC 5998) and has no EAP credentials of its own: it only responds", c.Name)
	}
	sa := e.newSA(c, true, local, remote)
	sa.onlyChild, sa.iface = only, iface
	sa.startTCP()
	sa.ext.redirectFrom = from
	sa.hs.ni = e.nonce()
	t := &ikeInitTask{group: proposal.FirstDH(c.IKE)}
	if err := t.send(sa); err != nil {
		e.destroy(sa, err.Error())
		return nil, err
	}
	e.log.Info("initiating IKE SA", "ike", sa.id, "conn", c.Name, "local", local, "remote", sa.remote, "tcp", sa.tcp)
	return sa, nil
}

// send builds and sends the IKE_SA_INIT request, again after a COOKIE or
// INVALID_KE_PAYLOAD answer with Message ID 0 (§2.6, §1.2).
func (t *ikeInitTask) send(sa *ikeSA) error {
	e, c := sa.e, sa.conn
	dh, err := ikecrypto.NewDH(t.group, e.cfg.Rand)
	if err != nil {
		return err
	}
	sa.hs.dh = dh
	t.offered = proposal.WireSA(c.IKE, nil, true)
	var ps []wire.Payload
	if t.cookie != nil {
		ps = append(ps, wire.NewNotify(wire.NotifyCookie, t.cookie)) // COOKIE comes first (§2.6)
		if t.solution != nil {
			ps = append(ps, t.solution) // then the Puzzle Solution (RFC 8019 §7.1.2)
		}
	}
	ps = append(ps, t.offered, &wire.KE{Group: t.group, Data: dh.Public()}, &wire.Nonce{Data: sa.hs.ni})
	x := sa.initExchange(0)
	forEach(e, func(f initFeature) { ps = append(ps, f.initRequest(x)...) })
	m := &wire.Message{Header: wire.Header{SPIi: sa.spiI, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagInitiator}, Payloads: ps}
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	sa.hs.initReq = b
	for _, p := range sa.outstanding {
		p.timer.cancel()
	}
	p := &request{id: 0, exchange: wire.IKESAInit, packets: [][]byte{b}, task: t}
	sa.outstanding = []*request{p}
	e.log.Debug("sending "+m.String(), "ike", sa.id)
	sa.transmitRequest(p)
	return nil
}

// initExchange is this SA's IKE_SA_INIT for the features, with the
// responder SPI as the header has it (0 in the request).
func (sa *ikeSA) initExchange(spiR uint64) *initExchange {
	return &initExchange{e: sa.e, conn: sa.conn, spiI: sa.spiI, spiR: spiR, local: sa.local, remote: sa.remote, ext: &sa.ext}
}

func (t *ikeInitTask) build(*ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	return 0, nil, errSkip // sent directly by send: IKE_SA_INIT is not protected
}

func (t *ikeInitTask) abort(*ikeSA, string) {}

func (t *ikeInitTask) process(sa *ikeSA, m *message) {
	e, c := sa.e, sa.conn
	if n := m.notify(wire.NotifyCookie); n != nil && len(n.Data) >= 1 && len(n.Data) <= 64 && t.retries < maxInitRetries {
		t.retries++
		t.cookie = bytes.Clone(n.Data)
		t.solution = nil
		if pz := m.notify(wire.NotifyPuzzle); pz != nil && t.solvePuzzle(sa, pz) {
			return
		}
		t.retry(sa, "responder asked for a COOKIE")
		return
	}
	if n := m.notify(wire.NotifyInvalidKEPayload); n != nil {
		// Retry with the requested group and the full proposal list, so
		// an unauthenticated notify cannot downgrade us (§1.2).
		g, err := n.Uint16()
		if err == nil && proposal.AcceptsDH(c.IKE, wire.DHGroup(g)) && wire.DHGroup(g) != t.group && t.retries < maxInitRetries {
			t.retries++
			t.group = wire.DHGroup(g)
			t.retry(sa, fmt.Sprintf("responder wants DH group %s", wire.DHGroup(g)))
			return
		}
		e.destroy(sa, fmt.Sprintf("responder wants DH group %d, which we do not offer", g))
		return
	}
	if n := m.errorNotify(); n != nil {
		e.destroy(sa, "IKE_SA_INIT refused: "+n.NotifyType.String())
		return
	}
	if err := sa.processInitResponse(t, m); err != nil {
		e.destroy(sa, "IKE_SA_INIT response: "+err.Error())
		return
	}
	sa.tasks = append([]task{&ikeAuthTask{}}, sa.tasks...)
}

// solvePuzzle starts solving the responder's puzzle (RFC 8019 §7.1.2) and
// reports whether it did; if not (too hard, unknown PRF, or puzzles off)
// the cookie is returned without a solution, as a host without puzzle
// support would, and the responder decides.
func (t *ikeInitTask) solvePuzzle(sa *ikeSA, pz *wire.Notify) bool {
	e := sa.e
	if e.cfg.PuzzleMaxDifficulty < 0 {
		return false
	}
	s, err := newPuzzleSolver(pz, t.cookie, e.cfg.PuzzleMaxDifficulty)
	if err != nil {
		// RFC 8019 §9: say so to the administrator.
		e.log.Warn("not solving the responder's puzzle: "+err.Error(), "ike", sa.id)
		return false
	}
	e.log.Info("solving the responder's puzzle", "ike", sa.id, "bits", s.bits, "prf", s.prf.ID)
	t.solveTurn(sa, s)
	return true
}

// solveTurn does one turn of the puzzle's work and schedules the next, or
// sends the request when done (see puzzleChunk for why in turns).
func (t *ikeInitTask) solveTurn(sa *ikeSA, s *puzzleSolver) {
	if sa.state == stateDead {
		return
	}
	if !s.work(puzzleChunk) {
		sa.e.after(puzzleYield, func() { t.solveTurn(sa, s) })
		return
	}
	t.solution = s.solution()
	if t.solution == nil {
		sa.e.log.Warn("gave up on the responder's puzzle, returning the cookie alone", "ike", sa.id, "bits", s.bits)
	}
	t.retry(sa, "solved the responder's puzzle")
}

func (t *ikeInitTask) retry(sa *ikeSA, why string) {
	sa.e.log.Info("retrying IKE_SA_INIT: "+why, "ike", sa.id)
	if err := t.send(sa); err != nil {
		sa.e.destroy(sa, err.Error())
	}
}

func (sa *ikeSA) processInitResponse(t *ikeInitTask, m *message) error {
	e := sa.e
	respSA, ok1 := wire.First[*wire.SA](m.payloads)
	ke, ok2 := wire.First[*wire.KE](m.payloads)
	nonce, ok3 := wire.First[*wire.Nonce](m.payloads)
	if !ok1 || !ok2 || !ok3 || m.SPIr == 0 {
		return errors.New("SA, KE, Nonce or responder SPI missing")
	}
	neg, err := proposal.CheckResponse(t.offered, respSA)
	if err != nil {
		return err
	}
	if neg.DH != t.group || ke.Group != t.group {
		return fmt.Errorf("responder chose DH group %s / KE %s, but our KE was %s", neg.DH, ke.Group, t.group)
	}
	gir, err := sa.hs.dh.Shared(ke.Data)
	if err != nil {
		return err // RFC 6989 check of the peer's public value
	}
	sa.spiR = m.SPIr
	sa.nextReq = 1 // IKE_AUTH is Message ID 1 (§2.2)
	sa.hs.nr = bytes.Clone(nonce.Data)
	sa.hs.initResp = m.raw
	sa.neg = neg
	x := sa.initExchange(m.SPIr)
	forEach(e, func(f initFeature) { f.readInit(x, m) })
	if err := sa.deriveKeys(gir); err != nil {
		return err
	}
	sa.hs.dh = nil
	sa.setEncap()
	sa.floatAfterInit()
	e.log.Debug("IKE_SA_INIT done", "ike", sa.id, "proposal", neg.String(), "nat_local", sa.ext.natLocal, "nat_remote", sa.ext.natRemote)
	return nil
}

// deriveKeys computes SKEYSEED and the IKE SA keys (§2.14).
func (sa *ikeSA) deriveKeys(gir []byte) error {
	suite, err := ikecrypto.NewSuite(sa.neg.Encr.Encr, sa.neg.Encr.KeyBits, sa.neg.PRF, sa.neg.Integ, sa.neg.DH)
	if err != nil {
		return err
	}
	skeyseed := ikecrypto.SKEYSEED(suite.PRF, sa.hs.ni, sa.hs.nr, gir)
	return sa.setKeys(suite, skeyseed, sa.hs.ni, sa.hs.nr)
}

// setKeys expands SKEYSEED with prf+ and keys both directions: SK_ei/SK_ai
// protect what the original initiator sends.
func (sa *ikeSA) setKeys(suite *ikecrypto.Suite, skeyseed, ni, nr []byte) error {
	keys, err := suite.DeriveIKEKeys(skeyseed, ni, nr, sa.spiI, sa.spiR)
	if err != nil {
		return err
	}
	if err := sa.installKeys(suite, keys); err != nil {
		return err
	}
	sa.e.keyLog(sa, keys)
	return nil
}

// installKeys keys both directions from the expanded keys.
func (sa *ikeSA) installKeys(suite *ikecrypto.Suite, keys *ikecrypto.IKEKeys) error {
	fromI, err := suite.NewSKCipher(keys.SKei, keys.SKai)
	if err != nil {
		return err
	}
	fromR, err := suite.NewSKCipher(keys.SKer, keys.SKar)
	if err != nil {
		return err
	}
	sa.suite, sa.skd = suite, keys.SKd
	if sa.hs != nil {
		sa.hs.skp = [2][]byte{keys.SKpi, keys.SKpr} // for AUTH (§2.15)
	}
	if sa.initiator {
		sa.out, sa.in = fromI, fromR
	} else {
		sa.out, sa.in = fromR, fromI
	}
	return nil
}

// initResponse hands an IKE_SA_INIT response to sa, our half-made SA
// that waits for it (receiveInitResponse checked that it does, and
// inspect its Message ID).
func (e *Engine) initResponse(sa *ikeSA, m *message) {
	if m.notify(wire.NotifyPuzzle) != nil && m.notify(wire.NotifyCookie) == nil {
		// RFC 8019 §7.1.2: a puzzle without the cookie it is computed
		// over is malformed; keep waiting (and retransmitting).
		e.drop(DropMalformed, dropped{sa: sa, from: m.d.Remote, h: &m.Header})
		return
	}
	if n := m.notify(wire.NotifyRedirect); n != nil {
		sa.redirectedAtInit(m, n) // RFC 5685 §3
		return
	}
	p := sa.outstanding[0]
	p.timer.cancel()
	sa.outstanding = nil
	e.log.Debug("received "+(&wire.Message{Header: m.Header, Payloads: m.payloads}).String(), "ike", sa.id)
	sa.countNotifies(m.payloads, false)
	p.task.process(sa, m)
	if sa.state != stateDead && sa.in != nil {
		sa.next()
	}
}

// initRequest is the responder's IKE_SA_INIT (§1.2). A request we refuse
// leaves nothing behind; one we answer leaves a halfOpenSA (halfopen.go),
// never more than MaxHalfOpen of them. The steps, in order, are the
// methods of initResponder: a retransmission is answered from the SA it
// made (§2.1); the global caps, then under load the per-source and
// per-prefix limits, drop a request before anything is computed (RFC 8019
// §4.2); under load a request needs a valid COOKIE (§2.6) and, under
// heavier load with puzzles on, a solved puzzle (RFC 8019 §7.1.4); then
// come the proposal and the KE.
func (e *Engine) initRequest(m *message, crit *wire.UnsupportedCriticalError) {
	r := &initResponder{e: e, m: m, d: m.d} // inspect checked the SPIr and Message ID are zero
	if r.isNew() &&
		r.supported(crit) &&
		r.underCaps() &&
		r.readPayloads() &&
		r.admitted() &&
		r.selectProposal() &&
		r.notRedirected() &&
		r.computeSharedSecret() {
		r.sendResponse()
	}
}

// initResponder is what the responder knows while it handles one
// IKE_SA_INIT request; it is dropped with the request, and what stays is
// the halfOpenSA that sendResponse makes.
type initResponder struct {
	e *Engine
	m *message
	d Datagram

	nonce    *wire.Nonce // Ni; nil if the request has none
	key      halfOpenKey // what tells a retransmission (with a nonce)
	open     int         // half-open SAs before this one
	offered  *wire.SA
	ke       *wire.KE
	src      netip.Addr   // what the request counts against
	pfx      netip.Prefix // (RFC 8019 §4.2)
	verified bool         // it returned a valid COOKIE (§2.6)

	cands  []*Connection // every connection that admits the addresses
	c      *Connection
	chosen wire.Proposal
	neg    proposal.Negotiated
	suite  *ikecrypto.Suite
	dh     *ikecrypto.DH
	gir    []byte // g^ir (§2.14)
}

// drop drops the request for why.
func (r *initResponder) drop(why DropReason) {
	r.e.drop(why, dropped{from: r.d.Remote, h: &r.m.Header})
}

// isNew answers a retransmitted request with the response already sent
// (§2.1: same SPIi, source and Ni) and reports whether it is a new one.
func (r *initResponder) isNew() bool {
	nonce, ok := wire.First[*wire.Nonce](r.m.payloads)
	if !ok {
		return true
	}
	r.nonce = nonce
	r.key = halfOpenKey{spiI: r.m.SPIi, remote: r.d.Remote, ni: niKey(nonce.Data)}
	if h := r.e.halfOpen.byKey[r.key]; h != nil {
		r.e.answerHalfOpen(h, r.d)
		return false
	}
	return true
}

// supported answers a request with a critical payload we do not know
// with UNSUPPORTED_CRITICAL_PAYLOAD (§2.5).
func (r *initResponder) supported(crit *wire.UnsupportedCriticalError) bool {
	if crit != nil {
		r.e.answerInit(r.m, wire.NotifyUnsupportedCriticalPayload, []byte{byte(crit.Type)})
		return false
	}
	return true
}

// underCaps drops the request when the half-open SAs, or all IKE SAs,
// are at their global cap (RFC 8019 §4.2).
func (r *initResponder) underCaps() bool {
	e := r.e
	r.open = e.halfOpen.len()
	if r.open >= e.cfg.MaxHalfOpen || len(e.sas)+r.open >= e.cfg.MaxIKESAs {
		r.drop(DropHalfOpenLimit)
		return false
	}
	return true
}

// readPayloads finds what every IKE_SA_INIT request carries: SAi1, KEi
// and Ni (§1.2).
func (r *initResponder) readPayloads() bool {
	var ok2, ok3 bool
	r.offered, ok2 = wire.First[*wire.SA](r.m.payloads)
	r.ke, ok3 = wire.First[*wire.KE](r.m.payloads)
	if r.nonce == nil || !ok2 || !ok3 {
		r.drop(DropMalformed)
		return false
	}
	return true
}

// admitted decides whether the request may cost us a half-open SA.
// Under load, a source or prefix at its limit gets nothing, not even a
// COOKIE: what it would return could only be dropped (RFC 8019 §4.2).
// Under load it needs a valid COOKIE (§2.6), and with puzzles a solved
// one (RFC 8019 §7.1.4, §7.1.5); with a valid COOKIE it is counted
// against its source and prefix, under load or not.
func (r *initResponder) admitted() bool {
	e, m := r.e, r.m
	r.src, r.pfx = e.halfOpenOrigin(r.d.Remote.Addr())
	loaded := r.open >= e.cfg.CookieThreshold
	if loaded {
		if why := e.halfOpenLimit(r.src, r.pfx); why != DropNone {
			r.drop(why)
			return false
		}
	}
	info, cookie, verified := e.checkCookie(m, r.nonce.Data, r.d.Remote.Addr())
	r.verified = verified
	puzzling := e.cfg.PuzzleDifficulty > 0 && r.open >= e.cfg.PuzzleThreshold
	switch {
	case !verified && loaded && (puzzling || !r.d.TCP):
		// Over TCP a COOKIE alone proves nothing the handshake did not
		// (RFC 9329 §6.3): asked only with a puzzle.
		e.askCookie(m, r.offered, r.nonce.Data, puzzling)
		return false
	case verified && puzzling && (info.bits == 0 || !puzzleSolved(info, cookie, firstPS(m))):
		// RFC 8019 §7.1.4, §7.1.5: no puzzle was given, or it was not
		// solved: demand the work (again) rather than serve the request.
		e.askCookie(m, r.offered, r.nonce.Data, true)
		return false
	case verified:
		if why := e.halfOpenLimit(r.src, r.pfx); why != DropNone {
			r.drop(why)
			return false
		}
	}
	return true
}

// selectProposal chooses the connection and the IKE SA's proposal
// (§2.7, §3.3). Every connection that admits the addresses is a
// candidate, the most specific first; the first whose proposals match
// wins, preferably one that takes the initiator's KE group. A chosen
// group other than KEi's is answered with INVALID_KE_PAYLOAD (§1.2).
func (r *initResponder) selectProposal() bool {
	e, d, ke := r.e, r.d, r.ke
	r.cands = e.responderConns(d.Local.Addr(), d.Remote.Addr())
	if len(r.cands) == 0 {
		e.log.Info("no connection for IKE_SA_INIT", "local", d.Local, "remote", d.Remote)
		e.answerInit(r.m, wire.NotifyNoProposalChosen, nil)
		return false
	}
	found := false
	for _, cand := range r.cands {
		ch, n, ok := proposal.Select(cand.IKE, r.offered, wire.ProtoIKE, !cand.PreferPeerProposals, ke.Group)
		if !ok {
			continue
		}
		if !found || (n.DH == ke.Group && r.neg.DH != ke.Group) {
			r.c, r.chosen, r.neg, found = cand, ch, n, true
		}
		if n.DH == ke.Group {
			break
		}
	}
	if !found {
		e.log.Info("no acceptable IKE proposal", "candidates", len(r.cands), "remote", d.Remote)
		e.answerInit(r.m, wire.NotifyNoProposalChosen, nil)
		return false
	}
	if r.neg.DH != ke.Group {
		e.answerInit(r.m, wire.NotifyInvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(r.neg.DH)))
		return false
	}
	return true
}

// computeSharedSecret makes our DH key and g^ir from KEi, whose public
// value must be valid (RFC 6989 §2).
func (r *initResponder) computeSharedSecret() bool {
	e, neg := r.e, r.neg
	var err error
	r.suite, err = ikecrypto.NewSuite(neg.Encr.Encr, neg.Encr.KeyBits, neg.PRF, neg.Integ, neg.DH)
	if err != nil {
		e.log.Error("cannot make the IKE suite", "err", err)
		r.drop(DropLocalFailure)
		return false
	}
	if r.dh, err = ikecrypto.NewDH(neg.DH, e.cfg.Rand); err != nil {
		e.log.Error("cannot make a DH key", "err", err)
		r.drop(DropLocalFailure)
		return false
	}
	if r.gir, err = r.dh.Shared(r.ke.Data); err != nil {
		r.drop(DropInvalidKE) // RFC 6989 §2
		return false
	}
	return true
}

// sendResponse sends SAr1, KEr, Nr, what the features add and CERTREQ
// (§1.2), and keeps the half-open SA with SKEYSEED (§2.14) and both
// messages for IKE_AUTH's signed octets (§2.15).
func (r *initResponder) sendResponse() {
	e, m, d, neg := r.e, r.m, r.d, r.neg
	e.nextID++
	h := &halfOpenSA{id: e.nextID, conn: r.c, key: r.key, spiR: e.newSPI(), local: d.Local, created: e.now, neg: neg,
		counted: r.verified}
	nr := e.nonce()
	skeyseed := ikecrypto.SKEYSEED(r.suite.PRF, r.nonce.Data, nr, r.gir) // §2.14
	ps := []wire.Payload{&wire.SA{Proposals: []wire.Proposal{r.chosen}}, &wire.KE{Group: neg.DH, Data: r.dh.Public()}, &wire.Nonce{Data: nr}}
	x := &initExchange{e: e, conn: r.c, spiI: m.SPIi, local: d.Local, remote: d.Remote, ext: &h.ext}
	forEach(e, func(f initFeature) { f.readInit(x, m) })
	x.spiR = h.spiR // the response's header has it
	forEach(e, func(f initFeature) { ps = append(ps, f.initResponse(x, m)...) })
	// The connection is only settled by the peer's identity in IKE_AUTH:
	// ask for certificates from the CAs of every candidate that takes them
	// (a peer like strongSwan sends its certificate only when asked).
	if cas := certReqCAs(r.cands); len(cas) > 0 {
		ps = append(ps, &wire.CertReq{Encoding: wire.CertX509Signature, Data: ikeauth.CertReqData(cas)})
	}
	resp := &wire.Message{Header: wire.Header{SPIi: m.SPIi, SPIr: h.spiR, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagResponse},
		Payloads: ps}
	b, err := resp.Marshal()
	if err != nil {
		e.log.Error("cannot build the IKE_SA_INIT response", "err", err)
		r.drop(DropLocalFailure)
		return
	}
	h.keep(m.raw, b, r.nonce.Data, nr, skeyseed)
	e.addHalfOpen(h)
	for _, p := range ps {
		if n, ok := p.(*wire.Notify); ok {
			e.stats.NotifiesSent[n.NotifyType]++
		}
	}
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug("sending "+resp.String(), "ike", h.id)
	}
	e.emit(Send{Datagram{Local: d.Local, Remote: d.Remote, Data: b, TCP: d.TCP}})
}

func firstPS(m *message) *wire.PuzzleSolution {
	ps, _ := wire.First[*wire.PuzzleSolution](m.payloads)
	return ps
}

// askCookie answers with a COOKIE, with a PUZZLE when puzzle is set, and
// keeps nothing (RFC 7296 §2.6, RFC 8019 §7.1.1).
func (e *Engine) askCookie(m *message, offered *wire.SA, ni []byte, puzzle bool) {
	var info cookieInfo
	if puzzle {
		prf, ok := puzzlePRF(offered)
		if !ok {
			e.answerInit(m, wire.NotifyNoProposalChosen, nil) // RFC 8019 §7.1.1.2
			return
		}
		info = cookieInfo{bits: uint8(e.cfg.PuzzleDifficulty), prf: prf}
	}
	c := e.makeCookie(ni, m.d.Remote.Addr(), m.SPIi, info)
	if puzzle {
		e.answerInit(m, wire.NotifyCookie, c, puzzleNotify(info))
		return
	}
	e.answerInit(m, wire.NotifyCookie, c)
}

// answerInit sends an unprotected IKE_SA_INIT error or COOKIE response
// (with the PUZZLE after the COOKIE, RFC 8019 §7.1.1) and keeps no state
// (§2.6, §2.21.1).
func (e *Engine) answerInit(m *message, t wire.NotifyType, data []byte, more ...wire.Payload) {
	resp := &wire.Message{Header: wire.Header{SPIi: m.SPIi, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagResponse},
		Payloads: append([]wire.Payload{wire.NewNotify(t, data)}, more...)}
	b, err := resp.Marshal()
	if err != nil {
		return
	}
	for _, p := range resp.Payloads {
		if n, ok := p.(*wire.Notify); ok {
			e.stats.NotifiesSent[n.NotifyType]++
		}
	}
	e.emit(Send{Datagram{Local: m.d.Local, Remote: m.d.Remote, Data: b, TCP: m.d.TCP}})
}

func certReqCAs(cands []*Connection) []*x509.Certificate {
	var cas []*x509.Certificate
	seen := map[string]bool{}
	for _, c := range cands {
		if c.RemoteAuth != AuthPubkey {
			continue
		}
		for _, ca := range c.CAs {
			if !seen[string(ca.RawSubjectPublicKeyInfo)] {
				seen[string(ca.RawSubjectPublicKeyInfo)] = true
				cas = append(cas, ca)
			}
		}
	}
	return cas
}

// responderConns lists the connections whose addresses admit the peer,
// those naming both addresses first, then one, then neither; the identity
// check follows in IKE_AUTH.
func (e *Engine) responderConns(local, remote netip.Addr) []*Connection {
	var byRank [3][]*Connection
	for _, c := range e.cfg.Connections {
		if addrAllowed(c.LocalAddrs, local) && addrAllowed(c.RemoteAddrs, remote) {
			rank := 2
			if len(c.LocalAddrs) > 0 {
				rank--
			}
			if len(c.RemoteAddrs) > 0 {
				rank--
			}
			byRank[rank] = append(byRank[rank], c)
		}
	}
	return append(append(byRank[0], byRank[1]...), byRank[2]...)
}

func addrAllowed(list []netip.Addr, a netip.Addr) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x.Unmap() == a.Unmap() || (x.IsUnspecified() && x.Is4() == a.Unmap().Is4()) {
			return true
		}
	}
	return false
}
