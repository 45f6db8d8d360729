package ike_test

import (
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
)

// Initiate fills in what its options leave open from the connection and
// the engine: the remote address and port, our IKE port.
func TestInitiateDefaults(t *testing.T) {
	other := netip.MustParseAddr("192.0.2.77")
	for _, tc := range []struct {
		name          string
		local, remote netip.AddrPort
		remotePort    uint16 // the connection's
		wantFrom      netip.AddrPort
		wantTo        netip.AddrPort
	}{
		{"all given", netip.AddrPortFrom(ueAddr, 1500), netip.AddrPortFrom(other, 4501), 7500,
			netip.AddrPortFrom(ueAddr, 1500), netip.AddrPortFrom(other, 4501)},
		{"connection's address and port", netip.AddrPortFrom(ueAddr, 0), netip.AddrPort{}, 7500,
			netip.AddrPortFrom(ueAddr, 1500), netip.AddrPortFrom(gwAddr, 7500)},
		{"connection's port to another address", netip.AddrPortFrom(ueAddr, 0), netip.AddrPortFrom(other, 0), 7500,
			netip.AddrPortFrom(ueAddr, 1500), netip.AddrPortFrom(other, 7500)},
		{"our IKE port when the connection names none", netip.AddrPortFrom(ueAddr, 0), netip.AddrPortFrom(other, 0), 0,
			netip.AddrPortFrom(ueAddr, 1500), netip.AddrPortFrom(other, 1500)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ue, _ := configs(t)
			ue.RemotePort = tc.remotePort
			e, err := ike.New(ike.Config{Connections: []*ike.Connection{ue}, Rand: rand.Reader, IKEPort: 1500, NATTPort: 4500})
			if err != nil {
				t.Fatal(err)
			}
			_, acts, err := e.Initiate(time.Unix(1000, 0), ike.InitiateOptions{Conn: "home", Local: tc.local, Remote: tc.remote})
			if err != nil {
				t.Fatal(err)
			}
			s := sends(acts) // as the peer receives them
			if len(s) != 1 || s[0].Remote != tc.wantFrom || s[0].Local != tc.wantTo {
				t.Fatalf("IKE_SA_INIT went %v, want from %v to %v", s, tc.wantFrom, tc.wantTo)
			}
		})
	}
	ue, _ := configs(t)
	e, err := ike.New(ike.Config{Connections: []*ike.Connection{ue}, Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []ike.InitiateOptions{
		{Conn: "nowhere", Local: netip.AddrPortFrom(ueAddr, 0)},
		{Conn: "home", Child: "nothing", Local: netip.AddrPortFrom(ueAddr, 0)},
		{Conn: "home"},
	} {
		if _, _, err := e.Initiate(time.Unix(1000, 0), o); err == nil {
			t.Errorf("Initiate(%+v) started an SA", o)
		}
	}
}
