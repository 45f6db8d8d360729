package ike

import (
	"crypto/sha256"
	"net/netip"
	"sort"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// Half-open IKE SAs: a responder's state from its IKE_SA_INIT response to
// the first IKE_AUTH request, kept for a peer that has proven nothing, at
// most that it receives what is sent to its address (the COOKIE, RFC 7296
// §2.6). An attacker who owns many addresses passes cookies (RFC 8019
// §4.3), so three more things keep it from filling this state:
//
//   - Each half-open SA is small. halfOpenSA holds what IKE_AUTH needs and
//     nothing else; the full ikeSA is made from it when the first authentic
//     IKE_AUTH request arrives (RFC 8019 §4.3: the state an attacker can
//     make us hold is its addresses × the SAs each may hold × the size of
//     one).
//   - SAs made with a returned COOKIE count against their source address and
//     its prefix (/24, /64: RFC 8019 §4.2). Under load a request from a
//     source or prefix at its limit is dropped before anything is computed
//     or kept (the "hard limit" of §4.2), so an attacker in a few prefixes
//     holds a few prefixes' worth and clients elsewhere are not affected.
//     SAs made without a cookie (only below the cookie threshold, so at
//     most CookieThreshold of them) do not count: a spoofed source proves
//     nothing, and counting it would let a spoofer use up a victim's quota.
//   - Optionally, RFC 8019 client puzzles (puzzle.go).

// halfOpenKey finds a retransmitted IKE_SA_INIT request. SPIi and the
// source are not unique (two hosts behind one NAT may choose the same
// SPIi), so Ni is part of the key, one of the ways RFC 7296 §2.1 names.
// Keyed by Ni rather than by the whole message, a request that repeats the
// (Ni, IPi, SPIi) a COOKIE and a puzzle solution are bound to finds the SA
// it already made and cannot make another (RFC 8019 §10: no benefit from
// reusing a solution).
type halfOpenKey struct {
	spiI   uint64
	remote netip.AddrPort
	ni     [32]byte // SHA-256 of Ni
}

// halfOpenSA is what a responder keeps between IKE_SA_INIT and IKE_AUTH:
// the SPIs and path, the chosen proposal, SKEYSEED and the nonces (the
// SK_* keys and ciphers are expanded from them again when IKE_AUTH
// arrives, §2.14), the two IKE_SA_INIT messages AUTH signs (§2.15), and
// what the request's notifies said. BenchmarkMemoryPerHalfOpenSA measures
// it.
type halfOpenSA struct {
	id      uint64
	conn    *Connection // a candidate; IKE_AUTH picks by identity (authConn)
	key     halfOpenKey
	spiR    uint64
	local   netip.AddrPort
	created time.Time
	neg     proposal.Negotiated
	ext     extensions // what the features read from the request
	// counted: made with a returned COOKIE, so it counts against its
	// source address and prefix.
	counted bool
	// badAuth counts IKE_AUTH requests that failed verification.
	badAuth uint8
	// One allocation holds them all (keep).
	initReq, initResp, ni, nr, skeyseed []byte
}

// keep stores what h needs of the exchange in one allocation of exactly
// their size: the messages come from buffers sized for any message, and
// separate allocations would each round up to a size class.
func (h *halfOpenSA) keep(req, resp, ni, nr, skeyseed []byte) {
	buf := make([]byte, 0, len(req)+len(resp)+len(ni)+len(nr)+len(skeyseed))
	take := func(b []byte) []byte {
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	h.initReq, h.initResp, h.ni, h.nr, h.skeyseed = take(req), take(resp), take(ni), take(nr), take(skeyseed)
}

// halfOpenTable indexes the half-open SAs and counts them per source.
// Every map is bounded by MaxHalfOpen: an entry of perSource or perPrefix
// exists only while a counted SA does, and is deleted when its count
// reaches zero.
type halfOpenTable struct {
	byKey     map[halfOpenKey]*halfOpenSA
	bySPI     map[uint64]*halfOpenSA
	perSource map[netip.Addr]int
	perPrefix map[netip.Prefix]int
}

func newHalfOpenTable() halfOpenTable {
	return halfOpenTable{byKey: map[halfOpenKey]*halfOpenSA{}, bySPI: map[uint64]*halfOpenSA{},
		perSource: map[netip.Addr]int{}, perPrefix: map[netip.Prefix]int{}}
}

func (t *halfOpenTable) len() int { return len(t.bySPI) }

// halfOpenOrigin is the source address and prefix a request counts
// against. RFC 8019 §4.2: an IPv4 node is one address (or a NAT's), an
// IPv6 site gets a /48 to /64, so IPv6 is limited by prefix.
func (e *Engine) halfOpenOrigin(a netip.Addr) (netip.Addr, netip.Prefix) {
	a = a.Unmap().WithZone("")
	bits := e.cfg.HalfOpenPrefix4
	if a.Is6() {
		bits = e.cfg.HalfOpenPrefix6
	}
	p, err := a.Prefix(bits)
	if err != nil { // bits out of range: setDefaults does not let that happen
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return a, p
}

// halfOpenLimit says which per-source limit a new counted SA from src
// would exceed, or "" if none (RFC 8019 §4.2, hard limit).
func (e *Engine) halfOpenLimit(src netip.Addr, pfx netip.Prefix) DropReason {
	if n := e.cfg.HalfOpenPerSource; n >= 0 && e.halfOpen.perSource[src] >= n {
		return DropSourceLimit // the source address has its limit of half-open IKE SAs
	}
	if n := e.cfg.HalfOpenPerPrefix; n >= 0 && e.halfOpen.perPrefix[pfx] >= n {
		return DropPrefixLimit // the source prefix has its limit of half-open IKE SAs
	}
	return DropNone
}

// addHalfOpen indexes h, counts it, and arms its timeout. The timer keeps
// only the SPI and id, not h: a half-open SA that completes or is removed
// is not held until its deadline.
func (e *Engine) addHalfOpen(h *halfOpenSA) {
	t := &e.halfOpen
	t.byKey[h.key] = h
	t.bySPI[h.spiR] = h
	if h.counted {
		src, pfx := e.halfOpenOrigin(h.key.remote.Addr())
		t.perSource[src]++
		t.perPrefix[pfx]++
	}
	spi, id := h.spiR, h.id
	e.after(e.cfg.HalfOpenTimeout, func() {
		if h := e.halfOpen.bySPI[spi]; h != nil && h.id == id {
			e.dropHalfOpen(h, "no IKE_AUTH after IKE_SA_INIT")
		}
	})
}

// removeHalfOpen takes h out of every index and count. It is the one way
// out of the table: completed (IKE_AUTH), timed out, terminated,
// reconfigured away or shut down.
func (e *Engine) removeHalfOpen(h *halfOpenSA) {
	t := &e.halfOpen
	if t.bySPI[h.spiR] != h {
		return
	}
	delete(t.bySPI, h.spiR)
	delete(t.byKey, h.key)
	if h.counted {
		src, pfx := e.halfOpenOrigin(h.key.remote.Addr())
		if t.perSource[src]--; t.perSource[src] <= 0 {
			delete(t.perSource, src)
		}
		if t.perPrefix[pfx]--; t.perPrefix[pfx] <= 0 {
			delete(t.perPrefix, pfx)
		}
	}
}

// dropHalfOpen removes h for good and says so, as destroy does for a full
// SA. Under attack this happens for every SA the attacker made, so the log
// line is at debug level; the event lets the daemon count them.
func (e *Engine) dropHalfOpen(h *halfOpenSA, reason string) {
	e.removeHalfOpen(h)
	e.emit(Event{Kind: EventIKEFailed, IKESA: h.id, Conn: h.conn.Name, Detail: reason})
	e.log.Debug("half-open IKE SA dropped", "ike", h.id, "remote", h.key.remote, "reason", reason)
}

// answerHalfOpen resends our IKE_SA_INIT response to a retransmitted
// request (RFC 7296 §2.1), from the address the request reached.
func (e *Engine) answerHalfOpen(h *halfOpenSA, d Datagram) {
	e.emit(Send{Datagram{Local: d.Local, Remote: d.Remote, Data: h.initResp, TCP: d.TCP}})
	e.stats.Retransmissions++
}

// maxBadAuth is how many IKE_AUTH requests failing verification a
// half-open SA survives. Checking one costs a key expansion and a
// decryption (a few microseconds); an attacker holding half-open SAs could
// otherwise make us do that at line rate. A legitimate initiator's
// requests fail only when corrupted on the way: RFC 8019 §6 counts even
// one decryption failure as a sign of attack.
const maxBadAuth = 4

// completeHalfOpen turns the half-open SA with our SPI spi into a full IKE
// SA when the datagram in is its first IKE_AUTH request and authentic
// (RFC 7296 §1.2). With gone set it dropped the datagram; with neither an
// SA nor gone, spi is no half-open SA's. A request that fails verification leaves the
// half-open SA as it was, up to maxBadAuth of them: forging IKE_AUTH
// costs us CPU, never state (RFC 8019 §3, §7.2).
func (e *Engine) completeHalfOpen(spi uint64, d Datagram, in *inspected) (sa *ikeSA, gone bool) {
	h := e.halfOpen.bySPI[spi]
	if h == nil {
		return nil, false
	}
	m := &in.h
	w := dropped{id: h.id, from: d.Remote, h: m}
	switch {
	case !m.FromInitiator() || m.SPIi != h.key.spiI:
		e.drop(DropSPIMismatch, w)
		return nil, true
	case m.IsResponse():
		e.drop(DropNoRequest, w)
		return nil, true
	case m.Exchange != wire.IKEAuth:
		// Until IKE_AUTH completes the peer is not authenticated: its
		// other requests wait (it retransmits), they are not answered.
		e.drop(DropNotAuthed, w)
		return nil, true
	case m.MessageID != 1:
		e.drop(DropWindow, w) // IKE_AUTH is Message ID 1 (§2.2)
		return nil, true
	}
	sa, keys, err := h.materialize(e)
	if err != nil {
		e.log.Error("cannot make the keys of a half-open IKE SA", "ike", h.id, "err", err)
		e.drop(DropLocalFailure, w)
		return nil, true
	}
	// Verified here so that a forgery changes nothing; receiveRequest
	// verifies again and decodes (and answers what is authentic but
	// malformed, §2.21.3, §2.5).
	why := DropNone
	if in.skType == wire.PayloadSKF {
		// Its first authentic fragment makes the SA (RFC 7383 §2.6);
		// the SA's reassembler then takes them all.
		sa.ext = h.ext
		why = sa.openFragment(in)
	} else {
		_, why = sa.open(in)
	}
	if why != DropNone {
		e.drop(why, w)
		if h.badAuth++; h.badAuth >= maxBadAuth {
			e.dropHalfOpen(h, "IKE_AUTH requests failed verification")
		}
		return nil, true
	}
	if d.TCP {
		// A TCP SA lives on the stream its IKE_AUTH came in (RFC 9329
		// §6.1), which is the IKE_SA_INIT's unless the Originator had to
		// open another.
		sa.tcp, sa.local, sa.remote = true, d.Local, d.Remote
	}
	e.removeHalfOpen(h)
	e.sas[sa.spiR] = sa
	e.byID[sa.id] = sa
	e.keyLog(sa, keys)
	// IKE_AUTH is answered at once, but keep the half-open deadline for
	// whatever path could leave the SA waiting.
	// The closure takes a copy: capturing the named result would put it
	// on the heap on every call, a datagram to an unknown SPI included.
	full := sa
	sa.halfOpenT = e.after(max(h.created.Add(e.cfg.HalfOpenTimeout).Sub(e.now), 0), func() {
		e.destroy(full, "no IKE_AUTH after IKE_SA_INIT")
	})
	return sa, false
}

// materialize makes the full responder IKE SA of h, with keys expanded
// from SKEYSEED (§2.14). The SA is not indexed yet.
func (h *halfOpenSA) materialize(e *Engine) (*ikeSA, *ikecrypto.IKEKeys, error) {
	sa := &ikeSA{e: e, id: h.id, conn: h.conn, spiI: h.key.spiI, spiR: h.spiR, ext: h.ext,
		hs: &handshake{ni: h.ni, nr: h.nr, initReq: h.initReq, initResp: h.initResp}}
	sa.local, sa.remote, sa.verified = h.local, h.key.remote, addrSet{h.key.remote.Addr()}
	sa.created, sa.lastInbound, sa.neg, sa.expectReq = h.created, e.now, h.neg, 1
	sa.setEncap()
	suite, err := ikecrypto.NewSuite(h.neg.Encr.Encr, h.neg.Encr.KeyBits, h.neg.PRF, h.neg.Integ, h.neg.DH)
	if err != nil {
		return nil, nil, err
	}
	keys, err := suite.DeriveIKEKeys(h.skeyseed, h.ni, h.nr, sa.spiI, sa.spiR)
	if err != nil {
		return nil, nil, err
	}
	if err := sa.installKeys(suite, keys); err != nil {
		return nil, nil, err
	}
	return sa, keys, nil
}

func (h *halfOpenSA) info() IKESAInfo {
	return IKESAInfo{ID: h.id, Conn: h.conn.Name, State: stateConnecting, SPIi: h.key.spiI, SPIr: h.spiR,
		Local: h.local, Remote: h.key.remote, Proposal: h.neg.String(), NATLocal: h.ext.natLocal,
		NATRemote: h.ext.natRemote, Encap: h.ext.natLocal || h.ext.natRemote || h.conn.ForceEncap, Window: 1, PeerWindow: 1,
		Lineage: h.id} // a new SA is its own lineage (lineageID)
}

// halfOpenInfos lists the half-open SAs for IKESAs, by id.
func (e *Engine) halfOpenInfos() []IKESAInfo {
	out := make([]IKESAInfo, 0, e.halfOpen.len())
	for _, h := range e.halfOpen.bySPI {
		out = append(out, h.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// halfOpenByID finds a half-open SA by its CLI id (a linear search: only
// the CLI asks, and it asks rarely).
func (e *Engine) halfOpenByID(id uint64) *halfOpenSA {
	for _, h := range e.halfOpen.bySPI {
		if h.id == id {
			return h
		}
	}
	return nil
}

// reconfigureHalfOpen keeps the half-open SAs whose connection is still
// there and still allows their proposal, on the new configuration, and
// drops the others, as Reconfigure does for full SAs.
func (e *Engine) reconfigureHalfOpen(names map[string]*Connection) {
	for _, h := range e.sortedHalfOpen() {
		c := names[h.conn.Name]
		if c == nil || !ikeAllows(c, h.neg) {
			e.dropHalfOpen(h, "connection removed")
			continue
		}
		h.conn = c
	}
}

func (e *Engine) sortedHalfOpen() []*halfOpenSA {
	out := make([]*halfOpenSA, 0, e.halfOpen.len())
	for _, h := range e.halfOpen.bySPI {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// auditHalfOpen checks the table's indexes and counts against each other.
func (e *Engine) auditHalfOpen(bad func(format string, args ...any)) {
	t := &e.halfOpen
	src, pfx := map[netip.Addr]int{}, map[netip.Prefix]int{}
	for spi, h := range t.bySPI {
		switch {
		case h.spiR != spi:
			bad("half-open IKE SA %d indexed under %016x but its SPI is %016x", h.id, spi, h.spiR)
		case t.byKey[h.key] != h:
			bad("half-open IKE SA %d missing from the request index", h.id)
		case e.sas[spi] != nil || e.byID[h.id] != nil:
			bad("half-open IKE SA %d is also a full IKE SA", h.id)
		}
		if h.counted {
			s, p := e.halfOpenOrigin(h.key.remote.Addr())
			src[s]++
			pfx[p]++
		}
	}
	if len(t.byKey) != len(t.bySPI) {
		bad("%d half-open requests indexed for %d half-open IKE SAs", len(t.byKey), len(t.bySPI))
	}
	for s, n := range t.perSource {
		if src[s] != n {
			bad("source %s counts %d half-open IKE SAs, has %d", s, n, src[s])
		}
	}
	for p, n := range t.perPrefix {
		if pfx[p] != n {
			bad("prefix %s counts %d half-open IKE SAs, has %d", p, n, pfx[p])
		}
	}
	if len(src) != len(t.perSource) || len(pfx) != len(t.perPrefix) {
		bad("half-open counts kept for %d sources and %d prefixes, %d and %d have SAs", len(t.perSource), len(t.perPrefix), len(src), len(pfx))
	}
}

func niKey(ni []byte) [32]byte { return sha256.Sum256(ni) }
