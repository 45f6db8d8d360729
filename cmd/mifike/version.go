package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what `mifike version` reports: the release set at link
// time, else what the Go toolchain recorded of the source (its commit,
// whether the tree had uncommitted changes), so that a binary built from
// a checkout still says which one.
type versionInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

func readVersion() versionInfo {
	v := versionInfo{Version: version, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

func (v versionInfo) String() string {
	s := "mifike " + v.Version
	if v.Revision != "" {
		rev := v.Revision[:min(12, len(v.Revision))]
		if v.Modified {
			rev += "-dirty"
		}
		s += fmt.Sprintf(" (%s %s)", rev, v.Time)
	}
	return s + ", " + v.Go
}

func versionCmd(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "print the version (also --version)",
		Long: `Print the version: the release set at link time, else what the Go toolchain recorded of the
source (its commit, whether the tree had uncommitted changes), and the Go version.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return argsError(cmd)
			}
			return exit(printVersion(asJSON, stdout))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}

func printVersion(asJSON bool, stdout io.Writer) int {
	if asJSON {
		b, _ := json.Marshal(readVersion())
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintln(stdout, readVersion())
	}
	return exitOK
}
