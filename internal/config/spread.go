package config

import (
	"fmt"
	"strconv"
	"time"

	"github.com/mifike/mifike/internal/ifacerule"
)

// MaxSpreadWeight bounds a weight of interfaces.spread: the ruleset
// has one hash bucket per unit of weight (after dividing by the
// weights' common divisor), so a few hundred at most.
const MaxSpreadWeight = 100

// ifaceSpread reads interfaces.spread: the weight of the VPNs on the
// interfaces named among new flows: spread: {eth*: 3, wlan*: 2, wwan*: 0}.
func (p *parser) ifaceSpread(f *fields) ifacerule.Rules[int] {
	return ifaceRules(p, f, "spread", "{eth*: 3, wlan*: 2, wwan*: 0}",
		fmt.Sprintf("a weight from 0 (no new flows) to %d", MaxSpreadWeight), func(s string) (int, bool) {
			w, err := strconv.Atoi(s)
			return w, err == nil && w >= 0 && w <= MaxSpreadWeight
		})
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
		some = some || s.Value > 0
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
	if !some && ic.Spread.CatchAll() {
		p.fail(ic.spreadLine, field, "every weight is 0 and every interface is named by a pattern: no VPN would get a new flow; give one a weight above 0")
	}
}

// Bounds of interfaces.spread_probe: more often than minSpreadProbe
// would be IKE traffic for its own sake (and no better figures: the
// estimates average many samples anyway).
const (
	defaultSpreadProbe = 10 * time.Second
	minSpreadProbe     = 100 * time.Millisecond
	maxSpreadProbe     = time.Hour
)

// spreadMeasurement reads interfaces.spread_measured and spread_probe:
// whether the spreading weights follow each VPN's measured path, and how
// often a path is measured (0: only by the exchanges there are anyway).
// Without spread they do nothing (spreadProbe).
func (p *parser) spreadMeasurement(f *fields) (bool, time.Duration) {
	measured := f.boolean("spread_measured", true)
	probe := defaultSpreadProbe
	if d, ok := f.duration("spread_probe"); ok {
		switch {
		case d != 0 && d < minSpreadProbe:
			f.fail("spread_probe", "%v is too often (IKE traffic for its own sake); use 0 (off) or %v to %v", d, minSpreadProbe, maxSpreadProbe)
		case d > maxSpreadProbe:
			f.fail("spread_probe", "%v is out of range; use 0 (off) or %v to %v", d, minSpreadProbe, maxSpreadProbe)
		default:
			probe = d
		}
	}
	return measured, probe
}
