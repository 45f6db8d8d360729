package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ifacerule"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// sent records what a node's engine sends, by transport.
type sent struct {
	udp, tcp []netsim.Msg
	tcpTo    []netip.AddrPort
}

func (s *sent) filter(node *netsim.Node, drop func(d ike.Datagram) bool) netsim.Filter {
	return func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == node && !m.Keepalive {
			if d.TCP {
				s.tcp, s.tcpTo = append(s.tcp, m), append(s.tcpTo, d.Remote)
			} else {
				s.udp = append(s.udp, m)
			}
		}
		if drop != nil && drop(d) {
			return netsim.Drop
		}
		return netsim.Deliver
	}
}

// RFC 9329 §5.1, always: a network known to block UDP gets TCP from the
// first message. Every message both ways goes in the stream to the
// gateway's TCP port, the gateway answers in the transport the request
// came in, and the Child SA's ESP goes in the stream too (§3.2).
func TestRFC9329AlwaysTCP(t *testing.T) {
	l := newLab(t, 901, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.TCP = ike.TCPAlways })
	var ue, gw sent
	blockUDP := func(d ike.Datagram) bool { return !d.TCP }
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue {
			return ue.filter(l.ue, blockUDP)(from, d, m)
		}
		return gw.filter(l.gw, blockUDP)(from, d, m)
	}
	l.up()
	l.settle(2 * time.Minute) // liveness, keepalives if any
	if len(ue.udp) != 0 || len(gw.udp) != 0 {
		t.Fatalf("UDP sent: end user %d, gateway %d messages", len(ue.udp), len(gw.udp))
	}
	for _, to := range ue.tcpTo {
		if to.Port() != ike.DefaultTCPPort {
			t.Fatalf("end user sent to %v, want the TCP port %d", to, ike.DefaultTCPPort)
		}
	}
	s := l.sa(l.ue)
	if !s.TCP || s.Encap || s.Remote.Port() != ike.DefaultTCPPort {
		t.Fatalf("end user's SA: tcp %v encap %v remote %v", s.TCP, s.Encap, s.Remote)
	}
	if g := l.sa(l.gw); !g.TCP {
		t.Fatal("the gateway's SA is not on TCP")
	}
	for _, node := range []*netsim.Node{l.ue, l.gw} {
		for _, c := range node.Children {
			if !c.TCP || c.Encap {
				t.Fatalf("%s: Child SA %08x tcp %v encap %v, want ESP in the stream", node.Name, c.InSPI, c.TCP, c.Encap)
			}
		}
	}
}

// RFC 9329 §5.1, fallback: UDP is blocked; the IKE_SA_INIT goes over
// UDP, is retransmitted at least once, and after TCPFallbackAfter a new
// IKE_SA_INIT, with a new initiator SPI, goes over TCP. The SA keeps its
// id (the user sees one attempt) and comes up.
func TestRFC9329FallbackAfterUDPUnanswered(t *testing.T) {
	l := newLab(t, 902, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.TCP, ue.TCPFallbackAfter = ike.TCPFallback, 5*time.Second
	})
	var ue sent
	filter := ue.filter(l.ue, func(d ike.Datagram) bool { return !d.TCP })
	start := l.net.Now
	var udpAt []time.Time
	var tcpAt time.Time
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && m.Exchange == uint8(wire.IKESAInit) && !m.Response {
			if d.TCP && tcpAt.IsZero() {
				tcpAt = l.net.Now
			} else if !d.TCP {
				udpAt = append(udpAt, l.net.Now)
			}
		}
		return filter(from, d, m)
	}
	id := l.up()
	s := l.sa(l.ue)
	if s.ID != id || !s.TCP {
		t.Fatalf("SA %d (tcp %v) up, want SA %d over TCP", s.ID, s.TCP, id)
	}
	var udpInit []netsim.Msg
	for _, m := range ue.udp {
		if m.Exchange == uint8(wire.IKESAInit) {
			udpInit = append(udpInit, m)
		}
	}
	if len(udpInit) < 2 {
		t.Fatalf("%d IKE_SA_INIT over UDP before TCP, want a retransmission at least (§5.1)", len(udpInit))
	}
	if ue.tcp[0].Exchange != uint8(wire.IKESAInit) || ue.tcp[0].SPIi == udpInit[0].SPIi || s.SPIi != ue.tcp[0].SPIi {
		t.Fatalf("first TCP message %+v, UDP SPI %016x, SA SPI %016x: want IKE_SA_INIT with a new SPI", ue.tcp[0], udpInit[0].SPIi, s.SPIi)
	}
	if n := l.ue.Engine.Stats().TCPFallbacks; n != 1 {
		t.Fatalf("%d fallbacks counted", n)
	}
	// TCP as soon as the fallback time has passed and the one UDP
	// retransmission had a moment: not at the next retransmission.
	if len(udpAt) != 2 {
		t.Fatalf("IKE_SA_INIT sent %d times over UDP at %v, want once and one retransmission", len(udpAt), udpAt)
	}
	want := start.Add(5 * time.Second)
	if g := udpAt[1].Add(time.Second); g.After(want) {
		want = g
	}
	if d := tcpAt.Sub(want); d < 0 || d > 100*time.Millisecond {
		t.Fatalf("TCP after %v (UDP retransmitted after %v), want %v", tcpAt.Sub(start), udpAt[1].Sub(start), want.Sub(start))
	}
	l.settle(time.Minute)
}

