package ike_test

import (
	"bytes"
	"crypto/rand"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// initRequests makes n IKE_SA_INIT requests as a real initiator sends
// them (SA, KE, Nonce, NAT detection, signature hashes), one from each of
// n source addresses, as datagrams arriving at the gateway.
func initRequests(tb testing.TB, n int, src func(i int) netip.Addr) []ike.Datagram {
	tb.Helper()
	ueConn, _ := configs(tb)
	ue, err := ike.New(ike.Config{Connections: []*ike.Connection{ueConn}, Rand: rand.Reader})
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]ike.Datagram, 0, n)
	for i := 0; i < n; i++ {
		_, acts, err := ue.Initiate(now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(src(i), 500), Remote: netip.AddrPortFrom(gwAddr, 500)})
		if err != nil {
			tb.Fatal(err)
		}
		for _, a := range acts {
			if s, ok := a.(ike.Send); ok {
				out = append(out, ike.Datagram{Local: s.Remote, Remote: s.Local, Data: s.Data})
			}
		}
	}
	if len(out) != n {
		tb.Fatalf("%d requests for %d initiations", len(out), n)
	}
	return out
}

// spread is source address i of many /24s: 10.x.y.z, 200 per /24.
func spread(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i / 200 / 256), byte(i / 200 % 256), byte(1 + i%200)})
}

// withCookies has gw answer each request with a COOKIE and returns the
// requests again with their cookies first, as an initiator who sees the
// answers resends them (RFC 7296 §2.6).
func withCookies(tb testing.TB, gw *ike.Engine, now time.Time, reqs []ike.Datagram) []ike.Datagram {
	tb.Helper()
	out := make([]ike.Datagram, 0, len(reqs))
	for _, d := range reqs {
		var cookie []byte
		for _, a := range gw.Receive(now, d) {
			if s, ok := a.(ike.Send); ok {
				if m, err := wire.ParseMessage(s.Data); err == nil && len(m.Payloads) > 0 {
					if n, ok := m.Payloads[0].(*wire.Notify); ok && n.NotifyType == wire.NotifyCookie {
						cookie = n.Data
					}
				}
			}
		}
		if cookie == nil {
			tb.Fatal("no COOKIE asked for")
		}
		m, err := wire.ParseMessage(d.Data)
		if err != nil {
			tb.Fatal(err)
		}
		m.Payloads = append([]wire.Payload{wire.NewNotify(wire.NotifyCookie, cookie)}, m.Payloads...)
		b, err := m.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, ike.Datagram{Local: d.Local, Remote: d.Remote, Data: b})
	}
	return out
}

