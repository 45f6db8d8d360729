// Package proposal turns strongSwan-style algorithm strings into IKEv2 SA
// proposals, encodes them for the SA payload, picks a proposal as
// responder and checks the responder's choice as initiator (RFC 7296 §2.7,
// §3.3).
package proposal

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mifike/mifike/internal/wire"
)

// Default proposal lists, used for the keyword "default". AEAD comes first
// because it is cheaper and needs no separate integrity key; the CBC
// proposal keeps us interoperable with peers without GCM (RFC 8247 §2.1
// makes AES-CBC the only MUST). Group 14 is the MUST of RFC 8247 §2.4.
const (
	DefaultIKE = "aes128gcm16-prfsha256-x25519-ecp256-modp2048," +
		"aes256gcm16-prfsha384-ecp384," +
		"aes128-sha256-x25519-ecp256-modp2048"
	DefaultESP = "aes128gcm16,aes256gcm16,chacha20poly1305,aes128-sha256"
)

// maxProposals is what the one-octet Proposal Num can count (RFC 7296 §3.3.1).
const maxProposals = 255

// Algorithm is an encryption transform. KeyBits is the Key Length
// attribute (RFC 7296 §3.3.5), 0 for fixed-key ciphers such as
// ChaCha20-Poly1305.
type Algorithm struct {
	Encr    wire.EncrID
	KeyBits int
}

// AEAD reports whether a is a combined-mode cipher (RFC 5282, RFC 7634).
func (a Algorithm) AEAD() bool { return isAEAD(a.Encr) }

func (a Algorithm) String() string { return name(kindEncr, uint16(a.Encr), a.KeyBits) }

// Proposal is one SA proposal: within a field the algorithms are
// alternatives in preference order, across fields all are needed
// (RFC 7296 §3.3).
type Proposal struct {
	Protocol wire.ProtocolID // ProtoIKE or ProtoESP
	Encr     []Algorithm
	PRF      []wire.PRFID   // IKE only
	Integ    []wire.IntegID // empty with AEAD ciphers
	DH       []wire.DHGroup // IKE: required; ESP: PFS groups for CREATE_CHILD_SA
	ESN      []wire.ESNID   // ESP only; empty means NO_ESN
}

// ParseIKE parses one IKE proposal such as "aes128gcm16-prfsha256-x25519"
// or "aes128-sha256-modp2048". A string mixing AEAD and other ciphers
// yields two proposals; "default" yields DefaultIKE.
func ParseIKE(s string) ([]Proposal, error) { return parseOne(wire.ProtoIKE, s) }

// ParseESP parses one ESP proposal such as "aes128gcm16", "aes128-sha256",
// "aes256gcm16-x25519" (PFS) or "chacha20poly1305-esn".
func ParseESP(s string) ([]Proposal, error) { return parseOne(wire.ProtoESP, s) }

// ParseIKEList parses comma-separated IKE proposals in preference order.
func ParseIKEList(s string) ([]Proposal, error) { return parseList(wire.ProtoIKE, s) }

// ParseESPList parses comma-separated ESP proposals in preference order.
func ParseESPList(s string) ([]Proposal, error) { return parseList(wire.ProtoESP, s) }

func parseList(proto wire.ProtocolID, s string) ([]Proposal, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("proposal: empty %v proposal list; give proposals such as %q, or \"default\"", proto, example(proto))
	}
	var out []Proposal
	for i, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			return nil, fmt.Errorf("proposal: %v proposal list %q has an empty entry at position %d", proto, s, i+1)
		}
		ps, err := parseOne(proto, part)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	if len(out) > maxProposals {
		return nil, fmt.Errorf("proposal: %v proposal list has %d proposals; an SA payload numbers at most %d (RFC 7296 §3.3.1)", proto, len(out), maxProposals)
	}
	return out, nil
}

func example(proto wire.ProtocolID) string {
	if proto == wire.ProtoIKE {
		return "aes128gcm16-prfsha256-x25519"
	}
	return "aes128gcm16"
}

