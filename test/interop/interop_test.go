package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const psk = "mifike-interop-psk-0123456789abcdef"

var ikeProposals = []string{"aes128-sha256-x25519", "aes256gcm16-prfsha384-ecp384", "aes128-sha256-modp2048"}

const espProposals = "aes128gcm16,aes128-sha256"

func slug(p string) string { return strings.ReplaceAll(p, "-", "") }

// swanctlConf: responders for mifike's initiators, and initiators towards
// mifike (one per authentication and proposal), with distinct identities
// per direction so each side's configuration selection is unambiguous.
func swanctlConf(tp *topology) string {
	var b strings.Builder
	b.WriteString("connections {\n")
	auth := func(kind, id, remoteID string) string {
		if kind == "psk" {
			return fmt.Sprintf("local { auth = psk\n id = %s }\n remote { auth = psk\n id = %s }\n", id, remoteID)
		}
		return fmt.Sprintf("local { auth = pubkey\n id = %[1]s\n certs = %[1]s.crt }\n remote { auth = pubkey\n id = %[2]s\n cacerts = ca.crt }\n", id, remoteID)
	}
	child := fmt.Sprintf("children { net { local_ts = %s\n remote_ts = %s\n esp_proposals = %s } }\n", tp.sNet, tp.mNet, espProposals)
	for _, a := range []string{"psk", "ecdsa"} {
		fmt.Fprintf(&b, "from-mifike-%s { version = 2\n local_addrs = %s\n proposals = %s\n mobike = yes\n %s %s }\n",
			a, tp.sAddr, strings.Join(ikeProposals, ","), auth(a, "s-resp-"+a+".test", "m-ini-"+a+".test"), child)
		for _, p := range ikeProposals {
			fmt.Fprintf(&b, "to-mifike-%s-%s { version = 2\n remote_addrs = %s\n proposals = %s\n mobike = yes\n %s %s }\n",
				a, slug(p), tp.mAddr, p, auth(a, "s-ini-"+a+".test", "m-resp-"+a+".test"), child)
		}
	}
	// Lifecycle: strongSwan initiates and runs liveness checks every second.
	fmt.Fprintf(&b, "life-s { version = 2\n remote_addrs = %s\n proposals = %s\n dpd_delay = 1s\n %s %s }\n",
		tp.mAddr, ikeProposals[0], auth("psk", "s-life.test", "m-life.test"), child)
	fmt.Fprintf(&b, "from-mifike-life { version = 2\n local_addrs = %s\n proposals = %s\n %s %s }\n",
		tp.sAddr, ikeProposals[0], auth("psk", "s-life-resp.test", "m-life-ini.test"), child)
	b.WriteString("}\nsecrets {\n ike-psk {\n")
	for i, id := range []string{"s-resp-psk.test", "m-ini-psk.test", "s-ini-psk.test", "m-resp-psk.test", "s-life.test", "m-life.test", "s-life-resp.test", "m-life-ini.test"} {
		fmt.Fprintf(&b, "  id-%d = %s\n", i, id)
	}
	fmt.Fprintf(&b, "  secret = \"%s\"\n }\n}\n", psk)
	return b.String()
}

