package ike_test

import (
	"flag"
	"fmt"
	"github.com/mifike/mifike/internal/eap"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
)

var (
	soakSeeds = flag.Int("soak.seeds", 2000, "number of seeds the soak test runs")
	soakFirst = flag.Uint64("soak.seed", 0, "first seed (with -soak.seeds=1, reproduces one run)")
)

// TestSoak runs the whole protocol under 20% loss, 20% duplication and
// 20% reordering while both peers rekey, create and delete Child SAs and
// rekey or check the IKE SA at random, often at the same instant to force
// collisions (RFC 7296 §2.8.1, §2.8.2, §2.25). After the network heals and
// every timer has run, both peers must agree on every IKE SA and Child SA,
// their SPIs and keys, the data plane must hold exactly the engine's Child
// SAs, and the engines' own tables must be consistent.
func TestSoak(t *testing.T) {
	n := *soakSeeds
	if testing.Short() {
		n = 200
	}
	stats := map[string]int{}
	for i := 0; i < n; i++ {
		seed := *soakFirst + uint64(i)
		if err := soakOne(t, seed, stats); err != nil {
			t.Fatalf("seed %d: %v\nreproduce: go test ./internal/ike -run 'TestSoak$' -soak.seed=%d -soak.seeds=1 -sim.trace", seed, err, seed)
		}
	}
	t.Logf("%d seeds: %v", n, stats)
}

func soakOne(t *testing.T, seed uint64, stats map[string]int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	l := newLab(t, seed, func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
		withSecondChild(t)(ue, gw, uec, gwc)
		withClone(ue, gw, uec, gwc)
		ue.DPDDelay, gw.DPDDelay = 30*time.Second, 30*time.Second
		// A quarter of the seeds check new addresses (RFC 4555 §3.7).
		gw.ReturnRoutability = seed%4 == 0
		// A third of the seeds fragment every message over 300-octet IP
		// datagrams (RFC 7383), so lost, duplicated and reordered
		// fragments are reassembled, retransmitted and cut again.
		if seed%3 == 2 {
			ue.Fragmentation, gw.Fragmentation = true, true
			ue.FragmentSize, gw.FragmentSize = 300, 300
		}
		// Two thirds of the seeds overlap requests (RFC 7296 §2.3): both
		// sides, or only the gateway stating a window.
		switch seed % 3 {
		case 1:
			ue.Window, gw.Window = 4, 4
		case 2:
			gw.Window = 2
		}
		// A seventh of the seeds run over TCP (RFC 9329) from the first
		// message: rekeys, clones, moves and hand-overs of TCP SAs, on a
		// transport the simulator keeps reliable and in order.
		if seed%7 == 5 {
			ue.TCP = ike.TCPAlways
		}
		// A sixth of the seeds check liveness on traffic (liveness.go):
		// the end user's Child SAs send all along, so quick probes run
		// beside every exchange, collision and move.
		if seed%6 == 4 {
			ue.LivenessWindow = 300 * time.Millisecond
		}
		// A fifth of the seeds authenticate the end user by EAP (RFC
		// 7296 §2.16) through a backend that answers after a while, so
		// IKE_AUTH rounds are lost, retransmitted and held.
		if seed%5 == 3 {
			ue.LocalAuth = ike.AuthEAP
			ue.EAP = &eap.PeerConfig{Identity: []byte("alice"), Password: []byte("alice's password"), Methods: []eap.Type{eap.TypeMSCHAPv2}}
			gw.RemoteAuth = ike.AuthEAP
		}
	})
	if seed%7 == 5 {
		stats["tcp"]++
	}
	if seed%6 == 4 {
		stats["liveness on traffic"]++
		defer func() { stats["paths judged dead"] += int(l.ue.Engine.Stats().PathsDead) }()
	}
	if seed%5 == 3 {
		b := newEAPBackend(eap.TypeMSCHAPv2)
		l.gw.EAP = b.ask
		l.gw.EAPDelay = time.Duration(seed%50) * time.Millisecond
		stats["eap"]++
	}
	r := l.net.Rand()
	mobike := seed%2 == 0 // half the seeds exercise MOBIKE moves and path failures
	// A quarter of the seeds hand a node's SAs over to a fresh engine
	// (Export, restart, Import) now and then: the peer must not notice.
	handover := seed%4 == 1
	if mobike {
		l.twoAddrs()
	}
	l.net.Default = netsim.Link{Delay: time.Duration(5+r.IntN(20)) * time.Millisecond, Jitter: 30 * time.Millisecond,
		Loss: 0.2, Dup: 0.2, Reorder: 0.2}
	l.initiate()
	if !l.net.RunUntil(10*time.Minute, func() bool { return len(l.ue.Established()) > 0 && len(l.gw.Established()) > 0 }) {
		stats["never up"]++
		return l.quiesce()
	}
	stats["up"]++
	// Chaos: random operations at random times, sometimes on both peers
	// at the same instant.
	for step := 0; step < 12; step++ {
		wait := time.Duration(r.IntN(3000)) * time.Millisecond
		if seed%6 == 4 {
			l.sendUpstream(wait)
		} else {
			l.net.RunFor(wait)
		}
		if handover && r.IntN(3) == 0 {
			node := []*netsim.Node{l.ue, l.gw}[r.IntN(2)]
			stats[handOver(t, node)]++
			continue
		}
		both := r.IntN(3) == 0
		op := r.IntN(8)
		if mobike && r.IntN(3) == 0 {
			if name := randomMove(l, r); name != "" {
				stats[name]++
			}
			continue
		}
		for _, node := range []*netsim.Node{l.ue, l.gw} {
			if node == l.gw && !both && r.IntN(2) == 0 {
				continue
			}
			if name := randomOp(node, op, r); name != "" {
				stats[name]++
			}
		}
	}
	return l.quiesce()
}

