// Package demo is the multiple-interfaces lab: an end user with three
// interfaces (eth0, wlan0, wwan0 on three access networks), a router, a
// gateway with two addresses and a protected server behind it, each in
// its own network namespace, with real mifike daemons on both ends. The
// `mifike demo` command narrates a run on it, and the end-to-end tests
// check every requirement of the MIF problem statement on it.
//
//	        eth0  10.91.1.2 ─┐                ┌─ up0 10.92.1.2 ┐
//	[ue]    wlan0 10.91.2.2 ─┼─ [net] router ─┤                ├ [gw] ─ lan0 10.93.0.1 ── [srv] 10.93.0.2
//	        wwan0 10.91.3.2 ─┘                └─ up1 10.92.2.2 ┘
//	virtual IPs 10.99.0.x, one per VPN          pool 10.99.0.0/24
//
// With Options.EAP the gateway also has aaa0 10.94.0.1, linked to an aaa
// namespace where FreeRADIUS runs on 10.94.0.2 (eap.go).
package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/lab"
	"github.com/mifike/mifike/internal/radiuslab"
)

// Addresses of the lab.
var (
	GatewayAddrs = []netip.Addr{netip.MustParseAddr("10.92.1.2"), netip.MustParseAddr("10.92.2.2")}
	Server       = netip.MustParseAddr("10.93.0.2")
	// UEIfaces are the end user's interfaces, most preferred first.
	UEIfaces = []Access{
		{Dev: "eth0", Addr: "10.91.1.2", Router: "10.91.1.1", Metric: 100},
		{Dev: "wlan0", Addr: "10.91.2.2", Router: "10.91.2.1", Metric: 200},
		{Dev: "wwan0", Addr: "10.91.3.2", Router: "10.91.3.1", Metric: 300},
	}
	// ServiceAddr is the gateway's service address on its loopback device
	// (Options.GatewayLoopback), as anycast and service addresses are held.
	ServiceAddr = netip.MustParseAddr("10.92.9.1")
	// Extra is an interface that appears during a run.
	Extra = Access{Dev: "usb0", Addr: "10.91.4.2", Router: "10.91.4.1", Metric: 400}
)

// Access is one of the end user's access networks.
type Access struct {
	Dev, Addr, Router string
	Metric            int
}

// Accesses are every interface the end user may have: UEIfaces, then
// Extra.
func Accesses() []Access { return append(slices.Clone(UEIfaces), Extra) }

// AccessOf is the end user's interface dev, if it is one of Accesses.
func AccessOf(dev string) (Access, bool) {
	for _, a := range Accesses() {
		if a.Dev == dev {
			return a, true
		}
	}
	return Access{}, false
}

// Topology is the running lab.
type Topology struct {
	*lab.Lab
	UE, Net, GW, Srv string // namespace names
	// AAA is the namespace of FreeRADIUS, RADIUS the server (Options.EAP);
	// empty and nil otherwise.
	AAA    string
	RADIUS *radiuslab.Server
	Dir    string
	Bin    string // the mifike binary

	ueDaemon, gwDaemon *Daemon
}

// Build creates the namespaces and links. Close the topology (or cancel
// ctx) to remove everything. bin is the mifike binary to run.
func Build(ctx context.Context, prefix, dir, bin string) (*Topology, error) {
	l, err := lab.New(ctx, prefix)
	if err != nil {
		return nil, err
	}
	t := &Topology{Lab: l, Dir: dir, Bin: bin}
	fail := func(err error) (*Topology, error) {
		l.Close()
		return nil, err
	}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"ue", &t.UE}, {"net", &t.Net}, {"gw", &t.GW}, {"srv", &t.Srv}} {
		if *p.dst, err = l.AddNS(p.name); err != nil {
			return fail(err)
		}
	}
	for _, a := range UEIfaces {
		if err := t.addAccess(a); err != nil {
			return fail(err)
		}
	}
	links := []struct{ a, b lab.End }{
		{lab.End{NS: t.Net, Dev: "gw-a", Addrs: []string{"10.92.1.1/24"}}, lab.End{NS: t.GW, Dev: "up0", Addrs: []string{"10.92.1.2/24"}}},
		{lab.End{NS: t.Net, Dev: "gw-b", Addrs: []string{"10.92.2.1/24"}}, lab.End{NS: t.GW, Dev: "up1", Addrs: []string{"10.92.2.2/24"}}},
		{lab.End{NS: t.GW, Dev: "lan0", Addrs: []string{"10.93.0.1/24"}}, lab.End{NS: t.Srv, Dev: "eth0", Addrs: []string{"10.93.0.2/24"}}},
	}
	for _, k := range links {
		if err := l.Veth(k.a, k.b); err != nil {
			return fail(err)
		}
	}
	for _, r := range [][]string{
		{t.GW, "route", "add", "10.91.0.0/16", "via", "10.92.1.1", "metric", "100"},
		{t.GW, "route", "add", "10.91.0.0/16", "via", "10.92.2.1", "metric", "200"},
		{t.Srv, "route", "add", "default", "via", "10.93.0.1"},
	} {
		if err := l.IP(r[0], r[1:]...); err != nil {
			return fail(err)
		}
	}
	for _, ns := range []string{t.Net, t.GW} {
		if err := l.Forwarding(ns); err != nil {
			return fail(err)
		}
	}
	for _, ns := range []string{t.UE, t.GW} {
		// A multi-homed host: ARP only for each link's own addresses, no
		// routes over a link without carrier, loose source checks.
		if _, err := l.Run(ctx, ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.all.arp_ignore=1",
			"net.ipv4.conf.all.ignore_routes_with_linkdown=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"); err != nil {
			return fail(err)
		}
	}
	return t, nil
}

