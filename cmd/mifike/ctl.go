package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/spf13/cobra"
)

// The control verbs talk to a running daemon over its control socket.

const defaultSocket = "/run/mifike/mifike.sock"

// Exit codes of the control verbs, so scripts can tell a refusal from a
// daemon that is not there.
const (
	exitOK          = 0
	exitRefused     = 1 // the daemon refused or failed the request
	exitUsage       = 2
	exitUnreachable = 3
)

// verb holds what every control verb shares: its command, flags and
// output.
type verb struct {
	cmd            *cobra.Command
	socket         string
	json           bool
	stdout, stderr io.Writer
	// The action verbs wait for the outcome (wait.go).
	waits   bool
	timeout time.Duration
	noWait  bool
}

// newVerb makes a control verb's command with the flags they all take;
// verb.run gives it its action.
func newVerb(use, short, long string, stdout, stderr io.Writer) *verb {
	v := &verb{stdout: stdout, stderr: stderr}
	v.cmd = &cobra.Command{Use: use, Short: short, Long: long}
	f := v.cmd.Flags()
	// The default shown in help and man pages is the built-in one; the
	// environment's is taken at run time (verb.run), as kubectl does
	// with KUBECONFIG.
	f.StringVarP(&v.socket, "socket", "s", defaultSocket, "the daemon's control socket `PATH` (without it: $MIFIKE_SOCKET, else the default)")
	f.BoolVar(&v.json, "json", false, "print JSON instead of text; errors too, as {\"error\": ..., \"code\": ...} on stdout")
	return v
}

// run gives the verb its action, fn, called with between minArgs and
// maxArgs positional arguments (flags may come anywhere among them:
// "terminate home --child c1a2b3c4"). It returns the command. It comes
// last: after waitFlags, whose exit status 4 it adds to the help.
func (v *verb) run(minArgs, maxArgs int, fn func(args []string) int) *cobra.Command {
	if v.waits {
		v.cmd.Long += "\n\nIt waits for the outcome (the peer's answer), unless --no-wait; with --json it prints\n" +
			"the resulting IDs and state, or {\"error\": ...}.\n\n" +
			"Exit status: 0 done, 1 the daemon refused the request or it failed (the reason on stderr),\n" +
			"2 usage error, 3 the daemon is unreachable, 4 no outcome within --timeout."
	} else {
		v.cmd.Long += "\n\nExit status: 0 done, 1 the daemon refused or failed the request (its message on stderr),\n" +
			"2 usage error, 3 the daemon is unreachable."
	}
	v.cmd.Long = strings.TrimSpace(v.cmd.Long)
	v.cmd.RunE = func(cmd *cobra.Command, args []string) error {
		v.resolveSocket(cmd)
		if len(args) < minArgs || len(args) > maxArgs {
			return argsError(cmd)
		}
		return exit(fn(args))
	}
	return v.cmd
}

// resolveSocket takes $MIFIKE_SOCKET unless -s was given.
func (v *verb) resolveSocket(cmd *cobra.Command) {
	if env := os.Getenv("MIFIKE_SOCKET"); env != "" && !cmd.Flags().Changed("socket") {
		v.socket = env
	}
}

// completeFirst makes shell completion offer the running daemon's IKE
// SA ids and connection names, as asked, for the verb's first argument.
// A daemon that does not answer offers nothing (rather than file names,
// which no verb takes).
func (v *verb) completeFirst(sas, conns bool) {
	v.cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		const none = cobra.ShellCompDirectiveNoFileComp
		if len(args) > 0 {
			return nil, none
		}
		v.resolveSocket(cmd)
		c, err := control.Dial(v.socket)
		if err != nil {
			return nil, none
		}
		defer c.Close()
		var out []cobra.Completion
		var sa []control.SA
		if sas && c.Call("list-sas", nil, &sa) == nil {
			for _, s := range sa {
				out = append(out, cobra.CompletionWithDesc(strconv.FormatUint(s.ID, 10), s.Conn+" "+s.State.String()))
			}
		}
		var cs []control.Conn
		if conns && c.Call("list-conns", nil, &cs) == nil {
			for _, conn := range cs {
				out = append(out, cobra.CompletionWithDesc(conn.Name, "connection, "+plural(conn.SAs, "IKE SA")))
			}
		}
		return out, none
	}
}

