// Package ikecrypto holds the cryptography of IKEv2: the PRF and prf+
// (RFC 7296 §2.13), the key schedule (§2.14, §2.17, §2.18), AUTH octets
// (§2.15), NAT detection hashes (§2.23), Diffie-Hellman with the RFC 6989
// peer-value checks, and the Encrypted (SK, §3.14 and RFC 5282) and
// Encrypted Fragment (SKF, RFC 7383) payloads.
//
// The package is sans-I/O: it never reads a clock or the system's random
// source. Everything that needs randomness takes an io.Reader, and given
// the same reader bytes gives the same result, so the protocol engine can
// be run deterministically in simulation.
//
// Primitives come from the standard library and golang.org/x/crypto; only
// the IKE constructions around them are written here.
package ikecrypto
