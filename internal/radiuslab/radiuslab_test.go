//go:build linux

package radiuslab

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/lab"
)

// The users file quotes what needs quoting and lists reply items.
func TestUsersFile(t *testing.T) {
	got := usersFile([]User{
		{Name: "alice", Password: `pa"ss\word`, FramedIPAddress: netip.MustParseAddr("10.0.0.1"),
			SessionTimeout: 90 * time.Second, Class: "c1", Reply: []string{`Reply-Message = "hi"`}},
		{Name: "bob", Password: "x"},
	})
	want := `"alice" Cleartext-Password := "pa\"ss\\word"
	Framed-IP-Address = 10.0.0.1,
	Session-Timeout = 90,
	Class = "c1",
	Reply-Message = "hi"

"bob" Cleartext-Password := "x"

`
	if got != want {
		t.Errorf("users file:\n%s\nwant:\n%s", got, want)
	}
}

// Two servers at once get their own ports and directories; Close kills
// the process and removes the directory.
func TestStartTwoAndClose(t *testing.T) {
	a := Start(t, Options{})
	b := Start(t, Options{Users: []User{{Name: "u", Password: "p"}}})
	if a.AuthPort == b.AuthPort || a.AcctPort == b.AcctPort || a.AuthPort == a.AcctPort || a.Dir == b.Dir {
		t.Fatalf("ports %v/%v and %v/%v, dirs %s %s", a.AuthAddr(), a.AcctAddr(), b.AuthAddr(), b.AcctAddr(), a.Dir, b.Dir)
	}
	if len(a.Secret) < 16 || a.Secret == b.Secret {
		t.Errorf("secrets not random: %q %q", a.Secret, b.Secret)
	}
	a.Close()
	select {
	case <-a.proc.Done():
	default:
		t.Error("process still running after Close")
	}
	if _, err := os.Stat(a.Dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left behind: %v", a.Dir, err)
	}
	// b still answers: eapol_test with EAP-MD5 (-n: MD5 makes no MSK).
	out, err := b.EAPOLTest(context.Background(), `network={
	key_mgmt=IEEE8021X
	eap=MD5
	identity="u"
	password="p"
}`, "-n")
	if strings.Contains(errString(err), "not installed") {
		t.Skip(err)
	}
	if err != nil || !strings.Contains(out, "SUCCESS") {
		t.Errorf("eapol_test against the second server: %v\n%s", err, out)
	}
}

// A server in a lab namespace, on an address of that namespace,
// reachable from inside it.
func TestInLabNamespace(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	l, err := lab.New(context.Background(), "mfkrl")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ns, err := l.AddNS("radius")
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.AddNS("nas")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(lab.End{NS: ns, Dev: "r0", Addrs: []string{"10.77.0.1/24"}}, lab.End{NS: other, Dev: "n0", Addrs: []string{"10.77.0.2/24"}}); err != nil {
		t.Fatal(err)
	}
	srv := Start(t, Options{Lab: l, NS: ns, Address: netip.MustParseAddr("10.77.0.1"),
		Users: []User{{Name: "alice", Password: "wonderland"}}})
	if srv.AuthPort != 1812 || srv.AcctPort != 1813 {
		t.Errorf("ports %d/%d, want 1812/1813 in a namespace", srv.AuthPort, srv.AcctPort)
	}
	// eapol_test from the other namespace, across the veth link.
	conf := srv.Dir + "/nas.conf"
	if err := os.WriteFile(conf, []byte(`network={
	key_mgmt=IEEE8021X
	eap=MSCHAPV2
	identity="alice"
	password="wonderland"
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := l.Run(context.Background(), other, "eapol_test", "-c", conf, "-a", "10.77.0.1", "-s", srv.Secret, "-t", "20")
	if strings.Contains(errString(err), "executable file not found") {
		t.Skip("eapol_test is not installed; run scripts/install-deps.sh (Debian package eapoltest)")
	}
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("eapol_test from namespace %s: %v\n%s", other, err, out)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A port already taken: New fails, saying so, instead of hanging until
// its start timeout.
func TestPortInUseFails(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	taken := Start(t, Options{})
	_, err := New(context.Background(), Options{AuthPort: taken.AuthPort, AcctPort: taken.AcctPort, StartTimeout: time.Minute})
	if !errors.Is(err, errBind) {
		t.Fatalf("got %v, want errBind", err)
	}
}
