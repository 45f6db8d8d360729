package ike

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// redirectFeature is RFC 5685's redirect mechanism, both roles.
//
// As the end user (the initiator) we announce REDIRECT_SUPPORTED in
// IKE_SA_INIT (§3, §9.1) unless Connection.NoRedirect. A REDIRECT in the
// IKE_SA_INIT response is unauthenticated: it is acted on only if its
// Nonce Data is our Ni (§3: otherwise silently discarded, and we keep
// waiting for the real response), and then the same SA starts over
// with IKE_SA_INIT to the new gateway, carrying REDIRECTED_FROM with the
// address that redirected us (§9.3) and REDIRECT_SUPPORTED again. At
// most Config.MaxRedirects redirects are taken within
// Config.RedirectLoopPeriod (§7: 5 in 300 s by default); the next one
// ends the attempt. The new address serves this SA only: the
// connection's remote addresses are not changed (§3: "MUST NOT result in
// the modification of any PAD or SPD entries"), and the new gateway must
// prove the identity the connection expects. A REDIRECT in an
// INFORMATIONAL request on an established SA (§5, authenticated) is
// acknowledged with an empty response, and a new IKE SA is set up with
// the new gateway, make-before-break as a reauthentication (RFC 7296
// §2.8.3): the old SA is deleted once the new one is up.
//
// As a gateway (the responder) we redirect at IKE_SA_INIT (§3) a peer
// that sent REDIRECT_SUPPORTED or REDIRECTED_FROM, when the engine's
// Redirector or the connection's RedirectTo names a gateway: the answer
// is the REDIRECT notify alone, with the peer's Ni, and nothing is kept
// (no half-open SA; the responder SPI is zero). A gateway that would
// send the peer back where it came from (its REDIRECTED_FROM) or to the
// address it reached us at is ignored, and the request served: a loop
// is worse than a busy gateway. Engine.Redirect sends an established
// SA's peer away (§5). Redirect during IKE_AUTH (§6) is not done.
type redirectFeature struct{}

func (redirectFeature) String() string { return "redirect (RFC 5685)" }

// Defaults of §7's MAX_REDIRECTS and REDIRECT_LOOP_DETECT_PERIOD.
const (
	defaultMaxRedirects       = 5
	defaultRedirectLoopPeriod = 300 * time.Second
)

// RedirectQuery is what a Redirector decides on: an IKE_SA_INIT request
// (RFC 5685 §3) for connection Conn, which arrived at Local from Remote.
type RedirectQuery struct {
	Conn          string
	Local, Remote netip.AddrPort
	// Supported: the peer sent REDIRECT_SUPPORTED or REDIRECTED_FROM
	// (§3, §9.3). Whatever the Redirector answers, a peer without it is
	// never redirected (§3: "MUST NOT").
	Supported bool
	// RedirectedFrom is the gateway that sent the peer here (its
	// REDIRECTED_FROM, §9.3), invalid if none. The engine never
	// redirects a peer back to it, nor to Local.
	RedirectedFrom netip.Addr
}

// Redirector chooses the gateway a peer should use instead of this one,
// ok false to serve it here. It is called from the engine's event loop
// and must be deterministic and not block: a gateway cluster looks at
// its view of the nodes' loads, nothing more.
type Redirector func(q RedirectQuery) (gw netip.Addr, ok bool)

// SetRedirector installs f (nil removes it). It is consulted for every
// IKE_SA_INIT request that reaches proposal selection, before the
// connection's RedirectTo.
func (e *Engine) SetRedirector(f Redirector) { e.redirector = f }

