// Package conn is how IKE and ESP in UDP reach the network: the Bind
// interface the daemon reads and sends through, in the spirit of
// wireguard-go's conn.Bind, and its UDP implementation. A Bind owns the
// demultiplexing of IKE and ESP that share a port (RFC 3948 §2.2), so no
// reader of its packets sees a marker: IKE arrives and leaves as bare
// messages.
package conn

import (
	"net/netip"
	"strconv"

	"github.com/mifike/mifike/internal/wire"
)

// Bind carries IKE messages, and the ESP that shares their port, between
// this host's addresses and its peers.
//
// The UDP Bind (UDP) listens on port 500 and on the NAT-T port 4500 of
// each listen address. The TCP Bind (TCP, RFC 9329) implements the same
// interface: its streams frame each message with a 16-bit length, and
// then tell IKE from ESP by the same non-ESP marker (§3.1), so its
// ReceiveFunc returns the same packets (one ReceiveFunc fed by its
// connections' readers), and its Send finds the stream to the peer.
type Bind interface {
	// Open starts receiving and returns one ReceiveFunc per socket, each
	// to be called from one goroutine until it returns net.ErrClosed.
	// espHeadroom is the room an ESP packet needs before it in its
	// buffer when a data plane opens it in place (ipsec.ESPInUDP); 0
	// when no ESP is opened here, which lets the Bind keep its batches
	// and buffers small.
	Open(espHeadroom int) ([]ReceiveFunc, error)
	// BatchSize is the most packets one call of a ReceiveFunc returns:
	// the length its packet slice must have.
	BatchSize() int
	// Send sends one IKE message, from its IKE header on, from local to
	// remote, through interface iface when set (a path MOBIKE pinned),
	// whatever the routing table prefers. Where IKE shares the port
	// with ESP the Bind puts the non-ESP marker before it (RFC 3948
	// §2.2); the caller never does.
	Send(msg []byte, local, remote netip.AddrPort, iface string) error
	// SendKeepalive sends a NAT keepalive from local to remote (RFC
	// 3948 §2.3): on UDP the single octet 0xFF. A TCP Bind, whose
	// connection keeps its NAT mapping by itself, may send nothing.
	SendKeepalive(local, remote netip.AddrPort, iface string) error
	// Close closes the Bind; its ReceiveFuncs return net.ErrClosed.
	Close() error
}

// ReceiveFunc waits for and reads the next batch into pkts, each sorted
// by Kind, and returns how many came. The packets' buffers are the
// Bind's, valid until the next call. An error other than net.ErrClosed
// is transient.
type ReceiveFunc func(pkts []Packet) (n int, err error)

// Kind is what a received packet carries.
type Kind uint8

const (
	// IKE is an IKE message, or what can only be one: everything on the
	// IKE port, and on the NAT-T port what follows the non-ESP marker,
	// which the Bind took off (Data starts at the IKE header). The
	// engine checks the rest (ike.Precheck).
	IKE Kind = iota
	// ESP is an ESP packet in UDP: on the NAT-T port, a datagram whose
	// first four octets (the SPI) are not all zero (RFC 3948 §2.2).
	ESP
	// Keepalive is a NAT keepalive, the single octet 0xFF (RFC 3948
	// §2.3). It keeps a NAT's mapping and carries nothing else, not even
	// liveness.
	Keepalive
	// NoMarker arrived on the NAT-T port and is none of these: shorter
	// than an SPI or the non-ESP marker, and not a keepalive (RFC 3948
	// §2.2). Drivers count it as ike.DropNoMarker.
	NoMarker
	// Truncated did not fit the receive buffer; its contents are cut.
	Truncated
	// PathError is no packet but an ICMP error that a datagram we sent
	// to Remote caused (port, host or network unreachable; icmp.go): a
	// hint that the path may be broken, never proof (RFC 7296 §2.21).
	// It has no octets.
	PathError
)

func (k Kind) String() string {
	switch k {
	case IKE:
		return "IKE"
	case ESP:
		return "ESP"
	case Keepalive:
		return "keepalive"
	case NoMarker:
		return "no-marker"
	case Truncated:
		return "truncated"
	case PathError:
		return "path-error"
	}
	return "kind-" + strconv.Itoa(int(k))
}

// Packet is one received packet: Buf[Off:Off+N] (Data), and the
// addresses it came from and to.
type Packet struct {
	Kind Kind
	// Buf is the whole buffer: an ESP packet has Open's espHeadroom
	// before it, an IKE message from the NAT-T port also the marker.
	Buf    []byte
	Off, N int
	Local  netip.AddrPort
	Remote netip.AddrPort
	// NATT says it came where IKE and ESP share the port.
	NATT bool
	// TCP says it came in a TCP stream (RFC 9329): Remote is the
	// stream's, and an answer goes back in it (TCP.Send).
	TCP bool
}

// Data is the packet's octets: for IKE, the message from its header on.
func (p *Packet) Data() []byte { return p.Buf[p.Off : p.Off+p.N] }

// KeepaliveOctet is all a NAT keepalive holds (RFC 3948 §2.3).
const KeepaliveOctet = 0xff

// Demux sorts a datagram that arrived where IKE and ESP share the port
// (RFC 3948 §2.2, §2.3) and returns, for IKE, the message after its
// non-ESP marker. It is the one place that tells them apart and the one
// place a marker is taken off; AppendIKE is the one place it is put on.
func Demux(b []byte) (Kind, []byte) {
	switch {
	case len(b) == 1 && b[0] == KeepaliveOctet:
		return Keepalive, nil
	case len(b) < wire.NonESPMarkerLen:
		return NoMarker, nil
	case b[0]|b[1]|b[2]|b[3] != 0:
		return ESP, nil
	}
	return IKE, b[wire.NonESPMarkerLen:]
}

// AppendIKE appends the datagram that carries the IKE message msg: msg
// itself on the IKE port, behind the non-ESP marker where IKE shares
// the port with ESP (natt; RFC 3948 §2.2).
func AppendIKE(dst, msg []byte, natt bool) []byte {
	if natt {
		dst = append(dst, make([]byte, wire.NonESPMarkerLen)...)
	}
	return append(dst, msg...)
}
