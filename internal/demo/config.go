package demo

import (
	"fmt"
	"strings"

	"github.com/mifike/mifike/internal/radiuslab"
)

// PSK is the lab's shared key (a lab, not a deployment).
const PSK = "demo-only-shared-key-0123456789"

// The lab's EAP end user and RADIUS settings (Options.EAP). Lab values,
// not a deployment's: tests grep the logs for them to show they never
// appear there.
const (
	EAPUser         = "alice"
	EAPUserPassword = "demo-only-alice-password-5f3a"
	// RADIUSSecret is what FreeRADIUS and (unless Options.RADIUSSecret
	// says otherwise) the gateway share.
	RADIUSSecret = "demo-only-radius-secret-9c1e"
	// RADIUSClass is the Class FreeRADIUS gives the end user; the gateway
	// echoes it in accounting (RFC 2865 §5.25).
	RADIUSClass = "demo-vpn-users"
)

// EAPMethods are the Options.EAP values, the end user's local.auth.
var EAPMethods = []string{"eap-mschapv2", "eap-md5", "eap-tls"}

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
	// Services gives each VPN one Child SA per service (the MIF problem
	// statement's use case 2) before the lan one: "stream" for the
	// server's TCP port 7000 (Topology.StartStream), "ping" for ICMP.
	Services bool
	// Use overrides the eligible interfaces.
	Use []string
	// DataPlane is both daemons' data_plane (default userspace).
	DataPlane string
	// GatewayLoopback gives the gateway a service address on its loopback
	// device (ServiceAddr, routed to it by the router) and makes it the
	// address the end user connects to.
	GatewayLoopback bool
	// Metrics is both daemons' metrics.listen (each daemon has its own
	// namespace, so one address serves both); empty: no metrics.
	Metrics string
	// UE and GW add settings to each side's connection and to its Child
	// SA (the endurance test's short lifetimes).
	UE, GW Settings
	// EAP makes the end user authenticate by EAP (one of EAPMethods) as
	// EAPUser through FreeRADIUS in the lab's aaa namespace; "" keeps
	// PSK. The gateway then proves itself with a certificate, since EAP
	// goes with a public-key signature of the responder (RFC 7296
	// §2.16), and passes the EAP conversation to RADIUS (RFC 3579).
	EAP string
	// EAPOnly, with EAP eap-tls, has the gateway prove itself by the
	// EAP-TLS key alone (EAP-only authentication, RFC 5998): no
	// certificate of its own, the end user's remote.auth eap-only.
	EAPOnly bool
	// EAPPassword replaces the end user's password (a wrong one, for
	// tests); FreeRADIUS keeps EAPUserPassword.
	EAPPassword string
	// GatewayRADIUSSecret replaces the gateway's RADIUS shared secret (a
	// wrong one, for tests); FreeRADIUS keeps RADIUSSecret.
	GatewayRADIUSSecret string
	// RADIUS adds "key: value" settings to the gateway's radius section
	// (timeout, tries, interim_interval).
	RADIUS []string
	// GatewayTCP makes the gateway accept TCP-encapsulated IKE and ESP
	// on port 4500 (RFC 9329, tcp_ports); the end user's use of it is
	// set in UE.Conn (tcp: fallback or always).
	GatewayTCP bool
	// MPTCP makes the end user keep an MPTCP endpoint per VPN inner
	// address (mptcp: {enable: yes}), with Multipath its
	// interfaces.multipath map as written ("{wwan*: backup}").
	MPTCP     bool
	Multipath string
	// Spread is the end user's interfaces.spread map as written
	// ("{eth*: 3, wlan*: 2, wwan*: 0}"): flow spreading over its VPNs.
	Spread string
	// SpreadOpts are further interfaces keys as written
	// ("spread_measured: no, spread_probe: 200ms").
	SpreadOpts string
	// KeyLog makes both daemons write key logs to keys/ in their
	// directories (Wireshark's format; tests check no secret leaks there).
	KeyLog bool
}

// Settings are extra settings of one side: "key: value" lines for the connection
// (a dpd_delay here replaces the lab's) and for its Child SA.
type Settings struct {
	Conn, Child []string
}

