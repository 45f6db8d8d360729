package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/spf13/cobra"
)

// logCmd is `mifike log`: the daemon's log lines as they are written,
// like `swanctl --log`, at a level of the follower's choosing (issue 19):
// a debug stream of a daemon that logs info to its journal.
func logCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("log [--level debug|info|warn|error] [--json]", "follow the daemon's log until Ctrl-C",
		"Print the daemon's log lines as they are written, until Ctrl-C, at --level and above whatever\n"+
			"level the daemon logs at itself (log.level, mifike loglevel): one line each, or with --json\n"+
			"the record as the daemon's JSON log writes it. A gap (this client read too slowly) is shown,\n"+
			"not hidden.", stdout, stderr)
	level := v.cmd.Flags().String("level", "info", "the lowest `LEVEL` to show: debug, info, warn or error")
	v.cmd.RegisterFlagCompletionFunc("level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	return v.run(0, 0, func([]string) int { return v.followLog(*level) })
}

func (v *verb) followLog(level string) int {
	return v.call(func(c *control.Client) error {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() {
			<-ctx.Done()
			c.Close() // ends FollowLog below; harmless after it returned
		}()
		err := c.FollowLog(level, func(rec json.RawMessage, dropped uint64) bool {
			switch {
			case dropped > 0 && v.json:
				fmt.Fprintf(v.stdout, "{\"dropped\":%d}\n", dropped)
			case dropped > 0:
				fmt.Fprintf(v.stdout, "-- %d lines dropped: this client read too slowly --\n", dropped)
			case v.json:
				fmt.Fprintf(v.stdout, "%s\n", rec)
			default:
				writeLogRecord(v.stdout, rec)
			}
			return true
		})
		if ctx.Err() != nil {
			return nil // interrupted: the normal way to stop
		}
		return err
	})
}

// writeLogRecord prints a record as "15:04:05.000 LEVEL msg key=value
// ...", the attributes in the daemon's order and groups as dotted keys,
// as slog's text handler would. A record it cannot read is printed as it
// came.
func writeLogRecord(w io.Writer, rec json.RawMessage) {
	var (
		head  [3]string // time, level, msg
		attrs []string
	)
	dec := json.NewDecoder(bytes.NewReader(rec))
	dec.UseNumber()
	if !readLogObject(dec, "", &head, &attrs) {
		fmt.Fprintf(w, "%s\n", rec)
		return
	}
	if t, err := time.Parse(time.RFC3339Nano, head[0]); err == nil {
		head[0] = t.Local().Format("15:04:05.000")
	}
	line := fmt.Sprintf("%s %-5s %s", head[0], head[1], head[2])
	if len(attrs) > 0 {
		line += " " + strings.Join(attrs, " ")
	}
	fmt.Fprintln(w, line)
}

// readLogObject reads one JSON object from dec, keeping the order of its
// keys (a map would not): the top level's time, level and msg go to head,
// everything else to attrs as prefix+key=value.
func readLogObject(dec *json.Decoder, prefix string, head *[3]string, attrs *[]string) bool {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok {
			return false
		}
		var raw json.RawMessage
		if prefix == "" && (key == "time" || key == "level" || key == "msg") {
			var s string
			if dec.Decode(&s) != nil {
				return false
			}
			head[map[string]int{"time": 0, "level": 1, "msg": 2}[key]] = s
			continue
		}
		if err := dec.Decode(&raw); err != nil {
			return false
		}
		if len(raw) > 0 && raw[0] == '{' {
			sub := json.NewDecoder(bytes.NewReader(raw))
			sub.UseNumber()
			if !readLogObject(sub, prefix+key+".", head, attrs) {
				return false
			}
			continue
		}
		*attrs = append(*attrs, prefix+key+"="+logValue(raw))
	}
	_, err := dec.Token()
	return err == nil
}

// logValue prints a string bare unless it needs quotes to be read back
// (spaces, quotes, '='), as slog's text handler does; other values as
// JSON.
func logValue(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return string(raw)
	}
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return strconv.Quote(s)
	}
	return s
}
