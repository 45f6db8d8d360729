package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/ike"
)

// Engine is what a Coordinator needs of the IKE engine (*ike.Engine).
type Engine interface {
	IKESAs() []ike.IKESAInfo
	Export(id uint64) ([]byte, error)
	Adopt(now time.Time, b []byte, local netip.Addr, away []netip.Addr) (uint64, []ike.Action, error)
	TakeOver(now time.Time, b []byte, local netip.Addr) (uint64, []ike.Action, error)
	Forget(now time.Time, id uint64) ([]ike.Action, error)
}

// Coordinator keeps one node's IKE SAs in the cluster: it writes their
// records when they are made and rekeyed (Event, Step), drops them when
// they go, hands SAs to other nodes (HandOff), imports what other nodes
// hand to it, and claims and takes over the SAs of nodes that died
// (Step). It does no I/O of its own but through the Store, and takes
// the time from its caller: the daemon calls it from a goroutine of its
// own with etcd, the simulator inline with the in-memory store.
//
// Step sees every SA record through a view kept current by a watch
// (view.go): a step costs what changed since the last one.
type Coordinator struct {
	n    *Node
	recs *Records
	view *recordView
	eng  Engine
	log  *slog.Logger
	// mine are the records of this node's SAs as last written, by the
	// engine's SA id.
	mine map[uint64]SARecord
	// dirty SAs have changed since their record was written.
	dirty map[uint64]bool
	// gone are records to delete (their SAs were deleted here).
	gone []SARecord
	// announce, when set, is told the other live nodes' addresses
	// whenever they change (before any claim), for the engine to
	// announce with its own (ike.Engine.SetClusterAddresses).
	announce  func([]netip.Addr)
	announced []netip.Addr
	renewed   func(time.Time)
	// placement is what new clones are balanced by; fresh are the clones
	// made here that placement has not decided on yet, with the times it
	// could not export them (busy).
	placement Placement
	fresh     map[uint64]int
	// loads are the IKE SA records per owner as last listed.
	loads map[uint8]int
	// Virtual IP blocks (vips.go): the pools, what is told the node's
	// blocks and the addresses other nodes hold, what it was told last,
	// and the addresses of SAs handed over since the last Step.
	pools    []netip.Prefix
	fence    func([]netip.Prefix, []netip.Addr)
	fenced   bool
	myBlocks []netip.Prefix
	reserved []netip.Addr
	leaving  map[netip.Addr]time.Time // until when
}

// Placement is how a cluster spreads new clones over its live nodes.
type Placement uint8

const (
	// PlaceIKESAs hands each new clone to the live node with the fewest
	// IKE SAs, preferring nodes that hold none of the clone's family
	// (a client's per-interface VPNs on different nodes).
	PlaceIKESAs Placement = iota
	// PlaceChildSAs balances Child SAs instead.
	PlaceChildSAs
	// PlaceNone keeps clones where they were made (mifike cluster move
	// still hands them over).
	PlaceNone
)

// ParsePlacement reads a placement's configuration name.
func ParsePlacement(s string) (Placement, error) {
	switch s {
	case "", "ike_sas":
		return PlaceIKESAs, nil
	case "child_sas":
		return PlaceChildSAs, nil
	case "none":
		return PlaceNone, nil
	}
	return 0, fmt.Errorf("placement %q: want ike_sas, child_sas or none", s)
}

func (p Placement) String() string {
	return [...]string{"ike_sas", "child_sas", "none"}[min(int(p), 2)]
}

// SetPlacement sets how new clones are placed (default PlaceIKESAs).
func (c *Coordinator) SetPlacement(p Placement) { c.placement = p }

// OnRenewed sets what is told, at once, that the lease was renewed and
// until when the node may serve (before the rest of a Step, which may
// take a while with a slow store).
func (c *Coordinator) OnRenewed(f func(until time.Time)) { c.renewed = f }

// OnMembers sets what is told the other live nodes' addresses when they
// change.
func (c *Coordinator) OnMembers(f func([]netip.Addr)) { c.announce = f }

