package interop

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The lab for IKE fragmentation (RFC 7383, issue 14): two peers, A and B,
// in their own namespaces, with a router between them that drops every
// IP fragment. IKE_AUTH authenticated by a chain of three RSA-4096
// certificates does not fit one 1500-octet packet, so the exchange passes
// only if IKE fragments it.
//
//	ns A                     ns R (router)                     ns B
//	a0 10.78.1.2/24 ── ra 10.78.1.1 │ rb 10.78.2.1 ── b0 10.78.2.2/24
//	lo 10.78.10.1 (A's net)         nftables: drop IP fragments        lo 10.78.20.1 (B's net)
type fragLab struct {
	a, r, b      string // namespaces
	aAddr, bAddr string
	aNet, bNet   string
}

// fragmentSize is the IP datagram size both peers cut IKE fragments for
// (strongSwan's charon.fragment_size): RFC 7383 §2.5.1's IPv4 value, well
// below the links' 1500 octets.
const fragmentSize = 576

func newFragLab(t testing.TB) *fragLab {
	t.Helper()
	p := nsPrefix("frg")
	l := &fragLab{a: p + "-a", r: p + "-r", b: p + "-b", aAddr: "10.78.1.2", bAddr: "10.78.2.2",
		aNet: "10.78.10.0/24", bNet: "10.78.20.0/24"}
	for _, ns := range []string{l.a, l.r, l.b} {
		exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
		run(t, "ip", "netns", "add", ns)
	}
	t.Cleanup(func() {
		for _, ns := range []string{l.a, l.r, l.b} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run(t, "ip", "link", "add", "a0", "netns", l.a, "type", "veth", "peer", "name", "ra", "netns", l.r)
	run(t, "ip", "link", "add", "b0", "netns", l.b, "type", "veth", "peer", "name", "rb", "netns", l.r)
	for _, c := range [][]string{
		{l.a, "link", "set", "lo", "up"}, {l.r, "link", "set", "lo", "up"}, {l.b, "link", "set", "lo", "up"},
		{l.a, "addr", "add", l.aAddr + "/24", "dev", "a0"}, {l.r, "addr", "add", "10.78.1.1/24", "dev", "ra"},
		{l.r, "addr", "add", "10.78.2.1/24", "dev", "rb"}, {l.b, "addr", "add", l.bAddr + "/24", "dev", "b0"},
		{l.a, "link", "set", "a0", "up"}, {l.r, "link", "set", "ra", "up"}, {l.r, "link", "set", "rb", "up"}, {l.b, "link", "set", "b0", "up"},
		{l.a, "addr", "add", "10.78.10.1/32", "dev", "lo"}, {l.b, "addr", "add", "10.78.20.1/32", "dev", "lo"},
		{l.a, "route", "add", "default", "via", "10.78.1.1"}, {l.b, "route", "add", "default", "via", "10.78.2.1"},
	} {
		run(t, "ip", append([]string{"-n", c[0]}, c[1:]...)...)
	}
	run(t, "ip", "netns", "exec", l.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	// The rules hook prerouting before conntrack's defragmentation
	// (priority -400), so they see the fragments themselves: any IPv4
	// packet with a fragment offset or More Fragments set, any IPv6 packet
	// with a Fragment header.
	nft := `table inet frg {
	chain pre {
		type filter hook prerouting priority -500; policy accept;
		ip frag-off & 0x1fff != 0 counter drop comment "v4-offset"
		ip frag-off & 0x2000 != 0 counter drop comment "v4-more-fragments"
		exthdr frag exists counter drop comment "v6-fragment-header"
	}
}
`
	cmd := exec.Command("ip", "netns", "exec", l.r, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nft)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	return l
}

var nftCounter = regexp.MustCompile(`counter packets (\d+) bytes \d+ drop comment "([a-z0-9-]+)"`)

// droppedFragments is how many IP fragments the router dropped, per rule.
func (l *fragLab) droppedFragments(t testing.TB) map[string]int {
	t.Helper()
	out := run(t, "ip", "netns", "exec", l.r, "nft", "list", "chain", "inet", "frg", "pre")
	n := map[string]int{}
	for _, m := range nftCounter.FindAllStringSubmatch(out, -1) {
		n[m[2]], _ = strconv.Atoi(m[1])
	}
	if len(n) != 3 {
		t.Fatalf("router rules not found:\n%s", out)
	}
	return n
}

func total(m map[string]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

// rsaChain is a root CA, an intermediate CA and end-entity certificates,
// all RSA-4096 (the keys take seconds to make, so one chain serves every
// test of the binary; each test writes it into its own directory).
type rsaChain struct {
	rootDER, interDER []byte
	ee                map[string][2][]byte // name -> certificate DER, PKCS#8 key
}

var (
	chainOnce sync.Once
	chain     *rsaChain
	chainErr  error
)

// fragNames are the end entities: whoever runs in namespace A (strongSwan
// in the lab test, mifike later) is a.frg.test, B is b.frg.test.
var fragNames = []string{"a.frg.test", "b.frg.test"}

func makeRSAChain() (*rsaChain, error) {
	now := time.Now()
	subject := func(cn string) pkix.Name {
		return pkix.Name{Country: []string{"CH"}, Organization: []string{"mifike interop"}, CommonName: cn}
	}
	rootKey, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subject("mifike fragmentation root CA"),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	c := &rsaChain{ee: map[string][2][]byte{}}
	if c.rootDER, err = x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey); err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(c.rootDER)
	interKey, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		return nil, err
	}
	interTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: subject("mifike fragmentation intermediate CA"),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if c.interDER, err = x509.CreateCertificate(rand.Reader, interTmpl, root, interKey.Public(), rootKey); err != nil {
		return nil, err
	}
	inter, _ := x509.ParseCertificate(c.interDER)
	for i, n := range fragNames {
		key, err := rsa.GenerateKey(rand.Reader, 4096)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(10 + i)), Subject: subject(n), DNSNames: []string{n},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, key.Public(), interKey)
		if err != nil {
			return nil, err
		}
		p8, _ := x509.MarshalPKCS8PrivateKey(key)
		c.ee[n] = [2][]byte{der, p8}
	}
	return c, nil
}

