package ike_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/eap"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// EAP in IKE_AUTH (RFC 7296 §2.16) between two engines: the end user is
// the EAP peer, the gateway passes the conversation to a backend, here
// the local authenticator of internal/eap (a real FreeRADIUS stands in
// for it in the end-to-end tests).

// eapBackend is a gateway's EAP backend: one eap.Server per IKE SA, as a
// RADIUS server keeps one session per State.
type eapBackend struct {
	users   map[string][]byte
	methods []eap.Type
	rng     *rand.ChaCha8
	servers map[uint64]*eap.Server
	asks    int // AskEAP actions answered
	silent  bool
	// answer, when set, changes an answer before it goes back.
	answer func(*ike.EAPAnswer)
	// EAP-TLS: the server's certificate and the client CAs.
	cert      *tls.Certificate
	clientCAs *x509.CertPool
	// responses counts the peer's EAP Responses by method type.
	responses map[eap.Type]int
}

func newEAPBackend(methods ...eap.Type) *eapBackend {
	return &eapBackend{users: map[string][]byte{"alice": []byte("alice's password")}, methods: methods,
		rng: rand.NewChaCha8([32]byte{1}), servers: map[uint64]*eap.Server{}, responses: map[eap.Type]int{}}
}

func (b *eapBackend) ask(a ike.AskEAP) (ike.EAPAnswer, bool) {
	if b.silent {
		return ike.EAPAnswer{}, false
	}
	b.asks++
	ans := b.decide(a)
	if b.answer != nil {
		b.answer(&ans)
	}
	return ans, true
}

func (b *eapBackend) decide(a ike.AskEAP) ike.EAPAnswer {
	srv := b.servers[a.IKESA]
	if a.Message == nil {
		var err error
		srv, err = eap.NewServer(eap.ServerConfig{Users: b.users, Methods: b.methods, Rand: b.rng, Now: time.Now,
			Certificate: b.cert, ClientCAs: b.clientCAs})
		if err != nil {
			return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPError, Why: err.Error()}
		}
		b.servers[a.IKESA] = srv
		req, err := srv.Start()
		if err != nil {
			return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPError, Why: err.Error()}
		}
		return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPContinue, Message: req}
	}
	if srv == nil {
		return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPError, Why: "no session"}
	}
	if p, err := eap.Parse(a.Message); err == nil && p.Code == eap.CodeResponse {
		b.responses[p.Type]++
	}
	out, done, msk, err := srv.Handle(a.Message)
	switch {
	case errors.Is(err, eap.ErrRejected):
		return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPReject, Message: out, Why: err.Error()}
	case err != nil:
		return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPError, Why: err.Error()}
	case done:
		return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPAccept, Message: out, MSK: msk}
	}
	return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPContinue, Message: out}
}

// eapLab is the harness's road warrior with EAP: the end user the EAP
// peer with password, the gateway authenticating itself by PSK.
func eapLab(t *testing.T, seed uint64, b *eapBackend, password string, methods []eap.Type, mutate func(ue, gw *ike.Connection)) *lab {
	l := newLab(t, seed, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.LocalAuth = ike.AuthEAP
		ue.EAP = &eap.PeerConfig{Identity: []byte("alice"), Password: []byte(password), Methods: methods}
		gw.RemoteAuth = ike.AuthEAP
		if mutate != nil {
			mutate(ue, gw)
		}
	})
	l.gw.EAP = b.ask
	return l
}

