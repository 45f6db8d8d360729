// Package etcdlab runs a real etcd cluster in-process, from etcd's own
// embeddable server (go.etcd.io/etcd/server/v3/embed), for the cluster
// tests, the demo and the benchmarks. Production points mifike at an
// existing etcd cluster instead; nothing here is used by the daemon.
package etcdlab

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is n etcd members on loopback, each with a data directory of
// its own under Dir.
type Cluster struct {
	Dir     string
	mu      sync.Mutex
	members []*member
	token   string
	initial string
	opts    Options // what the members were started with, for Restart
}

type member struct {
	name               string
	dir                string
	peerURL, clientURL url.URL
	e                  *embed.Etcd
}

// Options tune the members. Zero values are etcd's defaults, except
// compaction, which keeps an hour of history (RFC 7791 §8's keys at
// rest are rewritten at every rekey; without compaction the history
// would grow without bound).
type Options struct {
	// TickMs and ElectionMs are etcd's heartbeat and election timeout.
	TickMs, ElectionMs uint
	// Compaction is the retention of periodic compaction (default 1h).
	Compaction string
	// Host is the address the members listen on (default 127.0.0.1).
	Host string
}

// Start starts an n-member cluster (n = 3 tolerates one member down)
// and waits until it serves. Ports are chosen free just before, so
// another process may take one first: then it starts over with others,
// a few times.
func Start(dir string, n int, o Options) (*Cluster, error) {
	var err error
	for try := range 5 {
		var c *Cluster
		if c, err = start(filepath.Join(dir, fmt.Sprintf("try%d", try)), n, o); err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	return nil, err
}

func start(dir string, n int, o Options) (*Cluster, error) {
	c := &Cluster{Dir: dir, token: fmt.Sprintf("mifike-lab-%d", time.Now().UnixNano()), opts: o}
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	var peers []string
	for i := range n {
		pp, err := freePort(host)
		if err != nil {
			return nil, err
		}
		cp, err := freePort(host)
		if err != nil {
			return nil, err
		}
		m := &member{name: fmt.Sprintf("m%d", i), dir: filepath.Join(dir, fmt.Sprintf("m%d", i)),
			peerURL:   url.URL{Scheme: "http", Host: net.JoinHostPort(host, fmt.Sprint(pp))},
			clientURL: url.URL{Scheme: "http", Host: net.JoinHostPort(host, fmt.Sprint(cp))}}
		c.members = append(c.members, m)
		peers = append(peers, m.name+"="+m.peerURL.String())
	}
	c.initial = strings.Join(peers, ",")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Go(func() { errs[i] = c.startMember(m, embed.ClusterStateFlagNew) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startMember(m *member, state string) error {
	o := c.opts
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = m.name, m.dir
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{m.peerURL}, []url.URL{m.peerURL}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{m.clientURL}, []url.URL{m.clientURL}
	cfg.InitialCluster, cfg.InitialClusterToken, cfg.ClusterState = c.initial, c.token, state
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(c.Dir, m.name+".log")}
	if o.TickMs > 0 {
		cfg.TickMs = o.TickMs
	}
	if o.ElectionMs > 0 {
		cfg.ElectionMs = o.ElectionMs
	}
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = o.Compaction
	if cfg.AutoCompactionRetention == "" {
		cfg.AutoCompactionRetention = "1h"
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcdlab: member %s: %w", m.name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcdlab: member %s: %w", m.name, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("etcdlab: member %s not ready after 60 s", m.name)
	}
	c.mu.Lock()
	m.e = e
	c.mu.Unlock()
	return nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.clientURL.String())
	}
	return out
}

// Members is how many members the cluster has (running or stopped).
func (c *Cluster) Members() int { return len(c.members) }

// Running reports whether member i is running.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].e != nil
}

// Stop stops member i (its data stays, for Restart). It is etcd's
// graceful stop: client connections are closed (the clients go to
// the other members) and a leader hands its leadership to a peer
// before it goes, as a member restarted for maintenance would.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	e := c.members[i].e
	c.members[i].e = nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts stopped member i again from its data directory, on
// the same URLs and with the options the cluster was started with; it
// returns once the member serves, which takes a quorum of members
// running (with two of three stopped, restarting one is enough).
// Restarting a running member is an error.
func (c *Cluster) Restart(i int) error {
	if c.Running(i) {
		return fmt.Errorf("etcdlab: member %s is running", c.members[i].name)
	}
	return c.startMember(c.members[i], embed.ClusterStateFlagExisting)
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
}

// freePort is a TCP port of host nobody listens on now.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
