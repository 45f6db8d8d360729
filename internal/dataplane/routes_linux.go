//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
)

// routes puts the virtual IPs on the TUN device and the protected
// prefixes into the data plane's routing table, counting references: two
// Child SAs (a rekey, or clones) may need the same route.
type routes struct {
	mu       sync.Mutex
	link     netlink.Link
	table    int
	mark     uint32
	refs     map[netip.Prefix]int // routes
	addrs    map[netip.Addr]int   // addresses on the device
	children map[uint32]childRoutes
	// srcs are the source addresses the routes were given, by prefix.
	srcs map[netip.Prefix]netip.Addr
	// traps are the prefixes routed for trap policies (SetTraps), so
	// that their first packet reaches the device with no SA up.
	traps []netip.Prefix
	rules []*netlink.Rule
}

type childRoutes struct {
	prefixes []netip.Prefix
	addrs    []netip.Addr
}

func newRoutes(dev string, table int, mark uint32) (*routes, error) {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("dataplane: %s: %w", dev, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("dataplane: bringing %s up: %w", dev, err)
	}
	r := &routes{link: link, table: table, mark: mark, refs: map[netip.Prefix]int{},
		addrs: map[netip.Addr]int{}, children: map[uint32]childRoutes{}, srcs: map[netip.Prefix]netip.Addr{}}
	// Everything not marked as ours looks in our table first (a miss
	// falls through to the main table).
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		rule := netlink.NewRule()
		rule.Family, rule.Table, rule.Priority = family, table, rulePriority
		rule.Mark, rule.Invert = mark, true
		rule.Mask = new(uint32)
		*rule.Mask = 0xffffffff
		netlink.RuleDel(rule) // a leftover of a crashed run
		if err := netlink.RuleAdd(rule); err != nil {
			if family == unix.AF_INET6 {
				continue // IPv6 disabled
			}
			r.close()
			return nil, fmt.Errorf("dataplane: policy routing rule: %w", err)
		}
		r.rules = append(r.rules, rule)
	}
	return r, nil
}

// addChild routes sa's remote selectors into the device and puts the
// virtual IPs among its local selectors on it.
func (r *routes) addChild(sa ipsec.ChildSA, vips []netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cr childRoutes
	var src netip.Addr
	for _, v := range vips {
		if matchAny(sa.LocalTS, v, 0, 0) || matchAnyAddr(sa.LocalTS, v) {
			cr.addrs = append(cr.addrs, v)
			if !src.IsValid() {
				src = v
			}
		}
	}
	if a, ok := singleAddr(sa.LocalTS); ok && !src.IsValid() && sa.Mode == ipsec.Transport {
		// A host-to-host SA: its packets must leave from the one address
		// its selectors allow. Not in tunnel mode: there one address (a
		// gateway's Child SA for one service, 10.93.0.2[tcp/7000]) is
		// a protected host behind us, which the kernel would refuse as
		// a route's source.
		src = a
	}
	var errs error
	for _, a := range cr.addrs {
		if r.addrs[a]++; r.addrs[a] == 1 {
			bits := a.BitLen()
			err := netlink.AddrReplace(r.link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, bits))})
			errs = errors.Join(errs, err)
		}
	}
	for _, s := range sa.RemoteTS {
		for _, p := range ts.Prefixes(s) {
			cr.prefixes = append(cr.prefixes, p)
			// A route another SA put there already stays as it is; one
			// only a trap put there (without a source) gets this SA's
			// source address.
			trapOnly := r.refs[p] == count(r.traps, p)
			if r.refs[p]++; r.refs[p] > 1 && !(trapOnly && src.IsValid()) {
				continue
			}
			errs = errors.Join(errs, r.route(p, src))
		}
	}
	r.children[sa.InSPI] = cr
	if errs != nil {
		return fmt.Errorf("dataplane: routes for Child SA %08x: %w", sa.InSPI, errs)
	}
	return nil
}

