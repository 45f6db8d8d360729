package ike

import (
	"fmt"
	"time"
)

// The traffic-driven liveness check. RFC 7296 §2.4: "If there has only
// been outgoing traffic on all of the SAs associated with an IKE SA, it
// is essential to confirm liveness of the other endpoint to avoid black
// holes." The periodic check of dpd_delay waits for a second or more of
// silence and then for the configured retransmissions (seconds more)
// before the MOBIKE initiator tries another path (RFC 4555 §3.5); a path
// that goes silent under traffic is found much sooner this way:
//
//   - The data plane reports when a Child SA sent ESP (Outbound) and when
//     authentic ESP came from the SA's path (Inbound, RFC 4555 §3.12).
//   - Once ESP went out with nothing heard back for the window (the
//     connection's LivenessWindow, or livenessRTTs round trips if longer),
//     a liveness check starts at once: an empty INFORMATIONAL, or the
//     request already outstanding, retransmitted on a quick schedule
//     (every probeInterval) instead of the configured one.
//   - Anything authentic heard on the path (ESP, an IKE response or
//     request) ends the suspicion: the request goes back to the
//     configured schedule.
//   - After livenessProbes sends in a row with no answer, the path is
//     judged dead and the MOBIKE initiator asks for another (RFC 4555
//     §3.5, PathUnanswered); the request follows to the new path on the
//     configured schedule, which decides whether the peer itself is gone.
//     Without another path the SA stays and the configured schedule
//     decides, as without this check.
//
// Why twelve probes, and not the configured three or so: a lossy path is
// not a dead one, and it must not be abandoned. With 20 % random loss
// each way a probe's round trip fails with 1 - 0.8² = 0.36, so a check
// falsely fails with 0.36^k. Traffic that only goes out (a stream with
// no answers) starts a check every window, at most 60 s / 300 ms = 200
// checks a minute: with k = 12 that is 200 × 0.36^12 ≈ 200 × 4.7e-6 ≈
// 1e-3 false alarms a minute (one per ~17 hours of such loss); with
// k = 5 it would be 1.2 a minute. The probes are spaced evenly, not
// backed off: they decide between random loss and a dead path, and
// twelve small datagrams in half a second are no load worth backing off
// from. A silent failure is then found within window + k × interval =
// 300 + 12 × 40 = 780 ms of the last packet heard (less when a check was
// already running), which leaves the move and the first datagram on the
// new path inside a second.
const (
	// livenessProbes is how many sends in a row go unanswered before
	// the path is judged dead (k above).
	livenessProbes = 12
	// livenessRTTs: the window is at least this many round trips, so
	// a slow path's answers are not taken for silence.
	livenessRTTs = 4
	// probeRTTs and probeFloor: a probe is retransmitted after
	// probeRTTs round trips, and never sooner than probeFloor (a round
	// trip not measured yet, or jitter on a short one).
	probeRTTs  = 3
	probeFloor = 40 * time.Millisecond
)

// Outbound tells the engine a Child SA sent traffic since the last
// report: without anything heard back within the liveness window, a
// liveness check starts (RFC 7296 §2.4).
func (e *Engine) Outbound(now time.Time, inSPI uint32) []Action {
	e.begin(now)
	if c := e.children[inSPI]; c != nil {
		c.ike.sentTraffic()
	}
	return e.end()
}

// livenessWindow is how long sent traffic may go unanswered before a
// check starts; 0: the connection does not check on traffic.
func (sa *ikeSA) livenessWindow() time.Duration {
	w := sa.conn.LivenessWindow
	if w <= 0 {
		return 0
	}
	return max(w, livenessRTTs*sa.srtt)
}

// probeInterval is the quick schedule's wait between sends.
func (sa *ikeSA) probeInterval() time.Duration { return max(probeRTTs*sa.srtt, probeFloor) }

// sentTraffic starts the window at the first traffic sent since the
// peer was last heard.
func (sa *ikeSA) sentTraffic() {
	w := sa.livenessWindow()
	if w <= 0 || sa.state != stateEstablished || !sa.unansweredSince.IsZero() || sa.tcp {
		// In a TCP stream (RFC 9329) quick probes would only queue
		// behind each other in a stalled stream: TCP's own
		// retransmissions decide, and the configured schedule.
		return
	}
	sa.unansweredSince = sa.e.now
	sa.livenessT.cancel()
	sa.livenessT = sa.e.after(w, sa.livenessDue)
}

// livenessDue: the window passed with traffic sent and nothing heard
// (heard would have cancelled the timer). The request outstanding, if
// any, serves as the check (any answer proves the path); else an empty
// INFORMATIONAL goes out.
func (sa *ikeSA) livenessDue() {
	sa.livenessT = nil
	if sa.state != stateEstablished {
		return
	}
	if len(sa.outstanding) == 0 {
		t := &dpdTask{}
		sa.queue(t)
		if n := len(sa.outstanding); n == 0 || sa.outstanding[n-1].task != t {
			return // the window holds it back; the configured check decides
		}
	}
	if p := sa.outstanding[0]; p.quick == 0 {
		sa.e.event(sa, EventRetransmit, fmt.Sprintf("%s request %d: nothing heard for %v while sending; liveness check",
			p.exchange, p.id, sa.e.now.Sub(sa.unansweredSince)))
		p.quick = 1 // its last send counts as the first probe
		p.timer.cancel()
		sa.armRetransmit(p)
	}
}

// heard: something authentic came from the peer on the path, which
// proves it (RFC 7296 §2.4, RFC 4555 §3.12). The suspicion ends, and a
// request on the quick schedule goes back to the configured one.
func (sa *ikeSA) heard() {
	sa.lastInbound = sa.e.now
	sa.unansweredSince = time.Time{}
	sa.livenessT.cancel()
	sa.livenessT = nil
	for _, p := range sa.outstanding {
		if p.quick > 0 {
			p.quick = 0
			p.timer.cancel()
			sa.armRetransmit(p)
		}
	}
}

// quickRetransmit is retransmit on the quick schedule: one more probe,
// or after livenessProbes the path is dead and the MOBIKE initiator
// moves (RFC 4555 §3.5); the request goes on with the configured
// schedule either way.
func (sa *ikeSA) quickRetransmit(p *request) {
	e := sa.e
	if p.quick < livenessProbes {
		p.quick++
		e.stats.Retransmissions++
		e.event(sa, EventRetransmit, fmt.Sprintf("%s request %d, liveness probe %d", p.exchange, p.id, p.quick))
		sa.transmitRequest(p)
		return
	}
	p.quick = 0
	e.stats.PathsDead++
	e.log.Info("path silent under traffic; judged dead", "ike", sa.id, "local", sa.local, "remote", sa.remote,
		"probes", livenessProbes, "silent", e.now.Sub(sa.unansweredSince))
	sa.probePath(livenessProbes)
	sa.armRetransmit(p)
}

// pathChanged: a new path gets its own window, and a check under way
// its own probes there.
func (sa *ikeSA) pathChanged() {
	sa.unansweredSince = time.Time{}
	sa.livenessT.cancel()
	sa.livenessT = nil
	for _, p := range sa.outstanding {
		if p.quick > 0 {
			p.quick = 1
		}
	}
	sa.pathReset()
}
