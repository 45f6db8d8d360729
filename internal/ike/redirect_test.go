package ike_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

var gw3Addr = netip.MustParseAddr("198.51.100.3") // gw2Addr is mobike_test.go's

// redirectLab is the usual lab plus more gateways with the gateway's
// configuration, each at its own address.
type redirectLab struct {
	*lab
	gwConfig ike.Config
	gwConn   *ike.Connection
}

func newRedirectLab(t *testing.T, seed uint64, mutate func(ue, gw *ike.Connection, uec, gwc *ike.Config)) *redirectLab {
	t.Helper()
	rl := &redirectLab{}
	rl.lab = newLab(t, seed, func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
		if mutate != nil {
			mutate(ue, gw, uec, gwc)
		}
		c := *gw
		c.RedirectTo = netip.Addr{} // the others serve unless told
		rl.gwConn = &c
		rl.gwConfig = *gwc
	})
	return rl
}

func (rl *redirectLab) addGateway(name string, addr netip.Addr) *netsim.Node {
	rl.t.Helper()
	c := *rl.gwConn
	cfg := rl.gwConfig
	cfg.Connections = []*ike.Connection{&c}
	n, err := rl.net.AddNode(name, cfg, addr)
	if err != nil {
		rl.t.Fatal(err)
	}
	return n
}

// upAt runs until the end user and node have an established IKE SA
// with Child SAs, and returns the end user's.
func (rl *redirectLab) upAt(node *netsim.Node) ike.IKESAInfo {
	rl.t.Helper()
	if !rl.net.RunUntil(time.Minute, func() bool {
		return len(rl.ue.Established()) == 1 && len(node.Established()) == 1 && len(rl.ue.Children) > 0 && len(node.Children) > 0
	}) {
		rl.t.Fatalf("no SA at %s: ue %+v, %s %+v", node.Name, rl.ue.Engine.IKESAs(), node.Name, node.Engine.IKESAs())
	}
	if err := netsim.CheckConsistent(rl.ue, node); err != nil {
		rl.t.Fatalf("end user and %s disagree: %v", node.Name, err)
	}
	return rl.sa(rl.ue)
}

// RFC 5685 §3 with the connection's static gateway: the first gateway
// answers REDIRECT with the end user's Ni and keeps nothing; the end
// user starts over with the second, sending REDIRECTED_FROM (the first
// gateway) and REDIRECT_SUPPORTED, and its SA ends there, with its
// Child SA, under the id Initiate returned.
func TestRFC5685Section3RedirectAtInit(t *testing.T) {
	rl := newRedirectLab(t, 71, func(_, gw *ike.Connection, _, _ *ike.Config) { gw.RedirectTo = gw2Addr })
	gw2 := rl.addGateway("gw2", gw2Addr)
	var fromSeen []netip.Addr
	gw2.Engine.SetRedirector(func(q ike.RedirectQuery) (netip.Addr, bool) {
		fromSeen = append(fromSeen, q.RedirectedFrom)
		return netip.Addr{}, false
	})
	var redirectData []byte
	var ni []byte
	supportedTo := map[netip.Addr]int{}
	rl.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if msg, err := wire.ParseMessage(d.Data); err == nil && m.Exchange == uint8(wire.IKESAInit) {
			for _, p := range msg.Payloads {
				switch p := p.(type) {
				case *wire.Notify:
					if p.NotifyType == wire.NotifyRedirectSupported && from == rl.ue {
						supportedTo[d.Remote.Addr()]++
					}
					if p.NotifyType == wire.NotifyRedirect {
						redirectData = bytes.Clone(p.Data)
						if msg.SPIr != 0 || len(msg.Payloads) != 1 {
							t.Errorf("REDIRECT response %v: want responder SPI zero and the notify alone (§3)", msg)
						}
					}
				case *wire.Nonce:
					if from == rl.ue && ni == nil {
						ni = bytes.Clone(p.Data)
					}
				}
			}
		}
		return netsim.Deliver
	}
	id := rl.initiate()
	sa := rl.upAt(gw2)
	if sa.ID != id || sa.Remote.Addr() != gw2Addr {
		t.Fatalf("end user's SA %d at %v, want SA %d at %v", sa.ID, sa.Remote, id, gw2Addr)
	}
	if r, err := wire.ParseRedirect(redirectData); err != nil || r.GW != gw2Addr || !bytes.Equal(r.Nonce, ni) {
		t.Fatalf("REDIRECT data %x (%+v, %v): want gw2 and the first Ni %x (§9.2)", redirectData, r, err, ni)
	}
	if got := rl.gw.Engine.IKESAs(); len(got) != 0 {
		t.Fatalf("the redirecting gateway keeps state: %+v", got)
	}
	if s := rl.gw.Engine.Stats(); s.Redirects != 1 || s.NotifiesSent[wire.NotifyRedirect] != 1 {
		t.Fatalf("gateway stats: %d redirects, %d REDIRECT sent", s.Redirects, s.NotifiesSent[wire.NotifyRedirect])
	}
	if len(fromSeen) != 1 || fromSeen[0] != gwAddr {
		t.Fatalf("gw2 saw REDIRECTED_FROM %v, want [%v] (§9.3)", fromSeen, gwAddr)
	}
	if supportedTo[gwAddr] != 1 || supportedTo[gw2Addr] != 1 {
		t.Fatalf("REDIRECT_SUPPORTED sent %v, want once to each gateway", supportedTo)
	}
	ev := rl.ue.EventsOf(ike.EventRedirected)
	if len(ev) != 1 || !strings.HasPrefix(ev[0].Detail, "to "+gw2Addr.String()) || ev[0].IKESA != id {
		t.Fatalf("end user's redirect events: %+v", ev)
	}
	if n := len(rl.ue.EventsOf(ike.EventIKEFailed)); n != 0 {
		t.Fatalf("%d failures", n)
	}
}

