package kernelvm

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

const (
	plutoPath = "/usr/libexec/ipsec/pluto"
	whackPath = "/usr/libexec/ipsec/whack"
	lswNS     = "lswl" // libreswan: 192.0.2.1, subnets 10.1.0.0/24 and 10.1.1.0/24
	mfkNS     = "lswm" // mifike: 192.0.2.2, subnets 10.2.0.0/24 and 10.2.1.0/24
	lswPSK    = "interop-secret-for-libreswan"
)

// lswConf: connection a answers mifike's initiator, b initiates towards
// mifike's gateway; both only over TCP (enable-tcp=yes, RFC 8229 as
// libreswan names it). updown is a no-op: the routes are set up here, and
// the kernel's policies do the rest. a takes mifike from any address
// (right=%%any): libreswan answers MOBIKE only to such a peer.
const lswConf = `config setup
	listen-tcp=yes
conn a
	ikev2=yes
	authby=secret
	left=192.0.2.1
	leftid=@lsw.test
	leftsubnet=10.1.0.0/24
	leftupdown=%[1]s/updown
	right=%%any
	rightid=@mifike.test
	rightsubnet=10.2.0.0/24
	enable-tcp=yes
	tcp-remoteport=4500
	ike=aes256-sha2_256;dh19
	esp=aes256-sha2_256
	mobike=yes
	auto=add
conn b
	ikev2=yes
	authby=secret
	left=192.0.2.1
	leftid=@lsw-b.test
	leftsubnet=10.1.1.0/24
	leftupdown=%[1]s/updown
	right=192.0.2.2
	rightid=@mifike-b.test
	rightsubnet=10.2.1.0/24
	enable-tcp=yes
	tcp-remoteport=4500
	ike=aes256-sha2_256;dh19
	esp=aes256-sha2_256
	auto=add
`

// mifikeLswConf: to-lsw initiates with tcp: always; from-lsw is what the
// gateway's TCP listener (tcp_ports) answers. ESP is mifike's own
// (data_plane: userspace) or the kernel's (data_plane: kernel: the stream
// handed to espintcp), carried in the same TCP stream as IKE. to-lsw's
// Child SA has a DH group: libreswan's default pfs=yes refuses a rekey
// without KE payload (NO_PROPOSAL_CHOSEN) and uses the IKE SA's group.
const mifikeLswConf = `log:
  level: debug
control:
  socket: %[1]s/mifike.sock
listen: [192.0.2.2]
data_plane: %[3]s
tun: {name: mfklsw0, mtu: 1400}
tcp_ports: [4500]
connections:
  to-lsw:
    remote_addrs: [192.0.2.1]
    local: {auth: psk, id: "mifike.test"}
    remote: {auth: psk, id: "lsw.test"}
    psk: %[2]q
    proposals: "aes256-sha256-ecp256"
    tcp: always
    tcp_port: 4500
    children:
      net: {local_ts: [10.2.0.0/24], remote_ts: [10.1.0.0/24], esp_proposals: "aes256-sha256-ecp256"}
  to-lsw-fallback:
    remote_addrs: [192.0.2.1]
    local: {auth: psk, id: "mifike.test"}
    remote: {auth: psk, id: "lsw.test"}
    psk: %[2]q
    proposals: "aes256-sha256-ecp256"
    tcp: fallback
    tcp_fallback_after: 2s
    children:
      net: {local_ts: [10.2.0.0/24], remote_ts: [10.1.0.0/24], esp_proposals: "aes256-sha256-ecp256"}
  from-lsw:
    local: {auth: psk, id: "mifike-b.test"}
    remote: {auth: psk, id: "lsw-b.test"}
    psk: %[2]q
    proposals: "aes256-sha256-ecp256"
    children:
      net: {local_ts: [10.2.1.0/24], remote_ts: [10.1.1.0/24], esp_proposals: "aes256-sha256"}
`

