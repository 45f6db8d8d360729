package manager

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

const upRunning = net.FlagUp | net.FlagRunning | net.FlagBroadcast | net.FlagMulticast

// hostOf is a host holding eth0, wlan0 and wwan0 (indexes 2, 3, 4), the
// loopback device and a link-local address on each, as a full read finds
// them.
func hostOf() *Host {
	h := &Host{}
	h.Reset([]Link{
		{Index: 1, Name: "lo", Flags: net.FlagUp | net.FlagRunning | net.FlagLoopback, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}},
		{Index: 2, Name: "eth0", Flags: upRunning, Addrs: []netip.Addr{eth.Addrs[0], netip.MustParseAddr("fe80::2")}},
		{Index: 3, Name: "wlan0", Flags: upRunning, Addrs: []netip.Addr{wifi.Addrs[0], netip.MustParseAddr("fe80::3")}},
		{Index: 4, Name: "wwan0", Flags: upRunning, Addrs: []netip.Addr{lte.Addrs[0]}},
	})
	return h
}

func noSkip(string) bool { return false }

// A full read gives the manager the interfaces a VPN could use: no
// loopback, no device of the data plane, global unicast addresses only.
func TestHostInterfaces(t *testing.T) {
	h := hostOf()
	h.Reset(append(h.Links(), Link{Index: 9, Name: "mifike0", Flags: upRunning, Addrs: []netip.Addr{netip.MustParseAddr("10.99.0.2")}}))
	got := h.Interfaces(func(name string) bool { return name == "mifike0" })
	if want := []Interface{eth, wifi, lte}; !reflect.DeepEqual(got, want) {
		t.Fatalf("interfaces:\n got %+v\nwant %+v", got, want)
	}
}

// The kernel's announcements, applied one by one, change what Reconcile
// sees exactly as a fresh read would, and announce no change when they
// repeat what is known.
func TestHostEvents(t *testing.T) {
	usb := netip.MustParseAddr("192.168.4.10")
	steps := []struct {
		name    string
		ev      HostEvent
		changed bool
		want    []Interface
	}{
		{"wlan0 loses carrier", LinkEvent{Index: 3, Name: "wlan0", Flags: net.FlagUp | net.FlagBroadcast}, true,
			[]Interface{eth, down(wifi), lte}},
		{"the same again", LinkEvent{Index: 3, Name: "wlan0", Flags: net.FlagUp | net.FlagBroadcast}, false,
			[]Interface{eth, down(wifi), lte}},
		{"wlan0 back", LinkEvent{Index: 3, Name: "wlan0", Flags: upRunning}, true,
			[]Interface{eth, wifi, lte}},
		{"wwan0's address removed", AddrEvent{Index: 4, Addr: lte.Addrs[0], Removed: true}, true,
			[]Interface{eth, wifi, {Name: "wwan0", Up: true}}},
		{"removed again", AddrEvent{Index: 4, Addr: lte.Addrs[0], Removed: true}, false,
			[]Interface{eth, wifi, {Name: "wwan0", Up: true}}},
		{"wwan0's address back (v4-mapped)", AddrEvent{Index: 4, Addr: netip.AddrFrom16(lte.Addrs[0].As16())}, true,
			[]Interface{eth, wifi, lte}},
		{"its lifetimes refreshed", AddrEvent{Index: 4, Addr: lte.Addrs[0]}, false,
			[]Interface{eth, wifi, lte}},
		{"usb0's address before its link", AddrEvent{Index: 7, Addr: usb}, true,
			[]Interface{eth, wifi, lte}},
		{"usb0 appears, up", LinkEvent{Index: 7, Name: "usb0", Flags: upRunning}, true,
			[]Interface{eth, wifi, lte, {Name: "usb0", Up: true, Addrs: []netip.Addr{usb}}}},
		{"usb0 renamed", LinkEvent{Index: 7, Name: "wwan1", Flags: upRunning}, true,
			[]Interface{eth, wifi, lte, {Name: "wwan1", Up: true, Addrs: []netip.Addr{usb}}}},
		{"wwan1 deleted", LinkEvent{Index: 7, Name: "wwan1", Gone: true}, true,
			[]Interface{eth, wifi, lte}},
		{"an address on a link gone", AddrEvent{Index: 7, Addr: usb, Removed: true}, false,
			[]Interface{eth, wifi, lte}},
		{"a link-local address", AddrEvent{Index: 2, Addr: netip.MustParseAddr("fe80::22")}, true,
			[]Interface{eth, wifi, lte}},
	}
	h := hostOf()
	for _, s := range steps {
		if changed := h.Apply(s.ev); changed != s.changed {
			t.Errorf("%s: changed %v, want %v", s.name, changed, s.changed)
		}
		if got := h.Interfaces(noSkip); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s:\n got %+v\nwant %+v", s.name, got, s.want)
		}
	}
}