// connLines writes the connection's extra settings, or the lab's
// dpd_delay when they do not set one.
func (x Settings) connLines(b *strings.Builder, dpd string) {
	for _, l := range x.Conn {
		if strings.HasPrefix(l, "dpd_delay:") {
			dpd = ""
		}
		fmt.Fprintf(b, "    %s\n", l)
	}
	if dpd != "" {
		fmt.Fprintf(b, "    dpd_delay: %s\n", dpd)
	}
}

// childExtra is the Child SA's extra settings inside its flow mapping.
func (x Settings) childExtra() string {
	if len(x.Child) == 0 {
		return ""
	}
	return ", " + strings.Join(x.Child, ", ")
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
	o.metrics(&b)
	o.keylog(&b)
	// Quick path probing: a silent path is given up on within seconds.
	b.WriteString("retransmit: {timeout: 1s, base: 1.4, tries: 5}\n")
	if o.MPTCP {
		b.WriteString("mptcp: {enable: yes}\n")
	}
	b.WriteString("connections:\n  office:\n")
	remote := GatewayAddrs[0]
	if o.GatewayLoopback {
		remote = ServiceAddr
	}
	fmt.Fprintf(&b, "    remote_addrs: [%s]\n", remote)
	switch o.EAP {
	case "":
		fmt.Fprintf(&b, "    local: {auth: psk, id: alice@demo.example}\n    remote: {auth: psk, id: gw.demo.example}\n    psk: %q\n", PSK)
	case "eap-tls":
		// The client certificate radiuslab made; the CA that signed
		// FreeRADIUS's certificate and its name check the EAP server.
		fmt.Fprintf(&b, "    local: {auth: eap-tls, id: alice@demo.example, eap_id: %s, certs: [%s], key: %s, eap_cacerts: [%s], aaa_id: %s}\n",
			radiuslab.ClientCertName, ueEAPCert, ueEAPKey, ueEAPCA, radiuslab.ServerCertName)
		if o.EAPOnly {
			fmt.Fprintf(&b, "    remote: {auth: eap-only, id: %s}\n", gatewayID)
		} else {
			fmt.Fprintf(&b, "    remote: {auth: pubkey, id: %s, cacerts: [%s]}\n", gatewayID, ueGatewayCA)
		}
	default:
		fmt.Fprintf(&b, "    local: {auth: %s, id: alice@demo.example, eap_id: %s, password_file: %s}\n", o.EAP, EAPUser, uePasswordFile)
		fmt.Fprintf(&b, "    remote: {auth: pubkey, id: %s, cacerts: [%s]}\n", gatewayID, ueGatewayCA)
	}
	b.WriteString("    proposals: aes128gcm16-prfsha256-x25519\n")
	o.UE.connLines(&b, "2s")
	if !o.Transport {
		b.WriteString("    vips: [0.0.0.0]\n")
	}
	fmt.Fprintf(&b, "    clone: {enable: true, max_ike_sas: 8, own_vips: %v}\n", !o.SharedVIP)
	use := o.Use
	if use == nil {
		use = []string{"eth0", "wlan0", "wwan0", "usb*"}
	}
	multipath := ""
	if o.Multipath != "" {
		multipath = ", multipath: " + o.Multipath
	}
	if o.Spread != "" {
		multipath += ", spread: " + o.Spread
	}
	if o.SpreadOpts != "" {
		multipath += ", " + o.SpreadOpts
	}
	fmt.Fprintf(&b, "    interfaces: {mode: %s, use: [%s], on_down: %s, on_return: %s, gateway_addrs: %s%s}\n",
		or(o.Mode, "per-interface"), strings.Join(use, ", "), or(o.OnDown, "move"), or(o.OnReturn, "move-back"), or(o.GatewayAddrs, "one"), multipath)
	if o.Transport {
		fmt.Fprintf(&b, "    children:\n      host: {mode: transport, esp_proposals: aes128gcm16%s}\n", o.UE.childExtra())
	} else {
		b.WriteString("    children:\n")
		o.services(&b, "remote_ts", o.UE)
		fmt.Fprintf(&b, "      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16%s}\n", o.UE.childExtra())
	}
	return b.String()
}

