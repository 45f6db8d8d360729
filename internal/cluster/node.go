package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/clusterstore"
)

// Config is a node's part in the cluster.
type Config struct {
	// Name is the cluster's: every key is under /mifike/<Name>/.
	Name string
	// Node is this node's ID, 1 to 255; it is the first octet of every
	// SPI the node makes, so SPIs are unique cluster-wide (RFC 6027
	// §3.8 asks that a cluster's SPIs not collide).
	Node uint8
	// Addrs are the node's own IKE addresses: announced to clients
	// (ADDITIONAL_IP4/6_ADDRESS) and where SAs handed to it move.
	Addrs []netip.Addr
	// TTL is the node's lease: the node is dead for the others once it
	// has not renewed for that long (default 2 s; etcd counts whole
	// seconds).
	TTL time.Duration
}

func (c Config) ttl() time.Duration {
	if c.TTL <= 0 {
		return 2 * time.Second
	}
	return c.TTL
}

// prefix is the cluster's key prefix.
func (c Config) prefix() string { return "/mifike/" + c.Name + "/" }

// NodeKey is where node id's membership record lives.
func (c Config) NodeKey(id uint8) string { return fmt.Sprintf("%snodes/%03d", c.prefix(), id) }

// NodeInfo is a node's membership record (nodes/<id>, tied to its lease).
type NodeInfo struct {
	ID    uint8        `json:"id"`
	Addrs []netip.Addr `json:"addrs"`
	// SAs is how many IKE SAs the node owns, for placement.
	SAs int `json:"sas"`
}

// Node is this node's membership: its lease, renewed by Tick, and
// fencing. A node that could not renew its lease for half its TTL stops
// serving (Tick returns false): by then the others may take its SAs as
// soon as the lease expires at the store, which is no earlier than a
// full TTL after the last renewal that succeeded; the half TTL between
// is the margin for clocks that run at different rates. etcd only
// extends leases on a change of leader, never shortens them.
type Node struct {
	cfg   Config
	st    clusterstore.Store
	lease clusterstore.Lease
	rev   int64 // the membership record's revision
	// renewed is when the last successful renewal was started (not
	// when it returned: the store's TTL counts from no earlier).
	renewed time.Time
}

// ErrFenced: the node lost its lease; it must not send on its SAs. It
// may Join again (as a new member) once the store is reachable.
var ErrFenced = errors.New("cluster: this node lost its lease and is fenced")

// Join registers the node: a lease and nodes/<id> under it. It fails
// if a live node already has the ID.
func Join(ctx context.Context, st clusterstore.Store, cfg Config, now time.Time) (*Node, error) {
	if cfg.Node == 0 {
		return nil, errors.New("cluster: node ID 0 is not valid; use 1 to 255")
	}
	if strings.ContainsAny(cfg.Name, "/\x00") || cfg.Name == "" {
		return nil, fmt.Errorf("cluster: %q is not a cluster name (no slashes)", cfg.Name)
	}
	n := &Node{cfg: cfg, st: st}
	lease, err := st.Grant(ctx, cfg.ttl())
	if err != nil {
		return nil, fmt.Errorf("cluster: lease: %w", err)
	}
	info, _ := json.Marshal(NodeInfo{ID: cfg.Node, Addrs: cfg.Addrs})
	rev, err := st.Put(ctx, cfg.NodeKey(cfg.Node), info, 0, lease)
	if errors.Is(err, clusterstore.ErrConflict) {
		st.Revoke(ctx, lease)
		return nil, fmt.Errorf("cluster: node %d is already a member (another node with this ID is alive, or was until less than %v ago)", cfg.Node, cfg.ttl())
	}
	if err != nil {
		st.Revoke(ctx, lease)
		return nil, err
	}
	n.lease, n.rev, n.renewed = lease, rev, now
	return n, nil
}

// Joined reports whether the node still has its lease (false once it
// expired or the node left: it must Join again).
func (n *Node) Joined() bool { return n.lease != 0 }

// Lease is the node's lease, for keys that must go with it.
func (n *Node) Lease() clusterstore.Lease { return n.lease }

// Config is the node's configuration.
func (n *Node) Config() Config { return n.cfg }

// ServingUntil is when the node must stop sending unless it renews its
// lease again: half a TTL after the last successful renewal started. A
// host enforces it at its own pace (a send-time check, a timer), so a
// renewal stuck on an unreachable store does not delay the fence.
func (n *Node) ServingUntil() time.Time {
	if n.lease == 0 {
		return time.Time{}
	}
	return n.renewed.Add(n.cfg.ttl() / 2)
}

// Serving reports whether the node may still send on its SAs at now.
func (n *Node) Serving(now time.Time) bool {
	return n.lease != 0 && now.Sub(n.renewed) < n.cfg.ttl()/2
}

// Tick renews the lease when at least TTL/8 has passed since the last
// renewal (so at every TTL/6 tick, and no more often than that when a
// host also steps between ticks), and reports whether the node may
// still serve. Call it every TTL/6.
//
// Renewing at every tick, each try given a tick, leaves two tries
// before the fence at TTL/2: one renewal that fails or hangs (the etcd
// member it went to stopping, a change of leader) is followed by
// another a tick later, well before the fence. Renewing every TTL/3
// left one try: a retry only at TTL/2, racing the fence, and a node
// fenced itself whenever an etcd member of three was restarted
// (test/e2e/cluster_etcd_test.go).
func (n *Node) Tick(ctx context.Context, now time.Time) error {
	if n.lease == 0 {
		return ErrFenced
	}
	if now.Sub(n.renewed) >= n.cfg.ttl()/8 {
		ctx, cancel := context.WithTimeout(ctx, n.cfg.ttl()/6)
		err := n.st.Renew(ctx, n.lease)
		cancel()
		switch {
		case err == nil:
			n.renewed = now
		case errors.Is(err, clusterstore.ErrLeaseExpired):
			n.lease = 0
			return ErrFenced
		}
	}
	if !n.Serving(now) {
		return ErrFenced
	}
	return nil
}

// Leave ends the membership at once (the others take the node's SAs
// without waiting for the lease to run out).
func (n *Node) Leave(ctx context.Context) error {
	if n.lease == 0 {
		return nil
	}
	err := n.st.Revoke(ctx, n.lease)
	n.lease = 0
	return err
}

// Members are the live nodes, in ID order.
func Members(ctx context.Context, st clusterstore.Store, cfg Config) ([]NodeInfo, error) {
	m, _, err := MembersAt(ctx, st, cfg)
	return m, err
}

// MembersAt is Members and the store revision they were read at (each
// write to the store moves it on by one: how many writes the cluster
// makes shows in it).
func MembersAt(ctx context.Context, st clusterstore.Store, cfg Config) ([]NodeInfo, int64, error) {
	vs, rev, err := st.List(ctx, cfg.prefix()+"nodes/")
	if err != nil {
		return nil, 0, err
	}
	var out []NodeInfo
	for _, v := range vs {
		var ni NodeInfo
		if json.Unmarshal(v.Data, &ni) == nil && ni.ID != 0 {
			out = append(out, ni)
		}
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return int(a.ID) - int(b.ID) })
	return out, rev, nil
}
