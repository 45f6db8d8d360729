package ike

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// Export and Import hand an established IKE SA, with its Child SAs, from
// one engine to another (a gateway cluster node to another, a restarted
// daemon to itself) so that the peer goes on without noticing: the same
// SPIs, keys, Message IDs and window, the cached responses its
// retransmissions must get byte-identical (RFC 7296 §2.1), the path and
// the peer's announced addresses (RFC 4555), NAT state, negotiated
// extensions, identities, the clone family (RFC 7791 §8) and virtual
// IPs, and the deadlines of every lifetime.
//
// The encoding is versioned JSON (encoding/json is robust on hostile
// input and keeps the format readable for operators debugging a
// handover); it holds keys, so it must travel and rest protected (the
// cluster's store is reached over mutual TLS).

// exportVersion is the format's version; Import refuses others.
const exportVersion = 1

// Caps on what Import takes: far above what Export writes (responses are
// bounded by the window, addresses by readPeerAddrs), so a hostile blob
// cannot make Import allocate or loop without bound.
const (
	maxExportSize     = 1 << 20
	maxExportChildren = 256
	maxExportAddrs    = 64
	maxExportPackets  = 16
	maxExportTS       = 64
)

// ErrBusy is returned by Export while the SA has exchanges under way or
// queued, or is being rekeyed: what is in flight cannot be handed over.
// Export again once they are done (a moment later).
var ErrBusy = errors.New("ike: the IKE SA has exchanges under way; export it once they are done")

type exportedSA struct {
	Version   int    `json:"version"`
	ID        uint64 `json:"id"`
	Lineage   uint64 `json:"lineage,omitempty"`
	Parent    uint64 `json:"parent,omitempty"`
	Conn      string `json:"conn"`
	Initiator bool   `json:"initiator"`
	SPIi      uint64 `json:"spi_i"`
	SPIr      uint64 `json:"spi_r"`

	Proposal proposal.Negotiated `json:"proposal"`
	SKd      []byte              `json:"sk_d"`
	SKei     []byte              `json:"sk_ei"`
	SKai     []byte              `json:"sk_ai,omitempty"`
	SKer     []byte              `json:"sk_er"`
	SKar     []byte              `json:"sk_ar,omitempty"`

	Ext     exportedExt `json:"extensions"`
	LocalID ID          `json:"local_id"`
	PeerID  ID          `json:"peer_id"`

	NextReq    uint32             `json:"next_request"`
	PeerWindow uint32             `json:"peer_window"`
	WindowSent bool               `json:"window_sent,omitempty"`
	ExpectReq  uint32             `json:"expect_request"`
	Responses  []exportedResponse `json:"responses,omitempty"`

	Path exportedPath `json:"path"`

	FamilyToken uint64    `json:"family"`
	AuthTime    time.Time `json:"auth_time"`
	// FamilyEnd: the authentication runs out (RADIUS Session-Timeout);
	// EAPIdentity and EAPMethod: it was by EAP (eap.go).
	FamilyEnd     time.Time       `json:"family_end,omitzero"`
	EAPIdentity   []byte          `json:"eap_identity,omitempty"`
	EAPMethod     uint8           `json:"eap_method,omitempty"`
	VIPsInherited bool            `json:"vips_inherited,omitempty"`
	LocalVIPs     []netip.Addr    `json:"local_vips,omitempty"`
	RemoteVIPs    []netip.Addr    `json:"remote_vips,omitempty"`
	Leases        []exportedLease `json:"leases,omitempty"`

	Created     time.Time `json:"created"`
	Established time.Time `json:"established"`
	LastInbound time.Time `json:"last_inbound"`
	LastSent    time.Time `json:"last_sent"`
	RekeyAt     time.Time `json:"rekey_at"`
	ReauthAt    time.Time `json:"reauth_at"`
	ExpireAt    time.Time `json:"expire_at"`

	Children []exportedChild `json:"children,omitempty"`
}