// TCPNever (the default) never opens a stream, whatever UDP does.
func TestRFC9329NeverMeansUDPOnly(t *testing.T) {
	l := newLab(t, 903, nil)
	var ue sent
	l.net.Filter = ue.filter(l.ue, func(d ike.Datagram) bool { return true })
	l.initiate()
	l.net.RunFor(3 * time.Minute)
	if len(ue.tcp) != 0 || len(ue.udp) == 0 {
		t.Fatalf("%d TCP and %d UDP messages sent", len(ue.tcp), len(ue.udp))
	}
}

// RFC 9329 §7.1: a MOBIKE initiator that moves tries UPDATE_SA_ADDRESSES
// over UDP first; unanswered, the same exchange (same Message ID) goes
// on over TCP, and the Child SAs follow into the stream. The gateway
// moves the SA to the stream, without a return routability check.
func TestRFC9329MoveFallsBackToTCP(t *testing.T) {
	l := newLab(t, 904, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.TCP, ue.TCPFallbackAfter = ike.TCPFallback, 5*time.Second
		gw.ReturnRoutability = true
	})
	l.twoAddrs()
	id := l.up()
	if l.sa(l.ue).TCP {
		t.Fatal("on TCP before UDP was blocked")
	}
	l.settle(time.Second)
	var ue sent
	l.net.Filter = ue.filter(l.ue, func(d ike.Datagram) bool { return !d.TCP && d.Local.Addr() == ue2Addr })
	l.move(l.ue, id, ue2Addr)
	l.net.RunUntil(time.Minute, func() bool { return l.sa(l.gw).TCP && l.sa(l.gw).Remote.Addr() == ue2Addr })
	l.settle(10 * time.Second)
	var udpUpd, tcpUpd []netsim.Msg
	for _, m := range ue.udp {
		if m.Exchange == uint8(wire.Informational) && !m.Response {
			udpUpd = append(udpUpd, m)
		}
	}
	for _, m := range ue.tcp {
		if m.Exchange == uint8(wire.Informational) && !m.Response {
			tcpUpd = append(tcpUpd, m)
		}
	}
	if len(udpUpd) < 2 || len(tcpUpd) == 0 || tcpUpd[0].MessageID != udpUpd[0].MessageID {
		t.Fatalf("UPDATE over UDP %+v, then over TCP %+v: want UDP tried first, then the same Message ID over TCP", udpUpd, tcpUpd)
	}
	g := l.sa(l.gw)
	if !g.TCP || g.Remote.Addr() != ue2Addr {
		t.Fatalf("gateway's SA: tcp %v remote %v", g.TCP, g.Remote)
	}
	for _, node := range []*netsim.Node{l.ue, l.gw} {
		for _, c := range node.Children {
			if !c.TCP {
				t.Fatalf("%s: Child SA %08x not in the stream", node.Name, c.InSPI)
			}
		}
	}
	if n := countNotify(l.gw, wire.NotifyCookie2, true); n > 1 {
		t.Fatalf("gateway sent COOKIE2 %d times: a return routability check over TCP (§7.1 says not)", n)
	}
}

