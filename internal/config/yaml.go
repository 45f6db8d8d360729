package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The file is walked as a yaml.Node tree rather than decoded into structs:
// that keeps the line of every value, finds duplicate keys (which struct
// decoding would silently let win) and lets every error be collected.

type parser struct {
	file   string
	base   string
	errs   Errors
	warns  []Warning
	host   hostChecks            // what Load checks on this machine
	merged map[*yaml.Node][]pair // see expand
}

func (p *parser) fail(line int, field, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warn(line int, field, format string, args ...any) {
	p.warns = append(p.warns, Warning{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return p.errs.sorted()
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document returns the root node of the single document in data, or nil.
func (p *parser) document(data []byte) *yaml.Node {
	if line, msg := badText(data); msg != "" {
		p.fail(line, "", "%s", msg)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.yamlError(data, err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.fail(extra.Line, "", "a second YAML document (after ---); keep the whole configuration in one document")
	case !errors.Is(err, io.EOF):
		p.yamlError(data, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	return doc.Content[0]
}

func (p *parser) yamlError(data []byte, err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		if line, col := tabIndent(data, n, m[2]); line > 0 {
			p.fail(line, "", "a tab character (column %d); YAML indents with spaces only", col)
			return
		}
		p.fail(max(n, 1), "", "YAML syntax: %s", m[2])
		return
	}
	msg = strings.ReplaceAll(strings.TrimPrefix(msg, "yaml: "), "\n", "; ")
	p.fail(1, "", "YAML syntax: %s", msg)
}

// tabIndent finds the tab in the indentation that the YAML reader
// rejected at line n, for its message ("found character that cannot
// start any token") says nothing of tabs, and editors show a tab as
// spaces. The reader names the tab's line or, for a tab that "violates
// indentation", the line before it.
func tabIndent(data []byte, n int, msg string) (line, col int) {
	if !strings.Contains(msg, "cannot start any token") && !strings.Contains(msg, "tab character") {
		return 0, 0
	}
	i := 1
	for l := range strings.Lines(string(data)) {
		if i == n || i == n+1 {
			indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
			if t := strings.IndexByte(indent, '\t'); t >= 0 {
				return i, t + 1
			}
		}
		if i > n {
			break
		}
		i++
	}
	return 0, 0
}

// badText finds what the YAML reader rejects without naming a line.
func badText(data []byte) (int, string) {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return line, "the file is not valid UTF-8"
		case r == '\n':
			line++
		case r < ' ' && r != '\t' && r != '\r', r == 0x7f:
			return line, fmt.Sprintf("control character %U; the file must be plain text", r)
		}
		i += size
	}
	return 0, ""
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "an empty value"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// schema is the set of keys a mapping may hold.
type schema struct {
	keys []string
	// hints explain keys users bring from strongSwan that mifike lacks.
	hints map[string]string
	// extensions allows "x-" keys, which are ignored.
	extensions bool
}

func (s schema) unknown(key string) string {
	if h, ok := s.hints[key]; ok {
		return h
	}
	if best := suggest(key, s.keys); best != "" {
		return fmt.Sprintf("unknown key; did you mean %s?", best)
	}
	return "unknown key; known keys are " + strings.Join(s.keys, ", ")
}

type pair struct {
	key, val *yaml.Node
	merged   bool
}

// pairs lists the key/value pairs of mapping n with YAML merge keys ("<<")
// expanded: the mapping's own keys win over merged ones, and among merged
// mappings the first wins.
func (p *parser) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!merge" {
			own = append(own, pair{key: k, val: v})
			continue
		}
		srcs := []*yaml.Node{resolve(v)}
		if srcs[0].Kind == yaml.SequenceNode {
			srcs = srcs[0].Content
		}
		for _, s := range srcs {
			s = resolve(s)
			if s.Kind != yaml.MappingNode {
				p.fail(s.Line, path, "<< merges a mapping (an alias such as *defaults), not %s", kindName(s))
				continue
			}
			for _, m := range p.expand(s, path) {
				m.merged = true
				merged = append(merged, m)
			}
		}
	}
	seen := map[string]bool{}
	for _, o := range own {
		seen[o.key.Value] = true
	}
	out := own
	for _, m := range merged {
		if !seen[m.key.Value] {
			seen[m.key.Value] = true
			out = append(out, m)
		}
	}
	return out
}

// expand is pairs of a merge source, computed once per source: mappings
// that each merge the previous one several times would otherwise cost
// exponential time. A mapping that merges itself is an error.
func (p *parser) expand(n *yaml.Node, path string) []pair {
	if p.merged == nil {
		p.merged = map[*yaml.Node][]pair{}
	}
	ps, done := p.merged[n]
	if done {
		if ps == nil {
			p.fail(n.Line, path, "this mapping merges itself (<<)")
		}
		return ps
	}
	p.merged[n] = nil // in progress
	ps = p.pairs(n, path)
	if ps == nil {
		ps = []pair{}
	}
	p.merged[n] = ps
	return ps
}

// entry is one element of a mapping whose keys the user names
// (connections, children, pools).
type entry struct {
	name  string
	field string
	line  int
	val   *yaml.Node // nil when empty
}

func (p *parser) entries(n *yaml.Node, path, what string) []entry {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, path, "want a mapping of %s names to their settings, not %s", what, kindName(n))
		return nil
	}
	var out []entry
	first := map[string]int{}
	for _, pr := range p.pairs(n, path) {
		k := pr.key
		if k.Kind != yaml.ScalarNode {
			p.fail(k.Line, path, "a %s name must be a plain name, not %s", what, kindName(k))
			continue
		}
		field := join(path, k.Value)
		if l, dup := first[k.Value]; dup {
			p.fail(k.Line, field, "duplicate %s name; it is already defined on line %d", what, l)
			continue
		}
		first[k.Value] = k.Line
		if msg := checkName(k.Value); msg != "" {
			p.fail(k.Line, field, "%s", msg)
			continue
		}
		v := resolve(pr.val)
		if isNull(v) {
			v = nil
		}
		out = append(out, entry{name: k.Value, field: field, line: k.Line, val: v})
	}
	return out
}