// sendUpstream runs the network for d while the end user's Child SAs
// report outgoing ESP every 50 ms and nothing inbound, in SPI order so
// that a seed stays a seed.
func (l *lab) sendUpstream(d time.Duration) {
	end := l.net.Now.Add(d)
	for l.net.Now.Before(end) {
		spis := make([]uint32, 0, len(l.ue.Children))
		for spi := range l.ue.Children {
			spis = append(spis, spi)
		}
		slices.Sort(spis)
		for _, spi := range spis {
			l.ue.Do(func(now time.Time) []ike.Action { return l.ue.Engine.Outbound(now, spi) })
		}
		l.net.RunFor(min(50*time.Millisecond, end.Sub(l.net.Now)))
	}
}

// randomOp applies operation op to one of the node's established SAs.
func randomOp(node *netsim.Node, op int, r *rand.Rand) string {
	est := node.Established()
	if len(est) == 0 {
		return ""
	}
	sa := est[r.IntN(len(est))]
	var child uint32
	if len(sa.Children) > 0 {
		child = sa.Children[r.IntN(len(sa.Children))].InSPI
	}
	var name string
	node.Do(func(now time.Time) []ike.Action {
		var acts []ike.Action
		switch {
		case op <= 1 && child != 0:
			name = "rekey child"
			acts, _ = node.Engine.Rekey(now, sa.ID, child)
		case op == 2:
			name = "rekey IKE"
			acts, _ = node.Engine.Rekey(now, sa.ID, 0)
		case op == 3:
			name = "create child"
			acts, _ = node.Engine.CreateChild(now, sa.ID, "pfs")
		case op == 4 && child != 0:
			name = "delete child"
			acts, _ = node.Engine.Terminate(now, sa.ID, child)
		case op == 5:
			name = "liveness"
			acts, _ = node.Engine.CheckLiveness(now, sa.ID)
		case op == 6 && r.IntN(4) == 0:
			name = "delete IKE"
			acts, _ = node.Engine.Terminate(now, sa.ID, 0)
		case op == 7:
			name = "clone"
			acts, _ = node.Engine.Clone(now, sa.ID)
		}
		return acts
	})
	return name
}

// handOver moves every IKE SA of node to a fresh engine of the same
// configuration (Export, restart, Import), if every one of them is
// established and idle; otherwise it leaves the node alone.
func handOver(t *testing.T, node *netsim.Node) string {
	est := node.Established()
	if len(est) == 0 || len(est) != len(node.Engine.IKESAs()) {
		return "handover skipped (SAs in transition)"
	}
	var blobs [][]byte
	for _, s := range est {
		b, err := node.Engine.Export(s.ID)
		if err != nil {
			return "handover skipped (busy)"
		}
		blobs = append(blobs, b)
	}
	restartWith(t, node, blobs)
	return "handover"
}

// randomMove moves an SA whose MOBIKE initiator is the end user to a
// random local address, or takes one path down for a while.
func randomMove(l *lab, r *rand.Rand) string {
	if r.IntN(3) == 0 {
		l.net.SetLink(ueAddr, gwAddr, netsim.Link{Down: true})
		l.net.RunFor(time.Duration(5+r.IntN(40)) * time.Second)
		l.net.SetLink(ueAddr, gwAddr, l.net.Default)
		return "path outage"
	}
	for _, node := range []*netsim.Node{l.ue, l.gw} {
		for _, s := range node.Established() {
			if !s.MOBIKEInitiator || r.IntN(2) == 0 {
				continue
			}
			addrs := node.Addrs()
			a := addrs[r.IntN(len(addrs))]
			var name string
			node.Do(func(now time.Time) []ike.Action {
				acts, err := node.Engine.Move(now, s.ID, a, netip.Addr{}, "")
				if err == nil {
					name = "move"
				}
				return acts
			})
			return name
		}
	}
	return ""
}

// quiesce heals the network, lets every exchange, retransmission and
// liveness check finish, and checks the invariants.
func (l *lab) quiesce() error {
	l.net.Default = netsim.Link{Delay: 10 * time.Millisecond}
	l.net.SetLink(ueAddr, gwAddr, l.net.Default)
	l.net.RunFor(15 * time.Minute)
	if err := netsim.CheckConsistent(l.ue, l.gw); err != nil {
		return err
	}
	for _, n := range []*netsim.Node{l.ue, l.gw} {
		if err := n.Engine.Audit(); err != nil {
			return fmt.Errorf("%s: %v", n.Name, err)
		}
	}
	return nil
}