// RFC 9329 §6.1: the TCP Responder sends on the stream it last received
// an authentic message on. Through a NAT that gives the end user's new
// stream another port, the gateway's own requests (liveness, rekeys)
// follow to that port.
func TestRFC9329ResponderFollowsTheNewStream(t *testing.T) {
	l := newLab(t, 905, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.TCP = ike.TCPAlways })
	// A NAT maps the end user's stream to port 40000, and after a
	// rebinding (a new stream) to 40001; the old mapping is gone.
	port := uint16(40000)
	l.net.NAT = func(d ike.Datagram) ike.Datagram {
		switch {
		case d.Remote.Addr() == ueAddr:
			d.Remote = netip.AddrPortFrom(ueAddr, port)
		case d.Local.Addr() == ueAddr:
			d.Local = netip.AddrPortFrom(ueAddr, 500)
		}
		return d
	}
	var toOld int
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.gw && d.Remote.Port() != port {
			toOld++
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.up()
	if r := l.sa(l.gw).Remote; r.Port() != 40000 {
		t.Fatalf("gateway sends to %v", r)
	}
	port = 40001
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, l.sa(l.ue).ID) })
	l.net.RunFor(time.Second)
	if r := l.sa(l.gw).Remote; r.Port() != 40001 {
		t.Fatalf("after the end user's message on the new stream the gateway still sends to %v", r)
	}
	for _, c := range l.gw.Children {
		if c.Remote.Port() != 40001 {
			t.Fatalf("the gateway's Child SA %08x still sends to %v", c.InSPI, c.Remote)
		}
	}
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, l.sa(l.gw).ID) })
	l.settle(10 * time.Second)
	if toOld != 0 {
		t.Fatalf("the gateway sent %d messages to the old stream", toOld)
	}
}

// RFC 9329 §6.1, §6.2: when the Originator's stream breaks, it opens a
// new one at once and sends on it (here an empty INFORMATIONAL), and
// the SAs stay.
func TestRFC9329StreamLostIsReopened(t *testing.T) {
	l := newLab(t, 906, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.TCP = ike.TCPAlways })
	l.up()
	s := l.sa(l.ue)
	var ue sent
	l.net.Filter = ue.filter(l.ue, nil)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.StreamClosed(now, s.Local, s.Remote), nil
	})
	if len(ue.tcp) != 1 || ue.tcp[0].Exchange != uint8(wire.Informational) {
		t.Fatalf("after the stream closed the end user sent %+v, want one INFORMATIONAL", ue.tcp)
	}
	// Again at once: not in a loop (the stream may fail to open).
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.StreamClosed(now, s.Local, s.Remote), nil
	})
	if len(ue.tcp) != 1 {
		t.Fatalf("a second close within the retransmission timeout sent again: %+v", ue.tcp)
	}
	l.settle(10 * time.Second)
	if got := l.sa(l.ue); got.ID != s.ID || len(got.Children) != len(s.Children) {
		t.Fatalf("SA after the stream loss: %+v", got)
	}
	// The gateway does not open streams: a close on its side sends
	// nothing.
	g := l.sa(l.gw)
	var gw sent
	l.net.Filter = gw.filter(l.gw, nil)
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.StreamClosed(now, g.Local, g.Remote), nil
	})
	if len(gw.tcp)+len(gw.udp) != 0 {
		t.Fatalf("the TCP Responder sent after its stream closed: %+v %+v", gw.tcp, gw.udp)
	}
}