type exportedExt struct {
	NATLocal   bool                 `json:"nat_local,omitempty"`
	NATRemote  bool                 `json:"nat_remote,omitempty"`
	PeerNATT   bool                 `json:"peer_natt,omitempty"`
	PeerHashes []wire.HashAlgorithm `json:"peer_hashes,omitempty"`
	MOBIKE     bool                 `json:"mobike,omitempty"`
	CloneLocal bool                 `json:"clone_local,omitempty"`
	ClonePeer  bool                 `json:"clone_peer,omitempty"`
	Fragments  bool                 `json:"fragmentation,omitempty"`
	Childless  bool                 `json:"childless,omitempty"`
	MIDSync    bool                 `json:"message_id_sync,omitempty"`
	// RFC 5685: we, the peer announced REDIRECT_SUPPORTED.
	RedirectLocal bool `json:"redirect_local,omitempty"`
	RedirectPeer  bool `json:"redirect_peer,omitempty"`
}

type exportedResponse struct {
	ID       uint32            `json:"id"`
	Exchange wire.ExchangeType `json:"exchange"`
	Hash     [32]byte          `json:"request_hash"`
	Packets  [][]byte          `json:"packets"`
}

type exportedPath struct {
	Local           netip.AddrPort `json:"local"`
	Remote          netip.AddrPort `json:"remote"`
	Encap           bool           `json:"encap,omitempty"`
	TCP             bool           `json:"tcp,omitempty"`
	MOBIKEInitiator bool           `json:"mobike_initiator,omitempty"`
	Iface           string         `json:"iface,omitempty"`
	PeerAddrs       []netip.Addr   `json:"peer_addrs,omitempty"`
	Verified        []netip.Addr   `json:"verified,omitempty"`
	DataLocal       netip.AddrPort `json:"data_local"`
	DataRemote      netip.AddrPort `json:"data_remote"`
	DataIface       string         `json:"data_iface,omitempty"`
	UpdateGen       int            `json:"update_gen,omitempty"`
	ConfirmedGen    int            `json:"confirmed_gen,omitempty"`
	NewestUpdate    *uint32        `json:"newest_update,omitempty"`
	NewestList      *uint32        `json:"newest_list,omitempty"`
}

type exportedLease struct {
	Pool string     `json:"pool"`
	Addr netip.Addr `json:"addr"`
}

type exportedChild struct {
	Config   string              `json:"config"`
	InSPI    uint32              `json:"spi_in"`
	OutSPI   uint32              `json:"spi_out"`
	Mode     Mode                `json:"mode"`
	Proposal proposal.Negotiated `json:"proposal"`
	EncIn    []byte              `json:"enc_in"`
	IntIn    []byte              `json:"int_in,omitempty"`
	EncOut   []byte              `json:"enc_out"`
	IntOut   []byte              `json:"int_out,omitempty"`
	LocalTS  []wire.Selector     `json:"local_ts"`
	RemoteTS []wire.Selector     `json:"remote_ts"`
	Outbound bool                `json:"outbound"`
	NoSend   bool                `json:"no_send,omitempty"`
	Created  time.Time           `json:"created"`
	RekeyAt  time.Time           `json:"rekey_at"`
	ExpireAt time.Time           `json:"expire_at"`
}

