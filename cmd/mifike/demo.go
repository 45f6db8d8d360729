package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/radiuslab"
	"github.com/spf13/cobra"
)

// demoCmd builds the multiple-interfaces lab in network namespaces and
// narrates a run on it (see internal/demo).
func demoCmd(stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	var keep, auth string
	cmd := &cobra.Command{
		Use:   "demo [cluster] [--json] [--dir DIR] [--auth METHOD]",
		Short: "build the multiple-interfaces lab and narrate a run on it (root)",
		Long: `Build the multiple-interfaces lab in network namespaces and narrate a run on it: an end user
with three interfaces gets a VPN on each, authenticating once by EAP through FreeRADIUS
(RFC 7791 clone + RFC 4555 MOBIKE), then loses, regains and adds interfaces.

demo cluster: three gateway nodes on etcd, a crash and the takeover.

It needs root (network namespaces and TUN devices); Ctrl-C tears the lab down.`,
		Example: "  sudo mifike demo\n  sudo mifike demo --auth psk --json\n  sudo mifike demo cluster --dir /tmp/lab",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return argsError(cmd)
			}
			return exit(runDemo(asJSON, keep, auth, stdout, stderr))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per step instead of the narration")
	cmd.Flags().StringVar(&keep, "dir", "", "keep configurations and logs in this `DIR` (default: a temporary one, removed on success)")
	cmd.Flags().StringVar(&auth, "auth", "eap-mschapv2", "how the end user authenticates: eap-mschapv2, eap-md5 or eap-tls through FreeRADIUS\n(the gateway then proves itself with a certificate), or psk (a pre-shared key on both sides, no FreeRADIUS)")
	cmd.RegisterFlagCompletionFunc("auth", cobra.FixedCompletions(append(slices.Clone(demo.EAPMethods), "psk"), cobra.ShellCompDirectiveNoFileComp))
	cmd.AddCommand(clusterDemoCmd(stdout, stderr))
	return cmd
}

func runDemo(asJSON bool, keep, auth string, stdout, stderr io.Writer) int {
	eap := auth
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
	if keep != "" {
		if err := os.MkdirAll(keep, 0o700); err != nil {
			fmt.Fprintf(stderr, "mifike demo: %v\n", err)
			return 1
		}
	}
	// Ctrl-C tears the lab down: the daemons are killed and the
	// namespaces deleted before we exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !asJSON {
		fmt.Fprintln(stdout, "mifike demo: an end user with three interfaces gets a VPN on each, authenticating once")
		fmt.Fprintln(stdout, "(RFC 7791 clone + RFC 4555 MOBIKE), then loses, regains and adds interfaces.")
		if eap != "" {
			fmt.Fprintf(stdout, "The end user authenticates by %s through a real FreeRADIUS, which also gets the accounting.\n", eap)
		}
		fmt.Fprintln(stdout)
	}
	r := &demo.Runner{Out: stdout, JSON: asJSON, Bin: exe, Dir: keep, EAP: eap}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "mifike demo: %v\n", err)
		return 1
	}
	return 0
}

// clusterDemoCmd is "mifike demo cluster": three gateway nodes sharing a
// real etcd, one authentication, three VPNs on three nodes, a node crash
// and the takeover (docs/cluster.md).
func clusterDemoCmd(stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	var keep string
	cmd := &cobra.Command{
		Use:   "cluster [--json] [--dir DIR]",
		Short: "three gateway nodes on etcd, a crash and the takeover (root)",
		Long: `Three gateway nodes share their state in a real etcd; an end user authenticates once and gets
VPNs on all three (RFC 7791 clones handed between nodes); then node 1 crashes and the others
take its SAs over (docs/cluster.md). It needs root.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return argsError(cmd)
			}
			return exit(runClusterDemo(asJSON, keep, stdout, stderr))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per step instead of the narration")
	cmd.Flags().StringVar(&keep, "dir", "", "keep configurations and logs in this `DIR` (default: a temporary one, removed on success)")
	return cmd
}

func runClusterDemo(asJSON bool, keep string, stdout, stderr io.Writer) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "mifike demo cluster: it builds network namespaces and TUN devices, which needs root; run it with sudo")
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "mifike demo cluster: cannot find the mifike binary to run as the daemons: %v\n", err)
		return 1
	}
	if keep != "" {
		if err := os.MkdirAll(keep, 0o700); err != nil {
			fmt.Fprintf(stderr, "mifike demo cluster: %v\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !asJSON {
		fmt.Fprintln(stdout, "mifike demo cluster: three gateway nodes share their state in etcd; an end user authenticates")
		fmt.Fprintln(stdout, "once and gets VPNs on all three (RFC 7791 clones handed between nodes); then node 1 crashes.")
		fmt.Fprintln(stdout)
	}
	r := &demo.ClusterRunner{Out: stdout, JSON: asJSON, Bin: exe, Dir: keep}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "mifike demo cluster: %v\n", err)
		return 1
	}
	return 0
}
