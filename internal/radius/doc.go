// Package radius is mifike's RADIUS client: the gateway side of EAP
// pass-through authentication (RFC 3579) and of accounting (RFC 2866),
// the way strongSwan's eap-radius plugin talks to a RADIUS server.
//
// The packet work is in pure functions, so it can be fuzzed and driven by
// a simulator: EncodeAccessRequest and DecodeAccessReply for one EAP
// round, EncodeAccountingRequest and DecodeAccountingResponse for
// accounting. Client owns the UDP sockets and adds what the network
// needs: identifiers (one space per socket, none reused while in flight),
// retransmission with backoff (RFC 5080 §2.2.1), failover between
// servers with a hold-down for a server that went silent, and counters.
// A Conversation is one EAP authentication: it carries State from one
// Access-Challenge to the next request and stays with the server that
// issued it.
//
// The codec, attribute types and dictionaries are layeh.com/radius's;
// this package adds what it lacks: Message-Authenticator (RFC 3579 §3.2,
// RFC 2869 §5.14), the checks on replies, and the client itself.
//
// Every reply is hostile until proven otherwise: a reply is accepted only
// if its length, identifier, Response Authenticator and Message-
// Authenticator all check out (compared in constant time); anything else
// is dropped silently and counted, and the client keeps waiting.
package radius
