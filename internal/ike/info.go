package ike

import (
	"fmt"

	"github.com/mifike/mifike/internal/wire"
)

// childDeleteTask deletes a Child SA (RFC 7296 §1.4.1), or an SA the peer
// made for a request we could not complete (orphan: our inbound SPI).
type childDeleteTask struct {
	child     *childSA
	orphan    uint32
	redundant bool
}

func (t *childDeleteTask) String() string {
	if t.child != nil {
		return fmt.Sprintf("delete child %08x", t.child.inSPI)
	}
	return fmt.Sprintf("delete orphan %08x", t.orphan)
}

func (t *childDeleteTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished && sa.state != stateRekeyed {
		return 0, nil, errSkip
	}
	spi := t.orphan
	if c := t.child; c != nil {
		if c.state == childGone || c.state == childDeleting || c.ike != sa {
			return 0, nil, errSkip
		}
		c.state = childDeleting
		c.rekeyT.cancel()
		spi = c.inSPI
	}
	return wire.Informational, []wire.Payload{&wire.Delete{Protocol: wire.ProtoESP, SPIs: []uint32{spi}}}, nil
}

func (t *childDeleteTask) process(sa *ikeSA, m *message) {
	if t.child != nil {
		t.child.remove("deleted")
	}
}

func (t *childDeleteTask) abort(sa *ikeSA, reason string) {
	if t.child != nil && t.child.state == childDeleting {
		t.child.remove(reason)
	}
}

// ikeDeleteTask deletes the IKE SA and with it all its Child SAs.
type ikeDeleteTask struct{}

func (t *ikeDeleteTask) String() string { return "delete IKE SA" }

func (t *ikeDeleteTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state == stateDead || sa.state == stateDeleting {
		return 0, nil, errSkip
	}
	sa.state = stateDeleting
	if l := sa.collisionLoser; l != nil && (l.state == stateEstablished || l.state == stateRekeyed) {
		sa.collisionLoser = nil
		l.queue(&ikeDeleteTask{})
	}
	return wire.Informational, []wire.Payload{&wire.Delete{Protocol: wire.ProtoIKE}}, nil
}

func (t *ikeDeleteTask) process(sa *ikeSA, m *message)  { sa.e.destroy(sa, "deleted") }
func (t *ikeDeleteTask) abort(sa *ikeSA, reason string) {}

// close begins deleting an established IKE SA at our request. It shows
// as Deleting from now on to whoever looks (the interface manager, the
// CLI) and counts no more as an SA with the peer for INITIAL_CONTACT of a
// new one (§2.4); its Child SAs stop carrying outbound traffic at once
// (deleting an IKE SA closes them, RFC 7296 §1.4.1; what the peer still
// sends on them is accepted until the Delete is through); and its Delete
// goes first in its queue, out as soon as the window lets it (§2.3).
// Behind a request unanswered on a dead path that can take minutes, and
// until now the SA went on routing traffic into that path meanwhile and,
// shown as Established, was taken back by the interface manager. The
// state machine is left alone: the SA is Established until the Delete
// goes out, so rekey collisions resolve as they would, and a successor
// takes the closing over with the Delete (handOver).
func (sa *ikeSA) close() {
	if sa.state != stateEstablished || sa.closing {
		return
	}
	sa.closing = true
	for _, c := range sa.children {
		if c.outbound {
			c.outbound = false
			sa.e.emit(UpdateChild{SA: c.params()})
		}
	}
	sa.queueFront(&ikeDeleteTask{})
}

// dpdTask is a liveness check: an empty INFORMATIONAL (§1.4, §2.4),
// with NAT-D when the MOBIKE initiator watches its NAT mapping (RFC 4555
// §3.8, natt.go watchNAT). probe: it is the connection's path
// measurement (pathstats.go), the same exchange.
type dpdTask struct{ natd, probe bool }

func (t *dpdTask) String() string {
	if t.probe {
		return "path measurement"
	}
	return "liveness check"
}
func (t *dpdTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	if sa.state != stateEstablished {
		return 0, nil, errSkip
	}
	sa.e.stats.LivenessChecks++
	if t.natd = sa.watchesNAT(); t.natd {
		return wire.Informational, sa.e.natdPayloads(sa.spiI, sa.spiR, sa.local, sa.remote, sa.conn.ForceEncap), nil
	}
	return wire.Informational, nil, nil
}
func (t *dpdTask) process(sa *ikeSA, m *message) {
	if t.natd {
		sa.watchNAT(m)
	}
}
func (t *dpdTask) abort(*ikeSA, string) {}

// respondInformational answers every INFORMATIONAL request (§1.4): Delete
// payloads, the AUTHENTICATION_FAILED report of §2.21.2, liveness checks.
func (sa *ikeSA) respondInformational(m *message) {
	e := sa.e
	if sa.state == stateConnecting {
		if m.notify(wire.NotifyAuthenticationFailed) != nil {
			sa.respond(m, nil)
			e.destroy(sa, "peer refused our authentication (AUTHENTICATION_FAILED)")
			return
		}
		sa.respond(m, errorNotify(wire.NotifyInvalidSyntax, nil))
		e.destroy(sa, "INFORMATIONAL before IKE_AUTH")
		return
	}
	if m.notify(wire.NotifyAuthenticationFailed) != nil {
		sa.respond(m, nil)
		e.destroy(sa, "peer reports AUTHENTICATION_FAILED")
		return
	}
	var out []wire.Payload
	refused := false
	forEach(e, func(f infoFeature) {
		if !refused {
			var ps []wire.Payload
			ps, refused = f.respondInfo(sa, m)
			if refused {
				out = ps
			} else {
				out = append(out, ps...)
			}
		}
	})
	if refused {
		sa.respond(m, out)
		return
	}
	deleteIKE := false
	var inSPIs []uint32
	var removed []*childSA
	for _, d := range wire.All[*wire.Delete](m.payloads) {
		switch d.Protocol {
		case wire.ProtoIKE:
			deleteIKE = true
		case wire.ProtoESP, wire.ProtoAH:
			for _, spi := range d.SPIs {
				c := sa.childByOutSPI(spi)
				if c == nil {
					// Unknown SPIs are ignored (§3.11), but one our
					// outstanding request may yet create is deleted as
					// soon as it appears.
					if sa.childRequestInFlight() && len(sa.earlyDeletes) < 16 {
						sa.earlyDeletes = append(sa.earlyDeletes, spi)
					}
					continue
				}
				if c.state != childDeleting {
					// Both deleting at once: answer without it (§1.4.1).
					inSPIs = append(inSPIs, c.inSPI)
				}
				removed = append(removed, c)
			}
		}
	}
	if deleteIKE {
		// The reply to an IKE SA Delete is empty (§1.4.1).
		sa.respond(m, nil)
		if c := sa.peerRekey; c != nil && c.sa.state == stateEstablished && sa.state == stateEstablished {
			// Our rekey collided with the peer's and the peer deletes the
			// old SA first: its new SA is the successor (§2.8.2, "close
			// IKE SA while rekeying: as normal, forget my request").
			sa.handOver(c.sa)
		}
		e.destroy(sa, "deleted by peer")
		return
	}
	if len(inSPIs) > 0 {
		out = append(out, &wire.Delete{Protocol: wire.ProtoESP, SPIs: inSPIs})
	}
	sa.respond(m, out)
	for _, c := range removed {
		c.remove("deleted by peer")
	}
	forEach(e, func(f infoFeature) { f.afterInfo(sa, m) })
	sa.peerReportsInvalidSPI(m)
}
