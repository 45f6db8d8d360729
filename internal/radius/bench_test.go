package radius

import (
	"testing"

	"layeh.com/radius"
)

// The per-round packet cost on the gateway: encoding an Access-Request
// and checking and decoding the Access-Accept with MPPE keys.
func BenchmarkEncodeAccessRequest(b *testing.B) {
	req := &AccessRequest{UserName: "alice", EAPMessage: eapPacket(2, 1, 1000), State: []byte("state")}
	secret := NewSecret(testSecret)
	for b.Loop() {
		if _, err := EncodeAccessRequest(req, testNAS, 1, testAuth, secret); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeAccessAccept(b *testing.B) {
	req := encodeTestRequest(b, eapPacket(2, 9, 60), nil)
	reply := makeReply(b, req, radius.CodeAccessAccept, eapSuccess(9), nil,
		replyOpts{secret: testSecret, recvKey: make([]byte, 32), sendKey: make([]byte, 32)})
	secret := NewSecret(testSecret)
	for b.Loop() {
		if _, err := DecodeAccessReply(reply, req, secret); err != nil {
			b.Fatal(err)
		}
	}
}
