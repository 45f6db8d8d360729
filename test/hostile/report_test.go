package hostile

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
)

var exchangeNames = map[byte]string{exInit: "IKE_SA_INIT", exAuth: "IKE_AUTH", exCreate: "CREATE_CHILD_SA", exInfo: "INFORMATIONAL"}

// describeCorpus counts the corpus by exchange and port, and fails the
// test if an exchange type or a port form is missing: the stream would
// not be what it claims.
func describeCorpus(t *testing.T, ike []ikeMsg, esp []espPkt) string {
	t.Helper()
	type key struct {
		x    byte
		port uint16
	}
	n := map[key]int{}
	for _, m := range ike {
		if len(m.data) < hdrLen {
			continue
		}
		p := m.dst.Port()
		if !demoGW(m.dst) {
			p = m.src.Port()
		}
		n[key{m.data[offExchange], p}]++
	}
	var parts []string
	for _, x := range []byte{exInit, exAuth, exCreate, exInfo} {
		if n[key{x, ikePort}]+n[key{x, nattPort}] == 0 {
			t.Fatalf("the corpus has no %s message; the sessions did not run as planned", exchangeNames[x])
		}
		parts = append(parts, fmt.Sprintf("%s %d on 500, %d on 4500", exchangeNames[x], n[key{x, ikePort}], n[key{x, nattPort}]))
	}
	var on500, on4500 bool
	for k := range n {
		on500 = on500 || k.port == ikePort
		on4500 = on4500 || k.port == nattPort
	}
	if !on500 || !on4500 {
		t.Fatalf("the corpus lacks messages on port 500 or 4500: %v", n)
	}
	if len(esp) == 0 {
		t.Fatal("the corpus has no ESP packet; the pings did not go through the VPNs")
	}
	return fmt.Sprintf("%d IKE messages (%s; each is sent in both forms, bare on 500 and behind the non-ESP marker on 4500), %d ESP packets",
		len(ike), strings.Join(parts, "; "), len(esp))
}

func demoGW(a netip.AddrPort) bool {
	for _, g := range demo.GatewayAddrs {
		if a.Addr() == g {
			return true
		}
	}
	return false
}

func describeLive(l []control.SA) string {
	var parts []string
	for _, s := range l {
		var children []string
		for _, c := range s.Children {
			children = append(children, fmt.Sprintf("ESP in %s out %s %s", c.InSPI, c.OutSPI, c.State))
		}
		parts = append(parts, fmt.Sprintf("\n  IKE SA %d %s SPIs %s/%s %s <-> %s, %s", s.ID, s.State, s.SPIi, s.SPIr, s.Local, s.Remote, strings.Join(children, ", ")))
	}
	return strings.Join(parts, "")
}

func describeCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %6d  %s\n", m[k], k)
	}
	return b.String()
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// scrape reads the gateway's Prometheus metrics (in its namespace);
// series are keyed name{labels}.
func scrape(t *testing.T, ns string) map[string]float64 {
	t.Helper()
	out, err := demo.Scrape(ns, metricsAddr)
	if err != nil {
		t.Fatalf("scraping the gateway's metrics: %v", err)
	}
	return out
}

// metricDeltas reports how the gateway's own counters moved: what it
// dropped, which exchanges it saw, what it answered, what its data plane
// refused.
func metricDeltas(a, b map[string]float64) string {
	var keys []string
	for k := range b {
		if strings.HasPrefix(k, "mifike_") && !strings.HasPrefix(k, "mifike_child_sa_") && b[k] != a[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var s strings.Builder
	// Exchange types without a name each get a series; one line for all.
	unnamed, types := 0.0, 0
	for _, k := range keys {
		if strings.HasPrefix(k, `mifike_exchanges_total{exchange="EXCHANGE(`) {
			unnamed, types = unnamed+b[k]-a[k], types+1
			continue
		}
		fmt.Fprintf(&s, "  %+10.0f  %s\n", b[k]-a[k], k)
	}
	if types > 0 {
		fmt.Fprintf(&s, "  %+10.0f  mifike_exchanges_total of %d unassigned exchange types, a series each\n", unnamed, types)
	}
	for _, k := range []string{`mifike_ike_sas{state="ESTABLISHED"}`, `mifike_ike_sas{state="CONNECTING"}`} {
		fmt.Fprintf(&s, "  now %7.0f  %s\n", b[k], k)
	}
	return s.String()
}
