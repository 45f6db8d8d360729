package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/mifike/mifike/internal/dataplane"
	"github.com/mifike/mifike/internal/ike"
)

// limitEvent is a Child SA limit the data plane reached.
type limitEvent struct {
	inSPI uint32
	hard  bool
}

// openDataPlane starts the configured data plane; "none" carries nothing.
func (d *Daemon) openDataPlane() error {
	switch d.cfg.DataPlane {
	case "none":
		return nil
	case "kernel":
		return errors.New("data_plane: kernel: the XFRM backend is not built yet; use data_plane: userspace (or auto)")
	case "auto":
		d.log.Info("data plane: userspace ESP over TUN (auto; the kernel backend is not built yet)")
	}
	for k, s := range d.socks {
		if err := dataplane.Mark(s.conn, dataplane.DefaultMark); err != nil {
			return fmt.Errorf("data plane: marking the IKE socket on port %d: %w", k.port, err)
		}
		if k.port == d.cfg.NATTPort {
			dataplane.SetBuffers(s.conn)
		}
	}
	natt := func(local netip.Addr) *net.UDPConn {
		if s := d.sock(netip.AddrPortFrom(local, d.cfg.NATTPort)); s != nil {
			return s.conn
		}
		return nil
	}
	p, err := dataplane.OpenLinux(dataplane.LinuxConfig{TUNName: d.cfg.TUN.Name, MTU: d.cfg.TUN.MTU,
		NATT: natt, Log: d.log.With("component", "dataplane"),
		OnLimit: func(inSPI uint32, hard bool) {
			select {
			case d.limits <- limitEvent{inSPI, hard}:
			default: // the loop is flooded; the next packet reports it again soon enough
			}
		}})
	if err != nil {
		return err
	}
	d.plane = p
	p.Start()
	d.log.Info("data plane up", "device", p.Name(), "mtu", d.cfg.TUN.MTU)
	return nil
}

// installChild carries a Child SA action to the data plane.
func (d *Daemon) planeAction(a ike.Action) {
	if d.plane == nil {
		return
	}
	switch a := a.(type) {
	case ike.InstallChild:
		if err := d.plane.Install(a.SA); err != nil {
			d.log.Error("data plane: cannot install Child SA", "ike", a.SA.IKESA, "child", fmt.Sprintf("%08x", a.SA.InSPI), "err", err)
		}
	case ike.UpdateChild:
		if err := d.plane.Update(a.SA); err != nil {
			d.log.Error("data plane: cannot update Child SA", "ike", a.SA.IKESA, "child", fmt.Sprintf("%08x", a.SA.InSPI), "err", err)
		}
	case ike.DeleteChild:
		d.plane.Delete(a.InSPI)
	}
}

// pollInbound tells the engine which Child SAs received traffic since
// the last poll: authentic ESP is proof of liveness (RFC 7296 §2.4), and
// lets a responder's rekeyed SA start sending (§2.8).
func (d *Daemon) pollInbound() {
	if d.plane == nil {
		return
	}
	now := time.Now()
	for spi := range d.children {
		c := d.plane.Counters(spi)
		if c == nil {
			continue
		}
		if last := c.LastIn.Load(); last != d.lastIn[spi] {
			d.lastIn[spi] = last
			d.apply(d.engine.Inbound(now, spi))
		}
	}
	for spi := range d.lastIn {
		if _, ok := d.children[spi]; !ok {
			delete(d.lastIn, spi)
		}
	}
}

// readBatch reads one socket in batches (recvmmsg). On the NAT-T port,
// ESP goes straight to the data plane from this goroutine, opened in
// place; IKE messages are copied to the event loop.
func (d *Daemon) readBatch(s *udpSocket) {
	const batch = 64
	bufs := make([][]byte, batch)
	var (
		m4 []ipv4.Message
		m6 []ipv6.Message
	)
	if s.p6 != nil {
		m6 = make([]ipv6.Message, batch)
	} else {
		m4 = make([]ipv4.Message, batch)
	}
	for i := range bufs {
		bufs[i] = make([]byte, dataplane.Headroom+65535)
		if m6 != nil {
			m6[i] = ipv6.Message{Buffers: [][]byte{bufs[i][dataplane.Headroom:]}, OOB: make([]byte, 128)}
		} else {
			m4[i] = ipv4.Message{Buffers: [][]byte{bufs[i][dataplane.Headroom:]}, OOB: make([]byte, 128)}
		}
	}
	var rx *dataplane.Receiver
	if d.plane != nil && s.port == d.cfg.NATTPort {
		rx = d.plane.NewReceiver()
	}
	esp := make([]dataplane.Inbound, 0, batch)
	for {
		var (
			n   int
			err error
		)
		if m6 != nil {
			n, err = s.p6.ReadBatch(m6, 0)
		} else {
			n, err = s.p4.ReadBatch(m4, 0)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		esp = esp[:0]
		for i := range n {
			var (
				size    int
				oob     []byte
				addr    net.Addr
				payload = bufs[i][dataplane.Headroom:]
			)
			if m6 != nil {
				size, oob, addr = m6[i].N, m6[i].OOB[:m6[i].NN], m6[i].Addr
			} else {
				size, oob, addr = m4[i].N, m4[i].OOB[:m4[i].NN], m4[i].Addr
			}
			ua, ok := addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			remote := netip.AddrPortFrom(ua.AddrPort().Addr().Unmap(), ua.AddrPort().Port())
			local := netip.AddrPortFrom(dataplane.PacketInfoDst(oob), s.port)
			b := payload[:size]
			if rx != nil && len(b) >= 4 && b[0]|b[1]|b[2]|b[3] != 0 {
				// ESP in UDP (RFC 3948 §2.2): no non-ESP marker.
				esp = append(esp, dataplane.Inbound{Buf: bufs[i], Off: dataplane.Headroom, N: size, Local: local, Remote: remote})
				continue
			}
			d.rx <- datagram{d: ike.Datagram{Local: local, Remote: remote, Data: append([]byte(nil), b...)}}
		}
		if len(esp) > 0 {
			rx.Receive(esp)
		}
	}
}
