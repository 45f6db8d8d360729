package e2e

// The MIF problem statement's use cases 2 and 3 (../shared/seeds/004_*,
// "Use Case 2: MIF applications and IPsec Tunnel mode" and "Use Case 3:
// MIF aware applications with Transport mode"), end to end: real daemons
// in namespaces, traffic asserted on each Child SA's counters.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
)

// childTraffic is one Child SA's packet counts, by Child SA name, of IKE
// SA id.
type childTraffic struct{ in, out uint64 }

func childrenOf(t *testing.T, d *demo.Daemon, id uint64) map[string]childTraffic {
	t.Helper()
	out := map[string]childTraffic{}
	for _, s := range sas(t, d) {
		if s.ID != id {
			continue
		}
		for _, c := range s.Children {
			x := out[c.Name]
			out[c.Name] = childTraffic{x.in + c.PacketsIn, x.out + c.PacketsOut}
		}
	}
	return out
}

// grew waits until Child SA name of IKE SA id has sent and received at
// least n packets more than in before.
func grew(t *testing.T, d *demo.Daemon, id uint64, name string, before map[string]childTraffic, n uint64) map[string]childTraffic {
	t.Helper()
	var now map[string]childTraffic
	if !demo.WaitFor(10*time.Second, func() bool {
		now = childrenOf(t, d, id)
		return now[name].out >= before[name].out+n && now[name].in >= before[name].in+n
	}) {
		t.Fatalf("IKE SA %d: Child SA %q carried %d out / %d in, want at least %d each way (before %v, now %v)\n%s",
			id, name, now[name].out-before[name].out, now[name].in-before[name].in, n, before, now, d.Table(context.Background()))
	}
	return now
}

// Use case 2 (figure 11): the tunnels are per service, so every interface
// has "s" Child SAs with the same gateway, one per service. One
// authentication; every interface's VPN (a clone) gets all of them; each
// service's traffic from each interface's inner address goes through
// that interface's Child SA for that service and no other.
func TestUC2ServicesOnEveryInterface(t *testing.T) {
	top, ue, gw := lab(t, demo.Options{Services: true})
	want := []string{"stream", "ping", "lan"}
	var v map[string]control.SA
	if !demo.WaitFor(30*time.Second, func() bool {
		v = vpns(t, ue)
		if len(v) != len(all3) {
			return false
		}
		for _, dev := range all3 {
			s, ok := v[dev]
			if !ok {
				return false
			}
			for _, w := range want {
				if !slices.ContainsFunc(s.Children, func(c control.Child) bool { return c.Name == w && c.State == "INSTALLED" }) {
					return false
				}
			}
		}
		return true
	}) {
		t.Fatalf("want a VPN on each of %v with Child SAs %v:\n%s", all3, want, ue.Table(context.Background()))
	}
	if n := strings.Count(gw.Log(), "received IKE_AUTH request"); n != 1 {
		t.Fatalf("the gateway saw %d IKE_AUTH requests; the end user must authenticate once", n)
	}
	for _, dev := range all3 {
		s := v[dev]
		if len(s.Children) != len(want) {
			t.Fatalf("%s's VPN has %d Child SAs, want one of each of %v:\n%s", dev, len(s.Children), want, ue.Table(context.Background()))
		}
		vip := netipMust(s.VirtualIPs[0])
		before := childrenOf(t, ue, s.ID)

		// ICMP: the ping service's Child SA, both ways.
		if err := top.Ping(context.Background(), top.UE, vip.String(), demo.Server); err != nil {
			t.Fatalf("%s: ping from %v: %v\n%s", dev, vip, err, ue.Table(context.Background()))
		}
		after := grew(t, ue, s.ID, "ping", before, 3)
		for _, other := range []string{"stream", "lan"} {
			if after[other] != before[other] {
				t.Fatalf("%s: pings went through Child SA %q too (%v → %v)", dev, other, before[other], after[other])
			}
		}

		// TCP port 7000: the stream service's Child SA.
		before = after
		stream, err := top.StartStream(vip)
		if err != nil {
			t.Fatalf("%s: stream from %v: %v", dev, vip, err)
		}
		grew(t, ue, s.ID, "stream", before, 20)
		sent, received, err := stream.Stop()
		if err != nil || sent == 0 || received != sent {
			t.Fatalf("%s: stream: %d records sent, %d received, %v", dev, sent, received, err)
		}

		// Anything else to the protected network: the lan Child SA (TCP
		// to a closed port: the SYN out, the RST back through it).
		before = quietChildren(t, ue, s.ID) // the stream's FIN exchange is done
		for range 3 {
			refusedTCP(t, top, vip, netip.AddrPortFrom(demo.Server, 7001))
		}
		after = grew(t, ue, s.ID, "lan", before, 3)
		if after["stream"] != before["stream"] || after["ping"] != before["ping"] {
			t.Fatalf("%s: TCP to another port went through a service's Child SA (%v → %v)", dev, before, after)
		}
		t.Logf("%s (IKE SA %d, inner %v): every service's Child SA carried its own traffic: %v", dev, s.ID, vip, after)
	}
}

