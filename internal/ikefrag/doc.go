// Package ikefrag holds the mechanics of IKEv2 fragmentation (RFC 7383):
// splitting the plaintext of an Encrypted payload into individually
// protected Encrypted Fragment (SKF) messages (Split, §2.5), the fragment
// size for a path (MaxDatagram, §2.5.1), and reassembly with hard limits
// on what a peer can make us hold (Reassembler and Budget, §2.6, §5).
//
// It decides nothing about when to fragment (§2.4) or whether the peer
// offered IKEV2_FRAGMENTATION_SUPPORTED (§2.3): that is the protocol
// engine's part. The package is sans-I/O like the engine: no sockets, no
// clock (the time is passed in), no random source (Split takes the
// io.Reader that draws IVs). It uses the wire format and the SK cipher of
// ikecrypto and nothing else of mifike.
package ikefrag
