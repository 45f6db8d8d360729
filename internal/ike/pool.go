package ike

import (
	"fmt"
	"net/netip"
)

// Pool hands out virtual addresses through the Configuration payload
// (RFC 7296 §2.19, §3.15). One identity gets one address, held while any of
// its IKE SAs holds it (reference counted), so a peer that reconnects or
// holds several IKE SAs keeps its inner address.
type Pool struct {
	Name   string
	Prefix netip.Prefix
	DNS    []netip.Addr

	byOwner map[string]*lease
	byAddr  map[netip.Addr]*lease
	next    netip.Addr
	size    uint64
}

type lease struct {
	owner string
	addr  netip.Addr
	refs  int
}

// NewPool makes a pool of the host addresses of prefix (network and, for
// IPv4, broadcast and the first host are kept back: the first host is
// usually the gateway's own inner address).
func NewPool(name string, prefix netip.Prefix, dns ...netip.Addr) (*Pool, error) {
	prefix = prefix.Masked()
	if !prefix.IsValid() {
		return nil, fmt.Errorf("pool %s: invalid prefix", name)
	}
	hostBits := prefix.Addr().BitLen() - prefix.Bits()
	if hostBits < 2 {
		return nil, fmt.Errorf("pool %s: prefix %v has no room for clients (need /30 or larger)", name, prefix)
	}
	size := uint64(1)<<min(hostBits, 32) - 3
	return &Pool{Name: name, Prefix: prefix, DNS: dns, byOwner: map[string]*lease{}, byAddr: map[netip.Addr]*lease{},
		next: prefix.Addr().Next().Next(), size: size}, nil
}

// Acquire returns owner's address, assigning a free one the first time.
func (p *Pool) Acquire(owner string) (netip.Addr, error) {
	if l, ok := p.byOwner[owner]; ok {
		l.refs++
		return l.addr, nil
	}
	if uint64(len(p.byAddr)) >= p.size {
		return netip.Addr{}, fmt.Errorf("pool %s (%v) is exhausted", p.Name, p.Prefix)
	}
	a := p.next
	for i := uint64(0); i < p.size; i++ {
		if !p.Prefix.Contains(a) || a == p.Prefix.Addr() || a == p.Prefix.Addr().Next() || a == lastOf(p.Prefix) && a.Is4() {
			a = p.Prefix.Addr().Next().Next()
		}
		if _, used := p.byAddr[a]; !used {
			l := &lease{owner: owner, addr: a, refs: 1}
			p.byOwner[owner], p.byAddr[a] = l, l
			p.next = a.Next()
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("pool %s (%v) is exhausted", p.Name, p.Prefix)
}

// Release drops one reference to addr.
func (p *Pool) Release(addr netip.Addr) {
	l, ok := p.byAddr[addr]
	if !ok {
		return
	}
	if l.refs--; l.refs <= 0 {
		delete(p.byAddr, addr)
		delete(p.byOwner, l.owner)
	}
}

// InUse is the number of leased addresses.
func (p *Pool) InUse() int { return len(p.byAddr) }

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