// Export encodes the established IKE SA id and its Child SAs. The SA
// stays in this engine: hand it over with Forget once the importer has
// it, so that only one engine ever answers the peer.
func (e *Engine) Export(id uint64) ([]byte, error) {
	sa := e.byID[id]
	if sa == nil {
		return nil, fmt.Errorf("ike: no IKE SA %d", id)
	}
	if sa.state != stateEstablished || sa.hs != nil {
		return nil, fmt.Errorf("ike: IKE SA %d is %s, only an established SA can be exported", id, sa.state)
	}
	if len(sa.outstanding) > 0 || len(sa.tasks) > 0 || (sa.reasm != nil && sa.reasm.Pending() > 0) || sa.peerRekey != nil || sa.collidedWith != nil ||
		sa.successor != nil || sa.reauthOf != nil || sa.collisionLoser != nil || sa.pendingUpdate || len(sa.earlyDeletes) > 0 {
		return nil, ErrBusy
	}
	fromI, fromR := sa.out, sa.in
	if !sa.initiator {
		fromI, fromR = sa.in, sa.out
	}
	skei, skai := fromI.Keys()
	sker, skar := fromR.Keys()
	x := exportedSA{Version: exportVersion, ID: sa.id, Lineage: sa.lineage, Parent: sa.parent, Conn: sa.conn.Name,
		Initiator: sa.initiator, SPIi: sa.spiI, SPIr: sa.spiR, Proposal: sa.neg, SKd: sa.skd,
		SKei: skei, SKai: skai, SKer: sker, SKar: skar,
		Ext: exportedExt{NATLocal: sa.ext.natLocal, NATRemote: sa.ext.natRemote, PeerNATT: sa.ext.peerNATT,
			PeerHashes: sa.ext.peerHashes, MOBIKE: sa.ext.mobike, CloneLocal: sa.ext.cloneLocal, ClonePeer: sa.ext.clonePeer,
			Fragments: sa.ext.fragmentation, Childless: sa.ext.childless, MIDSync: sa.ext.midSync,
			RedirectLocal: sa.ext.redirectLocal, RedirectPeer: sa.ext.redirectPeer},
		LocalID: sa.localID, PeerID: sa.peerID,
		NextReq: sa.nextReq, PeerWindow: sa.peerWindow, WindowSent: sa.windowSent, ExpectReq: sa.expectReq,
		VIPsInherited: sa.vipsInherited, LocalVIPs: sa.localVIPs, RemoteVIPs: sa.remoteVIPs,
		Created: sa.created, Established: sa.established, LastInbound: sa.lastInbound, LastSent: sa.lastSent,
	}
	d := sa.deadlines()
	x.RekeyAt, x.ReauthAt, x.ExpireAt = d.rekey, d.reauth, d.expire
	for _, r := range sa.responses {
		x.Responses = append(x.Responses, exportedResponse{ID: r.id, Exchange: r.exchange, Hash: r.hash, Packets: r.packets})
	}
	p := &x.Path
	p.Local, p.Remote, p.Encap, p.MOBIKEInitiator, p.Iface = sa.local, sa.remote, sa.encap, sa.mobikeInitiator, sa.iface
	p.TCP = sa.tcp
	p.PeerAddrs = sa.peerAddrs
	p.Verified = slices.Clone(sa.verified)
	slices.SortFunc(p.Verified, netip.Addr.Compare)
	p.DataLocal, p.DataRemote, p.DataIface = sa.dataLocal, sa.dataRemote, sa.dataIface
	p.UpdateGen, p.ConfirmedGen = sa.updateGen, sa.confirmedGen
	if sa.newestUpdate.seen {
		p.NewestUpdate = &sa.newestUpdate.id
	}
	if sa.newestList.seen {
		p.NewestList = &sa.newestList.id
	}
	if f := sa.family; f != nil {
		x.FamilyToken, x.AuthTime = f.token, f.authTime
		x.FamilyEnd, x.EAPIdentity, x.EAPMethod = f.end, f.eapIdentity, f.eapMethod
		for _, l := range f.leases {
			if slices.Contains(sa.remoteVIPs, l.addr) {
				x.Leases = append(x.Leases, exportedLease{Pool: l.pool.Name, Addr: l.addr})
			}
		}
	}
	for _, c := range sa.children {
		if c.state != childInstalled || c.peerRekey != nil || c.replacedBy != nil || c.replaces != nil {
			return nil, ErrBusy
		}
		x.Children = append(x.Children, exportedChild{Config: c.cfg.Name, InSPI: c.inSPI, OutSPI: c.outSPI, Mode: c.mode,
			Proposal: c.neg, EncIn: c.encIn, IntIn: c.intIn, EncOut: c.encOut, IntOut: c.intOut,
			LocalTS: c.localTS, RemoteTS: c.remoteTS, Outbound: c.outbound, NoSend: c.noSend, Created: c.created,
			RekeyAt: sa.e.deadline(c.rekeyT), ExpireAt: sa.e.deadline(c.expireT)})
	}
	return json.Marshal(&x)
}

