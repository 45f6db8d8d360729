//go:build linux

package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
)

// The multi-interface suites (new-interface, failover, three tunnels)
// run on the demo's lab: an end user with eth0, wlan0, wwan0 (and usb0,
// down until a suite brings it up) behind a router, a gateway with two
// addresses, a server behind it:
//
//	        eth0  10.91.1.2 ─┐                ┌─ up0 10.92.1.2 ┐
//	[ue]    wlan0 10.91.2.2 ─┼─ [net] router ─┤                ├ [gw] ─ lan0 10.93.0.1 ── [srv] 10.93.0.2
//	        wwan0 10.91.3.2 ─┤                └─ up1 10.92.2.2 ┘
//	        usb0  10.91.4.2 ─┘
//
// Each end-user address also gets a routing table of its own, chosen by
// source address, so a daemon that sends from an interface's address
// (strongSwan with local_addrs) leaves through that interface; mifike
// pins its packets to the interface itself.

// mifIfaces are the end user's interfaces: the demo's and usb0.
var mifIfaces = demo.Accesses()

type mifLab struct {
	*demo.Topology
	e *suiteEnv
}

func newMifLab(e *suiteEnv, name string) (*mifLab, error) {
	t, err := demo.Build(e.ctx, "mfkm", filepath.Join(e.dir, name), e.exe)
	if err != nil {
		return nil, err
	}
	m := &mifLab{Topology: t, e: e}
	if err := t.AddInterface(demo.Extra); err != nil {
		t.Close()
		return nil, err
	}
	for i, a := range mifIfaces {
		table := fmt.Sprint(100 + i)
		if err := t.IP(t.UE, "rule", "add", "from", a.Addr, "lookup", table, "pref", table); err != nil {
			t.Close()
			return nil, err
		}
		if err := m.sourceRoute(a); err != nil {
			t.Close()
			return nil, err
		}
	}
	// usb0 starts without its address: plugUSB adds it, the one change
	// that makes usb0 usable, as a DHCP lease does.
	if err := t.IP(t.UE, "addr", "del", demo.Extra.Addr+"/24", "dev", demo.Extra.Dev); err != nil {
		t.Close()
		return nil, err
	}
	return m, nil
}

// plugUSB gives usb0 its address (on) or takes it away. Its routes
// come first (onlink: they need no address; deleting the address
// flushes them): had they come after the address, a daemon reacting at
// once would find no route for its first packet.
func (m *mifLab) plugUSB(on bool) error {
	if !on {
		return m.IP(m.UE, "addr", "del", demo.Extra.Addr+"/24", "dev", demo.Extra.Dev)
	}
	for _, r := range [][]string{
		{"route", "replace", "default", "via", demo.Extra.Router, "dev", demo.Extra.Dev, "onlink", "metric", fmt.Sprint(demo.Extra.Metric)},
		{"route", "replace", "default", "via", demo.Extra.Router, "dev", demo.Extra.Dev, "onlink", "table", fmt.Sprint(100 + len(mifIfaces) - 1)},
	} {
		if err := m.IP(m.UE, r...); err != nil {
			return err
		}
	}
	return m.IP(m.UE, "addr", "add", demo.Extra.Addr+"/24", "dev", demo.Extra.Dev)
}

func (m *mifLab) sourceRoute(a demo.Access) error {
	for i, x := range mifIfaces {
		if x.Dev == a.Dev {
			return m.IP(m.UE, "route", "replace", "default", "via", a.Router, "dev", a.Dev, "table", fmt.Sprint(100+i))
		}
	}
	return fmt.Errorf("no interface %s", a.Dev)
}

// setLink takes an end-user interface down or up again, with its routes.
func (m *mifLab) setLink(dev string, up bool) error {
	if err := m.SetLink(dev, up); err != nil {
		return err
	}
	if !up {
		return nil
	}
	a, ok := demo.AccessOf(dev)
	if !ok {
		return nil
	}
	if err := m.IP(m.UE, "route", "replace", "default", "via", a.Router, "dev", a.Dev, "metric", fmt.Sprint(a.Metric)); err != nil {
		return err
	}
	return m.sourceRoute(a)
}

