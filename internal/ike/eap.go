package ike

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/eap"
	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// EAP in IKE_AUTH (RFC 7296 §2.16), both roles, as one unit that runs
// IKE_AUTH rounds of its own (authRounds):
//
//	Initiator                          Responder
//	HDR, SK {IDi, [IDr], SAi2, TSi, TSr, ...}  -->     (no AUTH: EAP wanted)
//	                   <--  HDR, SK {IDr, [CERT,] AUTH, EAP}
//	HDR, SK {EAP}      -->
//	                   <--  HDR, SK {EAP (Request)}      ... as many rounds as the method takes
//	                   <--  HDR, SK {EAP (Success)}
//	HDR, SK {AUTH}     -->                                (keyed with the MSK)
//	                   <--  HDR, SK {AUTH, SAr2, TSi, TSr, ...}
//
// The initiator is the EAP peer (internal/eap). The responder is a
// pass-through authenticator: the engine never decides an EAP
// conversation itself but asks a backend with an AskEAP action (a RADIUS
// server behind the daemon, RFC 3579; a local authenticator in tests) and
// goes on when Engine.AnswerEAP brings the answer. While it waits, the
// peer's retransmissions of that request are dropped (DropAwaitingBackend):
// the answer makes the response, and a retransmission after it gets that
// response from the cache without asking the backend again.
//
// The last two AUTH payloads are computed like pre-shared-key ones with
// the method's MSK as the key, or SK_pi/SK_pr for a method without one
// (§2.16).
//
// EAP-only authentication (RFC 5998) is the same conversation with the
// responder's signature left out: the initiator says it accepts that
// with EAP_ONLY_AUTHENTICATION in its first request, the responder's
// first response carries IDr and EAP but no AUTH, and the responder is
// authenticated by its last AUTH alone, keyed with the MSK that only
// the EAP server (and whom it gave the MSK to) can know. That is only
// sound for a method that authenticates the server, derives the MSK and
// resists dictionary attacks (RFC 5998 §4, eapOnlySafe): an initiator
// asking for EAP-only answers no other method, so a password never goes
// to a responder nobody has authenticated; both sides check the method
// again when EAP succeeds. A connection is EAP-only when both its sides
// are AuthEAP.
type eapAuth struct{}

func (eapAuth) String() string { return "EAP" }

// maxEAPRounds bounds the IKE_AUTH rounds of one EAP conversation: an
// EAP-TLS handshake with a long chain in 1,000-octet fragments takes
// about 20; a peer (or a backend) that goes on forever is cut off.
const maxEAPRounds = 64

// eapExchange is the EAP conversation of one IKE_AUTH exchange.
type eapExchange struct {
	// Initiator.
	peer     *eap.Peer
	resp     []byte // the EAP Response the next request carries
	success  bool   // EAP-Success arrived: the next request carries AUTH
	authSent bool
	// failed: the method failed, but its last Response (an MSCHAPv2
	// Failure-Response) still goes out, so the backend can say Failure
	// and drop the session; the round after ends the exchange.
	failed error
	// Responder.
	asked     int  // AskEAP rounds so far
	waiting   bool // an AskEAP is unanswered
	succeeded bool // EAP-Success sent: the next request must carry AUTH
	identity  []byte
	answer    EAPAnswer // the accepting answer (MSK, attributes)
	// Both.
	msk    []byte
	method uint8
}

// AskEAP asks the EAP backend about one round of the conversation of IKE
// SA IKESA (responder only). Message is the peer's EAP message, nil for
// the start (the backend's first Request: an Identity Request, RFC 3748
// §5.1). Answer with Engine.AnswerEAP, giving Round back.
type AskEAP struct {
	IKESA   uint64
	Conn    string
	Round   int
	Message []byte
	// Identity is what the peer gave in its EAP-Response/Identity (RADIUS
	// User-Name, RFC 3579 §2.1), once it has.
	Identity []byte
	// PeerID is the peer's IKE identity, for logs and the backend's
	// policy; PeerIDText is it as an EAP identity would be (the text of
	// an FQDN or e-mail identity, else PeerID), for a backend that takes
	// the IKE identity as the EAP identity instead of asking.
	PeerID        string
	PeerIDText    []byte
	Local, Remote netip.AddrPort
}

