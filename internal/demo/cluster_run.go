package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/control"
)

// ClusterRunner narrates `mifike demo cluster`: three gateway nodes
// sharing etcd, one authentication, three VPNs on three nodes (RFC 7791
// clones handed between nodes), a node crash and the takeover, with
// timings.
type ClusterRunner struct {
	Out  io.Writer
	JSON bool
	Bin  string
	Dir  string

	start   time.Time
	c       *Cluster
	first   control.SA // the end user's authenticated VPN
	firstUp time.Time  // when it was seen up
}

var clusterTitles = map[string]string{
	"lab":          "Lab built",
	"nodes":        "Three gateway nodes joined the cluster (etcd)",
	"authenticate": "The end user authenticated once, on eth0; its VPN is on node 1",
	"spread":       "Three VPNs on three nodes, still one authentication",
	"crash":        "Node 1 killed (SIGKILL) under a ping stream",
	"tables":       "Final state",
}

// Run builds the lab, runs every step and tears the lab down.
func (r *ClusterRunner) Run(ctx context.Context) (err error) {
	r.start = time.Now()
	temp := r.Dir == ""
	if temp {
		if r.Dir, err = os.MkdirTemp("", "mifike-demo-cluster-"); err != nil {
			return err
		}
	}
	defer func() {
		if r.c != nil {
			r.c.Close()
		}
		if err == nil && temp {
			os.RemoveAll(r.Dir)
		} else if !r.JSON {
			fmt.Fprintf(r.Out, "\nConfigurations and daemon logs are kept in %s\n", r.Dir)
		}
	}()
	steps := []struct {
		name string
		fn   func(ctx context.Context) (string, error)
	}{
		{"lab", r.build}, {"nodes", r.nodes}, {"authenticate", r.authenticate},
		{"spread", r.spread}, {"crash", r.crash}, {"tables", r.tables},
	}
	for _, s := range steps {
		t := time.Now()
		detail, err := s.fn(ctx)
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		r.report(Step{Step: s.name, OK: err == nil, Seconds: time.Since(r.start).Seconds(), Took: time.Since(t).Seconds(),
			Detail: detail, Error: errString(err)})
		if err != nil {
			return fmt.Errorf("demo step %s: %w", s.name, err)
		}
	}
	if !r.JSON {
		fmt.Fprintf(r.Out, "\nAll steps passed in %.1fs; tearing the lab down.\n", time.Since(r.start).Seconds())
	}
	return nil
}

func (r *ClusterRunner) report(s Step) {
	if r.JSON {
		b, _ := json.Marshal(s)
		fmt.Fprintln(r.Out, string(b))
		return
	}
	mark := "ok  "
	if !s.OK {
		mark = "FAIL"
	}
	fmt.Fprintf(r.Out, "[%6.2fs] %s %s (%.2fs)\n", s.Seconds, mark, clusterTitles[s.Step], s.Took)
	for _, l := range strings.Split(strings.TrimRight(s.Detail, "\n"), "\n") {
		if l != "" {
			fmt.Fprintf(r.Out, "           %s\n", l)
		}
	}
	if s.Error != "" {
		for _, l := range strings.Split(s.Error, "\n") {
			fmt.Fprintf(r.Out, "           error: %s\n", l)
		}
	}
}