// checkName keeps names usable on a command line and in metrics labels.
func checkName(s string) string {
	if s == "" {
		return "a name must not be empty"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("name %q has %q; use letters, digits, '-', '_' and '.'", s, r)
		}
	}
	return ""
}

// fields is one checked mapping with typed accessors; each accessor
// reports its own errors and returns the default on failure, so parsing
// goes on to find the next problem.
type fields struct {
	p    *parser
	path string
	line int // where the mapping is named, for missing keys
	val  map[string]*yaml.Node
	key  map[string]int // line of each key present, even when its value is empty
}

func (p *parser) fields(n *yaml.Node, path string, line int, s schema) *fields {
	f := &fields{p: p, path: path, line: line, val: map[string]*yaml.Node{}, key: map[string]int{}}
	n = resolve(n)
	if isNull(n) {
		return f
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, path, "want a mapping of settings (key: value lines), not %s", kindName(n))
		return f
	}
	for _, pr := range p.pairs(n, path) {
		k := pr.key
		if k.Kind != yaml.ScalarNode {
			p.fail(k.Line, path, "a key must be a plain name, not %s", kindName(k))
			continue
		}
		name, field := k.Value, join(path, k.Value)
		if l, dup := f.key[name]; dup {
			p.fail(k.Line, field, "duplicate key; it is already set on line %d", l)
			continue
		}
		f.key[name] = k.Line
		if s.extensions && strings.HasPrefix(name, "x-") {
			continue
		}
		if !slices.Contains(s.keys, name) {
			p.fail(k.Line, field, "%s", s.unknown(name))
			continue
		}
		v := resolve(pr.val)
		if isNull(v) {
			continue
		}
		f.val[name] = v
	}
	return f
}

func (f *fields) field(key string) string { return join(f.path, key) }

// at is the line of key's value, or where it belongs when it is absent.
func (f *fields) at(key string) int {
	if v := f.val[key]; v != nil {
		return v.Line
	}
	if l, ok := f.key[key]; ok {
		return l
	}
	return f.line
}

func (f *fields) has(key string) bool { return f.val[key] != nil }

func (f *fields) fail(key, format string, args ...any) {
	f.p.fail(f.at(key), f.field(key), format, args...)
}

// sub is the nested mapping under key.
func (f *fields) sub(key string, s schema) *fields {
	line := f.line
	if l, ok := f.key[key]; ok {
		line = l
	}
	return f.p.fields(f.val[key], f.field(key), line, s)
}

// scalar is key's single value; want describes it for the error.
func (f *fields) scalar(key, want string) (string, bool) {
	v := f.val[key]
	if v == nil {
		return "", false
	}
	if v.Kind != yaml.ScalarNode {
		f.fail(key, "want %s, not %s", want, kindName(v))
		return "", false
	}
	return v.Value, true
}