// Forget drops the IKE SA id and its Child SAs without a word to the
// peer, after Export handed it to another engine.
func (e *Engine) Forget(now time.Time, id uint64) ([]Action, error) {
	e.begin(now)
	sa := e.byID[id]
	if sa == nil {
		return e.end(), fmt.Errorf("ike: no IKE SA %d", id)
	}
	e.destroy(sa, "handed over to another engine")
	return e.end(), nil
}

// Import rebuilds an IKE SA that Export encoded, with its Child SAs,
// timers and virtual-IP leases. The connection it belongs to must exist
// here by name; the SA keeps its id unless this engine already uses it.
// Anything hostile or inconsistent in b is refused with an error and
// leaves the engine unchanged.
func (e *Engine) Import(now time.Time, b []byte) (uint64, []Action, error) {
	e.begin(now)
	x, err := decodeExport(b)
	if err != nil {
		return 0, e.end(), err
	}
	sa, err := e.rebuild(x)
	if err != nil {
		return 0, e.end(), fmt.Errorf("ike: import: %w", err)
	}
	e.event(sa, EventIKEUp, fmt.Sprintf("imported %s %s <-> %s", sa.neg.String(), sa.local, sa.remote))
	e.log.Info("IKE SA imported", "ike", sa.id, "conn", sa.conn.Name, "local", sa.local, "remote", sa.remote, "children", len(sa.children))
	return sa.id, e.end(), nil
}

// decodeExport parses and checks everything that does not need the
// engine.
func decodeExport(b []byte) (*exportedSA, error) {
	if len(b) > maxExportSize {
		return nil, fmt.Errorf("ike: import: %d octets, more than %d", len(b), maxExportSize)
	}
	var x exportedSA
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&x); err != nil {
		return nil, fmt.Errorf("ike: import: %w", err)
	}
	if d.More() {
		return nil, errors.New("ike: import: data after the SA")
	}
	switch {
	case x.Version != exportVersion:
		return nil, fmt.Errorf("ike: import: format version %d, this engine reads %d", x.Version, exportVersion)
	case x.SPIi == 0 || x.SPIr == 0:
		return nil, errors.New("ike: import: an SPI is zero")
	case len(x.Children) > maxExportChildren:
		return nil, fmt.Errorf("ike: import: %d Child SAs, more than %d", len(x.Children), maxExportChildren)
	case len(x.EAPIdentity) > 253:
		return nil, fmt.Errorf("ike: import: EAP identity of %d octets, more than a RADIUS attribute holds", len(x.EAPIdentity))
	case len(x.Responses) > maxWindow:
		return nil, fmt.Errorf("ike: import: %d cached responses, more than the largest window %d", len(x.Responses), maxWindow)
	case x.PeerWindow > maxWindow:
		return nil, fmt.Errorf("ike: import: peer window %d", x.PeerWindow)
	case len(x.Path.PeerAddrs) > maxExportAddrs || len(x.Path.Verified) > maxExportAddrs ||
		len(x.LocalVIPs) > maxExportAddrs || len(x.RemoteVIPs) > maxExportAddrs || len(x.Leases) > maxExportAddrs:
		return nil, errors.New("ike: import: too many addresses")
	case !x.Path.Local.IsValid() || !x.Path.Remote.IsValid() || !x.Path.DataLocal.IsValid() || !x.Path.DataRemote.IsValid():
		return nil, errors.New("ike: import: a path address is missing")
	}
	for _, r := range x.Responses {
		if len(r.Packets) == 0 || len(r.Packets) > maxExportPackets {
			return nil, fmt.Errorf("ike: import: cached response %d has %d packets", r.ID, len(r.Packets))
		}
	}
	for _, c := range x.Children {
		if c.InSPI == 0 || c.OutSPI == 0 || len(c.LocalTS) == 0 || len(c.RemoteTS) == 0 ||
			len(c.LocalTS) > maxExportTS || len(c.RemoteTS) > maxExportTS {
			return nil, fmt.Errorf("ike: import: Child SA %08x is malformed", c.InSPI)
		}
		if c.Mode != Tunnel && c.Mode != Transport {
			return nil, fmt.Errorf("ike: import: Child SA %08x has mode %d", c.InSPI, c.Mode)
		}
	}
	return &x, nil
}

