package ike

import (
	"time"

	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// ikeRekeyCollision remembers the IKE SA a peer's rekey created while our
// own rekey of the same SA was in flight (§2.8.2).
type ikeRekeyCollision struct {
	sa     *ikeSA
	nonces [2][]byte
}

// ikeRekeyTask rekeys the IKE SA (RFC 7296 §1.3.2, §2.18): the new SA
// takes over the Child SAs and the old one is deleted.
type ikeRekeyTask struct {
	group   wire.DHGroup
	tries   int
	newSA   *ikeSA
	offered *wire.SA
	ni, nr  []byte // the exchange's nonces (nr from the response)
	dh      *ikecrypto.DH
}

func (t *ikeRekeyTask) String() string { return "rekey IKE SA" }

func (t *ikeRekeyTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished {
		return 0, nil, errSkip
	}
	if sa.collidedWith != nil {
		// Whether this SA survives its own rekey collision is not
		// decided yet; rekey it once it is (if it survives).
		sa.retryLater(&ikeRekeyTask{group: t.group, tries: t.tries}, 0)
		return 0, nil, errSkip
	}
	return t.request(sa)
}

// request builds the IKE SA rekey request (§1.3.2), shared by rekey and
// clone: a new SA with a reserved SPI, SA, Ni, KEi.
func (t *ikeRekeyTask) request(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	e := sa.e
	group := t.group
	if group == 0 {
		group = sa.neg.DH // the group in use first: no INVALID_KE round trip
	}
	dh, err := ikecrypto.NewDH(group, e.cfg.Rand)
	if err != nil {
		return 0, nil, err
	}
	// The new SA exists from now on, so its SPI is reserved; it joins the
	// IKE SA list only when the exchange succeeds.
	n := &ikeSA{e: e, conn: sa.conn, initiator: true, spiI: e.newSPI()}
	n.created = e.now
	e.sas[n.spiI] = n
	t.newSA, t.dh, t.ni = n, dh, e.nonce()
	t.offered = proposal.WireSA(sa.conn.IKE, binary.BigEndian.AppendUint64(nil, n.spiI), true)
	return wire.CreateChildSA, []wire.Payload{t.offered, &wire.Nonce{Data: t.ni}, &wire.KE{Group: group, Data: dh.Public()}}, nil
}

func (t *ikeRekeyTask) abort(sa *ikeSA, reason string) {
	if n := t.newSA; n != nil && n.state == stateConnecting && n.id == 0 {
		if sa.e.sas[n.spiI] == n {
			delete(sa.e.sas, n.spiI)
		}
	}
}

func (t *ikeRekeyTask) process(sa *ikeSA, m *message) {
	e := sa.e
	if n := m.errorNotify(); n != nil {
		t.abort(sa, n.NotifyType.String())
		switch n.NotifyType {
		case wire.NotifyInvalidKEPayload:
			if g, err := n.Uint16(); err == nil && proposal.AcceptsDH(sa.conn.IKE, wire.DHGroup(g)) && t.tries < 2 {
				sa.queueFront(&ikeRekeyTask{group: wire.DHGroup(g), tries: t.tries + 1})
				return
			}
		case wire.NotifyTemporaryFailure:
			if c := sa.peerRekey; c != nil {
				// The peer refused ours but its own rekey went through:
				// its new SA is the successor.
				if c.sa.state == stateEstablished && sa.state == stateEstablished {
					sa.handOver(c.sa)
				}
				return
			}
			if t.tries < 5 {
				sa.retryLater(&ikeRekeyTask{group: t.group, tries: t.tries + 1}, t.tries)
				return
			}
		}
		e.emit(Event{Kind: EventIKEFailed, IKESA: sa.id, Conn: sa.conn.Name, StillUp: true, Notify: n.NotifyType,
			Detail: "IKE SA rekey refused: " + n.NotifyType.String()})
		return
	}
	n, err := t.complete(sa, m)
	if err != nil {
		t.abort(sa, err.Error())
		e.log.Warn("IKE SA rekey failed", "ike", sa.id, "err", err)
		e.emit(Event{Kind: EventIKEFailed, IKESA: sa.id, Conn: sa.conn.Name, StillUp: sa.state == stateEstablished,
			Detail: "IKE SA rekey: " + err.Error()})
		return
	}
	sa.rekeyedEvent(n)
	ours := [2][]byte{t.ni, t.nr}
	if c := sa.peerRekey; c != nil && c.sa.state == stateEstablished {
		// The peer already using its new SA means it won (see
		// takeOverFromCollision), whatever the nonces say to us.
		if sa.successor == c.sa || lowestNonceIn(ours, c.nonces) {
			// We lost (§2.8.2): our new SA is redundant and we delete
			// it; the peer's new SA takes the Child SAs, and the peer
			// deletes the old one.
			e.log.Info("IKE rekey collision lost", "ike", sa.id, "winner", c.sa.id)
			e.emit(Event{Kind: EventIKERekeyed, IKESA: c.sa.id, Conn: sa.conn.Name, From: sa.id,
				Detail: fmt.Sprintf("IKE SA %d -> %d (collision lost, %d redundant)", sa.id, c.sa.id, n.id)})
			if sa.successor != c.sa {
				sa.handOver(c.sa)
			}
			n.queue(&ikeDeleteTask{})
			return
		}
		e.log.Info("IKE rekey collision won", "ike", sa.id, "loser", c.sa.id)
		n.collisionLoser = c.sa
		c.sa.dropIfNotDeleted()
		e.emit(Event{Kind: EventIKERekeyed, IKESA: n.id, Conn: sa.conn.Name, From: sa.id,
			Detail: fmt.Sprintf("IKE SA %d -> %d (collision won)", sa.id, n.id)})
	}
	sa.handOver(n)
	// The rekey initiator deletes the old SA; that Delete is the last
	// request on it (§1.3.2).
	sa.tasks = nil
	sa.queue(&ikeDeleteTask{})
}

// dropIfNotDeleted: this SA is the peer's redundant one after we won a
// rekey collision (§2.8.2). The peer, which made it, deletes it once our
// response to its rekey reaches it; but our Delete of the old SA, sent
// right after, may reach it first, and then the peer drops its rekey and
// never knows this SA at all. Nobody would delete it, and it would live
// on here, without Child SAs, until its liveness check gave up minutes
// later. So if the peer's Delete has not come by the time the peer
// would have sent it three times, we let it go ourselves, without a
// Delete: the peer either never had it or deletes it on its own.
func (sa *ikeSA) dropIfNotDeleted() {
	r := sa.e.cfg.Retransmit
	grace := time.Duration(float64(r.Timeout) * (1 + r.Base + r.Base*r.Base))
	sa.e.after(grace, func() {
		if (sa.state == stateEstablished || sa.state == stateRekeyed) && len(sa.children) == 0 {
			sa.e.destroy(sa, "redundant SA of a rekey collision the peer did not delete (RFC 7296 §2.8.2)")
		}
	})
}

// complete derives the new SA from the response: SKEYSEED from the old
// SA's SK_d and PRF (§2.18).
func (t *ikeRekeyTask) complete(sa *ikeSA, m *message) (*ikeSA, error) {
	respSA, ok1 := wire.First[*wire.SA](m.payloads)
	nonce, ok2 := wire.First[*wire.Nonce](m.payloads)
	ke, ok3 := wire.First[*wire.KE](m.payloads)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("response lacks SA, Nonce or KE")
	}
	neg, err := proposal.CheckResponse(t.offered, respSA)
	if err != nil {
		return nil, err
	}
	if len(neg.SPI) != 8 || binary.BigEndian.Uint64(neg.SPI) == 0 {
		return nil, fmt.Errorf("responder SPI %x is not a valid IKE SPI", neg.SPI)
	}
	if ke.Group != t.dh.Group() || neg.DH != ke.Group {
		return nil, errNoKE
	}
	gir, err := t.dh.Shared(ke.Data)
	if err != nil {
		return nil, err
	}
	n := t.newSA
	n.spiR = binary.BigEndian.Uint64(neg.SPI)
	t.nr = bytes.Clone(nonce.Data)
	if err := sa.deriveSuccessor(n, neg, gir, t.ni, t.nr); err != nil {
		return nil, err
	}
	return n, nil
}

