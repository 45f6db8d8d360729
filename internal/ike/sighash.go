package ike

import (
	"encoding/binary"

	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/wire"
)

// signatureHashes is RFC 7427 §4: both sides list the hashes they verify
// in SIGNATURE_HASH_ALGORITHMS in IKE_SA_INIT, and only then are
// signatures made with the Digital Signature method (auth.go). A
// connection with ClassicSignatures neither sends nor takes the list.
type signatureHashes struct{}

func (signatureHashes) String() string { return "RFC 7427 signature hashes" }

func (signatureHashes) initRequest(x *initExchange) []wire.Payload {
	if x.conn.ClassicSignatures {
		return nil
	}
	return []wire.Payload{hashNotify()}
}

func (signatureHashes) readInit(x *initExchange, m *message) {
	x.ext.peerHashes = nil
	if x.conn.ClassicSignatures {
		return // we did not (will not) announce ours: RFC 7427 is off
	}
	if n := m.notify(wire.NotifySignatureHashAlgorithms); n != nil {
		if hs, err := n.Hashes(); err == nil {
			x.ext.peerHashes = hs
		}
	}
}

func (signatureHashes) initResponse(x *initExchange, m *message) []wire.Payload {
	if x.ext.peerHashes == nil {
		return nil // only to a peer that announced its own (§4)
	}
	return []wire.Payload{hashNotify()}
}

func hashNotify() *wire.Notify {
	hs := ikeauth.SupportedHashes()
	b := make([]byte, 0, 2*len(hs))
	for _, h := range hs {
		b = binary.BigEndian.AppendUint16(b, uint16(h))
	}
	return wire.NewNotify(wire.NotifySignatureHashAlgorithms, b)
}
