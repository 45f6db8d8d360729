// Package spread spreads new flows that are not MPTCP over the
// per-interface VPNs (issue 20 item 2, docs/multipath.md "Flow
// spreading"), with an nftables table of mifike's own in the end user's
// namespace.
//
// Each VPN is an RFC 7791 clone with its own inner address, and the
// userspace data plane sends a packet through the Child SA whose local
// selectors hold its source address. Applications send from the route's
// source address, one VPN's. A nat rule in postrouting, on the first
// packet of a connection leaving through the TUN device, translates its
// source to the inner address of a VPN chosen by a hash of the flow's
// addresses, protocol and ports (jhash) into buckets, as many per VPN as
// its weight. NAT rules see only a connection's first packet: conntrack
// keeps the translation for the flow's life and undoes it on the
// replies, so a flow never changes Child SA (no second replay window,
// no reordering between paths), whatever the rules become later. A flow
// moves only with its VPN: MOBIKE takes the inner address to another
// interface, and the flow with it.
//
// Left alone: MPTCP connections (their SYN carries MP_CAPABLE or
// MP_JOIN; the kernel places their subflows, internal/mptcp), and TCP
// connections that conntrack first sees in the middle (those open
// before the table was made): their source cannot change under them.
//
// Why `nft -f -` and not a netlink library: none is in go.mod, and
// github.com/google/nftables (which the module set has) takes no rule
// text: the jhash into an anonymous map of addresses feeding snat would
// be assembled expression by expression, register by register, with the
// map's key and data types spelt out; several hundred lines that say
// less than the three rules below, which are also what an operator reads
// back with `nft list table inet mifike_spread`. The rules are rewritten
// whole in one nft transaction, so they change atomically; their text is
// what the tests check.
package spread

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
)

// Table is the nftables table mifike owns (family inet).
const Table = "mifike_spread"

// seed keys the hash: fixed, so a flow whose conntrack entry was lost
// (and that is a new flow again) gets the same VPN while the VPNs stay.
const seed = 0x6d696b65 // "mike"

// Target is a VPN's inner address and its weight among new flows (0:
// none, but a flow from it is still spread).
type Target struct {
	Addr   netip.Addr
	Weight int
}

// Group is the targets of one connection: a flow from one of their
// addresses goes to one of them.
type Group struct {
	Conn    string
	Targets []Target
}

// Setup is the nft script that makes the table anew, with its base
// chain in the nat hook jumping to the chain the rules go in. It is
// applied once (with the first Rules, in one transaction); after that
// only Rules. The jump is behind a ct expression on purpose: it keeps
// conntrack on in the namespace for the table's life. The snat rules
// alone hold it, and when a rewrite leaves none (every VPN's weight 0,
// as when the one weighted interface is cut) the kernel stops tracking:
// the packets of flows already translated leave with their own source
// address and the server resets them (the e2e cut test failed so, and
// passed with a ct expression in another table).
func Setup() string {
	return fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n"+
		"table inet %[1]s {\n\tchain spread {\n\t}\n"+
		"\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tct state new jump spread\n\t}\n}\n", Table)
}

// Rules is the nft script that puts the rules for the groups in place
// of those before, for flows leaving through dev, in one transaction.
// Groups without a target of weight above 0 (in a family) have no rules
// there: their flows keep their source address.
func Rules(dev string, groups []Group) string {
	var b strings.Builder
	fmt.Fprintf(&b, "flush chain inet %s spread\n", Table)
	fmt.Fprintf(&b, "table inet %s {\n\tchain spread {\n", Table)
	for _, g := range groups {
		for _, fam := range []struct {
			ip string
			is func(netip.Addr) bool
		}{{"ip", netip.Addr.Is4}, {"ip6", netip.Addr.Is6}} {
			var ts []Target
			for _, t := range g.Targets {
				if fam.is(t.Addr) {
					ts = append(ts, t)
				}
			}
			rules(&b, dev, fam.ip, g.Conn, ts)
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// rules are one group's rules in one family.
func rules(b *strings.Builder, dev, ip, conn string, ts []Target) {
	buckets := Buckets(ts)
	if len(buckets) == 0 {
		return
	}
	srcs := make([]string, len(ts))
	for i, t := range ts {
		srcs[i] = t.Addr.String()
	}
	match := fmt.Sprintf("oifname %q %s saddr { %s }", dev, ip, strings.Join(srcs, ", "))
	fmt.Fprintf(b, "\t\t%s tcp option mptcp exists return comment %q\n", match, conn+": MPTCP places its own subflows")
	fmt.Fprintf(b, "\t\t%s tcp flags & (syn | ack) != syn return comment %q\n", match, conn+": a connection seen first in its middle keeps its address")
	if len(buckets) == 1 {
		fmt.Fprintf(b, "\t\t%s snat %s to %v comment %q\n", match, ip, buckets[0], conn+": one VPN takes new flows")
		return
	}
	elems := make([]string, len(buckets))
	for i, a := range buckets {
		elems[i] = fmt.Sprintf("%d : %v", i, a)
	}
	fmt.Fprintf(b, "\t\t%s snat %s to jhash %s saddr . %s daddr . meta l4proto . th sport . th dport mod %d seed %#x map { %s } comment %q\n",
		match, ip, ip, ip, len(buckets), seed, strings.Join(elems, ", "), conn+": new flows spread by weight")
}

// Buckets are the hash's buckets: each target of weight w above 0 gets
// w / (the weights' greatest common divisor) of them, in address order.
// A single target gets one bucket; none, none.
func Buckets(ts []Target) []netip.Addr {
	g := 0
	for _, t := range ts {
		if t.Weight > 0 {
			g = gcd(g, t.Weight)
		}
	}
	if g == 0 {
		return nil
	}
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b Target) int { return a.Addr.Compare(b.Addr) })
	var out []netip.Addr
	n := 0
	for _, t := range ts {
		if t.Weight > 0 {
			n++
		}
	}
	for _, t := range ts {
		for range t.Weight / g {
			out = append(out, t.Addr)
		}
	}
	if n == 1 {
		return out[:1]
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// RemoveScript is the nft script that deletes the table, if there is
// one.
func RemoveScript() string {
	return fmt.Sprintf("table inet %s\ndelete table inet %s\n", Table, Table)
}

// Apply runs an nft script in the calling process's network namespace.
func Apply(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if _, lerr := exec.LookPath("nft"); lerr != nil {
			return fmt.Errorf("spread: flow spreading needs nft (Debian's nftables package): %w", lerr)
		}
		return fmt.Errorf("spread: nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (g Group) String() string {
	parts := make([]string, len(g.Targets))
	for i, t := range g.Targets {
		parts[i] = fmt.Sprintf("%v×%d", t.Addr, t.Weight)
	}
	return g.Conn + ": " + strings.Join(parts, " ")
}
