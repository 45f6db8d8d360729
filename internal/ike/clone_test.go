package ike_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

func withClone(ue, gw *ike.Connection, _, _ *ike.Config) { ue.Clone, gw.Clone = true, true }

func (l *lab) clone(node *netsim.Node, id uint64) {
	l.t.Helper()
	l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Clone(now, id) })
}

func byID(node *netsim.Node, id uint64) ike.IKESAInfo {
	for _, s := range node.Engine.IKESAs() {
		if s.ID == id {
			return s
		}
	}
	return ike.IKESAInfo{}
}

func clonesOf(node *netsim.Node, parent uint64) []ike.IKESAInfo {
	var out []ike.IKESAInfo
	for _, s := range node.Established() {
		if s.Parent == parent {
			out = append(out, s)
		}
	}
	return out
}

// RFC 7791 §5.1, §5.2: both peers advertise support; the clone is a new
// IKE SA keyed from the old one's SK_d; the old SA and its Child SAs stay;
// the clone initiator is the clone's original initiator, Message IDs
// start at 0, and the clone is in the same family.
func TestRFC7791Section5_2Clone(t *testing.T) {
	for _, who := range []string{"end user", "gateway"} {
		t.Run(who, func(t *testing.T) {
			l := newLab(t, 80, withClone)
			l.up()
			node, other := l.ue, l.gw
			if who == "gateway" {
				node, other = l.gw, l.ue
			}
			parent := l.sa(node)
			if !parent.CloneSupported || !l.sa(other).CloneSupported {
				t.Fatal("CLONE_IKE_SA_SUPPORTED not negotiated")
			}
			l.clone(node, parent.ID)
			l.settle(time.Second)
			cl := clonesOf(node, parent.ID)
			if len(cl) != 1 {
				t.Fatalf("%d clones", len(cl))
			}
			c := cl[0]
			if len(c.Children) != 0 || len(byID(node, parent.ID).Children) != 1 {
				t.Fatal("Child SAs moved to the clone (RFC 7791 §5.2 forbids it)")
			}
			if c.Family != parent.Family || c.AuthTime != parent.AuthTime || !c.CloneSupported {
				t.Fatal("clone not in the parent's family")
			}
			if !c.Initiator || !c.MOBIKEInitiator {
				t.Fatal("the clone initiator must be the clone's original and MOBIKE initiator")
			}
			if c.KeyID == parent.KeyID {
				t.Fatal("clone has the parent's keys")
			}
			peer := clonesOf(other, l.sa2(other, parent).ID)
			if len(peer) != 1 || peer[0].Initiator || peer[0].MOBIKEInitiator {
				t.Fatal("peer's view of the clone")
			}
			// The clone works on its own: a liveness check and a Child SA.
			l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CheckLiveness(now, c.ID) })
			l.settle(time.Second)
			if len(l.ue.EventsOf(ike.EventIKECloned)) != 1 {
				t.Fatal("no ike-cloned event")
			}
			if ev := node.EventsOf(ike.EventIKECloned); len(ev) != 1 || ev[0].IKESA != c.ID || ev[0].From != parent.ID {
				t.Fatalf("ike-cloned events %+v: want one of %d from %d", ev, c.ID, parent.ID)
			}
		})
	}
}

// sa2 finds the peer's SA matching info's SPIs.
func (l *lab) sa2(node *netsim.Node, info ike.IKESAInfo) ike.IKESAInfo {
	for _, s := range node.Engine.IKESAs() {
		if s.SPIi == info.SPIi && s.SPIr == info.SPIr {
			return s
		}
	}
	l.t.Fatalf("%s has no SA %016x/%016x", node.Name, info.SPIi, info.SPIr)
	return ike.IKESAInfo{}
}