func (redirectFeature) initRequest(x *initExchange) []wire.Payload {
	if x.conn.NoRedirect {
		return nil
	}
	x.ext.redirectLocal = true
	ps := []wire.Payload{wire.NewNotify(wire.NotifyRedirectSupported, nil)}
	if from := x.ext.redirectFrom; from.IsValid() {
		// §3: REDIRECTED_FROM to the new gateway; §9.3 says it also
		// states support, but REDIRECT_SUPPORTED costs 8 octets and a
		// gateway that only looks for it still knows we take redirects.
		if d, err := wire.MarshalRedirectedFrom(from); err == nil {
			ps = append(ps, wire.NewNotify(wire.NotifyRedirectedFrom, d))
		}
	}
	return ps
}

func (redirectFeature) readInit(x *initExchange, m *message) {
	if m.IsResponse() {
		return
	}
	// §3: "The gateway MUST keep track of those clients that indicated
	// support for the redirect mechanism and those that didn't."
	x.ext.redirectPeer = m.notify(wire.NotifyRedirectSupported) != nil || m.notify(wire.NotifyRedirectedFrom) != nil
}

func (redirectFeature) initResponse(*initExchange, *message) []wire.Payload { return nil }

// redirectTarget asks the Redirector, then the connection, for a gateway
// for q, and checks it is an address a peer can be sent to.
func (e *Engine) redirectTarget(c *Connection, q RedirectQuery) (netip.Addr, bool) {
	var gw netip.Addr
	if e.redirector != nil {
		if a, ok := e.redirector(q); ok {
			gw = a
		}
	}
	if !gw.IsValid() && c.RedirectTo.IsValid() {
		gw = c.RedirectTo
	}
	if !gw.IsValid() {
		return gw, false
	}
	gw = gw.Unmap()
	if !unicastGateway(gw) {
		e.log.Warn("not redirecting to an address no peer can use", "conn", c.Name, "to", gw)
		return netip.Addr{}, false
	}
	return gw, true
}

// unicastGateway reports whether a can be a gateway's address.
func unicastGateway(a netip.Addr) bool {
	return !badSource(netip.AddrPortFrom(a, 500)) && a.Zone() == ""
}

// notRedirected is the responder's step of RFC 5685 §3 in IKE_SA_INIT,
// after the connection is chosen and before any DH work: it answers
// with REDIRECT and the peer's Ni, keeping nothing, and reports false
// when it did.
func (r *initResponder) notRedirected() bool {
	e, m, d := r.e, r.m, r.d
	q := RedirectQuery{Conn: r.c.Name, Local: d.Local, Remote: d.Remote, Supported: m.notify(wire.NotifyRedirectSupported) != nil}
	if n := m.notify(wire.NotifyRedirectedFrom); n != nil {
		if a, err := wire.ParseRedirectedFrom(n.Data); err == nil {
			q.RedirectedFrom, q.Supported = a.Unmap(), true
		} else {
			e.log.Debug("ignoring a malformed REDIRECTED_FROM", "remote", d.Remote, "err", err)
		}
	}
	gw, ok := e.redirectTarget(r.c, q)
	switch {
	case !ok:
		return true
	case !q.Supported:
		// §3: "If the IKE_SA_INIT request did not indicate support
		// for the redirect mechanism, the responder MUST NOT send the
		// REDIRECT payload."
		e.log.Debug("serving a peer that does not take redirects", "conn", r.c.Name, "remote", d.Remote, "would_redirect_to", gw)
		return true
	case gw == d.Local.Addr().Unmap() || gw == q.RedirectedFrom:
		// A redirect to ourselves, or back to where the peer was sent
		// from, is a loop (§7): serve it here instead.
		e.log.Info("not redirecting in a loop, serving here", "conn", r.c.Name, "remote", d.Remote, "to", gw, "redirected_from", q.RedirectedFrom)
		return true
	}
	data, err := wire.MarshalRedirect(gw, r.nonce.Data)
	if err != nil {
		// Ni out of RFC 7296 §3.9's bounds cannot be echoed (§9.2);
		// the request goes on to be judged as any other.
		e.log.Debug("cannot redirect", "remote", d.Remote, "err", err)
		return true
	}
	e.answerInit(m, wire.NotifyRedirect, data)
	e.stats.Redirects++
	e.emit(Event{Kind: EventRedirected, Conn: r.c.Name, Notify: wire.NotifyRedirect,
		Detail: fmt.Sprintf("peer %s to %s in IKE_SA_INIT", d.Remote, gw)})
	e.log.Info("redirecting peer (RFC 5685 §3)", "conn", r.c.Name, "remote", d.Remote, "to", gw)
	return false
}

