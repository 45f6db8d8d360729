package eap

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"
)

// ServerConfig configures a Server. Its fmt output never shows passwords
// or the private key.
type ServerConfig struct {
	// Users maps an identity to its password (MD5-Challenge,
	// EAP-MSCHAPv2).
	Users map[string][]byte
	// Methods are offered in this order: the first after Identity, the
	// next acceptable one after a Nak (RFC 3748 §5.3.1).
	Methods []Type
	// EAP-TLS: the server's certificate and the CAs that issue client
	// certificates, which are required.
	Certificate   *tls.Certificate
	ClientCAs     *x509.CertPool
	TLSMaxVersion uint16 // default TLS 1.2
	FragmentSize  int    // default DefaultFragmentSize
	// Name is the MSCHAPv2 authenticator name; default "mifike".
	Name string

	Rand io.Reader
	Now  func() time.Time
}

var (
	// ErrRejected is wrapped by the error of a Handle that sends
	// EAP-Failure.
	ErrRejected = errors.New("eap: authentication rejected")
	// ErrDiscarded is wrapped by the error of a Handle that drops the
	// packet without a change of state (RFC 3748 §4.1: Responses that do
	// not match the outstanding Request are silently discarded).
	ErrDiscarded = errors.New("eap: response discarded")
)

// Server is a small EAP authenticator with a local user table, for tests
// and the simulator (RFC 3748 §2: the authenticator sends Requests and
// decides). It speaks MD5-Challenge, EAP-MSCHAPv2 and EAP-TLS. Not safe
// for concurrent use; Close it when done.
type Server struct {
	cfg ServerConfig

	id      uint8  // Identifier of the outstanding Request
	lastReq []byte // for Retransmit
	done    bool

	identity []byte
	tried    []Type // methods offered so far
	method   Type
	rounds   int // Responses received for the current method

	// MD5-Challenge and MSCHAPv2.
	challenge []byte
	password  []byte
	authResp  [mschapAuthRespLen]byte
	mschapOK  bool
	key       []byte

	// EAP-TLS.
	tlsm *tlsServer
}

// NewServer checks the configuration.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Rand == nil || cfg.Now == nil {
		return nil, errors.New("eap: ServerConfig needs Rand and Now")
	}
	if len(cfg.Methods) == 0 {
		return nil, errors.New("eap: ServerConfig needs Methods")
	}
	for _, t := range cfg.Methods {
		switch t {
		case TypeMD5Challenge, TypeMSCHAPv2:
		case TypeTLS:
			if cfg.Certificate == nil || cfg.ClientCAs == nil {
				return nil, errors.New("eap: EAP-TLS needs a Certificate and ClientCAs")
			}
		default:
			return nil, fmt.Errorf("eap: server method %s is not implemented", t)
		}
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
	if cfg.Name == "" {
		cfg.Name = "mifike"
	}
	return &Server{cfg: cfg}, nil
}

// Start returns the first Request, an Identity Request (RFC 3748 §5.1)
// with an Identifier drawn from Rand.
func (s *Server) Start() ([]byte, error) {
	var b [1]byte
	if _, err := io.ReadFull(s.cfg.Rand, b[:]); err != nil {
		return nil, fmt.Errorf("eap: identifier: %w", err)
	}
	s.id = b[0] - 1
	return s.request(TypeIdentity, nil)
}

// Retransmit returns the outstanding Request again (RFC 3748 §4.3: the
// authenticator retransmits; the caller owns the timer).
func (s *Server) Retransmit() []byte { return bytes.Clone(s.lastReq) }

// Identity is the identity the peer gave.
func (s *Server) Identity() []byte { return bytes.Clone(s.identity) }

