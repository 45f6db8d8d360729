package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
)

// trapUEConfig is an end user whose Child SA to the gateway's LAN is
// trapped: nothing is up until traffic to 10.93.0.0/24 asks for it.
func trapUEConfig(dataPlane string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ndata_plane: %s\ntun: {name: mifike0}\n", dataPlane)
	b.WriteString("retransmit: {timeout: 1s, base: 1.4, tries: 5}\nconnections:\n  office:\n")
	fmt.Fprintf(&b, "    remote_addrs: [%s]\n", demo.GatewayAddrs[0])
	fmt.Fprintf(&b, "    local: {auth: psk, id: alice@demo.example}\n    remote: {auth: psk, id: gw.demo.example}\n    psk: %q\n", demo.PSK)
	b.WriteString("    proposals: aes128gcm16-prfsha256-x25519\n    vips: [0.0.0.0]\n")
	b.WriteString("    children:\n      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16, start_action: trap}\n")
	return b.String()
}

// start_action trap (strongSwan's trap policy): a ping to the trapped
// subnet with no SA up brings the IKE SA and the Child SA up, and the
// next ping passes; after a terminate the trap is still there and the
// next ping brings them up again; after only the Child SA is deleted the
// next ping creates it on the IKE SA still up.
func TestTrapUserspace(t *testing.T) { testTrap(t, "mfkt", "userspace") }

func testTrap(t *testing.T, prefix, dataPlane string) {
	ctx, top := buildLab(t, prefix)
	gw, err := top.StartDaemon("gw", top.GW, demo.GWConfig(demo.Options{DataPlane: dataPlane}))
	if err != nil {
		t.Fatal(err)
	}
	ue, err := top.StartDaemon("ue", top.UE, trapUEConfig(dataPlane))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("end user log (tail):\n%s", tail(ue.Log(), 60))
			t.Logf("gateway log (tail):\n%s", tail(gw.Log(), 25))
		}
	})
	c, err := control.Dial(ue.Sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var conns []control.Conn
	if err := c.Call("list-conns", nil, &conns); err != nil || len(conns) != 1 || conns[0].Children[0].StartAction != "trap" {
		t.Fatalf("list-conns: %v %+v", err, conns)
	}
	up := func() (control.SA, bool) {
		for _, s := range sas(t, ue) {
			if s.State == ike.StateEstablished && len(s.Children) > 0 && s.Children[0].Name == "lan" {
				return s, true
			}
		}
		return control.SA{}, false
	}
	// The trap alone brings nothing up.
	time.Sleep(500 * time.Millisecond)
	if l := sas(t, ue); len(l) != 0 {
		t.Fatalf("SAs before any traffic: %+v", l)
	}

	for round := 1; round <= 2; round++ {
		start := time.Now()
		// The first echo is dropped while the SA comes up (as the
		// kernel drops it); ping's later ones may already pass.
		first := top.Ping(ctx, top.UE, "", demo.Server)
		var sa control.SA
		if !demo.WaitFor(10*time.Second, func() (ok bool) { sa, ok = up(); return ok }) {
			t.Fatalf("round %d: no SA %v after the ping (ping: %v):\n%s", round, time.Since(start), first, ue.Table(ctx))
		}
		t.Logf("round %d: IKE SA %d up %v after the ping started (that ping: %v)", round, sa.ID, time.Since(start).Round(time.Millisecond), first)
		if err := top.Ping(ctx, top.UE, "", demo.Server); err != nil {
			t.Fatalf("round %d: ping through the trapped SA: %v\n%s", round, err, ue.Table(ctx))
		}
		if round == 2 {
			break
		}
		// Terminate: the trap stays, and the next packet starts it again.
		if err := c.Call("terminate", map[string]any{"ike_sa": sa.ID}, nil); err != nil {
			t.Fatal(err)
		}
		if !demo.WaitFor(10*time.Second, func() bool { return len(sas(t, ue)) == 0 }) {
			t.Fatalf("IKE SA %d still there after terminate: %+v", sa.ID, sas(t, ue))
		}
	}
	// Only the Child SA goes: the next packet creates it again on the
	// IKE SA that is still up (CREATE_CHILD_SA, not a new IKE SA).
	sa, _ := up()
	spi, err := strconv.ParseUint(sa.Children[0].InSPI, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Call("terminate", map[string]any{"ike_sa": sa.ID, "child_spi": spi}, nil); err != nil {
		t.Fatal(err)
	}
	if !demo.WaitFor(10*time.Second, func() bool { _, ok := up(); return !ok }) {
		t.Fatalf("Child SA %s still up after terminate", sa.Children[0].InSPI)
	}
	first := top.Ping(ctx, top.UE, "", demo.Server)
	var again control.SA
	if !demo.WaitFor(10*time.Second, func() (ok bool) { again, ok = up(); return ok }) {
		t.Fatalf("no Child SA after the ping (ping: %v):\n%s", first, ue.Table(ctx))
	}
	if again.ID != sa.ID || again.Children[0].InSPI == sa.Children[0].InSPI {
		t.Fatalf("IKE SA %d child %s, want a new Child SA on IKE SA %d", again.ID, again.Children[0].InSPI, sa.ID)
	}
	if err := top.Ping(ctx, top.UE, "", demo.Server); err != nil {
		t.Fatalf("ping through the re-created Child SA: %v\n%s", err, ue.Table(ctx))
	}
	if !strings.Contains(ue.Log(), "trap: creating the Child SA on the IKE SA") {
		t.Errorf("the end user's log does not say the trap created the Child SA")
	}
	if !strings.Contains(ue.Log(), "trap: initiating") {
		t.Errorf("the end user's log does not say the trap initiated")
	}
}