// redirectedAtInit handles an IKE_SA_INIT response carrying REDIRECT
// (§3): unless it cannot be ours, the SA starts over with the new
// gateway.
func (sa *ikeSA) redirectedAtInit(m *message, n *wire.Notify) {
	e := sa.e
	r, err := wire.ParseRedirect(n.Data)
	switch {
	case sa.conn.NoRedirect || !sa.ext.redirectLocal:
		e.log.Debug("REDIRECT though we did not offer to take one", "ike", sa.id, "remote", m.d.Remote)
	case err != nil:
		e.log.Debug("malformed REDIRECT", "ike", sa.id, "remote", m.d.Remote, "err", err)
	case !bytes.Equal(r.Nonce, sa.hs.ni):
		// §3: "If the values do not match, the client MUST silently
		// discard the response (and keep waiting for another
		// response)."
		e.log.Debug("REDIRECT with another nonce than our Ni", "ike", sa.id, "remote", m.d.Remote)
	default:
		p := sa.outstanding[0]
		p.timer.cancel()
		sa.outstanding = nil
		sa.countNotifies(m.payloads, false)
		sa.followRedirect(r)
		return
	}
	e.drop(DropRedirect, dropped{sa: sa, from: m.d.Remote, h: &m.Header})
}

// followRedirect starts the SA over with IKE_SA_INIT to r's gateway
// (§3), or ends it if the redirect cannot be followed.
func (sa *ikeSA) followRedirect(r wire.Redirect) {
	e := sa.e
	from := sa.remote.Addr().Unmap()
	gw, why := sa.redirectCheck(r)
	if why == "" {
		// §7: at most MAX_REDIRECTS within REDIRECT_LOOP_DETECT_PERIOD
		// for one IKE SA setup.
		recent := sa.hs.redirects[:0]
		for _, t := range sa.hs.redirects {
			if e.now.Sub(t) < e.cfg.RedirectLoopPeriod {
				recent = append(recent, t)
			}
		}
		sa.hs.redirects = recent
		if len(recent) >= e.cfg.MaxRedirects {
			why = fmt.Sprintf("redirected more than %d times within %v (RFC 5685 §7): a loop? last to %s", e.cfg.MaxRedirects, e.cfg.RedirectLoopPeriod, gw)
		}
	}
	var local netip.AddrPort
	if why == "" {
		var ok bool
		if local, ok = e.localFor(sa.conn, sa.local, sa.iface, gw); !ok {
			why = fmt.Sprintf("redirected to %s, but this host has no address of its family", gw)
		}
	}
	if why != "" {
		e.log.Warn("not following the redirect: "+why, "ike", sa.id, "conn", sa.conn.Name, "from", from)
		e.destroy(sa, why)
		return
	}
	redirects := append(sa.hs.redirects, e.now)
	if local.Addr() != sa.local.Addr() {
		sa.iface = ""
	}
	sa.local, sa.remote = local, netip.AddrPortFrom(gw, e.remotePort(sa.conn))
	sa.verified = addrSet{gw}
	sa.ext = extensions{redirectFrom: from}
	sa.hs = &handshake{ni: e.nonce(), redirects: redirects}
	e.event(sa, EventRedirected, fmt.Sprintf("to %s (by %s in IKE_SA_INIT)", gw, from))
	e.log.Info("redirected (RFC 5685 §3), initiating to the new gateway", "ike", sa.id, "conn", sa.conn.Name, "from", from, "to", gw, "redirects", len(redirects))
	t := &ikeInitTask{group: proposal.FirstDH(sa.conn.IKE)}
	if err := t.send(sa); err != nil {
		e.destroy(sa, err.Error())
	}
}

