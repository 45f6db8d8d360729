package kernelvm

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/xfrm"
)

// TestGuestKernelDataPlane runs inside the VM (TestKernelVM boots it):
// the demo lab's end user and gateway, both with data_plane: kernel, one
// VPN per interface (eth0, wlan0; the wlan0 one a clone moved there with
// MOBIKE). It checks traffic, not only SA state: pings through each VPN
// at once, a TCP transfer, a Child SA rekey under a TCP stream, the
// clone's move to the other interface and back under a TCP stream, and
// that nothing is left in the kernel when the daemons stop.
func TestGuestKernelDataPlane(t *testing.T) {
	if os.Getenv("MIFIKE_IN_VM") == "" {
		t.Skip("runs inside the kernel VM; TestKernelVM boots it")
	}
	ctx, top, ue, gw := kernelLab(t, "mfkv", demo.Options{DataPlane: "kernel", Use: []string{"eth0", "wlan0"}})

	start := time.Now()
	vpn := waitVPNs(t, ue, 60*time.Second)
	figure("two VPNs up (authentication on eth0, a clone moved to wlan0 by MOBIKE) in %.1fs", time.Since(start).Seconds())
	eth, wlan := vpn["eth0"], vpn["wlan0"]
	if wlan.Parent == 0 {
		t.Fatalf("the wlan0 VPN (IKE SA %d) is not a clone", wlan.ID)
	}
	for _, ns := range []string{top.UE, top.GW} {
		out, _ := top.Run(ctx, ns, "ip", "-br", "link", "show", "type", "xfrm")
		if strings.Count(string(out), xfrm.DevicePrefix) < 2 {
			t.Fatalf("%s: want an XFRM interface per VPN, have:\n%s", ns, out)
		}
	}

	t.Run("ping through both VPNs at once", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		before := map[string][2]uint64{"eth0": txOf(t, top, "eth0"), "wlan0": txOf(t, top, "wlan0")}
		for i, s := range []control.SA{eth, wlan} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = top.Ping(ctx, top.UE, s.VirtualIPs[0], demo.Server)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("ping through VPN %d: %v", i, err)
			}
		}
		for dev, s := range map[string]control.SA{"eth0": eth, "wlan0": wlan} {
			out := waitPackets(t, ue, s.ID, 3)
			// Each VPN's ESP leaves through its own interface: the
			// interface's transmit count grew by at least the pings.
			after := txOf(t, top, dev)
			if after[0]-before[dev][0] < 3 {
				diag, _ := top.Run(ctx, top.UE, "sh", "-c", "ip -d link show type xfrm; ip -s link; ip xfrm state; ip rule; ip route show table all")
				t.Fatalf("%s sent %d packets for 3 pings through its VPN:\n%s\n%s", dev, after[0]-before[dev][0], diag, ue.Table(ctx))
			}
			figure("ping from %s through VPN %d (%s): 3/3 answered, Child SA counted %d packets out (kernel counters)",
				s.VirtualIPs[0], s.ID, dev, out)
		}
	})

	t.Run("TCP transfer", func(t *testing.T) {
		const size = 16 << 20
		d, err := transfer(top, netip.MustParseAddr(eth.VirtualIPs[0]), size)
		if err != nil {
			t.Fatal(err)
		}
		figure("TCP transfer through VPN %d: %d MiB in %.2fs (%.1f Mbit/s under TCG emulation)", eth.ID, size>>20, d.Seconds(),
			float64(size)*8/d.Seconds()/1e6)
	})

	t.Run("Child SA rekey under a TCP stream", func(t *testing.T) {
		s, err := top.StartStream(netip.MustParseAddr(eth.VirtualIPs[0]))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		old := eth.Children[0].InSPI
		spi, _ := strconv.ParseUint(old, 16, 32)
		if err := ue.Call("rekey", map[string]any{"ike_sa": eth.ID, "child_spi": spi}); err != nil {
			t.Fatal(err)
		}
		var now control.SA
		if !demo.WaitFor(20*time.Second, func() bool {
			now = saByID(t, ue, eth.ID)
			return len(now.Children) == 1 && now.Children[0].InSPI != old
		}) {
			t.Fatalf("Child SA %s was not replaced:\n%s", old, ue.Table(ctx))
		}
		time.Sleep(time.Second)
		sent, received, err := s.Stop()
		if err != nil || sent != received || sent == 0 {
			t.Fatalf("stream across the rekey: sent %d, received %d, %v", sent, received, err)
		}
		out := waitPackets(t, ue, eth.ID, 1)
		figure("rekey of Child SA %s -> %s under a TCP stream: %d records sent, %d received; the new SA carried %d packets",
			old, now.Children[0].InSPI, sent, received, out)
		eth = now
	})

	t.Run("MOBIKE move of the clone under a TCP stream", func(t *testing.T) {
		s, err := top.StartStream(netip.MustParseAddr(wlan.VirtualIPs[0]))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		cut := time.Now()
		if err := top.SetLink("wlan0", false); err != nil {
			t.Fatal(err)
		}
		if !demo.WaitFor(20*time.Second, func() bool { return strings.HasPrefix(saByID(t, ue, wlan.ID).Local, "10.91.1.2:") }) {
			t.Fatalf("the clone did not move to eth0:\n%s", ue.Table(ctx))
		}
		moved := time.Since(cut)
		time.Sleep(time.Second)
		back := time.Now()
		if err := top.SetLink("wlan0", true); err != nil {
			t.Fatal(err)
		}
		if !demo.WaitFor(30*time.Second, func() bool { return strings.HasPrefix(saByID(t, ue, wlan.ID).Local, "10.91.2.2:") }) {
			t.Fatalf("the clone did not move back to wlan0:\n%s", ue.Table(ctx))
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
		figure("clone IKE SA %d moved wlan0 -> eth0 in %.2fs after the cut and back in %.2fs; TCP stream: %d records sent, %d received, inner address %s kept",
			wlan.ID, moved.Seconds(), returned.Seconds(), sent, received, wlan.VirtualIPs[0])
	})

	t.Run("nothing left after the daemons stop", func(t *testing.T) {
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
			if err != nil || n != 0 {
				t.Fatalf("%s: %d XFRM states or policies left (%v)", ns, n, err)
			}
			out, _ := top.Run(ctx, ns, "ip", "-br", "link", "show", "type", "xfrm")
			if strings.Contains(string(out), xfrm.DevicePrefix) {
				t.Fatalf("%s: XFRM interfaces left:\n%s", ns, out)
			}
		}
		figure("after SIGTERM: no XFRM state, policy or interface left on either end")
	})
}

