package ike

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// MOBIKE (RFC 4555). The MOBIKE initiator of an IKE SA decides the
// addresses of it and its Child SAs (§2.1): the IKE_AUTH initiator for SAs
// it authenticated and their rekeyed successors, and for a clone the peer
// that cloned (RFC 7791 §1 has both the end user and the gateway move
// clones; this rule lets each move the clones it made, and keeps exactly
// one decider per SA, as RFC 4555 requires).

// mobikeFeature negotiates MOBIKE in IKE_AUTH (§3.1) and handles its
// INFORMATIONAL content (§3.5-§3.9) in both roles.
type mobikeFeature struct{}

func (mobikeFeature) String() string { return "MOBIKE" }

func (mobikeFeature) authRequest(sa *ikeSA, x *authExchange) []wire.Payload {
	if !sa.conn.MOBIKE {
		return nil
	}
	ps := []wire.Payload{wire.NewNotify(wire.NotifyMOBIKESupported, nil)}
	ps = append(ps, sa.addressPayloads(false)...)
	if !sa.ext.peerNATT {
		// Without NAT traversal the first IKE_AUTH request protects the
		// addresses it was sent with (§3.9).
		ps = append(ps, sa.noNATs())
	}
	return ps
}

func (mobikeFeature) respondAuth(sa *ikeSA, x *authExchange) []wire.Payload {
	m := x.first
	if n := m.notify(wire.NotifyNoNATsAllowed); n != nil && !noNATsMatch(n, m.d) {
		// §3.9: something between us rewrote the addresses.
		x.refuse(wire.NotifyUnexpectedNATDetected, "NO_NATS_ALLOWED does not match the IP header (RFC 4555 §3.9)")
		return nil
	}
	sa.ext.mobike = sa.conn.MOBIKE && m.notify(wire.NotifyMOBIKESupported) != nil
	if !sa.ext.mobike {
		return nil
	}
	sa.readPeerAddrs(m)
	return append([]wire.Payload{wire.NewNotify(wire.NotifyMOBIKESupported, nil)}, sa.addressPayloads(false)...)
}

func (mobikeFeature) readAuthResponse(sa *ikeSA, x *authExchange, m *message) {
	sa.ext.mobike = sa.conn.MOBIKE && m.notify(wire.NotifyMOBIKESupported) != nil
	if sa.ext.mobike {
		sa.readPeerAddrs(m)
	}
}

func (mobikeFeature) respondInfo(sa *ikeSA, m *message) ([]wire.Payload, bool) {
	if !sa.ext.mobike {
		return nil, false
	}
	return sa.respondMOBIKE(m)
}

func (mobikeFeature) afterInfo(sa *ikeSA, m *message) { sa.afterMOBIKEResponse(m) }

// maxNATRetries is how many times UNEXPECTED_NAT_DETECTED is answered by
// trying again (RFC 4555 §3.9: "several times") before the path, or the
// IKE SA, is given up.
const maxNATRetries = 3

// probeAfter is the retransmission count after which the MOBIKE initiator
// tries another path (§3.5: "re-transmitted several times").
const probeAfter = 2

// SetLocalAddresses tells the engine which local addresses are usable now
// (interfaces with addresses, up). Every MOBIKE SA announces the new list
// (§3.6); one whose current address vanished moves: the MOBIKE initiator
// with UPDATE_SA_ADDRESSES, a responder by §3.5's exception.
func (e *Engine) SetLocalAddresses(now time.Time, addrs []netip.Addr) []Action {
	e.begin(now)
	old := e.localAddrs
	e.localAddrs = nil
	for _, a := range addrs {
		e.localAddrs = append(e.localAddrs, a.Unmap())
	}
	if !slices.Equal(old, e.localAddrs) {
		for _, sa := range e.sortedSAs() {
			if sa.state != stateEstablished || !sa.ext.mobike {
				continue
			}
			if !slices.Contains(e.localAddrs, sa.local.Addr()) && len(e.localAddrs) > 0 {
				if next, iface, ok := sa.nextPath(PathAddressGone, 0); ok {
					sa.moveTo(next.local, next.remote, iface, sa.mobikeInitiator)
					continue
				}
			}
			if !slices.Contains(old, sa.local.Addr()) && slices.Contains(e.localAddrs, sa.local.Addr()) {
				// The SA's address is back (an interface re-added with
				// the same address after every one was gone): what it
				// sent meanwhile went nowhere, so send it again now
				// instead of waiting out the retransmission timer, whose
				// last wait is the longest. The timer and the count stay:
				// an SA whose peer forgot it meanwhile still dies when
				// they run out.
				sa.sendOutstandingAgain()
			}
			sa.queue(&addressTask{})
		}
	}
	return e.end()
}

