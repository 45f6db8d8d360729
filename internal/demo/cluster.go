package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/lab"
)

// The gateway cluster lab (docs/cluster.md), for `mifike demo cluster`
// and test/e2e/cluster_test.go: three gateway nodes, each in a namespace
// of its own with its own address (10.92.N.2), behind a router that
// also runs a three-member etcd (mifike lab-etcd, on 10.96.0.1), and an
// end user on 10.91.1.2 that knows node 1 only. Each node has the
// protected address 10.93.0.1 itself, so a ping through a VPN is
// answered by whichever node holds it.

// ClusterEtcdAddr is where the lab's etcd members listen.
const ClusterEtcdAddr = "10.96.0.1"

// ClusterProtected is the address behind every node.
var ClusterProtected = netip.MustParseAddr("10.93.0.1")

const clusterPSK = "a cluster lab's pre-shared key"

// Cluster is the running cluster lab.
type Cluster struct {
	*Topology
	Nodes     []string     // the nodes' namespaces
	Addrs     []netip.Addr // the nodes' addresses
	Endpoints string       // etcd's client URLs, comma-separated
	KeyFile   string
	GWs       []*Daemon
	UEd       *Daemon
	// MultiInterface: the end user has wlan0 and wwan0 besides eth0
	// (AddUEInterfaces) and one VPN per interface.
	MultiInterface bool
	// EtcdControl is lab-etcd's control socket (EtcdStop, EtcdStart).
	EtcdControl string
	// Etcd is the lab-etcd process (its CPU time, for the benchmark).
	Etcd *lab.Proc
	// NodeLog is the nodes' log level (default debug; the benchmark's
	// handshake rate runs them at warn, as in production).
	NodeLog string
}

// AddUEInterfaces gives the end user the main lab's other two access
// networks, wlan0 and wwan0 (UEIfaces), each with its default route and
// metric; its configuration then asks for one VPN per interface, which
// it clones from the first (RFC 7791). Call it before StartEndUser.
func (c *Cluster) AddUEInterfaces(ctx context.Context) error {
	for _, a := range UEIfaces[1:] {
		if err := c.addAccess(a); err != nil {
			return err
		}
	}
	// A multi-homed host, as in the main lab (Build).
	if _, err := c.Run(ctx, c.UE, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.all.arp_ignore=1",
		"net.ipv4.conf.all.ignore_routes_with_linkdown=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"); err != nil {
		return err
	}
	c.MultiInterface = true
	return nil
}

