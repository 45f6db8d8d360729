package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// metrics exports the engine's state to Prometheus. Gauges and the
// engine's counters are read at scrape time from the event loop; events
// are counted as they happen.
type metrics struct {
	d      *Daemon
	events *prometheus.CounterVec
	// handshakes times the IKE_SA_INIT and IKE_AUTH of IKE SAs that came
	// up (ike.Event.Handshake), by our role.
	handshakes *prometheus.HistogramVec
	// moves counts the IKE SAs that switched paths (MOBIKE, RFC 4555).
	moves prometheus.Counter
	descs map[string]*prometheus.Desc
}

// Version is the release the binary says it is (mifike version), for
// mifike_build_info; cmd/mifike sets it.
var Version = "dev"

// handshakeBuckets span a handshake on a LAN (milliseconds) to one that
// waited for retransmissions, a fallback to TCP or a RADIUS server
// (tens of seconds).
var handshakeBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{d: d,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mifike_events_total",
			Help: "Engine events (ike-up, child-rekeyed, ...) by kind."}, []string{"kind"}),
		handshakes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mifike_ike_handshake_duration_seconds",
			Help:    "Time from the start of an IKE SA (we initiated it, or answered its first IKE_SA_INIT) to its authentication, by our role (initiator, responder).",
			Buckets: handshakeBuckets}, []string{"role"}),
		moves: prometheus.NewCounter(prometheus.CounterOpts{Name: "mifike_mobike_moves_total",
			Help: "IKE SAs that switched paths: this side moved, the peer moved, or a NAT mapping under the SA changed (MOBIKE, RFC 4555)."}),
		descs: map[string]*prometheus.Desc{
			"ike":     prometheus.NewDesc("mifike_ike_sas", "IKE SAs by state.", []string{"state"}, nil),
			"child":   prometheus.NewDesc("mifike_child_sas", "Child SAs by state.", []string{"state"}, nil),
			"exch":    prometheus.NewDesc("mifike_exchanges_total", "IKE messages accepted (authentic, or IKE_SA_INIT) by exchange type.", []string{"exchange"}, nil),
			"retrans": prometheus.NewDesc("mifike_retransmissions_total", "Requests and responses sent again.", nil, nil),
			"dropped": prometheus.NewDesc("mifike_dropped_messages_total",
				"Datagrams to the IKE ports dropped by the socket readers or the engine, by reason (truncated, queue-full, length, version, malformed, unknown-spi, window, integrity, ...).", []string{"reason"}, nil),
			"nsent":    prometheus.NewDesc("mifike_notifies_sent_total", "Notify payloads sent by type.", []string{"type", "error"}, nil),
			"nrecv":    prometheus.NewDesc("mifike_notifies_received_total", "Notify payloads received by type.", []string{"type", "error"}, nil),
			"espdrop":  prometheus.NewDesc("mifike_esp_dropped_total", "ESP packets received with no data plane to carry them.", nil, nil),
			"sendfail": prometheus.NewDesc("mifike_send_errors_total", "Datagrams the kernel refused to send.", nil, nil),
			"dpdrop": prometheus.NewDesc("mifike_dataplane_dropped_packets_total",
				"Packets the data plane dropped, by reason (replay, integrity, unknown-spi, policy, no-policy, ...).", []string{"reason"}, nil),
			"dpbytes": prometheus.NewDesc("mifike_child_sa_bytes",
				"Bytes carried by the Child SAs installed now, by direction: a gauge that drops when an SA goes (a rekey); for rates use mifike_esp_bytes_total.", []string{"direction"}, nil),
			"dppackets": prometheus.NewDesc("mifike_child_sa_packets",
				"Packets carried by the Child SAs installed now, by direction: a gauge that drops when an SA goes (a rekey); for rates use mifike_esp_packets_total.", []string{"direction"}, nil),
			"espbytes": prometheus.NewDesc("mifike_esp_bytes_total",
				"Bytes carried (as Child SA byte lifetimes count them) by every Child SA since the daemon started, deleted and rekeyed ones included, by direction.", []string{"direction"}, nil),
			"esppackets": prometheus.NewDesc("mifike_esp_packets_total",
				"ESP packets carried by every Child SA since the daemon started, deleted and rekeyed ones included, by direction.", []string{"direction"}, nil),
			"build": prometheus.NewDesc("mifike_build_info", "Always 1; the labels say which build runs.", []string{"version", "revision", "goversion"}, nil),
			"authfail": prometheus.NewDesc("mifike_auth_failures_total",
				"IKE authentications refused (AUTHENTICATION_FAILED), by who refused: local (we refused the peer's) or peer (the peer refused ours).", []string{"rejected_by"}, nil),
			"liveness": prometheus.NewDesc("mifike_liveness_checks_total", "Liveness checks (dead peer detection, RFC 7296 §2.4) sent.", nil, nil),
			"dead": prometheus.NewDesc("mifike_dead_peers_total",
				"Established IKE SAs given up because the peer left a request unanswered through every retransmission (RFC 7296 §2.4).", nil, nil),
			"pathsdead": prometheus.NewDesc("mifike_paths_dead_total",
				"Paths judged dead by the traffic-driven liveness check (liveness_window): ESP went out, and quick probes went unanswered (RFC 7296 §2.4, RFC 4555 §3.5).", nil, nil),
			"tcpopen": prometheus.NewDesc("mifike_tcp_streams", "TCP streams carrying IKE and ESP (RFC 9329) open now.", nil, nil),
			"tcpstreams": prometheus.NewDesc("mifike_tcp_streams_total",
				"TCP streams by how they began (accepted, opened) or why they were refused (per-address-limit, total-limit).", []string{"event"}, nil),
			"tcpclosed": prometheus.NewDesc("mifike_tcp_streams_closed_total",
				"TCP streams closed, by reason (framing: bad prefix or length; first-message: nothing whole before the deadline, a slow peer; idle; write: a peer that does not read; other).", []string{"reason"}, nil),
			"tcpfallback": prometheus.NewDesc("mifike_tcp_fallbacks_total", "IKE SAs that went on over TCP after UDP went unanswered (RFC 9329 §5.1, §7.1).", nil, nil),
			"mptcp": prometheus.NewDesc("mifike_mptcp_endpoints",
				"MPTCP subflow endpoints the daemon keeps for its VPNs' inner addresses (mptcp.enable), by mode: active or backup (docs/multipath.md).", []string{"mode"}, nil),
			"leases": prometheus.NewDesc("mifike_pool_leases",
				"Addresses leased from each pool (one per peer identity, held while any of its IKE SAs holds it).", []string{"pool"}, nil),
		}}
	// Both roles from the start: a histogram that appears only with the
	// first handshake reads as no data, not as none yet.
	m.handshakes.WithLabelValues("initiator")
	m.handshakes.WithLabelValues("responder")
	if d.radius != nil {
		m.radiusDescs()
	}
	return m
}