// name is the verb as the user typed it: "list-sas", "cluster move".
func (v *verb) name() string { return strings.TrimPrefix(v.cmd.CommandPath(), "mifike ") }

func (v *verb) usageError(format string, args ...any) int {
	v.fail(&failure{Msg: fmt.Sprintf(format, args...), Code: codeUsage})
	return exitUsage
}

// call connects, runs fn and maps its error to an exit code: a refusal by
// the daemon or a failed outcome is 1, any failure to talk to it 3, no
// outcome in time 4.
func (v *verb) call(fn func(c *control.Client) error) int {
	c, err := control.Dial(v.socket)
	if err != nil {
		v.fail(err)
		return exitUnreachable
	}
	defer c.Close()
	if err := fn(c); err != nil {
		v.fail(err)
		var refused *control.Error
		var f *failure
		switch {
		case errors.As(err, &refused):
			return exitRefused
		case errors.As(err, &f) && f.Code == codeTimeout:
			return exitTimeout
		case errors.As(err, &f):
			return exitRefused
		}
		return exitUnreachable
	}
	return exitOK
}

// fail prints an error: with --json as one object on stdout, where a
// script reads the rest (issue 19), else on stderr, each line with the
// prefix, as reload errors list one problem per line.
func (v *verb) fail(err error) {
	if v.json {
		var f *failure
		var refused *control.Error
		switch {
		case errors.As(err, &f):
		case errors.As(err, &refused):
			f = &failure{Msg: err.Error(), Code: refused.Code}
		default:
			f = &failure{Msg: err.Error(), Code: codeUnreachable}
		}
		// One line: events --json prints one object per line.
		b, _ := json.Marshal(f)
		fmt.Fprintf(v.stdout, "%s\n", b)
		return
	}
	for line := range strings.SplitSeq(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(v.stderr, "mifike: %s\n", line)
	}
}

// ask sends a request. With --json it prints the answer and done is
// true; otherwise the answer is decoded into out (if not nil) for the
// verb to print.
func (v *verb) ask(c *control.Client, cmd string, args map[string]any, out any) (done bool, err error) {
	var raw json.RawMessage
	if err := c.Call(cmd, args, &raw); err != nil {
		return false, err
	}
	if v.json {
		v.printJSON(raw)
		return true, nil
	}
	if out == nil {
		return false, nil
	}
	return false, json.Unmarshal(raw, out)
}

// printJSON writes data indented, or {} for an answer without data.
func (v *verb) printJSON(data json.RawMessage) {
	if len(data) == 0 || string(data) == "null" {
		data = json.RawMessage("{}")
	}
	var b bytes.Buffer
	if json.Indent(&b, data, "", "  ") != nil {
		b.Reset()
		b.Write(data)
	}
	b.WriteByte('\n')
	v.stdout.Write(b.Bytes())
}

func listSAsCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("list-sas [--json]", "list IKE SAs and Child SAs of the running daemon",
		"List the IKE SAs with their Child SAs, in the spirit of swanctl --list-sas; the number in\n"+
			"brackets is the id the other verbs take.", stdout, stderr)
	return v.run(0, 0, func([]string) int { return v.listSAs() })
}

func (v *verb) listSAs() int {
	stdout := v.stdout
	return v.call(func(c *control.Client) error {
		var sas []control.SA
		if done, err := v.ask(c, "list-sas", nil, &sas); done || err != nil {
			return err
		}
		writeSAs(stdout, sas, time.Now())
		return nil
	})
}

func listConnsCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("list-conns [--json]", "list the configured connections",
		"List the configured connections and how many IKE SAs each has.", stdout, stderr)
	return v.run(0, 0, func([]string) int {
		return v.call(func(c *control.Client) error {
			var conns []control.Conn
			if done, err := v.ask(c, "list-conns", nil, &conns); done || err != nil {
				return err
			}
			writeConns(stdout, conns)
			return nil
		})
	})
}

func initiateCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("initiate CONN [--child NAME [--ike ID]]", "start an IKE SA of connection CONN",
		"Start an IKE SA of connection CONN with its start children, or with child NAME, and wait\n"+
			"until they are up. With --ike, create child NAME on an established IKE SA instead (e.g. a clone).", stdout, stderr)
	v.cmd.Example = "  mifike initiate home\n  mifike initiate home --child lan --ike 4 --json"
	child := v.cmd.Flags().String("child", "", "bring up child `NAME` instead of the start children")
	onSA := v.cmd.Flags().Uint64("ike", 0, "create the child on this established IKE SA `ID` (e.g. a clone)")
	v.completeFirst(false, true)
	v.waitFlags()
	return v.run(1, 1, func(pos []string) int { return v.initiate(pos, *child, *onSA) })
}

func (v *verb) initiate(pos []string, child string, onSA uint64) int {
	if onSA != 0 && child == "" {
		return v.usageError("initiate: --ike needs --child")
	}
	var in control.Initiated
	return v.act("initiate", map[string]any{"conn": pos[0], "child": child, "ike_sa": onSA}, &in,
		func() tracker { return newInitiateTracker(pos[0], in) },
		func() string {
			what := pos[0]
			if child != "" {
				what += " child " + child
			}
			return fmt.Sprintf("initiating %s: IKE SA %d", what, in.IKESA)
		})
}

func terminateCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("terminate ID|CONN [--child SPI]", "delete an IKE SA, one Child SA, or a connection's SAs",
		"Delete IKE SA ID (a number, see list-sas) or its Child SA with inbound SPI, or every IKE SA\n"+
			"of connection CONN, and wait until they are gone. A CONN that starts with a dash follows --.", stdout, stderr)
	v.cmd.Example = "  mifike terminate 3\n  mifike terminate 3 --child c1a2b3c4\n  mifike terminate home --json\n  mifike terminate -- -odd-name"
	childArg := v.cmd.Flags().String("child", "", "delete only the Child SA with this inbound `SPI` (8 hex digits)")
	v.completeFirst(true, true)
	v.waitFlags()
	return v.run(1, 1, func(pos []string) int { return v.terminate(pos, *childArg) })
}

func (v *verb) terminate(pos []string, childArg string) int {
	id, isID, code := v.ikeSA(pos[0])
	if code >= 0 {
		return code
	}
	if !isID {
		if childArg != "" {
			return v.usageError("terminate: --child needs an IKE SA id, not connection %q", pos[0])
		}
		var out control.Terminated
		return v.act("terminate-conn", map[string]any{"conn": pos[0]}, &out,
			func() tracker {
				return &terminateTracker{conn: pos[0], ids: out.IKESAs, left: slices.Clone(out.IKESAs)}
			},
			func() string {
				if out.Terminated == 0 {
					return fmt.Sprintf("%s has no IKE SAs", pos[0])
				}
				return fmt.Sprintf("terminating %s: %s", pos[0], plural(out.Terminated, "IKE SA"))
			})
	}
	return v.saAction("terminate", "terminating", id, childArg)
}

func rekeyCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("rekey ID [--child SPI]", "rekey an IKE SA or one of its Child SAs",
		"Rekey IKE SA ID (see list-sas), or its Child SA with inbound SPI, and wait for the new one.", stdout, stderr)
	childArg := v.cmd.Flags().String("child", "", "rekey the Child SA with this inbound `SPI` (8 hex digits)")
	v.completeFirst(true, false)
	v.waitFlags()
	return v.run(1, 1, func(pos []string) int { return v.rekey(pos, *childArg) })
}

func (v *verb) rekey(pos []string, childArg string) int {
	id, isID, code := v.ikeSA(pos[0])
	if code >= 0 {
		return code
	}
	if !isID {
		return v.usageError("rekey: %q is not an IKE SA id (the number in brackets in mifike list-sas)", pos[0])
	}
	return v.saAction("rekey", "rekeying", id, childArg)
}

