package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

var all3 = []string{"eth0", "wlan0", "wwan0"}

// UC1 "Initial MIF IPsec Configuration": one authentication, then a VPN
// on every interface (RFC 7791 App. A), each with its own inner address,
// each carrying its own traffic.
func TestUC1InitialConfiguration(t *testing.T) {
	top, ue, gw := lab(t, demo.Options{})
	v := waitVPNs(t, ue, all3, 20*time.Second)
	if n := strings.Count(gw.Log(), "received IKE_AUTH request"); n != 1 {
		t.Fatalf("the gateway saw %d IKE_AUTH requests; the end user must authenticate once", n)
	}
	seen := map[string]bool{}
	for _, dev := range all3 {
		s := v[dev]
		if len(s.VirtualIPs) != 1 || seen[s.VirtualIPs[0]] {
			t.Fatalf("%s's VPN has inner addresses %v (all: %v)", dev, s.VirtualIPs, seen)
		}
		seen[s.VirtualIPs[0]] = true
		pingThrough(t, top, ue, s)
	}
	t.Logf("end user:\n%s", ue.Table(context.Background()))
}