func TestRFC7296Section2_16EAP(t *testing.T) {
	for _, tc := range []struct {
		method eap.Type
		name   string
		msk    bool
	}{
		{eap.TypeMSCHAPv2, "EAP-MSCHAPv2", true},
		{eap.TypeMD5Challenge, "EAP-MD5", false}, // no MSK: the AUTHs are keyed with SK_pi, SK_pr
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newEAPBackend(tc.method)
			l := eapLab(t, 120, b, "alice's password", []eap.Type{tc.method}, nil)
			l.up()
			l.settle(time.Second)
			ue, gw := l.sa(l.ue), l.sa(l.gw)
			for _, s := range []ike.IKESAInfo{ue, gw} {
				if s.EAPIdentity != "alice" || s.EAPMethod != tc.name {
					t.Errorf("SA shows EAP identity %q method %q, want alice %s", s.EAPIdentity, s.EAPMethod, tc.name)
				}
			}
			if len(ue.Children) != 1 || len(gw.Children) != 1 || len(ue.VirtualIPs) != 1 {
				t.Fatalf("after EAP: Child SAs ue %d gw %d, inner address %v", len(ue.Children), len(gw.Children), ue.VirtualIPs)
			}
			// Identity, the method's rounds, the AUTH round.
			if n := countNotify(l.gw, wire.NotifyInitialContact, false); n != 1 {
				t.Errorf("INITIAL_CONTACT seen %d times: the features must read the first request once", n)
			}
			if b.asks < 3 {
				t.Errorf("the backend was asked %d times", b.asks)
			}
		})
	}
}

// A wrong password: the backend rejects, the gateway sends EAP-Failure
// and drops the SA, the end user gives up (§2.16, §2.21.2).
func TestRFC7296Section2_16EAPRejected(t *testing.T) {
	b := newEAPBackend(eap.TypeMSCHAPv2)
	l := eapLab(t, 121, b, "not alice's password", []eap.Type{eap.TypeMSCHAPv2}, nil)
	l.initiate()
	l.net.RunFor(30 * time.Second)
	if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("%d IKE SAs left after a rejected EAP authentication: ue %+v gw %+v", n, l.ue.Engine.IKESAs(), l.gw.Engine.IKESAs())
	}
	if eventsWith(l.gw, ike.EventIKEFailed, "EAP") == 0 || eventsWith(l.ue, ike.EventIKEFailed, "EAP") == 0 {
		t.Error("the gateway or the end user gave no reason naming EAP")
	}
}

// The end user offers only a method the backend does not do: NAK, then
// the backend has nothing else and rejects.
func TestRFC7296Section2_16EAPNoCommonMethod(t *testing.T) {
	b := newEAPBackend(eap.TypeMD5Challenge)
	l := eapLab(t, 122, b, "alice's password", []eap.Type{eap.TypeMSCHAPv2}, nil)
	l.initiate()
	l.net.RunFor(30 * time.Second)
	if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("%d IKE SAs left without a common EAP method", n)
	}
}

// A slow backend: the end user's retransmissions of the request being
// decided are dropped, not passed to the backend again; one that answers
// after a retransmission is answered from the cache. The backend is asked
// once per round whatever the retransmissions.
func TestRFC7296Section2_16EAPSlowBackend(t *testing.T) {
	b := newEAPBackend(eap.TypeMSCHAPv2)
	l := eapLab(t, 123, b, "alice's password", []eap.Type{eap.TypeMSCHAPv2}, nil)
	l.gw.EAPDelay = 5 * time.Second // past the first retransmission (4 s)
	l.up()
	l.settle(time.Second)
	st := l.gw.Engine.Stats()
	if st.DroppedBy[ike.DropAwaitingBackend] == 0 {
		t.Fatal("no retransmission met a request waiting for the backend")
	}
	// Identity start, identity, challenge response, success response.
	if b.asks != 4 {
		t.Fatalf("the backend was asked %d times for 4 rounds", b.asks)
	}
}

// A backend that never answers: the gateway answers nothing and the
// half-open SA goes when the end user gives up; nothing is left behind.
func TestRFC7296Section2_16EAPSilentBackend(t *testing.T) {
	b := newEAPBackend(eap.TypeMSCHAPv2)
	b.silent = true
	l := eapLab(t, 124, b, "alice's password", []eap.Type{eap.TypeMSCHAPv2}, nil)
	l.initiate()
	l.net.RunFor(10 * time.Minute)
	if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("%d IKE SAs left with a silent EAP backend", n)
	}
}

// A forged or broken backend answer (no EAP Request where one belongs,
// a stale round) is refused without harm.
func TestEAPAnswerChecks(t *testing.T) {
	b := newEAPBackend(eap.TypeMSCHAPv2)
	l := eapLab(t, 125, b, "alice's password", []eap.Type{eap.TypeMSCHAPv2}, nil)
	b.answer = func(a *ike.EAPAnswer) {
		if a.Round == 2 {
			a.Message = []byte{1, 2, 3}
		}
	}
	l.initiate()
	l.net.RunFor(30 * time.Second)
	if n := len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("the gateway kept %d IKE SAs after a malformed backend answer", n)
	}
	if _, err := l.gw.Engine.AnswerEAP(l.net.Now, 99, ike.EAPAnswer{Round: 1, Verdict: ike.EAPAccept}); err == nil {
		t.Fatal("an answer for no SA was taken")
	}
}

