// Command mifike is the multi-interface IKEv2 daemon and its tools. Each
// job is a subcommand; run "mifike help" for the list.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

type command struct {
	name, usage, summary string
	run                  func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"daemon", "daemon [-c FILE] [--check]", "run the IKE daemon in the foreground (default config /etc/mifike/mifike.yaml)", runDaemon},
		{"decode", "decode [--json] HEX|FILE...", "decode IKEv2 messages (hex, or raw files) and print their payloads", runDecode},
		{"list-sas", "list-sas [--json]", "list IKE SAs and Child SAs of the running daemon", runListSAs},
		{"list-conns", "list-conns [--json]", "list the configured connections", runListConns},
		{"initiate", "initiate CONN [--child NAME [--ike ID]]", "start an IKE SA of connection CONN", runInitiate},
		{"terminate", "terminate ID|CONN [--child SPI]", "delete an IKE SA, one Child SA, or a connection's SAs", runTerminate},
		{"rekey", "rekey ID [--child SPI]", "rekey an IKE SA or one of its Child SAs", runRekey},
		{"clone", "clone ID", "clone an IKE SA without authenticating again (RFC 7791)", runClone},
		{"move", "move ID --local ADDR[%IFACE] [--remote ADDR]", "move an IKE SA and its Child SAs to another path (RFC 4555)", runMove},
		{"reload", "reload", "reread the configuration", runReload},
		{"loglevel", "loglevel debug|info|warn|error", "change the daemon's log level until the next reload or restart", runLogLevel},
		{"cluster", "cluster status [--json] | move ID NODE", "a gateway cluster node: membership, and hand an IKE SA to another node", runCluster},
		{"events", "events [--json]", "follow the daemon's events until Ctrl-C", runEvents},
		{"demo", "demo [cluster] [--json] [--dir DIR] [--auth METHOD]", "build the multiple-interfaces lab and narrate a run on it, the end user authenticating by EAP through FreeRADIUS; demo cluster: three gateway nodes on etcd, a crash and the takeover (root)", runDemo},
		{"lab-etcd", "lab-etcd --dir DIR [--host ADDR] [--members N] [--control SOCK]", "run an etcd cluster in this process for a lab or test (not for production)", runLabEtcd},
		{"bench", "bench SUITE|all [--json] [--out FILE]", "benchmarks against strongSwan: handshake, new-interface, failover, throughput, scale (root)", runBench},
		{"version", "version [--json]", "print the version (also --version)", runVersion},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		// No command is a usage error: a script that forgot its verb
		// must not read success.
		usage(stderr)
		return 2
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		usage(stdout)
		return 0
	case args[0] == "--version" || args[0] == "-V":
		return runVersion(args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "mifike: unknown command %q; run \"mifike help\" for the list\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "mifike: a multi-interface IKEv2 daemon (RFC 7296, RFC 4555 MOBIKE, RFC 7791 clone)")
	fmt.Fprintln(w, "\nusage:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  mifike %-34s %s\n", c.usage, c.summary)
	}
	fmt.Fprintln(w, "\nControl verbs talk to the daemon over its socket (-s PATH, or MIFIKE_SOCKET).")
	fmt.Fprintln(w, "initiate, terminate, rekey, clone and move wait for the outcome (--timeout, default 30s; --no-wait).")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 the daemon refused or it failed, 2 usage error, 3 daemon unreachable,")
	fmt.Fprintln(w, "4 no outcome within --timeout.")
}
