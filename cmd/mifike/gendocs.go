package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// The reference documentation is generated from the command tree, so it
// says what --help says: man pages for packages (section 8, system
// administration, as for strongSwan's charon and ipsec), Markdown for
// docs/cli. Both commands are hidden: they are build steps, not tools for
// an operator.

func genManCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "write the man pages, one per command, into DIR (section 8)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return argsError(cmd)
			}
			root := prepareDocs(cmd.Root())
			date, err := docDate()
			if err != nil {
				fmt.Fprintf(stderr, "mifike gen-man: %v\n", err)
				return exitCode(exitRefused)
			}
			header := &doc.GenManHeader{Section: "8", Date: &date, Source: "mifike " + version, Manual: "mifike manual"}
			if err := writeDocs(args[0], func(dir string) error { return doc.GenManTree(root, header, dir) }); err != nil {
				fmt.Fprintf(stderr, "mifike gen-man: %v\n", err)
				return exitCode(exitRefused)
			}
			fmt.Fprintf(stdout, "man pages written to %s\n", args[0])
			return nil
		},
	}
}

func genMarkdownCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-markdown DIR",
		Short:  "write the command reference in Markdown, one file per command, into DIR (docs/cli)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return argsError(cmd)
			}
			root := prepareDocs(cmd.Root())
			if err := writeDocs(args[0], func(dir string) error { return doc.GenMarkdownTree(root, dir) }); err != nil {
				fmt.Fprintf(stderr, "mifike gen-markdown: %v\n", err)
				return exitCode(exitRefused)
			}
			fmt.Fprintf(stdout, "Markdown written to %s\n", args[0])
			return nil
		},
	}
}

// prepareDocs drops cobra's "Auto generated on DATE" lines, so that the
// pages of one source are the same whenever they are built (reproducible
// packages, and docs/cli that only changes with the commands).
func prepareDocs(root *cobra.Command) *cobra.Command {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.DisableAutoGenTag = true
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return root
}

// docDate is the date in the man pages' footer: SOURCE_DATE_EPOCH when set
// (reproducible builds), else the commit's time, else today.
func docDate() (time.Time, error) {
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		n, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %v", epoch, err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, readVersion().Time); err == nil {
		return t.UTC(), nil
	}
	return time.Now().UTC(), nil
}

func writeDocs(dir string, gen func(dir string) error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return gen(dir)
}
