package ike

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/wire"
)

// TCP encapsulation (RFC 9329) as the engine sees it: a transport flag on
// each IKE SA (pathState.tcp) and on each Datagram. The driver's TCP
// transport (internal/conn.TCP) frames messages, finds the stream
// between two addresses and, on the IKE initiator's side (the TCP
// Originator, §6.1), opens one when there is none. What the engine
// decides:
//
//   - which transport an SA starts on: the connection's TCP policy for an
//     initiator (never, fallback, always); the transport its IKE_SA_INIT
//     came in for a responder, which answers every request in the
//     transport it came in;
//   - fallback (§5.1): an IKE_SA_INIT that UDP left unanswered for the
//     connection's TCPFallbackAfter starts again over TCP, with a new
//     initiator SPI and NAT detection computed again; an
//     UPDATE_SA_ADDRESSES left unanswered as long goes on over TCP in
//     the same exchange (§7.1: "a new INFORMATIONAL exchange MUST NOT be
//     started");
//   - a move (MOBIKE) tries UDP first under fallback, stays on TCP under
//     always (§7.1);
//   - the responder follows the stream its peer last used (§6.1: a new
//     stream may come from a new address or port), and skips what TCP
//     makes pointless: NAT keepalives (§6.6), return routability checks
//     and NO_NATS_ALLOWED (§7.1), cookies without a puzzle (§6.3);
//   - a stream the Originator loses is opened again at once by sending
//     what is outstanding, or an empty INFORMATIONAL, on a new one
//     (StreamClosed; §6.1, §6.2), and the SAs stay.
//
// Retransmissions go on over TCP as over UDP, which §6.2 allows "for
// simplicity": a stream may break and be replaced under a request, and
// the peer answers a retransmission from its cache (RFC 7296 §2.1). IKE
// fragmentation (RFC 7383) is still negotiated, for a later move to UDP,
// but messages are not cut for a TCP path (§7.5; maxDatagram).

// startTCP puts a new initiator SA on the transport its connection's
// policy starts with: TCP under TCPAlways, to the peer's TCP port.
func (sa *ikeSA) startTCP() {
	if sa.conn.tcpPolicy(sa.iface) != TCPAlways {
		return
	}
	sa.tcp = true
	sa.remote = netip.AddrPortFrom(sa.remote.Addr(), sa.conn.tcpPort())
}

// fallbackGrace is how long the first UDP retransmission has to be
// answered before the fallback to TCP, however soon TCPFallbackAfter
// ends: with the usual 4 s first timeout and the 6 s default, TCP comes
// at 6 s, not at the second retransmission's 11 s.
const fallbackGrace = time.Second

// fallbackDue is when p, unanswered over UDP, goes on over TCP (§5.1,
// §7.1); zero when it never does.
func (sa *ikeSA) fallbackDue(p *request) time.Time {
	if sa.tcp || !sa.initiatorOfPath() || sa.conn.tcpPolicy(sa.iface) != TCPFallback {
		return time.Time{}
	}
	switch {
	case p.exchange == wire.IKESAInit && sa.state == stateConnecting:
		return sa.created.Add(sa.conn.tcpFallbackAfter())
	case sa.state == stateEstablished && sa.ext.mobike && sa.confirmedGen != sa.updateGen:
		return sa.pathSince.Add(sa.conn.tcpFallbackAfter())
	}
	return time.Time{}
}

// fallBackToTCP is the initiator's §5.1 and §7.1 fallback, on a
// retransmission of p: true when p now goes on over TCP (and was sent).
func (sa *ikeSA) fallBackToTCP(p *request) bool {
	e := sa.e
	if p.tries < 1 {
		return false // RFC 9329 §5.1: UDP retransmitted at least once first
	}
	due := sa.fallbackDue(p)
	if due.IsZero() || e.now.Before(due) {
		return false
	}
	switch {
	case p.exchange == wire.IKESAInit && sa.state == stateConnecting:
		t, ok := p.task.(*ikeInitTask)
		if !ok {
			return false
		}
		// A new IKE_SA_INIT with a new SPI, and NAT detection for the
		// new transport (§5.1); a COOKIE or puzzle was for the UDP
		// attempt. The SA keeps its id: to the user it is one attempt.
		old := sa.spiI
		delete(e.sas, old)
		sa.spiI = e.newSPI()
		e.sas[sa.spiI] = sa
		sa.tcp = true
		sa.remote = netip.AddrPortFrom(sa.remote.Addr(), sa.conn.tcpPort())
		t.cookie, t.solution = nil, nil
		sa.hs.ni = e.nonce()
		e.stats.TCPFallbacks++
		e.event(sa, EventTCPFallback, fmt.Sprintf("no answer over UDP for %v: IKE_SA_INIT again over TCP to %v", e.now.Sub(sa.created).Round(time.Second), sa.remote))
		e.log.Info("no answer over UDP; trying TCP (RFC 9329 §5.1)", "ike", sa.id, "remote", sa.remote, "old_spi_i", fmt.Sprintf("%016x", old))
		if err := t.send(sa); err != nil {
			e.destroy(sa, err.Error())
		}
		return true
	case sa.state == stateEstablished && sa.ext.mobike && sa.confirmedGen != sa.updateGen:
		// The peer has not answered on the path we moved to: not the
		// UPDATE_SA_ADDRESSES, nor whatever else went there (a Child SA
		// request queued before it may be the first to time out).
		// The same exchanges go on over TCP (§7.1: no new INFORMATIONAL
		// exchange), every outstanding request at once (§6.2).
		sa.tcp = true
		sa.remote = netip.AddrPortFrom(sa.remote.Addr(), sa.conn.tcpPort())
		e.stats.TCPFallbacks++
		e.event(sa, EventTCPFallback, fmt.Sprintf("no answer over UDP on the new path: on over TCP to %v", sa.remote))
		e.log.Info("no answer over UDP on the new path; going on over TCP (RFC 9329 §7.1)", "ike", sa.id, "remote", sa.remote)
		sa.updateChildren()
		for _, q := range sa.outstanding {
			q.pathTries = 0 // TCP gets its own tries before another path (probePath)
		}
		sa.resendOutstanding()
		sa.armRetransmit(p)
		return true
	}
	return false
}

