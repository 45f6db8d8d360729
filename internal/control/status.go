package control

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// StatusBackend is what a daemon that can describe itself adds: the
// views a strongSwan administrator knows as swanctl --list-pools,
// --list-certs and --stats (issue 19). A backend without it answers
// those commands with an error.
type StatusBackend interface {
	ListPools() ([]Pool, error)
	ListCerts() ([]Cert, error)
	Stats() (Stats, error)
}

// Pool is one virtual IP pool (RFC 7296 §2.19) and its leases. An
// address is leased while an IKE SA of its holder has it, and free again
// when the last one ends: mifike keeps no offline leases.
type Pool struct {
	Name   string `json:"name"`
	Prefix string `json:"prefix"`
	// First and Last are the addresses it hands out, Size how many (the
	// prefix without the network address, the gateway's first host and,
	// for IPv4, the broadcast address; at most 2^32).
	First  string  `json:"first"`
	Last   string  `json:"last"`
	Size   uint64  `json:"size"`
	Online int     `json:"online"` // leased now
	Leases []Lease `json:"leases"`
}

// Lease is one leased address: to whom (the peer's identity on
// connection Conn) and the IKE SAs that hold it now.
type Lease struct {
	Addr     string   `json:"addr"`
	Identity string   `json:"identity"`
	Conn     string   `json:"conn"`
	IKESAs   []uint64 `json:"ike_sas"`
}

// Cert is one certificate the daemon holds, and what for.
type Cert struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	SANs      []string  `json:"sans"`
	Serial    string    `json:"serial"` // hex, colon-separated, as swanctl
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	KeyType   string    `json:"key_type"` // "RSA 3072", "ECDSA P-256", "Ed25519"
	CA        bool      `json:"ca"`
	SHA256    string    `json:"sha256"` // of the DER, 64 hex digits
	Uses      []CertUse `json:"uses"`
}

// CertUse is one reason the daemon holds a certificate: As is "local"
// (our end-entity certificate of Conn), "chain" (one we send with it),
// "cacert" (trusted for Conn's peers) or "peer" (the peer authenticated
// IKE SA IKESA with it).
type CertUse struct {
	As    string `json:"as"`
	Conn  string `json:"conn"`
	IKESA uint64 `json:"ike_sa,omitempty"`
}

// CertFromX509 is the view of c, without its uses.
func CertFromX509(c *x509.Certificate) Cert {
	sum := sha256.Sum256(c.Raw)
	out := Cert{Subject: c.Subject.String(), Issuer: c.Issuer.String(), SANs: []string{},
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), KeyType: keyType(c), CA: c.IsCA,
		SHA256: hex.EncodeToString(sum[:]), Uses: []CertUse{}}
	out.SANs = append(out.SANs, c.DNSNames...)
	out.SANs = append(out.SANs, c.EmailAddresses...)
	for _, ip := range c.IPAddresses {
		out.SANs = append(out.SANs, ip.String())
	}
	for _, u := range c.URIs {
		out.SANs = append(out.SANs, u.String())
	}
	if c.SerialNumber != nil {
		b := c.SerialNumber.Bytes()
		if len(b) == 0 {
			b = []byte{0}
		}
		parts := make([]string, len(b))
		for i, x := range b {
			parts[i] = fmt.Sprintf("%02x", x)
		}
		out.Serial = strings.Join(parts, ":")
	}
	return out
}

func keyType(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

// Stats answers stats: what swanctl --stats shows, and the counters the
// metrics endpoint exports (docs/metrics.md) for a daemon without one.
// MPTCPEndpoint is one MPTCP subflow endpoint the daemon keeps: a VPN's
// inner address and whether the kernel uses its subflow as backup.
type MPTCPEndpoint struct {
	Addr netip.Addr `json:"addr"`
	Mode string     `json:"mode"` // active or backup
}

// SpreadTarget is one VPN's inner address among which new flows are
// spread (interfaces.spread), with its weight and what made it: the
// configured weight times the path factor in sixteenths (0: measured
// weighting off), from the path's measured round trip and loss.
type SpreadTarget struct {
	Conn       string     `json:"conn"`
	Addr       netip.Addr `json:"addr"`
	Iface      string     `json:"iface"`
	Weight     int        `json:"weight"`
	Configured int        `json:"configured"`
	Factor     int        `json:"factor,omitempty"`
	Leaving    bool       `json:"leaving,omitempty"`
	// Measured: the path has a round trip measured (RTTMs, Loss).
	Measured bool    `json:"measured,omitempty"`
	RTTMs    float64 `json:"rtt_ms,omitempty"`
	Loss     float64 `json:"loss,omitempty"`
}

type Stats struct {
	Version    string    `json:"version"`
	Started    time.Time `json:"started"`
	Uptime     float64   `json:"uptime_seconds"`
	Goroutines int       `json:"goroutines"`
	// IKESAs counts the IKE SAs by state (CONNECTING is half-open: before
	// IKE_AUTH completes), ChildSAs the Child SAs by state.
	IKESAs      int            `json:"ike_sas"`
	IKEByState  map[string]int `json:"ike_sas_by_state"`
	ChildSAs    int            `json:"child_sas"`
	ChildStates map[string]int `json:"child_sas_by_state"`
	Connections int            `json:"connections"`
	// Exchanges counts the IKE messages accepted, by exchange type.
	Exchanges       map[string]uint64 `json:"exchanges"`
	Retransmissions uint64            `json:"retransmissions"`
	// Dropped counts the datagrams to the IKE ports dropped, by reason.
	Dropped        map[string]uint64 `json:"dropped"`
	NotifiesSent   map[string]uint64 `json:"notifies_sent"`
	NotifiesRecv   map[string]uint64 `json:"notifies_received"`
	CookiesSent    uint64            `json:"cookies_sent"` // RFC 7296 §2.6
	LivenessChecks uint64            `json:"liveness_checks"`
	DeadPeers      uint64            `json:"dead_peers"`
	SendErrors     uint64            `json:"send_errors"`
	TCPFallbacks   uint64            `json:"tcp_fallbacks"`
	// TCPStreams are open now (RFC 9329); 0 without TCP.
	TCPStreams int `json:"tcp_streams"`
	// ESP carried by every Child SA since the daemon started, and the
	// data plane's drops by reason; zero without a data plane.
	ESPBytesIn     uint64            `json:"esp_bytes_in"`
	ESPBytesOut    uint64            `json:"esp_bytes_out"`
	ESPPacketsIn   uint64            `json:"esp_packets_in"`
	ESPPacketsOut  uint64            `json:"esp_packets_out"`
	DataPlaneDrops map[string]uint64 `json:"dataplane_dropped"`
	// MPTCP are the subflow endpoints the daemon keeps for its VPNs'
	// inner addresses (mptcp.enable; docs/multipath.md).
	MPTCP []MPTCPEndpoint `json:"mptcp_endpoints,omitempty"`
	// Spread are the VPNs new flows are spread over, as the rules have
	// them now (interfaces.spread; docs/multipath.md).
	Spread []SpreadTarget `json:"spread,omitempty"`
	// Memory, from the Go runtime: the heap in use and what the process
	// got from the system.
	HeapInUse uint64 `json:"heap_inuse_bytes"`
	Sys       uint64 `json:"sys_bytes"`
}