// TestGuestLibreswan runs inside the VM: mifike against libreswan 4.10
// (Debian 12's pluto, packed by libreswan-pack.sh) with IKE and ESP in
// TCP (RFC 9329), in both roles, with pings through each tunnel both
// ways. libreswan's ESP is the kernel's: the stream is handed to the
// espintcp ULP, which Debian's kernel lacks, so run-vm.sh loads an
// espintcp.ko built out of tree. mifike's ESP is first its userspace
// data plane, then the kernel's, through the same espintcp.
func TestGuestLibreswan(t *testing.T) {
	for _, plane := range []string{"userspace", "kernel"} {
		t.Run(plane, func(t *testing.T) { libreswanOverTCP(t, plane) })
	}
}

func libreswanOverTCP(t *testing.T, plane string) {
	if os.Getenv("MIFIKE_IN_VM") == "" {
		t.Skip("runs inside the kernel VM; TestKernelVM boots it")
	}
	if _, err := os.Stat(plutoPath); err != nil {
		t.Skip("libreswan was not packed into the VM (run-vm.sh with VM_LIBRESWAN=1; its log says why not)")
	}
	bin, err := exec.LookPath("mifike")
	if err != nil {
		t.Fatal("no mifike binary in the VM's PATH")
	}
	dir := t.TempDir()
	setupLswNet(t)
	run := func(ns string, args ...string) (string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
		cmd.Env = append(os.Environ(), "MIFIKE_SOCKET="+dir+"/mifike.sock")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	os.WriteFile(filepath.Join(dir, "updown"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "ipsec.conf"), []byte(fmt.Sprintf(lswConf, dir)), 0o644)
	os.WriteFile(filepath.Join(dir, "ipsec.secrets"), []byte(fmt.Sprintf(
		"@lsw.test @mifike.test : PSK %[1]q\n@lsw-b.test @mifike-b.test : PSK %[1]q\n", lswPSK)), 0o600)
	os.WriteFile(filepath.Join(dir, "mifike.yaml"), []byte(fmt.Sprintf(mifikeLswConf, dir, lswPSK, plane)), 0o644)
	pluto := startIn(t, lswNS, filepath.Join(dir, "pluto.log"), plutoPath, "--nofork", "--stderrlog",
		"--config", dir+"/ipsec.conf", "--secretsfile", dir+"/ipsec.secrets", "--nssdir", "/etc/ipsec.d/nss",
		"--rundir", dir, "--dumpdir", dir)
	mfk := startIn(t, mfkNS, filepath.Join(dir, "mifike.log"), bin, "daemon", "-c", dir+"/mifike.yaml")
	defer func() {
		if t.Failed() {
			fmt.Printf("--- pluto log (tail):\n%s\n--- mifike log (tail):\n%s\n",
				tail(readLog(pluto), 60), tail(quiet(readLog(mfk)), 60))
		}
	}()
	if !demo.WaitFor(20*time.Second, func() bool {
		_, e1 := os.Stat(dir + "/pluto.ctl")
		_, e2 := os.Stat(dir + "/mifike.sock")
		return e1 == nil && e2 == nil
	}) {
		t.Fatal("pluto or mifike did not start")
	}
	whack := func(args ...string) string {
		out, err := run(lswNS, append([]string{whackPath, "--ctlsocket", dir + "/pluto.ctl"}, args...)...)
		if err != nil {
			t.Fatalf("whack %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// pluto's control socket comes before its connections and its TCP
	// listener (addconn loads them afterwards): a connect in between is
	// refused and mifike tries again only at its first retransmission.
	if !demo.WaitFor(20*time.Second, func() bool {
		st, _ := run(lswNS, whackPath, "--ctlsocket", dir+"/pluto.ctl", "--status")
		// A listening socket (state 0A) on port 4500 (1194) in
		// pluto's namespace; /proc/net is the reader's namespace.
		tcp, _ := run(lswNS, "cat", "/proc/net/tcp")
		return strings.Contains(st, `"b":`) && strings.Contains(tcp, ":1194 00000000:0000 0A")
	}) {
		t.Fatal("pluto did not load its connections or listen on TCP port 4500")
	}
	if v, err := os.ReadFile("/etc/libreswan-version"); err == nil {
		if f := strings.Fields(string(v)); len(f) >= 2 {
			figure("peer: %s %s (Debian 12), espintcp.ko built out of tree for Debian's kernel", f[0], f[1])
		}
	}

	t.Run("mifike initiates over TCP to libreswan", func(t *testing.T) {
		start := time.Now()
		if out, err := run(mfkNS, bin, "initiate", "to-lsw", "--timeout", "30s"); err != nil {
			t.Fatalf("mifike initiate: %v\n%s", err, out)
		}
		up := time.Since(start)
		sa, _ := run(mfkNS, bin, "list-sas")
		if !strings.Contains(sa, "TCP-encapsulated") {
			t.Fatalf("the IKE SA is not TCP-encapsulated:\n%s", sa)
		}
		pingBoth(t, run, "10.2.0.1", "10.1.0.1")
		figure("mifike (%s ESP) -> libreswan over TCP: IKE SA and Child SA up in %.2fs; 3/3 pings each way through ESP in the stream", plane, up.Seconds())
	})

	t.Run("TCP transfer through the stream", func(t *testing.T) {
		// Full-size ESP packets, many to a TCP segment of the outer
		// stream and split across them: the framing of RFC 9329 §3 on
		// both sides, not only a ping's worth.
		const size = 4 << 20
		d, err := transferNS(mfkNS, netip.MustParseAddr("10.2.0.1"), lswNS, netip.MustParseAddr("10.1.0.1"), size)
		if err != nil {
			t.Fatal(err)
		}
		figure("TCP transfer mifike (%s ESP) -> libreswan through ESP in TCP: %d MiB in %.2fs (%.1f Mbit/s under TCG emulation)",
			plane, size>>20, d.Seconds(), float64(size)*8/d.Seconds()/1e6)
	})

	t.Run("mifike rekeys the Child SA over TCP", func(t *testing.T) {
		sa, _ := run(mfkNS, bin, "list-sas", "--json")
		old := regexp.MustCompile(`"in_spi":\s*"([0-9a-f]{8})"`).FindStringSubmatch(sa)
		if old == nil {
			t.Fatalf("no Child SA in:\n%s", sa)
		}
		if out, err := run(mfkNS, bin, "rekey", "1", "--child", old[1], "--timeout", "20s"); err != nil {
			t.Fatalf("mifike rekey: %v\n%s", err, out)
		}
		if !demo.WaitFor(10*time.Second, func() bool {
			sa, _ = run(mfkNS, bin, "list-sas")
			return !strings.Contains(sa, old[1]+"_i")
		}) {
			t.Fatalf("Child SA %s is still there after the rekey:\n%s", old[1], sa)
		}
		pingBoth(t, run, "10.2.0.1", "10.1.0.1")
		figure("Child SA %s rekeyed by mifike with CREATE_CHILD_SA over TCP (PFS, ecp256); 3/3 pings each way through the new one", old[1])
	})

	t.Run("MOBIKE move over TCP", func(t *testing.T) {
		// A second address on mifike's side; the move opens a stream
		// from it and sends UPDATE_SA_ADDRESSES there (RFC 9329 §8,
		// RFC 4555 §3.5).
		if out, err := run(mfkNS, "ip", "addr", "add", "192.0.2.3/24", "dev", "lswv1"); err != nil {
			t.Fatalf("ip addr add: %v\n%s", err, out)
		}
		start := time.Now()
		if out, err := run(mfkNS, bin, "move", "1", "--local", "192.0.2.3", "--timeout", "20s"); err != nil {
			sa, _ := run(mfkNS, bin, "list-sas")
			t.Fatalf("mifike move: %v\n%s\n%s\n%s", err, out, sa, whack("--status"))
		}
		moved := time.Since(start)
		st := whack("--trafficstatus")
		if !strings.Contains(st, "192.0.2.3") {
			t.Fatalf("libreswan did not take the new address:\n%s", st)
		}
		pingBoth(t, run, "10.2.0.1", "10.1.0.1")
		figure("MOBIKE move of mifike's IKE SA to 192.0.2.3 over a new TCP stream, accepted by libreswan in %.2fs; 3/3 pings each way", moved.Seconds())
	})

	t.Run("tcp: fallback when libreswan does not answer on UDP", func(t *testing.T) {
		// UDP to ports 500 and 4500 dropped as it reaches libreswan's
		// host (a blackhole routing rule, which input routing applies
		// too; the VM has no firewall tools): mifike's
		// IKE_SA_INIT over UDP goes unanswered, and after
		// tcp_fallback_after (2s, at least one retransmission) it
		// starts again over TCP (RFC 9329 §5.1).
		if out, err := run(mfkNS, bin, "terminate", "to-lsw", "--timeout", "20s"); err != nil {
			t.Fatalf("mifike terminate to-lsw: %v\n%s", err, out)
		}
		for _, port := range []string{"500", "4500"} {
			if out, err := run(lswNS, "ip", "rule", "add", "ipproto", "17", "dport", port, "blackhole"); err != nil {
				t.Fatalf("ip rule: %v\n%s", err, out)
			}
			defer run(lswNS, "ip", "rule", "del", "ipproto", "17", "dport", port, "blackhole")
		}
		start := time.Now()
		if out, err := run(mfkNS, bin, "initiate", "to-lsw-fallback", "--timeout", "40s"); err != nil {
			sa, _ := run(mfkNS, bin, "list-sas")
			t.Fatalf("mifike initiate to-lsw-fallback: %v\n%s\n%s", err, out, sa)
		}
		up := time.Since(start)
		sa, _ := run(mfkNS, bin, "list-sas")
		if !strings.Contains(sa, "to-lsw-fallback") || !strings.Contains(sa, "TCP-encapsulated") {
			t.Fatalf("the fallback connection's IKE SA is not TCP-encapsulated:\n%s", sa)
		}
		if up < 2*time.Second {
			t.Fatalf("up in %v, before the fallback time: was UDP answered?", up)
		}
		pingBoth(t, run, "10.2.0.1", "10.1.0.1")
		figure("tcp: fallback to libreswan with UDP 500/4500 blackholed: up over TCP in %.2fs (fallback after 2s); 3/3 pings each way", up.Seconds())
	})

	t.Run("libreswan initiates over TCP to mifike's TCP listener", func(t *testing.T) {
		start := time.Now()
		out := whack("--initiate", "--name", "b")
		if !strings.Contains(out, "established Child SA") || !strings.Contains(out, "ESPinTCP") {
			t.Fatalf("libreswan did not establish an ESP-in-TCP Child SA:\n%s", out)
		}
		up := time.Since(start)
		var sa string
		if !demo.WaitFor(10*time.Second, func() bool {
			sa, _ = run(mfkNS, bin, "list-sas")
			return strings.Contains(sa, "from-lsw") || strings.Count(sa, "INSTALLED") >= 2
		}) {
			t.Fatalf("mifike has no SA of from-lsw:\n%s", sa)
		}
		pingBoth(t, run, "10.2.1.1", "10.1.1.1")
		figure("libreswan -> mifike (%s ESP, tcp_ports: [4500]): IKE SA and Child SA up in %.2fs; 3/3 pings each way", plane, up.Seconds())
	})

	if plane == "kernel" {
		t.Run("mifike's kernel carried its ESP over espintcp", func(t *testing.T) {
			// Both Child SAs, both directions: the kernel found the
			// streams mifike handed to espintcp by their ports.
			st, _ := run(mfkNS, "ip", "-s", "xfrm", "state")
			if n := strings.Count(st, "encap type espintcp"); n != 4 {
				t.Fatalf("want 4 XFRM states with espintcp encapsulation in mifike's namespace, have %d:\n%s", n, st)
			}
			if out, err := run(mfkNS, "ip", "link", "show", "mfklsw0"); err == nil {
				t.Fatalf("the kernel data plane made a TUN device:\n%s", out)
			}
			figure("mifike's XFRM states: 4 with encap type espintcp, no TUN device")
		})
	}

	t.Run("libreswan's kernel carried the ESP over espintcp", func(t *testing.T) {
		st, _ := run(lswNS, "ip", "xfrm", "state")
		if n := strings.Count(st, "encap type espintcp"); n != 4 {
			t.Fatalf("want 4 XFRM states with espintcp encapsulation, have %d:\n%s", n, st)
		}
		traffic := whack("--trafficstatus")
		m := regexp.MustCompile(`"(a|b)".*inBytes=(\d+), outBytes=(\d+)`).FindAllStringSubmatch(traffic, -1)
		if len(m) != 2 {
			t.Fatalf("want traffic of a and b:\n%s", traffic)
		}
		for _, c := range m {
			in, _ := strconv.Atoi(c[2])
			out, _ := strconv.Atoi(c[3])
			if in == 0 || out == 0 {
				t.Fatalf("libreswan's %s counted %d octets in, %d out:\n%s", c[1], in, out, traffic)
			}
			figure("libreswan's Child SA %s (kernel, espintcp): %d octets in, %d out", c[1], in, out)
		}
	})
}

// setupLswNet: two namespaces joined by a veth, each with its subnets'
// first addresses on a dummy device, and on libreswan's side routes to
// mifike's subnets (libreswan's updown would add them; ours is a no-op).
func setupLswNet(t *testing.T) {
	t.Helper()
	// iproute2 keeps named namespaces in /var/run/netns; busybox's root
	// has no /var.
	os.MkdirAll("/var/run/netns", 0o755)
	cmds := [][]string{
		{"netns", "add", lswNS}, {"netns", "add", mfkNS},
		{"link", "add", "lswv0", "netns", lswNS, "type", "veth", "peer", "name", "lswv1", "netns", mfkNS},
	}
	for i, ns := range []string{lswNS, mfkNS} {
		cmds = append(cmds,
			[]string{"-n", ns, "addr", "add", fmt.Sprintf("192.0.2.%d/24", i+1), "dev", fmt.Sprintf("lswv%d", i)},
			[]string{"-n", ns, "link", "set", fmt.Sprintf("lswv%d", i), "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "link", "add", "d0", "type", "dummy"},
			[]string{"-n", ns, "link", "set", "d0", "up"},
			[]string{"-n", ns, "addr", "add", fmt.Sprintf("10.%d.0.1/32", i+1), "dev", "d0"},
			[]string{"-n", ns, "addr", "add", fmt.Sprintf("10.%d.1.1/32", i+1), "dev", "d0"})
	}
	cmds = append(cmds,
		[]string{"-n", lswNS, "route", "add", "10.2.0.0/24", "dev", "lswv0", "src", "10.1.0.1"},
		[]string{"-n", lswNS, "route", "add", "10.2.1.0/24", "dev", "lswv0", "src", "10.1.1.1"})
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", lswNS).Run()
		exec.Command("ip", "netns", "del", mfkNS).Run()
	})
}

// startIn starts a daemon in a namespace with its output in log; it is
// stopped (SIGTERM, then SIGKILL) when the test ends.
func startIn(t *testing.T, ns, log string, args ...string) string {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		f.Close()
	})
	return log
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	// pluto's debug lines start with "| " after the time stamp.
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, ": | ") && !strings.HasPrefix(l, "| ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// pingBoth pings from mifike's address to libreswan's and back; each
// ping crosses the TCP stream as ESP both ways.
func pingBoth(t *testing.T, run func(string, ...string) (string, error), mifikeAddr, lswAddr string) {
	t.Helper()
	for _, p := range [][3]string{{mfkNS, mifikeAddr, lswAddr}, {lswNS, lswAddr, mifikeAddr}} {
		out, err := run(p[0], "ping", "-c", "3", "-W", "3", "-I", p[1], p[2])
		if err != nil || !strings.Contains(out, "3 packets received") {
			t.Fatalf("ping from %s to %s: %v\n%s", p[1], p[2], err, out)
		}
	}
}
