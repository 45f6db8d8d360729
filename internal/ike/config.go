package ike

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/eap"
	"github.com/mifike/mifike/internal/ifacerule"
	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// Config is everything the engine needs from outside: policy, and the
// randomness it may use. It never reads a clock or a socket.
type Config struct {
	Connections []*Connection
	Rand        io.Reader
	Logger      *slog.Logger

	// SPIPrefix, when not zero, is the first octet of every SPI this
	// engine chooses, IKE and ESP: a gateway cluster gives each node its
	// ID here, so two nodes never choose the same SPI (RFC 6027 §3.8,
	// RFC 6311 §3.3) and an SA handed to another node keeps SPIs no
	// other node uses.
	SPIPrefix uint8

	Retransmit Retransmit

	// HalfOpenTimeout drops a responder SA that never saw IKE_AUTH.
	HalfOpenTimeout time.Duration
	// CookieThreshold is the number of half-open SAs from which
	// IKE_SA_INIT requests must carry a COOKIE (RFC 7296 §2.6).
	CookieThreshold int
	// MaxHalfOpen caps half-open SAs outright: beyond it requests are
	// dropped, so unauthenticated peers cannot grow our state unbounded.
	MaxHalfOpen int
	// HalfOpenPerSource and HalfOpenPerPrefix cap the half-open SAs made
	// with a returned COOKIE from one source address and from one prefix
	// of HalfOpenPrefix4 / HalfOpenPrefix6 bits (RFC 8019 §4.2): under
	// load a request over either is dropped before anything is computed.
	// 0 means the default (5, strongSwan's block_threshold, and 50 per
	// /24 or /64); -1 means no limit.
	HalfOpenPerSource, HalfOpenPerPrefix int
	HalfOpenPrefix4, HalfOpenPrefix6     int
	// CookieSecretLifetime is how long one COOKIE secret is used, and
	// CookieGrace how long cookies of the one before are still taken
	// (RFC 7296 §2.6). Defaults 60 s and 10 s; the grace is at most the
	// lifetime.
	CookieSecretLifetime, CookieGrace time.Duration
	// PuzzleDifficulty, when not 0, makes us as responder ask for RFC 8019
	// puzzles of that many zero bits (at most 24) once PuzzleThreshold SAs
	// are half-open (default MaxHalfOpen/2). Off by default: legitimate
	// initiators without puzzle support are refused while it applies.
	PuzzleDifficulty, PuzzleThreshold int
	// PuzzleMaxDifficulty is the hardest puzzle we solve as initiator
	// (RFC 8019 §9; at most 24); 0 means 18 (§4.4: "a reasonable choice
	// ... for all Initiators"), -1 never to solve one.
	PuzzleMaxDifficulty int
	// MaxIKESAs caps all IKE SAs.
	MaxIKESAs int
	// DeleteTimeout bounds how long a rekeyed IKE SA waits for the
	// peer's Delete before it is dropped.
	DeleteTimeout time.Duration
	// IKEPort and NATTPort are our two UDP ports (RFC 7296 §2, RFC 3948):
	// every port but IKEPort carries the non-ESP marker. Defaults 500, 4500.
	IKEPort, NATTPort uint16
	// ExportKeys emits IKEKeys actions so a key log can be written.
	ExportKeys bool
	// KeepaliveInterval is how often a host behind a NAT sends a NAT
	// keepalive when it sent nothing else (RFC 3948 §2.3: 20 s).
	KeepaliveInterval time.Duration
	// RetryTemporaryFailure is the base delay before retrying an exchange
	// refused with TEMPORARY_FAILURE (RFC 7296 §2.25: not immediately).
	RetryTemporaryFailure time.Duration
	// PathPolicy decides where an IKE SA goes when it must leave its path
	// (path.go); nil: DefaultPathPolicy.
	PathPolicy PathPolicy
	// MaxRedirects is how many RFC 5685 redirects one IKE SA setup
	// follows within RedirectLoopPeriod before it gives up (§7's
	// MAX_REDIRECTS and REDIRECT_LOOP_DETECT_PERIOD; 5 and 300 s).
	MaxRedirects       int
	RedirectLoopPeriod time.Duration
	// SourceAddr, when set, is the driver's routing lookup: the local
	// address to reach remote from. The engine asks it only where no
	// address is given or configured, when a redirect (RFC 5685) sends
	// an SA to a gateway the old path may not reach; without it the SA
	// keeps its local address.
	SourceAddr func(remote netip.Addr) (netip.Addr, error)
}

