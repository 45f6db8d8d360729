//go:build linux

package xfrm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ts"
)

// vpn is one IKE SA's XFRM interface: its if_id (in its states and
// policies), its device, its routing table and its virtual IPs.
type vpn struct {
	ikeSA  uint64
	n      uint32 // if_id = ifIDBase + n, table = tableBase + n
	name   string
	index  int
	iface  string // the underlying interface the outer packets are pinned to
	refs   int    // tunnel-mode Child SAs
	routes map[netip.Prefix]int
	src    map[netip.Prefix]net.IP // each route's source address
	vips   map[netip.Addr]int
	rules  map[netip.Addr]*netlink.Rule
}

func (v *vpn) ifID() uint32 { return ifIDBase + v.n }
func (v *vpn) table() int   { return int(tableBase + v.n) }

// childRoutes is what one Child SA added to its VPN, to take back.
type childRoutes struct {
	prefixes []netip.Prefix
	vips     []netip.Addr
}

func ifindex(name string) int {
	if name == "" {
		return 0
	}
	i, err := net.InterfaceByName(name)
	if err != nil {
		return 0
	}
	return i.Index
}

// newVPN creates the XFRM interface for IKE SA id. Its link (the
// underlying device) pins the outer packets' route lookup to iface,
// which is how a VPN stays on its interface (xfrmi_xmit sets the flow's
// oif from it).
func (k *Kernel) newVPN(id uint64, iface string) (*vpn, error) {
	n := k.nextVPN
	for {
		n = n%0xfffe + 1
		if !k.vpnN[n] {
			break
		}
	}
	k.nextVPN = n
	v := &vpn{ikeSA: id, n: n, name: fmt.Sprintf("%s%d", DevicePrefix, n), iface: iface,
		routes: map[netip.Prefix]int{}, src: map[netip.Prefix]net.IP{}, vips: map[netip.Addr]int{}, rules: map[netip.Addr]*netlink.Rule{}}
	link := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: v.name, MTU: k.cfg.MTU, ParentIndex: ifindex(iface)}, Ifid: v.ifID()}
	if err := netlink.LinkAdd(link); err != nil {
		return nil, explainLink(v.name, err)
	}
	l, err := netlink.LinkByName(v.name)
	if err != nil {
		netlink.LinkDel(link)
		return nil, fmt.Errorf("xfrm: %s vanished after creation: %w", v.name, err)
	}
	v.index = l.Attrs().Index
	// No IPv6 link-local address: it would only send router
	// solicitations into the tunnel.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+v.name+"/addr_gen_mode", []byte("1"), 0)
	if err := netlink.LinkSetUp(l); err != nil {
		netlink.LinkDel(l)
		return nil, fmt.Errorf("xfrm: bringing %s up: %w", v.name, err)
	}
	k.vpnN[n] = true
	k.vpns[id] = v
	return v, nil
}

func explainLink(name string, err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) || strings.Contains(err.Error(), "not supported") ||
		strings.Contains(err.Error(), "Unknown device type") {
		return fmt.Errorf("xfrm: creating XFRM interface %s: the kernel has no XFRM interfaces: load xfrm_interface (CONFIG_XFRM_INTERFACE): %w", name, err)
	}
	return fmt.Errorf("xfrm: creating XFRM interface %s: %w", name, err)
}

