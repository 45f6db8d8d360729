//go:build linux

package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/mifike/mifike/internal/lab"
)

// The throughput suite's wireguard-go row: the same userspace design as
// mifike's data plane (a TUN device with offloads, UDP GSO and GRO,
// goroutines per core), built from the golang.zx2c4.com/wireguard module
// mifike already uses for its TUN device, so the two compare data planes
// in the same namespaces with the same iperf3 flows. Each end is the
// mifike binary's hidden "bench wireguard-peer" command (WireGuardPeer).

// Addresses and port of the wireguard-go tunnel: the end user's inner
// address is one the gateway's pool would give, so the flows are the
// mifike rows' (gwHost to an address in pool).
const (
	wgUEInner = "10.99.0.2"
	wgPort    = 51820
	wgTUN     = "wg0"
	// wgMTU is mifike's TUN MTU (dataplane.DefaultMTU), so both carry
	// the same inner packets (wireguard-go's own default is 1420).
	wgMTU = 1400
)

// WireGuardPeerConfig is one end of the wireguard-go tunnel.
type WireGuardPeerConfig struct {
	TUN        string
	MTU        int
	PrivateKey string // hex, 32 octets
	Port       int
	PeerKey    string // the peer's public key, hex
	Endpoint   string // the peer's address:port; empty for the side that waits
	AllowedIPs []string
	Ready      io.Writer // "ready" goes here once the device is up
}

// WireGuardPeer runs one wireguard-go device until SIGTERM or SIGINT,
// configured through its UAPI (device.IpcSet), as wg(8) would.
func WireGuardPeer(c WireGuardPeerConfig) error {
	t, err := tun.CreateTUN(c.TUN, c.MTU)
	if err != nil {
		return fmt.Errorf("wireguard-peer: TUN %s: %w", c.TUN, err)
	}
	dev := device.NewDevice(t, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "wireguard-go: "))
	defer dev.Close()
	var uapi strings.Builder
	fmt.Fprintf(&uapi, "private_key=%s\nlisten_port=%d\npublic_key=%s\n", c.PrivateKey, c.Port, c.PeerKey)
	if c.Endpoint != "" {
		fmt.Fprintf(&uapi, "endpoint=%s\n", c.Endpoint)
	}
	for _, a := range c.AllowedIPs {
		fmt.Fprintf(&uapi, "allowed_ip=%s\n", a)
	}
	if err := dev.IpcSet(uapi.String()); err != nil {
		return fmt.Errorf("wireguard-peer: configuring the device: %w", err)
	}
	if err := dev.Up(); err != nil {
		return fmt.Errorf("wireguard-peer: %w", err)
	}
	fmt.Fprintln(c.Ready, "ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-dev.Wait():
	}
	return nil
}

// wireGuardVersion is the wireguard-go module this binary was built
// with.
func wireGuardVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "golang.zx2c4.com/wireguard" {
				if m.Replace != nil {
					m = m.Replace
				}
				return m.Version
			}
		}
	}
	return "(unknown version)"
}

// wgKeys returns a private key and its public key, in hex (RFC 7748
// X25519; wireguard-go clamps the private key itself).
func wgKeys() (priv, pub string, err error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", "", err
	}
	p, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		return "", "", err
	}
	return hex.EncodeToString(k[:]), hex.EncodeToString(p), nil
}

// startWireGuard starts a wireguard-go peer in gw and one in ue and
// routes gwNet from ue, and ue's inner address from gw, through them. It
// returns the end user's inner address and a function that stops both.
func startWireGuard(ctx context.Context, l *lab.Lab, exe, gw, ue string) (string, func(), error) {
	gwPriv, gwPub, err := wgKeys()
	if err != nil {
		return "", nil, err
	}
	uePriv, uePub, err := wgKeys()
	if err != nil {
		return "", nil, err
	}
	var procs []*lab.Proc
	stop := func() {
		for _, p := range procs {
			p.Stop(5 * time.Second)
		}
	}
	start := func(ns, priv, peer, endpoint, allowed string) error {
		args := []string{"bench", "wireguard-peer", "--tun", wgTUN, "--mtu", fmt.Sprint(wgMTU), "--key", priv,
			"--port", fmt.Sprint(wgPort), "--peer", peer, "--allowed-ips", allowed}
		if endpoint != "" {
			args = append(args, "--endpoint", endpoint)
		}
		p, err := l.Start(ns, nil, exe, args...)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		return waitFor(ctx, 10*time.Second, func() (bool, error) {
			select {
			case <-p.Done():
				return false, fmt.Errorf("wireguard-peer exited: %v\n%s", p.Err(), p.Output())
			default:
			}
			return strings.Contains(p.Output(), "ready"), nil
		})
	}
	fail := func(err error) (string, func(), error) {
		stop()
		return "", nil, err
	}
	if err := start(gw, gwPriv, uePub, "", wgUEInner+"/32"); err != nil {
		return fail(err)
	}
	if err := start(ue, uePriv, gwPub, netip.AddrPortFrom(netip.MustParseAddr(gwAddr), wgPort).String(), gwNet); err != nil {
		return fail(err)
	}
	for _, c := range [][]string{
		{gw, "link", "set", wgTUN, "up"},
		{gw, "route", "add", wgUEInner + "/32", "dev", wgTUN},
		{ue, "addr", "add", wgUEInner + "/32", "dev", wgTUN},
		{ue, "link", "set", wgTUN, "up"},
		{ue, "route", "add", gwNet, "dev", wgTUN, "src", wgUEInner},
	} {
		if err := l.IP(c[0], c[1:]...); err != nil {
			return fail(err)
		}
	}
	return wgUEInner, stop, nil
}
