package radius

import (
	"errors"
	"fmt"
	"strings"
)

// ErrClosed is returned by requests on a closed Client.
var ErrClosed = errors.New("radius: client closed")

// ErrTimeout matches every *TimeoutError (errors.Is).
var ErrTimeout = errors.New("radius: no valid reply")

// TimeoutError says that no server gave a valid reply: which servers were
// tried, how often, and what was dropped from each (a wrong shared
// secret shows up as replies dropped for a bad authenticator).
type TimeoutError struct {
	Tried []ServerAttempt
	// Cause is the context's error when the caller's deadline or
	// cancellation ended the exchange, nil when every server used up its
	// tries.
	Cause error
}

// ServerAttempt is what one server made of one request.
type ServerAttempt struct {
	Server  string // host:port
	Sent    int    // transmissions
	Dropped int    // replies dropped as invalid
	LastErr error  // why the last of them was dropped
}

func (a ServerAttempt) String() string {
	s := fmt.Sprintf("%s (sent %d", a.Server, a.Sent)
	if a.Sent == 0 && a.LastErr != nil {
		s += fmt.Sprintf(": %v", a.LastErr)
	}
	if a.Dropped > 0 {
		s += fmt.Sprintf(", dropped %d replies: %v", a.Dropped, a.LastErr)
	}
	return s + ")"
}

func (e *TimeoutError) Error() string {
	var b strings.Builder
	b.WriteString("radius: no valid reply from ")
	if len(e.Tried) == 0 {
		b.WriteString("any server (none tried)")
	}
	for i, a := range e.Tried {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.String())
	}
	if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrTimeout) true.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Unwrap returns the context's error, if that is what ended the exchange.
func (e *TimeoutError) Unwrap() error { return e.Cause }

// RejectError is an Access-Reject: the server refused the peer.
type RejectError struct {
	Server       string
	ReplyMessage string // RFC 2865 §5.18, for the log; not to be shown to the peer
}

func (e *RejectError) Error() string {
	if e.ReplyMessage == "" {
		return "radius: Access-Reject from " + e.Server
	}
	return fmt.Sprintf("radius: Access-Reject from %s: %q", e.Server, e.ReplyMessage)
}