func (AskEAP) isAction() {}

// EAPVerdict is what a backend decided about a round.
type EAPVerdict uint8

const (
	EAPContinue EAPVerdict = iota + 1 // Message is the next Request (RADIUS Access-Challenge)
	EAPAccept                         // Message is EAP-Success (Access-Accept)
	EAPReject                         // Message is EAP-Failure (Access-Reject)
	EAPError                          // the backend could not decide (no RADIUS server answered)
)

// EAPAnswer is a backend's answer to AskEAP.
type EAPAnswer struct {
	Round   int
	Verdict EAPVerdict
	// Message is the EAP message for the peer; with EAPAccept or
	// EAPReject and none, the engine sends a Success or Failure of its own.
	Message []byte
	// MSK of a key-generating method (EAPAccept), RFC 5247 §2.1.
	MSK []byte
	// VirtualIP, when valid, is the peer's inner address (RADIUS
	// Framed-IP-Address), given instead of one from the pools.
	VirtualIP netip.Addr
	// SessionTimeout, when positive, ends the authentication's family
	// (RADIUS Session-Timeout, RFC 2865 §5.27): every IKE SA made from
	// it, clones too, goes when it runs out.
	SessionTimeout time.Duration
	// Why is said in the log and the event when the peer is refused.
	Why string
	// Identity, when the backend skipped the Identity round and took
	// the peer's IKE identity as its EAP identity, is that identity.
	Identity []byte
}

// eapOnlySafe reports whether EAP method t may authenticate the responder
// on its own (RFC 5998 §4): it authenticates both sides, derives an MSK
// and resists dictionary attacks. Of the registered types these are
// EAP-TLS, -SIM, -TTLS, -AKA, -FAST, -PAX, -PSK, -SAKE, -IKEv2, -AKA',
// -GPSK, -pwd and -EKE; not MD5-Challenge (one-way, no key) nor
// MSCHAPv2 (its challenge-response falls to an offline dictionary
// attack by whoever poses as the server).
func eapOnlySafe(t uint8) bool {
	switch t {
	case 13, 18, 21, 23, 43, 46, 47, 48, 49, 50, 51, 52, 53:
		return true
	}
	return false
}

// eapOnlyMethods are the methods our EAP peer answers in an EAP-only
// authentication: those of pc that are safe for it (RFC 5998 §4). Of
// what internal/eap implements, that is EAP-TLS, which needs the EAP
// server's CA.
func eapOnlyMethods(pc *eap.PeerConfig) []eap.Type {
	ms := pc.Methods
	if len(ms) == 0 && pc.RootCAs != nil {
		ms = []eap.Type{eap.TypeTLS}
	}
	var out []eap.Type
	for _, m := range ms {
		if eapOnlySafe(uint8(m)) && (m != eap.TypeTLS || pc.RootCAs != nil) {
			out = append(out, m)
		}
	}
	return out
}

// eapOnly reports whether c authenticates the responder by EAP alone
// (RFC 5998): both its sides are EAP.
func (c *Connection) eapOnly() bool { return c.LocalAuth == AuthEAP && c.RemoteAuth == AuthEAP }

// eapRaw is the EAP message an EAP payload carries, as RFC 3748 frames it.
func eapRaw(p *wire.EAP) []byte {
	n := 4
	if p.Code == wire.EAPRequest || p.Code == wire.EAPResponse {
		n += 1 + len(p.Data)
	}
	b := []byte{byte(p.Code), p.Identifier, byte(n >> 8), byte(n)}
	if n > 4 {
		b = append(append(b, p.MethodType), p.Data...)
	}
	return b
}

// eapPayload is the EAP payload carrying raw, an EAP message.
func eapPayload(raw []byte) (*wire.EAP, error) {
	pkt, err := eap.Parse(raw)
	if err != nil {
		return nil, err
	}
	p := &wire.EAP{Code: wire.EAPCode(pkt.Code), Identifier: pkt.Identifier}
	if pkt.Code == eap.CodeRequest || pkt.Code == eap.CodeResponse {
		p.MethodType, p.Data = uint8(pkt.Type), pkt.Data
	}
	return p, nil
}