// SetClusterAddresses sets the addresses of the other live nodes of a
// gateway cluster (docs/cluster.md). Every MOBIKE SA announces them with
// ours (RFC 4555 §3.6), so a client takes an SA moved to another node,
// or taken over by one, as a move among its peer's addresses; a node
// that died is left out at once, so a client that sends to it sees its
// address gone and moves.
func (e *Engine) SetClusterAddresses(now time.Time, addrs []netip.Addr) []Action {
	e.begin(now)
	var list []netip.Addr
	for _, a := range addrs {
		if a.IsValid() && !slices.Contains(list, a.Unmap()) {
			list = append(list, a.Unmap())
		}
	}
	slices.SortFunc(list, netip.Addr.Compare)
	if !slices.Equal(list, e.clusterAddrs) {
		e.clusterAddrs = list
		for _, sa := range e.sortedSAs() {
			if sa.state == stateEstablished && sa.ext.mobike {
				sa.queue(&addressTask{})
			}
		}
	}
	return e.end()
}

// Move moves IKE SA id and its Child SAs to a new address pair (and, with
// iface, pins it to that interface). Only the SA's MOBIKE initiator may.
// An invalid remote keeps the peer's current address.
func (e *Engine) Move(now time.Time, id uint64, local, remote netip.Addr, iface string) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	switch {
	case sa == nil || sa.state != stateEstablished:
		return e.end(), fmt.Errorf("ike: no established IKE SA %d", id)
	case !sa.ext.mobike:
		return e.end(), fmt.Errorf("ike: IKE SA %d did not negotiate MOBIKE; it cannot move", id)
	case !sa.mobikeInitiator:
		return e.end(), fmt.Errorf("ike: IKE SA %d is moved by its peer, the MOBIKE initiator (RFC 4555 §2.1)", id)
	}
	if !remote.IsValid() {
		remote = sa.remote.Addr()
	}
	local, remote = local.Unmap(), remote.Unmap()
	if local.Is4() != remote.Is4() {
		return e.end(), fmt.Errorf("ike: %v and %v are of different address families", local, remote)
	}
	port := e.cfg.NATTPort
	sa.moveTo(netip.AddrPortFrom(local, port), netip.AddrPortFrom(remote, port), iface, true)
	return e.end(), nil
}

type path struct{ local, remote netip.AddrPort }

// probePath is called on each retransmission: after a few, the MOBIKE
// initiator tries the next path; outstanding requests follow (§3.5).
func (sa *ikeSA) probePath(tries int) {
	if !sa.ext.mobike || !sa.mobikeInitiator || sa.state != stateEstablished || tries < probeAfter {
		return
	}
	next, iface, ok := sa.nextPath(PathUnanswered, tries)
	if !ok {
		return
	}
	sa.e.emit(Event{Kind: EventPathProbe, IKESA: sa.id, Conn: sa.conn.Name,
		Detail: fmt.Sprintf("no answer on %v - %v, trying %v - %v", sa.local, sa.remote, next.local, next.remote)})
	sa.moveTo(next.local, next.remote, iface, true)
}

