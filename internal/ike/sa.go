package ike

import (
	"crypto/x509"
	"net/netip"
	"sort"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/ikefrag"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// saState is the engine's spelling of SAState (list.go), the state
// other packages see.
type saState = SAState

const (
	stateConnecting  = StateConnecting
	stateEstablished = StateEstablished
	stateRekeyed     = StateRekeyed
	stateDeleting    = StateDeleting
	stateDead        = StateDestroying
)

// ikeSA is one IKE SA, made of parts that each own one concern (their
// fields are promoted, so code reads sa.local, sa.nextReq): the keys, the
// message IDs and window, the path, the clone family, the rekey and
// collision state, the lifetimes, and the handshake material that goes
// when IKE_AUTH ends. What a part holds is data (no closures), which is
// what Export encodes.
type ikeSA struct {
	e     *Engine
	id    uint64
	conn  *Connection
	state saState

	initiator  bool // original initiator: we set the I flag (RFC 7296 §2.2)
	spiI, spiR uint64

	saKeys
	// ext is what the features (feature.go) negotiated for this SA.
	ext extensions
	// hs is IKE_SA_INIT and IKE_AUTH material, nil once established.
	hs *handshake

	localID, peerID ID

	messageIDs
	pathState
	familyState
	rekeyState
	lifetimes

	tasks    []task
	children []*childSA
	// onlyChild, when set, is the one child the user asked this SA for,
	// instead of the connection's start children.
	onlyChild *ChildConfig
}

// saKeys are the IKE SA's algorithms and keys (§2.14).
type saKeys struct {
	neg   proposal.Negotiated
	suite *ikecrypto.Suite
	skd   []byte
	// in and out hold SK_ei, SK_ai, SK_er and SK_ar too (Keys), which
	// only Export needs.
	in, out *ikecrypto.SKCipher
}

// messageIDs are the Message IDs and windows (§2.3). Up to peerWindow
// requests of ours are outstanding (1 until the peer sends
// SET_WINDOW_SIZE), by ascending ID. We answer the peer's requests from
// expectReq (the lowest not yet answered) up to our own window, in any
// order, and keep our last responses for its retransmissions.
type messageIDs struct {
	nextReq     uint32
	outstanding []*request
	peerWindow  uint32
	windowSent  bool // we stated our window on this SA (SET_WINDOW_SIZE)
	expectReq   uint32
	responses   []*response
	// RFC 6311 (midsync.go), as the peer: the highest M1 of a
	// synchronisation we answered (0 before any) and our answer, for its
	// retransmissions.
	midSyncSeen int64
	midSyncResp *response
	// reasm holds the peer's messages arriving in fragments (RFC 7383),
	// made at the first one.
	reasm *ikefrag.Reassembler
}

// pathState is where the SA and its Child SAs run, and MOBIKE's view of
// it (RFC 4555).
type pathState struct {
	local, remote netip.AddrPort
	encap         bool // IKE and ESP on port 4500
	// tcp: IKE and ESP go in a TCP stream (RFC 9329; tcp.go), remote's
	// port the peer's TCP port. It overrides encap, which NAT detection
	// still computes (§6.5: no change for TCP).
	tcp bool
	// mobikeInitiator: we decide this SA's addresses (RFC 4555 §2.1): the
	// IKE_AUTH initiator, inherited through rekeys; for a clone, the peer
	// that cloned.
	mobikeInitiator bool
	// The interface the path is pinned to, the peer's announced
	// addresses (§3.4), addresses that passed a return routability check
	// (§3.7), and the update generation: a reply to an older
	// UPDATE_SA_ADDRESSES is not acted on (§3.5).
	iface     string
	peerAddrs []netip.Addr
	verified  addrSet
	// dataLocal, dataRemote and dataIface are the path the Child SAs use.
	// It follows the IKE SA's except while a MOBIKE responder checks a
	// new initiator address (return routability, RFC 4555 §3.7): until
	// then traffic stays on the old, proven path.
	dataLocal, dataRemote netip.AddrPort
	dataIface             string
	updateGen             int
	pendingUpdate         bool
	// closing: we are deleting this SA (close); its Delete waits for
	// the window.
	closing      bool
	confirmedGen int // the path generation the peer has acknowledged
	// newestUpdate, newestList: the latest UPDATE_SA_ADDRESSES and
	// address list taken as MOBIKE responder (§3.5, §3.6).
	newestUpdate, newestList newestID
	// pathSince is when the SA last changed paths (moveTo).
	pathSince time.Time
	// initPairSends counts the IKE_SA_INIT sends on the current address
	// pair (rotateInitPath).
	initPairSends int
	// natRetries counts the UNEXPECTED_NAT_DETECTED answers in a row
	// (RFC 4555 §3.9): to UPDATE_SA_ADDRESSES on one path, or, carried
	// to the new SA, to IKE_AUTH.
	natRetries int
	// rare is what only an SA that moved, handed over, reported an
	// unknown SPI or lost its TCP stream needs: made at the first use
	// (rareState), so that a gateway's many SAs that never do leave it
	// out (the IKE SA is one size class smaller).
	rare *pathRare
	// natdSeen is the peer's NAT_DETECTION_DESTINATION_IP in the last
	// liveness check or update answered on this path (watchNAT); nil
	// after a move.
	natdSeen []byte
	// prevTCP: the path before the last move was a TCP stream, which
	// this side closes once the move is confirmed (tcp.go).
	prevTCP bool
}

// pathRare is the part of pathState few SAs ever use.
type pathRare struct {
	// unannounced are addresses of ours this SA's address list leaves
	// out: a cluster node's that handed the SA over and no longer has it
	// (Adopt), so that the peer moves away from it (§3.6).
	unannounced []netip.Addr
	prevPath    path
	// tcpRetryAt is when the TCP Originator may open a lost stream again
	// (tcp.go).
	tcpRetryAt time.Time
	// invalidSPIAt is when we last reported an unknown SPI to the peer
	// (invalidspi.go).
	invalidSPIAt time.Time
	// pathErrorAt is when an ICMP error last started a liveness check
	// (PathError).
	pathErrorAt time.Time
}

// rareState is p.rare, made if it is not yet, to change it.
func (p *pathState) rareState() *pathRare {
	if p.rare == nil {
		p.rare = &pathRare{}
	}
	return p.rare
}

// rareView is p.rare for reading: the zero pathRare when there is none.
func (p *pathState) rareView() pathRare {
	if p.rare == nil {
		return pathRare{}
	}
	return *p.rare
}

// familyState is the SA's place in its clone family (RFC 7791) and the
// virtual IPs it carries.
type familyState struct {
	localVIPs  []netip.Addr // virtual IPs the peer assigned us (CP reply)
	remoteVIPs []netip.Addr // virtual IPs we assigned the peer
	// The family of SAs sharing this SA's authentication, and the SA
	// this one was cloned from (0 if none).
	family *family
	parent uint64
	// lineage is the id of the IKE SA this one descends from by IKE SA
	// rekeys (§2.8) and reauthentications (§2.8.3), 0 for the first: the
	// id changes with every rekey, the VPN stays (see lineageID).
	lineage uint64
	// vipsInherited: this SA's virtual IPs are its clone parent's; a
	// CP request in a CREATE_CHILD_SA (RFC 7296 §2.19) gets it its own,
	// a different inner address per interface (RFC 7791 App. A.3).
	vipsInherited bool
	// peerChain is the verified chain the peer authenticated with (RFC
	// 7296 §3.6), end entity first; newFamily hands it to the family
	// (for `mifike list-certs` and the revocation check at reload) and
	// drops it here.
	peerChain []*x509.Certificate
}

// rekeyState is what an IKE SA rekey, a reauthentication and their
// collisions (§2.8, §2.8.2, §2.8.3) leave between exchanges.
type rekeyState struct {
	// The new SA a peer's rekey created while ours was running
	// (collision, §2.8.2), and what replaced us.
	peerRekey *ikeRekeyCollision
	successor *ikeSA
	reauthOf  *ikeSA // the SA this one reauthenticates (§2.8.3)
	// collidedWith is the old SA while this SA, made by the peer's rekey,
	// awaits the §2.8.2 decision against our own rekey.
	collidedWith *ikeSA
	// collisionLoser is the peer's redundant SA after we won a §2.8.2
	// collision; the peer should delete it, but if we delete this SA
	// first it goes too, or the peer could keep it as the successor.
	collisionLoser *ikeSA
	// earlyDeletes are SPIs the peer deleted before our request that
	// creates them was answered to us.
	earlyDeletes []uint32
}

// lifetimes are the SA's times and the timers armed from them.
type lifetimes struct {
	created, established, lastInbound time.Time
	lastSent                          time.Time
	rekeyT, reauthT, expireT, dpdT    *timer
	halfOpenT, deleteT, keepaliveT    *timer
	// The traffic-driven liveness check (liveness.go): since when ESP
	// went out with nothing heard back, and the timer of the window.
	unansweredSince time.Time
	livenessT       *timer
	// srtt is the path's smoothed round trip, and path the rest of what
	// the exchanges measured of it (pathstats.go), nil until the first
	// measurement: behind a pointer to keep ikeSA in its size class.
	srtt time.Duration
	path *pathStats
}

type poolLease struct {
	pool *Pool
	addr netip.Addr
}

type request struct {
	id       uint32
	exchange wire.ExchangeType
	packets  [][]byte
	tries    int
	timer    *timer
	task     task
	// With fragmentation (RFC 7383) the message is kept unprotected too,
	// so a retransmission after a move to a path of another size can be
	// cut again (§2.5.2): the header, inner payloads and the size cut for.
	hdr   wire.Header
	first wire.PayloadType
	inner []byte
	size  int
	// pathGen and pathTries: the SA's path generation when the request
	// was last (re)sent, and the retransmissions on that path. A path is
	// given up for its own silence only (RFC 4555 §3.5), not for tries
	// made on the path before it.
	pathGen, pathTries int
	// sent is when the request last went out, since when it first did.
	sent, since time.Time
	// quick counts the sends of a request retransmitted on the quick
	// schedule of a traffic-driven liveness check (liveness.go); 0: the
	// configured schedule.
	quick int
	// sends counts the sends on the path of generation sendGen-1 (0:
	// never sent), and resent says the request went out more than once
	// (pathstats.go: no round trip from its answer, Karn's rule).
	sends, sendGen int
	resent         bool
	// keyed: it carries a KE payload, so the peer's answer waits for its
	// key exchange (pathstats.go: no round trip from it).
	keyed bool
}

type response struct {
	id       uint32
	exchange wire.ExchangeType
	hash     [32]byte
	packets  [][]byte
}

func (e *Engine) newSA(c *Connection, initiator bool, local, remote netip.AddrPort) *ikeSA {
	e.nextID++
	sa := &ikeSA{e: e, id: e.nextID, conn: c, initiator: initiator, hs: &handshake{}}
	sa.local, sa.remote, sa.verified = local, remote, addrSet{remote.Addr()}
	sa.created, sa.lastInbound = e.now, e.now
	if initiator {
		sa.spiI = e.newSPI()
		e.sas[sa.spiI] = sa
	} else {
		sa.spiR = e.newSPI()
		e.sas[sa.spiR] = sa
	}
	e.byID[sa.id] = sa
	return sa
}

// lineageID is the id of the first IKE SA of this SA's rekey chain: a
// name for the VPN that outlives the rekeys. A clone starts a lineage of
// its own (RFC 7791: it is a new IKE SA, not a replacement).
func (sa *ikeSA) lineageID() uint64 {
	if sa.lineage != 0 {
		return sa.lineage
	}
	return sa.id
}

// localSPI and remoteSPI are ours and the peer's, whatever our role.
func (sa *ikeSA) localSPI() uint64 {
	if sa.initiator {
		return sa.spiI
	}
	return sa.spiR
}

func (sa *ikeSA) remoteSPI() uint64 {
	if sa.initiator {
		return sa.spiR
	}
	return sa.spiI
}

func (sa *ikeSA) child(inSPI uint32) *childSA {
	for _, c := range sa.children {
		if c.inSPI == inSPI {
			return c
		}
	}
	return nil
}

func (sa *ikeSA) childByOutSPI(outSPI uint32) *childSA {
	for _, c := range sa.children {
		if c.outSPI == outSPI {
			return c
		}
	}
	return nil
}

func (sa *ikeSA) removeChild(c *childSA) {
	for i, x := range sa.children {
		if x == c {
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			return
		}
	}
}

func (sa *ikeSA) header(x wire.ExchangeType, id uint32, response bool) wire.Header {
	h := wire.Header{SPIi: sa.spiI, SPIr: sa.spiR, MajorVersion: 2, Exchange: x, MessageID: id}
	if sa.initiator {
		h.Flags |= wire.FlagInitiator
	}
	if response {
		h.Flags |= wire.FlagResponse
	}
	return h
}

// peerIdentity is the key that ties IKE SAs of one authenticated peer
// together (pool leases, INITIAL_CONTACT, §2.4).
func (sa *ikeSA) peerIdentity() string {
	return sa.conn.Name + "|" + string(rune(sa.peerID.Type)) + string(sa.peerID.Data)
}

// destroy removes the SA and all its Child SAs without telling the peer.
func (e *Engine) destroy(sa *ikeSA, reason string) {
	if sa.state == stateDead {
		return
	}
	wasUp := sa.state == stateEstablished || sa.state == stateRekeyed || sa.state == stateDeleting
	sa.state = stateDead
	if sa.tcp && sa.initiatorOfPath() {
		// §6.1: the TCP Originator closes a stream no IKE SA uses.
		e.closeStreamIfUnused(sa.local, sa.remote)
	}
	for _, t := range []*timer{sa.rekeyT, sa.reauthT, sa.expireT, sa.dpdT, sa.halfOpenT, sa.deleteT, sa.keepaliveT, sa.livenessT} {
		t.cancel()
	}
	outstanding := sa.outstanding
	sa.outstanding = nil
	for _, p := range outstanding {
		p.timer.cancel()
		if p.task != nil {
			p.task.abort(sa, reason)
		}
	}
	for _, t := range sa.tasks {
		t.abort(sa, reason)
	}
	sa.tasks = nil
	for _, c := range append([]*childSA(nil), sa.children...) {
		c.remove("IKE SA " + reason)
	}
	sa.family.leave(sa)
	sa.closeReassembly()
	if f, ok := e.pathPolicy.(interface{ Forget(uint64) }); ok {
		f.Forget(sa.id)
	}
	if s := sa.localSPI(); e.sas[s] == sa {
		delete(e.sas, s)
	}
	delete(e.byID, sa.id)
	if wasUp {
		e.event(sa, EventIKEDown, reason)
	} else {
		e.event(sa, EventIKEFailed, reason)
	}
	e.log.Info("IKE SA destroyed", "ike", sa.id, "conn", sa.conn.Name, "reason", reason)
}

// restart initiates the SA's connection again after the peer was given
// up (RestartOnDead), from the addresses the SA used.
func (e *Engine) restart(sa *ikeSA) {
	local := netip.AddrPortFrom(sa.local.Addr(), e.cfg.IKEPort)
	remote := netip.AddrPortFrom(sa.remote.Addr(), sa.e.remotePort(sa.conn))
	if n, err := e.initiate(sa.conn, local, remote, sa.onlyChild, sa.iface); err == nil {
		e.log.Info("restarting connection after dead peer", "old", sa.id, "new", n.id, "conn", sa.conn.Name)
	}
}

func (e *Engine) sortedSAs() []*ikeSA {
	out := make([]*ikeSA, 0, len(e.byID))
	for _, sa := range e.byID {
		out = append(out, sa)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