// initiatorOfPath: this side chooses the SA's transport, as the IKE
// initiator before IKE_AUTH and the MOBIKE initiator after. Only it
// opens streams (RFC 9329 §6.1).
func (sa *ikeSA) initiatorOfPath() bool {
	if sa.state == stateConnecting {
		return sa.initiator
	}
	return sa.mobikeInitiator || (sa.initiator && !sa.ext.mobike)
}

// moveTransport is the transport of a path the MOBIKE initiator moves
// to, through iface (§7.1): TCP under TCPAlways; UDP first under
// TCPFallback, TCP if the update then goes unanswered (fallBackToTCP);
// UDP under TCPNever. The policy is the interface's, when the
// connection has one for it, so a VPN moved to an interface that blocks
// UDP goes there in TCP and back to UDP when it moves on.
func (sa *ikeSA) moveTransport(remote netip.AddrPort, iface string) netip.AddrPort {
	switch sa.conn.tcpPolicy(iface) {
	case TCPAlways:
		sa.tcp = true
		return netip.AddrPortFrom(remote.Addr(), sa.conn.tcpPort())
	default:
		if sa.tcp && sa.conn.TCP == TCPNever && len(sa.conn.TCPIfaces) == 0 {
			return remote // no policy of ours: the SA stays as it is
		}
		sa.tcp = false
		if remote.Port() == sa.conn.tcpPort() {
			remote = netip.AddrPortFrom(remote.Addr(), sa.e.cfg.NATTPort)
		}
	}
	return remote
}

// followStream: a TCP Responder sends on the stream it last received an
// authentic message on (RFC 9329 §6.1), which the Originator may have
// opened anew from another port or, through a NAT, another address. A
// MOBIKE SA whose peer's address changed waits for its
// UPDATE_SA_ADDRESSES (RFC 4555 §3.8), which the new stream carries.
func (sa *ikeSA) followStream(m *message) {
	if !sa.tcp || !m.d.TCP || sa.initiatorOfPath() || m.d.Remote == sa.remote || sa.state != stateEstablished {
		return
	}
	if sa.ext.mobike && m.d.Remote.Addr() != sa.remote.Addr() {
		return
	}
	sa.e.log.Info("peer's TCP stream changed", "ike", sa.id, "from", sa.remote, "to", m.d.Remote)
	sa.local, sa.remote = m.d.Local, m.d.Remote
	sa.updateChildren()
}

// StreamClosed tells the engine that the TCP stream from local to remote
// is gone (the driver's transport saw it close or fail). SAs stay (RFC
// 9329 §6.1: no DELETE was sent). As the TCP Originator the engine opens
// a new stream at once: outstanding requests go again (§6.2), or an
// empty INFORMATIONAL, which tells the responder the new stream (§6.1
// suggests UPDATE_SA_ADDRESSES or an empty INFORMATIONAL). At most once
// per retransmission timeout per SA, so a stream that cannot be opened
// is tried at the pace of retransmissions, not in a loop.
func (e *Engine) StreamClosed(now time.Time, local, remote netip.AddrPort) []Action {
	e.begin(now)
	for _, sa := range e.byID {
		if !sa.tcp || sa.state != stateEstablished || !sa.initiatorOfPath() || sa.closing ||
			sa.remote != remote || sa.local.Addr() != local.Addr() || now.Before(sa.rareView().tcpRetryAt) {
			continue
		}
		sa.rareState().tcpRetryAt = now.Add(e.cfg.Retransmit.Timeout)
		e.log.Info("TCP stream lost; opening a new one", "ike", sa.id, "local", local, "remote", remote)
		if len(sa.outstanding) > 0 {
			sa.sendOutstandingAgain()
		} else {
			sa.queue(&dpdTask{})
		}
	}
	return e.end()
}

// closeStreamIfUnused asks the transport to close the stream from
// local's address to remote unless a live IKE SA of ours still sends on
// it (a rekeyed SA's successor, a clone not yet moved, §6.1).
func (e *Engine) closeStreamIfUnused(local, remote netip.AddrPort) {
	for _, o := range e.byID {
		if o.state != stateDead && o.tcp && o.remote == remote && o.local.Addr() == local.Addr() {
			return
		}
	}
	e.emit(CloseStream{Local: local, Remote: remote})
}

// StreamOpened tells the engine that a TCP stream from local to remote
// is ready. For the SAs this side carries on it as TCP Originator, local
// has the port the kernel chose: the SAs' own address becomes that, so
// that what they show (list-sas) and what their later NAT-D hash (RFC
// 9329 §6.5: with the TCP ports) is the stream's. The IKE_SA_INIT that
// opened the stream was built before the port was known.
func (e *Engine) StreamOpened(now time.Time, local, remote netip.AddrPort) []Action {
	e.begin(now)
	for _, sa := range e.byID {
		if !sa.tcp || sa.state == stateDead || !sa.initiatorOfPath() || sa.remote != remote ||
			sa.local.Addr() != local.Addr() || sa.local.Port() == local.Port() {
			continue
		}
		old := sa.local
		sa.local = local
		if sa.dataLocal == old && sa.state == stateEstablished {
			sa.updateChildren()
		}
	}
	return e.end()
}
