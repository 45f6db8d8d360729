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

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
)

// vpn is one IKE SA's XFRM interface: its if_id (in its states and
// policies), its device, its routing table and its virtual IPs.
type vpn struct {
	ikeSA uint64
	n     uint32 // if_id = ifIDBase + n, table = tableBase + n
	name  string
	index int
	// The interface its outer packets are pinned to, for the peer at
	// pinDst (see pin).
	iface          string
	pinDst, pinSrc netip.Addr
	pinRoute       *netlink.Route
	pinRule        *netlink.Rule
	pinPending     bool // pinned, but iface had no route to the peer yet
	refs           int  // tunnel-mode Child SAs
	routes         map[netip.Prefix]int
	src            map[netip.Prefix]net.IP // each route's source address
	vips           map[netip.Addr]int
	rules          map[netip.Addr]*netlink.Rule
}

func (v *vpn) ifID() uint32 { return ifIDBase + v.n }
func (v *vpn) table() int   { return int(tableBase + v.n) }

// mark is what the VPN's outer packets carry: its number above our
// mark, so every VPN's packets match 0x6d66/0xffff.
func (v *vpn) mark() uint32  { return v.n<<16 | markLow }
func (v *vpn) pinTable() int { return int(pinTableBase + v.n) }

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

// newVPN creates the XFRM interface for IKE SA id.
func (k *Kernel) newVPN(id uint64) (*vpn, error) {
	n := k.nextVPN
	for {
		n = n%0xfffe + 1
		if !k.vpnN[n] {
			break
		}
	}
	k.nextVPN = n
	v := &vpn{ikeSA: id, n: n, name: fmt.Sprintf("%s%d", DevicePrefix, n),
		routes: map[netip.Prefix]int{}, src: map[netip.Prefix]net.IP{}, vips: map[netip.Addr]int{}, rules: map[netip.Addr]*netlink.Rule{}}
	idx, err := k.addXfrmi(v.name, v.ifID())
	if err != nil {
		return nil, err
	}
	v.index = idx
	k.vpnN[n] = true
	k.vpns[id] = v
	return v, nil
}

// addXfrmi creates and brings up an XFRM interface, and returns its
// index.
func (k *Kernel) addXfrmi(name string, ifID uint32) (int, error) {
	link := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: k.cfg.MTU}, Ifid: ifID}
	if err := netlink.LinkAdd(link); err != nil {
		return 0, explainLink(name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		netlink.LinkDel(link)
		return 0, fmt.Errorf("xfrm: %s vanished after creation: %w", name, err)
	}
	// No IPv6 link-local address: it would only send router
	// solicitations into the tunnel.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/addr_gen_mode", []byte("1"), 0)
	if err := netlink.LinkSetUp(l); err != nil {
		netlink.LinkDel(l)
		return 0, fmt.Errorf("xfrm: bringing %s up: %w", name, err)
	}
	return l.Attrs().Index, nil
}

func explainLink(name string, err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) || strings.Contains(err.Error(), "not supported") ||
		strings.Contains(err.Error(), "Unknown device type") {
		return fmt.Errorf("xfrm: creating XFRM interface %s: the kernel has no XFRM interfaces: load xfrm_interface (CONFIG_XFRM_INTERFACE): %w", name, err)
	}
	return fmt.Errorf("xfrm: creating XFRM interface %s: %w", name, err)
}

// pin keeps a VPN's outer packets on interface iface (RFC 4555 paths,
// the interface manager's one VPN per interface). The XFRM interface's
// link cannot do it: since Linux 5.18 the outer route lookup takes it
// only as an L3 master (VRF), not as output interface. So each VPN's
// outbound states mark their outer packets with the VPN's own mark
// (0xNNNN6d66), and a rule sends that mark to the VPN's pin table, which
// routes the peer's address through iface, via the next hop the main
// table has there. An unpinned VPN has no rule: its mark still matches
// 0x6d66/0xffff, so it bypasses the tunnel's routes and follows main.
func (k *Kernel) pin(v *vpn, iface string, local, remote netip.Addr) error {
	if v.iface == iface && v.pinDst == remote && v.pinSrc == local {
		return nil
	}
	k.unpin(v)
	if iface == "" {
		return nil
	}
	idx := ifindex(iface)
	if idx == 0 {
		return fmt.Errorf("xfrm: pinning %s to %q: no such interface", v.name, iface)
	}
	r := &netlink.Route{Dst: ipNet(netip.PrefixFrom(remote, remote.BitLen())), LinkIndex: idx, Table: v.pinTable()}
	if local.IsValid() {
		r.Src = local.AsSlice()
	}
	gw, onLink, ok := nextHop(idx, remote, k.cfg.Mark)
	if !ok {
		// No route through iface yet (a link that just came back gets its
		// default route a moment later): follow the main table for now,
		// and try again on the next poll.
		v.iface, v.pinDst, v.pinSrc, v.pinPending = iface, remote, local, true
		k.log.Info("no route to the peer through the pinned interface yet; following the main table", "vpn", v.name, "iface", iface, "peer", remote)
		return nil
	}
	r.Gw = gw
	if onLink {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("xfrm: pinning %s to %s: route to %v: %w", v.name, iface, remote, err)
	}
	rule := netlink.NewRule()
	rule.Family = int(familyOf(remote))
	rule.Mark, rule.Table, rule.Priority = v.mark(), v.pinTable(), pinRulePriority
	rule.Mask = new(uint32)
	*rule.Mask = 0xffffffff
	netlink.RuleDel(rule)
	if err := netlink.RuleAdd(rule); err != nil {
		netlink.RouteDel(r)
		return fmt.Errorf("xfrm: pinning %s to %s: rule: %w", v.name, iface, err)
	}
	v.iface, v.pinDst, v.pinSrc, v.pinRoute, v.pinRule, v.pinPending = iface, remote, local, r, rule, false
	return nil
}

