// Command mifike is the multi-interface IKEv2 daemon and its tools. Each
// job is a subcommand; run "mifike help" for the list.
//
// The command tree is spf13/cobra's, the convention of Go operator tools
// (etcdctl, kubectl): uniform --help, flags before or after the verb,
// shell completion and man pages generated from the same definitions.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// exitCode is what a command's RunE returns once it has said what there
// was to say: run turns it into the process's exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exit is a command's exit status as RunE's error: nil for success.
func exit(code int) error {
	if code == exitOK {
		return nil
	}
	return exitCode(code)
}

// usageError is a command line that cobra or a command could not take:
// exit 2, with one line and a hint to --help.
type usageError struct {
	cmd *cobra.Command
	msg string
}

func (e *usageError) Error() string { return e.msg }

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	if args == nil {
		args = []string{} // cobra reads os.Args for a nil slice
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	var code exitCode
	var uerr *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &uerr):
		cmd = uerr.cmd
	}
	// Anything else is cobra's own: an unknown flag or command.
	reportUsage(cmd, err.Error(), stdout, stderr)
	return exitUsage
}

// reportUsage prints a usage error as one line with the way to help:
// with --json as an object on stdout, where a script reads the rest
// (issue 19), else on stderr.
func reportUsage(cmd *cobra.Command, msg string, stdout, stderr io.Writer) {
	msg = strings.TrimSpace(msg)
	help := strings.TrimSpace(cmd.CommandPath() + " --help")
	if takesJSON(cmd) && cmd.Flags().Lookup("json").Value.String() == "true" {
		b, _ := json.Marshal(&failure{Msg: msg + "; see " + help, Code: codeUsage})
		fmt.Fprintf(stdout, "%s\n", b)
		return
	}
	fmt.Fprintf(stderr, "mifike: %s (see \"%s\")\n", msg, help)
}

// takesJSON tells whether --json is cmd's own flag, rather than the
// root's that checkGlobals refuses.
func takesJSON(cmd *cobra.Command) bool {
	f := cmd.Flags().Lookup("json")
	return f != nil && (cmd == cmd.Root() || f != cmd.Root().PersistentFlags().Lookup("json"))
}

// Command groups of "mifike help".
const (
	groupDaemon  = "daemon"
	groupControl = "control"
	groupLab     = "lab"
)

