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
		b.WriteString("metrics: {listen: 127.0.0.1:9847}\n")
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
	d = tcpTransfer(t, s, m, "[fd00:10::1]:5001", "[fd00:10::1]:5001", 4<<20)
	t.Logf("4 MiB over TCP inside IPv6 in %v", d)
	// The Prometheus endpoint counts the traffic.
	var page string
	inNS(t, s, func() {
		// Dialled on this thread, so in the namespace (http.Get would
		// dial from another goroutine).
		c, err := net.Dial("tcp", "127.0.0.1:9847")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
		b, _ := io.ReadAll(c)
		page = string(b)
	})
	var out float64
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, `mifike_child_sa_bytes{direction="out"}`) {
			fmt.Sscanf(strings.Fields(l)[1], "%g", &out)
		}
	}
	if out < 12<<20 {
		t.Fatalf("metrics count %v bytes out, want at least the 12 MiB sent:\n%s", out, page)
	}
	table := ue.mustCtl("list-sas")
	t.Logf("end user:\n%s", table)
	for _, l := range strings.Split(gw.log()+ue.log(), "\n") {
		if strings.Contains(l, "dropping") {
			t.Log(l)
		}
	}
	if !strings.Contains(table, "packets") {
		t.Fatalf("no traffic counted:\n%s", table)
	}
}

// natPath builds end user (ns u, 10.81.1.2) — NAT router (ns n,
// masquerading onto 10.81.2.0/24) — gateway (ns g, 10.81.2.2 and the
// protected 10.78.10.1, fd00:10::1 on lo).
func natPath(t testing.TB, prefix string) (u, n, g string) {
	t.Helper()
	prefix = nsPrefix(prefix)
	u, n, g = prefix+"-u", prefix+"-n", prefix+"-g"
	for _, ns := range []string{u, n, g} {
		run(t, "sh", "-c", "ip netns del "+ns+" 2>/dev/null || true")
		run(t, "ip", "netns", "add", ns)
	}
	t.Cleanup(func() {
		for _, ns := range []string{u, n, g} {
			run(t, "sh", "-c", "ip netns del "+ns+" 2>/dev/null || true")
		}
	})
	run(t, "ip", "link", "add", "u0", "netns", u, "type", "veth", "peer", "name", "nat0", "netns", n)
	run(t, "ip", "link", "add", "g0", "netns", g, "type", "veth", "peer", "name", "nat1", "netns", n)
	for _, c := range []string{
		u + " link set lo up", n + " link set lo up", g + " link set lo up",
		u + " addr add 10.81.1.2/24 dev u0", n + " addr add 10.81.1.1/24 dev nat0",
		n + " addr add 10.81.2.1/24 dev nat1", g + " addr add 10.81.2.2/24 dev g0",
		u + " link set u0 up", n + " link set nat0 up", n + " link set nat1 up", g + " link set g0 up",
		u + " route add default via 10.81.1.1",
		g + " addr add 10.78.10.1/32 dev lo", g + " addr add fd00:10::1/128 dev lo",
	} {
		f := strings.Fields(c)
		run(t, "ip", append([]string{"-n", f[0]}, f[1:]...)...)
	}
	run(t, "ip", "netns", "exec", n, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	run(t, "ip", "netns", "exec", n, "nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post oifname nat1 masquerade")
	return u, n, g
}

// Through a NAT (nftables masquerade), both ends detect it and carry ESP
// in UDP on port 4500 (RFC 3948); the tunnel passes traffic.
func TestTrafficBehindNAT(t *testing.T) {
	requireRoot(t)
	requireTools(t, "nft")
	u, _, g := natPath(t, "mfkn")
	dir := t.TempDir()
	gwConf := strings.Replace(vpnConf(dir+"/gw", false, ""), "connections:", "connections:", 1)
	ueConf := strings.Replace(vpnConf(dir+"/ue", true, ""), "remote_addrs: [10.78.100.1]", "remote_addrs: [10.81.2.2]", 1)
	gw := startMifike(t, g, dir+"/gw", gwConf)
	ue := startMifike(t, u, dir+"/ue", ueConf)
	ue.mustCtl("initiate", "home")
	if !waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		sas := ue.sas()
		return len(sas) == 1 && sas[0].State == "ESTABLISHED" && len(sas[0].Children) == 1
	}) {
		t.Fatalf("not up:\n%s\n%s", ue.logTail(20), gw.logTail(20))
	}
	ping(t, u, "10.78.10.1")
	tcpTransfer(t, u, g, "10.78.10.1:5002", "10.78.10.1:5002", 2<<20)
	out := gw.mustCtl("list-sas")
	t.Logf("gateway:\n%s", out)
	if !strings.Contains(out, "NAT-T(remote)") || !strings.Contains(out, "10.81.2.1[") {
		t.Fatalf("the gateway does not see the NAT:\n%s", out)
	}
	if !strings.Contains(out, "packets") {
		t.Fatal("no traffic counted on the gateway")
	}
}

