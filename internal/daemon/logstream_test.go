package daemon

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/logstream"
)

// The daemon's log at info and a `mifike log --level debug` follower:
// the follower gets the debug lines, the daemon's own output does not,
// and an unknown level is refused.
func TestFollowLogAtItsOwnLevel(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var own bytes.Buffer
		level := new(slog.LevelVar)
		level.Set(slog.LevelInfo)
		hub := logstream.NewHub()
		d := &Daemon{cfg: &config.Config{Log: config.LogConfig{Format: format}}, level: level, logHub: hub}
		d.log = newLogger(d.cfg, &own, level, hub)
		b := backend{d}

		sub, err := b.FollowLog("debug")
		if err != nil {
			t.Fatal(err)
		}
		d.log.Debug("sending IKE_AUTH request 1", "ike", 3)
		d.log.Info("IKE SA established", "ike", 3)
		sub.Close()
		d.log.Debug("after the follower left")

		lines, dropped := sub.Take()
		if len(lines) != 2 || dropped != 0 {
			t.Fatalf("%s: follower got %d lines (%d dropped), want 2", format, len(lines), dropped)
		}
		var first map[string]any
		if err := json.Unmarshal(lines[0], &first); err != nil || first["level"] != "DEBUG" || first["ike"] != float64(3) {
			t.Errorf("%s: first line %s (%v)", format, lines[0], err)
		}
		if strings.Contains(own.String(), "IKE_AUTH") || !strings.Contains(own.String(), "IKE SA established") {
			t.Errorf("%s: the daemon's own log:\n%s", format, own.String())
		}
		if _, err := b.FollowLog("verbose"); err == nil || !strings.Contains(err.Error(), "want debug, info, warn or error") {
			t.Errorf("level verbose: %v", err)
		}
	}
}