// BenchmarkMemoryPerHalfOpenSA feeds a responder n IKE_SA_INIT requests
// that return its COOKIE, from n addresses in 25 /24s (limits raised out
// of the way), and reports the heap each half-open SA holds until
// IKE_AUTH or its timeout, counters included: what an attacker who
// returns cookies makes us keep per SA (RFC 8019 §4.3).
func BenchmarkMemoryPerHalfOpenSA(b *testing.B) {
	const n = 5000
	for b.Loop() {
		reqs := initRequests(b, n, spread)
		_, gwConn := configs(b)
		gw, err := ike.New(ike.Config{Connections: []*ike.Connection{gwConn}, Rand: rand.Reader,
			MaxHalfOpen: 1 << 20, CookieThreshold: 1, HalfOpenPerSource: 1 << 20, HalfOpenPerPrefix: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		gw.Receive(now, reqs[0]) // the one half-open SA below the cookie threshold
		reqs = withCookies(b, gw, now, reqs[1:])
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, d := range reqs {
			gw.Receive(now, d)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := len(gw.IKESAs()); got != n {
			b.Fatalf("%d half-open SAs, want %d", got, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(reqs)), "bytes/half-open")
		// What each request allocates in all, kept or not: the garbage
		// the collector lets pile up (GOGC) before it runs.
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(len(reqs)), "alloc-bytes/request")
		runtime.KeepAlive(gw)
		runtime.KeepAlive(reqs)
	}
}

// halfOpenFrom counts the gateway's half-open (CONNECTING responder) SAs
// whose peer is in p.
func halfOpenFrom(node *netsim.Node, p netip.Prefix) int {
	n := 0
	for _, s := range node.Engine.IKESAs() {
		if s.State == ike.StateConnecting && !s.Initiator && p.Contains(s.Remote.Addr()) {
			n++
		}
	}
	return n
}

// loadGateway gives the gateway one more half-open SA, from a spoofed
// address, so that with CookieThreshold 1 every later request needs a
// COOKIE.
func loadGateway(t *testing.T, l *lab) {
	t.Helper()
	spoofed := netip.MustParsePrefix("192.0.2.200/32")
	before := halfOpenFrom(l.gw, spoofed)
	l.net.Inject(netip.AddrPortFrom(spoofed.Addr(), 500), netip.AddrPortFrom(gwAddr, 500), initRequest(t, uint64(7+before)))
	l.net.RunFor(100 * time.Millisecond)
	if n := halfOpenFrom(l.gw, spoofed); n != before+1 {
		t.Fatalf("%d half-open SAs from the spoofed address, want %d", n, before+1)
	}
}

func auditGW(t *testing.T, l *lab) {
	t.Helper()
	if err := l.gw.Engine.Audit(); err != nil {
		t.Fatalf("gateway tables: %v", err)
	}
}

// RFC 8019 §4.2 (hard limit per address): an address that returns every
// COOKIE holds at most HalfOpenPerSource half-open SAs; its requests
// beyond that get nothing, not even a COOKIE; another address of the same
// /24 still gets in.
func TestRFC8019Section4_2PerSourceLimit(t *testing.T) {
	l := newLab(t, 41, func(_, _ *ike.Connection, _, gwc *ike.Config) { gwc.CookieThreshold = 1 })
	loadGateway(t, l)
	f := newFlood(t, l.net, gwAddr, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, 1)
	l.net.Filter = f.filter(nil)
	for i := 0; i < 20; i++ {
		f.send()
		l.net.RunFor(50 * time.Millisecond)
	}
	one := netip.PrefixFrom(f.addrs[0], 32)
	if n := halfOpenFrom(l.gw, one); n != 5 || f.opened != 5 {
		t.Fatalf("address holds %d half-open SAs (attacker saw %d), want the default limit 5", n, f.opened)
	}
	if f.cookies != 5 {
		t.Errorf("%d COOKIEs sent to an address at its limit, want only the 5 that made SAs", f.cookies)
	}
	// A neighbour in the same /24 is not affected by this limit.
	f.addrs, f.next = []netip.Addr{netip.MustParseAddr("203.0.113.99")}, 0
	f.own[f.addrs[0]] = true
	f.send()
	l.net.RunFor(100 * time.Millisecond)
	if n := halfOpenFrom(l.gw, netip.PrefixFrom(f.addrs[0], 32)); n != 1 {
		t.Fatalf("neighbour holds %d half-open SAs, want 1", n)
	}
	auditGW(t, l)
}

// RFC 8019 §4.2 (limit per prefix, /24 for IPv4 and /64 for IPv6): many
// addresses of one prefix together hold at most HalfOpenPerPrefix; an
// address of another prefix still gets in.
func TestRFC8019Section4_2PerPrefixLimit(t *testing.T) {
	gw6 := netip.MustParseAddr("2001:db8:ffff::1")
	for _, c := range []struct {
		name          string
		attack, other netip.Prefix
		gw            netip.Addr
	}{
		{"IPv4 /24", netip.MustParsePrefix("198.18.7.0/24"), netip.MustParsePrefix("198.18.8.0/24"), gwAddr},
		{"IPv6 /64", netip.MustParsePrefix("2001:db8:1:2::/64"), netip.MustParsePrefix("2001:db8:1:3::/64"), gw6},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, 42, func(_, _ *ike.Connection, _, gwc *ike.Config) {
				gwc.CookieThreshold, gwc.HalfOpenPerPrefix = 1, 20
			})
			l.gw.AddAddr(gw6)
			loadGateway(t, l)
			f := newFlood(t, l.net, c.gw, []netip.Prefix{c.attack}, 60)
			l.net.Filter = f.filter(nil)
			for i := 0; i < 120; i++ {
				f.send()
				l.net.RunFor(10 * time.Millisecond)
			}
			l.net.RunFor(100 * time.Millisecond)
			if n := halfOpenFrom(l.gw, c.attack); n != 20 || f.opened != 20 {
				t.Fatalf("prefix holds %d half-open SAs (attacker saw %d), want the limit 20", n, f.opened)
			}
			g := newFlood(t, l.net, c.gw, []netip.Prefix{c.other}, 1)
			l.net.Filter = g.filter(f.filter(nil))
			g.send()
			l.net.RunFor(100 * time.Millisecond)
			if n := halfOpenFrom(l.gw, c.other); n != 1 {
				t.Fatalf("other prefix holds %d half-open SAs, want 1", n)
			}
			auditGW(t, l)
		})
	}
}

