// Package ikeauth holds public-key authentication for IKEv2: signing and
// verifying AUTH payloads with RSA, ECDSA and Ed25519 keys (RFC 7296 §2.15
// and §3.8, RFC 4754, RFC 7427), the CERT and CERTREQ payloads (§3.6, §3.7),
// certificate-chain validation, binding IDi/IDr to a certificate (RFC 4945
// §3.1), identities as written in configuration, and loading PEM keys and
// certificates.
//
// The octets to sign come from ikecrypto.SignedOctets; shared-key AUTH is
// ikecrypto's job. The package is sans-I/O: time is a parameter and signing
// takes its randomness as an io.Reader.
package ikeauth
