package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
)

// RFC 4555 §3.8 end to end: the end user's eth0 is behind a port-
// translating NAT (nftables in the router). With a TCP connection
// running through the VPN, the NAT rebinds: new ports, old mappings
// forgotten. The end user's next liveness check (NAT-D in it) shows the
// gateway a new address, the end user sends UPDATE_SA_ADDRESSES, and the
// gateway's IKE and Child SAs follow to the new mapping; the connection
// survives.
func TestNATRebindingUnderATCPConnection(t *testing.T) {
	top, ue, gw := startLab(t, "mfkn", demo.Options{Use: []string{"eth0"}, KeyLog: true},
		func(ctx context.Context, top *demo.Topology) error { return top.NATPorts(ctx, "eth0", 40000) })
	v := waitVPNs(t, ue, []string{"eth0"}, 20*time.Second)["eth0"]
	if g := gatewaySA(t, gw, v); g.Remote != "10.91.1.2:40001" || !v.NATLocal {
		t.Fatalf("before the rebinding the gateway sends to %s (end user behind a NAT: %v)", g.Remote, v.NATLocal)
	}
	capture := startLinkCapture(t, top, "eth0", "udp port 4500")
	stream, err := top.StartStream(netipMust(v.VirtualIPs[0]))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := top.NATPorts(context.Background(), "eth0", 41000); err != nil {
		t.Fatal(err)
	}
	rebound := time.Now()
	var g control.SA
	if !demo.WaitFor(30*time.Second, func() bool {
		g = gatewaySA(t, gw, v)
		return g.Remote == "10.91.1.2:41001"
	}) {
		t.Fatalf("the gateway did not follow the NAT's new mapping: it sends to %s", g.Remote)
	}
	t.Logf("the gateway followed the new mapping %v after the rebinding", time.Since(rebound).Round(time.Millisecond))
	pingThrough(t, top, ue, v) // the replies come by the gateway's Child SA, to the new mapping
	time.Sleep(500 * time.Millisecond)
	sent, received, err := stream.Stop()
	if err != nil || sent == 0 || received != sent {
		t.Fatalf("TCP connection through the VPN: sent %d, received %d, err %v", sent, received, err)
	}
	t.Logf("a TCP connection survived the rebinding: %d records", sent)
	// Issue 19: Wireshark decrypts the UDP-encapsulated ESP (RFC 3948)
	// and IKE with mifike's key log.
	tshark := capture.reader(t, ue)
	checkIKEVerifies(t, tshark, "IKE on 4500")
	checkESPDecrypts(t, tshark, "ESP in UDP, tunnel mode")
}
