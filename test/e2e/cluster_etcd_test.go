package e2e

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
)

// etcd's members restarted under a VPN (docs/cluster.md, failure cases):
// the gateway cluster keeps no per-packet state in etcd, so ESP never
// waits for it; what etcd does decide is whether a node may send at all
// (its lease, renewed every third of the TTL, fenced after half of it
// without a renewal).

// pingLog is a ping every 100 ms that keeps, for every reply, its
// sequence number and when it arrived (ping -D).
type pingLog struct {
	cancel context.CancelFunc
	done   chan struct{}
	out    []byte
}

func startPingLog(c *clusterLab, src string) *pingLog {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pingLog{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.out, _ = c.top.Run(ctx, c.top.UE, "ping", "-n", "-D", "-i", "0.1", "-W", "1", "-I", src, demo.ClusterProtected.String())
	}()
	return p
}

var pingReply = regexp.MustCompile(`^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+) `)

// pingStats is what a pingLog saw. Pings after the last answered one
// are not counted as lost: they may have been under way when it ended.
type pingStats struct {
	answered, lost int
	// gap is the longest run of unanswered pings (100 ms each).
	gap int
	// at are the arrival times of the replies, in order.
	at []time.Time
}

func (p *pingLog) stop() pingStats {
	p.cancel()
	<-p.done
	var st pingStats
	seen := map[int]bool{}
	last := 0
	sc := bufio.NewScanner(strings.NewReader(string(p.out)))
	for sc.Scan() {
		m := pingReply.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		sec, _ := strconv.ParseFloat(m[1], 64)
		seq, _ := strconv.Atoi(m[2])
		if !seen[seq] {
			seen[seq] = true
			st.answered++
			st.at = append(st.at, time.Unix(0, int64(sec*1e9)))
			last = max(last, seq)
		}
	}
	run := 0
	for seq := 1; seq <= last; seq++ {
		if seen[seq] {
			run = 0
			continue
		}
		st.lost++
		run++
		st.gap = max(st.gap, run)
	}
	return st
}

// answeredBetween counts replies that arrived in (from, to).
func (s pingStats) answeredBetween(from, to time.Time) int {
	n := 0
	for _, at := range s.at {
		if at.After(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// firstAfter is the first reply after t (zero if none).
func (s pingStats) firstAfter(t time.Time) time.Time {
	for _, at := range s.at {
		if at.After(t) {
			return at
		}
	}
	return time.Time{}
}

// fenceWatch polls every node's cluster status every 100 ms and notes
// every node seen fenced or not joined, so that a fence shorter than
// a log line's notice is caught too.
type fenceWatch struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	seen  map[int][]string // node index -> what was seen, with when
}

func watchFences(c *clusterLab) *fenceWatch {
	w := &fenceWatch{stopc: make(chan struct{}), seen: map[int][]string{}}
	start := time.Now()
	for i := range c.gws {
		w.wg.Go(func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-w.stopc:
					return
				case <-t.C:
				}
				st, err := c.Status(i)
				if err == nil && (st.Fenced || !st.Joined) {
					w.mu.Lock()
					w.seen[i] = append(w.seen[i], fmt.Sprintf("%.1fs: fenced %v, joined %v, %s", time.Since(start).Seconds(), st.Fenced, st.Joined, st.Error))
					w.mu.Unlock()
				}
			}
		})
	}
	return w
}

func (w *fenceWatch) stop() map[int][]string {
	close(w.stopc)
	w.wg.Wait()
	return w.seen
}

// logCounts counts, in every node's log, the lines that say it fenced
// itself or lost its lease.
func (c *clusterLab) logCounts() (fenced, lost []int) {
	for _, g := range c.gws {
		l := g.Log()
		fenced = append(fenced, strings.Count(l, "cluster: fenced"))
		lost = append(lost, strings.Count(l, "lost the lease"))
	}
	return fenced, lost
}