// setLink re-pins a VPN's outer packets after a MOBIKE move. Linux
// cannot change an XFRM interface's link (xfrmi_change refuses), so the
// device is made again with the new one: the states and policies hold
// the if_id, not the device, and stay; the rules name the table and
// stay; the addresses and routes, which die with the device, are put
// back at once.
func (k *Kernel) setLink(v *vpn, iface string) error {
	if v.iface == iface {
		return nil
	}
	netlink.LinkDel(&netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: v.name, Index: v.index}})
	link := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: v.name, MTU: k.cfg.MTU, ParentIndex: ifindex(iface)}, Ifid: v.ifID()}
	if err := netlink.LinkAdd(link); err != nil {
		return fmt.Errorf("xfrm: re-creating %s on %q after a move: %w", v.name, iface, err)
	}
	l, err := netlink.LinkByName(v.name)
	if err != nil {
		return fmt.Errorf("xfrm: %s vanished after creation: %w", v.name, err)
	}
	v.index, v.iface = l.Attrs().Index, iface
	os.WriteFile("/proc/sys/net/ipv6/conf/"+v.name+"/addr_gen_mode", []byte("1"), 0)
	errs := netlink.LinkSetUp(l)
	for a := range v.vips {
		errs = errors.Join(errs, netlink.AddrReplace(l, vipAddr(a)))
	}
	for p := range v.routes {
		r := &netlink.Route{LinkIndex: v.index, Dst: ipNet(p), Table: v.table(), Scope: netlink.SCOPE_LINK, Src: v.src[p]}
		errs = errors.Join(errs, netlink.RouteReplace(r))
		if h := k.shared[p]; len(h) > 0 && h[0].v == v {
			errs = errors.Join(errs, k.sharedRoute(p))
		}
	}
	if errs != nil {
		return fmt.Errorf("xfrm: restoring %s after a move: %w", v.name, errs)
	}
	return nil
}

func vipAddr(a netip.Addr) *netlink.Addr {
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	return addr
}

func (k *Kernel) deleteVPN(v *vpn) {
	for _, r := range v.rules {
		netlink.RuleDel(r)
	}
	for p := range v.routes {
		k.dropShared(p, v)
	}
	netlink.LinkDel(&netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: v.name, Index: v.index}})
	delete(k.vpns, v.ikeSA)
	delete(k.vpnN, v.n)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addRoutes routes a tunnel-mode Child SA's remote selectors into its
// VPN's device, in the VPN's own table (reached by a rule for each of
// its virtual IPs) and in the shared table when no earlier VPN holds the
// prefix there; it puts the virtual IPs among its local selectors on the
// device. On failure it takes back what it added.
func (k *Kernel) addRoutes(v *vpn, sa ike.ChildSA) (childRoutes, error) {
	var cr childRoutes
	var src netip.Addr
	for _, a := range sa.VirtualIPs {
		a = a.Unmap()
		if covers(sa.LocalTS, a) {
			cr.vips = append(cr.vips, a)
			if !src.IsValid() {
				src = a
			}
		}
	}
	var errs error
	for _, a := range cr.vips {
		if v.vips[a]++; v.vips[a] > 1 {
			continue
		}
		errs = errors.Join(errs, netlink.AddrReplace(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: v.index}}, vipAddr(a)))
		rule := netlink.NewRule()
		rule.Family = int(familyOf(a))
		rule.Src = ipNet(netip.PrefixFrom(a, a.BitLen()))
		rule.Table, rule.Priority = v.table(), vipRulePriority
		netlink.RuleDel(rule)
		if err := netlink.RuleAdd(rule); err != nil {
			errs = errors.Join(errs, fmt.Errorf("rule from %v: %w", a, err))
		} else {
			v.rules[a] = rule
		}
	}
	for _, s := range sa.RemoteTS {
		for _, p := range ts.Prefixes(s) {
			cr.prefixes = append(cr.prefixes, p)
			if v.routes[p]++; v.routes[p] > 1 {
				continue
			}
			r := &netlink.Route{LinkIndex: v.index, Dst: ipNet(p), Table: v.table(), Scope: netlink.SCOPE_LINK}
			if src.IsValid() && src.Is4() == p.Addr().Is4() {
				r.Src = src.AsSlice()
			}
			v.src[p] = r.Src
			errs = errors.Join(errs, netlink.RouteReplace(r))
			k.shared[p] = append(k.shared[p], sharedRoute{v: v, src: r.Src})
			if len(k.shared[p]) == 1 {
				errs = errors.Join(errs, k.sharedRoute(p))
			}
		}
	}
	if errs != nil {
		k.delRoutes(v, cr)
		return childRoutes{}, fmt.Errorf("xfrm: routes and addresses on %s: %w", v.name, errs)
	}
	return cr, nil
}

