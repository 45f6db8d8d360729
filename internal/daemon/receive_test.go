package daemon

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/dataplane"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// testSocket is one socket as the daemon binds it (conn.UDP: packet info
// on), in its Bind.
type testSocket struct {
	u    *conn.UDP
	conn *net.UDPConn
	port uint16
}

// maxDatagram is the Bind's receive buffer.
const maxDatagram = conn.MaxDatagram

// loopbackPair is a socket as the daemon binds it and a connected sender
// to it.
func loopbackPair(t *testing.T, addr netip.Addr) (*testSocket, *net.UDPConn) {
	return loopbackBind(t, addr, false)
}

// loopbackBind is loopbackPair with the socket on an IKE port or, with
// natt, on a NAT-T port.
func loopbackBind(t *testing.T, addr netip.Addr, natt bool) (*testSocket, *net.UDPConn) {
	t.Helper()
	s := &testSocket{u: new(conn.UDP)}
	port, err := s.u.Listen(addr, 0, natt)
	if err != nil {
		if addr.Is6() {
			t.Skipf("no IPv6 loopback (IPv6 disabled on this host): %v", err)
		}
		t.Fatalf("no %v socket: %v", addr, err)
	}
	t.Cleanup(func() { s.u.Close() })
	s.conn, s.port = s.u.Sockets()[0].Conn, port
	network := "udp4"
	if addr.Is6() {
		network = "udp6"
	}
	c, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, s.port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

// dataplane.BatchReader delivers what was sent, the addresses from the socket address
// and packet info, and flags what did not fit (MSG_TRUNC), for both
// families.
func TestRxBatchReadsWhatWasSent(t *testing.T) {
	for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
		s, c := loopbackPair(t, a)
		r, err := dataplane.NewBatchReader(s.conn, s.port, 4, 16, 100)
		if err != nil {
			t.Fatal(err)
		}
		sent := [][]byte{bytes.Repeat([]byte{1}, 10), bytes.Repeat([]byte{2}, 100), bytes.Repeat([]byte{3}, 101)}
		for _, b := range sent {
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		from := c.LocalAddr().(*net.UDPAddr).AddrPort()
		for got := 0; got < len(sent); {
			n, err := r.Read()
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				b, local, remote, trunc := r.Datagram(i)
				want := sent[got]
				if trunc != (len(want) > 100) || !bytes.Equal(b, want[:min(len(want), 100)]) {
					t.Errorf("%v: datagram %d: %d octets, truncated %v", a, got, len(b), trunc)
				}
				if local != netip.AddrPortFrom(a, s.port) || remote.Addr() != a || remote.Port() != from.Port() {
					t.Errorf("%v: datagram %d from %v to %v, want from %v to %v", a, got, remote, local, from, netip.AddrPortFrom(a, s.port))
				}
				if &r.Buf(i)[16] != &b[:1][0] {
					t.Errorf("%v: datagram not at the offset", a)
				}
				got++
			}
		}
	}
}

// floodDaemon is a daemon with an engine and one reader on a loopback
// socket as port 500 or 4500, and an event loop that only receives.
// handled counts the datagrams the loop gave the engine.
func floodDaemon(t *testing.T, natt bool) (d *Daemon, c *net.UDPConn, handled *atomic.Uint64) {
	t.Helper()
	s, c := loopbackBind(t, netip.MustParseAddr("127.0.0.1"), natt)
	cfg := &config.Config{IKEPort: 500, NATTPort: 4500}
	if natt {
		cfg.NATTPort = s.port
	} else {
		cfg.IKEPort = s.port
	}
	e, err := ike.New(ike.Config{Rand: rand.Reader, IKEPort: cfg.IKEPort, NATTPort: cfg.NATTPort})
	if err != nil {
		t.Fatal(err)
	}
	d = &Daemon{cfg: cfg, engine: e, log: slog.New(slog.DiscardHandler), rx: make(chan datagram, rxQueue), bind: s.u}
	recvs, err := d.bind.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	handled = new(atomic.Uint64)
	done := make(chan struct{})
	go func() {
		d.read(recvs[0], d.bind.BatchSize())
		close(done)
	}()
	go func() {
		for p := range d.rx {
			d.receive(p)
			handled.Add(1)
		}
	}()
	t.Cleanup(func() {
		s.u.Close()
		<-done
		close(d.rx)
	})
	return d, c, handled
}

