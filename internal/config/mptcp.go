package config

import "github.com/mifike/mifike/internal/ifacerule"

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

// ifaceMultipath reads interfaces.multipath: the MPTCP role of the VPNs
// on the interfaces named: multipath: {eth*: active, wwan*: backup}.
func (p *parser) ifaceMultipath(f *fields) ifacerule.Rules[string] {
	return ifaceRules(p, f, "multipath", "{eth*: active, wwan*: backup}",
		"active (carries traffic), backup (only when no active one is left) or off", func(s string) (string, bool) {
			return s, s == "active" || s == "backup" || s == "off"
		})
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