type sharedRoute struct {
	v   *vpn
	src net.IP
}

// sharedRoute points the shared table's route for p at its first holder.
func (k *Kernel) sharedRoute(p netip.Prefix) error {
	l := k.shared[p]
	if len(l) == 0 {
		return nil
	}
	return netlink.RouteReplace(&netlink.Route{LinkIndex: l[0].v.index, Dst: ipNet(p), Table: k.cfg.Table,
		Scope: netlink.SCOPE_LINK, Src: l[0].src})
}

// dropShared removes v from p's holders; the next one takes the route.
func (k *Kernel) dropShared(p netip.Prefix, v *vpn) {
	l := k.shared[p]
	for i, s := range l {
		if s.v == v {
			l = append(l[:i:i], l[i+1:]...)
			first := i == 0
			if len(l) == 0 {
				delete(k.shared, p)
				netlink.RouteDel(&netlink.Route{LinkIndex: v.index, Dst: ipNet(p), Table: k.cfg.Table, Scope: netlink.SCOPE_LINK})
				return
			}
			k.shared[p] = l
			if first {
				k.sharedRoute(p)
			}
			return
		}
	}
}

func (k *Kernel) delRoutes(v *vpn, cr childRoutes) {
	for _, p := range cr.prefixes {
		if v.routes[p]--; v.routes[p] > 0 {
			continue
		}
		delete(v.routes, p)
		delete(v.src, p)
		netlink.RouteDel(&netlink.Route{LinkIndex: v.index, Dst: ipNet(p), Table: v.table(), Scope: netlink.SCOPE_LINK})
		k.dropShared(p, v)
	}
	for _, a := range cr.vips {
		if v.vips[a]--; v.vips[a] > 0 {
			continue
		}
		delete(v.vips, a)
		if r := v.rules[a]; r != nil {
			netlink.RuleDel(r)
			delete(v.rules, a)
		}
		netlink.AddrDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: v.index}},
			&netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))})
	}
}

func covers(l []ts.Selector, a netip.Addr) bool {
	for _, s := range l {
		if s.Start.IsValid() && s.Start.Is4() == a.Is4() && !a.Less(s.Start) && !s.End.Less(a) {
			return true
		}
	}
	return false
}

func familyOf(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// sharedRule sends everything not marked as ours to the shared table
// first (a miss falls through to main), so a protected 0.0.0.0/0 never
// captures the IKE packets or the outer ESP packets, which carry the mark.
func (k *Kernel) sharedRules() error {
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rule := netlink.NewRule()
		rule.Family, rule.Table, rule.Priority = fam, k.cfg.Table, sharedRulePriority
		rule.Mark, rule.Invert = k.cfg.Mark, true
		rule.Mask = new(uint32)
		*rule.Mask = 0xffffffff
		netlink.RuleDel(rule)
		if err := netlink.RuleAdd(rule); err != nil {
			if fam == unix.AF_INET6 {
				continue // IPv6 disabled
			}
			return fmt.Errorf("xfrm: policy routing rule: %w", err)
		}
		k.rules = append(k.rules, rule)
	}
	return nil
}

// removeLeftoverLinks deletes the XFRM interfaces and rules of a run
// that died without Close: devices named DevicePrefix with an if_id of
// ours, rules into our tables.
func (k *Kernel) removeLeftoverLinks() (n int) {
	links, _ := netlink.LinkList()
	for _, l := range links {
		x, ok := l.(*netlink.Xfrmi)
		if ok && strings.HasPrefix(l.Attrs().Name, DevicePrefix) && x.Ifid&^0xffff == ifIDBase {
			if netlink.LinkDel(l) == nil {
				n++
			}
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, _ := netlink.RuleList(fam)
		for _, r := range rules {
			if (r.Priority == vipRulePriority && uint32(r.Table)&^0xffff == tableBase) ||
				(r.Priority == sharedRulePriority && r.Table == k.cfg.Table) {
				r := r
				netlink.RuleDel(&r)
			}
		}
	}
	return n
}
