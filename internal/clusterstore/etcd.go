package clusterstore

import (
	"context"
	"errors"
	"math"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Etcd is the Store on an etcd v3 cluster. Every write is one
// transaction conditioned on the key's revision, so ownership moves by
// compare-and-swap and never by read-then-write; a key with a lease is
// deleted by etcd itself when the lease expires. Watches require a
// leader, so a client cut off with a minority of members sees its watch
// end instead of waiting on a member that hears nothing.
type Etcd struct {
	c *clientv3.Client
}

// NewEtcd is the Store on client c (which the caller closes).
func NewEtcd(c *clientv3.Client) *Etcd { return &Etcd{c: c} }

func value(kv interface {
	GetKey() []byte
	GetValue() []byte
	GetModRevision() int64
	GetLease() int64
}) Value {
	return Value{Key: string(kv.GetKey()), Data: kv.GetValue(), Revision: kv.GetModRevision(), Lease: Lease(kv.GetLease())}
}

func (s *Etcd) Get(ctx context.Context, key string) (Value, error) {
	r, err := s.c.Get(ctx, key)
	if err != nil {
		return Value{}, err
	}
	if len(r.Kvs) == 0 {
		return Value{}, ErrNotFound
	}
	return value(r.Kvs[0]), nil
}

func (s *Etcd) List(ctx context.Context, prefix string) ([]Value, int64, error) {
	r, err := s.c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, err
	}
	out := make([]Value, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		out = append(out, value(kv))
	}
	return out, r.Header.Revision, nil
}

// condition is "key is at revision rev" (0: "key does not exist").
func condition(key string, rev int64) clientv3.Cmp {
	if rev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", rev)
}

func (s *Etcd) Put(ctx context.Context, key string, data []byte, rev int64, lease Lease) (int64, error) {
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(clientv3.LeaseID(lease)))
	}
	r, err := s.c.Txn(ctx).If(condition(key, rev)).Then(clientv3.OpPut(key, string(data), opts...)).Commit()
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return 0, ErrLeaseExpired
	case err != nil:
		return 0, err
	case !r.Succeeded:
		return 0, ErrConflict
	}
	return r.Header.Revision, nil
}

func (s *Etcd) Delete(ctx context.Context, key string, rev int64) error {
	r, err := s.c.Txn(ctx).If(condition(key, rev)).Then(clientv3.OpDelete(key)).Else(clientv3.OpGet(key)).Commit()
	switch {
	case err != nil:
		return err
	case r.Succeeded && rev == 0:
		return ErrNotFound // "does not exist" held: nothing to delete
	case r.Succeeded:
		return nil
	case len(r.Responses) == 1 && len(r.Responses[0].GetResponseRange().Kvs) == 0:
		return ErrNotFound
	}
	return ErrConflict
}

func (s *Etcd) Grant(ctx context.Context, ttl time.Duration) (Lease, error) {
	// etcd counts lease TTLs in whole seconds.
	secs := int64(math.Ceil(ttl.Seconds()))
	r, err := s.c.Grant(ctx, max(secs, 1))
	if err != nil {
		return 0, err
	}
	return Lease(r.ID), nil
}

func (s *Etcd) Renew(ctx context.Context, id Lease) error {
	_, err := s.c.KeepAliveOnce(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return ErrLeaseExpired
	}
	return err
}

func (s *Etcd) Revoke(ctx context.Context, id Lease) error {
	_, err := s.c.Revoke(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return ErrLeaseExpired
	}
	return err
}

func (s *Etcd) Watch(ctx context.Context, prefix string, from int64) <-chan Event {
	out := make(chan Event)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if from > 0 {
		opts = append(opts, clientv3.WithRev(from))
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.c.Watch(ctx, prefix, opts...)
	go func() {
		defer close(out)
		defer cancel()
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for r := range wch {
			if err := r.Err(); err != nil {
				if r.CompactRevision != 0 || errors.Is(err, rpctypes.ErrCompacted) {
					err = ErrCompacted
				}
				send(Event{Err: err})
				return
			}
			for _, ev := range r.Events {
				e := Event{Kind: EventPut, Value: value(ev.Kv)}
				if ev.Type == clientv3.EventTypeDelete {
					e = Event{Kind: EventDelete, Value: Value{Key: string(ev.Kv.Key), Revision: ev.Kv.ModRevision}}
				}
				if !send(e) {
					return
				}
			}
		}
		if ctx.Err() == nil {
			send(Event{Err: errors.New("clusterstore: etcd watch ended")})
		}
	}()
	return out
}
