package config

import (
	"bytes"
	"errors"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const referenceFile = "../../docs/config-reference.md"

// docs/config-reference.md is what the table generates.
func TestReferenceUpToDate(t *testing.T) {
	got, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatalf("%v; make it with: go generate ./internal/config", err)
	}
	if !bytes.Equal(got, ReferenceMarkdown()) {
		t.Fatal("docs/config-reference.md is out of date: run go generate ./internal/config " +
			"(or go run ./internal/config/genref -o docs/config-reference.md) and commit the result")
	}
}

// schemaLiterals finds every schema{...} literal in the package's source
// (not its tests) and returns their keys: what the parser accepts, found
// without a list that could itself fall behind.
func schemaLiterals(t *testing.T) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := lit.Type.(*ast.Ident); !ok || id.Name != "schema" {
				return true
			}
			var keys []string
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok || kv.Key.(*ast.Ident).Name != "keys" {
					continue
				}
				for _, k := range kv.Value.(*ast.CompositeLit).Elts {
					s, err := strconv.Unquote(k.(*ast.BasicLit).Value)
					if err != nil {
						t.Fatal(err)
					}
					keys = append(keys, s)
				}
			}
			out[fset.Position(lit.Pos()).String()] = keys
			return true
		})
	}
	if len(out) < 10 {
		t.Fatalf("found only %d schemas: %v", len(out), out)
	}
	return out
}

// Every schema of the parser is a section of the reference, every key it
// accepts is documented there with a type, an example and a description,
// and the reference documents no key the parser refuses.
func TestReferenceCoversSchemas(t *testing.T) {
	seen := map[*schema]string{}
	for _, s := range reference {
		if p, dup := seen[s.Schema]; dup {
			t.Errorf("sections %q and %q document one schema", p, s.Path)
		}
		seen[s.Schema] = s.Path
		for _, k := range s.Schema.keys {
			d, ok := s.Keys[k]
			if !ok {
				t.Errorf("%s: the parser accepts %q, which reference.go does not document", s.Path, k)
				continue
			}
			if d.Type == "" || d.Example == "" || d.Doc == "" {
				t.Errorf("%s.%s: type %q, example %q, doc %q: each is needed", s.Path, k, d.Type, d.Example, d.Doc)
			}
		}
		for k := range s.Keys {
			if !slices.Contains(s.Schema.keys, k) {
				t.Errorf("%s: reference.go documents %q, which the parser does not accept", s.Path, k)
			}
		}
	}
	for pos, keys := range schemaLiterals(t) {
		if !slices.ContainsFunc(reference, func(s refSection) bool { return slices.Equal(s.Schema.keys, keys) }) {
			t.Errorf("%s: a schema with keys %v is not a section of the reference in reference.go", pos, keys)
		}
	}
}

// refBase is a file that parses: one connection with a child, and the
// sections that have required keys filled in. A key is tried in it at
// its section's path.
func refBase() map[string]any {
	return map[string]any{
		"connections": map[string]any{"c": map[string]any{
			"remote_addrs": "192.0.2.1",
			"local":        map[string]any{"auth": "psk", "id": "@a.example"},
			"remote":       map[string]any{"auth": "psk", "id": "@b.example"},
			"psk":          "0x" + strings.Repeat("ab", 20),
			"children":     map[string]any{"office-net": map[string]any{}},
		}},
		"pools": map[string]any{"roadwarriors": map[string]any{"addrs": "10.99.0.0/24"}},
		// For remote.auth eap.
		"radius": map[string]any{"servers": map[string]any{"s": map[string]any{"address": "10.0.0.5", "secret": strings.Repeat("s", 20)}}},
	}
}

// refContext are further keys a key needs beside it to be valid, by
// section and key: what the parser checks together.
var refContext = map[string]map[string]any{
	"mptcp.subflows":                         {"enable": "yes"},
	"mptcp.add_addr_accepted":                {"enable": "yes"},
	"connections.<name>.tcp_port":            {"tcp": "fallback"},
	"connections.<name>.tcp_fallback_after":  {"tcp": "fallback"},
	"connections.<name>.local.eap_id":        {"auth": "eap-mschapv2", "password": "pw"},
	"connections.<name>.local.password":      {"auth": "eap-mschapv2"},
	"connections.<name>.local.password_file": {"auth": "eap-mschapv2"},
	"connections.<name>.local.eap_cacerts":   {"auth": "eap-tls", "certs": "c.crt", "key": "c.key"},
	"connections.<name>.local.aaa_id":        {"auth": "eap-tls", "certs": "c.crt", "key": "c.key"},
	"connections.<name>.remote.eap_id":       {"auth": "eap"},
	"connections.<name>.local.auth":          {"certs": "c.crt", "key": "c.key"},
	"connections.<name>.remote.auth":         {"cacerts": "ca.crt"},
	"connections.<name>.remote.revocation":   {"auth": "pubkey", "cacerts": "ca.crt"},
	"connections.<name>.remote.crls":         {"auth": "pubkey", "cacerts": "ca.crt", "revocation": "strict"},
	"connections.<name>.remote.ocsp_uri":     {"auth": "pubkey", "cacerts": "ca.crt", "revocation": "strict"},
	"cluster.etcd.cacert":                    {"endpoints": "https://10.0.0.1:2379"},
	"cluster.etcd.cert":                      {"key": "k.pem"},
	"cluster.etcd.key":                       {"cert": "c.pem"},
}

