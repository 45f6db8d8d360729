package radius

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2869"
	"layeh.com/radius/rfc3162"
)

// Code is a RADIUS packet code (RFC 2865 §3), layeh.com/radius's.
type Code = radius.Code

// The codes of an Access reply (RFC 2865 §4.2–4.4).
const (
	AccessAccept    = radius.CodeAccessAccept
	AccessReject    = radius.CodeAccessReject
	AccessChallenge = radius.CodeAccessChallenge
)

// NAS is how the gateway names itself to the server: RFC 2865 §4.1
// wants NAS-IP-Address or NAS-Identifier (or both) in every Access-
// Request. An IPv6 address goes in NAS-IPv6-Address (RFC 3162 §2.1).
type NAS struct {
	Identifier string
	Address    netip.Addr
}

// validate checks that the NAS can be named in a request.
func (n NAS) validate() error {
	if n.Identifier == "" && !n.Address.IsValid() {
		return errors.New("radius: the NAS needs an identifier or an address (RFC 2865 §4.1)")
	}
	if len(n.Identifier) > maxValueLen {
		return errors.New("radius: NAS identifier longer than 253 octets")
	}
	return nil
}

// add puts NAS-Identifier and NAS-IP(v6)-Address into p.
func (n NAS) add(p *radius.Packet) error {
	if n.Identifier != "" {
		if err := rfc2865.NASIdentifier_SetString(p, n.Identifier); err != nil {
			return err
		}
	}
	switch {
	case n.Address.Is4():
		a := n.Address.As4()
		return rfc2865.NASIPAddress_Set(p, net.IP(a[:]))
	case n.Address.IsValid():
		a := n.Address.As16()
		return rfc3162.NASIPv6Address_Set(p, net.IP(a[:]))
	}
	return nil
}

// AccessRequest is one EAP round sent to the server: the EAP response the
// peer sent the gateway, wrapped in an Access-Request (RFC 3579 §2.1).
type AccessRequest struct {
	// UserName is the peer's EAP identity (RFC 3579 §2.1: copied from
	// the EAP-Response/Identity).
	UserName string
	// EAPMessage is the whole EAP packet; it is split into EAP-Message
	// attributes of at most 253 octets (RFC 3579 §3.1).
	EAPMessage []byte
	// State is echoed from the Access-Challenge this request answers
	// (RFC 2865 §5.24); empty in the first round.
	State []byte
	// CalledStationID and CallingStationID name the gateway's and the
	// peer's IKE addresses, as strongSwan does ("192.0.2.1[4500]", see
	// StationID), so the server can log and police them.
	CalledStationID, CallingStationID string
}

// StationID formats an IKE endpoint for Called-Station-Id and
// Calling-Station-Id the way strongSwan's eap-radius does by default:
// "address[port]".
func StationID(ap netip.AddrPort) string {
	return fmt.Sprintf("%s[%d]", ap.Addr().Unmap(), ap.Port())
}