// deriveSuccessor keys n from this SA (SKEYSEED = prf_old(SK_d_old,
// g^ir | Ni | Nr)) and gives it this SA's peer, addresses and
// capabilities. Used for rekeys and clones alike.
func (sa *ikeSA) deriveSuccessor(n *ikeSA, neg proposal.Negotiated, gir, ni, nr []byte) error {
	e := sa.e
	suite, err := ikecrypto.NewSuite(neg.Encr.Encr, neg.Encr.KeyBits, neg.PRF, neg.Integ, neg.DH)
	if err != nil {
		return err
	}
	n.neg = neg
	if err := n.setKeys(suite, ikecrypto.RekeySKEYSEED(sa.suite.PRF, sa.skd, gir, ni, nr), ni, nr); err != nil {
		return err
	}
	e.nextID++
	n.id = e.nextID
	e.byID[n.id] = n
	n.conn = sa.conn
	n.local, n.remote, n.iface = sa.local, sa.remote, sa.iface
	// What the old SA proved routable stays proven; an address it was
	// still checking is checked again by the successor (see handOver).
	n.peerAddrs, n.verified = sa.peerAddrs, slices.Clone(sa.verified)
	n.dataLocal, n.dataRemote, n.dataIface = sa.dataLocal, sa.dataRemote, sa.dataIface
	n.ext, n.encap, n.tcp = sa.ext, sa.encap, sa.tcp // what the features negotiated carries over
	n.localID, n.peerID = sa.localID, sa.peerID
	n.localVIPs, n.remoteVIPs = sa.localVIPs, sa.remoteVIPs
	n.mobikeInitiator = sa.mobikeInitiator
	n.parent, n.vipsInherited = sa.parent, sa.vipsInherited
	n.lineage = sa.lineageID() // a clone starts its own (cloneSA resets it)
	if sa.family != nil {
		sa.family.join(n) // leases stay with the family (§3.15.1, RFC 7791 §8)
	}
	n.lastInbound = e.now
	n.state = stateEstablished
	n.established = e.now
	n.srtt = sa.srtt // the same path (a clone's resets them, adoptClone)
	if sa.path != nil {
		p := *sa.path
		p.lastRequest, p.probeT = e.now, nil
		n.path = &p
	}
	n.armLifetimes()
	n.armDPD()
	n.armPathProbe()
	n.armKeepalive()
	return nil
}

