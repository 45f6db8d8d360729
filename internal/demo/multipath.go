package demo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// MPTCP over the end user's per-interface VPNs (issue 20,
// docs/multipath.md): a server in the protected network that sends a
// download over MPTCP (RFC 8684), a client on the end user that checks
// every byte, and the lab's knobs for it: rate limits per access link
// and the byte counters of each link.

// MPTCPPort is where the lab's MPTCP server listens on Server.
const MPTCPPort = 7200

// MPTCPServer sends each client the download it asks for: the client
// writes the size (8 octets, big endian) and a seed (8 octets), the
// server answers with that many octets of the ChaCha8 stream of the seed
// and closes. The content is known to the client in advance, so it
// checks the whole download, order included, by its SHA-256.
type MPTCPServer struct {
	ln     net.Listener
	served atomic.Int64
}

// StartMPTCPServer listens on Server:MPTCPPort in the server's namespace,
// with MPTCP (a plain TCP client is served too), and lets the server's
// path manager accept a join per VPN (ip mptcp limits: the default 2
// extra subflows would refuse the fourth VPN's).
func (t *Topology) StartMPTCPServer() (*MPTCPServer, error) {
	if err := t.IP(t.Srv, "mptcp", "limits", "set", "subflow", "8", "add_addr_accepted", "8"); err != nil {
		return nil, err
	}
	s := &MPTCPServer{}
	err := InNS(t.Srv, func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		var err error
		s.ln, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(Server, MPTCPPort).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("MPTCP server: %w", err)
	}
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s, nil
}

func (s *MPTCPServer) serve(c net.Conn) {
	defer c.Close()
	var req [16]byte
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	size, seed := int64(binary.BigEndian.Uint64(req[:8])), binary.BigEndian.Uint64(req[8:])
	n, _ := io.Copy(c, io.LimitReader(stream(seed), size))
	s.served.Add(n)
}

// Close stops listening.
func (s *MPTCPServer) Close() { s.ln.Close() }

// stream is the download's content: the ChaCha8 stream of seed.
func stream(seed uint64) io.Reader {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	return rand.NewChaCha8(key)
}

// DownloadResult is what a download got.
type DownloadResult struct {
	Bytes int64
	// Intact: all Bytes arrived, and their SHA-256 is that of the
	// content the server was asked for.
	Intact bool
	// MPTCP: the connection is MPTCP end to end (not a fallback to TCP).
	MPTCP   bool
	Elapsed time.Duration // from the request to the last octet
	// Err is how the connection failed (a reset, a timeout), if it did.
	Err error
}

// Mbps is the goodput in Mbit/s (10^6 bit/s).
func (r DownloadResult) Mbps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e6
}

// Download fetches size octets from the lab's MPTCP server, from the end
// user's namespace, over MPTCP (Go's net.Dialer.SetMultipathTCP) unless
// plainTCP; from src when valid (a VPN's inner address), else the
// address the routes give. progress, when not nil, is told the octets
// received so far as they come. ctx bounds the whole transfer.
func (t *Topology) Download(ctx context.Context, src netip.Addr, size int64, plainTCP bool, progress func(int64)) DownloadResult {
	var c net.Conn
	err := InNS(t.UE, func() error {
		d := net.Dialer{Timeout: 10 * time.Second}
		d.SetMultipathTCP(!plainTCP)
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		var err error
		c, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(Server, MPTCPPort).String())
		return err
	})
	if err != nil {
		return DownloadResult{Err: fmt.Errorf("connecting: %w", err)}
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	var r DownloadResult
	if tc, ok := c.(*net.TCPConn); ok {
		r.MPTCP, _ = tc.MultipathTCP()
	}
	seed := uint64(time.Now().UnixNano())
	var req [16]byte
	binary.BigEndian.PutUint64(req[:8], uint64(size))
	binary.BigEndian.PutUint64(req[8:], seed)
	start := time.Now()
	if _, err := c.Write(req[:]); err != nil {
		r.Err = err
		return r
	}
	// The expected digest is computed alongside, from the same stream.
	want := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, io.LimitReader(stream(seed), size))
		want <- h.Sum(nil)
	}()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf)
		h.Write(buf[:n])
		r.Bytes += int64(n)
		if progress != nil && n > 0 {
			progress(r.Bytes)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.Err = err
			break
		}
	}
	r.Elapsed = time.Since(start)
	r.Intact = r.Err == nil && r.Bytes == size && string(h.Sum(nil)) == string(<-want)
	return r
}

// LimitRate shapes one end-user access link to mbit Mbit/s each way with
// a token bucket filter (tbf): on the router's side (the download) and
// on the end user's (the upload); 0 takes the limit away. The queue
// holds up to queue of traffic at that rate before tbf drops.
func (t *Topology) LimitRate(dev string, mbit int, queue time.Duration) error {
	for _, side := range []struct{ ns, dev string }{{t.Net, "ue-" + dev}, {t.UE, dev}} {
		if mbit == 0 {
			t.IP(side.ns, "link", "set", side.dev, "up") // nothing to undo if absent
			if _, err := t.Run(context.Background(), side.ns, "tc", "qdisc", "del", "dev", side.dev, "root"); err != nil {
				return err
			}
			continue
		}
		// The bucket holds a few milliseconds of traffic (at least a
		// few 64 KiB GSO segments, which tbf would otherwise split).
		burst := max(mbit*1e6/8/250, 256<<10)
		if _, err := t.Run(context.Background(), side.ns, "tc", "qdisc", "replace", "dev", side.dev, "root", "tbf",
			"rate", strconv.Itoa(mbit)+"mbit", "burst", strconv.Itoa(burst), "latency", strconv.Itoa(int(queue.Milliseconds()))+"ms"); err != nil {
			return err
		}
	}
	return nil
}

