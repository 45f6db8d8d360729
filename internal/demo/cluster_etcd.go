package demo

import (
	"fmt"

	"github.com/mifike/mifike/internal/etcdlab"
)

// EtcdStop stops the lab's etcd member i (from 0; its data stays): a
// graceful stop, as for maintenance.
func (c *Cluster) EtcdStop(i int) error {
	return etcdlab.Control(c.EtcdControl, fmt.Sprintf("stop %d", i))
}

// EtcdStart starts stopped member i again from its data directory and
// returns once it serves (which takes a quorum of members running).
func (c *Cluster) EtcdStart(i int) error {
	return etcdlab.Control(c.EtcdControl, fmt.Sprintf("start %d", i))
}

// PSK is the pre-shared key of the lab's connection (the benchmark's
// load generator authenticates with it as the end user does).
func (c *Cluster) PSK() string { return clusterPSK }
