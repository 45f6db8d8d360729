package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
)

// A gateway cluster (docs/cluster.md) end to end, on the lab of `mifike
// demo cluster` (internal/demo/cluster.go): three mifike gateway daemons,
// each in a namespace of its own with its own address, sharing a real
// three-member etcd (mifike lab-etcd, in the router's namespace), and an
// end user that knows node 1 only. Each gateway has the protected address
// 10.93.0.1 itself, so a ping through the tunnel is answered by whichever
// node holds the VPN.

type clusterLab struct {
	*demo.Cluster
	top  *demo.Topology
	ue   *demo.Daemon
	gws  []*demo.Daemon
	addr []netip.Addr
	net  string
}

func startClusterLab(t *testing.T) *clusterLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces (CI runs as root)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := demo.BuildCluster(ctx, "mfkc", t.TempDir(), mifikeBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c := &clusterLab{Cluster: cl, top: cl.Topology, addr: cl.Addrs, net: cl.Net}
	t.Cleanup(func() {
		if t.Failed() {
			for _, g := range cl.GWs {
				t.Logf("%s log (tail):\n%s", g.Name, tail(g.Log(), 30))
			}
			if cl.UEd != nil {
				t.Logf("end user log (tail):\n%s", tail(cl.UEd.Log(), 40))
			}
		}
	})
	if err := cl.StartNodes(); err != nil {
		t.Fatal(err)
	}
	if err := cl.StartEndUser(); err != nil {
		t.Fatal(err)
	}
	c.gws, c.ue = cl.GWs, cl.UEd
	return c
}

// vpn is the end user's one VPN, once it is up with its Child SA.
func (c *clusterLab) vpn(t *testing.T, timeout time.Duration, ok func(control.SA) bool) control.SA {
	t.Helper()
	s, err := c.VPN(timeout, ok)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// written waits until node i has written the record of at least one
// SA (it does so at the step after an SA is made): a node killed before
// that takes the SA with it (docs/cluster.md), which is not what these
// tests are about.
func (c *clusterLab) written(t *testing.T, i int) {
	t.Helper()
	if !demo.WaitFor(10*time.Second, func() bool {
		st, err := c.Status(i)
		return err == nil && st.Owned >= 1
	}) {
		t.Fatalf("node %d wrote no SA record:\n%s", i+1, tail(c.gws[i].Log(), 20))
	}
}

// ping pings 10.93.0.1 from the VPN's inner address.
func (c *clusterLab) ping(t *testing.T, s control.SA) error {
	t.Helper()
	return c.PingFrom(context.Background(), s)
}

// A node killed with SIGKILL under traffic: within a few seconds a
// survivor has taken the end user's VPN over (the record node 1 wrote in
// etcd, RFC 6311, a rekeyed Child SA) and the end user sends to it; the
// tunnel carries traffic again, the same IKE SA, no new authentication.
// Exactly one node holds the SA.
func TestClusterNodeFailure(t *testing.T) {
	c := startClusterLab(t)
	s := c.vpn(t, 30*time.Second, func(control.SA) bool { return true })
	if s.Remote != netip.AddrPortFrom(c.addr[0], 4500).String() && !strings.HasPrefix(s.Remote, c.addr[0].String()) {
		t.Fatalf("the VPN went to %s, want node 1", s.Remote)
	}
	if err := c.ping(t, s); err != nil {
		t.Fatalf("ping through node 1: %v", err)
	}
	c.written(t, 0)
	// Traffic during the failure: a ping every 100 ms.
	stream := startPings(t, c.top, c.top.UE, s.VirtualIPs[0])
	time.Sleep(time.Second) // let a little traffic flow
	killed := time.Now()
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	// The same IKE SA (no new authentication), on another node, with
	// its Child SA rekeyed (RFC 6311 §3.4: the dead node may have used
	// the old one's sequence numbers).
	moved := c.vpn(t, 20*time.Second, func(x control.SA) bool {
		return x.SPIi == s.SPIi && !strings.HasPrefix(x.Remote, c.addr[0].String()+":") &&
			len(x.Children) == 1 && x.Children[0].InSPI != s.Children[0].InSPI
	})
	took := time.Since(killed)
	var holders []string
	for _, g := range c.gws[1:] {
		l, err := g.SAs()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range l {
			if x.SPIi == s.SPIi && x.SPIr == s.SPIr && x.State == ike.StateEstablished {
				holders = append(holders, g.Name)
			}
		}
	}
	if len(holders) != 1 {
		t.Fatalf("after node 1 was killed the SA is held by %v", holders)
	}
	if !demo.WaitFor(10*time.Second, func() bool { return c.ping(t, moved) == nil }) {
		t.Fatalf("no traffic through %s after the takeover:\n%s", holders[0], c.ue.Table(context.Background()))
	}
	answered, elapsed := stream.stop()
	t.Logf("node 1 killed; the VPN on %s (%s) after %v; %d pings answered in %v at 10/s", holders[0], moved.Remote, took.Round(10*time.Millisecond), answered, elapsed.Round(100*time.Millisecond))
}

// pings is a ping every 100 ms from src to 10.93.0.1 in namespace ns.
type pings struct {
	cancel context.CancelFunc
	done   chan struct{}
	out    []byte
	start  time.Time
}

func startPings(t *testing.T, top *demo.Topology, ns, src string) *pings {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pings{cancel: cancel, done: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(p.done)
		p.out, _ = top.Run(ctx, ns, "ping", "-n", "-i", "0.1", "-W", "1", "-I", src, "10.93.0.1")
	}()
	return p
}

// stop ends the pings and says how many were answered, in how long.
func (p *pings) stop() (answered int, elapsed time.Duration) {
	p.cancel()
	<-p.done
	sc := bufio.NewScanner(strings.NewReader(string(p.out)))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "bytes from") {
			answered++
		}
	}
	return answered, time.Since(p.start)
}

