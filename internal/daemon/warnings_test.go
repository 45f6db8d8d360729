package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The configuration's warnings (those mifike daemon --check prints) are
// logged at WARN, with the file, line and field as attributes, when the
// daemon starts and again on each reload, for the configuration then in
// force.
func TestConfigWarningsLogged(t *testing.T) {
	dir := t.TempDir()
	p := freePorts(t, 2)
	head := fmt.Sprintf("listen: [127.0.0.1]\nport: %d\nport_nat_t: %d\ndata_plane: none\ncontrol: {socket: %s}\n",
		p[0], p[1], filepath.Join(dir, "w.sock"))
	conn := "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: %s\n"
	path := filepath.Join(dir, "w.yaml")
	writeFile(t, path, head+fmt.Sprintf(conn, "secret"))
	r := startDaemon(t, path)
	short := fmt.Sprintf(`level=WARN msg="6 octets is short: a pre-shared key needs the entropy of a key`+
		`, or one recorded IKE_AUTH lets anyone guess it offline (RFC 7296 §2.15); use at least 20 random octets `+
		`(openssl rand -base64 32 makes one; write it as 0s...)" config=%s line=10 field=connections.c.psk`, path)
	if l := r.log.String(); strings.Count(l, short) != 1 {
		t.Fatalf("start: the log lacks\n%s\n%s", short, l)
	}

	// A long key, but the file is now readable by every local user.
	writeFile(t, path, head+fmt.Sprintf(conn, strings.Repeat("k", 32)))
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (backend{r.d}).Reload(); err != nil {
		t.Fatal(err)
	}
	exposed := fmt.Sprintf(`level=WARN msg="this file holds a secret and is readable by every local user (mode 0644); chmod 600 %s" config=%s line=10 field=connections.c.psk`, path, path)
	l := r.log.String()
	if !strings.Contains(l, exposed) || strings.Count(l, short) != 1 {
		t.Fatalf("reload: the log lacks\n%s\nor repeats the old warning:\n%s", exposed, l)
	}
}
