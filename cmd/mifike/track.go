package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/mifike/mifike/internal/control"
)

// The trackers: what each action verb waits for (wait.go). They read the
// engine's events as control.Event carries them (internal/ike/actions.go).

// follow is the IKE SA a tracker watches, followed across IKE SA rekeys:
// the new SA takes over the Child SAs and the exchanges still queued
// (RFC 7296 §2.8), so the outcome may arrive on it.
type follow struct{ id uint64 }

// rekeyed moves on to the new IKE SA when ev rekeyed the one followed.
func (f *follow) rekeyed(ev control.Event) bool {
	if ev.Kind == "ike-rekeyed" && ev.From == f.id && ev.IKESA != 0 {
		f.id = ev.IKESA
		return true
	}
	return false
}

// goneFailure is a poll's verdict on an IKE SA that is no longer listed:
// its end was among the lost events.
func goneFailure(id uint64, what string) *failure {
	return failed(id, "IKE SA %d is gone, %s (its events were lost: this client read too slowly; see the daemon's log)", id, what)
}

// childrenOf are the Child SAs of sa among spis, in that order, or bare
// ones where sa no longer lists them.
func childrenOf(sas []control.SA, id uint64, spis []string) []control.Child {
	s, _ := findSA(sas, id)
	out := []control.Child{}
	for _, spi := range spis {
		c := control.Child{InSPI: spi, LocalTS: []string{}, RemoteTS: []string{}}
		for _, x := range s.Children {
			if x.InSPI == spi {
				c = x
			}
		}
		out = append(out, c)
	}
	return out
}

func childText(c control.Child) string {
	if c.OutSPI == "" {
		return fmt.Sprintf("Child SA %s %s_i", c.Name, c.InSPI)
	}
	return fmt.Sprintf("Child SA %s %s_i %s_o", c.Name, c.InSPI, c.OutSPI)
}

// initiateTracker waits for the IKE SA to come up (unless it is up
// already) and for each Child SA asked for; a failure of either is the
// outcome (RFC 7296 §1.2: a failed first Child SA leaves the IKE SA up,
// but not the VPN that was asked for).
type initiateTracker struct {
	conn     string
	sa       follow
	existing bool
	up       bool
	want     []string // Child SAs still awaited, by configured name
	got      []string // the inbound SPIs of those that came up
}

func newInitiateTracker(conn string, in control.Initiated) *initiateTracker {
	return &initiateTracker{conn: conn, sa: follow{in.IKESA}, existing: in.Existing, up: in.Existing, want: slices.Clone(in.Children)}
}

func (t *initiateTracker) ikeSA() uint64 { return t.sa.id }

func (t *initiateTracker) event(ev control.Event) (bool, error) {
	if t.sa.rekeyed(ev) || ev.IKESA != t.sa.id {
		return false, nil
	}
	switch ev.Kind {
	case "ike-up":
		t.up = true
	case "ike-failed":
		if !t.up { // when up, a failed IKE SA rekey: the SA stays
			return false, failed(t.sa.id, "IKE SA %d of %s failed: %s", t.sa.id, t.conn, ev.Detail)
		}
	case "ike-down":
		return false, failed(t.sa.id, "IKE SA %d of %s went down: %s", t.sa.id, t.conn, ev.Detail)
	case "child-up":
		if i := slices.Index(t.want, ev.ChildName); i >= 0 && ev.ChildName != "" {
			t.want = slices.Delete(t.want, i, i+1)
			t.got = append(t.got, ev.Child)
		}
	case "child-failed":
		if slices.Contains(t.want, ev.ChildName) && ev.ChildName != "" {
			if t.up && !t.existing {
				return false, failed(t.sa.id, "IKE SA %d of %s is up, but its Child SA %s failed: %s", t.sa.id, t.conn, ev.ChildName, ev.Detail)
			}
			return false, failed(t.sa.id, "Child SA %s of %s failed: %s", ev.ChildName, t.conn, ev.Detail)
		}
	}
	return t.up && len(t.want) == 0, nil
}

