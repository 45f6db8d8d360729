package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/radiuslab"
)

// runDemo builds the multiple-interfaces lab in network namespaces and
// narrates a run on it (see internal/demo).
func runDemo(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "cluster" {
		return runClusterDemo(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "one JSON object per step instead of the narration")
	keep := fs.String("dir", "", "keep configurations and logs in this `directory` (default: a temporary one, removed on success)")
	auth := fs.String("auth", "eap-mschapv2", "how the end user authenticates: eap-mschapv2, eap-md5 or eap-tls through FreeRADIUS\n(the gateway then proves itself with a certificate), or psk (a pre-shared key on both sides, no FreeRADIUS)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: mifike demo [--json] [--dir DIR] [--auth eap-mschapv2|eap-md5|eap-tls|psk]")
		return 2
	}
	eap := *auth
	switch {
	case eap == "psk":
		eap = ""
	case !slices.Contains(demo.EAPMethods, eap):
		fmt.Fprintf(stderr, "mifike demo: --auth %q: use eap-mschapv2, eap-md5, eap-tls or psk\n", eap)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "mifike demo: it builds network namespaces and TUN devices, which needs root; run it with sudo")
		return 1
	}
	if eap != "" {
		if err := radiuslab.Available(); err != nil {
			fmt.Fprintf(stderr, "mifike demo: %v\n(or run the demo without RADIUS: mifike demo --auth psk)\n", err)
			return 1
		}
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
		if eap != "" {
			fmt.Fprintf(stdout, "The end user authenticates by %s through a real FreeRADIUS, which also gets the accounting.\n", eap)
		}
		fmt.Fprintln(stdout)
	}
	r := &demo.Runner{Out: stdout, JSON: *asJSON, Bin: exe, Dir: *keep, EAP: eap}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "mifike demo: %v\n", err)
		return 1
	}
	return 0
}

// runClusterDemo is "mifike demo cluster": three gateway nodes sharing a
// real etcd, one authentication, three VPNs on three nodes, a node crash
// and the takeover (docs/cluster.md).
func runClusterDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "one JSON object per step instead of the narration")
	keep := fs.String("dir", "", "keep configurations and logs in this `directory` (default: a temporary one, removed on success)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: mifike demo cluster [--json] [--dir DIR]")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "mifike demo cluster: it builds network namespaces and TUN devices, which needs root; run it with sudo")
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "mifike demo cluster: cannot find the mifike binary to run as the daemons: %v\n", err)
		return 1
	}
	if *keep != "" {
		if err := os.MkdirAll(*keep, 0o700); err != nil {
			fmt.Fprintf(stderr, "mifike demo cluster: %v\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !*asJSON {
		fmt.Fprintln(stdout, "mifike demo cluster: three gateway nodes share their state in etcd; an end user authenticates")
		fmt.Fprintln(stdout, "once and gets VPNs on all three (RFC 7791 clones handed between nodes); then node 1 crashes.")
		fmt.Fprintln(stdout)
	}
	r := &demo.ClusterRunner{Out: stdout, JSON: *asJSON, Bin: exe, Dir: *keep}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "mifike demo cluster: %v\n", err)
		return 1
	}
	return 0
}
