package eap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"testing"
)

// Every method end to end: the peer succeeds, the server decides Success,
// and both hold the same MSK.
func TestPeerServerMethods(t *testing.T) {
	pk := newPKI(t)
	for _, tc := range []struct {
		name    string
		method  Type
		version uint16
		mskLen  int
	}{
		{"md5", TypeMD5Challenge, 0, 0},
		{"mschapv2", TypeMSCHAPv2, 0, 64},
		{"tls1.2", TypeTLS, tls.VersionTLS12, 64},
		{"tls1.3", TypeTLS, tls.VersionTLS13, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, ServerConfig{
				Methods: []Type{tc.method}, Certificate: &pk.server, ClientCAs: pk.roots, TLSMaxVersion: tc.version,
			})
			p := newTestPeer(t, PeerConfig{
				Password: []byte("correct horse"), Methods: []Type{tc.method},
				Certificate: &pk.client, RootCAs: pk.roots, ServerName: "radius.example", TLSMaxVersion: tc.version,
			})
			o := converse(t, p, s, nil)
			if !o.done || o.serverErr != nil || o.peerErr != nil || !p.Succeeded() {
				t.Fatalf("server done %t err %v, peer err %v succeeded %t", o.done, o.serverErr, o.peerErr, p.Succeeded())
			}
			if p.Method() != tc.method {
				t.Errorf("method %s", p.Method())
			}
			if len(p.MSK()) != tc.mskLen {
				t.Fatalf("MSK of %d octets, want %d", len(p.MSK()), tc.mskLen)
			}
			if !bytes.Equal(p.MSK(), o.serverMSK) {
				t.Fatalf("peer and server MSKs differ")
			}
			if tc.mskLen > 0 && bytes.Equal(p.MSK(), make([]byte, tc.mskLen)) {
				t.Fatal("MSK is all zeros")
			}
			if tc.method == TypeTLS {
				if v := p.m.(*tlsPeer).state.Version; v != tc.version {
					t.Errorf("TLS version %#x, want %#x", v, tc.version)
				}
			}
			// The server answered with EAP-Success.
			last, err := Parse(o.packets[len(o.packets)-1])
			if err != nil || last.Code != CodeSuccess {
				t.Fatalf("last packet %v, %v", last, err)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   Type
		identity string
	}{
		{"md5", TypeMD5Challenge, "alice"},
		{"mschapv2", TypeMSCHAPv2, "alice"},
		{"md5 unknown user", TypeMD5Challenge, "mallory"},
		{"mschapv2 unknown user", TypeMSCHAPv2, "mallory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, ServerConfig{Methods: []Type{tc.method}})
			p := newTestPeer(t, PeerConfig{Identity: []byte(tc.identity), Password: []byte("wrong"), Methods: []Type{tc.method}})
			o := converse(t, p, s, nil)
			if !o.done || !errors.Is(o.serverErr, ErrRejected) || o.serverMSK != nil {
				t.Fatalf("server done %t err %v msk %x", o.done, o.serverErr, o.serverMSK)
			}
			if p.Succeeded() || p.MSK() != nil || o.peerErr == nil {
				t.Fatalf("peer succeeded %t, err %v", p.Succeeded(), o.peerErr)
			}
			last, _ := Parse(o.packets[len(o.packets)-1])
			if last == nil || last.Code != CodeFailure {
				t.Fatalf("last packet %v", last)
			}
			if tc.method == TypeMSCHAPv2 {
				// The Failure-Request's E=691 reaches the caller.
				var me *MSCHAPv2Error
				if !errors.As(o.peerErr, &me) || me.Code != ErrorAuthenticationFailed {
					t.Fatalf("peer error %v, want MSCHAPv2 E=691", o.peerErr)
				}
			} else if !errors.Is(o.peerErr, ErrFailure) {
				t.Fatalf("peer error %v, want ErrFailure", o.peerErr)
			}
		})
	}
}

