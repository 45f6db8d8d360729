package interop

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// inNS runs fn on a thread inside network namespace ns: sockets fn
// creates stay there.
func inNS(t testing.TB, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	fn()
}

// tcpTransfer sends size random octets from namespace from to addr (a
// listener made in namespace to) and checks they arrive intact.
func tcpTransfer(t testing.TB, from, to, listen, dial string, size int) time.Duration {
	t.Helper()
	var ln net.Listener
	inNS(t, to, func() {
		var err error
		if ln, err = net.Listen("tcp", listen); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	data := make([]byte, size)
	rand.Read(data)
	var c net.Conn
	inNS(t, from, func() {
		var err error
		d := net.Dialer{Timeout: 5 * time.Second}
		if c, err = d.Dial("tcp", dial); err != nil {
			t.Fatalf("dial %s: %v", dial, err)
		}
	})
	start := time.Now()
	if _, err := io.Copy(c, bytes.NewReader(data)); err != nil {
		t.Fatalf("sending: %v", err)
	}
	c.Close()
	select {
	case h := <-got:
		if h != sha256.Sum256(data) {
			t.Fatalf("%d octets arrived altered", size)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not finish")
	}
	return time.Since(start)
}

func ping(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2"}, args...)...)
}

// vpnConf is an end user (virtual IPs from the gateway's pools) and a
// gateway protecting 10.78.10.0/24 and fd00:10::/64, with the userspace
// data plane.
func vpnConf(dir string, endUser bool, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ncontrol: {socket: %s/mifike.sock}\ndata_plane: userspace\ntun: {name: mfk0}\n", dir)
	if endUser {
		fmt.Fprintf(&b, "connections:\n  home:\n    remote_addrs: [10.78.100.1]\n    vips: [0.0.0.0, \"::\"]\n")
		fmt.Fprintf(&b, "    local: {auth: psk, id: ue.test}\n    remote: {auth: psk, id: gw.test}\n")
		fmt.Fprintf(&b, "    children:\n      net: {remote_ts: [10.78.10.0/24, \"fd00:10::/64\"], esp_proposals: aes128gcm16%s}\n", extra)
	} else {
		fmt.Fprintf(&b, "pools:\n  p4: {addrs: 10.99.0.0/24}\n  p6: {addrs: \"fd00:99::/120\"}\n")
		fmt.Fprintf(&b, "connections:\n  rw:\n    pools: [p4, p6]\n")
		fmt.Fprintf(&b, "    local: {auth: psk, id: gw.test}\n    remote: {auth: psk, id: ue.test}\n")
		fmt.Fprintf(&b, "    children:\n      net: {local_ts: [10.78.10.0/24, \"fd00:10::/64\"], esp_proposals: aes128gcm16%s}\n", extra)
	}
	fmt.Fprintf(&b, "    psk: %q\n    proposals: aes128-sha256-x25519\n", psk)
	return b.String()
}

// Real traffic through mifike↔mifike: the end user gets an IPv4 and an
// IPv6 virtual IP, pings the protected subnet over both, and sends 8 MB
// over TCP that arrive intact. Plain ESP (no NAT): IP protocol 50.
func TestTrafficTunnel(t *testing.T) {
	requireRoot(t)
	m, s := twoPaths(t, "mfkt")
	run(t, "ip", "-n", m, "addr", "add", "fd00:10::1/128", "dev", "lo")
	dir := t.TempDir()
	gw := startMifike(t, m, dir+"/gw", vpnConf(dir+"/gw", false, ""))
	ue := startMifike(t, s, dir+"/ue", vpnConf(dir+"/ue", true, ""))
	ue.mustCtl("initiate", "home")
	if !waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		sas := ue.sas()
		return len(sas) == 1 && sas[0].State == "ESTABLISHED" && len(sas[0].Children) == 1
	}) {
		t.Fatalf("not up:\n%s\n%s", ue.logTail(20), gw.logTail(20))
	}
	ping(t, s, "10.78.10.1")
	ping(t, s, "fd00:10::1")
	d := tcpTransfer(t, s, m, "10.78.10.1:5001", "10.78.10.1:5001", 8<<20)
	t.Logf("8 MiB over TCP through the tunnel in %v (%.0f Mbit/s)", d, float64(8<<23)/d.Seconds()/1e6)
	out := ue.mustCtl("list-sas")
	t.Logf("end user:\n%s", out)
	for _, l := range strings.Split(gw.log()+ue.log(), "\n") {
		if strings.Contains(l, "dropping") {
			t.Log(l)
		}
	}
	if !strings.Contains(out, "packets") {
		t.Fatalf("no traffic counted:\n%s", out)
	}
}