// §3 with the engine's Redirector (as a cluster decides): it sees the
// connection, the peer, its support; the second gateway's Redirector
// would send the peer back where it came from, and the engine refuses
// that loop and serves it (§7).
func TestRFC5685Section3RedirectorNoLoopBack(t *testing.T) {
	rl := newRedirectLab(t, 72, nil)
	gw2 := rl.addGateway("gw2", gw2Addr)
	var q1 []ike.RedirectQuery
	rl.gw.Engine.SetRedirector(func(q ike.RedirectQuery) (netip.Addr, bool) {
		q1 = append(q1, q)
		return gw2Addr, true
	})
	gw2.Engine.SetRedirector(func(q ike.RedirectQuery) (netip.Addr, bool) { return gwAddr, true })
	rl.initiate()
	sa := rl.upAt(gw2)
	if sa.Remote.Addr() != gw2Addr {
		t.Fatalf("SA at %v", sa.Remote)
	}
	if len(q1) != 1 || q1[0].Conn != "rw" || !q1[0].Supported || q1[0].Remote.Addr() != ueAddr || q1[0].Local.Addr() != gwAddr || q1[0].RedirectedFrom.IsValid() {
		t.Fatalf("queries at the first gateway: %+v", q1)
	}
	if n := countNotify(gw2, wire.NotifyRedirect, true); n != 0 {
		t.Fatalf("gw2 redirected the peer back %d times", n)
	}
	if len(rl.ue.EventsOf(ike.EventRedirected)) != 1 {
		t.Fatalf("redirects: %+v", rl.ue.EventsOf(ike.EventRedirected))
	}
}

