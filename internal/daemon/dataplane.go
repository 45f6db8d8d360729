package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/dataplane"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/xfrm"
)

// limitEvent is a Child SA limit the data plane reached.
type limitEvent struct {
	inSPI uint32
	hard  bool
}

// ownsDevice is d.plane.Owns, false without a data plane.
func (d *Daemon) ownsDevice(name string) bool { return d.plane != nil && d.plane.Owns(name) }

// openDataPlane starts the configured data plane on the sockets of udp;
// "none" carries nothing. "auto" asks the kernel to install a test ESP SA
// and an XFRM interface and takes the kernel when it can, else userspace
// ESP.
func (d *Daemon) openDataPlane(udp *conn.UDP) error {
	kind := d.cfg.DataPlane
	switch kind {
	case "none":
		return nil
	case "auto":
		if err := xfrm.Probe(); err != nil {
			kind = "userspace"
			d.log.Info("data plane: userspace ESP over TUN (auto: the kernel cannot carry ESP)", "reason", err)
		} else if err := d.probeESPInTCP(); err != nil {
			// TCP encapsulation configured, and a kernel that would
			// refuse its SAs: userspace carries both kinds.
			kind = "userspace"
			d.log.Info("data plane: userspace ESP over TUN (auto: the configuration uses TCP encapsulation, which the kernel cannot carry)", "reason", err)
		} else {
			kind = "kernel"
			d.log.Info("data plane: kernel XFRM (auto: the kernel installed a test ESP SA and an XFRM interface)")
		}
	case "kernel":
		if err := d.probeESPInTCP(); err != nil {
			return fmt.Errorf("data_plane: kernel: the configuration uses TCP encapsulation (RFC 9329) and %w; use data_plane: userspace or auto, or drop tcp_ports and tcp", err)
		}
	}
	for _, s := range udp.Sockets() {
		if err := dataplane.Mark(s.Conn, ipsec.DefaultMark); err != nil {
			return fmt.Errorf("data plane: marking the IKE socket on port %d: %w", s.Port, err)
		}
		if s.NATT {
			dataplane.SetBuffers(s.Conn)
		}
	}
	onLimit := func(inSPI uint32, hard bool) {
		select {
		case d.limits <- limitEvent{inSPI, hard}:
		default: // the loop is flooded; the limit is reported again soon enough
		}
	}
	if kind == "kernel" {
		cfg := xfrm.Config{Log: d.log.With("component", "xfrm"), OnLimit: onLimit, MTU: d.cfg.TUN.MTU, OnAcquire: d.onAcquire}
		if d.usesTCP() {
			// The kernel frames and carries the streams' ESP
			// (espintcp); their own segments bypass the tunnels.
			cfg.ESPInTCP = true
			d.tcp.KernelESP = true
			d.tcp.Control = func(fd uintptr) error { return xfrm.Bypass(fd, ipsec.DefaultMark) }
		}
		for _, s := range udp.Sockets() {
			cfg.Sockets = append(cfg.Sockets, s.Conn)
			cfg.NATTPort = append(cfg.NATTPort, s.NATT)
		}
		k, err := xfrm.Open(cfg)
		if err != nil {
			return fmt.Errorf("data_plane: kernel: %w", err)
		}
		d.plane = k
		if d.tcp.KernelESP {
			d.tcp.PinIface = k.PinStream
		}
		d.log.Info("data plane up", "backend", k.Name(), "mtu", d.cfg.TUN.MTU)
		return nil
	}
	p, err := dataplane.OpenLinux(dataplane.LinuxConfig{TUNName: d.cfg.TUN.Name, MTU: d.cfg.TUN.MTU,
		NATT: udp.NATT, TCP: d.tcp.SendESP, Log: d.log.With("component", "dataplane"), OnLimit: onLimit,
		// The peer may hear of it (RFC 7296 §1.5); the plane spaces the
		// calls, and the loop drops them when busy.
		OnUnknownSPI: func(from netip.Addr, spi uint32) {
			select {
			case d.calls <- func() { d.apply(d.engine.UnknownSPI(time.Now(), from, spi)) }:
			default:
			}
		},
		OnAcquire: d.onAcquire})
	if err != nil {
		return err
	}
	// The userspace data plane opens the ESP in UDP our NAT-T sockets
	// read; the kernel's takes it out of the socket first.
	d.plane, d.espInUDP = p, p
	p.Start()
	d.log.Info("data plane up", "device", p.Name(), "mtu", d.cfg.TUN.MTU)
	return nil
}

