package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mifike import-swanctl converts, warns on stderr as FILE:LINE: KEY: why,
// writes -o OUT mode 0600 (it holds secrets), and the result passes
// mifike daemon --check.
func TestImportSwanctlCommand(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "swanctl.conf")
	writeTestFile(t, conf, `connections {
  home {
    remote_addrs = 192.0.2.1
    local { auth = psk
      id = ue.example }
    remote { auth = psk
      id = gw.example }
    children { net { remote_ts = 10.0.0.0/8
      updown = /bin/true } }
  }
}
secrets { ike-1 { id = gw.example
  secret = "a long enough pre-shared key 0123456789" } }
`)
	out := filepath.Join(dir, "mifike.yaml")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"import-swanctl", conf, "-o", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if want := conf + ":9: connections.home.children.net.updown: updown scripts are not supported"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q lacks %q", stderr.String(), want)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", out, st, err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := checkConfig(out, &stdout, &stderr); code != 0 {
		t.Fatalf("--check: %s", stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"import-swanctl", conf}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), `psk: "a long enough pre-shared key 0123456789"`) {
		t.Errorf("to stdout: exit %d\n%s", code, stdout.String())
	}
	if code := run([]string{"import-swanctl", filepath.Join(dir, "none.conf")}, &stdout, &stderr); code != 1 {
		t.Errorf("a missing file: exit %d", code)
	}
	if code := run([]string{"import-swanctl"}, &stdout, &stderr); code != 2 {
		t.Errorf("no file: exit %d", code)
	}
}

func writeTestFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