// maxClockSkew is how far the exporting engine's clock may be ahead of
// ours; maxAge bounds how old an SA's times may be. Times outside would
// overflow the arithmetic of the timers armed from them.
const (
	maxClockSkew = time.Hour
	maxAge       = 100 * 365 * 24 * time.Hour
)

// checkTimes refuses times an SA cannot have: from the future, or from
// before anything could have run.
func (e *Engine) checkTimes(x *exportedSA) error {
	past := func(t time.Time) bool { // zero: never (a clone that sent nothing yet)
		return !t.IsZero() && (t.After(e.now.Add(maxClockSkew)) || t.Before(e.now.Add(-maxAge)))
	}
	for _, t := range []time.Time{x.Created, x.Established, x.LastInbound, x.LastSent, x.AuthTime} {
		if past(t) {
			return fmt.Errorf("time %v is not in this engine's past", t)
		}
	}
	deadlines := []time.Time{x.RekeyAt, x.ReauthAt, x.ExpireAt}
	for _, c := range x.Children {
		if past(c.Created) {
			return fmt.Errorf("the Child SA %08x was created at %v", c.InSPI, c.Created)
		}
		deadlines = append(deadlines, c.RekeyAt, c.ExpireAt)
	}
	for _, t := range deadlines {
		if !t.IsZero() && (t.Before(e.now.Add(-maxAge)) || t.After(e.now.Add(maxAge))) {
			return fmt.Errorf("deadline %v is out of range", t)
		}
	}
	return nil
}

