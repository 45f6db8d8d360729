package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
)

// Without a dos_protection section the values in force are the engine's
// defaults (RFC 8019 §6: settable, with sane defaults).
func TestDoSDefaults(t *testing.T) {
	c, err := Parse("f.yaml", []byte(base), "")
	if err != nil {
		t.Fatal(err)
	}
	want := DoSConfig{HalfOpenTimeout: 30 * time.Second, MaxHalfOpen: 5000, CookieThreshold: 10, PerSource: 5, PerPrefix: 50,
		PrefixV4: 24, PrefixV6: 64, CookieSecretLifetime: time.Minute, CookieGrace: 10 * time.Second,
		PuzzleThreshold: 2500, PuzzleMaxDifficulty: 18}
	if c.DoS != want {
		t.Fatalf("dos_protection = %+v\nwant %+v", c.DoS, want)
	}
	// Handed to the engine they are what the engine would pick itself.
	var e ike.Config
	c.DoS.Engine(&e)
	if e.HalfOpenPerSource != 5 || e.HalfOpenPerPrefix != 50 || e.PuzzleDifficulty != 0 || e.PuzzleMaxDifficulty != 18 || e.CookieThreshold != 10 {
		t.Errorf("engine config %+v", e)
	}
	// The commented section in the gateway example shows the defaults.
	gw, err := Load("../../examples/psk/gateway.yaml")
	if err != nil || gw.DoS != want {
		t.Errorf("examples/psk/gateway.yaml dos_protection = %+v (%v), want the defaults", gw.DoS, err)
	}
	var zero ike.Config
	DoSConfig{}.Engine(&zero)
	if !reflect.DeepEqual(zero, ike.Config{}) {
		t.Errorf("an unparsed section changed the engine's defaults: %+v", zero)
	}
}

func TestDoSSection(t *testing.T) {
	c, err := Parse("f.yaml", []byte(base+`dos_protection:
  half_open_timeout: 10s
  max_half_open: 20000
  cookie_threshold: 50
  half_open_per_source: 0
  half_open_per_prefix: 200
  prefix_v4: 22
  prefix_v6: 56
  cookie_secret_lifetime: 5m
  cookie_grace: 30s
  puzzle_difficulty: 16
  puzzle_threshold: 1000
  puzzle_max_difficulty: 0
`), "")
	if err != nil {
		t.Fatal(err)
	}
	want := DoSConfig{HalfOpenTimeout: 10 * time.Second, MaxHalfOpen: 20000, CookieThreshold: 50, PerSource: 0, PerPrefix: 200,
		PrefixV4: 22, PrefixV6: 56, CookieSecretLifetime: 5 * time.Minute, CookieGrace: 30 * time.Second,
		PuzzleDifficulty: 16, PuzzleThreshold: 1000, PuzzleMaxDifficulty: 0}
	if c.DoS != want {
		t.Fatalf("dos_protection = %+v\nwant %+v", c.DoS, want)
	}
	var e ike.Config
	c.DoS.Engine(&e)
	// 0 in the file turns a limit off: -1 for the engine.
	if e.HalfOpenPerSource != -1 || e.HalfOpenPerPrefix != 200 || e.PuzzleMaxDifficulty != -1 || e.PuzzleDifficulty != 16 ||
		e.HalfOpenPrefix4 != 22 || e.HalfOpenPrefix6 != 56 || e.CookieGrace != 30*time.Second || e.MaxHalfOpen != 20000 {
		t.Errorf("engine config %+v", e)
	}
	// The puzzle threshold follows max_half_open unless set.
	c, err = Parse("f.yaml", []byte(base+"dos_protection: {max_half_open: 800}\n"), "")
	if err != nil || c.DoS.PuzzleThreshold != 400 {
		t.Fatalf("puzzle_threshold %d (%v), want half of max_half_open", c.DoS.PuzzleThreshold, err)
	}
}

func TestDoSErrors(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      []string
	}{
		{"timeout too short", "dos_protection: {half_open_timeout: 1s}\n",
			[]string{`f.yaml:6: dos_protection.half_open_timeout: 1s is too short (RFC 8019 §4.1: less than 2 s leaves no time for a round trip and the key derivation); use 2s or more`}},
		{"cookies never", "dos_protection:\n  max_half_open: 100\n  cookie_threshold: 200\n",
			[]string{`f.yaml:8: dos_protection.cookie_threshold: 200 is above max_half_open (100): cookies would never be asked for`}},
		{"prefix", "dos_protection: {prefix_v6: 8}\n",
			[]string{`f.yaml:6: dos_protection.prefix_v6: 8 is out of range; use 16 to 128`}},
		{"negative", "dos_protection: {half_open_per_source: -1}\n",
			[]string{`f.yaml:6: dos_protection.half_open_per_source: "-1" must not be negative`}},
		{"grace", "dos_protection:\n  cookie_secret_lifetime: 20s\n  cookie_grace: 1m\n",
			[]string{`f.yaml:8: dos_protection.cookie_grace: 1m0s is longer than cookie_secret_lifetime (20s); cookies of older secrets would be taken`}},
		{"easy puzzle", "dos_protection: {puzzle_difficulty: 4}\n",
			[]string{`f.yaml:6: dos_protection.puzzle_difficulty: 4 bits is too easy to slow anyone (RFC 8019 §4.4); use 0 (off) or 8 to 24`}},
		{"hard puzzle", "dos_protection: {puzzle_max_difficulty: 30}\n",
			[]string{`f.yaml:6: dos_protection.puzzle_max_difficulty: 30 is out of range; use 0 to 24`}},
		{"strongSwan name", "dos_protection: {block_threshold: 5}\n",
			[]string{`f.yaml:6: dos_protection.block_threshold: strongSwan's block_threshold is half_open_per_source here`}},
		{"not a section", "dos_protection: yes\n",
			[]string{`f.yaml:6: dos_protection: want a mapping of settings (key: value lines), not the value "yes"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := parseErrors(t, base+c.src); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got\n%v\nwant\n%v", got, c.want)
			}
		})
	}
}
