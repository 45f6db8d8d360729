package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestMain lets the test binary stand in for mifike when asked: the bash
// completion test runs it as the completion script runs mifike.
func TestMain(m *testing.M) {
	if os.Getenv("MIFIKE_TEST_AS_MIFIKE") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// commandTree is every command under root, root included, hidden ones
// too.
func commandTree(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		out = append(out, commandTree(c)...)
	}
	return out
}

// words is a command's path without "mifike": its argv.
func words(c *cobra.Command) []string { return strings.Fields(c.CommandPath())[1:] }

// Issue 19 item 7: every command says what it does in the list (Short)
// and explains itself with --help, exit 0, on stdout.
func TestEveryCommandHasHelp(t *testing.T) {
	cmds := commandTree(newRoot(io.Discard, io.Discard))
	if len(cmds) < 30 {
		t.Fatalf("only %d commands in the tree", len(cmds))
	}
	for _, c := range cmds {
		if c.Short == "" {
			t.Errorf("%s has no Short", c.CommandPath())
		}
		for _, h := range []string{"--help", "-h"} {
			r := runCtl(append(words(c), h)...)
			if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Usage:\n  "+c.CommandPath()) {
				t.Errorf("%s %s: exit %d, stderr %q, stdout:\n%s", c.CommandPath(), h, r.code, r.stderr, r.stdout)
			}
		}
	}
	// "mifike help VERB" is the same help.
	if r := runCtl("help", "move"); r.code != 0 || !strings.Contains(r.stdout, "--local ADDR") {
		t.Errorf("help move: exit %d:\n%s", r.code, r.stdout)
	}
}

// The verbs' shared flags reach the verb before it as after it: each
// verb tries the socket -s names (exit 3, the socket in the message),
// not $MIFIKE_SOCKET's.
func TestGlobalFlagsBeforeAndAfterTheVerb(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "x.sock")
	t.Setenv("MIFIKE_SOCKET", filepath.Join(dir, "env.sock"))
	for _, verb := range [][]string{
		{"list-sas"}, {"list-conns"}, {"list-pools"}, {"list-certs"}, {"stats"}, {"initiate", "home"}, {"terminate", "3"}, {"rekey", "3"}, {"clone", "3"},
		{"move", "3", "--local", "192.0.2.7"}, {"reload"}, {"loglevel", "debug"}, {"events"},
		{"cluster", "status"}, {"cluster", "move", "3", "2"},
	} {
		for _, args := range [][]string{
			append([]string{"-s", sock}, verb...),
			append(slices.Clone(verb), "-s", sock),
			append([]string{"--socket=" + sock}, verb...),
			append(verb[:1:1], append([]string{"--socket", sock}, verb[1:]...)...),
		} {
			r := runCtl(args...)
			r.check(t, exitUnreachable, nil, []string{"cannot reach mifike at " + sock + ":"})
		}
	}

	// --json before the verb: the error as JSON on stdout.
	r := runCtl("--json", "-s", sock, "list-sas")
	r.check(t, exitUnreachable, []string{`"code":"unreachable"`, sock}, nil)
	if r.stderr != "" {
		t.Errorf("--json list-sas: stderr %q", r.stderr)
	}

	// --no-wait and --timeout before the verb.
	b := waitBackend()
	b.later = nil // the outcome never comes
	live := startDaemon(t, b)
	runCtl("--no-wait", "-s", live, "initiate", "home").check(t, 0, []string{"initiating home: IKE SA 7\n"}, nil)
	runCtl("--timeout", "50ms", "-s", live, "clone", "3").check(t, exitTimeout, nil, []string{"timed out after 50ms"})
}

// Usage errors exit 2 with one line that says where help is; a flag of
// the verbs on a command that does not take it is one.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown command "nope" for "mifike"`},
		{[]string{"list-sa"}, "did you mean list-sas?"},
		{[]string{"help", "nope"}, `unknown command "nope" for "mifike"`},
		{[]string{"list-sas", "--bogus"}, `unknown flag: --bogus (see "mifike list-sas --help")`},
		{[]string{"initiate", "--timeout", "soon", "home"}, `invalid argument "soon" for "--timeout"`},
		{[]string{"daemon", "--json"}, `daemon does not take --json (see "mifike daemon --help")`},
		{[]string{"-s", "/x.sock", "decode", "00"}, "decode does not take --socket"},
		{[]string{"bench", "nope"}, `unknown suite "nope" for "mifike bench"`},
		{[]string{"cluster", "nope"}, `unknown cluster command "nope"`},
		{[]string{"version", "x"}, `usage: mifike version [--json] (see "mifike version --help")`},
		{[]string{"decode"}, "usage: mifike decode [--json] HEX|FILE..."},
	} {
		r := runCtl(c.args...)
		if r.code != exitUsage || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "mifike: ") || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line with %q", c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
	// A group without its subcommand prints its usage, as a bare mifike.
	for _, args := range [][]string{{"cluster"}, {"bench"}} {
		runCtl(args...).check(t, exitUsage, nil, []string{"Usage:\n  mifike " + args[0] + " COMMAND"})
	}
	// With --json, a usage error is JSON too.
	r := runCtl("list-sas", "--json", "extra")
	if r.code != exitUsage || !strings.HasPrefix(r.stdout, `{"error":"usage: mifike list-sas`) || !strings.Contains(r.stdout, `"code":"usage"`) {
		t.Errorf("list-sas --json extra: exit %d, stdout %q", r.code, r.stdout)
	}
}

