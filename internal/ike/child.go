package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

type childState int

const (
	childInstalled childState = iota
	childRekeying             // our rekey is in flight
	childRekeyed              // replaced; waits for its Delete
	childDeleting             // our Delete is in flight
	childGone
)

var childStateNames = map[childState]string{childInstalled: "INSTALLED", childRekeying: "REKEYING",
	childRekeyed: "REKEYED", childDeleting: "DELETING", childGone: "DELETED"}

func (s childState) String() string { return childStateNames[s] }

// childSA is one ESP SA pair.
type childSA struct {
	ike            *ikeSA
	cfg            *ChildConfig
	state          childState
	inSPI, outSPI  uint32
	mode           Mode
	neg            proposal.Negotiated
	encIn, intIn   []byte
	encOut, intOut []byte
	localTS        []wire.Selector
	remoteTS       []wire.Selector
	outbound       bool
	// noSend: another engine may have sent with these keys (a cluster
	// takeover or hand-over imported them): never send on this SA, only
	// on its rekeyed successor, whatever arrives (RFC 6311 §3.4: ESP
	// sequence numbers, and with AES-GCM nonces, must not repeat).
	noSend  bool
	created time.Time
	rekeyT  *timer
	expireT *timer

	// RFC 7296 §2.8.1 collisions: the Child SA the peer's concurrent rekey
	// created and that exchange's nonces (set with peerRekey; behind a
	// pointer, which keeps the Child SA a size class smaller); the SA that
	// replaces this one.
	peerRekey  *childSA
	peerNonces *[2][]byte
	replacedBy *childSA
	replaces   *childSA
	// reloadClosed: a reload queued this SA's deletion; a rekey queued
	// before it must not renew it (Reconfigure).
	reloadClosed bool
}

func (c *childSA) params() ChildSA {
	sa := c.ike
	p := ChildSA{IKESA: sa.id, Name: c.cfg.Name, InSPI: c.inSPI, OutSPI: c.outSPI, Protocol: wire.ProtoESP, Mode: c.mode,
		Encr: c.neg.Encr.Encr, KeyBits: c.neg.Encr.KeyBits, Integ: c.neg.Integ, ESN: c.neg.ESN == wire.ESNYes,
		EncKeyIn: c.encIn, IntegKeyIn: c.intIn, EncKeyOut: c.encOut, IntegKeyOut: c.intOut,
		LocalTS: c.localTS, RemoteTS: c.remoteTS, Local: sa.dataLocal, Remote: sa.dataRemote, Iface: sa.dataIface, Encap: sa.encap && !sa.tcp, TCP: sa.tcp,
		Outbound: c.outbound, SoftBytes: c.cfg.RekeyBytes, HardBytes: c.cfg.LifeBytes, VirtualIPs: sa.localVIPs}
	return p
}

// childRequest is the initiator's half of a Child SA negotiation, shared
// by IKE_AUTH and CREATE_CHILD_SA.
type childRequest struct {
	cfg      *ChildConfig
	rekey    *childSA
	inSPI    uint32
	offered  *wire.SA
	tsi, tsr []wire.Selector
	mode     Mode
	released bool
}

func (sa *ikeSA) newChildRequest(cfg *ChildConfig, rekey *childSA, withDH bool) *childRequest {
	r := &childRequest{cfg: cfg, rekey: rekey, inSPI: sa.e.newChildSPI(), mode: cfg.Mode}
	r.offered = proposal.WireSA(cfg.ESP, binary.BigEndian.AppendUint32(nil, r.inSPI), withDH)
	if rekey != nil {
		// §2.9.2: a rekeyed Child SA must not be narrower than the old one.
		r.tsi, r.tsr, r.mode = rekey.localTS, rekey.remoteTS, rekey.mode
	} else {
		r.tsi, r.tsr = sa.proposeTS(cfg)
	}
	return r
}

// proposeTS is what we ask for: configured selectors, or for dynamic ones
// our IKE address (or the whole space while we still wait for a virtual
// IP, which the responder then narrows to it) and the peer's address.
func (sa *ikeSA) proposeTS(cfg *ChildConfig) (local, remote []wire.Selector) {
	local, remote = cfg.LocalTS, cfg.RemoteTS
	if cfg.DynamicLocal {
		switch {
		case len(sa.localVIPs) > 0:
			local = addrSelectors(sa.localVIPs)
		case sa.conn.RequestVIP4 || sa.conn.RequestVIP6:
			local = wildcardTS(sa.conn)
		default:
			local = []wire.Selector{ts.FromAddr(sa.local.Addr())}
		}
	}
	if cfg.DynamicRemote {
		remote = addrSelectors(sa.remoteVIPs)
		if len(remote) == 0 {
			remote = []wire.Selector{ts.FromAddr(sa.remote.Addr())}
		}
	}
	return local, remote
}