// RFC 9329 §7.1, §6.1: the Originator closes the stream it moved off
// once the move is confirmed, and the stream of an SA it deleted; not a
// stream another SA still uses (a clone not yet moved, a rekeyed SA's
// successor).
func TestRFC9329OriginatorClosesUnusedStreams(t *testing.T) {
	l := newLab(t, 907, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.TCP, gw.TCP = ike.TCPAlways, ike.TCPAlways
	})
	l.twoAddrs()
	var closes []ike.CloseStream
	l.ue.OnAction = func(a ike.Action) {
		if c, ok := a.(ike.CloseStream); ok {
			closes = append(closes, c)
		}
	}
	id := l.up()
	old := l.sa(l.ue)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, id, 0) })
	l.settle(5 * time.Second)
	if len(closes) != 0 {
		t.Fatalf("the IKE SA rekey closed %+v: its successor uses the stream", closes)
	}
	cur := l.sa(l.ue)
	l.move(l.ue, cur.ID, ue2Addr)
	l.settle(5 * time.Second)
	if len(closes) != 1 || closes[0].Local.Addr() != ueAddr || closes[0].Remote != old.Remote {
		t.Fatalf("after the move: closed %+v, want the stream from %v to %v", closes, ueAddr, old.Remote)
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, cur.ID, 0) })
	l.settle(5 * time.Second)
	if len(closes) != 2 || closes[1].Local.Addr() != ue2Addr {
		t.Fatalf("after the delete: closed %+v, want the stream from %v too", closes, ue2Addr)
	}
}

// Issue 17's per-interface policy: the connection uses UDP, but SAs
// pinned to a cellular interface (lte*) use TCP. A VPN moved there goes
// in TCP, and back to UDP when it moves away.
func TestRFC9329PolicyPerInterface(t *testing.T) {
	l := newLab(t, 913, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.TCPIfaces = ifacerule.Rules[ike.TCPPolicy]{{Pattern: "lte*", Value: ike.TCPAlways}}
	})
	l.ue.AddInterface("lte0", ue2Addr)
	l.ue.Do(func(now time.Time) []ike.Action {
		return l.ue.Engine.SetLocalAddresses(now, []netip.Addr{ueAddr, ue2Addr})
	})
	id := l.up()
	if l.sa(l.ue).TCP {
		t.Fatal("on TCP before any move")
	}
	check := func(where string, tcp bool, local netip.Addr) {
		t.Helper()
		ue, gw := l.sa(l.ue), l.sa(l.gw)
		if ue.TCP != tcp || gw.TCP != tcp || ue.Local.Addr() != local {
			t.Fatalf("%s: end user tcp %v on %v, gateway tcp %v; want tcp %v on %v", where, ue.TCP, ue.Local, gw.TCP, tcp, local)
		}
		for _, node := range []*netsim.Node{l.ue, l.gw} {
			for _, c := range node.Children {
				if c.TCP != tcp {
					t.Fatalf("%s: %s's Child SA %08x tcp %v", where, node.Name, c.InSPI, c.TCP)
				}
			}
		}
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Move(now, id, ue2Addr, netip.Addr{}, "lte0")
	})
	l.settle(5 * time.Second)
	check("on lte0", true, ue2Addr)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.Move(now, id, ueAddr, netip.Addr{}, "")
	})
	l.settle(5 * time.Second)
	check("back off lte0", false, ueAddr)
}

// RFC 9329 §6.5: the stream's port is the kernel's choice, known once it
// is open (StreamOpened). The TCP Originator's SAs on that stream take it
// as their local port, Child SAs included; a stream to another peer, or
// one the peer opened, changes nothing.
func TestRFC9329StreamPortLearned(t *testing.T) {
	l := newLab(t, 914, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.TCP = ike.TCPAlways })
	l.up()
	s := l.sa(l.ue)
	if s.Local.Port() != 500 {
		t.Fatalf("before the stream's port is known: %v", s.Local)
	}
	port := netip.AddrPortFrom(s.Local.Addr(), 41234)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.StreamOpened(now, port, netip.MustParseAddrPort("203.0.113.1:4500")), nil // another peer
	})
	if got := l.sa(l.ue).Local; got != s.Local {
		t.Fatalf("a stream to another peer changed the SA's address to %v", got)
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.StreamOpened(now, port, s.Remote), nil
	})
	if got := l.sa(l.ue).Local; got != port {
		t.Fatalf("the SA's address is %v, want the stream's %v", got, port)
	}
	for _, c := range l.ue.Children {
		if c.Local != port {
			t.Fatalf("Child SA %08x on %v", c.InSPI, c.Local)
		}
	}
	g := l.sa(l.gw)
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		return e.StreamOpened(now, netip.AddrPortFrom(g.Local.Addr(), 4600), g.Remote), nil
	})
	if got := l.sa(l.gw).Local; got != g.Local {
		t.Fatalf("the TCP Responder's SA moved to %v", got)
	}
}
