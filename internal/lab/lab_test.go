//go:build linux

package lab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (CI runs as root; run `sudo go test ./internal/lab`)")
	}
}

// Two namespaces joined by a veth pair ping each other; Close kills the
// processes and removes the namespaces.
func TestPingAcross(t *testing.T) {
	requireRoot(t)
	l, err := New(context.Background(), "mfklt")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddNS("b")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, "mfklt-") || a == b {
		t.Fatalf("namespace names %q, %q", a, b)
	}
	if err := l.Veth(End{NS: a, Dev: "a0", Addrs: []string{"10.66.0.1/24"}}, End{NS: b, Dev: "b0", Addrs: []string{"10.66.0.2/24"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Forwarding(a); err != nil {
		t.Fatal(err)
	}
	out, err := l.Run(context.Background(), a, "ping", "-n", "-c", "1", "-W", "2", "10.66.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "1 received") {
		t.Fatalf("ping output:\n%s", out)
	}
	if _, err := l.Run(context.Background(), a, "ping", "-n", "-c", "1", "-W", "1", "10.66.9.9"); err == nil || !strings.Contains(err.Error(), "ping") {
		t.Fatalf("ping to nowhere: %v", err)
	}

	p, err := l.Start(b, nil, "sh", "-c", "echo ready; exec sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.Output(), "ready"); {
		if time.Now().After(deadline) {
			t.Fatalf("no output from the process: %q", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the process running")
	}
	for _, ns := range []string{a, b} {
		if _, err := os.Stat(netnsDir + "/" + ns); err == nil {
			t.Errorf("namespace %s survived Close", ns)
		}
	}
	if _, err := l.AddNS("c"); err == nil {
		t.Error("AddNS after Close succeeded")
	}
}

// Cancelling New's context (what a SIGINT handler does) closes the lab.
func TestContextCloses(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	l, err := New(ctx, "mfklt")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Start(a, nil, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	// A Close racing the context's (a deferred one as the caller
	// returns) waits until everything is gone.
	l.Close()
	select {
	case <-p.Done():
	default:
		t.Fatal("cancelling the context left the process running")
	}
	if _, err := os.Stat(netnsDir + "/" + a); err == nil {
		t.Fatalf("namespace %s survived the cancellation", a)
	}
}
