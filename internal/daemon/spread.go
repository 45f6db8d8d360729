package daemon

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/manager"
	"github.com/mifike/mifike/internal/spread"
)

// Flow spreading over the per-interface VPNs (interfaces.spread, issue
// 20 item 2, docs/multipath.md "Flow spreading"). The managers say which
// VPNs take new flows and with which weight (manager.SpreadTargets: the
// interface each VPN is on now); syncSpread writes the nftables table
// that translates a new flow's source to its VPN's inner address, after
// every reconcile, as syncMPTCP does for the MPTCP endpoints. The data
// plane then sends the flow through that VPN's Child SA (its SPD picks
// the Child SA by source address), and conntrack keeps the flow there.
type spreadState struct {
	dev string // the userspace data plane's TUN device
	// script is the ruleset last applied ("" none yet), targets the
	// inner addresses it spread over.
	script  string
	targets map[netip.Addr]bool // of VPNs not being deleted
	// last are the managers' targets at the last reconcile, by
	// connection (for stats).
	last map[string][]manager.SpreadTarget
}

// spreadTargets are the VPNs new flows are spread over, for stats.
func (d *Daemon) spreadTargets() []control.SpreadTarget {
	if d.spread == nil {
		return nil
	}
	var out []control.SpreadTarget
	for _, conn := range slices.Sorted(maps.Keys(d.spread.last)) {
		for _, t := range d.spread.last[conn] {
			out = append(out, control.SpreadTarget{Conn: conn, Addr: t.Addr, Iface: t.Iface, Weight: t.Weight,
				Configured: t.Configured, Factor: t.Factor, Leaving: t.Leaving, Measured: t.Path.Samples > 0,
				RTTMs: float64(t.Path.RTT.Microseconds()) / 1000, Loss: t.Path.Loss})
		}
	}
	return out
}

// spreads: does any connection ask for flow spreading.
func (d *Daemon) spreads() bool {
	for _, cc := range d.cfg.Connections {
		if cc.Interfaces != nil && cc.Interfaces.Spread != nil {
			return true
		}
	}
	return false
}

// configureSpread starts flow spreading when the configuration asks
// for it (at start and after a reload), and removes the table when it
// no longer does. Without the userspace data plane's device there is
// nothing to spread over: logged, not fatal.
func (d *Daemon) configureSpread() {
	if !d.spreads() {
		d.closeSpread()
		return
	}
	if d.spread != nil {
		d.reconcileSoon = true
		return
	}
	named, ok := d.plane.(interface{ Name() string })
	if !ok || d.espInUDP == nil {
		d.log.Error("spread: flows are spread over the userspace data plane's TUN device, and this data plane is not it (data_plane auto chose the kernel's?): set data_plane: userspace")
		return
	}
	d.spread = &spreadState{dev: named.Name(), targets: map[netip.Addr]bool{}}
	d.log.Info("spread: new flows that are not MPTCP are spread over the VPNs", "table", "inet "+spread.Table, "device", named.Name())
	d.reconcileSoon = true
}

// syncSpread writes the rules for the VPNs the managers name, when they
// changed, and forgets the translations of flows given to a VPN that
// fails for good (being deleted, or gone): their next packet is a new
// flow and gets another VPN. A VPN that moves keeps its inner address
// and its flows. staying says which targets are not Leaving.
// why names the targets with their weights' makings, for the log.
func (d *Daemon) syncSpread(groups []spread.Group, staying map[netip.Addr]bool, why []string) {
	s := d.spread
	if s == nil {
		return
	}
	script := spread.Rules(s.dev, groups)
	if script != s.script {
		apply := script
		if s.script == "" {
			apply = spread.Setup() + script // the table once, then only its rules
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := spread.Apply(ctx, apply)
		cancel()
		if err != nil {
			d.log.Warn("spread: cannot write the rules", "err", err)
			return // tried again at the next reconcile
		}
		s.script = script
		d.log.Info("spread: rules written", "groups", groups, "targets", why)
	}
	for a := range s.targets {
		if staying[a] {
			continue
		}
		// After the rules: a flow forgotten now is a new flow that
		// the rules no longer give to a.
		n, err := spread.Forget(a)
		if err != nil {
			d.log.Warn("spread: cannot forget the flows of a VPN that failed", "addr", a, "err", err)
		} else {
			d.log.Info("spread: a VPN failed; its flows are given another", "addr", a, "flows", n)
		}
	}
	s.targets = staying
}

// spreadGroups are the managers' targets, one group per connection,
// the addresses of the VPNs staying, and the targets described (their
// configured weights, path factors and paths).
func spreadGroups(ts map[string][]manager.SpreadTarget) ([]spread.Group, map[netip.Addr]bool, []string) {
	var out []spread.Group
	var why []string
	staying := map[netip.Addr]bool{}
	for _, conn := range slices.Sorted(maps.Keys(ts)) {
		g := spread.Group{Conn: conn}
		for _, t := range ts[conn] {
			why = append(why, conn+": "+t.String())
			g.Targets = append(g.Targets, spread.Target{Addr: t.Addr, Weight: t.Weight})
			if !t.Leaving {
				staying[t.Addr] = true
			}
		}
		out = append(out, g)
	}
	return out, staying, why
}

// closeSpread removes the table (its NAT no longer applies to new
// flows; flows already translated keep their conntrack entries).
func (d *Daemon) closeSpread() {
	if d.spread == nil {
		return
	}
	d.spread = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := spread.Apply(ctx, spread.RemoveScript()); err != nil {
		d.log.Warn("spread: cannot remove the table", "table", "inet "+spread.Table, "err", err)
		return
	}
	d.log.Info("spread: table removed", "table", "inet "+spread.Table)
}
