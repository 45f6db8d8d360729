package proposal

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/mifike/mifike/internal/wire"
)

// Negotiated is the suite of one accepted proposal: one algorithm per
// transform type (RFC 7296 §2.7). Integ is IntegNone with AEAD, DH is
// DHNone when no group was negotiated, ESN is meaningful for ESP only.
// SPI is the SPI carried by the proposal it came from: the peer's for
// Select, the responder's for CheckResponse.
type Negotiated struct {
	Number   uint8
	Protocol wire.ProtocolID
	SPI      []byte
	Encr     Algorithm
	PRF      wire.PRFID
	Integ    wire.IntegID
	DH       wire.DHGroup
	ESN      wire.ESNID
}

// String gives the suite in config notation, e.g.
// "aes128gcm16-prfsha256-x25519" or "aes128-sha256-esn", so logs read like
// the configuration that produced them.
// impliedPRF is the PRF an integrity keyword stands for in the notation.
var impliedPRF = map[wire.IntegID]wire.PRFID{
	wire.IntegHMACSHA196: wire.PRFHMACSHA1, wire.IntegHMACSHA2256128: wire.PRFHMACSHA2256,
	wire.IntegHMACSHA2384192: wire.PRFHMACSHA2384, wire.IntegHMACSHA2512256: wire.PRFHMACSHA2512,
}

func (n Negotiated) String() string {
	parts := []string{n.Encr.String()}
	if n.Integ != wire.IntegNone {
		parts = append(parts, name(kindInteg, uint16(n.Integ), 0))
	}
	// The PRF is written only when the integrity algorithm does not
	// imply it, as in swanctl.conf ("aes128-sha256-x25519").
	if n.Protocol == wire.ProtoIKE && (n.Integ == wire.IntegNone || impliedPRF[n.Integ] != n.PRF) {
		parts = append(parts, name(kindPRF, uint16(n.PRF), 0))
	}
	if n.DH != wire.DHNone {
		parts = append(parts, name(kindDH, uint16(n.DH), 0))
	}
	if n.Protocol == wire.ProtoESP && n.ESN == wire.ESNYes {
		parts = append(parts, name(kindESN, uint16(n.ESN), 0))
	}
	return strings.Join(parts, "-")
}

// Select is the responder's choice (RFC 7296 §2.7, §3.3.6). It returns the
// proposal to send back in SAr (the offered Proposal Num, exactly one
// transform per offered type, attributes copied unchanged) and the suite.
// The returned proposal has no SPI: the caller sets its own (§3.3.1 "the
// sending entity's SPI"); Negotiated.SPI is the peer's.
//
// With preferLocal the local proposals are tried in our order and the
// first offered proposal that matches wins (strongSwan's responder
// default); otherwise the peer's order decides. Within a transform type
// the same order applies. Only transforms listed in local and supported by
// the crypto layer are ever chosen, with the exact key length we list.
//
// An offered proposal is acceptable when every transform type it holds
// has a transform we accept (AND across types, OR within one), and it has
// the mandatory types of §3.3.3. A transform type outside those defined
// for the protocol makes the proposal unacceptable; an unknown transform
// ID or attribute makes only that transform unacceptable (§3.3.6). An AEAD
// cipher is only chosen with no INTEG transform or INTEG NONE (§3.3). A
// missing ESN transform in ESP is read as NO_ESN for tolerance, although
// §3.3.3 makes ESN mandatory.
//
// DH: an IKE proposal must negotiate a real group. For ESP, local
// proposals with DH groups require PFS (the offer must contain one of
// them); local proposals without groups accept an offer without DH or
// with DH NONE. Responders in IKE_AUTH pass WithoutDH(local) (§1.2).
// dhHint is the group of the peer's KE payload, or DHNone: within the
// chosen proposal it is preferred when acceptable, which saves an
// INVALID_KE_PAYLOAD round trip. If Negotiated.DH differs from the KE
// group the caller answers INVALID_KE_PAYLOAD (§1.2, §1.3); if it is
// DHNone the KE payload is ignored (§3.3.6).
func Select(local []Proposal, offered *wire.SA, protocol wire.ProtocolID, preferLocal bool, dhHint wire.DHGroup) (wire.Proposal, Negotiated, bool) {
	if offered == nil {
		return wire.Proposal{}, Negotiated{}, false
	}
	if preferLocal {
		for li := range local {
			for oi := range offered.Proposals {
				if r, n, ok := match(&local[li], &offered.Proposals[oi], protocol, true, dhHint); ok {
					return r, n, true
				}
			}
		}
	} else {
		for oi := range offered.Proposals {
			for li := range local {
				if r, n, ok := match(&local[li], &offered.Proposals[oi], protocol, false, dhHint); ok {
					return r, n, true
				}
			}
		}
	}
	return wire.Proposal{}, Negotiated{}, false
}

