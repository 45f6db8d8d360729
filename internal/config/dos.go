package config

import (
	"time"

	"github.com/mifike/mifike/internal/ike"
)

// DoSConfig is the dos_protection section: how a responder bounds the
// half-open IKE SAs unauthenticated peers can make it keep (RFC 7296 §2.6,
// RFC 8019). Parse fills in the defaults, so the values are the ones in
// force.
type DoSConfig struct {
	// HalfOpenTimeout drops a half-open SA that saw no IKE_AUTH.
	HalfOpenTimeout time.Duration
	// MaxHalfOpen caps half-open SAs in all (strongSwan's
	// charon.init_limit_half_open); CookieThreshold is how many make
	// every new request return a COOKIE first (charon.cookie_threshold).
	MaxHalfOpen, CookieThreshold int
	// PerSource and PerPrefix cap the half-open SAs made with a returned
	// COOKIE from one address (charon.block_threshold) and from one /PrefixV4
	// or /PrefixV6 (RFC 8019 §4.2). 0 means no limit.
	PerSource, PerPrefix int
	PrefixV4, PrefixV6   int
	// CookieSecretLifetime is how long one COOKIE secret is used;
	// CookieGrace how long cookies of the one before stay valid.
	CookieSecretLifetime, CookieGrace time.Duration
	// PuzzleDifficulty, when not 0, asks initiators for RFC 8019 puzzles
	// of that many bits once PuzzleThreshold SAs are half-open.
	PuzzleDifficulty, PuzzleThreshold int
	// PuzzleMaxDifficulty is the hardest puzzle we solve as initiator;
	// 0 never to solve one.
	PuzzleMaxDifficulty int
}

var dosSchema = schema{
	keys: []string{"half_open_timeout", "max_half_open", "cookie_threshold", "half_open_per_source", "half_open_per_prefix",
		"prefix_v4", "prefix_v6", "cookie_secret_lifetime", "cookie_grace", "puzzle_difficulty", "puzzle_threshold",
		"puzzle_max_difficulty"},
	hints: map[string]string{
		"init_limit_half_open": "strongSwan's init_limit_half_open is max_half_open here",
		"block_threshold":      "strongSwan's block_threshold is half_open_per_source here",
		"init_limit_job_load":  "not supported; mifike does IKE_SA_INIT on its event loop, bounded by max_half_open",
		"enable":               "the section is always in force; relax its limits instead (0 turns a per-source limit off)",
	},
}

// dosDefaults are the engine's defaults, spelled out.
func dosDefaults() DoSConfig {
	return DoSConfig{HalfOpenTimeout: 30 * time.Second, MaxHalfOpen: 5000, CookieThreshold: 10, PerSource: 5, PerPrefix: 50,
		PrefixV4: 24, PrefixV6: 64, CookieSecretLifetime: time.Minute, CookieGrace: 10 * time.Second,
		PuzzleThreshold: 2500, PuzzleMaxDifficulty: 18}
}

// puzzleMinBits: RFC 8019 §4.4 excludes easier puzzles ("too easy to
// solve"); puzzleMaxBits: 4·2^24 PRF runs take minutes on a phone (§9).
const (
	puzzleMinBits = 8
	puzzleMaxBits = 24
)

func (p *parser) dos(f *fields) DoSConfig {
	d := dosDefaults()
	d.HalfOpenTimeout = f.durationIn("half_open_timeout", d.HalfOpenTimeout, 2*time.Second, time.Hour,
		"RFC 8019 §4.1: less than 2 s leaves no time for a round trip and the key derivation")
	d.MaxHalfOpen = f.integer("max_half_open", d.MaxHalfOpen, 1, 10_000_000)
	d.CookieThreshold = f.integer("cookie_threshold", d.CookieThreshold, 1, 10_000_000)
	if d.CookieThreshold > d.MaxHalfOpen {
		f.fail("cookie_threshold", "%d is above max_half_open (%d): cookies would never be asked for", d.CookieThreshold, d.MaxHalfOpen)
	}
	d.PerSource = f.integer("half_open_per_source", d.PerSource, 0, 10_000_000)
	d.PerPrefix = f.integer("half_open_per_prefix", d.PerPrefix, 0, 10_000_000)
	d.PrefixV4 = f.integer("prefix_v4", d.PrefixV4, 8, 32)
	d.PrefixV6 = f.integer("prefix_v6", d.PrefixV6, 16, 128)
	d.CookieSecretLifetime = f.durationIn("cookie_secret_lifetime", d.CookieSecretLifetime, 10*time.Second, 24*time.Hour,
		"RFC 7296 §2.6: the secret should change frequently")
	d.CookieGrace = f.durationIn("cookie_grace", d.CookieGrace, time.Second, 24*time.Hour, "")
	if d.CookieGrace > d.CookieSecretLifetime {
		f.fail("cookie_grace", "%v is longer than cookie_secret_lifetime (%v); cookies of older secrets would be taken", d.CookieGrace, d.CookieSecretLifetime)
	}
	if f.has("puzzle_difficulty") {
		d.PuzzleDifficulty = f.integer("puzzle_difficulty", 0, 0, puzzleMaxBits)
		if d.PuzzleDifficulty > 0 && d.PuzzleDifficulty < puzzleMinBits {
			f.fail("puzzle_difficulty", "%d bits is too easy to slow anyone (RFC 8019 §4.4); use 0 (off) or %d to %d",
				d.PuzzleDifficulty, puzzleMinBits, puzzleMaxBits)
		}
	}
	d.PuzzleThreshold = f.integer("puzzle_threshold", max(d.MaxHalfOpen/2, 1), 1, 10_000_000)
	if d.PuzzleThreshold > d.MaxHalfOpen {
		f.fail("puzzle_threshold", "%d is above max_half_open (%d): puzzles would never be asked for", d.PuzzleThreshold, d.MaxHalfOpen)
	}
	d.PuzzleMaxDifficulty = f.integer("puzzle_max_difficulty", d.PuzzleMaxDifficulty, 0, puzzleMaxBits)
	return d
}

// durationIn is key's duration in [lo, hi]; why, if set, explains lo.
func (f *fields) durationIn(key string, def, lo, hi time.Duration, why string) time.Duration {
	d, ok := f.duration(key)
	switch {
	case !ok:
		return def
	case d < lo && why != "":
		f.fail(key, "%v is too short (%s); use %v or more", d, why, lo)
	case d < lo || d > hi:
		f.fail(key, "%v is out of range; use %v to %v", d, lo, hi)
	default:
		return d
	}
	return def
}

// Engine sets the engine's half-open limits from the section. The zero
// value (a Config that was not parsed) leaves the engine's defaults.
func (d DoSConfig) Engine(c *ike.Config) {
	if d == (DoSConfig{}) {
		return
	}
	off := func(n int) int { // 0 in the file: no limit, -1 to the engine
		if n == 0 {
			return -1
		}
		return n
	}
	c.HalfOpenTimeout, c.MaxHalfOpen, c.CookieThreshold = d.HalfOpenTimeout, d.MaxHalfOpen, d.CookieThreshold
	c.HalfOpenPerSource, c.HalfOpenPerPrefix = off(d.PerSource), off(d.PerPrefix)
	c.HalfOpenPrefix4, c.HalfOpenPrefix6 = d.PrefixV4, d.PrefixV6
	c.CookieSecretLifetime, c.CookieGrace = d.CookieSecretLifetime, d.CookieGrace
	c.PuzzleDifficulty, c.PuzzleThreshold, c.PuzzleMaxDifficulty = d.PuzzleDifficulty, d.PuzzleThreshold, off(d.PuzzleMaxDifficulty)
}
