package ts

import (
	"net/netip"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

func mustParse(t *testing.T, s string) Selector {
	t.Helper()
	sel, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func list(t *testing.T, ss ...string) []Selector {
	out := make([]Selector, len(ss))
	for i, s := range ss {
		out[i] = mustParse(t, s)
	}
	return out
}

func TestParseAndString(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{"10.20.0.0/24", "10.20.0.0/24"},
		{"10.0.0.1", "10.0.0.1"},
		{"10.0.0.1-10.0.0.9", "10.0.0.1-10.0.0.9"},
		{"10.0.0.0-10.0.0.255", "10.0.0.0/24"},
		{"10.0.0.0/24[tcp/443]", "10.0.0.0/24[tcp/443]"},
		{"2001:db8::/32[udp/500-4500]", "2001:db8::/32[udp/500-4500]"},
		{"0.0.0.0/0[icmp]", "0.0.0.0/0[icmp]"},
		{"::/0", "::/0"},
	} {
		if got := String(mustParse(t, c.in)); got != c.out {
			t.Errorf("%s → %s, want %s", c.in, got, c.out)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "10.0.0.0/24[foo]", "10.0.0.0/24[tcp/99999]", "10.0.0.0/24[tcp"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// RFC 7296 §2.9: the responder narrows to a subset that includes the
// initiator's first (most specific) selector when policy allows it.
func TestRFC7296Section2_9NarrowKeepsFirstChoice(t *testing.T) {
	proposed := list(t, "198.51.100.43[tcp/1234]", "198.51.100.0/24")
	policy := list(t, "198.51.100.0/25")
	got := Narrow(proposed, policy)
	if len(got) != 1 || String(got[0]) != "198.51.100.0/25" {
		t.Fatalf("narrowed to %s", Strings(got))
	}
	if !Contains(got[0], proposed[0]) {
		t.Fatal("the first choice is not in the narrowed set")
	}
	// Narrowing yields only subsets of the proposal.
	if !Subset(got, proposed) {
		t.Fatal("narrowed set is not a subset")
	}
}

func TestRFC7296Section2_9NarrowToNothing(t *testing.T) {
	if got := Narrow(list(t, "10.1.0.0/16"), list(t, "10.2.0.0/16")); len(got) != 0 {
		t.Fatalf("disjoint selectors narrowed to %s", Strings(got))
	}
	if got := Narrow(list(t, "10.1.0.0/16[tcp]"), list(t, "10.1.0.0/16[udp]")); len(got) != 0 {
		t.Fatalf("different protocols narrowed to %s", Strings(got))
	}
	if got := Narrow(list(t, "10.1.0.0/16"), list(t, "2001:db8::/32")); len(got) != 0 {
		t.Fatal("IPv4 and IPv6 intersected")
	}
}

// §2.9: unknown selector types are ignored, not returned.
func TestRFC7296Section2_9UnknownTypeIgnored(t *testing.T) {
	unknown := Selector{TSType: 13, Raw: []byte{1, 2, 3, 4}}
	got := Narrow([]Selector{unknown, mustParse(t, "10.0.0.0/8")}, list(t, "0.0.0.0/0"))
	if len(got) != 1 || String(got[0]) != "10.0.0.0/8" {
		t.Fatalf("got %s", Strings(got))
	}
}

func TestNarrowProtocolsAndPorts(t *testing.T) {
	got := Narrow(list(t, "10.0.0.0/8"), list(t, "10.1.0.0/16[tcp/80-90]", "10.1.0.0/16[tcp/85-100]"))
	if Strings(got) != "10.1.0.0/16[tcp/80-90], 10.1.0.0/16[tcp/85-100]" {
		t.Fatalf("got %s", Strings(got))
	}
	// A selector covered by an earlier one is not repeated.
	got = Narrow(list(t, "10.0.0.0/8", "10.1.0.0/16"), list(t, "0.0.0.0/0"))
	if Strings(got) != "10.0.0.0/8" {
		t.Fatalf("got %s", Strings(got))
	}
}

func TestSubsetRejectsWidening(t *testing.T) {
	if Subset(list(t, "10.0.0.0/8"), list(t, "10.1.0.0/16")) {
		t.Fatal("a wider answer passed as a subset")
	}
	if Subset(nil, list(t, "10.1.0.0/16")) {
		t.Fatal("an empty answer passed as a subset")
	}
}

func TestMatch(t *testing.T) {
	s := mustParse(t, "10.0.0.0/24[tcp/443]")
	a := netip.MustParseAddr("10.0.0.7")
	if !Match(s, a, 6, 443) || Match(s, a, 17, 443) || Match(s, a, 6, 80) || Match(s, netip.MustParseAddr("10.0.1.1"), 6, 443) {
		t.Fatal("Match")
	}
	if Match(s, netip.MustParseAddr("::1"), 6, 443) {
		t.Fatal("IPv6 matched an IPv4 selector")
	}
}

func TestPrefixes(t *testing.T) {
	s := mustParse(t, "10.0.0.1-10.0.0.6")
	var got []string
	for _, p := range Prefixes(s) {
		got = append(got, p.String())
	}
	want := "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]"
	if s := fmtList(got); s != want {
		t.Fatalf("got %s want %s", s, want)
	}
	all := Prefixes(mustParse(t, "0.0.0.0/0"))
	if len(all) != 1 || all[0].String() != "0.0.0.0/0" {
		t.Fatalf("got %v", all)
	}
	if p := Prefixes(mustParse(t, "255.255.255.254-255.255.255.255")); len(p) != 1 {
		t.Fatalf("top of the address space: %v", p)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

func TestOpaquePorts(t *testing.T) {
	op := Selector{TSType: wire.TSIPv4AddrRange, StartPort: 0xffff, EndPort: 0, Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("10.0.0.255")}
	if _, ok := Intersect(op, mustParse(t, "10.0.0.0/24")); !ok {
		t.Fatal("OPAQUE does not meet any-port")
	}
	if _, ok := Intersect(op, mustParse(t, "10.0.0.0/24[tcp/80]")); ok {
		t.Fatal("OPAQUE met a specific port")
	}
}
