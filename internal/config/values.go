package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// goDuration is time.ParseDuration's syntax, to tell overflow from typos.
var goDuration = regexp.MustCompile(`^((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)

const durationHelp = "write e.g. 90s, 30m, 4h, 1h30m, 1d or a number of seconds"

// parseDuration reads Go durations, strongSwan's "d" for days, and bare
// numbers of seconds (strongSwan's unit when none is given).
func parseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("%q must not be negative", s)
	}
	if n, err := strconv.ParseUint(t, 10, 64); err == nil {
		return scale(s, n, time.Second)
	}
	if days, ok := strings.CutSuffix(t, "d"); ok {
		if n, err := strconv.ParseUint(days, 10, 64); err == nil {
			return scale(s, n, 24*time.Hour)
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		if goDuration.MatchString(t) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		return 0, fmt.Errorf("%q is not a duration; %s", s, durationHelp)
	}
	return d, nil
}

func scale(s string, n uint64, unit time.Duration) (time.Duration, error) {
	if n > uint64(math.MaxInt64/unit) {
		return 0, fmt.Errorf("%q is too long", s)
	}
	return time.Duration(n) * unit, nil
}

// parseSize reads a byte count with an optional K, M, G or T suffix in
// powers of 1024, as strongSwan does.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("%q must not be negative", s)
	}
	mult := uint64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return 0, fmt.Errorf("%q is not a byte count; write e.g. 1000000, 500K, 500M or 2G (powers of 1024)", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}
