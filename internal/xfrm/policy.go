package xfrm

import (
	"net/netip"

	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// portMasks splits a port range into (port, mask) pairs the kernel's
// selectors take (a port matches when port&mask == value): 0-65535 is
// one pair with mask 0, a single port one pair with mask 0xffff, and any
// other range its aligned power-of-two blocks. An opaque range (RFC 7296
// §3.13.1: start > end) matches no port, which the kernel cannot say; we
// treat it as any, as Linux IPsec stacks do.
func portMasks(start, end uint16) [][2]uint16 {
	if start > end || (start == 0 && end == 0xffff) {
		return [][2]uint16{{0, 0}}
	}
	var out [][2]uint16
	s, e := uint32(start), uint32(end)
	for s <= e {
		size := uint32(1)
		for s&(size*2-1) == 0 && s+size*2-1 <= e && size*2 <= 0x10000 {
			size *= 2
		}
		out = append(out, [2]uint16{uint16(s), uint16(^(size - 1))})
		s += size
	}
	return out
}

// selectors is the cross product of a Child SA's local and remote
// traffic selectors as kernel selectors seen from us: Src in the local
// ones, Dst in the remote ones. Pairs of different address families or
// of two different protocols cover nothing and are left out.
func selectors(local, remote []wire.Selector) []Selector {
	var out []Selector
	for _, l := range local {
		for _, r := range remote {
			if !l.Start.IsValid() || !r.Start.IsValid() || l.Start.Is4() != r.Start.Is4() {
				continue
			}
			proto := l.IPProtocol
			if proto == 0 {
				proto = r.IPProtocol
			} else if r.IPProtocol != 0 && r.IPProtocol != proto {
				continue
			}
			// Ports only mean something for a protocol that has them.
			lp, rp := [][2]uint16{{0, 0}}, [][2]uint16{{0, 0}}
			if proto != 0 {
				lp, rp = portMasks(l.StartPort, l.EndPort), portMasks(r.StartPort, r.EndPort)
			}
			for _, src := range ts.Prefixes(l) {
				for _, dst := range ts.Prefixes(r) {
					for _, sp := range lp {
						for _, dp := range rp {
							out = append(out, Selector{Src: src, Dst: dst, Proto: proto,
								SrcPort: sp[0], SrcMask: sp[1], DstPort: dp[0], DstMask: dp[1]})
						}
					}
				}
			}
		}
	}
	return out
}

// reverse is the selector for the other direction.
func (s Selector) reverse() Selector {
	return Selector{Src: s.Dst, Dst: s.Src, Proto: s.Proto, SrcPort: s.DstPort, SrcMask: s.DstMask,
		DstPort: s.SrcPort, DstMask: s.SrcMask}
}

// priority orders overlapping policies: the more specific first (lower
// wins), as RFC 4301 §4.4.1 asks of an ordered SPD. Within one XFRM
// interface only one VPN's policies compete.
func priority(s Selector) uint32 {
	p := uint32(0x4000)
	p -= uint32(s.Dst.Bits()+s.Src.Bits()) * 16
	if s.Proto != 0 {
		p -= 4
	}
	if s.SrcMask != 0 {
		p--
	}
	if s.DstMask != 0 {
		p--
	}
	return p
}

// policies are the kernel policies for one Child SA's selectors: out (we
// protect what leaves), in (we accept only what the SA may carry,
// RFC 4301 §5.2) and, in tunnel mode, fwd (the same for traffic we route
// on, as a gateway does). local and remote are the tunnel's outer ends.
func policies(sels []Selector, mode uint8, local, remote netip.Addr, reqid, ifID uint32) []Policy {
	var out []Policy
	for _, s := range sels {
		// Only the out template names the tunnel's ends: the kernel needs
		// them to find the SA to send with. The in and fwd templates
		// match by reqid, so an inbound SA stays acceptable while a
		// MOBIKE move has it and its successor side by side.
		t := Tmpl{Reqid: reqid, Mode: mode, Family: family(local)}
		in := t
		if mode == modeTunnel {
			t.Src, t.Dst = local, remote
		}
		out = append(out, Policy{Sel: s, Dir: dirOut, Priority: priority(s), Tmpl: t, IfID: ifID})
		out = append(out, Policy{Sel: s.reverse(), Dir: dirIn, Priority: priority(s), Tmpl: in, IfID: ifID})
		if mode == modeTunnel {
			out = append(out, Policy{Sel: s.reverse(), Dir: dirFwd, Priority: priority(s), Tmpl: in, IfID: ifID})
		}
	}
	return out
}