// quiet leaves out the liveness checks (empty INFORMATIONAL exchanges).
// kernelLab builds the demo lab in the VM under prefix and starts both
// daemons with o, checking that each took the kernel data plane; the
// test's end stops them (with their logs' tails on failure) and removes
// the lab.
func kernelLab(t *testing.T, prefix string, o demo.Options) (context.Context, *demo.Topology, *demo.Daemon, *demo.Daemon) {
	t.Helper()
	bin, err := exec.LookPath("mifike")
	if err != nil {
		t.Fatal("no mifike binary in the VM's PATH")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	top, err := demo.Build(ctx, prefix, t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { top.Close() })
	ue, gw, err := top.StartBoth(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			fmt.Printf("--- end user log (tail):\n%s\n--- gateway log (tail):\n%s\n", tail(quiet(ue.Log()), 80), tail(quiet(gw.Log()), 40))
		}
	})
	for _, d := range []*demo.Daemon{ue, gw} {
		if !strings.Contains(d.Log(), "kernel XFRM") {
			t.Fatalf("%s did not start the kernel data plane:\n%s", d.Name, tail(d.Log(), 20))
		}
	}
	return ctx, top, ue, gw
}

func quiet(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, "INFORMATIONAL request") || !strings.HasSuffix(l, "[ ]\" ike=1") && !strings.Contains(l, "[ ]\"") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func figure(format string, args ...any) { fmt.Printf("FIGURE: "+format+"\n", args...) }

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func sas(t *testing.T, d *demo.Daemon) []control.SA {
	t.Helper()
	l, err := d.SAs()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func saByID(t *testing.T, d *demo.Daemon, id uint64) control.SA {
	for _, s := range sas(t, d) {
		if s.ID == id {
			return s
		}
	}
	return control.SA{}
}

// waitVPNs waits for an established VPN with a Child SA on eth0 and on
// wlan0, by local address.
func waitVPNs(t *testing.T, d *demo.Daemon, timeout time.Duration) map[string]control.SA {
	t.Helper()
	var got map[string]control.SA
	ok := demo.WaitFor(timeout, func() bool {
		got = map[string]control.SA{}
		for _, s := range sas(t, d) {
			if s.State != ike.StateEstablished || len(s.Children) == 0 || len(s.VirtualIPs) == 0 {
				continue
			}
			for _, a := range demo.UEIfaces {
				if strings.HasPrefix(s.Local, a.Addr+":") {
					got[a.Dev] = s
				}
			}
		}
		return len(got) == 2
	})
	if !ok {
		t.Fatalf("VPNs: %v\n%s", got, d.Table(context.Background()))
	}
	return got
}

// waitPackets waits (the kernel counters are read every second) until
// IKE SA id's Child SAs counted at least n packets out, and returns them.
func waitPackets(t *testing.T, d *demo.Daemon, id uint64, n uint64) uint64 {
	t.Helper()
	var out uint64
	demo.WaitFor(5*time.Second, func() bool {
		out = 0
		for _, c := range saByID(t, d, id).Children {
			out += c.PacketsOut
		}
		return out >= n
	})
	if out < n {
		t.Fatalf("IKE SA %d's Child SAs counted %d packets out, want at least %d", id, out, n)
	}
	return out
}

var txRE = regexp.MustCompile(`TX:[^\n]*\n\s*(\d+)\s+(\d+)`)

// txOf is an end-user interface's transmitted bytes and packets.
func txOf(t *testing.T, top *demo.Topology, dev string) [2]uint64 {
	out, err := top.Run(context.Background(), top.UE, "ip", "-s", "link", "show", dev)
	if err != nil {
		t.Fatalf("ip -s link show %s: %v", dev, err)
	}
	m := txRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no TX counters in:\n%s", out)
	}
	b, _ := strconv.ParseUint(string(m[1]), 10, 64)
	p, _ := strconv.ParseUint(string(m[2]), 10, 64)
	return [2]uint64{p, b}
}

