package control

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// The views are JSON snapshots for the CLI and scripts: everything is
// already formatted (SPIs in hex, addresses as text, algorithms in config
// notation, an IKE SA's state by its name), so clients need none of
// mifike's packages. Times are RFC 3339 and omitted while zero. Go clients
// read the state as the typed ike.SAState it is made from.

// SA is one IKE SA.
type SA struct {
	ID          uint64      `json:"id"`
	Conn        string      `json:"conn"`
	State       ike.SAState `json:"state"` // as text: ESTABLISHED, CONNECTING, ...
	Initiator   bool        `json:"initiator"`
	SPIi        string      `json:"spi_i"` // 16 hex digits
	SPIr        string      `json:"spi_r"`
	Local       string      `json:"local"` // addr:port
	Remote      string      `json:"remote"`
	LocalID     string      `json:"local_id"`
	RemoteID    string      `json:"remote_id"`
	Proposal    string      `json:"proposal"` // e.g. aes128gcm16-prfsha256-x25519
	Established time.Time   `json:"established,omitzero"`
	NATLocal    bool        `json:"nat_local"`
	NATRemote   bool        `json:"nat_remote"`
	Encap       bool        `json:"encap"`
	TCP         bool        `json:"tcp,omitempty"` // in a TCP stream (RFC 9329)
	MOBIKE      bool        `json:"mobike"`
	// MOBIKEInitiator: this side moves the SA (RFC 4555 §2.1; for a
	// clone, the side that cloned it, RFC 7791 §1).
	MOBIKEInitiator bool     `json:"mobike_initiator"`
	Iface           string   `json:"iface,omitempty"`      // pinned interface
	PeerAddrs       []string `json:"peer_addrs,omitempty"` // the peer's announced addresses
	// Window, PeerWindow: overlapping requests (RFC 7296 §2.3) we accept
	// and the peer accepts on this SA.
	Window     uint32 `json:"window"`
	PeerWindow uint32 `json:"peer_window"`
	// Clone family (RFC 7791 §8): the IKE SAs of one authentication share
	// Family; Parent is the SA this one was cloned from, 0 for none.
	Family         uint64    `json:"family"`
	Parent         uint64    `json:"parent,omitempty"`
	AuthTime       time.Time `json:"auth_time,omitzero"`
	CloneSupported bool      `json:"clone_supported"`
	VirtualIPs     []string  `json:"virtual_ips"`      // assigned to us
	PeerVirtualIPs []string  `json:"peer_virtual_ips"` // we assigned to the peer
	// EAPIdentity and EAPMethod: the family was authenticated by EAP
	// (RFC 7296 §2.16), as this identity, by this method.
	EAPIdentity string `json:"eap_identity,omitempty"`
	EAPMethod   string `json:"eap_method,omitempty"`
	// RekeyAt, ReauthAt and ExpireAt are when the SA is due for a rekey
	// or a reauthentication (RFC 7296 §2.8, §2.8.3), and when it is
	// destroyed if neither replaced it; omitted when not scheduled.
	RekeyAt  time.Time `json:"rekey_time,omitzero"`
	ReauthAt time.Time `json:"reauth_time,omitzero"`
	ExpireAt time.Time `json:"expire_time,omitzero"`
	// Path is what the SA's exchanges measured of its current path,
	// omitted before anything was.
	Path     *Path   `json:"path,omitempty"`
	Children []Child `json:"children"`
}

// Path is an IKE SA's path as its exchanges measured it (ike.IKESAInfo):
// the smoothed round trip and its variation in milliseconds (RFC 6298,
// from RTTSamples answers to requests sent once), and the fraction of
// request transmissions unanswered (from LossSamples).
type Path struct {
	RTTMs       float64 `json:"rtt_ms"`
	RTTVarMs    float64 `json:"rttvar_ms"`
	Loss        float64 `json:"loss"`
	RTTSamples  int     `json:"rtt_samples"`
	LossSamples int     `json:"loss_samples"`
}

// Child is one Child SA of an IKE SA.
type Child struct {
	Name        string    `json:"name"`
	State       string    `json:"state"`
	Mode        string    `json:"mode"`
	InSPI       string    `json:"in_spi"` // 8 hex digits
	OutSPI      string    `json:"out_spi"`
	Proposal    string    `json:"proposal"` // e.g. aes128gcm16 or aes128-sha256
	LocalTS     []string  `json:"local_ts"`
	RemoteTS    []string  `json:"remote_ts"`
	Encap       bool      `json:"encap"`
	Outbound    bool      `json:"outbound"`
	Established time.Time `json:"established,omitzero"`
	// Traffic counters stay 0 until the data plane reports them.
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	// LastIn and LastOut are when the last packet came and went
	// (omitted before the first); with the kernel's data plane, to the
	// second it polls its counters.
	LastIn  time.Time `json:"last_in,omitzero"`
	LastOut time.Time `json:"last_out,omitzero"`
	// RekeyAt is when its rekey starts (the soft lifetime), ExpireAt
	// when it is deleted (the hard one); omitted when not scheduled.
	RekeyAt  time.Time `json:"rekey_time,omitzero"`
	ExpireAt time.Time `json:"expire_time,omitzero"`
}

