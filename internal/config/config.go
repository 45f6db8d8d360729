// Package config reads mifike's YAML configuration file and turns it into
// the engine's connections.
//
// The vocabulary is strongSwan's swanctl.conf (connections, local_addrs,
// remote_addrs, proposals, local/remote auth, id, certs, cacerts, children,
// local_ts, remote_ts, esp_proposals, rekey_time, ...) so that a swanctl
// user can translate a configuration key by key; see examples/ for
// commented files.
//
// Parsing is strict and reports every problem at once: each error names
// the file, the line and the dotted path of the field, e.g.
//
//	mifike.yaml:12: connections.home.children.net.mode: "tunel" is not a mode; use tunnel or transport
//
// Parse touches no files but a password_file; Build reads keys and
// certificates, so a configuration can be checked on a machine that
// lacks them. Load also warns (Config.Warnings) about what works but is
// unwise, without failing: a secret every local user can read, a short
// pre-shared key, a control group this machine lacks.
//
// Beyond swanctl.conf:
//   - lists may be YAML lists or comma-separated strings, as in swanctl;
//   - booleans accept yes/no, true/false and on/off;
//   - durations use Go syntax ("90s", "30m", "4h", "1h30m"), a "d" suffix
//     for days, or a bare number of seconds;
//   - byte counts take K, M, G or T suffixes in powers of 1024;
//   - top-level keys starting with "x-" are ignored, to hold YAML anchors
//     merged into connections with "<<";
//   - a file must define its connections: an empty file, or one without
//     a connections key or with nothing under it, is an error (a
//     truncated file must not delete every SA on a reload); "no
//     connections" is written connections: {};
//   - pools must not overlap; one pool may serve several connections.
package config

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/mifike/mifike/internal/ifacerule"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/proposal"
)

// Defaults that are not zero values.
const (
	DefaultSocket   = "/run/mifike/mifike.sock"
	DefaultIKEPort  = 500
	DefaultNATTPort = 4500
)

// Config is one parsed configuration file.
type Config struct {
	File    string
	Log     LogConfig
	Control ControlConfig
	Metrics MetricsConfig
	KeyLog  KeyLogConfig
	// Listen are the addresses the IKE sockets bind to; default 0.0.0.0
	// and ::.
	Listen            []netip.Addr
	IKEPort, NATTPort uint16
	// TCPPorts are where the gateway accepts TCP-encapsulated IKE and
	// ESP (RFC 9329), on each listen address; none by default.
	TCPPorts []uint16
	// DataPlane is where ESP traffic is carried: "userspace" (ESP in
	// mifike over a TUN device), "kernel" (XFRM), "auto" (the default:
	// kernel when it has ESP, else userspace) or "none" (negotiate SAs,
	// carry nothing).
	DataPlane string
	// TUN is the userspace data plane's device (default mifike0, MTU 1400).
	TUN TUNConfig
	// Retransmit is the zero value (engine defaults) unless the file has
	// a retransmit section; missing keys in it take strongSwan's defaults.
	Retransmit  ike.Retransmit
	Pools       []*PoolConfig // in file order
	Connections []*ConnConfig // in file order
	// DoS bounds the half-open IKE SAs (the dos_protection section, dos.go).
	DoS DoSConfig
	// RADIUS is the radius section: the servers EAP authentications are
	// passed to (remote.auth eap), and accounting. Nil without one.
	RADIUS *RADIUSConfig
	// Cluster is the cluster section; nil without one.
	Cluster *ClusterConfig
	// MPTCP is the mptcp section: MPTCP endpoints for the interface
	// manager's VPNs (docs/multipath.md). Off by default.
	MPTCP MPTCPConfig

	// Warnings are what the file does that works but is unwise, sorted
	// by line; Load adds those about files and groups on this machine.
	Warnings []Warning
	host     hostChecks
}

