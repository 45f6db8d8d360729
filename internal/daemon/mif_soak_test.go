package daemon

import (
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/manager"
	"github.com/mifike/mifike/internal/netsim"
)

var (
	mifSeeds  = flag.Int("mif.seeds", 200, "seeds of TestInterfaceEventsSoak")
	mifSeed   = flag.Uint64("mif.seed", 1, "first seed of TestInterfaceEventsSoak (with -mif.seeds=1: replay one)")
	mifCycles = flag.Int("mif.cycles", 3, "TestInterfaceEventsSoak: bursts of interface events per seed, each followed by a calm")
)

// The multiple-interface use cases at random: per seed, an end user's
// interfaces are added, deleted, lose and regain carrier, go silent and
// heal, and change address, at random times for simulated minutes, under
// one of three policies (per-interface with on_down move or delete,
// failover; on_return move-back). Every simulated second once the host
// has been calm for a while, the VPNs must be where the policy puts them
// (vpnPlacementErrors), every inner address held once, and, with no VPN
// on a silent link, the peers agree and every data path works. At the
// end everything heals, and the end user must have exactly what the
// policy says for its interfaces.
//
//	go test ./internal/daemon -run TestInterfaceEventsSoak -mif.seeds=5000
//	go test ./internal/daemon -run TestInterfaceEventsSoak -mif.seeds=1 -mif.seed=N -v   (SIMTRACE=1 for a trace)
func TestInterfaceEventsSoak(t *testing.T) {
	var (
		mu  sync.Mutex
		tot soakStats
	)
	t.Run("seeds", func(t *testing.T) {
		for seed := *mifSeed; seed < *mifSeed+uint64(*mifSeeds); seed++ {
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				st := mifSoak(t, seed, *mifCycles)
				mu.Lock()
				tot.add(st)
				mu.Unlock()
			})
		}
	})
	t.Logf("%d seeds, %d bursts of events each: %s", *mifSeeds, *mifCycles, tot)
	if !t.Failed() && *mifSeeds >= 50 {
		// The run must have done what it says.
		for _, k := range soakEventKinds {
			if tot.events[k] < *mifSeeds/4 {
				t.Errorf("only %d %q events over %d seeds", tot.events[k], k, *mifSeeds)
			}
		}
		if tot.checks < *mifSeeds*20 || tot.dataChecks < *mifSeeds*5 || tot.pathProbes == 0 {
			t.Errorf("too few checks: %s", tot)
		}
	}
}

// soakEventKinds are the interface events a soak draws from.
var soakEventKinds = []string{"add", "delete", "carrier-down", "carrier-up", "silent", "heal", "readdress"}

type soakStats struct {
	events     map[string]int
	checks     int // placement checks made (calm moments)
	dataChecks int // of which with the data path and the peers compared
	pathProbes int // the engine asked for another path, its requests unanswered
	// falseBlames are such questions about a path over an interface that
	// worked (retransmissions counted across a move: see the report).
	falseBlames int
	transients  int // placement errors put right within placeWithin
	// stuckAuths: checks without the data path while an authentication
	// was stuck on an address that went away or a silent link.
	stuckAuths int
	clones     int
	auths      int
	policies   map[string]int
}

func (s *soakStats) add(o soakStats) {
	if s.events == nil {
		s.events, s.policies = map[string]int{}, map[string]int{}
	}
	for k, v := range o.events {
		s.events[k] += v
	}
	for k, v := range o.policies {
		s.policies[k] += v
	}
	s.checks += o.checks
	s.dataChecks += o.dataChecks
	s.pathProbes += o.pathProbes
	s.falseBlames += o.falseBlames
	s.transients += o.transients
	s.stuckAuths += o.stuckAuths
	s.clones += o.clones
	s.auths += o.auths
}

