package radius

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"testing"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
)

// FuzzParseReply feeds arbitrary bytes to DecodeAccessReply as the reply
// to a known request. Unsigned, nothing may get through that a separate
// check of RFC 2865 §3 and RFC 3579 §3.2 would reject; signed (the
// fuzzer's bytes as code and attributes, then authenticators computed
// here), the attribute parsing behind the authenticators is reached.
// Never a panic either way.
func FuzzParseReply(f *testing.F) {
	req := encodeTestRequest(f, eapPacket(2, 9, 60), nil)
	f.Add(makeReply(f, req, radius.CodeAccessChallenge, eapPacket(1, 10, 300),
		radius.Attributes{{Type: rfc2865.State_Type, Attribute: []byte("st")}}, replyOpts{secret: testSecret}), false)
	f.Add(makeReply(f, req, radius.CodeAccessAccept, eapSuccess(10),
		radius.Attributes{{Type: rfc2865.Class_Type, Attribute: []byte("c")}},
		replyOpts{secret: testSecret, recvKey: make([]byte, 32), sendKey: make([]byte, 32)}), false)
	f.Add(makeReply(f, req, radius.CodeAccessReject, eapFailure(10), nil, replyOpts{secret: testSecret}), false)
	accept := makeReply(f, req, radius.CodeAccessAccept, eapSuccess(10),
		radius.Attributes{{Type: rfc2865.FramedIPAddress_Type, Attribute: []byte{10, 0, 0, 1}}},
		replyOpts{secret: testSecret, recvKey: make([]byte, 16), sendKey: make([]byte, 16), noMA: true})
	f.Add(append([]byte{2}, accept[20:]...), true)
	f.Add([]byte{11, 79, 6, 1, 0, 0, 4}, true)
	secret := NewSecret(testSecret)
	f.Fuzz(func(t *testing.T, b []byte, sign bool) {
		if sign {
			b = signForFuzz(b, req)
			if b == nil {
				return
			}
		}
		r, err := DecodeAccessReply(b, req, secret)
		if err != nil {
			if r != nil {
				t.Fatal("reply and error both returned")
			}
			return
		}
		// Accepted: check it as RFC 2865 §3 and RFC 3579 §3.2 say,
		// apart from the code under test.
		n := int(binary.BigEndian.Uint16(b[2:4]))
		pkt := b[:n]
		h := md5.New()
		h.Write(pkt[:4])
		h.Write(req[4:20])
		h.Write(pkt[20:])
		h.Write([]byte(testSecret))
		if !bytes.Equal(h.Sum(nil), pkt[4:20]) || pkt[1] != req[1] {
			t.Fatal("accepted a reply with a wrong identifier or Response Authenticator")
		}
		p, err := radius.Parse(pkt, nil)
		if err != nil {
			t.Fatalf("accepted a reply layeh cannot parse: %v", err)
		}
		ma := p.Get(80)
		i := bytes.LastIndex(pkt, append([]byte{80, 18}, ma...))
		if len(ma) != 16 || i < 20 {
			t.Fatal("accepted a reply without Message-Authenticator")
		}
		zeroed := append([]byte(nil), pkt...)
		copy(zeroed[4:20], req[4:20])
		copy(zeroed[i+2:i+18], make([]byte, 16))
		mac := hmac.New(md5.New, []byte(testSecret))
		mac.Write(zeroed)
		if !bytes.Equal(mac.Sum(nil), ma) {
			t.Fatal("accepted a reply with a wrong Message-Authenticator")
		}
		if r.Code != AccessAccept && r.Code != AccessReject && r.Code != AccessChallenge {
			t.Fatalf("accepted code %v", r.Code)
		}
		if len(r.MSK) > 0 && r.Code != AccessAccept {
			t.Fatal("MSK from a reply that is not an Accept")
		}
		if len(r.EAPMessage) > 0 && int(binary.BigEndian.Uint16(r.EAPMessage[2:4])) != len(r.EAPMessage) {
			t.Fatal("EAP message of the wrong length")
		}
	})
}

// signForFuzz makes a reply of code b[0] and attributes b[1:], with a
// Message-Authenticator appended and both authenticators right.
func signForFuzz(b, req []byte) []byte {
	if len(b) == 0 || 20+len(b)-1+18 > MaxPacketLength {
		return nil
	}
	pkt := make([]byte, 20, 20+len(b)+17)
	pkt[0], pkt[1] = b[0], req[1]
	copy(pkt[4:20], req[4:20])
	pkt = append(pkt, b[1:]...)
	pkt = append(pkt, 80, 18)
	pkt = append(pkt, make([]byte, 16)...)
	binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
	mac := hmac.New(md5.New, []byte(testSecret))
	mac.Write(pkt)
	copy(pkt[len(pkt)-16:], mac.Sum(nil))
	h := md5.New()
	h.Write(pkt)
	h.Write([]byte(testSecret))
	copy(pkt[4:20], h.Sum(nil))
	return pkt
}

// FuzzDecryptMPPEKey decrypts arbitrary MS-MPPE key values (RFC 2548
// §2.4.2): never a panic, and a key that decrypts encrypts back to the
// same value with the same salt.
func FuzzDecryptMPPEKey(f *testing.F) {
	enc, _ := radius.NewTunnelPassword(bytes.Repeat([]byte{7}, 32), []byte{0x80, 1}, []byte(testSecret), testAuth[:])
	f.Add([]byte(enc), testAuth[:], []byte(testSecret))
	f.Add(make([]byte, 18), testAuth[:], []byte("x"))
	f.Add([]byte{0x80, 0}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, value, reqAuth, secret []byte) {
		key, err := DecryptMPPEKey(value, reqAuth, secret)
		if err != nil {
			return
		}
		if len(key) == 0 || len(value) < 18 || value[0]&0x80 == 0 {
			t.Fatalf("accepted a %d-octet value giving a %d-octet key", len(value), len(key))
		}
		again, err := radius.NewTunnelPassword(key, value[:2], secret, reqAuth)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecryptMPPEKey(again, reqAuth, secret)
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("round trip: %x, %v; want %x", back, err, key)
		}
	})
}
