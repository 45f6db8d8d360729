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

// Warnings do not fail mifike daemon --check: each is printed to stderr
// with its file, line and field, the summary on stdout counts them, and
// the exit status is 0. A configuration that fails to build prints its
// warnings too, then the error, and exits 1.
func TestDaemonCheckWarnings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.yaml")
	text := "control: {group: mifike-no-such-group}\n" +
		"connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: secret\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"daemon", "--check", "-c", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, want 0: %s%s", code, out.String(), errb.String())
	}
	if want := path + ": configuration OK (1 connections), 3 warnings\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
	want := []string{
		"mifike: warning: " + path + `:1: control.group: no group "mifike-no-such-group" on this machine`,
		"mifike: warning: " + path + ":6: connections.c.psk: 6 octets is short",
		"mifike: warning: " + path + ":6: connections.c.psk: this file holds a secret and is readable by every local user (mode 0644); chmod 600 " + path,
	}
	if len(lines) != len(want) {
		t.Fatalf("stderr:\n%s", errb.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("stderr line %d:\n  %s\nwant prefix\n  %s", i+1, lines[i], w)
		}
	}

	// Build fails (no such key file): the warnings, then the error.
	text = "connections:\n  c:\n    local: {auth: pubkey, certs: gw.pem, key: gw.key}\n    remote: {auth: psk}\n    psk: secret\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"daemon", "--check", "-c", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1: %s%s", code, out.String(), errb.String())
	}
	if e := errb.String(); !strings.HasPrefix(e, "mifike: warning: "+path+":5: connections.c.psk: 6 octets") || !strings.Contains(e, "\nmifike: "+path+":3: ") || out.Len() != 0 {
		t.Errorf("stdout %q stderr:\n%s", out.String(), e)
	}
}
