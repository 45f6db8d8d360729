package config

import (
	"strings"
	"testing"
)

// A tab in the indentation is named as such, at its line and column,
// instead of the YAML reader's "found character that cannot start any
// token"; a tab after a key (allowed by YAML) is no error.
func TestTabInYAML(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{"connections:\n\tc: {}\n", []string{"f.yaml:2: a tab character (column 1); YAML indents with spaces only"}},
		{"connections:\n  c:\n  \tlocal_addrs: 1.2.3.4\n", []string{"f.yaml:3: a tab character (column 3); YAML indents with spaces only"}},
		{"log:\n  level: info\n\nconnections: {}\n\t\n", []string{"f.yaml:5: a tab character (column 1); YAML indents with spaces only"}},
		// The reader names the line before the tab here.
		{"connections:\n  c:\n    local_addrs: 1.2.3.4\n\tremote_addrs: 1.2.3.5\n", []string{"f.yaml:4: a tab character (column 1); YAML indents with spaces only"}},
		{"connections: {}\nlog:\n  level:\tinfo\n", nil},
		// Other syntax errors keep the reader's words.
		{"connections: {}\nlog: [\n", []string{"f.yaml:2: YAML syntax: did not find expected node content"}},
	} {
		got := parseErrors(t, tc.src)
		sameLines(t, strings.ReplaceAll(tc.src, "\n", `\n`), got, tc.want)
	}
}