// moveTo switches the IKE SA to a new path. As MOBIKE initiator it
// updates the Child SAs at once and tells the responder with
// UPDATE_SA_ADDRESSES when the window allows (§3.5). As responder (our
// address vanished) it updates the Child SAs and announces its addresses.
func (sa *ikeSA) moveTo(local, remote netip.AddrPort, iface string, initiator bool) {
	e := sa.e
	if local == sa.local && remote == sa.remote && iface == sa.iface {
		return
	}
	sa.rareState().prevPath, sa.prevTCP = path{sa.local, sa.remote}, sa.tcp
	sa.natdSeen = nil // a new path: its own mapping
	if initiator {
		remote = sa.moveTransport(remote, iface) // RFC 9329 §7.1
	}
	sa.local, sa.remote, sa.iface = local, remote, iface
	sa.pathSince = e.now
	sa.updateGen++
	sa.updateChildren()
	sa.pathChanged()
	e.emit(Event{Kind: EventAddressUpdate, IKESA: sa.id, Conn: sa.conn.Name, Detail: fmt.Sprintf("%v - %v", local, remote)})
	e.log.Info("IKE SA moved", "ike", sa.id, "local", local, "remote", remote, "iface", iface)
	sa.resendOutstanding()
	if initiator {
		sa.pendingUpdate = true
		sa.queue(&updateTask{})
	} else {
		sa.confirmedGen = sa.updateGen
		sa.queue(&addressTask{})
	}
}

// updateChildren moves every Child SA of this IKE SA to its addresses
// (and only this IKE SA's: clones move on their own).
func (sa *ikeSA) updateChildren() {
	sa.dataLocal, sa.dataRemote, sa.dataIface = sa.local, sa.remote, sa.iface
	for _, c := range sa.children {
		sa.e.emit(UpdateChild{SA: c.params()})
	}
}

// addressPayloads announces our addresses other than the one in the IP
// header (§3.4, §3.6); withEmpty adds NO_ADDITIONAL_ADDRESSES when there is
// none (used in INFORMATIONAL updates, where silence would mean no change).
func (sa *ikeSA) addressPayloads(withEmpty bool) []wire.Payload {
	var ps []wire.Payload
	seen := map[netip.Addr]bool{sa.local.Addr(): true}
	for _, a := range sa.rareView().unannounced {
		seen[a] = true
	}
	for _, a := range append(slices.Clone(sa.e.localAddrs), sa.e.clusterAddrs...) {
		if !seen[a] && !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			seen[a] = true
			ps = append(ps, wire.AddrNotify(a))
		}
	}
	if len(ps) == 0 && withEmpty {
		ps = append(ps, wire.NewNotify(wire.NotifyNoAdditionalAddresses, nil))
	}
	return ps
}

// readPeerAddrs replaces the peer's address list with what the message
// announces; the IP header's source always counts (§3.6). It reports
// whether the message carried a list at all.
func (sa *ikeSA) readPeerAddrs(m *message) bool {
	list := []netip.Addr{m.d.Remote.Addr()} // the header's source counts (§3.6)
	seen := false
	for _, p := range m.payloads {
		n, ok := p.(*wire.Notify)
		if !ok {
			continue
		}
		switch n.NotifyType {
		case wire.NotifyAdditionalIP4Address, wire.NotifyAdditionalIP6Address:
			seen = true
			if a, err := n.Addr(); err == nil && len(list) < 32 && !slices.Contains(list, a) { // bounded
				list = append(list, a)
			}
		case wire.NotifyNoAdditionalAddresses:
			seen = true
		}
	}
	if seen {
		sa.peerAddrs = list
	}
	return seen
}

// updateTask sends UPDATE_SA_ADDRESSES from the new path (§3.5) with NAT
// detection over this SA's own SPIs (a clone's NAT-D uses the clone's)
// and COOKIE2 for return routability (§3.7).
type updateTask struct {
	gen     int
	cookie2 []byte
	from    path
}

func (t *updateTask) String() string { return "MOBIKE update" }

func (t *updateTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished || !sa.pendingUpdate {
		return 0, nil, errSkip // a later update already went out
	}
	sa.pendingUpdate = false
	t.gen, t.from = sa.updateGen, path{sa.local, sa.remote}
	t.cookie2 = make([]byte, 16)
	sa.e.random(t.cookie2)
	ps := []wire.Payload{wire.NewNotify(wire.NotifyUpdateSAAddresses, nil)}
	// The address list rides along, built for the new source address: a
	// list sent from another source is stale (§3.6).
	ps = append(ps, sa.addressPayloads(true)...)
	if sa.ext.peerNATT {
		ps = append(ps, sa.e.natdPayloads(sa.spiI, sa.spiR, sa.local, sa.remote, sa.conn.ForceEncap)...)
	} else {
		ps = append(ps, sa.noNATs())
	}
	ps = append(ps, wire.NewNotify(wire.NotifyCookie2, t.cookie2))
	return wire.Informational, ps, nil
}

