package ike_test

import (
	"errors"
	"math/rand/v2"
	"net/netip"
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
}

func newEAPBackend(methods ...eap.Type) *eapBackend {
	return &eapBackend{users: map[string][]byte{"alice": []byte("alice's password")}, methods: methods,
		rng: rand.NewChaCha8([32]byte{1}), servers: map[uint64]*eap.Server{}}
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
		srv, err = eap.NewServer(eap.ServerConfig{Users: b.users, Methods: b.methods, Rand: b.rng, Now: time.Now})
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
