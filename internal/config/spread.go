package config

import (
	"path"
	"strconv"

	"gopkg.in/yaml.v3"
)

// MaxSpreadWeight bounds a weight of interfaces.spread: the ruleset
// has one hash bucket per unit of weight (after dividing by the
// weights' common divisor), so a few hundred at most.
const MaxSpreadWeight = 100

// ifaceSpread reads interfaces.spread: interface names or patterns to
// the weight of the VPNs on them among new flows, in file order, the
// first match winning: spread: {eth*: 3, wlan*: 2, wwan*: 0}.
func (p *parser) ifaceSpread(f *fields) []IfaceSpread {
	field := f.field("spread")
	n := resolve(f.val["spread"])
	if n == nil || n.Kind != yaml.MappingNode {
		f.fail("spread", "want a mapping of interface names or patterns to weights, such as {eth*: 3, wlan*: 2, wwan*: 0}")
		return nil
	}
	out := []IfaceSpread{} // spread: {} is on, every VPN weighing 1
	for _, pr := range p.pairs(n, field) {
		k, v := pr.key, resolve(pr.val)
		kf := join(field, k.Value)
		if _, err := path.Match(k.Value, ""); err != nil || k.Kind != yaml.ScalarNode || k.Value == "" {
			p.fail(k.Line, field, "%q is not an interface name or pattern", k.Value)
			continue
		}
		if v == nil || v.Kind != yaml.ScalarNode {
			p.fail(k.Line, kf, "want a weight from 0 (no new flows) to %d", MaxSpreadWeight)
			continue
		}
		w, err := strconv.Atoi(v.Value)
		if err != nil || w < 0 || w > MaxSpreadWeight {
			p.fail(v.Line, kf, "%q: want a weight from 0 (no new flows) to %d", v.Value, MaxSpreadWeight)
			continue
		}
		out = append(out, IfaceSpread{Pattern: k.Value, Weight: w})
	}
	return out
}

// checkSpread refuses what cannot put a flow on a VPN of its own
// choosing: one VPN (failover), VPNs without inner addresses of their
// own (the flow's source address is what picks the VPN), a data plane
// other than userspace's, or weights that give no VPN any flow.
func (p *parser) checkSpread(c *Config, cc *ConnConfig) {
	ic := cc.Interfaces
	if ic == nil || ic.Spread == nil {
		return
	}
	conn := "connections." + cc.Name
	field := conn + ".interfaces.spread"
	some := false
	for _, s := range ic.Spread {
		some = some || s.Weight > 0
	}
	if ic.Mode == "failover" {
		p.fail(ic.spreadLine, field, "mode failover keeps one VPN: spreading flows needs mode per-interface, a VPN on every interface")
		return
	}
	// Each on its own: a file may have several of these to fix.
	if !hasVIPRequest(cc) {
		p.fail(cc.Line, conn+".vips", "interfaces.spread puts flows on VPNs by their source address, one inner address per VPN: request one with vips: [0.0.0.0] (and clone.own_vips: yes)")
	} else if cc.Clone.Enable && !cc.Clone.OwnVIPs {
		p.fail(cc.Line, conn+".clone.own_vips", "interfaces.spread puts flows on VPNs by their source address: every VPN needs its own inner address; set clone.own_vips: yes")
	}
	if c.DataPlane == "none" || c.DataPlane == "kernel" {
		p.fail(ic.spreadLine, field, "flows are spread over the userspace data plane's TUN device; data_plane is %s: use userspace or auto", c.DataPlane)
	}
	if !some && !spreadHasDefault(ic.Spread) {
		p.fail(ic.spreadLine, field, "every weight is 0 and every interface is named by a pattern: no VPN would get a new flow; give one a weight above 0")
	}
}

// spreadHasDefault: some interface may match no pattern, and so weigh
// 1. A lone "*" matches every name.
func spreadHasDefault(rules []IfaceSpread) bool {
	for _, r := range rules {
		if r.Pattern == "*" {
			return false
		}
	}
	return true
}