// addAccess links one end-user interface to the router, with a default
// route through it (each interface its own metric, as NetworkManager does).
func (t *Topology) addAccess(a Access) error {
	if err := t.prepareAccess(a); err != nil {
		return err
	}
	return t.AddressInterface(a)
}

// prepareAccess makes the link and its route, without the address.
func (t *Topology) prepareAccess(a Access) error {
	if err := t.Veth(lab.End{NS: t.UE, Dev: a.Dev},
		lab.End{NS: t.Net, Dev: "ue-" + a.Dev, Addrs: []string{a.Router + "/24"}}); err != nil {
		return err
	}
	// The route first, then the address, as a DHCP client that has its
	// lease configures both before it tells anyone: the daemons react to
	// the address within a millisecond, and a packet pinned to an
	// interface without a route there is sent on-link and lost.
	return t.IP(t.UE, "route", "add", "default", "via", a.Router, "dev", a.Dev, "onlink", "metric", fmt.Sprint(a.Metric))
}

// AddInterface plugs in a new end-user interface (e.g. Extra): link and
// route, then its address.
func (t *Topology) AddInterface(a Access) error { return t.addAccess(a) }

// PrepareInterface plugs in a new end-user interface (e.g. Extra) with its
// route but no address yet: no VPN can use it.
func (t *Topology) PrepareInterface(a Access) error { return t.prepareAccess(a) }

// AddressInterface gives a prepared interface its address (the moment a
// DHCP lease is applied).
func (t *Topology) AddressInterface(a Access) error {
	return t.IP(t.UE, "addr", "add", a.Addr+"/24", "dev", a.Dev)
}

// SetLink takes an end-user interface up or down (link down: the
// interface is gone for the host, as when Wi-Fi is switched off).
func (t *Topology) SetLink(dev string, up bool) error {
	if err := t.setLink(t.UE, dev, up); err != nil {
		return err
	}
	if up {
		// A link that comes back loses its default route; put it back.
		if a, ok := AccessOf(dev); ok {
			t.IP(t.UE, "route", "replace", "default", "via", a.Router, "dev", a.Dev, "metric", fmt.Sprint(a.Metric))
		}
	}
	return nil
}

func (t *Topology) setLink(ns, dev string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return t.IP(ns, "link", "set", dev, state)
}

// AddServiceAddress puts ServiceAddr on the gateway's loopback device and
// routes it there from the router.
func (t *Topology) AddServiceAddress() error {
	if err := t.IP(t.GW, "addr", "add", ServiceAddr.String()+"/32", "dev", "lo"); err != nil {
		return err
	}
	return t.IP(t.Net, "route", "add", ServiceAddr.String()+"/32", "via", GatewayAddrs[0].String())
}

// SetGatewayLink takes one of the gateway's interfaces (up0, up1, lan0)
// up or down.
func (t *Topology) SetGatewayLink(dev string, up bool) error {
	if err := t.setLink(t.GW, dev, up); err != nil {
		return err
	}
	// A link that comes back loses its route to the end user's networks.
	routes := map[string][]string{"up0": {"via", "10.92.1.1", "metric", "100"}, "up1": {"via", "10.92.2.1", "metric", "200"}}
	if r, ok := routes[dev]; ok && up {
		t.IP(t.GW, append([]string{"route", "replace", "10.91.0.0/16"}, r...)...)
	}
	return nil
}

// BuildBinary builds the mifike command into a new directory under dir
// (tests that run daemons build it once, in TestMain) and returns its path.
func BuildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "mifike")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mifike/mifike/cmd/mifike").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building mifike: %v\n%s", err, out)
	}
	return bin, nil
}