// Transport mode (RFC 4303 §3.1.1) between two hosts: the selectors are
// the hosts' own addresses, ping and TCP between them go through ESP.
func TestTrafficTransport(t *testing.T) {
	requireRoot(t)
	for _, fam := range []struct{ name, a, b, pingB, listenB string }{
		{"ipv4", "10.78.0.2", "10.78.0.1", "10.78.0.1", "10.78.0.1:5003"},
		{"ipv6", "fd00:78::2", "fd00:78::1", "fd00:78::1", "[fd00:78::1]:5003"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			m, s := twoPaths(t, "mfkr")
			run(t, "ip", "-n", m, "addr", "add", "fd00:78::1/64", "dev", "m0", "nodad")
			run(t, "ip", "-n", s, "addr", "add", "fd00:78::2/64", "dev", "s0", "nodad")
			dir := t.TempDir()
			conf := func(d string, initiator bool) string {
				var b strings.Builder
				fmt.Fprintf(&b, "log: {level: debug}\ncontrol: {socket: %s/mifike.sock}\ndata_plane: userspace\ntun: {name: mfk0}\nconnections:\n  host:\n", d)
				if initiator {
					fmt.Fprintf(&b, "    local_addrs: [%q]\n    remote_addrs: [%q]\n    local: {auth: psk, id: a.test}\n    remote: {auth: psk, id: b.test}\n", fam.a, fam.b)
				} else {
					fmt.Fprintf(&b, "    local_addrs: [%q]\n    local: {auth: psk, id: b.test}\n    remote: {auth: psk, id: a.test}\n", fam.b)
				}
				fmt.Fprintf(&b, "    psk: %q\n    proposals: aes128-sha256-x25519\n    children:\n      t: {mode: transport, esp_proposals: aes128-sha256}\n", psk)
				return b.String()
			}
			b := startMifike(t, m, dir+"/b", conf(dir+"/b", false))
			a := startMifike(t, s, dir+"/a", conf(dir+"/a", true))
			a.mustCtl("initiate", "host")
			if !waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
				sas := a.sas()
				return len(sas) == 1 && sas[0].State == "ESTABLISHED" && len(sas[0].Children) == 1
			}) {
				t.Fatalf("not up:\n%s\n%s", a.logTail(20), b.logTail(20))
			}
			ping(t, s, fam.pingB)
			tcpTransfer(t, s, m, fam.listenB, fam.listenB, 2<<20)
			out := a.mustCtl("list-sas")
			t.Logf("%s", out)
			if !strings.Contains(out, "INSTALLED transport") || !strings.Contains(out, "packets") {
				t.Fatalf("no transport-mode traffic:\n%s", out)
			}
		})
	}
}