// ClusterConfig is the cluster section: this gateway as one node of a
// cluster whose state is in etcd (docs/cluster.md).
type ClusterConfig struct {
	Name string
	Node uint8
	// Addrs are the node's own IKE addresses (default: the listen
	// addresses).
	Addrs []netip.Addr
	// Endpoints are the etcd members' client URLs; CACert, Cert and Key
	// the TLS files (absolute paths).
	Endpoints         []string
	CACert, Cert, Key string
	// KeyFile is the key-encryption key (absolute path).
	KeyFile string
	// Lease is the node's lease TTL.
	Lease time.Duration
	// Placement is how new clones spread over the live nodes: ike_sas
	// (default), child_sas or none (cluster.ParsePlacement).
	Placement string
	// Redirect sends new clients that support it to the least loaded
	// node at IKE_SA_INIT (RFC 5685; default yes).
	Redirect bool
	Line     int
}

// MPTCPConfig is the mptcp section: with Enable, the interface manager
// keeps a Linux MPTCP endpoint (the in-kernel path manager's subflow
// endpoint) for each VPN's inner address, so that one MPTCP connection
// gets a subflow through every VPN (docs/multipath.md).
type MPTCPConfig struct {
	Enable bool
	// Subflows and AddAddrAccepted are the network namespace's MPTCP
	// limits, set at start (ip mptcp limits); -1 leaves one as it is.
	Subflows, AddAddrAccepted int
	Line                      int
}

// RADIUSConfig is the radius section (strongSwan's eap-radius plugin).
type RADIUSConfig struct {
	Servers []RADIUSServer // in file order: the first that answers is used
	// NASIdentifier names the gateway in every request (default mifike).
	NASIdentifier string
	// Timeout is the first retransmission timeout (doubling), Tries how
	// often a request goes to one server before the next is tried.
	Timeout time.Duration
	Tries   int
	// Accounting sends Start, Interim-Update and Stop (RFC 2866) for
	// every authentication, clones included (RFC 7791 §8); default yes.
	Accounting bool
	// InterimInterval is how often Interim-Updates go when the server
	// names none (Acct-Interim-Interval); 0: none.
	InterimInterval time.Duration
	Line            int
}

// RADIUSServer is one server of the radius section.
type RADIUSServer struct {
	Name               string
	Address            string
	AuthPort, AcctPort uint16
	Secret             []byte
}

// TUNConfig is the tun section.
type TUNConfig struct {
	Name string
	MTU  int
}

// LogConfig is the log section.
type LogConfig struct {
	Level  string // debug, info (default), warn or error
	Format string // text (default) or json
}

// SlogLevel is Level for log/slog.
func (l LogConfig) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// ControlConfig is the control socket the CLI talks to.
type ControlConfig struct {
	Socket string // absolute path; default DefaultSocket
	// Group may also use the socket; empty means root only.
	Group string
	// Mode of the socket file: default 0600, or 0660 with a group.
	Mode fs.FileMode
}

// MetricsConfig is the Prometheus endpoint.
type MetricsConfig struct {
	Listen string // host:port; empty = off
}

// KeyLogConfig enables writing SA keys for Wireshark.
type KeyLogConfig struct {
	// Dir receives ikev2_decryption_table and esp_sa, the files
	// strongSwan's save-keys plugin writes; empty = off.
	Dir string
}

// PoolConfig is a pool of virtual IP addresses.
type PoolConfig struct {
	Name  string
	Line  int
	Addrs netip.Prefix // masked
	DNS   []netip.Addr

	addrsLine int // where addrs is written
}

// line is where the pool's prefix is written, or where the pool is named
// for a PoolConfig that Parse did not make.
func (pc *PoolConfig) line() int {
	if pc.addrsLine > 0 {
		return pc.addrsLine
	}
	return pc.Line
}

