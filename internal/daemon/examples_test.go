package daemon

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"gopkg.in/yaml.v3"
)

// exampleOnLoopback is examples/PAIR/NAME with only what ties it to a
// real host replaced: the addresses (a loopback address of its own), the
// ports, the control socket, and no data plane, metrics endpoint or
// interface manager (which would dial from this machine's real
// interfaces); set, applied to the first connection, are further keys
// (with nil deleting the key). Everything that makes the pair fit
// (ids, key, proposals, MOBIKE, clone, pools, children) is as shipped.
func exampleOnLoopback(t *testing.T, pair, name, dir string, top map[string]any, conn map[string]any) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", pair, name))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	setKeys(t, root, top)
	conns := lookup(root, "connections")
	if conns == nil || len(conns.Content) < 2 {
		t.Fatalf("%s: no connections", name)
	}
	setKeys(t, conns.Content[1], conn)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	writeFile(t, path, string(out))
	return path
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setKeys sets (or with a nil value deletes) keys of mapping m.
func setKeys(t *testing.T, m *yaml.Node, keys map[string]any) {
	t.Helper()
	for k, v := range keys {
		i := 0
		for ; i+1 < len(m.Content) && m.Content[i].Value != k; i += 2 {
		}
		if v == nil {
			if i < len(m.Content) {
				m.Content = append(m.Content[:i], m.Content[i+2:]...)
			}
			continue
		}
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			t.Fatal(err)
		}
		if i < len(m.Content) {
			m.Content[i+1] = &n
		} else {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &n)
		}
	}
}

// bothFree says whether UDP port p is free on both addresses: the two
// daemons use the same ports, each on its own loopback address, since
// an initiator floats to its own port_nat_t on the peer too (RFC 7296
// §2.23: both ends on 4500).
func bothFree(p int, addrs ...string) bool {
	var open []net.PacketConn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for _, a := range addrs {
		c, err := net.ListenPacket("udp4", net.JoinHostPort(a, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		open = append(open, c)
	}
	return true
}

// Each shipped pair (a pre-shared key; certificates, made by
// examples/make-pki.sh) brings up an IKE SA and its Child SA between the
// two daemons, with an inner address from the gateway's pool, MOBIKE and
// clone support negotiated; and the end user's SA clones (RFC 7791 §5.2),
// which needs clone.enable on both ends.
func TestExamplePairsComeUp(t *testing.T) {
	for _, pair := range []string{"psk", "pubkey"} {
		t.Run(pair, func(t *testing.T) { examplePairComesUp(t, pair) })
	}
}

func examplePairComesUp(t *testing.T, pair string) {
	gw, ue, _ := startExamplePair(t, pair, nil, nil)
	checkExamplePair(t, gw, ue)
}

// startExamplePair starts examples/PAIR's gateway (with gwConn's keys set
// on its connection) and end user on loopback addresses, and waits until
// the end user's IKE SA and Child SA are up; dir holds the files and the
// control sockets gw.sock and ue.sock. gwSetup, if not nil, runs on the
// gateway's daemon before it starts.
func startExamplePair(t *testing.T, pair string, gwConn map[string]any, gwSetup func(*Daemon)) (gw, ue *runningDaemon, dir string) {
	const gwAddr, ueAddr = "127.0.0.1", "127.0.0.2"
	if !bothFree(0, ueAddr) {
		t.Skipf("cannot bind %s, the end user's address in this test (lo without 127.0.0.0/8?)", ueAddr)
	}
	var p []int
	for len(p) < 2 {
		for _, c := range freePorts(t, 2-len(p)) {
			if bothFree(c, gwAddr, ueAddr) {
				p = append(p, c)
			}
		}
	}
	dir = t.TempDir()
	if pair == "pubkey" {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Skipf("examples/make-pki.sh needs openssl: %v", err)
		}
		if out, err := exec.Command("sh", filepath.Join("..", "..", "examples", "make-pki.sh"), dir).CombinedOutput(); err != nil {
			t.Fatalf("make-pki.sh: %v\n%s", err, out)
		}
	}
	host := func(addr, sock string) map[string]any {
		return map[string]any{
			"listen": []string{addr}, "port": p[0], "port_nat_t": p[1], "data_plane": "none",
			"control": map[string]string{"socket": filepath.Join(dir, sock)},
			"metrics": nil, "tun": nil, "log": map[string]string{"level": "debug"},
		}
	}
	gwPath := exampleOnLoopback(t, pair, "gateway.yaml", dir, host(gwAddr, "gw.sock"), gwConn)
	uePath := exampleOnLoopback(t, pair, "end-user.yaml", dir, host(ueAddr, "ue.sock"), map[string]any{
		"remote_addrs": []string{gwAddr}, "remote_port": p[0], "local_addrs": []string{ueAddr},
		"interfaces": nil, "start_action": "start",
	})
	gw = startDaemonWith(t, gwPath, gwSetup)
	ue = startDaemon(t, uePath)
	up := func() bool {
		g, u := gw.established(), ue.established()
		return len(g) == 1 && len(u) == 1 && len(g[0].Children) == 1 && len(u[0].Children) == 1
	}
	waitFor(t, "the IKE SA and its Child SA of the example pair", up)
	return gw, ue, dir
}

func checkExamplePair(t *testing.T, gw, ue *runningDaemon) {
	sa := ue.established()[0]
	pool := netip.MustParsePrefix("10.99.0.0/24")
	if len(sa.VirtualIPs) != 1 || !pool.Contains(sa.VirtualIPs[0]) {
		t.Errorf("the end user got %v, want one address of %v", sa.VirtualIPs, pool)
	}
	if !sa.MOBIKE || !sa.CloneSupported || !gw.established()[0].CloneSupported {
		t.Errorf("MOBIKE %v, clone supported %v (gateway %v)", sa.MOBIKE, sa.CloneSupported, gw.established()[0].CloneSupported)
	}

	if err := (backend{ue.d}).Clone(sa.ID); err != nil {
		t.Fatalf("clone: %v", err)
	}
	waitFor(t, "the clone on both ends", func() bool { return len(gw.established()) == 2 && len(ue.established()) == 2 })
	for _, s := range ue.established() {
		if s.ID != sa.ID && s.Parent != sa.ID {
			t.Errorf("IKE SA %d: parent %d, want a clone of %d", s.ID, s.Parent, sa.ID)
		}
	}
	if t.Failed() {
		t.Logf("gateway log:\n%s\nend user log:\n%s", gw.log.String(), ue.log.String())
	}
}