// Retransmit is the request retransmission schedule (RFC 7296 §2.4):
// Timeout·Base^n for try n, giving up after Tries retransmissions.
type Retransmit struct {
	Timeout time.Duration
	Base    float64
	Tries   int
}

func (c *Config) setDefaults() {
	if c.Retransmit.Timeout == 0 {
		c.Retransmit = Retransmit{Timeout: 4 * time.Second, Base: 1.8, Tries: 5} // strongSwan's defaults, ~165 s in all
	}
	if c.HalfOpenTimeout == 0 {
		c.HalfOpenTimeout = 30 * time.Second
	}
	if c.CookieThreshold == 0 {
		c.CookieThreshold = 10
	}
	if c.MaxHalfOpen == 0 {
		c.MaxHalfOpen = 5000
	}
	if c.HalfOpenPerSource == 0 {
		c.HalfOpenPerSource = 5
	}
	if c.HalfOpenPerPrefix == 0 {
		c.HalfOpenPerPrefix = 50
	}
	if c.HalfOpenPrefix4 <= 0 || c.HalfOpenPrefix4 > 32 {
		c.HalfOpenPrefix4 = 24
	}
	if c.HalfOpenPrefix6 <= 0 || c.HalfOpenPrefix6 > 128 {
		c.HalfOpenPrefix6 = 64
	}
	if c.CookieSecretLifetime <= 0 {
		c.CookieSecretLifetime = time.Minute
	}
	if c.CookieGrace <= 0 {
		c.CookieGrace = 10 * time.Second
	}
	c.CookieGrace = min(c.CookieGrace, c.CookieSecretLifetime)
	c.PuzzleDifficulty = min(max(c.PuzzleDifficulty, 0), maxPuzzleBits)
	if c.PuzzleThreshold <= 0 {
		c.PuzzleThreshold = max(c.MaxHalfOpen/2, 1)
	}
	if c.PuzzleMaxDifficulty == 0 {
		c.PuzzleMaxDifficulty = 18
	}
	c.PuzzleMaxDifficulty = min(c.PuzzleMaxDifficulty, maxPuzzleBits)
	if c.MaxIKESAs == 0 {
		c.MaxIKESAs = 200000
	}
	if c.DeleteTimeout == 0 {
		c.DeleteTimeout = 30 * time.Second
	}
	if c.IKEPort == 0 {
		c.IKEPort = 500
	}
	if c.NATTPort == 0 {
		c.NATTPort = 4500
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 20 * time.Second
	}
	if c.RetryTemporaryFailure == 0 {
		c.RetryTemporaryFailure = 5 * time.Second
	}
	if c.MaxRedirects <= 0 {
		c.MaxRedirects = defaultMaxRedirects
	}
	if c.RedirectLoopPeriod <= 0 {
		c.RedirectLoopPeriod = defaultRedirectLoopPeriod
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// AuthKind is how one side proves its identity.
type AuthKind int

const (
	AuthPSK    AuthKind = iota + 1 // shared key MIC (RFC 7296 §2.15)
	AuthPubkey                     // signature with a certified key
	// AuthEAP: EAP in IKE_AUTH (RFC 7296 §2.16). Locally we are the EAP
	// peer (Connection.EAP); remotely the engine asks its EAP backend
	// (AskEAP). The responder authenticates itself by PSK or certificate,
	// or, when both sides are AuthEAP, by the EAP method's key alone
	// (EAP-only authentication, RFC 5998): the initiator asks for it
	// and only a mutual, key-generating method will do.
	AuthEAP
)

func (a AuthKind) String() string {
	switch a {
	case AuthPSK:
		return "psk"
	case AuthPubkey:
		return "pubkey"
	case AuthEAP:
		return "eap"
	}
	return fmt.Sprintf("auth(%d)", int(a))
}

// ID is an IKE identity (IDi/IDr body).
type ID struct {
	Type wire.IDType
	Data []byte
}

// Any reports whether the ID is unset: it then matches every peer.
func (i ID) Any() bool { return i.Type == 0 }

// RevocationChecker says whether a verified certificate chain (end
// entity first, trust anchor last) holds a revoked certificate, or one
// whose status its policy needs and does not know. It runs in the
// engine's loop, so it must not block: no network I/O, only what was
// fetched before (internal/revocation).
type RevocationChecker interface {
	CheckRevocation(chain []*x509.Certificate, now time.Time) error
}

// Connection is one configured peer relationship.
type Connection struct {
	Name string

	// Local and Remote are the IKE endpoints. The initiator sends to
	// Remote; a responder accepts peers from Remote when it is set.
	LocalAddrs  []netip.Addr
	RemoteAddrs []netip.Addr
	RemotePort  uint16 // default 500

	LocalID, RemoteID ID
	LocalAuth         AuthKind
	RemoteAuth        AuthKind
	PSK               []byte
	// EAP is our side of an EAP authentication (LocalAuth AuthEAP):
	// identity, credentials, methods. Rand and Now are the engine's.
	EAP   *eap.PeerConfig
	Key   crypto.Signer
	Certs []*x509.Certificate // ours, end-entity first
	CAs   []*x509.Certificate // trusted for the peer's certificate
	// Revocation, when set, checks the peer's verified chain for revoked
	// certificates (CRL, OCSP) after it chains to CAs.
	Revocation RevocationChecker
	RSAPSS     bool
	// ClassicSignatures does not announce RFC 7427 hash algorithms, so
	// signatures use methods 1, 9, 10 and 11 (for peers without RFC 7427).
	ClassicSignatures bool

	IKE      []proposal.Proposal
	Children []*ChildConfig

	RekeyTime  time.Duration // IKE SA rekey; 0 = never
	ReauthTime time.Duration // reauthentication instead of/after rekey; 0 = never
	OverTime   time.Duration // hard limit after RekeyTime/ReauthTime
	RandTime   time.Duration // jitter subtracted from the soft times
	DPDDelay   time.Duration // liveness check when nothing arrived this long
	// LivenessWindow turns on the traffic-driven liveness check
	// (liveness.go): a check starts when ESP went out this long (or
	// four round trips, if longer) with nothing heard back; 0 none.
	LivenessWindow time.Duration
	// PathProbe: an empty INFORMATIONAL goes out when the SA sent no
	// request for this long, so its path's round trip and loss are
	// measured under traffic too (pathstats.go; for flow spreading's
	// weights); 0 none.
	PathProbe time.Duration

	MOBIKE bool
	// Window is the number of the peer's requests we keep state for,
	// stated in SET_WINDOW_SIZE (RFC 7296 §2.3); 0 or 1: one at a time,
	// not stated.
	Window uint32

	// NoNATT turns NAT traversal off (no NAT_DETECTION notifies, RFC 7296
	// §2.23): for site-to-site links known to have no NAT, where MOBIKE
	// then protects the addresses with NO_NATS_ALLOWED (RFC 4555 §3.9).
	NoNATT bool
	// ReturnRoutability makes a MOBIKE responder check a new initiator
	// address with its own COOKIE2 request before moving Child SAs there
	// (RFC 4555 §3.7, §5.2): it stops an authenticated but malicious peer
	// from redirecting traffic to a victim, at the cost of a round trip.
	ReturnRoutability bool

	// Clone advertises and accepts RFC 7791 cloning of this connection's
	// IKE SAs (CLONE_IKE_SA_SUPPORTED in IKE_AUTH).
	Clone bool
	// MaxIKESAs caps the IKE SAs of one authenticated peer (its clone
	// family); a clone beyond it is refused with NO_ADDITIONAL_SAS
	// (RFC 7791 §5.3, §8). 0 means 8.
	MaxIKESAs int
	// CloneVIPs makes the first Child SA on each clone ask for virtual IPs
	// of its own with a CP payload (RFC 7296 §2.19), so every interface's
	// VPN has its own inner address (RFC 7791 App. A.3); the gateway
	// assigns them from its pools. Without it clones share the parent's.
	CloneVIPs bool
	// MaxChildSAs caps the Child SAs of a whole clone family (RFC 7791
	// §8: counted over all IKE SAs of the user); 0 means no cap.
	MaxChildSAs int
	// Draft00Clone talks to draft-mglt-ipsecme-clone-ike-sa-00 peers: it
	// also accepts CLONE_IKE_SA_SUPPORTED in an INFORMATIONAL exchange and
	// echoes CLONE_IKE_SA in clone responses, as that draft had it. (An
	// echoed CLONE_IKE_SA is accepted from any peer.)
	Draft00Clone bool

	// RestartOnDead initiates the connection again when its IKE SA is
	// given up for an unresponsive peer (strongSwan's dpd_action=restart).
	RestartOnDead bool

	// Pools assign virtual addresses (responder, CP CFG_REPLY).
	Pools []*Pool
	// RequestVIPs asks the responder for addresses (initiator, CP CFG_REQUEST).
	RequestVIP4, RequestVIP6 bool

	// SendInitialContact sends INITIAL_CONTACT in the first IKE_AUTH
	// when no other IKE SA to this peer exists (RFC 7296 §2.4).
	SendInitialContact bool
	// PreferPeerProposals selects in the peer's order instead of ours.
	PreferPeerProposals bool
	// ForceEncap always uses UDP encapsulation on port 4500.
	ForceEncap bool
	// TCP is when this connection's initiator uses TCP encapsulation
	// (RFC 9329): never (the default), after UDP went unanswered for
	// TCPFallbackAfter (§5.1), or always. A responder answers in
	// whichever transport a request came. TCPPort is the peer's TCP port
	// (0: 4500, §2).
	TCP              TCPPolicy
	TCPPort          uint16
	TCPFallbackAfter time.Duration
	// TCPIfaces override TCP for SAs pinned to an interface: the first
	// whose pattern (path.Match) matches the interface's name wins.
	TCPIfaces ifacerule.Rules[TCPPolicy]
	// Fragmentation offers and uses IKE fragmentation (RFC 7383), so
	// that large IKE messages (certificate chains) pass paths that drop
	// IP fragments. FragmentSize is the largest IP datagram a fragment
	// may make (0: 1280 for IPv6 and 576 for IPv4, §2.5.1).
	Fragmentation bool
	FragmentSize  int
	// NoMessageIDSync: do not offer RFC 6311 Message ID
	// synchronisation (IKEV2_MESSAGE_ID_SYNC_SUPPORTED), which is on by
	// default as in strongSwan: a gateway cluster node that takes an SA
	// over needs it from the peer.
	NoMessageIDSync bool
	// NoChildless: as responder, do not offer or take an IKE_AUTH
	// without a Child SA (RFC 6023; strongSwan's childless = never).
	NoChildless bool
	// NoRedirect: as initiator, do not announce REDIRECT_SUPPORTED nor
	// follow a gateway's REDIRECT (RFC 5685); on by default, as in
	// strongSwan (charon.follow_redirects).
	NoRedirect bool
	// RedirectTo, when valid, is the gateway every peer of this
	// connection that takes redirects is sent to in IKE_SA_INIT (RFC
	// 5685 §3), unless the engine's Redirector decides otherwise.
	RedirectTo netip.Addr
}

func (e *Engine) remotePort(c *Connection) uint16 {
	if c.RemotePort == 0 {
		return e.cfg.IKEPort
	}
	return c.RemotePort
}

// TCPPolicy is when an initiator encapsulates IKE and ESP in TCP (RFC
// 9329).
type TCPPolicy uint8

const (
	// TCPNever: UDP only.
	TCPNever TCPPolicy = iota
	// TCPFallback: UDP first; when an IKE_SA_INIT or an
	// UPDATE_SA_ADDRESSES got no answer over UDP for TCPFallbackAfter,
	// the same attempt goes on over TCP (RFC 9329 §5.1, §7.1).
	TCPFallback
	// TCPAlways: TCP from the first message (a network known to block
	// UDP, §5.1).
	TCPAlways
)

// DefaultTCPFallbackAfter is how long UDP gets before TCPFallback turns
// to TCP: with the default retransmission timeout (4 s) the first
// request and one retransmission, as RFC 9329 §5.1 recommends.
const DefaultTCPFallbackAfter = 6 * time.Second

// DefaultTCPPort is where a TCP Responder listens (RFC 9329 §2).
const DefaultTCPPort = 4500

func (p TCPPolicy) String() string {
	switch p {
	case TCPFallback:
		return "fallback"
	case TCPAlways:
		return "always"
	}
	return "never"
}

// tcpPolicy is c's TCP policy on interface iface ("" for a path not
// pinned to one).
func (c *Connection) tcpPolicy(iface string) TCPPolicy {
	if iface != "" {
		if p, ok := c.TCPIfaces.Match(iface); ok {
			return p
		}
	}
	return c.TCP
}

// tcpPort is connection c's peer's TCP port.
func (c *Connection) tcpPort() uint16 {
	if c.TCPPort == 0 {
		return DefaultTCPPort
	}
	return c.TCPPort
}

// tcpFallbackAfter is how long UDP gets under TCPFallback.
func (c *Connection) tcpFallbackAfter() time.Duration {
	if c.TCPFallbackAfter <= 0 {
		return DefaultTCPFallbackAfter
	}
	return c.TCPFallbackAfter
}

// Mode is the IPsec mode of a Child SA. It lives in the leaf package
// ipsec with ChildSA; the aliases keep the engine's API as it was.
type Mode = ipsec.Mode

const (
	Tunnel    = ipsec.Tunnel
	Transport = ipsec.Transport
)

// ChildConfig is one configured Child SA.
type ChildConfig struct {
	Name string
	ESP  []proposal.Proposal
	// LocalTS/RemoteTS are our policy; with Dynamic* the side's IKE
	// address (or assigned virtual IP) is used instead.
	LocalTS, RemoteTS           []wire.Selector
	DynamicLocal, DynamicRemote bool
	Mode                        Mode

	RekeyTime, LifeTime   time.Duration
	RekeyBytes, LifeBytes uint64
	RandTime              time.Duration
	// Start brings this child up with the IKE SA (in IKE_AUTH or after).
	Start bool
}

func (c *ChildConfig) pfsGroup() wire.DHGroup { return proposal.FirstDH(c.ESP) }

// Validate reports configuration errors the engine cannot work with.
func (c *Connection) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("connection without a name")
	}
	if len(c.IKE) == 0 {
		return fmt.Errorf("connection %s: no IKE proposals", c.Name)
	}
	for _, side := range []struct {
		what string
		k    AuthKind
	}{{"local", c.LocalAuth}, {"remote", c.RemoteAuth}} {
		switch side.k {
		case AuthPSK:
			if len(c.PSK) == 0 {
				return fmt.Errorf("connection %s: %s auth psk without a secret", c.Name, side.what)
			}
		case AuthPubkey, AuthEAP:
		default:
			return fmt.Errorf("connection %s: %s auth must be psk, pubkey or eap", c.Name, side.what)
		}
	}
	// Both sides EAP is EAP-only (RFC 5998): as the initiator we are the
	// EAP peer and need credentials; a connection without them only
	// responds, authenticating by the MSK of its peer's method.
	if c.LocalAuth == AuthEAP && c.RemoteAuth != AuthEAP && (c.EAP == nil || len(c.EAP.Identity) == 0) {
		return fmt.Errorf("connection %s: local auth eap needs an EAP identity and credentials", c.Name)
	}
	if c.LocalAuth == AuthEAP && c.RemoteAuth == AuthEAP && c.EAP != nil {
		if len(c.EAP.Identity) == 0 {
			return fmt.Errorf("connection %s: local auth eap needs an EAP identity and credentials", c.Name)
		}
		if len(eapOnlyMethods(c.EAP)) == 0 {
			return fmt.Errorf("connection %s: EAP-only authentication (RFC 5998) needs a mutual, key-generating EAP method, such as EAP-TLS with the EAP server's CA", c.Name)
		}
	}
	if c.LocalAuth == AuthPubkey && (c.Key == nil || len(c.Certs) == 0) {
		return fmt.Errorf("connection %s: local auth pubkey needs a private key and a certificate", c.Name)
	}
	if c.RemoteAuth == AuthPubkey && len(c.CAs) == 0 {
		return fmt.Errorf("connection %s: remote auth pubkey needs at least one CA certificate", c.Name)
	}
	if c.RedirectTo.IsValid() && !unicastGateway(c.RedirectTo.Unmap()) {
		return fmt.Errorf("connection %s: cannot redirect to %v, which is no unicast address", c.Name, c.RedirectTo)
	}
	if c.LocalID.Any() {
		return fmt.Errorf("connection %s: no local identity", c.Name)
	}
	for _, ch := range c.Children {
		if len(ch.ESP) == 0 {
			return fmt.Errorf("connection %s child %s: no ESP proposals", c.Name, ch.Name)
		}
		if len(ch.LocalTS) == 0 && !ch.DynamicLocal || len(ch.RemoteTS) == 0 && !ch.DynamicRemote {
			return fmt.Errorf("connection %s child %s: traffic selectors missing", c.Name, ch.Name)
		}
	}
	return nil
}