func ifaceAddr(dev string) string {
	a, _ := demo.AccessOf(dev)
	return a.Addr
}

// mifOpts vary the mifike and strongSwan configurations on the lab.
type mifOpts struct {
	auth   string      // psk, ecdsa, eap-mschapv2 or eap-tls
	rad    *radiusSite // FreeRADIUS, for the EAP methods
	clone  bool        // the end user clones (RFC 7791); else it authenticates per interface
	mode   string      // per-interface or failover
	use    []string
	onDown string // move or delete
	dpd    time.Duration
	// liveness is the end user's liveness_window (the traffic-driven
	// liveness check); 0 none.
	liveness time.Duration
	encap    bool // ESP in UDP without a NAT, as kernel-libipsec always does
	rt       retransmitOpts
	pki      pki
	eapID    string // the gateway's remote.eap_id (EAP methods)
}

const mifProposal = HandshakeIKEProposal

// mifUEConf is the end user's mifike.yaml (the control section is added
// by StartDaemon).
func mifUEConf(o mifOpts) string {
	var b strings.Builder
	b.WriteString("log: {level: info}\ndata_plane: userspace\ntun: {name: mifike0}\n")
	writeRetransmit(&b, o.rt)
	b.WriteString("connections:\n  office:\n")
	fmt.Fprintf(&b, "    remote_addrs: [%s]\n    proposals: %s\n    vips: [0.0.0.0]\n", demo.GatewayAddrs[0], mifProposal)
	writeMifAuth(&b, o, ueID, gwID)
	if o.dpd > 0 {
		fmt.Fprintf(&b, "    dpd_delay: %v\n", o.dpd)
	}
	if o.liveness > 0 {
		fmt.Fprintf(&b, "    liveness_window: %v\n", o.liveness)
	}
	fmt.Fprintf(&b, "    clone: {enable: %t, max_ike_sas: 8, own_vips: true}\n", o.clone)
	if o.encap {
		b.WriteString("    encap: yes\n")
	}
	onReturn := "move-back"
	fmt.Fprintf(&b, "    interfaces: {mode: %s, use: [%s], on_down: %s, on_return: %s, gateway_addrs: one}\n",
		o.mode, strings.Join(o.use, ", "), o.onDown, onReturn)
	b.WriteString("    children:\n      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}\n")
	return b.String()
}

// mifGWConf is the gateway's.
func mifGWConf(o mifOpts) string {
	var b strings.Builder
	b.WriteString("log: {level: info}\ndata_plane: userspace\ntun: {name: mifike0}\n")
	writeRetransmit(&b, o.rt)
	if isEAP(o.auth) {
		writeRADIUS(&b, o.rad)
	}
	fmt.Fprintf(&b, "listen: [%s, %s]\n", demo.GatewayAddrs[0], demo.GatewayAddrs[1])
	b.WriteString("pools:\n  vpn: {addrs: 10.99.0.0/24}\nconnections:\n  roadwarrior:\n")
	fmt.Fprintf(&b, "    proposals: %s\n    pools: [vpn]\n    clone: {enable: true, max_ike_sas: 8}\n", mifProposal)
	writeMifAuth(&b, o, gwID, ueID)
	b.WriteString("    children:\n      lan: {local_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}\n")
	return b.String()
}

func writeRetransmit(b *strings.Builder, r retransmitOpts) {
	if r.Timeout > 0 {
		fmt.Fprintf(b, "retransmit: {timeout: %v, base: %g, tries: %d}\n", r.Timeout, r.Base, r.Tries)
	}
}

func writeMifAuth(b *strings.Builder, o mifOpts, me, peer string) {
	if isEAP(o.auth) {
		writeEAPAuth(b, o, me, peer)
		return
	}
	if o.auth == "ecdsa" {
		fmt.Fprintf(b, "    local: {auth: pubkey, id: %s, certs: [%s], key: %s}\n", me, o.pki.cert(me), o.pki.key(me))
		fmt.Fprintf(b, "    remote: {auth: pubkey, id: %s, cacerts: [%s]}\n", peer, o.pki.ca())
		return
	}
	fmt.Fprintf(b, "    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n    psk: %q\n", me, peer, psk)
}

