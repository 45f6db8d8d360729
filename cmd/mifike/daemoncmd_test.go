package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mifike daemon --check refuses a file that defines no connections (an
// editor's truncated write would wipe a gateway on reload) with the file,
// the line and what to write, and exits non-zero; connections: {} written
// out is a valid configuration without connections, and overlapping pools
// are refused with both places.
func TestDaemonCheck(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, text string
		code       int
		out        []string
	}{
		{"empty.yaml", "", 1, []string{"empty.yaml:1: the file is empty", "connections: {}"}},
		{"blank.yaml", " \n\t\n# only a comment\n", 1, []string{"blank.yaml:1: the file is empty", "connections: {}"}},
		{"truncated.yaml", "log: {level: info}\n", 1, []string{"truncated.yaml:1: connections: missing", "connections: {}"}},
		{"none.yaml", "connections: {}\n", 0, []string{"none.yaml: configuration OK (0 connections)"}},
		{"overlap.yaml", "pools:\n  a: {addrs: 10.1.0.0/24}\n  b: {addrs: 10.1.0.0/16}\nconnections: {}\n", 1,
			[]string{"overlap.yaml:3: pools.b.addrs: 10.1.0.0/16 overlaps pool a (10.1.0.0/24) at " + filepath.Join(dir, "overlap.yaml") + ":2"}},
	} {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := run([]string{"daemon", "--check", "-c", path}, &out, &errb)
		all := out.String() + errb.String()
		if code != c.code {
			t.Errorf("%s: exit %d, want %d: %s", c.name, code, c.code, all)
		}
		for _, w := range c.out {
			if !strings.Contains(all, w) {
				t.Errorf("%s: output lacks %q:\n%s", c.name, w, all)
			}
		}
	}
}