func (t *initiateTracker) poll(sas []control.SA) (bool, error) {
	s, ok := findSA(sas, t.sa.id)
	switch {
	case !ok:
		return false, goneFailure(t.sa.id, "not up")
	case s.State.String() != "ESTABLISHED" || t.existing:
		// On an SA that was up already, a child of the same name may be
		// an older one: only its event tells.
		return false, nil
	}
	t.up = true
	for _, c := range s.Children {
		if i := slices.Index(t.want, c.Name); i >= 0 && c.State == "INSTALLED" {
			t.want = slices.Delete(t.want, i, i+1)
			t.got = append(t.got, c.InSPI)
		}
	}
	return len(t.want) == 0, nil
}

func (t *initiateTracker) waiting() string {
	if !t.up {
		return fmt.Sprintf("IKE SA %d of %s to come up", t.sa.id, t.conn)
	}
	return fmt.Sprintf("Child SA %s on IKE SA %d", strings.Join(t.want, ", "), t.sa.id)
}

func (t *initiateTracker) result(sas []control.SA) (outcome, string, error) {
	out := outcome{IKESA: t.sa.id, Conn: t.conn, State: stateOf(sas, t.sa.id), Children: childrenOf(sas, t.sa.id, t.got)}
	var parts []string
	for _, c := range out.Children {
		parts = append(parts, childText(c))
	}
	if t.existing {
		return out, fmt.Sprintf("%s: %s up on IKE SA %d", t.conn, strings.Join(parts, ", "), t.sa.id), nil
	}
	text := fmt.Sprintf("%s: IKE SA %d %s", t.conn, t.sa.id, out.State)
	if len(parts) > 0 {
		text += ", " + strings.Join(parts, ", ")
	}
	return out, text, nil
}

// terminateTracker waits for IKE SAs to go, or for one Child SA.
type terminateTracker struct {
	conn  string   // terminate CONN
	ids   []uint64 // as asked for
	left  []uint64 // still there
	child string   // the Child SA's inbound SPI, for terminate --child
}

func (t *terminateTracker) ikeSA() uint64 {
	if len(t.ids) == 1 {
		return t.ids[0]
	}
	return 0
}

func (t *terminateTracker) event(ev control.Event) (bool, error) {
	switch {
	case t.child != "" && ev.Kind == "child-down" && ev.Child == t.child:
		// Matched by SPI alone: the Child SA may have moved to a
		// rekeyed IKE SA.
		return true, nil
	case ev.Kind == "ike-down" || ev.Kind == "ike-failed": // ike-failed: one not yet up
		if i := slices.Index(t.left, ev.IKESA); i >= 0 {
			t.left = slices.Delete(t.left, i, i+1)
		}
	}
	return len(t.left) == 0, nil
}

func (t *terminateTracker) poll(sas []control.SA) (bool, error) {
	if t.child != "" {
		for _, s := range sas {
			for _, c := range s.Children {
				if c.InSPI == t.child {
					return false, nil
				}
			}
		}
		return true, nil
	}
	t.left = slices.DeleteFunc(t.left, func(id uint64) bool {
		_, ok := findSA(sas, id)
		return !ok
	})
	return len(t.left) == 0, nil
}

func (t *terminateTracker) waiting() string {
	switch {
	case t.child != "":
		return fmt.Sprintf("Child SA %s of IKE SA %d to be deleted", t.child, t.ids[0])
	case len(t.left) == 1:
		return fmt.Sprintf("IKE SA %d to be deleted", t.left[0])
	}
	return fmt.Sprintf("IKE SAs %s to be deleted", idList(t.left))
}

func (t *terminateTracker) result(sas []control.SA) (outcome, string, error) {
	switch {
	case t.child != "":
		return outcome{IKESA: t.ids[0], Child: t.child, State: "DELETED"},
			fmt.Sprintf("Child SA %s of IKE SA %d deleted", t.child, t.ids[0]), nil
	case t.conn != "" && len(t.ids) == 0:
		return outcome{Conn: t.conn, State: "DELETED"}, fmt.Sprintf("%s has no IKE SAs", t.conn), nil
	case t.conn != "":
		return outcome{Conn: t.conn, State: "DELETED", Terminated: len(t.ids), IKESAs: t.ids},
			fmt.Sprintf("%s: %s deleted (%s)", t.conn, plural(len(t.ids), "IKE SA"), idList(t.ids)), nil
	}
	return outcome{IKESA: t.ids[0], State: "DELETED"}, fmt.Sprintf("IKE SA %d deleted", t.ids[0]), nil
}