// transfer sends size octets from src (an end-user virtual IP) to the
// server over TCP and checks every octet arrived in order.
func transfer(top *demo.Topology, src netip.Addr, size int) (time.Duration, error) {
	return transferNS(top.UE, src, top.Srv, demo.Server, size)
}

// transferNS sends size octets over TCP from src in namespace fromNS to
// dst (port 7001) in namespace toNS, and checks every octet arrived in
// order.
func transferNS(fromNS string, src netip.Addr, toNS string, dst netip.Addr, size int) (time.Duration, error) {
	var ln net.Listener
	if err := demo.InNS(toNS, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(dst.String(), "7001"))
		return err
	}); err != nil {
		return 0, err
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		b := make([]byte, 64<<10)
		n := 0
		for n < size {
			k, err := c.Read(b)
			for i := range b[:k] {
				if b[i] != byte((n+i)%251) {
					got <- fmt.Errorf("octet %d corrupted", n+i)
					return
				}
			}
			n += k
			if err != nil {
				if err == io.EOF && n == size {
					break
				}
				got <- fmt.Errorf("after %d of %d octets: %v", n, size, err)
				return
			}
		}
		got <- nil
	}()
	var c net.Conn
	t0 := time.Now()
	if err := demo.InNS(fromNS, func() error {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		var err error
		c, err = d.Dial("tcp", net.JoinHostPort(dst.String(), "7001"))
		return err
	}); err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	for n := 0; n < size; {
		k := min(len(buf), size-n)
		for i := range buf[:k] {
			buf[i] = byte((n + i) % 251)
		}
		if _, err := c.Write(buf[:k]); err != nil {
			c.Close()
			return 0, err
		}
		n += k
	}
	c.Close()
	select {
	case err := <-got:
		return time.Since(t0), err
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("the server did not receive %d octets in time", size)
	}
}