// RFC 8019 §4.2, §4.3: a spoofer below the cookie threshold makes
// half-open SAs in a victim's name without a COOKIE; they must not use up
// the victim's quota, or anyone could lock an address out for free.
func TestRFC8019Section4_2SpoofedSAsTakeNoQuota(t *testing.T) {
	l := newLab(t, 43, nil) // cookie threshold 10, 5 per source
	for i := 0; i < 10; i++ {
		l.net.Inject(netip.AddrPortFrom(ueAddr, 500), netip.AddrPortFrom(gwAddr, 500), initRequest(t, uint64(100+i)))
	}
	l.net.RunFor(100 * time.Millisecond)
	if n := halfOpenFrom(l.gw, netip.PrefixFrom(ueAddr, 32)); n != 10 {
		t.Fatalf("%d spoofed half-open SAs, want 10", n)
	}
	// The gateway is now loaded: the real owner of the address returns
	// the COOKIE and gets in.
	l.initiate()
	if !l.net.RunUntil(5*time.Second, func() bool { return len(l.ue.Established()) == 1 }) {
		t.Fatalf("the victim could not connect: %+v", l.ue.Engine.IKESAs())
	}
	auditGW(t, l)
}

// RFC 7296 §2.6 and RFC 8019 §4.2: every way a half-open SA ends gives its
// place in the per-source count back: IKE_AUTH completes, IKE_AUTH fails,
// the timeout, Terminate, a reload that removes the connection, shutdown.
// With one half-open SA allowed per address, each next step needs the
// place the one before freed.
func TestRFC8019Section4_2CountsFreedOnEveryPath(t *testing.T) {
	l := newLab(t, 44, func(ue, gw *ike.Connection, _, gwc *ike.Config) {
		gwc.CookieThreshold, gwc.HalfOpenPerSource = 1, 1
	})
	loadGateway(t, l)
	src := netip.PrefixFrom(ueAddr, 32)
	// The end user's SAs go through: established, then a second one.
	l.up()
	auditGW(t, l)
	l.initiate()
	if !l.net.RunUntil(5*time.Second, func() bool { return len(l.ue.Established()) == 2 }) {
		t.Fatalf("second SA after an established one: %+v", l.gw.Engine.IKESAs())
	}
	auditGW(t, l)

	// A failed IKE_AUTH (wrong key) frees the place too.
	good := l.ue.Engine
	bad := newLab(t, 44, func(ue, _ *ike.Connection, _, _ *ike.Config) { ue.PSK = []byte("not the secret the gateway knows") }).ue.Engine
	l.ue.Engine = bad
	cookies := countNotify(l.gw, wire.NotifyCookie, true)
	l.initiate()
	l.net.RunFor(2 * time.Second)
	failed := l.gw.EventsOf(ike.EventIKEFailed)
	if countNotify(l.gw, wire.NotifyCookie, true) != cookies+1 || len(failed) == 0 ||
		!strings.Contains(failed[len(failed)-1].Detail, "authentication failed") || halfOpenFrom(l.gw, src) != 0 {
		t.Fatalf("failed IKE_AUTH: events %v, half-open %d", failed, halfOpenFrom(l.gw, src))
	}
	auditGW(t, l)
	l.ue.Engine = good

	// An attacker at the same address: timeout, Terminate, reload, shutdown.
	f := newFlood(t, l.net, gwAddr, nil, 0)
	f.addrs, f.own = []netip.Addr{ueAddr}, map[netip.Addr]bool{ueAddr: true}
	l.net.Filter = f.filter(nil)
	// Each SA the attacker opens returned a COOKIE, so it counts.
	open := func(what string) ike.IKESAInfo {
		t.Helper()
		opened, cookies := f.opened, f.cookies
		f.send()
		l.net.RunFor(100 * time.Millisecond)
		if f.opened != opened+1 || f.cookies != cookies+1 || halfOpenFrom(l.gw, src) != 1 {
			t.Fatalf("%s: no place for a counted half-open SA (opened %d with %d cookies, held %d)",
				what, f.opened-opened, f.cookies-cookies, halfOpenFrom(l.gw, src))
		}
		for _, s := range l.gw.Engine.IKESAs() {
			if s.State == ike.StateConnecting && s.Remote.Addr() == ueAddr {
				return s
			}
		}
		panic("unreachable")
	}
	open("after the failed IKE_AUTH")
	f.send() // over the limit: nothing
	l.net.RunFor(100 * time.Millisecond)
	if halfOpenFrom(l.gw, src) != 1 {
		t.Fatal("a second half-open SA from an address allowed one")
	}
	l.net.RunFor(31 * time.Second) // HalfOpenTimeout, for the spoofed one too
	auditGW(t, l)
	loadGateway(t, l)
	s := open("after the timeout")
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Terminate(now, s.ID, 0) })
	auditGW(t, l)
	open("after Terminate")
	conns := []*ike.Connection{}
	l.do(l.gw, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
		acts, _, err := e.Reconfigure(now, conns)
		return acts, err
	})
	if halfOpenFrom(l.gw, src) != 0 {
		t.Fatal("a reload without the connection kept its half-open SA")
	}
	auditGW(t, l)
	l.gw.Apply(l.gw.Engine.Shutdown(l.net.Now))
	if n := len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("%d SAs after shutdown", n)
	}
	auditGW(t, l)
}

