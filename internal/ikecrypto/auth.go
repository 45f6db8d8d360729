package ikecrypto

import "crypto/hmac"

// keyPad is the PSK pad string: 17 ASCII octets, no NUL (RFC 7296 §2.15).
const keyPad = "Key Pad for IKEv2"

// SignedOctets returns the octets an AUTH payload signs or MACs
// (RFC 7296 §2.15):
//
//	RealMessage | NonceData | prf(SK_p, RestOfIDPayload)
//
// realMessage is our IKE_SA_INIT message as last sent (from the IKE header,
// without the non-ESP marker), peerNonce the other side's Nonce Data, skp
// our SK_pi or SK_pr, and idBody our ID payload after its generic header
// (ID Type, RESERVED, data).
func SignedOctets(p *PRF, realMessage, peerNonce, skp, idBody []byte) []byte {
	out := make([]byte, 0, len(realMessage)+len(peerNonce)+p.Size())
	out = append(append(out, realMessage...), peerNonce...)
	return append(out, p.Sum(skp, idBody)...)
}

// PSKAuth returns the shared-key AUTH data (RFC 7296 §2.15):
//
//	prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
//
// For key-generating EAP methods the secret is the MSK (§2.16).
func PSKAuth(p *PRF, secret, signedOctets []byte) []byte {
	return p.Sum(p.Sum(secret, []byte(keyPad)), signedOctets)
}

// VerifyPSKAuth reports whether authData is the shared-key AUTH data for
// signedOctets, comparing in constant time.
func VerifyPSKAuth(p *PRF, secret, signedOctets, authData []byte) bool {
	return hmac.Equal(PSKAuth(p, secret, signedOctets), authData)
}