func addrSelectors(as []netip.Addr) []wire.Selector {
	var out []wire.Selector
	for _, a := range as {
		out = append(out, ts.FromAddr(a))
	}
	return out
}

// policyTS is what we accept as responder: for a dynamic side its
// virtual IPs when it has them, else its IKE address.
func (sa *ikeSA) policyTS(cfg *ChildConfig) (local, remote []wire.Selector) {
	local, remote = cfg.LocalTS, cfg.RemoteTS
	if cfg.DynamicLocal {
		local = addrSelectors(sa.localVIPs)
		if len(local) == 0 {
			local = []wire.Selector{ts.FromAddr(sa.local.Addr())}
		}
	}
	if cfg.DynamicRemote {
		remote = addrSelectors(sa.remoteVIPs)
		if len(remote) == 0 {
			remote = []wire.Selector{ts.FromAddr(sa.remote.Addr())}
		}
	}
	return local, remote
}

// payloads are the SA, TSi, TSr (and mode) payloads of the request.
func (r *childRequest) payloads() []wire.Payload {
	ps := []wire.Payload{r.offered, &wire.TS{Selectors: r.tsi}, &wire.TS{Responder: true, Selectors: r.tsr}}
	if r.mode == Transport {
		ps = append(ps, wire.NewNotify(wire.NotifyUseTransportMode, nil))
	}
	return ps
}

// peerCreated reports whether the response says the responder created
// the Child SA (an SA payload, no refusal): if we cannot use it, we must
// delete it (RFC 7296 §2.21: clean up after an unusable response).
func (r *childRequest) peerCreated(m *message) bool {
	for _, p := range m.payloads {
		if n, ok := p.(*wire.Notify); ok && childErrors[n.NotifyType] {
			return false
		}
	}
	respSA, ok := wire.First[*wire.SA](m.payloads)
	return ok && len(respSA.Proposals) == 1 && len(respSA.Proposals[0].SPI) == 4
}

func (r *childRequest) release(sa *ikeSA) {
	if !r.released {
		r.released = true
		sa.e.releaseChildSPI(r.inSPI)
	}
}

// childErrors are the notifies that refuse a Child SA (§1.2, §1.3).
var childErrors = map[wire.NotifyType]bool{
	wire.NotifyNoProposalChosen: true, wire.NotifyTSUnacceptable: true, wire.NotifySinglePairRequired: true,
	wire.NotifyInternalAddressFailure: true, wire.NotifyFailedCPRequired: true, wire.NotifyNoAdditionalSAs: true,
	wire.NotifyInvalidKEPayload: true, wire.NotifyTemporaryFailure: true, wire.NotifyChildSANotFound: true,
	wire.NotifyInvalidSelectors: true,
}

// complete checks the responder's answer and installs the Child SA. The
// installed SA may carry outbound traffic at once: the responder installed
// both directions before it answered.
func (r *childRequest) complete(sa *ikeSA, m *message, ni, nr, gir []byte) (*childSA, error) {
	defer r.release(sa)
	for _, p := range m.payloads {
		if n, ok := p.(*wire.Notify); ok && childErrors[n.NotifyType] {
			return nil, fmt.Errorf("child %s refused: %s", r.cfg.Name, n.NotifyType)
		}
	}
	respSA, ok := wire.First[*wire.SA](m.payloads)
	if !ok {
		return nil, fmt.Errorf("child %s: response without SA payload", r.cfg.Name)
	}
	neg, err := proposal.CheckResponse(r.offered, respSA)
	if err != nil {
		return nil, fmt.Errorf("child %s: %v", r.cfg.Name, err)
	}
	if len(neg.SPI) != 4 || binary.BigEndian.Uint32(neg.SPI) < 256 {
		return nil, fmt.Errorf("child %s: responder SPI %x is not a valid ESP SPI", r.cfg.Name, neg.SPI)
	}
	var tsi, tsr []wire.Selector
	for _, t := range wire.All[*wire.TS](m.payloads) {
		if t.Responder {
			tsr = t.Selectors
		} else {
			tsi = t.Selectors
		}
	}
	// §2.9: the responder may only narrow.
	if !ts.Subset(tsi, r.tsi) || !ts.Subset(tsr, r.tsr) {
		return nil, fmt.Errorf("child %s: responder's selectors %s === %s are not within ours", r.cfg.Name, ts.Strings(tsi), ts.Strings(tsr))
	}
	mode := Tunnel
	if r.mode == Transport {
		if m.notify(wire.NotifyUseTransportMode) == nil {
			return nil, fmt.Errorf("child %s: responder did not accept transport mode", r.cfg.Name)
		}
		mode = Transport
	}
	c := &childSA{ike: sa, cfg: r.cfg, inSPI: r.inSPI, outSPI: binary.BigEndian.Uint32(neg.SPI), mode: mode, neg: neg,
		localTS: shareTS(tsi, r.cfg.LocalTS), remoteTS: shareTS(tsr, r.cfg.RemoteTS), outbound: true, created: sa.e.now}
	if err := c.deriveKeys(ni, nr, gir, true); err != nil {
		return nil, err
	}
	r.released = true // the SPI now belongs to the Child SA
	c.install()
	if i := slices.Index(sa.earlyDeletes, c.outSPI); i >= 0 {
		sa.e.log.Info("peer deleted this Child SA before we saw it created", "ike", sa.id, "child", c.cfg.Name)
		sa.queueFront(&childDeleteTask{child: c})
		sa.earlyDeletes = slices.Delete(sa.earlyDeletes, i, i+1)
	}
	return c, nil
}