// The completion scripts are cobra's; they ask "mifike __complete" for
// the words, which must name the verbs, and complete from the daemon.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runCtl("completion", shell)
		if r.code != 0 || len(r.stdout) < 1000 || !strings.Contains(r.stdout, "mifike") || !strings.Contains(r.stdout, "__complete") {
			t.Errorf("completion %s: exit %d, %d octets, stderr %q", shell, r.code, len(r.stdout), r.stderr)
		}
	}
	r := runCtl("__complete", "")
	for _, c := range newRoot(io.Discard, io.Discard).Commands() {
		if c.IsAvailableCommand() && !strings.Contains(r.stdout, "\n"+c.Name()+"\t") && !strings.HasPrefix(r.stdout, c.Name()+"\t") {
			t.Errorf("__complete lacks %s:\n%s", c.Name(), r.stdout)
		}
	}
	if strings.Contains(r.stdout, "gen-man") {
		t.Errorf("__complete offers the hidden gen-man:\n%s", r.stdout)
	}
	runCtl("__complete", "loglevel", "").check(t, 0, []string{"debug\n", "info\n", "warn\n", "error\n"}, nil)

	sock := startDaemon(t, testBackend())
	runCtl("__complete", "terminate", "-s", sock, "").check(t, 0, []string{"3\thome ESTABLISHED\n", "4\troad CONNECTING\n", "home\tconnection, 1 IKE SA\n"}, nil)
	runCtl("__complete", "-s", sock, "initiate", "").check(t, 0, []string{"home\tconnection, 1 IKE SA\n"}, nil)

	// The bash script itself, run as bash runs it on a Tab.
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash: the script itself is not run")
	}
	script := filepath.Join(t.TempDir(), "mifike.bash")
	if err := os.WriteFile(script, []byte(runCtl("completion", "bash").stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without the bash-completion package, _get_comp_words_by_ref (which
	// the script calls) is missing: the stand-in does what it does for
	// a cursor at the end of the line.
	const shim = `[ -r /usr/share/bash-completion/bash_completion ] && . /usr/share/bash-completion/bash_completion
declare -F _get_comp_words_by_ref >/dev/null || _get_comp_words_by_ref() {
	cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
}
. "$SCRIPT"
complete_line() {
	COMP_WORDS=("$MIFIKE" "$@"); COMP_CWORD=$#; COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
	__start_mifike 2>/dev/null
	printf '%s\n' "${COMPREPLY[@]}"
}
complete_line list-
echo --
complete_line -s "$SOCK" terminate ""
`
	cmd := exec.Command(bash, "-c", shim)
	cmd.Env = append(os.Environ(), "MIFIKE_TEST_AS_MIFIKE=1", "MIFIKE="+os.Args[0], "SCRIPT="+script, "SOCK="+sock)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bash: %v: %s", err, errb.String())
	}
	got := strings.Fields(out.String())
	if want := []string{"list-certs", "list-conns", "list-pools", "list-sas", "--", "3", "4", "home"}; !slices.Equal(got, want) {
		t.Errorf("bash completion: %q, want %q\n%s", got, want, errb.String())
	}
}

// gen-man writes a section 8 page per command that groff formats
// without a warning; hidden commands get none.
func TestGenMan(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1764547200") // 2025-12-01
	runCtl("gen-man", dir).check(t, 0, nil, nil)
	root := newRoot(io.Discard, io.Discard)
	groff, _ := exec.LookPath("groff")
	n := 0
	for _, c := range commandTree(root) {
		name := strings.Join(strings.Fields(c.CommandPath()), "-") + ".8"
		b, err := os.ReadFile(filepath.Join(dir, name))
		if !c.IsAvailableCommand() && c != root {
			if err == nil {
				t.Errorf("%s: hidden or help command has a page", name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.CommandPath(), err)
			continue
		}
		n++
		title := strings.ToUpper(strings.TrimSuffix(name, ".8"))
		if want := `.TH "` + title + `" "8" "Dec 2025" "mifike ` + version + `" "mifike manual"`; !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q:\n%s", name, want, b)
		}
		if !strings.Contains(string(b), c.Short) && c.Short != "" {
			t.Errorf("%s lacks its Short", name)
		}
		if groff == "" {
			continue
		}
		// -P-cbou: plain text, no bold or underline to look through.
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-P-cbou", filepath.Join(dir, name))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil || errb.Len() > 0 || !strings.Contains(out.String(), "SYNOPSIS\n       "+c.CommandPath()) {
			t.Errorf("groff %s: %v: %s", name, err, errb.String())
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if n < 30 || len(files) != n {
		t.Errorf("%d pages for %d commands: %v", len(files), n, files)
	}
	if groff == "" {
		t.Log("no groff: pages checked for their .TH header only")
	}
}

// docs/cli is gen-markdown's output for this source: a change to the
// commands regenerates it (go run ./cmd/mifike gen-markdown docs/cli).
func TestMarkdownUpToDate(t *testing.T) {
	dir := t.TempDir()
	runCtl("gen-markdown", dir).check(t, 0, nil, nil)
	want, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	have, _ := filepath.Glob(filepath.Join("..", "..", "docs", "cli", "*.md"))
	if len(want) != len(have) {
		t.Errorf("docs/cli has %d files, gen-markdown writes %d: run go run ./cmd/mifike gen-markdown docs/cli", len(have), len(want))
	}
	for _, w := range want {
		a, _ := os.ReadFile(w)
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli", filepath.Base(w)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("docs/cli/%s is stale or missing: run go run ./cmd/mifike gen-markdown docs/cli", filepath.Base(w))
		}
	}
}
