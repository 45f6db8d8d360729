package e2e

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
)

// tcpLab is lab() with UDP to and from the gateway blocked on the end
// user's wwan0 (a carrier that passes only TCP) before the daemons
// start: the gateway accepts TCP on 4500, the end user falls back to it
// after 2 s without an answer over UDP (RFC 9329 §5.1, §7.1).
func tcpLab(t *testing.T) (*demo.Topology, *demo.Daemon, *demo.Daemon) {
	t.Helper()
	return startLab(t, "mfkt", demo.Options{GatewayTCP: true, KeyLog: true,
		UE: demo.Settings{Conn: []string{"tcp: fallback", "tcp_fallback_after: 2s"}}},
		func(ctx context.Context, top *demo.Topology) error { return top.BlockUDP(ctx, "wwan0", true) })
}

// gatewaySA is the gateway's side of the end user's IKE SA s.
func gatewaySA(t *testing.T, gw *demo.Daemon, s control.SA) control.SA {
	t.Helper()
	for _, g := range sas(t, gw) {
		if g.SPIi == s.SPIi && g.SPIr == s.SPIr {
			return g
		}
	}
	t.Fatalf("the gateway has no SA %s/%s:\n%s", s.SPIi, s.SPIr, gw.Table(context.Background()))
	return control.SA{}
}

// RFC 9329 per interface: with UDP blocked on wwan0 only, wwan0's VPN
// comes up in TCP (the gateway's side too, ESP included: the pings go
// through it) while eth0's and wlan0's stay on UDP; the end user still
// authenticates once. A TCP connection through wwan0's VPN survives the
// VPN's move to another interface (back to UDP there, §7.1) and back to
// wwan0 (TCP again).
func TestTCPEncapsulationOnOneInterface(t *testing.T) {
	top, ue, gw := tcpLab(t)
	capture := startLinkCapture(t, top, "wwan0", "tcp port 4500")
	v := waitVPNs(t, ue, all3, 40*time.Second)
	for _, dev := range all3 {
		s := v[dev]
		if want := dev == "wwan0"; s.TCP != want || gatewaySA(t, gw, s).TCP != want {
			t.Fatalf("%s's VPN: tcp %v, the gateway's %v; want %v:\n%s", dev, s.TCP, gatewaySA(t, gw, s).TCP, want, ue.Table(context.Background()))
		}
		pingThrough(t, top, ue, s)
	}
	if n := strings.Count(gw.Log(), "received IKE_AUTH request"); n != 1 {
		t.Fatalf("the gateway saw %d IKE_AUTH requests; the end user must authenticate once", n)
	}
	t.Logf("end user:\n%s", ue.Table(context.Background()))

	wwan := v["wwan0"]
	stream, err := top.StartStream(netipMust(wwan.VirtualIPs[0]))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := top.SetLink("wwan0", false); err != nil {
		t.Fatal(err)
	}
	var moved control.SA
	if !demo.WaitFor(20*time.Second, func() bool {
		for _, s := range sas(t, ue) {
			if s.ID == wwan.ID && demo.IfaceOf(s) != "wwan0" && !s.TCP {
				moved = s
				return true
			}
		}
		return false
	}) {
		t.Fatalf("wwan0's VPN did not move to UDP elsewhere:\n%s", ue.Table(context.Background()))
	}
	pingThrough(t, top, ue, moved)
	if g := gatewaySA(t, gw, moved); g.TCP {
		t.Fatalf("the gateway's side of the moved VPN is still on TCP")
	}
	time.Sleep(500 * time.Millisecond)
	if err := top.SetLink("wwan0", true); err != nil {
		t.Fatal(err)
	}
	var back control.SA
	if !demo.WaitFor(30*time.Second, func() bool {
		for _, s := range sas(t, ue) {
			if s.ID == wwan.ID && demo.IfaceOf(s) == "wwan0" && s.TCP {
				back = s
				return true
			}
		}
		return false
	}) {
		t.Fatalf("wwan0's VPN did not come back to wwan0 in TCP:\n%s", ue.Table(context.Background()))
	}
	pingThrough(t, top, ue, back)
	time.Sleep(500 * time.Millisecond)
	sent, received, err := stream.Stop()
	if err != nil || sent == 0 || received != sent {
		t.Fatalf("TCP connection through the VPN: sent %d, received %d, err %v", sent, received, err)
	}
	t.Logf("a TCP connection survived the moves UDP -> TCP -> UDP: %d records", sent)
	// tshark agrees, with the key log: the IKE messages in the streams
	// verify, and every frame of ESP in them decrypts, the VPN's inner
	// address inside.
	tshark := capture.reader(t, ue)
	checkIKEVerifies(t, tshark, "IKE in TCP")
	frames := checkESPDecrypts(t, tshark, "ESP in TCP")
	if inner := count(tshark, "esp && ip.addr == "+wwan.VirtualIPs[0], "frame.number"); inner != frames {
		t.Fatalf("%d of %d ESP frames carry the VPN's inner address %s", inner, frames, wwan.VirtualIPs[0])
	}
	for _, d := range []*demo.Daemon{ue, gw} {
		for _, l := range strings.Split(d.Log(), "\n") {
			if strings.Contains(l, "over TCP") || strings.Contains(l, "TCP stream") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				t.Logf("%s: %s", d.Name, l)
			}
		}
	}
}