func (sa *ikeSA) rekeyedEvent(n *ikeSA) {
	sa.e.emit(Event{Kind: EventIKERekeyed, IKESA: n.id, Conn: n.conn.Name, From: sa.id,
		Detail: fmt.Sprintf("IKE SA %d -> %d, %016x_i %016x_r %s", sa.id, n.id, n.spiI, n.spiR, n.neg.String())})
	sa.e.log.Info("IKE SA rekeyed", "old", sa.id, "new", n.id, "proposal", n.neg.String())
}

// handOver moves this SA's Child SAs and queued work to its successor n
// and marks it rekeyed (§2.8: the new SA inherits the Child SAs).
func (sa *ikeSA) handOver(n *ikeSA) {
	e := sa.e
	for _, c := range sa.children {
		c.ike = n
		n.children = append(n.children, c)
		e.emit(UpdateChild{SA: c.params()})
	}
	sa.children = nil
	for _, t := range sa.tasks {
		switch t.(type) {
		// A Delete of the IKE SA asked for by the user means the
		// connection: it follows to the successor.
		case *childCreateTask, *childDeleteTask, *ikeDeleteTask, *addressTask:
			n.tasks = append(n.tasks, t)
		case *updateTask:
			// Handled below with any update still in flight.
		default:
			t.abort(sa, "IKE SA rekeyed")
		}
	}
	sa.tasks = nil
	if sa.mobikeInitiator && sa.updateGen != sa.confirmedGen && !n.pendingUpdate {
		// A move the peer has not acknowledged (queued, or in flight on
		// this SA): the successor tells it.
		n.pendingUpdate = true
		n.updateGen = n.confirmedGen + 1 // unconfirmed on the successor too
		n.tasks = append(n.tasks, &updateTask{})
	}
	if sa.closing {
		// We were deleting this SA: the successor is what we delete now
		// (its Delete came over with the tasks above).
		n.closing = true
		for _, c := range n.children {
			if c.outbound {
				c.outbound = false
				e.emit(UpdateChild{SA: c.params()})
			}
		}
	}
	n.continueReturnRoutability()
	sa.announceWindow(n)
	sa.state = stateRekeyed
	sa.successor = n
	for _, t := range []*timer{sa.rekeyT, sa.reauthT, sa.expireT, sa.dpdT, sa.probeTimer()} {
		t.cancel()
	}
	// If the peer's Delete never comes, drop the old SA anyway.
	sa.deleteT = e.after(e.cfg.DeleteTimeout, func() { e.destroy(sa, "rekeyed, peer's Delete did not arrive") })
	n.next()
}

// continueReturnRoutability: an SA made from one whose return
// routability check of the peer's new address was still under way (a
// rekey or a clone) checks that address itself before its Child SAs go
// there (RFC 4555 §3.7).
func (n *ikeSA) continueReturnRoutability() {
	if n.conn.ReturnRoutability && n.ext.mobike && n.dataRemote != n.remote && !n.verified.has(n.remote.Addr()) {
		n.tasks = append(n.tasks, &rrTask{addr: n.remote})
	}
}

