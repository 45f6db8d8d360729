package ike

import (
	"time"

	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// ikeAuthTask is the initiator's IKE_AUTH (RFC 7296 §1.2) with the first
// Child SA piggybacked.
type ikeAuthTask struct {
	child *childRequest
	idi   *wire.ID
	cp    bool
}

func (t *ikeAuthTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	c := sa.conn
	t.idi = c.localIDPayload(false)
	ps := []wire.Payload{t.idi}
	if c.LocalAuth == AuthPubkey {
		for _, cert := range ikeauth.CertPayloads(c.Certs) {
			ps = append(ps, cert)
		}
	}
	if c.RemoteAuth == AuthPubkey {
		ps = append(ps, &wire.CertReq{Encoding: wire.CertX509Signature, Data: ikeauth.CertReqData(c.CAs)})
	}
	if !c.RemoteID.Any() {
		ps = append(ps, &wire.ID{Responder: true, IDType: c.RemoteID.Type, Data: c.RemoteID.Data})
	}
	auth, err := sa.authPayload(t.idi)
	if err != nil {
		return 0, nil, err
	}
	ps = append(ps, auth)
	if c.RequestVIP4 || c.RequestVIP6 {
		t.cp = true
		ps = append(ps, vipRequest(c))
	}
	cfg := c.startChild()
	if sa.onlyChild != nil {
		cfg = sa.onlyChild
	}
	if cfg != nil {
		t.child = sa.newChildRequest(cfg, nil, false)
		ps = append(ps, t.child.payloads()...)
	}
	if c.SendInitialContact && !sa.e.hasPeerSA(sa) {
		ps = append(ps, wire.NewNotify(wire.NotifyInitialContact, nil))
	}
	ps = append(ps, sa.windowNotify()...)
	if c.MOBIKE {
		ps = append(ps, wire.NewNotify(wire.NotifyMOBIKESupported, nil))
		ps = append(ps, sa.addressPayloads(false)...)
		if !sa.peerNATT {
			// Without NAT traversal the first IKE_AUTH request protects
			// the addresses it was sent with (RFC 4555 §3.9).
			ps = append(ps, sa.noNATs())
		}
	}
	if c.Clone {
		ps = append(ps, wire.NewNotify(wire.NotifyCloneIKESASupported, nil)) // RFC 7791 §5.1
	}
	return wire.IKEAuth, ps, nil
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

// hasPeerSA reports whether another IKE SA of this connection to the same
// peer address exists, even half made; INITIAL_CONTACT is only for the
// first (§2.4).
func (e *Engine) hasPeerSA(sa *ikeSA) bool {
	for _, o := range e.byID {
		if o != sa && o.conn == sa.conn && o.remote.Addr() == sa.remote.Addr() && o.state != stateDead {
			return true
		}
	}
	return false
}

// authPayload computes our AUTH over the octets of §2.15: our IKE_SA_INIT
// message, the peer's nonce and prf(SK_p, our ID body).
func (sa *ikeSA) authPayload(id *wire.ID) (*wire.Auth, error) {
	c := sa.conn
	msg, nonce, skp := sa.initReq, sa.nr, sa.skp[0]
	if !sa.initiator {
		msg, nonce, skp = sa.initResp, sa.ni, sa.skp[1]
	}
	octets := ikecrypto.SignedOctets(sa.suite.PRF, msg, nonce, skp, id.Body())
	switch c.LocalAuth {
	case AuthPSK:
		return &wire.Auth{Method: wire.AuthSharedKeyMIC, Data: ikecrypto.PSKAuth(sa.suite.PRF, c.PSK, octets)}, nil
	case AuthPubkey:
		method, data, err := ikeauth.Sign(c.Key, sa.peerHashes, octets, ikeauth.SignOptions{RSAPSS: c.RSAPSS}, sa.e.cfg.Rand)
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
	msg, nonce, skp := sa.initResp, sa.ni, sa.skp[1]
	if !sa.initiator {
		msg, nonce, skp = sa.initReq, sa.nr, sa.skp[0]
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
		leaf, err := ikeauth.VerifyChain(chain, roots, sa.e.now)
		if err != nil {
			return err
		}
		if err := ikeauth.MatchID(leaf, id); err != nil {
			return err
		}
		return ikeauth.Verify(leaf.PublicKey, auth.Method, auth.Data, octets, ikeauth.SupportedHashes())
	}
	return fmt.Errorf("remote auth %v", c.RemoteAuth)
}

func (t *ikeAuthTask) abort(sa *ikeSA, reason string) {
	if t.child != nil {
		t.child.release(sa)
	}
}

func (t *ikeAuthTask) process(sa *ikeSA, m *message) {
	e, c := sa.e, sa.conn
	idr, _ := wire.First[*wire.ID](m.payloads)
	auth, _ := wire.First[*wire.Auth](m.payloads)
	if n := m.notify(wire.NotifyAuthenticationFailed); n != nil || idr == nil || auth == nil || !idr.Responder {
		why := "IKE_AUTH response without IDr and AUTH"
		if n != nil {
			why = "peer refused our authentication (AUTHENTICATION_FAILED)"
		} else if en := m.errorNotify(); en != nil {
			why = "peer answered IKE_AUTH with " + en.NotifyType.String()
		}
		t.abort(sa, why)
		e.destroy(sa, why)
		return
	}
	if !c.RemoteID.Any() && !ikeauth.IDEqual(c.RemoteID.Type, c.RemoteID.Data, idr.IDType, idr.Data) {
		t.authFailed(sa, fmt.Sprintf("peer identity %s is not the configured %s",
			ikeauth.FormatID(idr.IDType, idr.Data), ikeauth.FormatID(c.RemoteID.Type, c.RemoteID.Data)))
		return
	}
	if err := sa.verifyAuth(c, idr, auth, wire.All[*wire.Cert](m.payloads)); err != nil {
		t.authFailed(sa, "peer authentication failed: "+err.Error())
		return
	}
	sa.peerID = ID{Type: idr.IDType, Data: bytes.Clone(idr.Data)}
	sa.localID = c.LocalID
	sa.mobike = c.MOBIKE && m.notify(wire.NotifyMOBIKESupported) != nil
	sa.cloneLocal, sa.clonePeer = c.Clone, m.notify(wire.NotifyCloneIKESASupported) != nil
	if sa.mobike {
		sa.readPeerAddrs(m)
	}
	if cp, ok := wire.First[*wire.CP](m.payloads); ok && t.cp && cp.CFGType == wire.CFGReply {
		sa.localVIPs = cpAddrs(cp)
	}
	sa.establish()
	if len(sa.localVIPs) > 0 {
		e.event(sa, EventVirtualIP, fmt.Sprint(sa.localVIPs))
	}
	if t.child != nil {
		if _, err := t.child.complete(sa, m, sa.ni, sa.nr, nil); err != nil {
			// The IKE SA stays up when only its first Child SA fails (§1.2).
			e.event(sa, EventChildFailed, err.Error())
			if t.child.peerCreated(m) {
				sa.queue(&childDeleteTask{orphan: t.child.inSPI})
			}
		}
	}
	// Children with Start that did not ride in IKE_AUTH come next, and
	// on reauthentication every child the old SA had.
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
	if t.child != nil {
		want[t.child.cfg]--
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
	// AUTH material is not needed again; do not keep it per SA.
	sa.skp = [2][]byte{}
	sa.initReq, sa.initResp, sa.dh = nil, nil, nil
	sa.armLifetimes()
	sa.armDPD()
	sa.armKeepalive()
	e.event(sa, EventIKEUp, fmt.Sprintf("%s %s %s <-> %s %s", sa.neg.String(),
		ikeauth.FormatID(sa.localID.Type, sa.localID.Data), sa.local, sa.remote, ikeauth.FormatID(sa.peerID.Type, sa.peerID.Data)))
	e.log.Info("IKE SA established", "ike", sa.id, "conn", sa.conn.Name, "peer", ikeauth.FormatID(sa.peerID.Type, sa.peerID.Data),
		"local", sa.local, "remote", sa.remote, "proposal", sa.neg.String())
}

// armLifetimes schedules rekey or reauthentication, and the hard limit.
func (sa *ikeSA) armLifetimes() {
	e, c := sa.e, sa.conn
	sa.rekeyT.cancel()
	sa.reauthT.cancel()
	sa.expireT.cancel()
	soft := c.RekeyTime
	if c.ReauthTime > 0 && (soft == 0 || c.ReauthTime < soft) {
		// Reauthentication is due for the whole family at once, counted
		// from its authentication (RFC 7791 §8): clones inherit the time.
		due := c.ReauthTime
		if sa.family != nil {
			due = sa.family.authTime.Add(c.ReauthTime).Sub(e.now)
		}
		soft = due
		sa.reauthT = e.after(e.jitter(due, c.RandTime), func() { sa.reauthenticate() })
	} else if c.RekeyTime > 0 {
		sa.rekeyT = e.after(e.jitter(c.RekeyTime, c.RandTime), func() {
			if sa.state == stateEstablished {
				sa.queue(&ikeRekeyTask{})
			}
		})
	}
	if soft > 0 {
		over := c.OverTime
		if over == 0 {
			over = soft / 10
		}
		sa.expireT = e.after(soft+over, func() { e.destroy(sa, "IKE SA lifetime expired") })
	}
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
		idle := sa.e.now.Sub(sa.lastInbound)
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

// respondAuth is the responder's IKE_AUTH.
func (sa *ikeSA) respondAuth(m *message) {
	e := sa.e
	if sa.initiator || sa.state != stateConnecting {
		// We do not do multiple authentication rounds (RFC 4739) or EAP.
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, "unexpected IKE_AUTH request")
		return
	}
	idi, _ := wire.First[*wire.ID](m.payloads)
	auth, _ := wire.First[*wire.Auth](m.payloads)
	if idi == nil || idi.Responder || auth == nil {
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, "IKE_AUTH request without IDi or AUTH (EAP is not supported)")
		return
	}
	if n := m.notify(wire.NotifyNoNATsAllowed); n != nil && !noNATsMatch(n, m.d) {
		// RFC 4555 §3.9: something between us rewrote the addresses.
		sa.respond(m, errorNotify(wire.NotifyUnexpectedNATDetected, nil))
		e.destroy(sa, "NO_NATS_ALLOWED does not match the IP header (RFC 4555 §3.9)")
		return
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
	c, err := e.authConn(sa, idi, idr, auth, wire.All[*wire.Cert](m.payloads))
	if err != nil {
		e.log.Warn("IKE_AUTH refused", "ike", sa.id, "peer", ikeauth.FormatID(idi.IDType, idi.Data), "remote", sa.remote, "err", err)
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, "authentication failed: "+err.Error())
		return
	}
	sa.conn = c
	sa.peerID = ID{Type: idi.IDType, Data: bytes.Clone(idi.Data)}
	sa.localID = c.LocalID
	idrOut := c.localIDPayload(true)
	ps := []wire.Payload{idrOut}
	if c.LocalAuth == AuthPubkey {
		for _, cert := range ikeauth.CertPayloads(c.Certs) {
			ps = append(ps, cert)
		}
	}
	ourAuth, err := sa.authPayload(idrOut)
	if err != nil {
		sa.respond(m, errorNotify(wire.NotifyAuthenticationFailed, nil))
		e.destroy(sa, err.Error())
		return
	}
	ps = append(ps, ourAuth)
	if m.notify(wire.NotifyInitialContact) != nil {
		e.initialContact(sa)
	}
	sa.mobike = c.MOBIKE && m.notify(wire.NotifyMOBIKESupported) != nil
	sa.cloneLocal, sa.clonePeer = c.Clone, m.notify(wire.NotifyCloneIKESASupported) != nil
	e.newFamily(sa) // before the pool: the lease belongs to the family
	var childErr wire.NotifyType
	if cp, ok := wire.First[*wire.CP](m.payloads); ok && cp.CFGType == wire.CFGRequest {
		reply, nt := sa.assignVIPs(cp, sa.peerIdentity())
		if reply != nil {
			ps = append(ps, reply)
		}
		childErr = nt
	}
	if _, hasSA := wire.First[*wire.SA](m.payloads); hasSA {
		if childErr != 0 {
			ps = append(ps, wire.NewNotify(childErr, nil))
		} else {
			cps, child, nt := sa.acceptChild(m, sa.ni, sa.nr, nil, nil)
			if nt != 0 {
				ps = append(ps, wire.NewNotify(nt, nil))
				e.event(sa, EventChildFailed, "first Child SA refused: "+nt.String())
			} else {
				ps = append(ps, cps...)
				defer child.install()
			}
		}
	}
	ps = append(ps, sa.windowNotify()...)
	if sa.mobike {
		ps = append(ps, wire.NewNotify(wire.NotifyMOBIKESupported, nil))
		ps = append(ps, sa.addressPayloads(false)...)
		sa.readPeerAddrs(m)
	}
	if c.Clone {
		ps = append(ps, wire.NewNotify(wire.NotifyCloneIKESASupported, nil)) // RFC 7791 §5.1
	}
	// Authentication octets are needed for our AUTH above; establish after.
	sa.respond(m, ps)
	sa.establish()
	if len(sa.remoteVIPs) > 0 {
		e.event(sa, EventVirtualIP, fmt.Sprint(sa.remoteVIPs))
	}
}

// authConn finds the connection that admits the peer's identity and
// verifies its AUTH. Connections naming the peer's ID win over those
// accepting any ID.
func (e *Engine) authConn(sa *ikeSA, idi, idr *wire.ID, auth *wire.Auth, certs []*wire.Cert) (*Connection, error) {
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
	var errs []error
	for _, c := range candidates {
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

// initialContact deletes the other IKE SAs of this peer identity: it tells
// us the peer lost them (RFC 7296 §2.4). Only SAs begun before this one
// can be such leftovers; younger ones are the peer's current state.
func (e *Engine) initialContact(sa *ikeSA) {
	for _, o := range e.sortedSAs() {
		if o != sa && o.conn == sa.conn && o.state != stateConnecting && o.created.Before(sa.created) &&
			o.peerIdentity() == sa.peerIdentity() {
			e.destroy(o, "INITIAL_CONTACT from the same peer")
		}
	}
}

// vipRequest asks for the virtual IPs (and DNS servers) c wants (§2.19).
func vipRequest(c *Connection) *wire.CP {
	cp := &wire.CP{CFGType: wire.CFGRequest}
	if c.RequestVIP4 {
		cp.Attributes = append(cp.Attributes, wire.CPAttribute{Type: wire.CPInternalIP4Address}, wire.CPAttribute{Type: wire.CPInternalIP4DNS})
	}
	if c.RequestVIP6 {
		cp.Attributes = append(cp.Attributes, wire.CPAttribute{Type: wire.CPInternalIP6Address}, wire.CPAttribute{Type: wire.CPInternalIP6DNS})
	}
	return cp
}

// wildcardTS is what a Child SA proposes for our side while it waits for
// a virtual IP: the whole space, which the responder narrows to it.
func wildcardTS(c *Connection) []wire.Selector {
	var l []wire.Selector
	if c.RequestVIP4 {
		l = append(l, ts.FromPrefix(netip.MustParsePrefix("0.0.0.0/0")))
	}
	if c.RequestVIP6 {
		l = append(l, ts.FromPrefix(netip.MustParsePrefix("::/0")))
	}
	return l
}

// cpAddrs are the addresses a CFG_REPLY assigns.
func cpAddrs(cp *wire.CP) []netip.Addr {
	var out []netip.Addr
	for _, a := range cp.Attributes {
		if a.Type == wire.CPInternalIP4Address {
			if ip, ok := a.Addr(); ok {
				out = append(out, ip)
			}
		} else if a.Type == wire.CPInternalIP6Address {
			if p, ok := a.Prefix6(); ok {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}

// vipReply repeats addresses already assigned.
func vipReply(vips []netip.Addr) *wire.CP {
	reply := &wire.CP{CFGType: wire.CFGReply}
	for _, a := range vips {
		if a.Is4() {
			reply.Attributes = append(reply.Attributes, wire.CPAddr(wire.CPInternalIP4Address, a))
		} else {
			reply.Attributes = append(reply.Attributes, wire.CPPrefix6(wire.CPInternalIP6Address, netip.PrefixFrom(a, 128)))
		}
	}
	return reply
}

// assignVIPs answers a CP request from the connection's pools (§2.19).
func (sa *ikeSA) assignVIPs(req *wire.CP, owner string) (*wire.CP, wire.NotifyType) {
	c := sa.conn
	if len(c.Pools) == 0 {
		return nil, 0 // no pools: the request is ignored, as strongSwan does
	}
	want4, want6 := false, false
	for _, a := range req.Attributes {
		want4 = want4 || a.Type == wire.CPInternalIP4Address
		want6 = want6 || a.Type == wire.CPInternalIP6Address
	}
	reply := &wire.CP{CFGType: wire.CFGReply}
	for _, p := range c.Pools {
		is4 := p.Prefix.Addr().Is4()
		if (is4 && !want4) || (!is4 && !want6) {
			continue
		}
		addr, err := p.Acquire(owner)
		if err != nil {
			sa.e.log.Warn("cannot assign a virtual IP", "ike", sa.id, "err", err)
			return nil, wire.NotifyInternalAddressFailure
		}
		sa.family.leases = append(sa.family.leases, poolLease{pool: p, addr: addr})
		sa.remoteVIPs = append(sa.remoteVIPs, addr)
		if is4 {
			reply.Attributes = append(reply.Attributes, wire.CPAddr(wire.CPInternalIP4Address, addr))
			for _, d := range p.DNS {
				if d.Is4() {
					reply.Attributes = append(reply.Attributes, wire.CPAddr(wire.CPInternalIP4DNS, d))
				}
			}
		} else {
			reply.Attributes = append(reply.Attributes, wire.CPPrefix6(wire.CPInternalIP6Address, netip.PrefixFrom(addr, 128)))
			for _, d := range p.DNS {
				if d.Is6() {
					reply.Attributes = append(reply.Attributes, wire.CPAddr(wire.CPInternalIP6DNS, d))
				}
			}
		}
	}
	if len(reply.Attributes) == 0 {
		return nil, wire.NotifyInternalAddressFailure
	}
	return reply, 0
}