// Blackhole silently drops (on) or passes again (off) everything the
// router forwards to or from one end-user interface: the link stays up,
// so only liveness checks can tell (nftables in the router).
func (t *Topology) Blackhole(ctx context.Context, dev string, on bool) error {
	table := "blackhole_" + dev
	if !on {
		_, err := t.Run(ctx, t.Net, "nft", "delete", "table", "inet", table)
		return err
	}
	_, err := t.Run(ctx, t.Net, "nft", fmt.Sprintf(
		"add table inet %[1]s; add chain inet %[1]s drops { type filter hook forward priority 0; }; "+
			"add rule inet %[1]s drops iifname \"ue-%[2]s\" drop; add rule inet %[1]s drops oifname \"ue-%[2]s\" drop", table, dev))
	return err
}

// Lossy drops percent of everything the router forwards to or from one
// end-user interface, each packet at random (nftables numgen), or with
// on false passes it all again: a bad radio link, lossy but not dead.
func (t *Topology) Lossy(ctx context.Context, dev string, percent int, on bool) error {
	table := "lossy_" + dev
	if !on {
		_, err := t.Run(ctx, t.Net, "nft", "delete", "table", "inet", table)
		return err
	}
	_, err := t.Run(ctx, t.Net, "nft", fmt.Sprintf(
		"add table inet %[1]s; add chain inet %[1]s drops { type filter hook forward priority 0; }; "+
			"add rule inet %[1]s drops iifname \"ue-%[2]s\" numgen random mod 100 < %[3]d drop; "+
			"add rule inet %[1]s drops oifname \"ue-%[2]s\" numgen random mod 100 < %[3]d drop", table, dev, percent))
	return err
}

// BlockUDP drops (on) or passes again (off) IKE's UDP, ports 500 and
// 4500 either way, that the router forwards to or from one end-user
// interface, as a hotel or carrier network that allows only TCP does;
// TCP and everything else pass (nftables in the router).
func (t *Topology) BlockUDP(ctx context.Context, dev string, on bool) error {
	table := "noudp_" + dev
	if !on {
		_, err := t.Run(ctx, t.Net, "nft", "delete", "table", "inet", table)
		return err
	}
	_, err := t.Run(ctx, t.Net, "nft", fmt.Sprintf(
		"add table inet %[1]s; add chain inet %[1]s drops { type filter hook forward priority 0; }; "+
			"add rule inet %[1]s drops iifname \"ue-%[2]s\" udp dport { 500, 4500 } drop; "+
			"add rule inet %[1]s drops oifname \"ue-%[2]s\" udp sport { 500, 4500 } drop", table, dev))
	return err
}

// NATPorts puts a NAT in the router in front of one end-user interface
// that keeps the address and maps its IKE ports (UDP 500 and 4500, and
// TCP to 4500) to base and base+1, as a carrier's port-translating NAT
// does. Called again with another base it rebinds: the rules change and
// the router forgets every mapping, so the next packet of a running flow
// leaves from the new port and replies to the old one go nowhere.
func (t *Topology) NATPorts(ctx context.Context, dev string, base uint16) error {
	a, ok := AccessOf(dev)
	if !ok {
		return fmt.Errorf("demo: no interface %s", dev)
	}
	table := "nat_" + dev
	t.Run(ctx, t.Net, "nft", "delete", "table", "ip", table) // absent the first time
	if _, err := t.Run(ctx, t.Net, "nft", fmt.Sprintf(
		"add table ip %[1]s; add chain ip %[1]s post { type nat hook postrouting priority srcnat; }; "+
			"add rule ip %[1]s post ip saddr %[2]s udp sport 500 snat to %[2]s:%[3]d; "+
			"add rule ip %[1]s post ip saddr %[2]s udp sport 4500 snat to %[2]s:%[4]d; "+
			"add rule ip %[1]s post ip saddr %[2]s tcp dport 4500 snat to %[2]s:%[4]d",
		table, a.Addr, base, base+1)); err != nil {
		return err
	}
	return InNS(t.Net, func() error {
		_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, &ipFilter{addr: net.ParseIP(a.Addr)})
		return err
	})
}

// ipFilter matches the conntrack entries of one original source address.
type ipFilter struct{ addr net.IP }

func (f *ipFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return flow.Forward.SrcIP.Equal(f.addr)
}

// Daemon is one mifike daemon of the lab.
type Daemon struct {
	Name string
	NS   string
	Sock string
	Dir  string
	proc *lab.Proc
	top  *Topology
}