// byType indexes transforms by type; validType keeps the index in range.
type byType [wire.TransformESN + 1][]*wire.Transform

// validType reports whether transform type t belongs in a proposal of
// proto (RFC 7296 §3.3.3).
func validType(proto wire.ProtocolID, t wire.TransformType) bool {
	switch t {
	case wire.TransformENCR, wire.TransformINTEG, wire.TransformDH:
		return proto == wire.ProtoIKE || proto == wire.ProtoESP
	case wire.TransformPRF:
		return proto == wire.ProtoIKE
	case wire.TransformESN:
		return proto == wire.ProtoESP
	}
	return false
}

// spiSizeOK: IKE proposals carry no SPI in IKE_SA_INIT and 8 octets in a
// rekey, ESP always 4 (RFC 7296 §3.3.1). Which IKE size fits the exchange
// is the caller's check.
func spiSizeOK(proto wire.ProtocolID, n int) bool {
	if proto == wire.ProtoIKE {
		return n == 0 || n == 8
	}
	return n == 4
}

// candidates are the local transforms in wire form, limited to what the
// crypto layer supports, so an offer can be compared octet for octet.
type candidates struct {
	encr, prf, integ, dh, esn []wire.Transform
}

func candidatesOf(l *Proposal) candidates {
	var c candidates
	for _, a := range l.Encr {
		if Supported(wire.TransformENCR, uint16(a.Encr), a.KeyBits) {
			c.encr = append(c.encr, encrTransform(a))
		}
	}
	for _, f := range l.PRF {
		if Supported(wire.TransformPRF, uint16(f), 0) {
			c.prf = append(c.prf, wire.Transform{Type: wire.TransformPRF, ID: uint16(f)})
		}
	}
	for _, i := range l.Integ {
		if Supported(wire.TransformINTEG, uint16(i), 0) {
			c.integ = append(c.integ, wire.Transform{Type: wire.TransformINTEG, ID: uint16(i)})
		}
	}
	for _, g := range l.DH {
		if Supported(wire.TransformDH, uint16(g), 0) {
			c.dh = append(c.dh, wire.Transform{Type: wire.TransformDH, ID: uint16(g)})
		}
	}
	if l.Protocol == wire.ProtoESP && len(l.DH) == 0 {
		// No PFS configured: only "no group" is acceptable (§3.3.3: a
		// proposal may carry NONE instead of omitting the type).
		c.dh = []wire.Transform{{Type: wire.TransformDH, ID: uint16(wire.DHNone)}}
	}
	for _, e := range esnOrDefault(l.ESN) {
		if e == wire.ESNNo || e == wire.ESNYes {
			c.esn = append(c.esn, wire.Transform{Type: wire.TransformESN, ID: uint16(e)})
		}
	}
	return c
}

var integNone = []wire.Transform{{Type: wire.TransformINTEG, ID: uint16(wire.IntegNone)}}

