package e2e

import (
	"context"
	"os"
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
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces (CI runs as root)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	top, err := demo.Build(ctx, "mfkt", t.TempDir(), mifikeBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { top.Close() })
	if err := top.BlockUDP(ctx, "wwan0", true); err != nil {
		t.Fatal(err)
	}
	ue, gw, err := top.StartBoth(demo.Options{GatewayTCP: true,
		UE: demo.Settings{Conn: []string{"tcp: fallback", "tcp_fallback_after: 2s"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("end user log (tail):\n%s", tail(ue.Log(), 60))
			t.Logf("gateway log (tail):\n%s", tail(gw.Log(), 30))
		}
	})
	return top, ue, gw
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
	for _, d := range []*demo.Daemon{ue, gw} {
		for _, l := range strings.Split(d.Log(), "\n") {
			if strings.Contains(l, "over TCP") || strings.Contains(l, "TCP stream") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				t.Logf("%s: %s", d.Name, l)
			}
		}
	}
}
