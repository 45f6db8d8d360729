package eap

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

var (
	// ErrFailure is an EAP-Failure from the authenticator (RFC 3748 §4.2).
	ErrFailure = errors.New("eap: authenticator sent EAP-Failure")
	// ErrEarlySuccess is an EAP-Success before the peer completed a
	// method: accepting it would be success without authentication.
	ErrEarlySuccess = errors.New("eap: EAP-Success before the method completed")
	// ErrProtocol is wrapped by errors about a server that breaks the
	// rules of EAP or of a method.
	ErrProtocol = errors.New("eap: protocol violation")
	// ErrClosed is returned by Handle after Close.
	ErrClosed = errors.New("eap: peer closed")
)

// errAfterSuccess answers anything after EAP-Success but a retransmitted
// Success.
var errAfterSuccess = fmt.Errorf("%w: packet after EAP-Success", ErrProtocol)

func protocolErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// PeerConfig configures a Peer. Its fmt output never shows the password or
// the private key.
type PeerConfig struct {
	// Identity answers Identity Requests and names the user in
	// MSCHAPv2 (RFC 3748 §5.1).
	Identity []byte
	// Password for MD5-Challenge and EAP-MSCHAPv2.
	Password []byte
	// Methods the peer accepts, most preferred first; a Nak offers them
	// in this order. Empty means every method the credentials allow:
	// EAP-TLS if RootCAs is set, then EAP-MSCHAPv2 and MD5-Challenge if
	// a password is.
	Methods []Type

	// EAP-TLS (RFC 5216). RootCAs and ServerName verify the EAP
	// server's certificate; Certificate, when set, is presented.
	Certificate *tls.Certificate
	RootCAs     *x509.CertPool
	ServerName  string
	// TLSMaxVersion defaults to TLS 1.2; see tls.go for why.
	TLSMaxVersion uint16
	// FragmentSize is the most TLS data per EAP-TLS packet; default
	// DefaultFragmentSize.
	FragmentSize int

	// Rand is the source of randomness (MSCHAPv2 peer challenge, TLS).
	Rand io.Reader
	// Now is the clock for certificate validity.
	Now func() time.Time

	// keyLog, for tests only, receives the TLS secrets in NSS key log
	// format so that the MSK can be recomputed independently.
	keyLog io.Writer
}

// peerMethod is one authentication method on the peer's side. handle gets
// each Request of the method's Type and returns the Type-Data of the
// Response; done says the method completed, so that EAP-Success may be
// accepted. A non-nil response with an error is still to be sent (a
// Failure-Response, a TLS alert).
type peerMethod interface {
	handle(req *Packet) (resp []byte, done bool, err error)
	msk() []byte
	close()
}

// Peer is the EAP peer state machine (RFC 3748 §2): it answers each EAP
// Request with a Response until the authenticator sends Success or
// Failure. It is not safe for concurrent use. Close it when done: EAP-TLS
// holds a goroutine until then.
type Peer struct {
	cfg     PeerConfig
	allowed []Type

	refused [256]bool // methods this peer Nak'ed, RFC 3748 §5.3.1
	method  Type      // the method under way or completed
	m       peerMethod
	done    bool // the method completed

	lastID   uint8 // Identifier of the last Request answered
	lastReq  []byte
	lastResp []byte
	lastErr  error

	succeeded bool
	msk       []byte
	err       error // terminal
	closed    bool
}