// writeRSAChain writes root.crt, inter.crt, and NAME.crt and NAME.key
// (PKCS#8) for each of fragNames into dir.
func writeRSAChain(t testing.TB, dir string) {
	t.Helper()
	chainOnce.Do(func() { chain, chainErr = makeRSAChain() })
	if chainErr != nil {
		t.Fatal(chainErr)
	}
	writePEM(t, filepath.Join(dir, "root.crt"), "CERTIFICATE", chain.rootDER)
	writePEM(t, filepath.Join(dir, "inter.crt"), "CERTIFICATE", chain.interDER)
	for n, ck := range chain.ee {
		writePEM(t, filepath.Join(dir, n+".crt"), "CERTIFICATE", ck[0])
		writePEM(t, filepath.Join(dir, n+".key"), "PRIVATE KEY", ck[1])
	}
}

// fragCharonConf: fragments of at most fragmentSize octets, and a short
// retransmission schedule so that an IKE_AUTH lost to the router fails in
// seconds (1 + 1.8 + 3.2 s).
func fragCharonConf(dir string, extra ...string) string {
	return strongswanConf(dir, append([]string{
		fmt.Sprintf("    fragment_size = %d", fragmentSize),
		"    retransmit_timeout = 1",
		"    retransmit_tries = 2"}, extra...)...)
}

// logKeys makes charon log the IKE SA keys (ike level 4) for
// strongswanKeyTable.
const logKeys = "    filelog { log { ike = 4 } }"

var (
	charonDump = regexp.MustCompile(`<[^|>]*\|(\d+)> (natd_chunk|Sk_ei secret|Sk_er secret|Sk_ai secret|Sk_ar secret) => \d+ bytes`)
	charonHex  = regexp.MustCompile(`<[^|>]*\|(\d+)>\s+\d+: ((?:[0-9A-F]{2} ?)+)`)
)