// rebuild makes the SA of x in e, or changes nothing and says why.
func (e *Engine) rebuild(x *exportedSA) (*ikeSA, error) {
	if err := e.checkTimes(x); err != nil {
		return nil, err
	}
	c := e.connection(x.Conn)
	if c == nil {
		return nil, fmt.Errorf("no connection %q here", x.Conn)
	}
	initiator := x.Initiator
	localSPI := x.SPIr
	if initiator {
		localSPI = x.SPIi
	}
	if e.sas[localSPI] != nil {
		return nil, fmt.Errorf("SPI %016x is in use here", localSPI)
	}
	if len(e.sas) >= e.cfg.MaxIKESAs {
		return nil, fmt.Errorf("limit of %d IKE SAs reached", e.cfg.MaxIKESAs)
	}
	seenSPI := map[uint32]bool{}
	for _, ch := range x.Children {
		if c.child(ch.Config) == nil {
			return nil, fmt.Errorf("no child %q in connection %q here", ch.Config, c.Name)
		}
		if e.children[ch.InSPI] != nil || seenSPI[ch.InSPI] {
			return nil, fmt.Errorf("inbound SPI %08x is in use here", ch.InSPI)
		}
		seenSPI[ch.InSPI] = true
	}
	n := x.Proposal
	suite, err := ikecrypto.NewSuite(n.Encr.Encr, n.Encr.KeyBits, n.PRF, n.Integ, n.DH)
	if err != nil {
		return nil, err
	}
	fromI, err := suite.NewSKCipher(x.SKei, x.SKai)
	if err != nil {
		return nil, fmt.Errorf("initiator's keys: %w", err)
	}
	fromR, err := suite.NewSKCipher(x.SKer, x.SKar)
	if err != nil {
		return nil, fmt.Errorf("responder's keys: %w", err)
	}
	if len(x.SKd) != suite.PRF.Size() {
		return nil, fmt.Errorf("SK_d of %d octets for %s", len(x.SKd), n.PRF)
	}
	children := make([]*childSA, 0, len(x.Children))
	for _, ch := range x.Children {
		child, err := importChild(c, ch)
		if err != nil {
			return nil, err
		}
		children = append(children, child)
	}
	// The virtual IPs' leases are claimed last of the checks: they are
	// the only ones that change shared state, and undone on failure.
	fam := e.familyByToken(x.FamilyToken)
	owner := c.Name + "|" + string(rune(x.PeerID.Type)) + string(x.PeerID.Data) // peerIdentity
	var claimed []poolLease
	for _, l := range x.Leases {
		if fam != nil && slices.ContainsFunc(fam.leases, func(o poolLease) bool { return o.addr == l.Addr }) {
			continue // the family here holds it already
		}
		i := slices.IndexFunc(c.Pools, func(p *Pool) bool { return p.Name == l.Pool })
		var err error
		if i < 0 {
			err = fmt.Errorf("no pool %q in connection %q here", l.Pool, c.Name)
		} else {
			err = c.Pools[i].Claim(l.Addr, owner)
		}
		if err != nil {
			for _, u := range claimed {
				u.pool.Release(u.addr)
			}
			return nil, err
		}
		claimed = append(claimed, poolLease{pool: c.Pools[i], addr: l.Addr})
	}

	sa := &ikeSA{e: e, conn: c, initiator: initiator, spiI: x.SPIi, spiR: x.SPIr, state: stateEstablished}
	sa.id = x.ID
	if sa.id == 0 || e.byID[sa.id] != nil {
		e.nextID++
		sa.id = e.nextID
	}
	e.nextID = max(e.nextID, sa.id)
	sa.lineage, sa.parent = x.Lineage, x.Parent
	sa.neg, sa.suite, sa.skd = n, suite, bytes.Clone(x.SKd)
	if initiator {
		sa.out, sa.in = fromI, fromR
	} else {
		sa.out, sa.in = fromR, fromI
	}
	sa.ext = extensions{natLocal: x.Ext.NATLocal, natRemote: x.Ext.NATRemote, peerNATT: x.Ext.PeerNATT,
		peerHashes: x.Ext.PeerHashes, mobike: x.Ext.MOBIKE, cloneLocal: x.Ext.CloneLocal, clonePeer: x.Ext.ClonePeer,
		fragmentation: x.Ext.Fragments, childless: x.Ext.Childless, midSync: x.Ext.MIDSync,
		redirectLocal: x.Ext.RedirectLocal, redirectPeer: x.Ext.RedirectPeer}
	sa.localID, sa.peerID = x.LocalID, x.PeerID
	sa.nextReq, sa.peerWindow, sa.windowSent, sa.expectReq = x.NextReq, x.PeerWindow, x.WindowSent, x.ExpectReq
	for _, r := range x.Responses {
		sa.responses = append(sa.responses, &response{id: r.ID, exchange: r.Exchange, hash: r.Hash, packets: r.Packets})
	}
	p := &x.Path
	sa.local, sa.remote, sa.encap, sa.mobikeInitiator, sa.iface = p.Local, p.Remote, p.Encap, p.MOBIKEInitiator, p.Iface
	sa.tcp = p.TCP
	sa.peerAddrs = p.PeerAddrs
	sa.verified = nil
	for _, a := range p.Verified {
		sa.verified.add(a)
	}
	sa.dataLocal, sa.dataRemote, sa.dataIface = p.DataLocal, p.DataRemote, p.DataIface
	sa.updateGen, sa.confirmedGen = p.UpdateGen, p.ConfirmedGen
	if p.NewestUpdate != nil {
		sa.newestUpdate = newestID{id: *p.NewestUpdate, seen: true}
	}
	if p.NewestList != nil {
		sa.newestList = newestID{id: *p.NewestList, seen: true}
	}
	sa.vipsInherited, sa.localVIPs, sa.remoteVIPs = x.VIPsInherited, x.LocalVIPs, x.RemoteVIPs
	sa.created, sa.established, sa.lastInbound, sa.lastSent = x.Created, x.Established, x.LastInbound, x.LastSent

	if fam == nil {
		e.nextFamily++
		fam = &family{id: e.nextFamily, token: x.FamilyToken, authTime: x.AuthTime,
			end: x.FamilyEnd, eapIdentity: x.EAPIdentity, eapMethod: x.EAPMethod}
		e.families[fam.id] = fam
	}
	fam.join(sa)
	fam.leases = append(fam.leases, claimed...)
	e.sas[localSPI] = sa
	e.byID[sa.id] = sa
	sa.armDeadlines(ikeDeadlines{rekey: x.RekeyAt, reauth: x.ReauthAt, expire: x.ExpireAt})
	sa.armDPD()
	sa.armPathProbe()
	sa.armKeepalive()
	for i, child := range children {
		child.ike = sa
		e.children[child.inSPI] = child
		sa.children = append(sa.children, child)
		e.emit(InstallChild{SA: child.params()})
		child.armDeadlines(x.Children[i].RekeyAt, x.Children[i].ExpireAt)
	}
	return sa, nil
}

