package interop

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// twoPaths joins the namespaces with two links (m0-s0 10.78.0.0/24,
// m1-s1 10.78.1.0/24); each side has an IKE address on lo, reachable over
// either link (the first preferred), as a multi-homed host would.
func twoPaths(t testing.TB, prefix string) (m, s string) {
	t.Helper()
	prefix = nsPrefix(prefix)
	m, s = prefix+"-m", prefix+"-s"
	for _, ns := range []string{m, s} {
		run(t, "sh", "-c", "ip netns del "+ns+" 2>/dev/null || true")
		run(t, "ip", "netns", "add", ns)
	}
	t.Cleanup(func() {
		for _, ns := range []string{m, s} {
			run(t, "sh", "-c", "ip netns del "+ns+" 2>/dev/null || true")
		}
	})
	run(t, "ip", "link", "add", "m0", "netns", m, "type", "veth", "peer", "name", "s0", "netns", s)
	run(t, "ip", "link", "add", "m1", "netns", m, "type", "veth", "peer", "name", "s1", "netns", s)
	for _, c := range []string{
		m + " link set lo up", s + " link set lo up",
		m + " addr add 10.78.0.1/24 dev m0", s + " addr add 10.78.0.2/24 dev s0",
		m + " addr add 10.78.1.1/24 dev m1", s + " addr add 10.78.1.2/24 dev s1",
		m + " link set m0 up", m + " link set m1 up", s + " link set s0 up", s + " link set s1 up",
		m + " addr add 10.78.100.1/32 dev lo", s + " addr add 10.78.200.1/32 dev lo",
		m + " addr add 10.78.10.1/32 dev lo", s + " addr add 10.78.20.1/32 dev lo",
		s + " route add 10.78.100.1/32 via 10.78.0.1 metric 100", s + " route add 10.78.100.1/32 via 10.78.1.1 metric 200",
		m + " route add 10.78.200.1/32 via 10.78.0.2 metric 100", m + " route add 10.78.200.1/32 via 10.78.1.2 metric 200",
	} {
		f := strings.Fields(c)
		run(t, "ip", append([]string{"-n", f[0]}, f[1:]...)...)
	}
	for _, ns := range []string{m, s} {
		// A multi-homed host: ARP only for the link's own addresses, no
		// routes over a link without carrier, and each link's subnet
		// reachable over the other one when its own link is down.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w",
			"net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.all.arp_ignore=1",
			"net.ipv4.conf.all.ignore_routes_with_linkdown=1")
	}
	for _, c := range []string{
		m + " route add 10.78.0.0/24 via 10.78.1.2 metric 500", m + " route add 10.78.1.0/24 via 10.78.0.2 metric 500",
		s + " route add 10.78.0.0/24 via 10.78.1.1 metric 500", s + " route add 10.78.1.0/24 via 10.78.0.1 metric 500",
	} {
		f := strings.Fields(c)
		run(t, "ip", append([]string{"-n", f[0]}, f[1:]...)...)
	}
	return m, s
}

const mobikeSwanctl = `connections {
    # strongSwan initiates from its links to mifike's lo address and moves.
    roam {
        version = 2
        remote_addrs = 10.78.100.1
        proposals = aes128-sha256-x25519
        mobike = yes
        local { auth = psk
            id = s-roam.test }
        remote { auth = psk
            id = m-roam.test }
        children { net { local_ts = 10.78.20.0/24
            remote_ts = 10.78.10.0/24
            esp_proposals = aes128gcm16 } }
    }
    # strongSwan answers mifike, which moves.
    home {
        version = 2
        local_addrs = 10.78.200.1
        proposals = aes128-sha256-x25519
        mobike = yes
        local { auth = psk
            id = s-home.test }
        remote { auth = psk
            id = m-home.test }
        children { net { local_ts = 10.78.20.0/24
            remote_ts = 10.78.10.0/24
            esp_proposals = aes128gcm16 } }
    }
}
secrets { ike { id-1 = s-roam.test
    id-2 = m-roam.test
    id-3 = s-home.test
    id-4 = m-home.test
    secret = "` + psk + `" } }
`

func mobikeMifike(dir string) string {
	return fmt.Sprintf(`log: {level: debug}
control: {socket: %[1]s/mifike.sock}
data_plane: none
connections:
  roam:
    local_addrs: [10.78.100.1]
    proposals: aes128-sha256-x25519
    local: {auth: psk, id: m-roam.test}
    remote: {auth: psk, id: s-roam.test}
    psk: %[2]q
    children:
      net: {local_ts: [10.78.10.0/24], remote_ts: [10.78.20.0/24], esp_proposals: aes128gcm16}
  home:
    remote_addrs: [10.78.200.1]
    proposals: aes128-sha256-x25519
    clone: {enable: true}
    local: {auth: psk, id: m-home.test}
    remote: {auth: psk, id: s-home.test}
    psk: %[2]q
    children:
      net: {local_ts: [10.78.10.0/24], remote_ts: [10.78.20.0/24], esp_proposals: aes128gcm16}
`, dir, psk)
}

// swanSA finds strongSwan's established SA of a connection.
func swanSA(c *charon, conn string) *viciNode {
	for _, n := range c.sas() {
		if n.vals["name"] == conn && n.vals["state"] == "ESTABLISHED" {
			return n
		}
	}
	return nil
}

