package ike_test

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// flood is an attacker who owns many source addresses and sees the
// gateway's answers to them: it sends IKE_SA_INIT requests from each in
// turn and returns every COOKIE (RFC 7296 §2.6), so each request it makes
// passes the return routability check. It never sends IKE_AUTH: every
// SA it gets is half-open until the gateway's timeout (RFC 8019 §3).
type flood struct {
	t     testing.TB
	net   *netsim.Network
	gw    netip.AddrPort
	addrs []netip.Addr
	own   map[netip.Addr]bool
	ke    []byte
	next  int
	spi   uint64
	// sent counts requests, cookies the COOKIE requests it answered,
	// opened the half-open SAs it got (SA, KE and Nonce answers).
	sent, cookies, opened int
	// solve, when set, answers a PUZZLE (RFC 8019 §7.1.2) too.
	solve func(cookie []byte, puzzle *wire.Notify) wire.Payload
	// maxCookies, when set, is how many COOKIE answers per request the
	// attacker returns; answered counts them by SPI.
	maxCookies int
	answered   map[uint64]int
}

// newFlood makes an attacker owning per addresses in each of prefixes.
func newFlood(t testing.TB, n *netsim.Network, gw netip.Addr, prefixes []netip.Prefix, per int) *flood {
	dh, err := ikecrypto.NewDH(wire.DHCurve25519, zeroRand{})
	if err != nil {
		t.Fatal(err)
	}
	f := &flood{t: t, net: n, gw: netip.AddrPortFrom(gw, 500), own: map[netip.Addr]bool{}, ke: dh.Public(), spi: 1 << 40,
		answered: map[uint64]int{}}
	for _, p := range prefixes {
		a := p.Addr()
		for i := 0; i < per; i++ {
			a = a.Next()
			f.addrs = append(f.addrs, a)
			f.own[a] = true
		}
	}
	return f
}

// request is the attacker's IKE_SA_INIT for spi: a fresh nonce per SPI,
// the cookie (and puzzle solution) first when it has them.
func (f *flood) request(spi uint64, first ...wire.Payload) []byte {
	nonce := make([]byte, 32)
	binary.BigEndian.PutUint64(nonce, spi)
	ps, _ := proposal.ParseIKE("aes128gcm16-prfsha256-x25519")
	m := &wire.Message{Header: wire.Header{SPIi: spi, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagInitiator},
		Payloads: append(first, proposal.WireSA(ps, nil, true), &wire.KE{Group: wire.DHCurve25519, Data: f.ke}, &wire.Nonce{Data: nonce})}
	b, err := m.Marshal()
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// send makes one new request from the attacker's next address.
func (f *flood) send() {
	f.spi++
	from := netip.AddrPortFrom(f.addrs[f.next%len(f.addrs)], 500)
	f.next++
	f.sent++
	f.net.Inject(from, f.gw, f.request(f.spi))
}

// filter sees what the gateway sends the attacker's addresses and answers
// COOKIE requests at once (the attacker is as fast as it can be).
func (f *flood) filter(next netsim.Filter) netsim.Filter {
	return func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if !f.own[d.Remote.Addr()] {
			if next != nil {
				return next(from, d, m)
			}
			return netsim.Deliver
		}
		msg, err := wire.ParseMessage(d.Data)
		if err != nil || msg.Exchange != wire.IKESAInit || !msg.IsResponse() {
			return netsim.Drop
		}
		var cookie, puzzle *wire.Notify
		for _, p := range msg.Payloads {
			if n, ok := p.(*wire.Notify); ok && n.NotifyType == wire.NotifyCookie {
				cookie = n
			} else if ok && n.NotifyType == wire.NotifyPuzzle {
				puzzle = n
			}
		}
		switch {
		case cookie != nil && f.maxCookies > 0 && f.answered[msg.SPIi] >= f.maxCookies:
		case cookie != nil:
			f.answered[msg.SPIi]++
			f.cookies++
			first := []wire.Payload{wire.NewNotify(wire.NotifyCookie, cookie.Data)}
			if puzzle != nil && f.solve != nil {
				first = append(first, f.solve(cookie.Data, puzzle))
			}
			f.net.Inject(d.Remote, d.Local, f.request(msg.SPIi, first...))
		case msg.SPIr != 0:
			f.opened++
		}
		return netsim.Drop
	}
}

// prefixes returns n /24s of 198.18.0.0/15 (RFC 2544 benchmarking space).
func attackPrefixes(n int) []netip.Prefix {
	var out []netip.Prefix
	for i := 0; i < n; i++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24))
	}
	return out
}

// attackResult is what one run of the half-open attack measured.
type attackResult struct {
	connect  time.Duration // legitimate client's time to an established IKE SA; 0 if never
	halfOpen int           // the gateway's IKE SAs when the client started
	flood    *flood
}

// runHalfOpenAttack is the attack of issue 13: an attacker with per
// addresses in each of nPrefixes /24s fills the gateway's half-open table
// in two seconds (2,500 requests/s, every COOKIE returned), then keeps
// sending 170 requests/s. At 3 s a legitimate client from another prefix
// (192.0.2.0/24) initiates; the run ends when it is established or after
// limit.
func runHalfOpenAttack(t testing.TB, seed uint64, nPrefixes, per int, limit time.Duration,
	mutate func(ue, gw *ike.Connection, uec, gwc *ike.Config)) attackResult {
	l := newLab(t, seed, mutate)
	f := newFlood(t, l.net, gwAddr, attackPrefixes(nPrefixes), per)
	l.net.Filter = f.filter(l.net.Filter)
	const step = 10 * time.Millisecond
	start := l.net.Now
	var owed float64
	var res attackResult
	res.flood = f
	var began time.Time
	for l.net.Now.Sub(start) < limit {
		rate := 170.0
		if l.net.Now.Sub(start) < 2*time.Second {
			rate = 2500
		}
		owed += rate * step.Seconds()
		for ; owed >= 1; owed-- {
			f.send()
		}
		l.net.RunFor(step)
		if began.IsZero() && l.net.Now.Sub(start) >= 3*time.Second {
			res.halfOpen = len(l.gw.Engine.IKESAs())
			began = l.net.Now
			l.initiate()
		}
		if !began.IsZero() && len(l.ue.Established()) == 1 {
			res.connect = l.net.Now.Sub(began)
			break
		}
	}
	return res
}

// Issue 13, defect 4 (RFC 8019 §4.2, RFC 7296 §2.6): an attacker who owns
// a few hundred addresses in three /24s and returns every COOKIE must not
// keep a legitimate client from another prefix out: the client's IKE SA
// is up within 2 s. (Before per-source and per-prefix limits the attacker
// filled the global half-open cap and the client waited about 48 s.)
func TestRFC8019Section4_2HalfOpenFloodFromFewPrefixes(t *testing.T) {
	res := runHalfOpenAttack(t, 13, 3, 100, 2*time.Minute, nil)
	t.Logf("attacker: %d requests, %d cookies returned, %d half-open SAs got; gateway held %d IKE SAs when the client started; client connected after %v",
		res.flood.sent, res.flood.cookies, res.flood.opened, res.halfOpen, res.connect)
	if res.connect == 0 || res.connect > 2*time.Second {
		t.Fatalf("legitimate client connected after %v under the attack, want within 2s (0 = never within 2 minutes)", res.connect)
	}
}