// strongswanKeyTable turns a charon log written with logKeys into
// Wireshark's ikev2_decryption_table for labProposal: per IKE SA, the
// SPIs from its last NAT-D input (which has both) and SK_e and SK_a of
// each direction. mifike writes this table itself (keylog).
func strongswanKeyTable(log string) []byte {
	type keys struct{ dumps map[string]string }
	sas := map[string]*keys{}
	var order []string
	var cur *keys
	var name string
	for _, line := range strings.Split(log, "\n") {
		if m := charonDump.FindStringSubmatch(line); m != nil {
			k := sas[m[1]]
			if k == nil {
				k = &keys{dumps: map[string]string{}}
				sas[m[1]] = k
				order = append(order, m[1])
			}
			cur, name = k, strings.Fields(m[2])[0]
			k.dumps[name] = ""
			continue
		}
		if m := charonHex.FindStringSubmatch(line); m != nil && cur != nil {
			cur.dumps[name] += strings.ToLower(strings.ReplaceAll(m[2], " ", ""))
			continue
		}
		cur = nil
	}
	var b strings.Builder
	for _, id := range order {
		d := sas[id].dumps
		if len(d["natd_chunk"]) < 32 || d["Sk_ei"] == "" || d["Sk_ai"] == "" {
			continue
		}
		fmt.Fprintf(&b, "%s,%s,%s,%s,\"AES-CBC-128 [RFC3602]\",%s,%s,\"HMAC_SHA2_256_128 [RFC4868]\"\n",
			d["natd_chunk"][:16], d["natd_chunk"][16:32], d["Sk_ei"], d["Sk_er"], d["Sk_ai"], d["Sk_ar"])
	}
	return []byte(b.String())
}

// checkFragmentSizes checks that every IKE Fragment message in the
// capture (tshark reads the SKF header without keys) is an IP datagram of
// at most fragmentSize octets, and returns how many there are.
func checkFragmentSizes(t *testing.T, pcap string) int {
	t.Helper()
	out, err := exec.Command("tshark", "-n", "-r", pcap, "-Y", "isakmp.frag.number", "-T", "fields",
		"-e", "ip.len", "-e", "isakmp.frag.number", "-e", "isakmp.frag.total").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		all, _ := exec.Command("tshark", "-n", "-r", pcap).CombinedOutput()
		t.Fatalf("tshark shows no Encrypted Fragment payload in the capture:\n%s", tail(all, 20))
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if ipLen, _ := strconv.Atoi(f[0]); len(f) != 3 || ipLen > fragmentSize {
			t.Errorf("fragment %q: an IP datagram above fragment_size %d", line, fragmentSize)
		}
		n++
	}
	return n
}

// tsharkFragments has tshark decrypt the capture with the key table and
// checks that it verifies the ICV of every IKE Fragment message (RFC 7383
// §2.5: each is protected on its own) and reassembles every fragmented
// message whole. It returns the fragments, the reassembled messages and
// the Certificate payloads tshark found in them.
func tsharkFragments(t *testing.T, pcap string, table []byte, dir string) (fragments, messages, certs int) {
	t.Helper()
	conf := filepath.Join(dir, "wireshark")
	os.MkdirAll(conf, 0o700)
	if err := os.WriteFile(filepath.Join(conf, "ikev2_decryption_table"), table, 0o600); err != nil {
		t.Fatal(err)
	}
	tshark := func(args ...string) string {
		cmd := exec.Command("tshark", append([]string{"-n", "-r", pcap}, args...)...)
		cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf, "HOME="+dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark %v: %v", args, err)
		}
		return string(out)
	}
	v := tshark("-Y", "isakmp.frag.number", "-V")
	fragments = len(strings.Fields(tshark("-Y", "isakmp.frag.number", "-T", "fields", "-e", "frame.number")))
	correct, incorrect := strings.Count(v, "[correct]"), strings.Count(v, "[incorrect")
	if fragments == 0 || correct != fragments || incorrect != 0 {
		t.Fatalf("tshark verified the ICV of %d of %d IKE Fragment messages (%d incorrect)", correct, fragments, incorrect)
	}
	// One line per reassembled message: Total Fragments, the fragments
	// tshark merged, and the inner Certificate payloads' encodings.
	for _, line := range strings.Split(strings.TrimSpace(tshark("-Y", "isakmp.fragment.count", "-T", "fields",
		"-e", "isakmp.frag.total", "-e", "isakmp.fragment.count", "-e", "isakmp.cert.encoding")), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 || f[0] != f[1] {
			t.Fatalf("tshark reassembled %q", line)
		}
		messages++
		if len(f) > 2 && f[2] != "" {
			certs += len(strings.Split(f[2], ","))
		}
	}
	return fragments, messages, certs
}