func (s soakStats) String() string {
	var ev []string
	for _, k := range soakEventKinds {
		ev = append(ev, fmt.Sprintf("%s %d", k, s.events[k]))
	}
	var pol []string
	for k, v := range s.policies {
		pol = append(pol, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(pol)
	return fmt.Sprintf("events: %s; policies: %s; %d placement checks (%d misplacements put right in time), %d with the data path; %d path probes (%d gave up a working interface), %d clones, %d IKE_AUTH requests; %d checks met an authentication stuck on a lost address or a silent link",
		strings.Join(ev, ", "), strings.Join(pol, ", "), s.checks, s.transients, s.dataChecks, s.pathProbes, s.falseBlames, s.clones, s.auths, s.stuckAuths)
}

const (
	// calmAfter is how long after a change the host sees the VPNs must
	// be where the policy puts them: a move or a clone takes a few round
	// trips (under 100 ms here), a delete one.
	calmAfter = 3 * time.Second
	// silentAfter is how long after a link went silent (or healed) the
	// checks wait: liveness checks and path probing find a silent link
	// in about 16 s (dpd_delay 5 s, retransmissions at 4 and 7.2 s).
	silentAfter = 40 * time.Second
	// suspectFor is how long an interface that was silent may be avoided
	// by the manager (its hold doubles up to 10 minutes).
	suspectFor = 10*time.Minute + silentAfter
	// placeWithin is how long a VPN may be misplaced: a clone lost on an
	// interface that went down, or a VPN being deleted whose Delete waits
	// behind a lost request, holds its slot until the manager's Retry
	// (20 s) or the next retransmission (42 s at most).
	placeWithin = 50 * time.Second
	// gwForgets: an SA the end user gave up while its Delete could not
	// get through stays on the gateway until its own liveness check
	// (dpd_delay 7 s) has been retransmitted for 5 minutes, as a MOBIKE
	// responder does (RFC 4555 §3.11), and one more interval (75 s);
	// until then the gateway holds an SA, and an inner address, the end
	// user lacks.
	gwForgets = 6*time.Minute + 30*time.Second
	// healAfter is how long into a calm a silent link stays silent.
	healAfter = 40 * time.Second
	// agreeAfter: requests follow a path change at once (RFC 4555
	// §3.5), but an SA whose peer no longer has it (given up while no
	// path worked) is given up only after its last try, 76 s after the
	// fifth; until then the peers may disagree about it.
	agreeAfter = 80 * time.Second
	// fullChecks is how long a calm goes on with full checks.
	fullChecks = 10 * time.Second
)

// soakIface is what the soak knows of one of the end user's interfaces.
type soakIface struct {
	mifIface
	present   bool
	silentAt  time.Time // last time it went silent or healed (zero: never silent)
	silentNow bool
	// blamedAt is the last time the engine's path probing gave up a path
	// over this interface (the manager then avoids it for a while).
	blamedAt time.Time
}

// watchPathProbes notes which interface each path the engine gave up
// for want of answers was on (the manager may then avoid it for a while,
// RFC 4555 §3.5), from the questions the engine asks the path policy, and
// counts those given up while they worked.
func watchPathProbes(s *mifSim, ifs []*soakIface, st *soakStats) {
	s.ue.onPath = func(q ike.PathQuery) {
		if q.Reason != ike.PathUnanswered {
			return
		}
		st.pathProbes++
		name := q.Current.Iface
		if name == "" {
			name = s.ue.node.InterfaceOf(q.Current.Local)
		}
		for _, x := range ifs {
			if name == "" || x.name == name { // unknown: any may be avoided
				x.blamedAt = s.net.Now
				if i, ok := s.ue.node.Interface(x.name); ok && name != "" && i.Up && i.Carrier && !i.Silent {
					st.falseBlames++
				}
			}
		}
	}
}

func mifSoak(t *testing.T, seed uint64, cycles int) (st soakStats) {
	st.events, st.policies = map[string]int{}, map[string]int{}
	// The policy and the interfaces at start come from the seed.
	pick := netsim.New(seed).Rand()
	var o mifOpts
	switch seed % 4 {
	case 0, 1:
		o.onDown = "move"
	case 2:
		o.onDown = "delete"
	case 3:
		o.mode = "failover"
	}
	policy := fmt.Sprintf("%s/%s", or(o.mode, "per-interface"), or(o.onDown, "move"))
	st.policies[policy]++
	all := append(slices.Clone(mifIfaces), mifExtra)
	ifs := make([]*soakIface, len(all))
	for i, x := range all {
		ifs[i] = &soakIface{mifIface: x, present: i < 3 || pick.IntN(2) == 0}
		if ifs[i].present {
			o.ifaces = append(o.ifaces, x)
		}
	}
	if pick.IntN(3) == 0 {
		o.rekey = time.Duration(40+pick.IntN(40)) * time.Second
	}
	s := newMIFSim(t, seed, o)
	watchPathProbes(s, ifs, &st)
	rng := s.net.Rand()
	// Some duplication and reordering on every path (no random loss: two
	// lost transmissions in a row are a path failure, and the manager's
	// hold-down of a lossy interface is TestUC1SilentFailure's story).
	for _, x := range ifs {
		x.path.Dup, x.path.Reorder = 0.01*float64(rng.IntN(3)), 0.02*float64(rng.IntN(2))
		if x.present {
			s.ue.node.SetPath(x.name, mifGW, x.path)
		}
	}
	var (
		lastHost time.Time // the last change the host saw
		failures []string
		log      []string // the events, for a failure's message
	)
	var table string                // at the first failure
	wrong := map[string]time.Time{} // placement errors, since when
	fail := func(format string, args ...any) {
		if table == "" {
			table = s.table()
		}
		if len(failures) < 5 {
			failures = append(failures, fmt.Sprintf("+%v: ", s.since().Round(time.Millisecond))+fmt.Sprintf(format, args...))
		}
	}
	act := func(kind string, x *soakIface) {
		st.events[kind]++
		log = append(log, fmt.Sprintf("+%v %s %s", s.since().Round(time.Millisecond), kind, x.name))
		n := s.ue.node
		switch kind {
		case "add":
			x.present, x.silentNow = true, false
			s.AddInterface(x.mifIface)
		case "delete":
			x.present, x.silentNow = false, false
			n.RemoveInterface(x.name)
		case "carrier-down":
			n.SetCarrier(x.name, false)
		case "carrier-up":
			n.SetCarrier(x.name, true)
		case "silent", "heal":
			x.silentNow = kind == "silent"
			x.silentAt = s.net.Now
			n.SetSilent(x.name, x.silentNow)
			return // the host sees nothing
		case "readdress":
			old := x.addr
			x.addr = netip.AddrFrom4([4]byte{10, 91, old.As4()[2], byte(2 + rng.IntN(250))})
			if x.addr == old {
				x.addr = old.Next()
			}
			n.RemoveIfaceAddr(x.name, old)
			n.AddIfaceAddr(x.name, x.addr)
		}
		lastHost = s.net.Now
	}
	// event draws one event that applies to the interfaces as they are.
	event := func() {
		for {
			x := ifs[rng.IntN(len(ifs))]
			i, _ := s.ue.node.Interface(x.name)
			kind := soakEventKinds[rng.IntN(len(soakEventKinds))]
			switch {
			case kind == "add" && x.present,
				kind != "add" && !x.present,
				kind == "carrier-down" && !i.Carrier,
				kind == "carrier-up" && i.Carrier,
				kind == "silent" && (x.silentNow || rng.IntN(2) == 0), // rarer: each costs a minute
				kind == "heal" && !x.silentNow:
				continue
			}
			act(kind, x)
			return
		}
	}
	// second runs one simulated second and checks what must hold then:
	// no inner address shared, always; the VPNs where the policy puts
	// them once the host has been calm for calmAfter; with full, the peers
	// agreeing and every data path working.
	second := func(full bool) {
		s.run(time.Second)
		if errs := s.sharedInnerAddrs(); len(errs) > 0 {
			fail("%s", strings.Join(errs, "; "))
		}
		if s.net.Now.Sub(lastHost) < calmAfter || s.net.Now.Sub(lastProbe(ifs)) < calmAfter {
			return
		}
		placement, data := soakCheck(s, ifs, o, &st, full, false)
		for _, e := range data {
			fail("%s", e)
		}
		// A misplaced VPN must be put right within placeWithin.
		for e := range wrong {
			if !slices.Contains(placement, e) {
				delete(wrong, e)
			}
		}
		for _, e := range placement {
			if _, ok := wrong[e]; !ok {
				wrong[e] = s.net.Now
				st.transients++
			}
			if d := s.net.Now.Sub(wrong[e]); d > placeWithin {
				fail("for %v: %s", d, e)
			}
		}
	}
	for c := 0; c < cycles && len(failures) == 0; c++ {
		// Activity: one to eight events, a quarter of them within 200 ms
		// of the previous one (an interface flapping, an address changed
		// while another link drops).
		for k := 1 + rng.IntN(8); k > 0 && len(failures) == 0; k-- {
			event()
			gap := time.Second + time.Duration(rng.Int64N(int64(15*time.Second)))
			if rng.IntN(4) == 0 {
				gap = time.Duration(rng.Int64N(int64(200 * time.Millisecond)))
			}
			for until := s.net.Now.Add(gap); s.net.Now.Before(until) && len(failures) == 0; {
				if d := until.Sub(s.net.Now); d < time.Second {
					s.run(d)
					break
				}
				second(false)
			}
		}
		// Calm: the host sees no change. Silent links stay silent for
		// healAfter (found and avoided meanwhile), then work again. Once
		// every outstanding request has been retransmitted on a working
		// path or given up (agreeAfter), the peers must agree.
		calm := s.net.Now
		for len(failures) == 0 {
			if s.net.Now.Sub(calm) >= healAfter {
				for _, x := range ifs {
					if x.silentNow {
						act("heal", x)
					}
				}
			}
			full := calm
			for _, x := range ifs {
				if x.silentAt.After(full) {
					full = x.silentAt
				}
			}
			full = full.Add(agreeAfter)
			if !s.net.Now.Before(full.Add(fullChecks)) {
				break
			}
			second(!s.net.Now.Before(full))
		}
	}
	// Everything heals: interfaces back, with carrier, links working.
	// After the longest hold the manager may have put on a silent
	// interface, the end user must have exactly what the policy says.
	tail := gwForgets
	for _, x := range ifs {
		if !x.present {
			act("add", x)
		}
		if i, _ := s.ue.node.Interface(x.name); !i.Carrier {
			act("carrier-up", x)
		}
		if x.silentNow {
			act("heal", x)
		}
		if !x.silentAt.IsZero() || !x.blamedAt.IsZero() {
			tail = suspectFor
		}
	}
	if len(failures) == 0 {
		s.run(tail)
		placement, data := soakCheck(s, ifs, o, &st, true, true)
		for _, e := range append(placement, data...) {
			fail("healed: %s", e)
		}
		per := s.perIface()
		switch {
		case o.mode == "failover":
			// One VPN, on the most preferred interface.
			if n := len(s.vpns()); n != 1 || per["eth0"] != 1 {
				fail("healed: VPNs per interface %v in failover mode, want one on eth0", per)
			}
		default:
			for _, name := range []string{"eth0", "wlan0", "wwan0", "usb0"} {
				if per[name] < 1 || (o.onDown == "delete" && per[name] != 1) {
					fail("healed: VPNs per interface %v, want one on each interface", per)
					break
				}
			}
			if n := len(s.vpns()); o.onDown == "delete" && n != 4 {
				fail("healed: %d VPNs, want 4", n)
			}
		}
	}
	if len(failures) > 0 {
		t.Fatalf("seed %d (%s, rekey %v): replay with -run 'TestInterfaceEventsSoak$' -mif.seeds=1 -mif.seed=%d -v\n%s\nVPNs:\n%sevents:\n  %s",
			seed, policy, o.rekey, seed, strings.Join(failures, "\n"), table, strings.Join(tail5(log), "\n  "))
	}
	st.clones = len(s.gw.node.EventsOf(ike.EventIKECloned))
	st.auths = s.auths
	if testing.Verbose() && *mifSeeds == 1 {
		t.Logf("seed %d (%s): %s\n  %s", seed, policy, st, strings.Join(log, "\n  "))
	}
	return st
}

// redundantSA: e says one side has an IKE SA the other lacks, and it is
// one without Child SAs made less than collisionGrace ago.
func redundantSA(s *mifSim, e string) bool {
	const collisionGrace = 30 * time.Second
	m := lacksRE.FindStringSubmatch(e)
	if m == nil {
		return false
	}
	id, _ := strconv.ParseUint(m[2], 10, 64)
	node := s.ue.node
	if m[1] == "gw" {
		node = s.gw.node
	}
	for _, sa := range node.Engine.IKESAs() {
		if sa.ID == id {
			return len(sa.Children) == 0 && s.net.Now.Sub(sa.Established) < collisionGrace
		}
	}
	return false
}

// lacksRE matches netsim.CheckConsistent's "one side has an IKE SA the
// other lacks".
var lacksRE = regexp.MustCompile(`^(ue|gw) has IKE SA \S+ \(id (\d+)\) that (ue|gw) lacks$`)

// lastProbe is when the engine last gave up a path.
func lastProbe(ifs []*soakIface) time.Time {
	var t time.Time
	for _, x := range ifs {
		if x.blamedAt.After(t) {
			t = x.blamedAt
		}
	}
	return t
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func tail5(l []string) []string { return l[max(0, len(l)-12):] }

// soakCheck checks, at a calm moment, that the VPNs are where the policy
// puts them and, with no VPN on a silent link, that the peers agree and
// every data path works.
func soakCheck(s *mifSim, ifs []*soakIface, o mifOpts, st *soakStats, full, final bool) (placement, data []string) {
	fail := func(format string, args ...any) { placement = append(placement, fmt.Sprintf(format, args...)) }
	now := s.net.Now
	m := s.ue.managers["office"]
	usable := map[string]bool{}  // up, carrier, an address: what the host offers
	suspect := map[string]bool{} // silent now or lately: the manager may avoid it
	silent := map[string]bool{}
	for _, x := range ifs {
		i, ok := s.ue.node.Interface(x.name)
		usable[x.name] = ok && i.Up && i.Carrier && len(i.Addrs) > 0
		silent[x.name] = ok && i.Silent
		suspect[x.name] = silent[x.name] || (!x.silentAt.IsZero() && now.Sub(x.silentAt) < suspectFor) ||
			(!x.blamedAt.IsZero() && now.Sub(x.blamedAt) < suspectFor)
		if !x.silentAt.IsZero() && now.Sub(x.silentAt) < silentAfter {
			return nil, nil // a silent link is being found, or a healed one tried again
		}
	}
	st.checks++
	good := func(name string) bool { return usable[name] && !suspect[name] }
	var want []string // where the policy wants a VPN now
	for _, name := range []string{"eth0", "wlan0", "wwan0", "usb0"} {
		if good(name) {
			want = append(want, name)
		}
	}
	vs := s.vpns()
	homes := map[manager.Slot]uint64{}
	onSilent, stranded := false, false
	for _, k := range slices.Sorted(maps.Keys(vs)) { // a stable order: errors are compared across checks
		v := vs[k]
		home, ok := m.Home(k)
		if !ok && m.Deleting(k) {
			// The manager let it go (on_down delete) and its Delete
			// has not got through yet: it goes with that, or when that
			// gives up.
			stranded = true
			continue
		}
		if !ok {
			fail("VPN %d (IKE SA %d on %s) has no home in the manager", k, v.ID, v.iface)
			continue
		}
		if o, dup := homes[home]; dup {
			fail("VPNs %d and %d both have home %s", o, k, home)
		}
		homes[home] = k
		// A VPN on a path that cannot work now has no data path to check.
		onSilent = onSilent || silent[v.iface] || !usable[v.iface]
		switch {
		case good(home.Iface):
			if v.iface != home.Iface {
				fail("VPN %d is on %q, its home %s is usable (on_return move-back)", k, v.iface, home)
			}
		case suspect[home.Iface] && v.iface == home.Iface:
			// Tried again on its home after a hold: found silent again,
			// or it works now.
		case (!usable[v.iface] || silent[v.iface]) && len(want) == 0:
			// Nowhere to go: it stays, and liveness checks decide.
			stranded = true
		case !usable[v.iface] || silent[v.iface]:
			fail("VPN %d (home %s) is on %q, which is down, gone or silent, while %v are usable", k, home, v.iface, want)
		case o.onDown == "delete" && !suspect[home.Iface]:
			fail("VPN %d lives on %s though its home %s is gone (on_down delete)", k, v.iface, home)
		}
	}
	// An authentication under way from an address that went away, or
	// over a link that passes nothing, is given up by the manager within
	// Retry (20 s) and begun again elsewhere: the VPNs must still be
	// placed within placeWithin, but the peers cannot agree meanwhile.
	authStuck := false
	for _, sa := range s.ue.node.Engine.IKESAs() {
		if sa.State != ike.StateConnecting {
			continue
		}
		if i, ok := s.ue.node.Interface(s.ue.node.InterfaceOf(sa.Local.Addr())); !ok || !usable[i.Name] || i.Silent {
			st.stuckAuths++
			authStuck = true
		}
	}
	// Every interface the policy wants a VPN on has one at home.
	if o.mode == "failover" {
		if len(want) > 0 && len(vs) != 1 {
			fail("failover: %d VPNs with %v usable, want one", len(vs), want)
		}
	} else {
		for _, name := range want {
			if _, ok := homes[manager.Slot{Iface: name}]; !ok {
				fail("%s is usable but no VPN has it as home", name)
			}
		}
	}
	if onSilent || stranded || authStuck || !full {
		return placement, nil // broken until found or gone: the peers cannot agree
	}
	if !s.runUntil(2*time.Second, s.net.Quiet) {
		return placement, nil
	}
	st.dataChecks++
	errs := s.dataPathErrors()
	if !final {
		// The gateway may hold SAs the end user gave up (gwForgets).
		errs = slices.DeleteFunc(errs, func(e string) bool {
			return strings.HasPrefix(e, "gw has IKE SA") && strings.HasSuffix(e, "that ue lacks")
		})
		// After a rekey collision the winner holds the loser's redundant
		// SA, without Child SAs, until the loser deletes it or, when the
		// loser never learned of it, for three retransmission times
		// (RFC 7296 §2.8.2, ikeSA.dropIfNotDeleted).
		errs = slices.DeleteFunc(errs, func(e string) bool { return redundantSA(s, e) })
	}
	if len(errs) > 0 {
		data = append(data, "data path: "+strings.Join(errs, "; "))
	}
	if final {
		if errs := s.innerAddrErrors(); len(errs) > 0 {
			data = append(data, "inner addresses: "+strings.Join(errs, "; "))
		}
	} else if errs := s.sharedInnerAddrs(); len(errs) > 0 {
		data = append(data, "inner addresses: "+strings.Join(errs, "; "))
	}
	return placement, data
}