// BuildCluster builds the namespaces and links and starts etcd.
func BuildCluster(ctx context.Context, prefix, dir, bin string) (*Cluster, error) {
	l, err := lab.New(ctx, prefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Topology: &Topology{Lab: l, Dir: dir, Bin: bin}}
	fail := func(err error) (*Cluster, error) {
		l.Close()
		return nil, err
	}
	if c.Net, err = l.AddNS("net"); err != nil {
		return fail(err)
	}
	if c.UE, err = l.AddNS("ue"); err != nil {
		return fail(err)
	}
	steps := []func() error{
		func() error {
			return l.Veth(lab.End{NS: c.Net, Dev: "ue-a", Addrs: []string{"10.91.1.1/24"}}, lab.End{NS: c.UE, Dev: "eth0", Addrs: []string{"10.91.1.2/24"}})
		},
		func() error { return l.IP(c.UE, "route", "add", "default", "via", "10.91.1.1") },
	}
	for i := 1; i <= 3; i++ {
		steps = append(steps, func() error {
			ns, err := l.AddNS(fmt.Sprintf("gw%d", i))
			if err != nil {
				return err
			}
			c.Nodes = append(c.Nodes, ns)
			c.Addrs = append(c.Addrs, netip.MustParseAddr(fmt.Sprintf("10.92.%d.2", i)))
			if err := l.Veth(lab.End{NS: c.Net, Dev: fmt.Sprintf("gw%d-a", i), Addrs: []string{fmt.Sprintf("10.92.%d.1/24", i)}},
				lab.End{NS: ns, Dev: "up0", Addrs: []string{fmt.Sprintf("10.92.%d.2/24", i)}}); err != nil {
				return err
			}
			if err := l.IP(ns, "route", "add", "default", "via", fmt.Sprintf("10.92.%d.1", i)); err != nil {
				return err
			}
			if err := l.IP(ns, "addr", "add", ClusterProtected.String()+"/32", "dev", "lo"); err != nil {
				return err
			}
			return l.Forwarding(ns)
		})
	}
	steps = append(steps,
		func() error { return l.Forwarding(c.Net) },
		// etcd's own address, so that a node can be cut off from etcd
		// alone (a blackhole route to it).
		func() error { return l.IP(c.Net, "addr", "add", ClusterEtcdAddr+"/32", "dev", "lo") },
	)
	for _, s := range steps {
		if err := s(); err != nil {
			return fail(err)
		}
	}
	out := filepath.Join(dir, "etcd.out")
	f, err := os.Create(out)
	if err != nil {
		return fail(err)
	}
	c.EtcdControl = filepath.Join(dir, "etcd.sock")
	etcd, err := l.Start(c.Net, f, bin, "lab-etcd", "--dir", filepath.Join(dir, "etcd"), "--host", ClusterEtcdAddr, "--control", c.EtcdControl)
	if err != nil {
		return fail(err)
	}
	c.Etcd = etcd
	if !WaitFor(60*time.Second, func() bool {
		b, _ := os.ReadFile(out)
		line, _, ok := strings.Cut(string(b), "\n")
		c.Endpoints = line
		return ok && strings.HasPrefix(line, "http")
	}) {
		return fail(fmt.Errorf("etcd did not start:\n%s", etcd.Output()))
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fail(err)
	}
	c.KeyFile = filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(c.KeyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return fail(err)
	}
	return c, nil
}

// ClusterNodeConfig is node i's mifike.yaml (i from 0).
func (c *Cluster) ClusterNodeConfig(i int) string {
	level := c.NodeLog
	if level == "" {
		level = "debug"
	}
	return fmt.Sprintf(`log: {level: %s}
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
`, level, c.Addrs[i], i+1, c.KeyFile, strings.ReplaceAll(c.Endpoints, ",", ", "), clusterPSK)
}

// ClusterEndUserConfig is the end user's: it knows node 1 only; the
// nodes announce each other's addresses (RFC 4555 §3.6).
func (c *Cluster) ClusterEndUserConfig() string {
	ifaces, clone := "", "{enable: true, max_ike_sas: 8}"
	if c.MultiInterface {
		// Each clone its own inner address (RFC 7791 §8), so that a
		// ping from it goes through its own VPN.
		ifaces = "    interfaces: {mode: per-interface, use: [eth0, wlan0, wwan0], on_down: move, on_return: move-back}\n"
		clone = "{enable: true, max_ike_sas: 8, own_vips: true}"
	}
	return fmt.Sprintf(`log: {level: debug}
data_plane: userspace
tun: {name: mifike0}
retransmit: {timeout: 1s, base: 1.4, tries: 5}
connections:
  office:
    remote_addrs: [%s]
    local: {auth: psk, id: alice@cluster.example}
    remote: {auth: psk, id: gw.cluster.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    vips: [0.0.0.0]
    start_action: start
    clone: %s
%s    children:
      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}
`, c.Addrs[0], clusterPSK, clone, ifaces)
}

// StartNodes starts the three gateway daemons and waits until each has
// joined the cluster.
func (c *Cluster) StartNodes() error {
	for i, ns := range c.Nodes {
		d, err := c.StartDaemon(fmt.Sprintf("gw%d", i+1), ns, c.ClusterNodeConfig(i))
		if err != nil {
			return err
		}
		c.GWs = append(c.GWs, d)
	}
	for _, g := range c.GWs {
		if !WaitFor(20*time.Second, func() bool { return strings.Contains(g.Log(), "cluster: joined") }) {
			return fmt.Errorf("%s did not join the cluster:\n%s", g.Name, lab.LastLines(g.Log(), 20))
		}
	}
	return nil
}