func match(l *Proposal, o *wire.Proposal, proto wire.ProtocolID, preferLocal bool, dhHint wire.DHGroup) (wire.Proposal, Negotiated, bool) {
	var fail wire.Proposal
	if l.Protocol != proto || o.Protocol != proto || !spiSizeOK(proto, len(o.SPI)) {
		return fail, Negotiated{}, false
	}
	var off byType
	for i := range o.Transforms {
		t := &o.Transforms[i]
		if !validType(proto, t.Type) {
			// §3.3.6: a transform type we do not understand makes the
			// whole proposal unacceptable.
			return fail, Negotiated{}, false
		}
		off[t.Type] = append(off[t.Type], t)
	}
	c := candidatesOf(l)
	var chosen byType
	pick := func(tt wire.TransformType, cands []wire.Transform) bool {
		if ts := ordered(off[tt], cands, preferLocal); len(ts) > 0 {
			chosen[tt] = ts[:1]
			return true
		}
		return false
	}

	// ENCR and INTEG depend on each other: an AEAD cipher goes with no
	// INTEG or INTEG NONE only, any other cipher needs a real one (§3.3).
	for _, e := range ordered(off[wire.TransformENCR], c.encr, preferLocal) {
		aead := isAEAD(wire.EncrID(e.ID))
		integ := c.integ
		if aead {
			integ = integNone
		}
		if len(off[wire.TransformINTEG]) == 0 {
			if aead {
				chosen[wire.TransformENCR] = []*wire.Transform{e}
				break
			}
			continue
		}
		if pick(wire.TransformINTEG, integ) {
			chosen[wire.TransformENCR] = []*wire.Transform{e}
			break
		}
	}
	if chosen[wire.TransformENCR] == nil {
		return fail, Negotiated{}, false
	}

	if proto == wire.ProtoIKE && !pick(wire.TransformPRF, c.prf) {
		return fail, Negotiated{}, false
	}

	switch {
	case len(off[wire.TransformDH]) == 0:
		// IKE needs a group (§3.3.3); ESP may go without only if we do
		// not require PFS.
		if proto == wire.ProtoIKE || len(l.DH) > 0 {
			return fail, Negotiated{}, false
		}
	default:
		hinted := false
		if dhHint != wire.DHNone {
			h := wire.Transform{Type: wire.TransformDH, ID: uint16(dhHint)}
			if slices.ContainsFunc(c.dh, func(t wire.Transform) bool { return sameTransform(&t, &h) }) {
				hinted = pick(wire.TransformDH, []wire.Transform{h})
			}
		}
		if !hinted && !pick(wire.TransformDH, c.dh) {
			return fail, Negotiated{}, false
		}
	}

	if proto == wire.ProtoESP && len(off[wire.TransformESN]) > 0 && !pick(wire.TransformESN, c.esn) {
		return fail, Negotiated{}, false
	}
	if proto == wire.ProtoESP && len(off[wire.TransformESN]) == 0 && !slices.ContainsFunc(c.esn, func(t wire.Transform) bool { return t.ID == uint16(wire.ESNNo) }) {
		return fail, Negotiated{}, false
	}

	resp := wire.Proposal{Number: o.Number, Protocol: o.Protocol}
	for _, ts := range chosen {
		if len(ts) > 0 {
			resp.Transforms = append(resp.Transforms, cloneTransform(ts[0]))
		}
	}
	n, err := NegotiatedFrom(resp)
	if err != nil {
		// Unreachable for supported local algorithms; refusing is the
		// safe answer should a hand-built proposal get here.
		return fail, Negotiated{}, false
	}
	n.SPI = slices.Clone(o.SPI)
	return resp, n, true
}