// ikeSA reads an IKE SA id; a non-number is no id (a connection name).
func (v *verb) ikeSA(arg string) (id uint64, isID bool, code int) {
	id, err := strconv.ParseUint(arg, 10, 64)
	if err != nil {
		return 0, false, -1
	}
	if id == 0 {
		return 0, false, v.usageError("%s: IKE SA ids start at 1", v.name())
	}
	return id, true, -1
}

// saAction runs terminate or rekey on an IKE SA or one of its Child SAs.
func (v *verb) saAction(cmd, doing string, id uint64, childArg string) int {
	args := map[string]any{"ike_sa": id}
	what := fmt.Sprintf("IKE SA %d", id)
	spi := ""
	if childArg != "" {
		n, err := parseSPI(childArg)
		if err != nil {
			return v.usageError("%s: --child: %v", v.name(), err)
		}
		args["child_spi"] = n
		spi = fmt.Sprintf("%08x", n)
		what = fmt.Sprintf("Child SA %s of IKE SA %d", spi, id)
	}
	return v.act(cmd, args, nil,
		func() tracker {
			if cmd == "terminate" {
				return &terminateTracker{ids: []uint64{id}, left: []uint64{id}, child: spi}
			}
			return &rekeyTracker{from: id, sa: follow{id}, child: spi}
		},
		func() string { return doing + " " + what })
}

// parseSPI reads an inbound Child SA SPI as list-sas prints it.
func parseSPI(s string) (uint32, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil || len(h) > 8 || v == 0 {
		return 0, fmt.Errorf("%q is not an SPI: want up to 8 hex digits (as list-sas prints them), not 0", s)
	}
	return uint32(v), nil
}

// reloadCmd is synchronous: the daemon answers once the new
// configuration is in force or refused (and logs either), so there is
// nothing to wait for.
func reloadCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("reload", "reread the configuration",
		"Reread the configuration. The daemon answers once the new one is in force, or refused with\n"+
			"its errors, listed as file:line: field: message; the old one then stays. The answer lists\n"+
			"the connections added, removed and changed, and what became of each SA the new file no\n"+
			"longer allows (closed, replaced, kept until its next rekey).", stdout, stderr)
	return v.run(0, 0, func([]string) int {
		return v.call(func(c *control.Client) error {
			var r control.Reloaded
			if done, err := v.ask(c, "reload", nil, &r); done || err != nil {
				return err
			}
			return printReloaded(stdout, r)
		})
	})
}

// runLogLevel changes the running daemon's log level (issue 19: a
// strongSwan administrator's `swanctl --log --level` or charon's
// runtime loglevel); log.level in the file is what a reload or restart
// brings back.
func logLevelCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("loglevel debug|info|warn|error", "change the daemon's log level until the next reload or restart",
		"Change the running daemon's log level; log.level in the configuration file is what a reload\n"+
			"or restart brings back.", stdout, stderr)
	v.cmd.ValidArgs = []string{"debug", "info", "warn", "error"}
	return v.run(1, 1, func(pos []string) int {
		return v.call(func(c *control.Client) error {
			var r control.LogLevel
			if err := c.Call("log-level", map[string]any{"level": pos[0]}, &r); err != nil {
				return err
			}
			if v.json {
				b, _ := json.Marshal(r)
				v.printJSON(b)
			} else {
				fmt.Fprintf(stdout, "log level %s (was %s) until the next reload or restart\n", r.Level, r.Previous)
			}
			return nil
		})
	})
}

func eventsCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("events [--json]", "follow the daemon's events until Ctrl-C",
		"Print the daemon's events as they happen, until Ctrl-C: one line each, or with --json one\n"+
			"object per line. A gap (this client read too slowly) is shown, not hidden.", stdout, stderr)
	return v.run(0, 0, func([]string) int { return v.events() })
}

func (v *verb) events() int {
	stdout := v.stdout
	return v.call(func(c *control.Client) error {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() {
			<-ctx.Done()
			c.Close() // ends Events below; harmless after it returned
		}()
		err := c.Events(func(ev control.Event) bool {
			if v.json {
				writeEventJSON(stdout, ev)
			} else {
				writeEvent(stdout, ev)
			}
			return true
		})
		if ctx.Err() != nil {
			return nil // interrupted: the normal way to stop
		}
		return err
	})
}

