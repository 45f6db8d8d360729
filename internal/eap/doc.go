// Package eap is the Extensible Authentication Protocol (RFC 3748) as IKEv2
// carries it in IKE_AUTH (RFC 7296 §2.16): the packet codec, the peer (the
// IKE initiator's end user) and a small authenticator with a local user
// table for tests and the simulator.
//
// Methods: Identity and Notification (RFC 3748 §5.1, §5.2), legacy Nak
// (§5.3.1), MD5-Challenge (§5.4), EAP-MSCHAPv2
// (draft-kamath-pppext-eap-mschapv2-01 over RFC 2759, keys from RFC 3079)
// and EAP-TLS (RFC 5216, and RFC 9190 when TLS 1.3 is enabled). The IKE AUTH
// payload of an EAP-authenticated SA is prf(MSK, "Key Pad for IKEv2" | ...),
// so the MSK of each method is derived exactly as strongSwan and FreeRADIUS
// derive it; see mschapv2.go and tls.go for the reasoning.
//
// The package is sans-I/O: a Peer and a Server turn one EAP packet into the
// next and never touch sockets or clocks. Randomness is an io.Reader and
// time a func() time.Time, both injected. EAP-TLS drives crypto/tls over an
// in-memory connection in a goroutine that runs only while Handle waits for
// it (see tlsengine.go), so a Peer is still used from one goroutine at a
// time and must be closed.
//
// Secrets (passwords, private keys, MSKs) never appear in errors or in the
// fmt output of any type of this package.
package eap
