package ike

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/wire"
)

// Leases is a lease registry: the table of every virtual address handed
// out by the pools made from it. An address is leased to one owner at a
// time whichever of those pools handed it out, so pools whose prefixes
// overlap can never give one inner address to two peers (RFC 7296 §2.19:
// the address is the peer's for as long as it holds it; two peers with one
// address would black-hole one of them).
//
// Every pool one engine uses must come from one registry, and the
// registry must outlive a reload: a pool the new configuration renames,
// resizes or drops may still have addresses held by running SAs, and a
// new pool that overlaps it must not hand those out until they are
// released (config.Build carries the registry over).
//
// Like the engine, a registry is not safe for concurrent use.
type Leases struct {
	byAddr  map[netip.Addr]*lease
	byOwner map[string][]*lease // one per pool prefix the owner holds an address in
	// A gateway cluster's node leases new addresses only from the blocks
	// the cluster gave it, and never one an SA on another node holds
	// (Fence; docs/cluster.md).
	fenced   bool
	blocks   []netip.Prefix
	reserved map[netip.Addr]bool
}

// Fence restricts new leases of every pool of the registry to blocks
// (an empty list: none at all) and keeps them off reserved: a gateway
// cluster's node gets blocks of the shared pools from etcd, so that no
// two nodes lease one address (RFC 7296 §2.19), and reserved are the
// addresses SAs on other nodes hold (taken over or handed over from a
// block this node has). Leases already held, and Claim of an imported
// SA's address, are not affected.
func (r *Leases) Fence(blocks []netip.Prefix, reserved []netip.Addr) {
	r.fenced = true
	r.blocks = slices.Clone(blocks)
	r.reserved = make(map[netip.Addr]bool, len(reserved))
	for _, a := range reserved {
		r.reserved[a] = true
	}
}

// free reports whether a new lease may use a.
func (r *Leases) free(a netip.Addr) bool {
	_, used := r.byAddr[a]
	return !used && !r.reserved[a]
}

type lease struct {
	owner string
	addr  netip.Addr
	refs  int
}

// NewLeases returns an empty registry.
func NewLeases() *Leases {
	return &Leases{byAddr: map[netip.Addr]*lease{}, byOwner: map[string][]*lease{}}
}

// Len is the number of leased addresses over every pool of the registry.
func (r *Leases) Len() int { return len(r.byAddr) }

// Pool hands out virtual addresses through the Configuration payload
// (RFC 7296 §2.19, §3.15) from one prefix of its registry. One identity
// gets one address of the prefix, held while any of its IKE SAs holds it
// (reference counted), so a peer that reconnects or holds several IKE SAs
// keeps its inner address.
type Pool struct {
	Name   string
	Prefix netip.Prefix
	DNS    []netip.Addr

	leases *Leases
	next   netip.Addr
	size   uint64 // assignable addresses, at most 2^32
}

// NewPool makes a pool of the host addresses of prefix (network and, for
// IPv4, broadcast and the first host are kept back: the first host is
// usually the gateway's own inner address).
func (r *Leases) NewPool(name string, prefix netip.Prefix, dns ...netip.Addr) (*Pool, error) {
	prefix = prefix.Masked()
	if !prefix.IsValid() {
		return nil, fmt.Errorf("pool %s: invalid prefix", name)
	}
	if prefix.Addr().Is4In6() {
		// An IPv4-mapped pool would overlap an IPv4 pool without either
		// prefix saying so.
		return nil, fmt.Errorf("pool %s: %v is an IPv4-mapped prefix; give the IPv4 prefix", name, prefix)
	}
	hostBits := prefix.Addr().BitLen() - prefix.Bits()
	if hostBits < 2 {
		return nil, fmt.Errorf("pool %s: prefix %v has no room for clients (need /30 or larger)", name, prefix)
	}
	// The assignable addresses (all of them up to 2^32, which bounds a
	// scan): IPv6 has no broadcast address to keep back.
	size := uint64(1)<<min(hostBits, 32) - 2
	if prefix.Addr().Is4() {
		size--
	}
	return &Pool{Name: name, Prefix: prefix, DNS: dns, leases: r, next: prefix.Addr().Next().Next(), size: size}, nil
}

// NewPool makes a pool with a registry of its own. Pools that serve one
// engine must share a registry instead (Leases.NewPool): this pool knows
// nothing of the addresses another registry's pools hand out.
func NewPool(name string, prefix netip.Prefix, dns ...netip.Addr) (*Pool, error) {
	return NewLeases().NewPool(name, prefix, dns...)
}

// Leases is the registry the pool leases from.
func (p *Pool) Leases() *Leases { return p.leases }

// assignable reports whether the pool may hand out a: a host address of
// its prefix that is not the network, the first host (the gateway's) or,
// for IPv4, the broadcast address.
func (p *Pool) assignable(a netip.Addr) bool {
	return p.Prefix.Contains(a) && a != p.Prefix.Addr() && a != p.Prefix.Addr().Next() && !(a.Is4() && a == lastOf(p.Prefix))
}

