package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/daemon"
)

// runDaemon is "mifike daemon -c FILE": the IKE daemon in the foreground,
// logging to stderr (systemd and containers collect it from there).
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/mifike/mifike.yaml", "configuration file")
	check := fs.Bool("check", false, "check the configuration (including key and certificate files) and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: mifike daemon [-c FILE] [--check]")
		return 2
	}
	if *check {
		cfg, err := config.Load(*path)
		if err == nil {
			_, _, err = cfg.Build(nil)
		}
		if err != nil {
			fmt.Fprintf(stderr, "mifike: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: configuration OK (%d connections)\n", *path, len(cfg.Connections))
		return 0
	}
	d, err := daemon.New(*path, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mifike: %v\n", err)
		return 1
	}
	if err := d.Run(context.Background()); err != nil {
		fmt.Fprintf(stderr, "mifike: %v\n", err)
		return 1
	}
	return 0
}
