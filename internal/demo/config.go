package demo

import (
	"fmt"
	"strings"
)

// PSK is the lab's shared key (a lab, not a deployment).
const PSK = "demo-only-shared-key-0123456789"

// Options vary the lab's configurations.
type Options struct {
	Mode         string // per-interface (default) or failover
	OnDown       string // move (default) or delete
	OnReturn     string // move-back (default) or new
	GatewayAddrs string // one (default) or all
	// NoClone makes the gateway not offer cloning (a clone-less peer).
	NoClone bool
	// SharedVIP keeps one inner address for all VPNs (no own_vips).
	SharedVIP bool
	// Transport protects host-to-host traffic between the end user's
	// interface address and the gateway's (UC3) instead of a tunnel.
	Transport bool
	// Use overrides the eligible interfaces.
	Use []string
	// DataPlane is both daemons' data_plane (default userspace).
	DataPlane string
	// GatewayLoopback gives the gateway a service address on its loopback
	// device (ServiceAddr, routed to it by the router) and makes it the
	// address the end user connects to.
	GatewayLoopback bool
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// UEConfig is the end user's mifike.yaml (without the control section).
func UEConfig(o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ndata_plane: %s\ntun: {name: mifike0}\n", or(o.DataPlane, "userspace"))
	// Quick path probing: a silent path is given up on within seconds.
	b.WriteString("retransmit: {timeout: 1s, base: 1.4, tries: 5}\n")
	b.WriteString("connections:\n  office:\n")
	remote := GatewayAddrs[0]
	if o.GatewayLoopback {
		remote = ServiceAddr
	}
	fmt.Fprintf(&b, "    remote_addrs: [%s]\n", remote)
	fmt.Fprintf(&b, "    local: {auth: psk, id: alice@demo.example}\n    remote: {auth: psk, id: gw.demo.example}\n    psk: %q\n", PSK)
	b.WriteString("    proposals: aes128gcm16-prfsha256-x25519\n    dpd_delay: 2s\n")
	if !o.Transport {
		b.WriteString("    vips: [0.0.0.0]\n")
	}
	fmt.Fprintf(&b, "    clone: {enable: true, max_ike_sas: 8, own_vips: %v}\n", !o.SharedVIP)
	use := o.Use
	if use == nil {
		use = []string{"eth0", "wlan0", "wwan0", "usb*"}
	}
	fmt.Fprintf(&b, "    interfaces: {mode: %s, use: [%s], on_down: %s, on_return: %s, gateway_addrs: %s}\n",
		or(o.Mode, "per-interface"), strings.Join(use, ", "), or(o.OnDown, "move"), or(o.OnReturn, "move-back"), or(o.GatewayAddrs, "one"))
	if o.Transport {
		b.WriteString("    children:\n      host: {mode: transport, esp_proposals: aes128gcm16}\n")
	} else {
		b.WriteString("    children:\n      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}\n")
	}
	return b.String()
}

// GWConfig is the gateway's mifike.yaml (without the control section).
func GWConfig(o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ndata_plane: %s\ntun: {name: mifike0}\n", or(o.DataPlane, "userspace"))
	// Only the outside addresses: they are what MOBIKE announces.
	if o.GatewayLoopback {
		fmt.Fprintf(&b, "listen: [%s, %s, %s]\n", ServiceAddr, GatewayAddrs[0], GatewayAddrs[1])
	} else {
		fmt.Fprintf(&b, "listen: [%s, %s]\n", GatewayAddrs[0], GatewayAddrs[1])
	}
	b.WriteString("pools:\n  vpn: {addrs: 10.99.0.0/24}\n")
	b.WriteString("connections:\n  roadwarrior:\n")
	fmt.Fprintf(&b, "    local: {auth: psk, id: gw.demo.example}\n    remote: {auth: psk, id: alice@demo.example}\n    psk: %q\n", PSK)
	b.WriteString("    proposals: aes128gcm16-prfsha256-x25519\n    dpd_delay: 10s\n")
	if !o.NoClone {
		b.WriteString("    clone: {enable: true, max_ike_sas: 8}\n")
	}
	if o.Transport {
		b.WriteString("    children:\n      host: {mode: transport, esp_proposals: aes128gcm16}\n")
	} else {
		b.WriteString("    pools: [vpn]\n    children:\n      lan: {local_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}\n")
	}
	return b.String()
}

// StartBoth runs the gateway and the end user with o's configurations.
func (t *Topology) StartBoth(o Options) (ue, gw *Daemon, err error) {
	if o.GatewayLoopback {
		if err := t.AddServiceAddress(); err != nil {
			return nil, nil, err
		}
	}
	if gw, err = t.StartDaemon("gw", t.GW, GWConfig(o)); err != nil {
		return nil, nil, err
	}
	if ue, err = t.StartDaemon("ue", t.UE, UEConfig(o)); err != nil {
		return nil, nil, err
	}
	t.ueDaemon, t.gwDaemon = ue, gw
	return ue, gw, nil
}