// quietChildren waits until IKE SA id's Child SAs carry nothing for
// half a second (what is under way has ended) and returns their counts.
func quietChildren(t *testing.T, d *demo.Daemon, id uint64) map[string]childTraffic {
	t.Helper()
	last := childrenOf(t, d, id)
	for range 40 {
		time.Sleep(500 * time.Millisecond)
		now := childrenOf(t, d, id)
		if maps.Equal(now, last) {
			return now
		}
		last = now
	}
	t.Fatalf("IKE SA %d's Child SAs never went quiet: %v", id, last)
	return nil
}

// refusedTCP connects from src to dst, a closed port, in the end user's
// namespace, and wants the refusal (the RST came back).
func refusedTCP(t *testing.T, top *demo.Topology, src netip.Addr, dst netip.AddrPort) {
	t.Helper()
	err := demo.InNS(top.UE, func() error {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp", dst.String())
		if err == nil {
			c.Close()
			return fmt.Errorf("connected to a closed port")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("TCP from %v to %v: %v", src, dst, err)
	}
}

// Use case 3 "Initial MIF IPsec Configuration" (figure 12): transport
// mode, no inner addresses. One authentication on eth0, then a Security
// Association between each interface's own address and the server's, on
// an IKE SA (a clone) of its own: host-to-host traffic from each address
// goes through the Child SA of that address.
func TestUC3InitialConfiguration(t *testing.T) {
	top, ue, gw := lab(t, demo.Options{Transport: true})
	v := waitVPNs(t, ue, all3, 30*time.Second)
	if n := strings.Count(gw.Log(), "received IKE_AUTH request"); n != 1 {
		t.Fatalf("the gateway saw %d IKE_AUTH requests; the end user must authenticate once", n)
	}
	for i, dev := range all3 {
		s := v[dev]
		addr := demo.UEIfaces[i].Addr
		if !demo.WaitFor(10*time.Second, func() bool {
			s = onIface(t, ue, s.ID, dev, time.Second)
			return len(s.Children) == 1 && slices.Equal(s.Children[0].LocalTS, []string{addr}) && s.Children[0].Mode == "transport"
		}) {
			t.Fatalf("%s's IKE SA %d does not hold one transport Child SA for %s:\n%s", dev, s.ID, addr, ue.Table(context.Background()))
		}
		before := childrenOf(t, ue, s.ID)
		if err := top.Ping(context.Background(), top.UE, addr, demo.GatewayAddrs[0]); err != nil {
			t.Fatalf("%s: ping from %s to the gateway: %v\n%s", dev, addr, err, ue.Table(context.Background()))
		}
		grew(t, ue, s.ID, "host", before, 3)
	}
}

// Use case 3 with multihoming (RFC 4555 §3.6, the requirement "make
// possible the Responder and Initiator to announce its interfaces"): the
// server announces both its addresses; when the one in use goes, the
// transport-mode SA moves to the other, its Child SA is replaced by one
// for the new address pair (transport selectors are the outer
// addresses), and host-to-host traffic to the other address is
// protected.
func TestUC3Multihoming(t *testing.T) {
	top, ue, _ := lab(t, demo.Options{Transport: true, Mode: "failover", Use: []string{"eth0"}})
	v := waitVPNs(t, ue, []string{"eth0"}, 20*time.Second)
	id := v["eth0"].ID
	if !demo.WaitFor(10*time.Second, func() bool {
		for _, s := range sas(t, ue) {
			if s.ID == id && slices.Contains(s.PeerAddrs, demo.GatewayAddrs[1].String()) {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the gateway did not announce %v (RFC 4555 §3.6):\n%s", demo.GatewayAddrs[1], ue.Table(context.Background()))
	}
	if err := top.SetGatewayLink("up0", false); err != nil {
		t.Fatal(err)
	}
	var moved control.SA
	if !demo.WaitFor(30*time.Second, func() bool {
		for _, s := range sas(t, ue) {
			if s.ID == id && s.State == ike.StateEstablished && strings.HasPrefix(s.Remote, demo.GatewayAddrs[1].String()) &&
				len(s.Children) == 1 && slices.Equal(s.Children[0].RemoteTS, []string{demo.GatewayAddrs[1].String()}) {
				moved = s
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the transport SA did not move to the gateway's other address:\n%s", ue.Table(context.Background()))
	}
	before := childrenOf(t, ue, moved.ID)
	if err := top.Ping(context.Background(), top.UE, demo.UEIfaces[0].Addr, demo.GatewayAddrs[1]); err != nil {
		t.Fatalf("ping to the gateway's other address: %v\n%s", err, ue.Table(context.Background()))
	}
	grew(t, ue, moved.ID, "host", before, 3)
}
