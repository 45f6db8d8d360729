package ike

import (
	"fmt"

	"github.com/mifike/mifike/internal/wire"
)

// Test-only hooks into the engine's features, for the external tests.

// notifyTestRound is a private-use status notify (RFC 7296 §3.10.1) the
// test unit exchanges in its rounds.
const notifyTestRound wire.NotifyType = 40969

// extraRounds is a unit that takes extra IKE_AUTH rounds, as EAP will:
// each round's request and response carry its round number.
type extraRounds struct {
	extra int // rounds after the first
	// seen counts the rounds the unit took part in.
	seen *int
}

func (u extraRounds) String() string { return "test rounds" }

func (u extraRounds) roundRequest(sa *ikeSA, x *authExchange) ([]wire.Payload, error) {
	return []wire.Payload{wire.NewNotify(notifyTestRound, []byte{byte(x.round)})}, nil
}

func (u extraRounds) check(x *authExchange, m *message) error {
	n := m.notify(notifyTestRound)
	if n == nil || len(n.Data) != 1 || int(n.Data[0]) != x.round {
		return fmt.Errorf("round %d: no round notify for it", x.round)
	}
	*u.seen++
	if x.round <= u.extra {
		x.needMore()
	}
	return nil
}

func (u extraRounds) roundRespond(sa *ikeSA, x *authExchange, m *message) ([]wire.Payload, error) {
	if err := u.check(x, m); err != nil {
		return nil, err
	}
	return []wire.Payload{wire.NewNotify(notifyTestRound, []byte{byte(x.round)})}, nil
}

func (u extraRounds) roundResponse(sa *ikeSA, x *authExchange, m *message) error {
	return u.check(x, m)
}

// AddExtraAuthRounds makes e take extra IKE_AUTH rounds after the first
// (both peers need it); the returned counter counts the rounds it saw.
func AddExtraAuthRounds(e *Engine, extra int) *int {
	seen := new(int)
	e.features = append(append([]feature(nil), e.features...), extraRounds{extra: extra, seen: seen})
	return seen
}