func idList(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ", ")
}

// rekeyTracker waits for an IKE SA rekey (the new IKE SA) or a Child SA
// rekey (the new Child SA).
type rekeyTracker struct {
	from  uint64 // the IKE SA asked about
	sa    follow // where the Child SA is now
	child string // the Child SA asked about, "" for the IKE SA
	// ups are the Child SAs that came up on the IKE SA meanwhile, by
	// name: if the old one then goes without our rekey's event, the peer
	// rekeyed it first (RFC 7296 §2.8.1), and the new one is among them.
	ups    map[string]string
	newSA  uint64
	newSPI string
}

func (t *rekeyTracker) ikeSA() uint64 { return t.sa.id }

func (t *rekeyTracker) event(ev control.Event) (bool, error) {
	if t.child == "" {
		switch {
		case ev.Kind == "ike-rekeyed" && ev.From == t.from:
			t.newSA = ev.IKESA
			return true, nil
		case ev.IKESA != t.from:
		case ev.Kind == "ike-failed":
			return false, failed(t.from, "the rekey of IKE SA %d failed: %s", t.from, ev.Detail)
		case ev.Kind == "ike-down":
			return false, failed(t.from, "IKE SA %d went down before it was rekeyed: %s", t.from, ev.Detail)
		}
		return false, nil
	}
	if t.sa.rekeyed(ev) {
		return false, nil
	}
	switch {
	case ev.Kind == "child-rekeyed" && ev.FromChild == t.child:
		t.newSA, t.newSPI = ev.IKESA, ev.Child
		return true, nil
	case ev.Kind == "child-failed" && ev.Child == t.child:
		return false, failed(t.sa.id, "the rekey of Child SA %s failed: %s", t.child, ev.Detail)
	case ev.Kind == "child-down" && ev.Child == t.child:
		if spi := t.ups[ev.ChildName]; spi != "" && ev.ChildName != "" {
			t.newSA, t.newSPI = t.sa.id, spi
			return true, nil
		}
		return false, failed(t.sa.id, "Child SA %s was deleted before it was rekeyed: %s", t.child, ev.Detail)
	case ev.Kind == "child-up" && ev.IKESA == t.sa.id:
		if t.ups == nil {
			t.ups = map[string]string{}
		}
		t.ups[ev.ChildName] = ev.Child
	case ev.Kind == "ike-down" && ev.IKESA == t.sa.id:
		return false, failed(t.sa.id, "IKE SA %d went down before its Child SA %s was rekeyed: %s", t.sa.id, t.child, ev.Detail)
	}
	return false, nil
}

func (t *rekeyTracker) poll(sas []control.SA) (bool, error) {
	if _, ok := findSA(sas, t.sa.id); !ok {
		return false, goneFailure(t.sa.id, "and whether the rekey came first is not known")
	}
	return false, nil
}

func (t *rekeyTracker) waiting() string {
	if t.child == "" {
		return fmt.Sprintf("IKE SA %d to be rekeyed", t.from)
	}
	return fmt.Sprintf("Child SA %s of IKE SA %d to be rekeyed", t.child, t.sa.id)
}

func (t *rekeyTracker) result(sas []control.SA) (outcome, string, error) {
	if t.child == "" {
		return outcome{IKESA: t.newSA, From: t.from, State: stateOf(sas, t.newSA)},
			fmt.Sprintf("IKE SA %d rekeyed: now IKE SA %d", t.from, t.newSA), nil
	}
	return outcome{IKESA: t.newSA, Child: t.newSPI, FromChild: t.child, State: stateOf(sas, t.newSA)},
		fmt.Sprintf("Child SA %s of IKE SA %d rekeyed: now %s", t.child, t.newSA, t.newSPI), nil
}

// cloneTracker waits for the clone (RFC 7791 §5.2) or its refusal.
type cloneTracker struct {
	sa    follow
	clone uint64
}

func (t *cloneTracker) ikeSA() uint64 { return t.sa.id }