// eapAuthData is the AUTH of an EAP authentication (§2.16): the MIC of a
// shared key over our signed octets, the key being the MSK, or SK_pi
// (initiator) or SK_pr (responder) for a method without one.
func (sa *ikeSA) eapAuthData(msk []byte, initiatorSide bool, idBody []byte) []byte {
	hs := sa.hs
	msg, nonce, skp := hs.initReq, hs.nr, hs.skp[0]
	if !initiatorSide {
		msg, nonce, skp = hs.initResp, hs.ni, hs.skp[1]
	}
	key := msk
	if len(key) == 0 {
		key = skp
	}
	octets := ikecrypto.SignedOctets(sa.suite.PRF, msg, nonce, skp, idBody)
	return ikecrypto.PSKAuth(sa.suite.PRF, key, octets)
}

// --- initiator ---

func (eapAuth) roundRequest(sa *ikeSA, x *authExchange) ([]wire.Payload, error) {
	if sa.conn.LocalAuth != AuthEAP {
		return nil, nil
	}
	if x.eap == nil {
		// Round 1: IDi without AUTH asks for EAP (§2.16).
		if sa.conn.EAP == nil {
			return nil, errors.New("no EAP credentials of our own")
		}
		cfg := *sa.conn.EAP
		cfg.Rand = sa.e.cfg.Rand
		cfg.Now = func() time.Time { return sa.e.now }
		var ps []wire.Payload
		if sa.conn.eapOnly() {
			// RFC 5998 §2: we accept a responder without AUTH, and
			// then answer only methods that authenticate it.
			cfg.Methods = eapOnlyMethods(sa.conn.EAP)
			ps = append(ps, wire.NewNotify(wire.NotifyEAPOnlyAuthentication, nil))
		}
		p, err := eap.NewPeer(cfg)
		if err != nil {
			return nil, err
		}
		x.eap = &eapExchange{peer: p}
		return ps, nil
	}
	ex := x.eap
	if ex.success {
		ex.authSent = true
		id := sa.conn.localIDPayload(false)
		return []wire.Payload{&wire.Auth{Method: wire.AuthSharedKeyMIC, Data: sa.eapAuthData(ex.msk, true, id.Body())}}, nil
	}
	p, err := eapPayload(ex.resp)
	if err != nil {
		return nil, err
	}
	return []wire.Payload{p}, nil
}

func (eapAuth) roundResponse(sa *ikeSA, x *authExchange, m *message) error {
	ex := x.eap
	if sa.conn.LocalAuth != AuthEAP || ex == nil {
		return nil
	}
	if ex.authSent {
		// The last response: the responder's AUTH, keyed like ours.
		auth, ok := wire.First[*wire.Auth](m.payloads)
		if !ok || auth.Method != wire.AuthSharedKeyMIC {
			return errors.New("the last IKE_AUTH response has no AUTH of the EAP key (§2.16)")
		}
		id, ok := wire.First[*wire.ID](m.payloads)
		if !ok || !id.Responder {
			// The responder sent IDr in its first response; its AUTH
			// now covers that identity.
			id = &wire.ID{Responder: true, IDType: sa.peerID.Type, Data: sa.peerID.Data}
		}
		if want := sa.eapAuthData(ex.msk, false, id.Body()); subtle.ConstantTimeCompare(want, auth.Data) != 1 {
			return errors.New("the responder's AUTH over the EAP key does not verify")
		}
		ex.identity = bytes.Clone(sa.conn.EAP.Identity)
		ex.peer.Close()
		return nil
	}
	if ex.failed != nil {
		ex.peer.Close()
		return ex.failed
	}
	p, ok := wire.First[*wire.EAP](m.payloads)
	if !ok {
		if n := m.errorNotify(); n != nil {
			return fmt.Errorf("the responder answered with %s", n.NotifyType)
		}
		return errors.New("IKE_AUTH response without the EAP payload (is EAP configured on the responder?)")
	}
	if x.round > maxEAPRounds {
		return fmt.Errorf("EAP goes on for more than %d rounds", maxEAPRounds)
	}
	resp, err := ex.peer.Handle(eapRaw(p))
	if m := ex.peer.Method(); m != 0 {
		ex.method = uint8(m)
	}
	if err != nil && resp != nil {
		ex.failed, ex.resp = fmt.Errorf("EAP: %w", err), resp
		x.needMore()
		return nil
	}
	if err != nil {
		ex.peer.Close()
		return fmt.Errorf("EAP: %w", err)
	}
	if ex.peer.Succeeded() {
		if sa.conn.eapOnly() && (!eapOnlySafe(ex.method) || len(ex.peer.MSK()) == 0) {
			// Only safe methods were answered; this is the check
			// that nothing else got through (RFC 5998 §4).
			ex.peer.Close()
			return fmt.Errorf("EAP-only authentication (RFC 5998): %s does not authenticate the responder", eapMethodName(ex.method))
		}
		ex.success, ex.msk = true, ex.peer.MSK()
	} else {
		ex.resp = resp
	}
	x.needMore()
	return nil
}

