package ike

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// childCreateTask creates a Child SA, or rekeys one (REKEY_SA), with a
// CREATE_CHILD_SA exchange (RFC 7296 §1.3.1, §1.3.3).
type childCreateTask struct {
	cfg   *ChildConfig
	rekey *childSA
	group wire.DHGroup // after INVALID_KE_PAYLOAD
	tries int
	cp    bool // we asked for virtual IPs of this SA's own

	req *childRequest
	ni  []byte
	dh  *ikecrypto.DH
}

func (t *childCreateTask) String() string {
	if t.rekey != nil {
		return fmt.Sprintf("rekey child %s %08x", t.cfg.Name, t.rekey.inSPI)
	}
	return "create child " + t.cfg.Name
}

func (t *childCreateTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished {
		return 0, nil, errSkip
	}
	if t.rekey != nil {
		if t.rekey.state != childInstalled || t.rekey.ike != sa || t.rekey.reloadClosed {
			return 0, nil, errSkip // deleted, or rekeyed by the peer meanwhile, or a reload deletes it
		}
		t.rekey.state = childRekeying
	}
	group := t.group
	if group == 0 {
		group = t.cfg.pfsGroup()
	}
	t.req = sa.newChildRequest(t.cfg, t.rekey, true)
	t.ni = sa.e.nonce()
	var ps []wire.Payload
	t.cp = t.rekey == nil && sa.vipsInherited && sa.conn.CloneVIPs && t.cfg.DynamicLocal && (sa.conn.RequestVIP4 || sa.conn.RequestVIP6)
	if t.cp {
		// A clone's first Child SA asks for its own inner address; the
		// CP payload comes before the SA payload (§2.19).
		ps = append(ps, vipRequest(sa.conn))
		t.req.tsi = wildcardTS(sa.conn)
	}
	if t.rekey != nil {
		// REKEY_SA names the SA by the SPI we receive on (§1.3.3).
		ps = append(ps, &wire.Notify{Protocol: wire.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, t.rekey.inSPI), NotifyType: wire.NotifyRekeySA})
	}
	ps = append(ps, t.req.offered, &wire.Nonce{Data: t.ni})
	if group != 0 {
		dh, err := ikecrypto.NewDH(group, sa.e.cfg.Rand)
		if err != nil {
			t.abort(sa, err.Error())
			return 0, nil, err
		}
		t.dh = dh
		ps = append(ps, &wire.KE{Group: group, Data: dh.Public()})
	}
	ps = append(ps, t.req.payloads()[1:]...)
	return wire.CreateChildSA, ps, nil
}

func (t *childCreateTask) abort(sa *ikeSA, reason string) {
	if t.req != nil {
		t.req.release(sa)
	}
	if t.rekey != nil && t.rekey.state == childRekeying {
		t.rekey.state = childInstalled
	}
}