// noNATsMatch: the NO_NATS_ALLOWED content names the addresses and ports
// the message arrived with (RFC 4555 §3.9, §4.2.6).
func noNATsMatch(n *wire.Notify, d Datagram) bool {
	v, err := n.NoNATs()
	return err == nil && v.Src.Addr().Unmap() == d.Remote.Addr().Unmap() && v.Src.Port() == d.Remote.Port() &&
		v.Dst.Addr().Unmap() == d.Local.Addr().Unmap() && v.Dst.Port() == d.Local.Port()
}

func (sa *ikeSA) noNATs() *wire.Notify {
	d, _ := wire.NoNATsAllowed{Src: sa.local, Dst: sa.remote}.Marshal()
	return wire.NewNotify(wire.NotifyNoNATsAllowed, d)
}

func (t *updateTask) abort(*ikeSA, string) {}

func (t *updateTask) process(sa *ikeSA, m *message) {
	e := sa.e
	if !sa.checkCookie2(m, t.cookie2) {
		return
	}
	if t.gen != sa.updateGen {
		return // addresses changed again; a newer update follows (§3.5)
	}
	switch {
	case m.notify(wire.NotifyUnexpectedNATDetected) != nil && sa.natRetries < maxNATRetries:
		// §3.9: a NAT between us and the peer, which NAT traversal being
		// off forbids; it may be passing (a captive portal's), so the
		// same pair is tried again with new requests a few times before
		// another.
		sa.natRetries++
		e.log.Info("peer saw a NAT on the new path (UNEXPECTED_NAT_DETECTED); trying again", "ike", sa.id, "try", sa.natRetries, "of", maxNATRetries)
		sa.updateGen++
		sa.pendingUpdate = true
		sa.queue(&updateTask{})
		return
	case m.notify(wire.NotifyUnacceptableAddresses) != nil, m.notify(wire.NotifyUnexpectedNATDetected) != nil:
		sa.natRetries = 0
		refusal := m.notify(wire.NotifyUnacceptableAddresses)
		if refusal == nil {
			refusal = m.notify(wire.NotifyUnexpectedNATDetected)
		}
		// §3.5: we may try other addresses; try the next candidate, if any.
		e.emit(Event{Kind: EventAddressUpdate, IKESA: sa.id, Conn: sa.conn.Name, Notify: refusal.NotifyType,
			Detail: fmt.Sprintf("peer refused %v - %v", t.from.local, t.from.remote)})
		if next, iface, ok := sa.nextPath(PathRefused, 0); ok && next != t.from {
			sa.moveTo(next.local, next.remote, iface, true)
		} else if p := sa.rareView().prevPath; p.local.IsValid() {
			sa.moveTo(p.local, p.remote, "", true) // keep the path that worked
		}
		return
	}
	sa.readNATD(m)
	if n := m.notify(wire.NotifyNATDetectionDestinationIP); n != nil {
		sa.natdSeen = bytes.Clone(n.Data) // what watchNAT compares with
	}
	sa.verified.add(sa.remote.Addr())
	sa.confirmedGen = t.gen
	sa.natRetries = 0
	sa.updateChildren()
	if prev := sa.rareView().prevPath; sa.prevTCP && (!sa.tcp || prev.local.Addr() != sa.local.Addr() || prev.remote != sa.remote) {
		// The old stream carried this SA; once moved, ours to close
		// (RFC 9329 §7.1).
		e.closeStreamIfUnused(prev.local, prev.remote)
		sa.prevTCP = false
	}
	e.emit(Event{Kind: EventAddressConfirmed, IKESA: sa.id, Conn: sa.conn.Name,
		Detail: fmt.Sprintf("peer answered on %v - %v", sa.local, sa.remote)})
}