func parseOne(proto wire.ProtocolID, s string) ([]Proposal, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.EqualFold(s, "default"):
		if proto == wire.ProtoIKE {
			return parseList(proto, DefaultIKE)
		}
		return parseList(proto, DefaultESP)
	case s == "":
		return nil, fmt.Errorf("proposal: empty %v proposal; join algorithm keywords with '-' as in %q, or use \"default\"", proto, example(proto))
	case strings.Contains(s, ","):
		return nil, fmt.Errorf("proposal: %v proposal %q contains ','; a proposal joins keywords with '-', only a proposal list separates proposals with ','", proto, s)
	}
	p := Proposal{Protocol: proto}
	for _, tok := range strings.Split(s, "-") {
		tok = strings.ToLower(strings.TrimSpace(tok))
		if tok == "" {
			return nil, fmt.Errorf("proposal: %v proposal %q has an empty keyword (a doubled or trailing '-')", proto, s)
		}
		kw, ok := byName[tok]
		if !ok {
			if why, known := unsupportedReason(tok); known {
				return nil, fmt.Errorf("proposal: %v proposal %q: algorithm %q is not supported (%s); allowed keywords: %s", proto, s, tok, why, allowed(proto))
			}
			return nil, fmt.Errorf("proposal: %v proposal %q: unknown keyword %q; allowed keywords: %s", proto, s, tok, allowed(proto))
		}
		switch kw.kind {
		case kindEncr:
			p.Encr = addUnique(p.Encr, Algorithm{wire.EncrID(kw.id), kw.bits})
		case kindInteg:
			p.Integ = addUnique(p.Integ, wire.IntegID(kw.id))
		case kindPRF:
			if proto != wire.ProtoIKE {
				return nil, fmt.Errorf("proposal: %v proposal %q: %q is a PRF, which only IKE proposals negotiate (RFC 7296 §3.3.3); allowed keywords: %s", proto, s, tok, allowed(proto))
			}
			p.PRF = addUnique(p.PRF, wire.PRFID(kw.id))
		case kindDH:
			p.DH = addUnique(p.DH, wire.DHGroup(kw.id))
		case kindESN:
			if proto != wire.ProtoESP {
				return nil, fmt.Errorf("proposal: %v proposal %q: %q is an ESN setting, which only ESP proposals negotiate (RFC 7296 §3.3.3); allowed keywords: %s", proto, s, tok, allowed(proto))
			}
			p.ESN = addUnique(p.ESN, wire.ESNID(kw.id))
		}
	}
	return finish(p, s)
}

// finish applies strongSwan's completion rules and splits AEAD from other
// ciphers, since one proposal cannot hold both (RFC 7296 §2.7, §3.3).
func finish(p Proposal, s string) ([]Proposal, error) {
	proto := p.Protocol
	if len(p.Encr) == 0 {
		return nil, fmt.Errorf("proposal: %v proposal %q has no encryption algorithm; add one of: %s", proto, s, listOf(kindEncr))
	}
	var aead, classic []Algorithm
	for _, a := range p.Encr {
		if a.AEAD() {
			aead = append(aead, a)
		} else {
			classic = append(classic, a)
		}
	}
	if len(classic) > 0 && len(p.Integ) == 0 {
		why := "RFC 7296 §3.3.3"
		if proto == wire.ProtoESP {
			why = "RFC 8221 §4: no encryption without integrity"
		}
		return nil, fmt.Errorf("proposal: %v proposal %q: cipher %v needs an integrity algorithm (%s); add one of: %s", proto, s, classic[0], why, listOf(kindInteg))
	}
	if proto == wire.ProtoIKE {
		// Like strongSwan: without a prf keyword the PRFs follow the
		// integrity algorithms (sha256 gives prfsha256).
		if len(p.PRF) == 0 {
			for _, i := range p.Integ {
				if prf, ok := prfFor[i]; ok {
					p.PRF = addUnique(p.PRF, prf)
				}
			}
		}
		if len(p.PRF) == 0 {
			return nil, fmt.Errorf("proposal: IKE proposal %q: AEAD cipher %v negotiates no integrity algorithm to derive the PRF from, so it needs a prf keyword; add one of: %s", s, aead[0], listOf(kindPRF))
		}
		if len(p.DH) == 0 {
			return nil, fmt.Errorf("proposal: IKE proposal %q needs a key exchange group (RFC 7296 §3.3.3); add one of: %s", s, listOf(kindDH))
		}
	}
	if proto == wire.ProtoESP && len(p.ESN) == 0 {
		p.ESN = []wire.ESNID{wire.ESNNo}
	}
	var out []Proposal
	if len(classic) > 0 {
		c := p
		c.Encr = classic
		out = append(out, c)
	}
	if len(aead) > 0 {
		// Integrity keywords only served the PRF derivation above: an AEAD
		// proposal carries no integrity algorithm (RFC 7296 §3.3).
		a := p
		a.Encr, a.Integ = aead, nil
		if p.Encr[0].AEAD() {
			out = append([]Proposal{a}, out...)
		} else {
			out = append(out, a)
		}
	}
	for i := range out {
		out[i] = out[i].clone()
	}
	return out, nil
}

