package config

import (
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	File  string
	Line  int
	Field string // dotted path such as connections.home.local.id
	Msg   string
}

func (e *Error) Error() string { return located(e.File, e.Line, e.Field, e.Msg) }

func located(file string, line int, field, msg string) string {
	if field == "" {
		return fmt.Sprintf("%s:%d: %s", file, line, msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", file, line, field, msg)
}

// Warning is something in a configuration file that works but is unwise
// (a secret every local user can read, a guessable pre-shared key) or
// that will fail later on this machine (an unknown control group). It
// does not fail the load: "mifike daemon --check" prints it and the
// daemon logs it at start and on every reload.
type Warning struct {
	File  string
	Line  int
	Field string
	Msg   string
}

// String is "file:line: field: message", as an Error prints.
func (w Warning) String() string { return located(w.File, w.Line, w.Field, w.Msg) }

// Errors is every problem found, sorted by line, one per line of text.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find the individual *Error values.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sorted orders by line (stable, so one line keeps its reading order) and
// drops repeats, which a YAML anchor merged in twice would produce.
func (es Errors) sorted() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int { return a.Line - b.Line })
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}