func (t *childCreateTask) process(sa *ikeSA, m *message) {
	e := sa.e
	if n := m.errorNotify(); n != nil {
		t.refused(sa, n)
		return
	}
	nonce, ok := wire.First[*wire.Nonce](m.payloads)
	if !ok {
		t.abort(sa, "no nonce")
		t.failed(sa, t.String()+": response without Nonce")
		return
	}
	var gir []byte
	if t.dh != nil {
		ke, ok := wire.First[*wire.KE](m.payloads)
		if !ok || ke.Group != t.dh.Group() {
			t.abort(sa, "KE")
			t.failed(sa, t.String()+": "+errNoKE.Error())
			return
		}
		var err error
		if gir, err = t.dh.Shared(ke.Data); err != nil {
			// RFC 6989 §2.5: a bad KE in a response → delete the IKE SA.
			t.abort(sa, err.Error())
			sa.queue(&ikeDeleteTask{})
			return
		}
	}
	if t.cp {
		if cp, ok := wire.First[*wire.CP](m.payloads); ok && cp.CFGType == wire.CFGReply {
			if vips := cpAddrs(cp); len(vips) > 0 {
				sa.localVIPs, sa.vipsInherited = vips, false
				e.event(sa, EventVirtualIP, fmt.Sprint(sa.localVIPs))
			}
		}
	}
	c, err := t.req.complete(sa, m, t.ni, nonce.Data, gir)
	if err != nil {
		t.abort(sa, err.Error())
		t.failed(sa, err.Error())
		if t.req.peerCreated(m) {
			sa.queue(&childDeleteTask{orphan: t.req.inSPI})
		}
		return
	}
	if t.rekey == nil {
		return
	}
	// A reload that removed or narrowed the child while this rekey was
	// in flight: the new SA carries the old selectors (§2.9.2), so it
	// goes too.
	cur := sa.conn.child(c.cfg.Name)
	stale := cur == nil || sa.outsideStaticTS(c, cur)
	if cur != nil {
		c.cfg = cur
	}
	old := t.rekey
	if old.state != childGone {
		c.replaces = old // until old goes (remove cuts the link)
	}
	collision := ""
	if p := old.peerRekey; p != nil && p.state != childGone {
		// Both sides rekeyed old at once (§2.8.1): the SA made by the
		// exchange holding the lowest nonce is redundant and deleted by
		// its initiator; the winner's initiator deletes the old SA.
		if lowestNonceIn([2][]byte{t.ni, nonce.Data}, *old.peerNonces) {
			e.log.Info("child rekey collision lost, deleting our redundant SA", "ike", sa.id, "child", c.cfg.Name)
			if old.state != childGone {
				old.state = childRekeyed
				old.replacedBy = p
			}
			c.replacedBy = p
			c.outbound = false
			e.emit(UpdateChild{SA: c.params()})
			if old.state == childGone && p.state == childInstalled {
				p.activateOutbound() // the winner already deleted old
			}
			sa.queueFront(&childDeleteTask{child: c, redundant: true})
			e.emit(Event{Kind: EventChildRekeyed, IKESA: sa.id, Conn: sa.conn.Name, Child: p.inSPI, ChildName: c.cfg.Name, FromChild: old.inSPI,
				Detail: fmt.Sprintf("%s %08x -> %08x (collision lost, %08x redundant)", c.cfg.Name, old.inSPI, p.inSPI, c.inSPI)})
			return
		}
		e.log.Info("child rekey collision won", "ike", sa.id, "child", c.cfg.Name)
		p.replacedBy = c
		collision = " (collision won)"
	}
	if stale {
		defer sa.replaceStale(c, cur)
	}
	if old.state == childGone {
		// The peer deleted the old SA while our rekey was in flight
		// (§2.25 table: answered "as normal"); the new SA stands alone.
		return
	}
	old.state = childRekeyed
	old.replacedBy = c
	old.rekeyT.cancel()
	if old.outbound {
		old.outbound = false
		e.emit(UpdateChild{SA: old.params()})
	}
	e.emit(Event{Kind: EventChildRekeyed, IKESA: sa.id, Conn: sa.conn.Name, Child: c.inSPI, ChildName: c.cfg.Name, FromChild: old.inSPI,
		Detail: fmt.Sprintf("%s %08x -> %08x%s", c.cfg.Name, old.inSPI, c.inSPI, collision)})
	// §2.8: the rekey initiator deletes the old SA.
	sa.queueFront(&childDeleteTask{child: old})
}

// refused handles an error answer to CREATE_CHILD_SA (§1.3, §2.25).
func (t *childCreateTask) refused(sa *ikeSA, n *wire.Notify) {
	t.abort(sa, n.NotifyType.String())
	switch n.NotifyType {
	case wire.NotifyInvalidKEPayload:
		g, err := n.Uint16()
		if err == nil && proposal.AcceptsDH(t.cfg.ESP, wire.DHGroup(g)) && t.tries < 2 {
			sa.queueFront(&childCreateTask{cfg: t.cfg, rekey: t.rekey, group: wire.DHGroup(g), tries: t.tries + 1})
			return
		}
	case wire.NotifyTemporaryFailure:
		// A colliding rekey of the peer will finish the job; otherwise
		// retry later, not at once (§2.25).
		if t.rekey != nil && t.rekey.peerRekey != nil {
			return
		}
		if t.tries < 5 {
			retry := &childCreateTask{cfg: t.cfg, rekey: t.rekey, group: t.group, tries: t.tries + 1}
			sa.retryLater(retry, t.tries)
			return
		}
	case wire.NotifyChildSANotFound:
		// §2.25: the peer lost the SA; drop ours and start afresh.
		if t.rekey != nil && t.rekey.state != childGone {
			t.rekey.remove("peer does not know it (CHILD_SA_NOT_FOUND)")
			sa.queue(&childCreateTask{cfg: t.cfg})
			return
		}
	}
	t.failed(sa, fmt.Sprintf("%s refused: %s", t, n.NotifyType))
}