// etcd's members restarted one at a time under a ping stream (a rolling
// restart, as for an upgrade), then two of three stopped at once (the
// quorum lost) and brought back:
//
//   - One member down leaves a quorum: lease renewals go on through the
//     other two, no node fences itself, the SA stays on node 1, and the
//     pings go on (docs/cluster.md: "etcd loses a member: nothing").
//     Nothing on the data path waits for etcd, so no ping should go
//     missing; the test allows 3 (0.3 s of pings) in the whole rolling
//     restart for a loaded machine, and fails on any fence, which is the
//     one way the cluster itself would stop the traffic.
//   - The quorum lost: no node can renew its lease, every node fences
//     itself half a lease (1 s) after its last renewal, and the traffic
//     stops: the price of never letting two nodes send on one SA. etcd
//     expires no lease without a leader, and a new leader extends every
//     lease, so once the quorum is back the nodes renew the leases they
//     had, nobody takes anything over, and the established SA serves
//     again where it was: the same IKE SA, no new authentication. The
//     outage is 6 s, three lease TTLs (a lease that etcd had counted
//     down would be gone), and shorter than anything that would make
//     the end user give up the SA (its configuration has no DPD).
func TestClusterEtcdMembersRestarted(t *testing.T) {
	c := startCluster(t, clusterOpts{prefix: "mfkr"})
	s := c.vpn(t, 30*time.Second, func(control.SA) bool { return true })
	if !strings.HasPrefix(s.Remote, c.addr[0].String()+":") {
		t.Fatalf("the VPN went to %s, want node 1", s.Remote)
	}
	if err := c.ping(t, s); err != nil {
		t.Fatalf("ping through node 1: %v", err)
	}
	c.written(t, 0)
	fenced0, lost0 := c.logCounts()
	if slices.Max(fenced0) != 0 || slices.Max(lost0) != 0 {
		t.Fatalf("a node fenced itself before etcd was touched: fenced %v, lost the lease %v", fenced0, lost0)
	}

	// A rolling restart: each member stopped for 3 s (longer than a
	// lease, so a node whose renewals all went to it would lose its
	// lease), then 5 s to settle (the clients reconnect to it) before
	// the next.
	pings := startPingLog(c, s.VirtualIPs[0])
	watch := watchFences(c)
	time.Sleep(time.Second)
	for m := range 3 {
		if err := c.EtcdStop(m); err != nil {
			t.Fatalf("stopping etcd member %d: %v", m, err)
		}
		time.Sleep(3 * time.Second)
		if h := c.Holders(s.SPIi, s.SPIr); !slices.Equal(h, []int{0}) {
			t.Errorf("etcd member %d stopped: the SA is held by nodes %v (from 0), want node 1 alone", m, h)
		}
		if err := c.EtcdStart(m); err != nil {
			t.Fatalf("restarting etcd member %d: %v", m, err)
		}
		time.Sleep(5 * time.Second)
	}
	rolling := pings.stop()
	seen := watch.stop()
	fenced1, lost1 := c.logCounts()
	t.Logf("rolling restart of etcd's three members: %d pings answered, %d lost (longest gap %d); fences seen %v; log: fenced %v, lost the lease %v",
		rolling.answered, rolling.lost, rolling.gap, seen, fenced1, lost1)
	if len(seen) != 0 || slices.Max(fenced1) != 0 || slices.Max(lost1) != 0 {
		t.Errorf("a node fenced itself with a quorum of etcd members running: status %v; log lines: fenced %v, lost the lease %v", seen, fenced1, lost1)
	}
	if rolling.answered < 100 {
		t.Errorf("only %d pings answered in the rolling restart (about 250 sent)", rolling.answered)
	}
	if rolling.lost > 3 {
		t.Errorf("%d pings lost in the rolling restart (longest gap %d), want at most 3", rolling.lost, rolling.gap)
	}
	if h := c.Holders(s.SPIi, s.SPIr); !slices.Equal(h, []int{0}) {
		t.Fatalf("after the rolling restart the SA is held by nodes %v (from 0), want node 1 alone", h)
	}

	// The quorum lost for 6 s, then back.
	pings = startPingLog(c, s.VirtualIPs[0])
	time.Sleep(time.Second)
	cut := time.Now()
	for _, m := range []int{1, 2} {
		if err := c.EtcdStop(m); err != nil {
			t.Fatalf("stopping etcd member %d: %v", m, err)
		}
	}
	stopped := time.Now()
	if !demo.WaitFor(10*time.Second, func() bool {
		f, _ := c.logCounts()
		return slices.Min(f) >= 1
	}) {
		f, _ := c.logCounts()
		t.Fatalf("without etcd's quorum not every node fenced itself (log lines per node: %v)", f)
	}
	fencedAt := time.Now()
	time.Sleep(6*time.Second - time.Since(stopped))
	back := time.Now()
	if err := c.EtcdStart(1); err != nil {
		t.Fatalf("restarting etcd member 1: %v", err)
	}
	quorum := time.Now()
	resumed := demo.WaitFor(20*time.Second, func() bool { return c.ping(t, s) == nil })
	if err := c.EtcdStart(2); err != nil {
		t.Fatalf("restarting etcd member 2: %v", err)
	}
	time.Sleep(time.Second)
	outage := pings.stop()
	first := outage.firstAfter(fencedAt)
	// What was answered while every node was fenced: nothing, from a
	// moment after the last fence (a reply may be under way) until the
	// quorum was back.
	during := outage.answeredBetween(fencedAt.Add(500*time.Millisecond), back)
	_, lost2 := c.logCounts()
	// A graceful stop waits for the member's streams (the nodes'
	// watches) up to etcd's request timeout: the quorum is lost when
	// the second stop returns, not when the first begins.
	t.Logf("stopping two members took %v; quorum lost for %v; every node fenced %v after the second stop; %d pings answered while fenced; quorum back %v after the restart began; first reply %v after the quorum was back; %d answered, %d lost in all",
		stopped.Sub(cut).Round(10*time.Millisecond), quorum.Sub(stopped).Round(10*time.Millisecond), fencedAt.Sub(stopped).Round(10*time.Millisecond), during,
		quorum.Sub(back).Round(10*time.Millisecond), first.Sub(quorum).Round(10*time.Millisecond), outage.answered, outage.lost)
	if during != 0 {
		t.Errorf("%d pings were answered while every node was fenced", during)
	}
	if !resumed {
		t.Fatalf("the established SA carries no traffic 20 s after etcd's quorum came back:\n%s", c.ue.Table(context.Background()))
	}
	if slices.Max(lost2) != 0 {
		t.Errorf("a node lost its lease over the quorum loss (log lines per node: %v): a new leader should have extended it", lost2)
	}
	if h := c.Holders(s.SPIi, s.SPIr); !slices.Equal(h, []int{0}) {
		t.Errorf("after the quorum loss the SA is held by nodes %v (from 0), want node 1 alone", h)
	}
	// The same IKE SA, not a new one: no new authentication.
	after := c.vpn(t, 5*time.Second, func(control.SA) bool { return true })
	if after.SPIi != s.SPIi || after.SPIr != s.SPIr {
		t.Errorf("after the quorum loss the end user's VPN is IKE SA %s/%s, was %s/%s", after.SPIi, after.SPIr, s.SPIi, s.SPIr)
	}
	for i := range c.gws {
		if !demo.WaitFor(5*time.Second, func() bool {
			st, err := c.Status(i)
			return err == nil && st.Joined && !st.Fenced
		}) {
			st, err := c.Status(i)
			t.Errorf("node %d is not serving after the quorum came back: %+v, %v", i+1, st, err)
		}
	}
}