func mifikeConf(tp *topology, dir, pki string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log:\n  level: debug\ncontrol:\n  socket: %s/mifike.sock\nkeylog:\n  dir: %s/keys\nlisten: [%s]\ndata_plane: none\nconnections:\n",
		dir, dir, tp.mAddr)
	auth := func(kind, id, remoteID string) string {
		if kind == "psk" {
			return fmt.Sprintf("    local: {auth: psk, id: %q}\n    remote: {auth: psk, id: %q}\n    psk: %q\n", id, remoteID, psk)
		}
		return fmt.Sprintf("    local: {auth: pubkey, id: %q, certs: [%s/%s.crt], key: %s/%s.key}\n    remote: {auth: pubkey, id: %q, cacerts: [%s/ca.crt]}\n",
			id, pki, id, pki, id, remoteID, pki)
	}
	child := fmt.Sprintf("    children:\n      net: {local_ts: [%s], remote_ts: [%s], esp_proposals: %q}\n", tp.mNet, tp.sNet, espProposals)
	for _, a := range []string{"psk", "ecdsa"} {
		for _, p := range ikeProposals {
			fmt.Fprintf(&b, "  to-swan-%s-%s:\n    remote_addrs: [%s]\n    proposals: %q\n%s%s", a, slug(p), tp.sAddr, p, auth(a, "m-ini-"+a+".test", "s-resp-"+a+".test"), child)
		}
		fmt.Fprintf(&b, "  from-swan-%s:\n    proposals: %q\n%s%s", a, strings.Join(ikeProposals, ","), auth(a, "m-resp-"+a+".test", "s-ini-"+a+".test"), child)
	}
	fmt.Fprintf(&b, "  life-m:\n    remote_addrs: [%s]\n    proposals: %q\n    dpd_delay: 1s\n%s%s", tp.sAddr, ikeProposals[0], auth("psk", "m-life-ini.test", "s-life-resp.test"), child)
	fmt.Fprintf(&b, "  from-swan-life:\n    proposals: %q\n%s%s", ikeProposals[0], auth("psk", "m-life.test", "s-life.test"), child)
	return b.String()
}

// swanNames maps mifike's proposal notation to strongSwan's --raw names.
var swanNames = map[string][2]string{
	"aes128": {"AES_CBC", "128"}, "aes256": {"AES_CBC", "256"}, "aes128gcm16": {"AES_GCM_16", "128"}, "aes256gcm16": {"AES_GCM_16", "256"},
	"sha256": {"HMAC_SHA2_256_128"}, "sha384": {"HMAC_SHA2_384_192"}, "prfsha256": {"PRF_HMAC_SHA2_256"}, "prfsha384": {"PRF_HMAC_SHA2_384"},
	"x25519": {"CURVE_25519"}, "ecp384": {"ECP_384"}, "ecp256": {"ECP_256"}, "modp2048": {"MODP_2048"},
}

// sameAlgorithms compares a mifike proposal string with charon's view.
func sameAlgorithms(ours string, n *viciNode) error {
	want := map[string]string{}
	for _, tok := range strings.Split(ours, "-") {
		v, ok := swanNames[tok]
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(v[0], "AES"):
			want["encr-alg"], want["encr-keysize"] = v[0], v[1]
		case strings.HasPrefix(v[0], "HMAC"):
			want["integ-alg"] = v[0]
			if _, set := want["prf-alg"]; !set {
				want["prf-alg"] = "PRF_" + strings.TrimSuffix(strings.TrimSuffix(v[0], "_128"), "_192")
			}
		case strings.HasPrefix(v[0], "PRF"):
			want["prf-alg"] = v[0]
		default:
			want["dh-group"] = v[0]
		}
	}
	for k, v := range want {
		if _, present := n.vals[k]; !present && (k == "prf-alg" || k == "dh-group") {
			continue // Child SAs have neither
		}
		if n.vals[k] != v {
			return fmt.Errorf("%s: strongSwan has %s, mifike %s (%s)", k, n.vals[k], v, ours)
		}
	}
	return nil
}