// prfFor maps an integrity algorithm to the PRF on the same hash.
var prfFor = map[wire.IntegID]wire.PRFID{
	wire.IntegHMACSHA196:     wire.PRFHMACSHA1,
	wire.IntegHMACSHA2256128: wire.PRFHMACSHA2256,
	wire.IntegHMACSHA2384192: wire.PRFHMACSHA2384,
	wire.IntegHMACSHA2512256: wire.PRFHMACSHA2512,
}

func addUnique[T comparable](xs []T, x T) []T {
	if slices.Contains(xs, x) {
		return xs
	}
	return append(xs, x)
}

// clone gives p slices of its own, so split proposals share no arrays.
func (p Proposal) clone() Proposal {
	p.Encr = slices.Clone(p.Encr)
	p.PRF = slices.Clone(p.PRF)
	p.Integ = slices.Clone(p.Integ)
	p.DH = slices.Clone(p.DH)
	p.ESN = slices.Clone(p.ESN)
	return p
}

// String returns p in config notation with canonical keywords, in the
// order encryption, integrity, prf, dh, esn; NO_ESN alone is left out as
// it is the default. Parsing the result gives p back.
func (p Proposal) String() string {
	var parts []string
	for _, a := range p.Encr {
		parts = append(parts, a.String())
	}
	for _, i := range p.Integ {
		parts = append(parts, name(kindInteg, uint16(i), 0))
	}
	for _, f := range p.PRF {
		parts = append(parts, name(kindPRF, uint16(f), 0))
	}
	for _, g := range p.DH {
		parts = append(parts, name(kindDH, uint16(g), 0))
	}
	if !(len(p.ESN) == 1 && p.ESN[0] == wire.ESNNo) {
		for _, e := range p.ESN {
			parts = append(parts, name(kindESN, uint16(e), 0))
		}
	}
	return strings.Join(parts, "-")
}

