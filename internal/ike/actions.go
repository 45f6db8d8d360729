package ike

import (
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/wire"
)

// Datagram is one IKE message with its addresses, in either direction.
// Data is the message alone, from its IKE header on: where IKE shares
// the NAT-T port with ESP, the transport (internal/conn) takes the
// non-ESP marker off what it receives and puts it before what it sends
// (RFC 3948 §2.2), so the engine never adds or checks one. Local's port
// still says where a message arrived or leaves (IKE or NAT-T port).
type Datagram struct {
	Local, Remote netip.AddrPort
	// Data may be the engine's own (a request it retransmits, a
	// response it caches): a driver reads it and must not change it.
	// Receive does not keep what it is given.
	Data []byte
	// Iface, when set on a Send, pins the datagram to that interface
	// whatever the routing table says (a path chosen by MOBIKE).
	Iface string
	// TCP says the message came, or is to go, in a TCP stream (RFC 9329)
	// rather than in UDP: the driver's TCP transport frames it, finds
	// the stream between the addresses, and opens one when this side is
	// the TCP Originator (the IKE initiator) and none is open. Remote's
	// port is then the peer's TCP port.
	TCP bool
}

// Action is something the engine asks its driver to do.
type Action interface{ isAction() }

// Send transmits an IKE message from Local to Remote; the transport
// frames it for Local's port.
type Send struct{ Datagram }

// SendKeepalive asks for a NAT keepalive from Local to Remote (RFC 3948
// §2.3, RFC 7296 §2.23). It is not a Send of the octet 0xFF: a keepalive
// is no IKE message, and only the transport knows how to write one (the
// single octet 0xFF on UDP, with no marker; nothing on a TCP stream,
// which keeps its NAT mapping by itself, RFC 9329). So a Send always
// carries an IKE message that the transport frames without looking at it.
type SendKeepalive struct {
	Local, Remote netip.AddrPort
	Iface         string
}

// CloseStream asks the transport to close the TCP stream from Local's
// address to Remote (RFC 9329): this side opened it, and no IKE SA uses
// it any more (the SA moved off it, §7.1, or was deleted, §6.1).
type CloseStream struct{ Local, Remote netip.AddrPort }

// InstallChild installs both directions of a Child SA in the data plane.
type InstallChild struct{ SA ChildSA }

// UpdateChild changes what a later exchange changed about an installed
// Child SA: its outer addresses (MOBIKE), or that it may now carry
// outbound traffic (a responder's rekeyed SA, RFC 7296 §2.8).
type UpdateChild struct{ SA ChildSA }

// DeleteChild removes a Child SA from the data plane.
type DeleteChild struct {
	IKESA         uint64
	InSPI, OutSPI uint32
	// Successor, when not 0, is the inbound SPI of the Child SA that
	// replaced this one by a rekey and carries the traffic now. The peer
	// may have sent packets on the old SA just before it deleted it, still
	// on their way (or still queued in the data plane behind this action):
	// a data plane should stop sending on it at once but accept its
	// inbound packets for a few seconds more, as strongSwan does
	// (charon.delete_rekeyed_delay), so a rekey loses nothing (RFC 7296
	// §2.8), and drop it at once when the successor goes for good. The
	// SPI stays reserved for the engine only until this action; a data
	// plane that still holds the old SA when the same inbound SPI is
	// installed again lets the new one win.
	Successor uint32
}

// ArmTimer asks to be called (Tick) at At; it replaces any earlier request.
type ArmTimer struct{ At time.Time }