// NewPeer checks the configuration and returns a Peer.
func NewPeer(cfg PeerConfig) (*Peer, error) {
	if cfg.Rand == nil || cfg.Now == nil {
		return nil, errors.New("eap: PeerConfig needs Rand and Now")
	}
	if len(cfg.Identity) == 0 || len(cfg.Identity) > maxIdentityLen {
		return nil, fmt.Errorf("eap: identity of %d octets, want 1-%d", len(cfg.Identity), maxIdentityLen)
	}
	if cfg.FragmentSize == 0 {
		cfg.FragmentSize = DefaultFragmentSize
	}
	if cfg.FragmentSize < minFragmentSize || cfg.FragmentSize > maxFragmentSize {
		return nil, fmt.Errorf("eap: fragment size %d, want %d-%d", cfg.FragmentSize, minFragmentSize, maxFragmentSize)
	}
	if cfg.TLSMaxVersion == 0 {
		cfg.TLSMaxVersion = tls.VersionTLS12
	}
	if cfg.TLSMaxVersion != tls.VersionTLS12 && cfg.TLSMaxVersion != tls.VersionTLS13 {
		return nil, fmt.Errorf("eap: TLS max version %#04x, want TLS 1.2 or 1.3", cfg.TLSMaxVersion)
	}
	allowed := cfg.Methods
	if len(allowed) == 0 {
		if cfg.RootCAs != nil {
			allowed = append(allowed, TypeTLS)
		}
		if len(cfg.Password) > 0 {
			allowed = append(allowed, TypeMSCHAPv2, TypeMD5Challenge)
		}
	}
	if len(allowed) == 0 {
		return nil, errors.New("eap: no method: configure a password or a CA")
	}
	for i, t := range allowed {
		switch t {
		case TypeMD5Challenge, TypeMSCHAPv2:
			if len(cfg.Password) == 0 {
				return nil, fmt.Errorf("eap: %s needs a password", t)
			}
		case TypeTLS:
			if cfg.RootCAs == nil || cfg.ServerName == "" {
				return nil, errors.New("eap: EAP-TLS needs RootCAs and ServerName to verify the server")
			}
		default:
			return nil, fmt.Errorf("eap: method %s is not implemented", t)
		}
		if slices.Contains(allowed[:i], t) {
			return nil, fmt.Errorf("eap: method %s listed twice", t)
		}
	}
	cfg.Methods = slices.Clone(allowed)
	cfg.Identity = bytes.Clone(cfg.Identity)
	cfg.Password = bytes.Clone(cfg.Password)
	return &Peer{cfg: cfg, allowed: cfg.Methods}, nil
}

// maxIdentityLen bounds the identity; RADIUS carries it in User-Name,
// which holds at most 253 octets (RFC 2865 §5.1).
const maxIdentityLen = 253

// Handle answers one EAP packet from the authenticator. For a Request it
// returns the Response to send. For Success it returns (nil, nil) and the
// peer has succeeded; for Failure, ErrFailure. A retransmitted Request
// (the same octets as the last one) gets the same Response again, octet for
// octet, without being processed twice (RFC 3748 §4.1).
//
// When Handle returns an error the authentication has failed and the peer
// answers nothing more, except that a response returned together with the
// error (an MSCHAPv2 Failure-Response, a TLS alert) is still to be sent.
func (p *Peer) Handle(req []byte) ([]byte, error) {
	if p.closed {
		return nil, ErrClosed
	}
	if p.lastReq != nil && bytes.Equal(req, p.lastReq) {
		return bytes.Clone(p.lastResp), p.lastErr
	}
	if p.err != nil {
		return nil, p.err
	}
	if p.succeeded {
		return nil, errAfterSuccess
	}
	resp, err := p.handle(req)
	if err != nil {
		p.fail(err)
	}
	p.lastReq = bytes.Clone(req)
	p.lastResp = resp
	p.lastErr = err
	return bytes.Clone(resp), err
}

func (p *Peer) fail(err error) {
	p.err = err
	if p.m != nil {
		p.m.close()
	}
}

func (p *Peer) handle(b []byte) ([]byte, error) {
	pkt, err := Parse(b)
	if err != nil {
		return nil, err
	}
	switch pkt.Code {
	case CodeSuccess:
		return nil, p.success(pkt)
	case CodeFailure:
		return nil, ErrFailure
	case CodeResponse:
		return nil, protocolErr("a Response sent to the peer")
	}
	typ, data, err := p.request(pkt)
	if err != nil && data == nil {
		return nil, err
	}
	out, merr := (&Packet{Code: CodeResponse, Identifier: pkt.Identifier, Type: typ, Data: data}).Marshal()
	if merr != nil {
		return nil, merr
	}
	p.lastID = pkt.Identifier
	return out, err
}

