package ike

import (
	"crypto/x509"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// cloneFeature is RFC 7791: CLONE_IKE_SA_SUPPORTED in IKE_AUTH (§5.1),
// the clone request (an IKE SA rekey with CLONE_IKE_SA that keeps the old
// SA, §5.2) in both roles, and draft-00's support statement in an
// INFORMATIONAL for peers that still send it.
type cloneFeature struct{}

func (cloneFeature) String() string { return "clone" }

func (cloneFeature) authRequest(sa *ikeSA, x *authExchange) []wire.Payload {
	if !sa.conn.Clone {
		return nil
	}
	return []wire.Payload{wire.NewNotify(wire.NotifyCloneIKESASupported, nil)}
}

func (cloneFeature) respondAuth(sa *ikeSA, x *authExchange) []wire.Payload {
	sa.ext.cloneLocal, sa.ext.clonePeer = sa.conn.Clone, x.first.notify(wire.NotifyCloneIKESASupported) != nil
	if !sa.conn.Clone {
		return nil
	}
	return []wire.Payload{wire.NewNotify(wire.NotifyCloneIKESASupported, nil)}
}

func (cloneFeature) readAuthResponse(sa *ikeSA, x *authExchange, m *message) {
	sa.ext.cloneLocal, sa.ext.clonePeer = sa.conn.Clone, m.notify(wire.NotifyCloneIKESASupported) != nil
}

func (cloneFeature) respondInfo(sa *ikeSA, m *message) ([]wire.Payload, bool) {
	if m.notify(wire.NotifyCloneIKESASupported) == nil || !sa.conn.Draft00Clone || !sa.conn.Clone {
		return nil, false
	}
	// draft-mglt-ipsecme-clone-ike-sa-00 §6.1 announced support in an
	// INFORMATIONAL and expected it echoed; RFC 7791 ignores it there.
	sa.ext.clonePeer = true
	return []wire.Payload{wire.NewNotify(wire.NotifyCloneIKESASupported, nil)}, false
}

func (cloneFeature) afterInfo(*ikeSA, *message) {}

// respondCreateChild claims IKE SA rekey requests with CLONE_IKE_SA: the
// notify only counts there (§5.2).
func (cloneFeature) respondCreateChild(sa *ikeSA, m *message, offered *wire.SA, nonce *wire.Nonce) bool {
	if offered.Proposals[0].Protocol != wire.ProtoIKE || m.notify(wire.NotifyCloneIKESA) == nil {
		return false
	}
	sa.respondClone(m, offered, nonce)
	return true
}

// family is an authentication and everything derived from it without a
// new one: the IKE SA made by IKE_AUTH, its rekeyed successors and its
// clones (RFC 7791 §8). It owns what belongs to the user rather than to
// one IKE SA: the virtual-IP leases, the authentication time (accounting,
// reauthentication), the caps.
type family struct {
	id uint64
	// token names the family across engines: SAs of one family exported
	// from one engine join one family again where they are imported.
	token    uint64
	authTime time.Time
	// members are few (an SA and its clones, RFC 7791): a slice, where a
	// map cost a few hundred octets for every family of one.
	members []*ikeSA
	leases  []poolLease
	// end, when set, is when the authentication runs out for every SA
	// of the family (RADIUS Session-Timeout, eap.go).
	end time.Time
	// eapIdentity and eapMethod: the family was authenticated by EAP
	// (eap.go), as this identity, by this method type.
	eapIdentity []byte
	eapMethod   uint8
	// peerChain: the chain the authentication verified, end entity
	// first, if any.
	peerChain []*x509.Certificate
}

func (e *Engine) newFamily(sa *ikeSA) {
	e.nextFamily++
	// The token comes from the authenticating SA's SPIs, random and
	// chosen by both peers, so it needs no randomness of its own.
	f := &family{id: e.nextFamily, token: sa.spiI ^ bits.RotateLeft64(sa.spiR, 32), authTime: e.now, peerChain: sa.peerChain}
	sa.peerChain = nil
	e.families[f.id] = f
	f.join(sa)
}

func (f *family) join(sa *ikeSA) {
	sa.family = f
	if !slices.Contains(f.members, sa) {
		f.members = append(f.members, sa)
	}
}

// leave drops a dead or superseded SA. A lease goes back to its pool when
// no SA of the family uses its address any more: the last one out
// releases the authentication's address (RFC 7791 §8: the service lasts
// until the last IKE SA is gone), and a clone's own address (App. A.3)
// goes with the clone and its rekeyed successors, which inherit it. It
// used to wait for the whole family, so every clone deleted while its
// family lived leaked an address until the pool ran out.
func (f *family) leave(sa *ikeSA) {
	if f == nil {
		return
	}
	if i := slices.Index(f.members, sa); i >= 0 {
		f.members = slices.Delete(f.members, i, i+1)
	}
	if len(f.members) == 0 {
		delete(sa.e.families, f.id)
	}
	f.releaseUnused()
}

// releaseUnused gives back the leases of addresses no SA of the family
// uses: called when an SA leaves, and when a clone that showed its
// parent's address gets its own (its parent may have gone meanwhile, and
// then nobody holds the parent's address any more).
func (f *family) releaseUnused() {
	if f == nil {
		return
	}
	kept := f.leases[:0]
	for _, l := range f.leases {
		if f.uses(l.addr) {
			kept = append(kept, l)
		} else {
			l.pool.Release(l.addr)
		}
	}
	clear(f.leases[len(kept):])
	f.leases = kept
}

// uses reports whether an SA of the family has addr as a peer's virtual IP.
func (f *family) uses(addr netip.Addr) bool {
	for _, m := range f.members {
		if slices.Contains(m.remoteVIPs, addr) {
			return true
		}
	}
	return false
}

// size counts the family's established IKE SAs (a rekeyed SA waiting for
// its Delete is not one more).
func (f *family) size() int {
	n := 0
	for _, m := range f.members {
		if m.state == stateEstablished || m.state == stateConnecting {
			n++
		}
	}
	return n
}

func (f *family) children() int {
	n := 0
	for _, m := range f.members {
		n += len(m.children)
	}
	return n
}

func (c *Connection) maxIKESAs() int {
	if c.MaxIKESAs <= 0 {
		return 8
	}
	return c.MaxIKESAs
}

// canClone: an IKE SA may be cloned only when both peers sent
// CLONE_IKE_SA_SUPPORTED for it (RFC 7791 §5.1); rekeys and clones inherit
// that from their parent.
func (sa *ikeSA) canClone() bool { return sa.ext.cloneLocal && sa.ext.clonePeer }

// Clone clones the IKE SA id (RFC 7791 §5.2) and returns the clone's id
// through a later EventIKEUp with the clone's parent in Detail; the
// immediate return is only an error when the clone cannot even be asked
// for. The clone initiator is the clone's MOBIKE initiator.
func (e *Engine) Clone(now time.Time, id uint64) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	switch {
	case sa == nil || sa.state != stateEstablished:
		return e.end(), fmt.Errorf("ike: no established IKE SA %d", id)
	case !sa.ext.cloneLocal:
		return e.end(), fmt.Errorf("ike: connection %s does not enable cloning (clone: enable)", sa.conn.Name)
	case !sa.ext.clonePeer:
		// A clone-less peer would take the request for a plain rekey and
		// the two sides would disagree (RFC 7791 §5.1): never send it.
		return e.end(), fmt.Errorf("ike: the peer of IKE SA %d did not send CLONE_IKE_SA_SUPPORTED; it cannot be cloned", id)
	case sa.family != nil && sa.family.size() >= sa.conn.maxIKESAs():
		return e.end(), fmt.Errorf("ike: the peer already has %d IKE SAs (max_ike_sas)", sa.family.size())
	}
	sa.queue(&cloneTask{})
	return e.end(), nil
}

