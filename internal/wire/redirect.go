package wire

import (
	"fmt"
	"net/netip"
)

// GWIdentType is the GW Ident Type of REDIRECT and REDIRECTED_FROM (RFC
// 5685 §9.2, §9.3).
type GWIdentType uint8

const (
	GWIdentIPv4 GWIdentType = 1
	GWIdentIPv6 GWIdentType = 2
	GWIdentFQDN GWIdentType = 3 // REDIRECT only (§9.2)
)

// Redirect is the data of a REDIRECT notify (RFC 5685 §9.2): the new
// gateway, by address or by name, and the Nonce Data, which is present
// only in an IKE_SA_INIT response (the initiator's Ni).
type Redirect struct {
	GW    netip.Addr // an IPv4 or IPv6 identity
	FQDN  string     // a GWIdentFQDN identity (§9.2), not resolved here
	Nonce []byte     // nil when absent; aliases the notify's data
}

// The bounds of the Nonce Data (§9.2: "between 16 and 256 bytes", as Ni,
// RFC 7296 §3.9).
const (
	minRedirectNonce = 16
	maxRedirectNonce = 256
)

// appendGWIdent appends a GW Ident Type, GW Ident Len and an address
// identity (§9.2); an IPv4-mapped IPv6 address is sent as IPv4.
func appendGWIdent(b []byte, a netip.Addr) ([]byte, error) {
	a = a.Unmap()
	switch {
	case a.Is4():
		v := a.As4()
		return append(append(b, byte(GWIdentIPv4), 4), v[:]...), nil
	case a.Is6() && a.Zone() == "":
		v := a.As16()
		return append(append(b, byte(GWIdentIPv6), 16), v[:]...), nil
	}
	return nil, fmt.Errorf("ikev2: %v is not an IPv4 or IPv6 gateway address", a)
}

// MarshalRedirect is REDIRECT data for gateway gw, with nonce (the
// initiator's Ni) when answering an IKE_SA_INIT request and nil
// otherwise (RFC 5685 §9.2).
func MarshalRedirect(gw netip.Addr, nonce []byte) ([]byte, error) {
	return Redirect{GW: gw, Nonce: nonce}.Marshal()
}

// Marshal encodes r: an FQDN identity when FQDN is set, else GW's
// address, then the Nonce Data if any (§9.2).
func (r Redirect) Marshal() ([]byte, error) {
	if r.Nonce != nil && (len(r.Nonce) < minRedirectNonce || len(r.Nonce) > maxRedirectNonce) {
		return nil, fmt.Errorf("ikev2: REDIRECT nonce data of %d octets, must be %d to %d", len(r.Nonce), minRedirectNonce, maxRedirectNonce)
	}
	b := make([]byte, 0, 18+len(r.FQDN)+len(r.Nonce))
	var err error
	if r.FQDN != "" {
		if len(r.FQDN) > 255 || !isHostname([]byte(r.FQDN)) {
			return nil, fmt.Errorf("ikev2: %q is not a gateway host name", r.FQDN)
		}
		b = append(append(b, byte(GWIdentFQDN), byte(len(r.FQDN))), r.FQDN...)
	} else if b, err = appendGWIdent(b, r.GW); err != nil {
		return nil, err
	}
	return append(b, r.Nonce...), nil
}

// MarshalRedirectedFrom is REDIRECTED_FROM data naming the gateway that
// redirected us (RFC 5685 §9.3: an address only).
func MarshalRedirectedFrom(gw netip.Addr) ([]byte, error) {
	return appendGWIdent(nil, gw)
}

// parseGWIdent reads the GW Ident Type, GW Ident Len and identity at
// the start of d and returns what follows it.
func parseGWIdent(d []byte, what string, fqdnOK bool) (Redirect, []byte, error) {
	var r Redirect
	if len(d) < 2 {
		return r, nil, fmt.Errorf("ikev2: %s data of %d octets has no GW identity", what, len(d))
	}
	t, n := GWIdentType(d[0]), int(d[1])
	if 2+n > len(d) {
		return r, nil, fmt.Errorf("ikev2: %s GW Ident Len %d runs past the %d octets of data", what, n, len(d))
	}
	id, rest := d[2:2+n], d[2+n:]
	switch {
	case t == GWIdentIPv4 && n == 4:
		r.GW = netip.AddrFrom4([4]byte(id))
	case t == GWIdentIPv6 && n == 16:
		r.GW = netip.AddrFrom16([16]byte(id))
		if r.GW.Is4In6() {
			return r, nil, fmt.Errorf("ikev2: %s IPv6 identity %v is an IPv4-mapped address", what, r.GW)
		}
	case t == GWIdentFQDN && fqdnOK && n > 0:
		if !isHostname(id) {
			return r, nil, fmt.Errorf("ikev2: %s FQDN identity is not a host name", what)
		}
		r.FQDN = string(id)
	case t == GWIdentIPv4 || t == GWIdentIPv6 || t == GWIdentFQDN && fqdnOK:
		return r, nil, fmt.Errorf("ikev2: %s GW identity of type %d is %d octets long", what, t, n)
	default:
		return r, nil, fmt.Errorf("ikev2: %s GW Ident Type %d is not defined", what, t)
	}
	return r, rest, nil
}

// isHostname accepts the octets of a DNS name (letters, digits, hyphens
// and dots), which is all an FQDN identity may hold (RFC 7296 §3.5).
func isHostname(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return len(b) > 0
}

// ParseRedirect decodes REDIRECT data (RFC 5685 §9.2). The Nonce Data,
// when present, must be 16 to 256 octets.
func ParseRedirect(d []byte) (Redirect, error) {
	r, rest, err := parseGWIdent(d, "REDIRECT", true)
	if err != nil {
		return Redirect{}, err
	}
	if len(rest) > 0 {
		if len(rest) < minRedirectNonce || len(rest) > maxRedirectNonce {
			return Redirect{}, fmt.Errorf("ikev2: REDIRECT nonce data of %d octets, must be %d to %d", len(rest), minRedirectNonce, maxRedirectNonce)
		}
		r.Nonce = rest
	}
	return r, nil
}

// ParseRedirectedFrom decodes REDIRECTED_FROM data (RFC 5685 §9.3): an
// IPv4 or IPv6 address and nothing after it.
func ParseRedirectedFrom(d []byte) (netip.Addr, error) {
	r, rest, err := parseGWIdent(d, "REDIRECTED_FROM", false)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(rest) != 0 {
		return netip.Addr{}, fmt.Errorf("ikev2: REDIRECTED_FROM has %d octets after its GW identity", len(rest))
	}
	return r.GW, nil
}
