package manager

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/mifike/mifike/internal/ifacerule"
)

// MPTCP over the per-interface VPNs (issue 20, docs/multipath.md): each
// VPN has its own inner address (RFC 7791 clones with own_vips), and an
// MPTCP endpoint on that address makes the kernel's in-kernel path
// manager open one subflow (RFC 8684 §3.2, MP_JOIN) from it. The data
// plane sends a packet through the Child SA whose local selectors hold
// its source address, so a subflow bound to a VPN's inner address rides
// that VPN, and so the interface that VPN is on. Endpoints decides which
// endpoints there should be; the daemon makes the kernel's table agree.

// MultipathMode is how a VPN's inner address takes part in MPTCP.
type MultipathMode int

const (
	// MultipathActive: its subflow carries traffic with the others.
	MultipathActive MultipathMode = iota
	// MultipathBackup: its subflow is opened but carries traffic only
	// when no active one is left (RFC 8684 §3.3.8, the B flag; the
	// endpoint flag backup), e.g. a metered LTE link.
	MultipathBackup
	// MultipathOff: no endpoint, no subflow.
	MultipathOff
)

func (m MultipathMode) String() string {
	switch m {
	case MultipathBackup:
		return "backup"
	case MultipathOff:
		return "off"
	}
	return "active"
}

// ParseMultipathMode reads active, backup or off.
func ParseMultipathMode(s string) (MultipathMode, error) {
	for _, m := range []MultipathMode{MultipathActive, MultipathBackup, MultipathOff} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%q is not a multipath mode: want active, backup or off", s)
}

// Endpoint is an MPTCP endpoint the host should have: a VPN's inner
// address, flagged backup or not, and the interface the VPN is on now
// (for logs).
type Endpoint struct {
	Addr   netip.Addr
	Backup bool
	Iface  string
}

func (e Endpoint) String() string {
	s := e.Addr.String() + " (" + e.Iface
	if e.Backup {
		s += ", backup"
	}
	return s + ")"
}

// Endpoints are the MPTCP endpoints the connection's VPNs call for: one
// per inner address of every established VPN (not one being deleted)
// whose tunnel-mode Child SA covers it, with the mode of the interface
// the VPN is on now, so an endpoint follows its VPN as it moves (a VPN
// moved onto a backup interface becomes backup). An interface the
// manager cannot place counts as active: a VPN whose interface just
// went keeps its subflow while MOBIKE moves it. In failover mode there
// is one VPN and nothing to spread: no endpoints. Sorted by address.
func (m *Manager) Endpoints(ifaces []Interface, sas []SA) []Endpoint {
	if !m.p.MPTCP || m.p.Mode != PerInterface {
		return nil
	}
	return Endpoints(m.p.Multipath, ifaces, sas)
}

// Endpoints is Manager.Endpoints for any rules.
func Endpoints(rules ifacerule.Rules[MultipathMode], ifaces []Interface, sas []SA) []Endpoint {
	by := map[netip.Addr]Endpoint{}
	for _, s := range current(sas) {
		if !s.Established || s.Deleting {
			continue
		}
		iface := ifaceOf(s, ifaces)
		mode := rules.Lookup(iface, MultipathActive)
		if mode == MultipathOff {
			continue
		}
		for _, a := range s.VIPs {
			if !carries(s, a) {
				continue
			}
			e := Endpoint{Addr: a, Backup: mode == MultipathBackup, Iface: iface}
			if o, dup := by[a]; dup && !o.Backup {
				continue // a shared address: active wins
			}
			by[a] = e
		}
	}
	out := make([]Endpoint, 0, len(by))
	for _, e := range by {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return a.Addr.Compare(b.Addr) })
	return out
}

// carries: a tunnel-mode Child SA of s sends from a.
func carries(s SA, a netip.Addr) bool {
	for _, c := range s.Children {
		if !c.Transport && c.Covers != nil && c.Covers(a) {
			return true
		}
	}
	return false
}
