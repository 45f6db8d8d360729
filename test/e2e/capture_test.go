package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

// linkCapture records one of the end user's links on the router's side
// (dumpcap), for tshark to check afterwards with the end user's key log
// (Options.KeyLog): that Wireshark decrypts what mifike sent, IKE and
// ESP, and so that the key log's lines are ones Wireshark accepts.
type linkCapture struct {
	cmd  *exec.Cmd
	pcap string
}

// startLinkCapture captures what passes the router's side of the end
// user's dev (the router's interface "ue-"+dev) matching filter.
func startLinkCapture(t *testing.T, top *demo.Topology, dev, filter string) *linkCapture {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark is not installed (scripts/install-deps.sh installs it)")
	}
	pcap := filepath.Join(top.Dir, dev+".pcap")
	cmd := exec.Command("ip", "netns", "exec", top.Net, "dumpcap", "-q", "-i", "ue-"+dev, "-w", pcap, "-f", filter)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	demo.WaitFor(5*time.Second, func() bool { _, err := os.Stat(pcap); return err == nil })
	time.Sleep(300 * time.Millisecond)
	return &linkCapture{cmd: cmd, pcap: pcap}
}

// reader stops the capture and returns a tshark over it with ue's key
// log (ikev2_decryption_table and esp_sa) as Wireshark's tables, ESP
// decryption on, and the RFC 9329 framing (testdata/rfc9329.lua: tshark
// 4.0 has no dissector for it; its "tcpencap" is Cisco's IPsec over TCP).
func (c *linkCapture) reader(t *testing.T, ue *demo.Daemon) func(args ...string) string {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGINT)
	c.cmd.Wait()
	conf := filepath.Join(filepath.Dir(c.pcap), "wireshark-"+filepath.Base(c.pcap))
	os.MkdirAll(conf, 0o700)
	for _, f := range []string{"ikev2_decryption_table", "esp_sa"} {
		b, err := os.ReadFile(filepath.Join(ue.Dir, "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(conf, f), b, 0o600)
	}
	lua, err := filepath.Abs("testdata/rfc9329.lua")
	if err != nil {
		t.Fatal(err)
	}
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command("tshark", append([]string{"-n", "-r", c.pcap, "-X", "lua_script:" + lua, "-o", "esp.enable_encryption_decode:TRUE"}, args...)...)
		cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf, "HOME="+filepath.Dir(c.pcap))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || strings.Contains(stderr.String(), "Error loading table") {
			t.Fatalf("tshark %v: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}
}

// count is how many values tshark's -T fields -e field prints for the
// frames matching filter (a frame with several messages counts each).
func count(tshark func(...string) string, filter, field string) int {
	n := 0
	for _, f := range strings.Fields(tshark("-Y", filter, "-T", "fields", "-e", field)) {
		n += len(strings.Split(f, ","))
	}
	return n
}

// checkESPDecrypts has tshark decrypt the capture's ESP with the key
// log: every frame with ESP must decrypt (esp.protocol, the next header,
// is only there when it did). It returns how many frames there were.
//
// One exception, which is the capture's and not the wire's: the
// userspace data plane sends bursts of ESP in UDP with UDP GSO, and a
// veth hands the unsegmented batch to the other side, so the capture on
// the router sees one "frame" larger than the link's MTU holding several
// ESP packets. tshark reads them as one ESP packet and cannot decrypt it;
// on a real link (or past a router's forwarding) they are separate. Such
// frames are counted apart and named in the log.
func checkESPDecrypts(t *testing.T, tshark func(...string) string, what string) int {
	t.Helper()
	const gso = "udp && frame.len > 1514" // Ethernet, MTU 1500
	frames := count(tshark, "esp && !("+gso+")", "frame.number")
	decrypted := count(tshark, "esp.protocol && !("+gso+")", "frame.number")
	batches := count(tshark, "esp && "+gso, "frame.number")
	t.Logf("%s: %d frames with ESP, %d decrypted by tshark with mifike's key log (and %d UDP GSO batches, which a veth passes unsegmented)", what, frames, decrypted, batches)
	if frames == 0 || decrypted != frames {
		// Which ones, for the diagnosis: SPI, sequence number, size.
		rest := tshark("-Y", "esp && !esp.protocol && !("+gso+")", "-T", "fields", "-e", "frame.number", "-e", "frame.time_relative",
			"-e", "frame.len", "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport", "-e", "esp.spi", "-e", "esp.sequence")
		t.Fatalf("%s: tshark decrypted %d of %d frames with ESP; not decrypted (frame, time, length, source, port, destination, port, SPI, sequence):\n%s",
			what, decrypted, frames, rest)
	}
	return frames
}

// checkIKEVerifies has tshark decrypt every protected IKE message with
// the key log and verify its checksum.
func checkIKEVerifies(t *testing.T, tshark func(...string) string, what string) {
	t.Helper()
	protected := count(tshark, "isakmp.exchangetype >= 35", "isakmp.exchangetype")
	text := tshark("-Y", "isakmp.enc.icd", "-V")
	correct, incorrect := strings.Count(text, "[correct]"), strings.Count(text, "[incorrect")
	t.Logf("%s: %d protected IKE messages, %d checksums verified by tshark, %d incorrect", what, protected, correct, incorrect)
	if protected == 0 || correct != protected || incorrect != 0 {
		t.Fatalf("%s: tshark verified %d of %d protected IKE messages (%d incorrect)", what, correct, protected, incorrect)
	}
}