// Conn is one configured connection.
type Conn struct {
	Name        string      `json:"name"`
	LocalAddrs  []string    `json:"local_addrs"` // empty: any
	RemoteAddrs []string    `json:"remote_addrs"`
	LocalID     string      `json:"local_id"`
	RemoteID    string      `json:"remote_id"` // %any: every peer
	LocalAuth   string      `json:"local_auth"`
	RemoteAuth  string      `json:"remote_auth"`
	Proposals   []string    `json:"proposals"`
	MOBIKE      bool        `json:"mobike"`
	Clone       bool        `json:"clone"`
	StartAction string      `json:"start_action"`
	Children    []ConnChild `json:"children"`
	SAs         int         `json:"sas"` // IKE SAs of this connection now
}

// ConnChild is one configured Child SA of a connection.
type ConnChild struct {
	Name      string   `json:"name"`
	LocalTS   []string `json:"local_ts"` // "dynamic": the IKE address or virtual IP
	RemoteTS  []string `json:"remote_ts"`
	Proposals []string `json:"proposals"`
	Mode      string   `json:"mode"`
	// StartAction is start, none or trap (a trapped child: its traffic
	// brings it up).
	StartAction string `json:"start_action"`
}

// Event is one entry of the event stream. A marker for lost events has
// only Dropped set: that many events were dropped here because the client
// read too slowly.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"` // ike-up, child-rekeyed, ... (ike.EventKind)
	IKESA  uint64    `json:"ike_sa"`
	Conn   string    `json:"conn"`
	Child  string    `json:"child"`  // inbound SPI, 8 hex digits, or ""
	Notify string    `json:"notify"` // notify type name, or ""
	Detail string    `json:"detail"`
	// ChildName, From and FromChild are ike.Event's: the configured name
	// of the Child SA concerned, and for ike-rekeyed and ike-cloned the
	// IKE SA the new one came from, for child-rekeyed the SPI of the
	// Child SA it replaced.
	ChildName string `json:"child_name,omitempty"`
	From      uint64 `json:"from_ike_sa,omitempty"`
	FromChild string `json:"from_child,omitempty"`
	Dropped   uint64 `json:"dropped,omitempty"`
}

// SAFromEngine converts an engine snapshot.
func SAFromEngine(i ike.IKESAInfo) SA {
	sa := SA{
		ID: i.ID, Conn: i.Conn, State: i.State, Initiator: i.Initiator,
		SPIi: fmt.Sprintf("%016x", i.SPIi), SPIr: fmt.Sprintf("%016x", i.SPIr),
		Local: addrPort(i.Local), Remote: addrPort(i.Remote),
		LocalID: i.LocalID, RemoteID: i.RemoteID, Proposal: i.Proposal, Established: i.Established,
		NATLocal: i.NATLocal, NATRemote: i.NATRemote, Encap: i.Encap, TCP: i.TCP, MOBIKE: i.MOBIKE,
		MOBIKEInitiator: i.MOBIKEInitiator, Iface: i.Iface, PeerAddrs: addrs(i.PeerAddrs),
		Window: i.Window, PeerWindow: i.PeerWindow,
		Family: i.Family, Parent: i.Parent, AuthTime: i.AuthTime, CloneSupported: i.CloneSupported,
		VirtualIPs: addrs(i.VirtualIPs), PeerVirtualIPs: addrs(i.PeerVirtualIPs),
		EAPIdentity: i.EAPIdentity, EAPMethod: i.EAPMethod,
		RekeyAt: i.RekeyAt, ReauthAt: i.ReauthAt, ExpireAt: i.ExpireAt,
		Children: make([]Child, 0, len(i.Children)),
	}
	if i.RTTSamples > 0 || i.LossSamples > 0 {
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		sa.Path = &Path{RTTMs: ms(i.RTT), RTTVarMs: ms(i.RTTVar), Loss: i.Loss, RTTSamples: i.RTTSamples, LossSamples: i.LossSamples}
	}
	for _, c := range i.Children {
		sa.Children = append(sa.Children, Child{
			Name: c.Name, State: c.State, Mode: c.Mode.String(),
			InSPI: spi(c.InSPI), OutSPI: spi(c.OutSPI), Proposal: childProposal(c.ChildSA),
			LocalTS: selectors(c.LocalTS), RemoteTS: selectors(c.RemoteTS),
			Encap: c.Encap, Outbound: c.Outbound, Established: c.Established,
			RekeyAt: c.RekeyAt, ExpireAt: c.ExpireAt,
		})
	}
	return sa
}