// RFC 7791 App. A.3: new Child SAs are created on the clone; Child SA
// signalling of the old SA stays on the old SA.
func TestRFC7791AppendixA3ChildOnClone(t *testing.T) {
	l := newLab(t, 81, func(ue, gw *ike.Connection, a, b *ike.Config) {
		withClone(ue, gw, a, b)
		withSecondChild(t)(ue, gw, a, b)
	})
	l.up()
	parent := l.sa(l.ue)
	l.clone(l.ue, parent.ID)
	l.settle(time.Second)
	c := clonesOf(l.ue, parent.ID)[0]
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, c.ID, "pfs") })
	l.rekeyChild2(l.ue, parent.ID, parent.Children[0].InSPI)
	l.settle(time.Second)
	if n := len(byID(l.ue, c.ID).Children); n != 1 {
		t.Fatalf("clone has %d children", n)
	}
	p := byID(l.ue, parent.ID)
	if len(p.Children) != 1 || p.Children[0].InSPI == parent.Children[0].InSPI {
		t.Fatal("the parent's Child SA was not rekeyed on the parent")
	}
}

func (l *lab) rekeyChild2(node *netsim.Node, id uint64, spi uint32) {
	l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, id, spi) })
}

// RFC 7791 §5.1: without the peer's CLONE_IKE_SA_SUPPORTED the SA MUST NOT
// be cloned: the request is refused locally and never sent.
func TestRFC7791Section5_1NoCloneWithoutSupport(t *testing.T) {
	l := newLab(t, 82, func(ue, gw *ike.Connection, _, _ *ike.Config) { ue.Clone = true })
	l.up()
	s := l.sa(l.ue)
	if s.CloneSupported {
		t.Fatal("support claimed without the peer's notify")
	}
	before := l.ue.Sent
	_, err := l.ue.Engine.Clone(l.net.Now, s.ID)
	if err == nil || !strings.Contains(err.Error(), "did not send CLONE_IKE_SA_SUPPORTED") {
		t.Fatalf("err = %v", err)
	}
	l.net.RunFor(time.Second)
	if l.ue.Sent != before {
		t.Fatal("a request was sent")
	}
}

// RFC 7791 §5.3 and the digest's rule: a clone request on an SA without
// negotiated support is refused with NO_ADDITIONAL_SAS, not
// INVALID_SYNTAX, and the SA survives.
func TestRFC7791Section5_3CloneWithoutSupportRefused(t *testing.T) {
	l := newLab(t, 83, func(ue, gw *ike.Connection, uec, gwc *ike.Config) { uec.ExportKeys = true })
	l.up()
	req := l.forgeCreate(2, true)
	l.net.Inject(netip.AddrPortFrom(ueAddr, 4500), netip.AddrPortFrom(gwAddr, 4500), req)
	l.net.RunFor(time.Second)
	if countNotify(l.gw, wire.NotifyNoAdditionalSAs, true) != 1 || countNotify(l.gw, wire.NotifyInvalidSyntax, true) != 0 {
		t.Fatal("not refused with NO_ADDITIONAL_SAS")
	}
	if len(l.gw.Established()) != 1 {
		t.Fatal("the parent SA was harmed")
	}
}

// RFC 7791 §5.3, §8: a cap on one peer's IKE SAs answers NO_ADDITIONAL_SAS;
// the initiator does not retry.
func TestRFC7791Section5_3MaxIKESAs(t *testing.T) {
	l := newLab(t, 84, func(ue, gw *ike.Connection, a, b *ike.Config) {
		withClone(ue, gw, a, b)
		gw.MaxIKESAs = 2
		ue.MaxIKESAs = 10
	})
	l.up()
	p := l.sa(l.ue)
	l.clone(l.ue, p.ID)
	l.settle(time.Second)
	l.clone(l.ue, p.ID)
	l.settle(time.Minute)
	if n := len(l.ue.Established()); n != 2 {
		t.Fatalf("%d IKE SAs, want 2", n)
	}
	if countNotify(l.gw, wire.NotifyNoAdditionalSAs, true) != 1 || len(l.ue.EventsOf(ike.EventCloneRefused)) != 1 {
		t.Fatal("refusal not seen or retried")
	}
	// The local cap is checked before sending.
	if _, err := l.ue.Engine.Clone(l.net.Now, p.ID); err != nil {
		t.Fatalf("ue's own cap is 10: %v", err)
	}
}