// checkCookie2 verifies the echoed COOKIE2; a mismatch closes the IKE SA
// (§3.7: the reply did not come from where we sent).
func (sa *ikeSA) checkCookie2(m *message, want []byte) bool {
	n := m.notify(wire.NotifyCookie2)
	if want == nil {
		return true
	}
	if n == nil || subtle.ConstantTimeCompare(n.Data, want) != 1 {
		sa.e.destroy(sa, "COOKIE2 not echoed correctly (RFC 4555 §3.7)")
		return false
	}
	return true
}

// addressTask announces our current address list (§3.6).
type addressTask struct{}

func (t *addressTask) String() string { return "MOBIKE address list" }
func (t *addressTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished || !sa.ext.mobike {
		return 0, nil, errSkip
	}
	ps := sa.addressPayloads(true)
	if !sa.ext.peerNATT {
		ps = append(ps, sa.noNATs())
	}
	return wire.Informational, ps, nil
}
func (t *addressTask) process(*ikeSA, *message) {}
func (t *addressTask) abort(*ikeSA, string)     {}

// rrTask is the responder's return routability check of a new initiator
// address (§3.7): an INFORMATIONAL with COOKIE2 to that address; only when
// it is answered do the Child SAs move there.
type rrTask struct {
	addr    netip.AddrPort
	cookie2 []byte
	gen     int
}

func (t *rrTask) String() string { return "MOBIKE return routability" }
func (t *rrTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished || sa.remote != t.addr {
		return 0, nil, errSkip // moved on meanwhile
	}
	t.gen = sa.updateGen
	t.cookie2 = make([]byte, 16)
	sa.e.random(t.cookie2)
	return wire.Informational, []wire.Payload{wire.NewNotify(wire.NotifyCookie2, t.cookie2)}, nil
}
func (t *rrTask) process(sa *ikeSA, m *message) {
	if !sa.checkCookie2(m, t.cookie2) || sa.remote != t.addr {
		return
	}
	sa.verified.add(t.addr.Addr())
	sa.updateChildren()
}
func (t *rrTask) abort(*ikeSA, string) {}

// respondMOBIKE handles the MOBIKE content of an INFORMATIONAL request
// and returns the response payloads; refused means the request is
// answered with an error and nothing else is processed.
func (sa *ikeSA) respondMOBIKE(m *message) (out []wire.Payload, refused bool) {
	e := sa.e
	update := m.notify(wire.NotifyUpdateSAAddresses) != nil
	list := sa.hasAddressList(m)
	// §3.5, §3.6: with overlapping requests an older update or address
	// list may arrive after a newer one; it gets a normal response and
	// changes nothing.
	m.staleUpdate = update && sa.newestUpdate.newer(m.MessageID)
	m.staleList = list && sa.newestList.newer(m.MessageID)
	if m.staleUpdate {
		e.log.Debug("older UPDATE_SA_ADDRESSES than one already taken: answered, not applied", "ike", sa.id, "id", m.MessageID)
		return sa.mobikeEchoes(m), false
	}
	// Over TCP, NO_NATS_ALLOWED is ignored: TCP has no trouble with NATs
	// (RFC 9329 §7.1).
	if n := m.notify(wire.NotifyNoNATsAllowed); n != nil && !m.d.TCP && (update || sa.hasAddressList(m)) && !noNATsMatch(n, m.d) {
		// §3.9: the sender's view of the addresses must match ours;
		// COOKIE2 is echoed in error responses too (§3.7).
		out = errorNotify(wire.NotifyUnexpectedNATDetected, nil)
		if c := m.notify(wire.NotifyCookie2); c != nil {
			out = append(out, wire.NewNotify(wire.NotifyCookie2, bytes.Clone(c.Data)))
		}
		return out, true
	}
	if update {
		// Policy: the configured peer addresses, or any the peer
		// announced in an authenticated message (§3.4).
		if !addrAllowed(sa.conn.RemoteAddrs, m.d.Remote.Addr()) && !slices.Contains(sa.peerAddrs, m.d.Remote.Addr()) {
			out = errorNotify(wire.NotifyUnacceptableAddresses, nil)
			if c := m.notify(wire.NotifyCookie2); c != nil {
				out = append(out, wire.NewNotify(wire.NotifyCookie2, c.Data))
			}
			e.log.Info("MOBIKE update to an address policy does not allow", "ike", sa.id, "remote", m.d.Remote)
			return out, true
		}
	}
	if update {
		sa.newestUpdate.take(m.MessageID)
	}
	if list && !m.staleList {
		sa.newestList.take(m.MessageID)
	}
	if !m.staleList && sa.readPeerAddrs(m) && !sa.mobikeInitiator {
		// The responder uses the initiator's list only when its own
		// address is gone (§3.4); nothing to do now.
		e.log.Debug("peer announced addresses", "ike", sa.id, "addrs", fmt.Sprint(sa.peerAddrs))
	}
	return append(out, sa.mobikeEchoes(m)...), false
}

