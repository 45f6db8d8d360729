// Package hostile sends a running gateway daemon a stream of mutated IKE
// messages built from real mifike sessions, on both IKE ports, aimed at
// its live SPIs as well as random ones, and checks that it stays up, keeps
// its SAs and their traffic, and accepts a new client afterwards (RFC 7296
// §2.21: what cannot be authenticated is dropped and changes nothing).
//
// The lab is the demo's (internal/demo): an end user with three VPNs (a
// parent and two clones, RFC 7791) to a gateway, plus an attacker
// namespace behind the same router and a second client. The corpus is
// what the real sessions exchanged, captured on the gateway's interfaces:
// IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA (clones, Child and IKE rekeys),
// INFORMATIONAL (MOBIKE, liveness, delete), and ESP.
//
// The stream is seeded; the test prints the seed, and
//
//	flock /tmp/mifike-heavy.lock go test ./test/hostile -v -hostile.seed=N
//
// replays the same mutations (of a new session's messages: SPIs, nonces
// and keys differ from run to run). A failing run keeps its directory:
// the daemons' logs, and every datagram sent as a pcap with an index of
// the mutation each one is.
package hostile

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/lab"
)

var (
	seedFlag = flag.Uint64("hostile.seed", 0, "seed of the mutation stream (0: from the clock); the test prints it")
	durFlag  = flag.Duration("hostile.duration", 20*time.Second, "how long the stream runs")
	rateFlag = flag.Int("hostile.rate", 400, "datagrams per second in the stream")
	keepFlag = flag.Bool("hostile.keep", false, "keep the run's directory (logs, configs, the stream as pcap) even when it passes")
)

