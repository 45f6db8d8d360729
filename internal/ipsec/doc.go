// Package ipsec is what the IKE engine, the two data planes and the daemon
// agree on about IPsec SAs: the description of a Child SA the engine
// negotiated (ChildSA, Mode), the DataPlane interface both data planes
// implement (userspace ESP in internal/dataplane, the kernel's XFRM in
// internal/xfrm), the traffic counters and drop reasons they report, and
// the host conventions they share (DefaultMark, DefaultTable).
//
// It is a leaf: it imports only the standard library and the wire
// format's code points, so the engine and each data plane can depend on
// it without depending on each other.
package ipsec