// spinUntil waits (without allocating, unlike waitFor) until cond holds;
// generous, for a loaded machine.
func spinUntil(t *testing.T, cond func() bool) {
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// The daemon's whole receive path, socket to engine, drops without
// allocating (issue 13): garbage and truncated datagrams in the reader,
// without a copy; datagrams that need the engine's state (an unknown
// SPI) in pooled buffers. RFC 7296 §2.21: silently.
func TestReceivePathAllocatesNothingPerDrop(t *testing.T) {
	h := wire.Header{SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00, MajorVersion: 2, Exchange: wire.Informational,
		Flags: wire.FlagInitiator, NextPayload: wire.PayloadSK}
	unknownSPI := append(h.AppendTo(nil), 0, 0, 0, 68)
	unknownSPI = append(unknownSPI, make([]byte, 64)...)
	binary.BigEndian.PutUint32(unknownSPI[24:], uint32(len(unknownSPI)))
	marker := func(b []byte) []byte { return append(make([]byte, 4), b...) }
	garbage := bytes.Repeat([]byte{0x5a}, 300)
	for _, c := range []struct {
		name string
		natt bool
		data []byte
		why  ike.DropReason
	}{
		{"garbage/500", false, garbage, ike.DropVersion},
		{"short/500", false, garbage[:20], ike.DropShort},
		{"truncated/500", false, bytes.Repeat([]byte{0}, maxDatagram+1), ike.DropTruncated},
		{"unknown-spi/500", false, unknownSPI, ike.DropUnknownSPI},
		{"garbage/4500", true, marker(garbage), ike.DropVersion},
		{"unknown-spi/4500", true, marker(unknownSPI), ike.DropUnknownSPI},
		// RFC 3948 §2.2: too short for an SPI or the non-ESP marker,
		// and no keepalive. The Bind sorts it out (conn.NoMarker); the
		// engine, which once dropped it itself, never sees a marker.
		{"no-marker/4500", true, []byte{1, 2}, ike.DropNoMarker},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, conn, handled := floodDaemon(t, c.natt)
			// seen is how far the datagram got: dropped by the reader or
			// handled by the engine (whose counters are the loop's).
			seen := func() uint64 { return d.rxStats.drops[c.why].Load() + handled.Load() }
			send := func() {
				before := seen()
				if _, err := conn.Write(c.data); err != nil {
					t.Fatal(err)
				}
				spinUntil(t, func() bool { return seen() > before })
			}
			for range 50 {
				send() // warm the pools
			}
			if n := testing.AllocsPerRun(200, send); n > 0.1 {
				t.Errorf("%.2f allocations per dropped datagram, want 0", n)
			}
			// All of them dropped for c.why (handled is read after the
			// loop counted, so the engine's counters are settled).
			if got := d.rxStats.drops[c.why].Load() + d.engine.Stats().DroppedBy[c.why]; got != 251 {
				t.Errorf("%d dropped for %v, want 251", got, c.why)
			}
		})
	}
}

// On the NAT-T port without a data plane, ESP and keepalives are counted
// and never reach the engine.
func TestReceiveNATTKeepaliveAndESP(t *testing.T) {
	d, conn, _ := floodDaemon(t, true)
	for _, b := range [][]byte{{0xff}, {0, 0, 1, 2, 0, 0, 0, 1, 9, 9}} {
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	spinUntil(t, func() bool { return d.rxStats.keepalives.Load() == 1 && d.rxStats.espDropped.Load() == 1 })
	if n := d.engine.Stats().Dropped; n != 0 {
		t.Errorf("the engine saw %d of them", n)
	}
}