// RFC 7791 load sharing between nodes: node 1 clones the end user's IKE
// SA, "mifike cluster move" hands the clone to node 2, which imports it,
// moves it to its own address (node 1 made the clone, so node 2 is its
// MOBIKE initiator) and gives it a Child SA. "mifike cluster status"
// shows the three nodes and who owns what. The end user changed nothing
// and authenticated once.
func TestClusterHandOff(t *testing.T) {
	c := startClusterLab(t)
	s := c.vpn(t, 30*time.Second, func(control.SA) bool { return true })
	gw1SA := func() control.SA {
		l, err := c.gws[0].SAs()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range l {
			if x.SPIi == s.SPIi {
				return x
			}
		}
		t.Fatalf("node 1 does not have the end user's SA")
		return control.SA{}
	}()
	ctx := context.Background()
	run := func(d *demo.Daemon, args ...string) string {
		t.Helper()
		out, err := c.top.Run(ctx, d.NS, mifikeBin, append(args, "-s", d.Sock)...)
		if err != nil {
			t.Fatalf("mifike %v on %s: %v\n%s", args, d.Name, err, out)
		}
		return string(out)
	}
	run(c.gws[0], "clone", fmt.Sprint(gw1SA.ID))
	var clone control.SA
	if !demo.WaitFor(10*time.Second, func() bool {
		l, _ := c.gws[0].SAs()
		for _, x := range l {
			if x.Parent == gw1SA.ID && x.State == ike.StateEstablished {
				clone = x
				return true
			}
		}
		return false
	}) {
		t.Fatalf("node 1's clone did not come up:\n%s", c.gws[0].Table(ctx))
	}
	time.Sleep(500 * time.Millisecond) // the clone's window statements settle (an SA with exchanges under way is not handed over)
	if !demo.WaitFor(10*time.Second, func() bool {
		_, err := c.top.Run(ctx, c.gws[0].NS, mifikeBin, "cluster", "move", fmt.Sprint(clone.ID), "2", "-s", c.gws[0].Sock)
		return err == nil
	}) {
		t.Fatalf("cluster move failed:\n%s", tail(c.gws[0].Log(), 20))
	}
	var onGW2 control.SA
	if !demo.WaitFor(10*time.Second, func() bool {
		l, _ := c.gws[1].SAs()
		for _, x := range l {
			if x.SPIi == clone.SPIi && x.SPIr == clone.SPIr && strings.HasPrefix(x.Local, c.addr[1].String()+":") {
				onGW2 = x
				return true
			}
		}
		return false
	}) {
		t.Fatalf("node 2 did not take the clone to its address:\n%s\n%s", c.gws[1].Table(ctx), tail(c.gws[1].Log(), 20))
	}
	run(c.gws[1], "initiate", "roadwarrior", "--child", "lan", "--ike", fmt.Sprint(onGW2.ID))
	ueClone := c.vpn(t, 10*time.Second, func(x control.SA) bool {
		return x.SPIi == clone.SPIi && strings.HasPrefix(x.Remote, c.addr[1].String()+":")
	})
	if len(ueClone.Children) != 1 {
		t.Fatalf("the end user's clone on node 2: %+v", ueClone)
	}
	l, _ := c.gws[0].SAs()
	for _, x := range l {
		if x.SPIi == clone.SPIi {
			t.Fatal("node 1 kept the clone it handed over")
		}
	}
	st := run(c.gws[1], "cluster", "status")
	if !strings.Contains(st, "node 2: serving") || strings.Count(st, "10.92.") != 3 {
		t.Fatalf("cluster status on node 2:\n%s", st)
	}
	t.Logf("the clone (SPIi %s) is on node 2 with a Child SA; cluster status on node 2:\n%s", clone.SPIi, st)
}