// The policy driven by events alone (UC1, UC4, UC5): an interface fails
// and its VPN moves, it returns and the VPN moves back, a new interface
// gets a clone, a deleted one's VPN moves away.
func TestEventsDriveThePolicy(t *testing.T) {
	h := hostOf()
	m := New(policy(PerInterface), nil)
	m.Bind(Slot{Iface: "eth0"}, 1)
	m.Bind(Slot{Iface: "wlan0"}, 2)
	m.Bind(Slot{Iface: "wwan0"}, 3)
	sas := []SA{sa(1, eth, 0), sa(2, wifi, 1), sa(3, lte, 1)}
	now := t0
	step := func(name string, ev HostEvent, want ...Command) {
		t.Helper()
		now = now.Add(time.Minute)
		if !h.Apply(ev) {
			t.Fatalf("%s: no change", name)
		}
		if got := m.Reconcile(now, gw, h.Interfaces(noSkip), sas); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %#v\nwant %#v", name, got, want)
		}
	}
	if got := m.Reconcile(now, gw, h.Interfaces(noSkip), sas); len(got) != 0 {
		t.Fatalf("settled: %#v", got)
	}

	step("wlan0 down", LinkEvent{Index: 3, Name: "wlan0", Flags: net.FlagBroadcast},
		Move{ID: 2, Local: eth.Addrs[0], Remote: gw, Iface: "eth0"})
	sas[1] = sa(2, eth, 1)
	step("wlan0 up", LinkEvent{Index: 3, Name: "wlan0", Flags: upRunning},
		Move{ID: 2, Local: wifi.Addrs[0], Remote: gw, Iface: "wlan0"})
	sas[1] = sa(2, wifi, 1)

	usb := Interface{Name: "wwan1", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.65.0.10")}}
	if h.Apply(LinkEvent{Index: 8, Name: "wwan1", Flags: upRunning}); len(m.Reconcile(now, gw, h.Interfaces(noSkip), sas)) != 0 {
		t.Fatal("a new interface without an address got a VPN")
	}
	step("wwan1's address", AddrEvent{Index: 8, Addr: usb.Addrs[0]}, Clone{ID: 1})
	sas = append(sas, sa(4, eth, 1))
	now = now.Add(time.Second)
	got := m.Reconcile(now, gw, h.Interfaces(noSkip), sas)
	if want := []Command{CreateChild{ID: 4, Name: "net"}, Move{ID: 4, Local: usb.Addrs[0], Remote: gw, Iface: "wwan1"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("clone for wwan1:\n got %#v\nwant %#v", got, want)
	}
	sas[3] = sa(4, usb, 1)

	step("wwan0's address removed", AddrEvent{Index: 4, Addr: lte.Addrs[0], Removed: true},
		Move{ID: 3, Local: eth.Addrs[0], Remote: gw, Iface: "eth0"})
	sas[2] = sa(3, eth, 1)
	step("wwan1 deleted", LinkEvent{Index: 8, Name: "wwan1", Gone: true},
		Move{ID: 4, Local: eth.Addrs[0], Remote: gw, Iface: "eth0"})
}
