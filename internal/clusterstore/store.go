// Package clusterstore is the shared state of a gateway cluster: a
// narrow key-value interface with the operations ownership of IKE SAs
// needs (a compare-and-swap on a key's revision, leases that expire,
// watches), implemented on etcd v3 for real use (Etcd) and in memory for
// unit tests and the simulator (Memory).
//
// It is deliberately smaller than etcd's API: every caller goes through
// the same few operations, so the in-memory store can follow etcd's
// semantics exactly (revisions, lease expiry deleting keys, watches from
// a revision), and the same conformance tests run against both.
package clusterstore

import (
	"context"
	"errors"
	"time"
)

// Lease is a lease's ID; 0 is none.
type Lease int64

// Value is a key as read.
type Value struct {
	Key  string
	Data []byte
	// Revision is the store revision of the key's last write (etcd's
	// ModRevision): a compare-and-swap names it.
	Revision int64
	Lease    Lease
}

// EventKind says what happened to a key.
type EventKind uint8

const (
	EventPut EventKind = iota + 1
	EventDelete
)

// Event is a change seen by a watch. Err, set on the last event before
// the channel closes, says why the watch ended early (ErrCompacted: the
// revision asked for is gone; read the keys again with List).
type Event struct {
	Kind  EventKind
	Value Value // for a delete, the key and the revision of the delete
	Err   error
}

var (
	// ErrNotFound: no such key.
	ErrNotFound = errors.New("clusterstore: no such key")
	// ErrConflict: the key's revision is not the one the write was
	// conditioned on (someone else wrote it, or it exists when it
	// should not); nothing was written.
	ErrConflict = errors.New("clusterstore: key changed")
	// ErrLeaseExpired: the lease is gone, and every key tied to it.
	ErrLeaseExpired = errors.New("clusterstore: lease expired")
	// ErrCompacted: a watch asked for a revision the store no longer
	// keeps.
	ErrCompacted = errors.New("clusterstore: revision compacted")
)

// Store is the cluster's shared state.
type Store interface {
	// Get returns key's value, or ErrNotFound.
	Get(ctx context.Context, key string) (Value, error)
	// List returns the values under prefix in key order, and the
	// store revision they were read at (watch from the next one).
	List(ctx context.Context, prefix string) ([]Value, int64, error)
	// Put writes key if its revision is still rev; rev 0 creates it,
	// only if it does not exist. It returns the key's new revision, or
	// ErrConflict and writes nothing. A non-zero lease ties the key to
	// it: the key goes when the lease expires (ErrLeaseExpired if it
	// already has).
	Put(ctx context.Context, key string, data []byte, rev int64, lease Lease) (int64, error)
	// Delete removes key if its revision is still rev: ErrConflict if it
	// changed, ErrNotFound if it is gone.
	Delete(ctx context.Context, key string, rev int64) error
	// Grant makes a lease that expires ttl after its last renewal.
	Grant(ctx context.Context, ttl time.Duration) (Lease, error)
	// Renew renews a lease once, or says it has expired
	// (ErrLeaseExpired).
	Renew(ctx context.Context, id Lease) error
	// Revoke ends a lease now, deleting its keys.
	Revoke(ctx context.Context, id Lease) error
	// Watch reports the changes under prefix from store revision from
	// on (0: from now), in revision order, until ctx ends; the channel
	// then closes.
	Watch(ctx context.Context, prefix string, from int64) <-chan Event
}
