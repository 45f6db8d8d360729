package wire

import (
	"encoding/binary"
	"fmt"
)

// SA is the Security Association payload (RFC 7296 §3.3): proposals in
// order of preference.
type SA struct {
	Proposals []Proposal
}

// Proposal is a Proposal substructure (§3.3.1). SPI is empty in
// IKE_SA_INIT, 8 octets when rekeying an IKE SA and 4 for ESP/AH.
type Proposal struct {
	Number     uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []Transform
}

// Transform is a Transform substructure (§3.3.2). ID holds the type's ID
// space: EncrID, PRFID, IntegID, DHGroup or ESNID.
type Transform struct {
	Type       TransformType
	ID         uint16
	Attributes []Attribute
}

// Attribute is a transform attribute (§3.3.5). TV attributes carry a 2-octet
// value in the header (AF=1); the others are TLV.
type Attribute struct {
	Type  uint16 // without the AF bit
	TV    bool
	Value []byte // 2 octets when TV
}

const (
	lastSubstruc      = 0
	moreProposals     = 2
	moreTransforms    = 3
	proposalHeaderLen = 8
	transformLen      = 8
	attrFormatTV      = 0x8000
)

// KeyLength returns the Key Length attribute in bits, if present (§3.3.5).
func (t *Transform) KeyLength() (int, bool) {
	for _, a := range t.Attributes {
		if a.Type == AttrKeyLength && a.TV && len(a.Value) == 2 {
			return int(binary.BigEndian.Uint16(a.Value)), true
		}
	}
	return 0, false
}

// KeyLengthAttr makes a Key Length attribute of bits.
func KeyLengthAttr(bits int) Attribute {
	return Attribute{Type: AttrKeyLength, TV: true, Value: []byte{byte(bits >> 8), byte(bits)}}
}

func (s *SA) Type() PayloadType { return PayloadSA }