// NewCoordinator is node n's coordinator for engine eng; s seals the
// records.
func NewCoordinator(n *Node, s *Sealer, eng Engine, log *slog.Logger) *Coordinator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Coordinator{n: n, recs: NewRecords(n, s), eng: eng, log: log.With("node", n.cfg.Node),
		view: &recordView{st: n.st, prefix: n.cfg.saPrefix()},
		mine: map[uint64]SARecord{}, dirty: map[uint64]bool{}, fresh: map[uint64]int{}}
}

// Event tells the coordinator what the engine did: a new, rekeyed,
// imported or resynchronised SA must be written again; a deleted one's
// record goes.
func (c *Coordinator) Event(ev ike.Event) {
	switch ev.Kind {
	case ike.EventIKECloned:
		c.dirty[ev.IKESA] = true
		c.fresh[ev.IKESA] = 0
	case ike.EventIKEUp, ike.EventIKERekeyed, ike.EventChildUp, ike.EventChildRekeyed, ike.EventChildDown,
		ike.EventMessageIDSync, ike.EventAddressUpdate, ike.EventAddressConfirmed, ike.EventTCPFallback:
		c.dirty[ev.IKESA] = true
	case ike.EventIKEDown, ike.EventIKEFailed:
		if ev.StillUp {
			return // a failed rekey: the SA, and so its record, stays
		}
		if r, ok := c.mine[ev.IKESA]; ok {
			c.gone = append(c.gone, r)
			delete(c.mine, ev.IKESA)
		}
		delete(c.dirty, ev.IKESA)
		delete(c.fresh, ev.IKESA)
	}
}

// ListEveryStep reads every record at each step instead of watching
// them: for the simulator, whose in-memory store delivers watch events
// at no deterministic point of simulated time.
func (c *Coordinator) ListEveryStep() { c.view.close(); c.view.list = true }

// Close ends the coordinator's watch.
func (c *Coordinator) Close() { c.view.close() }

// Node is the coordinator's membership.
func (c *Coordinator) Node() *Node { return c.n }

// Loads are how many IKE SAs each node owned at the last Step (records
// by owner), for displays.
func (c *Coordinator) Loads() map[uint8]int { return maps.Clone(c.loads) }

// Placement is how the coordinator places new clones.
func (c *Coordinator) Placement() Placement { return c.placement }

// Owned reports how many SAs the node has records of.
func (c *Coordinator) Owned() int { return len(c.mine) }

// Step renews the node's lease, writes what changed, and takes what was
// handed to this node or left by a dead one. It returns the engine's
// actions to carry out, and ErrFenced when the node must stop sending.
func (c *Coordinator) Step(ctx context.Context, now time.Time) ([]ike.Action, error) {
	if err := c.n.Tick(ctx, now); err != nil {
		return nil, err
	}
	if c.renewed != nil {
		c.renewed(c.n.ServingUntil())
	}
	var acts []ike.Action
	c.dropGone(ctx)
	acts = append(acts, c.publish(ctx, now)...)
	more, err := c.adopt(ctx, now)
	return append(acts, more...), err
}

// Flush writes what changed and deletes what went, without renewing the
// lease or taking anything over: the last thing a node does before it
// leaves the cluster, so that the others can take over an SA made just
// before (its record is otherwise written at the next Step).
func (c *Coordinator) Flush(ctx context.Context, now time.Time) []ike.Action {
	c.dropGone(ctx)
	return c.publish(ctx, now)
}

// dropGone deletes the records of the SAs that went.
func (c *Coordinator) dropGone(ctx context.Context) {
	for _, r := range c.gone {
		err := c.recs.Drop(ctx, r)
		switch {
		case err == nil:
			c.view.dropped(c.n.cfg.SAKey(r.SPIi, r.SPIr), r.Revision)
		case !errors.Is(err, ErrLost):
			c.log.Warn("cluster: cannot delete an SA's record", "spi_i", fmt.Sprintf("%016x", r.SPIi), "err", err)
		}
	}
	c.gone = nil
}