// cloneTask is the initiator's clone exchange: an IKE SA rekey request
// with N(CLONE_IKE_SA) (RFC 7791 §5.2).
type cloneTask struct {
	ikeRekeyTask
	gen int // the parent's path generation when the request went out
}

func (t *cloneTask) String() string { return "clone IKE SA" }

func (t *cloneTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if !sa.canClone() || sa.state != stateEstablished {
		return 0, nil, errSkip
	}
	t.gen = sa.updateGen
	x, ps, err := t.ikeRekeyTask.request(sa)
	if err != nil {
		return x, ps, err
	}
	return x, append([]wire.Payload{wire.NewNotify(wire.NotifyCloneIKESA, nil)}, ps...), nil
}

func (t *cloneTask) process(sa *ikeSA, m *message) {
	e := sa.e
	if n := m.errorNotify(); n != nil {
		t.abort(sa, n.NotifyType.String())
		switch n.NotifyType {
		case wire.NotifyInvalidKEPayload:
			if g, err := n.Uint16(); err == nil && proposal.AcceptsDH(sa.conn.IKE, wire.DHGroup(g)) && t.tries < 2 {
				// The retry carries CLONE_IKE_SA again.
				sa.queueFront(&cloneTask{ikeRekeyTask: ikeRekeyTask{group: wire.DHGroup(g), tries: t.tries + 1}})
				return
			}
		case wire.NotifyTemporaryFailure:
			// RFC 7791 §5.3, RFC 7296 §2.25: retry after a while.
			if t.tries < 5 && sa.state == stateEstablished {
				sa.retryLater(&cloneTask{ikeRekeyTask: ikeRekeyTask{group: t.group, tries: t.tries + 1}}, t.tries)
				// The Notify says it is not final (EventCloneRefused).
				e.emit(Event{Kind: EventCloneRefused, IKESA: sa.id, Conn: sa.conn.Name, Notify: wire.NotifyTemporaryFailure,
					Detail: "TEMPORARY_FAILURE, retrying"})
				return
			}
			e.event(sa, EventCloneRefused, fmt.Sprintf("TEMPORARY_FAILURE (try %d), not asked again", t.tries+1))
			return
		case wire.NotifyNoAdditionalSAs:
			// Permanent until some SAs with the peer are deleted (§5.3).
			e.emit(Event{Kind: EventCloneRefused, IKESA: sa.id, Conn: sa.conn.Name, Notify: wire.NotifyNoAdditionalSAs,
				Detail: "NO_ADDITIONAL_SAS: the peer allows no more IKE SAs"})
			return
		}
		e.event(sa, EventCloneRefused, n.NotifyType.String())
		return
	}
	// A draft-00 peer echoes N(CLONE_IKE_SA) in the response; RFC 7791
	// peers do not. Either way the response is an IKE rekey response.
	n, err := t.complete(sa, m)
	if err != nil {
		t.abort(sa, err.Error())
		e.event(sa, EventCloneRefused, "clone response: "+err.Error())
		return
	}
	sa.adoptClone(n, true)
	if sa.updateGen != t.gen && n.ext.mobike {
		// The parent moved while the request was out, so its copies may
		// have reached the peer on another path than ours now: settle the
		// clone's addresses (we are its MOBIKE initiator). The path is
		// unconfirmed until the peer answers (§3.5), so a rekey of the
		// clone before then hands the update on to the successor.
		n.pendingUpdate = true
		n.updateGen = n.confirmedGen + 1
		n.queue(&updateTask{})
	}
}