// RFC 7791 §5.3: while the parent is being deleted the responder answers
// TEMPORARY_FAILURE; nothing is left half made.
func TestRFC7791Section5_3TemporaryFailureWhileDeleting(t *testing.T) {
	l := newLab(t, 85, withClone)
	l.up()
	l.net.Filter = holdFirst(l.gw, wire.Informational, false) // gw's Delete is delayed
	l.deleteIKE(l.gw)
	l.clone(l.ue, l.sa(l.ue).ID)
	l.net.RunFor(time.Second)
	l.net.Release(0)
	l.settle(time.Minute)
	if countNotify(l.gw, wire.NotifyTemporaryFailure, true) != 1 {
		t.Fatal("no TEMPORARY_FAILURE")
	}
	if len(l.ue.Engine.IKESAs())+len(l.gw.Engine.IKESAs()) != 0 {
		t.Fatal("SAs left")
	}
}

// Clones inherit support, so a clone can be cloned; rekeying a clone or
// the parent keeps the family; deleting the parent leaves the clone.
func TestCloneFamilyLifecycle(t *testing.T) {
	l := newLab(t, 86, withClone)
	l.up()
	p := l.sa(l.ue)
	l.clone(l.ue, p.ID)
	l.settle(time.Second)
	c1 := clonesOf(l.ue, p.ID)[0]
	l.clone(l.gw, l.sa2(l.gw, c1).ID) // the gateway clones the clone
	l.settle(time.Second)
	if n := len(l.ue.Established()); n != 3 {
		t.Fatalf("%d SAs", n)
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, c1.ID, 0) })
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, l.sa2(l.gw, p).ID, 0) })
	l.settle(time.Second)
	fam := map[uint64]int{}
	for _, s := range l.ue.Established() {
		fam[s.Family]++
		if !s.CloneSupported {
			t.Fatal("support not inherited")
		}
	}
	if len(fam) != 1 {
		t.Fatalf("families %v", fam)
	}
	// Deleting the original (now rekeyed) SA leaves the clones, and the
	// virtual IP lease lives on with the family.
	var orig ike.IKESAInfo
	for _, s := range l.ue.Established() {
		if len(s.Children) == 1 {
			orig = s
		}
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, orig.ID, 0) })
	l.settle(time.Second)
	if n := len(l.ue.Established()); n != 2 {
		t.Fatalf("%d SAs after deleting the original", n)
	}
}

// RFC 7796 §8 accounting: the pool lease lasts until the last IKE SA of
// the family is gone.
func TestRFC7791Section8LeaseOutlivesParent(t *testing.T) {
	l := newLab(t, 87, withClone)
	l.up()
	p := l.sa(l.ue)
	l.clone(l.ue, p.ID)
	l.settle(time.Second)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, p.ID, 0) })
	l.settle(time.Second)
	gw := l.sa(l.gw)
	if len(gw.PeerVirtualIPs) != 1 {
		t.Fatal("the clone does not carry the family's virtual IP")
	}
	// A second client must not get the address still leased.
	l.ue.Restart()
	// (the restarted client's INITIAL_CONTACT replaces the family)
	l.up()
	l.settle(time.Second)
	if n := len(l.gw.Established()); n != 1 {
		t.Fatalf("INITIAL_CONTACT left %d SAs of the old family", n)
	}
}

// RFC 7791 §8: the Child SA cap counts the whole family.
func TestRFC7791Section8ChildCapCountsFamily(t *testing.T) {
	l := newLab(t, 88, func(ue, gw *ike.Connection, a, b *ike.Config) {
		withClone(ue, gw, a, b)
		withSecondChild(t)(ue, gw, a, b)
		gw.MaxChildSAs = 2
	})
	l.up()
	p := l.sa(l.ue)
	l.clone(l.ue, p.ID)
	l.settle(time.Second)
	c := clonesOf(l.ue, p.ID)[0]
	for i := 0; i < 2; i++ {
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, c.ID, "pfs") })
	}
	l.settle(time.Second)
	if n := len(byID(l.ue, c.ID).Children); n != 1 {
		t.Fatalf("clone has %d children, cap allows 1 more than the parent's", n)
	}
	if countNotify(l.gw, wire.NotifyNoAdditionalSAs, true) != 1 {
		t.Fatal("cap not enforced with NO_ADDITIONAL_SAS")
	}
}

