package ike_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/wire"
)

// forge builds a request protected with the end user's real keys, as if
// the authenticated peer (or a broken one) sent it.
func (l *lab) forge(id uint32, ps ...wire.Payload) []byte {
	l.t.Helper()
	return l.forgeX(wire.Informational, id, ps...)
}

// forgeCreate builds a CREATE_CHILD_SA request rekeying the IKE SA,
// with CLONE_IKE_SA when clone is set.
func (l *lab) forgeCreate(id uint32, clone bool) []byte {
	l.t.Helper()
	dh, _ := ikecrypto.NewDH(wire.DHCurve25519, zeroRand{})
	ps, _ := proposal.ParseIKE("aes128gcm16-prfsha256-x25519")
	var out []wire.Payload
	if clone {
		out = append(out, wire.NewNotify(wire.NotifyCloneIKESA, nil))
	}
	out = append(out, proposal.WireSA(ps, []byte{1, 2, 3, 4, 5, 6, 7, 8}, true), &wire.Nonce{Data: make([]byte, 32)},
		&wire.KE{Group: wire.DHCurve25519, Data: dh.Public()})
	return l.forgeX(wire.CreateChildSA, id, out...)
}

func (l *lab) forgeX(x wire.ExchangeType, id uint32, ps ...wire.Payload) []byte {
	l.t.Helper()
	if len(l.ue.Keys) == 0 {
		l.t.Fatal("no exported keys (ExportKeys)")
	}
	k := l.ue.Keys[0]
	suite, err := ikecrypto.NewSuite(k.Encr, k.KeyBits, wire.PRFHMACSHA2256, k.Integ, wire.DHCurve25519)
	if err != nil {
		l.t.Fatal(err)
	}
	c, err := suite.NewSKCipher(k.SKei, k.SKai)
	if err != nil {
		l.t.Fatal(err)
	}
	first, inner, err := wire.EncodePayloads(ps)
	if err != nil {
		l.t.Fatal(err)
	}
	h := wire.Header{SPIi: k.SPIi, SPIr: k.SPIr, MajorVersion: 2, Exchange: x, Flags: wire.FlagInitiator, MessageID: id}
	b, err := c.Protect(h, first, inner, zeroRand{})
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

type zeroRand struct{}

func (zeroRand) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(i)
	}
	return len(b), nil
}

func exportKeys(_, _ *ike.Connection, uec, _ *ike.Config) { uec.ExportKeys = true }

// RFC 7296 §2.5: an authenticated request with an unknown critical payload
// is rejected whole with UNSUPPORTED_CRITICAL_PAYLOAD; the SA stays.
func TestRFC7296Section2_5UnsupportedCriticalPayload(t *testing.T) {
	l := newLab(t, 50, exportKeys)
	l.up()
	from, to := netip.AddrPortFrom(ueAddr, 4500), netip.AddrPortFrom(gwAddr, 4500)
	l.net.Inject(from, to, l.forge(2, &wire.Unknown{PayloadType: 200, Critical: true, Body: []byte{1}}))
	l.net.RunFor(time.Second)
	if countNotify(l.gw, wire.NotifyUnsupportedCriticalPayload, true) != 1 {
		t.Fatal("UNSUPPORTED_CRITICAL_PAYLOAD not sent")
	}
	l.sa(l.gw)
}

// RFC 7296 §2.21.3: an authenticated but malformed request gets
// INVALID_SYNTAX, which ends the IKE SA.
func TestRFC7296Section2_21_3InvalidSyntax(t *testing.T) {
	l := newLab(t, 51, exportKeys)
	l.up()
	from, to := netip.AddrPortFrom(ueAddr, 4500), netip.AddrPortFrom(gwAddr, 4500)
	// A Delete payload whose SPI count disagrees with its length.
	bad := &wire.Unknown{PayloadType: wire.PayloadDelete, Body: []byte{3, 4, 0, 9, 1, 2, 3, 4}}
	l.net.Inject(from, to, l.forge(2, bad))
	l.net.RunFor(time.Second)
	if countNotify(l.gw, wire.NotifyInvalidSyntax, true) != 1 || len(l.gw.Engine.IKESAs()) != 0 {
		t.Fatal("malformed request did not end the SA with INVALID_SYNTAX")
	}
}

