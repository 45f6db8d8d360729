package daemon

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 19, honest reload: log.level takes effect at a reload (it was
// read at start only, and the reload said it applied it), `mifike
// loglevel` changes it until the next reload, a bad level is refused,
// and log.format, which cannot change in a running daemon, makes the
// reload fail with a reason instead of being ignored.
func TestLogLevelAtRunTime(t *testing.T) {
	dir := t.TempDir()
	p := freePorts(t, 2)
	path := filepath.Join(dir, "mifike.yaml")
	conf := func(level, format string) string {
		return fmt.Sprintf(`log: {level: %s, format: %s}
listen: [127.0.0.1]
port: %d
port_nat_t: %d
data_plane: none
control: {socket: %s}
connections: {}
`, level, format, p[0], p[1], filepath.Join(dir, "ctl.sock"))
	}
	writeFile(t, path, conf("info", "text"))
	r := startDaemon(t, path)
	probe := func(tag string) bool {
		r.d.log.Debug("probe " + tag)
		return strings.Contains(r.log.String(), "probe "+tag)
	}
	if probe("at-info") {
		t.Fatal("a debug line was logged at level info")
	}
	b := backend{r.d}
	prev, err := b.SetLogLevel("debug")
	if err != nil || prev != "info" {
		t.Fatalf("SetLogLevel: %q, %v", prev, err)
	}
	if !probe("after-loglevel") {
		t.Fatal("no debug line after mifike loglevel debug")
	}
	if _, err := b.SetLogLevel("verbose"); err == nil {
		t.Fatal("log level verbose accepted")
	}
	// A reload brings the file's level back, here a new one.
	writeFile(t, path, conf("warn", "text"))
	var rerr error
	r.d.call(func() { _, rerr = r.d.reload("test") })
	if rerr != nil {
		t.Fatal(rerr)
	}
	if probe("after-reload") || r.d.level.Level().String() != "WARN" {
		t.Fatalf("after a reload to warn the level is %v", r.d.level.Level())
	}
	writeFile(t, path, conf("warn", "json"))
	r.d.call(func() { _, rerr = r.d.reload("test") })
	if rerr == nil || !strings.Contains(rerr.Error(), "log.format changes only with a restart") {
		t.Fatalf("a reload changing log.format: %v", rerr)
	}
}