// ConnConfig is one connection.
type ConnConfig struct {
	Name string
	Line int

	// Empty address lists mean %any.
	LocalAddrs, RemoteAddrs []netip.Addr
	RemotePort              uint16 // default 500

	Local, Remote AuthConfig
	PSK           []byte

	IKE    []proposal.Proposal // default proposal.DefaultIKE
	MOBIKE bool                // default true
	// IKEWindow is how many of the peer's requests we keep state for
	// (SET_WINDOW_SIZE, RFC 7296 §2.3); default 4, 1 to not overlap.
	IKEWindow int
	// ReturnRoutability checks a peer's new address before moving there
	// (RFC 4555 §3.7); default false, as strongSwan.
	ReturnRoutability bool
	// NoNATT: nat_traversal: no (RFC 4555 §3.9 then guards the addresses).
	NoNATT bool
	Encap  bool // force UDP encapsulation
	// TCP is when the initiator encapsulates in TCP (RFC 9329), to the
	// peer's TCPPort, UDP first for TCPFallbackAfter under fallback.
	TCP              ike.TCPPolicy
	TCPPort          uint16
	TCPFallbackAfter time.Duration
	// Fragmentation offers IKE fragmentation (RFC 7383), default true;
	// FragmentSize is the largest IP datagram of a fragment, 0 for 576
	// octets on IPv4 and 1280 on IPv6 (§2.5.1).
	Fragmentation bool
	FragmentSize  int
	// NoChildless: childless: no, IKE_AUTH without a Child SA neither
	// offered nor taken as responder (RFC 6023).
	NoChildless bool
	Redirect    RedirectConfig
	Clone       CloneConfig
	// Interfaces, when set, hands the connection to the multi-interface
	// manager (it then starts the connection itself).
	Interfaces *InterfacesConfig
	VIPs       []netip.Addr // 0.0.0.0 and :: request an address of that family
	Pools      []string

	// Defaults: rekey 4h, no reauthentication, over and rand 10% of the
	// longer of the two, no DPD.
	RekeyTime, ReauthTime, OverTime, RandTime, DPDDelay time.Duration
	// LivenessWindow: a liveness check starts when ESP went out this
	// long with nothing back (ike.Connection.LivenessWindow); 0 none.
	LivenessWindow time.Duration

	DPDAction   string // clear (default), restart or none
	StartAction string // none (default) or start: initiate at daemon start

	SendInitialContact  bool // unique: replace (default) or no
	ClassicSignatures   bool // signature_auth: rfc7427 (default) or classic
	RSAPSS              bool // rsa_pss: no (default) or yes
	PreferPeerProposals bool // prefer: local (default) or peer

	Children []*ChildConfig // in file order
}

// AuthConfig is one side's authentication.
type AuthConfig struct {
	// Auth is psk or pubkey (default, as in strongSwan); locally also
	// eap (any method the credentials allow), eap-mschapv2, eap-md5 or
	// eap-tls: we are the EAP peer; remotely eap (or strongSwan's
	// eap-radius): the peer authenticates by EAP through the radius
	// section's servers. eap-only is EAP-only authentication (RFC
	// 5998), where the gateway proves itself by the EAP method's key
	// alone: the gateway's local.auth, the end user's remote.auth.
	Auth string
	// ID as written. An empty local ID with pubkey is the certificate's
	// subject (filled in by Build); an empty or "%any" remote ID matches
	// every peer.
	ID      string
	Certs   []string // local: absolute paths, end-entity certificate first
	Key     string   // local: absolute path of the PEM private key
	CACerts []string // remote: absolute paths of trusted CA certificates
	// Remote pubkey: the revocation policy (none, the default, relaxed,
	// ifuri or strict, as strongSwan's), CRL files (absolute paths, PEM
	// or DER) and an OCSP responder asked instead of the certificates'.
	Revocation string
	CRLs       []string
	OCSPURI    string
	crlRefs    []ref
	// Local EAP: our EAP identity (default: ID), password (MD5,
	// MSCHAPv2), and for EAP-TLS the CA certificates that issued the
	// EAP server's certificate (default: remote.cacerts) and its name.
	EAPID      string
	Password   []byte
	EAPCACerts []string
	AAAID      string
	eapCARefs  []ref

	// Where each value was written, for Build's errors.
	idRef, keyRef    ref
	certRefs, caRefs []ref
}

type ref struct {
	field string
	line  int
}