// swanMifGW is the strongSwan gateway on the lab: a pool, MOBIKE, both
// addresses. ids lists the end user's identities (one per connection
// where the throughput suite needs distinct inner addresses).
func swanMifGW(o mifOpts, ids ...string) string {
	var b strings.Builder
	b.WriteString("connections {\n")
	for i, id := range ids {
		fmt.Fprintf(&b, `    rw%d {
        version = 2
        local_addrs = %s,%s
        proposals = %s
        pools = pool4
        mobike = yes
        %s
        children { lan { local_ts = 10.93.0.0/24
            esp_proposals = aes128gcm16 } }
    }
`, i, demo.GatewayAddrs[0], demo.GatewayAddrs[1], mifProposal, swanAuth(o.auth, gwID, id))
	}
	b.WriteString("}\npools { pool4 { addrs = 10.99.0.0/24 } }\n")
	b.WriteString(swanSecrets(ids))
	return b.String()
}

// swanMifUE is the strongSwan end user: one connection per interface
// (named after it), each from that interface's address, with identity
// ids[i] (or the first for all).
func swanMifUE(o mifOpts, dpd time.Duration, devs []string, ids ...string) string {
	var b strings.Builder
	b.WriteString("connections {\n")
	for i, dev := range devs {
		id := ids[min(i, len(ids)-1)]
		fmt.Fprintf(&b, `    %s {
        version = 2
        local_addrs = %s
        remote_addrs = %s
        proposals = %s
        vips = 0.0.0.0
        mobike = yes
        dpd_delay = %ds
        %s
        children { lan { remote_ts = 10.93.0.0/24
            esp_proposals = aes128gcm16 } }
    }
`, dev, ifaceAddr(dev), demo.GatewayAddrs[0], mifProposal, int(dpd.Seconds()), swanAuth(o.auth, id, gwID))
	}
	b.WriteString("}\n")
	b.WriteString(swanSecrets(ids))
	return b.String()
}

func swanAuth(auth, me, peer string) string {
	if auth == "ecdsa" {
		return fmt.Sprintf("local { auth = pubkey\n            certs = %s.crt\n            id = %s }\n        remote { auth = pubkey\n            id = %s\n            cacerts = ca.crt }", me, me, peer)
	}
	return fmt.Sprintf("local { auth = psk\n            id = %s }\n        remote { auth = psk\n            id = %s }", me, peer)
}

func swanSecrets(ids []string) string {
	var b strings.Builder
	b.WriteString("secrets { ike { id-gw = " + gwID + "\n")
	for i, id := range ids {
		fmt.Fprintf(&b, "    id-%d = %s\n", i, id)
	}
	fmt.Fprintf(&b, "    secret = \"%s\" } }\n", psk)
	return b.String()
}

// vpnOn returns the end user's established IKE SA with an installed
// Child SA on interface dev, if there is one.
func vpnOn(sas []control.SA, dev string) (control.SA, bool) {
	for _, s := range sas {
		if s.State != ike.StateEstablished || demo.IfaceOf(s) != dev {
			continue
		}
		for _, c := range s.Children {
			if c.State == "INSTALLED" {
				return s, true
			}
		}
	}
	return control.SA{}, false
}

// waitVPN waits until the daemon has a VPN on dev.
func waitVPN(ctx context.Context, d *mifikeDaemon, dev string, limit time.Duration) (control.SA, error) {
	var sa control.SA
	err := waitFor(ctx, limit, func() (bool, error) {
		sas, err := d.sas()
		if err != nil {
			return false, err
		}
		var ok bool
		sa, ok = vpnOn(sas, dev)
		return ok, nil
	})
	if err != nil {
		err = fmt.Errorf("no VPN on %s: %w\n%s", dev, err, lastLines(d.log(), 20))
	}
	return sa, err
}