// fragSwanctl is one connection, "lab", between me and the peer at
// remote, authenticated with the RSA chain, with fragmentation "yes" or
// "no" (RFC 7383 §2.3). Each end sends its end-entity and intermediate
// certificates and trusts only the root. No CERTREQ is sent: a charon
// asks for every CA it knows, the intermediate included, and a peer asked
// for the intermediate does not send it.
func fragSwanctl(me, peer, remote, localNet, remoteNet, fragmentation string) string {
	return fmt.Sprintf(`connections {
 lab {
  version = 2
  remote_addrs = %s
  proposals = %s
  fragmentation = %s
  send_certreq = no
  send_cert = always
  local { auth = pubkey
   id = %s
   certs = %[4]s.crt }
  remote { auth = pubkey
   id = %s
   cacerts = root.crt }
  children { net { local_ts = %s
   remote_ts = %s
   esp_proposals = %s } }
 }
}
`, remote, labProposal, fragmentation, me, peer, localNet, remoteNet, espProposals)
}

// labProposal is the IKE proposal of the lab's strongSwan connections:
// AES-CBC with HMAC, whose fragments carry Padding, and whose names the
// key table below spells out.
const labProposal = "aes128-sha256-x25519"

// swanFiles are the credentials of the peer named me: its certificate
// and key, the intermediate, and the root.
func swanFiles(pki, me string) map[string]string {
	return map[string]string{
		"x509/" + me + ".crt":    filepath.Join(pki, me+".crt"),
		"private/" + me + ".key": filepath.Join(pki, me+".key"),
		"x509ca/inter.crt":       filepath.Join(pki, "inter.crt"),
		"x509ca/root.crt":        filepath.Join(pki, "root.crt"),
	}
}

// reconfigure rewrites a charon's swanctl.conf and reloads it.
func (c *charon) reconfigure(conf string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, "swanctl", "swanctl.conf"), []byte(conf), 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.swanctl("--load-all", "--noprompt")
}

var splitting = regexp.MustCompile(`splitting IKE message \((\d+) bytes\) into (\d+) fragments`)

