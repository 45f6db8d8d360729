package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mifike/mifike/internal/clusterstore"
	"github.com/mifike/mifike/internal/etcdlab"
)

func testSealer(t testing.TB) (*Sealer, []byte) {
	key := make([]byte, KeySize)
	rand.Read(key)
	s, err := NewSealer(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// Hand-over (RFC 7791 load sharing) and takeover through the records:
// the owner publishes, hands to another node, which opens the state; a
// stale writer (the old owner) is told it lost the SA; of three
// survivors claiming a dead node's SA exactly one wins.
func TestRecordsHandOffAndClaim(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := clusterstore.NewMemory(clk.Now)
	s, _ := testSealer(t)
	var nodes []*Records
	for id := uint8(1); id <= 4; id++ {
		n, err := Join(ctx, st, testConfig(id), clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, NewRecords(n, s))
	}
	a, b := nodes[0], nodes[1]
	state := []byte("the exported IKE SA")
	rec, err := a.Publish(ctx, SARecord{SPIi: 0x0100000000000001, SPIr: 0x0100000000000002}, state)
	if err != nil {
		t.Fatal(err)
	}
	stale := rec
	rec, err = a.Publish(ctx, rec, []byte("after a rekey"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, stale, state); !errors.Is(err, ErrLost) {
		t.Fatalf("a write from a stale revision: %v", err)
	}
	rec, err = a.HandOff(ctx, rec, []byte("the clone, handed over"), 2)
	if err != nil {
		t.Fatal(err)
	}
	recs, _, bad, err := b.List(ctx)
	if err != nil || bad != 0 || len(recs) != 1 || recs[0].Owner != 2 || recs[0].From != 1 || recs[0].Epoch != 1 {
		t.Fatalf("records seen by node 2: %+v, %d bad, %v", recs, bad, err)
	}
	if got, err := b.Open(recs[0]); err != nil || string(got) != "the clone, handed over" {
		t.Fatalf("node 2 opens %q, %v", got, err)
	}
	if _, err := a.HandOff(ctx, recs[0], state, 3); err == nil {
		t.Fatal("node 1 handed over an SA that is node 2's")
	}
	if _, err := a.Publish(ctx, rec, state); !errors.Is(err, ErrLost) {
		t.Fatalf("node 1 wrote the record it handed over: %v", err)
	}

	// Node 2 dies; nodes 1, 3 and 4 claim its SA at once.
	var wins, lost int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range []*Records{nodes[0], nodes[2], nodes[3]} {
		wg.Go(func() {
			_, got, err := r.Claim(ctx, recs[0])
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && string(got) == "the clone, handed over":
				wins++
			case errors.Is(err, ErrLost):
				lost++
			default:
				t.Errorf("claim: %q, %v", got, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || lost != 2 {
		t.Fatalf("%d claims won, %d lost; want 1 and 2", wins, lost)
	}
	recs, _, _, _ = b.List(ctx)
	if recs[0].Epoch != 2 || recs[0].Owner == 2 {
		t.Fatalf("after the claim: %+v", recs[0])
	}
	// An older epoch's sealed state written back does not open.
	old := recs[0]
	old.State = rec.State
	if _, err := b.Open(old); !errors.Is(err, ErrOpen) {
		t.Fatalf("epoch 1's state under epoch 2: %v", err)
	}
}

func TestDecodeRecordRefuses(t *testing.T) {
	cfg := testConfig(1)
	key := cfg.SAKey(1, 2)
	for name, b := range map[string]string{
		"other SPIs":    `{"owner":1,"epoch":0,"spi_i":1,"spi_r":3,"state":""}`,
		"no owner":      `{"owner":0,"epoch":0,"spi_i":1,"spi_r":2,"state":""}`,
		"unknown field": `{"owner":1,"epoch":0,"spi_i":1,"spi_r":2,"state":"","x":1}`,
		"trailing":      `{"owner":1,"epoch":0,"spi_i":1,"spi_r":2,"state":""} {}`,
		"not JSON":      `owner=1`,
	} {
		if _, err := DecodeRecord(key, []byte(b)); err == nil {
			t.Errorf("%s: taken", name)
		}
	}
	if _, err := DecodeRecord(key, []byte(`{"owner":1,"epoch":0,"spi_i":1,"spi_r":2,"state":""}`)); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	cfg := testConfig(1)
	key := cfg.SAKey(1, 2)
	f.Add([]byte(`{"owner":1,"epoch":0,"spi_i":1,"spi_r":2,"state":"AAAA"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(key, b)
		if err == nil && (r.Owner == 0 || r.SPIi != 1 || r.SPIr != 2) {
			t.Fatalf("took %+v", r)
		}
	})
}

// RFC 7791 §8, keys at rest: what a node writes to etcd, the IKE SA's
// keys among it, is sealed; a search of every member's data directory
// finds neither the SA's key octets nor the key-encryption key.
func TestNoKeysInEtcdDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no embedded etcd")
	}
	dir := t.TempDir()
	lab, err := etcdlab.Start(dir, 3, etcdlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	c, err := clientv3.New(clientv3.Config{Endpoints: lab.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	st := clusterstore.NewEtcd(c)
	n, err := Join(ctx, st, testConfig(1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, kek := testSealer(t)
	r := NewRecords(n, s)
	skd := make([]byte, 32)
	rand.Read(skd)
	state := append([]byte(`{"sk_d":"`), skd...)
	rec, err := r.Publish(ctx, SARecord{SPIi: 7, SPIr: 9}, state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(ctx, rec, state); err != nil { // a rekey writes again
		t.Fatal(err)
	}
	lab.Close() // flush everything to disk
	files := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for what, secret := range map[string][]byte{"the SA's key": skd, "the key-encryption key": kek, "the state": state} {
			if bytes.Contains(b, secret) {
				t.Errorf("%s found in %s", what, path)
			}
		}
		return nil
	})
	if files < 3 {
		t.Fatalf("only %d files in the etcd data directories", files)
	}
	t.Logf("searched %d files of 3 etcd members", files)
}