// shareTS is cloneTS, except that selectors equal to the configured ones
// (conf) are the configuration's own slice: a gateway's side of nearly
// every Child SA is its configured subnet, and a copy per SA was 80
// octets. Neither is ever changed in place (ipsec.ChildSA).
func shareTS(l, conf []wire.Selector) []wire.Selector {
	if len(conf) > 0 && slices.EqualFunc(l, conf, sameSelector) {
		return conf
	}
	return cloneTS(l)
}

func sameSelector(a, b wire.Selector) bool {
	return a.TSType == b.TSType && a.IPProtocol == b.IPProtocol && a.StartPort == b.StartPort && a.EndPort == b.EndPort &&
		a.Start == b.Start && a.End == b.End && bytes.Equal(a.Raw, b.Raw)
}

func cloneTS(l []wire.Selector) []wire.Selector {
	out := make([]wire.Selector, len(l))
	for i, s := range l {
		s.Raw = bytes.Clone(s.Raw)
		out[i] = s
	}
	return out
}

// deriveKeys takes KEYMAT = prf+(SK_d, [g^ir] | Ni | Nr) (§2.17): the
// keys for traffic from the exchange initiator come first, encryption
// before integrity.
func (c *childSA) deriveKeys(ni, nr, gir []byte, weInitiated bool) error {
	encr, err := ikecrypto.LookupEncr(c.neg.Encr.Encr, c.neg.Encr.KeyBits)
	if err != nil {
		return err
	}
	integLen := 0
	if !encr.AEAD {
		integ, err := ikecrypto.LookupInteg(c.neg.Integ)
		if err != nil {
			return err
		}
		integLen = integ.KeyLen
	}
	n := 2 * (encr.KeyLen + integLen)
	km, err := ikecrypto.ChildKeyMat(c.ike.suite.PRF, c.ike.skd, gir, ni, nr, n)
	if err != nil {
		return err
	}
	ie, ii := km[:encr.KeyLen], km[encr.KeyLen:encr.KeyLen+integLen]
	re, ri := km[encr.KeyLen+integLen:2*encr.KeyLen+integLen], km[2*encr.KeyLen+integLen:]
	if weInitiated {
		c.encOut, c.intOut, c.encIn, c.intIn = ie, ii, re, ri
	} else {
		c.encIn, c.intIn, c.encOut, c.intOut = ie, ii, re, ri
	}
	return nil
}