func (r *ClusterRunner) build(ctx context.Context) (string, error) {
	c, err := BuildCluster(ctx, "mfkdc", r.Dir, r.Bin)
	if err != nil {
		return "", err
	}
	r.c = c
	if err := c.AddUEInterfaces(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf(`end user eth0 10.91.1.2, wlan0 10.91.2.2, wwan0 10.91.3.2 (knows node 1 only; one VPN per interface)
  -- router -- node 1 %s, node 2 %s, node 3 %s
etcd: three members on the router (%s), the nodes' shared state; SA keys sealed under a key file
each node protects %s`, c.Addrs[0], c.Addrs[1], c.Addrs[2], c.Endpoints, ClusterProtected), nil
}

func (r *ClusterRunner) nodes(ctx context.Context) (string, error) {
	if err := r.c.StartNodes(); err != nil {
		return "", err
	}
	return r.c.Mifike(ctx, r.c.GWs[0], "cluster", "status")
}

func (r *ClusterRunner) authenticate(ctx context.Context) (string, error) {
	t := time.Now()
	if err := r.c.StartEndUser(); err != nil {
		return "", err
	}
	s, err := r.c.VPN(30*time.Second, func(x control.SA) bool { return x.Parent == 0 && IfaceOf(x) == "eth0" })
	if err != nil {
		return "", err
	}
	r.first, r.firstUp = s, time.Now()
	if err := r.c.PingFrom(ctx, s); err != nil {
		return "", fmt.Errorf("ping through the VPN: %w", err)
	}
	return fmt.Sprintf("IKE SA %s up in %v on %s (node 1); a ping from %s to %s passes",
		s.SPIi, time.Since(t).Round(time.Millisecond), s.Remote, s.VirtualIPs[0], ClusterProtected), nil
}

// spread: the end user clones its SA for wlan0 and wwan0 (RFC 7791) at
// node 1, the only node it knows; node 1 places each clone on the node
// with fewest SAs and none of this user's (cluster.placement), which
// steers the end user to its own address (RFC 4555 §3.6) and rekeys the
// clone's Child SA. No command is typed: a stock end user and a cluster.
func (r *ClusterRunner) spread(ctx context.Context) (string, error) {
	c := r.c
	var got map[string]Placed
	if !WaitFor(45*time.Second, func() bool {
		vpns, nodes, settled := c.Placement()
		got = vpns
		return settled && len(vpns) == 3 && nodes == 3
	}) {
		return "", fmt.Errorf("the end user's VPNs did not spread over three nodes:\n%s", c.UEd.Table(ctx))
	}
	took := time.Since(r.firstUp)
	var lines []string
	for _, dev := range []string{"eth0", "wlan0", "wwan0"} {
		p, ok := got[dev]
		if !ok || len(p.SA.VirtualIPs) == 0 {
			return "", fmt.Errorf("no VPN with an inner address on %s", dev)
		}
		if err := c.PingFrom(ctx, p.SA); err != nil {
			return "", fmt.Errorf("ping through the %s VPN: %w", dev, err)
		}
		how := "authenticated here"
		if p.SA.SPIi != r.first.SPIi {
			how = "cloned at node 1, placed here, the end user moved to it"
		}
		lines = append(lines, fmt.Sprintf("%-5s IKE SA %s on node %d (%s), inner address %s, ping ok; %s",
			dev, p.SA.SPIi, p.Node+1, c.Addrs[p.Node], p.SA.VirtualIPs[0], how))
	}
	lines = append(lines, fmt.Sprintf("three VPNs on three nodes at most %v after the first was seen up, with the one authentication",
		took.Round(time.Millisecond)))
	return strings.Join(lines, "\n"), nil
}

func (r *ClusterRunner) crash(ctx context.Context) (string, error) {
	c := r.c
	pctx, stop := context.WithCancel(ctx)
	var answered int
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, _ := c.Run(pctx, c.UE, "ping", "-n", "-i", "0.1", "-W", "1", "-I", r.first.VirtualIPs[0], ClusterProtected.String())
		answered = strings.Count(string(out), "bytes from")
	}()
	time.Sleep(time.Second)
	killed := time.Now()
	if err := c.Kill(0); err != nil {
		stop()
		return "", err
	}
	moved, err := c.VPN(20*time.Second, func(x control.SA) bool {
		return x.SPIi == r.first.SPIi && !strings.HasPrefix(x.Remote, c.Addrs[0].String()+":") &&
			len(x.Children) == 1 && x.Children[0].InSPI != r.first.Children[0].InSPI
	})
	if err != nil {
		stop()
		return "", err
	}
	took := time.Since(killed)
	ok := WaitFor(10*time.Second, func() bool { return c.PingFrom(ctx, moved) == nil })
	flowing := time.Since(killed)
	time.Sleep(time.Second)
	stop()
	<-done
	if !ok {
		return "", errors.New("no traffic through the VPN after the takeover")
	}
	holders := c.Holders(r.first.SPIi, r.first.SPIr)
	if len(holders) != 1 {
		return "", fmt.Errorf("the SA is held by nodes %v", holders)
	}
	return fmt.Sprintf(`node %d took the end user's SA over from node 1's record in etcd %v after the kill
(2 s lease): Message IDs resynchronised (RFC 6311), Child SA rekeyed (%08s -> %08s), its address announced,
and the end user moved to %s; traffic again %v after the kill; %d pings answered at 10/s`,
		holders[0]+1, took.Round(10*time.Millisecond), r.first.Children[0].InSPI, moved.Children[0].InSPI, moved.Remote,
		flowing.Round(10*time.Millisecond), answered), nil
}

func (r *ClusterRunner) tables(ctx context.Context) (string, error) {
	st, err := r.c.Mifike(ctx, r.c.GWs[1], "cluster", "status")
	if err != nil {
		return "", err
	}
	return "mifike cluster status, on node 2:\n" + st + "\nmifike list-sas, on the end user:\n" + r.c.UEd.Table(ctx), nil
}