// Handle takes one Response and returns what to send next. While done is
// false, out is the next Request. When done, out is EAP-Success with the
// method's MSK (nil for MD5-Challenge), or EAP-Failure with an error
// wrapping ErrRejected. An error wrapping ErrDiscarded, with nothing to
// send, means the Response was dropped and the Request is still
// outstanding.
func (s *Server) Handle(resp []byte) (out []byte, done bool, msk []byte, err error) {
	if s.done {
		return nil, true, nil, fmt.Errorf("%w: authentication already decided", ErrDiscarded)
	}
	pkt, err := Parse(resp)
	if err != nil {
		return nil, false, nil, fmt.Errorf("%w: %w", ErrDiscarded, err)
	}
	if pkt.Code != CodeResponse || pkt.Identifier != s.id {
		return nil, false, nil, fmt.Errorf("%w: %s with Identifier %d, outstanding %d", ErrDiscarded, pkt.Code, pkt.Identifier, s.id)
	}
	out, msk, err = s.respond(pkt)
	if errors.Is(err, ErrDiscarded) {
		return nil, false, nil, err
	}
	if err != nil {
		return s.finish(CodeFailure), true, nil, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if out == nil {
		return s.finish(CodeSuccess), true, msk, nil
	}
	return out, false, nil, nil
}

// respond returns the next Request, or nil and the MSK for Success, or an
// error for Failure.
func (s *Server) respond(pkt *Packet) ([]byte, []byte, error) {
	if s.identity == nil {
		if pkt.Type != TypeIdentity {
			return nil, nil, fmt.Errorf("%s Response to Identity", pkt.Type)
		}
		if len(pkt.Data) == 0 || len(pkt.Data) > maxIdentityLen {
			return nil, nil, fmt.Errorf("identity of %d octets", len(pkt.Data))
		}
		s.identity = bytes.Clone(pkt.Data)
		return s.offer(s.cfg.Methods[0])
	}
	if pkt.Type == TypeNak {
		// RFC 3748 §5.3.1: a Nak answers only a method's first Request.
		if s.rounds != 0 {
			return nil, nil, errors.New("a Nak in the middle of a method")
		}
		wanted, err := parseNak(pkt.Data)
		if err != nil {
			return nil, nil, err
		}
		for _, t := range s.cfg.Methods {
			if slices.Contains(wanted, t) && !slices.Contains(s.tried, t) {
				return s.offer(t)
			}
		}
		return nil, nil, errors.New("no method acceptable to both")
	}
	if pkt.Type != s.method {
		return nil, nil, fmt.Errorf("%s Response during %s", pkt.Type, s.method)
	}
	s.rounds++
	switch s.method {
	case TypeMD5Challenge:
		if !md5Verify(pkt.Identifier, s.password, s.challenge, pkt.Data) {
			return nil, nil, errors.New("MD5-Challenge response does not verify")
		}
		return nil, nil, nil
	case TypeMSCHAPv2:
		return s.mschap(pkt)
	case TypeTLS:
		return s.tls(pkt)
	}
	return nil, nil, fmt.Errorf("method %s", s.method)
}

// lookup returns the password of the peer's identity, or a random one
// for an unknown identity so that the exchange runs the same way and
// fails (no oracle for which identities exist).
func (s *Server) lookup(name []byte) []byte {
	if pw, ok := s.cfg.Users[string(name)]; ok {
		return bytes.Clone(pw)
	}
	pw := make([]byte, 16)
	_, _ = io.ReadFull(s.cfg.Rand, pw)
	return pw
}

func (s *Server) offer(t Type) ([]byte, []byte, error) {
	s.tried = append(s.tried, t)
	s.method, s.rounds = t, 0
	switch t {
	case TypeMD5Challenge:
		if err := s.newChallenge(); err != nil {
			return nil, nil, err
		}
		s.password = s.lookup(s.identity)
		data := append([]byte{md5ValueLen}, s.challenge...)
		data = append(data, s.cfg.Name...)
		out, err := s.request(t, data)
		return out, nil, err
	case TypeMSCHAPv2:
		if err := s.newChallenge(); err != nil {
			return nil, nil, err
		}
		// RFC 2759 §4 Challenge: Value-Size, Challenge, Name; the
		// MS-CHAPv2-ID follows the EAP Identifier.
		value := append([]byte{mschapChalLen}, s.challenge...)
		data := appendMSCHAP(nil, mschapChallenge, s.id+1, value, []byte(s.cfg.Name))
		out, err := s.request(t, data)
		return out, nil, err
	case TypeTLS:
		s.tlsm = newTLSServer(&s.cfg)
		if err := s.tlsm.start(); err != nil {
			return nil, nil, err
		}
		out, err := s.request(t, []byte{tlsFlagStart})
		return out, nil, err
	}
	return nil, nil, fmt.Errorf("method %s", t)
}

func (s *Server) newChallenge() error {
	s.challenge = make([]byte, 16)
	if _, err := io.ReadFull(s.cfg.Rand, s.challenge); err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	return nil
}

func (s *Server) mschap(pkt *Packet) ([]byte, []byte, error) {
	m, err := parseMSCHAP(pkt.Data)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case m.opCode == mschapResponse && s.rounds == 1:
		v := m.value
		if len(v) < 1+mschapResponseLen || v[0] != mschapResponseLen {
			return nil, nil, errors.New("MSCHAPv2 Response Value-Size")
		}
		peerChallenge := v[1 : 1+mschapChalLen]
		var nt [24]byte
		copy(nt[:], v[1+mschapChalLen+8:])
		name := v[1+mschapResponseLen:]
		if !bytes.Equal(name, s.identity) {
			return s.mschapFailure()
		}
		pw := s.lookup(name)
		pwHash := ntPasswordHash(pw)
		clear(pw)
		want := generateNTResponse(s.challenge, peerChallenge, name, pwHash)
		if subtle.ConstantTimeCompare(want[:], nt[:]) != 1 {
			return s.mschapFailure()
		}
		s.authResp = authenticatorResponse(pwHash, nt, peerChallenge, s.challenge, name)
		s.key = mschapMSK(pwHash, nt)
		clear(pwHash[:])
		msg := authResponseString(s.authResp) + " M=Welcome"
		out, err := s.request(TypeMSCHAPv2, appendMSCHAP(nil, mschapSuccess, s.id+1, []byte(msg)))
		return out, nil, err
	case m.opCode == mschapSuccess && m.value == nil && s.rounds == 2 && s.key != nil:
		// Success-Response: the peer verified us (RFC 2759 §5).
		s.mschapOK = true
		return nil, s.key, nil
	case m.opCode == mschapFailure && m.value == nil && s.rounds == 2 && s.key == nil:
		return nil, nil, &MSCHAPv2Error{Code: ErrorAuthenticationFailed}
	}
	return nil, nil, fmt.Errorf("MSCHAPv2 OpCode %d in round %d", m.opCode, s.rounds)
}