// ordered returns the offered transforms equal to a candidate, in
// preference order: the candidates' order with preferLocal, else the
// offer's. Equality includes attributes, so an unknown or duplicated
// attribute or a different key length never matches (§3.3.6).
func ordered(offered []*wire.Transform, cands []wire.Transform, preferLocal bool) []*wire.Transform {
	var out []*wire.Transform
	if preferLocal {
		for i := range cands {
			for _, t := range offered {
				if sameTransform(t, &cands[i]) && !slices.Contains(out, t) {
					out = append(out, t)
				}
			}
		}
		return out
	}
	for _, t := range offered {
		for i := range cands {
			if sameTransform(t, &cands[i]) {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

func sameTransform(a, b *wire.Transform) bool {
	if a.Type != b.Type || a.ID != b.ID || len(a.Attributes) != len(b.Attributes) {
		return false
	}
	for i := range a.Attributes {
		x, y := &a.Attributes[i], &b.Attributes[i]
		if x.Type != y.Type || x.TV != y.TV || !bytes.Equal(x.Value, y.Value) {
			return false
		}
	}
	return true
}

// cloneTransform copies t, whose attribute values may alias a received
// message buffer.
func cloneTransform(t *wire.Transform) wire.Transform {
	c := wire.Transform{Type: t.Type, ID: t.ID}
	for _, a := range t.Attributes {
		c.Attributes = append(c.Attributes, wire.Attribute{Type: a.Type, TV: a.TV, Value: slices.Clone(a.Value)})
	}
	return c
}

// CheckResponse is the initiator's check of SAr against the SA it sent
// (RFC 7296 §2.7, §3.3.6: the initiator MUST check the accepted offer is
// consistent with one of its proposals, else terminate). resp must hold
// exactly one proposal whose number and protocol name one of ours, with an
// SPI of our SPI's size, exactly one transform of each type we offered in
// that proposal, and each transform identical, attributes included, to
// one we offered. Negotiated.SPI is then the responder's SPI.
func CheckResponse(offered *wire.SA, resp *wire.SA) (Negotiated, error) {
	if offered == nil || len(offered.Proposals) == 0 {
		return Negotiated{}, fmt.Errorf("proposal: no offered SA to check the response against")
	}
	if resp == nil || len(resp.Proposals) != 1 {
		n := 0
		if resp != nil {
			n = len(resp.Proposals)
		}
		return Negotiated{}, fmt.Errorf("proposal: response SA holds %d proposals; the responder must accept exactly one (RFC 7296 §2.7)", n)
	}
	r := &resp.Proposals[0]
	var o *wire.Proposal
	var nums []string
	for i := range offered.Proposals {
		nums = append(nums, fmt.Sprintf("#%d", offered.Proposals[i].Number))
		if o == nil && offered.Proposals[i].Number == r.Number {
			o = &offered.Proposals[i]
		}
	}
	switch {
	case o == nil:
		return Negotiated{}, fmt.Errorf("proposal: response chose proposal #%d, but we offered %s (RFC 7296 §3.3.1)", r.Number, strings.Join(nums, " "))
	case r.Protocol != o.Protocol:
		return Negotiated{}, fmt.Errorf("proposal: response proposal #%d is %v, but we offered %v (RFC 7296 §2.7)", r.Number, r.Protocol, o.Protocol)
	case len(r.SPI) != len(o.SPI):
		return Negotiated{}, fmt.Errorf("proposal: response proposal #%d has a %d-octet SPI, expected %d (RFC 7296 §3.3.1)", r.Number, len(r.SPI), len(o.SPI))
	}
	var count [256]int
	for i := range r.Transforms {
		t := &r.Transforms[i]
		if count[t.Type]++; count[t.Type] > 1 {
			return Negotiated{}, fmt.Errorf("proposal: response proposal #%d has more than one %v transform; exactly one per type is allowed (RFC 7296 §2.7)", r.Number, t.Type)
		}
		offeredHere := false
		for j := range o.Transforms {
			if sameTransform(t, &o.Transforms[j]) {
				offeredHere = true
				break
			}
		}
		if !offeredHere {
			return Negotiated{}, fmt.Errorf("proposal: response proposal #%d has transform %s, which our proposal #%d did not offer with these attributes (RFC 7296 §3.3.6)", r.Number, describe(t), o.Number)
		}
	}
	for i := range o.Transforms {
		if tt := o.Transforms[i].Type; count[tt] == 0 {
			return Negotiated{}, fmt.Errorf("proposal: response proposal #%d lacks a %v transform, which we offered (RFC 7296 §2.7)", r.Number, tt)
		}
	}
	return NegotiatedFrom(*r)
}

// NegotiatedFrom converts a proposal holding one transform per type, such
// as the one Select returns or a checked response. It rejects types not
// valid for the protocol, duplicate types, missing mandatory types
// (RFC 7296 §3.3.3), attributes other than the Key Length on AES
// (§3.3.5), AEAD with an integrity algorithm and any algorithm the crypto
// layer does not run. Missing ESN in ESP reads as NO_ESN, as in Select.
func NegotiatedFrom(p wire.Proposal) (Negotiated, error) {
	n := Negotiated{Number: p.Number, Protocol: p.Protocol, SPI: slices.Clone(p.SPI)}
	fail := func(format string, args ...any) (Negotiated, error) {
		return Negotiated{}, fmt.Errorf("proposal: chosen proposal #%d: %s", p.Number, fmt.Sprintf(format, args...))
	}
	if p.Protocol != wire.ProtoIKE && p.Protocol != wire.ProtoESP {
		return fail("protocol %v is not supported", p.Protocol)
	}
	var seen [wire.TransformESN + 1]bool
	for i := range p.Transforms {
		t := &p.Transforms[i]
		if !validType(p.Protocol, t.Type) {
			return fail("transform type %v is not valid for %v (RFC 7296 §3.3.3)", t.Type, p.Protocol)
		}
		if seen[t.Type] {
			return fail("more than one %v transform; exactly one per type is allowed (RFC 7296 §2.7)", t.Type)
		}
		seen[t.Type] = true
		bits := 0
		if t.Type == wire.TransformENCR && aesFamily(wire.EncrID(t.ID)) {
			kl, ok := t.KeyLength()
			if !ok || len(t.Attributes) != 1 {
				return fail("%s needs exactly one Key Length attribute (RFC 7296 §3.3.5)", describe(t))
			}
			bits = kl
		} else if len(t.Attributes) > 0 {
			return fail("%s carries attributes it does not take (RFC 7296 §3.3.5)", describe(t))
		}
		none := (t.Type == wire.TransformINTEG || t.Type == wire.TransformDH) && t.ID == 0
		if !none && !Supported(t.Type, t.ID, bits) {
			return fail("%s is not supported", describe(t))
		}
		switch t.Type {
		case wire.TransformENCR:
			n.Encr = Algorithm{Encr: wire.EncrID(t.ID), KeyBits: bits}
		case wire.TransformPRF:
			n.PRF = wire.PRFID(t.ID)
		case wire.TransformINTEG:
			n.Integ = wire.IntegID(t.ID)
		case wire.TransformDH:
			n.DH = wire.DHGroup(t.ID)
		case wire.TransformESN:
			n.ESN = wire.ESNID(t.ID)
		}
	}
	switch {
	case !seen[wire.TransformENCR]:
		return fail("no ENCR transform (RFC 7296 §3.3.3)")
	case n.Encr.AEAD() && n.Integ != wire.IntegNone:
		return fail("AEAD cipher %v with integrity algorithm %v (RFC 7296 §3.3)", n.Encr, n.Integ)
	case !n.Encr.AEAD() && n.Integ == wire.IntegNone:
		return fail("cipher %v without an integrity algorithm (RFC 7296 §3.3.3)", n.Encr)
	case p.Protocol == wire.ProtoIKE && !seen[wire.TransformPRF]:
		return fail("no PRF transform (RFC 7296 §3.3.3)")
	case p.Protocol == wire.ProtoIKE && n.DH == wire.DHNone:
		return fail("no DH group; an IKE SA needs one (RFC 7296 §3.3.3)")
	}
	return n, nil
}

// describe names a transform for error messages.
func describe(t *wire.Transform) string {
	var s string
	switch t.Type {
	case wire.TransformENCR:
		s = wire.EncrID(t.ID).String()
		if kl, ok := t.KeyLength(); ok {
			s += fmt.Sprintf(" (key length %d)", kl)
		}
	case wire.TransformPRF:
		s = wire.PRFID(t.ID).String()
	case wire.TransformINTEG:
		s = wire.IntegID(t.ID).String()
	case wire.TransformDH:
		s = wire.DHGroup(t.ID).String()
	case wire.TransformESN:
		s = wire.ESNID(t.ID).String()
	default:
		s = fmt.Sprintf("%v ID %d", t.Type, t.ID)
	}
	return s
}
