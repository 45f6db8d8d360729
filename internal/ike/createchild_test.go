package ike_test

import (
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

func withSecondChild(t *testing.T) func(ue, gw *ike.Connection, _, _ *ike.Config) {
	return func(ue, gw *ike.Connection, _, _ *ike.Config) {
		ue.Children = append(ue.Children, &ike.ChildConfig{Name: "pfs", ESP: mustESP(t, "aes256gcm16-x25519"), DynamicLocal: true,
			RemoteTS: []wire.Selector{sel(t, "10.21.0.0/24")}})
		gw.Children = append(gw.Children, &ike.ChildConfig{Name: "pfs", ESP: mustESP(t, "aes256gcm16-x25519"),
			LocalTS: []wire.Selector{sel(t, "10.21.0.0/24")}, DynamicRemote: true})
	}
}

// RFC 7296 §1.3.1: CREATE_CHILD_SA makes another Child SA, here with a
// KE payload for perfect forward secrecy.
func TestRFC7296Section1_3_1CreateChildWithPFS(t *testing.T) {
	l := newLab(t, 2, withSecondChild(t))
	id := l.up()
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, id, "pfs") })
	l.settle(time.Second)
	ue := l.sa(l.ue)
	if len(ue.Children) != 2 {
		t.Fatalf("%d children, want 2", len(ue.Children))
	}
	c := ue.Children[1]
	if c.Name != "pfs" || c.Encr != wire.EncrAESGCM16 || c.KeyBits != 256 || c.LocalTS[0].Start.String() != "10.99.0.2" {
		t.Fatalf("second child %+v", c)
	}
}

// RFC 7296 §1.3.3, §2.8: a Child SA rekey makes an equivalent SA with the
// same selectors, then the rekey initiator deletes the old one.
func TestRFC7296Section2_8ChildRekey(t *testing.T) {
	for _, who := range []string{"initiator", "responder"} {
		t.Run(who, func(t *testing.T) {
			l := newLab(t, 3, nil)
			l.up()
			node := l.ue
			if who == "responder" {
				node = l.gw
			}
			before := l.sa(node)
			old := before.Children[0]
			l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, before.ID, old.InSPI) })
			l.settle(time.Second)
			after := l.sa(node)
			if len(after.Children) != 1 || after.Children[0].InSPI == old.InSPI {
				t.Fatalf("children after rekey: %+v", after.Children)
			}
			n := after.Children[0]
			if ts.Strings(n.LocalTS) != ts.Strings(old.LocalTS) || ts.Strings(n.RemoteTS) != ts.Strings(old.RemoteTS) {
				t.Errorf("rekeyed child selectors changed: %v %v", n.LocalTS, n.RemoteTS)
			}
			if !n.Outbound {
				t.Error("rekeyed child not carrying outbound traffic after the old one was deleted")
			}
			if len(node.EventsOf(ike.EventChildRekeyed)) != 1 {
				t.Error("no child-rekeyed event")
			}
		})
	}
}

// RFC 7296 §1.3.2, §2.18: an IKE SA rekey makes a new IKE SA that takes
// the Child SAs; the old IKE SA is deleted.
func TestRFC7296Section2_18IKERekey(t *testing.T) {
	for _, who := range []string{"initiator", "responder"} {
		t.Run(who, func(t *testing.T) {
			l := newLab(t, 4, nil)
			l.up()
			node, other := l.ue, l.gw
			if who == "responder" {
				node, other = l.gw, l.ue
			}
			before := l.sa(node)
			l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, before.ID, 0) })
			l.settle(time.Second)
			after := l.sa(node)
			if after.ID == before.ID || after.SPIi == before.SPIi {
				t.Fatal("IKE SA not replaced")
			}
			if len(after.Children) != 1 || after.Children[0].InSPI != before.Children[0].InSPI {
				t.Fatalf("Child SA did not move to the new IKE SA: %+v", after.Children)
			}
			// The rekey initiator is the new SA's original initiator (§2.2).
			if !after.Initiator || l.sa(other).Initiator {
				t.Error("I flag roles of the new SA")
			}
			if after.KeyID == before.KeyID {
				t.Error("keys did not change")
			}
			// The new SA works: a liveness check is answered.
			l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, after.ID) })
			l.settle(time.Second)
			l.sa(node)
		})
	}
}

// RFC 7296 §1.4.1: deleting a Child SA from either side removes both
// directions on both peers.
func TestRFC7296Section1_4_1DeleteChild(t *testing.T) {
	for _, who := range []string{"initiator", "responder"} {
		t.Run(who, func(t *testing.T) {
			l := newLab(t, 5, nil)
			l.up()
			node := l.ue
			if who == "responder" {
				node = l.gw
			}
			s := l.sa(node)
			l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
				return e.Terminate(now, s.ID, s.Children[0].InSPI)
			})
			l.settle(time.Second)
			if len(l.sa(l.ue).Children) != 0 || len(l.sa(l.gw).Children) != 0 {
				t.Fatal("child still there")
			}
		})
	}
}

// RFC 7296 §1.4.1: deleting the IKE SA deletes its Child SAs; the reply
// is empty.
func TestRFC7296Section1_4_1DeleteIKE(t *testing.T) {
	for _, who := range []string{"initiator", "responder"} {
		t.Run(who, func(t *testing.T) {
			l := newLab(t, 6, nil)
			l.up()
			node := l.ue
			if who == "responder" {
				node = l.gw
			}
			s := l.sa(node)
			l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, s.ID, 0) })
			l.settle(time.Second)
			if len(l.ue.Engine.IKESAs()) != 0 || len(l.gw.Engine.IKESAs()) != 0 {
				t.Fatalf("IKE SAs left: %+v %+v", l.ue.Engine.IKESAs(), l.gw.Engine.IKESAs())
			}
		})
	}
}
