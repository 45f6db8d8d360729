package radius

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2869"
)

const testSecret = "s3cr3t-for-tests"

var testAuth = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func encodeTestRequest(t testing.TB, eap []byte, state []byte) []byte {
	t.Helper()
	b, err := EncodeAccessRequest(&AccessRequest{
		UserName: "alice", EAPMessage: eap, State: state,
		CalledStationID: "192.0.2.1[4500]", CallingStationID: "198.51.100.7[4500]",
	}, testNAS, 42, testAuth, NewSecret(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 3579 §3.1: an EAP packet longer than 253 octets is split over
// consecutive EAP-Message attributes, in order.
func TestEAPMessageSplit_RFC3579_3_1(t *testing.T) {
	eap := eapPacket(2, 7, 1000)
	b := encodeTestRequest(t, eap, nil)
	var lens []int
	var joined []byte
	walkAttributes(b, func(typ byte, off, n int) {
		if typ == byte(rfc2869.EAPMessage_Type) {
			lens = append(lens, n)
			joined = append(joined, b[off:off+n]...)
		}
	})
	if want := []int{253, 253, 253, 241}; !equalInts(lens, want) {
		t.Errorf("EAP-Message attribute lengths %v, want %v", lens, want)
	}
	if !bytes.Equal(joined, eap) {
		t.Error("EAP-Message attributes do not join to the EAP packet")
	}
}

// RFC 3579 §3.1: the reply's EAP-Message attributes are joined.
func TestEAPMessageJoin_RFC3579_3_1(t *testing.T) {
	req := encodeTestRequest(t, eapPacket(2, 7, 40), nil)
	eap := eapPacket(1, 8, 777)
	reply := makeReply(t, req, radius.CodeAccessChallenge, eap,
		radius.Attributes{{Type: rfc2865.State_Type, Attribute: []byte("st-1")}}, replyOpts{secret: testSecret})
	r, err := DecodeAccessReply(reply, req, NewSecret(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.EAPMessage, eap) || string(r.State) != "st-1" || r.Code != AccessChallenge {
		t.Errorf("got code %v, %d EAP octets, State %q", r.Code, len(r.EAPMessage), r.State)
	}
}

// The request's attributes, checked against RFC 2865 §4.1 and RFC 3579
// §3.2 with layeh's parser and an independent HMAC.
func TestAccessRequestAttributes_RFC2865_4_1(t *testing.T) {
	b := encodeTestRequest(t, eapPacket(2, 1, 10), []byte("prev-state"))
	p, err := radius.Parse(b, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if p.Code != radius.CodeAccessRequest || p.Identifier != 42 || p.Authenticator != testAuth {
		t.Errorf("header: code %v id %d", p.Code, p.Identifier)
	}
	checks := []struct {
		name string
		got  string
		want string
	}{
		{"User-Name", rfc2865.UserName_GetString(p), "alice"},
		{"NAS-Identifier", rfc2865.NASIdentifier_GetString(p), "mifike-test"},
		{"NAS-IP-Address", rfc2865.NASIPAddress_Get(p).String(), "127.0.0.1"},
		{"Service-Type", rfc2865.ServiceType_Get(p).String(), "Framed-User"},
		{"NAS-Port-Type", rfc2865.NASPortType_Get(p).String(), "Virtual"},
		{"Called-Station-Id", rfc2865.CalledStationID_GetString(p), "192.0.2.1[4500]"},
		{"Calling-Station-Id", rfc2865.CallingStationID_GetString(p), "198.51.100.7[4500]"},
		{"State", string(rfc2865.State_Get(p)), "prev-state"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	// RFC 3579 §3.2: HMAC-MD5 over the packet with the Message-
	// Authenticator zeroed.
	ma := rfc2869.MessageAuthenticator_Get(p)
	off := bytes.Index(b, ma)
	zeroed := append([]byte(nil), b...)
	copy(zeroed[off:off+16], make([]byte, 16))
	h := hmac.New(md5.New, []byte(testSecret))
	h.Write(zeroed)
	if len(ma) != 16 || !hmac.Equal(h.Sum(nil), ma) {
		t.Error("Message-Authenticator of the request is wrong")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A reply with everything the gateway reads (RFC 2865 §5, RFC 2548).
func TestDecodeAccessAccept(t *testing.T) {
	req := encodeTestRequest(t, eapPacket(2, 9, 60), []byte("s"))
	recv := bytes.Repeat([]byte{0xaa}, 32)
	send := bytes.Repeat([]byte{0xbb}, 32)
	attrs := radius.Attributes{
		{Type: rfc2865.FramedIPAddress_Type, Attribute: []byte{10, 9, 0, 5}},
		{Type: rfc2865.SessionTimeout_Type, Attribute: radius.NewInteger(3600)},
		{Type: rfc2869.AcctInterimInterval_Type, Attribute: radius.NewInteger(600)},
		{Type: rfc2865.Class_Type, Attribute: []byte("class-1")},
		{Type: rfc2865.Class_Type, Attribute: []byte("class-2")},
		{Type: rfc2865.ReplyMessage_Type, Attribute: []byte("welcome")},
		{Type: rfc2865.ReplyMessage_Type, Attribute: []byte("alice")},
	}
	reply := makeReply(t, req, radius.CodeAccessAccept, eapSuccess(9), attrs,
		replyOpts{secret: testSecret, recvKey: recv, sendKey: send})
	r, err := DecodeAccessReply(reply, req, NewSecret(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != AccessAccept || !bytes.Equal(r.EAPMessage, eapSuccess(9)) {
		t.Errorf("code %v EAP %x", r.Code, r.EAPMessage)
	}
	if !bytes.Equal(r.MSK, append(recv, send...)) {
		t.Errorf("MSK %x, want Recv-Key ‖ Send-Key", r.MSK)
	}
	if r.FramedIPAddress != netip.MustParseAddr("10.9.0.5") || r.SessionTimeout != time.Hour ||
		r.AcctInterimInterval != 10*time.Minute || r.ReplyMessage != "welcome\nalice" {
		t.Errorf("attributes: %+v", r)
	}
	if len(r.Class) != 2 || string(r.Class[0]) != "class-1" || string(r.Class[1]) != "class-2" {
		t.Errorf("Class %q", r.Class)
	}
}

// Replies that must be dropped, each for its own reason.
func TestDecodeAccessReplyDrops(t *testing.T) {
	req := encodeTestRequest(t, eapPacket(2, 9, 60), nil)
	good := func(o replyOpts) []byte {
		o.secret = testSecret
		return makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, 10, 20), nil, o)
	}
	setLen := func(n int) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:4], uint16(n)); return b }
	}
	cases := []struct {
		name  string
		reply []byte
		want  error
	}{
		{"short (RFC 2865 §3)", good(replyOpts{})[:19], ErrMalformed},
		{"Length beyond datagram (RFC 2865 §3)", good(replyOpts{modifyRaw: setLen(500)}), ErrMalformed},
		{"Length over 4096 (RFC 2865 §3)", append(good(replyOpts{modifyRaw: setLen(5000)}), make([]byte, 5000)...), ErrMalformed},
		{"Length under 20", good(replyOpts{modifyRaw: setLen(19)}), ErrMalformed},
		{"other identifier", good(replyOpts{id: 43 + 1}), ErrIdentifier},
		{"wrong Response Authenticator (RFC 2865 §3)", good(replyOpts{badAuth: true}), ErrAuthenticator},
		{"wrong secret", makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, 10, 20), nil, replyOpts{secret: "other"}), ErrAuthenticator},
		{"wrong Message-Authenticator (RFC 3579 §3.2)", good(replyOpts{badMA: true}), ErrMessageAuthenticator},
		{"no Message-Authenticator (RFC 3579 §3.2)", good(replyOpts{noMA: true}), ErrMessageAuthenticator},
		{"Access-Request as a reply", makeReply(t, req, radius.CodeAccessRequest, eapPacket(1, 10, 20), nil, replyOpts{secret: testSecret}), ErrMalformed},
		{"EAP Length not the attributes' (RFC 3579 §3.1)", makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, 10, 20)[:19], nil, replyOpts{secret: testSecret}), ErrMalformed},
		{"Challenge without EAP (RFC 3579 §2.6.3)", makeReply(t, req, radius.CodeAccessChallenge, nil, nil, replyOpts{secret: testSecret}), ErrMalformed},
		{"Framed-IP-Address of 3 octets", makeReply(t, req, radius.CodeAccessAccept, eapSuccess(1),
			radius.Attributes{{Type: rfc2865.FramedIPAddress_Type, Attribute: []byte{1, 2, 3}}}, replyOpts{secret: testSecret}), ErrMalformed},
		{"Session-Timeout of 2 octets", makeReply(t, req, radius.CodeAccessAccept, eapSuccess(1),
			radius.Attributes{{Type: rfc2865.SessionTimeout_Type, Attribute: []byte{1, 2}}}, replyOpts{secret: testSecret}), ErrMalformed},
		{"only one MPPE key (RFC 2548 §2.4)", makeReply(t, req, radius.CodeAccessAccept, eapSuccess(1), nil,
			replyOpts{secret: testSecret, recvKey: make([]byte, 32)}), ErrMalformed},
		{"two Message-Authenticators", makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, 10, 20),
			radius.Attributes{{Type: rfc2869.MessageAuthenticator_Type, Attribute: make([]byte, 16)}}, replyOpts{secret: testSecret}), ErrMessageAuthenticator},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := DecodeAccessReply(c.reply, req, NewSecret(testSecret))
			if !errors.Is(err, c.want) || r != nil {
				t.Errorf("got %v, %v; want %v", r, err, c.want)
			}
		})
	}
	// An attribute overrunning the packet, signed properly so that only
	// the attribute check can catch it.
	bad := makeReply(t, req, radius.CodeAccessChallenge, eapPacket(1, 10, 20), nil, replyOpts{secret: testSecret,
		modifyRaw: func(b []byte) []byte {
			b[21] = 250 // the first attribute's Length
			h := md5.New()
			h.Write(b[:4])
			h.Write(req[4:20])
			h.Write(b[20:])
			h.Write([]byte(testSecret))
			copy(b[4:20], h.Sum(nil))
			return b
		}})
	if _, err := DecodeAccessReply(bad, req, NewSecret(testSecret)); !errors.Is(err, ErrMalformed) {
		t.Errorf("attribute overrunning the packet: %v", err)
	}
	// RFC 2865 §3: octets past Length are padding, ignored.
	padded := append(good(replyOpts{}), 0xde, 0xad)
	if _, err := DecodeAccessReply(padded, req, NewSecret(testSecret)); err != nil {
		t.Errorf("padding after Length: %v", err)
	}
}

