package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/wire"
)

// midSync is RFC 6311's IKE Message ID synchronisation, both roles.
//
// A gateway cluster node that takes over an IKE SA from a node that died
// (internal/cluster) has the SA's state as it was last written, at its
// creation or last rekey, never per message: its Message IDs are stale.
// It sends an INFORMATIONAL with Message ID zero and
// IKEV2_MESSAGE_ID_SYNC, naming the next Message ID it will send (M1,
// beyond anything the dead node can have used) and the one it expects
// (P1); the peer answers with the pair both will use (§5.1), and the
// node then rekeys every Child SA before it sends on any (the dead node
// may have used their sequence numbers and GCM nonces: §3.4).
//
// As the peer (the end user of a cluster, or of a strongSwan HA pair) we
// answer such a request once per synchronisation: one whose M1 is not
// above every Message ID we have seen from the other side is a replay and
// is dropped silently (§5.1); an identical retransmission gets our
// answer again. Support is announced in IKE_AUTH by both sides
// (IKEV2_MESSAGE_ID_SYNC_SUPPORTED, §5) unless NoMessageIDSync; IPsec
// replay counter synchronisation (§5.2) is not offered: the node rekeys
// the Child SAs instead.
type midSync struct{}

func (midSync) String() string { return "Message ID sync (RFC 6311)" }

func (midSync) authRequest(sa *ikeSA, _ *authExchange) []wire.Payload {
	if sa.conn.NoMessageIDSync {
		return nil
	}
	return []wire.Payload{wire.NewNotify(wire.NotifyIKEv2MessageIDSyncSupported, nil)}
}

func (midSync) respondAuth(sa *ikeSA, x *authExchange) []wire.Payload {
	// §5: "the responder MUST NOT assert support of a capability unless
	// such support was asserted by the initiator".
	if sa.conn.NoMessageIDSync || x.first.notify(wire.NotifyIKEv2MessageIDSyncSupported) == nil {
		return nil
	}
	sa.ext.midSync = true
	return []wire.Payload{wire.NewNotify(wire.NotifyIKEv2MessageIDSyncSupported, nil)}
}

func (midSync) readAuthResponse(sa *ikeSA, _ *authExchange, m *message) {
	sa.ext.midSync = !sa.conn.NoMessageIDSync && m.notify(wire.NotifyIKEv2MessageIDSyncSupported) != nil
}

// midSyncData is the notification's data (§6.3): a nonce, the sender's
// next request Message ID, the one it expects next from the other side.
func midSyncData(nonce, send, recv uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, nonce)
	b = binary.BigEndian.AppendUint32(b, send)
	return binary.BigEndian.AppendUint32(b, recv)
}

