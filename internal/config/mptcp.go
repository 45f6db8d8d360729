package config

import (
	"path"

	"gopkg.in/yaml.v3"
)

// defaultMPTCPSubflows is the subflow limit the mptcp section sets
// unless told otherwise: the most the kernel's in-kernel path manager
// allows per connection (MPTCP_PM_ADDR_MAX), so that no VPN is left
// without its subflow.
const defaultMPTCPSubflows = 8

// mptcp reads the top-level mptcp section.
func (p *parser) mptcp(f *fields, line int) MPTCPConfig {
	m := MPTCPConfig{Line: line, Subflows: defaultMPTCPSubflows, AddAddrAccepted: -1}
	m.Enable = f.boolean("enable", false)
	m.Subflows = f.integer("subflows", defaultMPTCPSubflows, 0, 8)
	if f.has("add_addr_accepted") {
		m.AddAddrAccepted = f.integer("add_addr_accepted", 0, 0, 8)
	}
	if !m.Enable {
		for _, k := range []string{"subflows", "add_addr_accepted"} {
			if f.has(k) {
				p.warn(f.at(k), f.field(k), "has no effect without enable: yes (mifike leaves MPTCP alone)")
			}
		}
	}
	return m
}

// ifaceMultipath reads interfaces.multipath: interface names or patterns
// to the MPTCP role of the VPNs on them, in file order, the first match
// winning: multipath: {eth*: active, wwan*: backup}.
func (p *parser) ifaceMultipath(f *fields) []IfaceMultipath {
	field := f.field("multipath")
	n := resolve(f.val["multipath"])
	if n == nil || n.Kind != yaml.MappingNode {
		f.fail("multipath", "want a mapping of interface names or patterns to active, backup or off, such as {eth*: active, wwan*: backup}")
		return nil
	}
	var out []IfaceMultipath
	for _, pr := range p.pairs(n, field) {
		k, v := pr.key, resolve(pr.val)
		kf := join(field, k.Value)
		if _, err := path.Match(k.Value, ""); err != nil || k.Kind != yaml.ScalarNode || k.Value == "" {
			p.fail(k.Line, field, "%q is not an interface name or pattern", k.Value)
			continue
		}
		switch {
		case v == nil || v.Kind != yaml.ScalarNode:
			p.fail(k.Line, kf, "want active, backup or off")
			continue
		case v.Value == "active" || v.Value == "backup" || v.Value == "off":
		default:
			p.fail(v.Line, kf, "%q: want active (carries traffic), backup (only when no active one is left) or off", v.Value)
			continue
		}
		out = append(out, IfaceMultipath{Pattern: k.Value, Mode: v.Value})
	}
	return out
}

// checkMultipath refuses what cannot give one MPTCP subflow per VPN: a
// multipath map without the top-level switch, one VPN (failover), VPNs
// without inner addresses of their own, or no data plane to carry them.
func (p *parser) checkMultipath(c *Config, cc *ConnConfig) {
	ic := cc.Interfaces
	if ic == nil {
		return
	}
	conn := "connections." + cc.Name
	if len(ic.Multipath) > 0 && !c.MPTCP.Enable {
		p.warn(ic.multipathLine, conn+".interfaces.multipath", "has no effect: MPTCP endpoints are off; add the top-level mptcp: {enable: yes}")
		return
	}
	if !c.MPTCP.Enable {
		return
	}
	if ic.Mode == "failover" {
		if len(ic.Multipath) > 0 {
			p.fail(ic.multipathLine, conn+".interfaces.multipath", "mode failover keeps one VPN: MPTCP needs mode per-interface, a VPN on every interface")
		}
		return // one VPN: no endpoints
	}
	switch {
	case !hasVIPRequest(cc):
		p.fail(cc.Line, conn+".vips", "MPTCP needs an inner address per VPN: request one with vips: [0.0.0.0] (and clone.own_vips: yes)")
	case cc.Clone.Enable && !cc.Clone.OwnVIPs:
		p.fail(cc.Line, conn+".clone.own_vips", "MPTCP needs an inner address per VPN, or every subflow leaves through the first VPN: set clone.own_vips: yes")
	case c.DataPlane == "none" || c.DataPlane == "kernel":
		p.fail(c.MPTCP.Line, "mptcp.enable", "MPTCP endpoints are made for the userspace data plane's inner addresses; data_plane is %s: use userspace or auto", c.DataPlane)
	}
}

func hasVIPRequest(cc *ConnConfig) bool {
	return len(cc.VIPs) > 0
}
