package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cloneConf is one side of a mifike↔mifike pair with cloning enabled.
// The end user (ns s) dials the gateway's loopback address over its first
// link; the gateway (ns m) answers any peer that knows the key.
func cloneConf(dir string, endUser bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: debug}\ncontrol: {socket: %s/mifike.sock}\nkeylog: {dir: %s/keys}\ndata_plane: none\nconnections:\n", dir, dir)
	if endUser {
		fmt.Fprintf(&b, "  home:\n    remote_addrs: [10.78.100.1]\n")
		fmt.Fprintf(&b, "    local: {auth: psk, id: ue.test}\n    remote: {auth: psk, id: gw.test}\n")
	} else {
		fmt.Fprintf(&b, "  rw:\n    local: {auth: psk, id: gw.test}\n    remote: {auth: psk, id: ue.test}\n")
	}
	fmt.Fprintf(&b, "    psk: %q\n    proposals: aes128-sha256-x25519\n    clone: {enable: true, max_ike_sas: 3}\n", psk)
	lts, rts := "10.78.20.0/24", "10.78.10.0/24"
	if !endUser {
		lts, rts = rts, lts
	}
	fmt.Fprintf(&b, "    children:\n")
	for _, c := range []string{"net", "lte"} {
		fmt.Fprintf(&b, "      %s: {local_ts: [%s], remote_ts: [%s], esp_proposals: aes128gcm16}\n", c, lts, rts)
	}
	return b.String()
}

func findSA(sas []sa, id uint64) *sa {
	for i := range sas {
		if sas[i].ID == id {
			return &sas[i]
		}
	}
	return nil
}

