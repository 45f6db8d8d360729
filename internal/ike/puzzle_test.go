package ike_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// puzzleGW turns the gateway's puzzles on for every request once one SA
// is half-open (loadGateway makes that one).
func puzzleGW(bits int) func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
	return func(_, _ *ike.Connection, _, gwc *ike.Config) {
		gwc.CookieThreshold, gwc.PuzzleThreshold, gwc.PuzzleDifficulty = 1, 1, bits
	}
}

// solveSHA256 is the test's own solver (HMAC-SHA-256 only): four 4-octet
// keys whose PRF over the cookie ends in the asked zero bits (RFC 8019
// §7.1.3). With wrong set it returns keys that do not solve it.
func solveSHA256(t testing.TB, wrong bool) func(cookie []byte, puzzle *wire.Notify) wire.Payload {
	return func(cookie []byte, puzzle *wire.Notify) wire.Payload {
		if len(puzzle.Data) != 3 || wire.PRFID(binary.BigEndian.Uint16(puzzle.Data)) != wire.PRFHMACSHA2256 {
			t.Fatalf("PUZZLE %x: want PRF_HMAC_SHA2_256 (the only PRF offered)", puzzle.Data)
		}
		want := int(puzzle.Data[2])
		var sol []byte
		for k := uint32(0); len(sol) < 16; k++ {
			key := binary.BigEndian.AppendUint32(nil, k)
			m := hmac.New(sha256.New, key)
			m.Write(cookie)
			sum := m.Sum(nil)
			z := 0
			for i := len(sum) - 1; i >= 0 && sum[i] == 0; i-- {
				z += 8
			}
			if i := len(sum) - 1 - z/8; i >= 0 {
				z += bits.TrailingZeros8(sum[i])
			}
			if (z >= want) != wrong {
				sol = append(sol, key...)
			}
		}
		return &wire.PuzzleSolution{Data: sol}
	}
}

// RFC 8019 §7.1.1, §7.1.2: under load the responder sends PUZZLE with
// the COOKIE; a mifike initiator solves it and returns the solution after
// the cookie, and gets its IKE SA.
func TestRFC8019Section7_1PuzzleSolvedByInitiator(t *testing.T) {
	l := newLab(t, 51, puzzleGW(12))
	loadGateway(t, l)
	l.initiate()
	if !l.net.RunUntil(10*time.Second, func() bool { return len(l.ue.Established()) == 1 && len(l.gw.Established()) == 1 }) {
		t.Fatalf("not up: ue %+v gw %+v", l.ue.Engine.IKESAs(), l.gw.Engine.IKESAs())
	}
	if countNotify(l.gw, wire.NotifyPuzzle, true) != 1 || countNotify(l.ue, wire.NotifyPuzzle, false) != 1 {
		t.Fatalf("PUZZLE sent %d, received %d, want 1", countNotify(l.gw, wire.NotifyPuzzle, true), countNotify(l.ue, wire.NotifyPuzzle, false))
	}
	l.settle(time.Second)
	auditGW(t, l)
}

// RFC 8019 §7.1.4, §7.1.5: a request that returns the COOKIE without a
// solution, or with a wrong one, is not served: it gets a new puzzle and
// leaves no state. A correct solution is served.
func TestRFC8019Section7_1_4UnsolvedPuzzleNotServed(t *testing.T) {
	for _, c := range []struct {
		name   string
		solve  func(t testing.TB) func([]byte, *wire.Notify) wire.Payload
		served bool
	}{
		{"no solution", nil, false},
		{"wrong solution", func(t testing.TB) func([]byte, *wire.Notify) wire.Payload { return solveSHA256(t, true) }, false},
		{"solved", func(t testing.TB) func([]byte, *wire.Notify) wire.Payload { return solveSHA256(t, false) }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, 52, puzzleGW(8))
			loadGateway(t, l)
			f := newFlood(t, l.net, gwAddr, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, 3)
			if c.solve != nil {
				f.solve = c.solve(t)
			}
			f.maxCookies = 1 // answer each request's first puzzle only
			l.net.Filter = f.filter(nil)
			for i := 0; i < 3; i++ {
				f.send()
			}
			l.net.RunFor(time.Second)
			held := halfOpenFrom(l.gw, netip.MustParsePrefix("203.0.113.0/24"))
			if c.served {
				if held != 3 || countNotify(l.gw, wire.NotifyPuzzle, true) != 3 {
					t.Fatalf("%d half-open SAs for 3 solved puzzles (%d puzzles sent)", held, countNotify(l.gw, wire.NotifyPuzzle, true))
				}
			} else if held != 0 || countNotify(l.gw, wire.NotifyPuzzle, true) != 6 {
				t.Fatalf("%d half-open SAs and %d puzzles for 3 requests that solved nothing, want 0 and 6",
					held, countNotify(l.gw, wire.NotifyPuzzle, true))
			}
			auditGW(t, l)
		})
	}
}

