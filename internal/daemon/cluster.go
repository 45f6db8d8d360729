package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mifike/mifike/internal/cluster"
	"github.com/mifike/mifike/internal/clusterstore"
	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/ike"
)

// clusterNode runs the daemon as one node of a gateway cluster
// (docs/cluster.md): a goroutine of its own talks to etcd through the
// cluster.Coordinator, which reaches the engine only on the event loop
// (loopEngine). Until the node has joined, and whenever it could not
// renew its lease for half its TTL, it is fenced: the daemon sends
// nothing, IKE or ESP.
type clusterNode struct {
	d      *Daemon
	cfg    *config.ClusterConfig
	log    *slog.Logger
	client *clientv3.Client
	st     clusterstore.Store
	sealer *cluster.Sealer
	addrs  []netip.Addr

	mu       sync.Mutex
	events   []ike.Event    // engine events not yet given to the coordinator
	pools    []netip.Prefix // the address pools' prefixes (setPools)
	handOffs chan handOff
	status   clusterStatus
	// kick asks for a step soon: an SA was made or changed, and its
	// record should be written (and a clone placed) now rather than at
	// the next tick. A node that crashes before the record is written
	// takes the SA with it.
	kick chan struct{}
	// redirects chooses the node for new clients (RFC 5685), from the
	// loads of the last step.
	redirects cluster.Redirects

	// fenced is read on the event loop (send) and written there too.
	fenced bool
	// until is when the node must stop sending (unix nanoseconds, 0:
	// now): half a lease after its last renewal. The run goroutine
	// moves it on; the watchdog and send hold to it, whatever the run
	// goroutine is waiting for.
	until atomic.Int64
	// quit asks run to leave the cluster and return; done is closed
	// when it has.
	quit, done chan struct{}
}

// leave ends the membership (the lease revoked, so the others take the
// SAs over at once) and waits, at most a second, for it (on the loop).
func (n *clusterNode) leave() {
	select {
	case <-n.quit:
	default:
		close(n.quit)
	}
	// The node's goroutine may be waiting for the event loop, which is
	// here: serve it meanwhile.
	deadline := time.After(2 * time.Second)
	for {
		select {
		case <-n.done:
			return
		case f := <-n.d.calls:
			f()
		case <-deadline:
			n.log.Warn("cluster: could not leave in time; the others take the SAs over when the lease runs out")
			return
		}
	}
}

type handOff struct {
	id   uint64
	to   uint8
	done chan error
}

// clusterStatus is what `mifike cluster status` shows of this node.
type clusterStatus struct {
	Node   uint8  `json:"node"`
	Name   string `json:"name"`
	Joined bool   `json:"joined"`
	Fenced bool   `json:"fenced"`
	Owned  int    `json:"owned_sas"`
	// Placement is how new clones spread (cluster.placement).
	Placement string             `json:"placement"`
	Members   []cluster.NodeInfo `json:"members"`
	// Revision is the store's revision when the members were read.
	Revision int64  `json:"store_revision"`
	Err      string `json:"error,omitempty"`
}