// GWConfig is the gateway's mifike.yaml (without the control section).
func GWConfig(o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ndata_plane: %s\ntun: {name: mifike0}\n", or(o.DataPlane, "userspace"))
	o.metrics(&b)
	o.keylog(&b)
	// Only the outside addresses: they are what MOBIKE announces.
	if o.GatewayLoopback {
		fmt.Fprintf(&b, "listen: [%s, %s, %s]\n", ServiceAddr, GatewayAddrs[0], GatewayAddrs[1])
	} else {
		fmt.Fprintf(&b, "listen: [%s, %s]\n", GatewayAddrs[0], GatewayAddrs[1])
	}
	if o.GatewayTCP {
		b.WriteString("tcp_ports: [4500]\n")
	}
	b.WriteString("pools:\n  vpn: {addrs: 10.99.0.0/24}\n")
	if o.EAP != "" {
		extra := ""
		if len(o.RADIUS) > 0 {
			extra = ", " + strings.Join(o.RADIUS, ", ")
		}
		fmt.Fprintf(&b, "radius: {servers: {lab: {address: %s, secret: %q}}, nas_identifier: gw.demo.example%s}\n",
			RADIUSAddr, or(o.GatewayRADIUSSecret, RADIUSSecret), extra)
	}
	b.WriteString("connections:\n  roadwarrior:\n")
	if o.EAP == "" {
		fmt.Fprintf(&b, "    local: {auth: psk, id: gw.demo.example}\n    remote: {auth: psk, id: alice@demo.example}\n    psk: %q\n", PSK)
	} else if o.EAPOnly {
		fmt.Fprintf(&b, "    local: {auth: eap-only, id: %s}\n    remote: {auth: eap, id: alice@demo.example}\n", gatewayID)
	} else {
		fmt.Fprintf(&b, "    local: {auth: pubkey, id: %s, certs: [%s], key: %s}\n    remote: {auth: eap, id: alice@demo.example}\n", gatewayID, gwCert, gwKey)
	}
	b.WriteString("    proposals: aes128gcm16-prfsha256-x25519\n")
	o.GW.connLines(&b, "10s")
	if !o.NoClone {
		b.WriteString("    clone: {enable: true, max_ike_sas: 8}\n")
	}
	if o.Transport {
		fmt.Fprintf(&b, "    children:\n      host: {mode: transport, esp_proposals: aes128gcm16%s}\n", o.GW.childExtra())
	} else {
		b.WriteString("    pools: [vpn]\n    children:\n")
		o.services(&b, "local_ts", o.GW)
		fmt.Fprintf(&b, "      lan: {local_ts: [10.93.0.0/24], esp_proposals: aes128gcm16%s}\n", o.GW.childExtra())
	}
	return b.String()
}

// ServiceChildren are the Child SAs Options.Services adds, with the
// selector of the protected side: narrower than lan's, so both ends
// pick them first.
var ServiceChildren = []struct{ Name, TS string }{
	{"stream", Server.String() + "[tcp/7000]"},
	{"ping", "10.93.0.0/24[icmp]"},
}

// services writes the service children of one end (key: local_ts on the
// gateway, remote_ts on the end user).
func (o Options) services(b *strings.Builder, key string, x Settings) {
	if !o.Services {
		return
	}
	for _, s := range ServiceChildren {
		fmt.Fprintf(b, "      %s: {%s: [%q], esp_proposals: aes128gcm16%s}\n", s.Name, key, s.TS, x.childExtra())
	}
}

func (o Options) keylog(b *strings.Builder) {
	if o.KeyLog {
		b.WriteString("keylog: {dir: keys}\n")
	}
}

func (o Options) metrics(b *strings.Builder) {
	if o.Metrics != "" {
		fmt.Fprintf(b, "metrics: {listen: %q}\n", o.Metrics)
	}
}

// StartBoth runs the gateway and the end user with o's configurations.
func (t *Topology) StartBoth(o Options) (ue, gw *Daemon, err error) {
	if o.GatewayLoopback {
		if err := t.AddServiceAddress(); err != nil {
			return nil, nil, err
		}
	}
	if o.EAP != "" {
		if err := t.prepareEAP(o); err != nil {
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
