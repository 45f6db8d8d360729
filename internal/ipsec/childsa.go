package ipsec

import (
	"net/netip"

	"github.com/mifike/mifike/internal/wire"
)

// Mode is the IPsec mode of a Child SA (RFC 4301 §4.1).
type Mode int

const (
	Tunnel Mode = iota
	Transport
)

func (m Mode) String() string {
	if m == Transport {
		return "transport"
	}
	return "tunnel"
}

// ChildSA is what a data plane needs to carry a Child SA: the engine
// hands it over on install and on every change (a MOBIKE move, a
// responder's rekeyed SA that may now send). Its slices (keys,
// selectors, addresses) are never changed after they are handed over, so
// a data plane may keep them without a copy: a gateway holds one Child
// SA per client, and copies of the selectors cost 160 octets each.
type ChildSA struct {
	IKESA    uint64
	Name     string
	InSPI    uint32
	OutSPI   uint32
	Protocol wire.ProtocolID
	Mode     Mode

	Encr    wire.EncrID
	KeyBits int
	Integ   wire.IntegID
	ESN     bool

	EncKeyIn, IntegKeyIn   []byte
	EncKeyOut, IntegKeyOut []byte

	LocalTS, RemoteTS []wire.Selector
	Local, Remote     netip.AddrPort
	Iface             string // the path's interface, when pinned
	Encap             bool   // UDP encapsulation (RFC 3948)
	// TCP: ESP goes in the IKE SA's TCP stream (RFC 9329 §3.2), between
	// Local and Remote (the peer's TCP port); Encap is then false.
	TCP      bool
	Outbound bool // may carry outbound traffic now

	SoftBytes, HardBytes uint64
	// VirtualIPs are the addresses the peer assigned to us on this IKE SA
	// (RFC 7296 §3.15): the data plane puts them on its device.
	VirtualIPs []netip.Addr
}

// Trap is an on-demand Child SA (strongSwan's trap policy, start_action
// trap): a packet towards its remote selectors that no installed SA
// covers makes the data plane ask the daemon to bring the Child SA up,
// as an XFRM policy without state makes the kernel send an ACQUIRE
// (RFC 4301 §5.1: an SPD entry that PROTECTs, with no SA yet; RFC 2367
// SADB_ACQUIRE). The data plane drops that packet.
type Trap struct {
	// ID is the daemon's name for the trap, passed back when it fires.
	ID int
	// Conn and Child are the configuration's names, for the log.
	Conn, Child string
	// Remote are the selectors that trigger. Local narrows them to
	// packets from inside these selectors; empty means any source (a
	// child with local_ts dynamic: its address is known only once the
	// IKE SA is up).
	Local, Remote []wire.Selector
	// Peer is the IKE peer the Child SA will be negotiated with (the
	// first of remote_addrs), and Mode the child's: the kernel data
	// plane's trap policy names them in its template (the tunnel's far
	// end, or the transport-mode SA's destination).
	Peer netip.Addr
	Mode Mode
}
