package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	return startCluster(t, clusterOpts{prefix: "mfkc"})
}

// clusterOpts vary the lab: its namespaces' prefix (labs that may run
// side by side need their own), the end user's three interfaces
// (demo.Cluster.AddUEInterfaces), and what to do between the nodes'
// start and the end user's.
type clusterOpts struct {
	prefix string
	multi  bool
	before func(*demo.Cluster)
}

func startCluster(t *testing.T, o clusterOpts) *clusterLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces (CI runs as root)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := demo.BuildCluster(ctx, o.prefix, t.TempDir(), mifikeBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c := &clusterLab{Cluster: cl, top: cl.Topology, addr: cl.Addrs, net: cl.Net}
	t.Cleanup(func() {
		if t.Failed() {
			for _, g := range cl.GWs {
				t.Logf("%s log (tail):\n%s", g.Name, tail(g.Log(), 40))
			}
			if cl.UEd != nil {
				t.Logf("end user log (tail):\n%s", tail(cl.UEd.Log(), 60))
			}
		}
	})
	if o.multi {
		if err := cl.AddUEInterfaces(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.StartNodes(); err != nil {
		t.Fatal(err)
	}
	if o.before != nil {
		o.before(cl)
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
	capture := c.capture(t)
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
	// The survivor never sent under the dead node's keys: no (SPI,
	// sequence number) twice on the end user's link.
	pkts := capture.stop(t)
	fromSurvivor := 0
	for _, p := range pkts {
		if p.src != c.addr[0].String() && p.src != "10.91.1.2" {
			fromSurvivor++
		}
	}
	if fromSurvivor == 0 {
		t.Fatal("the capture has no ESP from the survivor: it proves nothing")
	}
	if dups := espDuplicates(pkts); dups != 0 {
		t.Errorf("%d ESP (SPI, sequence number) pairs were sent twice", dups)
	}
	t.Logf("node 1 killed; the VPN on %s (%s) after %v; %d pings answered in %v at 10/s; %d ESP packets captured, %d from the survivor, none repeated",
		holders[0], moved.Remote, took.Round(10*time.Millisecond), answered, elapsed.Round(100*time.Millisecond), len(pkts), fromSurvivor)
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

// A node added to a running cluster gets the new clones: node 3 is
// stopped while the end user's three VPNs come up on nodes 1 and 2, then
// it joins, and the next clone the end user makes is placed on it (the
// node with fewest SAs, none of this user's).
func TestClusterNodeAdded(t *testing.T) {
	c := startCluster(t, clusterOpts{prefix: "mfkm", multi: true, before: func(cl *demo.Cluster) { cl.GWs[2].Stop(5 * time.Second) }})
	ctx := context.Background()
	var first control.SA
	if !demo.WaitFor(45*time.Second, func() bool {
		vpns, nodes, settled := c.Placement()
		for _, p := range vpns {
			if p.Node == 2 {
				return false
			}
			if p.SA.Parent == 0 {
				first = p.SA
			}
		}
		return settled && len(vpns) == 3 && nodes == 2
	}) {
		t.Fatalf("the end user's three VPNs did not come up on nodes 1 and 2:\n%s", c.ue.Table(ctx))
	}
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	c.gws[2] = c.GWs[2]
	// Node 1 sees node 3 when it announces node 3's address to the end
	// user (RFC 4555 §3.6).
	if !demo.WaitFor(10*time.Second, func() bool {
		l, _ := c.ue.SAs()
		for _, s := range l {
			if s.ID == first.ID {
				return slices.Contains(s.PeerAddrs, c.addr[2].String())
			}
		}
		return false
	}) {
		t.Fatal("node 1 does not announce node 3")
	}
	known := map[string]bool{}
	l, _ := c.ue.SAs()
	for _, s := range l {
		known[s.SPIi] = true
	}
	if out, err := c.Mifike(ctx, c.ue, "clone", fmt.Sprint(first.ID)); err != nil {
		t.Fatalf("mifike clone: %v: %s", err, out)
	}
	var clone control.SA
	if !demo.WaitFor(15*time.Second, func() bool {
		l, _ := c.ue.SAs()
		for _, s := range l {
			if !known[s.SPIi] && s.State == ike.StateEstablished && strings.HasPrefix(s.Remote, c.addr[2].String()+":") {
				clone = s
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the new clone did not go to node 3:\n%s\n%s", c.ue.Table(ctx), tail(c.gws[0].Log(), 30))
	}
	if h := c.Holders(clone.SPIi, clone.SPIr); len(h) != 1 || h[0] != 2 {
		t.Fatalf("the clone is held by nodes %v, want node 3 only", h)
	}
	// Inner addresses stay unique while SAs move between nodes (RFC
	// 7296 §2.19; the node that handed one over keeps its address off
	// its leases).
	l, _ = c.ue.SAs()
	inner := map[string]string{}
	for _, s := range l {
		for _, a := range s.VirtualIPs {
			if other, dup := inner[a]; dup {
				t.Errorf("inner address %s is on the end user's SAs %s and %s", a, other, s.SPIi)
			}
			inner[a] = s.SPIi
		}
	}
	t.Logf("node 3 joined; the end user's next clone (%s) went to it; inner addresses %v", clone.SPIi, inner)
}

// The mission's case on a cluster (RFC 7791 §1 load sharing, with a
// stock end user): three interfaces, one authentication at node 1 (the
// only address it knows), a clone per further interface made by the end
// user on node 1; node 1 hands each clone to the node with fewest SAs and
// none of this user's (cluster.placement: ike_sas), the new owner
// announces its addresses without node 1's (RFC 4555 §3.6), the end user
// moves the clone there and the Child SA is rekeyed by its new owner.
// The end user ends with three VPNs on three nodes, each on its own
// interface and carrying traffic, and authenticated once.
func TestClusterSpreadsInterfaces(t *testing.T) {
	c := startCluster(t, clusterOpts{prefix: "mfkm", multi: true})
	ctx := context.Background()
	var got map[string]demo.Placed
	if !demo.WaitFor(45*time.Second, func() bool {
		vpns, nodes, settled := c.Placement()
		got = vpns
		return settled && len(vpns) == 3 && nodes == 3
	}) {
		t.Fatalf("the end user's VPNs did not spread over three nodes (have %v):\n%s", got, c.ue.Table(ctx))
	}
	inner := map[string]bool{}
	for _, dev := range []string{"eth0", "wlan0", "wwan0"} {
		p, ok := got[dev]
		if !ok {
			t.Fatalf("no VPN on %s: %v", dev, got)
		}
		if len(p.SA.VirtualIPs) != 1 || inner[p.SA.VirtualIPs[0]] {
			t.Fatalf("the %s VPN's inner addresses %v: want one of its own (own_vips)", dev, p.SA.VirtualIPs)
		}
		inner[p.SA.VirtualIPs[0]] = true
		before := c.childPackets(t, p.SA.SPIi)
		if err := c.ping(t, p.SA); err != nil {
			t.Fatalf("ping through the %s VPN (node %d): %v", dev, p.Node+1, err)
		}
		if after := c.childPackets(t, p.SA.SPIi); after <= before {
			t.Fatalf("the ping from %v did not come back through the %s VPN (its Child SA received %d packets before, %d after)", p.SA.VirtualIPs, dev, before, after)
		}
		t.Logf("%s: IKE SA %s on node %d (%s), inner address %v, traffic ok", dev, p.SA.SPIi, p.Node+1, p.SA.Remote, p.SA.VirtualIPs)
	}
	if n := strings.Count(c.ue.Log(), "sending IKE_AUTH request"); n != 1 {
		t.Errorf("the end user sent %d IKE_AUTH requests; it authenticates once", n)
	}
	out, err := c.Mifike(ctx, c.gws[0], "cluster", "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster status on node 1:\n%s", out)
}

// childPackets are the packets the end user's VPN with SPIi spiI has
// received on its Child SAs.
func (c *clusterLab) childPackets(t *testing.T, spiI string) uint64 {
	t.Helper()
	l, err := c.ue.SAs()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, s := range l {
		if s.SPIi == spiI {
			for _, ch := range s.Children {
				n += ch.PacketsIn
			}
		}
	}
	return n
}

// A clone a node makes (it is the clone's MOBIKE initiator, RFC 7791
// Appendix A) is placed on another node automatically, which moves it to
// its own address with UPDATE_SA_ADDRESSES and gives it a Child SA; then
// `mifike cluster move` hands it on to the third node, which moves it
// again and rekeys the Child SA (the node it came from may have sent
// with those keys after the hand-over's export). "mifike cluster status"
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
	// on finds the clone on a node at that node's own address.
	on := func(clone control.SA, not int) (int, control.SA) {
		for i, g := range c.gws {
			l, _ := g.SAs()
			for _, x := range l {
				if i != not && x.SPIi == clone.SPIi && x.SPIr == clone.SPIr && x.State == ike.StateEstablished && strings.HasPrefix(x.Local, c.addr[i].String()+":") {
					return i, x
				}
			}
		}
		return -1, control.SA{}
	}
	var clone control.SA // as the end user sees it: the same SPIs
	if !demo.WaitFor(10*time.Second, func() bool {
		l, _ := c.ue.SAs()
		for _, x := range l {
			if x.SPIi != s.SPIi && x.State == ike.StateEstablished {
				clone = x
				return true
			}
		}
		return false
	}) {
		t.Fatalf("node 1's clone did not come up:\n%s", c.gws[0].Table(ctx))
	}
	var k int
	var placedSA control.SA
	if !demo.WaitFor(10*time.Second, func() bool { k, placedSA = on(clone, 0); return k > 0 }) {
		t.Fatalf("node 1's clone was not placed on another node:\n%s\n%s", c.gws[0].Table(ctx), tail(c.gws[0].Log(), 20))
	}
	run(c.gws[k], "initiate", "roadwarrior", "--child", "lan", "--ike", fmt.Sprint(placedSA.ID))
	ueClone := c.vpn(t, 10*time.Second, func(x control.SA) bool {
		return x.SPIi == clone.SPIi && strings.HasPrefix(x.Remote, c.addr[k].String()+":")
	})
	if len(ueClone.Children) != 1 {
		t.Fatalf("the end user's clone on node %d: %+v", k+1, ueClone)
	}
	child := ueClone.Children[0].InSPI
	if h := c.Holders(clone.SPIi, clone.SPIr); len(h) != 1 {
		t.Fatalf("the clone is held by nodes %v", h)
	}
	// By hand to the third node.
	m := 3 - k // the other of nodes 2 and 3 (indices 1 and 2)
	if !demo.WaitFor(10*time.Second, func() bool {
		_, err := c.top.Run(ctx, c.gws[k].NS, mifikeBin, "cluster", "move", fmt.Sprint(placedSA.ID), fmt.Sprint(m+1), "-s", c.gws[k].Sock)
		return err == nil
	}) {
		t.Fatalf("cluster move failed:\n%s", tail(c.gws[k].Log(), 20))
	}
	ueClone = c.vpn(t, 10*time.Second, func(x control.SA) bool {
		return x.SPIi == clone.SPIi && strings.HasPrefix(x.Remote, c.addr[m].String()+":") && len(x.Children) == 1 && x.Children[0].InSPI != child
	})
	if h := c.Holders(clone.SPIi, clone.SPIr); len(h) != 1 || h[0] != m {
		t.Fatalf("after cluster move to node %d the clone is held by nodes %v", m+1, h)
	}
	st := run(c.gws[m], "cluster", "status")
	if !strings.Contains(st, fmt.Sprintf("node %d: serving", m+1)) || strings.Count(st, "10.92.") != 3 {
		t.Fatalf("cluster status on node %d:\n%s", m+1, st)
	}
	t.Logf("the clone (SPIi %s) went to node %d by placement and to node %d by cluster move, its Child SA rekeyed; cluster status there:\n%s", clone.SPIi, k+1, m+1, st)
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
	capture := c.capture(t)
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
	pkts := capture.stop(t)
	var esp, fromNode1, beforeFence int
	// The fence holds from half a lease after the last renewal; one
	// renewal period (a third) plus margin before the log line said so.
	quiet := fenced.Add(500 * time.Millisecond)
	for _, p := range pkts {
		esp++
		if p.src == c.addr[0].String() {
			if p.at.After(quiet) {
				fromNode1++
			} else {
				beforeFence++
			}
		}
	}
	dups := espDuplicates(pkts)
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

// espCapture records the ESP (plain and in UDP) crossing the end user's
// link, on the router's side.
type espCapture struct {
	cmd  *exec.Cmd
	pcap string
}

func (c *clusterLab) capture(t *testing.T) *espCapture {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark is not installed (scripts/install-deps.sh installs it)")
	}
	pcap := filepath.Join(c.top.Dir, "ue-link.pcap")
	cmd := exec.Command("ip", "netns", "exec", c.net, "dumpcap", "-q", "-i", "ue-a", "-w", pcap, "-f", "udp port 4500 or ip proto 50")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	demo.WaitFor(5*time.Second, func() bool { _, err := os.Stat(pcap); return err == nil })
	time.Sleep(300 * time.Millisecond)
	return &espCapture{cmd: cmd, pcap: pcap}
}

type espPacket struct {
	at       time.Time
	src      string
	spi, seq string
}

// stop ends the capture and returns every ESP packet in it.
func (e *espCapture) stop(t *testing.T) []espPacket {
	t.Helper()
	e.cmd.Process.Signal(syscall.SIGINT)
	e.cmd.Wait()
	out, err := exec.Command("tshark", "-n", "-r", e.pcap, "-Y", "esp", "-T", "fields",
		"-e", "frame.time_epoch", "-e", "ip.src", "-e", "esp.spi", "-e", "esp.sequence").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var pkts []espPacket
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		var sec float64
		fmt.Sscanf(f[0], "%f", &sec)
		pkts = append(pkts, espPacket{at: time.Unix(0, int64(sec*1e9)), src: f[1], spi: f[2], seq: f[3]})
	}
	return pkts
}

// espDuplicates counts (SPI, sequence number) pairs sent more than once:
// under AES-GCM, a repeated nonce under one key (RFC 4106 §3.1).
func espDuplicates(pkts []espPacket) int {
	seen := map[string]bool{}
	dups := 0
	for _, p := range pkts {
		if k := p.spi + "/" + p.seq; seen[k] {
			dups++
		} else {
			seen[k] = true
		}
	}
	return dups
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
