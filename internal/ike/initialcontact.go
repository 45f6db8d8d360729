package ike

import "github.com/mifike/mifike/internal/wire"

// initialContact is INITIAL_CONTACT (RFC 7296 §2.4): the initiator says
// in IKE_AUTH that it holds no other IKE SA with this peer, and the
// responder deletes what it still has of the initiator's identity.
type initialContact struct{}

func (initialContact) String() string { return "INITIAL_CONTACT" }

func (initialContact) authRequest(sa *ikeSA, x *authExchange) []wire.Payload {
	if !sa.conn.SendInitialContact || sa.e.hasPeerSA(sa) {
		return nil
	}
	return []wire.Payload{wire.NewNotify(wire.NotifyInitialContact, nil)}
}

func (initialContact) respondAuth(sa *ikeSA, x *authExchange) []wire.Payload {
	if x.first.notify(wire.NotifyInitialContact) != nil {
		sa.e.initialContact(sa)
	}
	return nil
}

func (initialContact) readAuthResponse(*ikeSA, *authExchange, *message) {}

// hasPeerSA reports whether another IKE SA of this connection to the same
// peer address exists, even half made, that we are not deleting;
// INITIAL_CONTACT is only for the first (§2.4: "the only IKE SA currently
// active").
func (e *Engine) hasPeerSA(sa *ikeSA) bool {
	for _, o := range e.byID {
		// One we are deleting is gone as far as the peer need care.
		if o != sa && o.conn == sa.conn && o.remote.Addr() == sa.remote.Addr() && o.state != stateDead && o.state != stateDeleting && !o.closing {
			return true
		}
	}
	return false
}

// initialContact deletes the other IKE SAs of this peer identity: it tells
// us the peer lost them (RFC 7296 §2.4). Only SAs begun before this one
// can be such leftovers; younger ones are the peer's current state.
func (e *Engine) initialContact(sa *ikeSA) {
	for _, o := range e.sortedSAs() {
		if o != sa && o.conn == sa.conn && o.state != stateConnecting && o.created.Before(sa.created) &&
			o.peerIdentity() == sa.peerIdentity() {
			e.destroy(o, "INITIAL_CONTACT from the same peer")
		}
	}
}
