package ike

import "github.com/mifike/mifike/internal/wire"

// task is one exchange we initiate, built from the small steps strongSwan
// calls tasks: build the request, process the response. The transport runs
// one task at a time per IKE SA, or several that may overlap within the
// peer's window (window.go).
type task interface {
	// build returns the request's exchange type and payloads, or errSkip
	// if the task became moot while queued.
	build(sa *ikeSA) (wire.ExchangeType, []wire.Payload, error)
	// process handles the authenticated response.
	process(sa *ikeSA, m *message)
	// abort is called when the request is given up or the SA dies.
	abort(sa *ikeSA, reason string)
}

// errorNotify builds the single error notify of a refused request.
func errorNotify(t wire.NotifyType, data []byte) []wire.Payload {
	return []wire.Payload{wire.NewNotify(t, data)}
}