// acceptChild is the responder's half: pick a child config whose policy
// meets the proposed selectors, narrow them (§2.9), select a proposal and
// derive keys. It returns the response payloads (without Nr/KEr) and the
// Child SA to install once the response is sent, or the notify refusing it.
func (sa *ikeSA) acceptChild(m *message, ni, nr, gir []byte, rekey *childSA) ([]wire.Payload, *childSA, wire.NotifyType) {
	e := sa.e
	offered, ok := wire.First[*wire.SA](m.payloads)
	var tsi, tsr []wire.Selector
	for _, t := range wire.All[*wire.TS](m.payloads) {
		if t.Responder {
			tsr = t.Selectors
		} else {
			tsi = t.Selectors
		}
	}
	if !ok || tsi == nil || tsr == nil {
		return nil, nil, wire.NotifyInvalidSyntax
	}
	var (
		cfg        *ChildConfig
		nTSi, nTSr []wire.Selector
	)
	cands := sa.conn.Children
	if rekey != nil {
		cands = []*ChildConfig{rekey.cfg}
	}
	// The config that fits the proposal best, not the first one that
	// narrows to something: with one Child SA per service (a narrow
	// config for a port before a wide one for the rest of the network) a
	// request for the whole network would otherwise be narrowed to the
	// port's config, and the initiator would never get its wide Child SA.
	// Per side: 2 when the config's selectors are the proposed ones, 1
	// when they allow all of them, 0 when they narrow; the highest sum
	// wins, ties in file order (strongSwan's select_child_cfg ranks
	// candidates the same way).
	best := -1
	for _, c := range cands {
		local, remote := sa.policyTS(c)
		ri, rr := ts.Narrow(tsi, remote), ts.Narrow(tsr, local)
		if len(ri) == 0 || len(rr) == 0 {
			continue
		}
		if score := tsFit(tsi, remote) + tsFit(tsr, local); score > best {
			best, cfg, nTSi, nTSr = score, c, ri, rr
		}
	}
	if cfg == nil {
		e.log.Info("no child config for the proposed selectors", "ike", sa.id, "tsi", ts.Strings(tsi), "tsr", ts.Strings(tsr))
		return nil, nil, wire.NotifyTSUnacceptable
	}
	hint := wire.DHGroup(0)
	if ke, ok := wire.First[*wire.KE](m.payloads); ok {
		hint = ke.Group
	}
	local := cfg.ESP
	if m.Exchange == wire.IKEAuth {
		local = proposal.WithoutDH(local) // no DH for the IKE_AUTH Child SA (§1.2)
	}
	chosen, neg, ok := proposal.Select(local, offered, wire.ProtoESP, !sa.conn.PreferPeerProposals, hint)
	if !ok {
		e.log.Info("no acceptable ESP proposal", "ike", sa.id, "child", cfg.Name)
		return nil, nil, wire.NotifyNoProposalChosen
	}
	if len(neg.SPI) != 4 || binary.BigEndian.Uint32(neg.SPI) < 256 {
		return nil, nil, wire.NotifyInvalidSyntax
	}
	mode := Tunnel
	if m.notify(wire.NotifyUseTransportMode) != nil && cfg.Mode == Transport {
		mode = Transport
	}
	inSPI := e.newChildSPI()
	chosen.SPI = binary.BigEndian.AppendUint32(nil, inSPI)
	c := &childSA{ike: sa, cfg: cfg, inSPI: inSPI, outSPI: binary.BigEndian.Uint32(neg.SPI), mode: mode, neg: neg,
		localTS: shareTS(nTSr, cfg.LocalTS), remoteTS: shareTS(nTSi, cfg.RemoteTS), outbound: rekey == nil, created: e.now}
	if err := c.deriveKeys(ni, nr, gir, false); err != nil {
		e.releaseChildSPI(inSPI)
		return nil, nil, wire.NotifyNoProposalChosen
	}
	ps := []wire.Payload{&wire.SA{Proposals: []wire.Proposal{chosen}}, &wire.TS{Selectors: nTSi}, &wire.TS{Responder: true, Selectors: nTSr}}
	if mode == Transport {
		ps = append(ps, wire.NewNotify(wire.NotifyUseTransportMode, nil))
	}
	return ps, c, 0
}

// tsFit ranks how well a child config's selectors (policy) fit what the
// initiator proposed, for acceptChild.
func tsFit(proposed, policy []wire.Selector) int {
	switch {
	case !ts.Subset(proposed, policy):
		return 0 // narrowed
	case ts.Subset(policy, proposed):
		return 2 // the same
	default:
		return 1 // allows all of it
	}
}

// install hands the Child SA to the data plane and arms its lifetimes.
func (c *childSA) install() {
	sa, e := c.ike, c.ike.e
	e.children[c.inSPI] = c
	sa.children = append(sa.children, c)
	e.emit(InstallChild{SA: c.params()})
	c.armLifetimes()
	e.emit(Event{Kind: EventChildUp, IKESA: sa.id, Conn: sa.conn.Name, Child: c.inSPI, ChildName: c.cfg.Name,
		Detail: fmt.Sprintf("%s %s %08x_i %08x_o %s === %s", c.cfg.Name, c.mode, c.inSPI, c.outSPI, ts.Strings(c.localTS), ts.Strings(c.remoteTS))})
	e.log.Info("Child SA installed", "ike", sa.id, "child", c.cfg.Name, "spi_in", fmt.Sprintf("%08x", c.inSPI),
		"spi_out", fmt.Sprintf("%08x", c.outSPI), "local_ts", ts.Strings(c.localTS), "remote_ts", ts.Strings(c.remoteTS))
}