// The server offers MD5 first; a peer that allows only MSCHAPv2 Naks it
// and the server switches (RFC 3748 §5.3.1).
func TestNakNegotiation(t *testing.T) {
	s := newTestServer(t, ServerConfig{Methods: []Type{TypeMD5Challenge, TypeMSCHAPv2}})
	p := newTestPeer(t, PeerConfig{Password: []byte("correct horse"), Methods: []Type{TypeMSCHAPv2}})
	o := converse(t, p, s, nil)
	if !o.done || o.serverErr != nil || !p.Succeeded() || p.Method() != TypeMSCHAPv2 {
		t.Fatalf("done %t, server %v, peer %v, method %s", o.done, o.serverErr, o.peerErr, p.Method())
	}
	var naks int
	for _, b := range o.packets {
		pkt, _ := Parse(b)
		if pkt.Code == CodeResponse && pkt.Type == TypeNak {
			naks++
			if !bytes.Equal(pkt.Data, []byte{byte(TypeMSCHAPv2)}) {
				t.Errorf("Nak offers %x", pkt.Data)
			}
		}
	}
	if naks != 1 {
		t.Errorf("%d Naks", naks)
	}
	if !bytes.Equal(p.MSK(), o.serverMSK) {
		t.Error("MSKs differ")
	}
}

func TestNoCommonMethod(t *testing.T) {
	s := newTestServer(t, ServerConfig{Methods: []Type{TypeMD5Challenge}})
	p := newTestPeer(t, PeerConfig{Password: []byte("correct horse"), Methods: []Type{TypeMSCHAPv2}})
	o := converse(t, p, s, nil)
	if !o.done || !errors.Is(o.serverErr, ErrRejected) || !errors.Is(o.peerErr, ErrFailure) {
		t.Fatalf("done %t, server %v, peer %v", o.done, o.serverErr, o.peerErr)
	}
}

// Every Request delivered twice gets the same Response twice, octet for
// octet (converse checks), and the conversation still succeeds.
func TestPeerRetransmittedRequests(t *testing.T) {
	pk := newPKI(t)
	for _, m := range []Type{TypeMD5Challenge, TypeMSCHAPv2, TypeTLS} {
		t.Run(m.String(), func(t *testing.T) {
			s := newTestServer(t, ServerConfig{Methods: []Type{m}, Certificate: &pk.server, ClientCAs: pk.roots, FragmentSize: 300})
			p := newTestPeer(t, PeerConfig{
				Password: []byte("correct horse"), Methods: []Type{m},
				Certificate: &pk.client, RootCAs: pk.roots, ServerName: "radius.example", FragmentSize: 300,
			})
			dups := 0
			o := converse(t, p, s, func(_ int, req []byte) [][]byte {
				dups++
				return [][]byte{req, req}
			})
			if !o.done || o.serverErr != nil || !p.Succeeded() {
				t.Fatalf("done %t, server %v, peer %v", o.done, o.serverErr, o.peerErr)
			}
			if dups < 2 {
				t.Fatalf("only %d requests", dups)
			}
			// A retransmitted Success is harmless too.
			if _, err := p.Handle(o.packets[len(o.packets)-1]); err != nil {
				t.Fatalf("repeated Success: %v", err)
			}
		})
	}
}

// The server drops a duplicate of an already-answered Response and keeps
// its outstanding Request (RFC 3748 §4.1).
func TestServerDiscardsStaleResponse(t *testing.T) {
	s := newTestServer(t, ServerConfig{Methods: []Type{TypeMSCHAPv2}})
	p := newTestPeer(t, PeerConfig{Password: []byte("correct horse")})
	req, _ := s.Start()
	resp, err := p.Handle(req)
	if err != nil {
		t.Fatal(err)
	}
	req2, done, _, err := s.Handle(resp)
	if err != nil || done {
		t.Fatal(done, err)
	}
	if _, done, _, err := s.Handle(resp); !errors.Is(err, ErrDiscarded) || done {
		t.Fatalf("stale response: done %t, %v", done, err)
	}
	if !bytes.Equal(s.Retransmit(), req2) {
		t.Fatal("outstanding request changed")
	}
	for _, junk := range [][]byte{{1, 2}, {1, 0, 0, 4}, {3, req2[1], 0, 4}} {
		if _, _, _, err := s.Handle(junk); !errors.Is(err, ErrDiscarded) {
			t.Fatalf("junk %x: %v", junk, err)
		}
	}
	resp2, err := p.Handle(s.Retransmit())
	if err != nil {
		t.Fatal(err)
	}
	if _, done, _, err := s.Handle(resp2); err != nil || done {
		t.Fatalf("after discard: done %t, %v", done, err)
	}
}