func (t *cloneTracker) event(ev control.Event) (bool, error) {
	if t.sa.rekeyed(ev) {
		return false, nil
	}
	switch {
	case ev.Kind == "ike-cloned" && ev.From == t.sa.id:
		t.clone = ev.IKESA
		return true, nil
	case ev.IKESA != t.sa.id:
	case ev.Kind == "clone-refused" && ev.Notify == "TEMPORARY_FAILURE":
		// The engine asks again later (RFC 7791 §5.3).
	case ev.Kind == "clone-refused":
		return false, failed(t.sa.id, "the clone of IKE SA %d was refused: %s", t.sa.id, ev.Detail)
	case ev.Kind == "ike-down":
		return false, failed(t.sa.id, "IKE SA %d went down before it was cloned: %s", t.sa.id, ev.Detail)
	}
	return false, nil
}

func (t *cloneTracker) poll(sas []control.SA) (bool, error) {
	if _, ok := findSA(sas, t.sa.id); !ok {
		return false, goneFailure(t.sa.id, "and whether it was cloned first is not known")
	}
	return false, nil
}

func (t *cloneTracker) waiting() string { return fmt.Sprintf("IKE SA %d to be cloned", t.sa.id) }

func (t *cloneTracker) result(sas []control.SA) (outcome, string, error) {
	return outcome{IKESA: t.clone, From: t.sa.id, State: stateOf(sas, t.clone)},
		fmt.Sprintf("IKE SA %d cloned: IKE SA %d", t.sa.id, t.clone), nil
}

// moveTracker waits for the peer to answer the move's
// UPDATE_SA_ADDRESSES from the new path (RFC 4555 §3.5).
type moveTracker struct {
	sa    follow
	local netip.Addr
	iface string
	// moves counts the SA's path changes seen: ours, and any other
	// (a path probe after no answer, §3.5) after which an answer is
	// for another path than the one asked for.
	moves int
}

func (t *moveTracker) ikeSA() uint64 { return t.sa.id }

func (t *moveTracker) event(ev control.Event) (bool, error) {
	if t.sa.rekeyed(ev) || ev.IKESA != t.sa.id {
		return false, nil
	}
	switch ev.Kind {
	case "address-update":
		if ev.Notify != "" {
			return false, failed(t.sa.id, "the peer refused the path of IKE SA %d (%s): %s", t.sa.id, ev.Notify, ev.Detail)
		}
		t.moves++
	case "path-probe":
		t.moves++
	case "address-confirmed":
		return true, nil
	case "ike-down":
		return false, failed(t.sa.id, "IKE SA %d went down before the peer confirmed the move: %s", t.sa.id, ev.Detail)
	}
	return false, nil
}

func (t *moveTracker) poll(sas []control.SA) (bool, error) {
	if _, ok := findSA(sas, t.sa.id); !ok {
		return false, goneFailure(t.sa.id, "and whether the peer confirmed the move is not known")
	}
	return false, nil
}

func (t *moveTracker) waiting() string {
	return fmt.Sprintf("the peer to confirm the move of IKE SA %d", t.sa.id)
}

// on says whether s is on the path asked for.
func (t *moveTracker) on(s control.SA) bool {
	ap, err := netip.ParseAddrPort(s.Local)
	return err == nil && ap.Addr().Unmap() == t.local.Unmap() && (t.iface == "" || s.Iface == t.iface)
}

func (t *moveTracker) result(sas []control.SA) (outcome, string, error) {
	s, _ := findSA(sas, t.sa.id)
	out := outcome{IKESA: t.sa.id, State: stateOf(sas, t.sa.id), Local: s.Local, Remote: s.Remote, Iface: s.Iface}
	path := endpoint("", s.Local, nil) + " - " + endpoint("", s.Remote, nil)
	if s.Iface != "" {
		path += " via " + s.Iface
	}
	if t.moves > 1 && !t.on(s) {
		// It switched paths again before the answer (a path probe: no
		// answer on ours), so the answer was for another path.
		return out, "", failed(t.sa.id, "IKE SA %d did not stay on the path asked for: the peer confirmed it on %s", t.sa.id, path)
	}
	return out, fmt.Sprintf("IKE SA %d moved to %s; the peer confirmed it", t.sa.id, path), nil
}
