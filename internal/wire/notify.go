package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Notify is the Notify payload (RFC 7296 §3.10). IKE-level notifies have
// Protocol 0 and no SPI; REKEY_SA, INVALID_SELECTORS and CHILD_SA_NOT_FOUND
// carry a 4-octet ESP/AH SPI.
type Notify struct {
	Protocol   ProtocolID
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

// NewNotify makes an IKE-level notify (Protocol 0, no SPI), the form of every
// RFC 4555 and RFC 7791 notify.
func NewNotify(t NotifyType, data []byte) *Notify { return &Notify{NotifyType: t, Data: data} }

func (n *Notify) Type() PayloadType { return PayloadNotify }

func (n *Notify) appendBody(b []byte) ([]byte, error) {
	if len(n.SPI) > 255 {
		return nil, fmt.Errorf("notify %s with a %d-octet SPI", n.NotifyType, len(n.SPI))
	}
	b = append(b, byte(n.Protocol), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(n.NotifyType))
	return append(append(b, n.SPI...), n.Data...), nil
}

func parseNotify(body []byte) (*Notify, error) {
	if len(body) < 4 {
		return nil, bad(0, "Notify body of %d octets is shorter than 4", len(body))
	}
	size := int(body[1])
	if 4+size > len(body) {
		return nil, bad(1, "SPI size %d runs past the notify body of %d octets", size, len(body))
	}
	return &Notify{
		Protocol:   ProtocolID(body[0]),
		NotifyType: NotifyType(binary.BigEndian.Uint16(body[2:])),
		SPI:        body[4 : 4+size],
		Data:       body[4+size:],
	}, nil
}

// Typed views of notification data. Each checks the exact size the RFC
// gives, so the engine can answer INVALID_SYNTAX on a malformed value.

// Uint16 returns 2-octet data: INVALID_KE_PAYLOAD's group (RFC 7296 §3.10.1).
func (n *Notify) Uint16() (uint16, error) {
	if len(n.Data) != 2 {
		return 0, n.sizeErr("2")
	}
	return binary.BigEndian.Uint16(n.Data), nil
}

// Uint32 returns 4-octet data: SET_WINDOW_SIZE, INVALID_MESSAGE_ID.
func (n *Notify) Uint32() (uint32, error) {
	if len(n.Data) != 4 {
		return 0, n.sizeErr("4")
	}
	return binary.BigEndian.Uint32(n.Data), nil
}

// Addr returns ADDITIONAL_IP4_ADDRESS (4 octets) or ADDITIONAL_IP6_ADDRESS
// (16 octets) data (RFC 4555 §4).
func (n *Notify) Addr() (netip.Addr, error) {
	switch {
	case n.NotifyType == NotifyAdditionalIP4Address && len(n.Data) == 4:
		return netip.AddrFrom4([4]byte(n.Data)), nil
	case n.NotifyType == NotifyAdditionalIP6Address && len(n.Data) == 16:
		return netip.AddrFrom16([16]byte(n.Data)), nil
	}
	return netip.Addr{}, n.sizeErr("4 (IPv4) or 16 (IPv6)")
}

// AddrNotify makes ADDITIONAL_IP4_ADDRESS or ADDITIONAL_IP6_ADDRESS for a.
func AddrNotify(a netip.Addr) *Notify {
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		return NewNotify(NotifyAdditionalIP4Address, b[:])
	}
	b := a.As16()
	return NewNotify(NotifyAdditionalIP6Address, b[:])
}

// Hashes returns SIGNATURE_HASH_ALGORITHMS data (RFC 7427 §4).
func (n *Notify) Hashes() ([]HashAlgorithm, error) {
	if len(n.Data)%2 != 0 {
		return nil, n.sizeErr("a multiple of 2")
	}
	out := make([]HashAlgorithm, len(n.Data)/2)
	for i := range out {
		out[i] = HashAlgorithm(binary.BigEndian.Uint16(n.Data[2*i:]))
	}
	return out, nil
}

// NoNATsAllowed is the NO_NATS_ALLOWED data (RFC 4555 §4): the sender's
// view of the addresses and ports of the packet.
type NoNATsAllowed struct {
	Src, Dst netip.AddrPort
}

// NoNATs decodes NO_NATS_ALLOWED data: 12 octets for IPv4, 36 for IPv6.
func (n *Notify) NoNATs() (NoNATsAllowed, error) {
	d := n.Data
	var v NoNATsAllowed
	switch len(d) {
	case 12:
		v.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d[0:4])), binary.BigEndian.Uint16(d[8:]))
		v.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d[4:8])), binary.BigEndian.Uint16(d[10:]))
	case 36:
		v.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(d[0:16])), binary.BigEndian.Uint16(d[32:]))
		v.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(d[16:32])), binary.BigEndian.Uint16(d[34:]))
	default:
		return v, n.sizeErr("12 (IPv4) or 36 (IPv6)")
	}
	return v, nil
}

// Marshal encodes NO_NATS_ALLOWED data; both addresses must be one family.
func (v NoNATsAllowed) Marshal() ([]byte, error) {
	s, d := v.Src.Addr().Unmap(), v.Dst.Addr().Unmap()
	var b []byte
	switch {
	case s.Is4() && d.Is4():
		s4, d4 := s.As4(), d.As4()
		b = append(append(b, s4[:]...), d4[:]...)
	case s.Is6() && d.Is6():
		s16, d16 := s.As16(), d.As16()
		b = append(append(b, s16[:]...), d16[:]...)
	default:
		return nil, fmt.Errorf("ikev2: NO_NATS_ALLOWED needs two addresses of one family, got %v and %v", s, d)
	}
	b = binary.BigEndian.AppendUint16(b, v.Src.Port())
	return binary.BigEndian.AppendUint16(b, v.Dst.Port()), nil
}

func (n *Notify) sizeErr(want string) error {
	return fmt.Errorf("ikev2: %s notify data is %d octets, must be %s", n.NotifyType, len(n.Data), want)
}
