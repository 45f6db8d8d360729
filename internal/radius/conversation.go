package radius

import (
	"context"
	"errors"
)

// Conversation is one EAP authentication relayed to the RADIUS server:
// a sequence of rounds, each an EAP response from the peer answered by
// an Access-Challenge (more EAP), an Access-Accept or an Access-Reject
// (RFC 3579 §2.1). Its first round may fail over between servers; once
// a server has answered, the rest go to it alone, since its State and
// EAP method state mean nothing to another server. Not safe for
// concurrent use: rounds are sequential by nature.
type Conversation struct {
	c      *Client
	req    AccessRequest
	server int // -1 until a server answers
	done   bool
}

// NewConversation starts an EAP conversation for the peer userName (its
// EAP identity) between the gateway's and the peer's IKE endpoints (see
// StationID).
func (c *Client) NewConversation(userName, calledStationID, callingStationID string) *Conversation {
	return &Conversation{c: c, server: -1, req: AccessRequest{
		UserName: userName, CalledStationID: calledStationID, CallingStationID: callingStationID,
	}}
}

// ErrConversationOver is returned by Round after an Accept or Reject.
var ErrConversationOver = errors.New("radius: EAP conversation already ended")

// Round sends the peer's EAP message and returns the server's reply. On
// an Access-Reject it returns the reply (its EAP-Failure is still to be
// forwarded to the peer) together with a *RejectError. ctx bounds the
// whole round, retransmissions and failover included: the IKE layer
// passes what is left of its own retransmission budget.
func (cv *Conversation) Round(ctx context.Context, eapMessage []byte) (*Reply, error) {
	if cv.done {
		return nil, ErrConversationOver
	}
	c := cv.c
	req := cv.req
	req.EAPMessage = eapMessage
	var reply *Reply
	server, err := c.exchange(ctx, authPort, cv.server,
		func(id byte, s Secret) ([]byte, error) {
			return EncodeAccessRequest(&req, c.cfg.NAS, id, randomAuthenticator(), s)
		},
		func(b, request []byte, s Secret) error {
			r, err := DecodeAccessReply(b, request, s)
			if err == nil {
				reply = r
			}
			return err
		},
	)
	if err != nil {
		return nil, err
	}
	cv.server = server
	switch reply.Code {
	case AccessChallenge:
		c.stats.Challenges.Add(1)
		cv.req.State = reply.State
		return reply, nil
	case AccessAccept:
		c.stats.Accepts.Add(1)
		cv.done = true
		return reply, nil
	default:
		c.stats.Rejects.Add(1)
		cv.done = true
		return reply, &RejectError{Server: c.cfg.Servers[server].authAddr(), ReplyMessage: reply.ReplyMessage}
	}
}
