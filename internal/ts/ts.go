// Package ts holds traffic selector logic (RFC 7296 §2.9): narrowing a
// peer's proposal to local policy, checking a narrowed answer, matching
// packets, and the "10.0.0.0/24[tcp/443]" notation of configs and logs.
package ts

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mifike/mifike/internal/wire"
)

// Selector is the wire form; this package adds behaviour to it.
type Selector = wire.Selector

const anyPortStart, anyPortEnd = 0, 0xffff

// opaque reports OPAQUE ports (start 65535, end 0; §3.13.1): ports that
// cannot be read, e.g. of non-initial fragments.
func opaque(s Selector) bool { return s.StartPort > s.EndPort }

func known(s Selector) bool {
	return (s.TSType == wire.TSIPv4AddrRange && s.Start.Is4() && s.End.Is4()) ||
		(s.TSType == wire.TSIPv6AddrRange && s.Start.Is6() && s.End.Is6())
}

// Intersect returns the traffic both selectors cover, if any.
func Intersect(a, b Selector) (Selector, bool) {
	if !known(a) || !known(b) || a.TSType != b.TSType {
		return Selector{}, false
	}
	out := Selector{TSType: a.TSType}
	switch {
	case a.IPProtocol == 0:
		out.IPProtocol = b.IPProtocol
	case b.IPProtocol == 0 || a.IPProtocol == b.IPProtocol:
		out.IPProtocol = a.IPProtocol
	default:
		return Selector{}, false
	}
	switch {
	case opaque(a) || opaque(b):
		// OPAQUE only meets OPAQUE or the full range.
		if (opaque(a) || isAnyPort(a)) && (opaque(b) || isAnyPort(b)) {
			out.StartPort, out.EndPort = 0xffff, 0
		} else {
			return Selector{}, false
		}
	default:
		out.StartPort, out.EndPort = max(a.StartPort, b.StartPort), min(a.EndPort, b.EndPort)
		if out.StartPort > out.EndPort {
			return Selector{}, false
		}
	}
	out.Start, out.End = maxAddr(a.Start, b.Start), minAddr(a.End, b.End)
	if out.End.Less(out.Start) {
		return Selector{}, false
	}
	return out, true
}

func isAnyPort(s Selector) bool { return s.StartPort == anyPortStart && s.EndPort == anyPortEnd }

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return b
	}
	return a
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return a
	}
	return b
}

// Contains reports whether outer covers all of inner.
func Contains(outer, inner Selector) bool {
	got, ok := Intersect(outer, inner)
	return ok && got.IPProtocol == inner.IPProtocol && got.StartPort == inner.StartPort &&
		got.EndPort == inner.EndPort && got.Start == inner.Start && got.End == inner.End
}

// Narrow returns the parts of proposed that policy allows (§2.9): every
// non-empty intersection of a proposed selector with a policy selector, in
// the proposal's order, without duplicates or selectors another one covers.
// Unknown selector types are ignored, not returned. Because the first
// proposed selector is intersected first, an acceptable first choice (the
// triggering packet) is always in the result, as §2.9 requires.
func Narrow(proposed, policy []Selector) []Selector {
	var out []Selector
	for _, p := range proposed {
		for _, l := range policy {
			if s, ok := Intersect(p, l); ok {
				out = addCovered(out, s)
			}
		}
	}
	return out
}

// addCovered appends s unless an existing selector covers it, and drops
// existing selectors s covers.
func addCovered(list []Selector, s Selector) []Selector {
	for _, x := range list {
		if Contains(x, s) {
			return list
		}
	}
	kept := list[:0]
	for _, x := range list {
		if !Contains(s, x) {
			kept = append(kept, x)
		}
	}
	return append(kept, s)
}