// EncodeAccessRequest builds the Access-Request for one EAP round with
// the given identifier and (random) Request Authenticator (RFC 2865
// §4.1): User-Name, the NAS identification, Service-Type Framed, NAS-
// Port-Type Virtual, the station ids, State, EAP-Message and a Message-
// Authenticator over the whole packet (RFC 3579 §3.1–3.2).
func EncodeAccessRequest(r *AccessRequest, nas NAS, id byte, authenticator [16]byte, secret Secret) ([]byte, error) {
	switch {
	case secret.IsZero():
		return nil, errors.New("radius: empty shared secret")
	case r.UserName == "" || len(r.UserName) > maxValueLen:
		return nil, fmt.Errorf("radius: User-Name of %d octets, not 1..253 (RFC 2865 §5.1)", len(r.UserName))
	case len(r.EAPMessage) < 4:
		return nil, errors.New("radius: an EAP message is at least 4 octets (RFC 3748 §4)")
	case len(r.State) > maxValueLen:
		return nil, errors.New("radius: State longer than 253 octets")
	case len(r.CalledStationID) > maxValueLen || len(r.CallingStationID) > maxValueLen:
		return nil, errors.New("radius: station id longer than 253 octets")
	}
	if err := nas.validate(); err != nil {
		return nil, err
	}
	p := &radius.Packet{Code: radius.CodeAccessRequest, Identifier: id, Authenticator: authenticator, Secret: secret.b}
	err := errors.Join(
		rfc2865.UserName_SetString(p, r.UserName),
		nas.add(p),
		rfc2865.ServiceType_Set(p, rfc2865.ServiceType_Value_FramedUser),
		rfc2865.NASPortType_Set(p, rfc2865.NASPortType_Value_Virtual),
	)
	if r.CalledStationID != "" {
		err = errors.Join(err, rfc2865.CalledStationID_SetString(p, r.CalledStationID))
	}
	if r.CallingStationID != "" {
		err = errors.Join(err, rfc2865.CallingStationID_SetString(p, r.CallingStationID))
	}
	if len(r.State) > 0 {
		err = errors.Join(err, rfc2865.State_Set(p, r.State))
	}
	err = errors.Join(err, rfc2869.EAPMessage_Set(p, r.EAPMessage))
	if err != nil {
		return nil, fmt.Errorf("radius: encoding Access-Request: %w", err)
	}
	// Last, so its value is the packet's last 16 octets.
	p.Add(rfc2869.MessageAuthenticator_Type, make(radius.Attribute, maLen))
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("radius: encoding Access-Request: %w", err)
	}
	off := len(b) - maLen
	copy(b[off:], messageAuthenticator(b, authenticator[:], off, secret.b))
	return b, nil
}

// Reply is what the gateway needs of an Access-Accept, -Reject or
// -Challenge.
type Reply struct {
	Code Code
	// EAPMessage is the EAP packet to forward to the peer, joined from
	// the EAP-Message attributes (RFC 3579 §3.1); it may be empty in an
	// Access-Reject.
	EAPMessage []byte
	// State is to be echoed in the next request (RFC 2865 §5.24).
	State []byte
	// MSK is MS-MPPE-Recv-Key ‖ MS-MPPE-Send-Key, decrypted (RFC 2548
	// §2.4.2–2.4.3, RFC 5247 §3.1 on how an EAP server exports the MSK
	// this way); empty when the method derives no keys (EAP-MD5) or the
	// reply is not an Accept.
	MSK []byte
	// FramedIPAddress is the address the server assigns the peer (RFC
	// 2865 §5.8), for its internal address (RFC 7296 §3.15.1).
	FramedIPAddress netip.Addr
	// SessionTimeout caps the session (RFC 2865 §5.27); zero: none.
	SessionTimeout time.Duration
	// AcctInterimInterval asks for Interim-Updates this often (RFC 2869
	// §5.16); zero: none.
	AcctInterimInterval time.Duration
	// Class values are echoed unchanged in accounting (RFC 2865 §5.25).
	Class [][]byte
	// ReplyMessage is the text of the Reply-Message attributes (RFC 2865
	// §5.18), joined by newlines.
	ReplyMessage string
}