// RFC 7791 Appendix A between two mifike daemons over real sockets: the
// end user authenticates once over its first link, clones the IKE SA,
// creates a Child SA on the clone and moves the clone to its second link.
// tshark, with the end user's key log, shows CLONE_IKE_SA_SUPPORTED
// (16432) in IKE_AUTH and CLONE_IKE_SA (16433) in the CREATE_CHILD_SA, and
// verifies the checksum of every protected message of both IKE SAs.
func TestMifikeClone(t *testing.T) {
	requireRoot(t)
	requireTools(t, "tshark")
	m, s := twoPaths(t, "mfkc")
	dir := t.TempDir()
	capture := startCapture(t, m, "any", filepath.Join(dir, "ike.pcap"))
	gw := startMifike(t, m, filepath.Join(dir, "gw"), cloneConf(filepath.Join(dir, "gw"), false))
	ue := startMifike(t, s, filepath.Join(dir, "ue"), cloneConf(filepath.Join(dir, "ue"), true))
	sleep := func() { time.Sleep(100 * time.Millisecond) }

	ue.mustCtl("initiate", "home", "--child", "net")
	var first sa
	if !waitFor(50, sleep, func() bool {
		sas := ue.sas()
		if len(sas) == 1 && sas[0].State == "ESTABLISHED" && len(sas[0].Children) == 1 {
			first = sas[0]
			return true
		}
		return false
	}) {
		t.Fatalf("home not up:\n%s\n%s", ue.logTail(20), gw.logTail(20))
	}
	if !first.CloneSupported || first.Remote != "10.78.100.1:4500" || first.Local != "10.78.0.2:4500" {
		t.Fatalf("first IKE SA: %+v", first)
	}

	out := ue.mustCtl("clone", fmt.Sprint(first.ID))
	var clone sa
	if !waitFor(50, sleep, func() bool {
		for _, x := range ue.sas() {
			if x.Parent == first.ID && x.State == "ESTABLISHED" {
				clone = x
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no clone (%s):\n%s\n%s", out, ue.logTail(20), gw.logTail(20))
	}
	// The clone is a new IKE SA of the same family; the parent keeps its
	// Child SA and the clone starts with none (RFC 7791 §5.2).
	if clone.Family != first.Family || clone.SPIi == first.SPIi || len(clone.Children) != 0 || !clone.MOBIKEInitiator {
		t.Fatalf("clone %+v of %+v", clone, first)
	}
	if p := findSA(ue.sas(), first.ID); p == nil || len(p.Children) != 1 || p.State != "ESTABLISHED" {
		t.Fatalf("parent after the clone: %+v", p)
	}

	ue.mustCtl("initiate", "home", "--child", "lte", "--ike", fmt.Sprint(clone.ID))
	ue.mustCtl("move", fmt.Sprint(clone.ID), "--local", "10.78.1.2%s1")
	if !waitFor(50, sleep, func() bool {
		c, p := findSA(ue.sas(), clone.ID), findSA(ue.sas(), first.ID)
		if c == nil || p == nil || len(c.Children) != 1 || c.Local != "10.78.1.2:4500" || p.Local != "10.78.0.2:4500" {
			return false
		}
		// The gateway agrees: one SA per path, same SPIs.
		paths := map[string]string{}
		for _, g := range gw.sas() {
			if g.State == "ESTABLISHED" && len(g.Children) == 1 {
				paths[g.SPIi] = g.Remote
			}
		}
		return paths[first.SPIi] == "10.78.0.2:4500" && paths[clone.SPIi] == "10.78.1.2:4500"
	}) {
		t.Fatalf("clone not on the second path:\n%s\n%s\n%s", ue.mustCtl("list-sas"), gw.mustCtl("list-sas"), gw.logTail(20))
	}
	// Traffic on both IKE SAs after the move: a rekey of the clone.
	ue.mustCtl("rekey", fmt.Sprint(clone.ID))
	if !waitFor(50, sleep, func() bool {
		n := 0
		for _, x := range ue.sas() {
			if x.State == "ESTABLISHED" && len(x.Children) == 1 {
				n++
			}
		}
		return n == 2 && findSA(ue.sas(), clone.ID) == nil
	}) {
		t.Fatalf("clone rekey:\n%s", ue.mustCtl("list-sas"))
	}
	t.Logf("end user:\n%s\ngateway:\n%s", ue.mustCtl("list-sas"), gw.mustCtl("list-sas"))
	ue.mustCtl("terminate", "home")
	time.Sleep(500 * time.Millisecond)
	capture.stop()

	conf := filepath.Join(dir, "wireshark")
	os.MkdirAll(conf, 0o700)
	keys, err := os.ReadFile(filepath.Join(dir, "ue", "keys", "ikev2_decryption_table"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(conf, "ikev2_decryption_table"), keys, 0o600)
	tshark := func(args ...string) string {
		cmd := exec.Command("tshark", append([]string{"-n", "-r", capture.file}, args...)...)
		cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf, "HOME="+dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark %v: %v", args, err)
		}
		return string(out)
	}
	notifies := tshark("-Y", "isakmp.notify.msgtype == 16432 || isakmp.notify.msgtype == 16433",
		"-T", "fields", "-e", "isakmp.exchangetype", "-e", "isakmp.notify.msgtype")
	if !strings.Contains(notifies, "35\t") || !strings.Contains(notifies, "16432") ||
		!strings.Contains(notifies, "36\t") || !strings.Contains(notifies, "16433") {
		t.Fatalf("tshark does not show 16432 in IKE_AUTH and 16433 in CREATE_CHILD_SA:\n%s", notifies)
	}
	for _, x := range []sa{first, clone} {
		filter := fmt.Sprintf("isakmp.ispi == %s && isakmp.rspi == %s && isakmp.exchangetype >= 35", x.SPIi, x.SPIr)
		total := len(strings.Fields(tshark("-Y", filter, "-T", "fields", "-e", "frame.number")))
		v := tshark("-Y", filter, "-V")
		correct, incorrect := strings.Count(v, "[correct]"), strings.Count(v, "[incorrect")
		t.Logf("IKE SA %s_i %s_r: %d protected messages, %d checksums correct, %d incorrect", x.SPIi, x.SPIr, total, correct, incorrect)
		if total == 0 || correct != total || incorrect != 0 {
			t.Fatalf("IKE SA %s: tshark verified %d of %d messages (%d incorrect)", x.SPIi, correct, total, incorrect)
		}
	}
}