// redirectCheck returns the gateway of r, or why we do not go there.
func (sa *ikeSA) redirectCheck(r wire.Redirect) (netip.Addr, string) {
	if r.FQDN != "" {
		// §9.2 allows a name; the engine resolves nothing (sans-I/O).
		return netip.Addr{}, fmt.Sprintf("redirected to the gateway named %q, and names are not resolved", r.FQDN)
	}
	gw := r.GW.Unmap()
	switch {
	case !unicastGateway(gw):
		return gw, fmt.Sprintf("redirected to %s, which is no unicast address", gw)
	case gw == sa.remote.Addr().Unmap():
		return gw, fmt.Sprintf("redirected by %s to itself (RFC 5685 §7: a loop)", gw)
	}
	return gw, ""
}

// localFor is the address to reach gw from, for the SA now at cur on
// interface iface: the connection's local address of gw's family; cur
// when the SA is pinned to an interface (the new gateway is reached
// over it); the driver's route lookup (Config.SourceAddr); cur if of
// gw's family; or one of the host's addresses of gw's family
// (SetLocalAddresses).
func (e *Engine) localFor(c *Connection, cur netip.AddrPort, iface string, gw netip.Addr) (netip.AddrPort, bool) {
	for _, a := range c.LocalAddrs {
		if a = a.Unmap(); a.Is4() == gw.Is4() && !a.IsUnspecified() {
			return netip.AddrPortFrom(a, cur.Port()), true
		}
	}
	same := cur.Addr().Unmap().Is4() == gw.Is4()
	if iface != "" && same {
		return cur, true
	}
	if e.cfg.SourceAddr != nil {
		if a, err := e.cfg.SourceAddr(gw); err == nil && a.IsValid() {
			return netip.AddrPortFrom(a.Unmap(), cur.Port()), true
		} else if err != nil {
			e.log.Warn("no route to the gateway we are redirected to", "to", gw, "err", err)
		}
	}
	if same {
		return cur, true
	}
	for _, a := range e.localAddrs {
		if a.Is4() == gw.Is4() && !a.IsLinkLocalUnicast() && !a.IsLoopback() {
			return netip.AddrPortFrom(a, cur.Port()), true
		}
	}
	return netip.AddrPort{}, false
}

// Redirect asks the peer of the established IKE SA id to move to gateway
// gw (RFC 5685 §5): an INFORMATIONAL request with REDIRECT and no nonce
// data. Only the original responder may, and only a peer that announced
// support (§3, §10). The peer is expected to set up its SA with gw and
// delete this one; this SA stays until it does (or its lifetime ends).
func (e *Engine) Redirect(now time.Time, id uint64, gw netip.Addr) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	gw = gw.Unmap()
	switch {
	case sa == nil || sa.state != stateEstablished:
		return e.end(), fmt.Errorf("ike: no established IKE SA %d", id)
	case !sa.ext.redirectPeer:
		return e.end(), fmt.Errorf("ike: IKE SA %d: the peer did not announce REDIRECT_SUPPORTED (RFC 5685 §3)", id)
	case !unicastGateway(gw):
		return e.end(), fmt.Errorf("ike: %v is not a gateway address", gw)
	case gw == sa.local.Addr().Unmap():
		return e.end(), fmt.Errorf("ike: IKE SA %d is at %v already", id, gw)
	}
	sa.queue(&redirectTask{gw: gw})
	return e.end(), nil
}

// redirectTask is the gateway's §5 INFORMATIONAL with REDIRECT.
type redirectTask struct{ gw netip.Addr }

func (t *redirectTask) String() string { return "redirect (RFC 5685 §5)" }

