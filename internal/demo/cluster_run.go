package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
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

	start time.Time
	c     *Cluster
	first control.SA // the end user's authenticated VPN
}

var clusterTitles = map[string]string{
	"lab":          "Lab built",
	"nodes":        "Three gateway nodes joined the cluster (etcd)",
	"authenticate": "The end user authenticated once; its VPN is on node 1",
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
	return fmt.Sprintf(`end user 10.91.1.2 (knows node 1 only) -- router -- node 1 %s, node 2 %s, node 3 %s
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
	s, err := r.c.VPN(30*time.Second, func(control.SA) bool { return true })
	if err != nil {
		return "", err
	}
	r.first = s
	if err := r.c.PingFrom(ctx, s); err != nil {
		return "", fmt.Errorf("ping through the VPN: %w", err)
	}
	return fmt.Sprintf("IKE SA %s up in %v on %s (node 1); a ping from %s to %s passes",
		s.SPIi, time.Since(t).Round(time.Millisecond), s.Remote, s.VirtualIPs[0], ClusterProtected), nil
}

// spread: node 1 clones the end user's SA twice and hands the clones to
// nodes 2 and 3 (RFC 7791 load sharing), which move them to their own
// addresses and give them a Child SA.
func (r *ClusterRunner) spread(ctx context.Context) (string, error) {
	c := r.c
	var parent control.SA
	l, err := c.GWs[0].SAs()
	if err != nil {
		return "", err
	}
	for _, x := range l {
		if x.SPIi == r.first.SPIi {
			parent = x
		}
	}
	if parent.ID == 0 {
		return "", errors.New("node 1 does not have the end user's SA")
	}
	t := time.Now()
	var lines []string
	for node := 2; node <= 3; node++ {
		known := map[uint64]bool{}
		l, _ := c.GWs[0].SAs()
		for _, x := range l {
			known[x.ID] = true
		}
		if out, err := c.Mifike(ctx, c.GWs[0], "clone", fmt.Sprint(parent.ID)); err != nil {
			return "", fmt.Errorf("clone: %v: %s", err, out)
		}
		var clone control.SA
		if !WaitFor(10*time.Second, func() bool {
			l, _ := c.GWs[0].SAs()
			for _, x := range l {
				if !known[x.ID] && x.Parent == parent.ID && x.State == ike.StateEstablished {
					clone = x
					return true
				}
			}
			return false
		}) {
			return "", fmt.Errorf("node 1's clone did not come up")
		}
		// An SA with exchanges under way is not handed over: retry a
		// moment later (the clone's window statements).
		var out string
		if !WaitFor(10*time.Second, func() bool {
			out, err = c.Mifike(ctx, c.GWs[0], "cluster", "move", fmt.Sprint(clone.ID), fmt.Sprint(node))
			return err == nil
		}) {
			return "", fmt.Errorf("cluster move: %v: %s", err, out)
		}
		var moved control.SA
		if !WaitFor(10*time.Second, func() bool {
			l, _ := c.GWs[node-1].SAs()
			for _, x := range l {
				if x.SPIi == clone.SPIi && x.SPIr == clone.SPIr && strings.HasPrefix(x.Local, c.Addrs[node-1].String()+":") {
					moved = x
					return true
				}
			}
			return false
		}) {
			return "", fmt.Errorf("node %d did not take the clone to its address", node)
		}
		if out, err := c.Mifike(ctx, c.GWs[node-1], "initiate", "roadwarrior", "--child", "lan", "--ike", fmt.Sprint(moved.ID)); err != nil {
			return "", fmt.Errorf("initiate on node %d: %v: %s", node, err, out)
		}
		if _, err := c.VPN(10*time.Second, func(x control.SA) bool {
			return x.SPIi == clone.SPIi && strings.HasPrefix(x.Remote, c.Addrs[node-1].String()+":")
		}); err != nil {
			return "", err
		}
		lines = append(lines, fmt.Sprintf("clone %s made by node 1, handed to node %d, moved to %s, Child SA created there", clone.SPIi, node, c.Addrs[node-1]))
	}
	ue, err := c.UEd.SAs()
	if err != nil {
		return "", err
	}
	var remotes []string
	for _, x := range ue {
		if x.State == ike.StateEstablished && len(x.Children) > 0 {
			remotes = append(remotes, x.Remote)
		}
	}
	slices.Sort(remotes)
	if len(remotes) != 3 {
		return "", fmt.Errorf("the end user has %d VPNs: %v", len(remotes), remotes)
	}
	lines = append(lines, fmt.Sprintf("the end user's VPNs go to %s, in %v, with the one authentication",
		strings.Join(remotes, ", "), time.Since(t).Round(time.Millisecond)))
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
