package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/clusterstore"
)

// Virtual IP leases across the cluster (RFC 7296 §2.19: an inner address
// is one peer's while it holds it). Every node has the same pools, so
// left alone two nodes would lease one address to two clients. The
// engine leases synchronously inside IKE_AUTH, where a round trip to
// etcd per lease has no place (sans-I/O); so the pools are cut into
// blocks (/28, /124) and a node leases only from blocks it owns in etcd:
// vipblocks/<address>_<bits> = {"owner": node}, created by a compare-and-
// swap (exactly one node gets a block). A node claims its next block when
// fewer than blockLowWater addresses of its blocks are free.
//
// Addresses move with their SAs (hand-over, takeover), so a block's owner
// may find some of its addresses held on other nodes: every SA record
// lists its SA's inner addresses in the clear (they are in every packet's
// inner header anyway), and a node never leases an address another node's
// record holds (ike.Leases.Fence's reserved). A block whose owner is dead
// and whose addresses no record holds is taken over by the next node
// that needs one.

const (
	blockBits4    = 4 // 16 addresses
	blockBits6    = 4
	blockLowWater = 4
	// leavingFor is how long the addresses of an SA handed over stay
	// reserved on the node that handed it over, whatever its view shows.
	leavingFor = 30 * time.Second
	// maxBlockScan bounds how many blocks of a pool one claim looks at.
	maxBlockScan = 1 << 12
)

type vipBlock struct {
	Owner uint8 `json:"owner"`
}

// listedBlock is a block as read: its owner and revision.
type listedBlock struct {
	owner uint8
	rev   int64
}

func (c Config) blockPrefix() string { return c.prefix() + "vipblocks/" }

func (c Config) blockKey(b netip.Prefix) string {
	return fmt.Sprintf("%s%s_%d", c.blockPrefix(), b.Addr(), b.Bits())
}