// §3: "If the IKE_SA_INIT request did not indicate support for the
// redirect mechanism, the responder MUST NOT send the REDIRECT payload":
// the gateway serves an end user that does not take redirects.
func TestRFC5685Section3NoRedirectWithoutSupport(t *testing.T) {
	var queries []ike.RedirectQuery
	rl := newRedirectLab(t, 73, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.NoRedirect = true
		gw.RedirectTo = gw2Addr
	})
	rl.gw.Engine.SetRedirector(func(q ike.RedirectQuery) (netip.Addr, bool) {
		queries = append(queries, q)
		return gw2Addr, true
	})
	rl.addGateway("gw2", gw2Addr)
	rl.initiate()
	sa := rl.upAt(rl.gw)
	if sa.Remote.Addr() != gwAddr {
		t.Fatalf("SA at %v", sa.Remote)
	}
	if countNotify(rl.gw, wire.NotifyRedirect, true) != 0 || countNotify(rl.gw, wire.NotifyRedirectSupported, false) != 0 {
		t.Fatal("REDIRECT sent, or REDIRECT_SUPPORTED though the end user does not take redirects")
	}
	if len(queries) != 1 || queries[0].Supported {
		t.Fatalf("queries: %+v", queries)
	}
	// Nor in an established SA (§5 is one of "all REDIRECT scenarios").
	gw := rl.sa(rl.gw)
	var err error
	rl.gw.Do(func(now time.Time) []ike.Action {
		var acts []ike.Action
		acts, err = rl.gw.Engine.Redirect(now, gw.ID, gw2Addr)
		return acts
	})
	if err == nil || !strings.Contains(err.Error(), "REDIRECT_SUPPORTED") {
		t.Fatalf("Redirect of a peer without support: %v", err)
	}
}

// §7: gateways that redirect in a circle (gw → gw2 → gw3 → gw ...,
// each REDIRECTED_FROM the one before, so no gateway sees its loop) get
// at most MAX_REDIRECTS (5) followed; the attempt then fails, saying why.
func TestRFC5685Section7RedirectLoopCap(t *testing.T) {
	rl := newRedirectLab(t, 74, nil)
	gw2 := rl.addGateway("gw2", gw2Addr)
	gw3 := rl.addGateway("gw3", gw3Addr)
	next := map[*netsim.Node]netip.Addr{rl.gw: gw2Addr, gw2: gw3Addr, gw3: gwAddr}
	for n, to := range next {
		n.Engine.SetRedirector(func(ike.RedirectQuery) (netip.Addr, bool) { return to, true })
	}
	id := rl.initiate()
	rl.net.RunFor(30 * time.Second)
	if ev := rl.ue.EventsOf(ike.EventRedirected); len(ev) != 5 {
		t.Fatalf("%d redirects followed, want 5: %+v", len(ev), ev)
	}
	failed := rl.ue.EventsOf(ike.EventIKEFailed)
	if len(failed) != 1 || failed[0].IKESA != id || !strings.Contains(failed[0].Detail, "RFC 5685 §7") {
		t.Fatalf("failure events: %+v", failed)
	}
	if got := rl.ue.Engine.IKESAs(); len(got) != 0 {
		t.Fatalf("end user keeps %+v", got)
	}
	for _, n := range []*netsim.Node{rl.gw, gw2, gw3} {
		if got := n.Engine.IKESAs(); len(got) != 0 {
			t.Fatalf("%s keeps %+v", n.Name, got)
		}
	}
}