// wrote tells the view of a record this node has just written.
func (c *Coordinator) wrote(r SARecord) { c.view.wrote(c.n.cfg.SAKey(r.SPIi, r.SPIr), r) }

// publish writes the records of the SAs that changed.
func (c *Coordinator) publish(ctx context.Context, now time.Time) []ike.Action {
	var acts []ike.Action
	byID := map[uint64]ike.IKESAInfo{}
	for _, s := range c.eng.IKESAs() {
		byID[s.ID] = s
	}
	ids := make([]uint64, 0, len(c.dirty))
	for id := range c.dirty {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s, ok := byID[id]
		if !ok {
			delete(c.dirty, id)
			continue
		}
		if s.State != ike.StateEstablished {
			continue // written once it is
		}
		state, err := c.eng.Export(id)
		if errors.Is(err, ike.ErrBusy) {
			continue // an exchange is under way: next time
		}
		if err != nil {
			c.log.Warn("cluster: cannot export an SA", "ike", id, "err", err)
			delete(c.dirty, id)
			continue
		}
		r, ok := c.mine[id]
		if !ok {
			r = SARecord{SPIi: s.SPIi, SPIr: s.SPIr}
		}
		r.Family, r.Children, r.VIPs = s.FamilyToken, len(s.Children), s.PeerVirtualIPs
		r, err = c.recs.Publish(ctx, r, state)
		switch {
		case errors.Is(err, ErrLost):
			// Another node owns it now (we were cut off and it was
			// taken over): not ours to answer any more.
			c.log.Warn("cluster: another node owns this SA now; dropping it", "ike", id)
			delete(c.mine, id)
			delete(c.dirty, id)
			a, _ := c.eng.Forget(now, id)
			acts = append(acts, a...)
		case err != nil:
			c.log.Warn("cluster: cannot write an SA's record", "ike", id, "err", err)
		default:
			c.mine[id] = r
			c.wrote(r)
			delete(c.dirty, id)
		}
	}
	return acts
}

// adopt imports the SAs handed to this node and claims those of dead
// nodes that placement gives it.
func (c *Coordinator) adopt(ctx context.Context, now time.Time) ([]ike.Action, error) {
	members, err := Members(ctx, c.n.st, c.n.cfg)
	if err != nil {
		return nil, err
	}
	live := map[uint8]bool{}
	var ids []uint8
	var others []netip.Addr
	addrs := map[uint8][]netip.Addr{}
	for _, m := range members {
		live[m.ID] = true
		ids = append(ids, m.ID)
		addrs[m.ID] = m.Addrs
		if m.ID != c.n.cfg.Node {
			others = append(others, m.Addrs...)
		}
	}
	slices.SortFunc(others, netip.Addr.Compare)
	if c.announce != nil && !slices.Equal(others, c.announced) {
		c.announced = others
		c.announce(others)
	}
	recs, err := c.view.records(ctx)
	if err != nil {
		return nil, err
	}
	loads := map[uint8]int{}
	for _, r := range recs {
		loads[r.Owner]++
	}
	c.loads = loads
	have := map[[2]uint64]bool{}
	var used []netip.Addr
	for _, s := range c.eng.IKESAs() {
		have[[2]uint64{s.SPIi, s.SPIr}] = true
		used = append(used, s.PeerVirtualIPs...)
	}
	self := c.n.cfg.Node
	var acts []ike.Action
	for _, r := range recs {
		if have[[2]uint64{r.SPIi, r.SPIr}] {
			continue
		}
		switch {
		case r.Owner == self && r.From != 0:
			acts = append(acts, c.receive(now, r, addrs[r.From])...)
		case r.Owner != self && !live[r.Owner] && placement(r, ids) == self:
			acts = append(acts, c.claim(ctx, now, r)...)
		}
	}
	acts = append(acts, c.place(ctx, now, recs, ids)...)
	return acts, c.vips(ctx, now, recs, live, used)
}

