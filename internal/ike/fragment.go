package ike

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/ikefrag"
	"github.com/mifike/mifike/internal/wire"
)

// fragmentation is IKE fragmentation (RFC 7383): both sides offer it in
// IKE_SA_INIT (§2.3); once both did, a protected message that would not
// fit the path's datagram size goes as separately protected Encrypted
// Fragment payloads (§2.5), in requests and responses alike, and what
// arrives in fragments is reassembled under hard limits (§2.6, §5;
// package ikefrag holds the mechanics). IKE_SA_INIT is never fragmented.
type fragmentation struct{}

func (fragmentation) String() string { return "IKE fragmentation" }

func (fragmentation) initRequest(x *initExchange) []wire.Payload {
	if !x.conn.Fragmentation {
		return nil
	}
	return []wire.Payload{wire.NewNotify(wire.NotifyIKEv2FragmentationSupported, nil)}
}

func (fragmentation) readInit(x *initExchange, m *message) {
	x.ext.fragmentation = x.conn.Fragmentation && m.notify(wire.NotifyIKEv2FragmentationSupported) != nil
}

func (fragmentation) initResponse(x *initExchange, m *message) []wire.Payload {
	if !x.ext.fragmentation {
		return nil // only to an initiator that offered it (§2.3)
	}
	return []wire.Payload{wire.NewNotify(wire.NotifyIKEv2FragmentationSupported, nil)}
}

// maxDatagram is the largest datagram (marker included) a fragment to
// remote may be: from the connection's fragment size, or RFC 7383
// §2.5.1's default for remote's address family. It belongs to the path,
// so it is asked again for every message and after every move.
func (sa *ikeSA) maxDatagram(remote netip.AddrPort) int {
	if sa.tcp {
		// A stream is not cut (RFC 9329 §7.5: fragments SHOULD NOT be
		// sent over TCP); a frame holds up to 65,535 octets (§3).
		return 65535 - 2 - wire.NonESPMarkerLen
	}
	return ikefrag.MaxDatagram(remote.Addr(), sa.conn.FragmentSize)
}

// markerLen is the non-ESP marker the transport puts before a message
// from local (RFC 3948 §2.2): the engine never writes it, but a
// fragment's datagram must fit the path with it.
func (e *Engine) markerLen(local netip.AddrPort) int {
	if local.Port() == e.cfg.IKEPort {
		return 0
	}
	return wire.NonESPMarkerLen
}

// fragmentNumber is the Fragment Number of an SKF message (inspect
// checked the framing; 0 if it is cut short).
func fragmentNumber(in *inspected) uint16 {
	if in.sk+8 > len(in.ike) {
		return 0
	}
	return binary.BigEndian.Uint16(in.ike[in.sk+4:])
}

// openFragment verifies one fragment without keeping it (a half-open
// SA's first IKE_AUTH fragment, a retransmitted fragment of a request
// already answered), into the scratch buffer.
func (sa *ikeSA) openFragment(in *inspected) DropReason {
	if !sa.ext.fragmentation {
		return DropFragment
	}
	if sa.in == nil {
		return DropNoKeys
	}
	e := sa.e
	if cap(e.scratch) < len(in.ike) {
		e.scratch = make([]byte, 0, len(in.ike))
	}
	switch _, err := sa.in.UnprotectFragmentTo(e.scratch, in.ike, in.sk); err {
	case nil:
		return DropNone
	case ikecrypto.ErrIntegrity:
		return DropIntegrity
	default:
		return DropFragmentRejected
	}
}

// reassemble hands an SKF message to the SA's reassembler (§2.6). It
// returns the decoded message once its last fragment is in; until then,
// and for a fragment it drops, it reports done false.
func (sa *ikeSA) reassemble(d Datagram, in *inspected) (msg *message, ps []wire.Payload, err error, done bool) {
	e := sa.e
	w := dropped{sa: sa, from: d.Remote, h: &in.h}
	if !sa.ext.fragmentation {
		e.drop(DropFragment, w)
		return nil, nil, nil, false
	}
	if sa.in == nil {
		e.drop(DropNoKeys, w)
		return nil, nil, nil, false
	}
	if sa.reasm == nil {
		sa.reasm = ikefrag.NewReassembler(e.fragBudget, sa.in.UnprotectFragmentTo)
	}
	m, r := sa.reasm.Add(e.now, in.ike, in.sk)
	switch r {
	case ikefrag.Complete:
	case ikefrag.Stored:
		// The peer's missing fragments may never come: free the set at
		// its deadline even if nothing else arrives.
		if t, ok := sa.reasm.Deadline(); ok {
			e.at(t, func() {
				if sa.reasm != nil {
					sa.reasm.Expire(e.now)
				}
			})
		}
		return nil, nil, nil, false
	case ikefrag.DropIntegrity:
		e.drop(DropIntegrity, w)
		return nil, nil, nil, false
	case ikefrag.DropMalformed:
		e.drop(DropMalformed, w)
		return nil, nil, nil, false
	case ikefrag.DropTooMany, ikefrag.DropSALimit, ikefrag.DropBudget:
		e.drop(DropFragmentLimit, w)
		return nil, nil, nil, false
	case ikefrag.DropTooLarge:
		// §5: an authenticated peer sending more than any message can
		// hold is broken or hostile.
		e.drop(DropFragmentLimit, w)
		e.destroy(sa, "IKE fragments of a message beyond the size limit (RFC 7383 §5)")
		return nil, nil, nil, false
	default:
		e.drop(DropFragmentRejected, w)
		return nil, nil, nil, false
	}
	ps, err = wire.ParsePayloads(m.First, m.Plain)
	in.authentic = true
	e.stats.Exchanges[in.h.Exchange]++
	d.Data = nil // the driver's
	return &message{Header: in.h, raw: bytes.Clone(in.ike), d: d}, ps, err, true
}

// closeReassembly gives back what the SA's half-built messages hold.
func (sa *ikeSA) closeReassembly() {
	if sa.reasm != nil {
		sa.reasm.Close()
		sa.reasm = nil
	}
}
