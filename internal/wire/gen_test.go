package wire

import (
	"math/rand/v2"
	"net/netip"
)

// gen produces random but valid payloads for property tests.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g *gen) bytes(min, max int) []byte {
	n := min
	if max > min {
		n += g.r.IntN(max - min + 1)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

func (g *gen) addr4() netip.Addr { return netip.AddrFrom4([4]byte(g.bytes(4, 4))) }
func (g *gen) addr6() netip.Addr { return netip.AddrFrom16([16]byte(g.bytes(16, 16))) }

func (g *gen) sa() *SA {
	s := &SA{}
	for i := 0; i < 1+g.r.IntN(4); i++ {
		p := Proposal{Number: uint8(i + 1), Protocol: ProtocolID(1 + g.r.IntN(3))}
		p.SPI = g.bytes(0, 8)
		for j := 0; j < 1+g.r.IntN(6); j++ {
			t := Transform{Type: TransformType(1 + g.r.IntN(5)), ID: uint16(g.r.IntN(40))}
			if g.r.IntN(2) == 0 {
				t.Attributes = append(t.Attributes, KeyLengthAttr(128*(1+g.r.IntN(2))))
			}
			if g.r.IntN(5) == 0 {
				t.Attributes = append(t.Attributes, Attribute{Type: uint16(g.r.IntN(100)), Value: g.bytes(0, 9)})
			}
			p.Transforms = append(p.Transforms, t)
		}
		s.Proposals = append(s.Proposals, p)
	}
	return s
}

func (g *gen) selector() Selector {
	s := Selector{IPProtocol: uint8(g.r.IntN(256)), StartPort: uint16(g.r.Uint32()), EndPort: uint16(g.r.Uint32())}
	switch g.r.IntN(5) {
	case 0:
		s.TSType = TSType(9 + g.r.IntN(3))
		s.Raw = g.bytes(0, 20)
		s.StartPort, s.EndPort = 0, 0
	case 1, 2:
		s.TSType, s.Start, s.End = TSIPv4AddrRange, g.addr4(), g.addr4()
	default:
		s.TSType, s.Start, s.End = TSIPv6AddrRange, g.addr6(), g.addr6()
	}
	return s
}

var cpTypes = []CPAttrType{CPInternalIP4Address, CPInternalIP4Netmask, CPInternalIP4DNS, CPInternalIP6Address,
	CPInternalIP6DNS, CPInternalIP4Subnet, CPApplicationVersion, CPSupportedAttributes, 99}

func (g *gen) cpValue(t CPAttrType) []byte {
	if g.r.IntN(3) == 0 {
		return nil
	}
	switch t {
	case CPInternalIP4Address, CPInternalIP4Netmask, CPInternalIP4DNS:
		return g.bytes(4, 4)
	case CPInternalIP6Address:
		return g.bytes(17, 17)
	case CPInternalIP6DNS:
		return g.bytes(16, 16)
	case CPInternalIP4Subnet:
		return g.bytes(8, 8)
	case CPSupportedAttributes:
		return g.bytes(2, 2)
	}
	return g.bytes(0, 30)
}

// payload returns one random payload of any plain type.
func (g *gen) payload() Payload {
	switch g.r.IntN(16) {
	case 0:
		return g.sa()
	case 1:
		return &KE{Group: DHGroup(g.r.IntN(40)), Data: g.bytes(1, 300)}
	case 2:
		return &ID{Responder: g.r.IntN(2) == 0, IDType: IDType(1 + g.r.IntN(11)), Data: g.bytes(1, 40)}
	case 3:
		return &Cert{Encoding: CertEncoding(1 + g.r.IntN(14)), Data: g.bytes(1, 200)}
	case 4:
		return &CertReq{Encoding: CertX509Signature, Data: g.bytes(0, 60)}
	case 5:
		return &Auth{Method: AuthMethod(1 + g.r.IntN(14)), Data: g.bytes(1, 100)}
	case 6:
		return &Nonce{Data: g.bytes(MinNonceLen, MaxNonceLen)}
	case 7:
		n := &Notify{NotifyType: NotifyType(g.r.Uint32()), Data: g.bytes(0, 40)}
		if g.r.IntN(3) == 0 {
			n.Protocol, n.SPI = ProtoESP, g.bytes(4, 4)
		}
		return n
	case 8:
		if g.r.IntN(3) == 0 {
			return &Delete{Protocol: ProtoIKE}
		}
		d := &Delete{Protocol: ProtoESP}
		for i := 0; i < 1+g.r.IntN(5); i++ {
			d.SPIs = append(d.SPIs, g.r.Uint32())
		}
		return d
	case 9:
		return &VendorID{Data: g.bytes(0, 30)}
	case 10:
		t := &TS{Responder: g.r.IntN(2) == 0}
		for i := 0; i < 1+g.r.IntN(4); i++ {
			t.Selectors = append(t.Selectors, g.selector())
		}
		return t
	case 11:
		c := &CP{CFGType: CFGType(1 + g.r.IntN(4))}
		for i := 0; i < g.r.IntN(6); i++ {
			t := cpTypes[g.r.IntN(len(cpTypes))]
			c.Attributes = append(c.Attributes, CPAttribute{Type: t, Value: g.cpValue(t)})
		}
		return c
	case 12:
		if g.r.IntN(2) == 0 {
			return &EAP{Code: EAPSuccess, Identifier: uint8(g.r.Uint32())}
		}
		return &EAP{Code: EAPResponse, Identifier: uint8(g.r.Uint32()), MethodType: uint8(g.r.Uint32()), Data: g.bytes(0, 50)}
	case 13:
		return &Unknown{PayloadType: PayloadType(60 + g.r.IntN(100)), Body: g.bytes(0, 20)}
	case 15:
		return &PuzzleSolution{Data: g.bytes(PuzzleKeys*(1+g.r.IntN(8)), 0)}
	}
	return NewNotify(NotifyCloneIKESASupported, nil)
}

func (g *gen) chain() []Payload {
	ps := make([]Payload, 1+g.r.IntN(8))
	for i := range ps {
		ps[i] = g.payload()
	}
	return ps
}