// usesTCP: does the configuration put any SA in TCP (RFC 9329): a
// gateway's tcp_ports, or a connection or interface with tcp other than
// never.
func (d *Daemon) usesTCP() bool {
	if len(d.cfg.TCPPorts) > 0 {
		return true
	}
	for _, c := range d.cfg.Connections {
		if c.TCP != ike.TCPNever {
			return true
		}
		if c.Interfaces != nil {
			for _, t := range c.Interfaces.TCP {
				if t.Value != ike.TCPNever {
					return true
				}
			}
		}
	}
	return false
}

// probeESPInTCP: when the configuration uses TCP, can the kernel carry
// its ESP (the espintcp ULP, and ESP states with TCP encapsulation)?
func (d *Daemon) probeESPInTCP() error {
	if !d.usesTCP() {
		return nil
	}
	return errors.Join(conn.ProbeKernelESP(), xfrm.ProbeTCP())
}

// planeAction carries a Child SA action to the data plane. A Child SA the
// data plane refuses fails: it is deleted (telling the peer) with the
// data plane's reason, so no half-installed SA stays up.
func (d *Daemon) planeAction(a ike.Action) {
	if d.plane == nil {
		return
	}
	switch a := a.(type) {
	case ike.InstallChild:
		// A new SA with the SPI of one still retiring replaces it in
		// the data plane: what the old one carried is history now.
		d.stats.espGone.add(d.plane.Counters(a.SA.InSPI))
		if err := d.plane.Install(a.SA); err != nil {
			d.log.Error("data plane: cannot install Child SA", "ike", a.SA.IKESA, "child", fmt.Sprintf("%08x", a.SA.InSPI), "err", err)
			d.publish(ike.Event{Kind: ike.EventChildFailed, IKESA: a.SA.IKESA, Child: a.SA.InSPI, ChildName: a.SA.Name,
				Detail: fmt.Sprintf("%s: the data plane refused it: %v", a.SA.Name, err)})
			acts, _ := d.engine.Terminate(time.Now(), a.SA.IKESA, a.SA.InSPI)
			d.apply(acts)
		}
	case ike.UpdateChild:
		if err := d.plane.Update(a.SA); err != nil {
			d.log.Error("data plane: cannot update Child SA", "ike", a.SA.IKESA, "child", fmt.Sprintf("%08x", a.SA.InSPI), "err", err)
		}
	case ike.DeleteChild:
		// Read after the delete: a packet the plane was still carrying
		// on the SA counts too.
		c := d.plane.Counters(a.InSPI)
		d.plane.Delete(a.InSPI)
		d.stats.espGone.add(c)
	}
}

// espTotals is ESP traffic summed over Child SAs.
type espTotals struct{ bytesIn, bytesOut, packetsIn, packetsOut uint64 }

// add adds a Child SA's counters (none when c is nil).
func (t *espTotals) add(c *ipsec.Counters) {
	if c != nil {
		t.bytesIn += c.BytesIn.Load()
		t.bytesOut += c.BytesOut.Load()
		t.packetsIn += c.PacketsIn.Load()
		t.packetsOut += c.PacketsOut.Load()
	}
}

// livenessPoll is how often the Child SAs' counters are read when a
// connection has a traffic-driven liveness check (liveness_window): a
// small part of its window, which is at least a few hundred
// milliseconds in practice.
const livenessPoll = 20 * time.Millisecond

// livenessChecked: some connection checks liveness on traffic, so the
// counters are read every livenessPoll, not only every second.
func (d *Daemon) livenessChecked() bool {
	for _, c := range d.conns {
		if c.LivenessWindow > 0 {
			return true
		}
	}
	return false
}