// importChild makes the Child SA of ch for connection c, not yet part of
// any IKE SA; its keys must fit its algorithms.
func importChild(c *Connection, ch exportedChild) (*childSA, error) {
	cfg := c.child(ch.Config)
	n := ch.Proposal
	if err := checkESPKeys(n, ch.EncIn, ch.IntIn); err != nil {
		return nil, fmt.Errorf("the Child SA %08x inbound: %w", ch.InSPI, err)
	}
	if err := checkESPKeys(n, ch.EncOut, ch.IntOut); err != nil {
		return nil, fmt.Errorf("the Child SA %08x outbound: %w", ch.InSPI, err)
	}
	return &childSA{cfg: cfg, state: childInstalled, inSPI: ch.InSPI, outSPI: ch.OutSPI, mode: ch.Mode, neg: n,
		encIn: ch.EncIn, intIn: ch.IntIn, encOut: ch.EncOut, intOut: ch.IntOut,
		localTS: ch.LocalTS, remoteTS: ch.RemoteTS, outbound: ch.Outbound && !ch.NoSend, noSend: ch.NoSend, created: ch.Created}, nil
}

// familyByToken finds a live family by its cross-engine name.
func (e *Engine) familyByToken(token uint64) *family {
	if token == 0 {
		return nil
	}
	for _, sa := range e.byID {
		if f := sa.family; f != nil && f.token == token {
			return f
		}
	}
	return nil
}

// checkESPKeys checks that enc and integ are keys of the lengths n's
// algorithms take (a data plane would refuse them later, or worse).
func checkESPKeys(n proposal.Negotiated, enc, integ []byte) error {
	a, err := ikecrypto.LookupEncr(n.Encr.Encr, n.Encr.KeyBits)
	if err != nil {
		return err
	}
	if len(enc) != a.KeyLen {
		return fmt.Errorf("%d octets of encryption key, %v takes %d", len(enc), a, a.KeyLen)
	}
	want := 0
	if n.Integ != 0 {
		i, err := ikecrypto.LookupInteg(n.Integ)
		if err != nil {
			return err
		}
		want = i.KeyLen
	}
	if len(integ) != want {
		return fmt.Errorf("%d octets of integrity key, %v takes %d", len(integ), n.Integ, want)
	}
	return nil
}