// adoptClone makes n, keyed from this SA, a clone: same peer, addresses
// and capabilities, same family, no Child SAs (RFC 7791 §5.2: they stay
// with the old IKE SA). weInitiated says who cloned: that peer is the
// clone's MOBIKE initiator (see the package doc).
func (sa *ikeSA) adoptClone(n *ikeSA, weInitiated bool) {
	e := sa.e
	n.parent = sa.id
	n.lineage = 0 // a new VPN, not this SA's replacement
	n.pathReset() // a clone goes to a path of its own
	n.vipsInherited = len(n.localVIPs) > 0 || len(n.remoteVIPs) > 0
	n.mobikeInitiator = weInitiated
	n.ext.cloneLocal, n.ext.clonePeer = sa.ext.cloneLocal, sa.ext.clonePeer
	if sa.family != nil {
		sa.family.join(n)
	}
	n.armLifetimes() // again, now that the family (reauth time) is known
	n.continueReturnRoutability()
	sa.announceWindow(n)
	n.next()
	e.emit(Event{Kind: EventIKECloned, IKESA: n.id, Conn: n.conn.Name, From: sa.id,
		Detail: fmt.Sprintf("IKE SA %d cloned to %d, %016x_i %016x_r %s", sa.id, n.id, n.spiI, n.spiR, n.neg.String())})
	e.event(n, EventIKEUp, fmt.Sprintf("clone of IKE SA %d", sa.id))
	e.log.Info("IKE SA cloned", "parent", sa.id, "clone", n.id, "initiator", weInitiated)
}

