package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The RADIUS client's counters (radius.Stats) and the backend's state, for
// a gateway with a radius section. Counters keep the client's own names
// with the _total suffix; replies and dropped replies are one family each
// with the RADIUS code or the reason as a label, so that
// sum(mifike_radius_responses_total) is every valid reply (Prometheus
// naming: one metric per quantity, labels for its dimensions).
func (m *metrics) radiusDescs() {
	for key, d := range map[string]struct{ name, help string }{
		"rreq":     {"mifike_radius_requests_total", "RADIUS requests (Access- and Accounting-Requests) sent to a server for the first time; a failover to the next server counts again."},
		"rretr":    {"mifike_radius_retransmissions_total", "RADIUS requests sent again to the same server (same identifier and authenticator, RFC 5080 §2.2.1)."},
		"rtimeout": {"mifike_radius_timeouts_total", "Times a RADIUS server used up its tries without a valid reply."},
		"rfail":    {"mifike_radius_failovers_total", "RADIUS requests moved on to the next server."},
		"rwait":    {"mifike_radius_identifier_waits_total", "RADIUS requests that waited for an identifier (256 in flight on their socket)."},
		"rconvs":   {"mifike_radius_eap_conversations", "EAP conversations passed to RADIUS that have not ended yet (IKE SAs in IKE_AUTH)."},
		"rsess":    {"mifike_radius_accounting_sessions", "RADIUS accounting sessions open: one per authenticated family of IKE SAs (RFC 7791 §8)."},
	} {
		m.descs[key] = prometheus.NewDesc(d.name, d.help, nil, nil)
	}
	m.descs["rresp"] = prometheus.NewDesc("mifike_radius_responses_total",
		"Valid RADIUS replies by code (access-accept, access-reject, access-challenge, accounting-response).", []string{"code"}, nil)
	m.descs["rdrop"] = prometheus.NewDesc("mifike_radius_dropped_responses_total",
		"RADIUS replies dropped, by reason: bad-authenticator (a wrong shared secret shows here), malformed, unexpected (no request waits for its identifier).", []string{"reason"}, nil)
}

// collectRADIUS sends the client's counters, read atomically at scrape
// time, and the backend's gauges read on the event loop by Collect.
func (m *metrics) collectRADIUS(ch chan<- prometheus.Metric, convs, sessions int) {
	st := m.d.radius.client.Stats()
	counter := func(key string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[key], prometheus.CounterValue, float64(v), labels...)
	}
	counter("rreq", st.Requests.Load())
	counter("rretr", st.Retransmissions.Load())
	counter("rtimeout", st.Timeouts.Load())
	counter("rfail", st.Failovers.Load())
	counter("rwait", st.IdentifierWaits.Load())
	counter("rresp", st.Accepts.Load(), "access-accept")
	counter("rresp", st.Rejects.Load(), "access-reject")
	counter("rresp", st.Challenges.Load(), "access-challenge")
	counter("rresp", st.AccountingResponses.Load(), "accounting-response")
	counter("rdrop", st.BadAuthenticators.Load(), "bad-authenticator")
	counter("rdrop", st.Malformed.Load(), "malformed")
	counter("rdrop", st.Unexpected.Load(), "unexpected")
	ch <- prometheus.MustNewConstMetric(m.descs["rconvs"], prometheus.GaugeValue, float64(convs))
	ch <- prometheus.MustNewConstMetric(m.descs["rsess"], prometheus.GaugeValue, float64(sessions))
}
