package netsim

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/manager"
)

// Interface is one of a node's network interfaces: its addresses, the
// state the host sees (administratively up, carrier) and the one it does
// not (Silent). A node with interfaces announces every change to them as
// the kernel does over netlink, in the types the daemon passes on to its
// interface managers (manager.LinkEvent, manager.AddrEvent), so a test
// drives the daemon's own conversion code with them.
type Interface struct {
	Index   int
	Name    string
	Up      bool // administratively up (IFF_UP)
	Carrier bool // the link has carrier (IFF_RUNNING)
	// Silent: the link carries nothing, either way, while the host still
	// sees it up with carrier (a dead Wi-Fi, an upstream cut beyond the
	// first hop). No event says so.
	Silent bool
	Addrs  []netip.Addr
	paths  map[netip.Addr]Link // to a peer address, when set (SetPath)
}

// Flags are the interface's flags as netlink reports them.
func (i *Interface) Flags() net.Flags {
	f := net.FlagBroadcast | net.FlagMulticast
	if i.Up {
		f |= net.FlagUp
		if i.Carrier {
			f |= net.FlagRunning
		}
	}
	return f
}

// carries says whether the interface passes datagrams now.
func (i *Interface) carries() bool { return i.Up && i.Carrier && !i.Silent }

func (i *Interface) clone() Interface {
	c := *i
	c.Addrs = slices.Clone(i.Addrs)
	c.paths = nil
	return c
}

// AddInterface gives the node a new interface, up with carrier, holding
// addrs, and announces it (RTM_NEWLINK, then RTM_NEWADDR for each
// address). Indexes start at 2, after the loopback device's.
func (node *Node) AddInterface(name string, addrs ...netip.Addr) {
	if node.iface(name) != nil {
		panic(fmt.Sprintf("netsim: %s already has an interface %s", node.Name, name))
	}
	node.nextIndex = max(node.nextIndex, 1) + 1
	i := &Interface{Index: node.nextIndex, Name: name, Up: true, Carrier: true}
	node.ifaces = append(node.ifaces, i)
	node.net.tracef("%s: interface %s (%d) added", node.Name, name, i.Index)
	node.announceLink(i, false)
	for _, a := range addrs {
		node.AddIfaceAddr(name, a)
	}
}

// RemoveInterface deletes an interface with its addresses (RTM_DELADDR
// for each, then RTM_DELLINK, as the kernel announces it).
func (node *Node) RemoveInterface(name string) {
	i := node.mustIface(name)
	for _, a := range slices.Clone(i.Addrs) {
		node.RemoveIfaceAddr(name, a)
	}
	node.ifaces = slices.DeleteFunc(node.ifaces, func(x *Interface) bool { return x == i })
	node.net.tracef("%s: interface %s removed", node.Name, name)
	node.announceLink(i, true)
}

// SetCarrier makes the interface lose or regain carrier (a cable
// unplugged, a radio out of range): the host sees it (IFF_RUNNING).
func (node *Node) SetCarrier(name string, on bool) {
	i := node.mustIface(name)
	if i.Carrier == on {
		return
	}
	i.Carrier = on
	node.net.tracef("%s: %s carrier %v", node.Name, name, on)
	node.announceLink(i, false)
}

// SetUp brings the interface administratively up or down (ip link set).
func (node *Node) SetUp(name string, up bool) {
	i := node.mustIface(name)
	if i.Up == up {
		return
	}
	i.Up = up
	node.net.tracef("%s: %s admin up %v", node.Name, name, up)
	node.announceLink(i, false)
}

// SetSilent makes the interface's link drop everything, both ways, or
// work again, while the host sees no change: no event is announced.
func (node *Node) SetSilent(name string, silent bool) {
	node.mustIface(name).Silent = silent
	node.net.tracef("%s: %s silent %v", node.Name, name, silent)
}

// AddIfaceAddr puts address a on the interface (RTM_NEWADDR).
func (node *Node) AddIfaceAddr(name string, a netip.Addr) {
	i := node.mustIface(name)
	if slices.Contains(i.Addrs, a) {
		return
	}
	if o := node.net.owner[a]; o != nil && o.owns(a) {
		panic(fmt.Sprintf("netsim: %v is already %s's", a, o.Name))
	}
	i.Addrs = append(i.Addrs, a)
	node.AddAddr(a)
	node.net.tracef("%s: %s address %v added", node.Name, name, a)
	node.announce(manager.AddrEvent{Index: i.Index, Addr: a})
}

