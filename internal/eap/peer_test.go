package eap

import (
	"bytes"
	"errors"
	"testing"
)

func mkReq(t testing.TB, id uint8, typ Type, data []byte) []byte {
	t.Helper()
	b, err := (&Packet{Code: CodeRequest, Identifier: id, Type: typ, Data: data}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mkCode(c Code, id uint8) []byte { return []byte{byte(c), id, 0, 4} }

// mustResp handles req and parses the Response.
func mustResp(t testing.TB, p *Peer, req []byte) *Packet {
	t.Helper()
	b, err := p.Handle(req)
	if err != nil {
		t.Fatalf("Handle(%x): %v", req, err)
	}
	r, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != CodeResponse {
		t.Fatalf("answered with %s", r.Code)
	}
	return r
}

func passwordPeer(t testing.TB, methods ...Type) *Peer {
	return newTestPeer(t, PeerConfig{Password: []byte("correct horse"), Methods: methods})
}

// RFC 3748 §5.1, §5.2.
func TestIdentityAndNotification(t *testing.T) {
	p := passwordPeer(t)
	r := mustResp(t, p, mkReq(t, 5, TypeIdentity, []byte("who are you?")))
	if r.Identifier != 5 || r.Type != TypeIdentity || string(r.Data) != "alice" {
		t.Fatalf("identity response %+v", *r)
	}
	r = mustResp(t, p, mkReq(t, 6, TypeNotification, []byte("password expires soon")))
	if r.Identifier != 6 || r.Type != TypeNotification || len(r.Data) != 0 {
		t.Fatalf("notification response %+v", *r)
	}
}

// RFC 3748 §5.3.1: methods the peer does not allow, unknown ones and
// Expanded Types get a legacy Nak listing what it allows; a second offer
// of a refused one ends the authentication.
func TestNakAndRefusedMethod(t *testing.T) {
	for _, typ := range []Type{TypeMD5Challenge, TypeTTLS, 200, TypeExpanded} {
		t.Run(typ.String(), func(t *testing.T) {
			p := passwordPeer(t, TypeMSCHAPv2)
			data := []byte{16}
			if typ == TypeExpanded {
				data = Expanded{VendorID: 0, VendorType: 4}.Append(nil)
			}
			r := mustResp(t, p, mkReq(t, 1, typ, data))
			if r.Type != TypeNak || !bytes.Equal(r.Data, []byte{byte(TypeMSCHAPv2)}) || r.Identifier != 1 {
				t.Fatalf("got %+v", *r)
			}
			_, err := p.Handle(mkReq(t, 2, typ, data))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("second offer: %v", err)
			}
			// The peer is finished.
			if _, err := p.Handle(mkReq(t, 3, TypeIdentity, nil)); err == nil {
				t.Fatal("peer answered after failing")
			}
		})
	}
}

// A Nak lists every allowed method in the configured order of preference.
func TestNakListsAllowedInOrder(t *testing.T) {
	pk := newPKI(t)
	p := newTestPeer(t, PeerConfig{
		Password: []byte("pw"), RootCAs: pk.roots, ServerName: "radius.example",
		Methods: []Type{TypeTLS, TypeMD5Challenge, TypeMSCHAPv2},
	})
	r := mustResp(t, p, mkReq(t, 1, TypeTTLS, []byte{0x20}))
	want := []byte{byte(TypeTLS), byte(TypeMD5Challenge), byte(TypeMSCHAPv2)}
	if r.Type != TypeNak || !bytes.Equal(r.Data, want) {
		t.Fatalf("Nak %x, want %x", r.Data, want)
	}
}

// No "success without authentication": EAP-Success is refused until a
// method completed.
func TestEarlySuccessRefused(t *testing.T) {
	chal := append([]byte{mschapChalLen}, make([]byte, 16)...)
	mschapChallengeReq := func(t testing.TB, id uint8) []byte {
		return mkReq(t, id, TypeMSCHAPv2, appendMSCHAP(nil, mschapChallenge, id, chal, []byte("srv")))
	}
	for _, tc := range []struct {
		name  string
		steps func(t *testing.T, p *Peer) uint8 // returns the last Identifier
	}{
		{"at once", func(*testing.T, *Peer) uint8 { return 0 }},
		{"after identity", func(t *testing.T, p *Peer) uint8 {
			mustResp(t, p, mkReq(t, 1, TypeIdentity, nil))
			return 1
		}},
		{"after notification", func(t *testing.T, p *Peer) uint8 {
			mustResp(t, p, mkReq(t, 1, TypeNotification, nil))
			return 1
		}},
		{"after nak", func(t *testing.T, p *Peer) uint8 {
			mustResp(t, p, mkReq(t, 1, TypeTTLS, []byte{0x20}))
			return 1
		}},
		{"after mschapv2 response, before the S= check", func(t *testing.T, p *Peer) uint8 {
			mustResp(t, p, mschapChallengeReq(t, 2))
			return 2
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := passwordPeer(t, TypeMSCHAPv2)
			id := tc.steps(t, p)
			for _, sid := range []uint8{id, id + 1} {
				if _, err := p.Handle(mkCode(CodeSuccess, sid)); !errors.Is(err, ErrEarlySuccess) {
					t.Fatalf("Success %d: %v", sid, err)
				}
			}
			if p.Succeeded() || p.MSK() != nil {
				t.Fatal("peer succeeded")
			}
		})
	}
}

func TestSuccessIdentifier(t *testing.T) {
	for _, tc := range []struct {
		delta uint8
		ok    bool
	}{{0, true}, {1, true}, {2, false}, {255, false}} {
		p := passwordPeer(t, TypeMD5Challenge)
		mustResp(t, p, mkReq(t, 10, TypeMD5Challenge, append([]byte{16}, make([]byte, 16)...)))
		_, err := p.Handle(mkCode(CodeSuccess, 10+tc.delta))
		if (err == nil) != tc.ok || p.Succeeded() != tc.ok {
			t.Errorf("Success id +%d: %v", tc.delta, err)
		}
	}
}

func TestFailureAndProtocolErrors(t *testing.T) {
	md5Chal := append([]byte{16}, make([]byte, 16)...)
	for _, tc := range []struct {
		name string
		reqs func(t testing.TB) [][]byte
		want error
	}{
		{"failure", func(testing.TB) [][]byte { return [][]byte{mkCode(CodeFailure, 1)} }, ErrFailure},
		{"failure after method", func(t testing.TB) [][]byte {
			return [][]byte{mkReq(t, 1, TypeMD5Challenge, md5Chal), mkCode(CodeFailure, 1)}
		}, ErrFailure},
		{"response", func(testing.TB) [][]byte { return [][]byte{{2, 1, 0, 5, 1}} }, ErrProtocol},
		{"nak request", func(t testing.TB) [][]byte { return [][]byte{mkReq(t, 1, TypeNak, []byte{4})} }, ErrProtocol},
		{"malformed", func(testing.TB) [][]byte { return [][]byte{{1, 1, 0, 99}} }, ErrMalformed},
		{"method switch", func(t testing.TB) [][]byte {
			return [][]byte{mkReq(t, 1, TypeMD5Challenge, md5Chal), mkReq(t, 2, TypeMSCHAPv2, []byte{1})}
		}, ErrProtocol},
		{"identity during method", func(t testing.TB) [][]byte {
			return [][]byte{mkReq(t, 1, TypeMD5Challenge, md5Chal), mkReq(t, 2, TypeIdentity, nil)}
		}, ErrProtocol},
		{"second md5 challenge", func(t testing.TB) [][]byte {
			return [][]byte{mkReq(t, 1, TypeMD5Challenge, md5Chal), mkReq(t, 2, TypeMD5Challenge, md5Chal)}
		}, ErrProtocol},
		{"md5 bad value size", func(t testing.TB) [][]byte {
			return [][]byte{mkReq(t, 1, TypeMD5Challenge, []byte{17, 1, 2})}
		}, ErrMalformed},
		{"packet after success", func(t testing.TB) [][]byte {
			return [][]byte{mkReq(t, 1, TypeMD5Challenge, md5Chal), mkCode(CodeSuccess, 1), mkReq(t, 2, TypeIdentity, nil)}
		}, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := passwordPeer(t, TypeMD5Challenge, TypeMSCHAPv2)
			reqs := tc.reqs(t)
			var err error
			for _, r := range reqs {
				if _, err = p.Handle(r); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// MD5-Challenge Response value is MD5(Identifier | password | challenge)
// (RFC 3748 §5.4, RFC 1994 §4.1), checked against the server's verifier.
func TestMD5Response(t *testing.T) {
	p := passwordPeer(t, TypeMD5Challenge)
	chal := []byte("0123456789abcdef")
	r := mustResp(t, p, mkReq(t, 42, TypeMD5Challenge, append([]byte{16}, append(chal, "srv"...)...)))
	if r.Type != TypeMD5Challenge || len(r.Data) != 17 || r.Data[0] != 16 {
		t.Fatalf("response %+v", *r)
	}
	if !md5Verify(42, []byte("correct horse"), chal, r.Data) {
		t.Fatal("response does not verify")
	}
	if md5Verify(43, []byte("correct horse"), chal, r.Data) || md5Verify(42, []byte("wrong"), chal, r.Data) {
		t.Fatal("response verifies with the wrong identifier or password")
	}
	if _, err := p.Handle(mkCode(CodeSuccess, 42)); err != nil || p.MSK() != nil || !p.Succeeded() {
		t.Fatalf("success: %v, MSK %x", err, p.MSK())
	}
}

// A Success-Request whose S= does not verify means the server does not
// know the password: the peer answers nothing and refuses Success.
func TestMSCHAPv2BadAuthenticatorResponse(t *testing.T) {
	s := newTestServer(t, ServerConfig{Methods: []Type{TypeMSCHAPv2}})
	p := passwordPeer(t, TypeMSCHAPv2)
	var tampered bool
	req, _ := s.Start()
	for range 10 {
		pkt, _ := Parse(req)
		if pkt.Type == TypeMSCHAPv2 && pkt.Data[0] == mschapSuccess {
			// Flip one hex digit of S=.
			b := bytes.Clone(req)
			i := 5 + mschapHeaderLen + 2
			if b[i] == '0' {
				b[i] = '1'
			} else {
				b[i] = '0'
			}
			resp, err := p.Handle(b)
			if resp != nil || !errors.Is(err, ErrProtocol) {
				t.Fatalf("tampered S=: %x, %v", resp, err)
			}
			tampered = true
			if _, err := p.Handle(mkCode(CodeSuccess, pkt.Identifier)); err == nil || p.Succeeded() {
				t.Fatal("Success accepted after a bad S=")
			}
			break
		}
		resp, err := p.Handle(req)
		if err != nil {
			t.Fatal(err)
		}
		req, _, _, err = s.Handle(resp)
		if err != nil {
			t.Fatal(err)
		}
	}
	if !tampered {
		t.Fatal("no Success-Request seen")
	}
}

// The server's Failure-Request: the peer sends a Failure-Response and
// reports E=.
func TestMSCHAPv2FailureRequest(t *testing.T) {
	p := passwordPeer(t, TypeMSCHAPv2)
	chal := append([]byte{mschapChalLen}, make([]byte, 16)...)
	mustResp(t, p, mkReq(t, 1, TypeMSCHAPv2, appendMSCHAP(nil, mschapChallenge, 1, chal, []byte("srv"))))
	fail := mkReq(t, 2, TypeMSCHAPv2, appendMSCHAP(nil, mschapFailure, 1, []byte("E=648 R=0 V=3 M=Password expired")))
	resp, err := p.Handle(fail)
	var me *MSCHAPv2Error
	if !errors.As(err, &me) || me.Code != ErrorPasswordExpired || me.Message != "Password expired" {
		t.Fatalf("error %v", err)
	}
	r, perr := Parse(resp)
	if perr != nil || r.Identifier != 2 || r.Type != TypeMSCHAPv2 || !bytes.Equal(r.Data, []byte{mschapFailure}) {
		t.Fatalf("Failure-Response %x, %v", resp, perr)
	}
	// Retransmitted Failure-Request: same Response, same error.
	resp2, err2 := p.Handle(fail)
	if !bytes.Equal(resp, resp2) || err2 != err {
		t.Fatal("retransmission answered differently")
	}
}

func TestNewPeerValidates(t *testing.T) {
	pk := newPKI(t)
	base := func() PeerConfig {
		return PeerConfig{Identity: []byte("alice"), Password: []byte("pw"), Rand: seeded(1), Now: clock}
	}
	for _, tc := range []struct {
		name string
		mod  func(*PeerConfig)
	}{
		{"no rand", func(c *PeerConfig) { c.Rand = nil }},
		{"no clock", func(c *PeerConfig) { c.Now = nil }},
		{"no identity", func(c *PeerConfig) { c.Identity = nil }},
		{"long identity", func(c *PeerConfig) { c.Identity = make([]byte, 254) }},
		{"no credentials", func(c *PeerConfig) { c.Password = nil }},
		{"md5 without password", func(c *PeerConfig) { c.Password, c.Methods = nil, []Type{TypeMD5Challenge} }},
		{"tls without CA", func(c *PeerConfig) { c.Methods = []Type{TypeTLS} }},
		{"tls without name", func(c *PeerConfig) { c.Methods, c.RootCAs = []Type{TypeTLS}, pk.roots }},
		{"ttls", func(c *PeerConfig) { c.Methods = []Type{TypeTTLS} }},
		{"twice", func(c *PeerConfig) { c.Methods = []Type{TypeMD5Challenge, TypeMD5Challenge} }},
		{"fragment", func(c *PeerConfig) { c.FragmentSize = 10 }},
		{"tls 1.1", func(c *PeerConfig) { c.TLSMaxVersion = 0x0302 }},
	} {
		c := base()
		tc.mod(&c)
		if p, err := NewPeer(c); err == nil {
			p.Close()
			t.Errorf("%s: accepted", tc.name)
		}
	}
	p, err := NewPeer(base())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.allowed; len(got) != 2 || got[0] != TypeMSCHAPv2 || got[1] != TypeMD5Challenge {
		t.Errorf("default methods %v", got)
	}
	p.Close()
	if _, err := p.Handle(mkReq(t, 1, TypeIdentity, nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}
