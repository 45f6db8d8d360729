package ike

import (
	"time"

	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// ikeAuthTask is the initiator's IKE_AUTH (RFC 7296 §1.2) with the first
// Child SA piggybacked. Its first request carries our identity and AUTH,
// what every feature asks for (authFeature) and the Child SA; a unit
// that runs rounds of its own (authRounds) makes the task send another
// IKE_AUTH request after each response until no unit needs more
// (§2.16); the features read the last response.
type ikeAuthTask struct {
	x     authExchange
	child *childRequest
}

func (t *ikeAuthTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	t.x.round++
	if t.x.round > 1 {
		ps, err := sa.roundRequests(&t.x)
		return wire.IKEAuth, ps, err
	}
	ps, err := sa.identityPayloads(false)
	if err != nil {
		return 0, nil, err
	}
	rs, err := sa.roundRequests(&t.x)
	if err != nil {
		return 0, nil, err
	}
	ps = append(ps, rs...)
	forEach(sa.e, func(f authFeature) { ps = append(ps, f.authRequest(sa, &t.x)...) })
	cfg := sa.conn.startChild()
	if sa.onlyChild != nil {
		cfg = sa.onlyChild
	}
	if cfg = sa.firstChild(cfg); cfg != nil {
		t.child = sa.newChildRequest(cfg, nil, false)
		ps = append(ps, t.child.payloads()...)
	}
	return wire.IKEAuth, ps, nil
}

// roundRequests are the payloads of the units that run rounds.
func (sa *ikeSA) roundRequests(x *authExchange) (ps []wire.Payload, err error) {
	forEach(sa.e, func(u authRounds) {
		if err == nil {
			var more []wire.Payload
			more, err = u.roundRequest(sa, x)
			ps = append(ps, more...)
		}
	})
	return ps, err
}

// identityPayloads are our ID, certificates, CERTREQ (initiator), the ID
// we expect of the peer (initiator, when configured) and AUTH.
func (sa *ikeSA) identityPayloads(responder bool) ([]wire.Payload, error) {
	c := sa.conn
	id := c.localIDPayload(responder)
	ps := []wire.Payload{id}
	if c.LocalAuth == AuthPubkey {
		for _, cert := range ikeauth.CertPayloads(c.Certs) {
			ps = append(ps, cert)
		}
	}
	if !responder && c.RemoteAuth == AuthPubkey {
		ps = append(ps, &wire.CertReq{Encoding: wire.CertX509Signature, Data: ikeauth.CertReqData(c.CAs)})
	}
	if !responder && !c.RemoteID.Any() {
		ps = append(ps, &wire.ID{Responder: true, IDType: c.RemoteID.Type, Data: c.RemoteID.Data})
	}
	if c.LocalAuth == AuthEAP {
		// The initiator's missing AUTH asks for EAP (§2.16); an EAP-only
		// responder's is left out (RFC 5998 §2). Both come at the end,
		// keyed with the MSK.
		return ps, nil
	}
	auth, err := sa.authPayload(id)
	if err != nil {
		return nil, err
	}
	return append(ps, auth), nil
}

// localIDPayload is our ID payload. A DN identity that names our
// certificate's subject is sent as the certificate's own encoding, so the
// peer's binary comparison succeeds (RFC 4945 §3.1.5).
func (c *Connection) localIDPayload(responder bool) *wire.ID {
	id := &wire.ID{Responder: responder, IDType: c.LocalID.Type, Data: c.LocalID.Data}
	if id.IDType == wire.IDDERASN1DN && len(c.Certs) > 0 &&
		ikeauth.IDEqual(id.IDType, id.Data, wire.IDDERASN1DN, c.Certs[0].RawSubject) {
		id.Data = c.Certs[0].RawSubject
	}
	return id
}

func (c *Connection) startChild() *ChildConfig {
	for _, ch := range c.Children {
		if ch.Start {
			return ch
		}
	}
	return nil
}

// authPayload computes our AUTH over the octets of §2.15: our IKE_SA_INIT
// message, the peer's nonce and prf(SK_p, our ID body).
func (sa *ikeSA) authPayload(id *wire.ID) (*wire.Auth, error) {
	c := sa.conn
	hs := sa.hs
	msg, nonce, skp := hs.initReq, hs.nr, hs.skp[0]
	if !sa.initiator {
		msg, nonce, skp = hs.initResp, hs.ni, hs.skp[1]
	}
	octets := ikecrypto.SignedOctets(sa.suite.PRF, msg, nonce, skp, id.Body())
	switch c.LocalAuth {
	case AuthPSK:
		return &wire.Auth{Method: wire.AuthSharedKeyMIC, Data: ikecrypto.PSKAuth(sa.suite.PRF, c.PSK, octets)}, nil
	case AuthPubkey:
		method, data, err := ikeauth.Sign(c.Key, sa.ext.peerHashes, octets, ikeauth.SignOptions{RSAPSS: c.RSAPSS}, sa.e.cfg.Rand)
		if err != nil {
			return nil, err
		}
		return &wire.Auth{Method: method, Data: data}, nil
	}
	return nil, fmt.Errorf("local auth %v", c.LocalAuth)
}

// verifyAuth checks the peer's AUTH (§2.15), and for certificates the
// chain and that the ID is bound to the certificate (RFC 4945 §3).
func (sa *ikeSA) verifyAuth(c *Connection, id *wire.ID, auth *wire.Auth, certs []*wire.Cert) error {
	hs := sa.hs
	msg, nonce, skp := hs.initResp, hs.ni, hs.skp[1]
	if !sa.initiator {
		msg, nonce, skp = hs.initReq, hs.nr, hs.skp[0]
	}
	octets := ikecrypto.SignedOctets(sa.suite.PRF, msg, nonce, skp, id.Body())
	switch c.RemoteAuth {
	case AuthPSK:
		if auth.Method != wire.AuthSharedKeyMIC {
			return fmt.Errorf("peer used %s, connection %s expects a pre-shared key", auth.Method, c.Name)
		}
		if !ikecrypto.VerifyPSKAuth(sa.suite.PRF, c.PSK, octets, auth.Data) {
			return errors.New("pre-shared key AUTH does not verify (wrong secret?)")
		}
		return nil
	case AuthPubkey:
		if auth.Method == wire.AuthSharedKeyMIC {
			return fmt.Errorf("peer used a pre-shared key, connection %s expects a certificate", c.Name)
		}
		chain, err := ikeauth.ParseCertPayloads(certs)
		if err != nil {
			return err
		}
		if len(chain) == 0 {
			return errors.New("peer sent no certificate")
		}
		roots := x509.NewCertPool()
		for _, ca := range c.CAs {
			roots.AddCert(ca)
		}
		verified, err := ikeauth.VerifiedChain(chain, roots, sa.e.now)
		if err != nil {
			return err
		}
		leaf := verified[0]
		if c.Revocation != nil {
			// Reads only what the daemon fetched (RevocationChecker).
			if err := c.Revocation.CheckRevocation(verified, sa.e.now); err != nil {
				return err
			}
		}
		if err := ikeauth.MatchID(leaf, id); err != nil {
			return err
		}
		if err := ikeauth.Verify(leaf.PublicKey, auth.Method, auth.Data, octets, ikeauth.SupportedHashes()); err != nil {
			return err
		}
		sa.peerChain = verified
		return nil
	}
	return fmt.Errorf("remote auth %v", c.RemoteAuth)
}

func (t *ikeAuthTask) abort(sa *ikeSA, reason string) {
	if t.child != nil {
		t.child.release(sa)
	}
}

func (t *ikeAuthTask) process(sa *ikeSA, m *message) {
	e := sa.e
	if t.x.round == 1 && !t.verifyResponder(sa, m) {
		return
	}
	t.x.more = false
	var err error
	forEach(e, func(u authRounds) {
		if err == nil {
			err = u.roundResponse(sa, &t.x, m)
		}
	})
	if err != nil {
		t.authFailed(sa, "IKE_AUTH round "+fmt.Sprint(t.x.round)+": "+err.Error())
		return
	}
	if t.x.more {
		sa.queueFront(t) // the next round, as the next request (§2.16)
		return
	}
	forEach(e, func(f authFeature) { f.readAuthResponse(sa, &t.x, m) })
	ni, nr := sa.hs.ni, sa.hs.nr
	sa.establish()
	if ex := t.x.eap; ex != nil {
		sa.family.eapIdentity, sa.family.eapMethod = ex.identity, ex.method
	}
	if len(sa.localVIPs) > 0 {
		e.event(sa, EventVirtualIP, fmt.Sprint(sa.localVIPs))
	}
	if t.child != nil {
		if _, err := t.child.complete(sa, m, ni, nr, nil); err != nil {
			// The IKE SA stays up when only its first Child SA fails (§1.2).
			e.emit(Event{Kind: EventChildFailed, IKESA: sa.id, Conn: sa.conn.Name, ChildName: t.child.cfg.Name, Detail: err.Error()})
			if t.child.peerCreated(m) {
				sa.queue(&childDeleteTask{orphan: t.child.inSPI})
			}
		}
	}
	sa.startChildren(t.child)
}

// verifyResponder checks the responder's identity and AUTH in the first
// IKE_AUTH response (§2.15, §2.16: the responder authenticates in its
// first response even when more rounds follow).
func (t *ikeAuthTask) verifyResponder(sa *ikeSA, m *message) bool {
	e, c := sa.e, sa.conn
	idr, _ := wire.First[*wire.ID](m.payloads)
	auth, _ := wire.First[*wire.Auth](m.payloads)
	eapOnly := c.eapOnly()
	if n := m.notify(wire.NotifyAuthenticationFailed); n != nil || idr == nil || (auth == nil && !eapOnly) || !idr.Responder {
		why := "IKE_AUTH response without IDr and AUTH"
		if n != nil {
			why = "peer refused our authentication (AUTHENTICATION_FAILED)"
		} else if en := m.errorNotify(); en != nil {
			why = "peer answered IKE_AUTH with " + en.NotifyType.String()
		}
		t.abort(sa, why)
		e.destroy(sa, why)
		if en := m.errorNotify(); en != nil && en.NotifyType == wire.NotifyUnexpectedNATDetected && sa.natRetries < maxNATRetries {
			// RFC 4555 §3.9: a NAT the configuration forbids may be
			// passing; a few new IKE_SA_INITs before giving up.
			local := netip.AddrPortFrom(sa.local.Addr(), e.cfg.IKEPort)
			remote := netip.AddrPortFrom(sa.remote.Addr(), e.remotePort(sa.conn))
			if n, err := e.initiate(sa.conn, local, remote, sa.onlyChild, sa.iface); err == nil {
				n.natRetries = sa.natRetries + 1
				e.log.Info("peer saw a NAT (UNEXPECTED_NAT_DETECTED); trying again from IKE_SA_INIT", "old", sa.id, "new", n.id, "try", n.natRetries, "of", maxNATRetries)
			}
		}
		return false
	}
	if !c.RemoteID.Any() && !ikeauth.IDEqual(c.RemoteID.Type, c.RemoteID.Data, idr.IDType, idr.Data) {
		t.authFailed(sa, fmt.Sprintf("peer identity %s is not the configured %s",
			ikeauth.FormatID(idr.IDType, idr.Data), ikeauth.FormatID(c.RemoteID.Type, c.RemoteID.Data)))
		return false
	}
	switch {
	case eapOnly && auth != nil:
		// RFC 5998 lets a responder authenticate as usual anyway, but
		// we have nothing to check its AUTH against.
		t.authFailed(sa, "the responder authenticated by "+auth.Method.String()+" although we asked for EAP-only (RFC 5998); to accept that, set remote.auth pubkey with remote.cacerts")
		return false
	case eapOnly:
		// Authenticated by the last AUTH, over this IDr (eapAuth).
	default:
		if err := sa.verifyAuth(c, idr, auth, wire.All[*wire.Cert](m.payloads)); err != nil {
			t.authFailed(sa, "peer authentication failed: "+err.Error())
			return false
		}
	}
	sa.peerID = ID{Type: idr.IDType, Data: bytes.Clone(idr.Data)}
	sa.localID = c.LocalID
	return true
}

// startChildren queues the Child SAs with Start that did not ride in
// IKE_AUTH (first), and on reauthentication every child the old SA had;
// then the old SA goes (make-before-break, §2.8.3).
func (sa *ikeSA) startChildren(first *childRequest) {
	c := sa.conn
	want := map[*ChildConfig]int{}
	for _, cfg := range c.Children {
		if cfg.Start && sa.onlyChild == nil {
			want[cfg]++
		}
	}
	if old := sa.reauthOf; old != nil {
		for _, ch := range old.children {
			if !ch.cfg.Start {
				want[ch.cfg]++
			}
		}
	}
	if first != nil {
		want[first.cfg]--
	}
	for _, cfg := range c.Children {
		for i := 0; i < want[cfg]; i++ {
			sa.queue(&childCreateTask{cfg: cfg})
		}
	}
	if old := sa.reauthOf; old != nil && old.state == stateEstablished {
		// Make-before-break reauthentication (§2.8.3): the new SA is up,
		// now the old one goes.
		old.queue(&ikeDeleteTask{})
	}
	sa.reauthOf = nil // done with it: a chain of reauthentications must not keep them all
}

// reauthenticate runs a fresh IKE_SA_INIT/IKE_AUTH for this connection and
// deletes this SA once the new one is up (RFC 7296 §2.8.3). Only the
// original initiator does: a responder's peer decides its own lifetime.
func (sa *ikeSA) reauthenticate() {
	if sa.state != stateEstablished {
		return
	}
	if sa.parent != 0 {
		// A clone has no authentication of its own: it goes when its
		// family must reauthenticate (whoever manages paths clones the
		// new authentication again).
		sa.e.log.Info("family reauthentication due, deleting clone", "ike", sa.id)
		sa.queue(&ikeDeleteTask{})
		return
	}
	if !sa.initiator {
		return
	}
	local := netip.AddrPortFrom(sa.local.Addr(), sa.e.cfg.IKEPort)
	remote := netip.AddrPortFrom(sa.remote.Addr(), sa.e.remotePort(sa.conn))
	n, err := sa.e.initiate(sa.conn, local, remote, sa.onlyChild, sa.iface)
	if err != nil {
		sa.e.log.Warn("reauthentication failed to start", "ike", sa.id, "err", err)
		return
	}
	n.reauthOf = sa
	n.lineage = sa.lineageID() // the same VPN, authenticated anew (§2.8.3)
	sa.e.log.Info("reauthenticating", "old", sa.id, "new", n.id)
}

// authFailed tells the responder in a separate INFORMATIONAL (§2.21.2)
// and drops the SA.
func (t *ikeAuthTask) authFailed(sa *ikeSA, why string) {
	sa.e.log.Warn(why, "ike", sa.id, "conn", sa.conn.Name)
	t.abort(sa, why)
	sa.sendOneShot(wire.Informational, []wire.Payload{wire.NewNotify(wire.NotifyAuthenticationFailed, nil)})
	sa.e.destroy(sa, why)
}

// establish marks the SA authenticated and arms its lifetime timers.
func (sa *ikeSA) establish() {
	e := sa.e
	sa.state = stateEstablished
	sa.established = e.now
	sa.dataLocal, sa.dataRemote, sa.dataIface = sa.local, sa.remote, sa.iface
	if sa.family == nil {
		e.newFamily(sa)
	}
	sa.mobikeInitiator = sa.initiator
	sa.halfOpenT.cancel()
	sa.halfOpenT = nil // the timer heap drops it when due; the SA need not keep it
	// Handshake material is not needed again; do not keep it per SA.
	sa.hs = nil
	sa.armLifetimes()
	sa.armDPD()
	sa.armPathProbe()
	sa.armKeepalive()
	if sa.watchesNAT() {
		// The mapping the responder took from IKE_AUTH, learned at once
		// (a liveness check's NAT-D): what later checks compare with
		// (watchNAT). Learned at the first periodic check instead, a
		// rebinding before it would go unnoticed.
		sa.queue(&dpdTask{})
	}
	e.emit(Event{Kind: EventIKEUp, IKESA: sa.id, Conn: sa.conn.Name, Handshake: e.now.Sub(sa.created), Initiator: sa.initiator,
		Detail: fmt.Sprintf("%s %s %s <-> %s %s", sa.neg.String(),
			ikeauth.FormatID(sa.localID.Type, sa.localID.Data), sa.local, sa.remote, ikeauth.FormatID(sa.peerID.Type, sa.peerID.Data))})
	e.log.Info("IKE SA established", "ike", sa.id, "conn", sa.conn.Name, "peer", ikeauth.FormatID(sa.peerID.Type, sa.peerID.Data),
		"local", sa.local, "remote", sa.remote, "proposal", sa.neg.String())
}

// ikeDeadlines are when an IKE SA is due for a rekey or a
// reauthentication, and its hard limit (zero: none). They are data, so
// an exported SA keeps them; the timers are armed from them.
type ikeDeadlines struct {
	rekey, reauth, expire time.Time
}

// armLifetimes schedules rekey or reauthentication, and the hard limit.
func (sa *ikeSA) armLifetimes() {
	e, c := sa.e, sa.conn
	var d ikeDeadlines
	soft := c.RekeyTime
	if c.ReauthTime > 0 && (soft == 0 || c.ReauthTime < soft) {
		// Reauthentication is due for the whole family at once, counted
		// from its authentication (RFC 7791 §8): clones inherit the time.
		due := c.ReauthTime
		if sa.family != nil {
			due = sa.family.authTime.Add(c.ReauthTime).Sub(e.now)
		}
		soft = due
		d.reauth = e.now.Add(e.jitter(due, c.RandTime))
	} else if c.RekeyTime > 0 {
		d.rekey = e.now.Add(e.jitter(c.RekeyTime, c.RandTime))
	}
	if soft > 0 {
		over := c.OverTime
		if over == 0 {
			over = soft / 10
		}
		d.expire = e.now.Add(soft + over)
	}
	if f := sa.family; f != nil && !f.end.IsZero() && (d.expire.IsZero() || f.end.Before(d.expire)) {
		d.expire = f.end // the authentication runs out (eap.go)
	}
	sa.armDeadlines(d)
}

// armDeadlines arms the lifetime timers at d.
func (sa *ikeSA) armDeadlines(d ikeDeadlines) {
	e := sa.e
	sa.rekeyT.cancel()
	sa.reauthT.cancel()
	sa.expireT.cancel()
	sa.rekeyT, sa.reauthT, sa.expireT = nil, nil, nil
	if !d.reauth.IsZero() {
		sa.reauthT = e.at(d.reauth, func() { sa.reauthenticate() })
	}
	if !d.rekey.IsZero() {
		sa.rekeyT = e.at(d.rekey, func() {
			if sa.state == stateEstablished {
				sa.queue(&ikeRekeyTask{})
			}
		})
	}
	if !d.expire.IsZero() {
		sa.expireT = e.at(d.expire, func() { e.destroy(sa, "IKE SA lifetime expired") })
	}
}

// deadlines reads the armed lifetime timers back.
func (sa *ikeSA) deadlines() ikeDeadlines {
	e := sa.e
	return ikeDeadlines{rekey: e.deadline(sa.rekeyT), reauth: e.deadline(sa.reauthT), expire: e.deadline(sa.expireT)}
}

// armDPD schedules a liveness check when nothing arrived for DPDDelay
// (§2.4): only an SA that hears nothing from its peer needs one.
func (sa *ikeSA) armDPD() { sa.armDPDIn(sa.conn.DPDDelay) }

// armDPDIn fires after wait; the next check is due DPDDelay after the
// last message from the peer, not after the previous check, or a reply
// arriving just after a check would double the interval.
func (sa *ikeSA) armDPDIn(wait time.Duration) {
	d := sa.conn.DPDDelay
	if d <= 0 {
		return
	}
	sa.dpdT.cancel()
	sa.dpdT = sa.e.after(wait, func() {
		if sa.state != stateEstablished {
			return
		}
		idle := max(sa.e.now.Sub(sa.lastInbound), 0) // a clock set back must not make the wait overflow
		if idle < d {
			sa.armDPDIn(d - idle)
			return
		}
		if len(sa.outstanding) == 0 && len(sa.tasks) == 0 {
			sa.queue(&dpdTask{})
		}
		sa.armDPDIn(d)
	})
}

// respondAuth is the responder's IKE_AUTH. The first request
// authenticates the peer and is kept (authExchange.first): the features
// read it once no unit needs another round, and only the last response
// carries their answers and the first Child SA (§2.16).
func (sa *ikeSA) respondAuth(m *message) {
	e := sa.e
	if sa.initiator || sa.state != stateConnecting || sa.hs == nil {
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, "unexpected IKE_AUTH request")
		return
	}
	x := sa.hs.auth
	var ps []wire.Payload
	if x == nil {
		x = &authExchange{round: 1, first: m}
		var ok bool
		if ps, ok = sa.authenticateInitiator(m); !ok {
			return
		}
	} else {
		x.round++
		sa.extendAuthDeadline()
	}
	x.more = false
	var err error
	forEach(e, func(u authRounds) {
		if err == nil {
			var more []wire.Payload
			more, err = u.roundRespond(sa, x, m)
			ps = append(ps, more...)
		}
	})
	if err != nil {
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, fmt.Sprintf("IKE_AUTH round %d: %v", x.round, err))
		return
	}
	if x.wait {
		// A unit asked outside the engine (EAP): its answer makes
		// the response (AnswerEAP).
		x.held, x.heldPS = m, ps
		sa.hs.auth = x
		return
	}
	if x.more {
		sa.hs.auth = x // the next round continues this exchange
		sa.respond(m, ps)
		return
	}
	sa.finishAuth(x, m, ps)
}