// parseBlockKey is the block a key names.
func parseBlockKey(key string) (netip.Prefix, bool) {
	name := key[strings.LastIndexByte(key, '/')+1:]
	a, bits, ok := strings.Cut(name, "_")
	addr, err1 := netip.ParseAddr(a)
	n, err2 := strconv.Atoi(bits)
	if !ok || err1 != nil || err2 != nil || n < 0 || n > addr.BitLen() {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(addr, n)
	return p, p.Masked() == p
}

// SetPools tells the coordinator the prefixes of the node's address
// pools (the same on every node) and what to tell when the node's blocks
// or the addresses other nodes hold change: the daemon fences the
// engine's lease registry with them (ike.Leases.Fence). Until the first
// call of fence the node leases nothing.
func (c *Coordinator) SetPools(pools []netip.Prefix, fence func(blocks []netip.Prefix, reserved []netip.Addr)) {
	c.pools = slices.Clone(pools)
	c.fence = fence
}

// blockOf is the block of a pool that a falls in.
func blockOf(pool netip.Prefix, a netip.Addr) netip.Prefix {
	bits := a.BitLen() - blockBits4
	if a.Is6() {
		bits = a.BitLen() - blockBits6
	}
	b, _ := a.Prefix(max(bits, pool.Bits()))
	return b
}

// vips keeps the node's blocks: enough free addresses, and the fence
// current. used are the addresses the node's own SAs hold.
func (c *Coordinator) vips(ctx context.Context, now time.Time, recs []SARecord, live map[uint8]bool, used []netip.Addr) error {
	if len(c.pools) == 0 || c.fence == nil {
		return nil
	}
	self := c.n.cfg.Node
	vs, _, err := c.n.st.List(ctx, c.n.cfg.blockPrefix())
	if err != nil {
		return err
	}
	blocks := map[netip.Prefix]listedBlock{}
	for _, v := range vs {
		b, ok := parseBlockKey(v.Key)
		var vb vipBlock
		if !ok || len(v.Data) > 256 || json.NewDecoder(bytes.NewReader(v.Data)).Decode(&vb) != nil {
			continue
		}
		blocks[b] = listedBlock{vb.Owner, v.Revision}
	}
	// Addresses held on other nodes; and on any node, for reclaiming.
	var reserved []netip.Addr
	held := map[netip.Addr]bool{}
	for _, r := range recs {
		for _, a := range r.VIPs {
			held[a] = true
			if r.Owner != self {
				reserved = append(reserved, a)
			}
		}
	}
	// The addresses of SAs handed over lately: the view may not show
	// their records' new owner yet (a watch lags a little).
	for a, until := range c.leaving {
		if now.After(until) {
			delete(c.leaving, a)
			continue
		}
		reserved = append(reserved, a)
		held[a] = true
	}
	for _, a := range used {
		held[a] = true
	}
	var mine []netip.Prefix
	for b, l := range blocks {
		if l.owner == self {
			mine = append(mine, b)
		}
	}
	free := 0
	for _, b := range mine {
		free += freeIn(b, c.pools, held)
	}
	if free < blockLowWater {
		b, err := c.claimBlock(ctx, blocks, live, held)
		switch {
		case err != nil:
			c.log.Warn("cluster: cannot claim a block of virtual IP addresses", "err", err)
		case b.IsValid():
			mine = append(mine, b)
			c.log.Info("cluster: claimed a block of virtual IP addresses", "block", b)
		}
	}
	slices.SortFunc(mine, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	// Only what falls in our blocks matters to our leases: the fence
	// stays small however many SAs the cluster has.
	reserved = slices.DeleteFunc(reserved, func(a netip.Addr) bool {
		return !slices.ContainsFunc(mine, func(b netip.Prefix) bool { return b.Contains(a) })
	})
	slices.SortFunc(reserved, netip.Addr.Compare)
	reserved = slices.Compact(reserved)
	if !c.fenced || !slices.Equal(mine, c.myBlocks) || !slices.Equal(reserved, c.reserved) {
		c.fenced, c.myBlocks, c.reserved = true, mine, reserved
		c.fence(slices.Clone(mine), slices.Clone(reserved))
	}
	return nil
}

// freeIn counts the addresses of block b that a pool may lease and
// nobody holds.
func freeIn(b netip.Prefix, pools []netip.Prefix, held map[netip.Addr]bool) int {
	n := 0
	for a, i := b.Addr(), 0; b.Contains(a) && i < 1<<blockBits4; a, i = a.Next(), i+1 {
		for _, p := range pools {
			if p.Contains(a) && a != p.Addr() && a != p.Addr().Next() && !(a.Is4() && a == lastOf(p)) && !held[a] {
				n++
				break
			}
		}
	}
	return n
}

// claimBlock takes the first block of the pools nobody has, or else a
// dead node's block whose addresses no SA holds; the zero prefix when
// there is none.
func (c *Coordinator) claimBlock(ctx context.Context, blocks map[netip.Prefix]listedBlock, live map[uint8]bool, held map[netip.Addr]bool) (netip.Prefix, error) {
	data, _ := json.Marshal(vipBlock{Owner: c.n.cfg.Node})
	try := func(b netip.Prefix, rev int64) (bool, error) {
		_, err := c.n.st.Put(ctx, c.n.cfg.blockKey(b), data, rev, 0)
		if errors.Is(err, clusterstore.ErrConflict) {
			return false, nil // another node was first
		}
		return err == nil, err
	}
	for _, p := range c.pools {
		p = p.Masked()
		a := p.Addr()
		for i := 0; i < maxBlockScan && p.Contains(a); i++ {
			b := blockOf(p, a)
			if _, taken := blocks[b]; !taken && freeIn(b, c.pools, held) > 0 {
				if ok, err := try(b, 0); ok || err != nil {
					return b, err
				}
			}
			next, ok := nextBlock(b)
			if !ok {
				break
			}
			a = next
		}
	}
	// A dead node's blocks, in address order (the same choice on every
	// run: the simulator is deterministic).
	dead := slices.SortedFunc(maps.Keys(blocks), func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	for _, b := range dead {
		l := blocks[b]
		if live[l.owner] || !slices.ContainsFunc(c.pools, func(p netip.Prefix) bool { return p.Overlaps(b) }) {
			continue
		}
		inUse := false
		for a := range held {
			if b.Contains(a) {
				inUse = true
				break
			}
		}
		if !inUse {
			if ok, err := try(b, l.rev); ok || err != nil {
				return b, err
			}
		}
	}
	return netip.Prefix{}, nil
}

// nextBlock is the first address after block b.
func nextBlock(b netip.Prefix) (netip.Addr, bool) {
	last := lastOf(b)
	n := last.Next()
	return n, n.IsValid()
}

// lastOf is the last address of prefix p.
func lastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
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
