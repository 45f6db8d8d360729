package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mifike/mifike/internal/demo"
)

// runDemo builds the multiple-interfaces lab in network namespaces and
// narrates a run on it (see internal/demo).
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "one JSON object per step instead of the narration")
	keep := fs.String("dir", "", "keep configurations and logs in this `directory` (default: a temporary one, removed on success)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: mifike demo [--json] [--dir DIR]")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "mifike demo: it builds network namespaces and TUN devices, which needs root; run it with sudo")
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "mifike demo: cannot find the mifike binary to run as the daemons: %v\n", err)
		return 1
	}
	if *keep != "" {
		if err := os.MkdirAll(*keep, 0o700); err != nil {
			fmt.Fprintf(stderr, "mifike demo: %v\n", err)
			return 1
		}
	}
	// Ctrl-C tears the lab down: the daemons are killed and the
	// namespaces deleted before we exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !*asJSON {
		fmt.Fprintln(stdout, "mifike demo: an end user with three interfaces gets a VPN on each, authenticating once")
		fmt.Fprintln(stdout, "(RFC 7791 clone + RFC 4555 MOBIKE), then loses, regains and adds interfaces.")
		fmt.Fprintln(stdout)
	}
	r := &demo.Runner{Out: stdout, JSON: *asJSON, Bin: exe, Dir: *keep}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "mifike demo: %v\n", err)
		return 1
	}
	return 0
}
