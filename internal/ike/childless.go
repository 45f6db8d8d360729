package ike

import "github.com/mifike/mifike/internal/wire"

// childless is RFC 6023: an IKE_AUTH without a Child SA. We accept one
// as responder and say so with CHILDLESS_IKEV2_SUPPORTED in the
// IKE_SA_INIT response (§3); as initiator we send one only to a responder
// that said so, and otherwise carry the connection's first Child SA in
// IKE_AUTH (§3: "MUST NOT send the modified IKE_AUTH request if the
// notification was not present"), as RFC 7296 §1.2 requires.
type childless struct{}

func (childless) String() string { return "childless IKE_AUTH" }

func (childless) initRequest(*initExchange) []wire.Payload { return nil }

func (childless) readInit(x *initExchange, m *message) {
	x.ext.childless = m.notify(wire.NotifyChildlessIKEv2Supported) != nil
}

func (childless) initResponse(x *initExchange, m *message) []wire.Payload {
	if x.conn.NoChildless {
		return nil
	}
	return []wire.Payload{&wire.Notify{Protocol: wire.ProtoIKE, NotifyType: wire.NotifyChildlessIKEv2Supported}}
}

// A responder configured without it treats an IKE_AUTH without a Child
// SA as malformed (§3: "SHOULD reply with an INVALID_SYNTAX").
func (childless) authRequest(*ikeSA, *authExchange) []wire.Payload { return nil }

func (childless) respondAuth(sa *ikeSA, x *authExchange) []wire.Payload {
	if _, hasSA := wire.First[*wire.SA](x.first.payloads); !hasSA && sa.conn.NoChildless {
		x.refuse(wire.NotifyInvalidSyntax, "IKE_AUTH without a Child SA, and childless IKE_AUTH is off (RFC 6023 §3)")
	}
	return nil
}

func (childless) readAuthResponse(*ikeSA, *authExchange, *message) {}

// firstChild is the Child SA IKE_AUTH carries: what the connection starts
// (cfg, nil for none) unless that is none and the responder did not offer
// childless IKE_AUTH, then its first Child SA.
func (sa *ikeSA) firstChild(cfg *ChildConfig) *ChildConfig {
	if cfg != nil || sa.ext.childless || len(sa.conn.Children) == 0 {
		return cfg
	}
	sa.e.log.Info("the peer did not offer childless IKE_AUTH (RFC 6023); the first Child SA rides in IKE_AUTH", "ike", sa.id, "child", sa.conn.Children[0].Name)
	return sa.conn.Children[0]
}
