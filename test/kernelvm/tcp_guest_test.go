package kernelvm

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/xfrm"
)

// TestGuestKernelTCP runs inside the VM: the demo lab with both daemons
// on data_plane: kernel and every VPN in TCP (RFC 9329; the end user's
// tcp: always, the gateway's tcp_ports), so both kernels carry the ESP
// through espintcp. It checks traffic through each VPN, a transfer, and
// a MOBIKE move of the clone under a TCP stream and back: the move opens
// a stream from the new address (RFC 9329 §8) and the Child SA is
// re-installed on it.
func TestGuestKernelTCP(t *testing.T) {
	if os.Getenv("MIFIKE_IN_VM") == "" {
		t.Skip("runs inside the kernel VM; TestKernelVM boots it")
	}
	if err := conn.ProbeKernelESP(); err != nil {
		t.Skipf("no espintcp in the VM (run-vm.sh loads the one libreswan-pack.sh builds; its log says why not): %v", err)
	}
	ctx, top, ue, gw := kernelLab(t, "mfkq", demo.Options{DataPlane: "kernel", GatewayTCP: true, Use: []string{"eth0", "wlan0"},
		UE: demo.Settings{Conn: []string{"tcp: always"}}})
	start := time.Now()
	vpn := waitVPNs(t, ue, 60*time.Second)
	eth, wlan := vpn["eth0"], vpn["wlan0"]
	for _, s := range []string{"eth0", "wlan0"} {
		if !vpn[s].TCP {
			t.Fatalf("the %s VPN is not in TCP:\n%s", s, ue.Table(ctx))
		}
	}
	for _, ns := range []string{top.UE, top.GW} {
		out, _ := top.Run(ctx, ns, "ip", "xfrm", "state")
		if n := strings.Count(string(out), "encap type espintcp"); n < 4 {
			t.Fatalf("%s: want the 4 states of the two VPNs with espintcp encapsulation, have %d:\n%s", ns, n, out)
		}
	}
	figure("two VPNs in TCP (eth0; a clone moved to wlan0) up in %.1fs, kernel ESP over espintcp on both ends", time.Since(start).Seconds())

	for dev, s := range map[string]string{"eth0": eth.VirtualIPs[0], "wlan0": wlan.VirtualIPs[0]} {
		if err := top.Ping(ctx, top.UE, s, demo.Server); err != nil {
			var diag []byte
			for _, ns := range []string{top.UE, top.GW} {
				out, _ := top.Run(ctx, ns, "sh", "-c", "ip -s xfrm state; cat /proc/net/xfrm_stat; cat /proc/net/tcp; ip rule; ip route show table all; ip xfrm policy")
				diag = append(diag, fmt.Sprintf("--- %s:\n%s", ns, out)...)
			}
			t.Fatalf("ping through the %s VPN: %v\n%s", dev, err, diag)
		}
	}
	waitPackets(t, ue, eth.ID, 3)
	waitPackets(t, ue, wlan.ID, 3)
	figure("3/3 pings through each VPN, counted by the kernel's Child SAs")

	const size = 4 << 20
	d, err := transfer(top, netip.MustParseAddr(wlan.VirtualIPs[0]), size)
	if err != nil {
		t.Fatal(err)
	}
	figure("TCP transfer through the wlan0 VPN's ESP in TCP: %d MiB in %.2fs (%.1f Mbit/s under TCG emulation)",
		size>>20, d.Seconds(), float64(size)*8/d.Seconds()/1e6)

	s, err := top.StartStream(netip.MustParseAddr(wlan.VirtualIPs[0]))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cut := time.Now()
	if err := top.SetLink("wlan0", false); err != nil {
		t.Fatal(err)
	}
	if !demo.WaitFor(30*time.Second, func() bool {
		now := saByID(t, ue, wlan.ID)
		return strings.HasPrefix(now.Local, "10.91.1.2:") && now.TCP
	}) {
		t.Fatalf("the clone did not move to eth0 in TCP:\n%s", ue.Table(ctx))
	}
	moved := time.Since(cut)
	time.Sleep(time.Second)
	back := time.Now()
	if err := top.SetLink("wlan0", true); err != nil {
		t.Fatal(err)
	}
	if !demo.WaitFor(30*time.Second, func() bool {
		now := saByID(t, ue, wlan.ID)
		return strings.HasPrefix(now.Local, "10.91.2.2:") && now.TCP
	}) {
		t.Fatalf("the clone did not move back to wlan0 in TCP:\n%s", ue.Table(ctx))
	}
	returned := time.Since(back)
	time.Sleep(time.Second)
	sent, received, err := s.Stop()
	if err != nil || sent != received || sent == 0 {
		t.Fatalf("stream across the moves: sent %d, received %d, %v", sent, received, err)
	}
	if err := top.Ping(ctx, top.UE, wlan.VirtualIPs[0], demo.Server); err != nil {
		t.Fatalf("ping through the clone after moving back: %v", err)
	}
	figure("clone IKE SA %d in TCP moved wlan0 -> eth0 in %.2fs after the cut and back in %.2fs (a stream from the new address each time, RFC 9329 §8); TCP stream inside: %d records sent, %d received",
		wlan.ID, moved.Seconds(), returned.Seconds(), sent, received)

	for _, d := range []*demo.Daemon{ue, gw} {
		d.Stop(10 * time.Second)
	}
	for _, ns := range []string{top.UE, top.GW} {
		var n int
		if err := demo.InNS(ns, func() error { var err error; n, err = xfrm.InstalledStates(); return err }); err != nil || n != 0 {
			t.Fatalf("%s: %d XFRM states or policies left (%v)", ns, n, err)
		}
	}
	figure("after SIGTERM: no XFRM state or policy left on either end")
}
