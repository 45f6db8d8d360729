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
		{"decode", "decode [--json] HEX|FILE...", "decode IKEv2 messages (hex, or raw files) and print their payloads", runDecode},
		{"version", "version", "print the version", func([]string, io.Writer, io.Writer) int {
			fmt.Println("mifike", version)
			return 0
		}},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
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
		fmt.Fprintf(w, "  mifike %-30s %s\n", c.usage, c.summary)
	}
}
