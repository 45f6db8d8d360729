package ike_test

import (
	"testing"
	"time"
)

// RFC 7296 §1.2: IKE_SA_INIT and IKE_AUTH establish the IKE SA and the
// first Child SA; the CP exchange assigns a virtual IP (§2.19).
func TestRFC7296Section1_2InitialExchanges(t *testing.T) {
	l := newLab(t, 1, nil)
	l.up()
	l.settle(time.Second)
	ue, gw := l.ue.Established()[0], l.gw.Established()[0]
	if !ue.Initiator || gw.Initiator {
		t.Fatal("roles")
	}
	if ue.Proposal != "aes128gcm16-prfsha256-x25519" {
		t.Errorf("proposal %q", ue.Proposal)
	}
	if len(ue.VirtualIPs) != 1 || ue.VirtualIPs[0].String() != "10.99.0.2" {
		t.Errorf("virtual IP %v", ue.VirtualIPs)
	}
	if len(ue.Children) != 1 || len(gw.Children) != 1 {
		t.Fatalf("children: %d %d", len(ue.Children), len(gw.Children))
	}
	c := ue.Children[0]
	if got := c.LocalTS[0].Start.String(); got != "10.99.0.2" {
		t.Errorf("child local TS narrowed to %s, want the virtual IP", got)
	}
	if !ue.MOBIKE || !gw.MOBIKE {
		t.Error("MOBIKE not negotiated")
	}
	if ue.RemoteID != "gw.example" || gw.RemoteID != "ue.example" {
		t.Errorf("ids %q %q", ue.RemoteID, gw.RemoteID)
	}
}
