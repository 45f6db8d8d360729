package radius

import "sync/atomic"

// Stats counts what a Client did and what it dropped, for metrics. All
// fields are updated atomically and may be read at any time.
type Stats struct {
	Requests        atomic.Uint64 // requests sent for the first time to a server
	Retransmissions atomic.Uint64 // further transmissions of the same packet
	Timeouts        atomic.Uint64 // a server used up its tries
	Failovers       atomic.Uint64 // a request moved on to the next server
	// BadAuthenticators counts replies dropped for a wrong Response
	// Authenticator or Message-Authenticator.
	BadAuthenticators atomic.Uint64
	// Malformed counts replies dropped as malformed (length, attribute,
	// code, EAP or MPPE key format).
	Malformed atomic.Uint64
	// Unexpected counts replies whose identifier matched no request in
	// flight, or that came when one request already had several queued.
	Unexpected atomic.Uint64
	// IdentifierWaits counts requests that waited for an identifier
	// because 256 were in flight on their socket.
	IdentifierWaits     atomic.Uint64
	Accepts             atomic.Uint64
	Rejects             atomic.Uint64
	Challenges          atomic.Uint64
	AccountingResponses atomic.Uint64
}