// DecodeAccessReply checks b as the reply to request (an Access-Request
// built by EncodeAccessRequest) and decodes it. An error means the reply
// is to be dropped silently; it wraps ErrMalformed, ErrIdentifier,
// ErrAuthenticator or ErrMessageAuthenticator. b is not retained.
func DecodeAccessReply(b, request []byte, secret Secret) (*Reply, error) {
	pkt, err := verifyReply(b, request, secret.b, true)
	if err != nil {
		return nil, err
	}
	code := Code(pkt[0])
	if code != AccessAccept && code != AccessReject && code != AccessChallenge {
		return nil, fmt.Errorf("%w: code %d in reply to an Access-Request", ErrMalformed, pkt[0])
	}
	p, err := radius.Parse(pkt, secret.b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	r := &Reply{Code: code}
	if r.EAPMessage, err = joinEAP(p); err != nil {
		return nil, err
	}
	if code == AccessChallenge && len(r.EAPMessage) == 0 {
		// RFC 3579 §2.6.3: a challenge without EAP has nothing to say to
		// an EAP peer.
		return nil, fmt.Errorf("%w: Access-Challenge without EAP-Message", ErrMalformed)
	}
	if v, ok := p.Lookup(rfc2865.State_Type); ok {
		r.State = append([]byte(nil), v...)
	}
	for _, avp := range p.Attributes {
		switch avp.Type {
		case rfc2865.Class_Type:
			r.Class = append(r.Class, append([]byte(nil), avp.Attribute...))
		case rfc2865.ReplyMessage_Type:
			if r.ReplyMessage != "" {
				r.ReplyMessage += "\n"
			}
			r.ReplyMessage += strings.ToValidUTF8(string(avp.Attribute), "\uFFFD")
		}
	}
	if v, ok := p.Lookup(rfc2865.FramedIPAddress_Type); ok {
		a, ok := netip.AddrFromSlice(v)
		if !ok || !a.Is4() {
			return nil, fmt.Errorf("%w: Framed-IP-Address of %d octets", ErrMalformed, len(v))
		}
		r.FramedIPAddress = a
	}
	if r.SessionTimeout, err = seconds(p, rfc2865.SessionTimeout_Type); err != nil {
		return nil, err
	}
	if r.AcctInterimInterval, err = seconds(p, rfc2869.AcctInterimInterval_Type); err != nil {
		return nil, err
	}
	if code == AccessAccept {
		if r.MSK, err = decodeMSK(p, request[authOff:headerLen], secret.b); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// joinEAP joins the EAP-Message attributes of p and checks that they
// hold one whole EAP packet: RFC 3579 §3.1 says the server splits one
// packet over consecutive attributes, and its Length (RFC 3748 §4) must
// then match what they add up to.
func joinEAP(p *radius.Packet) ([]byte, error) {
	eap, err := rfc2869.EAPMessage_Lookup(p)
	if errors.Is(err, radius.ErrNoAttribute) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(eap) < 4 || int(binary.BigEndian.Uint16(eap[2:4])) != len(eap) {
		return nil, fmt.Errorf("%w: EAP-Message attributes hold %d octets, not one EAP packet", ErrMalformed, len(eap))
	}
	return eap, nil
}

// seconds reads an optional 4-octet count of seconds.
func seconds(p *radius.Packet, t radius.Type) (time.Duration, error) {
	v, ok := p.Lookup(t)
	if !ok {
		return 0, nil
	}
	n, err := radius.Integer(v)
	if err != nil {
		return 0, fmt.Errorf("%w: attribute %d of %d octets, not 4", ErrMalformed, t, len(v))
	}
	return time.Duration(n) * time.Second, nil
}

// decodeMSK decrypts MS-MPPE-Recv-Key and MS-MPPE-Send-Key and returns
// Recv ‖ Send, the order strongSwan's eap-radius (and RFC 5247 §3.1's
// RADIUS case) puts them in: the Recv-Key is the first half of the MSK.
// Neither present: no MSK. One without the other, or one that does not
// decrypt, is malformed: an Accept with half a key is of no use.
func decodeMSK(p *radius.Packet, reqAuth, secret []byte) ([]byte, error) {
	recvAttr, okR := microsoftVSA(p, mppeRecvKey)
	sendAttr, okS := microsoftVSA(p, mppeSendKey)
	if !okR && !okS {
		return nil, nil
	}
	if !okR || !okS {
		return nil, fmt.Errorf("%w: only one of MS-MPPE-Recv-Key and MS-MPPE-Send-Key", ErrMalformed)
	}
	recv, err := DecryptMPPEKey(recvAttr, reqAuth, secret)
	if err != nil {
		return nil, err
	}
	send, err := DecryptMPPEKey(sendAttr, reqAuth, secret)
	if err != nil {
		return nil, err
	}
	return append(recv, send...), nil
}
