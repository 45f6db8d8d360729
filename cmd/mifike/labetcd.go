package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mifike/mifike/internal/etcdlab"
	"github.com/spf13/cobra"
)

// labEtcdCmd runs an etcd cluster in this process for a lab (the
// cluster's end-to-end tests and demo start it inside a network
// namespace): members listening on --host, data under --dir. It prints
// the client endpoints on one line, comma-separated, once the cluster
// serves, and runs until SIGTERM or SIGINT. With --control, a test
// stops and restarts members through a Unix socket (etcdlab.Control).
// Production uses a real etcd cluster instead.
func labEtcdCmd(stdout, stderr io.Writer) *cobra.Command {
	var dir, host, control string
	var members int
	cmd := &cobra.Command{
		Use:   "lab-etcd --dir DIR [--host ADDR] [--members N] [--control SOCK]",
		Short: "run an etcd cluster in this process for a lab or test (not for production)",
		Long: `Run an etcd cluster in this process for a lab or test: members listening on --host, data
under --dir. It prints the client endpoints on one line, comma-separated, once the cluster
serves, and runs until SIGTERM or SIGINT. With --control, a test stops and restarts members
through a Unix socket ("stop N", "start N"). Production uses a real etcd cluster instead.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return argsError(cmd)
			}
			if dir == "" || members < 1 || members > 7 {
				return &usageError{cmd: cmd, msg: "lab-etcd: --dir is required and --members must be 1 to 7"}
			}
			return exit(runLabEtcd(dir, host, members, control, stdout, stderr))
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "data `DIR` (required)")
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "`ADDR` the members listen on")
	cmd.Flags().IntVar(&members, "members", 3, "number of members, 1 to 7")
	cmd.Flags().StringVar(&control, "control", "", "Unix socket `SOCK` to stop and restart members through (stop N, start N)")
	return cmd
}

func runLabEtcd(dir, host string, members int, control string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	c, err := etcdlab.Start(dir, members, etcdlab.Options{Host: host})
	if err != nil {
		fmt.Fprintln(stderr, "mifike lab-etcd:", err)
		return 1
	}
	defer c.Close()
	if control != "" {
		os.Remove(control) // a stale one from an earlier run
		l, err := net.Listen("unix", control)
		if err != nil {
			fmt.Fprintln(stderr, "mifike lab-etcd:", err)
			return 1
		}
		defer l.Close()
		go c.Serve(l)
	}
	fmt.Fprintln(stdout, strings.Join(c.Endpoints(), ","))
	<-sigs
	return 0
}
