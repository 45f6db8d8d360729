package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mifike/mifike/internal/clusterstore"
	"github.com/mifike/mifike/internal/etcdlab"
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