// RFC 4303 §3.4.3: an ESP packet captured on the wire and sent again is
// dropped by the receiver's anti-replay window and counted (logged once,
// not per packet); the tunnel keeps working.
func TestReplayedESPDropped(t *testing.T) {
	requireRoot(t)
	m, s := twoPaths(t, "mfkp")
	dir := t.TempDir()
	gw := startMifike(t, m, dir+"/gw", vpnConf(dir+"/gw", false, ""))
	ue := startMifike(t, s, dir+"/ue", vpnConf(dir+"/ue", true, ""))
	ue.mustCtl("initiate", "home")
	if !waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		sas := ue.sas()
		return len(sas) == 1 && len(sas[0].Children) == 1
	}) {
		t.Fatalf("not up:\n%s\n%s", ue.logTail(20), gw.logTail(20))
	}
	// A raw protocol-50 socket in the end user's namespace sees a copy
	// of every ESP packet the gateway sends it.
	var sniff *net.IPConn
	inNS(t, s, func() {
		var err error
		if sniff, err = net.ListenIP("ip4:50", &net.IPAddr{IP: net.IPv4zero}); err != nil {
			t.Fatal(err)
		}
	})
	defer sniff.Close()
	ping(t, s, "10.78.10.1")
	sniff.SetReadDeadline(time.Now().Add(5 * time.Second))
	pkt := make([]byte, 2048)
	n, from, err := sniff.ReadFrom(pkt) // Go strips the IPv4 header
	if err != nil {
		t.Fatalf("no ESP captured: %v", err)
	}
	// The attacker sends it again, from the gateway's address.
	inNS(t, m, func() {
		c, err := net.DialIP("ip4:50", &net.IPAddr{IP: from.(*net.IPAddr).IP}, &net.IPAddr{IP: net.ParseIP("10.78.0.2")})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range 5 {
			if _, err := c.Write(pkt[:n]); err != nil {
				t.Fatal(err)
			}
		}
	})
	if !waitFor(30, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		return strings.Contains(ue.log(), "reason=replay")
	}) {
		t.Fatalf("replay not reported:\n%s", ue.logTail(20))
	}
	if c := strings.Count(ue.log(), "reason=replay"); c != 1 {
		t.Errorf("replay logged %d times for 5 packets; want once (rate limited)", c)
	}
	ping(t, s, "10.78.10.1")
}

