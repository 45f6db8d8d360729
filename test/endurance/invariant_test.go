package endurance

import (
	"fmt"
	"strings"
	"time"
)

// invariant is one property checked every second. A sample gives its
// value (higher is worse) and whether it holds. A violation may last up
// to grace (the state converging after a disturbance: a move, a rekey, a
// clone); one that lasts longer breaks the invariant. grace 0 means
// every sample must hold.
type invariant struct {
	name  string
	bound string // the bound in words, for the table
	grace time.Duration
	// reportOnly: a figure printed with the others, never broken.
	reportOnly bool

	samples   int
	worst     float64
	worstAt   time.Duration
	worstWhat string
	started   time.Duration // when the current violation began
	violating bool
	longest   time.Duration // longest violation
	broken    bool
	brokenAt  time.Duration
	brokenWhy string
}

// observe records one sample at offset at (from the start of the run).
func (v *invariant) observe(at time.Duration, value float64, ok bool, what string) {
	v.samples++
	if v.samples == 1 || value > v.worst {
		v.worst, v.worstAt, v.worstWhat = value, at, what
	}
	if ok || v.reportOnly {
		v.violating = false
		return
	}
	if !v.violating {
		v.violating, v.started = true, at
	}
	if d := at - v.started; d > v.longest {
		v.longest = d
	}
	if !v.broken && at-v.started >= v.grace {
		v.broken, v.brokenAt = true, at
		if v.grace > 0 {
			v.brokenWhy = fmt.Sprintf("violated since %s (longer than %v): %s", secs(v.started), v.grace, what)
		} else {
			v.brokenWhy = what
		}
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// invariants keeps them in the order they were declared.
type invariants struct {
	list []*invariant
	by   map[string]*invariant
}

func (s *invariants) add(name, bound string, grace time.Duration) {
	if s.by == nil {
		s.by = map[string]*invariant{}
	}
	v := &invariant{name: name, bound: bound, grace: grace}
	s.list = append(s.list, v)
	s.by[name] = v
}

func (s *invariants) get(name string) *invariant {
	v := s.by[name]
	if v == nil {
		panic("no invariant " + name)
	}
	return v
}

// table prints every invariant with its bound, verdict and worst value
// (the long details last, so the short columns line up).
func (s *invariants) table() string {
	var b strings.Builder
	head := []string{"invariant", "bound", "verdict", "longest off", "worst at", "worst value"}
	w := make([]int, len(head))
	rows := [][]string{head}
	for _, v := range s.list {
		worst, at, longest := "-", "-", "-"
		if v.samples > 0 {
			worst, at, longest = v.worstWhat, secs(v.worstAt), "0"
			if v.longest > 0 || v.violating {
				longest = secs(v.longest)
			}
		}
		verdict := "ok"
		switch {
		case v.reportOnly:
			verdict = "(not judged)"
		case v.samples == 0:
			verdict = "not checked"
		case v.broken:
			verdict = "BROKEN at " + secs(v.brokenAt)
		}
		rows = append(rows, []string{v.name, v.bound, verdict, longest, at, worst})
	}
	for _, r := range rows {
		for i := range w {
			w[i] = max(w[i], len(r[i]))
		}
	}
	for _, r := range rows {
		for i := range len(r) - 1 {
			fmt.Fprintf(&b, "%-*s  ", w[i], r[i])
		}
		fmt.Fprintf(&b, "%s\n", r[len(r)-1])
	}
	return b.String()
}
