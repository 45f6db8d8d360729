package endurance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
)

// The disturbances, each once per round in a seeded random order, with
// a seeded random pause of 1.5 to 4 s before each.
var kinds = []string{"flap", "clone", "rekey-ike", "rekey-child", "move", "reload-ue", "reload-gw"}

const (
	minGap, maxGap = 1500 * time.Millisecond, 4 * time.Second
	// A flap keeps its interface down for 2 to 5 s.
	minDown, maxDown = 2 * time.Second, 5 * time.Second
)

// disturb runs the disturbances from the end of the warm-up to the
// quiet period. Every random choice draws the same number of values
// whatever the daemons hold, so a seed replays the same schedule.
func (r *run) disturb(rng *rand.Rand, done <-chan struct{}) {
	sleep := func(d time.Duration) bool {
		select {
		case <-done:
			return false
		case <-time.After(d):
			return true
		}
	}
	if !sleep(warmUp) {
		return
	}
	last := r.t0.Add(r.soak - quiet)
	for {
		order := slices.Clone(kinds)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			gap := minGap + time.Duration(rng.Int64N(int64(maxGap-minGap)))
			pick, pick2 := rng.Uint64(), rng.Uint64()
			hold := minDown + time.Duration(rng.Int64N(int64(maxDown-minDown)))
			// Each action is over before the quiet period starts.
			took := time.Second
			switch k {
			case "flap":
				took += hold
			case "clone":
				took += hold/2 + time.Second
			}
			if time.Now().Add(gap + took).After(last) {
				return
			}
			if !sleep(gap) {
				return
			}
			start := time.Now()
			what, err := r.act(k, pick, pick2, hold, done)
			at := start.Sub(r.t0)
			r.mu.Lock()
			r.windows = append(r.windows, [2]time.Time{start, time.Now()})
			r.actions[k]++
			r.mu.Unlock()
			if err != nil {
				r.t.Errorf("[%6s] %s failed: %v", secs(at), k, err)
				continue
			}
			r.t.Logf("[%6s] %s: %s (%v)", secs(at), k, what, time.Since(start).Round(time.Millisecond))
		}
	}
}

func (r *run) act(kind string, pick, pick2 uint64, hold time.Duration, done <-chan struct{}) (string, error) {
	switch kind {
	case "flap":
		return r.flap(ifaces[pick%uint64(len(ifaces))], hold, done)
	case "clone":
		return r.clone(pick, hold/2)
	case "rekey-ike", "rekey-child":
		s := r.ue
		if pick2%2 == 1 {
			s = r.gw
		}
		return r.rekey(s, kind == "rekey-child", pick)
	case "move":
		return r.move(pick, pick2)
	case "reload-ue":
		return r.reload(r.ue, pick%2 == 0)
	case "reload-gw":
		return r.reload(r.gw, pick%2 == 0)
	}
	return "", fmt.Errorf("unknown disturbance %q", kind)
}

// flap takes an end-user interface down (its VPN must move to the best
// other one, RFC 4555 §3.5) and up again after hold (it must move back).
func (r *run) flap(dev string, hold time.Duration, done <-chan struct{}) (string, error) {
	r.mu.Lock()
	r.down = dev
	r.mu.Unlock()
	if err := r.top.SetLink(dev, false); err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-time.After(hold):
	}
	err := r.top.SetLink(dev, true)
	r.mu.Lock()
	r.down = ""
	r.mu.Unlock()
	return fmt.Sprintf("%s down for %v, up again", dev, hold.Round(time.Millisecond)), err
}