// RFC 8019 §7.1.2, §9: an initiator does not attempt a puzzle harder than
// its maximum (nor any with puzzles off); it returns the cookie alone, and
// while the responder insists it gives up after a few rounds. A puzzle
// within its maximum is solved.
func TestRFC8019Section9InitiatorMaximum(t *testing.T) {
	for _, c := range []struct {
		max int
		up  bool
	}{{8, false}, {-1, false}, {12, true}} {
		l := newLab(t, 53, func(ue, gw *ike.Connection, uec, gwc *ike.Config) {
			puzzleGW(12)(ue, gw, uec, gwc)
			uec.PuzzleMaxDifficulty = c.max
		})
		loadGateway(t, l)
		l.initiate()
		l.net.RunFor(30 * time.Second)
		if got := len(l.ue.Established()) == 1; got != c.up {
			t.Fatalf("maximum %d against a 12-bit puzzle: up %v, want %v", c.max, got, c.up)
		}
		if !c.up {
			if len(l.ue.EventsOf(ike.EventIKEFailed)) != 1 || len(l.ue.Engine.IKESAs()) != 0 || halfOpenFrom(l.gw, netip.PrefixFrom(ueAddr, 32)) != 0 {
				t.Fatalf("maximum %d: the attempt did not end cleanly: %+v", c.max, l.ue.Engine.IKESAs())
			}
		}
	}
}

// RFC 8019 §7.1.2: an IKE_SA_INIT response with PUZZLE but no COOKIE is
// malformed; the initiator ignores it and keeps retransmitting.
func TestRFC8019Section7_1_2PuzzleWithoutCookieIgnored(t *testing.T) {
	l := newLab(t, 54, nil)
	var req ike.Datagram
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && req.Data == nil {
			req = d
		}
		return netsim.Drop // nothing reaches the gateway until the forgery was seen
	}
	l.initiate()
	l.net.RunFor(100 * time.Millisecond)
	if req.Data == nil {
		t.Fatal("no IKE_SA_INIT request")
	}
	m, err := wire.ParseMessage(req.Data)
	if err != nil {
		t.Fatal(err)
	}
	bad := &wire.Message{Header: wire.Header{SPIi: m.SPIi, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagResponse},
		Payloads: []wire.Payload{wire.NewNotify(wire.NotifyPuzzle, []byte{0, 5, 8})}}
	b, err := bad.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dropped := l.ue.Engine.Stats().Dropped
	l.net.Inject(req.Remote, req.Local, b)
	l.net.RunFor(100 * time.Millisecond)
	if l.ue.Engine.Stats().Dropped != dropped+1 || len(l.ue.EventsOf(ike.EventIKEFailed)) != 0 {
		t.Fatal("PUZZLE without COOKIE was not ignored")
	}
	l.net.Filter = nil
	if !l.net.RunUntil(time.Minute, func() bool { return len(l.ue.Established()) == 1 }) {
		t.Fatal("the retransmitted request did not get through")
	}
}

// RFC 8019 §4.4, §6: an attacker spread over 100 prefixes (50 addresses
// each, within every per-source and per-prefix limit) fills the half-open
// table, which per-prefix limits cannot prevent. With puzzles on, an
// attacker that does not solve them holds at most the puzzle threshold,
// and a legitimate client, which solves its puzzle, is up within 2 s.
// Without puzzles the same client waits for the table to drain.
func TestRFC8019Section4_4PuzzlesAgainstManyPrefixes(t *testing.T) {
	with := runHalfOpenAttack(t, 14, 100, 50, time.Minute, func(_, _ *ike.Connection, _, gwc *ike.Config) {
		gwc.PuzzleDifficulty = 10
	})
	t.Logf("with puzzles: attacker %d requests, %d half-open SAs; gateway held %d; client up after %v",
		with.flood.sent, with.flood.opened, with.halfOpen, with.connect)
	if with.connect == 0 || with.connect > 2*time.Second {
		t.Fatalf("with puzzles the client connected after %v, want within 2s", with.connect)
	}
	without := runHalfOpenAttack(t, 14, 100, 50, 10*time.Second, nil)
	t.Logf("without puzzles: gateway held %d; client up after %v (0: not within the run)", without.halfOpen, without.connect)
	if without.connect != 0 && without.connect <= 2*time.Second {
		t.Fatalf("without puzzles the client connected after %v: the attack does not fill the table, the test shows nothing", without.connect)
	}
}
