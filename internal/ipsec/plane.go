package ipsec

import (
	"net/netip"
	"sync/atomic"
)

// DataPlane carries IP traffic through the engine's Child SAs: the
// userspace ESP data plane (dataplane.Linux) and the kernel's XFRM
// (xfrm.Kernel) implement it, and the daemon drives either through it
// alone.
type DataPlane interface {
	// Install adds both directions of a Child SA; an error means the SA
	// cannot carry traffic (the daemon then deletes it).
	Install(ChildSA) error
	// Update changes an installed Child SA's path (a MOBIKE move: keys,
	// sequence numbers and replay window stay) or lets it send.
	Update(ChildSA) error
	// Delete removes a Child SA; an unknown SPI is no error.
	Delete(inSPI uint32)
	// Counters are a Child SA's traffic, nil when it is not installed;
	// LastIn moves with authentic inbound packets (liveness).
	Counters(inSPI uint32) *Counters
	// Drops are the packets dropped so far, by reason (the Drop*
	// constants).
	Drops() map[string]uint64
	// Owns reports the data plane's own devices, whose addresses are
	// virtual IPs rather than paths.
	Owns(ifname string) bool
	Close() error
}

// ESPInUDP is a data plane that opens ESP in UDP (RFC 3948) arriving on
// the daemon's NAT-T sockets: the userspace one, which reads nothing but
// its raw ESP sockets by itself. The kernel's takes ESP out of the
// socket before it is read (UDP_ENCAP_ESPINUDP) and has no such part;
// the daemon learns which it has when it opens it.
type ESPInUDP interface {
	// NewESPReceiver returns a receiver for one reading goroutine.
	NewESPReceiver() ESPReceiver
	// ESPHeadroom is the room a receive buffer must leave before each
	// ESP packet (Inbound.Off), to open it in place.
	ESPHeadroom() int
}

// ESPReceiver opens batches of received ESP packets in place. It is used
// by one goroutine; the buffers are the caller's again when Receive
// returns.
type ESPReceiver interface {
	Receive(batch []Inbound)
}

// Inbound is one received ESP packet: Buf[Off:Off+N], with room before
// Off to open it in place, and the outer addresses it came from and to.
type Inbound struct {
	Buf           []byte
	Off, N        int
	Local, Remote netip.AddrPort
}

// Counters are a Child SA's traffic, updated atomically: on the hot path
// by the userspace data plane, from the kernel's statistics by XFRM.
type Counters struct {
	BytesIn, BytesOut, PacketsIn, PacketsOut atomic.Uint64
	// LastIn is the Unix nanosecond time of the last authentic packet;
	// LastOnPath that of the last one from the SA's path (the peer's
	// outer address, and port when encapsulated): only those prove the
	// path works (RFC 4555 §3.12). A data plane that cannot see the outer
	// source (the kernel's counters) sets both.
	LastIn, LastOnPath atomic.Int64
	// LastOut is the Unix nanosecond time of the last packet sent, for
	// list-sas ("out 1.2 KiB (9 packets, 2s ago)", as swanctl shows).
	LastOut atomic.Int64
}

// Drop reasons, the keys of DataPlane.Drops (and of the daemon's metric
// labels). The kernel's data plane reports the ones it can tell apart
// (DropReplay, DropIntegrity).
const (
	DropNoPolicy     = "no-policy"     // outbound packet no SA covers
	DropMalformed    = "malformed"     // not an IP packet, or truncated
	DropUnknownSPI   = "unknown-spi"   // inbound ESP for no installed SA
	DropShort        = "short"         // ESP packet too short
	DropReplay       = "replay"        // RFC 4303 §3.4.3
	DropIntegrity    = "integrity"     // bad ICV
	DropPadding      = "padding"       // bad padding (RFC 4303 §2.4)
	DropPolicy       = "policy"        // decrypted packet outside the SA's selectors (RFC 4301 §5.2)
	DropSeqExhausted = "seq-exhausted" // RFC 4303 §3.3.3
	DropTooLong      = "too-long"      // would not fit an IP datagram
	DropTruncated    = "truncated"     // inbound packet larger than the receive buffer
	DropSend         = "send-error"    // the transport failed
	DropTUN          = "tun-write"     // the TUN device refused
	DropNextHeader   = "next-header"   // tunnel mode payload neither IPv4 nor IPv6
	DropAcquire      = "acquire"       // outbound packet of a trap whose SA is not up yet
)

// The host conventions of both data planes: the firewall mark our own IKE
// and ESP sockets carry, and the routing table the protected prefixes go
// to. Unmarked traffic consults the table first, so even a protected
// 0.0.0.0/0 does not swallow the tunnel's own packets (as wg-quick does).
const (
	DefaultMark  = 0x6d66 // "mf"
	DefaultTable = 0x6d66
)