func parseMIDSync(d []byte) (nonce, send, recv uint32, ok bool) {
	if len(d) != 12 {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(d), binary.BigEndian.Uint32(d[4:]), binary.BigEndian.Uint32(d[8:]), true
}

// midSyncJump is how far beyond the exported next Message ID a node that
// takes over starts (§5.1: "larger than any value known to have been
// used"; it is RECOMMENDED to go at least a window further). The dead
// node may have sent requests since the state was written: a few
// thousand, plus ten per second since, is more than its liveness checks
// and address lists can have used.
func (sa *ikeSA) midSyncJump() uint32 {
	last := sa.established
	if sa.lastSent.After(last) {
		last = sa.lastSent
	}
	since := sa.e.now.Sub(last)
	jump := uint64(maxWindow) + 4096 + 10*uint64(max(since, 0)/time.Second)
	return uint32(min(jump, 1<<24))
}

// midSyncTask is the taking-over node's synchronisation request (Message
// ID zero, §5.1), then the rekey of every Child SA.
type midSyncTask struct {
	nonce  uint32
	m1, p1 uint32
}

func (t *midSyncTask) String() string { return "Message ID sync (RFC 6311)" }

func (t *midSyncTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished || !sa.ext.midSync {
		return 0, nil, errSkip
	}
	var b [4]byte
	sa.e.random(b[:])
	t.nonce = binary.BigEndian.Uint32(b[:])
	t.m1 = sa.nextReq + sa.midSyncJump()
	t.p1 = sa.expectReq
	return wire.Informational, []wire.Payload{wire.NewNotify(wire.NotifyIKEv2MessageIDSync, midSyncData(t.nonce, t.m1, t.p1))}, nil
}

func (t *midSyncTask) process(sa *ikeSA, m *message) {
	e := sa.e
	n := m.notify(wire.NotifyIKEv2MessageIDSync)
	var nonce, p2, m2 uint32
	ok := n != nil
	if ok {
		nonce, p2, m2, ok = parseMIDSync(n.Data)
	}
	if !ok || nonce != t.nonce || m2 < t.m1 || p2 < t.p1 {
		// §5.1 has a response with the wrong nonce dropped; the peer is
		// authentic but we cannot agree on Message IDs with it.
		e.destroy(sa, "RFC 6311 Message ID synchronisation failed: the peer's answer does not match")
		return
	}
	// The peer's next request is P2, ours M2 (§5.1); everything cached
	// is for Message IDs below them.
	sa.expectReq, sa.nextReq, sa.responses = p2, m2, nil
	e.event(sa, EventMessageIDSync, fmt.Sprintf("next request %d, next expected %d", m2, p2))
	e.log.Info("Message IDs resynchronised (RFC 6311)", "ike", sa.id, "next_request", m2, "next_expected", p2)
	// The dead node may have used the Child SAs' sequence numbers (and
	// GCM nonces): new keys before we send on any (RFC 6311 §3.4).
	for _, c := range sa.children {
		if c.state == childInstalled {
			sa.queue(&childCreateTask{cfg: c.cfg, rekey: c})
		}
	}
}

func (t *midSyncTask) abort(*ikeSA, string) {}

// receiveIDZero handles a request with Message ID zero on an SA that
// negotiated RFC 6311: a synchronisation request, or (from a peer that
// sent us nothing yet) an ordinary first request.
func (sa *ikeSA) receiveIDZero(d Datagram, in *inspected) {
	e := sa.e
	if r := sa.midSyncResp; r != nil && requestHash(in.ike) == r.hash {
		for _, pkt := range r.packets { // a retransmission of the one we answered
			sa.transmitTo(d.Local, d.Remote, d.TCP, pkt)
		}
		e.stats.Retransmissions++
		return
	}
	msg, ps, err, ok := sa.openMessage(d, in)
	if !ok {
		return
	}
	msg.payloads = ps
	if err != nil || msg.notify(wire.NotifyIKEv2MessageIDSync) == nil {
		// Not a synchronisation: what receiveRequest does with any
		// request, an authentic copy of an answered one included.
		switch r := sa.cachedResponse(0); {
		case r != nil && r.exchange == wire.Informational:
			for _, pkt := range r.packets {
				sa.transmitTo(d.Local, d.Remote, d.TCP, pkt)
			}
			e.stats.Retransmissions++
		case r == nil && sa.expectReq == 0:
			sa.handleOpened(msg, ps, err)
		default:
			e.drop(DropWindow, dropped{sa: sa, from: d.Remote, h: &in.h})
		}
		return
	}
	sa.answerMIDSync(msg)
}

// answerMIDSync is the peer's side of §5.1.
func (sa *ikeSA) answerMIDSync(msg *message) {
	e := sa.e
	var n *wire.Notify
	for _, p := range msg.payloads {
		switch p := p.(type) {
		case *wire.Notify:
			switch {
			case p.NotifyType == wire.NotifyIKEv2MessageIDSync && n == nil:
				n = p
				continue
			case p.NotifyType == wire.NotifyIPsecReplayCounterSync:
				continue // not offered: ignored (we never said we support it)
			}
		}
		// §5.1: "MUST NOT contain any additional payloads".
		e.drop(DropMIDSync, dropped{sa: sa, from: msg.d.Remote, h: &msg.Header})
		return
	}
	nonce, m1, p1, ok := parseMIDSync(n.Data)
	// M1 must be above every Message ID we have seen from the other
	// side, earlier synchronisations included; else it is a replay.
	seen := int64(sa.expectReq) - 1
	if sa.midSyncSeen > seen {
		seen = sa.midSyncSeen
	}
	if !ok || int64(m1) <= seen {
		e.drop(DropMIDSync, dropped{sa: sa, from: msg.d.Remote, h: &msg.Header})
		return
	}
	m2, p2 := max(m1, sa.expectReq), max(p1, sa.nextReq)
	h := sa.header(wire.Informational, 0, true)
	pkts, _, err := sa.protect(h, []wire.Payload{wire.NewNotify(wire.NotifyIKEv2MessageIDSync, midSyncData(nonce, p2, m2))}, msg.d.Local, msg.d.Remote)
	if err != nil {
		e.log.Error("cannot build the Message ID sync answer", "ike", sa.id, "err", err)
		return
	}
	for _, pkt := range pkts {
		sa.transmitTo(msg.d.Local, msg.d.Remote, msg.d.TCP, pkt)
	}
	sa.midSyncResp = &response{id: 0, exchange: wire.Informational, hash: requestHash(msg.raw), packets: pkts}
	sa.midSyncSeen = int64(m1)
	sa.lastInbound = e.now
	sa.expectReq, sa.nextReq, sa.responses = m2, p2, nil
	// Our requests in flight went to the node that died; the new one
	// drops them, being below the Message IDs just agreed (§8.1). Send
	// them again from P2 on: those that can be built again are queued
	// first, the others end (their owners retry).
	old := sa.outstanding
	sa.outstanding = nil
	var again []task
	for _, p := range old {
		p.timer.cancel()
		switch p.task.(type) {
		case *dpdTask, *addressTask, *updateTask, *windowTask, *childDeleteTask, *ikeDeleteTask:
			again = append(again, p.task)
		default:
			if p.task != nil {
				p.task.abort(sa, "Message IDs resynchronised (RFC 6311)")
			}
		}
	}
	sa.tasks = append(again, sa.tasks...)
	e.event(sa, EventMessageIDSync, fmt.Sprintf("by the peer: next request %d, next expected %d", p2, m2))
	e.log.Info("Message IDs resynchronised by the peer (RFC 6311)", "ike", sa.id, "next_request", p2, "next_expected", m2)
	sa.next()
}

// TakeOver imports an SA that another engine owned and may have used
// since Export wrote it (a gateway cluster node that died): its Child
// SAs carry no outbound traffic, the Message IDs are resynchronised with
// the peer (RFC 6311), then every Child SA is rekeyed, whose new keys
// carry the traffic. A peer that did not negotiate RFC 6311 cannot have
// its SA taken over: the error says so and nothing is imported.
//
// local, when valid, is this node's own address, which the SA uses from
// now on (the dead node's is not ours to send from). As the peer's MOBIKE
// responder we cannot move the SA (RFC 4555 §3.5 leaves that to the
// initiator), so after the synchronisation, sent from local, we announce
// our addresses (§3.6): the initiator sees the address it sends to gone
// from the list and moves to ours with UPDATE_SA_ADDRESSES.
func (e *Engine) TakeOver(now time.Time, b []byte, local netip.Addr) (uint64, []Action, error) {
	e.begin(now)
	x, err := decodeExport(b)
	if err != nil {
		return 0, e.end(), err
	}
	if !x.Ext.MIDSync {
		return 0, e.end(), errors.New("ike: the peer did not negotiate Message ID synchronisation (RFC 6311): the SA cannot be taken over")
	}
	for i := range x.Children {
		x.Children[i].Outbound, x.Children[i].NoSend = false, true
	}
	sa, err := e.rebuild(x)
	if err != nil {
		return 0, e.end(), fmt.Errorf("ike: take over: %w", err)
	}
	sa.responses = nil // for Message IDs the sync leaves behind
	if local.IsValid() && local.Unmap() != sa.local.Addr() {
		local = local.Unmap()
		sa.local = netip.AddrPortFrom(local, sa.local.Port())
		if sa.dataLocal.IsValid() {
			sa.dataLocal = netip.AddrPortFrom(local, sa.dataLocal.Port())
		}
		sa.iface = ""
	}
	e.event(sa, EventIKEUp, fmt.Sprintf("taken over %s %s <-> %s", sa.neg.String(), sa.local, sa.remote))
	e.log.Info("IKE SA taken over", "ike", sa.id, "conn", sa.conn.Name, "local", sa.local, "remote", sa.remote, "children", len(sa.children))
	sa.queueFront(&midSyncTask{})
	if sa.ext.mobike && !sa.mobikeInitiator {
		sa.queue(&addressTask{})
	}
	return sa.id, e.end(), nil
}
