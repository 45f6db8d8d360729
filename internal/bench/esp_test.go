//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The benchmark end to end, briefly: every figure is measured.
func TestESP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (CI runs as root; run `sudo make test`)")
	}
	if _, err := checkTools(); err != nil {
		t.Skipf("%v", err)
	}
	exe := filepath.Join(t.TempDir(), "mifike")
	if out, err := exec.Command("go", "build", "-o", exe, "github.com/mifike/mifike/cmd/mifike").CombinedOutput(); err != nil {
		t.Fatalf("building mifike: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	r, err := ESP(ctx, ESPConfig{Exe: exe, Duration: 2 * time.Second, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	var table strings.Builder
	r.WriteTable(&table)
	t.Logf("\n%s", table.String())
	if r.Baseline <= 0 || r.Mifike <= 0 || r.MifikePlain <= 0 || r.StrongSwan <= 0 || r.Ratio <= 0 {
		t.Errorf("a figure is missing: %+v", r)
	}
	if r.StrongSwanVersion == "" || r.IKEProposal == "" || r.ESPProposal == "" {
		t.Errorf("unlabelled result: %+v", r)
	}
	b, err := json.Marshal(r)
	if err != nil || !strings.Contains(string(b), `"strongswan_mbps":`) {
		t.Errorf("JSON %s, %v", b, err)
	}
	leftovers, _ := filepath.Glob("/run/netns/mfkb-" + strconv.Itoa(os.Getpid()) + "-*")
	if len(leftovers) > 0 {
		t.Errorf("namespaces left behind: %v", leftovers)
	}
}
