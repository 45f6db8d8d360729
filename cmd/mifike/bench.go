package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/bench"
)

// runBench dispatches "mifike bench WHAT".
func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "esp" {
		fmt.Fprintln(stderr, "usage: mifike bench esp [--time 10s] [--json]")
		fmt.Fprintln(stderr, "  esp: ESP throughput of one tunnel between two network namespaces (iperf3),")
		fmt.Fprintln(stderr, "       mifike against strongSwan kernel-libipsec in the same run; needs root,")
		fmt.Fprintln(stderr, "       iperf3 and strongSwan (scripts/install-deps.sh installs them)")
		return 2
	}
	return runBenchESP(args[1:], stdout, stderr)
}

func runBenchESP(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench esp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := fs.Duration("time", 10*time.Second, "how long each iperf3 run lasts (whole seconds)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || *d <= 0 {
		fmt.Fprintln(stderr, "usage: mifike bench esp [--time 10s] [--json]")
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "mifike bench: cannot find the mifike binary to run as the daemons: %v\n", err)
		return 1
	}
	// Ctrl-C or SIGTERM cancels the run; the lab then kills the daemons
	// and deletes the namespaces before we exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := bench.ESP(ctx, bench.ESPConfig{Exe: exe, Duration: *d, Progress: prefixWriter{stderr}})
	if err != nil {
		fmt.Fprintf(stderr, "mifike %v\n", err)
		return 1
	}
	if *asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	r.WriteTable(stdout)
	return 0
}

// prefixWriter marks progress lines as the benchmark's.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "mifike bench: %s", b); err != nil {
		return 0, err
	}
	return len(b), nil
}
