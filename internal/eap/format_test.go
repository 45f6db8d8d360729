package eap

import (
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"testing"
)

const secretPassword = "hunter2-Very-Secret"

// forbidden are the ways a secret could show up in text.
func forbidden(secrets ...[]byte) []string {
	var f []string
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		f = append(f, string(s), hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)), fmt.Sprint(s), fmt.Sprintf("%q", s))
	}
	return f
}

func checkNoSecret(t *testing.T, what, text string, bad []string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(text, b) {
			t.Errorf("%s shows a secret: %q", what, text)
			return
		}
	}
}

var verbs = []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"}

func TestSecretsNotPrinted(t *testing.T) {
	pk := newPKI(t)
	key := pk.client.PrivateKey.(*ecdsa.PrivateKey)
	keyBytes, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Type{TypeMSCHAPv2, TypeTLS} {
		pcfg := PeerConfig{
			Password: []byte(secretPassword), Methods: []Type{m},
			Certificate: &pk.client, RootCAs: pk.roots, ServerName: "radius.example",
		}
		scfg := ServerConfig{
			Methods: []Type{m}, Users: map[string][]byte{"alice": []byte(secretPassword)},
			Certificate: &pk.server, ClientCAs: pk.roots,
		}
		p, s := newTestPeer(t, pcfg), newTestServer(t, scfg)
		o := converse(t, p, s, nil)
		if !p.Succeeded() {
			t.Fatal(o.peerErr)
		}
		// %v of an ecdsa.PrivateKey would print the scalar as a
		// decimal big.Int.
		d := new(big.Int).SetBytes(keyBytes)
		bad := forbidden([]byte(secretPassword), keyBytes, p.MSK())
		bad = append(bad, d.Text(16), d.String())
		for _, v := range verbs {
			for name, x := range map[string]any{
				"PeerConfig": pcfg, "*PeerConfig": &pcfg, "ServerConfig": scfg, "*ServerConfig": &scfg,
				"Peer": p, "Server": s,
			} {
				checkNoSecret(t, name+" "+v, fmt.Sprintf(v, x), bad)
			}
		}
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	bad := forbidden([]byte(secretPassword), []byte("correct horse"))
	var errs []error
	for _, m := range []Type{TypeMD5Challenge, TypeMSCHAPv2} {
		s := newTestServer(t, ServerConfig{Methods: []Type{m}})
		p := newTestPeer(t, PeerConfig{Password: []byte(secretPassword), Methods: []Type{m}})
		o := converse(t, p, s, nil)
		if o.peerErr == nil || o.serverErr == nil {
			t.Fatalf("%s: wrong password accepted", m)
		}
		errs = append(errs, o.peerErr, o.serverErr)
	}
	// A bad authenticator response and a server that knows the
	// password but answers for another identity.
	p := newTestPeer(t, PeerConfig{Password: []byte(secretPassword), Methods: []Type{TypeMSCHAPv2}})
	chal := append([]byte{mschapChalLen}, make([]byte, 16)...)
	mustResp(t, p, mkReq(t, 1, TypeMSCHAPv2, appendMSCHAP(nil, mschapChallenge, 1, chal, []byte("srv"))))
	_, err := p.Handle(mkReq(t, 2, TypeMSCHAPv2, appendMSCHAP(nil, mschapSuccess, 1, []byte("S=0000000000000000000000000000000000000000"))))
	errs = append(errs, err)
	for _, e := range errs {
		if e == nil {
			t.Fatal("missing error")
		}
		for _, v := range verbs {
			checkNoSecret(t, "error", fmt.Sprintf(v, e), bad)
		}
	}
}