// Validate checks a proposal built in code (the parsers only produce valid
// ones): a supported protocol, only algorithms the crypto layer runs, the
// mandatory transform types of RFC 7296 §3.3.3, and no AEAD mixed with
// other ciphers (§2.7).
func (p Proposal) Validate() error {
	if p.Protocol != wire.ProtoIKE && p.Protocol != wire.ProtoESP {
		return fmt.Errorf("proposal: protocol %v is not supported; use IKE or ESP", p.Protocol)
	}
	if len(p.Encr) == 0 {
		return fmt.Errorf("proposal: %v proposal %q has no encryption algorithm", p.Protocol, p)
	}
	aead := p.Encr[0].AEAD()
	for _, a := range p.Encr {
		if !Supported(wire.TransformENCR, uint16(a.Encr), a.KeyBits) {
			return fmt.Errorf("proposal: %v proposal %q: encryption %v is not supported; use one of: %s", p.Protocol, p, a, listOf(kindEncr))
		}
		if a.AEAD() != aead {
			return fmt.Errorf("proposal: %v proposal %q mixes AEAD and non-AEAD ciphers; split it into two proposals (RFC 7296 §2.7)", p.Protocol, p)
		}
	}
	switch {
	case aead && len(p.Integ) > 0:
		return fmt.Errorf("proposal: %v proposal %q: AEAD ciphers take no integrity algorithm (RFC 7296 §3.3)", p.Protocol, p)
	case !aead && len(p.Integ) == 0:
		return fmt.Errorf("proposal: %v proposal %q: cipher %v needs an integrity algorithm", p.Protocol, p, p.Encr[0])
	}
	for _, i := range p.Integ {
		if !Supported(wire.TransformINTEG, uint16(i), 0) {
			return fmt.Errorf("proposal: %v proposal %q: integrity %v is not supported; use one of: %s", p.Protocol, p, i, listOf(kindInteg))
		}
	}
	for _, g := range p.DH {
		if !Supported(wire.TransformDH, uint16(g), 0) {
			return fmt.Errorf("proposal: %v proposal %q: DH group %v is not supported; use one of: %s", p.Protocol, p, g, listOf(kindDH))
		}
	}
	if p.Protocol == wire.ProtoIKE {
		switch {
		case len(p.PRF) == 0:
			return fmt.Errorf("proposal: IKE proposal %q needs a PRF (RFC 7296 §3.3.3)", p)
		case len(p.DH) == 0:
			return fmt.Errorf("proposal: IKE proposal %q needs a DH group (RFC 7296 §3.3.3)", p)
		case len(p.ESN) > 0:
			return fmt.Errorf("proposal: IKE proposal %q cannot negotiate ESN (RFC 7296 §3.3.3)", p)
		}
		for _, f := range p.PRF {
			if !Supported(wire.TransformPRF, uint16(f), 0) {
				return fmt.Errorf("proposal: IKE proposal %q: PRF %v is not supported; use one of: %s", p, f, listOf(kindPRF))
			}
		}
		return nil
	}
	if len(p.PRF) > 0 {
		return fmt.Errorf("proposal: ESP proposal %q cannot negotiate a PRF (RFC 7296 §3.3.3)", p)
	}
	for _, e := range p.ESN {
		if e != wire.ESNNo && e != wire.ESNYes {
			return fmt.Errorf("proposal: ESP proposal %q: ESN value %d is not defined (RFC 7296 §3.3.2)", p, e)
		}
	}
	return nil
}

// WithoutDH returns copies of ps without DH groups. An IKE_AUTH Child SA
// negotiation has no KE payload, so its proposals carry no DH (RFC 7296
// §1.2): a responder selects against WithoutDH(local) there, while a
// CREATE_CHILD_SA keeps the groups so PFS stays required when configured.
func WithoutDH(ps []Proposal) []Proposal {
	out := make([]Proposal, len(ps))
	for i, p := range ps {
		out[i] = p.clone()
		out[i].DH = nil
	}
	return out
}

// FirstDH returns the most preferred DH group of ps, the one to send KEi
// for (RFC 7296 §3.4: SHOULD be the first group of the first proposal), or
// DHNone when no proposal has one.
func FirstDH(ps []Proposal) wire.DHGroup {
	for _, p := range ps {
		if len(p.DH) > 0 {
			return p.DH[0]
		}
	}
	return wire.DHNone
}

// AcceptsDH reports whether group g appears in any proposal of ps, i.e.
// whether an INVALID_KE_PAYLOAD asking for g can be honoured by retrying
// with a KE of that group (RFC 7296 §1.2, §1.3).
func AcceptsDH(ps []Proposal, g wire.DHGroup) bool {
	for _, p := range ps {
		if slices.Contains(p.DH, g) {
			return true
		}
	}
	return false
}