// --- responder ---

func (eapAuth) roundRespond(sa *ikeSA, x *authExchange, m *message) ([]wire.Payload, error) {
	if sa.conn.RemoteAuth != AuthEAP {
		return nil, nil
	}
	if x.eap == nil {
		x.eap = &eapExchange{}
		sa.askEAP(x, nil) // the backend's first Request
		return nil, nil
	}
	ex := x.eap
	if ex.succeeded {
		// The initiator's AUTH, keyed with the MSK (§2.16); ours goes
		// in the last response, with what the features answer.
		auth, ok := wire.First[*wire.Auth](m.payloads)
		if !ok || auth.Method != wire.AuthSharedKeyMIC {
			return nil, errors.New("no AUTH after EAP-Success")
		}
		idi, _ := wire.First[*wire.ID](x.first.payloads)
		if want := sa.eapAuthData(ex.msk, true, idi.Body()); subtle.ConstantTimeCompare(want, auth.Data) != 1 {
			return nil, errors.New("the initiator's AUTH over the EAP key does not verify")
		}
		id := sa.conn.localIDPayload(true)
		return []wire.Payload{&wire.Auth{Method: wire.AuthSharedKeyMIC, Data: sa.eapAuthData(ex.msk, false, id.Body())}}, nil
	}
	p, ok := wire.First[*wire.EAP](m.payloads)
	if !ok || p.Code != wire.EAPResponse {
		return nil, errors.New("IKE_AUTH request without an EAP Response")
	}
	if ex.asked >= maxEAPRounds {
		return nil, fmt.Errorf("EAP goes on for more than %d rounds", maxEAPRounds)
	}
	raw := eapRaw(p)
	if eap.Type(p.MethodType) == eap.TypeIdentity && ex.identity == nil {
		ex.identity = bytes.Clone(p.Data[:min(len(p.Data), 253)]) // a RADIUS attribute's worth
	} else if p.MethodType > uint8(eap.TypeNak) {
		ex.method = p.MethodType
	}
	sa.askEAP(x, raw)
	return nil, nil
}

// askEAP puts the request on hold and asks the backend.
func (sa *ikeSA) askEAP(x *authExchange, msg []byte) {
	ex := x.eap
	ex.asked++
	ex.waiting = true
	x.wait = true
	id := ikeauth.FormatID(sa.peerID.Type, sa.peerID.Data)
	text := []byte(id)
	if t := sa.peerID.Type; t == wire.IDFQDN || t == wire.IDRFC822Addr || t == wire.IDKeyID {
		text = bytes.Clone(sa.peerID.Data)
	}
	sa.e.emit(AskEAP{IKESA: sa.id, Conn: sa.conn.Name, Round: ex.asked, Message: msg, Identity: bytes.Clone(ex.identity),
		PeerID: id, PeerIDText: text, Local: sa.local, Remote: sa.remote})
}

