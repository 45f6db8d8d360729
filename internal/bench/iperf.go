//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/lab"
)

// iperfOpts says what iperf3 runs: secs seconds of one TCP stream on
// port (default 5201); parallel streams instead (-P), reverse: the
// server sends (-R, a download).
type iperfOpts struct {
	secs     int
	port     int
	parallel int
	reverse  bool
}

// iperfResult is what the receiving end got.
type iperfResult struct {
	mbps    float64 // Mbit/s
	lossPct float64 // UDP datagrams lost, in percent
}

// iperf runs iperf3 from clientAddr in namespace client to a server on
// serverAddr in namespace server; clientAddr "": from the route's source
// address.
func iperf(ctx context.Context, l *lab.Lab, server, client, serverAddr, clientAddr string, o iperfOpts) (iperfResult, error) {
	port := strconv.Itoa(max(o.port, 5201))
	srv, err := l.Start(server, nil, "iperf3", "--server", "--one-off", "--forceflush", "--bind", serverAddr, "--port", port)
	if err != nil {
		return iperfResult{}, err
	}
	defer srv.Stop(time.Second)
	if err := waitFor(ctx, 5*time.Second, func() (bool, error) {
		select {
		case <-srv.Done():
			return false, fmt.Errorf("iperf3 server exited: %v\n%s", srv.Err(), srv.Output())
		default:
		}
		return strings.Contains(srv.Output(), "Server listening"), nil
	}); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 server on %s: %w", serverAddr, err)
	}
	// The tunnel, not iperf3, bounds how long this may take.
	runCtx, cancel := context.WithTimeout(ctx, time.Duration(o.secs+20)*time.Second)
	defer cancel()
	args := []string{"--client", serverAddr, "--port", port,
		"--time", strconv.Itoa(o.secs), "--json", "--connect-timeout", "5000"}
	if clientAddr != "" {
		args = append(args, "--bind", clientAddr)
	}
	if o.parallel > 1 {
		args = append(args, "--parallel", strconv.Itoa(o.parallel))
	}
	if o.reverse {
		args = append(args, "--reverse")
	}
	out, err := l.Run(runCtx, client, "iperf3", args...)
	var rep struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr == nil && rep.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3 from %s to %s: %s", clientAddr, serverAddr, rep.Error)
	}
	if err != nil {
		return iperfResult{}, fmt.Errorf("%w\nclient: %s\nserver: %s", err, lastLines(string(out), 8), lastLines(srv.Output(), 8))
	}
	if rep.End.SumReceived.BitsPerSecond <= 0 {
		return iperfResult{}, fmt.Errorf("iperf3 from %s to %s measured nothing:\n%.2000s", clientAddr, serverAddr, out)
	}
	return iperfResult{mbps: rep.End.SumReceived.BitsPerSecond / 1e6}, nil
}

// flow is one UDP stream of udpBlast.
type flow struct {
	src, dst netip.Addr
	port     int
}

// udpBlast sends datagrams of udpPayload octets as fast as it can on
// every flow at once for secs seconds, from namespace client to
// namespace server, and returns what arrived (all flows together) and
// the share lost. It replaces iperf3 for UDP: iperf3's clients set up a
// TCP control connection each, and a flood already running through one
// tunnel (most of it dropped) starved a later client's control
// connection for longer than any timeout; here every socket is open
// before the first datagram leaves.
func udpBlast(ctx context.Context, client, server string, flows []flow, secs int) (iperfResult, error) {
	var rx, tx []*net.UDPConn
	defer func() {
		for _, c := range append(rx, tx...) {
			c.Close()
		}
	}()
	for _, f := range flows {
		var c *net.UDPConn
		err := demo.InNS(server, func() error {
			var err error
			c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.dst, uint16(f.port))))
			return err
		})
		if err != nil {
			return iperfResult{}, err
		}
		c.SetReadBuffer(4 << 20)
		rx = append(rx, c)
		err = demo.InNS(client, func() error {
			var err error
			c, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.src, 0)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.dst, uint16(f.port))))
			return err
		})
		if err != nil {
			return iperfResult{}, err
		}
		tx = append(tx, c)
	}
	var (
		got, sent atomic.Int64 // datagrams
		wg        sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(time.Duration(secs) * time.Second)
	for _, c := range rx {
		wg.Go(func() {
			b := make([]byte, 65536)
			c.SetReadDeadline(end.Add(300 * time.Millisecond))
			for {
				n, err := c.Read(b)
				if err != nil {
					return
				}
				if n == udpPayload && time.Now().Before(end) {
					got.Add(1)
				}
			}
		})
	}
	for _, c := range tx {
		wg.Go(func() {
			b := make([]byte, udpPayload)
			for i := 0; ; i++ {
				if i%64 == 0 && (time.Now().After(end) || ctx.Err() != nil) {
					return
				}
				// ENOBUFS and the like: not sent, not counted.
				if _, err := c.Write(b); err == nil {
					sent.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return iperfResult{}, ctx.Err()
	}
	if got.Load() == 0 {
		return iperfResult{}, fmt.Errorf("no UDP datagram arrived (%d sent)", sent.Load())
	}
	r := iperfResult{mbps: float64(got.Load()*udpPayload*8) / float64(secs) / 1e6}
	if s := sent.Load(); s > 0 {
		r.lossPct = 100 * float64(max(s-got.Load(), 0)) / float64(s)
	}
	return r, nil
}

// waitFor polls cond every 50 ms until it holds, fails, or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", limit)
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
