// Package swanctl reads strongSwan's swanctl.conf and converts it into
// mifike's YAML configuration (mifike import-swanctl).
//
// The parser is written here: there is no Go library for strongSwan's
// settings format. It follows what libstrongswan's settings parser
// accepts (settings_lexer.l, settings_parser.y): sections "name { ... }",
// "name : other { ... }" references, "key = value" where an unquoted
// value runs to the end of the line, a '#' or a brace, "quoted values"
// with \" \\ \n \t escapes that may span lines, '#' comments, and
// "include PATTERN" (a glob, relative to the including file). A section
// or key written twice merges, the last value winning, as there.
package swanctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Bounds, so a hostile or broken file cannot make us recurse or read
// without end.
const (
	MaxFileBytes    = 1 << 20
	MaxDepth        = 32
	MaxIncludeDepth = 8
	MaxIncludes     = 256
)

// Section is a section of the file: the whole file is the unnamed root.
type Section struct {
	Name     string
	File     string
	Line     int
	Refs     []string // "name : a, b {": sections whose settings are inherited
	Keys     []*Key   // in file order, one per key (the last value kept)
	Sections []*Section
}

// Key is one setting.
type Key struct {
	Name, Value string
	File        string
	Line        int
}

// Get is the value of key name, if set.
func (s *Section) Get(name string) (*Key, bool) {
	for _, k := range s.Keys {
		if k.Name == name {
			return k, true
		}
	}
	return nil, false
}

