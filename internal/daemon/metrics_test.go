package daemon

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ipsec"
)

// metricsDaemon is a daemon with an engine (no connections) and a fake
// data plane that counts, its event loop serving calls until the test
// ends, and its metrics.
func metricsDaemon(t *testing.T) (*Daemon, *fakePlane, *metrics) {
	t.Helper()
	e, err := ike.New(ike.Config{Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePlane{sas: map[uint32]ike.ChildSA{}, ctr: map[uint32]*ipsec.Counters{}}
	d := &Daemon{engine: e, plane: p, pools: &config.Pools{}, log: slog.New(slog.DiscardHandler),
		children: map[uint32]childRec{}, retiring: map[uint32]retiring{}, calls: make(chan func())}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case f := <-d.calls:
				f()
			case <-done:
				return
			}
		}
	}()
	d.metrics = newMetrics(d)
	return d, p, d.metrics
}

// scrape gathers m as a Prometheus server would, by series
// (`name{label="value",...}`; a histogram by its _count and _sum).
func scrape(t *testing.T, m *metrics) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, m.events, m.handshakes, m.moves)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, x := range mf.GetMetric() {
			var ls []string
			for _, l := range x.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			series := func(suffix string) string {
				if len(ls) == 0 {
					return mf.GetName() + suffix
				}
				return mf.GetName() + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[series("")] = x.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[series("")] = x.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[series("_count")] = float64(x.GetHistogram().GetSampleCount())
				out[series("_sum")] = x.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// RFC 7296 §2.8 replaces Child SAs by rekeys: the _total counters go on
// over them (a retiring SA's late packets too), never down, where the
// gauge of the installed SAs drops; the same when a new SA takes a
// retiring one's SPI, or a VPN goes for good.
func TestESPTotalsSurviveRekeys(t *testing.T) {
	d, p, m := metricsDaemon(t)
	sa := func(spi uint32) ike.ChildSA { return ike.ChildSA{InSPI: spi, OutSPI: spi + 1, Outbound: true} }
	carry := func(spi uint32, in, out uint64) {
		c := p.ctr[spi]
		c.BytesIn.Add(in)
		c.PacketsIn.Add(1)
		c.BytesOut.Add(out)
		c.PacketsOut.Add(1)
	}
	var last map[string]float64
	check := func(step string, bytesIn, bytesOut, packets, gaugeIn float64) {
		t.Helper()
		s := scrape(t, m)
		for series, want := range map[string]float64{
			`mifike_esp_bytes_total{direction="in"}`: bytesIn, `mifike_esp_bytes_total{direction="out"}`: bytesOut,
			`mifike_esp_packets_total{direction="in"}`: packets, `mifike_esp_packets_total{direction="out"}`: packets,
			`mifike_child_sa_bytes{direction="in"}`: gaugeIn,
		} {
			if got, ok := s[series]; !ok || got != want {
				t.Errorf("%s: %s = %v (present %v), want %v", step, series, got, ok, want)
			}
			if strings.Contains(series, "_total") && s[series] < last[series] {
				t.Errorf("%s: %s went down from %v to %v", step, series, last[series], s[series])
			}
		}
		last = s
	}
	d.apply([]ike.Action{ike.InstallChild{SA: sa(0x100)}})
	carry(0x100, 1000, 500)
	check("installed", 1000, 500, 1, 1000)
	d.apply([]ike.Action{ike.InstallChild{SA: sa(0x101)}, ike.DeleteChild{InSPI: 0x100, Successor: 0x101}})
	carry(0x101, 100, 50)
	check("rekeyed", 1100, 550, 2, 100)
	carry(0x100, 10, 0) // late inbound on the retiring SA
	check("late packet", 1110, 550, 3, 100)
	d.retire(time.Now().Add(retireRekeyed + time.Second))
	if _, ok := p.sas[0x100]; ok {
		t.Fatal("the rekeyed SA did not retire")
	}
	check("retired", 1110, 550, 3, 100)
	// The engine hands 0x101's SPI out again while it retires.
	d.apply([]ike.Action{ike.InstallChild{SA: sa(0x102)}, ike.DeleteChild{InSPI: 0x101, Successor: 0x102}, ike.InstallChild{SA: sa(0x101)}})
	carry(0x102, 1, 1)
	check("SPI reused", 1111, 551, 4, 1)
	d.apply([]ike.Action{ike.DeleteChild{InSPI: 0x102}, ike.DeleteChild{InSPI: 0x101}})
	check("deleted", 1111, 551, 4, 0)
}

// A Prometheus user alerts on absent or zero series alike only if every
// state is there: a state without SAs reads 0 rather than vanishing;
// the build says what it is; the handshake histogram, the
// authentication, liveness and MOBIKE counters exist from the start
// and count.
func TestMetricsSeriesAreThereFromTheStart(t *testing.T) {
	d, _, m := metricsDaemon(t)
	s := scrape(t, m)
	var want []string
	for _, st := range ike.ListedStates() {
		want = append(want, fmt.Sprintf("mifike_ike_sas{state=%q}", st))
	}
	for _, st := range ike.ListedChildStates() {
		want = append(want, fmt.Sprintf("mifike_child_sas{state=%q}", st))
	}
	want = append(want, `mifike_auth_failures_total{rejected_by="local"}`, `mifike_auth_failures_total{rejected_by="peer"}`,
		"mifike_liveness_checks_total", "mifike_dead_peers_total", "mifike_paths_dead_total", "mifike_mobike_moves_total",
		`mifike_ike_handshake_duration_seconds_count{role="initiator"}`, `mifike_ike_handshake_duration_seconds_count{role="responder"}`,
		`mifike_esp_bytes_total{direction="in"}`, `mifike_esp_packets_total{direction="out"}`)
	for _, series := range want {
		if v, ok := s[series]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", series, v, ok)
		}
	}
	if !strings.Contains(strings.Join(want, " "), `state="ESTABLISHED"`) || !strings.Contains(strings.Join(want, " "), `state="INSTALLED"`) {
		t.Errorf("the listed states miss ESTABLISHED or INSTALLED: %v", want)
	}
	build := fmt.Sprintf("mifike_build_info{goversion=%q,revision=", runtime.Version())
	found := false
	for series, v := range s {
		if strings.HasPrefix(series, build) && strings.Contains(series, `version="dev"`) && v == 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("no mifike_build_info{goversion=%q, version=\"dev\"} 1", runtime.Version())
	}

	d.apply([]ike.Action{
		ike.Event{Kind: ike.EventIKEUp, IKESA: 1, Handshake: 40 * time.Millisecond, Initiator: true},
		ike.Event{Kind: ike.EventIKEUp, IKESA: 2, Handshake: 20 * time.Millisecond},
		ike.Event{Kind: ike.EventIKEUp, IKESA: 3, Detail: "clone of IKE SA 2"}, // no handshake to time
		ike.Event{Kind: ike.EventAddressUpdate, IKESA: 1, Detail: "192.0.2.1:4500 - 198.51.100.1:4500"},
		ike.Event{Kind: ike.EventAddressUpdate, IKESA: 1, Notify: 40, Detail: "refused"}, // the peer refused the path: no move
	})
	s = scrape(t, m)
	for series, want := range map[string]float64{
		`mifike_ike_handshake_duration_seconds_count{role="initiator"}`: 1,
		`mifike_ike_handshake_duration_seconds_sum{role="initiator"}`:   0.04,
		`mifike_ike_handshake_duration_seconds_count{role="responder"}`: 1,
		"mifike_mobike_moves_total":                                     1,
		`mifike_events_total{kind="ike-up"}`:                            3,
	} {
		if s[series] != want {
			t.Errorf("%s = %v, want %v", series, s[series], want)
		}
	}
}
