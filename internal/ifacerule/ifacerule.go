// Package ifacerule holds per-interface settings as the configuration
// gives them: interface names or shell patterns (path.Match: wwan*,
// usb[0-9]), each with a value, in file order, the first match winning.
// interfaces.tcp, interfaces.multipath and interfaces.spread are such
// lists; one type serves them so that they match the same way.
package ifacerule

import (
	"fmt"
	"path"
	"strings"
)

// Rule gives the interfaces whose names match Pattern their Value.
type Rule[V any] struct {
	Pattern string
	Value   V
}

// Rules is a list of rules, the first match winning.
type Rules[V any] []Rule[V]

// Match is the value of the first rule whose pattern matches iface, and
// whether one did.
func (rs Rules[V]) Match(iface string) (V, bool) {
	for _, r := range rs {
		if ok, _ := path.Match(r.Pattern, iface); ok {
			return r.Value, true
		}
	}
	var zero V
	return zero, false
}

// Lookup is the value of the first rule whose pattern matches iface, or
// def when none does.
func (rs Rules[V]) Lookup(iface string, def V) V {
	if v, ok := rs.Match(iface); ok {
		return v
	}
	return def
}

// CatchAll reports whether some rule matches every interface name (a
// lone "*"), so that no interface falls to the default.
func (rs Rules[V]) CatchAll() bool {
	for _, r := range rs {
		if r.Pattern == "*" {
			return true
		}
	}
	return false
}

// String is the rules as the configuration writes them: {eth*: 3, wwan*: 0}.
func (rs Rules[V]) String() string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s: %v", r.Pattern, r.Value)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// ValidPattern reports whether p is an interface name or a well-formed
// pattern.
func ValidPattern(p string) bool {
	if p == "" {
		return false
	}
	_, err := path.Match(p, "")
	return err == nil
}