// ConnFromEngine converts a configured connection with its current
// number of IKE SAs. Clone and StartAction are daemon settings the engine
// does not hold: the caller fills them in.
func ConnFromEngine(c *ike.Connection, sas int) Conn {
	out := Conn{
		Name: c.Name, LocalID: id(c.LocalID), RemoteID: id(c.RemoteID),
		LocalAddrs: addrs(c.LocalAddrs), RemoteAddrs: addrs(c.RemoteAddrs),
		LocalAuth: auth(c.LocalAuth), RemoteAuth: auth(c.RemoteAuth),
		Proposals: proposals(c.IKE), MOBIKE: c.MOBIKE, SAs: sas,
		Children: make([]ConnChild, 0, len(c.Children)),
	}
	for _, ch := range c.Children {
		out.Children = append(out.Children, ConnChild{
			Name: ch.Name, Proposals: proposals(ch.ESP), Mode: ch.Mode.String(),
			LocalTS: policy(ch.LocalTS, ch.DynamicLocal), RemoteTS: policy(ch.RemoteTS, ch.DynamicRemote),
		})
	}
	return out
}

// EventFromEngine converts an engine event observed at t.
func EventFromEngine(t time.Time, e ike.Event) Event {
	ev := Event{Time: t, Kind: e.Kind.String(), IKESA: e.IKESA, Conn: e.Conn, Detail: e.Detail, ChildName: e.ChildName, From: e.From}
	if ev.Kind == "" {
		ev.Kind = fmt.Sprintf("event(%d)", int(e.Kind))
	}
	if e.Child != 0 {
		ev.Child = spi(e.Child)
	}
	if e.FromChild != 0 {
		ev.FromChild = spi(e.FromChild)
	}
	if e.Notify != 0 {
		ev.Notify = e.Notify.String()
	}
	return ev
}

// Reloaded answers reload: what the new configuration changed. SAs of
// connections that did not change are untouched and not listed.
type Reloaded struct {
	Added   []string      `json:"added"`
	Removed []string      `json:"removed"`
	Changed []ChangedConn `json:"changed"`
	SAs     []ReloadedSA  `json:"sas"`
}

// ChangedConn is a connection kept under its name whose settings differ,
// with what differs ("pre-shared key", "child net selectors", ...).
type ChangedConn struct {
	Name string   `json:"name"`
	What []string `json:"what"`
}

// ReloadedSA is what a reload did with one IKE SA (Child "") or Child SA:
// kept, closed, replaced (a Child SA with the new selectors follows) or
// created; closed IKE SAs the daemon set up again name the new one.
type ReloadedSA struct {
	IKESA    uint64 `json:"ike_sa"`
	Conn     string `json:"conn"`
	Child    string `json:"child,omitempty"`
	InSPI    string `json:"in_spi,omitempty"` // 8 hex digits
	OutSPI   string `json:"out_spi,omitempty"`
	Action   string `json:"action"`
	Reason   string `json:"reason"`
	NewIKESA uint64 `json:"new_ike_sa,omitempty"`
}

// ReloadedSAFromEngine is the view of one of ike.Reconfigure's changes.
func ReloadedSAFromEngine(c ike.SAChange) ReloadedSA {
	r := ReloadedSA{IKESA: c.IKESA, Conn: c.Conn, Child: c.Child, Action: string(c.Action), Reason: c.Reason}
	if c.InSPI != 0 {
		r.InSPI, r.OutSPI = spi(c.InSPI), spi(c.OutSPI)
	}
	return r
}

func spi(v uint32) string { return fmt.Sprintf("%08x", v) }

func addrPort(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// addrs and the other list helpers return empty lists rather than nil so
// that JSON shows [] and not null.
func addrs(l []netip.Addr) []string {
	out := make([]string, 0, len(l))
	for _, a := range l {
		out = append(out, a.String())
	}
	return out
}

func selectors(l []wire.Selector) []string {
	out := make([]string, 0, len(l))
	for _, s := range l {
		out = append(out, ts.String(s))
	}
	return out
}

func policy(l []wire.Selector, dynamic bool) []string {
	if dynamic {
		return []string{"dynamic"}
	}
	return selectors(l)
}

func proposals(l []proposal.Proposal) []string {
	out := make([]string, 0, len(l))
	for _, p := range l {
		out = append(out, p.String())
	}
	return out
}

// childProposal names the negotiated suite the way ESP proposals are
// configured, e.g. "aes128gcm16" or "aes128-sha256-esn".
func childProposal(c ike.ChildSA) string {
	n := proposal.Negotiated{Protocol: c.Protocol, Encr: proposal.Algorithm{Encr: c.Encr, KeyBits: c.KeyBits}, Integ: c.Integ}
	if c.ESN {
		n.ESN = wire.ESNYes
	}
	return n.String()
}

func id(i ike.ID) string {
	if i.Any() {
		return "%any"
	}
	return ikeauth.FormatID(i.Type, i.Data)
}

func auth(a ike.AuthKind) string {
	if a == 0 {
		return ""
	}
	return a.String()
}