// TestFragmentationLab proves the lab before mifike is put into it:
// strongSwan 5.9.8 to strongSwan 5.9.8 over the router that drops IP
// fragments cannot complete IKE_AUTH without IKE fragmentation, and does
// with it (RFC 7383), every IKE datagram then within fragment_size.
func TestFragmentationLab(t *testing.T) {
	l, dir, pki, capture := startFragLab(t)
	confA := func(frag string) string {
		return fragSwanctl("a.frg.test", "b.frg.test", l.bAddr, l.aNet, l.bNet, frag)
	}
	confB := func(frag string) string {
		return fragSwanctl("b.frg.test", "a.frg.test", l.aAddr, l.bNet, l.aNet, frag)
	}
	a := startCharonConf(t, l.a, filepath.Join(dir, "swan-a"), fragCharonConf(filepath.Join(dir, "swan-a"), logKeys), confA("no"), swanFiles(pki, "a.frg.test"))
	b := startCharonConf(t, l.b, filepath.Join(dir, "swan-b"), fragCharonConf(filepath.Join(dir, "swan-b")), confB("no"), swanFiles(pki, "b.frg.test"))

	t.Run("without fragmentation IKE_AUTH is lost", func(t *testing.T) {
		a.t, b.t = t, t
		before := total(l.droppedFragments(t))
		out, err := a.swanctlErr("--initiate", "--ike", "lab", "--child", "net", "--timeout", "30")
		dropped := l.droppedFragments(t)
		t.Logf("router dropped %v IP fragments", dropped)
		if err == nil {
			t.Fatalf("IKE_AUTH passed a router that drops IP fragments without IKE fragmentation:\n%s", out)
		}
		if total(dropped) <= before || dropped["v4-more-fragments"] == 0 || dropped["v4-offset"] == 0 {
			t.Fatalf("the router dropped no IP fragments (%v): the failure has another cause\n%s\n%s", dropped, out, a.logTail(30))
		}
		if log := a.log(); !strings.Contains(log, "giving up after 2 retransmits") || !strings.Contains(log, "sending issuer cert") {
			t.Fatalf("charon A did not send its chain and give up on IKE_AUTH:\n%s", a.logTail(40))
		}
		if strings.Contains(b.log(), "IKE_AUTH request 1") {
			t.Fatalf("charon B received IKE_AUTH:\n%s", b.logTail(20))
		}
		for name, c := range map[string]*charon{"A": a, "B": b} {
			for _, s := range c.sas() {
				if s.vals["state"] == "ESTABLISHED" {
					t.Fatalf("strongSwan %s has an established IKE SA", name)
				}
			}
		}
	})

	t.Run("with fragmentation IKE_AUTH passes", func(t *testing.T) {
		a.t, b.t = t, t
		a.reconfigure(confA("yes"))
		b.reconfigure(confB("yes"))
		before := l.droppedFragments(t)
		a.swanctl("--initiate", "--ike", "lab", "--child", "net", "--timeout", "30")
		if after := l.droppedFragments(t); total(after) != total(before) {
			t.Errorf("IP fragments crossed the router with IKE fragmentation on: %v -> %v", before, after)
		}
		for name, c := range map[string]*charon{"A": a, "B": b} {
			var est []string
			for _, s := range c.sas() {
				if s.vals["state"] == "ESTABLISHED" && s.subs["child-sas"] != nil && len(s.subs["child-sas"].order) == 1 {
					est = append(est, s.vals["name"])
				}
			}
			if len(est) != 1 {
				t.Fatalf("strongSwan %s: %d established IKE SAs with a Child SA\n%s", name, len(est), c.swanctl("--list-sas"))
			}
		}
		// Both IKE_AUTH messages were fragmented (RFC 7383 §2.5) and
		// reassembled (§2.6).
		for name, c := range map[string]*charon{"A": a, "B": b} {
			log := c.log()
			m := splitting.FindStringSubmatch(log)
			if m == nil || !strings.Contains(log, "reassembled fragmented IKE message") {
				t.Fatalf("strongSwan %s did not fragment and reassemble IKE_AUTH:\n%s", name, c.logTail(40))
			}
			if !strings.Contains(log, "sending end entity cert") || !strings.Contains(log, "sending issuer cert") {
				t.Errorf("strongSwan %s did not send its chain:\n%s", name, c.logTail(40))
			}
			size, _ := strconv.Atoi(m[1])
			t.Logf("strongSwan %s: IKE_AUTH of %d octets sent in %s fragments", name, size, m[2])
			if size <= 1500 {
				t.Errorf("strongSwan %s's IKE_AUTH is %d octets: it would fit the link without fragments", name, size)
			}
		}
	})

	// What crossed the router: no IKE datagram over fragment_size in the
	// second half, and tshark sees the SKF payloads.
	t.Run("capture", func(t *testing.T) {
		time.Sleep(time.Second) // what dumpcap still buffers
		capture.stop()
		n := checkFragmentSizes(t, capture.file)
		t.Logf("tshark: %d IKE Fragment messages, each at most %d octets", n, fragmentSize)
	})

	// With the keys, tshark verifies every fragment and reassembles both
	// IKE_AUTH messages, each with its two certificates: what the final
	// test checks with mifike's key log.
	t.Run("tshark reassembles", func(t *testing.T) {
		table := strongswanKeyTable(a.log())
		if len(table) == 0 {
			t.Fatalf("no keys in charon A's log:\n%s", a.logTail(20))
		}
		frags, msgs, certs := tsharkFragments(t, capture.file, table, dir)
		t.Logf("tshark: %d fragments verified, %d messages reassembled with %d certificates", frags, msgs, certs)
		if msgs != 2 || certs != 4 {
			t.Fatalf("tshark reassembled %d messages with %d certificates, want both IKE_AUTH messages with two each", msgs, certs)
		}
	})
}

// startFragLab builds the lab (root, the tools), writes the RSA chain
// into a fresh directory's pki and starts capturing on the router's side
// towards A.
func startFragLab(t *testing.T) (l *fragLab, dir, pki string, c *capture) {
	requireRoot(t)
	requireTools(t, charonPath, "swanctl", "tshark", "nft")
	l = newFragLab(t)
	dir = t.TempDir()
	pki = filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	writeRSAChain(t, pki)
	return l, dir, pki, startCapture(t, l.r, "ra", filepath.Join(dir, "ra.pcap"))
}
