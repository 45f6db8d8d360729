//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/lab"
)

// loadProc is a load generator process ("mifike bench loadgen") in the
// initiator's namespace; its JSON lines arrive on lines.
type loadProc struct {
	proc  *lab.Proc
	lines chan string
}

// startLoad starts the load generator. It warms up, then waits for go_
// (SIGUSR1) before the timed handshakes.
func startLoad(l *lab.Lab, exe, ns, conf string, addrs []netip.Addr, n, window, warmup int, hold bool, timeout, deadline time.Duration) (*loadProc, error) {
	return startLoadTo(l, exe, ns, conf, addrs, nil, n, window, warmup, hold, timeout, deadline)
}

// startLoadTo is startLoad with the handshakes spread over remotes in
// turn (LoadConfig.Remotes).
func startLoadTo(l *lab.Lab, exe, ns, conf string, addrs, remotes []netip.Addr, n, window, warmup int, hold bool, timeout, deadline time.Duration) (*loadProc, error) {
	join := func(v []netip.Addr) string {
		s := make([]string, len(v))
		for i, a := range v {
			s[i] = a.String()
		}
		return strings.Join(s, ",")
	}
	lp := &loadProc{lines: make(chan string, 16)}
	args := []string{"bench", "loadgen", "--config", conf, "--addrs", join(addrs), "--n", strconv.Itoa(n),
		"--window", strconv.Itoa(window), "--warmup", strconv.Itoa(warmup), "--wait-start", "--timeout", timeout.String()}
	if hold {
		args = append(args, "--hold")
	}
	if deadline > 0 {
		args = append(args, "--deadline", deadline.String())
	}
	if len(remotes) > 0 {
		args = append(args, "--remotes", join(remotes))
	}
	var err error
	lp.proc, err = l.Start(ns, &jsonLines{ch: lp.lines}, exe, args...)
	return lp, err
}

// line waits for the next JSON line.
func (lp *loadProc) line(ctx context.Context, limit time.Duration) (string, error) {
	select {
	case s := <-lp.lines:
		return s, nil
	case <-lp.proc.Done():
		// It may have printed its last line just before exiting.
		select {
		case s := <-lp.lines:
			return s, nil
		default:
		}
		return "", fmt.Errorf("the load generator exited (%v):\n%s", lp.proc.Err(), lastLines(lp.proc.Output(), 10))
	case <-time.After(limit):
		return "", fmt.Errorf("the load generator said nothing for %v:\n%s", limit, lastLines(lp.proc.Output(), 10))
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// measure waits until the load generator has warmed up, starts its timed
// handshakes and returns its result with the CPU seconds the processes
// pids used meanwhile.
func (lp *loadProc) measure(ctx context.Context, limit time.Duration, pids ...int) (*LoadResult, []float64, error) {
	return lp.measureAfterWarmup(ctx, limit, nil, pids...)
}

// measureAfterWarmup is measure that calls warm, when set, once the
// load generator has warmed up and before the timed handshakes.
func (lp *loadProc) measureAfterWarmup(ctx context.Context, limit time.Duration, warm func(), pids ...int) (*LoadResult, []float64, error) {
	s, err := lp.line(ctx, limit)
	if err != nil {
		return nil, nil, err
	}
	if !strings.Contains(s, `"warm"`) {
		return nil, nil, fmt.Errorf("the load generator said %s, not that it is warm", s)
	}
	if warm != nil {
		warm()
	}
	cpu, err := startCPU(false, pids...)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Kill(lp.proc.Pid(), syscall.SIGUSR1); err != nil {
		return nil, nil, err
	}
	if s, err = lp.line(ctx, limit); err != nil {
		return nil, nil, err
	}
	used, err := cpu.since()
	if err != nil {
		return nil, nil, err
	}
	var r LoadResult
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, nil, fmt.Errorf("the load generator's result %q: %w", s, err)
	}
	if r.Error != "" {
		return &r, used, fmt.Errorf("load generator: %s (%d handshakes done, %d failed)", r.Error, r.OK, r.Failed)
	}
	return &r, used, nil
}

// jsonLines passes the lines of a process's output that are JSON
// objects to ch (and drops the rest: the log of a failure is in the
// process's Output).
type jsonLines struct {
	mu  sync.Mutex
	buf []byte
	ch  chan string
}

func (j *jsonLines) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = append(j.buf, p...)
	for {
		i := bytes.IndexByte(j.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := strings.TrimSpace(string(j.buf[:i]))
		j.buf = j.buf[i+1:]
		if strings.HasPrefix(line, "{") {
			select {
			case j.ch <- line:
			default:
			}
		}
	}
}
