package eap

import (
	"fmt"
	"io"
	"strconv"
)

// The types holding secrets print a summary, whatever the verb, so that a
// password, a private key or an MSK never reaches a log through %v, %+v,
// %#v, %s or %x.

func (c PeerConfig) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "eap.PeerConfig{Identity: %s, Password: %s, Methods: %v, Certificate: %s, ServerName: %q}",
		strconv.Quote(printable(string(c.Identity), maxIdentityLen)), redacted(len(c.Password) > 0),
		c.Methods, redacted(c.Certificate != nil), c.ServerName)
}

func (c ServerConfig) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "eap.ServerConfig{Users: %d, Methods: %v, Certificate: %s}",
		len(c.Users), c.Methods, redacted(c.Certificate != nil))
}

func (p *Peer) Format(f fmt.State, _ rune) {
	if p == nil {
		io.WriteString(f, "eap.Peer(nil)")
		return
	}
	state := "running"
	switch {
	case p.closed:
		state = "closed"
	case p.succeeded:
		state = "succeeded"
	case p.err != nil:
		state = "failed"
	}
	fmt.Fprintf(f, "eap.Peer{%s, method %s, MSK: %s}", state, p.method, redacted(p.msk != nil))
}

func (s *Server) Format(f fmt.State, _ rune) {
	if s == nil {
		io.WriteString(f, "eap.Server(nil)")
		return
	}
	fmt.Fprintf(f, "eap.Server{method %s, done %t}", s.method, s.done)
}

func redacted(set bool) string {
	if set {
		return "[redacted]"
	}
	return "[none]"
}