// mobikeEchoes are what every MOBIKE response carries back.
func (sa *ikeSA) mobikeEchoes(m *message) (out []wire.Payload) {
	// NAT-D in the request must be answered with NAT-D (§3.8); both use
	// the addresses of this exchange.
	if m.notify(wire.NotifyNATDetectionSourceIP) != nil {
		out = append(out,
			wire.NewNotify(wire.NotifyNATDetectionSourceIP, ikecrypto.NATDetectionHash(sa.spiI, sa.spiR, m.d.Local)),
			wire.NewNotify(wire.NotifyNATDetectionDestinationIP, ikecrypto.NATDetectionHash(sa.spiI, sa.spiR, m.d.Remote)))
	}
	if c := m.notify(wire.NotifyCookie2); c != nil {
		out = append(out, wire.NewNotify(wire.NotifyCookie2, bytes.Clone(c.Data))) // copied unchanged (§3.7)
	}
	return out
}

// newestID is the highest Message ID of a kind of request taken so far.
type newestID struct {
	id   uint32
	seen bool
}

func (n *newestID) newer(id uint32) bool { return n.seen && n.id > id }
func (n *newestID) take(id uint32) {
	if !n.newer(id) {
		n.id, n.seen = id, true
	}
}

func (sa *ikeSA) hasAddressList(m *message) bool {
	return m.notify(wire.NotifyAdditionalIP4Address) != nil || m.notify(wire.NotifyAdditionalIP6Address) != nil ||
		m.notify(wire.NotifyNoAdditionalAddresses) != nil
}

// afterMOBIKEResponse applies an UPDATE_SA_ADDRESSES after the response
// went out (§3.5): the IKE SA takes the header's addresses; the Child SAs
// follow once the new initiator address passed return routability, and
// the NAT situation is re-evaluated. An address list without the address
// we send to makes the MOBIKE initiator pick a new path.
func (sa *ikeSA) afterMOBIKEResponse(m *message) {
	if !sa.ext.mobike || sa.state != stateEstablished || m.staleUpdate {
		return
	}
	if m.notify(wire.NotifyUpdateSAAddresses) != nil {
		sa.updateGen++
		sa.confirmedGen = sa.updateGen
		sa.local, sa.remote, sa.iface, sa.tcp = m.d.Local, m.d.Remote, "", m.d.TCP
		// Our own requests still outstanding went to an address the
		// initiator left (the SA's remote may have followed its
		// earlier requests already, RFC 7296 §2.23, while our
		// retransmissions wait for their timers): they follow at once,
		// as the initiator's do (§3.5), instead of going on unheard
		// until they give the SA up.
		sa.resendOutstanding()
		sa.readNATD(m)
		sa.e.emit(Event{Kind: EventAddressUpdate, IKESA: sa.id, Conn: sa.conn.Name,
			Detail: fmt.Sprintf("peer moved to %v - %v", sa.remote, sa.local)})
		// Over TCP the handshake proved the address: no return
		// routability check (RFC 9329 §7.1).
		if sa.verified.has(sa.remote.Addr()) || !sa.conn.ReturnRoutability || sa.tcp {
			sa.updateChildren()
		} else {
			sa.queue(&rrTask{addr: sa.remote})
		}
		return
	}
	if sa.mobikeInitiator && sa.hasAddressList(m) && !m.staleList && !slices.Contains(append(sa.peerAddrs, m.d.Remote.Addr()), sa.remote.Addr()) {
		if next, iface, ok := sa.nextPath(PathPeerAddressGone, 0); ok {
			sa.moveTo(next.local, next.remote, iface, true)
		}
	}
}
