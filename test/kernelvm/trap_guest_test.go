package kernelvm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/xfrm"
)

// trapUEConfig is an end user on the kernel data plane whose Child SA
// to the gateway's LAN is trapped: nothing is up until traffic to
// 10.93.0.0/24 asks for it.
func trapUEConfig() string {
	var b strings.Builder
	b.WriteString("log: {level: debug}\ndata_plane: kernel\n")
	b.WriteString("retransmit: {timeout: 1s, base: 1.4, tries: 5}\nconnections:\n  office:\n")
	fmt.Fprintf(&b, "    remote_addrs: [%s]\n", demo.GatewayAddrs[0])
	fmt.Fprintf(&b, "    local: {auth: psk, id: alice@demo.example}\n    remote: {auth: psk, id: gw.demo.example}\n    psk: %q\n", demo.PSK)
	b.WriteString("    proposals: aes128gcm16-prfsha256-x25519\n    vips: [0.0.0.0]\n")
	b.WriteString("    children:\n      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16, start_action: trap}\n")
	return b.String()
}

// TestGuestKernelTrap runs inside the VM: start_action trap on the
// kernel data plane (an XFRM trap policy, the kernel's
// XFRM_MSG_ACQUIRE; RFC 4301 §5.1). No IKE SA before traffic; a ping to
// the trapped subnet brings the IKE SA and the Child SA up and the next
// pings pass through the kernel's SA; after a terminate of the IKE SA
// the trap is still there and the next ping brings it back; after a
// terminate of only the Child SA the next ping creates it on the IKE SA
// still up; after SIGTERM nothing of mifike's is left in the kernel.
func TestGuestKernelTrap(t *testing.T) {
	if os.Getenv("MIFIKE_IN_VM") == "" {
		t.Skip("runs inside the kernel VM; TestKernelVM boots it")
	}
	bin, err := exec.LookPath("mifike")
	if err != nil {
		t.Fatal("no mifike binary in the VM's PATH")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	top, err := demo.Build(ctx, "mfkr", t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { top.Close() })
	gw, err := top.StartDaemon("gw", top.GW, demo.GWConfig(demo.Options{DataPlane: "kernel"}))
	if err != nil {
		t.Fatal(err)
	}
	ue, err := top.StartDaemon("ue", top.UE, trapUEConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			diag, _ := top.Run(ctx, top.UE, "sh", "-c", "ip xfrm policy; ip -s xfrm state; ip rule; ip route show table all")
			fmt.Printf("--- end user kernel:\n%s\n--- end user log (tail):\n%s\n--- gateway log (tail):\n%s\n", diag,
				tail(quiet(ue.Log()), 60), tail(quiet(gw.Log()), 25))
		}
	})
	if !demo.WaitFor(20*time.Second, func() bool { return strings.Contains(ue.Log(), "trap installed") }) {
		t.Fatalf("the end user installed no trap:\n%s", tail(ue.Log(), 20))
	}
	if !strings.Contains(ue.Log(), "kernel XFRM") {
		t.Fatalf("the end user did not start the kernel data plane:\n%s", tail(ue.Log(), 20))
	}
	pol, _ := top.Run(ctx, top.UE, "ip", "xfrm", "policy")
	if !strings.Contains(string(pol), "10.93.0.0/24") || !strings.Contains(string(pol), "mark 0/0x6d66") {
		t.Fatalf("no trap policy for 10.93.0.0/24 in the kernel:\n%s", pol)
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
	// bringUp pings the trapped server with nothing up and waits for the
	// Child SA, then pings through it and checks the kernel's SA counted
	// the echoes.
	bringUp := func(what string) control.SA {
		t.Helper()
		start := time.Now()
		// The first echo is dropped while the SA comes up (the kernel
		// drops packets on a larval state); later ones may pass.
		first := top.Ping(ctx, top.UE, "", demo.Server)
		var sa control.SA
		if !demo.WaitFor(20*time.Second, func() (ok bool) { sa, ok = up(); return ok }) {
			t.Fatalf("%s: no SA %v after the ping (ping: %v):\n%s", what, time.Since(start), first, ue.Table(ctx))
		}
		took := time.Since(start)
		if err := top.Ping(ctx, top.UE, "", demo.Server); err != nil {
			t.Fatalf("%s: ping through the trapped SA: %v\n%s", what, err, ue.Table(ctx))
		}
		out := waitPackets(t, ue, sa.ID, 3)
		res := "some answered"
		if first != nil {
			res = first.Error()
		}
		figure("kernel trap, %s: IKE SA %d, Child SA %s seen up %.1fs after the first ping started (checked once its 3 echoes were done: %s); then 3 pings answered, the kernel's SA counted %d packets out",
			what, sa.ID, sa.Children[0].InSPI, took.Seconds(), res, out)
		return sa
	}

	sa := bringUp("first packet")
	// Terminate the IKE SA: the trap stays, the next packet starts both
	// again.
	if err := ue.Call("terminate", map[string]any{"ike_sa": sa.ID}); err != nil {
		t.Fatal(err)
	}
	if !demo.WaitFor(20*time.Second, func() bool { return len(sas(t, ue)) == 0 }) {
		t.Fatalf("IKE SA %d still there after terminate: %+v", sa.ID, sas(t, ue))
	}
	sa = bringUp("after terminating the IKE SA")
	// Only the Child SA goes: the next packet creates it again on the
	// IKE SA still up (CREATE_CHILD_SA).
	spi, err := strconv.ParseUint(sa.Children[0].InSPI, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	if err := ue.Call("terminate", map[string]any{"ike_sa": sa.ID, "child_spi": spi}); err != nil {
		t.Fatal(err)
	}
	if !demo.WaitFor(20*time.Second, func() bool { _, ok := up(); return !ok }) {
		t.Fatalf("Child SA %s still up after terminate", sa.Children[0].InSPI)
	}
	again := bringUp("after terminating the Child SA")
	if again.ID != sa.ID || again.Children[0].InSPI == sa.Children[0].InSPI {
		t.Fatalf("IKE SA %d child %s, want a new Child SA on IKE SA %d", again.ID, again.Children[0].InSPI, sa.ID)
	}
	for _, want := range []string{"trap: initiating", "trap: creating the Child SA on the IKE SA"} {
		if !strings.Contains(ue.Log(), want) {
			t.Errorf("the end user's log does not say %q", want)
		}
	}

	// SIGTERM: no trap policy, larval state, SA or policy of ours left.
	for _, d := range []*demo.Daemon{ue, gw} {
		d.Stop(10 * time.Second)
	}
	for _, ns := range []string{top.UE, top.GW} {
		var n int
		err := demo.InNS(ns, func() error {
			var err error
			n, err = xfrm.InstalledStates()
			return err
		})
		out, _ := top.Run(ctx, ns, "sh", "-c", "ip xfrm policy; ip xfrm state")
		if err != nil || n != 0 || strings.Contains(string(out), "0x6d66") {
			t.Fatalf("%s: %d XFRM states or policies of ours left (%v):\n%s", ns, n, err, out)
		}
	}
	figure("kernel trap: after SIGTERM no trap policy, larval state, SA or policy of mifike's left on either end")
}
