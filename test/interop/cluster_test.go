package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
)

// newChild is a Child SA other than charon's first, installed.
var newChild = regexp.MustCompile(`lan: #([2-9]|[1-9][0-9]+), reqid \d+, INSTALLED`)

// strongSwan 5.9.8 as the end user of a mifike gateway cluster (the lab
// of `mifike demo cluster`, internal/demo/cluster.go): charon connects to
// node 1, node 1 is killed, a survivor takes the SA over from node 1's
// record in etcd. That needs charon to have announced
// IKEV2_MESSAGE_ID_SYNC_SUPPORTED, to answer the RFC 6311 synchronisation
// (Message ID zero), to take the rekey of its Child SA from the new node,
// and, as the SA's MOBIKE initiator, to move to the new node's address
// when node 1's is gone from the address list (RFC 4555 §3.6). Traffic
// through the tunnel is checked before and after.
func TestStrongSwanClusterTakeOver(t *testing.T) {
	requireRoot(t)
	requireTools(t, charonPath, "swanctl")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	c, err := demo.BuildCluster(ctx, "mfks", dir, mifikeBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.StartNodes(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, g := range c.GWs {
				t.Logf("%s log (tail):\n%s", g.Name, tail([]byte(g.Log()), 25))
			}
		}
	})
	// charon: PSK, no virtual IP (its own address is the inner one),
	// MOBIKE on (the default), the protected address behind the cluster.
	swanctl := fmt.Sprintf(`connections {
 cluster { version = 2
  remote_addrs = %s
  proposals = aes128gcm16-prfsha256-x25519
  local { auth = psk
   id = alice@cluster.example }
  remote { auth = psk
   id = gw.cluster.example }
  children { lan { local_ts = 10.91.1.2/32
    remote_ts = 10.93.0.0/24
    esp_proposals = aes128gcm16 } }
 }
}
secrets { ike-c { id = gw.cluster.example
  secret = "a cluster lab's pre-shared key" } }
`, c.Addrs[0])
	ch := startCharon(t, c.UE, filepath.Join(dir, "swan"), swanctl, nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon log (tail):\n%s", ch.logTail(60))
		}
	})
	ch.swanctl("--initiate", "--ike", "cluster", "--child", "lan", "--timeout", "30")
	run(t, "ip", "-n", c.UE, "route", "add", "10.93.0.0/24", "dev", "ipsec0", "src", "10.91.1.2")
	ping(t, c.UE, "-I", "10.91.1.2", demo.ClusterProtected.String())
	var before control.SA
	l, err := c.GWs[0].SAs()
	if err != nil || len(l) != 1 || len(l[0].Children) != 1 {
		t.Fatalf("node 1's SAs: %+v, %v", l, err)
	}
	before = l[0]

	// Node 1 writes the SA's record at the step after making it.
	if !demo.WaitFor(10*time.Second, func() bool { st, err := c.Status(0); return err == nil && st.Owned >= 1 }) {
		t.Fatal("node 1 wrote no SA record")
	}
	killed := time.Now()
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	var holder int
	if !demo.WaitFor(20*time.Second, func() bool {
		h := c.Holders(before.SPIi, before.SPIr)
		if len(h) == 1 {
			holder = h[0]
		}
		return len(h) == 1
	}) {
		t.Fatalf("no survivor took the SA over")
	}
	claimed := time.Since(killed)
	if !demo.WaitFor(20*time.Second, func() bool {
		// charon keeps a rekeyed Child SA, DELETED, for 5 s
		// (delete_rekeyed_delay): look for the new one installed.
		out, _ := ch.swanctlErr("--list-sas", "--ike", "cluster")
		return strings.Contains(out, "@ "+c.Addrs[holder].String()+"[") && newChild.MatchString(out)
	}) {
		out, _ := ch.swanctlErr("--list-sas")
		t.Fatalf("strongSwan did not move to node %d with a new Child SA:\n%s", holder+1, out)
	}
	took := time.Since(killed)
	if !demo.WaitFor(10*time.Second, func() bool {
		_, err := c.Run(ctx, c.UE, "ping", "-n", "-q", "-c", "1", "-W", "1", "-I", "10.91.1.2", demo.ClusterProtected.String())
		return err == nil
	}) {
		t.Fatalf("no traffic through node %d after the takeover", holder+1)
	}
	var steps []string
	for _, l := range strings.Split(ch.log(), "\n") {
		if strings.Contains(l, "MID sync") || strings.Contains(l, "remote endpoint changed") || strings.Contains(l, "retransmit") ||
			strings.Contains(l, "CHILD_SA lan{2} established") {
			steps = append(steps, strings.TrimSpace(l))
		}
	}
	t.Logf("charon, after the kill at %s:\n%s", killed.Format("15:04:05.000"), strings.Join(steps, "\n"))
	if !strings.Contains(ch.log(), "requested MID sync") {
		t.Error("charon's log does not show the Message ID synchronisation (RFC 6311)")
	}
	t.Logf("node 1 killed; node %d claimed the SA after %v; strongSwan on it (%s) with a new Child SA after %v, traffic passes",
		holder+1, claimed.Round(10*time.Millisecond), c.Addrs[holder], took.Round(10*time.Millisecond))
}