func (s *SA) appendBody(b []byte) ([]byte, error) {
	if len(s.Proposals) == 0 {
		return nil, fmt.Errorf("SA payload without proposals")
	}
	for i := range s.Proposals {
		p := &s.Proposals[i]
		more := byte(moreProposals)
		if i == len(s.Proposals)-1 {
			more = lastSubstruc
		}
		if len(p.SPI) > 255 {
			return nil, fmt.Errorf("proposal %d: SPI of %d octets", p.Number, len(p.SPI))
		}
		if len(p.Transforms) > 255 {
			return nil, fmt.Errorf("proposal %d: %d transforms exceed 255", p.Number, len(p.Transforms))
		}
		start := len(b)
		b = append(b, more, 0, 0, 0, p.Number, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
		b = append(b, p.SPI...)
		for j := range p.Transforms {
			t := &p.Transforms[j]
			tmore := byte(moreTransforms)
			if j == len(p.Transforms)-1 {
				tmore = lastSubstruc
			}
			tstart := len(b)
			b = append(b, tmore, 0, 0, 0, byte(t.Type), 0, byte(t.ID>>8), byte(t.ID))
			for _, a := range t.Attributes {
				if a.Type&attrFormatTV != 0 {
					return nil, fmt.Errorf("attribute type %#x uses the AF bit", a.Type)
				}
				if a.TV {
					if len(a.Value) != 2 {
						return nil, fmt.Errorf("TV attribute %d needs a 2-octet value, has %d", a.Type, len(a.Value))
					}
					b = binary.BigEndian.AppendUint16(b, a.Type|attrFormatTV)
					b = append(b, a.Value...)
					continue
				}
				if len(a.Value) > 0xffff {
					return nil, fmt.Errorf("TLV attribute %d of %d octets", a.Type, len(a.Value))
				}
				b = binary.BigEndian.AppendUint16(b, a.Type)
				b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
				b = append(b, a.Value...)
			}
			if n := len(b) - tstart; n > 0xffff {
				return nil, fmt.Errorf("transform of %d octets", n)
			} else {
				binary.BigEndian.PutUint16(b[tstart+2:], uint16(n))
			}
		}
		n := len(b) - start
		if n > 0xffff {
			return nil, fmt.Errorf("proposal %d of %d octets", p.Number, n)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	}
	return b, nil
}

// parseSA checks every substructure length against its container and the
// Last Substruc markers against the actual count (§3.3).
func parseSA(body []byte) (*SA, error) {
	s := &SA{}
	off := 0
	for {
		if len(body)-off < proposalHeaderLen {
			return nil, bad(off, "proposal header needs %d octets, %d left", proposalHeaderLen, len(body)-off)
		}
		more := body[off]
		plen := int(binary.BigEndian.Uint16(body[off+2:]))
		if more != lastSubstruc && more != moreProposals {
			return nil, bad(off, "proposal Last Substruc is %d, must be 0 or 2", more)
		}
		if plen < proposalHeaderLen || plen > len(body)-off {
			return nil, bad(off+2, "proposal length %d outside 8..%d", plen, len(body)-off)
		}
		pb := body[off : off+plen]
		p := Proposal{Number: pb[4], Protocol: ProtocolID(pb[5])}
		spiSize, ntrans := int(pb[6]), int(pb[7])
		if proposalHeaderLen+spiSize > plen {
			return nil, bad(off+6, "SPI size %d does not fit in proposal of %d octets", spiSize, plen)
		}
		p.SPI = pb[proposalHeaderLen : proposalHeaderLen+spiSize]
		toff := proposalHeaderLen + spiSize
		// The count is checked against the encoded transforms, so a peer
		// cannot make us allocate for transforms it did not send.
		if ntrans > (plen-toff)/transformLen {
			return nil, bad(off+7, "proposal claims %d transforms but has room for %d", ntrans, (plen-toff)/transformLen)
		}
		p.Transforms = make([]Transform, 0, ntrans)
		for i := 0; i < ntrans; i++ {
			t, n, err := parseTransform(pb[toff:], i == ntrans-1)
			if err != nil {
				be := err.(*bodyError)
				be.at += off + toff
				return nil, be
			}
			p.Transforms = append(p.Transforms, t)
			toff += n
		}
		if toff != plen {
			return nil, bad(off+toff, "%d octets after the last transform of proposal %d", plen-toff, p.Number)
		}
		s.Proposals = append(s.Proposals, p)
		off += plen
		if more == lastSubstruc {
			break
		}
	}
	if off != len(body) {
		return nil, bad(off, "%d octets after the last proposal", len(body)-off)
	}
	return s, nil
}

func parseTransform(b []byte, last bool) (Transform, int, error) {
	var t Transform
	if len(b) < transformLen {
		return t, 0, bad(0, "transform header needs %d octets, %d left", transformLen, len(b))
	}
	more := b[0]
	tlen := int(binary.BigEndian.Uint16(b[2:]))
	switch {
	case more != lastSubstruc && more != moreTransforms:
		return t, 0, bad(0, "transform Last Substruc is %d, must be 0 or 3", more)
	case last != (more == lastSubstruc):
		return t, 0, bad(0, "transform Last Substruc %d disagrees with the proposal's transform count", more)
	case tlen < transformLen || tlen > len(b):
		return t, 0, bad(2, "transform length %d outside 8..%d", tlen, len(b))
	}
	t.Type = TransformType(b[4])
	t.ID = binary.BigEndian.Uint16(b[6:])
	off := transformLen
	for off < tlen {
		if tlen-off < 4 {
			return t, 0, bad(off, "attribute header needs 4 octets, %d left", tlen-off)
		}
		typ := binary.BigEndian.Uint16(b[off:])
		if typ&attrFormatTV != 0 {
			t.Attributes = append(t.Attributes, Attribute{Type: typ &^ attrFormatTV, TV: true, Value: b[off+2 : off+4]})
			off += 4
			continue
		}
		alen := int(binary.BigEndian.Uint16(b[off+2:]))
		if alen > tlen-off-4 {
			return t, 0, bad(off+2, "attribute length %d runs past the transform", alen)
		}
		t.Attributes = append(t.Attributes, Attribute{Type: typ, Value: b[off+4 : off+4+alen]})
		off += 4 + alen
	}
	return t, tlen, nil
}