// failed reports that the Child SA could not be created or rekeyed,
// naming it (a rekey also by the SPI of the SA it was to replace) so an
// observer waiting for it can tell (EventChildFailed).
func (t *childCreateTask) failed(sa *ikeSA, why string) {
	ev := Event{Kind: EventChildFailed, IKESA: sa.id, Conn: sa.conn.Name, ChildName: t.cfg.Name, Detail: why}
	if t.rekey != nil {
		ev.Child = t.rekey.inSPI
	}
	sa.e.emit(ev)
}

// retryLater requeues t after a growing, jittered delay.
func (sa *ikeSA) retryLater(t task, n int) {
	e := sa.e
	d := e.cfg.RetryTemporaryFailure * time.Duration(1<<min(n, 6))
	d = e.jitter(d+d/2, d/2)
	e.after(d, func() {
		// The IKE SA may have been rekeyed meanwhile: the retry belongs
		// to its successor (§2.8, which inherits the Child SAs).
		target := sa.current()
		if target.state == stateEstablished {
			target.queue(t)
		} else {
			t.abort(target, "IKE SA no longer established")
		}
	})
}

// current follows rekeys to the SA that now stands for this one.
func (sa *ikeSA) current() *ikeSA {
	for sa.successor != nil && sa.state != stateEstablished {
		sa = sa.successor
	}
	return sa
}

// queueFront runs t before anything else queued (a Delete that completes
// a rekey must not wait behind unrelated work).
func (sa *ikeSA) queueFront(t task) {
	sa.tasks = append([]task{t}, sa.tasks...)
	sa.next()
}

// respondCreateChild is the responder's CREATE_CHILD_SA: an IKE SA rekey
// (or clone), a Child SA rekey, or a new Child SA.
func (sa *ikeSA) respondCreateChild(m *message) {
	offered, ok := wire.First[*wire.SA](m.payloads)
	nonce, okN := wire.First[*wire.Nonce](m.payloads)
	if !ok || !okN || len(offered.Proposals) == 0 {
		sa.respond(m, errorNotify(wire.NotifyInvalidSyntax, nil))
		sa.e.destroy(sa, "CREATE_CHILD_SA request without SA or Nonce")
		return
	}
	claimed := false
	forEach(sa.e, func(f childFeature) {
		claimed = claimed || f.respondCreateChild(sa, m, offered, nonce)
	})
	if claimed {
		return
	}
	if offered.Proposals[0].Protocol == wire.ProtoIKE {
		sa.respondIKERekey(m, offered, nonce)
		return
	}
	sa.respondChild(m, nonce)
}

// respondChild answers a CREATE_CHILD_SA request for a new Child SA
// (§1.3.1) or a Child SA rekey (§1.3.3). The steps, in order, are the
// methods of childResponder; each refuses the request with the notify
// its section names, and only a request that passes them all makes a
// Child SA, installed once the response is sent.
func (sa *ikeSA) respondChild(m *message, nonce *wire.Nonce) {
	r := &childResponder{sa: sa, m: m, ni: nonce.Data}
	if r.ikeSAReady() &&
		r.findRekeyed() &&
		r.underFamilyLimit() &&
		r.assignVirtualIP() &&
		r.negotiate() &&
		r.exchangeKE() {
		r.sendResponse()
		r.supersedeRekeyed()
		r.c.install()
	}
}

// childResponder is what the responder knows while it answers one
// CREATE_CHILD_SA request for a Child SA; it is dropped with the
// request, and what stays is the Child SA it installs.
type childResponder struct {
	sa *ikeSA
	m  *message
	ni []byte

	rekey   *childSA // the Child SA REKEY_SA names; nil for a new one
	cpReply *wire.CP // the virtual IPs assigned, if asked for
	nr      []byte
	ps      []wire.Payload // SAr and the TS (acceptChild)
	c       *childSA       // the new Child SA
	ke      *wire.KE       // KEr, with PFS
}