// agree checks that every IKE and Child SA mifike has, strongSwan has
// with the same SPIs and algorithms, and vice versa.
func agree(m []sa, s []*viciNode) error {
	var errs []string
	matched := map[*viciNode]bool{}
	for _, x := range m {
		if x.State != "ESTABLISHED" {
			continue
		}
		var y *viciNode
		for _, n := range s {
			if n.vals["initiator-spi"] == x.SPIi && n.vals["responder-spi"] == x.SPIr {
				y = n
			}
		}
		if y == nil {
			errs = append(errs, fmt.Sprintf("strongSwan lacks IKE SA %s_i %s_r (%s)", x.SPIi, x.SPIr, x.Conn))
			continue
		}
		matched[y] = true
		if y.vals["state"] != "ESTABLISHED" {
			errs = append(errs, fmt.Sprintf("strongSwan's %s is %s", y.vals["name"], y.vals["state"]))
		}
		if err := sameAlgorithms(x.Proposal, y); err != nil {
			errs = append(errs, "IKE SA "+x.SPIi+": "+err.Error())
		}
		children := map[string]*viciNode{}
		if cs := y.subs["child-sas"]; cs != nil {
			for _, name := range cs.order {
				children[cs.subs[name].vals["spi-in"]] = cs.subs[name]
			}
		}
		for _, c := range x.Children {
			sc := children[c.OutSPI]
			if sc == nil || sc.vals["spi-out"] != c.InSPI {
				errs = append(errs, fmt.Sprintf("strongSwan lacks Child SA %s_i %s_o", c.InSPI, c.OutSPI))
				continue
			}
			delete(children, c.OutSPI)
			if err := sameAlgorithms(c.Proposal, sc); err != nil {
				errs = append(errs, "Child SA "+c.InSPI+": "+err.Error())
			}
		}
		for spi, sc := range children {
			if sc.vals["state"] == "INSTALLED" {
				errs = append(errs, fmt.Sprintf("mifike lacks strongSwan's Child SA %s_i", spi))
			}
		}
	}
	for _, n := range s {
		if n.vals["state"] == "ESTABLISHED" && !matched[n] {
			errs = append(errs, fmt.Sprintf("mifike lacks strongSwan's IKE SA %s (%s_i %s_r)", n.vals["name"], n.vals["initiator-spi"], n.vals["responder-spi"]))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

type bed struct {
	t  *testing.T
	tp *topology
	ch *charon
	md *daemon
}

// use makes failures of the daemons' helpers fail subtest t.
func (b *bed) use(t *testing.T) { b.t, b.ch.t, b.md.t = t, t, t }

// settle waits until both daemons agree and count established IKE SAs
// as want (with want children each when children >= 0).
// settleAfter waits (up to 10 s) until mifike's SAs show that an
// operation started elsewhere (swanctl returns before strongSwan's rekey
// is done) has happened, then until both sides agree on one IKE SA with
// one Child SA.
func (b *bed) settleAfter(happened func([]sa) bool) []sa {
	b.t.Helper()
	waitFor(100, func() { time.Sleep(100 * time.Millisecond) }, func() bool { return happened(b.md.sas()) })
	m, _ := b.settle(1, 1)
	return m
}

func (b *bed) settle(want, children int) ([]sa, []*viciNode) {
	b.t.Helper()
	var (
		m   []sa
		s   []*viciNode
		err error
	)
	ok := waitFor(100, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		m, s = b.md.sas(), b.ch.sas()
		est := 0
		for _, x := range m {
			if x.State == "ESTABLISHED" {
				est++
				if children >= 0 && len(x.Children) != children {
					err = fmt.Errorf("IKE SA %d has %d Child SAs, want %d", x.ID, len(x.Children), children)
					return false
				}
			}
		}
		if est != want {
			err = fmt.Errorf("mifike has %d established IKE SAs, want %d", est, want)
			return false
		}
		err = agree(m, s)
		return err == nil
	})
	if !ok {
		b.t.Fatalf("%v\nmifike:\n%s\nstrongSwan:\n%s\nmifike log:\n%s\ncharon log:\n%s", err, b.md.mustCtl("list-sas"),
			b.ch.swanctl("--list-sas"), b.md.logTail(25), b.ch.logTail(25))
	}
	return m, s
}

func TestStrongSwan(t *testing.T) {
	requireRoot(t)
	requireTools(t, charonPath, "swanctl", "tshark")
	tp := newTopology(t, "mfki")
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	os.MkdirAll(pki, 0o700)
	writePKI(t, pki, "m-ini-ecdsa.test", "m-resp-ecdsa.test", "s-ini-ecdsa.test", "s-resp-ecdsa.test")
	files := map[string]string{"x509ca/ca.crt": filepath.Join(pki, "ca.crt")}
	for _, n := range []string{"s-ini-ecdsa.test", "s-resp-ecdsa.test"} {
		files["x509/"+n+".crt"] = filepath.Join(pki, n+".crt")
		files["private/"+n+".key"] = filepath.Join(pki, n+".key")
	}
	capture := startCapture(t, tp.m, "m0", filepath.Join(dir, "ike.pcap"))
	b := &bed{t: t, tp: tp,
		ch: startCharon(t, tp.s, filepath.Join(dir, "swan"), swanctlConf(tp), files),
		md: startMifike(t, tp.m, filepath.Join(dir, "mifike"), mifikeConf(tp, filepath.Join(dir, "mifike"), pki))}

	for _, a := range []string{"psk", "ecdsa"} {
		for _, p := range ikeProposals {
			t.Run("mifike-initiates/"+a+"/"+p, func(t *testing.T) {
				b.use(t)
				b.md.mustCtl("initiate", "to-swan-"+a+"-"+slug(p))
				m, _ := b.settle(1, 1)
				if !m[0].Initiator || m[0].Proposal != p {
					t.Fatalf("mifike's SA: initiator=%v proposal %q, want %q", m[0].Initiator, m[0].Proposal, p)
				}
				b.md.mustCtl("terminate", fmt.Sprint(m[0].ID))
				b.settle(0, -1)
			})
			t.Run("strongswan-initiates/"+a+"/"+p, func(t *testing.T) {
				b.use(t)
				b.ch.swanctl("--initiate", "--ike", "to-mifike-"+a+"-"+slug(p), "--child", "net")
				m, _ := b.settle(1, 1)
				if m[0].Initiator || m[0].Proposal != p {
					t.Fatalf("mifike's SA: initiator=%v proposal %q, want %q", m[0].Initiator, m[0].Proposal, p)
				}
				b.ch.swanctl("--terminate", "--ike", "to-mifike-"+a+"-"+slug(p))
				b.settle(0, -1)
			})
		}
	}

	// Rekeys, liveness and deletes from each side, in both roles.
	for _, dirn := range []string{"mifike-initiates", "strongswan-initiates"} {
		t.Run("lifecycle/"+dirn, func(t *testing.T) {
			b.use(t)
			conn := "life-s"
			if dirn == "mifike-initiates" {
				b.md.mustCtl("initiate", "life-m")
				conn = "from-mifike-life"
			} else {
				b.ch.swanctl("--initiate", "--ike", conn, "--child", "net")
			}
			m, _ := b.settle(1, 1)
			first := m[0]
			// IKE SA rekey by mifike, then by strongSwan.
			b.md.mustCtl("rekey", fmt.Sprint(first.ID))
			m, _ = b.settle(1, 1)
			if m[0].SPIi == first.SPIi {
				t.Fatal("mifike's IKE rekey did not replace the SA")
			}
			second := m[0]
			// swanctl --rekey only starts the rekey: wait until mifike's
			// SA is another, then until both agree.
			b.ch.swanctl("--rekey", "--ike", conn)
			m = b.settleAfter(func(m []sa) bool {
				return slices.ContainsFunc(m, func(x sa) bool { return x.State == "ESTABLISHED" && x.SPIi != second.SPIi })
			})
			if m[0].SPIi == second.SPIi {
				t.Fatal("strongSwan's IKE rekey did not replace the SA")
			}
			// Child SA rekey by mifike, then by strongSwan.
			child := m[0].Children[0]
			b.md.mustCtl("rekey", fmt.Sprint(m[0].ID), "--child", child.InSPI)
			m, _ = b.settle(1, 1)
			if m[0].Children[0].InSPI == child.InSPI {
				t.Fatal("mifike's Child SA rekey did not replace it")
			}
			child = m[0].Children[0]
			b.ch.swanctl("--rekey", "--child", "net")
			m = b.settleAfter(func(m []sa) bool {
				return slices.ContainsFunc(m, func(x sa) bool {
					return len(x.Children) > 0 && !slices.ContainsFunc(x.Children, func(c saChild) bool { return c.InSPI == child.InSPI })
				})
			})
			if m[0].Children[0].InSPI == child.InSPI {
				t.Fatal("strongSwan's Child SA rekey did not replace it")
			}
			// Liveness checks (1 s) answered by the other side.
			before := strings.Count(b.ch.log(), "INFORMATIONAL")
			time.Sleep(3500 * time.Millisecond)
			if got := strings.Count(b.ch.log(), "INFORMATIONAL"); got < before+4 {
				t.Fatalf("no liveness checks seen in charon's log (%d -> %d INFORMATIONAL lines)\n%s\n%s", before, got, b.md.logTail(25), b.ch.logTail(25))
			}
			b.settle(1, 1)
			// Delete the Child SA from one side, the IKE SA from the other.
			if dirn == "mifike-initiates" {
				b.md.mustCtl("terminate", fmt.Sprint(m[0].ID), "--child", m[0].Children[0].InSPI)
				b.settle(1, 0)
				b.ch.swanctl("--terminate", "--ike", conn)
			} else {
				b.ch.swanctl("--terminate", "--child", "net")
				b.settle(1, 0)
				b.md.mustCtl("terminate", fmt.Sprint(m[0].ID))
			}
			b.settle(0, -1)
		})
	}

	// Wireshark agrees: tshark decrypts every protected IKE message of the
	// capture with mifike's key log and verifies its checksum.
	t.Run("tshark-decrypts", func(t *testing.T) {
		capture.stop()
		conf := filepath.Join(dir, "wireshark")
		os.MkdirAll(conf, 0o700)
		keys, err := os.ReadFile(filepath.Join(dir, "mifike", "keys", "ikev2_decryption_table"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(conf, "ikev2_decryption_table"), keys, 0o600)
		cmd := exec.Command("tshark", "-n", "-r", capture.file, "-Y", "isakmp.enc.icd", "-V")
		cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf, "HOME="+dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark: %v", err)
		}
		text := string(out)
		correct, incorrect := strings.Count(text, "[correct]"), strings.Count(text, "[incorrect")
		total := countProtected(t, capture.file, conf, dir)
		t.Logf("%d protected IKE messages captured, %d checksums verified by tshark, %d incorrect", total, correct, incorrect)
		if total == 0 || correct != total || incorrect != 0 {
			t.Fatalf("tshark verified %d of %d protected IKE messages (%d incorrect)", correct, total, incorrect)
		}
	})
}

// countProtected counts IKE messages with an Encrypted payload.
func countProtected(t *testing.T, file, conf, home string) int {
	cmd := exec.Command("tshark", "-n", "-r", file, "-Y", "isakmp.exchangetype >= 35", "-T", "fields", "-e", "frame.number")
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf, "HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	return len(strings.Fields(string(out)))
}

type capture struct {
	file string
	cmd  *exec.Cmd
}

func startCapture(t testing.TB, ns, iface, file string) *capture {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "tshark", "-n", "-q", "-i", iface, "-w", file, "-f", "udp port 500 or udp port 4500")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &capture{file: file, cmd: cmd}
	t.Cleanup(c.stop)
	waitFor(50, func() { time.Sleep(100 * time.Millisecond) }, func() bool {
		_, err := os.Stat(file)
		return err == nil
	})
	time.Sleep(300 * time.Millisecond)
	return c
}

func (c *capture) stop() {
	if c.cmd.ProcessState != nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
	}
}
