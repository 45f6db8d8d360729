package ike_test

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// FuzzIKESAInit sends any datagram as an IKE_SA_INIT request to a loaded
// responder with puzzles on (cookies, puzzle solutions and half-open SAs
// parsed from it), and as a response to an initiator's outstanding
// IKE_SA_INIT (COOKIE and PUZZLE read from it). Neither may panic, and
// both engines' tables must stay consistent (RFC 7296 §2.6, RFC 8019 §7.1).
func FuzzIKESAInit(f *testing.F) {
	ueConn, gwConn := configs(f)
	reqs := initRequests(f, 3, spread)
	for _, d := range reqs {
		f.Add(d.Data)
	}
	cookie := &wire.Message{Header: wire.Header{SPIi: 1, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagResponse},
		Payloads: []wire.Payload{wire.NewNotify(wire.NotifyCookie, make([]byte, 36)), wire.NewNotify(wire.NotifyPuzzle, []byte{0, 5, 8})}}
	if b, err := cookie.Marshal(); err == nil {
		f.Add(b)
	}
	withPS, _ := wire.ParseMessage(reqs[0].Data)
	withPS.Payloads = append([]wire.Payload{wire.NewNotify(wire.NotifyCookie, make([]byte, 36)), &wire.PuzzleSolution{Data: make([]byte, 16)}}, withPS.Payloads...)
	if b, err := withPS.Marshal(); err == nil {
		f.Add(b)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		gw, err := ike.New(ike.Config{Connections: []*ike.Connection{gwConn}, Rand: rand.Reader,
			CookieThreshold: 1, PuzzleThreshold: 2, PuzzleDifficulty: 8})
		if err != nil {
			t.Fatal(err)
		}
		gw.Receive(now, reqs[0]) // one half-open SA: cookies from now on
		gw.Receive(now, reqs[1])
		gw.Receive(now, ike.Datagram{Local: netip.AddrPortFrom(gwAddr, 500), Remote: netip.MustParseAddrPort("203.0.113.9:500"), Data: b})
		gw.Tick(now.Add(time.Minute))
		if err := gw.Audit(); err != nil {
			t.Fatalf("responder: %v", err)
		}

		ue, err := ike.New(ike.Config{Connections: []*ike.Connection{ueConn}, Rand: rand.Reader, PuzzleMaxDifficulty: 8})
		if err != nil {
			t.Fatal(err)
		}
		_, acts, err := ue.Initiate(now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(ueAddr, 500), Remote: netip.AddrPortFrom(gwAddr, 500)})
		if err != nil {
			t.Fatal(err)
		}
		var spi uint64
		for _, a := range acts {
			if s, ok := a.(ike.Send); ok && len(s.Data) >= 8 {
				spi = binary.BigEndian.Uint64(s.Data)
			}
		}
		if len(b) >= 8 {
			b = append(binary.BigEndian.AppendUint64(nil, spi), b[8:]...)
		}
		ue.Receive(now, ike.Datagram{Local: netip.AddrPortFrom(ueAddr, 500), Remote: netip.AddrPortFrom(gwAddr, 500), Data: b})
		for i := 1; i <= 300; i++ { // let a puzzle solver run out
			ue.Tick(now.Add(time.Duration(i) * time.Millisecond))
		}
		if err := ue.Audit(); err != nil {
			t.Fatalf("initiator: %v", err)
		}
	})
}
