package daemon

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/conn"
)

// listenTCP makes the TCP transport (RFC 9329): always, for connections
// that initiate over TCP (tcp: fallback or always), and listening on
// tcp_ports on every listen address when the gateway has them. The
// engine hears of streams that close, to open them again as TCP
// Originator (ike.Engine.StreamClosed).
func (d *Daemon) listenTCP() (*conn.TCP, error) {
	t := new(conn.TCP)
	t.StreamOpened = func(local, remote netip.AddrPort) {
		go d.post(func() { d.apply(d.engine.StreamOpened(time.Now(), local, remote)) })
	}
	t.StreamClosed = func(local, remote netip.AddrPort, err error) {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			d.log.Debug("TCP stream closed", "local", local, "remote", remote, "err", err)
		}
		// Not blocking the stream's goroutine (conn.TCP's callbacks
		// must not).
		go d.post(func() { d.apply(d.engine.StreamClosed(time.Now(), local, remote)) })
	}
	for _, a := range d.cfg.Listen {
		for _, port := range d.cfg.TCPPorts {
			if _, err := t.Listen(a, port); err != nil {
				t.Close()
				return nil, err
			}
		}
	}
	return t, nil
}