var mifikeBin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "mifike-hostile-bin")
			if err == nil {
				defer os.RemoveAll(dir)
				mifikeBin, err = demo.BuildBinary(dir)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// The attacker's and the second client's networks, behind the router.
var (
	attackerAddrs = []netip.Addr{
		netip.MustParseAddr("10.94.0.2"), netip.MustParseAddr("10.94.0.3"), netip.MustParseAddr("10.94.0.4"),
		netip.MustParseAddr("10.94.0.5"), netip.MustParseAddr("10.94.0.6"), netip.MustParseAddr("10.94.0.7"),
	}
	// Forged random sources: routed to the attacker's link, owned by no one.
	spoofNet = netip.MustParsePrefix("10.94.128.0/17")
)

const metricsAddr = "127.0.0.1:9847"

// gatewayConfig is the demo's gateway with metrics and a second
// connection (another user, its own pool) for the client that connects
// after the stream. Lifetimes are the defaults (IKE 4 h, Child 1 h): no
// rekey happens during the run, so the SAs must be the very same after.
func gatewayConfig(t *testing.T) string {
	cfg := demo.GWConfig(demo.Options{})
	if !strings.Contains(cfg, "\npools:\n") || !strings.HasSuffix(cfg, "\n") {
		t.Fatalf("demo.GWConfig changed shape; update gatewayConfig:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, "\npools:\n", fmt.Sprintf("\nmetrics: {listen: %q}\npools:\n  second: {addrs: 10.98.0.0/24}\n", metricsAddr), 1)
	return cfg + fmt.Sprintf(`  second:
    local: {auth: psk, id: gw.demo.example}
    remote: {auth: psk, id: bob@demo.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    pools: [second]
    children:
      lan: {local_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}
`, demo.PSK)
}

// secondClientConfig is a plain road warrior: one interface, no clones.
func secondClientConfig() string {
	return fmt.Sprintf(`log: {level: debug}
data_plane: userspace
tun: {name: mifike0}
retransmit: {timeout: 1s, base: 1.4, tries: 5}
connections:
  office:
    remote_addrs: [%s]
    local: {auth: psk, id: bob@demo.example}
    remote: {auth: psk, id: gw.demo.example}
    psk: %q
    proposals: aes128gcm16-prfsha256-x25519
    start_action: start
    vips: [0.0.0.0]
    children:
      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}
`, demo.GatewayAddrs[0], demo.PSK)
}

// TestHostileStreamRFC7296Section2_21 is the hostile-input test of issue
// 13: a stream of mutated real messages must change nothing a peer
// authenticated.
func TestHostileStreamRFC7296Section2_21(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, a raw socket and a packet socket (CI runs as root)")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay the same mutations: go test ./test/hostile -run %s -v -hostile.seed=%d)", seed, t.Name(), seed)

	dir, err := os.MkdirTemp("", fmt.Sprintf("mifike-hostile-%d-", seed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || *keepFlag {
			t.Logf("kept %s: daemon logs and configs, stream.pcap and stream.index (every datagram sent, with its mutation)", dir)
			return
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// The lab, an attacker and a second client behind the router.
	top, err := demo.Build(ctx, "mfkh", dir, mifikeBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { top.Close() })
	atk, ue2NS := extendLab(t, top)

	live := &liveState{}
	capt, err := startCapture(top.GW, demo.GatewayAddrs, live)
	if err != nil {
		t.Fatalf("packet capture in the gateway's namespace: %v", err)
	}
	t.Cleanup(capt.close)

	gw, err := top.StartDaemon("gw", top.GW, gatewayConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ue, err := top.StartDaemon("ue", top.UE, demo.UEConfig(demo.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log (tail):\n%s", tail(gw.Log(), 40))
			t.Logf("end user log (tail):\n%s", tail(ue.Log(), 20))
		}
	})
	vpns := waitVPNs(t, ue, []string{"eth0", "wlan0", "wwan0"}, 40*time.Second)

	// A second user's whole session, for the corpus: IKE_SA_INIT and
	// IKE_AUTH, a Child SA rekey and an IKE SA rekey (CREATE_CHILD_SA),
	// then the deletes (INFORMATIONAL) when its daemon stops.
	oldSession(t, top, ue2NS, gw)

	// Traffic through every VPN: ESP for the corpus, and the baseline.
	for _, iface := range []string{"eth0", "wlan0", "wwan0"} {
		pingThrough(t, pinger{top, top.UE}, ue, vpns[iface])
	}
	before := stableSAs(t, gw, ue)
	ueBefore := saKeys(sas(t, ue))
	live.mu.Lock()
	for _, s := range before {
		live.sas = append(live.sas, toLive(t, s))
	}
	live.mu.Unlock()

	corpusIKE, corpusESP := capt.corpus()
	t.Logf("corpus: %s", describeCorpus(t, corpusIKE, corpusESP))
	t.Logf("live IKE SAs of the gateway (the targets): %s", describeLive(before))

	m0 := scrape(t, top.GW)
	rss0 := rss(gw.Pid())

	// The stream, with traffic through two of the VPNs meanwhile: a ping
	// with a loss budget and a TCP connection that must not break.
	stream, err := top.StartStream(netip.MustParseAddr(vpns["wlan0"].VirtualIPs[0]))
	if err != nil {
		t.Fatalf("TCP stream through the wlan0 VPN: %v", err)
	}
	pingDone := make(chan pingResult, 1)
	go func() {
		pingDone <- pingFor(ctx, top, vpns["eth0"].VirtualIPs[0], *durFlag+2*time.Second)
	}()

	a, err := newAttacker(atk, attackerAddrs)
	if err != nil {
		t.Fatalf("attacker sockets: %v", err)
	}
	t.Cleanup(a.close)
	rec, err := newRecorder(filepath.Join(dir, "stream.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	gen := newGenerator(seed, corpusIKE, corpusESP, live, demo.GatewayAddrs, a.own, spoofNet)
	tl := newTally()
	rssSeries := []float64{rss0} // once a second: does it level off?
	crashed := flood(gen, a, rec, tl, gw, *durFlag, *rateFlag, func() {
		rssSeries = append(rssSeries, rss(gw.Pid()))
	})
	rec.close()
	time.Sleep(500 * time.Millisecond) // the answers to the last datagrams
	a.close()
	if crashed {
		t.Fatalf("the gateway exited during the stream (seed %d)\n%s\nlast datagrams sent (all of them are in the kept stream.pcap):\n%s\ngateway log (tail):\n%s",
			seed, panicLines(gw.Log()), strings.Join(rec.recent, "\n"), tail(gw.Log(), 60))
	}

	ping := <-pingDone
	sent, received, streamErr := stream.Stop()
	m1 := scrape(t, top.GW)
	rss1 := rss(gw.Pid())
	arrived, fragments := capt.counts()
	answers, answerBytes := a.answers()

	t.Logf("stream: %d datagrams in %v (seed %d); reached the gateway: %d on port 500, %d on port 4500, %d plain ESP (plus %d trailing fragments)\n%s",
		tl.total, *durFlag, seed, arrived[ikePort], arrived[nattPort], arrived[protoESP], fragments, tl)
	t.Logf("the gateway answered the attacker %d times (%d octets):\n%s", sum(answers), answerBytes, describeCounts(answers))
	t.Logf("the gateway's counters over the stream:\n%s", metricDeltas(m0, m1))
	t.Logf("traffic during the stream: ping through the eth0 VPN %d/%d answered; TCP stream through the wlan0 VPN %d records sent, %d received, err %v",
		ping.received, ping.sent, sent, received, streamErr)
	rssSeries = append(rssSeries, rss1)
	var series []string
	for i, r := range rssSeries {
		if i%5 == 0 || i == len(rssSeries)-1 {
			series = append(series, fmt.Sprintf("%.1f", mb(r)))
		}
	}
	t.Logf("gateway memory: RSS %s MB (every 5 s of the stream, then after it); Go heap in use %.1f -> %.1f MB, goroutines %v -> %v",
		strings.Join(series, " "), m0["go_memstats_heap_inuse_bytes"]/1e6, m1["go_memstats_heap_inuse_bytes"]/1e6,
		m0["go_goroutines"], m1["go_goroutines"])

	// It stayed up and said nothing of a panic.
	select {
	case <-gw.Exited():
		t.Fatalf("the gateway exited after the stream:\n%s\n%s", panicLines(gw.Log()), tail(gw.Log(), 40))
	default:
	}
	for _, d := range []*demo.Daemon{gw, ue} {
		if l := panicLines(d.Log()); l != "" {
			t.Errorf("%s's log reports a crash:\n%s", d.Name, l)
		}
	}
	if delivered := arrived[ikePort] + arrived[nattPort] + arrived[protoESP]; delivered < tl.total/2 {
		t.Errorf("only %d of %d datagrams reached the gateway: the stream did not test it", delivered, tl.total)
	}

	// The same SAs, established, with the same Child SAs, on both ends.
	after := sas(t, gw)
	if diff := compareSAs(before, after); diff != "" {
		t.Errorf("the gateway's SAs changed under the stream:\n%s\nbefore: %s\nafter: %s", diff, describeLive(before), describeLive(after))
	}
	if ueAfter := saKeys(sas(t, ue)); !slices.Equal(ueBefore, ueAfter) {
		t.Errorf("the end user's SAs changed under the stream:\nbefore %v\nafter  %v", ueBefore, ueAfter)
	}
	for _, s := range after {
		r, _ := netip.ParseAddrPort(s.Remote)
		if s.State == ike.StateEstablished && (spoofNet.Contains(r.Addr()) || slices.Contains(attackerAddrs, r.Addr())) {
			t.Errorf("an IKE SA with the attacker is ESTABLISHED: %+v", s)
		}
	}

	// Traffic went through during the stream and goes through after it.
	if ping.sent == 0 || ping.received*10 < ping.sent*8 {
		t.Errorf("ping through the eth0 VPN during the stream: %d of %d answered (budget: 20%% lost)\n%s", ping.received, ping.sent, ping.out)
	}
	if streamErr != nil || sent == 0 || received != sent {
		t.Errorf("TCP stream through the wlan0 VPN during the stream: %d records sent, %d received, %v", sent, received, streamErr)
	}
	for _, iface := range []string{"eth0", "wlan0", "wwan0"} {
		pingThrough(t, pinger{top, top.UE}, ue, vpns[iface])
	}

	// A new client connects and passes traffic.
	start := time.Now()
	ue2, err := top.StartDaemon("ue2-after", ue2NS, secondClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	s2 := waitSession(t, ue2, 30*time.Second)
	took := time.Since(start)
	pingThrough(t, pinger{top, ue2NS}, ue2, s2)
	t.Logf("a new client (bob, from %s) established IKE SA %d with inner address %s %v after its daemon started, and pinged the server through it",
		s2.Local, s2.ID, s2.VirtualIPs, took.Round(time.Millisecond))
	if diff := compareSAs(before, sas(t, gw)); diff != "" {
		t.Errorf("the gateway's SAs changed when the new client connected:\n%s", diff)
	}
}

// extendLab adds the attacker's namespace (its addresses on a link to the
// router; forged sources pass the router) and the second client's.
func extendLab(t *testing.T, top *demo.Topology) (atk, ue2 string) {
	t.Helper()
	var err error
	if atk, err = top.AddNS("atk"); err != nil {
		t.Fatal(err)
	}
	if ue2, err = top.AddNS("ue2"); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, a := range attackerAddrs {
		addrs = append(addrs, a.String()+"/16")
	}
	steps := []func() error{
		func() error {
			return top.Veth(lab.End{NS: top.Net, Dev: "atk", Addrs: []string{"10.94.0.1/16"}}, lab.End{NS: atk, Dev: "eth0", Addrs: addrs})
		},
		func() error {
			return top.Veth(lab.End{NS: top.Net, Dev: "ue2", Addrs: []string{"10.95.0.1/24"}}, lab.End{NS: ue2, Dev: "eth0", Addrs: []string{"10.95.0.2/24"}})
		},
		func() error { return top.IP(atk, "route", "add", "default", "via", "10.94.0.1") },
		func() error { return top.IP(ue2, "route", "add", "default", "via", "10.95.0.1") },
		func() error { return top.IP(top.GW, "route", "add", "10.94.0.0/15", "via", "10.92.1.1") },
		func() error {
			// The router checks no sources: forged ones must reach the
			// gateway as they would through a network that does not
			// filter (BCP 38 is not everywhere).
			_, err := top.Run(context.Background(), top.Net, "sh", "-c", "for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done")
			return err
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	return atk, ue2
}

// oldSession runs a second user's session through its whole life, for
// the corpus, and waits until the gateway has forgotten it.
func oldSession(t *testing.T, top *demo.Topology, ns string, gw *demo.Daemon) {
	t.Helper()
	d, err := top.StartDaemon("ue2", ns, secondClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := waitSession(t, d, 30*time.Second)
	pingThrough(t, pinger{top, ns}, d, s)
	child := s.Children[0]
	spi, _ := strconv.ParseUint(child.InSPI, 16, 32)
	if err := d.Call("rekey", map[string]any{"ike_sa": s.ID, "child_spi": spi}); err != nil {
		t.Fatalf("rekeying the second client's Child SA: %v", err)
	}
	if !demo.WaitFor(15*time.Second, func() bool {
		l, _ := d.SAs()
		return len(l) == 1 && len(l[0].Children) == 1 && l[0].Children[0].InSPI != child.InSPI && l[0].Children[0].State == "INSTALLED"
	}) {
		t.Fatalf("the second client's Child SA was not rekeyed:\n%s", d.Table(context.Background()))
	}
	if err := d.Call("rekey", map[string]any{"ike_sa": s.ID}); err != nil {
		t.Fatalf("rekeying the second client's IKE SA: %v", err)
	}
	if !demo.WaitFor(15*time.Second, func() bool {
		l, _ := d.SAs()
		return len(l) == 1 && l[0].SPIi != s.SPIi && l[0].State == ike.StateEstablished && len(l[0].Children) == 1
	}) {
		t.Fatalf("the second client's IKE SA was not rekeyed:\n%s", d.Table(context.Background()))
	}
	d.Stop(5 * time.Second)
	if !demo.WaitFor(15*time.Second, func() bool {
		for _, s := range sas(t, gw) {
			if s.Conn == "second" {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the gateway kept the second client's SA after its delete:\n%s", gw.Table(context.Background()))
	}
}

// waitSession waits for the daemon's one IKE SA, established with a Child SA.
func waitSession(t *testing.T, d *demo.Daemon, timeout time.Duration) control.SA {
	t.Helper()
	var s control.SA
	if !demo.WaitFor(timeout, func() bool {
		l, err := d.SAs()
		if err != nil || len(l) != 1 || l[0].State != ike.StateEstablished || len(l[0].Children) == 0 || len(l[0].VirtualIPs) == 0 {
			return false
		}
		s = l[0]
		return true
	}) {
		t.Fatalf("%s: no established IKE SA with a Child SA and an inner address within %v:\n%s\n%s", d.Name, timeout, d.Table(context.Background()), tail(d.Log(), 30))
	}
	return s
}

// stableSAs waits until the gateway holds exactly the end user's three
// VPNs, established, each with its Child SA installed, and they stay so
// for a second; it returns them.
func stableSAs(t *testing.T, gw, ue *demo.Daemon) []control.SA {
	t.Helper()
	var last []string
	var got []control.SA
	if !demo.WaitFor(30*time.Second, func() bool {
		l := sas(t, gw)
		ok := len(l) == 3
		for _, s := range l {
			ok = ok && s.Conn == "roadwarrior" && s.State == ike.StateEstablished && len(s.Children) == 1 && s.Children[0].State == "INSTALLED"
		}
		k := saKeys(l)
		stable := ok && slices.Equal(k, last)
		last, got = k, l
		if !stable {
			time.Sleep(time.Second)
		}
		return stable
	}) {
		t.Fatalf("the gateway's SAs did not settle on the end user's three VPNs:\n%s\nend user:\n%s", gw.Table(context.Background()), ue.Table(context.Background()))
	}
	return got
}

func toLive(t *testing.T, s control.SA) liveSA {
	t.Helper()
	l := liveSA{id: s.ID, peerInitiator: !s.Initiator}
	var err error
	if l.spiI, err = strconv.ParseUint(s.SPIi, 16, 64); err != nil {
		t.Fatal(err)
	}
	if l.spiR, err = strconv.ParseUint(s.SPIr, 16, 64); err != nil {
		t.Fatal(err)
	}
	if l.local, err = netip.ParseAddrPort(s.Local); err != nil {
		t.Fatal(err)
	}
	if l.remote, err = netip.ParseAddrPort(s.Remote); err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Children {
		spi, err := strconv.ParseUint(c.InSPI, 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		l.childIn = append(l.childIn, uint32(spi))
	}
	return l
}

// saKeys is what must not change: each IKE SA's ID, SPIs and state, and
// its Child SAs' SPIs and states.
func saKeys(l []control.SA) []string {
	var out []string
	for _, s := range l {
		k := fmt.Sprintf("IKE SA %d %s/%s %s %s", s.ID, s.SPIi, s.SPIr, s.State, s.Remote)
		for _, c := range s.Children {
			k += fmt.Sprintf(" child %s/%s %s", c.InSPI, c.OutSPI, c.State)
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// compareSAs says which of the SAs before are gone or changed, and which
// established SAs are new (half-open ones the stream made are expected).
func compareSAs(before, after []control.SA) string {
	var b strings.Builder
	was := map[string]bool{}
	for _, k := range saKeys(before) {
		was[k] = true
	}
	now := map[string]bool{}
	var established []control.SA
	for _, s := range after {
		// Half-open SAs the stream began are expected, and so is the
		// new client's (connection second).
		if s.State != ike.StateConnecting && s.Conn != "second" {
			established = append(established, s)
		}
	}
	for _, k := range saKeys(established) {
		now[k] = true
		if !was[k] {
			fmt.Fprintf(&b, "  new or changed: %s\n", k)
		}
	}
	for _, k := range saKeys(before) {
		if !now[k] {
			fmt.Fprintf(&b, "  gone or changed: %s\n", k)
		}
	}
	return b.String()
}

func sas(t *testing.T, d *demo.Daemon) []control.SA {
	t.Helper()
	l, err := d.SAs()
	if err != nil {
		t.Fatalf("%s: list-sas: %v", d.Name, err)
	}
	return l
}

func waitVPNs(t *testing.T, d *demo.Daemon, want []string, timeout time.Duration) map[string]control.SA {
	t.Helper()
	var got map[string]control.SA
	if !demo.WaitFor(timeout, func() bool {
		got = map[string]control.SA{}
		for _, s := range sas(t, d) {
			if s.State == ike.StateEstablished && len(s.Children) > 0 && len(s.VirtualIPs) > 0 {
				got[demo.IfaceOf(s)] = s
			}
		}
		for _, w := range want {
			if _, ok := got[w]; !ok {
				return false
			}
		}
		return len(got) == len(want)
	}) {
		t.Fatalf("end user's VPNs are not up on %v:\n%s", want, d.Table(context.Background()))
	}
	return got
}

// pinger pings the server from an address in its namespace.
type pinger struct {
	top *demo.Topology
	ns  string
}

func (p pinger) ping(src string) error {
	return p.top.Ping(context.Background(), p.ns, src, demo.Server)
}

// pingThrough pings the server from the VPN's inner address and checks
// the VPN's Child SA carried it.
func pingThrough(t *testing.T, p pinger, d *demo.Daemon, s control.SA) {
	t.Helper()
	before := packetsOut(t, d, s.ID)
	if err := p.ping(s.VirtualIPs[0]); err != nil {
		t.Fatalf("ping from %s (IKE SA %d of %s): %v\n%s", s.VirtualIPs[0], s.ID, d.Name, err, d.Table(context.Background()))
	}
	if after := packetsOut(t, d, s.ID); after < before+3 {
		t.Fatalf("IKE SA %d's Child SA sent %d packets for 3 pings from %s", s.ID, after-before, s.VirtualIPs[0])
	}
}

func packetsOut(t *testing.T, d *demo.Daemon, id uint64) uint64 {
	var n uint64
	for _, s := range sas(t, d) {
		if s.ID == id {
			for _, c := range s.Children {
				n += c.PacketsOut
			}
		}
	}
	return n
}

type pingResult struct {
	sent, received int
	out            string
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingFor pings the server from src five times a second for d.
func pingFor(ctx context.Context, top *demo.Topology, src string, d time.Duration) pingResult {
	n := int(d / (200 * time.Millisecond))
	out, err := top.Run(ctx, top.UE, "ping", "-n", "-q", "-i", "0.2", "-W", "2", "-c", strconv.Itoa(n), "-I", src, demo.Server.String())
	r := pingResult{out: string(out)}
	if err != nil {
		r.out += "\n" + err.Error()
	}
	if m := pingStats.FindStringSubmatch(string(out)); m != nil {
		r.sent, _ = strconv.Atoi(m[1])
		r.received, _ = strconv.Atoi(m[2])
	}
	return r
}

// flood sends the stream at rate datagrams a second for d, paced in small
// bursts so a loaded machine sends it late rather than all at once. It
// stops early, reporting true, if the gateway exits.
func flood(gen *generator, a *attacker, rec *recorder, tl *tally, gw *demo.Daemon, d time.Duration, rate int, every func()) bool {
	start := time.Now()
	lastCheck := start
	for {
		select {
		case <-gw.Exited():
			return true
		default:
		}
		el := time.Since(start)
		if el >= d {
			return false
		}
		due := int(el.Seconds() * float64(rate))
		for n := 0; tl.total+len(tl.errors) < due && n < 64; n++ {
			dg := gen.next()
			src, err := a.send(dg)
			tl.add(dg, err)
			if err == nil {
				rec.record(dg, src, time.Now())
			}
		}
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			every()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// panicLines finds the Go runtime's crash reports in a log.
func panicLines(log string) string {
	var out []string
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") || strings.HasPrefix(l, "SIGSEGV") {
			out = append(out, lines[i:min(len(lines), i+30)]...)
			break
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// rss is a process's resident memory in octets, 0 if unknown.
func rss(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

func mb(b float64) float64 { return b / 1e6 }