func startMetrics(ctx context.Context, d *Daemon, listen string) (*metrics, error) {
	m := newMetrics(d)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, m.events, m.handshakes, m.moves, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", listen, err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	d.log.Info("metrics enabled", "listen", ln.Addr().String())
	return m, nil
}

func (m *metrics) event(e ike.Event) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(e.Kind.String()).Inc()
	switch {
	case e.Kind == ike.EventIKEUp && e.Handshake > 0: // not a clone, import or takeover
		role := "responder"
		if e.Initiator {
			role = "initiator"
		}
		m.handshakes.WithLabelValues(role).Observe(e.Handshake.Seconds())
	case e.Kind == ike.EventAddressUpdate && e.Notify == 0: // with a Notify: the peer refused the path
		m.moves.Inc()
	}
}

// buildInfo are mifike_build_info's labels: the release, the commit the
// toolchain recorded ("-dirty" with uncommitted changes), the Go release.
func buildInfo() (version, revision, goversion string) {
	version, goversion = Version, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && revision != "" {
			revision += "-dirty"
		}
	}
	return version, revision, goversion
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	var (
		sas []ike.IKESAInfo
		st  ike.Stats
		ds  daemonStats
	)
	var (
		drops           map[string]uint64
		now, total      espTotals // of the Child SAs installed now; over the daemon's life
		leases          = map[string]int{}
		convs, sessions int
		mptcpEps        []control.MPTCPEndpoint
		mptcpOn         bool
	)
	m.d.call(func() {
		if m.d.radius != nil {
			convs, sessions = len(m.d.radius.convs), len(m.d.radius.acct)
		}
		sas, st, ds = m.d.engine.IKESAs(), m.d.engine.Stats(), m.d.stats
		for name, p := range m.d.pools.ByName {
			leases[name] = p.InUse()
		}
		mptcpEps, mptcpOn = m.d.mptcpEndpoints(), m.d.mptcp != nil
		if m.d.plane != nil {
			drops = m.d.plane.Drops()
			now, total = m.d.espTraffic()
		}
	})
	for reason, n := range drops {
		ch <- prometheus.MustNewConstMetric(m.descs["dpdrop"], prometheus.CounterValue, float64(n), reason)
	}
	if m.d.plane != nil {
		// Of the Child SAs installed now (a deleted SA's traffic leaves
		// the sum, as in strongSwan's counters).
		ch <- prometheus.MustNewConstMetric(m.descs["dpbytes"], prometheus.GaugeValue, float64(now.bytesIn), "in")
		ch <- prometheus.MustNewConstMetric(m.descs["dpbytes"], prometheus.GaugeValue, float64(now.bytesOut), "out")
		ch <- prometheus.MustNewConstMetric(m.descs["dppackets"], prometheus.GaugeValue, float64(now.packetsIn), "in")
		ch <- prometheus.MustNewConstMetric(m.descs["dppackets"], prometheus.GaugeValue, float64(now.packetsOut), "out")
		ch <- prometheus.MustNewConstMetric(m.descs["espbytes"], prometheus.CounterValue, float64(total.bytesIn), "in")
		ch <- prometheus.MustNewConstMetric(m.descs["espbytes"], prometheus.CounterValue, float64(total.bytesOut), "out")
		ch <- prometheus.MustNewConstMetric(m.descs["esppackets"], prometheus.CounterValue, float64(total.packetsIn), "in")
		ch <- prometheus.MustNewConstMetric(m.descs["esppackets"], prometheus.CounterValue, float64(total.packetsOut), "out")
	}
	if mptcpOn { // mptcp.enable, and the kernel's path manager answered
		modes := map[string]int{"active": 0, "backup": 0}
		for _, e := range mptcpEps {
			modes[e.Mode]++
		}
		for mode, n := range modes {
			ch <- prometheus.MustNewConstMetric(m.descs["mptcp"], prometheus.GaugeValue, float64(n), mode)
		}
	}
	version, revision, goversion := buildInfo()
	ch <- prometheus.MustNewConstMetric(m.descs["build"], prometheus.GaugeValue, 1, version, revision, goversion)
	for name, n := range leases {
		ch <- prometheus.MustNewConstMetric(m.descs["leases"], prometheus.GaugeValue, float64(n), name)
	}
	// Every state, at 0 when no SA is in it: a series that vanishes
	// reads as no data, and sum() or alerts on it go wrong.
	ikeStates, childStates := map[ike.SAState]int{}, map[string]int{}
	for _, s := range ike.ListedStates() {
		ikeStates[s] = 0
	}
	for _, s := range ike.ListedChildStates() {
		childStates[s] = 0
	}
	for _, s := range sas {
		ikeStates[s.State]++
		for _, c := range s.Children {
			childStates[c.State]++
		}
	}
	for s, n := range ikeStates {
		ch <- prometheus.MustNewConstMetric(m.descs["ike"], prometheus.GaugeValue, float64(n), s.String())
	}
	for s, n := range childStates {
		ch <- prometheus.MustNewConstMetric(m.descs["child"], prometheus.GaugeValue, float64(n), s)
	}
	for x, n := range st.Exchanges {
		ch <- prometheus.MustNewConstMetric(m.descs["exch"], prometheus.CounterValue, float64(n), x.String())
	}
	ch <- prometheus.MustNewConstMetric(m.descs["retrans"], prometheus.CounterValue, float64(st.Retransmissions))
	// Each refusal is one AUTHENTICATION_FAILED: in the IKE_AUTH
	// response, or the initiator's INFORMATIONAL after it (RFC 7296
	// §2.21.2).
	ch <- prometheus.MustNewConstMetric(m.descs["authfail"], prometheus.CounterValue, float64(st.NotifiesSent[wire.NotifyAuthenticationFailed]), "local")
	ch <- prometheus.MustNewConstMetric(m.descs["authfail"], prometheus.CounterValue, float64(st.NotifiesRecv[wire.NotifyAuthenticationFailed]), "peer")
	ch <- prometheus.MustNewConstMetric(m.descs["liveness"], prometheus.CounterValue, float64(st.LivenessChecks))
	ch <- prometheus.MustNewConstMetric(m.descs["dead"], prometheus.CounterValue, float64(st.DeadPeers))
	ch <- prometheus.MustNewConstMetric(m.descs["pathsdead"], prometheus.CounterValue, float64(st.PathsDead))
	// The engine's drops and the socket readers' (what they drop from the
	// datagram alone never reaches the engine), under one set of reasons.
	for r, n := range st.DroppedBy {
		n += m.d.rxStats.drops[r].Load()
		ch <- prometheus.MustNewConstMetric(m.descs["dropped"], prometheus.CounterValue, float64(n), r.String())
	}
	for t, n := range st.NotifiesSent {
		ch <- prometheus.MustNewConstMetric(m.descs["nsent"], prometheus.CounterValue, float64(n), t.String(), fmt.Sprint(t.IsError()))
	}
	for t, n := range st.NotifiesRecv {
		ch <- prometheus.MustNewConstMetric(m.descs["nrecv"], prometheus.CounterValue, float64(n), t.String(), fmt.Sprint(t.IsError()))
	}
	ch <- prometheus.MustNewConstMetric(m.descs["espdrop"], prometheus.CounterValue, float64(m.d.rxStats.espDropped.Load()))
	if t := m.d.tcp; t != nil {
		ts := t.Stats()
		ch <- prometheus.MustNewConstMetric(m.descs["tcpopen"], prometheus.GaugeValue, float64(ts.Open))
		for ev, n := range map[string]uint64{"accepted": ts.Accepted, "opened": ts.Opened, "per-address-limit": ts.RefusedPerAddr, "total-limit": ts.RefusedTotal} {
			ch <- prometheus.MustNewConstMetric(m.descs["tcpstreams"], prometheus.CounterValue, float64(n), ev)
		}
		other := ts.Closed - min(ts.Closed, ts.FramingErrors+ts.FirstMessageTimeouts+ts.IdleTimeouts+ts.WriteErrors)
		for r, n := range map[string]uint64{"framing": ts.FramingErrors, "first-message": ts.FirstMessageTimeouts, "idle": ts.IdleTimeouts, "write": ts.WriteErrors, "other": other} {
			ch <- prometheus.MustNewConstMetric(m.descs["tcpclosed"], prometheus.CounterValue, float64(n), r)
		}
	}
	ch <- prometheus.MustNewConstMetric(m.descs["tcpfallback"], prometheus.CounterValue, float64(st.TCPFallbacks))
	ch <- prometheus.MustNewConstMetric(m.descs["sendfail"], prometheus.CounterValue, float64(ds.sendErrors))
	if m.d.radius != nil {
		m.collectRADIUS(ch, convs, sessions)
	}
}