func (t *redirectTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished {
		return 0, nil, errSkip
	}
	d, err := wire.MarshalRedirect(t.gw, nil) // §5: "MUST NOT include any nonce data"
	if err != nil {
		return 0, nil, err
	}
	return wire.Informational, []wire.Payload{wire.NewNotify(wire.NotifyRedirect, d)}, nil
}

func (t *redirectTask) process(sa *ikeSA, _ *message) {
	sa.e.stats.Redirects++
	sa.e.event(sa, EventRedirected, fmt.Sprintf("peer to %s (acknowledged, RFC 5685 §5)", t.gw))
	sa.e.log.Info("peer acknowledged the redirect (RFC 5685 §5)", "ike", sa.id, "to", t.gw)
}

func (t *redirectTask) abort(sa *ikeSA, why string) {
	sa.e.log.Info("redirect not delivered: "+why, "ike", sa.id, "to", t.gw)
}

func (redirectFeature) respondInfo(*ikeSA, *message) ([]wire.Payload, bool) {
	return nil, false // §5: the response is "usually empty"
}

// afterInfo follows a gateway-initiated redirect (§5) once our empty
// response went out.
func (redirectFeature) afterInfo(sa *ikeSA, m *message) {
	n := m.notify(wire.NotifyRedirect)
	if n == nil {
		return
	}
	e := sa.e
	r, err := wire.ParseRedirect(n.Data)
	switch {
	case !sa.ext.redirectLocal || sa.conn.NoRedirect:
		e.log.Info("ignoring REDIRECT: we did not announce REDIRECT_SUPPORTED", "ike", sa.id)
		return
	case err != nil:
		e.log.Info("ignoring a malformed REDIRECT", "ike", sa.id, "err", err)
		return
	case r.Nonce != nil:
		e.log.Info("ignoring REDIRECT with nonce data in an INFORMATIONAL (RFC 5685 §9.2)", "ike", sa.id)
		return
	case sa.state != stateEstablished:
		return
	}
	for _, o := range e.byID {
		if o.reauthOf == sa {
			e.log.Info("ignoring REDIRECT: a new IKE SA is being set up already", "ike", sa.id, "new", o.id)
			return
		}
	}
	gw, why := sa.redirectCheck(r)
	var local netip.AddrPort
	if why == "" {
		var ok bool
		if local, ok = e.localFor(sa.conn, sa.local, sa.iface, gw); !ok {
			why = fmt.Sprintf("redirected to %s, but this host has no address of its family", gw)
		}
	}
	if why != "" {
		e.log.Warn("not following the redirect: "+why, "ike", sa.id, "conn", sa.conn.Name)
		return
	}
	iface := sa.iface
	if local.Addr() != sa.local.Addr() {
		iface = ""
	}
	local = netip.AddrPortFrom(local.Addr(), e.cfg.IKEPort)
	from := sa.remote.Addr().Unmap()
	n2, err := e.initiateFrom(sa.conn, local, netip.AddrPortFrom(gw, e.remotePort(sa.conn)), sa.onlyChild, iface, from)
	if err != nil {
		e.log.Warn("cannot follow the redirect", "ike", sa.id, "to", gw, "err", err)
		return
	}
	// Make-before-break, as a reauthentication (RFC 7296 §2.8.3): the
	// new SA takes this one's Child SAs and deletes it once up (RFC 5685
	// §5: the client "SHOULD delete the existing security associations
	// with the old gateway").
	n2.reauthOf = sa
	n2.lineage = sa.lineageID()
	e.event(sa, EventRedirected, fmt.Sprintf("to %s (by %s, RFC 5685 §5): new IKE SA %d", gw, from, n2.id))
	e.log.Info("redirected by the gateway (RFC 5685 §5), setting up a new IKE SA", "ike", sa.id, "new", n2.id, "from", from, "to", gw)
}