// refuse answers the request with the error notify t.
func (r *childResponder) refuse(t wire.NotifyType, data []byte) {
	r.sa.respond(r.m, errorNotify(t, data))
}

// ikeSAReady refuses with TEMPORARY_FAILURE while the IKE SA is being
// rekeyed or deleted: no new Child SA then (§2.25 table).
func (r *childResponder) ikeSAReady() bool {
	if r.sa.state != stateEstablished || r.sa.ikeRekeyInFlight() {
		r.refuse(wire.NotifyTemporaryFailure, nil)
		return false
	}
	return true
}

// findRekeyed finds the Child SA that REKEY_SA names, if any (§1.3.3).
// One we do not have is CHILD_SA_NOT_FOUND, unless our own request in
// flight may be creating it, and one on its way out is TEMPORARY_FAILURE
// (§2.25). A malformed REKEY_SA ends the IKE SA (INVALID_SYNTAX).
func (r *childResponder) findRekeyed() bool {
	sa := r.sa
	n := r.m.notify(wire.NotifyRekeySA)
	if n == nil {
		return true
	}
	if len(n.SPI) != 4 || (n.Protocol != wire.ProtoESP && n.Protocol != wire.ProtoAH) {
		r.refuse(wire.NotifyInvalidSyntax, nil)
		sa.e.destroy(sa, "malformed REKEY_SA")
		return false
	}
	r.rekey = sa.childByOutSPI(binary.BigEndian.Uint32(n.SPI))
	if r.rekey == nil && sa.childRequestInFlight() {
		// The SA may be the one our outstanding request is about to
		// create (the peer answered it, we have not seen the answer):
		// "not found" would be final, so ask for a retry (§2.25).
		r.refuse(wire.NotifyTemporaryFailure, nil)
		return false
	}
	if r.rekey == nil {
		// §2.25: answer with the SPI copied from REKEY_SA.
		sa.respond(r.m, []wire.Payload{&wire.Notify{Protocol: n.Protocol, SPI: n.SPI, NotifyType: wire.NotifyChildSANotFound}})
		return false
	}
	switch r.rekey.state {
	case childDeleting, childRekeyed, childGone:
		r.refuse(wire.NotifyTemporaryFailure, nil)
		return false
	}
	return true
}

// underFamilyLimit refuses a new Child SA with NO_ADDITIONAL_SAS when
// the cap, which counts the Child SAs of all the user's IKE SAs, is
// reached (RFC 7791 §8). A rekey replaces one and is not counted.
func (r *childResponder) underFamilyLimit() bool {
	sa := r.sa
	if r.rekey == nil && sa.conn.MaxChildSAs > 0 && sa.family != nil && sa.family.children() >= sa.conn.MaxChildSAs {
		r.refuse(wire.NotifyNoAdditionalSAs, nil)
		return false
	}
	return true
}

// assignVirtualIP answers a CP request of a new Child SA (§2.19: an
// address in any Child SA request). A clone gets its own (RFC 7791 App.
// A.3); an SA that has its own keeps them.
func (r *childResponder) assignVirtualIP() bool {
	sa := r.sa
	cp, ok := wire.First[*wire.CP](r.m.payloads)
	if !ok || r.rekey != nil || cp.CFGType != wire.CFGRequest || len(sa.conn.Pools) == 0 {
		return true
	}
	if !sa.vipsInherited && len(sa.remoteVIPs) > 0 {
		r.cpReply = vipReply(sa.remoteVIPs)
		return true
	}
	old := sa.remoteVIPs
	sa.remoteVIPs = nil
	reply, nt := sa.assignVIPs(cp, fmt.Sprintf("%s#%d", sa.peerIdentity(), sa.id))
	if nt != 0 {
		sa.remoteVIPs = old
		r.refuse(nt, nil)
		return false
	}
	sa.vipsInherited = false
	sa.family.releaseUnused()
	r.cpReply = reply
	sa.e.event(sa, EventVirtualIP, fmt.Sprint(sa.remoteVIPs))
	return true
}

