package radius

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
	"layeh.com/radius/rfc2869"
)

// AcctStatus is Acct-Status-Type (RFC 2866 §5.1).
type AcctStatus = rfc2866.AcctStatusType

// The statuses the gateway sends.
const (
	AcctStart         = rfc2866.AcctStatusType_Value_Start
	AcctStop          = rfc2866.AcctStatusType_Value_Stop
	AcctInterimUpdate = rfc2866.AcctStatusType_Value_InterimUpdate
)

// TerminateCause is Acct-Terminate-Cause (RFC 2866 §5.10), e.g.
// rfc2866.AcctTerminateCause_Value_UserRequest.
type TerminateCause = rfc2866.AcctTerminateCause

// AccountingRequest is one Accounting-Request (RFC 2866 §4.1) about one
// IKE SA.
type AccountingRequest struct {
	Status    AcctStatus
	SessionID string // Acct-Session-Id, the same in Start, Interim and Stop (RFC 2866 §5.5)
	UserName  string
	// FramedIPAddress is the peer's internal address, if it has one.
	FramedIPAddress netip.Addr
	// Class values from the Access-Accept, echoed unchanged (RFC 2865
	// §5.25).
	Class                             [][]byte
	CalledStationID, CallingStationID string
	// Octets and packets so far, as seen from the NAS: input is from the
	// peer. Octets over 32 bits go in the Gigawords attributes (RFC 2869
	// §5.1–5.2); packet counts are 32 bits on the wire and wrap.
	InputOctets, OutputOctets   uint64
	InputPackets, OutputPackets uint64
	// SessionTime is how long the session has lasted (RFC 2866 §5.7),
	// sent in whole seconds; not sent in Start.
	SessionTime time.Duration
	// TerminateCause is sent in Stop only (RFC 2866 §5.10); zero: User-
	// Request.
	TerminateCause TerminateCause
}

// EncodeAccountingRequest builds an Accounting-Request with the given
// identifier; its Request Authenticator is the MD5 of RFC 2866 §3, which
// layeh.com/radius computes.
func EncodeAccountingRequest(a *AccountingRequest, nas NAS, id byte, secret Secret) ([]byte, error) {
	switch {
	case secret.IsZero():
		return nil, errors.New("radius: empty shared secret")
	case a.Status != AcctStart && a.Status != AcctStop && a.Status != AcctInterimUpdate:
		return nil, fmt.Errorf("radius: Acct-Status-Type %v is not Start, Stop or Interim-Update", a.Status)
	case a.SessionID == "" || len(a.SessionID) > maxValueLen:
		return nil, errors.New("radius: Acct-Session-Id must be 1..253 octets (RFC 2866 §5.5)")
	case len(a.UserName) > maxValueLen || len(a.CalledStationID) > maxValueLen || len(a.CallingStationID) > maxValueLen:
		return nil, errors.New("radius: attribute longer than 253 octets")
	case a.FramedIPAddress.IsValid() && !a.FramedIPAddress.Is4():
		return nil, errors.New("radius: Framed-IP-Address must be IPv4")
	}
	if err := nas.validate(); err != nil {
		return nil, err
	}
	p := &radius.Packet{Code: radius.CodeAccountingRequest, Identifier: id, Secret: secret.b}
	err := errors.Join(
		rfc2866.AcctStatusType_Set(p, a.Status),
		rfc2866.AcctSessionID_SetString(p, a.SessionID),
		nas.add(p),
		rfc2865.ServiceType_Set(p, rfc2865.ServiceType_Value_FramedUser),
		rfc2865.NASPortType_Set(p, rfc2865.NASPortType_Value_Virtual),
		rfc2866.AcctAuthentic_Set(p, rfc2866.AcctAuthentic_Value_RADIUS),
	)
	if a.UserName != "" {
		err = errors.Join(err, rfc2865.UserName_SetString(p, a.UserName))
	}
	if a.FramedIPAddress.IsValid() {
		ip := a.FramedIPAddress.As4()
		err = errors.Join(err, rfc2865.FramedIPAddress_Set(p, net.IP(ip[:])))
	}
	for _, c := range a.Class {
		err = errors.Join(err, rfc2865.Class_Add(p, c))
	}
	if a.CalledStationID != "" {
		err = errors.Join(err, rfc2865.CalledStationID_SetString(p, a.CalledStationID))
	}
	if a.CallingStationID != "" {
		err = errors.Join(err, rfc2865.CallingStationID_SetString(p, a.CallingStationID))
	}
	if a.Status != AcctStart {
		err = errors.Join(err,
			rfc2866.AcctInputOctets_Set(p, rfc2866.AcctInputOctets(uint32(a.InputOctets))),
			rfc2869.AcctInputGigawords_Set(p, rfc2869.AcctInputGigawords(uint32(a.InputOctets>>32))),
			rfc2866.AcctOutputOctets_Set(p, rfc2866.AcctOutputOctets(uint32(a.OutputOctets))),
			rfc2869.AcctOutputGigawords_Set(p, rfc2869.AcctOutputGigawords(uint32(a.OutputOctets>>32))),
			rfc2866.AcctInputPackets_Set(p, rfc2866.AcctInputPackets(uint32(a.InputPackets))),
			rfc2866.AcctOutputPackets_Set(p, rfc2866.AcctOutputPackets(uint32(a.OutputPackets))),
			rfc2866.AcctSessionTime_Set(p, rfc2866.AcctSessionTime(uint32(a.SessionTime/time.Second))),
		)
	}
	if a.Status == AcctStop {
		cause := a.TerminateCause
		if cause == 0 {
			cause = rfc2866.AcctTerminateCause_Value_UserRequest
		}
		err = errors.Join(err, rfc2866.AcctTerminateCause_Set(p, cause))
	}
	if err != nil {
		return nil, fmt.Errorf("radius: encoding Accounting-Request: %w", err)
	}
	b, err := p.Encode()
	if err != nil {
		return nil, fmt.Errorf("radius: encoding Accounting-Request: %w", err)
	}
	return b, nil
}

// DecodeAccountingResponse checks b as the Accounting-Response to request
// (RFC 2866 §4.2: its authenticator is computed as an Access reply's).
// An error means the reply is to be dropped silently.
func DecodeAccountingResponse(b, request []byte, secret Secret) error {
	pkt, err := verifyReply(b, request, secret.b, false)
	if err != nil {
		return err
	}
	if Code(pkt[0]) != radius.CodeAccountingResponse {
		return fmt.Errorf("%w: code %d in reply to an Accounting-Request", ErrMalformed, pkt[0])
	}
	return nil
}