// AnswerEAP gives the backend's answer to an AskEAP of IKE SA id: the
// held IKE_AUTH request is answered with the next EAP Request, or with
// EAP-Success (the initiator's AUTH comes next), or with EAP-Failure,
// after which the SA goes (§2.16, §2.21.2). An answer nobody waits for
// (the SA gone, a stale round) is an error and changes nothing.
func (e *Engine) AnswerEAP(now time.Time, id uint64, a EAPAnswer) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	if sa == nil || sa.state != stateConnecting || sa.hs == nil || sa.hs.auth == nil || sa.hs.auth.eap == nil {
		return e.end(), fmt.Errorf("ike: IKE SA %d waits for no EAP answer", id)
	}
	x := sa.hs.auth
	ex := x.eap
	if !ex.waiting || a.Round != ex.asked {
		return e.end(), fmt.Errorf("ike: IKE SA %d waits for EAP round %d, not %d", id, ex.asked, a.Round)
	}
	m, ps := x.held, x.heldPS
	ex.waiting, x.held, x.heldPS, x.wait = false, nil, nil, false
	if ex.identity == nil && len(a.Identity) > 0 {
		ex.identity = bytes.Clone(a.Identity[:min(len(a.Identity), 253)])
	}
	sa.extendAuthDeadline() // the initiator waited for the backend too
	fail := func(code eap.Code, why string) ([]Action, error) {
		msg := a.Message
		if p, err := eap.Parse(msg); err != nil || p.Code != code {
			msg = []byte{byte(code), 0, 0, 4}
		}
		pl, _ := eapPayload(msg)
		sa.respond(m, append(ps, pl))
		e.log.Warn("EAP authentication refused", "ike", sa.id, "peer", sa.peerIdentity(), "eap_identity", string(ex.identity), "why", why)
		e.destroy(sa, "EAP: "+why)
		return e.end(), nil
	}
	switch a.Verdict {
	case EAPContinue:
		pl, err := eapPayload(a.Message)
		if err != nil || pl.Code != wire.EAPRequest {
			return fail(eap.CodeFailure, "the backend's answer is no EAP Request")
		}
		x.more = true
		sa.hs.auth = x
		sa.respond(m, append(ps, pl))
	case EAPAccept:
		if sa.conn.eapOnly() && (!eapOnlySafe(ex.method) || len(a.MSK) == 0) {
			// Our last AUTH is all that authenticates us: keyed
			// with no MSK, or the MSK of a method an impostor could
			// have run, it would prove nothing (RFC 5998 §4).
			return fail(eap.CodeFailure, fmt.Sprintf("EAP-only authentication (RFC 5998) with %s, which does not authenticate the gateway; use EAP-TLS or another mutual, key-generating method", eapMethodName(ex.method)))
		}
		ex.succeeded, ex.msk, ex.answer = true, bytes.Clone(a.MSK), a
		ex.answer.Message, ex.answer.MSK = nil, nil
		msg := a.Message
		if p, err := eap.Parse(msg); err != nil || p.Code != eap.CodeSuccess {
			msg = []byte{byte(eap.CodeSuccess), 0, 0, 4}
		}
		pl, _ := eapPayload(msg)
		x.more = true
		sa.hs.auth = x
		sa.respond(m, append(ps, pl))
	case EAPReject:
		return fail(eap.CodeFailure, or(a.Why, "rejected by the EAP backend"))
	default:
		return fail(eap.CodeFailure, or(a.Why, "the EAP backend did not answer"))
	}
	return e.end(), nil
}

// eapMethodName names an EAP method type for displays.
func eapMethodName(t uint8) string {
	switch eap.Type(t) {
	case 0:
		return "EAP"
	case eap.TypeMD5Challenge:
		return "EAP-MD5"
	case eap.TypeMSCHAPv2:
		return "EAP-MSCHAPv2"
	case eap.TypeTLS:
		return "EAP-TLS"
	case eap.TypeTTLS:
		return "EAP-TTLS"
	}
	return fmt.Sprintf("EAP-%d", t)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
