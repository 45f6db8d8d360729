//go:build linux

package bench

import (
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strings"
	"unicode/utf8"
)

// table prints rows in aligned columns: text to the left, figures to
// the right.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.head))
	numeric := make([]bool, len(t.head))
	for i := range numeric {
		numeric[i] = true
	}
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	for _, r := range t.rows {
		for i, c := range r {
			if i < len(numeric) && !isFigure(c) {
				numeric[i] = false
			}
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			if i >= len(width) {
				break
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if numeric[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.head)
	for _, r := range t.rows {
		line(r)
	}
}

// isFigure: a number, perhaps with a unit suffix ("2.5x", "12%"), or a
// dash for none.
func isFigure(s string) bool {
	return s == "" || s == "-" || figureRE.MatchString(s)
}

var figureRE = regexp.MustCompile(`^[-+<>~]?[0-9][0-9.,]*[a-zA-Z%]*$`)

func writeRatios(w io.Writer, rs []Ratio) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w)
	t := table{head: []string{"ratio", "value"}}
	for _, r := range rs {
		t.add(r.Name, fmt.Sprintf("%.2fx", r.Value))
	}
	t.write(w)
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

// cpus is the number of CPUs this process may use; the daemons, the
// load and the kernel's side of both share them.
func cpus() int { return runtime.NumCPU() }
