package interop

import (
	"fmt"
	"strings"
	"unicode"
)

// viciNode is a section of swanctl's --raw output: key=value pairs,
// lists in brackets and nested sections in braces.
type viciNode struct {
	vals  map[string]string
	lists map[string][]string
	subs  map[string]*viciNode
	order []string // section names in order
}

func newViciNode() *viciNode {
	return &viciNode{vals: map[string]string{}, lists: map[string][]string{}, subs: map[string]*viciNode{}}
}

// parseRaw parses lines like
// `list-sa event {conn {uniqueid=1 ... child-sas {net-1 {...}}}}`.
func parseRaw(s string) (*viciNode, error) {
	toks := tokenize(s)
	root := newViciNode()
	pos := 0
	for pos < len(toks) {
		// "list-sa event {" or "list-sas reply {"
		name := []string{}
		for pos < len(toks) && toks[pos] != "{" {
			name = append(name, toks[pos])
			pos++
		}
		if pos >= len(toks) {
			break
		}
		pos++
		n, next, err := parseSection(toks, pos)
		if err != nil {
			return nil, err
		}
		key := strings.Join(name, " ")
		for i := 2; root.subs[key] != nil; i++ {
			key = fmt.Sprintf("%s#%d", strings.Join(name, " "), i)
		}
		root.subs[key] = n
		root.order = append(root.order, key)
		pos = next
	}
	return root, nil
}

func tokenize(s string) []string {
	var toks []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for _, r := range s {
		switch {
		case r == '{' || r == '}' || r == '[' || r == ']' || r == '=':
			flush()
			toks = append(toks, string(r))
		case unicode.IsSpace(r):
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return toks
}

func parseSection(toks []string, pos int) (*viciNode, int, error) {
	n := newViciNode()
	for pos < len(toks) {
		t := toks[pos]
		if t == "}" {
			return n, pos + 1, nil
		}
		if pos+1 >= len(toks) {
			return nil, pos, fmt.Errorf("truncated at %q", t)
		}
		switch toks[pos+1] {
		case "{":
			sub, next, err := parseSection(toks, pos+2)
			if err != nil {
				return nil, pos, err
			}
			n.subs[t] = sub
			n.order = append(n.order, t)
			pos = next
		case "=":
			if pos+2 < len(toks) && toks[pos+2] == "[" {
				pos += 3
				var l []string
				for pos < len(toks) && toks[pos] != "]" {
					l = append(l, toks[pos])
					pos++
				}
				n.lists[t] = l
				pos++
			} else if pos+2 < len(toks) {
				n.vals[t] = toks[pos+2]
				pos += 3
			} else {
				return nil, pos, fmt.Errorf("value missing for %q", t)
			}
		default:
			return nil, pos, fmt.Errorf("unexpected %q after %q", toks[pos+1], t)
		}
	}
	return nil, pos, fmt.Errorf("unterminated section")
}