// A clone never loses the §2.8.2 tie-break: cloning and rekeying the same
// SA at once yields the rekeyed parent (with its Child SAs) and the clone.
func TestCloneRekeyCollision(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, withClone)
		l.up()
		p := l.sa(l.ue)
		l.clone(l.ue, p.ID)
		l.rekeyIKE(l.gw)
		l.settle(time.Minute)
		est := l.ue.Established()
		if len(est) != 2 {
			t.Fatalf("seed %d: %d SAs", seed, len(est))
		}
		children := 0
		for _, s := range est {
			children += len(s.Children)
		}
		if children != 1 {
			t.Fatalf("seed %d: %d children", seed, children)
		}
	}
}

// Cloning while the peer deletes the parent: the parent goes, no clone
// is left on one side only.
func TestCloneDeleteCollision(t *testing.T) {
	for seed := uint64(1); seed <= collisionSeeds; seed++ {
		l := newLab(t, seed, withClone)
		l.up()
		l.clone(l.ue, l.sa(l.ue).ID)
		l.deleteIKE(l.gw)
		l.settle(time.Minute)
	}
}

// Draft-00 peers: an echoed CLONE_IKE_SA in the response is accepted, and
// support announced in an INFORMATIONAL is honoured with Draft00Clone.
func TestDraft00CloneCompatibility(t *testing.T) {
	l := newLab(t, 89, func(ue, gw *ike.Connection, a, b *ike.Config) {
		withClone(ue, gw, a, b)
		gw.Draft00Clone = true
	})
	l.up()
	l.clone(l.ue, l.sa(l.ue).ID)
	l.settle(time.Second)
	if len(l.ue.Established()) != 2 || countNotify(l.ue, wire.NotifyCloneIKESA, false) != 1 {
		t.Fatal("echoed CLONE_IKE_SA not accepted")
	}

	l2 := newLab(t, 90, func(ue, gw *ike.Connection, uec, _ *ike.Config) {
		gw.Clone, gw.Draft00Clone, uec.ExportKeys = true, true, true
	})
	l2.up()
	if l2.sa(l2.gw).CloneSupported {
		t.Fatal("support before the announcement")
	}
	l2.net.Inject(netip.AddrPortFrom(ueAddr, 4500), netip.AddrPortFrom(gwAddr, 4500), l2.forge(2, wire.NewNotify(wire.NotifyCloneIKESASupported, nil)))
	l2.net.RunFor(time.Second)
	if countNotify(l2.gw, wire.NotifyCloneIKESASupported, true) != 2 {
		t.Fatal("draft-00 INFORMATIONAL announcement not answered")
	}
}

// RFC 7791 §5.3: a responder short of resources (its IKE SA table full)
// answers TEMPORARY_FAILURE, which the initiator retries later; the
// parent is unharmed.
func TestRFC7791Section5_3TemporaryFailureWhenFull(t *testing.T) {
	l := newLab(t, 88, func(ue, gw *ike.Connection, a, b *ike.Config) {
		withClone(ue, gw, a, b)
		b.MaxIKESAs = 1
	})
	l.up()
	parent := l.sa(l.ue)
	l.clone(l.ue, parent.ID)
	l.settle(time.Second)
	if countNotify(l.gw, wire.NotifyTemporaryFailure, true) == 0 {
		t.Fatal("no TEMPORARY_FAILURE from a full responder")
	}
	if len(clonesOf(l.ue, parent.ID)) != 0 || len(l.gw.Established()) != 1 || len(l.ue.Established()) != 1 {
		t.Fatal("a clone appeared, or the parent was harmed")
	}
	// Each refusal it retries says so by its notify; the last, after
	// which it gives up, has none (ike.EventCloneRefused).
	l.settle(10 * time.Minute)
	ev := l.ue.EventsOf(ike.EventCloneRefused)
	if len(ev) < 2 {
		t.Fatalf("clone-refused events %+v, want the retries and the last", ev)
	}
	for i, e := range ev {
		if last := i == len(ev)-1; last == (e.Notify == wire.NotifyTemporaryFailure) {
			t.Fatalf("clone-refused event %d of %d: %+v", i+1, len(ev), e)
		}
	}
}