// espTraffic sums the ESP traffic of the Child SAs installed now, and
// over the daemon's life: a rekeyed SA still in the data plane
// (retiring) counts until it goes, then its counters are in espGone, so
// the total never goes down. Call it on the event loop, with a plane.
func (d *Daemon) espTraffic() (now, total espTotals) {
	for spi := range d.children {
		now.add(d.plane.Counters(spi))
	}
	total = now
	for spi := range d.retiring {
		total.add(d.plane.Counters(spi))
	}
	g := d.stats.espGone
	total.bytesIn, total.bytesOut = total.bytesIn+g.bytesIn, total.bytesOut+g.bytesOut
	total.packetsIn, total.packetsOut = total.packetsIn+g.packetsIn, total.packetsOut+g.packetsOut
	return now, total
}

// childRec is what the daemon keeps of a Child SA the data plane holds:
// whose it is and its path, enough to tell the plane to move it or stop
// it sending (a rekeyed SA retiring, a fenced cluster node). The engine
// and the data plane keep the rest (keys, selectors, addresses); a copy
// of all of it here cost a gateway 0.37 kB per road warrior (issue 18).
type childRec struct {
	ikeSA         uint64
	name          string
	local, remote netip.AddrPort
	iface         string
	encap, tcp    bool
	outbound      bool
}

func recordOf(sa ike.ChildSA) childRec {
	return childRec{ikeSA: sa.IKESA, name: sa.Name, local: sa.Local, remote: sa.Remote, iface: sa.Iface,
		encap: sa.Encap, tcp: sa.TCP, outbound: sa.Outbound}
}

// sa is the record as the ChildSA an UpdateChild carries: the fields a
// data plane's Update reads (the path and whether it sends), by inbound
// SPI.
func (r childRec) sa(inSPI uint32) ike.ChildSA {
	return ike.ChildSA{IKESA: r.ikeSA, Name: r.name, InSPI: inSPI, Local: r.local, Remote: r.remote, Iface: r.iface,
		Encap: r.encap, TCP: r.tcp, Outbound: r.outbound}
}

// espIdleAfter: a Child SA direction that carried nothing for this long
// gives up its keyed AEAD context (dataplane.Plane.SweepIdle), which the
// next packet makes again in about a microsecond. A minute keeps the
// contexts of anything that talks now and then (DPD-less keepalives,
// a chat client) and frees those of SAs that only wait.
const espIdleAfter = time.Minute

// sweepIdle asks the userspace data plane to drop idle SAs' AEAD
// contexts, once per espIdleAfter.
func (d *Daemon) sweepIdle(now time.Time) {
	p, ok := d.plane.(interface{ SweepIdle(since time.Time) int })
	if !ok || now.Sub(d.swept) < espIdleAfter {
		return
	}
	d.swept = now
	if n := p.SweepIdle(now.Add(-espIdleAfter)); n > 0 {
		d.log.Debug("data plane: dropped the AEAD contexts of idle Child SAs (kept their keys)", "contexts", n)
	}
}

// pollInbound tells the engine which Child SAs received traffic on their
// path since the last poll: authentic ESP from where the SA expects it is
// proof of liveness (RFC 7296 §2.4; from elsewhere it is not, RFC 4555
// §3.12: the path may not work), and lets a responder's rekeyed SA start
// sending (§2.8). It also tells which sent traffic: outgoing traffic with
// nothing back is what starts the traffic-driven liveness check
// (ike.Engine.Outbound).
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
		if last := c.LastOnPath.Load(); last != d.lastIn[spi] {
			d.lastIn[spi] = last
			d.apply(d.engine.Inbound(now, spi))
		}
		if out := c.PacketsOut.Load(); out != d.lastOut[spi] {
			d.lastOut[spi] = out
			d.apply(d.engine.Outbound(now, spi))
		}
	}
	for spi := range d.lastIn {
		if _, ok := d.children[spi]; !ok {
			delete(d.lastIn, spi)
		}
	}
	for spi := range d.lastOut {
		if _, ok := d.children[spi]; !ok {
			delete(d.lastOut, spi)
		}
	}
}