// StartEndUser starts the end user's daemon.
func (c *Cluster) StartEndUser() (err error) {
	c.UEd, err = c.StartDaemon("ue", c.UE, c.ClusterEndUserConfig())
	return err
}

// VPN waits for the end user's established IKE SA with a Child SA that
// ok accepts.
func (c *Cluster) VPN(timeout time.Duration, ok func(control.SA) bool) (control.SA, error) {
	var got control.SA
	if !WaitFor(timeout, func() bool {
		l, err := c.UEd.SAs()
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
		return got, fmt.Errorf("no VPN as wanted after %v:\n%s", timeout, c.UEd.Table(context.Background()))
	}
	return got, nil
}

// Holders are the nodes (by index) that have an established IKE SA with
// SPIs spiI, spiR.
func (c *Cluster) Holders(spiI, spiR string) []int {
	var out []int
	for i, g := range c.GWs {
		l, err := g.SAs()
		if err != nil {
			continue
		}
		for _, x := range l {
			if x.SPIi == spiI && x.SPIr == spiR && x.State == ike.StateEstablished {
				out = append(out, i)
			}
		}
	}
	return out
}

// Placed is one of the end user's VPNs and the node (index) holding it.
type Placed struct {
	SA   control.SA
	Node int
}

// Placement is where the end user's VPNs (established, with a Child SA)
// are, by interface, and on how many nodes; settled is false while one
// of them is not held by exactly one node at that node's own address
// (a hand-over or takeover under way).
func (c *Cluster) Placement() (vpns map[string]Placed, nodes int, settled bool) {
	l, err := c.UEd.SAs()
	if err != nil {
		return nil, 0, false
	}
	vpns = map[string]Placed{}
	on := map[int]bool{}
	for _, s := range l {
		if s.State != ike.StateEstablished || len(s.Children) == 0 {
			continue
		}
		h := c.Holders(s.SPIi, s.SPIr)
		if len(h) != 1 || !strings.HasPrefix(s.Remote, c.Addrs[h[0]].String()+":") {
			return vpns, len(on), false
		}
		vpns[IfaceOf(s)] = Placed{s, h[0]}
		on[h[0]] = true
	}
	return vpns, len(on), true
}

// PingFrom pings the protected address from the VPN's inner address.
func (c *Cluster) PingFrom(ctx context.Context, s control.SA) error {
	if len(s.VirtualIPs) == 0 {
		return errors.New("the VPN has no inner address")
	}
	return c.Ping(ctx, c.UE, s.VirtualIPs[0], ClusterProtected)
}

// Kill kills node i with SIGKILL.
func (c *Cluster) Kill(i int) error { return syscall.Kill(c.GWs[i].Pid(), syscall.SIGKILL) }

// Mifike runs a mifike control verb against daemon d.
func (c *Cluster) Mifike(ctx context.Context, d *Daemon, args ...string) (string, error) {
	out, err := c.Run(ctx, d.NS, c.Bin, append(args, "-s", d.Sock)...)
	return string(out), err
}

// Restart starts node i's daemon again (after Kill) and waits until it
// has joined the cluster.
func (c *Cluster) Restart(i int) error {
	d, err := c.StartDaemon(fmt.Sprintf("gw%d", i+1), c.Nodes[i], c.ClusterNodeConfig(i))
	if err != nil {
		return err
	}
	c.GWs[i] = d
	if !WaitFor(20*time.Second, func() bool { return strings.Contains(d.Log(), "cluster: joined") }) {
		return fmt.Errorf("%s did not join the cluster again:\n%s", d.Name, lab.LastLines(d.Log(), 20))
	}
	return nil
}

// Status is node i's `cluster-status`.
func (c *Cluster) Status(i int) (control.ClusterStatus, error) {
	var st control.ClusterStatus
	cl, err := control.Dial(c.GWs[i].Sock)
	if err != nil {
		return st, err
	}
	defer cl.Close()
	err = cl.Call("cluster-status", nil, &st)
	return st, err
}
