package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mifike/mifike/internal/swanctl"
	"github.com/spf13/cobra"
)

func importSwanctlCmd(stdout, stderr io.Writer) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "import-swanctl FILE [-o OUT]",
		Short: "convert a strongSwan swanctl.conf into mifike's YAML",
		Long: `Convert a strongSwan swanctl.conf (with its includes) into mifike's YAML configuration:
connections with their local and remote authentication, children, pools, and the pre-shared
keys and EAP passwords of the secrets section. Certificates, CA certificates and keys named
relative to the file are looked up where strongSwan would (x509/, x509ca/, private/ beside
it) and written as absolute paths; the private key of local.certs is found by matching it.

Each setting that has no equivalent in mifike, or converts with a difference, is reported on
stderr as FILE:LINE: KEY: why. Check the result with mifike daemon --check -c OUT.`,
		Example: "  mifike import-swanctl /etc/swanctl/swanctl.conf -o /etc/mifike/mifike.yaml\n  mifike import-swanctl swanctl.conf > mifike.yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return argsError(cmd)
			}
			return exit(importSwanctl(args[0], out, stdout, stderr))
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the YAML to `OUT` (default: stdout)")
	return cmd
}

func importSwanctl(path, out string, stdout, stderr io.Writer) int {
	root, err := swanctl.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "mifike import-swanctl: %v\n", err)
		return 1
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		fmt.Fprintf(stderr, "mifike import-swanctl: %v\n", err)
		return 1
	}
	data, warns := swanctl.Convert(root, abs)
	for _, w := range warns {
		fmt.Fprintf(stderr, "mifike import-swanctl: %s\n", w)
	}
	if out == "" {
		_, err = stdout.Write(data)
	} else {
		// 0600: the YAML holds the pre-shared keys and EAP passwords.
		err = os.WriteFile(out, data, 0o600)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mifike import-swanctl: %v\n", err)
		return 1
	}
	return 0
}
