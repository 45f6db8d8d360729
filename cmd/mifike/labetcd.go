package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mifike/mifike/internal/etcdlab"
)

// runLabEtcd runs an etcd cluster in this process for a lab (the
// cluster's end-to-end tests and demo start it inside a network
// namespace): members listening on --host, data under --dir. It prints
// the client endpoints on one line, comma-separated, once the cluster
// serves, and runs until SIGTERM or SIGINT. With --control, a test
// stops and restarts members through a Unix socket (etcdlab.Control).
// Production uses a real etcd cluster instead.
func runLabEtcd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lab-etcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "data directory (required)")
	host := fs.String("host", "127.0.0.1", "address the members listen on")
	members := fs.Int("members", 3, "number of members")
	control := fs.String("control", "", "Unix socket to stop and restart members through (stop N, start N)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *members < 1 || *members > 7 {
		fmt.Fprintln(stderr, "mifike lab-etcd: --dir is required and --members must be 1 to 7")
		return 2
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	c, err := etcdlab.Start(*dir, *members, etcdlab.Options{Host: *host})
	if err != nil {
		fmt.Fprintln(stderr, "mifike lab-etcd:", err)
		return 1
	}
	defer c.Close()
	if *control != "" {
		os.Remove(*control) // a stale one from an earlier run
		l, err := net.Listen("unix", *control)
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
