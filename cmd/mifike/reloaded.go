package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/mifike/mifike/internal/control"
)

// printReloaded shows what a reload changed: the connections added,
// removed and changed, then one row per SA the reload closed, replaced,
// created or kept, with why.
func printReloaded(w io.Writer, r control.Reloaded) error {
	if len(r.Added)+len(r.Removed)+len(r.Changed)+len(r.SAs) == 0 {
		_, err := fmt.Fprintln(w, "configuration reloaded: no connection changed")
		return err
	}
	fmt.Fprintln(w, "configuration reloaded")
	if len(r.Added) > 0 {
		fmt.Fprintf(w, "added: %s\n", strings.Join(r.Added, ", "))
	}
	if len(r.Removed) > 0 {
		fmt.Fprintf(w, "removed: %s\n", strings.Join(r.Removed, ", "))
	}
	for _, c := range r.Changed {
		fmt.Fprintf(w, "changed: %s (%s)\n", c.Name, strings.Join(c.What, ", "))
	}
	if len(r.SAs) == 0 {
		return nil
	}
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "IKE SA\tconn\tchild\tin SPI\tout SPI\taction\treason")
	for _, s := range r.SAs {
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.IKESA, s.Conn, dash(s.Child), dash(s.InSPI), dash(s.OutSPI), s.Action, s.Reason)
	}
	return t.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