// place hands the clones made here to the live node the placement
// policy picks (RFC 7791 §1's load sharing). A clone is placed once,
// after its record is written; one that stays here is not looked at
// again, nor is an SA that came from another node.
func (c *Coordinator) place(ctx context.Context, now time.Time, recs []SARecord, live []uint8) []ike.Action {
	if len(c.fresh) == 0 {
		return nil
	}
	if c.placement == PlaceNone || len(live) < 2 {
		clear(c.fresh)
		return nil
	}
	self := c.n.cfg.Node
	// The load of every live node and of each family on it, from the
	// records as listed (this node's own from what it wrote since).
	load := map[uint8]int{}
	fam := map[uint8]map[uint64]int{}
	count := func(owner uint8, r SARecord, d int) {
		w := 1
		if c.placement == PlaceChildSAs {
			w = r.Children
		}
		load[owner] += w * d
		if r.Family != 0 {
			if fam[owner] == nil {
				fam[owner] = map[uint64]int{}
			}
			fam[owner][r.Family] += d
		}
	}
	for _, r := range recs {
		if r.Owner != self {
			count(r.Owner, r, 1)
		}
	}
	for _, r := range c.mine {
		count(self, r, 1)
	}
	var acts []ike.Action
	ids := make([]uint64, 0, len(c.fresh))
	for id := range c.fresh {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r, ok := c.mine[id]
		if !ok || c.dirty[id] {
			continue // its record is not written yet: next step
		}
		// Score every live node as if the clone were elsewhere: fewest
		// of its family first, then the lightest; ties stay here.
		count(self, r, -1)
		best := self
		score := func(n uint8) [2]int { return [2]int{fam[n][r.Family], load[n]} }
		for _, n := range live {
			if s, b := score(n), score(best); s[0] < b[0] || (s[0] == b[0] && s[1] < b[1]) {
				best = n
			}
		}
		if best == self {
			count(self, r, 1)
			delete(c.fresh, id)
			continue
		}
		a, err := c.HandOff(ctx, now, id, best)
		acts = append(acts, a...)
		switch {
		case err == nil:
			count(best, r, 1)
			c.log.Info("cluster: placed a clone on another node", "to", best, "placement", c.placement.String(), "spi_i", fmt.Sprintf("%016x", r.SPIi))
			delete(c.fresh, id)
		case errors.Is(err, ike.ErrBusy) && c.fresh[id] < 20:
			count(self, r, 1)
			c.fresh[id]++ // an exchange under way: next step
		default:
			count(self, r, 1)
			c.log.Warn("cluster: cannot place a clone on another node; it stays here", "to", best, "err", err)
			delete(c.fresh, id)
		}
	}
	return acts
}

// placement is the live node that takes over SA r of a dead node: the
// SAs of one node spread over the survivors by a hash of their SPIs.
func placement(r SARecord, live []uint8) uint8 {
	if len(live) == 0 {
		return 0
	}
	h := fnv.New32a()
	var b [16]byte
	for i := range 8 {
		b[i], b[8+i] = byte(r.SPIi>>(56-8*i)), byte(r.SPIr>>(56-8*i))
	}
	h.Write(b[:])
	return live[h.Sum32()%uint32(len(live))]
}

// receive imports an SA handed to this node (ike.Engine.Adopt): it
// moves to our address, by UPDATE_SA_ADDRESSES when the node that handed
// it over made it (RFC 7791 Appendix A: the cloner is the MOBIKE
// initiator), else by an address list without that node's addresses,
// away, which the client follows; its Child SAs are rekeyed.
func (c *Coordinator) receive(now time.Time, r SARecord, away []netip.Addr) []ike.Action {
	state, err := c.recs.Open(r)
	if err != nil {
		c.log.Warn("cluster: an SA handed to us does not open", "spi_i", fmt.Sprintf("%016x", r.SPIi), "from", r.From, "err", err)
		return nil
	}
	local, _ := c.ownAddr()
	id, acts, err := c.eng.Adopt(now, state, local, away)
	if err != nil {
		c.log.Warn("cluster: cannot import an SA handed to us", "from", r.From, "err", err)
		return acts
	}
	// Its next record says it is ours, no longer handed to us: were the
	// SA to leave the engine otherwise than by a hand-over, its record
	// must not bring it back.
	from := r.From
	r.From = 0
	c.mine[id] = r
	c.dirty[id] = true
	c.log.Info("cluster: SA handed over to us", "ike", id, "from", from)
	return acts
}