// Subset reports whether every selector in narrowed lies inside one of
// proposed: what an initiator checks of the responder's answer (§2.9).
func Subset(narrowed, proposed []Selector) bool {
	if len(narrowed) == 0 {
		return false
	}
	for _, n := range narrowed {
		ok := false
		for _, p := range proposed {
			if Contains(p, n) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Match reports whether a packet's address, protocol and port (0 when the
// protocol has none) fall inside s.
func Match(s Selector, addr netip.Addr, proto uint8, port uint16) bool {
	if !known(s) || addr.Is4() != s.Start.Is4() {
		return false
	}
	if s.IPProtocol != 0 && s.IPProtocol != proto {
		return false
	}
	if !opaque(s) && (port < s.StartPort || port > s.EndPort) {
		return false
	}
	return !addr.Less(s.Start) && !s.End.Less(addr)
}

// Prefixes returns the smallest list of CIDR prefixes covering s's address
// range, for routes.
func Prefixes(s Selector) []netip.Prefix {
	if !known(s) {
		return nil
	}
	var out []netip.Prefix
	start, end := s.Start, s.End
	bits := start.BitLen()
	for !end.Less(start) {
		// The largest prefix that starts at start and ends inside the range.
		n := bits
		for n > 0 {
			p := netip.PrefixFrom(start, n-1).Masked()
			if p.Addr() != start || end.Less(lastOf(p)) {
				break
			}
			n--
		}
		p := netip.PrefixFrom(start, n)
		out = append(out, p)
		last := lastOf(p)
		next := last.Next()
		if !next.IsValid() || next.Less(last) {
			break
		}
		start = next
	}
	return out
}

func lastOf(p netip.Prefix) netip.Addr { return wire.PrefixSelector(p, 0).End }

// FromPrefix is the selector for a prefix, any protocol and port.
func FromPrefix(p netip.Prefix) Selector { return wire.PrefixSelector(p, 0) }

// FromAddr is the selector for one address.
func FromAddr(a netip.Addr) Selector {
	return wire.PrefixSelector(netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), 0)
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132}

// Parse reads strongSwan notation: an address, a prefix or a range
// "a-b", optionally followed by "[proto]", "[proto/port]" or
// "[proto/lo-hi]", e.g. "10.20.0.0/24", "10.0.0.1-10.0.0.9[tcp/443]".
func Parse(s string) (Selector, error) {
	s = strings.TrimSpace(s)
	addrPart, extra, hasExtra := strings.Cut(s, "[")
	var sel Selector
	switch {
	case strings.Contains(addrPart, "/"):
		p, err := netip.ParsePrefix(addrPart)
		if err != nil {
			return sel, fmt.Errorf("traffic selector %q: %v (want an address, prefix or range)", s, err)
		}
		sel = wire.PrefixSelector(p, 0)
	case strings.Contains(addrPart, "-"):
		a, b, _ := strings.Cut(addrPart, "-")
		x, err1 := netip.ParseAddr(a)
		y, err2 := netip.ParseAddr(b)
		if err1 != nil || err2 != nil || x.Is4() != y.Is4() || y.Less(x) {
			return sel, fmt.Errorf("traffic selector %q: want a range low-high of one address family", s)
		}
		sel = FromAddr(x)
		sel.End = y.Unmap()
	default:
		a, err := netip.ParseAddr(addrPart)
		if err != nil {
			return sel, fmt.Errorf("traffic selector %q: %v (want an address, prefix or range)", s, err)
		}
		sel = FromAddr(a)
	}
	if !hasExtra {
		return sel, nil
	}
	inner, ok := strings.CutSuffix(extra, "]")
	if !ok {
		return sel, fmt.Errorf("traffic selector %q: missing ']'", s)
	}
	proto, ports, hasPorts := strings.Cut(inner, "/")
	if n, ok := protoNames[strings.ToLower(proto)]; ok {
		sel.IPProtocol = n
	} else if n, err := strconv.ParseUint(proto, 10, 8); err == nil {
		sel.IPProtocol = uint8(n)
	} else if proto != "" && proto != "any" {
		return sel, fmt.Errorf("traffic selector %q: unknown protocol %q (tcp, udp, icmp, icmpv6, sctp, any or a number)", s, proto)
	}
	if hasPorts && ports != "any" && ports != "" {
		lo, hi, isRange := strings.Cut(ports, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || b < a {
			return sel, fmt.Errorf("traffic selector %q: bad port %q (a number or lo-hi)", s, ports)
		}
		sel.StartPort, sel.EndPort = uint16(a), uint16(b)
	}
	return sel, nil
}

// String formats a selector in the notation Parse reads.
func String(s Selector) string {
	if !known(s) {
		return fmt.Sprintf("%s(%d octets)", s.TSType, len(s.Raw))
	}
	var b strings.Builder
	if ps := Prefixes(s); len(ps) == 1 {
		if ps[0].IsSingleIP() {
			b.WriteString(ps[0].Addr().String())
		} else {
			b.WriteString(ps[0].String())
		}
	} else {
		fmt.Fprintf(&b, "%s-%s", s.Start, s.End)
	}
	if s.IPProtocol == 0 && isAnyPort(s) {
		return b.String()
	}
	b.WriteString("[")
	proto := strconv.Itoa(int(s.IPProtocol))
	for n, v := range protoNames {
		if v == s.IPProtocol && n != "ipv6-icmp" {
			proto = n
		}
	}
	if s.IPProtocol == 0 {
		proto = "any"
	}
	b.WriteString(proto)
	switch {
	case opaque(s):
		b.WriteString("/OPAQUE")
	case isAnyPort(s):
	case s.StartPort == s.EndPort:
		fmt.Fprintf(&b, "/%d", s.StartPort)
	default:
		fmt.Fprintf(&b, "/%d-%d", s.StartPort, s.EndPort)
	}
	b.WriteString("]")
	return b.String()
}

// Strings formats a list, comma-separated.
func Strings(l []Selector) string {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = String(s)
	}
	return strings.Join(parts, ", ")
}
