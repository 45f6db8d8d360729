package manager

import (
	"maps"
	"net"
	"net/netip"
	"slices"
)

// Link is one of the host's network interfaces as the kernel reports it:
// every address, whatever its scope, and the flags as they are.
type Link struct {
	Index int
	Name  string
	Flags net.Flags
	Addrs []netip.Addr
}

// Host is the host's interfaces, read in full now and then (Reset) and
// kept current in between by the link and address changes the kernel
// announces (Apply): a change costs the event that carries it, not a
// fresh read of every interface and address.
type Host struct {
	links map[int]*Link // by index
}

// HostEvent is one change the kernel announced: a LinkEvent or an
// AddrEvent.
type HostEvent interface{ isHostEvent() }

// LinkEvent: interface Index appeared or changed (RTM_NEWLINK: its name
// and flags as they are now), or was deleted (RTM_DELLINK: Gone).
type LinkEvent struct {
	Index int
	Name  string
	Flags net.Flags
	Gone  bool
}

// AddrEvent: Addr was added to interface Index (RTM_NEWADDR) or removed
// from it (RTM_DELADDR: Removed).
type AddrEvent struct {
	Index   int
	Addr    netip.Addr
	Removed bool
}

func (LinkEvent) isHostEvent() {}
func (AddrEvent) isHostEvent() {}

// Reset replaces everything known with a full read of the host.
func (h *Host) Reset(links []Link) {
	h.links = make(map[int]*Link, len(links))
	for _, l := range links {
		c := l
		c.Addrs = nil
		for _, a := range l.Addrs {
			c.Addrs = addAddr(c.Addrs, a.Unmap())
		}
		h.links[l.Index] = &c
	}
}

// Apply records one change and says whether anything changed: the kernel
// repeats itself (an address's lifetimes refreshed, a link event for a
// statistic), and a repeat needs no reconcile.
func (h *Host) Apply(ev HostEvent) bool {
	if h.links == nil {
		h.links = map[int]*Link{}
	}
	switch ev := ev.(type) {
	case LinkEvent:
		l := h.links[ev.Index]
		if ev.Gone {
			delete(h.links, ev.Index) // its addresses go with it
			return l != nil
		}
		if l == nil {
			h.links[ev.Index] = &Link{Index: ev.Index, Name: ev.Name, Flags: ev.Flags}
			return true
		}
		changed := l.Name != ev.Name || l.Flags != ev.Flags
		l.Name, l.Flags = ev.Name, ev.Flags
		return changed
	case AddrEvent:
		a := ev.Addr.Unmap()
		l := h.links[ev.Index]
		if ev.Removed {
			if l == nil || !slices.Contains(l.Addrs, a) {
				return false
			}
			l.Addrs = slices.DeleteFunc(l.Addrs, func(x netip.Addr) bool { return x == a })
			return true
		}
		if l == nil {
			// The address came before its link's announcement: the link
			// is filled in when that arrives (nameless until then, and
			// down).
			l = &Link{Index: ev.Index}
			h.links[ev.Index] = l
		}
		if slices.Contains(l.Addrs, a) {
			return false
		}
		l.Addrs = addAddr(l.Addrs, a)
		return true
	}
	return false
}

func addAddr(addrs []netip.Addr, a netip.Addr) []netip.Addr {
	if slices.Contains(addrs, a) {
		return addrs
	}
	return append(addrs, a)
}

// Links are the interfaces known now, by index; the caller may keep them.
func (h *Host) Links() []Link {
	out := make([]Link, 0, len(h.links))
	for _, i := range slices.Sorted(maps.Keys(h.links)) {
		l := *h.links[i]
		l.Addrs = slices.Clone(l.Addrs)
		out = append(out, l)
	}
	return out
}

// Interfaces are what Reconcile takes: the interfaces a VPN could use,
// by index, with their global unicast addresses. The loopback device,
// interfaces not yet named and those skip names (the data plane's own
// devices, which live inside the tunnels) are left out; Up means
// administratively up and with carrier (an unplugged cable is as gone as
// a deleted address).
func (h *Host) Interfaces(skip func(name string) bool) []Interface {
	var out []Interface
	for _, l := range h.Links() {
		if l.Name == "" || l.Flags&net.FlagLoopback != 0 || skip(l.Name) {
			continue
		}
		i := Interface{Name: l.Name, Up: l.Flags&net.FlagUp != 0 && l.Flags&net.FlagRunning != 0}
		for _, a := range l.Addrs {
			if a.IsGlobalUnicast() {
				i.Addrs = append(i.Addrs, a)
			}
		}
		out = append(out, i)
	}
	return out
}
