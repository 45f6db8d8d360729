package ike

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/wire"
)

// INVALID_SPI (RFC 7296 §2.21, §3.10.1) both ways. ESP for an SPI we do
// not have, from an address one of our IKE SAs has for its peer, MAY be
// reported to that peer in a protected INFORMATIONAL; a peer's report is
// a hint, never proof, that a path or an SA broke, and starts a liveness
// check (RFC 4555 §5.3, RFC 7296 §2.21).

// invalidSPIEvery is the least time between two reports on one IKE SA:
// an unknown SPI arrives once per packet, and a stream of them must
// cost the peer and us one exchange now and then, not one per packet.
const invalidSPIEvery = 10 * time.Second

// UnknownSPI tells the engine that ESP with SPI spi came from remote and
// matched no Child SA. If an established IKE SA's peer is at remote, the
// peer hears of it (INVALID_SPI, at most once per invalidSPIEvery per
// SA); otherwise nothing happens (§2.21: no IKE SA, no report).
func (e *Engine) UnknownSPI(now time.Time, remote netip.Addr, spi uint32) []Action {
	e.begin(now)
	remote = remote.Unmap()
	for _, sa := range e.byID {
		if sa.state != stateEstablished || sa.closing || sa.remote.Addr() != remote {
			continue
		}
		if at := sa.rareView().invalidSPIAt; !at.IsZero() && now.Sub(at) < invalidSPIEvery {
			break
		}
		sa.rareState().invalidSPIAt = now
		e.log.Debug("ESP for an unknown SPI; telling the peer", "ike", sa.id, "spi", fmt.Sprintf("%08x", spi), "from", remote)
		sa.queue(&invalidSPITask{spi: spi})
		break // one report, on one SA of that peer
	}
	return e.end()
}

// invalidSPITask reports an unknown SPI to the peer.
type invalidSPITask struct{ spi uint32 }

func (t *invalidSPITask) String() string { return "INVALID_SPI report" }
func (t *invalidSPITask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished {
		return 0, nil, errSkip
	}
	// The data is the packet's SPI; the notify names no protocol (the
	// recipient cannot tell AH from ESP, §1.5).
	n := wire.NewNotify(wire.NotifyInvalidSPI, binary.BigEndian.AppendUint32(nil, t.spi))
	return wire.Informational, []wire.Payload{n}, nil
}
func (t *invalidSPITask) process(*ikeSA, *message) {}
func (t *invalidSPITask) abort(*ikeSA, string)     {}

// pathErrorEvery is the least time between two liveness checks one IKE
// SA starts on ICMP errors: anyone on the path can forge them (RFC 7296
// §2.21), and a flood must cost us an exchange now and then, not one
// per error.
const pathErrorEvery = 10 * time.Second

// PathError tells the engine that an ICMP error came back for a
// datagram we sent to remote (port, host or network unreachable). It is
// a hint, never proof (RFC 7296 §2.21, RFC 4555 §5.3): an established
// IKE SA on UDP whose peer is at remote starts a liveness check, at
// most once per pathErrorEvery, unless one is under way; its outcome
// (an answer, or MOBIKE's path probing and the dead-peer rules) decides.
// SAs in TCP streams are left alone: TCP reports its own failures.
func (e *Engine) PathError(now time.Time, remote netip.AddrPort) []Action {
	e.begin(now)
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	for _, sa := range e.byID {
		if sa.state != stateEstablished || sa.closing || sa.tcp || sa.remote != remote {
			continue
		}
		if at := sa.rareView().pathErrorAt; !at.IsZero() && now.Sub(at) < pathErrorEvery {
			continue
		}
		if sa.checkingLiveness() {
			continue
		}
		sa.rareState().pathErrorAt = now
		e.log.Info("ICMP error from the path to the peer; checking liveness (RFC 4555 §5.3)", "ike", sa.id, "remote", remote)
		e.stats.PathErrorHints++
		sa.queue(&dpdTask{})
	}
	return e.end()
}

// checkingLiveness: a liveness check is queued or outstanding.
func (sa *ikeSA) checkingLiveness() bool {
	for _, t := range sa.tasks {
		if _, ok := t.(*dpdTask); ok {
			return true
		}
	}
	for _, p := range sa.outstanding {
		if _, ok := p.task.(*dpdTask); ok {
			return true
		}
	}
	return false
}

// peerReportsInvalidSPI takes a protected INVALID_SPI as the hint it is:
// a liveness check, unless one is already under way or queued.
func (sa *ikeSA) peerReportsInvalidSPI(m *message) {
	if m.notify(wire.NotifyInvalidSPI) == nil || sa.state != stateEstablished || sa.checkingLiveness() {
		return
	}
	sa.e.log.Info("peer reports ESP with an SPI it does not have; checking liveness (RFC 4555 §5.3)", "ike", sa.id)
	sa.e.stats.InvalidSPIHints++
	sa.queue(&dpdTask{})
}
