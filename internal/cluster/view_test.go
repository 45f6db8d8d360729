package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mifike/mifike/internal/clusterstore"
	"github.com/mifike/mifike/internal/etcdlab"
	"github.com/mifike/mifike/internal/ike"
)

// The coordinator's view of the SA records, kept by a watch, ends where
// a List of the store would: after random publishes, rewrites (rekeys),
// hand-overs and deletes by two nodes, with the view read between them
// at random, and after its watch is cut (a relist).
func TestRecordViewFollowsTheStore(t *testing.T) {
	run := func(t *testing.T, st clusterstore.Store) {
		ctx := context.Background()
		n1, err := Join(ctx, st, testConfig(1), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		n2, err := Join(ctx, st, testConfig(2), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		s, _ := testSealer(t)
		r1, r2 := NewRecords(n1, s), NewRecords(n2, s)
		v := &recordView{st: st, prefix: testConfig(1).saPrefix()}
		defer v.close()
		rng := rand.New(rand.NewPCG(1, 2))
		var live []SARecord
		for i := range 300 {
			switch op := rng.IntN(10); {
			case op < 4 || len(live) == 0:
				rec, err := r1.Publish(ctx, SARecord{SPIi: uint64(i + 1), SPIr: 99, Family: uint64(i % 3)}, []byte("state"))
				if err != nil {
					t.Fatal(err)
				}
				live = append(live, rec)
			case op < 6:
				k := rng.IntN(len(live))
				if live[k].Owner != 1 {
					continue
				}
				rec, err := r1.Publish(ctx, live[k], []byte("rekeyed"))
				if err != nil {
					t.Fatal(err)
				}
				live[k] = rec
			case op < 8:
				k := rng.IntN(len(live))
				if live[k].Owner != 1 {
					continue
				}
				rec, err := r1.HandOff(ctx, live[k], []byte("state"), 2)
				if err != nil {
					t.Fatal(err)
				}
				live[k] = rec
			default:
				k := rng.IntN(len(live))
				rr := r1
				if live[k].Owner == 2 {
					rr = r2
				}
				if err := rr.Drop(ctx, live[k]); err != nil {
					t.Fatal(err)
				}
				live = slices.Delete(live, k, k+1)
			}
			if rng.IntN(20) == 0 {
				if _, err := v.records(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if i == 150 {
				v.cancel() // the watch ends: the view lists again
			}
		}
		want, _, _, err := r1.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []SARecord
		// The watch delivers a moment after the writes.
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if got, err = v.records(ctx); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) == fmt.Sprint(want) {
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("the view has %d records, a List %d:\nview %v\nlist %v", len(got), len(want), got, want)
		}
		if v.relists < 1 {
			t.Errorf("the view did not list again after its watch ended")
		}
		t.Logf("%d records; the view listed %d times after the first", len(want), v.relists)
	}
	t.Run("memory", func(t *testing.T) {
		clk := time.Now
		run(t, clusterstore.NewMemory(clk))
	})
	t.Run("etcd", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: no embedded etcd")
		}
		lab, err := etcdlab.Start(t.TempDir(), 1, etcdlab.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer lab.Close()
		c, err := clientv3.New(clientv3.Config{Endpoints: lab.Endpoints(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		run(t, clusterstore.NewEtcd(c))
	})
}

// A node takes a dead node's block of addresses once no SA holds any of
// them, and never one that an SA still holds (vips.go): with every block
// of a small pool owned by dead node 5, node 1 reclaims the first block
// whose addresses no record holds.
func TestVIPBlockReclaim(t *testing.T) {
	ctx := context.Background()
	st := clusterstore.NewMemory(time.Now)
	n1, err := Join(ctx, st, testConfig(1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := testSealer(t)
	c := NewCoordinator(n1, s, nil, nil)
	pool := netip.MustParsePrefix("10.99.0.0/27") // two blocks
	var gotBlocks []netip.Prefix
	c.SetPools([]netip.Prefix{pool}, func(b []netip.Prefix, _ []netip.Addr) { gotBlocks = b })
	blocks := []netip.Prefix{netip.MustParsePrefix("10.99.0.0/28"), netip.MustParsePrefix("10.99.0.16/28")}
	for _, b := range blocks {
		if _, err := st.Put(ctx, testConfig(1).blockKey(b), []byte(`{"owner":5}`), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	// An SA (taken over from node 5) holds an address of the first block.
	held := []SARecord{{Owner: 2, SPIi: 1, SPIr: 2, VIPs: []netip.Addr{netip.MustParseAddr("10.99.0.5")}}}
	if err := c.vips(ctx, time.Now(), held, map[uint8]bool{1: true, 2: true}, nil); err != nil {
		t.Fatal(err)
	}
	if len(gotBlocks) != 1 || gotBlocks[0] != blocks[1] {
		t.Fatalf("node 1 has blocks %v, want %v (the first is still in use)", gotBlocks, blocks[1:])
	}
	v, err := st.Get(ctx, testConfig(1).blockKey(blocks[1]))
	if err != nil || string(v.Data) != `{"owner":1}` {
		t.Fatalf("the reclaimed block's key: %q, %v", v.Data, err)
	}
	v, _ = st.Get(ctx, testConfig(1).blockKey(blocks[0]))
	if string(v.Data) != `{"owner":5}` {
		t.Fatalf("the block in use changed hands: %q", v.Data)
	}
}

// heldStore is a store whose watches deliver only when the test says
// (next): a watch that lags the writes, as etcd's does by a few
// milliseconds.
type heldStore struct {
	clusterstore.Store
	in  <-chan clusterstore.Event
	out chan clusterstore.Event
}

func (h *heldStore) Watch(ctx context.Context, prefix string, from int64) <-chan clusterstore.Event {
	h.in, h.out = h.Store.Watch(ctx, prefix, from), make(chan clusterstore.Event, 64)
	return h.out
}

// next lets the watch's next event through.
func (h *heldStore) next(t *testing.T) {
	t.Helper()
	select {
	case ev := <-h.in:
		h.out <- ev
	case <-time.After(10 * time.Second):
		t.Fatal("the watch delivered nothing")
	}
}

// handEngine is an engine that holds SAs and nothing else: what a
// coordinator imports, exports and forgets.
type handEngine struct {
	sas     map[uint64]ike.IKESAInfo
	adopted int
	next    uint64
}

func (e *handEngine) IKESAs() []ike.IKESAInfo { return slices.Collect(maps.Values(e.sas)) }
func (e *handEngine) Export(id uint64) ([]byte, error) {
	s := e.sas[id]
	return fmt.Appendf(nil, "%d-%d", s.SPIi, s.SPIr), nil
}
func (e *handEngine) Adopt(_ time.Time, b []byte, _ netip.Addr, _ []netip.Addr) (uint64, []ike.Action, error) {
	var s ike.IKESAInfo
	if _, err := fmt.Sscanf(string(b), "%d-%d", &s.SPIi, &s.SPIr); err != nil {
		return 0, nil, err
	}
	e.next++
	s.ID, s.State, s.MOBIKE = e.next, ike.StateEstablished, true
	e.sas[s.ID] = s
	e.adopted++
	return s.ID, nil, nil
}
func (e *handEngine) TakeOver(now time.Time, b []byte, local netip.Addr) (uint64, []ike.Action, error) {
	return e.Adopt(now, b, local, nil)
}
func (e *handEngine) Forget(_ time.Time, id uint64) ([]ike.Action, error) {
	delete(e.sas, id)
	return nil, nil
}

// A node that passes on an SA handed to it must not take it back from
// its own view of the records, which the watch has not yet brought up to
// its own hand-over: node 2 imported an SA from node 1, wrote its record
// (a Child SA), and handed it to node 3; its next steps, with the watch
// lagging and then delivering one old event at a time, import nothing.
// Before the view took the node's own writes, node 2 imported the SA
// again (e2e TestClusterHandOff: the client dropped node 3's messages as
// replays of node 2's). Same for a record node 2 deleted.
func TestViewKeepsOwnWritesAheadOfTheWatch(t *testing.T) {
	ctx := context.Background()
	st := &heldStore{Store: clusterstore.NewMemory(time.Now)}
	s, _ := testSealer(t)
	var nodes []*Node
	for id := uint8(1); id <= 3; id++ {
		n, err := Join(ctx, st, testConfig(id), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	eng := &handEngine{sas: map[uint64]ike.IKESAInfo{}, next: 100}
	c := NewCoordinator(nodes[1], s, eng, nil)
	c.SetPlacement(PlaceNone)
	defer c.Close()
	if _, err := c.Step(ctx, time.Now()); err != nil { // lists, then watches
		t.Fatal(err)
	}
	// Node 1 hands two SAs to node 2.
	r1 := NewRecords(nodes[0], s)
	for spi := uint64(1); spi <= 2; spi++ {
		rec, err := r1.Publish(ctx, SARecord{SPIi: spi, SPIr: 7}, fmt.Appendf(nil, "%d-7", spi))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r1.HandOff(ctx, rec, fmt.Appendf(nil, "%d-7", spi), 2); err != nil {
			t.Fatal(err)
		}
		st.next(t)
		st.next(t)
	}
	if _, err := c.Step(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if eng.adopted != 2 {
		t.Fatalf("node 2 imported %d SAs, want 2", eng.adopted)
	}
	var ids []uint64
	for id := range eng.sas {
		c.Event(ike.Event{Kind: ike.EventChildUp, IKESA: id})
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if _, err := c.Step(ctx, time.Now()); err != nil { // writes both records
		t.Fatal(err)
	}
	if _, err := c.HandOff(ctx, time.Now(), ids[0], 3); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Forget(time.Now(), ids[1]); err != nil { // the peer deleted it
		t.Fatal(err)
	}
	c.Event(ike.Event{Kind: ike.EventIKEDown, IKESA: ids[1]})
	for i := 0; ; i++ {
		if _, err := c.Step(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if eng.adopted != 2 || len(eng.sas) != 0 {
			t.Fatalf("after %d of the watch's events, node 2 imported %d SAs (want 2) and has %d", i, eng.adopted, len(eng.sas))
		}
		if i == 4 { // two records written, a hand-over, a delete
			break
		}
		st.next(t)
	}
	recs, err := c.view.records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Owner != 3 || recs[0].From != 2 {
		t.Fatalf("the view has %+v, want the SA handed to node 3", recs)
	}
}

// An IKE SA rekey the peer refused is reported as ike-failed on the SA,
// which stays up (ike.Event.StillUp): its record stays, or another node
// could not take it over; an SA that failed for good loses its record.
func TestFailedRekeyKeepsTheRecord(t *testing.T) {
	ctx := context.Background()
	st := clusterstore.NewMemory(time.Now)
	n, err := Join(ctx, st, testConfig(1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := testSealer(t)
	eng := &handEngine{sas: map[uint64]ike.IKESAInfo{7: {ID: 7, SPIi: 1, SPIr: 2, State: ike.StateEstablished, MOBIKE: true}}}
	c := NewCoordinator(n, s, eng, nil)
	c.SetPlacement(PlaceNone)
	defer c.Close()
	c.Event(ike.Event{Kind: ike.EventIKEUp, IKESA: 7})
	if _, err := c.Step(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	c.Event(ike.Event{Kind: ike.EventIKEFailed, IKESA: 7, StillUp: true, Detail: "IKE SA rekey refused"})
	if _, err := c.Step(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, testConfig(1).SAKey(1, 2)); err != nil || c.Owned() != 1 {
		t.Fatalf("after a refused rekey: record %v, owned %d", err, c.Owned())
	}
	delete(eng.sas, 7)
	c.Event(ike.Event{Kind: ike.EventIKEFailed, IKESA: 7})
	if _, err := c.Step(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, testConfig(1).SAKey(1, 2)); !errors.Is(err, clusterstore.ErrNotFound) || c.Owned() != 0 {
		t.Fatalf("after the SA failed: record %v, owned %d", err, c.Owned())
	}
}