// extendAuthDeadline gives an IKE_AUTH of several rounds (EAP) the
// half-open timeout again from each authentic round: the deadline is
// for an initiator that stopped answering, not for one whose EAP method
// takes many round trips over a lossy path. The rounds are bounded
// (maxEAPRounds), so the whole exchange is too.
func (sa *ikeSA) extendAuthDeadline() {
	e := sa.e
	sa.halfOpenT.cancel()
	sa.halfOpenT = e.after(e.cfg.HalfOpenTimeout, func() {
		e.destroy(sa, "IKE_AUTH did not complete")
	})
}

// authenticateInitiator checks the first IKE_AUTH request: the
// initiator's identity picks the connection and its AUTH must verify
// (§2.15). It returns our identity payloads, or false when it refused the
// request (answered, SA gone).
func (sa *ikeSA) authenticateInitiator(m *message) ([]wire.Payload, bool) {
	e := sa.e
	idi, _ := wire.First[*wire.ID](m.payloads)
	auth, _ := wire.First[*wire.Auth](m.payloads)
	if idi == nil || idi.Responder {
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, "IKE_AUTH request without IDi")
		return nil, false
	}
	var idr *wire.ID
	for _, id := range wire.All[*wire.ID](m.payloads) {
		if id.Responder {
			idr = id
		}
	}
	// RFC 4555 §3.3: the IKE SA's addresses are those of the first
	// IKE_AUTH request (the initiator may have floated to 4500).
	sa.local, sa.remote = m.d.Local, m.d.Remote
	c, err := e.authConn(sa, idi, idr, auth, wire.All[*wire.Cert](m.payloads), m.notify(wire.NotifyEAPOnlyAuthentication) != nil)
	if err != nil {
		e.log.Warn("IKE_AUTH refused", "ike", sa.id, "peer", ikeauth.FormatID(idi.IDType, idi.Data), "remote", sa.remote, "err", err)
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, "authentication failed: "+err.Error())
		return nil, false
	}
	sa.conn = c
	sa.peerID = ID{Type: idi.IDType, Data: bytes.Clone(idi.Data)}
	sa.localID = c.LocalID
	ps, err := sa.identityPayloads(true)
	if err != nil {
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, err.Error())
		return nil, false
	}
	return ps, true
}