// respondIKERekey answers a peer's IKE SA rekey (§1.3.2, §2.25 table).
func (sa *ikeSA) respondIKERekey(m *message, offered *wire.SA, nonce *wire.Nonce) {
	e := sa.e
	if sa.state != stateEstablished || sa.childExchangeInFlight() {
		sa.respond(m, errorNotify(wire.NotifyTemporaryFailure, nil))
		return
	}
	n, resp, ok := sa.acceptIKESA(m, offered, nonce, "IKE rekey")
	if !ok {
		return
	}
	sa.respond(m, resp)
	sa.rekeyedEvent(n)
	if sa.ikeRekeyInFlight() {
		// Resolved when our own response arrives (§2.8.2).
		e.log.Debug("IKE rekey collision: keeping Child SAs until our own rekey completes", "ike", sa.id, "peer_new", n.id)
		sa.peerRekey = &ikeRekeyCollision{sa: n, nonces: [2][]byte{bytes.Clone(nonce.Data), resp[1].(*wire.Nonce).Data}}
		n.collidedWith = sa
		return
	}
	sa.handOver(n)
}

// acceptIKESA makes the new IKE SA a peer's IKE rekey or clone request
// asks for (§1.3.2, §2.18; RFC 7791 §5.2 makes a clone the same way):
// the proposal, the KE, SKEYSEED from this SA's SK_d. It returns the new
// SA and the response (SA, Nr, KEr), or false when it answered with an
// error itself; what is refused is named by what.
func (sa *ikeSA) acceptIKESA(m *message, offered *wire.SA, nonce *wire.Nonce, what string) (*ikeSA, []wire.Payload, bool) {
	e := sa.e
	ke, ok := wire.First[*wire.KE](m.payloads)
	if !ok || len(offered.Proposals[0].SPI) != 8 {
		sa.respond(m, errorNotify(wire.NotifyInvalidSyntax, nil))
		e.destroy(sa, what+" request without KE or 8-octet SPI")
		return nil, nil, false
	}
	chosen, neg, ok := proposal.Select(sa.conn.IKE, offered, wire.ProtoIKE, !sa.conn.PreferPeerProposals, ke.Group)
	if !ok {
		sa.respond(m, errorNotify(wire.NotifyNoProposalChosen, nil))
		return nil, nil, false
	}
	if neg.DH != ke.Group {
		sa.respond(m, errorNotify(wire.NotifyInvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(neg.DH))))
		return nil, nil, false
	}
	dh, err := ikecrypto.NewDH(neg.DH, e.cfg.Rand)
	var gir []byte
	if err == nil {
		gir, err = dh.Shared(ke.Data)
	}
	if err != nil {
		sa.respond(m, errorNotify(wire.NotifyInvalidSyntax, nil)) // RFC 6989 §2.5
		e.destroy(sa, "invalid KE public value in "+what)
		return nil, nil, false
	}
	ni, nr := bytes.Clone(nonce.Data), e.nonce()
	n := sa.newPeerInitiatedSA(neg)
	if err := sa.deriveSuccessor(n, neg, gir, ni, nr); err != nil {
		delete(e.sas, n.spiR)
		sa.respond(m, errorNotify(wire.NotifyNoProposalChosen, nil))
		return nil, nil, false
	}
	chosen.SPI = binary.BigEndian.AppendUint64(nil, n.spiR)
	return n, []wire.Payload{&wire.SA{Proposals: []wire.Proposal{chosen}}, &wire.Nonce{Data: nr}, &wire.KE{Group: neg.DH, Data: dh.Public()}}, true
}

// takeOverFromCollision is called for a request on an SA the peer's
// rekey created while ours collided with it. Anything but the peer's
// Delete of this SA shows the peer treats it as the successor (it won, or
// never saw our rekey), so the Child SAs move here now: the request may
// concern them.
func (n *ikeSA) takeOverFromCollision(m *message) {
	old := n.collidedWith
	if old == nil {
		return
	}
	n.collidedWith = nil
	for _, d := range wire.All[*wire.Delete](m.payloads) {
		if d.Protocol == wire.ProtoIKE {
			return
		}
	}
	if old.state == stateEstablished && old.peerRekey != nil && old.peerRekey.sa == n {
		n.e.log.Debug("peer uses its new IKE SA: it is the successor", "old", old.id, "new", n.id)
		old.handOver(n)
	}
}

// newPeerInitiatedSA makes the SA of a rekey or clone the peer started:
// the peer is its original initiator (§2.2), our SPI is fresh.
func (sa *ikeSA) newPeerInitiatedSA(neg proposal.Negotiated) *ikeSA {
	e := sa.e
	n := &ikeSA{e: e, conn: sa.conn, initiator: false, spiR: e.newSPI()}
	n.created = e.now
	n.spiI = binary.BigEndian.Uint64(neg.SPI)
	e.sas[n.spiR] = n
	return n
}

// childExchangeInFlight reports a Child SA exchange we started and still
// wait for: the peer must not rekey the IKE SA meanwhile (§2.25).
func (sa *ikeSA) childExchangeInFlight() bool {
	return sa.inFlight(func(t task) bool {
		switch t.(type) {
		case *childCreateTask, *childDeleteTask, *ikeDeleteTask:
			return true
		}
		return false
	})
}
