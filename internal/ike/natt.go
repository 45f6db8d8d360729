package ike

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"net/netip"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// natTraversal is NAT detection and traversal (RFC 7296 §2.23, RFC 3948):
// NAT_DETECTION_SOURCE_IP and _DESTINATION_IP in IKE_SA_INIT, the float
// to port 4500, UDP encapsulation, following a NAT's new mapping, and
// keepalives. MOBIKE re-runs the detection on a new path (RFC 4555 §3.8,
// readNATD).
type natTraversal struct{}

func (natTraversal) String() string { return "NAT-T" }

func (natTraversal) initRequest(x *initExchange) []wire.Payload {
	if x.conn.NoNATT {
		return nil
	}
	return x.e.natdPayloads(x.spiI, x.spiR, x.local, x.remote, x.conn.ForceEncap)
}

func (natTraversal) readInit(x *initExchange, m *message) {
	if x.conn.NoNATT {
		// NAT traversal is off: a NAT the notifies reveal is not worked
		// around (the peer's NO_NATS_ALLOWED check finds it).
		return
	}
	n := detectNAT(m, x.spiI, x.spiR)
	x.ext.peerNATT = n.sawDst
	x.ext.natLocal, x.ext.natRemote = n.natLocal, n.natRemote
}

func (natTraversal) initResponse(x *initExchange, m *message) []wire.Payload {
	if m.notify(wire.NotifyNATDetectionSourceIP) == nil || x.conn.NoNATT {
		return nil // only to a peer that asked (§2.23)
	}
	return x.e.natdPayloads(x.spiI, x.spiR, x.local, x.remote, x.conn.ForceEncap)
}

// natdPayloads are NAT_DETECTION_SOURCE_IP and _DESTINATION_IP for the
// addresses, hashed with the SPIs as they stand in the header (§2.23).
// With ForceEncap the source hash is random, so the peer sees a NAT and
// both sides encapsulate (what strongSwan's encap=yes does).
func (e *Engine) natdPayloads(spiI, spiR uint64, local, remote netip.AddrPort, forceEncap bool) []wire.Payload {
	src := ikecrypto.NATDetectionHash(spiI, spiR, local)
	if forceEncap {
		src = make([]byte, 20)
		e.random(src)
	}
	return []wire.Payload{
		wire.NewNotify(wire.NotifyNATDetectionSourceIP, src),
		wire.NewNotify(wire.NotifyNATDetectionDestinationIP, ikecrypto.NATDetectionHash(spiI, spiR, remote)),
	}
}

// natResult is what a message's NAT detection notifies say.
type natResult struct {
	sawSrc, sawDst      bool
	natLocal, natRemote bool
}

// detectNAT evaluates m's NAT detection notifies against the addresses
// it traveled with (§2.23): we are behind a NAT when the destination hash
// does not match our address, the peer when no source hash (there may be
// several) matches its address. The one rule for IKE_SA_INIT and for
// MOBIKE's new paths.
func detectNAT(m *message, spiI, spiR uint64) natResult {
	var r natResult
	var srcMatch, dstMatch bool
	for _, p := range m.payloads {
		n, ok := p.(*wire.Notify)
		if !ok {
			continue
		}
		switch n.NotifyType {
		case wire.NotifyNATDetectionSourceIP:
			r.sawSrc = true
			srcMatch = srcMatch || subtle.ConstantTimeCompare(n.Data, ikecrypto.NATDetectionHash(spiI, spiR, m.d.Remote)) == 1
		case wire.NotifyNATDetectionDestinationIP:
			r.sawDst = true
			dstMatch = dstMatch || subtle.ConstantTimeCompare(n.Data, ikecrypto.NATDetectionHash(spiI, spiR, m.d.Local)) == 1
		}
	}
	r.natLocal = r.sawDst && !dstMatch
	r.natRemote = r.sawSrc && !srcMatch
	return r
}

// setEncap decides UDP encapsulation of IKE and ESP (RFC 3948): a NAT on
// either side, or the configuration forces it (then the peer sees a NAT
// too, natdPayloads).
func (sa *ikeSA) setEncap() {
	sa.encap = sa.ext.natLocal || sa.ext.natRemote || sa.conn.ForceEncap
}

// floatAfterInit moves the initiator to port 4500 after IKE_SA_INIT when
// a NAT is in the way, encapsulation is forced, or MOBIKE may need it
// later (RFC 7296 §2.23, RFC 4555 §3.3); from then on everything is on
// 4500.
func (sa *ikeSA) floatAfterInit() {
	nat := sa.e.cfg.NATTPort
	if sa.tcp {
		return // the stream stays where it is (RFC 9329 §6.5)
	}
	if sa.local.Port() != nat && (sa.encap || (sa.conn.MOBIKE && sa.ext.peerNATT)) {
		sa.local = netip.AddrPortFrom(sa.local.Addr(), nat)
		sa.remote = netip.AddrPortFrom(sa.remote.Addr(), nat)
	}
}