// sectionMap is the mapping at a section's path in doc, made as needed;
// <name> is the entry the base defines or a new one (s).
func sectionMap(doc map[string]any, path string) map[string]any {
	m := doc
	if path == "" {
		return m
	}
	parts := strings.Split(path, ".")
	for i, p := range parts {
		if p == "<name>" {
			switch parts[i-1] {
			case "connections":
				p = "c"
			case "children":
				p = "office-net"
			case "pools":
				p = "roadwarriors"
			default:
				p = "s"
			}
		}
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	return m
}

// parseRef parses doc written in flow style on one line, so that adding a
// key moves no other key's line and two parses compare equal.
func parseRef(t *testing.T, doc map[string]any, dir string) (*Config, error) {
	t.Helper()
	var n yaml.Node
	if err := n.Encode(doc); err != nil {
		t.Fatal(err)
	}
	n.Style = yaml.FlowStyle
	data, err := yaml.Marshal(&n)
	if err != nil {
		t.Fatal(err)
	}
	return Parse("f.yaml", data, dir)
}

// withSection is refBase with what the sections of path need: radius and
// cluster have required keys.
func withSection(path string) map[string]any {
	doc := refBase()
	switch {
	case strings.HasSuffix(path, ".interfaces"):
		sectionMap(doc, path)["use"] = "eth0"
	case strings.HasPrefix(path, "cluster"):
		c := sectionMap(doc, "cluster")
		c["name"], c["node"], c["key_file"] = "vpn", 1, "kek"
		sectionMap(doc, "cluster.etcd")["endpoints"] = "http://10.0.0.1:2379"
	}
	sectionMap(doc, path)
	return doc
}

// Every key's example parses at its place without an error about that
// key, and every literal default is what Parse takes without the key:
// the same Config with or without "key: default".
func TestReferenceExamplesAndDefaults(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "eap-password"), []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	value := func(s string) any {
		var v any
		if err := yaml.Unmarshal([]byte("v: "+s), &v); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		return v.(map[string]any)["v"]
	}
	for _, s := range reference {
		for _, k := range s.Schema.keys {
			d := s.Keys[k]
			field := strings.TrimPrefix(s.Path+"."+k, ".")
			field = strings.Replace(field, "connections.<name>.children.<name>", "connections.c.children.office-net", 1)
			for from, to := range map[string]string{"connections.<name>": "connections.c", "pools.<name>": "pools.roadwarriors", "radius.servers.<name>": "radius.servers.s"} {
				field = strings.Replace(field, from, to, 1)
			}
			try := func(v any) (*Config, error) {
				doc := withSection(s.Path)
				m := sectionMap(doc, s.Path)
				for ck, cv := range refContext[s.Path+"."+k] {
					m[ck] = cv
				}
				m[k] = v
				return parseRef(t, doc, dir)
			}
			if c, err := try(value(d.Example)); err != nil {
				var errs Errors
				if !errors.As(err, &errs) {
					t.Errorf("%s: %v", field, err)
				}
				for _, e := range errs {
					if e.Field == field || strings.HasPrefix(e.Field, field+".") || strings.HasPrefix(e.Field, field+"[") {
						t.Errorf("%s: the example %q: %v", field, d.Example, e)
					}
				}
			} else if c == nil {
				t.Errorf("%s: no config", field)
			}
			if d.Default == "" {
				continue
			}
			doc := withSection(s.Path)
			m := sectionMap(doc, s.Path)
			for ck, cv := range refContext[s.Path+"."+k] {
				m[ck] = cv
			}
			delete(m, k) // the base's own value, if it has one
			without, err := parseRef(t, doc, dir)
			if err != nil {
				t.Errorf("%s: the base file: %v", field, err)
				continue
			}
			with, err := try(value(d.Default))
			if err != nil {
				t.Errorf("%s: the default %q: %v", field, d.Default, err)
				continue
			}
			without.host, with.host = hostChecks{}, hostChecks{}
			if !reflect.DeepEqual(without, with) {
				t.Errorf("%s: the documented default %q is not what Parse takes without the key", field, d.Default)
			}
		}
	}
}