// RFC 7296 §2.3, §2.21: requests outside the window, forged or corrupt
// messages are dropped without an answer and change nothing.
func TestRFC7296Section2_3StaleAndForgedDropped(t *testing.T) {
	l := newLab(t, 52, exportKeys)
	l.up()
	from, to := netip.AddrPortFrom(ueAddr, 4500), netip.AddrPortFrom(gwAddr, 4500)
	sent := l.gw.Sent
	stale := l.forge(0, wire.NewNotify(wire.NotifyInitialContact, nil))
	future := l.forge(7, wire.NewNotify(wire.NotifyInitialContact, nil))
	corrupt := l.forge(2, wire.NewNotify(wire.NotifyInitialContact, nil))
	corrupt[len(corrupt)-1] ^= 1
	for _, m := range [][]byte{stale, future, corrupt, {0, 0, 0, 0, 1, 2, 3}, make([]byte, 200)} {
		l.net.Inject(from, to, m)
	}
	l.net.RunFor(time.Second)
	if l.gw.Sent != sent {
		t.Fatalf("gw answered %d of the bad messages", l.gw.Sent-sent)
	}
	if l.gw.Engine.Stats().Dropped < 5 {
		t.Errorf("dropped %d", l.gw.Engine.Stats().Dropped)
	}
	l.settle(time.Second)
}

// initRequest is a hand-made IKE_SA_INIT request.
func initRequest(t *testing.T, spi uint64, extra ...wire.Payload) []byte {
	t.Helper()
	dh, err := ikecrypto.NewDH(wire.DHCurve25519, zeroRand{})
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := proposal.ParseIKE("aes128gcm16-prfsha256-x25519")
	m := &wire.Message{Header: wire.Header{SPIi: spi, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagInitiator},
		Payloads: append([]wire.Payload{proposal.WireSA(ps, nil, true), &wire.KE{Group: wire.DHCurve25519, Data: dh.Public()},
			&wire.Nonce{Data: make([]byte, 32)}}, extra...)}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// captureFrom records what a node sends.
func captureFrom(node *netsim.Node, out *[]netsim.Msg, data *[][]byte) netsim.Filter {
	return func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == node {
			*out = append(*out, m)
			*data = append(*data, d.Data)
		}
		return netsim.Deliver
	}
}

// RFC 7296 §2.5, §3.12: Vendor IDs and unknown non-critical payloads are
// ignored; an unknown critical one gets UNSUPPORTED_CRITICAL_PAYLOAD; a
// higher major version gets INVALID_MAJOR_VERSION.
func TestRFC7296Section2_5IKESAInitPayloads(t *testing.T) {
	l := newLab(t, 53, nil)
	var msgs []netsim.Msg
	var raw [][]byte
	l.net.Filter = captureFrom(l.gw, &msgs, &raw)
	attacker := netip.MustParseAddrPort("203.0.113.66:500")
	to := netip.AddrPortFrom(gwAddr, 500)
	l.net.Inject(attacker, to, initRequest(t, 1, &wire.VendorID{Data: []byte("strongSwan")}, &wire.Unknown{PayloadType: 99, Body: []byte{1, 2}}))
	l.net.Inject(attacker, to, initRequest(t, 2, &wire.Unknown{PayloadType: 99, Critical: true, Body: []byte{1, 2}}))
	v3 := initRequest(t, 3)
	v3[17] = 0x30
	l.net.Inject(attacker, to, v3)
	l.net.RunFor(time.Second)
	if len(raw) != 3 {
		t.Fatalf("%d answers, want 3", len(raw))
	}
	// A supporting responder announces childless IKE_AUTH in every
	// IKE_SA_INIT response (RFC 6023 §3).
	want := []string{"[ SA KE Nonce N(CHILDLESS_IKEV2_SUPPORTED) ]", "[ N(UNSUPPORTED_CRITICAL_PAYLOAD) ]", "[ N(INVALID_MAJOR_VERSION) ]"}
	for i, b := range raw {
		m, err := wire.ParseMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.Summary(m.Payloads); got != want[i] {
			t.Errorf("answer %d: %s, want %s", i, got, want[i])
		}
	}
}

// RFC 7296 §2.6: unauthenticated peers cannot grow our state: beyond the
// cookie threshold nothing is kept without a valid COOKIE, and half-open
// SAs expire.
func TestRFC7296Section2_6HalfOpenBounded(t *testing.T) {
	l := newLab(t, 54, func(_, _ *ike.Connection, _, gwc *ike.Config) { gwc.CookieThreshold = 5 })
	attacker := netip.MustParseAddrPort("203.0.113.66:500")
	for i := 0; i < 200; i++ {
		l.net.Inject(attacker, netip.AddrPortFrom(gwAddr, 500), initRequest(t, uint64(1000+i)))
	}
	l.net.RunFor(time.Second)
	if n := len(l.gw.Engine.IKESAs()); n != 5 {
		t.Fatalf("%d half-open SAs kept, want the threshold 5", n)
	}
	if countNotify(l.gw, wire.NotifyCookie, true) != 195 {
		t.Fatalf("%d COOKIEs", countNotify(l.gw, wire.NotifyCookie, true))
	}
	l.net.RunFor(time.Minute)
	if n := len(l.gw.Engine.IKESAs()); n != 0 {
		t.Fatalf("%d half-open SAs did not expire", n)
	}
	// A legitimate client still gets in afterwards.
	l.up()
}