// RFC 7791 §8 with EAP: a clone needs no EAP round and no backend; it
// shows the authentication's identity; RADIUS Session-Timeout ends the
// family, clones too, and the Framed-IP-Address is the inner address.
func TestRFC7791CloneOfEAPAuthentication(t *testing.T) {
	b := newEAPBackend(eap.TypeMSCHAPv2)
	framed := netip.MustParseAddr("10.99.0.77")
	b.answer = func(a *ike.EAPAnswer) {
		if a.Verdict == ike.EAPAccept {
			a.SessionTimeout = 10 * time.Minute
			a.VirtualIP = framed
		}
	}
	l := eapLab(t, 126, b, "alice's password", []eap.Type{eap.TypeMSCHAPv2}, func(ue, gw *ike.Connection) {
		ue.Clone, gw.Clone = true, true
	})
	parent := l.up()
	l.settle(time.Second)
	if v := l.sa(l.ue).VirtualIPs; len(v) != 1 || v[0] != framed {
		t.Fatalf("inner address %v, want the backend's %v", v, framed)
	}
	asks := b.asks
	l.clone(l.ue, parent)
	l.settle(time.Second)
	if b.asks != asks {
		t.Fatalf("a clone asked the EAP backend %d more times", b.asks-asks)
	}
	clones := clonesOf(l.ue, parent)
	if len(clones) != 1 || clones[0].EAPIdentity != "alice" {
		t.Fatalf("clones %+v", clones)
	}
	for _, s := range l.gw.Engine.IKESAs() {
		if s.EAPIdentity != "alice" {
			t.Fatalf("gateway SA %d shows EAP identity %q", s.ID, s.EAPIdentity)
		}
	}
	l.net.RunFor(11 * time.Minute)
	if n := len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("the gateway keeps %d IKE SAs after the RADIUS Session-Timeout", n)
	}
}

// A backend that takes the IKE identity as the EAP identity (strongSwan's
// eap-radius default, mifike's remote.eap_id: ike) answers the start
// with a method's Request at once and says which identity it used; the
// SA then shows it, and the Identity round trip is saved.
func TestEAPIdentityFromIKE(t *testing.T) {
	rounds := 0
	l := newLab(t, 127, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.LocalAuth = ike.AuthEAP
		ue.EAP = &eap.PeerConfig{Identity: []byte("alice"), Password: []byte("pw"), Methods: []eap.Type{eap.TypeMD5Challenge}}
		gw.RemoteAuth = ike.AuthEAP
	})
	l.gw.EAP = func(a ike.AskEAP) (ike.EAPAnswer, bool) {
		rounds++
		if a.Message == nil {
			if string(a.PeerIDText) != "ue.example" {
				t.Errorf("PeerIDText %q, want the FQDN's text", a.PeerIDText)
			}
			challenge := append([]byte{1, 7, 0, 0, 4, 16}, make([]byte, 16)...)
			challenge[3] = byte(len(challenge))
			return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPContinue, Message: challenge, Identity: a.PeerIDText}, true
		}
		return ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPAccept, Message: []byte{3, 7, 0, 4}}, true
	}
	l.up()
	l.settle(time.Second)
	if s := l.sa(l.gw); s.EAPIdentity != "ue.example" || s.EAPMethod != "EAP-MD5" {
		t.Fatalf("gateway shows EAP identity %q method %q", s.EAPIdentity, s.EAPMethod)
	}
	if rounds != 2 {
		t.Fatalf("the backend was asked %d times, want 2 (no Identity round)", rounds)
	}
}