// mschapFailure sends a Failure-Request (RFC 2759 §6) without retry; the
// peer's Failure-Response then ends in EAP-Failure.
func (s *Server) mschapFailure() ([]byte, []byte, error) {
	msg := "E=691 R=0 C=" + strings.ToUpper(hex.EncodeToString(s.challenge)) + " V=3 M=Authentication failed"
	out, err := s.request(TypeMSCHAPv2, appendMSCHAP(nil, mschapFailure, s.id+1, []byte(msg)))
	return out, nil, err
}

func (s *Server) tls(pkt *Packet) ([]byte, []byte, error) {
	data, msk, err := s.tlsm.handle(pkt)
	if err != nil || data == nil {
		return nil, msk, err
	}
	out, err := s.request(TypeTLS, data)
	return out, nil, err
}

// request builds the next Request with a fresh Identifier (RFC 3748 §4.1).
func (s *Server) request(t Type, data []byte) ([]byte, error) {
	s.id++
	out, err := (&Packet{Code: CodeRequest, Identifier: s.id, Type: t, Data: data}).Marshal()
	if err != nil {
		return nil, err
	}
	s.lastReq = out
	return bytes.Clone(out), nil
}

// finish builds Success or Failure with the Identifier of the Response it
// answers (RFC 3748 §4.2).
func (s *Server) finish(c Code) []byte {
	s.done = true
	s.lastReq = nil
	if s.tlsm != nil {
		s.tlsm.engine.close()
	}
	clear(s.password)
	out, _ := (&Packet{Code: c, Identifier: s.id}).Marshal()
	return out
}

// Close ends the EAP-TLS goroutine, if any.
func (s *Server) Close() error {
	if s.tlsm != nil {
		s.tlsm.engine.close()
	}
	clear(s.password)
	return nil
}

// tlsServer is the server's side of EAP-TLS.
type tlsServer struct {
	cfg      *tls.Config
	tr       tlsTransport
	engine   *tlsEngine
	finished bool
	key      []byte // written by the TLS goroutine before it reports finished
}

func newTLSServer(sc *ServerConfig) *tlsServer {
	return &tlsServer{
		tr:     tlsTransport{fragSize: sc.FragmentSize},
		engine: newTLSEngine(),
		cfg: &tls.Config{
			Rand:                   sc.Rand,
			Time:                   sc.Now,
			Certificates:           []tls.Certificate{*sc.Certificate},
			ClientAuth:             tls.RequireAndVerifyClientCert,
			ClientCAs:              sc.ClientCAs,
			MinVersion:             tls.VersionTLS12,
			MaxVersion:             sc.TLSMaxVersion,
			SessionTicketsDisabled: true,
		},
	}
}

func (m *tlsServer) work(c net.Conn) error {
	tc := tls.Server(c, m.cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	cs := tc.ConnectionState()
	if cs.Version == tls.VersionTLS13 {
		// RFC 9190 §2.5: the protected success indication.
		if _, err := tc.Write([]byte{0}); err != nil {
			return err
		}
	}
	key, err := tlsMSK(cs)
	m.key = key
	return err
}

// start launches the handshake, which at once waits for the ClientHello.
func (m *tlsServer) start() error {
	out, fin, err := m.engine.start(m.work)
	if err == nil && (fin || len(out) != 0) {
		err = errors.New("TLS server did not wait for a ClientHello")
	}
	return err
}

// handle returns the next Request's Type-Data, or nil and the MSK once the
// peer acknowledged the last flight.
func (m *tlsServer) handle(pkt *Packet) ([]byte, []byte, error) {
	p, err := parseTLSData(pkt.Data)
	if err != nil {
		return nil, nil, err
	}
	if m.tr.sending() {
		if !p.isAck() {
			return nil, nil, errors.New("EAP-TLS data while our fragments are unacknowledged")
		}
		return m.tr.nextFragment(), nil, nil
	}
	if m.finished {
		// RFC 5216 §2.1.1: the peer acknowledges the last flight
		// with an empty Response; then EAP-Success.
		if !p.isAck() {
			return nil, nil, errors.New("EAP-TLS data after the handshake")
		}
		return nil, m.key, nil
	}
	msg, complete, err := m.tr.receive(p)
	if err != nil {
		return nil, nil, err
	}
	if !complete {
		return tlsAck, nil, nil
	}
	out, fin, err := m.engine.step(msg)
	if err != nil {
		return nil, nil, fmt.Errorf("EAP-TLS: %w", err)
	}
	m.finished = fin
	if len(out) == 0 {
		if fin {
			return nil, m.key, nil
		}
		return tlsAck, nil, nil
	}
	m.tr.setOut(out)
	return m.tr.nextFragment(), nil, nil
}
