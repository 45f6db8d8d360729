package ike

import (
	"encoding/binary"
	"slices"

	"github.com/mifike/mifike/internal/wire"
)

// RFC 7296 §2.3: overlapping requests. Each peer states in SET_WINDOW_SIZE
// how many of the other's requests it keeps state for; the window is one
// until the initial exchanges complete, and an IKE SA made by a rekey or a
// clone starts again at one until the peer says otherwise.
//
// We answer requests in any order within our window. We send overlapping
// requests only where that is safe for the state of the SA (overlap):
// Child SA creation, MOBIKE address updates and lists, clones and our
// own window announcement. That is what a new interface needs (RFC 7791
// App. A): the clone goes out with the address list the interface
// caused, then the clone's Child SA and its move go out together: two
// round trips in all. Rekeys, deletes and
// liveness checks still go one at a time, so the collision rules of §2.8
// and §2.25 stay as they are for window one.

// maxWindow caps what we state and what we accept from the peer.
const maxWindow = 64

// window is the number of the peer's requests we accept at once.
func (sa *ikeSA) window() uint32 {
	if sa.state == stateConnecting || !sa.windowSent {
		return 1
	}
	return sa.conn.window()
}

func (c *Connection) window() uint32 { return min(max(c.Window, 1), maxWindow) }

// request finds our outstanding request with Message ID id.
func (sa *ikeSA) request(id uint32) *request {
	for _, p := range sa.outstanding {
		if p.id == id {
			return p
		}
	}
	return nil
}

// settle takes p off the outstanding list: answered or given up.
func (sa *ikeSA) settle(p *request) {
	sa.outstanding = slices.DeleteFunc(sa.outstanding, func(x *request) bool { return x == p })
}

// inFlight reports an outstanding request whose task matches.
func (sa *ikeSA) inFlight(match func(task) bool) bool {
	for _, p := range sa.outstanding {
		if p.task != nil && match(p.task) {
			return true
		}
	}
	return false
}

// mayStart reports whether t may be sent now: always when nothing is
// outstanding; otherwise only an overlapping-safe task next to others of
// its kind, and only inside the peer's window: request X waits for the
// answers up to X-N (§2.3).
func (sa *ikeSA) mayStart(t task) bool {
	if len(sa.outstanding) == 0 {
		return true
	}
	if sa.state != stateEstablished {
		return false
	}
	lowest := sa.outstanding[0].id
	for _, p := range sa.outstanding {
		if !overlap(t, p.task) {
			return false
		}
		lowest = min(lowest, p.id)
	}
	return uint64(sa.nextReq) < uint64(lowest)+uint64(max(sa.peerWindow, 1))
}

// overlap reports whether tasks a and b may be outstanding together.
//
// Child SA creation, MOBIKE updates and window announcements change
// nothing the others depend on. A clone (RFC 7791) leaves its parent as
// it is, so it may go alongside them and alongside the address list of
// §3.6: that is what puts a new interface's clone on the wire at once,
// not a round trip after the address announcement its interface caused.
// Address lists stay in order among themselves and with updates, which
// carry the list too (§3.6: the peer keeps the latest it processed).
func overlap(a, b task) bool {
	ka, kb := overlapKind(a), overlapKind(b)
	switch {
	case ka == 0 || kb == 0:
		return false
	case ka == overlapAddresses && (kb == overlapAddresses || kb == overlapUpdate),
		kb == overlapAddresses && ka == overlapUpdate:
		return false
	}
	return true
}

const (
	overlapChild = iota + 1
	overlapUpdate
	overlapWindow
	overlapClone
	overlapAddresses
)

// overlapKind classes the tasks that may overlap some others; 0: none.
func overlapKind(t task) int {
	switch t := t.(type) {
	case *childCreateTask:
		if t.rekey == nil {
			return overlapChild
		}
	case *updateTask:
		return overlapUpdate
	case *windowTask:
		return overlapWindow
	case *cloneTask:
		return overlapClone
	case *addressTask:
		return overlapAddresses
	}
	return 0
}

// cachedResponse is our kept response to the peer's request id.
func (sa *ikeSA) cachedResponse(id uint32) *response {
	for _, r := range sa.responses {
		if r.id == id {
			return r
		}
	}
	return nil
}

// remember keeps r for retransmitted requests and moves expectReq past
// every answered request; responses more than a window below it cannot
// be asked for again and are dropped.
func (sa *ikeSA) remember(r *response) {
	sa.responses = append(sa.responses, r)
	for sa.cachedResponse(sa.expectReq) != nil {
		sa.expectReq++
	}
	keep := uint64(sa.window())
	sa.responses = slices.DeleteFunc(sa.responses, func(x *response) bool {
		return uint64(x.id)+keep < uint64(sa.expectReq)
	})
}

// readWindow takes the peer's SET_WINDOW_SIZE (§2.3): four octets, never
// shrinking (shrinking is undefined), capped.
func (sa *ikeSA) readWindow(m *message) {
	n := m.notify(wire.NotifySetWindowSize)
	if n == nil {
		return
	}
	if len(n.Data) != 4 {
		sa.e.drop(DropMalformed, dropped{sa: sa, h: &m.Header}) // SET_WINDOW_SIZE without four octets
		return
	}
	w := min(binary.BigEndian.Uint32(n.Data), maxWindow)
	if w > sa.peerWindow {
		sa.peerWindow = w
	}
}

// windowNotify states our window, when it is more than one.
func (sa *ikeSA) windowNotify() []wire.Payload {
	w := sa.conn.window()
	if w <= 1 {
		return nil
	}
	sa.windowSent = true
	return []wire.Payload{wire.NewNotify(wire.NotifySetWindowSize, binary.BigEndian.AppendUint32(nil, w))}
}

// windowTask states our window on an IKE SA made by a rekey or a clone,
// which starts at one (§2.3), in an INFORMATIONAL of its own.
type windowTask struct{}

func (*windowTask) String() string { return "SET_WINDOW_SIZE" }
func (*windowTask) build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error) {
	ps := sa.windowNotify()
	if sa.state != stateEstablished || ps == nil {
		return 0, nil, errSkip
	}
	return wire.Informational, ps, nil
}
func (*windowTask) process(*ikeSA, *message) {}
func (*windowTask) abort(*ikeSA, string)     {}

// announceWindow queues our window statement on n, an SA made from sa by
// a rekey or a clone. The clone's responder sends it at once, so the
// cloner can overlap the clone's Child SA and move. Only to a peer that
// stated a window itself: one that never overlaps gains nothing, and a
// request on an SA it has only just made may be dropped while it still
// completes the rekey (strongSwan 5.9 does: the request then waits for a
// retransmission, and our next requests behind it).
func (sa *ikeSA) announceWindow(n *ikeSA) {
	if n.conn.window() > 1 && sa.peerWindow > 1 {
		n.tasks = append(n.tasks, &windowTask{})
	}
}

// windowSize states our window in IKE_AUTH, in both roles (§2.3); the
// peer's statement is read from every message (readWindow), and SAs made
// by a rekey or a clone state theirs in an INFORMATIONAL (windowTask).
type windowSize struct{}

func (windowSize) String() string { return "SET_WINDOW_SIZE" }

func (windowSize) authRequest(sa *ikeSA, x *authExchange) []wire.Payload { return sa.windowNotify() }
func (windowSize) respondAuth(sa *ikeSA, x *authExchange) []wire.Payload { return sa.windowNotify() }
func (windowSize) readAuthResponse(*ikeSA, *authExchange, *message)      {}
