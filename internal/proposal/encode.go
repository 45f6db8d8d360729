package proposal

import (
	"slices"

	"github.com/mifike/mifike/internal/wire"
)

// Wire builds the Proposal substructure numbered num (RFC 7296 §3.3.1).
// spi is empty in IKE_SA_INIT, 8 octets for an IKE SA rekey and 4 for ESP.
// IKE_AUTH Child SA proposals omit DH because that exchange has no KE
// payload (§1.2): pass withDH false there. An ESP proposal always carries
// an ESN transform, NO_ESN when p.ESN is empty, since ESN is mandatory for
// ESP (§3.3.3).
func (p Proposal) Wire(num uint8, spi []byte, withDH bool) wire.Proposal {
	wp := wire.Proposal{Number: num, Protocol: p.Protocol}
	if len(spi) > 0 {
		wp.SPI = slices.Clone(spi)
	}
	for _, a := range p.Encr {
		wp.Transforms = append(wp.Transforms, encrTransform(a))
	}
	if p.Protocol == wire.ProtoIKE {
		for _, f := range p.PRF {
			wp.Transforms = append(wp.Transforms, wire.Transform{Type: wire.TransformPRF, ID: uint16(f)})
		}
	}
	for _, i := range p.Integ {
		wp.Transforms = append(wp.Transforms, wire.Transform{Type: wire.TransformINTEG, ID: uint16(i)})
	}
	if withDH {
		for _, g := range p.DH {
			wp.Transforms = append(wp.Transforms, wire.Transform{Type: wire.TransformDH, ID: uint16(g)})
		}
	}
	if p.Protocol == wire.ProtoESP {
		for _, e := range esnOrDefault(p.ESN) {
			wp.Transforms = append(wp.Transforms, wire.Transform{Type: wire.TransformESN, ID: uint16(e)})
		}
	}
	return wp
}

// WireSA builds an SA payload from ps, numbered 1, 2, ... in order
// (RFC 7296 §3.3.1). Proposal Num is one octet, so at most 255 proposals
// are encoded; the list parsers never return more.
func WireSA(ps []Proposal, spi []byte, withDH bool) *wire.SA {
	sa := &wire.SA{}
	for i, p := range ps {
		if i == maxProposals {
			break
		}
		sa.Proposals = append(sa.Proposals, p.Wire(uint8(i+1), spi, withDH))
	}
	return sa
}

// encrTransform carries the Key Length attribute on AES only: it MUST be
// present for variable-length keys and MUST NOT be for fixed-length ones
// (RFC 7296 §3.3.5).
func encrTransform(a Algorithm) wire.Transform {
	t := wire.Transform{Type: wire.TransformENCR, ID: uint16(a.Encr)}
	if aesFamily(a.Encr) {
		t.Attributes = []wire.Attribute{wire.KeyLengthAttr(a.KeyBits)}
	}
	return t
}

func esnOrDefault(esn []wire.ESNID) []wire.ESNID {
	if len(esn) == 0 {
		return []wire.ESNID{wire.ESNNo}
	}
	return esn
}