// finishAuth answers the last IKE_AUTH request: the features' answers
// to the first request, then the first Child SA; the SA is established
// once the response is out (the AUTH octets were needed for it).
func (sa *ikeSA) finishAuth(x *authExchange, m *message, ps []wire.Payload) {
	e := sa.e
	e.newFamily(sa) // before the features: a virtual IP's lease belongs to the family
	if x.eap != nil {
		sa.family.eapIdentity, sa.family.eapMethod = x.eap.identity, x.eap.method
		if x.eap.answer.SessionTimeout > 0 {
			// RADIUS Session-Timeout (RFC 2865 §5.27) ends the whole
			// family, clones too.
			sa.family.end = e.now.Add(x.eap.answer.SessionTimeout)
		}
	}
	forEach(e, func(f authFeature) {
		if x.refusal == 0 {
			ps = append(ps, f.respondAuth(sa, x)...)
		}
	})
	if x.refusal != 0 {
		sa.respond(m, errorNotify(x.refusal, nil))
		e.destroy(sa, x.refusalWhy)
		return
	}
	var child *childSA
	if _, hasSA := wire.First[*wire.SA](x.first.payloads); hasSA {
		if x.childRefused != 0 {
			ps = append(ps, wire.NewNotify(x.childRefused, nil))
		} else {
			cps, c, nt := sa.acceptChild(x.first, sa.hs.ni, sa.hs.nr, nil, nil)
			if nt != 0 {
				ps = append(ps, wire.NewNotify(nt, nil))
				e.event(sa, EventChildFailed, "first Child SA refused: "+nt.String())
			} else {
				ps = append(ps, cps...)
				child = c
			}
		}
	}
	sa.respond(m, ps)
	sa.establish()
	if len(sa.remoteVIPs) > 0 {
		e.event(sa, EventVirtualIP, fmt.Sprint(sa.remoteVIPs))
	}
	if child != nil {
		child.install()
	}
}

