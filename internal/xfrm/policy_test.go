package xfrm

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

func TestPortMasks(t *testing.T) {
	for _, tc := range []struct {
		start, end uint16
		want       [][2]uint16
	}{
		{0, 65535, [][2]uint16{{0, 0}}},
		{443, 443, [][2]uint16{{443, 0xffff}}},
		{1024, 2047, [][2]uint16{{1024, 0xfc00}}},
		{6, 9, [][2]uint16{{6, 0xfffe}, {8, 0xfffe}}},
		{65535, 0, [][2]uint16{{0, 0}}}, // opaque
		{0, 1, [][2]uint16{{0, 0xfffe}}},
	} {
		if got := portMasks(tc.start, tc.end); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%d-%d: %v, want %v", tc.start, tc.end, got, tc.want)
		}
	}
	// Every port in a range is covered by exactly one pair.
	for _, r := range [][2]uint16{{1, 1000}, {500, 4500}, {3, 65534}} {
		pairs := portMasks(r[0], r[1])
		for p := 0; p <= 65535; p++ {
			n := 0
			for _, pm := range pairs {
				if uint16(p)&pm[1] == pm[0] {
					n++
				}
			}
			in := p >= int(r[0]) && p <= int(r[1])
			if (in && n != 1) || (!in && n != 0) {
				t.Fatalf("%v: port %d matched %d pairs", r, p, n)
			}
		}
	}
}

func sel(t *testing.T, s string) wire.Selector {
	t.Helper()
	x, err := ts.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestSelectors(t *testing.T) {
	local := []wire.Selector{sel(t, "10.99.0.2/32"), sel(t, "2001:db8:99::2/128")}
	remote := []wire.Selector{sel(t, "10.93.0.0/24"), sel(t, "0.0.0.0/0"), sel(t, "::/0")}
	got := selectors(local, remote)
	want := []Selector{
		{Src: netip.MustParsePrefix("10.99.0.2/32"), Dst: netip.MustParsePrefix("10.93.0.0/24")},
		{Src: netip.MustParsePrefix("10.99.0.2/32"), Dst: netip.MustParsePrefix("0.0.0.0/0")},
		{Src: netip.MustParsePrefix("2001:db8:99::2/128"), Dst: netip.MustParsePrefix("::/0")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	// A range that is not a prefix becomes several; protocols narrow;
	// two different protocols cover nothing.
	got = selectors([]wire.Selector{sel(t, "10.0.0.1-10.0.0.2")}, []wire.Selector{sel(t, "10.1.0.0/16[tcp/80]"), sel(t, "10.2.0.0/16[udp]")})
	if len(got) != 4 || got[0].Src != netip.MustParsePrefix("10.0.0.1/32") || got[1].Src != netip.MustParsePrefix("10.0.0.2/32") ||
		got[0].Proto != 6 || got[0].DstPort != 80 || got[0].DstMask != 0xffff || got[2].Proto != 17 || got[2].DstMask != 0 {
		t.Fatalf("got %v", got)
	}
	if got := selectors([]wire.Selector{sel(t, "10.0.0.0/8[tcp]")}, []wire.Selector{sel(t, "10.1.0.0/16[udp]")}); len(got) != 0 {
		t.Fatalf("tcp x udp gave %v", got)
	}
}

func TestPolicies(t *testing.T) {
	s := Selector{Src: netip.MustParsePrefix("10.99.0.2/32"), Dst: netip.MustParsePrefix("10.93.0.0/24")}
	l, r := netip.MustParseAddr("10.91.1.2"), netip.MustParseAddr("10.92.0.1")
	tun := policies([]Selector{s}, modeTunnel, l, r, 42, ifIDBase+1)
	if len(tun) != 3 {
		t.Fatalf("tunnel mode: %d policies, want out, in, fwd", len(tun))
	}
	out, in, fwd := tun[0], tun[1], tun[2]
	if out.Dir != dirOut || out.Sel != s || out.Tmpl.Src != l || out.Tmpl.Dst != r || out.IfID != ifIDBase+1 || out.Tmpl.Reqid != 42 {
		t.Fatalf("out %+v", out)
	}
	if in.Dir != dirIn || in.Sel.Src != s.Dst || in.Sel.Dst != s.Src || in.Tmpl.Src.IsValid() || in.Tmpl.Dst.IsValid() || in.Tmpl.Reqid != 42 {
		t.Fatalf("in %+v", in)
	}
	if fwd.Dir != dirFwd || fwd.Sel != in.Sel || fwd.Tmpl != in.Tmpl {
		t.Fatalf("fwd %+v", fwd)
	}
	tr := policies([]Selector{{Src: netip.MustParsePrefix("10.91.1.2/32"), Dst: netip.MustParsePrefix("10.92.0.1/32")}}, modeTransport, l, r, 43, 0)
	if len(tr) != 2 || tr[0].Tmpl.Dst.IsValid() || tr[1].Tmpl.Src.IsValid() || tr[0].IfID != 0 {
		t.Fatalf("transport mode: %+v", tr)
	}
	// More specific selectors win (lower priority value).
	wide := Selector{Src: s.Src, Dst: netip.MustParsePrefix("0.0.0.0/0")}
	port := s
	port.Proto, port.DstPort, port.DstMask = 6, 443, 0xffff
	if !(priority(port) < priority(s) && priority(s) < priority(wide)) {
		t.Fatalf("priorities: port %d, /24 %d, /0 %d", priority(port), priority(s), priority(wide))
	}
}