// Issue 17, item 4: slow and flooding TCP peers do not tie up a gateway
// that listens on TCP 4500. From one address, 200 streams that trickle a
// byte a second: the gateway holds 32 of them (its per-address cap) and
// refuses the rest, closes those it held at the first-message deadline
// (10 s), and meanwhile an end user's new VPN comes up in TCP on an
// interface that appears, with traffic through both VPNs. The metrics
// say what happened.
func TestTCPGatewayUnderSlowAndFloodingPeers(t *testing.T) {
	const metrics = "127.0.0.1:9464"
	top, ue, _ := startLab(t, "mfks", demo.Options{GatewayTCP: true, Metrics: metrics, Use: []string{"eth0", "usb*"},
		UE: demo.Settings{Conn: []string{"tcp: always"}}}, nil)
	first := waitVPNs(t, ue, []string{"eth0"}, 20*time.Second)["eth0"]
	if !first.TCP {
		t.Fatal("the VPN is not in TCP")
	}
	// The attacker: wwan0's address, which the end user's daemon does
	// not use.
	var conns []net.Conn
	err := demo.InNS(top.UE, func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("10.91.3.2")}}
		for range 200 {
			c, err := d.Dial("tcp", netip.AddrPortFrom(demo.GatewayAddrs[0], 4500).String())
			if err != nil {
				continue // refused while the gateway is at its cap: fine
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	stop := make(chan struct{})
	defer close(stop)
	for _, c := range conns {
		go func() { // a slowloris: "IKETCP" a byte a second
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				if _, err := c.Write([]byte{"IKETCP"[i%6]}); err != nil {
					return
				}
			}
		}()
	}
	scrape := func() map[string]float64 {
		m, err := demo.Scrape(top.GW, metrics)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if !demo.WaitFor(10*time.Second, func() bool {
		return scrape()[`mifike_tcp_streams_total{event="per-address-limit"}`] > 0
	}) {
		t.Fatalf("the gateway refused no stream of the 200 from one address: %v", scrape())
	}
	m := scrape()
	if open := m["mifike_tcp_streams"]; open > 32+2 {
		t.Fatalf("the gateway holds %v streams, more than its per-address cap (32) and the end user's", open)
	}
	// Under that load, a new interface's VPN comes up in TCP.
	if err := top.AddInterface(demo.Extra); err != nil {
		t.Fatal(err)
	}
	v := waitVPNs(t, ue, []string{"eth0", "usb0"}, 20*time.Second)
	if !v["usb0"].TCP {
		t.Fatal("usb0's VPN is not in TCP")
	}
	pingThrough(t, top, ue, v["eth0"])
	pingThrough(t, top, ue, v["usb0"])
	// The slow streams never delivered a whole message: closed at the
	// first-message deadline, 10 s after each was accepted.
	if !demo.WaitFor(25*time.Second, func() bool {
		return scrape()[`mifike_tcp_streams_closed_total{reason="first-message"}`] >= 30
	}) {
		t.Fatalf("the slow streams were not closed at the first-message deadline: %v", scrape())
	}
	m = scrape()
	t.Logf("gateway: %v accepted, %v refused over the per-address cap, %v closed at the first-message deadline, %v open now",
		m[`mifike_tcp_streams_total{event="accepted"}`], m[`mifike_tcp_streams_total{event="per-address-limit"}`],
		m[`mifike_tcp_streams_closed_total{reason="first-message"}`], m["mifike_tcp_streams"])
	pingThrough(t, top, ue, v["usb0"])
}