// LinkBytes are the octets the router sent to the end user over each
// access link (the download direction), by end-user interface name: what
// each link carried, whichever VPN it carried.
func (t *Topology) LinkBytes(ctx context.Context) (map[string]uint64, error) {
	out, err := t.Run(ctx, t.Net, "ip", "-j", "-s", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			TX struct {
				Bytes uint64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("ip -j -s link: %w", err)
	}
	m := map[string]uint64{}
	for _, l := range links {
		if dev, ok := strings.CutPrefix(l.Name, "ue-"); ok {
			m[dev] = l.Stats.TX.Bytes
		}
	}
	return m, nil
}

// MPTCPEndpoint is one of the end user's MPTCP endpoints (ip mptcp
// endpoint show).
type MPTCPEndpoint struct {
	Addr   string
	Backup bool
}

// MPTCPEndpoints lists the end user's endpoints, by address.
func (t *Topology) MPTCPEndpoints(ctx context.Context) (map[string]MPTCPEndpoint, error) {
	out, err := t.Run(ctx, t.UE, "ip", "mptcp", "endpoint", "show")
	if err != nil {
		return nil, err
	}
	m := map[string]MPTCPEndpoint{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		e := MPTCPEndpoint{Addr: f[0]}
		for _, w := range f[1:] {
			if w == "backup" {
				e.Backup = true
			}
		}
		m[e.Addr] = e
	}
	return m, nil
}

// demoRates shape the access links for the demo's multipath step.
var demoRates = []struct {
	dev  string
	mbit int
}{{"eth0", 40}, {"wlan0", 20}, {"wwan0", 10}}

// multipath is the demo's step: one MPTCP download through all three
// VPNs at once with the octets each link carried, then one with wlan0
// cut in the middle (docs/multipath.md).
func (r *Runner) multipath(ctx context.Context) (string, error) {
	v, err := r.waitVPNs([]string{"eth0", "wlan0", "wwan0"}, 10*time.Second)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if !WaitFor(10*time.Second, func() bool {
		eps, err := r.top.MPTCPEndpoints(ctx)
		return err == nil && len(eps) >= 3
	}) {
		return "", errors.New("the end user has no MPTCP endpoint for each VPN")
	}
	eps, _ := r.top.MPTCPEndpoints(ctx)
	var shaped []string
	for _, x := range demoRates {
		if err := r.top.LimitRate(x.dev, x.mbit, 50*time.Millisecond); err != nil {
			return "", err
		}
		shaped = append(shaped, fmt.Sprintf("%s %d", x.dev, x.mbit))
		defer r.top.LimitRate(x.dev, 0, 0)
	}
	fmt.Fprintf(&b, "MPTCP endpoints (ip mptcp endpoint): one per VPN inner address, %d in all; links shaped to %s Mbit/s\n", len(eps), strings.Join(shaped, ", "))
	srv, err := r.top.StartMPTCPServer()
	if err != nil {
		return b.String(), err
	}
	defer srv.Close()
	src := netip.MustParseAddr(v["eth0"].VirtualIPs[0])
	perLink := func(before, after map[string]uint64) string {
		var parts []string
		for _, x := range demoRates {
			parts = append(parts, fmt.Sprintf("%s %.1f MiB", x.dev, float64(after[x.dev]-before[x.dev])/(1<<20)))
		}
		return strings.Join(parts, ", ")
	}
	const size = 16 << 20
	before, err := r.top.LinkBytes(ctx)
	if err != nil {
		return b.String(), err
	}
	res := r.top.Download(ctx, src, size, false, nil)
	after, _ := r.top.LinkBytes(ctx)
	if !res.Intact || !res.MPTCP {
		return b.String(), fmt.Errorf("the MPTCP download: %d of %d octets, MPTCP %v, intact %v, %v", res.Bytes, size, res.MPTCP, res.Intact, res.Err)
	}
	fmt.Fprintf(&b, "one MPTCP download from %s, 16 MiB at %.1f Mbit/s, SHA-256 right; per link: %s\n", Server, res.Mbps(), perLink(before, after))

	var got atomic.Int64
	done := make(chan DownloadResult, 1)
	go func() { done <- r.top.Download(ctx, src, size, false, got.Store) }()
	if !WaitFor(30*time.Second, func() bool { return got.Load() > size/3 }) {
		return b.String(), fmt.Errorf("the second download stalled at %d octets", got.Load())
	}
	before, _ = r.top.LinkBytes(ctx)
	at := got.Load()
	if err := r.top.SetLink("wlan0", false); err != nil {
		return b.String(), err
	}
	res = <-done
	after, _ = r.top.LinkBytes(ctx)
	if !res.Intact {
		return b.String(), fmt.Errorf("the download across the cut: %d of %d octets, %v", res.Bytes, size, res.Err)
	}
	fmt.Fprintf(&b, "another, wlan0 cut after %.0f%%: completed, no reset, SHA-256 right; per link after the cut: %s\n", float64(at)*100/size, perLink(before, after))
	if err := r.top.SetLink("wlan0", true); err != nil {
		return b.String(), err
	}
	if _, err := r.waitVPNs([]string{"eth0", "wlan0", "wwan0"}, 10*time.Second); err != nil {
		return b.String(), err
	}
	fmt.Fprintf(&b, "wlan0 back, its VPN with it")
	return b.String(), nil
}
