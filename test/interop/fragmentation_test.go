package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fragMifikeConf is mifike in namespace A of the fragmentation lab: one
// connection "lab" to strongSwan in B, in either role, authenticated with
// the RSA chain (end entity and intermediate sent, the root trusted), and
// fragmentation "yes" or "no" as swanctl.conf spells it. mifike's own
// fragment size for IPv4 is RFC 7383 §2.5.1's 576 octets, the lab's
// fragmentSize, so none is configured. The short retransmission schedule
// makes an IKE_AUTH lost to the router fail in seconds.
func fragMifikeConf(l *fragLab, dir, pki, fragmentation string) string {
	return fmt.Sprintf(`log:
  level: debug
control:
  socket: %[1]s/mifike.sock
keylog:
  dir: %[1]s/keys
listen: [%[2]s]
data_plane: none
retransmit: {timeout: 1s, base: 1.8, tries: 2}
connections:
  lab:
    remote_addrs: [%[3]s]
    proposals: %[4]q
    fragmentation: %[5]s
    local: {auth: pubkey, id: a.frg.test, certs: [%[6]s/a.frg.test.crt, %[6]s/inter.crt], key: %[6]s/a.frg.test.key}
    remote: {auth: pubkey, id: b.frg.test, cacerts: [%[6]s/root.crt]}
    children:
      net: {local_ts: [%[7]s], remote_ts: [%[8]s], esp_proposals: %[9]q}
`, dir, l.aAddr, l.bAddr, labProposal, fragmentation, pki, l.aNet, l.bNet, espProposals)
}

// TestFragmentationMifikeInitiates: mifike initiates to strongSwan 5.9.8
// across the router that drops IP fragments (issue 14, RFC 7383).
func TestFragmentationMifikeInitiates(t *testing.T) {
	testFragmentationMifike(t, true)
}

// TestFragmentationStrongSwanInitiates: strongSwan 5.9.8 initiates to
// mifike across the router that drops IP fragments (issue 14, RFC 7383).
func TestFragmentationStrongSwanInitiates(t *testing.T) {
	testFragmentationMifike(t, false)
}

// testFragmentationMifike puts mifike into the lab in place of strongSwan
// A: without fragmentation IKE_AUTH is lost, with it the IKE SA and its
// Child SA come up, both IKE_AUTH messages were fragmented to at most
// fragmentSize octets and reassembled by the other end, no IP fragment
// crossed the router, and tshark verifies every fragment and reassembles
// both messages with mifike's key log.
func testFragmentationMifike(t *testing.T, mifikeInitiates bool) {
	l, dir, pki, capture := startFragLab(t)
	confB := func(frag string) string {
		return fragSwanctl("b.frg.test", "a.frg.test", l.aAddr, l.bNet, l.aNet, frag)
	}
	mdir := filepath.Join(dir, "mifike")
	b := &bed{t: t,
		ch: startCharonConf(t, l.b, filepath.Join(dir, "swan-b"), fragCharonConf(filepath.Join(dir, "swan-b")), confB("no"), swanFiles(pki, "b.frg.test")),
		md: startMifike(t, l.a, mdir, fragMifikeConf(l, mdir, pki, "no"))}
	initiate := func(mifikeArgs ...string) error {
		if mifikeInitiates {
			_, err := b.md.ctl(append([]string{"initiate", "lab"}, mifikeArgs...)...)
			return err
		}
		_, err := b.ch.swanctlErr("--initiate", "--ike", "lab", "--child", "net", "--timeout", "30")
		return err
	}
	reconfigure := func(frag string) {
		if err := os.WriteFile(filepath.Join(mdir, "mifike.yaml"), []byte(fragMifikeConf(l, mdir, pki, frag)), 0o600); err != nil {
			t.Fatal(err)
		}
		b.md.mustCtl("reload")
		b.ch.reconfigure(confB(frag))
	}

	t.Run("without fragmentation IKE_AUTH is lost", func(t *testing.T) {
		b.use(t)
		before := total(l.droppedFragments(t))
		// Not waiting for mifike's outcome: the wait is below, for both
		// ends' retransmission schedules (1 + 1.8 + 3.2 s) to run out.
		initiate("--no-wait")
		time.Sleep(8 * time.Second)
		if dropped := l.droppedFragments(t); total(dropped) <= before {
			t.Fatalf("the router dropped no IP fragment (%v)", dropped)
		}
		for _, x := range b.md.sas() {
			if x.State == "ESTABLISHED" {
				t.Fatalf("mifike established IKE SA %d through a router that drops IP fragments, without IKE fragmentation", x.ID)
			}
		}
		for _, s := range b.ch.sas() {
			if s.vals["state"] == "ESTABLISHED" {
				t.Fatal("strongSwan established an IKE SA without IKE fragmentation")
			}
		}
	})

	t.Run("with fragmentation the SA comes up", func(t *testing.T) {
		b.use(t)
		reconfigure("yes")
		before := l.droppedFragments(t)
		if err := initiate(); err != nil {
			t.Fatalf("initiate: %v\nmifike log:\n%s\ncharon log:\n%s", err, b.md.logTail(30), b.ch.logTail(30))
		}
		m, _ := b.settle(1, 1)
		if m[0].Initiator != mifikeInitiates || m[0].Proposal != labProposal {
			t.Fatalf("mifike's SA: initiator=%v proposal %q", m[0].Initiator, m[0].Proposal)
		}
		if after := l.droppedFragments(t); total(after) != total(before) {
			t.Errorf("IP fragments crossed the router with IKE fragmentation on: %v -> %v", before, after)
		}
		// strongSwan reassembled mifike's IKE_AUTH (RFC 7383 §2.6) and
		// fragmented its own (§2.5), which mifike reassembled: the SA is up.
		log := b.ch.log()
		if !strings.Contains(log, "reassembled fragmented IKE message") || !splitting.MatchString(log) {
			t.Fatalf("strongSwan did not reassemble mifike's IKE_AUTH and fragment its own:\n%s", b.ch.logTail(40))
		}
	})

	t.Run("tshark reassembles with mifike's key log", func(t *testing.T) {
		time.Sleep(time.Second) // what dumpcap still buffers
		capture.stop()
		table, err := os.ReadFile(filepath.Join(mdir, "keys", "ikev2_decryption_table"))
		if err != nil {
			t.Fatal(err)
		}
		frags, msgs, certs := tsharkFragments(t, capture.file, table, dir)
		t.Logf("tshark: %d fragments verified, %d messages reassembled with %d certificates", frags, msgs, certs)
		if msgs != 2 || certs != 4 {
			t.Fatalf("tshark reassembled %d messages with %d certificates, want both IKE_AUTH messages with two each", msgs, certs)
		}
		// Every fragment within the fragment size (§2.5.1).
		checkFragmentSizes(t, capture.file)
	})
}