// RFC 2866 §3–4: the Request Authenticator of an Accounting-Request is
// MD5(Code+Identifier+Length+16 zero octets+Attributes+Secret), and the
// counters over 32 bits go to Gigawords (RFC 2869 §5.1–5.2).
func TestAccountingRequest_RFC2866(t *testing.T) {
	a := &AccountingRequest{
		Status: AcctStop, SessionID: "sess-1", UserName: "alice",
		FramedIPAddress: netip.MustParseAddr("10.9.0.5"),
		Class:           [][]byte{[]byte("class-1")},
		InputOctets:     5<<32 + 7, OutputOctets: 9, InputPackets: 11, OutputPackets: 13,
		SessionTime: 90 * time.Second,
	}
	b, err := EncodeAccountingRequest(a, testNAS, 7, NewSecret(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if !radius.IsAuthenticRequest(b, []byte(testSecret)) {
		t.Error("Request Authenticator wrong")
	}
	p, _ := radius.Parse(b, []byte(testSecret))
	ints := map[radius.Type]uint32{40: 2, 42: 7, 52: 5, 43: 9, 53: 0, 47: 11, 48: 13, 46: 90, 49: 1}
	for typ, want := range ints {
		v, _ := radius.Integer(p.Get(typ))
		if v != want {
			t.Errorf("attribute %d = %d, want %d", typ, v, want)
		}
	}
	if string(p.Get(44)) != "sess-1" || string(p.Get(25)) != "class-1" || string(p.Get(1)) != "alice" {
		t.Errorf("Acct-Session-Id %q Class %q User-Name %q", p.Get(44), p.Get(25), p.Get(1))
	}
	// An Accounting-Response to it, and one with a bad authenticator.
	resp := (&radius.Packet{Code: radius.CodeAccountingResponse, Identifier: 7, Secret: []byte(testSecret)})
	copy(resp.Authenticator[:], b[4:20])
	rb, _ := resp.Encode()
	if err := DecodeAccountingResponse(rb, b, NewSecret(testSecret)); err != nil {
		t.Errorf("valid Accounting-Response: %v", err)
	}
	rb[5] ^= 1
	if err := DecodeAccountingResponse(rb, b, NewSecret(testSecret)); !errors.Is(err, ErrAuthenticator) {
		t.Errorf("bad Accounting-Response: %v", err)
	}
}