// RFC 7296 §2.8: Child SA rekeys, from both ends, during a steady UDP
// stream lose no datagram (make-before-break in the data plane).
func TestRekeyUnderTraffic(t *testing.T) {
	requireRoot(t)
	m, s := twoPaths(t, "mfkk")
	dir := t.TempDir()
	gw := startMifike(t, m, dir+"/gw", vpnConf(dir+"/gw", false, ""))
	ue := startMifike(t, s, dir+"/ue", vpnConf(dir+"/ue", true, ""))
	ue.mustCtl("initiate", "home")
	var vip string
	if !waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		sas := ue.sas()
		if len(sas) == 1 && len(sas[0].Children) == 1 {
			out := ue.mustCtl("list-sas")
			if i := strings.Index(out, "virtual IPs "); i >= 0 {
				vip = strings.Trim(strings.Fields(out[i+len("virtual IPs "):])[0], ",")
			}
			return true
		}
		return false
	}) {
		t.Fatalf("not up:\n%s\n%s", ue.logTail(20), gw.logTail(20))
	}
	var rx *net.UDPConn
	inNS(t, m, func() {
		var err error
		if rx, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("10.78.10.1"), Port: 5004}); err != nil {
			t.Fatal(err)
		}
	})
	defer rx.Close()
	rx.SetReadBuffer(4 << 20)
	const total = 3000
	got := make(chan int)
	go func() {
		seen := map[uint32]bool{}
		buf := make([]byte, 2048)
		for {
			rx.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := rx.Read(buf)
			if err != nil {
				break
			}
			if n >= 4 {
				seen[uint32(buf[0])<<24|uint32(buf[1])<<16|uint32(buf[2])<<8|uint32(buf[3])] = true
			}
		}
		got <- len(seen)
	}()
	var tx *net.UDPConn
	inNS(t, s, func() {
		var err error
		if tx, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(vip)}, &net.UDPAddr{IP: net.ParseIP("10.78.10.1"), Port: 5004}); err != nil {
			t.Fatalf("from %q: %v", vip, err)
		}
	})
	defer tx.Close()
	rekeys := 0
	for i := range total {
		msg := make([]byte, 200)
		msg[0], msg[1], msg[2], msg[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if _, err := tx.Write(msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		if i%700 == 350 {
			side := ue
			if rekeys%2 == 1 {
				side = gw
			}
			sas := side.sas()
			side.mustCtl("rekey", fmt.Sprint(sas[0].ID), "--child", sas[0].Children[0].InSPI)
			rekeys++
		}
	}
	n := <-got
	t.Logf("%d of %d datagrams arrived across %d Child SA rekeys", n, total, rekeys)
	if n != total {
		t.Fatalf("%d datagrams lost across the rekeys", total-n)
	}
	if out := ue.mustCtl("list-sas"); strings.Count(out, "INSTALLED") != 1 {
		t.Fatalf("old Child SAs left over:\n%s", out)
	}
}

const trafficSwanctl = `connections {
    traffic {
        version = 2
        remote_addrs = 10.77.0.1
        proposals = aes128-sha256-x25519
        local { auth = psk
            id = s-traffic.test }
        remote { auth = psk
            id = m-traffic.test }
        children { net { local_ts = 10.77.20.0/24
            remote_ts = 10.77.10.0/24
            esp_proposals = aes128gcm16 } }
    }
}
secrets { ike { id-1 = s-traffic.test
    id-2 = m-traffic.test
    secret = "` + psk + `" } }
`

// Traffic both ways between mifike's userspace ESP and strongSwan's
// kernel-libipsec (which forces UDP encapsulation, RFC 3948), including
// across a Child SA rekey by each side.
func TestStrongSwanTraffic(t *testing.T) {
	requireRoot(t)
	requireTools(t, charonPath, "swanctl")
	tp := newTopology(t, "mfkw")
	dir := t.TempDir()
	md := startMifike(t, tp.m, dir+"/mifike", fmt.Sprintf(`log: {level: debug}
control: {socket: %s/mifike/mifike.sock}
data_plane: userspace
tun: {name: mfk0}
connections:
  traffic:
    local: {auth: psk, id: m-traffic.test}
    remote: {auth: psk, id: s-traffic.test}
    psk: %q
    proposals: aes128-sha256-x25519
    children:
      net: {local_ts: [10.77.10.0/24], remote_ts: [10.77.20.0/24], esp_proposals: aes128gcm16}
`, dir, psk))
	ch := startCharon(t, tp.s, dir+"/swan", trafficSwanctl, nil)
	ch.swanctl("--initiate", "--ike", "traffic", "--child", "net")
	if !waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		sas := md.sas()
		return len(sas) == 1 && len(sas[0].Children) == 1
	}) {
		t.Fatalf("not up:\n%s\n%s", md.logTail(20), ch.logTail(20))
	}
	// kernel-libipsec's device; charon installs no routes here.
	run(t, "ip", "-n", tp.s, "route", "add", "10.77.10.0/24", "dev", "ipsec0", "src", "10.77.20.1")
	check := func(when string) {
		ping(t, tp.s, "-I", "10.77.20.1", "10.77.10.1")
		ping(t, tp.m, "-I", "10.77.10.1", "10.77.20.1")
		tcpTransfer(t, tp.s, tp.m, "10.77.10.1:5005", "10.77.10.1:5005", 1<<20)
		t.Logf("%s: pings both ways and 1 MiB over TCP", when)
	}
	check("established")
	sas := md.sas()
	md.mustCtl("rekey", fmt.Sprint(sas[0].ID), "--child", sas[0].Children[0].InSPI)
	time.Sleep(time.Second)
	check("after mifike's Child SA rekey")
	ch.swanctl("--rekey", "--child", "net")
	time.Sleep(time.Second)
	check("after strongSwan's Child SA rekey")
	out := md.mustCtl("list-sas")
	t.Logf("mifike:\n%s\nstrongSwan:\n%s", out, ch.swanctl("--list-sas"))
	if !strings.Contains(out, "packets") {
		t.Fatal("mifike counted no traffic")
	}
}