// InterfacesConfig is the interfaces section of a connection.
type InterfacesConfig struct {
	Mode         string   // per-interface (default) or failover
	Use          []string // names or patterns, most preferred first
	OnDown       string   // move (default) or delete
	OnReturn     string   // move-back (default) or new
	Children     []string // on every clone; default all of the connection's
	GatewayAddrs string   // one (default) or all
	// TCP overrides the connection's tcp policy on interfaces whose name
	// matches, the first match winning (RFC 9329).
	TCP     ifacerule.Rules[ike.TCPPolicy]
	NoClone bool // per-interface without clone.enable: one authentication per interface
	// Multipath is how the VPNs on interfaces whose name matches take
	// part in MPTCP (the top-level mptcp section), the first match
	// winning; an interface no pattern matches is active.
	Multipath     ifacerule.Rules[string]
	multipathLine int
	// Spread, when set, assigns new flows that are not MPTCP to the
	// VPNs by a weighted hash (docs/multipath.md, "Flow spreading"):
	// the weight of a VPN is that of the first pattern matching the
	// interface it is on now, 1 when none does, 0 never for new flows.
	Spread     ifacerule.Rules[int]
	spreadLine int
	// SpreadMeasured multiplies those weights by a factor from each
	// VPN's measured round trip and loss (default yes), and SpreadProbe
	// is how often an idle-of-IKE VPN's path is measured then
	// (ike.Connection.PathProbe; default 10 s, 0 none).
	SpreadMeasured bool
	SpreadProbe    time.Duration
}

// RedirectConfig is the connection's RFC 5685 redirect section.
type RedirectConfig struct {
	// To, when valid, is the gateway that every peer taking redirects
	// is sent to in IKE_SA_INIT (§3): this host is a plain redirector.
	To netip.Addr
	// NoFollow: follow: no, as initiator neither announce
	// REDIRECT_SUPPORTED nor follow a gateway's redirects (they are
	// followed by default, as strongSwan's follow_redirects).
	NoFollow bool
}

// CloneConfig is RFC 7791 cloning of the connection's IKE SAs.
type CloneConfig struct {
	Enable      bool // default false
	MaxIKESAs   int  // per peer, default 8
	MaxChildSAs int  // per peer over all its IKE SAs, default 0: no cap
	Draft00     bool // also speak draft-mglt-ipsecme-clone-ike-sa-00
	// OwnVIPs: each clone asks for an inner address of its own.
	OwnVIPs bool
}

// ChildConfig is one Child SA of a connection.
type ChildConfig struct {
	Name string
	Line int

	// As written; "dynamic" means the side's IKE address or virtual IP.
	// Default ["dynamic"].
	LocalTS, RemoteTS []string
	ESP               []proposal.Proposal // default proposal.DefaultESP
	Mode              ike.Mode            // tunnel (default) or transport

	// Defaults: rekey 1h, life 0 (the engine uses 110% of rekey), rand
	// 10% of rekey (or life-rekey when life is given).
	RekeyTime, LifeTime, RandTime time.Duration
	// LifeBytes defaults to RekeyBytes plus 10%, as in strongSwan.
	RekeyBytes, LifeBytes uint64
	// StartAction start (default) brings the child up with its IKE SA, as
	// strongSwan does for an initiated connection; none leaves it to a
	// later request; trap brings it up (and its IKE SA if need be) when
	// a packet to its remote selectors finds no SA, strongSwan's trap
	// policy.
	StartAction     string
	startActionLine int
}

// Load reads and parses path; relative file names in it are relative to
// the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(path, data, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	c.Warnings = sortWarnings(append(c.Warnings, c.hostWarnings()...))
	return c, nil
}

// Parse parses data, naming it file in errors; relative file names are
// resolved against baseDir. On error it returns Errors, every problem of
// the file sorted by line.
func Parse(file string, data []byte, baseDir string) (*Config, error) {
	p := &parser{file: file, base: baseDir}
	c := p.parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	c.File = file
	c.Warnings = sortWarnings(p.warns)
	c.host = p.host
	return c, nil
}
