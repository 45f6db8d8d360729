// Command genref writes the configuration reference,
// docs/config-reference.md, from the table next to the parser's schemas
// (internal/config/reference.go). Run it with "go generate
// ./internal/config"; a test of internal/config fails when the file is
// out of date.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mifike/mifike/internal/config"
)

func main() {
	out := flag.String("o", "", "the file to write (default: standard output)")
	flag.Parse()
	md := config.ReferenceMarkdown()
	if *out == "" {
		os.Stdout.Write(md)
		return
	}
	if err := os.WriteFile(*out, md, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "genref:", err)
		os.Exit(1)
	}
}
