package cluster

import (
	"context"
	"slices"
	"strings"

	"github.com/mifike/mifike/internal/clusterstore"
)

// recordView is every SA record as a node sees it: read once with List,
// then kept current by a watch from that revision, so that a step costs
// what changed since the last one, not a read of every record (a gateway
// with tens of thousands of SAs, stepped six times a lease). A watch
// that ends (etcd compacted the revision, a connection lost) is started
// again from a fresh List.
//
// The view may lag the store by the watch's latency, a few milliseconds,
// but never behind the node's own writes: those go into the view at once
// (wrote, dropped), and the watch's older events for those keys are
// skipped. Otherwise a node that handed an SA over would, until the
// watch brought its own hand-over back, still see its record from before
// (its owner, handed to it by another) and import the SA it had just
// given away: two nodes answering one peer. What the view lags in other
// nodes' writes is either harmless (loads) or a compare-and-swap that
// fails on a stale revision (claims), to be tried again at the next
// step.
type recordView struct {
	st     clusterstore.Store
	prefix string
	// list, set in the simulator, lists at every step: the in-memory
	// store's watch delivers from a goroutine of its own, at no
	// deterministic point of the simulated time.
	list bool

	recs map[string]SARecord
	// pins are the keys this node wrote or deleted, with the revision
	// below which the watch's events for them are older than the view.
	pins   map[string]int64
	events <-chan clusterstore.Event
	cancel context.CancelFunc
	// relists counts Lists after the first (watches that ended).
	relists int
}

// records brings the view up to date and returns it in key order.
func (v *recordView) records(ctx context.Context) ([]SARecord, error) {
	if v.list || v.events == nil {
		if err := v.relist(ctx); err != nil {
			return nil, err
		}
	}
	for drained := false; !drained; {
		select {
		case ev, ok := <-v.events:
			if !ok || ev.Err != nil {
				v.relists++
				if err := v.relist(ctx); err != nil {
					return nil, err
				}
				continue
			}
			v.apply(ev)
		default:
			drained = true
		}
	}
	keys := make([]string, 0, len(v.recs))
	for k := range v.recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]SARecord, 0, len(keys))
	for _, k := range keys {
		out = append(out, v.recs[k])
	}
	return out, nil
}

// relist reads every record and, unless listing at every step, watches
// from the revision read.
func (v *recordView) relist(ctx context.Context) error {
	v.close()
	vs, rev, err := v.st.List(ctx, v.prefix)
	if err != nil {
		return err
	}
	v.recs = make(map[string]SARecord, len(vs))
	v.pins = nil // the list is newer than any write of ours
	for _, x := range vs {
		v.apply(clusterstore.Event{Kind: clusterstore.EventPut, Value: x})
	}
	if !v.list {
		wctx, cancel := context.WithCancel(context.Background())
		v.events, v.cancel = v.st.Watch(wctx, v.prefix, rev+1), cancel
	}
	return nil
}

// apply takes one change; a record that does not parse is left out.
func (v *recordView) apply(ev clusterstore.Event) {
	key := ev.Value.Key
	if !strings.HasPrefix(key, v.prefix) {
		return
	}
	if pin, ok := v.pins[key]; ok {
		if ev.Value.Revision < pin {
			return // from before our own write, which the view has
		}
		delete(v.pins, key)
	}
	if ev.Kind == clusterstore.EventDelete {
		delete(v.recs, key)
		return
	}
	rec, err := DecodeRecord(key, ev.Value.Data)
	if err != nil {
		delete(v.recs, key)
		return
	}
	rec.Revision = ev.Value.Revision
	v.recs[key] = rec
}

// wrote puts a record this node has just written (rec.Revision its new
// revision) into the view.
func (v *recordView) wrote(key string, rec SARecord) {
	if v.recs == nil {
		return // not listed yet: the list will have it
	}
	v.recs[key] = rec
	v.pin(key, rec.Revision)
}

// dropped takes out a record this node has just deleted (rev: its
// revision before the delete).
func (v *recordView) dropped(key string, rev int64) {
	if v.recs == nil {
		return
	}
	delete(v.recs, key)
	v.pin(key, rev+1)
}

func (v *recordView) pin(key string, rev int64) {
	if v.pins == nil {
		v.pins = map[string]int64{}
	}
	v.pins[key] = max(v.pins[key], rev)
}

// close ends the watch.
func (v *recordView) close() {
	if v.cancel != nil {
		v.cancel()
	}
	v.events, v.cancel = nil, nil
}