// eapTLS gives the backend an EAP-TLS server certificate and returns the
// end user's EAP-TLS credentials (client certificate, the server's CA).
func eapTLS(t *testing.T, b *eapBackend) *eap.PeerConfig {
	pk := newPKI(t)
	srvKey, cliKey := newKey(t, "p256"), newKey(t, "p256")
	srv, cli := pk.issue(t, srvKey, "radius.example", "radius.example"), pk.issue(t, cliKey, "alice")
	b.cert = &tls.Certificate{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey, Leaf: srv}
	b.clientCAs = x509.NewCertPool()
	b.clientCAs.AddCert(pk.ca)
	roots := x509.NewCertPool()
	roots.AddCert(pk.ca)
	return &eap.PeerConfig{Identity: []byte("alice"), Password: []byte("alice's password"),
		Certificate: &tls.Certificate{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey, Leaf: cli},
		RootCAs:     roots, ServerName: "radius.example"}
}

// eapOnlyLab is EAP-only authentication (RFC 5998): both sides of both
// connections are EAP, the gateway has no key or certificate of its own.
func eapOnlyLab(t *testing.T, seed uint64, b *eapBackend, mutate func(ue, gw *ike.Connection)) *lab {
	creds := eapTLS(t, b)
	l := newLab(t, seed, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.LocalAuth, ue.RemoteAuth, ue.EAP = ike.AuthEAP, ike.AuthEAP, creds
		gw.LocalAuth, gw.RemoteAuth, gw.Key, gw.Certs, gw.PSK = ike.AuthEAP, ike.AuthEAP, nil, nil, nil
		if mutate != nil {
			mutate(ue, gw)
		}
	})
	l.gw.EAP = b.ask
	return l
}

// RFC 5998 §2: the end user asks for EAP-only with EAP_ONLY_AUTHENTICATION,
// the gateway (no key, no certificate, no PSK) sends no AUTH until the
// last response, keyed with the EAP-TLS MSK; the SA comes up with its
// Child SA, and a clone of it needs no EAP at all.
func TestRFC5998EAPOnly(t *testing.T) {
	b := newEAPBackend(eap.TypeTLS)
	l := eapOnlyLab(t, 130, b, func(ue, gw *ike.Connection) { ue.Clone, gw.Clone = true, true })
	parent := l.up()
	l.settle(time.Second)
	if n := countNotify(l.gw, wire.NotifyEAPOnlyAuthentication, false); n != 1 {
		t.Fatalf("the gateway saw EAP_ONLY_AUTHENTICATION %d times, want once (first IKE_AUTH request)", n)
	}
	ue, gw := l.sa(l.ue), l.sa(l.gw)
	for _, s := range []ike.IKESAInfo{ue, gw} {
		if s.EAPMethod != "EAP-TLS" || len(s.Children) != 1 {
			t.Fatalf("SA %+v: want EAP-TLS with one Child SA", s)
		}
	}
	asks := b.asks
	l.clone(l.ue, parent)
	l.settle(time.Second)
	if len(clonesOf(l.ue, parent)) != 1 || b.asks != asks {
		t.Fatalf("clone of an EAP-only SA: %d clones, %d more backend rounds", len(clonesOf(l.ue, parent)), b.asks-asks)
	}
}

// RFC 5998 §4: asking for EAP-only, the end user answers no method that
// would give its password to a gateway nobody has authenticated: it Naks
// MSCHAPv2 (offering EAP-TLS) even though it has a password.
func TestRFC5998EAPOnlyNaksUnsafeMethods(t *testing.T) {
	t.Run("then EAP-TLS", func(t *testing.T) {
		b := newEAPBackend(eap.TypeMSCHAPv2, eap.TypeTLS)
		l := eapOnlyLab(t, 131, b, nil)
		l.up()
		l.settle(time.Second)
		if b.responses[eap.TypeMSCHAPv2] != 0 || b.responses[eap.TypeNak] != 1 || l.sa(l.gw).EAPMethod != "EAP-TLS" {
			t.Fatalf("responses %v, method %q: want one Nak, no MSCHAPv2, EAP-TLS", b.responses, l.sa(l.gw).EAPMethod)
		}
	})
	t.Run("nothing else", func(t *testing.T) {
		b := newEAPBackend(eap.TypeMSCHAPv2)
		l := eapOnlyLab(t, 132, b, nil)
		l.initiate()
		l.net.RunFor(30 * time.Second)
		if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 || b.responses[eap.TypeMSCHAPv2] != 0 {
			t.Fatalf("%d IKE SAs left, %d MSCHAPv2 responses", n, b.responses[eap.TypeMSCHAPv2])
		}
	})
}