// negotiate picks the child config, narrows the selectors (§2.9) and
// selects the proposal (acceptChild). A malformed request ends the IKE
// SA (INVALID_SYNTAX); any other refusal is answered and nothing more.
func (r *childResponder) negotiate() bool {
	sa := r.sa
	r.nr = sa.e.nonce()
	var nt wire.NotifyType
	r.ps, r.c, nt = sa.acceptChild(r.m, r.ni, r.nr, nil, r.rekey)
	if nt == 0 {
		return true
	}
	r.refuse(nt, nil)
	if nt == wire.NotifyInvalidSyntax {
		sa.e.destroy(sa, "malformed CREATE_CHILD_SA request")
	}
	return false
}

// exchangeKE does the Diffie-Hellman of PFS (§1.3.1) when the chosen
// proposal has a group: KEi must be in it (else INVALID_KE_PAYLOAD), its
// public value valid (RFC 6989 §2.5: else INVALID_SYNTAX, which ends the
// IKE SA), and the keys are derived again with g^ir (§2.17).
func (r *childResponder) exchangeKE() bool {
	sa, e, c := r.sa, r.sa.e, r.c
	if c.neg.DH == 0 {
		return true
	}
	ke, ok := wire.First[*wire.KE](r.m.payloads)
	if !ok || ke.Group != c.neg.DH {
		e.releaseChildSPI(c.inSPI)
		r.refuse(wire.NotifyInvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(c.neg.DH)))
		return false
	}
	dh, err := ikecrypto.NewDH(c.neg.DH, e.cfg.Rand)
	var gir []byte
	if err == nil {
		gir, err = dh.Shared(ke.Data)
	}
	if err != nil {
		e.releaseChildSPI(c.inSPI)
		r.refuse(wire.NotifyInvalidSyntax, nil)
		e.destroy(sa, "invalid KE public value in CREATE_CHILD_SA")
		return false
	}
	if err := c.deriveKeys(r.ni, r.nr, gir, false); err != nil {
		e.releaseChildSPI(c.inSPI)
		r.refuse(wire.NotifyNoProposalChosen, nil)
		return false
	}
	r.ke = &wire.KE{Group: c.neg.DH, Data: dh.Public()}
	return true
}

// sendResponse answers with [CP], SAr, Nr, [KEr] and the TS (§1.3.1).
func (r *childResponder) sendResponse() {
	var out []wire.Payload
	if r.cpReply != nil {
		out = append(out, r.cpReply)
	}
	out = append(out, r.ps[0], &wire.Nonce{Data: r.nr})
	if r.ke != nil {
		out = append(out, r.ke)
	}
	out = append(out, r.ps[1:]...)
	r.sa.respond(r.m, out)
}

// supersedeRekeyed links a rekeyed Child SA to its successor (§2.8): it
// is replaced, or, while our own rekey of it is in flight, keeps the
// peer's result and nonces for the tie-break (§2.8.1).
func (r *childResponder) supersedeRekeyed() {
	rekey, c := r.rekey, r.c
	if rekey == nil {
		return
	}
	if rekey.state != childGone {
		c.replaces = rekey // until rekey goes (remove cuts the link)
	}
	if rekey.state == childRekeying {
		rekey.peerRekey = c
		rekey.peerNonces = &[2][]byte{bytes.Clone(r.ni), r.nr}
	} else {
		rekey.state = childRekeyed
		rekey.replacedBy = c
		rekey.rekeyT.cancel()
	}
}

// childRequestInFlight reports a request of ours whose answer may create
// a Child SA.
func (sa *ikeSA) childRequestInFlight() bool {
	return sa.inFlight(func(t task) bool {
		switch t.(type) {
		case *childCreateTask, *ikeAuthTask:
			return true
		}
		return false
	})
}

// ikeRekeyInFlight reports an IKE rekey we initiated and still wait for.
func (sa *ikeSA) ikeRekeyInFlight() bool {
	return sa.inFlight(func(t task) bool { _, ok := t.(*ikeRekeyTask); return ok })
}
