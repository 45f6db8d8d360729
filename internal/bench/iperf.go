//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/lab"
)

// iperf runs one TCP stream for secs seconds from clientAddr in
// namespace client to an iperf3 server on serverAddr in namespace server
// and returns the rate the server received, in Mbit/s.
func iperf(ctx context.Context, l *lab.Lab, server, client, serverAddr, clientAddr string, secs int) (float64, error) {
	srv, err := l.Start(server, nil, "iperf3", "--server", "--one-off", "--forceflush", "--bind", serverAddr)
	if err != nil {
		return 0, err
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
		return 0, fmt.Errorf("iperf3 server on %s: %w", serverAddr, err)
	}
	// The tunnel, not iperf3, bounds how long this may take.
	runCtx, cancel := context.WithTimeout(ctx, time.Duration(secs+20)*time.Second)
	defer cancel()
	out, err := l.Run(runCtx, client, "iperf3", "--client", serverAddr, "--bind", clientAddr,
		"--time", strconv.Itoa(secs), "--json", "--connect-timeout", "5000")
	var rep struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr == nil && rep.Error != "" {
		return 0, fmt.Errorf("iperf3 from %s to %s: %s", clientAddr, serverAddr, rep.Error)
	}
	if err != nil {
		return 0, err
	}
	if rep.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 from %s to %s measured nothing:\n%.2000s", clientAddr, serverAddr, out)
	}
	return rep.End.SumReceived.BitsPerSecond / 1e6, nil
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
