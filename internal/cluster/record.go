package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mifike/mifike/internal/clusterstore"
)

// An IKE SA in the store: sas/<SPIi>-<SPIr> holds its owner, the
// ownership epoch and its state (ike.Engine.Export) sealed for that key,
// SPIs and epoch. The owner writes it when the SA is made and at every
// rekey, never per IKE message: a node that takes the SA over resumes
// from there and resynchronises Message IDs with the peer (RFC 6311).
// Ownership moves only by a compare-and-swap on the record's revision,
// so of two nodes claiming an SA exactly one wins.

// SARecord is an IKE SA's record.
type SARecord struct {
	Owner uint8  `json:"owner"`
	Epoch uint64 `json:"epoch"`
	SPIi  uint64 `json:"spi_i"`
	SPIr  uint64 `json:"spi_r"`
	// From is the node that handed the SA over (0: made by its owner,
	// or taken over from a dead node).
	From uint8 `json:"from,omitempty"`
	// Family names the SA's clone family (ike.IKESAInfo.FamilyToken,
	// from public SPIs) and Children counts its Child SAs: what
	// placement balances, readable without opening the state.
	Family   uint64 `json:"family,omitempty"`
	Children int    `json:"children,omitempty"`
	// VIPs are the inner addresses the SA holds (vips.go): no other node
	// leases them.
	VIPs  []netip.Addr `json:"vips,omitempty"`
	State []byte       `json:"state"` // sealed
	// Revision is the record's store revision as read (not stored).
	Revision int64 `json:"-"`
}

// maxRecord caps a record as read: an export is at most 1 MiB
// (ike.maxExportSize), sealed and base64-encoded in JSON.
const maxRecord = 3 << 20

// SAKey is where the SA with SPIs spii, spir lives.
func (c Config) SAKey(spii, spir uint64) string {
	return fmt.Sprintf("%ssas/%016x-%016x", c.prefix(), spii, spir)
}

// saPrefix is the prefix of every SA record.
func (c Config) saPrefix() string { return c.prefix() + "sas/" }

// DecodeRecord parses a record read from key (its name must match the
// SPIs inside). Anything else in the store's SA keys is refused.
func DecodeRecord(key string, b []byte) (SARecord, error) {
	var r SARecord
	if len(b) > maxRecord {
		return r, fmt.Errorf("cluster: record %s of %d octets", key, len(b))
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("cluster: record %s: %w", key, err)
	}
	if d.More() {
		return r, fmt.Errorf("cluster: record %s: data after the record", key)
	}
	name := key[strings.LastIndexByte(key, '/')+1:]
	i, rr, ok := strings.Cut(name, "-")
	spii, err1 := strconv.ParseUint(i, 16, 64)
	spir, err2 := strconv.ParseUint(rr, 16, 64)
	switch {
	case !ok || err1 != nil || err2 != nil || spii != r.SPIi || spir != r.SPIr:
		return r, fmt.Errorf("cluster: record %s names other SPIs than it holds", key)
	case r.Owner == 0 || r.SPIi == 0 || r.SPIr == 0:
		return r, fmt.Errorf("cluster: record %s has no owner or a zero SPI", key)
	}
	return r, nil
}

func (r SARecord) context(key string) Context {
	return Context{Key: key, SPIi: r.SPIi, SPIr: r.SPIr, Epoch: r.Epoch}
}

// ErrLost: the SA's record changed under us: another node owns it now
// (a takeover while we were cut off), and we must drop it without a
// word to the peer.
var ErrLost = errors.New("cluster: the SA's record changed: another node owns it")

// Records keep this node's SAs in the store and move them between
// nodes.
type Records struct {
	n  *Node
	st clusterstore.Store
	s  *Sealer
}

// NewRecords is node n's SA records, sealed with s.
func NewRecords(n *Node, s *Sealer) *Records { return &Records{n: n, st: n.st, s: s} }

// Publish writes the state of an SA this node owns: rec as last read or
// written (Revision 0 and Epoch 0 for a new SA). It returns the record
// as written, or ErrLost.
func (r *Records) Publish(ctx context.Context, rec SARecord, state []byte) (SARecord, error) {
	if rec.Revision != 0 && rec.Owner != r.n.cfg.Node {
		return rec, ErrLost // handed over or claimed: not ours to write
	}
	rec.Owner = r.n.cfg.Node
	return r.write(ctx, rec, state)
}

// HandOff gives an SA this node owns to node to: one compare-and-swap
// from rec's revision, the next epoch. The caller forgets the SA in its
// engine only once this succeeded; until then it stays here.
func (r *Records) HandOff(ctx context.Context, rec SARecord, state []byte, to uint8) (SARecord, error) {
	if rec.Owner != r.n.cfg.Node {
		return rec, fmt.Errorf("cluster: SA %016x-%016x is node %d's, not ours", rec.SPIi, rec.SPIr, rec.Owner)
	}
	rec.Owner, rec.From, rec.Epoch = to, r.n.cfg.Node, rec.Epoch+1
	return r.write(ctx, rec, state)
}

// Claim takes an SA from a dead node: the compare-and-swap from rec's
// revision (exactly one survivor wins; the others get ErrLost), the next
// epoch, and the state re-sealed for it. It returns the state to import.
func (r *Records) Claim(ctx context.Context, rec SARecord) (SARecord, []byte, error) {
	state, err := r.Open(rec)
	if err != nil {
		return rec, nil, err
	}
	rec.Owner, rec.From, rec.Epoch = r.n.cfg.Node, 0, rec.Epoch+1
	rec, err = r.write(ctx, rec, state)
	return rec, state, err
}

// Open decrypts rec's state.
func (r *Records) Open(rec SARecord) ([]byte, error) {
	return r.s.Open(rec.context(r.n.cfg.SAKey(rec.SPIi, rec.SPIr)), rec.State)
}

// Drop deletes the record of an SA that is gone (deleted, expired).
func (r *Records) Drop(ctx context.Context, rec SARecord) error {
	err := r.st.Delete(ctx, r.n.cfg.SAKey(rec.SPIi, rec.SPIr), rec.Revision)
	switch {
	case errors.Is(err, clusterstore.ErrNotFound):
		return nil
	case errors.Is(err, clusterstore.ErrConflict):
		return ErrLost
	}
	return err
}

func (r *Records) write(ctx context.Context, rec SARecord, state []byte) (SARecord, error) {
	key := r.n.cfg.SAKey(rec.SPIi, rec.SPIr)
	sealed, err := r.s.Seal(rec.context(key), state)
	if err != nil {
		return rec, err
	}
	rec.State = sealed
	b, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	rev, err := r.st.Put(ctx, key, b, rec.Revision, 0)
	if errors.Is(err, clusterstore.ErrConflict) {
		return rec, ErrLost
	}
	if err != nil {
		return rec, err
	}
	rec.Revision = rev
	return rec, nil
}

// List reads every SA record, and the store revision to watch from.
// Records that do not parse are skipped and counted.
func (r *Records) List(ctx context.Context) ([]SARecord, int64, int, error) {
	vs, rev, err := r.st.List(ctx, r.n.cfg.saPrefix())
	if err != nil {
		return nil, 0, 0, err
	}
	var out []SARecord
	bad := 0
	for _, v := range vs {
		rec, err := DecodeRecord(v.Key, v.Data)
		if err != nil {
			bad++
			continue
		}
		rec.Revision = v.Revision
		out = append(out, rec)
	}
	return out, rev, bad, nil
}