// authConn finds the connection that admits the peer's identity and
// verifies its AUTH. Connections naming the peer's ID win over those
// accepting any ID.
//
// eapOnly is whether the initiator accepts EAP-only authentication (RFC
// 5998 §2): a connection that authenticates us by EAP alone is for such
// initiators only.
func (e *Engine) authConn(sa *ikeSA, idi, idr *wire.ID, auth *wire.Auth, certs []*wire.Cert, eapOnly bool) (*Connection, error) {
	var candidates []*Connection
	for pass := 0; pass < 2; pass++ {
		for _, c := range e.cfg.Connections {
			if !addrAllowed(c.LocalAddrs, sa.local.Addr()) || !addrAllowed(c.RemoteAddrs, sa.remote.Addr()) {
				continue
			}
			if pass == 0 && (c.RemoteID.Any() || !ikeauth.IDEqual(c.RemoteID.Type, c.RemoteID.Data, idi.IDType, idi.Data)) {
				continue
			}
			if pass == 1 && !c.RemoteID.Any() {
				continue
			}
			if idr != nil && !ikeauth.IDEqual(c.LocalID.Type, c.LocalID.Data, idr.IDType, idr.Data) {
				continue
			}
			if !ikeAllows(c, sa.neg) {
				continue
			}
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("no connection for peer %s", ikeauth.FormatID(idi.IDType, idi.Data))
	}
	if auth == nil {
		// No AUTH: the initiator asks for EAP (§2.16), which the
		// connection must do; the EAP unit authenticates it.
		var refused []string
		for _, c := range candidates {
			switch {
			case c.RemoteAuth != AuthEAP:
			case c.eapOnly() && !eapOnly:
				refused = append(refused, c.Name)
			default:
				return c, nil
			}
		}
		if len(refused) > 0 {
			return nil, fmt.Errorf("connection %s authenticates the gateway by EAP only (RFC 5998), which peer %s did not ask for (no EAP_ONLY_AUTHENTICATION)",
				strings.Join(refused, ", "), ikeauth.FormatID(idi.IDType, idi.Data))
		}
		return nil, fmt.Errorf("peer %s asks for EAP (no AUTH), which no connection for it does", ikeauth.FormatID(idi.IDType, idi.Data))
	}
	var errs []error
	for _, c := range candidates {
		if c.RemoteAuth == AuthEAP {
			errs = append(errs, fmt.Errorf("%s: expects EAP, the peer sent AUTH", c.Name))
			continue
		}
		err := sa.verifyAuth(c, idi, auth, certs)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
	}
	return nil, errors.Join(errs...)
}

// ikeAllows reports whether connection c would have chosen neg.
func ikeAllows(c *Connection, neg proposal.Negotiated) bool {
	for _, p := range c.IKE {
		if proposalHas(p, neg) {
			return true
		}
	}
	return false
}

func proposalHas(p proposal.Proposal, n proposal.Negotiated) bool {
	okE, okP, okI, okD := false, false, len(p.Integ) == 0 && n.Integ == 0, false
	for _, a := range p.Encr {
		okE = okE || a == n.Encr
	}
	for _, x := range p.PRF {
		okP = okP || x == n.PRF
	}
	for _, x := range p.Integ {
		okI = okI || x == n.Integ
	}
	for _, x := range p.DH {
		okD = okD || x == n.DH
	}
	return okE && okP && okI && okD
}