// writeSAs prints IKE SAs in the spirit of swanctl --list-sas, the id
// first because the other verbs take it.
func writeSAs(w io.Writer, sas []control.SA, now time.Time) {
	if len(sas) == 0 {
		fmt.Fprintln(w, "no IKE SAs")
		return
	}
	for _, sa := range sas {
		head := fmt.Sprintf("[%d] %s: %s", sa.ID, sa.Conn, sa.State)
		if !sa.Established.IsZero() {
			head += " " + age(now.Sub(sa.Established)) + " ago"
		}
		role := "responder"
		if sa.Initiator {
			role = "initiator"
		}
		if sa.Parent != 0 {
			role += fmt.Sprintf(", clone of [%d]", sa.Parent)
		}
		if sa.Family != 0 && sa.Family != sa.ID {
			role += fmt.Sprintf(", family %d", sa.Family)
		}
		fmt.Fprintf(w, "%s, %s\n", head, role)
		fmt.Fprintf(w, "  local  %s\n", endpoint(sa.LocalID, sa.Local, sa.VirtualIPs))
		fmt.Fprintf(w, "  remote %s\n", endpoint(sa.RemoteID, sa.Remote, sa.PeerVirtualIPs))
		if sa.EAPMethod != "" {
			fmt.Fprintf(w, "  %s as %q\n", sa.EAPMethod, sa.EAPIdentity)
		}

		// Our SPI carries the star, as in swanctl.
		spiI, spiR := sa.SPIi+"_i", sa.SPIr+"_r"
		if sa.Initiator {
			spiI += "*"
		} else {
			spiR += "*"
		}
		var line []string
		if sa.Proposal != "" {
			line = append(line, sa.Proposal)
		}
		line = append(line, "SPIs "+spiI+" "+spiR)
		if sa.MOBIKE {
			m := "MOBIKE"
			if sa.MOBIKEInitiator {
				m += " (we move it)"
			}
			line = append(line, m)
		}
		if sa.CloneSupported {
			line = append(line, "clone")
		}
		if sa.Iface != "" {
			line = append(line, "via "+sa.Iface)
		}
		if nat := natInfo(sa); nat != "" {
			line = append(line, nat)
		}
		fmt.Fprintf(w, "  %s\n", strings.Join(line, ", "))
		if t := timers(now, []string{"rekeying in", "reauth in", "expires in"}, sa.RekeyAt, sa.ReauthAt, sa.ExpireAt); t != "" {
			fmt.Fprintf(w, "  %s\n", t)
		}
		if p := sa.Path; p != nil {
			fmt.Fprintf(w, "  path: rtt %.1f ms ± %.1f (%d samples), loss %.1f%% (%d sends)\n", p.RTTMs, p.RTTVarMs, p.RTTSamples, 100*p.Loss, p.LossSamples)
		}

		for _, c := range sa.Children {
			fmt.Fprintf(w, "  %s: %s %s %s, SPIs %s_i %s_o", c.Name, c.State, c.Mode, c.Proposal, c.InSPI, c.OutSPI)
			if !c.Outbound {
				fmt.Fprint(w, ", inbound only")
			}
			fmt.Fprintln(w)
			fmt.Fprintf(w, "    %s === %s\n", strings.Join(c.LocalTS, ", "), strings.Join(c.RemoteTS, ", "))
			if c.BytesIn|c.BytesOut|c.PacketsIn|c.PacketsOut != 0 {
				fmt.Fprintf(w, "    in %s (%s), out %s (%s)\n", bytesText(c.BytesIn), packets(c.PacketsIn, c.LastIn, now),
					bytesText(c.BytesOut), packets(c.PacketsOut, c.LastOut, now))
			}
			if t := timers(now, []string{"rekeying in", "expires in"}, c.RekeyAt, c.ExpireAt); t != "" {
				fmt.Fprintf(w, "    %s\n", t)
			}
		}
	}
}