// RFC 7296 §2.1: a retransmitted IKE_SA_INIT request is answered with the
// same response from the half-open SA; a request repeating its (SPIi, IPi,
// Ni), to which a COOKIE or a puzzle solution is bound, makes no second
// SA (RFC 8019 §10).
func TestRFC7296Section2_1HalfOpenRetransmission(t *testing.T) {
	l := newLab(t, 45, nil)
	var msgs []netsim.Msg
	var raw [][]byte
	l.net.Filter = captureFrom(l.gw, &msgs, &raw)
	from, to := netip.MustParseAddrPort("203.0.113.5:500"), netip.AddrPortFrom(gwAddr, 500)
	req := initRequest(t, 77)
	l.net.Inject(from, to, req)
	l.net.RunFor(100 * time.Millisecond)
	l.net.Inject(from, to, req)
	l.net.Inject(from, to, initRequest(t, 77, &wire.VendorID{Data: []byte("same Ni, other bytes")}))
	l.net.RunFor(100 * time.Millisecond)
	if len(raw) != 3 || !bytes.Equal(raw[0], raw[1]) || !bytes.Equal(raw[0], raw[2]) {
		t.Fatalf("%d answers, want 3 identical", len(raw))
	}
	if n := len(l.gw.Engine.IKESAs()); n != 1 {
		t.Fatalf("%d SAs, want 1", n)
	}
	if r := l.gw.Engine.Stats().Retransmissions; r != 2 {
		t.Errorf("%d retransmissions, want 2", r)
	}
	auditGW(t, l)
}

// RFC 7296 §2.21, RFC 8019 §7.2: an IKE_AUTH request that fails
// verification is dropped and leaves the half-open SA as it was (no full
// SA is made for it); the real one then completes.
func TestRFC7296Section2_21ForgedIKEAuthOnHalfOpen(t *testing.T) {
	l := newLab(t, 46, nil)
	var auth ike.Datagram
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && m.Exchange == uint8(wire.IKEAuth) && !m.Response && auth.Data == nil {
			auth = ike.Datagram{Local: d.Local, Remote: d.Remote, Data: bytes.Clone(d.Data)}
			return netsim.Hold
		}
		return netsim.Deliver
	}
	l.initiate()
	l.net.RunFor(time.Second)
	if l.net.Held() != 1 {
		t.Fatalf("%d held, want the IKE_AUTH request", l.net.Held())
	}
	// Same header and SPIs, one flipped octet in the ICV.
	forged := bytes.Clone(auth.Data)
	forged[len(forged)-1] ^= 1
	dropped := l.gw.Engine.Stats().Dropped
	l.net.Inject(auth.Local, auth.Remote, forged)
	l.net.RunFor(100 * time.Millisecond)
	if got := l.gw.Engine.Stats().Dropped; got != dropped+1 {
		t.Fatalf("forged IKE_AUTH: %d drops, want 1", got-dropped)
	}
	if s := l.gw.Engine.IKESAs(); len(s) != 1 || s[0].State != ike.StateConnecting {
		t.Fatalf("after the forged IKE_AUTH: %+v", s)
	}
	auditGW(t, l)
	l.net.Release(0)
	if !l.net.RunUntil(5*time.Second, func() bool { return len(l.gw.Established()) == 1 && len(l.ue.Established()) == 1 }) {
		t.Fatalf("real IKE_AUTH did not complete: %+v", l.gw.Engine.IKESAs())
	}
	l.settle(time.Second)
	auditGW(t, l)
}