// respondClone answers a clone request (an IKE rekey with CLONE_IKE_SA):
// create the new IKE SA, keep the old one, no notify in the response
// (RFC 7791 §5.2). Refusals follow §5.3.
func (sa *ikeSA) respondClone(m *message, offered *wire.SA, nonce *wire.Nonce) {
	e := sa.e
	switch {
	case !sa.canClone():
		// Support was not negotiated on this SA: refuse without harming
		// it (NO_ADDITIONAL_SAS is a valid refusal of an IKE rekey, §1.3).
		sa.respond(m, errorNotify(wire.NotifyNoAdditionalSAs, nil))
		e.event(sa, EventCloneRefused, "peer asked to clone an SA without CLONE_IKE_SA_SUPPORTED")
		return
	case sa.state != stateEstablished || sa.deleteInFlight():
		sa.respond(m, errorNotify(wire.NotifyTemporaryFailure, nil))
		return
	case len(e.sas) >= e.cfg.MaxIKESAs:
		// Short of resources (the engine's table is full): maybe later
		// (RFC 7791 §5.3).
		sa.respond(m, errorNotify(wire.NotifyTemporaryFailure, nil))
		e.event(sa, EventCloneRefused, fmt.Sprintf("no room for another IKE SA (limit %d)", e.cfg.MaxIKESAs))
		return
	case sa.family != nil && sa.family.size() >= sa.conn.maxIKESAs():
		sa.respond(m, errorNotify(wire.NotifyNoAdditionalSAs, nil))
		e.event(sa, EventCloneRefused, fmt.Sprintf("peer has %d IKE SAs, max_ike_sas is %d", sa.family.size(), sa.conn.maxIKESAs()))
		return
	}
	n, resp, ok := sa.acceptIKESA(m, offered, nonce, "clone")
	if !ok {
		return
	}
	if sa.conn.Draft00Clone {
		// draft-00 §4 echoed the notify to confirm the clone; RFC 7791
		// peers ignore it in a response (§5.2).
		resp = append([]wire.Payload{wire.NewNotify(wire.NotifyCloneIKESA, nil)}, resp...)
	}
	sa.respond(m, resp)
	n.local, n.remote, n.iface, n.tcp = m.d.Local, m.d.Remote, "", m.d.TCP // the path of this exchange
	if !n.conn.ReturnRoutability || n.verified.has(n.remote.Addr()) {
		n.dataLocal, n.dataRemote, n.dataIface = n.local, n.remote, n.iface
	} // else the parent's proven path, until the check (adoptClone)
	sa.adoptClone(n, false)
}

func (sa *ikeSA) deleteInFlight() bool {
	return sa.inFlight(func(t task) bool { _, ok := t.(*ikeDeleteTask); return ok })
}

// FamilyOf is the family (IKESAInfo.Family) of IKE SA id, for those that
// account per authentication (RFC 7791 §8: the service lasts as long as
// any IKE SA of the family): false when there is no such SA or it is not
// authenticated yet.
func (e *Engine) FamilyOf(id uint64) (uint64, bool) {
	sa := e.byID[id]
	if sa == nil || sa.family == nil {
		return 0, false
	}
	return sa.family.id, true
}

// FamilyLive reports whether any IKE SA of family fam is still there
// (established, rekeyed or being deleted).
func (e *Engine) FamilyLive(fam uint64) bool { return e.families[fam] != nil }

// FamilyChildren are the inbound SPIs of the Child SAs of every IKE SA of
// family fam (per-family accounting, RFC 7791 §8), without a snapshot of
// every SA.
func (e *Engine) FamilyChildren(fam uint64) []uint32 {
	f := e.families[fam]
	if f == nil {
		return nil
	}
	var out []uint32
	for _, m := range f.members {
		for _, c := range m.children {
			out = append(out, c.inSPI)
		}
	}
	return out
}

// IKESA is the snapshot of IKE SA id alone (IKESAs takes them all).
func (e *Engine) IKESA(id uint64) (IKESAInfo, bool) {
	sa := e.byID[id]
	if sa == nil {
		return IKESAInfo{}, false
	}
	return sa.info(), true
}