// route puts p's route in place, with src as its source address when
// of p's family.
func (r *routes) route(p netip.Prefix, src netip.Addr) error {
	route := &netlink.Route{LinkIndex: r.link.Attrs().Index, Dst: ipNet(p), Table: r.table, Scope: netlink.SCOPE_LINK}
	delete(r.srcs, p)
	if src.IsValid() && src.Is4() == p.Addr().Is4() {
		route.Src = src.AsSlice()
		r.srcs[p] = src
	}
	return netlink.RouteReplace(route)
}

func count(l []netip.Prefix, p netip.Prefix) int {
	n := 0
	for _, x := range l {
		if x == p {
			n++
		}
	}
	return n
}

func matchAnyAddr(l []ts.Selector, a netip.Addr) bool {
	for _, s := range l {
		if s.Start.IsValid() && !a.Less(s.Start) && !s.End.Less(a) {
			return true
		}
	}
	return false
}

func (r *routes) delChild(inSPI uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cr, ok := r.children[inSPI]
	if !ok {
		return
	}
	delete(r.children, inSPI)
	for _, p := range cr.prefixes {
		if r.refs[p]--; r.refs[p] == 0 {
			delete(r.refs, p)
			delete(r.srcs, p)
			netlink.RouteDel(&netlink.Route{LinkIndex: r.link.Attrs().Index, Dst: ipNet(p), Table: r.table, Scope: netlink.SCOPE_LINK})
		}
	}
	removed := false
	for _, a := range cr.addrs {
		if r.addrs[a]--; r.addrs[a] == 0 {
			delete(r.addrs, a)
			netlink.AddrDel(r.link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))})
			removed = true
		}
	}
	if !removed {
		return
	}
	// The kernel drops the routes whose source was a removed address: a
	// trap's route, which this SA gave its virtual IP as source, must
	// come back without it, or the trap's next packet leaves outside.
	for _, p := range r.traps {
		if slices.Contains(cr.prefixes, p) && r.refs[p] == count(r.traps, p) {
			r.route(p, netip.Addr{})
		}
	}
	// And a route other SAs still need (clones with their own inner
	// addresses, one remote prefix) comes back with one of their
	// addresses as its source: the VPN that gave it its source is gone,
	// the others, and the connections through them (MPTCP subflows),
	// must keep their route.
	for _, p := range cr.prefixes {
		src, had := r.srcs[p]
		if !had || r.refs[p] == 0 || r.addrs[src] > 0 {
			continue
		}
		r.route(p, r.sourceFor(p))
	}
}

// sourceFor is a virtual IP of an SA that routes p, for p's route.
func (r *routes) sourceFor(p netip.Prefix) netip.Addr {
	var best netip.Addr
	for _, cr := range r.children {
		if !slices.Contains(cr.prefixes, p) {
			continue
		}
		for _, a := range cr.addrs {
			if a.Is4() == p.Addr().Is4() && (!best.IsValid() || a.Less(best)) {
				best = a // the lowest: the same choice whatever the map's order
			}
		}
	}
	return best
}

// setTraps routes prefixes into the device, in place of the traps'
// prefixes before; the references they share with SAs' routes keep
// those.
func (r *routes) setTraps(prefixes []netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs error
	for _, p := range prefixes {
		if r.refs[p]++; r.refs[p] == 1 {
			route := &netlink.Route{LinkIndex: r.link.Attrs().Index, Dst: ipNet(p), Table: r.table, Scope: netlink.SCOPE_LINK}
			errs = errors.Join(errs, netlink.RouteReplace(route))
		}
	}
	for _, p := range r.traps {
		if r.refs[p]--; r.refs[p] == 0 {
			delete(r.refs, p)
			netlink.RouteDel(&netlink.Route{LinkIndex: r.link.Attrs().Index, Dst: ipNet(p), Table: r.table, Scope: netlink.SCOPE_LINK})
		}
	}
	r.traps = prefixes
	if errs != nil {
		return fmt.Errorf("dataplane: routes for traps: %w", errs)
	}
	return nil
}

func (r *routes) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rule := range r.rules {
		netlink.RuleDel(rule)
	}
	r.rules = nil
	// Routes and addresses go with the device.
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
