package ike

import (
	"time"

	"github.com/mifike/mifike/internal/wire"
)

// Path measurement: what the SA's exchanges tell about its path, for
// the traffic-driven liveness check (its windows are counted in round
// trips, liveness.go) and for flow spreading, which gives a faster and
// cleaner VPN more new flows (docs/multipath.md, "Flow spreading"):
//
//   - A smoothed round trip and its variation as TCP keeps them (RFC
//     6298 §2), from every answered request that went out once (Karn's
//     rule, RFC 6298 §3: the answer to a request sent twice could be to
//     either send). Not IKE_AUTH: its responder may wait for a RADIUS
//     server, an OCSP responder or a user's EAP answer, none of which is
//     the path; nor a request with a KE payload (a rekey, a clone, a
//     Child SA with PFS, RFC 9370's follow-up key exchanges): the answer
//     waits for the peer's key exchange, milliseconds of computation
//     that a daemon setting up several VPNs at once may queue (the e2e
//     lab saw 10 ms on a link of 0.1 ms); IKE_SA_INIT's answer goes
//     another way (the half-open SA's) and is not counted either.
//   - A loss estimate: the fraction of our request transmissions that
//     went unanswered (a request answered after n sends on the path
//     counts n-1 lost sends and one answered). It is a round trip's
//     loss, request or response lost, as a probe sees it: a path losing
//     p each way shows 1-(1-p)². It is an exponential moving average of
//     gain 1/lossGain starting from no loss, so one lost probe among the
//     first few does not make a path look hopeless, and a retransmission
//     that was only early (the answer was late, not lost) counts as a
//     loss: both err towards fewer flows on a doubtful path, which is
//     the safe side.
//
// Both describe the path: a move to another (MOBIKE, RFC 4555 §3.5)
// starts them afresh; an IKE SA rekey keeps them (same path).
//
// A busy path has no IKE exchanges (traffic proves it, so no liveness
// check goes out): a connection that wants fresh figures sets PathProbe,
// and an empty INFORMATIONAL goes out when the SA sent no request for
// that long (armPathProbe).
//
// The smoothed round trip is the SA's own field (srtt, which the liveness
// check reads); the rest is allocated at the first measurement.
type pathStats struct {
	rttvar      time.Duration
	rttSamples  int
	loss        float64
	lossSamples int
	// lastRequest is when a request last went out first (not a
	// retransmission): the path probe waits for a quiet PathProbe.
	lastRequest time.Time
	probeT      *timer
}

// lossGain: the loss estimate's EWMA gain is 1/lossGain, about the last
// lossGain transmissions: with a probe every 10 s, a few minutes.
const lossGain = 16

// measureRTT takes a round trip from an answered request that went out
// once on this path (Karn's rule), and smooths it as RFC 6298 §2.2-2.3
// does (alpha 1/8, beta 1/4).
func (sa *ikeSA) measureRTT(p *request) {
	if p.resent || p.keyed || p.quick > 1 || p.sent.IsZero() || p.exchange == wire.IKEAuth || p.sendGen != sa.updateGen+1 {
		return
	}
	r := sa.e.now.Sub(p.sent)
	if r < 0 {
		return
	}
	ps := sa.pathStats()
	if ps.rttSamples == 0 {
		sa.srtt, ps.rttvar = r, r/2
	} else {
		d := sa.srtt - r
		if d < 0 {
			d = -d
		}
		ps.rttvar += (d - ps.rttvar) / 4
		sa.srtt += (r - sa.srtt) / 8
	}
	ps.rttSamples++
}

// measureLoss counts an answered request's sends on this path: all but
// the last went unanswered (or were answered too late to matter).
func (sa *ikeSA) measureLoss(p *request) {
	if p.sendGen != sa.updateGen+1 || p.sends == 0 {
		return
	}
	ps := sa.pathStats()
	for i := range p.sends {
		x := 0.0
		if i < p.sends-1 {
			x = 1
		}
		ps.loss += (x - ps.loss) / lossGain
		ps.lossSamples++
	}
}

// pathReset forgets what was measured: the SA is on another path.
func (sa *ikeSA) pathReset() {
	sa.srtt = 0
	if p := sa.path; p != nil {
		*p = pathStats{lastRequest: sa.e.now, probeT: p.probeT}
	}
}

// pathStats is sa.path, made at the first use.
func (sa *ikeSA) pathStats() *pathStats {
	if sa.path == nil {
		sa.path = &pathStats{}
	}
	return sa.path
}

// probeTimer is the path probe's timer, nil if none.
func (sa *ikeSA) probeTimer() *timer {
	if sa.path == nil {
		return nil
	}
	return sa.path.probeT
}

// sentRequest notes that p goes out once more on the SA's current path.
func (sa *ikeSA) sentRequest(p *request) {
	if p.sendGen != sa.updateGen+1 {
		p.resent = p.sendGen != 0 // sent on another path before: its answer is ambiguous here too
		p.sendGen, p.sends = sa.updateGen+1, 0
	}
	p.sends++
	if p.sends > 1 {
		p.resent = true
	}
	if p.sends == 1 && !p.resent && (sa.path != nil || sa.conn.PathProbe > 0) {
		sa.pathStats().lastRequest = sa.e.now
	}
}

// armPathProbe schedules the connection's path measurement (PathProbe):
// an empty INFORMATIONAL when the SA sent no request for that long, so a
// busy path is measured too. It checks again every PathProbe, and stops
// when the connection no longer asks for it (a reload).
func (sa *ikeSA) armPathProbe() {
	d := sa.conn.PathProbe
	sa.probeTimer().cancel()
	if sa.path != nil {
		sa.path.probeT = nil
	}
	if d <= 0 {
		return
	}
	ps := sa.pathStats()
	wait := d
	if w := ps.lastRequest.Add(d).Sub(sa.e.now); !ps.lastRequest.IsZero() && w > 0 {
		wait = w
	}
	// Due already (a request outstanding or queued held the probe back):
	// the next look is a whole interval on, not at once again.
	ps.probeT = sa.e.after(wait, func() {
		ps := sa.pathStats() // a move may have reset it, never dropped it
		ps.probeT = nil
		if sa.state != stateEstablished {
			return
		}
		if sa.e.now.Sub(ps.lastRequest) >= d && len(sa.outstanding) == 0 && len(sa.tasks) == 0 {
			ps.lastRequest = sa.e.now // also when the window holds it back
			sa.queue(&dpdTask{probe: true})
		}
		sa.armPathProbe()
	})
}