// Sub is the subsection name, or nil.
func (s *Section) Sub(name string) *Section {
	for _, c := range s.Sections {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (s *Section) set(k *Key) {
	for i, o := range s.Keys {
		if o.Name == k.Name {
			s.Keys[i] = k
			return
		}
	}
	s.Keys = append(s.Keys, k)
}

func (s *Section) section(name, file string, line int) *Section {
	if c := s.Sub(name); c != nil {
		return c
	}
	c := &Section{Name: name, File: file, Line: line}
	s.Sections = append(s.Sections, c)
	return c
}

// Error is a syntax error at a line of a file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ReadFile parses the file at path with its includes.
func ReadFile(path string) (*Section, error) {
	root := &Section{File: path, Line: 1}
	p := &parser{includes: new(int)}
	if err := p.file(root, path, 0); err != nil {
		return nil, err
	}
	return root, nil
}

// Parse parses data as file, with includes refused (no file system): for
// the fuzz target and for tests.
func Parse(file string, data []byte) (*Section, error) {
	root := &Section{File: file, Line: 1}
	p := &parser{includes: new(int), noIncludes: true}
	if err := p.parse(root, file, data, 0); err != nil {
		return nil, err
	}
	return root, nil
}

type parser struct {
	includes   *int
	noIncludes bool
}

func (p *parser) file(into *Section, path string, depth int) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() > MaxFileBytes {
		return fmt.Errorf("%s: %d octets; at most %d are read", path, st.Size(), MaxFileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return p.parse(into, path, data, depth)
}

// lexer state over one file.
type lexer struct {
	file string
	data []byte
	pos  int
	line int
}

func (l *lexer) errf(format string, args ...any) error {
	return &Error{File: l.file, Line: l.line, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) peek() byte {
	if l.pos < len(l.data) {
		return l.data[l.pos]
	}
	return 0
}

// skip passes blanks, comments and (when newlines) line ends.
func (l *lexer) skip(newlines bool) {
	for l.pos < len(l.data) {
		switch c := l.data[l.pos]; {
		case c == '\n':
			if !newlines {
				return
			}
			l.line++
			l.pos++
		case c == ' ' || c == '\t' || c == '\r':
			l.pos++
		case c == '#':
			for l.pos < len(l.data) && l.data[l.pos] != '\n' {
				l.pos++
			}
		default:
			return
		}
	}
}

func nameByte(c byte) bool {
	return c > ' ' && c != '{' && c != '}' && c != '=' && c != '#' && c != ':' && c != '"' && c < 0x7f
}

func (l *lexer) name() string {
	start := l.pos
	for l.pos < len(l.data) && nameByte(l.data[l.pos]) {
		l.pos++
	}
	return string(l.data[start:l.pos])
}

// value reads a key's value after '='.
func (l *lexer) value() (string, error) {
	l.skip(false)
	if l.peek() == '"' {
		l.pos++
		var b strings.Builder
		for {
			if l.pos >= len(l.data) {
				return "", l.errf("unterminated quoted value")
			}
			c := l.data[l.pos]
			l.pos++
			switch c {
			case '"':
				return b.String(), nil
			case '\n':
				l.line++
				b.WriteByte(c)
			case '\\':
				if l.pos >= len(l.data) {
					return "", l.errf("unterminated quoted value")
				}
				e := l.data[l.pos]
				l.pos++
				switch e {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				case '\n':
					l.line++ // a continued line
				default:
					b.WriteByte(e)
				}
			default:
				b.WriteByte(c)
			}
		}
	}
	start := l.pos
	for l.pos < len(l.data) {
		c := l.data[l.pos]
		if c == '\n' || c == '#' || c == '{' || c == '}' {
			break
		}
		l.pos++
	}
	return strings.TrimSpace(string(l.data[start:l.pos])), nil
}

func (p *parser) parse(root *Section, file string, data []byte, depth int) error {
	if len(data) > MaxFileBytes {
		return fmt.Errorf("%s: %d octets; at most %d are read", file, len(data), MaxFileBytes)
	}
	l := &lexer{file: file, data: data, line: 1}
	stack := []*Section{root}
	for {
		l.skip(true)
		if l.pos >= len(l.data) {
			break
		}
		cur := stack[len(stack)-1]
		if l.peek() == '}' {
			if len(stack) == 1 {
				return l.errf("'}' closes no section")
			}
			l.pos++
			stack = stack[:len(stack)-1]
			continue
		}
		line := l.line
		name := l.name()
		if name == "" {
			return l.errf("unexpected %q", l.peek())
		}
		l.skip(false)
		if name == "include" && l.peek() != '=' && l.peek() != '{' && l.peek() != ':' {
			pattern, err := l.value()
			if err != nil {
				return err
			}
			if err := p.include(cur, file, pattern, line, depth); err != nil {
				return err
			}
			continue
		}
		l.skip(true)
		switch l.peek() {
		case '=':
			l.pos++
			v, err := l.value()
			if err != nil {
				return err
			}
			cur.set(&Key{Name: name, Value: v, File: file, Line: line})
		case ':', '{':
			var refs []string
			if l.peek() == ':' {
				l.pos++
				for {
					l.skip(true)
					r := l.name()
					if r == "" {
						return l.errf("section %s: a reference must name a section", name)
					}
					refs = append(refs, r)
					l.skip(true)
					if l.peek() != ',' {
						break
					}
					l.pos++
				}
				if l.peek() != '{' {
					return l.errf("section %s: '{' expected after its references", name)
				}
			}
			l.pos++
			if len(stack) > MaxDepth {
				return l.errf("sections nested deeper than %d", MaxDepth)
			}
			s := cur.section(name, file, line)
			s.Refs = append(s.Refs, refs...)
			stack = append(stack, s)
		default:
			return l.errf("%s: '=' or '{' expected", name)
		}
	}
	if len(stack) > 1 {
		return l.errf("section %s is not closed", stack[len(stack)-1].Name)
	}
	return nil
}

// include reads the files pattern names into cur: a glob relative to the
// including file's directory, in sorted order (as glob(3) returns them).
func (p *parser) include(cur *Section, file, pattern string, line, depth int) error {
	if p.noIncludes {
		return &Error{File: file, Line: line, Msg: "include is not read here"}
	}
	if depth >= MaxIncludeDepth {
		return &Error{File: file, Line: line, Msg: fmt.Sprintf("includes nested deeper than %d", MaxIncludeDepth)}
	}
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(file), pattern)
	}
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return &Error{File: file, Line: line, Msg: fmt.Sprintf("include %s: %v", pattern, err)}
	}
	for _, path := range paths {
		*p.includes++
		if *p.includes > MaxIncludes {
			return &Error{File: file, Line: line, Msg: fmt.Sprintf("more than %d included files", MaxIncludes)}
		}
		if err := p.file(cur, path, depth+1); err != nil {
			return err
		}
	}
	return nil
}
