package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: no input may panic Parse, and every error it reports must
// be a located line of the documented form.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../../examples/*/*.yaml")
	seeds = append(seeds, "testdata/full.yaml")
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(base + "    <<: [*a, *b]\n"))
	f.Add([]byte("a: &a {b: *a}\n"))
	f.Add([]byte("x-a: &a {mobike: yes}\nconnections:\n  c:\n    <<: *a\n    children: {n: {mode: tunel}}\n"))
	f.Add([]byte(""))
	f.Add([]byte("# only a comment\nconnections:\n"))
	f.Add([]byte("pools:\n  a: {addrs: 10.1.0.0/16}\n  b: {addrs: 10.1.2.0/24}\n  c: {addrs: \"fd00::/64\"}\nconnections: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data, "/etc/mifike")
		if err == nil {
			if c == nil || c.File != "f.yaml" {
				t.Fatal("no config without an error")
			}
			return
		}
		es, ok := err.(Errors)
		if !ok || len(es) == 0 {
			t.Fatalf("error %T %v", err, err)
		}
		prev := 0
		for _, e := range es {
			if e.Line < prev || e.Line < 1 || e.Msg == "" || strings.Contains(e.Msg, "\n") {
				t.Fatalf("bad error %q (after line %d)", e.Error(), prev)
			}
			prev = e.Line
		}
	})
}