// newRoot builds the command tree, afresh for each run: flag values live
// in it.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var showVersion, globalJSON bool
	root := &cobra.Command{
		Use:   "mifike",
		Short: "a multi-interface IKEv2 daemon (RFC 7296, RFC 4555 MOBIKE, RFC 7791 clone)",
		Long: `mifike: a multi-interface IKEv2 daemon (RFC 7296, RFC 4555 MOBIKE, RFC 7791 clone).

Control verbs talk to the daemon over its socket (-s PATH, or MIFIKE_SOCKET); their
flags -s, --json, --timeout and --no-wait may come before or after the verb.
initiate, terminate, rekey, clone and move wait for the outcome (--timeout, default 30s; --no-wait).

Exit codes: 0 success, 1 the daemon refused or it failed, 2 usage error, 3 daemon unreachable,
4 no outcome within --timeout.`,
		Example: `  mifike daemon -c /etc/mifike/mifike.yaml
  mifike list-sas
  mifike -s /run/mifike/gw.sock initiate home --json`,
		// A command line that names no command is a usage error (issue
		// 19), so is an unknown one; cobra's own check would let "mifike
		// nope" through with a multi-line message.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0], "command")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				return exit(printVersion(globalJSON, stdout))
			}
			// No command: a script that forgot its verb must not read
			// success.
			fmt.Fprint(stderr, cmd.UsageString())
			return exitCode(exitUsage)
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error { return checkGlobals(cmd) },
		SilenceErrors:     true, // run prints them, one line each
		SilenceUsage:      true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{cmd: cmd, msg: err.Error()}
	})
	root.SetUsageTemplate(usageTemplate)
	root.Flags().BoolVarP(&showVersion, "version", "V", false, "print the version (as mifike version)")

	// The verbs' shared flags, known to the root so that cobra can tell
	// their values from the verb ("mifike -s PATH list-sas": it has to
	// know -s takes a value to find list-sas). Each verb that takes one
	// defines its own, shown in its help and man page; these are hidden,
	// and checkGlobals refuses them on a command that does not take them.
	pf := root.PersistentFlags()
	pf.StringP("socket", "s", defaultSocket, "the daemon's control socket `PATH`")
	pf.BoolVar(&globalJSON, "json", false, "print JSON")
	pf.Duration("timeout", defaultTimeout, "wait at most this long for the outcome")
	pf.Bool("no-wait", false, "do not wait for the outcome")
	pf.VisitAll(func(f *pflag.Flag) { f.Hidden = true })

	root.AddGroup(
		&cobra.Group{ID: groupDaemon, Title: "The daemon and offline tools:"},
		&cobra.Group{ID: groupControl, Title: "Control verbs (talk to the running daemon):"},
		&cobra.Group{ID: groupLab, Title: "Labs and benchmarks (root; network namespaces):"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add(groupDaemon, daemonCmd(stdout, stderr), decodeCmd(stdout, stderr), importSwanctlCmd(stdout, stderr), versionCmd(stdout))
	add(groupControl, listSAsCmd(stdout, stderr), listConnsCmd(stdout, stderr),
		listPoolsCmd(stdout, stderr), listCertsCmd(stdout, stderr), statsCmd(stdout, stderr), initiateCmd(stdout, stderr),
		terminateCmd(stdout, stderr), rekeyCmd(stdout, stderr), cloneCmd(stdout, stderr), moveCmd(stdout, stderr),
		reloadCmd(stdout, stderr), logLevelCmd(stdout, stderr), clusterCmd(stdout, stderr), eventsCmd(stdout, stderr),
		logCmd(stdout, stderr))
	add(groupLab, demoCmd(stdout, stderr), labEtcdCmd(stdout, stderr), benchCmd(stdout, stderr))
	root.AddCommand(genManCmd(stdout, stderr), genMarkdownCmd(stdout, stderr))
	root.SetHelpCommand(helpCmd())
	root.SetHelpCommandGroupID(groupDaemon)
	root.SetCompletionCommandGroupID(groupDaemon)
	// Added now rather than at Execute, so that the tree is whole for
	// gen-man and for the tests that walk it.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}

// helpCmd is cobra's "help [command]", except that a command it does
// not know is a usage error (exit 2), as it is without "help".
func helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		Long:  "Help about any command: mifike help VERB says what mifike VERB --help says.",
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			c, _, err := cmd.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() {
					out = append(out, cobra.CompletionWithDesc(s.Name(), s.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, rest, err := cmd.Root().Find(args)
			if err != nil || len(rest) > 0 {
				word := args[len(args)-1]
				if len(rest) > 0 {
					word = rest[0]
				}
				if c == nil {
					c = cmd.Root()
				}
				return unknownCommand(c, word, "command")
			}
			return c.Help()
		},
	}
}

// checkGlobals refuses a verb's shared flag on a command that does not
// take it (mifike daemon --json): the root knows them all (newRoot), so
// cobra alone would accept and ignore it.
func checkGlobals(cmd *cobra.Command) error {
	root := cmd.Root()
	if cmd == root {
		return nil
	}
	var err error
	root.PersistentFlags().VisitAll(func(g *pflag.Flag) {
		if f := cmd.Flags().Lookup(g.Name); err == nil && f == g && f.Changed {
			err = &usageError{cmd: cmd, msg: fmt.Sprintf("%s does not take --%s", strings.TrimPrefix(cmd.CommandPath(), "mifike "), g.Name)}
		}
	})
	return err
}

// argsError is the usage error of a command given arguments it does not
// take: its synopsis.
func argsError(cmd *cobra.Command) error {
	return &usageError{cmd: cmd, msg: "usage: " + strings.TrimSuffix(cmd.UseLine(), " [flags]")}
}

// unknownCommand is the usage error for a word that names no subcommand
// of cmd, with cobra's suggestion if it has one.
func unknownCommand(cmd *cobra.Command, word, what string) error {
	msg := fmt.Sprintf("unknown %s %q for %q", what, word, cmd.CommandPath())
	if s := cmd.SuggestionsFor(word); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &usageError{cmd: cmd, msg: msg}
}

// parentRun is the RunE of a command that only groups others (cluster,
// bench): without a subcommand it is a usage error, as a bare mifike is.
// Its usage shows "mifike cluster COMMAND" only (annotation "group",
// usageTemplate).
func parentRun(stderr io.Writer, what string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return unknownCommand(cmd, args[0], what)
		}
		fmt.Fprint(stderr, cmd.UsageString())
		return exitCode(exitUsage)
	}
}

func init() { cobra.AddTemplateFunc("synopsis", synopsis) }

// synopsis is a subcommand's line in its parent's list: its Use and
// Short in two columns, Short on a line of its own under a long Use.
func synopsis(c *cobra.Command) string {
	const width = 34
	if len(c.Use) <= width {
		return fmt.Sprintf("%-*s  %s", width, c.Use, c.Short)
	}
	return fmt.Sprintf("%s\n  %*s  %s", c.Use, width, "", c.Short)
}

// usageTemplate is cobra's, with each subcommand listed by its synopsis
// (its Use) rather than its bare name: "terminate ID|CONN [--child SPI]"
// says more in the list than "terminate".
const usageTemplate = `Usage:{{if and .Runnable (not (index .Annotations "group"))}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} COMMAND{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{synopsis .}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{synopsis .}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} COMMAND --help" for more information about a command.{{end}}
`