// A node cut off from etcd but not from its clients fences itself: half
// a lease after its last renewal it sends nothing more, IKE or ESP, before
// etcd lets its lease expire and another node takes its SAs over (docs/
// cluster.md). A capture on the end user's link shows nothing from the
// node after that point, and no ESP sequence number sent twice on any SA.
// Once back in touch with etcd, the node finds its lease gone, drops the
// SAs without a word and joins again.
func TestClusterFencing(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark is not installed (scripts/install-deps.sh installs it)")
	}
	c := startClusterLab(t)
	s := c.vpn(t, 30*time.Second, func(control.SA) bool { return true })
	if err := c.ping(t, s); err != nil {
		t.Fatal(err)
	}
	c.written(t, 0)
	pcap := filepath.Join(c.top.Dir, "ue-link.pcap")
	capture := exec.Command("ip", "netns", "exec", c.net, "dumpcap", "-q", "-i", "ue-a", "-w", pcap, "-f", "udp port 4500 or ip proto 50")
	capture.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	defer capture.Process.Kill()
	demo.WaitFor(5*time.Second, func() bool { _, err := os.Stat(pcap); return err == nil })
	time.Sleep(300 * time.Millisecond)
	stream := startPings(t, c.top, c.top.UE, s.VirtualIPs[0])

	cut := time.Now()
	if err := c.top.IP(c.gws[0].NS, "route", "add", "blackhole", demo.ClusterEtcdAddr+"/32"); err != nil {
		t.Fatal(err)
	}
	if !demo.WaitFor(5*time.Second, func() bool { return strings.Contains(c.gws[0].Log(), "cluster: fenced") }) {
		t.Fatalf("node 1 did not fence itself:\n%s", tail(c.gws[0].Log(), 20))
	}
	fenced := time.Now()
	moved := c.vpn(t, 20*time.Second, func(x control.SA) bool {
		return x.SPIi == s.SPIi && !strings.HasPrefix(x.Remote, c.addr[0].String()+":") &&
			len(x.Children) == 1 && x.Children[0].InSPI != s.Children[0].InSPI
	})
	took := time.Since(cut)
	if !demo.WaitFor(10*time.Second, func() bool { return c.ping(t, moved) == nil }) {
		t.Fatalf("no traffic after the takeover:\n%s", c.ue.Table(context.Background()))
	}
	answered, elapsed := stream.stop()
	// Back in touch: node 1's lease is gone; it drops the SA and joins again.
	if err := c.top.IP(c.gws[0].NS, "route", "del", "blackhole", demo.ClusterEtcdAddr+"/32"); err != nil {
		t.Fatal(err)
	}
	if !demo.WaitFor(15*time.Second, func() bool {
		return strings.Count(c.gws[0].Log(), "cluster: joined") >= 2 && strings.Contains(c.gws[0].Log(), "lost the lease")
	}) {
		t.Fatalf("node 1 did not rejoin after losing its lease:\n%s", tail(c.gws[0].Log(), 20))
	}
	time.Sleep(500 * time.Millisecond)
	if l, _ := c.gws[0].SAs(); len(l) != 0 {
		t.Fatalf("node 1 kept SAs after losing its lease: %+v", l)
	}
	capture.Process.Signal(syscall.SIGINT)
	capture.Wait()

	// What crossed the end user's link: (time, source, SPI, sequence)
	// of every ESP packet.
	out, err := exec.Command("tshark", "-n", "-r", pcap, "-Y", "esp", "-T", "fields",
		"-e", "frame.time_epoch", "-e", "ip.src", "-e", "esp.spi", "-e", "esp.sequence").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	seen := map[string]bool{}
	var esp, fromNode1, beforeFence, dups int
	// The fence holds from half a lease after the last renewal; one
	// renewal period (a third) plus margin before the log line said so.
	quiet := fenced.Add(500 * time.Millisecond)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		esp++
		var sec float64
		fmt.Sscanf(f[0], "%f", &sec)
		at := time.Unix(0, int64(sec*1e9))
		if f[1] == c.addr[0].String() {
			if at.After(quiet) {
				fromNode1++
			} else {
				beforeFence++
			}
		}
		if k := f[2] + "/" + f[3]; seen[k] {
			dups++
		} else {
			seen[k] = true
		}
	}
	t.Logf("cut off from etcd: node 1 fenced after %v, the VPN on %s after %v; %d pings answered in %v; %d ESP packets captured, %d of them from node 1 before its fence",
		fenced.Sub(cut).Round(10*time.Millisecond), moved.Remote, took.Round(10*time.Millisecond), answered, elapsed.Round(100*time.Millisecond), esp, beforeFence)
	if esp == 0 || beforeFence == 0 {
		t.Fatal("the capture has no ESP from node 1 before its fence: it proves nothing")
	}
	if fromNode1 != 0 {
		t.Errorf("node 1 sent %d ESP packets after it was fenced", fromNode1)
	}
	if dups != 0 {
		t.Errorf("%d ESP (SPI, sequence number) pairs were sent twice", dups)
	}
}