// timers renders the deadlines that are set, each after its label, as
// swanctl does: "rekeying in 3h52m, expires in 4h16m".
func timers(now time.Time, labels []string, at ...time.Time) string {
	var out []string
	for i, t := range at {
		if !t.IsZero() {
			out = append(out, labels[i]+" "+age(t.Sub(now)))
		}
	}
	return strings.Join(out, ", ")
}

// packets is "6 packets", with how long ago the last one was when known:
// "6 packets, 3s ago".
func packets(n uint64, last, now time.Time) string {
	s := plural(int(n), "packet")
	if !last.IsZero() {
		s += ", " + age(now.Sub(last)) + " ago"
	}
	return s
}

// endpoint renders "id @ addr[port]" with any virtual IPs.
func endpoint(id, addr string, vips []string) string {
	s := addr
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		s = fmt.Sprintf("%s[%d]", ap.Addr(), ap.Port())
	}
	if id != "" {
		s = id + " @ " + s
	}
	switch len(vips) {
	case 0:
	case 1:
		s += ", virtual IP " + vips[0]
	default:
		s += ", virtual IPs " + strings.Join(vips, ", ")
	}
	return s
}

func natInfo(sa control.SA) string {
	switch {
	case sa.TCP:
		return "TCP-encapsulated"
	case sa.NATLocal && sa.NATRemote:
		return "NAT-T(local, remote)"
	case sa.NATLocal:
		return "NAT-T(local)"
	case sa.NATRemote:
		return "NAT-T(remote)"
	case sa.Encap:
		return "UDP-encapsulated"
	}
	return ""
}

