//go:build linux

package mptcp

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// inNewNS runs fn on a thread in a new named network namespace of its
// own (removed afterwards), and gives fn its name for ip -n.
func inNewNS(t *testing.T, fn func(name string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace of its own (CI runs as root)")
	}
	name := fmt.Sprintf("mfkmp-%d", os.Getpid())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		h, err := netns.NewNamed(name)
		if err != nil {
			t.Errorf("new namespace: %v", err)
			return
		}
		defer h.Close()
		defer netns.DeleteNamed(name)
		fn(name)
	}()
	<-done
}

func ipShow(t *testing.T, ns string, what ...string) string {
	out, err := exec.Command("ip", append([]string{"-n", ns, "mptcp"}, what...)...).CombinedOutput()
	if err != nil {
		t.Errorf("ip mptcp %v: %v: %s", what, err, out)
	}
	return string(out)
}

// What the path manager does with our messages, read back both by us and
// by iproute2 (ip mptcp), which speaks the same family independently.
func TestPathManagerEndpointsAndLimits(t *testing.T) {
	inNewNS(t, func(ns string) {
		pm, err := Open()
		if err != nil {
			t.Skipf("no MPTCP here: %v", err)
		}
		if err := pm.SetLimits(8, -1); err != nil {
			t.Fatal(err)
		}
		l, err := pm.Limits()
		if err != nil || l.Subflows != 8 {
			t.Fatalf("limits %+v, %v; want 8 subflows", l, err)
		}
		if err := pm.SetLimits(-1, 3); err != nil {
			t.Fatal(err)
		}
		if l, _ := pm.Limits(); l != (Limits{Subflows: 8, AddAddrAccepted: 3}) {
			t.Fatalf("limits %+v after setting add_addr_accepted alone", l)
		}
		if s := ipShow(t, ns, "limits"); !strings.Contains(s, "subflows 8") || !strings.Contains(s, "add_addr_accepted 3") {
			t.Fatalf("ip mptcp limits: %s", s)
		}
		a, b := netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd00::3")
		if err := pm.Add(a, FlagSubflow); err != nil {
			t.Fatal(err)
		}
		if err := pm.Add(b, FlagSubflow|FlagBackup); err != nil {
			t.Fatal(err)
		}
		eps, err := pm.Endpoints()
		if err != nil || len(eps) != 2 {
			t.Fatalf("endpoints %v, %v", eps, err)
		}
		by := map[netip.Addr]Endpoint{}
		for _, e := range eps {
			by[e.Addr] = e
		}
		if by[a].Flags != FlagSubflow || by[b].Flags != FlagSubflow|FlagBackup || by[a].ID == 0 || by[a].ID == by[b].ID {
			t.Fatalf("endpoints %v", eps)
		}
		s := ipShow(t, ns, "endpoint", "show")
		if !strings.Contains(s, fmt.Sprintf("10.99.0.2 id %d subflow", by[a].ID)) || !strings.Contains(s, fmt.Sprintf("fd00::3 id %d subflow backup", by[b].ID)) {
			t.Fatalf("ip mptcp endpoint show:\n%s", s)
		}
		// A VPN moved onto a metered link: its endpoint becomes backup.
		if err := pm.SetBackup(by[a], true); err != nil {
			t.Fatal(err)
		}
		if err := pm.SetBackup(by[b], false); err != nil {
			t.Fatal(err)
		}
		s = ipShow(t, ns, "endpoint", "show")
		if !strings.Contains(s, "10.99.0.2 id "+fmt.Sprint(by[a].ID)+" subflow backup") || strings.Contains(s, "fd00::3 id "+fmt.Sprint(by[b].ID)+" subflow backup") {
			t.Fatalf("after changing the flags:\n%s", s)
		}
		for _, e := range eps {
			if err := pm.Delete(e); err != nil {
				t.Fatal(err)
			}
		}
		if eps, err := pm.Endpoints(); err != nil || len(eps) != 0 {
			t.Fatalf("after deleting: %v, %v", eps, err)
		}
		if err := pm.Delete(by[a]); err == nil {
			t.Fatal("deleting a missing endpoint succeeded")
		}
	})
}