// nextHop is how the host reaches remote through interface idx: on the
// link (a connected prefix of idx covers it) or via the gateway of the
// route the kernel picks with idx as output interface (as `ip route get
// ADDR oif IFACE`). ok is false when idx has neither.
func nextHop(idx int, remote netip.Addr, mark uint32) (gw net.IP, onLink, ok bool) {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx}}
	addrs, _ := netlink.AddrList(link, int(familyOf(remote)))
	for _, a := range addrs {
		if p, ok := netip.AddrFromSlice(a.IPNet.IP); ok {
			ones, _ := a.IPNet.Mask.Size()
			if netip.PrefixFrom(p.Unmap(), ones).Masked().Contains(remote) {
				return nil, true, true
			}
		}
	}
	got, err := netlink.RouteGetWithOptions(remote.AsSlice(), &netlink.RouteGetOptions{OifIndex: idx, Mark: mark})
	if err != nil || len(got) == 0 || got[0].Gw == nil {
		// Without a route through idx the kernel assumes the peer is on
		// the link; it is not, so that would be a black hole.
		return nil, false, false
	}
	return got[0].Gw, false, true
}

// PinStream keeps a TCP stream (RFC 9329) from local to remote on
// interface iface, as pin does a VPN's outer packets: the stream's
// socket carries the returned mark (SO_MARK, before it connects), which
// a rule sends to a table routing remote through iface. It replaces
// SO_BINDTODEVICE for streams whose ESP the kernel carries: espintcp
// finds a stream by its addresses and ports with no interface, which
// never matches a socket bound to a device (esp_find_tcp_sk). The mark
// and table come from the VPNs' numbers, so they never collide and
// start-up removes what a crashed run left. release undoes it.
func (k *Kernel) PinStream(iface string, local, remote netip.Addr) (mark uint32, release func(), err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return 0, nil, errors.New("xfrm: the data plane is closed")
	}
	n := k.nextVPN
	for {
		n = n%0xfffe + 1
		if !k.vpnN[n] {
			break
		}
	}
	k.nextVPN = n
	s := &vpn{n: n, name: fmt.Sprintf("TCP stream %v-%v", local, remote)}
	if err := k.pin(s, iface, local.Unmap(), remote.Unmap()); err != nil {
		return 0, nil, err
	}
	k.vpnN[n] = true
	k.streams[n] = s
	return s.mark(), func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.streams[n] == s {
			k.unpin(s)
			delete(k.streams, n)
			delete(k.vpnN, n)
		}
	}, nil
}

// retryPins pins the VPNs and streams whose interface had no route yet.
func (k *Kernel) retryPins() {
	for _, v := range k.streams {
		if v.pinPending {
			iface, local, remote := v.iface, v.pinSrc, v.pinDst
			v.iface = ""
			if err := k.pin(v, iface, local, remote); err != nil {
				k.log.Warn("cannot pin a TCP stream to its interface", "stream", v.name, "iface", iface, "err", err)
			}
		}
	}
	for _, v := range k.vpns {
		if v.pinPending {
			iface, local, remote := v.iface, v.pinSrc, v.pinDst
			v.iface = ""
			if err := k.pin(v, iface, local, remote); err != nil {
				k.log.Warn("cannot pin a VPN to its interface", "vpn", v.name, "iface", iface, "err", err)
			}
		}
	}
}

func (k *Kernel) unpin(v *vpn) {
	if v.pinRule != nil {
		netlink.RuleDel(v.pinRule)
	}
	if v.pinRoute != nil {
		netlink.RouteDel(v.pinRoute)
	}
	v.iface, v.pinDst, v.pinSrc, v.pinRoute, v.pinRule, v.pinPending = "", netip.Addr{}, netip.Addr{}, nil, nil, false
}

func vipAddr(a netip.Addr) *netlink.Addr {
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	return addr
}

func (k *Kernel) deleteVPN(v *vpn) {
	k.unpin(v)
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
func (k *Kernel) addRoutes(v *vpn, sa ipsec.ChildSA) (childRoutes, error) {
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

// sharedRules send everything not marked as ours (0x6d66 in the low
// half: our sockets' mark, and every VPN's outer packets) to the shared table
// to the shared table first (a miss falls through to main), so a
// protected 0.0.0.0/0 never captures the IKE or the outer ESP packets.
func (k *Kernel) sharedRules() error {
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rule := netlink.NewRule()
		rule.Family, rule.Table, rule.Priority = fam, k.cfg.Table, sharedRulePriority
		rule.Mark, rule.Invert = k.cfg.Mark&0xffff, true
		rule.Mask = new(uint32)
		*rule.Mask = 0xffff
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
				(r.Priority == pinRulePriority && uint32(r.Table)&^0xffff == pinTableBase) ||
				(r.Priority == sharedRulePriority && r.Table == k.cfg.Table) {
				r := r
				netlink.RuleDel(&r)
			}
		}
	}
	return n
}