// RFC 7791 App. A.3 ("a different inner IP address for each interface")
// with RFC 7296 §2.19 (a CP payload in any Child SA request): with
// CloneVIPs the clone's first Child SA gets an inner address of its own
// from the gateway's pool; the parent keeps its own, a second Child SA on
// the clone reuses the clone's, and the address outlives the parent.
func TestRFC7791AppendixA3OwnInnerAddress(t *testing.T) {
	l := newLab(t, 87, func(ue, gw *ike.Connection, a, b *ike.Config) {
		withClone(ue, gw, a, b)
		withSecondChild(t)(ue, gw, a, b)
		ue.CloneVIPs = true
	})
	l.up()
	parent := l.sa(l.ue)
	l.clone(l.ue, parent.ID)
	l.settle(time.Second)
	c := clonesOf(l.ue, parent.ID)[0]
	if len(c.VirtualIPs) != 1 || c.VirtualIPs[0] != parent.VirtualIPs[0] {
		t.Fatalf("before its first Child SA the clone has %v, want the parent's %v", c.VirtualIPs, parent.VirtualIPs)
	}
	for range 2 {
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, c.ID, "pfs") })
		l.settle(time.Second)
	}
	c = byID(l.ue, c.ID)
	if len(c.VirtualIPs) != 1 || c.VirtualIPs[0] == parent.VirtualIPs[0] {
		t.Fatalf("clone's inner address %v, parent's %v", c.VirtualIPs, parent.VirtualIPs)
	}
	if len(c.Children) != 2 {
		t.Fatalf("%d Child SAs on the clone", len(c.Children))
	}
	for _, ch := range c.Children {
		if ch.LocalTS[0].Start != c.VirtualIPs[0] || ch.LocalTS[0].End != c.VirtualIPs[0] {
			t.Fatalf("Child SA on the clone selects %v, want %v", ch.LocalTS, c.VirtualIPs)
		}
		if len(ch.VirtualIPs) != 1 || ch.VirtualIPs[0] != c.VirtualIPs[0] {
			t.Fatalf("the data plane is told %v", ch.VirtualIPs)
		}
	}
	if p := byID(l.ue, parent.ID); p.VirtualIPs[0] != parent.VirtualIPs[0] || p.Children[0].LocalTS[0].Start != parent.VirtualIPs[0] {
		t.Fatalf("the parent's address changed: %v", p.VirtualIPs)
	}
	var gwClone ike.IKESAInfo
	for _, s := range l.gw.Established() {
		if s.SPIi == c.SPIi {
			gwClone = s
		}
	}
	if len(gwClone.PeerVirtualIPs) != 1 || gwClone.PeerVirtualIPs[0] != c.VirtualIPs[0] {
		t.Fatalf("gateway assigned %v to the clone, end user uses %v", gwClone.PeerVirtualIPs, c.VirtualIPs)
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, parent.ID, 0) })
	l.settle(time.Second)
	if c2 := byID(l.ue, c.ID); len(c2.Children) != 2 || c2.VirtualIPs[0] != c.VirtualIPs[0] {
		t.Fatal("the clone lost its address with the parent")
	}
}