// claim takes over an SA of a dead node (RFC 6311).
func (c *Coordinator) claim(ctx context.Context, now time.Time, r SARecord) []ike.Action {
	dead := r.Owner
	r, state, err := c.recs.Claim(ctx, r)
	if errors.Is(err, ErrLost) {
		return nil // another survivor was first
	}
	if err != nil {
		c.log.Warn("cluster: cannot claim a dead node's SA", "owner", dead, "err", err)
		return nil
	}
	local, _ := c.ownAddr()
	id, acts, err := c.eng.TakeOver(now, state, local)
	if err != nil {
		// The record is ours but the SA cannot go on here (the peer
		// did not negotiate RFC 6311): it goes; the client reconnects.
		c.log.Warn("cluster: cannot take over a dead node's SA; dropping it", "owner", dead, "err", err)
		c.gone = append(c.gone, r)
		return acts
	}
	c.mine[id] = r
	c.wrote(r)
	c.log.Info("cluster: took over a dead node's SA", "ike", id, "from", dead)
	return acts
}

// HandOff gives IKE SA id to node to: its record goes to that node and
// the SA leaves this engine. The SA must be idle (ike.ErrBusy: try
// again a moment later).
func (c *Coordinator) HandOff(ctx context.Context, now time.Time, id uint64, to uint8) ([]ike.Action, error) {
	if to == c.n.cfg.Node {
		return nil, errors.New("cluster: the SA is on this node already")
	}
	var s ike.IKESAInfo
	for _, x := range c.eng.IKESAs() {
		if x.ID == id {
			s = x
		}
	}
	switch {
	case s.ID == 0:
		return nil, fmt.Errorf("cluster: no IKE SA %d", id)
	case !s.MOBIKE:
		// The other node could not bring the peer to its address: the
		// peer would go on sending here, to a node that forgot the SA.
		return nil, fmt.Errorf("cluster: IKE SA %d did not negotiate MOBIKE (RFC 4555), so it cannot move to another node's address", id)
	}
	state, err := c.eng.Export(id)
	if err != nil {
		return nil, err
	}
	r, ok := c.mine[id]
	if !ok {
		r = SARecord{SPIi: s.SPIi, SPIr: s.SPIr, Owner: c.n.cfg.Node}
	}
	r, err = c.recs.HandOff(ctx, r, state, to)
	if err != nil {
		return nil, err
	}
	c.wrote(r)
	delete(c.mine, id) // its ike-down must not delete the record
	delete(c.dirty, id)
	if len(s.PeerVirtualIPs) > 0 && c.fence != nil && c.fenced {
		// Its addresses are the other node's now: keep them off our
		// leases before Forget frees them here.
		if c.leaving == nil {
			c.leaving = map[netip.Addr]time.Time{}
		}
		for _, a := range s.PeerVirtualIPs {
			c.leaving[a] = now.Add(leavingFor)
		}
		c.fence(slices.Clone(c.myBlocks), append(slices.Clone(c.reserved), slices.Collect(maps.Keys(c.leaving))...))
	}
	c.log.Info("cluster: SA handed over", "ike", id, "to", to)
	return c.eng.Forget(now, id)
}

// ownAddr is the node's address for SAs that come to it.
func (c *Coordinator) ownAddr() (netip.Addr, bool) {
	if len(c.n.cfg.Addrs) == 0 {
		return netip.Addr{}, false
	}
	return c.n.cfg.Addrs[0], true
}
