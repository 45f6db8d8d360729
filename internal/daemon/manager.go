package daemon

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/ifacerule"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/manager"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// newManagers makes a manager for each connection with an interfaces
// section, keeping the ones whose policy did not change (a reload keeps
// their memory of homes).
func (d *Daemon) newManagers(cfg *config.Config) {
	old := d.managers
	d.managers = map[string]*manager.Manager{}
	for _, cc := range cfg.Connections {
		ic := cc.Interfaces
		if ic == nil {
			continue
		}
		p := manager.Policy{Conn: cc.Name, Use: ic.Use, MoveOnDown: ic.OnDown == "move", MoveBack: ic.OnReturn == "move-back",
			Children: ic.Children, AllGatewayAddrs: ic.GatewayAddrs == "all"}
		if ic.Mode == "failover" {
			p.Mode = manager.Failover
		}
		if cfg.MPTCP.Enable {
			p.MPTCP = true
			for _, r := range ic.Multipath {
				mode, _ := manager.ParseMultipathMode(r.Value) // config checked it
				p.Multipath = append(p.Multipath, ifacerule.Rule[manager.MultipathMode]{Pattern: r.Pattern, Value: mode})
			}
		}
		if ic.Spread != nil {
			p.Spread = true
			p.SpreadWeights = ic.Spread
			p.SpreadMeasured = ic.SpreadMeasured
		}
		if m := old[cc.Name]; m != nil && d.policies[cc.Name].Describe() == p.Describe() {
			m.ClearAuthHolds() // new credentials may be in the reloaded file
			d.managers[cc.Name] = m
		} else {
			d.managers[cc.Name] = manager.New(p, d.log.With("component", "manager"))
		}
		d.policies[cc.Name] = p
		d.log.Info("interface manager", "conn", cc.Name, "policy", p.Describe())
		if ic.NoClone {
			d.log.Warn("interfaces: per-interface without clone.enable authenticates once per interface; enable cloning to authenticate once (RFC 7791)", "conn", cc.Name)
		}
	}
}

// reconcile lets every manager compare its connection's SAs with the
// interfaces and carries out what it decides.
func (d *Daemon) reconcile() {
	if len(d.managers) == 0 && d.mptcp == nil && d.spread == nil {
		return
	}
	now := time.Now()
	ifaces := d.host.Interfaces(d.ownsDevice)
	all := d.engine.IKESAs()
	for name, m := range d.managers {
		c := d.conn(name)
		if c == nil || len(c.RemoteAddrs) == 0 {
			continue
		}
		for _, cmd := range m.Reconcile(now, c.RemoteAddrs[0], ifaces, managerSAs(all, name)) {
			d.execute(m, c, cmd)
		}
	}
	if d.mptcp != nil {
		// After the commands: what they changed shows at the next call.
		all = d.engine.IKESAs()
		var want []manager.Endpoint
		for name, m := range d.managers {
			want = append(want, m.Endpoints(ifaces, managerSAs(all, name))...)
		}
		d.syncMPTCP(want)
	}
	if d.spread != nil {
		all = d.engine.IKESAs()
		ts := map[string][]manager.SpreadTarget{}
		for name, m := range d.managers {
			if t := m.SpreadTargets(ifaces, managerSAs(all, name)); t != nil {
				ts[name] = t
			}
		}
		d.spread.last = ts
		groups, staying, why := spreadGroups(ts)
		d.syncSpread(groups, staying, why)
	}
}

// managerSAs is what a connection's manager sees of its IKE SAs: those
// established, being set up or being deleted, with their Child SAs.
func managerSAs(all []ike.IKESAInfo, conn string) []manager.SA {
	var sas []manager.SA
	for _, s := range all {
		if s.Conn != conn || (s.State != ike.StateEstablished && s.State != ike.StateConnecting && s.State != ike.StateDeleting) {
			continue
		}
		ms := manager.SA{ID: s.ID, Lineage: s.Lineage, Established: s.State == ike.StateEstablished, Deleting: s.State == ike.StateDeleting,
			Local: s.Local.Addr(), Remote: s.Remote.Addr(),
			Iface: s.Iface, Parent: s.Parent, CloneSupported: s.CloneSupported, MOBIKE: s.MOBIKE,
			MOBIKEInitiator: s.MOBIKEInitiator, PeerAddrs: s.PeerAddrs, VIPs: s.VirtualIPs, Creating: s.Creating,
			Path: manager.PathStats{RTT: s.RTT, Loss: s.Loss, Samples: s.RTTSamples}}
		for _, ch := range s.Children {
			ms.Children = append(ms.Children, manager.Child{Name: ch.Name, InSPI: ch.InSPI, Transport: ch.Mode == ike.Transport,
				Covers: covers(ch.LocalTS), CoversRemote: covers(ch.RemoteTS)})
		}
		sas = append(sas, ms)
	}
	return sas
}

// covers says whether an address lies in one of the selectors.
func covers(sel []wire.Selector) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		for _, x := range sel {
			if ts.Match(x, a, 0, 0) || (x.Start.IsValid() && !a.Less(x.Start) && !x.End.Less(a)) {
				return true
			}
		}
		return false
	}
}

func (d *Daemon) conn(name string) *ike.Connection {
	for _, c := range d.conns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (d *Daemon) execute(m *manager.Manager, c *ike.Connection, cmd manager.Command) {
	acts, err := runCommand(d.engine, time.Now(), m, c, cmd)
	d.apply(acts)
	if err != nil {
		d.log.Warn("interface manager: command failed", "conn", c.Name, "command", cmd, "err", err)
	}
}

// runCommand carries out one of the manager's commands on the engine.
func runCommand(e *ike.Engine, now time.Time, m *manager.Manager, c *ike.Connection, cmd manager.Command) ([]ike.Action, error) {
	switch x := cmd.(type) {
	case manager.Initiate:
		// Port 0: the engine fills in our IKE port and the connection's;
		// an invalid x.Remote is the connection's address.
		var remote netip.AddrPort
		if x.Remote.IsValid() {
			remote = netip.AddrPortFrom(x.Remote, 0)
		}
		id, acts, err := e.Initiate(now, ike.InitiateOptions{Conn: c.Name, Local: netip.AddrPortFrom(x.Local, 0),
			Remote: remote, Iface: x.Iface})
		if err == nil {
			m.Bind(x.Slot, id)
		}
		return acts, err
	case manager.Clone:
		return e.Clone(now, x.ID)
	case manager.CreateChild:
		return e.CreateChild(now, x.ID, x.Name)
	case manager.Move:
		return e.Move(now, x.ID, x.Local, x.Remote, x.Iface)
	case manager.Terminate:
		return e.Terminate(now, x.ID, x.ChildSPI)
	}
	return nil, fmt.Errorf("unknown manager command %T", cmd)
}