// RFC 7791 §8 with App. A.3: a clone's own inner address is leased while
// the clone (or the rekeyed SA that replaced it) uses it, and goes back to
// the pool with the clone; the authentication's address stays while an SA
// of the family uses it. Deleting clones while their family lives used to
// leak one address each until the pool ran out (the endurance test: 14
// leases for 3 addresses in use after 5 minutes).
func TestRFC7791Section8CloneLeaseGoesWithTheClone(t *testing.T) {
	var pool *ike.Pool
	l := newLab(t, 88, func(ue, gw *ike.Connection, a, b *ike.Config) {
		withClone(ue, gw, a, b)
		ue.CloneVIPs = true
		pool = gw.Pools[0]
	})
	l.up()
	parent := l.sa(l.ue)
	if n := pool.InUse(); n != 1 {
		t.Fatalf("%d addresses leased after IKE_AUTH, want 1", n)
	}
	for round := range 3 {
		l.clone(l.ue, parent.ID)
		l.settle(time.Second)
		c := clonesOf(l.ue, parent.ID)[0]
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, c.ID, "net") })
		l.settle(time.Second)
		if n := pool.InUse(); n != 2 {
			t.Fatalf("round %d: %d addresses leased with a clone of its own address, want 2", round, n)
		}
		// A rekey of the clone keeps its address, and its lease.
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Rekey(now, c.ID, 0) })
		l.settle(time.Second)
		if n := pool.InUse(); n != 2 {
			t.Fatalf("round %d: %d addresses leased after the clone's IKE SA rekey, want 2", round, n)
		}
		cur := clonesOf(l.ue, parent.ID)
		if len(cur) != 1 || cur[0].VirtualIPs[0] != byID(l.ue, cur[0].ID).VirtualIPs[0] {
			t.Fatalf("round %d: clones after rekey %+v", round, cur)
		}
		l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, cur[0].ID, 0) })
		l.settle(time.Second)
		if n := pool.InUse(); n != 1 {
			t.Fatalf("round %d: %d addresses leased after the clone went, want 1 (the parent's)", round, n)
		}
	}
	// The parent goes while a clone lives: its address is free, the
	// clone's stays.
	l.clone(l.ue, parent.ID)
	l.settle(time.Second)
	c := clonesOf(l.ue, parent.ID)[0]
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, c.ID, "net") })
	l.settle(time.Second)
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, parent.ID, 0) })
	l.settle(time.Second)
	if n := pool.InUse(); n != 1 {
		t.Fatalf("%d addresses leased with only the clone left, want 1", n)
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, c.ID, 0) })
	l.settle(time.Second)
	if n := pool.InUse(); n != 0 {
		t.Fatalf("%d addresses leased with no SA left", n)
	}
}

// RFC 7791 §8 with App. A.3: the parent goes while its clone still shows
// the parent's address (before the clone's first Child SA). The address
// stays leased while the clone uses it, and goes back to the pool once
// the clone has its own: the interface-event soak found it leaked (the
// gateway leasing 5 addresses for 4 VPNs after the on_down delete policy
// deleted a parent just as its clone came up).
func TestRFC7791Section8ParentAddressFreedWhenCloneGetsItsOwn(t *testing.T) {
	var pool *ike.Pool
	l := newLab(t, 89, func(ue, gw *ike.Connection, a, b *ike.Config) {
		withClone(ue, gw, a, b)
		ue.CloneVIPs = true
		pool = gw.Pools[0]
	})
	l.up()
	parent := l.sa(l.ue)
	l.clone(l.ue, parent.ID)
	l.settle(time.Second)
	c := clonesOf(l.ue, parent.ID)[0]
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, parent.ID, 0) })
	l.settle(time.Second)
	if n := pool.InUse(); n != 1 {
		t.Fatalf("%d addresses leased with the clone showing the parent's, want 1", n)
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, c.ID, "net") })
	l.settle(time.Second)
	if c = byID(l.ue, c.ID); len(c.VirtualIPs) != 1 || c.VirtualIPs[0] == parent.VirtualIPs[0] {
		t.Fatalf("the clone's address %v, the parent's was %v: want one of its own", c.VirtualIPs, parent.VirtualIPs)
	}
	if n := pool.InUse(); n != 1 {
		t.Fatalf("%d addresses leased once the clone has its own, want 1: the parent's leaked", n)
	}
}