// strongSwan 5.9.8 as a client of a mifike gateway cluster that places
// clients which cannot clone by RFC 5685 redirect at IKE_SA_INIT: node 1
// already holds one SA, so when charon's second connection arrives there
// (it knows node 1 only) node 1 sends it to a node with none; charon
// follows (REDIRECTED_FROM), authenticates there, and traffic passes
// through that node.
func TestStrongSwanClusterRedirect(t *testing.T) {
	requireRoot(t)
	requireTools(t, charonPath, "swanctl")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	c, err := demo.BuildCluster(ctx, "mfkr", dir, mifikeBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.StartNodes(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, g := range c.GWs {
				t.Logf("%s log (tail):\n%s", g.Name, tail([]byte(g.Log()), 25))
			}
		}
	})
	// A second address for the first connection, so that the two IKE
	// SAs are two clients to the gateways.
	run(t, "ip", "-n", c.UE, "addr", "add", "10.91.1.3/24", "dev", "eth0")
	conn := func(name, local string) string {
		return fmt.Sprintf(` %s { version = 2
  local_addrs = %s
  remote_addrs = %s
  proposals = aes128gcm16-prfsha256-x25519
  local { auth = psk
   id = alice@cluster.example }
  remote { auth = psk
   id = gw.cluster.example }
  children { lan { local_ts = %s/32
    remote_ts = 10.93.0.0/24
    esp_proposals = aes128gcm16 } }
 }
`, name, local, c.Addrs[0], local)
	}
	swanctl := "connections {\n" + conn("first", "10.91.1.3") + conn("second", "10.91.1.2") + `}
secrets { ike-c { id = gw.cluster.example
  secret = "a cluster lab's pre-shared key" } }
`
	ch := startCharon(t, c.UE, filepath.Join(dir, "swan"), swanctl, nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon log (tail):\n%s", ch.logTail(60))
		}
	})
	ch.swanctl("--initiate", "--ike", "first", "--child", "lan", "--timeout", "30")
	// Node 1's record of it, and every node's view of the loads, at the
	// next steps.
	if !demo.WaitFor(10*time.Second, func() bool {
		for i := range c.GWs {
			st, err := c.Status(i)
			if err != nil || len(st.Members) != 3 || st.Members[0].SAs != 1 {
				return false
			}
		}
		return true
	}) {
		t.Fatal("the nodes do not see node 1's SA")
	}
	ch.swanctl("--initiate", "--ike", "second", "--child", "lan", "--timeout", "30")
	out, _ := ch.swanctlErr("--list-sas", "--ike", "second")
	holder := -1
	for i, a := range c.Addrs {
		if strings.Contains(out, "@ "+a.String()+"[") {
			holder = i
		}
	}
	if holder <= 0 {
		t.Fatalf("charon's second SA is not on node 2 or 3:\n%s", out)
	}
	if !strings.Contains(ch.log(), "redirect") {
		t.Errorf("charon's log says nothing of a redirect")
	}
	run(t, "ip", "-n", c.UE, "route", "add", "10.93.0.0/24", "dev", "ipsec0", "src", "10.91.1.2")
	ping(t, c.UE, "-I", "10.91.1.2", demo.ClusterProtected.String())
	var lines []string
	for _, l := range strings.Split(ch.log(), "\n") {
		if strings.Contains(strings.ToLower(l), "redirect") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	t.Logf("charon's second connection went to node 1, was redirected to node %d (%s) and passes traffic there; charon:\n%s",
		holder+1, c.Addrs[holder], strings.Join(lines, "\n"))
}