// RFC 7296 §2.6: "the responder should change the value of <secret>
// frequently"; a cookie begins with the version of the secret it was made
// with, and after a change cookies of the previous secret are taken for a
// short while (the grace), older ones never.
func TestRFC7296Section2_6CookieSecretRotation(t *testing.T) {
	l := newLab(t, 47, func(_, _ *ike.Connection, _, gwc *ike.Config) {
		gwc.CookieThreshold, gwc.HalfOpenTimeout = 1, time.Hour
		gwc.CookieSecretLifetime, gwc.CookieGrace = time.Minute, 10*time.Second
	})
	loadGateway(t, l)
	var msgs []netsim.Msg
	var raw [][]byte
	l.net.Filter = captureFrom(l.gw, &msgs, &raw)
	f := newFlood(t, l.net, gwAddr, nil, 0)
	from, to := netip.MustParseAddrPort("203.0.113.7:500"), netip.AddrPortFrom(gwAddr, 500)
	// send makes a request for spi, with cookie first if set, and returns
	// the COOKIE asked for, or nil when the answer made a half-open SA.
	send := func(spi uint64, cookie []byte) []byte {
		t.Helper()
		var first []wire.Payload
		if cookie != nil {
			first = append(first, wire.NewNotify(wire.NotifyCookie, cookie))
		}
		n := len(raw)
		l.net.Inject(from, to, f.request(spi, first...))
		l.net.RunFor(50 * time.Millisecond)
		if len(raw) != n+1 {
			t.Fatalf("%d answers to one request", len(raw)-n)
		}
		m, err := wire.ParseMessage(raw[n])
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := m.Payloads[0].(*wire.Notify); ok && c.NotifyType == wire.NotifyCookie {
			if len(c.Data) < 1 || len(c.Data) > 64 {
				t.Fatalf("COOKIE of %d octets (RFC 7296 §3.10.1: 1 to 64)", len(c.Data))
			}
			return c.Data
		}
		if m.SPIr == 0 {
			t.Fatalf("answer is neither a COOKIE nor an SA: %s", wire.Summary(m.Payloads))
		}
		return nil
	}
	wait := func(d time.Duration) { l.net.RunFor(d) }

	c1, c2, c3 := send(1, nil), send(2, nil), send(3, nil)
	if c1 == nil || c1[0] != c2[0] {
		t.Fatal("no cookies, or of different secrets at once")
	}
	if send(3, c3) != nil {
		t.Fatal("a fresh cookie was refused")
	}
	wait(61 * time.Second) // the secret changes after 60 s
	c4 := send(4, nil)
	if c4[0] == c1[0] {
		t.Fatalf("cookie version %d unchanged after the secret's lifetime", c4[0])
	}
	if send(1, c1) != nil {
		t.Fatal("a cookie of the previous secret was refused within the grace")
	}
	wait(10 * time.Second)
	if again := send(2, c2); again == nil || again[0] != c4[0] {
		t.Fatal("a cookie of the previous secret was taken after the grace (or the new one is not current)")
	}
	// After a quiet spell of more than a lifetime, cookies of the secret
	// current before it are not taken: they are two secrets old.
	c5 := send(5, nil)
	wait(2 * time.Minute)
	if send(5, c5) == nil {
		t.Fatal("a cookie two secrets old was taken")
	}
	auditGW(t, l)
}

// RFC 8019 §6, §7.2: checking a forged IKE_AUTH costs a key expansion and
// a decryption; a half-open SA that keeps receiving forgeries is dropped
// after a few, so an attacker cannot have us check them at line rate.
func TestRFC8019Section7_2ForgedIKEAuthBounded(t *testing.T) {
	l := newLab(t, 48, nil)
	var auth ike.Datagram
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && m.Exchange == uint8(wire.IKEAuth) && !m.Response {
			if auth.Data == nil {
				auth = ike.Datagram{Local: d.Local, Remote: d.Remote, Data: bytes.Clone(d.Data)}
			}
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.initiate()
	l.net.RunFor(time.Second)
	forged := bytes.Clone(auth.Data)
	forged[len(forged)-1] ^= 1
	for i := 1; i <= 10; i++ {
		l.net.Inject(auth.Local, auth.Remote, forged)
		l.net.RunFor(10 * time.Millisecond)
		if up := len(l.gw.Engine.IKESAs()); (i < 4) != (up == 1) {
			t.Fatalf("after %d forged IKE_AUTH requests the gateway holds %d SAs", i, up)
		}
	}
	if f := l.gw.EventsOf(ike.EventIKEFailed); len(f) != 1 || !strings.Contains(f[0].Detail, "failed verification") {
		t.Fatalf("events %+v", f)
	}
	auditGW(t, l)
}
