package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/daemon"
	"github.com/spf13/cobra"
)

// daemonCmd is "mifike daemon -c FILE": the IKE daemon in the
// foreground, logging to stderr (systemd and containers collect it from
// there).
func daemonCmd(stdout, stderr io.Writer) *cobra.Command {
	var path string
	var check bool
	cmd := &cobra.Command{
		Use:   "daemon [-c FILE] [--check]",
		Short: "run the IKE daemon in the foreground (default config /etc/mifike/mifike.yaml)",
		Long: `Run the IKE daemon in the foreground, logging to stderr (systemd and containers collect it
from there). It serves the control verbs on the socket the configuration names.

With --check it only checks the configuration, key and certificate files included: errors
fail (exit 1); warnings are printed, each as file:line: field: message, and do not.

MIFIKE_CPUPROFILE=FILE profiles the CPU until the daemon stops; MIFIKE_MEMPROFILE=FILE
writes the heap in use on SIGUSR1 (for go tool pprof).`,
		Example: "  mifike daemon -c /etc/mifike/mifike.yaml\n  mifike daemon --check -c /etc/mifike/mifike.yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return argsError(cmd)
			}
			if check {
				return exit(checkConfig(path, stdout, stderr))
			}
			return exit(runDaemon(path, stderr))
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "/etc/mifike/mifike.yaml", "configuration `FILE`")
	cmd.Flags().BoolVar(&check, "check", false, "check the configuration (including key and certificate files) and exit")
	cmd.MarkFlagFilename("config", "yaml", "yml")
	return cmd
}

func runDaemon(path string, stderr io.Writer) int {
	daemon.Version = version // for mifike_build_info
	d, err := daemon.New(path, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mifike: %v\n", err)
		return 1
	}
	stopProfiles, err := startProfiles()
	if err != nil {
		fmt.Fprintf(stderr, "mifike: %v\n", err)
		return 1
	}
	defer stopProfiles()
	if err := d.Run(context.Background()); err != nil {
		fmt.Fprintf(stderr, "mifike: %v\n", err)
		return 1
	}
	return 0
}

// checkConfig is "mifike daemon --check": errors fail (exit 1);
// warnings are printed, each as "file:line: field: message", but a
// configuration with only warnings is OK (exit 0) since the daemon runs
// it. The summary counts them, so a script or a glance at stdout alone
// still learns of them.
func checkConfig(path string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "mifike: %v\n", err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "mifike: warning: %s\n", w)
	}
	if _, _, err := cfg.Build(nil); err != nil {
		fmt.Fprintf(stderr, "mifike: %v\n", err)
		return 1
	}
	switch n := len(cfg.Warnings); n {
	case 0:
		fmt.Fprintf(stdout, "%s: configuration OK (%d connections)\n", path, len(cfg.Connections))
	case 1:
		fmt.Fprintf(stdout, "%s: configuration OK (%d connections), 1 warning\n", path, len(cfg.Connections))
	default:
		fmt.Fprintf(stdout, "%s: configuration OK (%d connections), %d warnings\n", path, len(cfg.Connections), n)
	}
	return 0
}

// startProfiles writes Go profiles for "go tool pprof" when asked by
// environment variables (off by default; the benchmarks use them):
// MIFIKE_CPUPROFILE=FILE profiles the CPU from now until the daemon
// stops; MIFIKE_MEMPROFILE=FILE writes the heap in use on SIGUSR1 (at
// exit the SAs are gone).
func startProfiles() (stop func(), err error) {
	cpu, mem := os.Getenv("MIFIKE_CPUPROFILE"), os.Getenv("MIFIKE_MEMPROFILE")
	var f *os.File
	if cpu != "" {
		if f, err = os.Create(cpu); err != nil {
			return nil, fmt.Errorf("MIFIKE_CPUPROFILE: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("MIFIKE_CPUPROFILE: %w", err)
		}
	}
	usr := make(chan os.Signal, 1)
	if mem != "" {
		// Sample small allocations too: an SA is a few kilobytes.
		runtime.MemProfileRate = 4096
		signal.Notify(usr, syscall.SIGUSR1)
		go func() {
			for range usr {
				runtime.GC() // the heap in use, not what awaits collection
				m, err := os.Create(mem)
				if err == nil {
					err = errors.Join(pprof.WriteHeapProfile(m), m.Close())
				}
				if err != nil {
					fmt.Fprintf(os.Stderr, "mifike: MIFIKE_MEMPROFILE: %v\n", err)
				}
			}
		}()
	}
	return func() {
		signal.Stop(usr)
		if f != nil {
			pprof.StopCPUProfile()
			f.Close()
		}
	}, nil
}
