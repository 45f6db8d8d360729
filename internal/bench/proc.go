//go:build linux

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// Linux fixes it at 100 on every architecture Go supports.
const clockTicks = 100

// cpuSeconds is the CPU time a process has used so far, user plus
// system, from /proc/PID/stat: it counts every thread, also those that
// have ended, but only in 10 ms ticks.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it
	// start behind its closing parenthesis.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return float64(utime+stime) / clockTicks, nil
}

// cpuPrecise is the CPU time of a process's live threads in nanosecond
// resolution (the scheduler's sum_exec_runtime in
// /proc/PID/task/*/schedstat). Where a figure is a few milliseconds,
// ticks of 10 ms would round it to nothing; the daemons measured here
// keep their threads, so none is missed.
func cpuPrecise(pid int) (float64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no threads of process %d (did it exit?)", pid)
	}
	var ns uint64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q", t, f[0])
		}
		ns += v
	}
	return float64(ns) / 1e9, nil
}

// rssBytes is a process's resident set size (VmRSS).
func rssBytes(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, v)
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// cpuMeter measures the CPU time of processes between two points.
type cpuMeter struct {
	pids    []int
	precise bool
	start   []float64
}

func startCPU(precise bool, pids ...int) (*cpuMeter, error) {
	m := &cpuMeter{pids: pids, precise: precise}
	var err error
	m.start, err = m.read()
	return m, err
}

func (m *cpuMeter) read() ([]float64, error) {
	out := make([]float64, len(m.pids))
	for i, p := range m.pids {
		if p == 0 {
			continue // a place kept for a process not measured
		}
		var err error
		if m.precise {
			out[i], err = cpuPrecise(p)
		} else {
			out[i], err = cpuSeconds(p)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// since returns each process's CPU seconds since startCPU.
func (m *cpuMeter) since() ([]float64, error) {
	now, err := m.read()
	if err != nil {
		return nil, err
	}
	for i := range now {
		now[i] -= m.start[i]
	}
	return now, nil
}