// StartDaemon runs mifike with config (its control socket is filled in)
// in namespace ns.
func (t *Topology) StartDaemon(name, ns, config string) (*Daemon, error) {
	dir := filepath.Join(t.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &Daemon{Name: name, NS: ns, Dir: dir, Sock: filepath.Join(dir, "mifike.sock"), top: t}
	config = fmt.Sprintf("control: {socket: %s}\n", d.Sock) + config
	cfgPath := filepath.Join(dir, "mifike.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "mifike.log"))
	if err != nil {
		return nil, err
	}
	if d.proc, err = t.Start(ns, logf, t.Bin, "daemon", "-c", cfgPath); err != nil {
		return nil, err
	}
	for range 100 {
		if _, err := os.Stat(d.Sock); err == nil {
			return d, nil
		}
		select {
		case <-d.proc.Done():
			return nil, fmt.Errorf("mifike (%s) exited: %v\n%s", name, d.proc.Err(), d.proc.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("mifike (%s) did not open its control socket:\n%s", name, d.proc.Output())
}

// Stop ends the daemon with SIGTERM (it deletes its SAs and closes its
// data plane), killing it after grace.
func (d *Daemon) Stop(grace time.Duration) { d.proc.Stop(grace) }

// Pid is the daemon's process id (ip netns exec runs it in place).
func (d *Daemon) Pid() int { return d.proc.Pid() }

// Exited is closed when the daemon's process has ended.
func (d *Daemon) Exited() <-chan struct{} { return d.proc.Done() }

// ExitError is how the daemon ended, once Exited is closed.
func (d *Daemon) ExitError() error { return d.proc.Err() }

// Log is the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "mifike.log"))
	return string(b)
}

// SAs lists the daemon's IKE SAs.
func (d *Daemon) SAs() ([]control.SA, error) {
	c, err := control.Dial(d.Sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []control.SA
	err = c.Call("list-sas", nil, &out)
	return out, err
}

// Call runs a control command.
func (d *Daemon) Call(cmd string, args map[string]any) error {
	c, err := control.Dial(d.Sock)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Call(cmd, args, nil)
}

// Table is the daemon's list-sas table, as the CLI prints it.
func (d *Daemon) Table(ctx context.Context) string {
	out, err := d.top.Run(ctx, d.NS, d.top.Bin, "list-sas", "-s", d.Sock)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

// Ping sends a few pings from src (an address in ns) to dst.
func (t *Topology) Ping(ctx context.Context, ns, src string, dst netip.Addr) error {
	args := []string{"-n", "-q", "-c", "3", "-i", "0.2", "-W", "2"}
	if src != "" {
		args = append(args, "-I", src)
	}
	_, err := t.Run(ctx, ns, "ping", append(args, dst.String())...)
	return err
}

// InNS runs fn on a thread inside namespace ns: sockets fn creates live
// there.
func InNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return err
	}
	defer netns.Set(orig)
	return fn()
}

// Stream is a TCP connection carrying a steady flow of numbered records
// from the end user to the server, to show a connection survives moves.
type Stream struct {
	conn     net.Conn
	ln       net.Listener
	sent     int
	received chan int
	stop     chan struct{}
	err      error
	done     chan struct{}
}

// StartStream connects from src (an end-user virtual IP) to the server
// and sends a record every 10 ms until Stop.
func (t *Topology) StartStream(src netip.Addr) (*Stream, error) {
	s := &Stream{received: make(chan int, 1), stop: make(chan struct{}), done: make(chan struct{})}
	err := InNS(t.Srv, func() error {
		var err error
		s.ln, err = net.Listen("tcp", net.JoinHostPort(Server.String(), "7000"))
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		c, err := s.ln.Accept()
		if err != nil {
			s.received <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		s.received <- int(n / 64)
	}()
	err = InNS(t.UE, func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		var err error
		s.conn, err = d.Dial("tcp", net.JoinHostPort(Server.String(), "7000"))
		return err
	})
	if err != nil {
		s.ln.Close()
		return nil, err
	}
	go func() {
		defer close(s.done)
		rec := make([]byte, 64)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
				s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if _, err := s.conn.Write(rec); err != nil {
					s.err = err
					return
				}
				s.sent++
			}
		}
	}()
	return s, nil
}

// Stop ends the stream and reports records sent and received; all of
// them arrive if the connection survived.
func (s *Stream) Stop() (sent, received int, err error) {
	close(s.stop)
	<-s.done
	s.conn.Close()
	select {
	case received = <-s.received:
	case <-time.After(30 * time.Second):
	}
	s.ln.Close()
	return s.sent, received, s.err
}

// WaitFor polls cond every 50 ms until it holds or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}
