package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
	mlab "github.com/mifike/mifike/internal/lab"
)

// A gateway cluster (docs/cluster.md) end to end: three mifike gateway
// daemons, each in a namespace of its own with its own address, sharing
// a real three-member etcd cluster (mifike lab-etcd, in the router's
// namespace), and an end user whose VPN goes to the first node. Each
// gateway has the protected address 10.93.0.1 itself, so a ping through
// the tunnel is answered by whichever node holds the VPN.

const clusterPSK = "a cluster lab's pre-shared key"

type clusterLab struct {
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
	l, err := mlab.New(ctx, "mfkc")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	top := &demo.Topology{Lab: l, Dir: dir, Bin: mifikeBin}
	t.Cleanup(func() { l.Close() })
	c := &clusterLab{top: top}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var ue string
	c.net, err = l.AddNS("net")
	must(err)
	ue, err = l.AddNS("ue")
	must(err)
	top.UE = ue
	must(l.Veth(mlab.End{NS: c.net, Dev: "ue-a", Addrs: []string{"10.91.1.1/24"}}, mlab.End{NS: ue, Dev: "eth0", Addrs: []string{"10.91.1.2/24"}}))
	must(l.IP(ue, "route", "add", "default", "via", "10.91.1.1"))
	var gwNS []string
	for i := 1; i <= 3; i++ {
		ns, err := l.AddNS(fmt.Sprintf("gw%d", i))
		must(err)
		gwNS = append(gwNS, ns)
		must(l.Veth(mlab.End{NS: c.net, Dev: fmt.Sprintf("gw%d-a", i), Addrs: []string{fmt.Sprintf("10.92.%d.1/24", i)}},
			mlab.End{NS: ns, Dev: "up0", Addrs: []string{fmt.Sprintf("10.92.%d.2/24", i)}}))
		must(l.IP(ns, "route", "add", "default", "via", fmt.Sprintf("10.92.%d.1", i)))
		must(l.IP(ns, "addr", "add", "10.93.0.1/32", "dev", "lo"))
		must(l.Forwarding(ns))
		c.addr = append(c.addr, netip.MustParseAddr(fmt.Sprintf("10.92.%d.2", i)))
	}
	must(l.Forwarding(c.net))

	// etcd: three members in the router's namespace, on its address
	// towards node 1 (every node routes to it).
	out, err := os.Create(filepath.Join(dir, "etcd.out"))
	must(err)
	etcd, err := l.Start(c.net, out, mifikeBin, "lab-etcd", "--dir", filepath.Join(dir, "etcd"), "--host", "10.92.1.1")
	must(err)
	var endpoints string
	if !demo.WaitFor(60*time.Second, func() bool {
		b, _ := os.ReadFile(out.Name())
		line, _, ok := strings.Cut(string(b), "\n")
		endpoints = line
		return ok && strings.HasPrefix(line, "http")
	}) {
		t.Fatalf("etcd did not start:\n%s", etcd.Output())
	}
	key := make([]byte, 32)
	rand.Read(key)
	keyFile := filepath.Join(dir, "cluster.key")
	must(os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600))

	for i, ns := range gwNS {
		cfg := fmt.Sprintf(`log: {level: debug}
data_plane: userspace
tun: {name: mifike0}
listen: [%s]
pools:
  vpn: {addrs: 10.99.0.0/24}
cluster:
  name: lab
  node: %d
  lease: 2s
  key_file: %s
  etcd: {endpoints: [%s]}
connections:
  roadwarrior:
    local: {auth: psk, id: gw.cluster.example}
    remote: {auth: psk, id: alice@cluster.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    pools: [vpn]
    clone: {enable: true, max_ike_sas: 8}
    children:
      lan: {local_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}
`, c.addr[i], i+1, keyFile, strings.ReplaceAll(endpoints, ",", ", "), clusterPSK)
		d, err := top.StartDaemon(fmt.Sprintf("gw%d", i+1), ns, cfg)
		must(err)
		c.gws = append(c.gws, d)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, g := range c.gws {
				t.Logf("%s log (tail):\n%s", g.Name, tail(g.Log(), 30))
			}
			t.Logf("end user log (tail):\n%s", tail(c.ue.Log(), 40))
		}
	})
	// Every node joined before the end user comes.
	for _, g := range c.gws {
		if !demo.WaitFor(20*time.Second, func() bool { return strings.Contains(g.Log(), "cluster: joined") }) {
			t.Fatalf("%s did not join the cluster:\n%s", g.Name, tail(g.Log(), 20))
		}
	}
	// The end user knows every node's address (the cluster's
	// remote_addrs), starts with the first and is moved by the others.
	uecfg := fmt.Sprintf(`log: {level: debug}
data_plane: userspace
tun: {name: mifike0}
retransmit: {timeout: 1s, base: 1.4, tries: 5}
connections:
  office:
    remote_addrs: [%s, %s, %s]
    local: {auth: psk, id: alice@cluster.example}
    remote: {auth: psk, id: gw.cluster.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    vips: [0.0.0.0]
    start_action: start
    clone: {enable: true, max_ike_sas: 8}
    children:
      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}
`, c.addr[0], c.addr[1], c.addr[2], clusterPSK)
	c.ue, err = top.StartDaemon("ue", ue, uecfg)
	must(err)
	return c
}

// vpn is the end user's one VPN, once it is up with its Child SA.
func (c *clusterLab) vpn(t *testing.T, timeout time.Duration, ok func(control.SA) bool) control.SA {
	t.Helper()
	var got control.SA
	if !demo.WaitFor(timeout, func() bool {
		l, err := c.ue.SAs()
		if err != nil {
			return false
		}
		for _, s := range l {
			if s.State == ike.StateEstablished && len(s.Children) > 0 && ok(s) {
				got = s
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no VPN as wanted after %v:\n%s", timeout, c.ue.Table(context.Background()))
	}
	return got
}

// ping pings 10.93.0.1 from the VPN's inner address.
func (c *clusterLab) ping(t *testing.T, s control.SA) error {
	t.Helper()
	if len(s.VirtualIPs) == 0 {
		t.Fatalf("the VPN has no inner address: %+v", s)
	}
	return c.top.Ping(context.Background(), c.top.UE, s.VirtualIPs[0], netip.MustParseAddr("10.93.0.1"))
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
	// Traffic during the failure: a ping every 100 ms.
	stream := startPings(t, c.top, c.top.UE, s.VirtualIPs[0])
	time.Sleep(time.Second) // node 1 has written the SA at creation already; let a little traffic flow
	killed := time.Now()
	if err := syscall.Kill(c.gws[0].Pid(), syscall.SIGKILL); err != nil {
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