func (f *fields) str(key string) (string, bool) { return f.scalar(key, "a single value") }

// item is one element of a list value.
type item struct {
	s     string
	line  int
	field string
}

// list accepts a YAML list or, as swanctl does, a comma-separated string.
// set is false when the key is absent.
func (f *fields) list(key string) (items []item, set bool) {
	v := f.val[key]
	if v == nil {
		return nil, false
	}
	field := f.field(key)
	switch v.Kind {
	case yaml.ScalarNode:
		parts := strings.Split(v.Value, ",")
		if strings.TrimSpace(v.Value) == "" {
			return nil, true
		}
		for i, s := range parts {
			it := item{s: strings.TrimSpace(s), line: v.Line, field: field}
			if len(parts) > 1 {
				it.field = fmt.Sprintf("%s[%d]", field, i)
			}
			if it.s == "" {
				f.p.fail(v.Line, field, "empty entry %d in the comma-separated list", i+1)
				continue
			}
			items = append(items, it)
		}
	case yaml.SequenceNode:
		for i, e := range v.Content {
			e = resolve(e)
			it := item{s: strings.TrimSpace(e.Value), line: e.Line, field: fmt.Sprintf("%s[%d]", field, i)}
			if e.Kind != yaml.ScalarNode || isNull(e) {
				f.p.fail(e.Line, it.field, "want a single value, not %s", kindName(e))
				continue
			}
			if it.s == "" {
				f.p.fail(e.Line, it.field, "empty entry")
				continue
			}
			items = append(items, it)
		}
	default:
		f.fail(key, "want a list or a comma-separated string, not %s", kindName(v))
	}
	return items, true
}

func (f *fields) boolean(key string, def bool) bool {
	s, ok := f.scalar(key, "yes or no")
	if !ok {
		return def
	}
	switch strings.ToLower(s) {
	case "yes", "true", "on":
		return true
	case "no", "false", "off":
		return false
	}
	f.fail(key, "%q is not a boolean; use yes or no", s)
	return def
}

// oneOf joins choices as "a, b or c".
func oneOf(choices []string) string {
	if len(choices) == 1 {
		return choices[0]
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// enum is key's value among allowed (case-insensitive). why explains
// strongSwan values mifike does not support, by value or by the part
// before a '-' (eap-tls → eap).
func (f *fields) enum(key, def, what string, allowed []string, why map[string]string) string {
	s, ok := f.scalar(key, oneOf(allowed))
	if !ok {
		return def
	}
	l := strings.ToLower(strings.TrimSpace(s))
	if slices.Contains(allowed, l) {
		return l
	}
	prefix, _, _ := strings.Cut(l, "-")
	for _, w := range []string{l, prefix} {
		if msg, ok := why[w]; ok {
			f.fail(key, "%q: %s; use %s", s, msg, oneOf(allowed))
			return def
		}
	}
	f.fail(key, "%q is not %s %s; use %s", s, article(what), what, oneOf(allowed))
	return def
}

func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an"
	}
	return "a"
}

func (f *fields) duration(key string) (time.Duration, bool) {
	s, ok := f.scalar(key, "a duration")
	if !ok {
		return 0, false
	}
	d, err := parseDuration(s)
	if err != nil {
		f.fail(key, "%v", err)
		return 0, false
	}
	return d, true
}

func (f *fields) size(key string) (uint64, bool) {
	s, ok := f.scalar(key, "a byte count")
	if !ok {
		return 0, false
	}
	n, err := parseSize(s)
	if err != nil {
		f.fail(key, "%v", err)
		return 0, false
	}
	return n, true
}

// integer is key's value in [lo, hi].
func (f *fields) integer(key string, def, lo, hi int) int {
	s, ok := f.scalar(key, "a number")
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	switch {
	case strings.HasPrefix(strings.TrimSpace(s), "-"):
		f.fail(key, "%q must not be negative", s)
	case err != nil:
		f.fail(key, "%q is not a whole number", s)
	case n < lo || n > hi:
		f.fail(key, "%d is out of range; use %d to %d", n, lo, hi)
	default:
		return n
	}
	return def
}

func (f *fields) port(key string, def uint16) uint16 {
	return uint16(f.integer(key, int(def), 1, math.MaxUint16))
}

// path is key's file name made absolute against the config's directory.
func (p *parser) path(s string) string {
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.base, s)
	}
	if a, err := filepath.Abs(s); err == nil {
		s = a
	}
	return s
}

// suggest is the known key closest to key, if it is a likely typo.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := levenshtein(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