// ctl runs the mifike CLI against a daemon's control socket.
func (r *run) ctl(s *side, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{args[0], "-s", s.d.Sock}, args[1:]...)
	out, err := exec.CommandContext(ctx, mifikeBin, argv...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mifike %s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// notFound: the SA went (rekeyed or deleted) between listing and asking.
func notFound(err error) bool {
	var ce *control.Error
	return err != nil && (strings.Contains(err.Error(), "no IKE SA") || strings.Contains(err.Error(), "no established IKE SA") ||
		strings.Contains(err.Error(), "no Child SA") || errors.As(err, &ce) && ce.Code == control.CodeNotFound)
}

// retry runs f, again while its SA went meanwhile.
func retry(f func() (string, error)) (string, error) {
	what, err := f()
	// An SA listed a moment ago may be rekeyed (a new ID) by the time
	// the command reaches the daemon; on a loaded machine that can
	// happen twice in a row.
	for try := 0; notFound(err) && try < 5; try++ {
		time.Sleep(200 * time.Millisecond)
		what, err = f()
	}
	return what, err
}

// clone clones one of the end user's VPNs through the control API (as
// `mifike clone` does), waits for the clone, keeps it for hold and
// terminates it: a VPN the user made and removed, which must leave
// nothing behind (its inner address, its lease, its routes).
func (r *run) clone(pick uint64, hold time.Duration) (string, error) {
	var parent control.SA
	before := map[uint64]bool{}
	what, err := retry(func() (string, error) {
		sas, err := r.ue.d.SAs()
		if err != nil {
			return "", err
		}
		v := vpns(sas)
		if len(v) == 0 {
			return "", errors.New("no VPN to clone")
		}
		slices.SortFunc(v, func(a, b control.SA) int { return strings.Compare(demo.IfaceOf(a), demo.IfaceOf(b)) })
		parent = v[pick%uint64(len(v))]
		for _, s := range sas {
			before[s.ID] = true
		}
		return "", r.ue.d.Call("clone", map[string]any{"ike_sa": parent.ID})
	})
	if err != nil {
		return what, err
	}
	// The clone: a new SA whose parent is the one we cloned (the
	// manager may give it Child SAs at once: a clone made with the CLI
	// is a VPN where it is).
	find := func() (control.SA, bool) {
		sas, _ := r.ue.d.SAs()
		for _, s := range sas {
			if !before[s.ID] && s.Parent == parent.ID && s.State == ike.StateEstablished {
				return s, true
			}
		}
		return control.SA{}, false
	}
	var c control.SA
	if !demo.WaitFor(10*time.Second, func() bool {
		var ok bool
		c, ok = find()
		return ok
	}) {
		sas, _ := r.ue.d.SAs()
		return "", fmt.Errorf("the clone of IKE SA %d (%s) did not come up within 10s; end user: %s", parent.ID, demo.IfaceOf(parent), states(sas, true))
	}
	time.Sleep(hold)
	err = r.ue.d.Call("terminate", map[string]any{"ike_sa": c.ID})
	if notFound(err) {
		// Rekeyed meanwhile: its successor has the same parent.
		if s, ok := find(); ok {
			c = s
			err = r.ue.d.Call("terminate", map[string]any{"ike_sa": c.ID})
		}
	}
	if err != nil {
		return "", fmt.Errorf("terminating the clone %d: %w", c.ID, err)
	}
	return fmt.Sprintf("IKE SA %d (%s) cloned to %d, kept %v, terminated", parent.ID, demo.IfaceOf(parent), c.ID, hold.Round(time.Millisecond)), nil
}

// rekey rekeys an IKE SA or one of its Child SAs on one side with
// `mifike rekey`.
func (r *run) rekey(s *side, child bool, pick uint64) (string, error) {
	return retry(func() (string, error) {
		sas, err := s.d.SAs()
		if err != nil {
			return "", err
		}
		var l []control.SA
		for _, sa := range established(sas) {
			if !child || installed(sa) {
				l = append(l, sa)
			}
		}
		if len(l) == 0 {
			return "", fmt.Errorf("the %s daemon has no SA to rekey", s.name)
		}
		slices.SortFunc(l, func(a, b control.SA) int { return cmp.Compare(a.ID, b.ID) })
		sa := l[pick%uint64(len(l))]
		// --no-wait: a disturbance, judged by the invariants, not by its
		// own outcome; with lifetimes of seconds the SA listed a moment
		// ago is often rekeyed by its lifetime before or while ours is
		// asked for, and mifike rekey would rightly call that a failure.
		if !child {
			_, err := r.ctl(s, "rekey", fmt.Sprint(sa.ID), "--no-wait")
			return fmt.Sprintf("%s: IKE SA %d", s.name, sa.ID), err
		}
		for _, c := range sa.Children {
			if c.State == "INSTALLED" {
				_, err := r.ctl(s, "rekey", fmt.Sprint(sa.ID), "--child", c.InSPI, "--no-wait")
				return fmt.Sprintf("%s: Child SA %s of IKE SA %d", s.name, c.InSPI, sa.ID), err
			}
		}
		return "", fmt.Errorf("no Child SA")
	})
}

// move moves one of the end user's VPNs to another interface by hand
// (`mifike move`). The policy (per-interface, move back) must bring it
// home again within settle: its interface is up and works.
func (r *run) move(pick, pick2 uint64) (string, error) {
	return retry(func() (string, error) {
		sas, err := r.ue.d.SAs()
		if err != nil {
			return "", err
		}
		v := vpns(sas)
		if len(v) == 0 {
			return "", fmt.Errorf("no VPN to move; end user: %s", states(sas, true))
		}
		slices.SortFunc(v, func(a, b control.SA) int {
			return cmp.Or(strings.Compare(demo.IfaceOf(a), demo.IfaceOf(b)), cmp.Compare(a.ID, b.ID))
		})
		s := v[pick%uint64(len(v))]
		from := slices.Index(ifaces, demo.IfaceOf(s))
		if from < 0 {
			return "", fmt.Errorf("IKE SA %d is on %s, none of %v", s.ID, demo.IfaceOf(s), ifaces)
		}
		to := ifaces[(from+1+int(pick2%uint64(len(ifaces)-1)))%len(ifaces)]
		a, _ := demo.AccessOf(to)
		// --no-wait: the policy moves it back, perhaps before the
		// gateway answered this move, which mifike move would rightly
		// report as not done; the disturbance is the point.
		_, err = r.ctl(r.ue, "move", fmt.Sprint(s.ID), "--local", a.Addr+"%"+to, "--no-wait")
		return fmt.Sprintf("IKE SA %d from %s to %s", s.ID, ifaces[from], to), err
	})
}

// reload rereads the unchanged configuration, by SIGHUP or `mifike
// reload`: nothing may change.
func (r *run) reload(s *side, hup bool) (string, error) {
	if hup {
		if err := syscall.Kill(s.d.Pid(), syscall.SIGHUP); err != nil {
			return "", err
		}
		return s.name + ": SIGHUP", nil
	}
	_, err := r.ctl(s, "reload")
	return s.name + ": mifike reload", err
}