func newClusterNode(d *Daemon, cfg *config.ClusterConfig, log *slog.Logger) (*clusterNode, error) {
	key, err := cluster.LoadKey(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.key_file: %w", err)
	}
	sealer, err := cluster.NewSealer(key, nil)
	if err != nil {
		return nil, err
	}
	cc := clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 5 * time.Second, Logger: nil}
	if cfg.CACert != "" || cfg.Cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CACert != "" {
			pem, err := os.ReadFile(cfg.CACert)
			if err != nil {
				return nil, fmt.Errorf("cluster.etcd.cacert: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("cluster.etcd.cacert: %s holds no PEM certificate", cfg.CACert)
			}
		}
		if cfg.Cert != "" {
			c, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
			if err != nil {
				return nil, fmt.Errorf("cluster.etcd.cert/key: %w", err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		cc.TLS = tc
	}
	client, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("cluster.etcd: %w", err)
	}
	addrs := cfg.Addrs
	if len(addrs) == 0 {
		for _, a := range d.cfg.Listen {
			if !a.IsUnspecified() {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		client.Close()
		return nil, errors.New("cluster.addrs: required when listen has no specific address: the node's own IKE addresses")
	}
	n := &clusterNode{d: d, cfg: cfg, log: log.With("component", "cluster"), client: client,
		st: clusterstore.NewEtcd(client), sealer: sealer, addrs: addrs, handOffs: make(chan handOff), fenced: true, kick: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	n.status = clusterStatus{Node: cfg.Node, Name: cfg.Name, Fenced: true, Placement: cfg.Placement}
	// No virtual IP is leased before the cluster gave this node a block
	// of the shared pools (cluster/vips.go).
	d.pools.Leases.Fence(nil, nil)
	n.setPools(d.pools)
	if cfg.Redirect {
		d.engine.SetRedirector(n.redirects.Choose)
	}
	return n, nil
}

// setPools records the pools' prefixes for the coordinator (at start and
// at every reload).
func (n *clusterNode) setPools(p *config.Pools) {
	var out []netip.Prefix
	for _, pool := range p.ByName {
		out = append(out, pool.Prefix)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	n.mu.Lock()
	n.pools = out
	n.mu.Unlock()
}

// event queues an engine event for the coordinator (on the loop).
func (n *clusterNode) event(ev ike.Event) {
	n.mu.Lock()
	n.events = append(n.events, ev)
	n.mu.Unlock()
	switch ev.Kind {
	case ike.EventIKEUp, ike.EventIKECloned, ike.EventIKERekeyed, ike.EventChildUp, ike.EventChildRekeyed:
		select {
		case n.kick <- struct{}{}:
		default:
		}
	}
}

// minStep is the shortest time between two steps a kick makes.
const minStep = 50 * time.Millisecond

// setFenced changes whether the daemon may send (on the loop). Fenced,
// every Child SA stops sending in the data plane too; unfenced, they
// send again as the engine has them.
func (n *clusterNode) setFenced(f bool) {
	if !f && time.Now().UnixNano() >= n.until.Load() {
		return // the time is up again already
	}
	if f == n.fenced {
		return
	}
	n.fenced = f
	if f {
		n.log.Warn("cluster: fenced: no lease renewal for half the lease time; sending nothing")
	} else {
		n.log.Info("cluster: serving")
	}
	for spi, c := range n.d.children {
		if f {
			c.outbound = false
		}
		n.d.planeAction(ike.UpdateChild{SA: c.sa(spi)})
	}
}

// run is the node's goroutine: join, then step every lease/6.
func (n *clusterNode) run(ctx context.Context) {
	defer close(n.done)
	defer n.client.Close()
	go n.watchdog(ctx)
	cfg := cluster.Config{Name: n.cfg.Name, Node: n.cfg.Node, Addrs: n.addrs, TTL: n.cfg.Lease}
	every := max(n.cfg.Lease/6, 100*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var coord *cluster.Coordinator
	defer func() {
		if coord != nil {
			coord.Close()
		}
	}()
	eng := loopEngine{d: n.d}
	for {
		if coord == nil {
			jctx, cancel := context.WithTimeout(ctx, n.cfg.Lease)
			member, err := cluster.Join(jctx, n.st, cfg, time.Now())
			cancel()
			if err != nil {
				n.setStatus(func(s *clusterStatus) { s.Joined, s.Err = false, err.Error() })
				n.log.Warn("cluster: cannot join", "err", err)
			} else {
				n.until.Store(member.ServingUntil().UnixNano())
				coord = cluster.NewCoordinator(member, n.sealer, eng, n.log)
				placement, _ := cluster.ParsePlacement(n.cfg.Placement) // checked by config
				coord.SetPlacement(placement)
				coord.OnRenewed(func(until time.Time) { n.until.Store(until.UnixNano()) })
				coord.OnMembers(func(addrs []netip.Addr) {
					eng.do(func() { n.d.apply(n.d.engine.SetClusterAddresses(time.Now(), addrs)) })
				})
				// Serving starts after the first step, which gets the
				// node its blocks of the address pools.
				n.log.Info("cluster: joined", "name", n.cfg.Name, "node", n.cfg.Node, "addrs", n.addrs)
			}
		}
		if coord != nil {
			n.mu.Lock()
			pools := n.pools
			n.mu.Unlock()
			coord.SetPools(pools, func(blocks []netip.Prefix, reserved []netip.Addr) {
				n.d.post(func() { n.d.pools.Leases.Fence(blocks, reserved) })
			})
			n.feed(coord)
			sctx, cancel := context.WithTimeout(ctx, n.cfg.Lease/3)
			began := time.Now()
			_, err := coord.Step(sctx, began)
			cancel()
			if took := time.Since(began); took > n.cfg.Lease/3 {
				n.log.Warn("cluster: a step took long", "took", took.Round(time.Millisecond), "err", err)
			}
			switch {
			case errors.Is(err, cluster.ErrFenced) && !coord.Node().Joined():
				// The lease expired: the others may have taken every SA
				// this node had. Drop them all without a word (another
				// node answers the peers now), and join again as a new
				// member.
				n.log.Warn("cluster: lost the lease; dropping every SA and joining again")
				n.d.post(func() {
					n.setFenced(true)
					for _, s := range n.d.engine.IKESAs() {
						acts, _ := n.d.engine.Forget(time.Now(), s.ID)
						n.d.apply(acts)
					}
				})
				coord.Close()
				coord = nil
			case errors.Is(err, cluster.ErrFenced):
				n.d.post(func() { n.setFenced(true) })
			case err != nil:
				n.log.Warn("cluster: step", "err", err)
			default:
				n.until.Store(coord.Node().ServingUntil().UnixNano())
				n.d.post(func() { n.setFenced(false) })
			}
			mctx, cancel := context.WithTimeout(ctx, n.cfg.Lease/3)
			ms, rev, merr := cluster.MembersAt(mctx, n.st, cfg)
			cancel()
			owned := coord != nil && err == nil
			var loads map[uint8]int
			if coord != nil {
				loads = coord.Loads()
			}
			for i := range ms {
				ms[i].SAs = loads[ms[i].ID]
			}
			if merr == nil && coord != nil {
				n.redirects.Update(n.cfg.Node, loads, ms)
			}
			n.setStatus(func(s *clusterStatus) {
				s.Joined, s.Fenced = coord != nil, err != nil
				if owned {
					s.Owned = coord.Owned()
				}
				if merr == nil {
					s.Members, s.Revision = ms, rev
				}
				s.Err = ""
				if err != nil {
					s.Err = err.Error()
				}
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-n.quit:
			if coord != nil {
				// Write the SAs not written yet (one made a moment ago),
				// then leave: the others take them all over at once.
				lctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
				n.feed(coord)
				coord.Flush(lctx, time.Now())
				coordLeave(lctx, coord)
				cancel()
			}
			return
		case <-tick.C:
		case <-n.kick:
			// Events come in bursts (an SA and its Child SA): one step
			// for the burst, a moment later.
			select {
			case <-time.After(minStep):
			case <-ctx.Done():
				return
			}
		case h := <-n.handOffs:
			if coord == nil {
				h.done <- errors.New("this node has not joined the cluster")
				continue
			}
			hctx, cancel := context.WithTimeout(ctx, n.cfg.Lease)
			_, err := coord.HandOff(hctx, time.Now(), h.id, h.to)
			cancel()
			h.done <- err
		}
	}
}

// watchdog fences the node when its time is up (until), checking every
// 50 ms: the run goroutine may be stuck on etcd meanwhile.
func (n *clusterNode) watchdog(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.done:
			return
		case <-t.C:
			if time.Now().UnixNano() >= n.until.Load() {
				n.d.post(func() {
					if time.Now().UnixNano() >= n.until.Load() {
						n.setFenced(true)
					}
				})
			}
		}
	}
}

// mayServe is the send-time check (on the loop).
func (n *clusterNode) mayServe() bool {
	return !n.fenced && time.Now().UnixNano() < n.until.Load()
}

// feed gives the coordinator the engine events queued since the last
// time.
func (n *clusterNode) feed(coord *cluster.Coordinator) {
	n.mu.Lock()
	evs := n.events
	n.events = nil
	n.mu.Unlock()
	for _, ev := range evs {
		coord.Event(ev)
	}
}

// coordLeave ends the membership at shutdown: the others take the
// node's SAs at once instead of waiting for the lease (the SAs were
// deleted with their peers already).
func coordLeave(ctx context.Context, c *cluster.Coordinator) { _ = c.Node().Leave(ctx) }

func (n *clusterNode) setStatus(f func(*clusterStatus)) {
	n.mu.Lock()
	f(&n.status)
	n.mu.Unlock()
}

// Status is this node's view of the cluster.
func (n *clusterNode) Status() clusterStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.status
	s.Members = append([]cluster.NodeInfo(nil), s.Members...)
	return s
}

// HandOff gives IKE SA id to node to (mifike cluster move).
func (n *clusterNode) HandOff(ctx context.Context, id uint64, to uint8) error {
	h := handOff{id: id, to: to, done: make(chan error, 1)}
	select {
	case n.handOffs <- h:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-h.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loopEngine is the engine as the coordinator's goroutine reaches it:
// every call runs on the event loop, and the engine's actions are
// carried out there at once.
type loopEngine struct{ d *Daemon }

func (l loopEngine) do(f func()) {
	done := make(chan struct{})
	select {
	case l.d.calls <- func() { f(); close(done) }:
		<-done
	case <-l.d.stopped:
	}
}

func (l loopEngine) IKESAs() (out []ike.IKESAInfo) {
	l.do(func() { out = l.d.engine.IKESAs() })
	return out
}

func (l loopEngine) Export(id uint64) (b []byte, err error) {
	err = errors.New("daemon stopped")
	l.do(func() { b, err = l.d.engine.Export(id) })
	return b, err
}

func (l loopEngine) Adopt(now time.Time, b []byte, local netip.Addr, away []netip.Addr) (id uint64, _ []ike.Action, err error) {
	err = errors.New("daemon stopped")
	l.do(func() {
		var acts []ike.Action
		id, acts, err = l.d.engine.Adopt(time.Now(), b, local, away)
		l.d.apply(acts)
	})
	return id, nil, err
}

func (l loopEngine) TakeOver(now time.Time, b []byte, local netip.Addr) (id uint64, _ []ike.Action, err error) {
	err = errors.New("daemon stopped")
	l.do(func() {
		var acts []ike.Action
		id, acts, err = l.d.engine.TakeOver(time.Now(), b, local)
		l.d.apply(acts)
	})
	return id, nil, err
}

func (l loopEngine) Forget(now time.Time, id uint64) (_ []ike.Action, err error) {
	err = errors.New("daemon stopped")
	l.do(func() {
		var acts []ike.Action
		acts, err = l.d.engine.Forget(time.Now(), id)
		l.d.apply(acts)
	})
	return nil, err
}
