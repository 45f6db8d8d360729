package endurance

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ipsec"
)

// metricsAddr is metrics.listen of both daemons: each is alone in its
// namespace, so they share it.
const metricsAddr = "127.0.0.1:9847"

// side is one daemon and the namespace it runs in.
type side struct {
	name string // "ue" or "gw"
	d    *demo.Daemon
	ns   string
	nl   *netlink.Handle // netlink in the daemon's namespace
}

func newSide(name string, d *demo.Daemon, ns string) (*side, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	return &side{name: name, d: d, ns: ns, nl: nl}, nil
}

// snapshot is what one side holds at one moment: its IKE SAs as the
// control socket lists them, the kernel state its data plane owns, and
// its process figures.
type snapshot struct {
	sas      []control.SA
	tunAddrs []netip.Addr   // addresses on the TUN device
	routes   []netip.Prefix // routes in the data plane's table
	rules    int            // policy routing rules to that table
	xfrm     int            // XFRM states and policies (none with the userspace data plane)
	xfrmErr  error
	metrics  map[string]float64 // from the Prometheus page
	errs     []string           // what could not be read
}

func (s *side) snapshot() snapshot {
	var out snapshot
	fail := func(what string, err error) {
		out.errs = append(out.errs, fmt.Sprintf("%s %s: %v", s.name, what, err))
	}
	var err error
	if out.sas, err = s.d.SAs(); err != nil {
		fail("list-sas", err)
	}
	if link, err := s.nl.LinkByName("mifike0"); err != nil {
		fail("TUN device", err)
	} else {
		addrs, err := s.nl.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			fail("TUN addresses", err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsLinkLocalUnicast() {
				out.tunAddrs = append(out.tunAddrs, ip.Unmap())
			}
		}
	}
	routes, err := s.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: ipsec.DefaultTable}, netlink.RT_FILTER_TABLE)
	if err != nil {
		fail("routes", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		bits, _ := r.Dst.Mask.Size()
		out.routes = append(out.routes, netip.PrefixFrom(ip.Unmap(), bits))
	}
	rules, err := s.nl.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		fail("rules", err)
	}
	for _, r := range rules {
		if r.Table == ipsec.DefaultTable {
			out.rules++
		}
	}
	if st, err := s.nl.XfrmStateList(netlink.FAMILY_ALL); err != nil {
		out.xfrmErr = err
	} else if pol, err := s.nl.XfrmPolicyList(netlink.FAMILY_ALL); err != nil {
		out.xfrmErr = err
	} else {
		out.xfrm = len(st) + len(pol)
	}
	if out.metrics, err = scrape(s.ns); err != nil {
		fail("metrics", err)
	}
	return out
}

// scrape reads the daemon's Prometheus page and checks it has what the
// resource invariants need.
func scrape(ns string) (map[string]float64, error) {
	out, err := demo.Scrape(ns, metricsAddr)
	if err != nil {
		return nil, err
	}
	for _, m := range []string{mGoroutines, mNextGC, mGOGC, mFDs, mRSS} {
		if _, ok := out[m]; !ok {
			return nil, fmt.Errorf("no %s in the metrics page (%d series)", m, len(out))
		}
	}
	// The collector aims the next collection at the live heap times
	// 1 + GOGC/100, so the goal tells the live heap of the last
	// collection; heap_alloc instead swings with the garbage between
	// collections, which can be tens of seconds apart.
	if gogc := out[mGOGC]; gogc > 0 {
		out[mLiveHeap] = out[mNextGC] / (1 + gogc/100)
	}
	return out, nil
}

// Names of the metrics the resource invariants follow.
const (
	mGoroutines = "go_goroutines"
	mNextGC     = "go_memstats_next_gc_bytes"
	mGOGC       = "go_gc_gogc_percent"
	mFDs        = "process_open_fds"
	mRSS        = "process_resident_memory_bytes"
	mLeases     = `mifike_pool_leases{pool="vpn"}`
	// mLiveHeap is derived: the heap live after the last collection.
	mLiveHeap = "live_heap"
)

// established are the SAs in state ESTABLISHED.
func established(sas []control.SA) []control.SA {
	var out []control.SA
	for _, s := range sas {
		if s.State == ike.StateEstablished {
			out = append(out, s)
		}
	}
	return out
}

// installed says whether an SA carries traffic: it has a Child SA that
// is installed (or being rekeyed by us), not only replaced or deleted.
func installed(s control.SA) bool {
	for _, c := range s.Children {
		if c.State == "INSTALLED" || c.State == "REKEYING" {
			return true
		}
	}
	return false
}

// vpns are the end user's established SAs that carry traffic.
func vpns(sas []control.SA) []control.SA {
	var out []control.SA
	for _, s := range established(sas) {
		if installed(s) {
			out = append(out, s)
		}
	}
	return out
}

func parseAddrs(l []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range l {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// addrSet is a set of addresses that prints sorted.
type addrSet map[netip.Addr]bool

func (s addrSet) String() string {
	var l []string
	for _, a := range s.sorted() {
		l = append(l, a.String())
	}
	return "{" + strings.Join(l, " ") + "}"
}

func (s addrSet) sorted() []netip.Addr {
	var l []netip.Addr
	for a := range s {
		l = append(l, a)
	}
	slices.SortFunc(l, netip.Addr.Compare)
	return l
}

// minus is what s holds and o does not.
func (s addrSet) minus(o addrSet) addrSet {
	out := addrSet{}
	for a := range s {
		if !o[a] {
			out[a] = true
		}
	}
	return out
}

func prefixStrings(l []netip.Prefix) string {
	var s []string
	for _, p := range l {
		s = append(s, p.String())
	}
	slices.Sort(s)
	return "{" + strings.Join(s, " ") + "}"
}