// readNATD re-evaluates NAT detection from the NAT-D notifies of a
// MOBIKE exchange (RFC 4555 §3.8), over this SA's own SPIs, and switches
// UDP encapsulation accordingly.
func (sa *ikeSA) readNATD(m *message) {
	n := detectNAT(m, sa.spiI, sa.spiR)
	if !n.sawSrc || !n.sawDst {
		return
	}
	was := sa.ext.natLocal || sa.ext.natRemote
	sa.ext.natRemote, sa.ext.natLocal = n.natRemote, n.natLocal
	sa.setEncap()
	if now := sa.ext.natLocal || sa.ext.natRemote; now != was {
		sa.e.log.Info("NAT situation changed on the new path", "ike", sa.id, "nat_local", sa.ext.natLocal, "nat_remote", sa.ext.natRemote)
	}
	sa.armKeepalive()
}

// watchesNAT: as MOBIKE initiator behind a NAT, the SA's liveness
// checks carry NAT-D, so that a NAT that changes its mapping under the
// SA is noticed (RFC 4555 §3.8). Not over TCP, whose stream breaks
// instead and is opened again (RFC 9329 §6.1).
func (sa *ikeSA) watchesNAT() bool {
	return sa.ext.mobike && sa.mobikeInitiator && sa.ext.natLocal && !sa.conn.NoNATT && !sa.tcp
}

// watchNAT compares the NAT_DETECTION_DESTINATION_IP of a liveness
// check's response, the peer's hash of where our packets came from, with
// the last one on this path (RFC 4555 §3.8). A change means a NAT on the
// way mapped us anew: the peer answers our requests there but sends its
// own and its ESP to the old mapping. The initiator then sends
// UPDATE_SA_ADDRESSES, which moves the peer to the new one (§3.5: the
// responder takes the addresses from the IP header).
func (sa *ikeSA) watchNAT(m *message) {
	n := m.notify(wire.NotifyNATDetectionDestinationIP)
	if n == nil || sa.state != stateEstablished {
		return
	}
	last := sa.natdSeen
	sa.natdSeen = bytes.Clone(n.Data)
	if last == nil || bytes.Equal(last, n.Data) {
		return // the first on this path (establish asks at once), or no change
	}
	sa.readNATD(m)
	sa.e.log.Info("NAT mapping changed under the SA; updating the peer", "ike", sa.id, "nat_local", sa.ext.natLocal)
	sa.e.event(sa, EventAddressUpdate, fmt.Sprintf("NAT mapping of %v changed: sending UPDATE_SA_ADDRESSES", sa.local))
	sa.e.stats.NATRebinds++
	sa.updateGen++
	sa.pendingUpdate = true
	sa.queue(&updateTask{})
}

// followNAT applies RFC 7296 §2.23 dynamic address updates for an SA
// without MOBIKE whose peer is behind a NAT: an authenticated, in-window
// message from a new address:port means the NAT mapping changed. (With
// MOBIKE only UPDATE_SA_ADDRESSES moves an SA: RFC 4555 §3.8.)
func (sa *ikeSA) followNAT(m *message) {
	if sa.ext.mobike || !sa.ext.natRemote || m.d.Remote == sa.remote || sa.state != stateEstablished {
		return
	}
	sa.e.log.Info("peer's NAT mapping changed", "ike", sa.id, "from", sa.remote, "to", m.d.Remote)
	sa.remote = m.d.Remote
	sa.updateChildren()
}

// armKeepalive asks the transport for a NAT keepalive (SendKeepalive)
// when we are behind a NAT and sent nothing for the interval (RFC 3948
// §2.3, RFC 7296 §2.23), so the NAT mapping does not expire.
func (sa *ikeSA) armKeepalive() {
	e := sa.e
	sa.keepaliveT.cancel()
	if !sa.ext.natLocal || sa.tcp {
		// Over TCP none: NATs keep TCP mappings longer (RFC 9329 §6.6).
		return
	}
	iv := e.cfg.KeepaliveInterval
	sa.keepaliveT = e.after(iv, func() {
		if sa.state == stateDead || !sa.ext.natLocal || sa.tcp {
			return
		}
		if e.now.Sub(sa.lastSent) >= iv {
			sa.lastSent = e.now
			e.emit(SendKeepalive{Local: sa.local, Remote: sa.remote, Iface: sa.iface})
		}
		sa.armKeepalive()
	})
}
