package ikecrypto

import (
	"fmt"

	"github.com/mifike/mifike/internal/wire"
)

// Suite is the set of algorithms negotiated for an IKE SA (RFC 7296
// §3.3.3: ENCR, PRF, INTEG unless ENCR is AEAD, and D-H).
type Suite struct {
	Encr  *EncrAlg
	PRF   *PRF
	Integ *IntegAlg // nil with an AEAD cipher
	DH    wire.DHGroup
}

// NewSuite checks and resolves the transforms of a chosen IKE proposal.
// With an AEAD cipher integ must be NONE, and without one it must not be
// (RFC 5282 §8, RFC 7634 §4). An IKE SA always has a D-H group (RFC 7296
// §3.3.3, and §2.18 forbids NONE for a rekey).
func NewSuite(encr wire.EncrID, keyBits int, prf wire.PRFID, integ wire.IntegID, dh wire.DHGroup) (*Suite, error) {
	e, err := LookupEncr(encr, keyBits)
	if err != nil {
		return nil, err
	}
	p, err := NewPRF(prf)
	if err != nil {
		return nil, err
	}
	s := &Suite{Encr: e, PRF: p, DH: dh}
	switch {
	case e.AEAD && integ != wire.IntegNone:
		return nil, fmt.Errorf("ikecrypto: AEAD cipher %v cannot be combined with integrity algorithm %v", e, integ)
	case !e.AEAD && integ == wire.IntegNone:
		return nil, fmt.Errorf("ikecrypto: cipher %v needs an integrity algorithm", e)
	case !e.AEAD:
		if s.Integ, err = LookupInteg(integ); err != nil {
			return nil, err
		}
	}
	if _, err := PublicLen(dh); err != nil {
		return nil, err
	}
	return s, nil
}
