package ikefrag

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// Sizes of what sits in front of an IKE message in an IP datagram
// (RFC 7383 Appendix B). IP options and IPv6 extension headers are not
// counted: a path that adds them is one where the default is configured
// away.
const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
)

// The IP datagram sizes RFC 7383 §2.5.1 recommends when the path MTU is
// unknown.
const (
	DefaultIPv4Datagram = 576
	DefaultIPv6Datagram = 1280
)

// MinDatagram is the smallest UDP payload Split cuts fragments for; a
// smaller limit is raised to it. With the largest overhead a fragment of
// any supported suite carries (28 octets of IKE header, 8 of SKF header,
// a 16-octet CBC IV, a 32-octet HMAC-SHA2-512 ICV, up to 16 octets of
// Padding and Pad Length, and a 4-octet non-ESP marker: about 100
// octets), 256 octets still leave most of each fragment for content; RFC
// 7383 §2.2 puts the floor of the mechanism itself near 100 octets, and
// paths below 576 octets are rare enough to be configured.
const MinDatagram = 256

// MaxFragments caps how many fragments Split makes of one message, and is
// the default of Limits.Fragments on the receiving side. An IKE_AUTH
// message with a chain of three RSA-4096 certificates (end entity and
// intermediate sent) is about 3.6 kB: strongSwan cuts it into 8 fragments
// at the IPv4 default of 576 octets (test/interop's fragmentation lab).
// 128 fragments carry more than 55 kB at that size and 20 kB even at
// MinDatagram.
const MaxFragments = 128

// MaxDatagram returns the largest UDP payload (the IKE message and, on
// port 4500, its non-ESP marker) that fragments to remote may have.
// ipDatagram is the configured maximum IP datagram size for the path (as
// strongSwan's fragment_size counts it); zero takes RFC 7383 §2.5.1's
// recommendation for remote's family: 1280 octets for IPv6, 576 for IPv4
// (an IPv4-mapped IPv6 address counts as IPv4). The IP and UDP headers are
// subtracted, and the result is never below MinDatagram.
//
// The size belongs to the path, not the IKE SA: the caller recomputes it
// when the SA's addresses change (a MOBIKE move to another family or
// interface, RFC 4555 §3.5), and before a retransmission that follows
// such a move.
func MaxDatagram(remote netip.Addr, ipDatagram int) int {
	hdr, def := ipv4HeaderLen, DefaultIPv4Datagram
	if remote.Is6() && !remote.Is4In6() {
		hdr, def = ipv6HeaderLen, DefaultIPv6Datagram
	}
	if ipDatagram <= 0 {
		ipDatagram = def
	}
	return max(ipDatagram-hdr-udpHeaderLen, MinDatagram)
}

// ErrInitNotFragmented: IKE_SA_INIT has no Encrypted payload, so it can
// never be fragmented (RFC 7383 §2.2).
var ErrInitNotFragmented = errors.New("ikefrag: IKE_SA_INIT messages cannot be fragmented (RFC 7383 §2.2)")

// Split protects inner, the encoded chain of inner payloads whose first
// payload has type first, for the message with header h, so that each
// datagram carrying it is at most maxDatagram octets including a non-ESP
// marker of markerLen octets (4 on the NAT-T port, RFC 3948 §2.2, else 0).
// maxDatagram below MinDatagram counts as MinDatagram.
//
// If the whole SK message fits, Split returns it alone, unfragmented.
// Otherwise the plaintext is cut regardless of payload boundaries into
// Total Fragments chunks, each protected on its own in an SKF payload
// whose Fragment Number and Total Fragments are covered by the ICV or
// AEAD tag; fragment 1 names first as Next Payload, the others 0, and
// every IKE header is h with Next Payload SKF and its own Length (RFC 7383
// §2.5). More than MaxFragments fragments are refused with an error: the
// caller should use a larger size rather than send what a receiver with
// our limits would drop.
//
// The returned messages start at the IKE header: the caller adds the
// marker when it sends them. rand draws the IVs (ikecrypto.SKCipher.Protect
// says what it needs). Unprotected payloads before the Encrypted payload
// (§2.5.3) are not supported: no exchange has them.
func Split(h wire.Header, first wire.PayloadType, inner []byte, c *ikecrypto.SKCipher, maxDatagram, markerLen int, rand io.Reader) ([][]byte, error) {
	if h.Exchange == wire.IKESAInit {
		return nil, ErrInitNotFragmented
	}
	maxMsg := min(max(maxDatagram, MinDatagram)-markerLen, wire.MaxMessageLen)
	if wire.HeaderLen+c.Overhead(len(inner))+len(inner) <= maxMsg {
		m, err := c.Protect(h, first, inner, rand)
		if err != nil {
			return nil, err
		}
		return [][]byte{m}, nil
	}
	frags, err := c.ProtectFragments(h, first, inner, maxMsg, rand)
	if err != nil {
		return nil, err
	}
	if len(frags) > MaxFragments {
		return nil, fmt.Errorf("ikefrag: %d octets need %d fragments of %d octets, more than the %d a receiver keeps", len(inner), len(frags), maxDatagram, MaxFragments)
	}
	return frags, nil
}