// age is a duration to the second, in the largest two units.
func age(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	switch {
	case d < time.Hour:
		return d.String() // 14s, 2m14s
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func writeConns(w io.Writer, conns []control.Conn) {
	if len(conns) == 0 {
		fmt.Fprintln(w, "no connections")
		return
	}
	for _, c := range conns {
		head := []string{plural(c.SAs, "IKE SA")}
		if c.StartAction != "" {
			head = append(head, "start action "+c.StartAction)
		}
		if c.MOBIKE {
			head = append(head, "MOBIKE")
		}
		if c.Clone {
			head = append(head, "clone")
		}
		fmt.Fprintf(w, "%s: %s\n", c.Name, strings.Join(head, ", "))
		fmt.Fprintf(w, "  local  %s (%s) @ %s\n", c.LocalID, c.LocalAuth, anyIfEmpty(c.LocalAddrs))
		fmt.Fprintf(w, "  remote %s (%s) @ %s\n", c.RemoteID, c.RemoteAuth, anyIfEmpty(c.RemoteAddrs))
		fmt.Fprintf(w, "  ike    %s\n", strings.Join(c.Proposals, ", "))
		for _, ch := range c.Children {
			trapped := ""
			if ch.StartAction == "trap" {
				trapped = ", trapped (its traffic brings it up)"
			}
			fmt.Fprintf(w, "  %s: %s, esp %s%s\n", ch.Name, ch.Mode, strings.Join(ch.Proposals, ", "), trapped)
			fmt.Fprintf(w, "    %s === %s\n", strings.Join(ch.LocalTS, ", "), strings.Join(ch.RemoteTS, ", "))
		}
	}
}

func anyIfEmpty(l []string) string {
	if len(l) == 0 {
		return "%any"
	}
	return strings.Join(l, ", ")
}

// writeEvent prints one event as "time kind conn[id] child N(notify) detail".
func writeEvent(w io.Writer, ev control.Event) {
	if ev.Dropped > 0 {
		fmt.Fprintf(w, "-- %d events dropped: this client read too slowly --\n", ev.Dropped)
		return
	}
	parts := []string{ev.Time.Local().Format("15:04:05.000"), ev.Kind}
	switch {
	case ev.Conn != "" && ev.IKESA != 0:
		parts = append(parts, fmt.Sprintf("%s[%d]", ev.Conn, ev.IKESA))
	case ev.IKESA != 0:
		parts = append(parts, fmt.Sprintf("[%d]", ev.IKESA))
	case ev.Conn != "":
		parts = append(parts, ev.Conn)
	}
	if ev.Child != "" {
		parts = append(parts, "child "+ev.Child)
	}
	if ev.Notify != "" {
		parts = append(parts, "N("+ev.Notify+")")
	}
	if ev.Detail != "" {
		parts = append(parts, ev.Detail)
	}
	fmt.Fprintln(w, strings.Join(parts, " "))
}

// writeEventJSON prints one object per line; a gap is {"dropped":N}, as
// the daemon sent it.
func writeEventJSON(w io.Writer, ev control.Event) {
	if ev.Dropped > 0 {
		fmt.Fprintf(w, "{\"dropped\":%d}\n", ev.Dropped)
		return
	}
	json.NewEncoder(w).Encode(ev)
}

// runClone is "mifike clone ID": RFC 7791 cloning of an IKE SA. It waits
// for the clone (or its refusal) and prints its id.
func cloneCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("clone ID", "clone an IKE SA without authenticating again (RFC 7791)",
		"Clone IKE SA ID without authenticating again (RFC 7791), and wait for the clone; it prints\n"+
			"the clone's id.", stdout, stderr)
	v.completeFirst(true, false)
	v.waitFlags()
	return v.run(1, 1, v.clone)
}

func (v *verb) clone(pos []string) int {
	id, isID, code := v.ikeSA(pos[0])
	if code >= 0 {
		return code
	}
	if !isID {
		return v.usageError("clone: %q is not an IKE SA id (the number in brackets in mifike list-sas)", pos[0])
	}
	return v.act("clone", map[string]any{"ike_sa": id}, nil,
		func() tracker { return &cloneTracker{sa: follow{id}} },
		func() string {
			return fmt.Sprintf("cloning IKE SA %d (the clone shows in mifike events and list-sas)", id)
		})
}

// runMove is "mifike move ID --local ADDR[%IFACE] [--remote ADDR]": a
// MOBIKE move (RFC 4555) of an IKE SA and its Child SAs. It waits for the
// peer to confirm the new path.
func moveCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("move ID --local ADDR[%IFACE] [--remote ADDR]", "move an IKE SA and its Child SAs to another path (RFC 4555)",
		"Move IKE SA ID and its Child SAs to another path (MOBIKE, RFC 4555), and wait for the peer\n"+
			"to confirm it. This host must be the SA's MOBIKE initiator.", stdout, stderr)
	v.cmd.Example = "  mifike move 2 --local 10.91.2.2%wlan0\n  mifike move 2 --local 2001:db8::7 --remote 2001:db8::1 --json"
	local := v.cmd.Flags().String("local", "", "our new `ADDR`, optionally pinned to an interface: 192.0.2.7%wlan0")
	remote := v.cmd.Flags().String("remote", "", "the peer `ADDR` to use (default: its current one)")
	v.completeFirst(true, false)
	v.waitFlags()
	return v.run(1, 1, func(pos []string) int { return v.move(pos, *local, *remote) })
}

func (v *verb) move(pos []string, local, remote string) int {
	id, isID, code := v.ikeSA(pos[0])
	if code >= 0 {
		return code
	}
	if !isID {
		return v.usageError("move: %q is not an IKE SA id (the number in brackets in mifike list-sas)", pos[0])
	}
	if local == "" {
		return v.usageError("move: --local is required")
	}
	addr, iface, _ := strings.Cut(local, "%")
	laddr, err := netip.ParseAddr(addr)
	if err != nil {
		return v.usageError("move: --local %q: %v", local, err)
	}
	if remote != "" {
		if _, err := netip.ParseAddr(remote); err != nil {
			return v.usageError("move: --remote %q: %v", remote, err)
		}
	}
	var out control.Moved
	return v.act("move", map[string]any{"ike_sa": id, "local": addr, "remote": remote, "iface": iface}, &out,
		func() tracker {
			if out.Unchanged {
				return nil
			}
			return &moveTracker{sa: follow{id}, local: laddr, iface: iface}
		},
		func() string {
			if out.Unchanged {
				return fmt.Sprintf("IKE SA %d is on that path already", id)
			}
			return fmt.Sprintf("moving IKE SA %d to %s", id, local)
		})
}