// Acquire returns owner's address in the pool, assigning a free one the
// first time. The owner's address is one it already holds in the prefix
// through any pool of the registry, so a peer keeps its inner address when
// a reload renames or resizes the pool that gave it (§2.19); otherwise an
// address no pool of the registry has leased.
func (p *Pool) Acquire(owner string) (netip.Addr, error) {
	r := p.leases
	for _, l := range r.byOwner[owner] {
		if p.assignable(l.addr) {
			l.refs++
			return l.addr, nil
		}
	}
	if r.fenced {
		return p.acquireFenced(owner)
	}
	// The scan ends at a free address or after every address of the pool:
	// within min(size, leases in the registry + 2) steps either way.
	a := p.next
	for i := uint64(0); i < p.size; i++ {
		if !p.assignable(a) {
			a = p.Prefix.Addr().Next().Next()
		}
		if r.free(a) {
			p.lease(owner, a)
			p.next = a.Next()
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("pool %s (%v) is exhausted", p.Name, p.Prefix)
}

func (p *Pool) lease(owner string, a netip.Addr) {
	r := p.leases
	l := &lease{owner: owner, addr: a, refs: 1}
	r.byAddr[a] = l
	r.byOwner[owner] = append(r.byOwner[owner], l)
}

// maxBlockScan bounds the addresses one fenced Acquire looks at (blocks
// are small: a cluster hands out /28s).
const maxBlockScan = 1 << 16

// acquireFenced is Acquire within the cluster's blocks.
func (p *Pool) acquireFenced(owner string) (netip.Addr, error) {
	r := p.leases
	n := 0
	for _, b := range r.blocks {
		if !p.Prefix.Overlaps(b) {
			continue
		}
		for a := b.Masked().Addr(); b.Contains(a) && n < maxBlockScan; a = a.Next() {
			n++
			if p.assignable(a) && r.free(a) {
				p.lease(owner, a)
				return a, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("pool %s (%v): no free address in the blocks the cluster gave this node yet", p.Name, p.Prefix)
}

// Claim leases addr to owner, as Acquire would have, for an SA imported
// from another engine that assigned it (Engine.Import). It fails when addr
// is not the pool's to give or another owner holds it.
func (p *Pool) Claim(addr netip.Addr, owner string) error {
	if !p.assignable(addr) {
		return fmt.Errorf("pool %s (%v) cannot assign %v", p.Name, p.Prefix, addr)
	}
	r := p.leases
	if l, used := r.byAddr[addr]; used {
		if l.owner != owner {
			return fmt.Errorf("pool %s: %v is leased to another peer", p.Name, addr)
		}
		l.refs++
		return nil
	}
	l := &lease{owner: owner, addr: addr, refs: 1}
	r.byAddr[addr] = l
	r.byOwner[owner] = append(r.byOwner[owner], l)
	return nil
}

// Release drops one reference to addr, which Acquire on this pool
// returned; the last one frees the address for every pool of the
// registry.
func (p *Pool) Release(addr netip.Addr) {
	r := p.leases
	l, ok := r.byAddr[addr]
	if !ok || !p.Prefix.Contains(addr) {
		return
	}
	if l.refs--; l.refs > 0 {
		return
	}
	delete(r.byAddr, addr)
	ls := slices.DeleteFunc(r.byOwner[l.owner], func(x *lease) bool { return x == l })
	if len(ls) == 0 {
		delete(r.byOwner, l.owner)
	} else {
		r.byOwner[l.owner] = ls
	}
}

// InUse is the number of the pool's addresses that are leased, whichever
// pool of the registry leased them.
func (p *Pool) InUse() int {
	n := 0
	for a := range p.leases.byAddr {
		if p.assignable(a) {
			n++
		}
	}
	return n
}

func lastOf(p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	for i := range a {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= p.Bits() {
				a[i] |= 0x80 >> bit
			}
		}
	}
	end, _ := netip.AddrFromSlice(a)
	return end
}

// Size is the number of addresses the pool can hand out (at most 2^32:
// a larger IPv6 pool is scanned as if it held that many).
func (p *Pool) Size() uint64 { return p.size }

// PoolLease is one address a pool's prefix has leased, and to whom: the
// peer's identity (as IKESAInfo.RemoteID shows it) on connection Conn.
type PoolLease struct {
	Addr     netip.Addr
	Conn     string
	Identity string
}

// ownerIdentity reads an owner key back (ikeSA.peerIdentity: the
// connection, "|", the ID type as one character, the ID's data).
func ownerIdentity(owner string) (conn, id string) {
	conn, rest, ok := strings.Cut(owner, "|")
	if !ok || rest == "" {
		return "", owner
	}
	r, n := utf8.DecodeRuneInString(rest)
	if r > 255 {
		return conn, rest
	}
	return conn, ikeauth.FormatID(wire.IDType(r), []byte(rest[n:]))
}

// Leased lists the leased addresses the pool could hand out, whichever
// pool of the registry leased them (as InUse counts), by address. An
// address is leased while an IKE SA holds it and free again once the
// last one is gone: there are no offline leases to list.
func (p *Pool) Leased() []PoolLease {
	var out []PoolLease
	for a, l := range p.leases.byAddr {
		if p.assignable(a) {
			conn, id := ownerIdentity(l.owner)
			out = append(out, PoolLease{Addr: a, Conn: conn, Identity: id})
		}
	}
	slices.SortFunc(out, func(x, y PoolLease) int { return x.Addr.Compare(y.Addr) })
	return out
}