// A node stopped on purpose (SIGTERM) hands its SAs over instead of
// deleting them: it stops sending and leaves the cluster (its lease
// revoked), and a survivor takes the end user's VPN over without waiting
// for the lease to run out; the end user keeps its IKE SA.
func TestClusterGracefulStop(t *testing.T) {
	c := startClusterLab(t)
	s := c.vpn(t, 30*time.Second, func(control.SA) bool { return true })
	c.gws[0].Stop(5 * time.Second)
	moved := c.vpn(t, 20*time.Second, func(x control.SA) bool {
		return x.SPIi == s.SPIi && !strings.HasPrefix(x.Remote, c.addr[0].String()+":") &&
			len(x.Children) == 1 && x.Children[0].InSPI != s.Children[0].InSPI
	})
	if !demo.WaitFor(10*time.Second, func() bool { return c.ping(t, moved) == nil }) {
		t.Fatalf("no traffic after the hand-over:\n%s", c.ue.Table(context.Background()))
	}
	if log := c.gws[0].Log(); !strings.Contains(log, "leaving the cluster") || strings.Contains(log, "could not leave in time") {
		t.Fatalf("node 1 did not leave the cluster cleanly:\n%s", tail(log, 15))
	}
	t.Logf("node 1 stopped; the VPN on %s", moved.Remote)
}