// §3 and §9.2: a REDIRECT response is unauthenticated. One whose nonce
// data is not our Ni is silently discarded and we keep waiting (here the
// real gateway's answer comes and the SA is made with it); malformed
// ones, hostile GW identities included, are discarded the same way,
// without a panic.
func TestRFC5685Section3ForgedRedirectDropped(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:203.0.113.9").As16()
	forged := map[string]func(ni []byte) []byte{
		"nonce mismatch": func(ni []byte) []byte {
			other := bytes.Clone(ni)
			other[0] ^= 1
			b, _ := wire.MarshalRedirect(gw3Addr, other)
			return b
		},
		"no nonce":          func([]byte) []byte { b, _ := wire.MarshalRedirect(gw3Addr, nil); return b },
		"short nonce":       func(ni []byte) []byte { return append([]byte{1, 4, 203, 0, 113, 9}, ni[:8]...) },
		"empty":             func([]byte) []byte { return nil },
		"GW Ident Len long": func(ni []byte) []byte { return append([]byte{1, 200, 203, 0, 113, 9}, ni...) },
		"IPv6 of 4 octets":  func(ni []byte) []byte { return append([]byte{2, 4, 203, 0, 113, 9}, ni...) },
		"IPv4-mapped IPv6":  func(ni []byte) []byte { return append(append([]byte{2, 16}, mapped[:]...), ni...) },
		"unknown type":      func(ni []byte) []byte { return append([]byte{7, 4, 203, 0, 113, 9}, ni...) },
		"type only":         func([]byte) []byte { return []byte{1} },
	}
	for name, data := range forged {
		t.Run(name, func(t *testing.T) {
			rl := newRedirectLab(t, 75, nil)
			var req *wire.Message
			rl.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
				if from == rl.ue && req == nil && m.Exchange == uint8(wire.IKESAInit) {
					req, _ = wire.ParseMessage(bytes.Clone(d.Data))
				}
				return netsim.Deliver
			}
			id := rl.initiate()
			nonce, _ := wire.First[*wire.Nonce](req.Payloads)
			resp := &wire.Message{Header: wire.Header{SPIi: req.SPIi, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagResponse},
				Payloads: []wire.Payload{wire.NewNotify(wire.NotifyRedirect, data(nonce.Data))}}
			b, err := resp.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			// The forgery arrives before the gateway's answer.
			rl.ue.Do(func(now time.Time) []ike.Action {
				return rl.ue.Engine.Receive(now, ike.Datagram{Local: netip.AddrPortFrom(ueAddr, 500), Remote: netip.AddrPortFrom(gwAddr, 500), Data: b})
			})
			if got := rl.ue.Engine.Stats().DroppedBy[ike.DropRedirect]; got != 1 {
				t.Fatalf("forged REDIRECT not dropped as such (%d)", got)
			}
			sa := rl.upAt(rl.gw)
			if sa.ID != id || sa.Remote.Addr() != gwAddr || len(rl.ue.EventsOf(ike.EventRedirected)) != 0 {
				t.Fatalf("SA %+v, redirects %+v", sa, rl.ue.EventsOf(ike.EventRedirected))
			}
		})
	}
}

// §3: a REDIRECT with our Ni that cannot be followed (a name, which the
// engine does not resolve; the gateway's own address, a loop) ends the
// attempt with a reason rather than leaving it to time out.
func TestRFC5685Section3UnfollowableRedirect(t *testing.T) {
	for name, tc := range map[string]struct {
		r    func(ni []byte) wire.Redirect
		want string
	}{
		"FQDN":    {func(ni []byte) wire.Redirect { return wire.Redirect{FQDN: "gw2.example", Nonce: ni} }, "names are not resolved"},
		"itself":  {func(ni []byte) wire.Redirect { return wire.Redirect{GW: gwAddr, Nonce: ni} }, "loop"},
		"unicast": {func(ni []byte) wire.Redirect { return wire.Redirect{GW: netip.MustParseAddr("224.0.0.1"), Nonce: ni} }, "no unicast"},
	} {
		t.Run(name, func(t *testing.T) {
			rl := newRedirectLab(t, 76, nil)
			rl.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
				if from != rl.ue || m.Exchange != uint8(wire.IKESAInit) {
					return netsim.Deliver
				}
				req, _ := wire.ParseMessage(bytes.Clone(d.Data))
				nonce, _ := wire.First[*wire.Nonce](req.Payloads)
				data, err := tc.r(nonce.Data).Marshal()
				if err != nil {
					t.Fatal(err)
				}
				resp := &wire.Message{Header: wire.Header{SPIi: req.SPIi, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagResponse},
					Payloads: []wire.Payload{wire.NewNotify(wire.NotifyRedirect, data)}}
				b, _ := resp.Marshal()
				rl.net.Filter = nil
				rl.ue.Do(func(now time.Time) []ike.Action {
					return rl.ue.Engine.Receive(now, ike.Datagram{Local: d.Local, Remote: d.Remote, Data: b})
				})
				return netsim.Drop
			}
			rl.initiate()
			rl.net.RunFor(time.Second)
			failed := rl.ue.EventsOf(ike.EventIKEFailed)
			if len(failed) != 1 || !strings.Contains(failed[0].Detail, tc.want) {
				t.Fatalf("failures %+v, want one saying %q", failed, tc.want)
			}
		})
	}
}