// RemoveIfaceAddr takes address a off the interface (RTM_DELADDR).
func (node *Node) RemoveIfaceAddr(name string, a netip.Addr) {
	i := node.mustIface(name)
	if !slices.Contains(i.Addrs, a) {
		return
	}
	i.Addrs = slices.DeleteFunc(i.Addrs, func(x netip.Addr) bool { return x == a })
	node.RemoveAddr(a)
	node.net.tracef("%s: %s address %v removed", node.Name, name, a)
	node.announce(manager.AddrEvent{Index: i.Index, Addr: a, Removed: true})
}

// SetPath sets the behaviour of the path between the interface and a
// peer's address, both ways. It takes precedence over Network.SetLink and
// the default for datagrams that leave or arrive through this interface.
func (node *Node) SetPath(name string, peer netip.Addr, l Link) {
	i := node.mustIface(name)
	if i.paths == nil {
		i.paths = map[netip.Addr]Link{}
	}
	i.paths[peer] = l
}

// Interfaces are the node's interfaces now (copies).
func (node *Node) Interfaces() []Interface {
	out := make([]Interface, 0, len(node.ifaces))
	for _, i := range node.ifaces {
		out = append(out, i.clone())
	}
	return out
}

// Interface is the interface called name, if the node has one.
func (node *Node) Interface(name string) (Interface, bool) {
	if i := node.iface(name); i != nil {
		return i.clone(), true
	}
	return Interface{}, false
}

// InterfaceOf is the name of the interface holding address a ("" when a
// is on none).
func (node *Node) InterfaceOf(a netip.Addr) string {
	if i := node.ifaceOf(a); i != nil {
		return i.Name
	}
	return ""
}

// Links is a full read of the node's interfaces, as a daemon makes at
// start (manager.Host.Reset takes it).
func (node *Node) Links() []manager.Link {
	out := make([]manager.Link, 0, len(node.ifaces))
	for _, i := range node.ifaces {
		out = append(out, manager.Link{Index: i.Index, Name: i.Name, Flags: i.Flags(), Addrs: slices.Clone(i.Addrs)})
	}
	return out
}

func (node *Node) announceLink(i *Interface, gone bool) {
	node.announce(manager.LinkEvent{Index: i.Index, Name: i.Name, Flags: i.Flags(), Gone: gone})
}

func (node *Node) announce(ev manager.HostEvent) {
	if node.OnHost != nil {
		node.OnHost(ev)
	}
}

func (node *Node) iface(name string) *Interface {
	for _, i := range node.ifaces {
		if i.Name == name {
			return i
		}
	}
	return nil
}

func (node *Node) mustIface(name string) *Interface {
	i := node.iface(name)
	if i == nil {
		panic(fmt.Sprintf("netsim: %s has no interface %s", node.Name, name))
	}
	return i
}

func (node *Node) ifaceOf(a netip.Addr) *Interface {
	for _, i := range node.ifaces {
		if slices.Contains(i.Addrs, a) {
			return i
		}
	}
	return nil
}

// egress is the interface a datagram leaves through: the one it is
// pinned to, else the one holding its source address (nil for an address
// on no interface). ok is false when the host cannot send it at all: a
// pinned interface or a source address it does not have.
func (node *Node) egress(d ike.Datagram) (i *Interface, ok bool) {
	if len(node.ifaces) == 0 {
		return nil, true // a node without interfaces: addresses only
	}
	if !node.owns(d.Local.Addr()) {
		return nil, false // EADDRNOTAVAIL
	}
	if d.Iface != "" {
		i = node.iface(d.Iface)
		return i, i != nil // ENODEV
	}
	return node.ifaceOf(d.Local.Addr()), true
}

// path is the behaviour between src (leaving through out, if known) and
// dst (arriving at in, if known): an interface's own path first, then the
// network's link between the two addresses, then the default.
func (n *Network) path(out *Interface, src, dst netip.Addr, in *Interface) Link {
	if out != nil {
		if l, ok := out.paths[dst]; ok {
			return l
		}
	}
	if in != nil {
		if l, ok := in.paths[src]; ok {
			return l
		}
	}
	return n.link(src, dst)
}

// Delivers says whether datagram d, sent now by the node holding its
// source address, would reach the node holding its destination, barring
// random loss: the interfaces at both ends pass traffic, the path is not
// down, and the destination address is there. Tests use it to tell that
// an SA's data path works.
func (n *Network) Delivers(d ike.Datagram) bool {
	from := n.owner[d.Local.Addr()]
	if from == nil {
		return false
	}
	out, ok := from.egress(d)
	if !ok || (out != nil && !out.carries()) {
		return false
	}
	to := n.owner[d.Remote.Addr()]
	if to == nil || !to.owns(d.Remote.Addr()) {
		return false
	}
	in := to.ifaceOf(d.Remote.Addr())
	if in != nil && !in.carries() {
		return false
	}
	return !n.path(out, d.Local.Addr(), d.Remote.Addr(), in).Down
}