// RFC 4555 with strongSwan in both roles: strongSwan moves when its link
// goes down and mifike (responder) follows; mifike moves (explicitly, and
// by itself when its interface goes down) and strongSwan follows. Against
// strongSwan, which does not advertise CLONE_IKE_SA_SUPPORTED, a clone is
// refused locally and never sent.
func TestStrongSwanMOBIKE(t *testing.T) {
	requireRoot(t)
	requireTools(t, charonPath, "swanctl")
	m, s := twoPaths(t, "mfkm")
	dir := t.TempDir()
	ch := startCharon(t, s, filepath.Join(dir, "swan"), mobikeSwanctl, nil)
	md := startMifike(t, m, filepath.Join(dir, "mifike"), mobikeMifike(filepath.Join(dir, "mifike")))
	sleep := func() { time.Sleep(200 * time.Millisecond) }

	t.Run("strongswan-moves", func(t *testing.T) {
		ch.t, md.t = t, t
		ch.swanctl("--initiate", "--ike", "roam", "--child", "net")
		if !waitFor(50, sleep, func() bool {
			for _, x := range md.sas() {
				if x.Conn == "roam" && x.State == "ESTABLISHED" && len(x.Children) == 1 {
					return true
				}
			}
			return false
		}) {
			t.Fatal("roam not up")
		}
		// strongSwan sends its address list right after IKE_AUTH; let that
		// exchange finish, or it retransmits it on the dead path first.
		if !waitFor(50, sleep, func() bool { return strings.Contains(md.log(), "peer announced addresses") }) {
			t.Fatalf("strongSwan's address list did not arrive:\n%s", md.logTail(20))
		}
		time.Sleep(500 * time.Millisecond)
		// The first link loses its address (Wi-Fi gone): strongSwan moves.
		run(t, "ip", "-n", s, "addr", "del", "10.78.0.2/24", "dev", "s0")
		ok := waitFor(100, sleep, func() bool {
			for _, x := range md.sas() {
				if x.Conn == "roam" && x.Remote == "10.78.1.2:4500" {
					return true
				}
			}
			return false
		})
		if !ok {
			t.Fatalf("mifike did not follow strongSwan's move:\n%s\ncharon:\n%s\nmifike:\n%s", md.mustCtl("list-sas"), ch.logTail(30), md.logTail(30))
		}
		if !waitFor(100, sleep, func() bool {
			n := swanSA(ch, "roam")
			return n != nil && n.vals["local-host"] == "10.78.1.2" && agree(md.sas(), ch.sas()) == nil
		}) {
			t.Fatalf("views differ after the move: %v\n%s", agree(md.sas(), ch.sas()), md.mustCtl("list-sas"))
		}
		run(t, "ip", "-n", s, "addr", "add", "10.78.0.2/24", "dev", "s0")
		run(t, "ip", "-n", s, "route", "replace", "10.78.100.1/32", "via", "10.78.0.1", "metric", "100")
		ch.swanctl("--terminate", "--ike", "roam")
	})

	t.Run("mifike-moves", func(t *testing.T) {
		ch.t, md.t = t, t
		md.mustCtl("initiate", "home")
		var id uint64
		if !waitFor(50, sleep, func() bool {
			for _, x := range md.sas() {
				if x.Conn == "home" && x.State == "ESTABLISHED" && len(x.Children) == 1 {
					id = x.ID
					return true
				}
			}
			return false
		}) {
			t.Fatalf("home not up:\n%s", md.logTail(20))
		}
		if n := swanSA(ch, "home"); n == nil || n.vals["remote-host"] != "10.78.0.1" {
			t.Fatalf("strongSwan's view before the move: %v", n)
		}
		// An explicit move onto the second link, pinned to its interface.
		md.mustCtl("move", fmt.Sprint(id), "--local", "10.78.1.1%m1")
		if !waitFor(50, sleep, func() bool {
			n := swanSA(ch, "home")
			return n != nil && n.vals["remote-host"] == "10.78.1.1" && agree(md.sas(), ch.sas()) == nil
		}) {
			t.Fatalf("strongSwan did not follow mifike's move:\n%s\n%s", ch.logTail(30), md.logTail(30))
		}
		// The second link goes down: mifike moves back by itself.
		run(t, "ip", "-n", m, "link", "set", "m1", "down")
		if !waitFor(100, sleep, func() bool {
			n := swanSA(ch, "home")
			return n != nil && n.vals["remote-host"] == "10.78.0.1" && agree(md.sas(), ch.sas()) == nil
		}) {
			t.Fatalf("no failover after m1 went down:\n%s\n%s", ch.logTail(30), md.logTail(30))
		}
		run(t, "ip", "-n", m, "link", "set", "m1", "up")

		// strongSwan did not send CLONE_IKE_SA_SUPPORTED: the clone is
		// refused here, with a clear message, and nothing is sent.
		before := strings.Count(ch.log(), "CREATE_CHILD_SA")
		out, err := md.ctl("clone", fmt.Sprint(id))
		if err == nil || !strings.Contains(out, "CLONE_IKE_SA_SUPPORTED") {
			t.Fatalf("clone against strongSwan: err %v, output %q", err, out)
		}
		time.Sleep(time.Second)
		if strings.Count(ch.log(), "CREATE_CHILD_SA") != before {
			t.Fatal("a clone request reached strongSwan")
		}
		md.mustCtl("terminate", fmt.Sprint(id))
	})
}