// §5: the gateway redirects an established SA with an INFORMATIONAL
// REDIRECT (no nonce data); the end user acknowledges, sets up a new IKE
// SA with the new gateway (REDIRECTED_FROM the old one) and then deletes
// the old SA: make-before-break, the Child SA moves with it.
func TestRFC5685Section5GatewayInitiatedRedirect(t *testing.T) {
	rl := newRedirectLab(t, 77, nil)
	gw2 := rl.addGateway("gw2", gw2Addr)
	var fromSeen []netip.Addr
	gw2.Engine.SetRedirector(func(q ike.RedirectQuery) (netip.Addr, bool) {
		fromSeen = append(fromSeen, q.RedirectedFrom)
		return netip.Addr{}, false
	})
	rl.up()
	rl.settle(time.Second)
	old := rl.sa(rl.ue)
	var info []byte
	rl.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == rl.gw && m.Exchange == uint8(wire.Informational) && !m.Response && info == nil {
			info = bytes.Clone(d.Data)
		}
		return netsim.Deliver
	}
	gwSA := rl.sa(rl.gw)
	rl.do(rl.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Redirect(now, gwSA.ID, gw2Addr) })
	if !rl.net.RunUntil(time.Minute, func() bool {
		return len(rl.gw.Engine.IKESAs()) == 0 && len(gw2.Established()) == 1 && len(rl.ue.Established()) == 1
	}) {
		t.Fatalf("ue %+v gw %+v gw2 %+v", rl.ue.Engine.IKESAs(), rl.gw.Engine.IKESAs(), gw2.Engine.IKESAs())
	}
	rl.net.Filter = nil
	sa := rl.upAt(gw2)
	if sa.Remote.Addr() != gw2Addr || sa.ID == old.ID {
		t.Fatalf("end user's SA %+v", sa)
	}
	if len(fromSeen) != 1 || fromSeen[0] != gwAddr {
		t.Fatalf("gw2 saw REDIRECTED_FROM %v", fromSeen)
	}
	if info == nil || countNotify(rl.ue, wire.NotifyRedirect, false) != 1 {
		t.Fatal("no INFORMATIONAL with REDIRECT reached the end user")
	}
	if s := rl.gw.Engine.Stats(); s.Redirects != 1 {
		t.Fatalf("gateway counted %d redirects", s.Redirects)
	}
	ev := rl.ue.EventsOf(ike.EventRedirected)
	if len(ev) != 1 || ev[0].IKESA != old.ID || !strings.HasPrefix(ev[0].Detail, "to "+gw2Addr.String()) {
		t.Fatalf("end user's redirect events %+v", ev)
	}
	for _, k := range []ike.EventKind{ike.EventIKEFailed, ike.EventChildFailed} {
		if n := len(rl.ue.EventsOf(k)); n != 0 {
			t.Fatalf("%d %v events", n, k)
		}
	}
}

// §3 when the new gateway is reached from another local address: the
// engine asks the driver's route lookup (Config.SourceAddr) and starts
// over from the address it names.
func TestRFC5685Section3RedirectFromAnotherSource(t *testing.T) {
	ueOther := netip.MustParseAddr("203.0.113.77")
	var asked []netip.Addr
	rl := newRedirectLab(t, 78, func(_, gw *ike.Connection, uec, _ *ike.Config) {
		gw.RedirectTo = gw2Addr
		uec.SourceAddr = func(remote netip.Addr) (netip.Addr, error) {
			asked = append(asked, remote)
			return ueOther, nil
		}
	})
	rl.ue.AddAddr(ueOther)
	gw2 := rl.addGateway("gw2", gw2Addr)
	rl.initiate()
	sa := rl.upAt(gw2)
	if sa.Local.Addr() != ueOther || sa.Remote.Addr() != gw2Addr {
		t.Fatalf("SA %v -> %v, want %v -> %v", sa.Local, sa.Remote, ueOther, gw2Addr)
	}
	if len(asked) != 1 || asked[0] != gw2Addr {
		t.Fatalf("route lookups %v", asked)
	}
}
