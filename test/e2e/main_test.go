// Package e2e checks every requirement of the multiple-interfaces problem
// statement (draft-mglt-mif-security-requirements, the seeds' 004) end to
// end: real mifike daemons in the demo lab's namespaces, asserting
// traffic, not only SA state.
package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
)

var mifikeBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "mifike-e2e-bin")
			if err == nil {
				defer os.RemoveAll(dir)
				mifikeBin, err = demo.BuildBinary(dir)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// lab builds the demo topology and starts both daemons with o.
func lab(t *testing.T, o demo.Options) (*demo.Topology, *demo.Daemon, *demo.Daemon) {
	t.Helper()
	return startLab(t, "mfke", o, nil)
}

// buildLab builds the demo topology under prefix, without daemons; it
// is removed when the test ends.
func buildLab(t *testing.T, prefix string) (context.Context, *demo.Topology) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces (CI runs as root)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	top, err := demo.Build(ctx, prefix, t.TempDir(), mifikeBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { top.Close() })
	return ctx, top
}

// startLab builds the topology under prefix, runs before on it (a NAT,
// a filter the daemons must meet from their start), starts both daemons
// with o, and logs the ends of their logs if the test fails.
func startLab(t *testing.T, prefix string, o demo.Options, before func(context.Context, *demo.Topology) error) (*demo.Topology, *demo.Daemon, *demo.Daemon) {
	t.Helper()
	ctx, top := buildLab(t, prefix)
	if before != nil {
		if err := before(ctx, top); err != nil {
			t.Fatal(err)
		}
	}
	ue, gw, err := top.StartBoth(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("end user log (tail):\n%s", tail(ue.Log(), 60))
			t.Logf("gateway log (tail):\n%s", tail(gw.Log(), 30))
		}
	})
	return top, ue, gw
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func sas(t *testing.T, d *demo.Daemon) []control.SA {
	t.Helper()
	l, err := d.SAs()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// vpns are the established IKE SAs with at least one Child SA, by the
// interface their path is pinned to (or whose address they use); two on
// one interface show as "eth0#2".
func vpns(t *testing.T, d *demo.Daemon) map[string]control.SA {
	out := map[string]control.SA{}
	for _, s := range sas(t, d) {
		if s.State != ike.StateEstablished || len(s.Children) == 0 {
			continue
		}
		k := demo.IfaceOf(s)
		for n := 2; ; n++ {
			if _, dup := out[k]; !dup {
				break
			}
			k = fmt.Sprintf("%s#%d", demo.IfaceOf(s), n)
		}
		out[k] = s
	}
	return out
}

func waitVPNs(t *testing.T, d *demo.Daemon, want []string, timeout time.Duration) map[string]control.SA {
	t.Helper()
	var got map[string]control.SA
	if !demo.WaitFor(timeout, func() bool {
		got = vpns(t, d)
		if len(got) != len(want) {
			return false
		}
		for _, w := range want {
			if _, ok := got[w]; !ok {
				return false
			}
		}
		return true
	}) {
		var have []string
		for k := range got {
			have = append(have, k)
		}
		t.Fatalf("VPNs on %v, want %v:\n%s", have, want, d.Table(context.Background()))
	}
	return got
}

// pingThrough pings the server from the VPN's inner address and checks
// the VPN's Child SA carried it.
func pingThrough(t *testing.T, top *demo.Topology, d *demo.Daemon, s control.SA) {
	t.Helper()
	src := ""
	if len(s.VirtualIPs) > 0 {
		src = s.VirtualIPs[0]
	}
	before := packetsOut(t, d, s.ID)
	if err := top.Ping(context.Background(), top.UE, src, demo.Server); err != nil {
		addrs, _ := top.Run(context.Background(), top.UE, "ip", "addr", "show", "mifike0")
		t.Fatalf("ping from %s (IKE SA %d): %v\n%s\n%s", src, s.ID, err, addrs, d.Table(context.Background()))
	}
	if after := packetsOut(t, d, s.ID); after < before+3 {
		t.Fatalf("IKE SA %d's Child SA sent %d packets for 3 pings from %s", s.ID, after-before, src)
	}
}

func packetsOut(t *testing.T, d *demo.Daemon, id uint64) uint64 {
	var n uint64
	for _, s := range sas(t, d) {
		if s.ID == id {
			for _, c := range s.Children {
				n += c.PacketsOut
			}
		}
	}
	return n
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
