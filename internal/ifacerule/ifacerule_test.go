package ifacerule

import "testing"

func TestFirstMatchWins(t *testing.T) {
	rs := Rules[int]{{"wlan0", 5}, {"w*", 0}, {"eth[0-9]", 3}}
	for _, c := range []struct {
		iface string
		want  int
		ok    bool
	}{
		{"wlan0", 5, true}, // both match: the first wins
		{"wwan0", 0, true},
		{"eth1", 3, true},
		{"eth10", 7, false}, // [0-9] is one character: the default
		{"", 7, false},
	} {
		if got := rs.Lookup(c.iface, 7); got != c.want {
			t.Errorf("Lookup(%q) = %d, want %d", c.iface, got, c.want)
		}
		if _, ok := rs.Match(c.iface); ok != c.ok {
			t.Errorf("Match(%q) matched %v, want %v", c.iface, ok, c.ok)
		}
	}
	if got := rs.String(); got != "{wlan0: 5, w*: 0, eth[0-9]: 3}" {
		t.Errorf("String() = %q", got)
	}
	if rs.CatchAll() || !(Rules[int]{{"x", 1}, {"*", 2}}).CatchAll() {
		t.Error("CatchAll: only a lone * matches every name")
	}
}

func TestValidPattern(t *testing.T) {
	for p, want := range map[string]bool{"eth0": true, "wwan*": true, "usb[0-9]": true, "": false, "usb[": false} {
		if ValidPattern(p) != want {
			t.Errorf("ValidPattern(%q) = %v", p, !want)
		}
	}
}
