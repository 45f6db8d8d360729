package daemon

import (
	"errors"
	"net/netip"
	"slices"

	"github.com/mifike/mifike/internal/control"

	"github.com/mifike/mifike/internal/manager"
	"github.com/mifike/mifike/internal/mptcp"
)

// MPTCP over the per-interface VPNs (the mptcp section, issue 20,
// docs/multipath.md). The managers say which endpoints the VPNs call for
// (manager.Endpoints: one per inner address, backup or not by the
// interface its VPN is on now); syncMPTCP makes the kernel's in-kernel
// path manager agree, after every reconcile. The data plane already
// sends each inner address's packets through its own VPN (the SPD
// matches the source against each Child SA's local selectors), so a
// subflow the kernel opens from an endpoint rides that VPN; the gateway
// sends the subflow's packets back through the Child SA whose remote
// selector is that address.
//
// The daemon touches only endpoints of its VPNs' inner addresses: it
// adds them (or takes over one already there for such an address),
// changes their backup flag, deletes them when their VPN goes, and
// deletes every one of them when it stops. The namespace's limits are
// set at start and put back as they were at the stop.
type mptcpState struct {
	pm *mptcp.PM
	// ours are the endpoints we keep, by address, with whether each is
	// backup.
	ours map[netip.Addr]bool
	// before are the limits found at start, put back at the stop.
	before mptcp.Limits
	set    bool // the limits were changed
}

// configureMPTCP opens the path manager when the configuration enables
// MPTCP (at start and after a reload) and closes it when it no longer
// does. A kernel without MPTCP is logged, not fatal: the VPNs work
// without it.
func (d *Daemon) configureMPTCP() {
	m := d.cfg.MPTCP
	if !m.Enable {
		d.closeMPTCP()
		return
	}
	if d.mptcp == nil {
		if d.plane != nil && d.espInUDP == nil {
			// data_plane auto chose the kernel's (config refuses kernel).
			d.log.Warn("mptcp: endpoints are made for the userspace data plane's inner addresses; with the kernel's (data_plane auto chose it) they are untested: set data_plane: userspace")
		}
		if on, err := mptcp.Enabled(); err == nil && !on {
			d.log.Warn("mptcp: net.mptcp.enabled is 0 here: applications asking for MPTCP get plain TCP; sysctl -w net.mptcp.enabled=1")
		}
		pm, err := mptcp.Open()
		if err != nil {
			d.log.Error("mptcp: no MPTCP endpoints for the VPNs", "err", err)
			return
		}
		d.mptcp = &mptcpState{pm: pm, ours: map[netip.Addr]bool{}}
		if l, err := pm.Limits(); err == nil {
			d.mptcp.before = l
		}
	}
	if err := d.mptcp.pm.SetLimits(m.Subflows, m.AddAddrAccepted); err != nil {
		d.log.Warn("mptcp: cannot set the limits", "err", err)
	} else {
		d.mptcp.set = true
		l, _ := d.mptcp.pm.Limits()
		d.log.Info("mptcp: endpoints for the VPNs' inner addresses", "subflows", l.Subflows, "add_addr_accepted", l.AddAddrAccepted)
	}
	d.reconcileSoon = true
}

// mptcpEndpoints lists the endpoints we keep, by address, for stats and
// metrics. Only on the daemon's goroutine.
func (d *Daemon) mptcpEndpoints() []control.MPTCPEndpoint {
	if d.mptcp == nil {
		return nil
	}
	var out []control.MPTCPEndpoint
	for a, backup := range d.mptcp.ours {
		mode := "active"
		if backup {
			mode = "backup"
		}
		out = append(out, control.MPTCPEndpoint{Addr: a, Mode: mode})
	}
	slices.SortFunc(out, func(x, y control.MPTCPEndpoint) int { return x.Addr.Compare(y.Addr) })
	return out
}

// syncMPTCP brings the kernel's endpoints in line with want.
func (d *Daemon) syncMPTCP(want []manager.Endpoint) {
	s := d.mptcp
	if s == nil {
		return
	}
	have, err := s.pm.Endpoints()
	if err != nil {
		d.log.Warn("mptcp: cannot list the endpoints", "err", err)
		return
	}
	byAddr := map[netip.Addr]mptcp.Endpoint{}
	for _, e := range have {
		byAddr[e.Addr] = e
	}
	wanted := map[netip.Addr]bool{}
	for _, w := range want {
		wanted[w.Addr] = true
		flags := mptcp.FlagSubflow
		if w.Backup {
			flags |= mptcp.FlagBackup
		}
		e, ok := byAddr[w.Addr]
		switch {
		case !ok:
			if err := s.pm.Add(w.Addr, flags); err != nil {
				d.log.Warn("mptcp: cannot add an endpoint", "addr", w.Addr, "err", err)
				continue
			}
			d.log.Info("mptcp: endpoint added", "addr", w.Addr, "iface", w.Iface, "backup", w.Backup)
		case e.Flags&mptcp.FlagBackup != 0 != w.Backup:
			if err := s.pm.SetBackup(e, w.Backup); err != nil {
				d.log.Warn("mptcp: cannot change an endpoint", "addr", w.Addr, "err", err)
				continue
			}
			d.log.Info("mptcp: endpoint changed", "addr", w.Addr, "iface", w.Iface, "backup", w.Backup)
		case !s.ours[w.Addr] && e.Flags&mptcp.FlagSubflow == 0:
			d.log.Warn("mptcp: an endpoint for a VPN's inner address is not a subflow endpoint; leaving it", "endpoint", e)
		}
		s.ours[w.Addr] = w.Backup
	}
	for a := range s.ours {
		if wanted[a] {
			continue
		}
		delete(s.ours, a)
		if e, ok := byAddr[a]; ok {
			if err := s.pm.Delete(e); err != nil {
				d.log.Warn("mptcp: cannot delete an endpoint", "addr", a, "err", err)
				continue
			}
			d.log.Info("mptcp: endpoint deleted: its VPN is gone", "addr", a)
		}
	}
}

// closeMPTCP deletes our endpoints and puts the limits back.
func (d *Daemon) closeMPTCP() {
	s := d.mptcp
	if s == nil {
		return
	}
	d.mptcp = nil
	have, err := s.pm.Endpoints()
	var errs error
	if err == nil {
		for _, e := range have {
			if _, ok := s.ours[e.Addr]; ok {
				errs = errors.Join(errs, s.pm.Delete(e))
			}
		}
	}
	if s.set {
		errs = errors.Join(errs, s.pm.SetLimits(int(s.before.Subflows), int(s.before.AddAddrAccepted)))
	}
	if errs = errors.Join(err, errs); errs != nil {
		d.log.Warn("mptcp: cleaning up", "err", errs)
	}
}
