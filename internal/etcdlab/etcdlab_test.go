package etcdlab

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// client is a client of the given endpoints, closed with the test.
func client(t *testing.T, eps ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// put writes k=v, with time enough for an election on a loaded machine.
func put(c *clientv3.Client, k, v string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Put(ctx, k, v)
	return err
}

// get reads k linearizably (through the leader: the member answering
// has caught up with every write the cluster made before).
func get(t *testing.T, c *clientv3.Client, k string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.Get(ctx, k)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if len(r.Kvs) == 0 {
		return ""
	}
	return string(r.Kvs[0].Value)
}

// A member stopped and restarted from its data directory (what the
// cluster's end-to-end test does under a VPN, test/e2e/
// cluster_etcd_test.go): with one of three stopped the others go on
// writing; restarted, the member has what was written meanwhile. With
// two stopped there is no quorum and no write succeeds; once one is
// back, writes succeed again and a lease granted before the outage is
// still there, though the outage lasted longer than its TTL: leases
// expire only under a leader, and a new leader extends them all (the
// gateway cluster's fencing counts on it, docs/cluster.md).
func TestStopRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no embedded etcd")
	}
	c, err := Start(t.TempDir(), 3, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eps := c.Endpoints()
	all := client(t, eps...)
	if err := put(all, "before", "1"); err != nil {
		t.Fatal(err)
	}
	// Member 0 through the control socket, as mifike lab-etcd's.
	sock := filepath.Join(t.TempDir(), "control")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go c.Serve(l)
	for _, bad := range []string{"start 0", "stop 3", "stop", "reboot 1"} {
		if err := Control(sock, bad); err == nil {
			t.Fatalf("%q succeeded", bad)
		}
	}
	if err := Control(sock, "stop 0"); err != nil {
		t.Fatal(err)
	}
	if c.Running(0) || !c.Running(1) {
		t.Fatal("Running does not say which member is stopped")
	}
	if err := put(all, "while-0-stopped", "2"); err != nil {
		t.Fatalf("a write with one member of three stopped: %v", err)
	}
	if err := Control(sock, "start 0"); err != nil {
		t.Fatal(err)
	}
	if v := get(t, client(t, eps[0]), "while-0-stopped"); v != "2" {
		t.Fatalf("the restarted member reads %q", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	lease, err := all.Grant(ctx, 2)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(1)
	c.Stop(2)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	_, err = all.Put(ctx, "no-quorum", "3")
	cancel()
	if err == nil {
		t.Fatal("a write succeeded with two members of three stopped")
	}
	time.Sleep(3 * time.Second) // longer than the lease's TTL
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	if err := put(all, "after", "4"); err != nil {
		t.Fatalf("a write with the quorum back: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	_, err = all.KeepAliveOnce(ctx, lease.ID)
	cancel()
	if err != nil {
		t.Fatalf("the lease after the outage: %v", err)
	}
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	if v := get(t, client(t, eps[2]), "after"); v != "4" {
		t.Fatalf("member 2 restarted last reads %q", v)
	}
}