// Event tells observers (logs, CLI, metrics, tests) what happened.
type Event struct {
	Kind   EventKind
	IKESA  uint64
	Conn   string
	Child  uint32 // inbound SPI of the Child SA concerned, if any
	Notify wire.NotifyType
	Detail string
	// ChildName is the configured name of the Child SA a child-* event
	// is about, where the engine knows it, so that an observer that
	// asked for that child (mifike initiate --child) can tell its
	// outcome from a rekey's or another child's.
	ChildName string
	// From names what a new SA came from, so an observer can follow the
	// SA it asked about: for ike-rekeyed and ike-cloned the IKE SA that
	// was rekeyed or cloned (IKESA is the new one); for child-rekeyed,
	// in FromChild, the inbound SPI of the Child SA that was rekeyed
	// (Child is the new one).
	From      uint64
	FromChild uint32
	// StillUp, on an ike-failed, says the IKE SA itself is still up:
	// what failed is an exchange on it (a refused IKE SA rekey, which is
	// tried again later). Observers that free an SA's resources on
	// ike-failed must not do so then.
	StillUp bool
	// Handshake, on an ike-up that ends an IKE_SA_INIT and IKE_AUTH, is
	// how long they took: from Initiate, or from the first IKE_SA_INIT
	// we answered, to authentication (retries after INVALID_KE_PAYLOAD,
	// a cookie or a fallback to TCP included: the wait a user sees).
	// Zero for IKE SAs that came another way (a clone, an import, a
	// takeover), which have no handshake to time. Initiator says
	// whether we initiated it.
	Handshake time.Duration
	Initiator bool
}

func (Send) isAction()          {}
func (SendKeepalive) isAction() {}
func (CloseStream) isAction()   {}
func (InstallChild) isAction()  {}
func (UpdateChild) isAction()   {}
func (DeleteChild) isAction()   {}
func (ArmTimer) isAction()      {}
func (Event) isAction()         {}

// EventKind names an observable state change.
type EventKind int

const (
	EventIKEUp EventKind = iota + 1
	EventIKEDown
	EventIKEFailed
	EventIKERekeyed
	EventChildUp
	EventChildDown
	EventChildFailed
	EventChildRekeyed
	EventRetransmit
	EventDropped // a message was dropped; Detail says why
	EventAddressUpdate
	EventVirtualIP
	EventIKECloned
	// EventCloneRefused: a clone was refused or failed. With Notify
	// TEMPORARY_FAILURE the engine asks again later (RFC 7791 §5.3);
	// any other is final for that request.
	EventCloneRefused
	EventPathProbe
	EventMessageIDSync // RFC 6311: the Message IDs were resynchronised
	// EventRedirected: RFC 5685: as initiator, an IKE SA goes to another
	// gateway (Detail "to ADDR ..."); as gateway, a peer was sent away.
	EventRedirected
	// EventTCPFallback: UDP went unanswered and the SA goes on over TCP
	// (RFC 9329 §5.1, §7.1).
	EventTCPFallback
	// EventAddressConfirmed: the peer answered the UPDATE_SA_ADDRESSES of
	// our move from the new path (RFC 4555 §3.5): the move is done. (An
	// EventAddressUpdate says the SA switched paths; one with a Notify
	// says the peer refused the path.)
	EventAddressConfirmed
)

var eventNames = map[EventKind]string{
	EventIKEUp: "ike-up", EventIKEDown: "ike-down", EventIKEFailed: "ike-failed",
	EventIKERekeyed: "ike-rekeyed", EventChildUp: "child-up", EventChildDown: "child-down",
	EventChildFailed: "child-failed", EventChildRekeyed: "child-rekeyed",
	EventRetransmit: "retransmit", EventDropped: "dropped", EventAddressUpdate: "address-update",
	EventVirtualIP: "virtual-ip", EventIKECloned: "ike-cloned", EventCloneRefused: "clone-refused", EventPathProbe: "path-probe",
	EventMessageIDSync: "message-id-sync", EventRedirected: "redirected", EventTCPFallback: "tcp-fallback",
	EventAddressConfirmed: "address-confirmed",
}

func (k EventKind) String() string { return eventNames[k] }

// ChildSA is what the data plane needs to carry a Child SA. It lives in
// the leaf package ipsec, which the data planes share without importing
// the engine; the alias keeps the engine's API as it was.
type ChildSA = ipsec.ChildSA

// IKEKeys exports an IKE SA's keys for a Wireshark decryption table. It
// is emitted only when Config.ExportKeys is set (a debugging aid).
type IKEKeys struct {
	IKESA      uint64
	SPIi, SPIr uint64
	Encr       wire.EncrID
	KeyBits    int
	Integ      wire.IntegID
	SKei, SKer []byte
	SKai, SKar []byte
}

func (IKEKeys) isAction() {}