// The gateway's own checks (RFC 5998 §2, §4): an EAP-only connection is
// for peers that ask for it, and its last AUTH needs a method's MSK.
func TestRFC5998GatewayChecks(t *testing.T) {
	t.Run("peer did not ask", func(t *testing.T) {
		b := newEAPBackend(eap.TypeTLS)
		l := eapOnlyLab(t, 133, b, func(ue, gw *ike.Connection) {
			ue.RemoteAuth, ue.PSK = ike.AuthPSK, []byte("a psk the gateway does not use")
		})
		l.initiate()
		l.net.RunFor(30 * time.Second)
		if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 || b.asks != 0 {
			t.Fatalf("%d IKE SAs left, backend asked %d times", n, b.asks)
		}
		if eventsWith(l.gw, ike.EventIKEFailed, "RFC 5998") == 0 {
			t.Error("the gateway's failure does not say why")
		}
	})
	t.Run("no MSK", func(t *testing.T) {
		b := newEAPBackend(eap.TypeTLS)
		b.answer = func(a *ike.EAPAnswer) {
			if a.Verdict == ike.EAPAccept {
				a.MSK = nil // a RADIUS server that sends no MS-MPPE keys
			}
		}
		l := eapOnlyLab(t, 134, b, nil)
		l.initiate()
		l.net.RunFor(30 * time.Second)
		if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 {
			t.Fatalf("%d IKE SAs left", n)
		}
		if eventsWith(l.gw, ike.EventIKEFailed, "RFC 5998") == 0 {
			t.Error("the gateway's failure does not say why")
		}
	})
}

// An end user that asked for EAP-only refuses a gateway that signs
// anyway: it has nothing to check that AUTH against.
func TestRFC5998InitiatorRefusesAUTH(t *testing.T) {
	b := newEAPBackend(eap.TypeTLS)
	l := eapOnlyLab(t, 135, b, func(ue, gw *ike.Connection) {
		gw.LocalAuth, gw.PSK = ike.AuthPSK, []byte("the gateway's psk")
	})
	l.initiate()
	l.net.RunFor(30 * time.Second)
	if n := len(l.ue.Engine.IKESAs()) + len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("%d IKE SAs left: ue %+v gw %+v", n, l.ue.Engine.IKESAs(), l.gw.Engine.IKESAs())
	}
	if eventsWith(l.ue, ike.EventIKEFailed, "EAP-only") == 0 {
		t.Error("the end user's failure does not name EAP-only")
	}
}

// Configuration: EAP-only needs a safe method the peer can run; a
// responder-only EAP-only connection cannot initiate.
func TestRFC5998Config(t *testing.T) {
	ue, gw := configs(t)
	ue.LocalAuth, ue.RemoteAuth = ike.AuthEAP, ike.AuthEAP
	ue.EAP = &eap.PeerConfig{Identity: []byte("alice"), Password: []byte("pw"), Methods: []eap.Type{eap.TypeMSCHAPv2}}
	if _, err := ike.New(ike.Config{Connections: []*ike.Connection{ue}, Rand: rand.NewChaCha8([32]byte{})}); err == nil || !strings.Contains(err.Error(), "RFC 5998") {
		t.Fatalf("EAP-only with MSCHAPv2 only: %v", err)
	}
	gw.LocalAuth, gw.RemoteAuth, gw.RemoteAddrs = ike.AuthEAP, ike.AuthEAP, []netip.Addr{ueAddr}
	e, err := ike.New(ike.Config{Connections: []*ike.Connection{gw}, Rand: rand.NewChaCha8([32]byte{})})
	if err != nil {
		t.Fatalf("a responder-only EAP-only connection: %v", err)
	}
	if _, _, err := e.Initiate(time.Now(), ike.InitiateOptions{Conn: gw.Name, Local: netip.AddrPortFrom(gwAddr, 500)}); err == nil || !strings.Contains(err.Error(), "only responds") {
		t.Fatalf("initiating on it: %v", err)
	}
}