// success accepts EAP-Success only after a method completed. RFC 3748 §4.2
// says the Identifier matches the Response's; like wpa_supplicant's
// eap_success_workaround we also accept the next one, which Microsoft IAS
// sends. Success is unauthenticated in EAP either way; here it arrives
// inside an IKE message already protected by the IKE SA.
func (p *Peer) success(pkt *Packet) error {
	if !p.done {
		return ErrEarlySuccess
	}
	if pkt.Identifier != p.lastID && pkt.Identifier != p.lastID+1 {
		return protocolErr("EAP-Success with Identifier %d after Response %d", pkt.Identifier, p.lastID)
	}
	p.succeeded = true
	p.msk = p.m.msk()
	p.m.close()
	return nil
}

// request returns the Type and Type-Data of the Response to a Request. A
// method is chosen by its first Request; after that RFC 3748 §2.1 forbids
// the authenticator another Type than Notification until the method ends,
// and this peer runs one method only.
func (p *Peer) request(pkt *Packet) (Type, []byte, error) {
	switch pkt.Type {
	case TypeNotification:
		// RFC 3748 §5.2: the Response has no Type-Data. The message
		// is for a human and not trusted, so it is not shown.
		return TypeNotification, []byte{}, nil
	case TypeIdentity:
		if p.m != nil {
			return 0, nil, protocolErr("Identity Request during %s", p.method)
		}
		return TypeIdentity, bytes.Clone(p.cfg.Identity), nil
	case TypeNak:
		return 0, nil, protocolErr("Nak is valid only in a Response")
	}
	if p.m != nil {
		if pkt.Type != p.method {
			return 0, nil, protocolErr("%s Request during %s", pkt.Type, p.method)
		}
		if p.done {
			return 0, nil, protocolErr("%s Request after the method completed", pkt.Type)
		}
		data, done, err := p.m.handle(pkt)
		p.done = done && err == nil
		return p.method, data, err
	}
	if !slices.Contains(p.allowed, pkt.Type) {
		// RFC 3748 §5.3.1: Nak a method we do not accept, or an
		// Expanded Type we do not support, listing what we want.
		if p.refused[pkt.Type] {
			return 0, nil, protocolErr("server offered %s again after a Nak", pkt.Type)
		}
		p.refused[pkt.Type] = true
		return TypeNak, nakData(p.allowed), nil
	}
	m, err := p.newMethod(pkt.Type)
	if err != nil {
		return 0, nil, err
	}
	p.method, p.m = pkt.Type, m
	data, done, err := m.handle(pkt)
	p.done = done && err == nil
	return p.method, data, err
}

func (p *Peer) newMethod(t Type) (peerMethod, error) {
	switch t {
	case TypeMD5Challenge:
		return &md5Peer{password: p.cfg.Password}, nil
	case TypeMSCHAPv2:
		return &mschapPeer{identity: p.cfg.Identity, password: p.cfg.Password, rand: p.cfg.Rand}, nil
	case TypeTLS:
		return newTLSPeer(&p.cfg), nil
	}
	return nil, fmt.Errorf("eap: method %s is not implemented", t)
}

// Succeeded says the authenticator sent EAP-Success after a completed
// method.
func (p *Peer) Succeeded() bool { return p.succeeded }

// Method is the method under way or completed, 0 before the first.
func (p *Peer) Method() Type { return p.method }

// MSK is the Master Session Key of the completed method (RFC 5247 §2.1),
// nil before success and for methods without keys (MD5-Challenge).
func (p *Peer) MSK() []byte {
	if !p.succeeded {
		return nil
	}
	return bytes.Clone(p.msk)
}

// Err is the error that ended the authentication, if any.
func (p *Peer) Err() error { return p.err }

// Close ends the method's goroutine, if any, and clears the secrets. It
// is safe to call more than once.
func (p *Peer) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	if p.m != nil {
		p.m.close()
	}
	clear(p.cfg.Password)
	clear(p.msk)
	return nil
}
