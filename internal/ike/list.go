package ike

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/mifike/mifike/internal/ikeauth"
)

// SAState is where an IKE SA is in its life. Its text form (String,
// MarshalText) is the name the CLI, the control API and the metrics show.
type SAState int

// The states of an IKE SA.
const (
	StateConnecting  SAState = iota // IKE_SA_INIT / IKE_AUTH under way
	StateEstablished                // authenticated
	StateRekeyed                    // superseded by a rekey; waits for the Delete
	StateDeleting                   // our Delete is outstanding
	StateDestroying                 // destroyed: no longer listed
)

var stateNames = [...]string{StateConnecting: "CONNECTING", StateEstablished: "ESTABLISHED",
	StateRekeyed: "REKEYED", StateDeleting: "DELETING", StateDestroying: "DESTROYING"}

func (s SAState) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("SAState(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText writes the state's name, so JSON carries it as a string.
func (s SAState) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(stateNames) {
		return nil, fmt.Errorf("ike: no IKE SA state %d", int(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText reads a name MarshalText wrote.
func (s *SAState) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = SAState(i)
			return nil
		}
	}
	return fmt.Errorf("ike: no IKE SA state %q", b)
}

// ListedStates are the states IKESAs shows IKE SAs in (a destroyed one is
// no longer listed), so that metrics can show each, at 0 when no SA is
// in it.
func ListedStates() []SAState {
	return []SAState{StateConnecting, StateEstablished, StateRekeyed, StateDeleting}
}

// ListedChildStates are the states ChildInfo.State shows, as
// ListedStates.
func ListedChildStates() []string {
	return []string{childInstalled.String(), childRekeying.String(), childRekeyed.String(), childDeleting.String()}
}

// IKESAInfo is a snapshot of one IKE SA for the CLI, metrics and tests.
type IKESAInfo struct {
	ID                uint64
	Conn              string
	State             SAState
	Initiator         bool
	SPIi, SPIr        uint64
	Local, Remote     netip.AddrPort
	LocalID, RemoteID string
	Proposal          string
	Established       time.Time
	NATLocal          bool
	NATRemote         bool
	Encap             bool
	// TCP: IKE and ESP go in a TCP stream (RFC 9329).
	TCP    bool
	MOBIKE bool
	// Clone family (RFC 7791 §8): the id shared by an authentication's
	// IKE SAs, when it authenticated, the SA this one was cloned from,
	// and whether both peers allow cloning.
	Family   uint64
	AuthTime time.Time
	Parent   uint64
	// FamilyToken names the clone family across engines (a gateway
	// cluster's nodes): the same for every SA of one authentication,
	// wherever it went. It comes from public SPIs; it is no secret.
	FamilyToken uint64
	// Lineage is the id of the first IKE SA this one replaced through IKE
	// SA rekeys and reauthentications (its own id if none): the ID changes
	// with every rekey, Lineage names the VPN for as long as it lives.
	Lineage         uint64
	CloneSupported  bool
	MOBIKEInitiator bool
	// Window and PeerWindow: requests each side may have outstanding on
	// this SA (RFC 7296 §2.3): ours as stated, the peer's as it stated.
	Window, PeerWindow uint32
	Iface              string       // the path's interface, when pinned
	PeerAddrs          []netip.Addr // addresses the peer announced (RFC 4555 §3.4)
	VirtualIPs         []netip.Addr // assigned to us
	PeerVirtualIPs     []netip.Addr // we assigned to the peer
	// EAPIdentity and EAPMethod: the authentication this SA comes from
	// (it or its clone parent's) was by EAP, as this identity, by this
	// method ("EAP-MSCHAPv2"); empty otherwise.
	EAPIdentity, EAPMethod string
	Children               []ChildInfo
	// Creating names the child configs of new Child SAs queued or under
	// way (not rekeys).
	Creating []string
	// KeyID identifies the keys without revealing them (SHA-256 of SK_d):
	// both peers of an SA must show the same value.
	KeyID [32]byte
	// RekeyAt, ReauthAt and ExpireAt are when the lifetime timers fire
	// (§2.8, §2.8.3): a rekey or a reauthentication is started, and the
	// SA is destroyed if neither has replaced it. Zero: not armed (not
	// configured, not yet established, or already fired).
	RekeyAt, ReauthAt, ExpireAt time.Time
	// PeerCert is the end-entity certificate the peer authenticated the
	// family with, nil for a pre-shared key or EAP.
	PeerCert *x509.Certificate
	// What the SA's exchanges measured of its current path (pathstats.go):
	// the smoothed round trip and its variation (RFC 6298) from
	// RTTSamples answers, and the fraction of request transmissions that
	// went unanswered (an average of about the last 16) from LossSamples
	// transmissions. Zero samples: nothing measured on this path yet.
	RTT, RTTVar             time.Duration
	Loss                    float64
	RTTSamples, LossSamples int
}

// ChildInfo is a Child SA in a snapshot.
type ChildInfo struct {
	ChildSA
	State       string
	Established time.Time
	// RekeyAt and ExpireAt are its soft and hard lifetime (§2.8): when a
	// rekey starts and when it is deleted; zero when not armed.
	RekeyAt, ExpireAt time.Time
}

// IKESAs lists every IKE SA past IKE_SA_INIT, half-open ones too,
// ordered by id.
func (e *Engine) IKESAs() []IKESAInfo {
	var out []IKESAInfo
	for _, sa := range e.sortedSAs() {
		out = append(out, sa.info())
	}
	if e.halfOpen.len() > 0 {
		out = append(out, e.halfOpenInfos()...)
		sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	}
	return out
}

func (sa *ikeSA) info() IKESAInfo {
	i := IKESAInfo{ID: sa.id, Conn: sa.conn.Name, State: sa.state, Initiator: sa.initiator,
		SPIi: sa.spiI, SPIr: sa.spiR, Local: sa.local, Remote: sa.remote,
		Established: sa.established, NATLocal: sa.ext.natLocal, NATRemote: sa.ext.natRemote, Encap: sa.encap && !sa.tcp, TCP: sa.tcp, MOBIKE: sa.ext.mobike,
		VirtualIPs: append([]netip.Addr(nil), sa.localVIPs...), PeerVirtualIPs: append([]netip.Addr(nil), sa.remoteVIPs...),
		RTT: sa.srtt}
	if p := sa.path; p != nil {
		i.RTTVar, i.Loss, i.RTTSamples, i.LossSamples = p.rttvar, p.loss, p.rttSamples, p.lossSamples
	}
	if f := sa.family; f != nil && f.eapIdentity != nil {
		i.EAPIdentity, i.EAPMethod = string(f.eapIdentity), eapMethodName(f.eapMethod)
	}
	if sa.closing && sa.state == stateEstablished {
		i.State = stateDeleting // its Delete waits for the window (close)
	}
	if sa.localID.Type != 0 {
		i.LocalID = ikeauth.FormatID(sa.localID.Type, sa.localID.Data)
	}
	if sa.peerID.Type != 0 {
		i.RemoteID = ikeauth.FormatID(sa.peerID.Type, sa.peerID.Data)
	}
	if f := sa.family; f != nil {
		i.Family, i.FamilyToken, i.AuthTime = f.id, f.token, f.authTime
	}
	i.Parent, i.CloneSupported, i.MOBIKEInitiator = sa.parent, sa.canClone(), sa.mobikeInitiator
	i.Lineage = sa.lineageID()
	i.Iface, i.PeerAddrs = sa.iface, append([]netip.Addr(nil), sa.peerAddrs...)
	i.Window, i.PeerWindow = sa.window(), max(sa.peerWindow, 1)
	if sa.suite != nil {
		i.Proposal = sa.neg.String()
		i.KeyID = sha256.Sum256(sa.skd)
	}
	d := sa.deadlines()
	i.RekeyAt, i.ReauthAt, i.ExpireAt = d.rekey, d.reauth, d.expire
	if f := sa.family; f != nil {
		if len(f.peerChain) > 0 {
			i.PeerCert = f.peerChain[0]
		}
	}
	for _, c := range sa.children {
		i.Children = append(i.Children, ChildInfo{ChildSA: c.params(), State: c.state.String(), Established: c.created,
			RekeyAt: sa.e.deadline(c.rekeyT), ExpireAt: sa.e.deadline(c.expireT)})
	}
	i.Creating = sa.creating()
	return i
}

// creating names the child configs of the new Child SAs (not rekeys)
// queued or under way on sa, so that whoever restores missing Child SAs
// does not ask for them twice.
func (sa *ikeSA) creating() []string {
	var out []string
	add := func(t task) {
		if c, ok := t.(*childCreateTask); ok && c.rekey == nil {
			out = append(out, c.cfg.Name)
		}
	}
	for _, t := range sa.tasks {
		add(t)
	}
	for _, p := range sa.outstanding {
		add(p.task)
	}
	return out
}
