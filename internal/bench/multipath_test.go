//go:build linux

package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The multipath suite end to end at a tiny size: every case measured and
// labelled, every download intact, the JSON has its fields, nothing left
// behind. The figures are not checked (a benchmark, on a shared
// machine); what test/e2e/multipath_test.go asserts (bytes on every VPN,
// none on a backup link, a cut survived) is not repeated here.
func TestMultipathSuite(t *testing.T) {
	ctx := needLab(t)
	r, err := Multipath(ctx, MultipathConfig{Exe: exe, Rates: []int{20, 10, 5}, RTTs: []time.Duration{2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond}, Size: 4 << 20, Seconds: 3})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	r.WriteTable(&table)
	t.Logf("\n%s", table.String())
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"links", "runs", "ratios", "link_bytes", "intact", "cut_at"} {
		if !bytes.Contains(b, []byte(`"`+w+`":`)) {
			t.Errorf("JSON without %q: %s", w, b)
		}
	}
	cases := map[string]int{}
	for _, x := range r.Runs {
		cases[x.Case]++
		plain := x.Case == "single" || strings.HasPrefix(x.Case, "spread-")
		if !x.Intact || x.Mbps <= 0 || x.MPTCP == plain {
			t.Errorf("a figure is missing or wrong: %+v", x)
		}
	}
	if cases["single"] != 3 || cases["mptcp"] != 1 || cases["mptcp-cut"] != 1 || cases["backup"] != 1 || cases["backup-failover"] != 1 ||
		cases["spread-measured"] != 1 || cases["spread-equal"] != 1 {
		t.Errorf("cases %v", cases)
	}
	if len(r.Ratios) != 10 {
		t.Errorf("%d ratios, want 10", len(r.Ratios))
	}
	if left, _ := filepath.Glob(filepath.Join("/run/netns", "mfkp-"+strconv.Itoa(os.Getpid())+"-*")); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}
