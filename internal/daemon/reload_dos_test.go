package daemon

import (
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/config"
)

// The half-open limits are the engine's from its start: a reload that
// changes them is refused with a reason, not silently ignored.
func TestReloadRefusesDoSChange(t *testing.T) {
	src := "connections:\n  c:\n    local: {auth: psk, id: \"@a\"}\n    remote: {auth: psk}\n    psk: secret\n"
	old, err := config.Parse("f.yaml", []byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	same, _ := config.Parse("f.yaml", []byte(src), "")
	if err := reloadable(old, same); err != nil {
		t.Fatalf("an unchanged file: %v", err)
	}
	cur, err := config.Parse("f.yaml", []byte(src+"dos_protection: {half_open_per_source: 2}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := reloadable(old, cur); err == nil || !strings.Contains(err.Error(), "dos_protection") {
		t.Fatalf("changed dos_protection: %v", err)
	}
}
