package netsim

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/manager"
)

// An interface's changes are announced as the kernel announces them, and
// what it carries follows its state: carrier and administrative state the
// host sees, a silent link it does not.
func TestInterfaces(t *testing.T) {
	n := New(1)
	a, err := n.AddNode("a", ike.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddNode("b", ike.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var seen []manager.HostEvent
	a.OnHost = func(ev manager.HostEvent) { seen = append(seen, ev) }
	wlan, peer := netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.9.0.1")
	b.AddAddr(peer)
	a.AddInterface("wlan0", wlan)
	up := net.FlagUp | net.FlagRunning | net.FlagBroadcast | net.FlagMulticast
	want := []manager.HostEvent{
		manager.LinkEvent{Index: 2, Name: "wlan0", Flags: up},
		manager.AddrEvent{Index: 2, Addr: wlan},
	}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("announced %v, want %v", seen, want)
	}
	var host manager.Host
	host.Reset(a.Links())
	if got := host.Interfaces(func(string) bool { return false }); len(got) != 1 || !got[0].Up || got[0].Addrs[0] != wlan {
		t.Fatalf("a full read gives %+v", got)
	}
	out := ike.Datagram{Local: netip.AddrPortFrom(wlan, 4500), Remote: netip.AddrPortFrom(peer, 4500)}
	back := ike.Datagram{Local: out.Remote, Remote: out.Local}
	carried := func() bool { return n.Delivers(out) && n.Delivers(back) }
	if !carried() {
		t.Fatal("a working interface does not carry")
	}

	seen = nil
	a.SetSilent("wlan0", true)
	if len(seen) != 0 || carried() {
		t.Fatalf("a silent link: announced %v, carried %v; want nothing announced and nothing carried", seen, carried())
	}
	a.SetSilent("wlan0", false)
	a.SetCarrier("wlan0", false)
	if !reflect.DeepEqual(seen, []manager.HostEvent{manager.LinkEvent{Index: 2, Name: "wlan0", Flags: net.FlagUp | net.FlagBroadcast | net.FlagMulticast}}) || carried() {
		t.Fatalf("carrier lost: announced %v, carried %v", seen, carried())
	}
	a.SetCarrier("wlan0", true)
	a.SetPath("wlan0", peer, Link{Delay: time.Millisecond, Down: true})
	if carried() {
		t.Fatal("the interface's own path is down, yet it carries")
	}
	a.SetPath("wlan0", peer, Link{Delay: time.Millisecond})
	if !carried() || n.Delivers(ike.Datagram{Local: out.Local, Remote: out.Remote, Iface: "eth9"}) {
		t.Fatal("a datagram pinned to an interface the host lacks must not leave")
	}

	// Sent and in flight when the link goes silent: lost.
	var trace strings.Builder
	n.Trace = &trace
	a.Apply([]ike.Action{ike.Send{Datagram: out}})
	a.SetSilent("wlan0", true)
	if n.Quiet() {
		t.Fatal("nothing in flight")
	}
	n.RunFor(10 * time.Millisecond)
	if !strings.Contains(trace.String(), "undeliverable to b") || strings.Contains(trace.String(), "b <- ") {
		t.Fatalf("a datagram in flight when its link went silent arrived:\n%s", trace.String())
	}
	n.Trace = nil
	a.SetSilent("wlan0", false)

	seen = nil
	a.RemoveInterface("wlan0")
	want = []manager.HostEvent{
		manager.AddrEvent{Index: 2, Addr: wlan, Removed: true},
		manager.LinkEvent{Index: 2, Name: "wlan0", Flags: up, Gone: true},
	}
	if !reflect.DeepEqual(seen, want) || carried() || a.InterfaceOf(wlan) != "" {
		t.Fatalf("removed: announced %v, want %v; carried %v", seen, want, carried())
	}
	for _, ev := range seen {
		host.Apply(ev)
	}
	if len(host.Links()) != 0 {
		t.Fatalf("the host table still has %v", host.Links())
	}
}