func (c *childSA) armLifetimes() {
	e := c.ike.e
	var rekey, expire time.Time
	if c.cfg.RekeyTime > 0 {
		rekey = e.now.Add(e.jitter(c.cfg.RekeyTime, c.cfg.RandTime))
	}
	life := c.cfg.LifeTime
	if life == 0 && c.cfg.RekeyTime > 0 {
		life = c.cfg.RekeyTime + c.cfg.RekeyTime/10
	}
	if life > 0 {
		expire = e.now.Add(life)
	}
	c.armDeadlines(rekey, expire)
}

// armDeadlines arms the soft (rekey) and hard lifetime timers at the
// given times (zero: none); an imported Child SA keeps its own.
func (c *childSA) armDeadlines(rekey, expire time.Time) {
	e := c.ike.e
	c.rekeyT.cancel()
	c.expireT.cancel()
	c.rekeyT, c.expireT = nil, nil
	if !rekey.IsZero() {
		c.rekeyT = e.at(rekey, c.softExpired)
	}
	if !expire.IsZero() {
		c.expireT = e.at(expire, func() {
			if c.state != childGone {
				e.log.Info("Child SA hard lifetime expired", "ike", c.ike.id, "child", c.cfg.Name)
				c.ike.queue(&childDeleteTask{child: c})
			}
		})
	}
}

// softExpired starts a rekey (§2.8) unless one is under way or the SA is
// already replaced.
func (c *childSA) softExpired() {
	if c.state == childInstalled && c.ike.state == stateEstablished {
		c.ike.queue(&childCreateTask{cfg: c.cfg, rekey: c})
	}
}

// activateOutbound lets a Child SA carry outbound traffic and retires the
// SA it replaces from that duty (a responder's rekeyed SA, §2.8).
func (c *childSA) activateOutbound() {
	e := c.ike.e
	if c.outbound || c.noSend || c.replacedBy != nil || c.state == childGone {
		// An SA already replaced (a rekey collision's redundant SA, or
		// an old one) never becomes the sending one again: the peer may
		// delete it any moment, and what we sent on it would be lost.
		return
	}
	c.outbound = true
	e.emit(UpdateChild{SA: c.params()})
	if old := c.replaces; old != nil && old.outbound && old.state != childGone {
		old.outbound = false
		e.emit(UpdateChild{SA: old.params()})
	}
}

// remove deletes the Child SA locally.
func (c *childSA) remove(reason string) {
	if c.state == childGone {
		return
	}
	sa, e := c.ike, c.ike.e
	c.state = childGone
	c.rekeyT.cancel()
	c.expireT.cancel()
	if e.children[c.inSPI] == c {
		delete(e.children, c.inSPI)
	}
	sa.removeChild(c)
	n := c.replacedBy
	if n == nil {
		// Deleted while our rekey was in flight and the peer's had
		// completed: the peer's new SA is the successor.
		n = c.peerRekey
	}
	rekeyed := n != nil && n.state != childGone && sa.state != stateDead
	if rekeyed {
		// The successor sends before the old SA goes, not after: in
		// between, outbound packets would find no SA (§2.8, make before
		// break).
		n.activateOutbound()
	}
	var successor uint32
	if rekeyed {
		successor = n.inSPI
	}
	e.emit(DeleteChild{IKESA: sa.id, InSPI: c.inSPI, OutSPI: c.outSPI, Successor: successor})
	e.emit(Event{Kind: EventChildDown, IKESA: sa.id, Conn: sa.conn.Name, Child: c.inSPI, ChildName: c.cfg.Name, Detail: c.cfg.Name + ": " + reason})
	// A gone SA is history: nothing newer may keep it (and through it its
	// IKE SA with that SA's keys) alive, or every rekey adds to the heap.
	// Its own links point to newer SAs and stay: a rekey of it still in
	// flight settles its §2.8.1 collision with them.
	if n != nil && n.replaces == c {
		n.replaces = nil
	}
	if p := c.peerRekey; p != nil && p.replaces == c {
		p.replaces = nil
	}
	c.replaces = nil
}

// lowestNonceIn reports whether the lowest of the four nonces of two
// colliding exchanges is one of a's (§2.8.1: byte-wise, a shorter prefix
// is lower).
func lowestNonceIn(a, b [2][]byte) bool {
	return bytes.Compare(minNonce(a), minNonce(b)) < 0
}

func minNonce(n [2][]byte) []byte {
	if bytes.Compare(n[0], n[1]) < 0 {
		return n[0]
	}
	return n[1]
}

var errNoKE = errors.New("KE payload missing or of the wrong group")
