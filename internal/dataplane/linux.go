//go:build linux

package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/mifike/mifike/internal/ike"
)

// Defaults for the Linux data plane: the firewall mark our own IKE and
// ESP sockets carry, and the routing table the protected prefixes go to.
// Unmarked traffic consults the table first, so even a protected
// 0.0.0.0/0 does not swallow the tunnel's own packets (as wg-quick does).
const (
	DefaultMark  = 0x6d66 // "mf"
	DefaultTable = 0x6d66
	DefaultMTU   = 1400
	DefaultTUN   = "mifike0"
	rulePriority = 0x6d66
)

// LinuxConfig configures the Linux data plane.
type LinuxConfig struct {
	TUNName string // default DefaultTUN
	MTU     int    // default DefaultMTU
	Mark    uint32 // default DefaultMark
	Table   int    // default DefaultTable
	// NATT4 and NATT6 are the daemon's sockets on the NAT-T port: UDP-
	// encapsulated ESP (RFC 3948) leaves through them, so it shares the
	// IKE SA's port pair and NAT mapping.
	NATT4, NATT6 *net.UDPConn
	Log          *slog.Logger
	OnLimit      func(inSPI uint32, hard bool)
	ReplayWindow int
}

// Linux is the data plane on a Linux TUN device with raw ESP sockets.
type Linux struct {
	*Plane
	cfg    LinuxConfig
	dev    tun.Device
	name   string
	tr     *linuxTransport
	raw4   *net.IPConn
	raw6   *net.IPConn
	routes *routes
	wg     sync.WaitGroup
}

// OpenLinux creates the TUN device, the raw ESP sockets and the policy
// routing rules. Close undoes all of it.
func OpenLinux(cfg LinuxConfig) (*Linux, error) {
	if cfg.TUNName == "" {
		cfg.TUNName = DefaultTUN
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.Mark == 0 {
		cfg.Mark = DefaultMark
	}
	if cfg.Table == 0 {
		cfg.Table = DefaultTable
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	dev, err := tun.CreateTUN(cfg.TUNName, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("dataplane: creating TUN device %s: %w (is /dev/net/tun there, and are we root?)", cfg.TUNName, err)
	}
	name, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, err
	}
	l := &Linux{cfg: cfg, dev: dev, name: name}
	// No IPv6 link-local address on the device: it would only send
	// router solicitations nobody answers into the tunnel.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/addr_gen_mode", []byte("1"), 0)
	fail := func(err error) (*Linux, error) {
		l.Close()
		return nil, err
	}
	if l.raw4, err = listenRaw("ip4:50", cfg.Mark); err != nil {
		return fail(err)
	}
	if l.raw6, err = listenRaw("ip6:50", cfg.Mark); err != nil {
		cfg.Log.Warn("no IPv6 raw ESP socket; plain ESP over IPv6 is off", "err", err)
		l.raw6 = nil
	}
	l.tr = newLinuxTransport(cfg.NATT4, cfg.NATT6, l.raw4, l.raw6)
	l.Plane = New(Config{TUN: dev, Transport: l.tr, Log: cfg.Log, OnLimit: cfg.OnLimit, ReplayWindow: cfg.ReplayWindow})
	if l.routes, err = newRoutes(name, cfg.Table, cfg.Mark); err != nil {
		return fail(err)
	}
	return l, nil
}

// Name is the TUN device's name.
func (l *Linux) Name() string { return l.name }

// Start runs the TUN loop and the raw socket readers.
func (l *Linux) Start() {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := l.Plane.Run(); err != nil {
			l.cfg.Log.Error("TUN loop stopped", "err", err)
		}
	}()
	for _, c := range []*net.IPConn{l.raw4, l.raw6} {
		if c == nil {
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.readRaw(c)
		}()
	}
}

// Close removes routes, rules and the device and stops the goroutines.
func (l *Linux) Close() error {
	if l.routes != nil {
		l.routes.close()
	}
	for _, c := range []*net.IPConn{l.raw4, l.raw6} {
		if c != nil {
			c.Close()
		}
	}
	var err error
	if l.dev != nil {
		err = l.dev.Close()
	}
	l.wg.Wait()
	return err
}

// Install adds a Child SA and routes its remote selectors into the TUN
// device (with the virtual IP as source when the SA's local side is one).
func (l *Linux) Install(sa ike.ChildSA) error {
	if err := l.Plane.Install(sa); err != nil {
		return err
	}
	return l.routes.addChild(sa, sa.VirtualIPs)
}

// Delete removes a Child SA and the routes only it needed.
func (l *Linux) Delete(inSPI uint32) {
	l.Plane.Delete(inSPI)
	l.routes.delChild(inSPI)
}

// Mark sets the firewall mark on a socket of ours (an IKE socket), so it
// bypasses the routes into the tunnel.
func Mark(c syscall.Conn, mark uint32) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	})
	return errors.Join(err, serr)
}

// SetBuffers gives a socket that carries ESP large kernel buffers (4 MiB),
// beyond rmem_max as root: bursts from a fast sender otherwise overflow
// the default and TCP inside the tunnel sees loss.
func SetBuffers(c syscall.Conn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	})
}

func listenRaw(network string, mark uint32) (*net.IPConn, error) {
	addr := "0.0.0.0"
	if network == "ip6:50" {
		addr = "::"
	}
	c, err := net.ListenIP(network, &net.IPAddr{IP: net.ParseIP(addr)})
	if err != nil {
		return nil, fmt.Errorf("dataplane: raw ESP socket (%s): %w", network, err)
	}
	if err := Mark(c, mark); err != nil {
		c.Close()
		return nil, fmt.Errorf("dataplane: marking the raw ESP socket: %w", err)
	}
	SetBuffers(c)
	if network == "ip6:50" {
		err = ipv6.NewPacketConn(c).SetControlMessage(ipv6.FlagDst, true)
	} else {
		err = ipv4.NewPacketConn(c).SetControlMessage(ipv4.FlagDst, true)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readRaw reads plain ESP (IP protocol 50) in batches.
func (l *Linux) readRaw(c *net.IPConn) {
	v6 := c.LocalAddr().(*net.IPAddr).IP.To4() == nil
	const batch = 64
	size := Headroom + 65535
	bufs := make([][]byte, batch)
	in := make([]Inbound, batch)
	rx := l.NewReceiver()
	var (
		m4 []ipv4.Message
		m6 []ipv6.Message
		p4 *ipv4.PacketConn
		p6 *ipv6.PacketConn
	)
	if v6 {
		p6, m6 = ipv6.NewPacketConn(c), make([]ipv6.Message, batch)
	} else {
		p4, m4 = ipv4.NewPacketConn(c), make([]ipv4.Message, batch)
	}
	for i := range bufs {
		bufs[i] = make([]byte, size)
		if v6 {
			m6[i] = ipv6.Message{Buffers: [][]byte{bufs[i][Headroom:]}, OOB: make([]byte, 128)}
		} else {
			m4[i] = ipv4.Message{Buffers: [][]byte{bufs[i][Headroom:]}, OOB: make([]byte, 128)}
		}
	}
	for {
		var (
			n   int
			err error
		)
		if v6 {
			n, err = p6.ReadBatch(m6, 0)
		} else {
			n, err = p4.ReadBatch(m4, 0)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		k := 0
		for i := range n {
			b := bufs[i]
			if v6 {
				m := &m6[i]
				src, _ := m.Addr.(*net.IPAddr)
				if src == nil {
					continue
				}
				ra, _ := netip.AddrFromSlice(src.IP)
				in[k] = Inbound{Buf: b, Off: Headroom, N: m.N, Remote: netip.AddrPortFrom(ra.Unmap(), 0),
					Local: netip.AddrPortFrom(pktinfoDst(m.OOB[:m.NN]), 0)}
			} else {
				// IPv4 raw sockets deliver the IP header too.
				m := &m4[i]
				h := b[Headroom : Headroom+m.N]
				if len(h) < 20 || int(h[0]&0x0f)*4 > len(h) {
					continue
				}
				ihl := int(h[0]&0x0f) * 4
				in[k] = Inbound{Buf: b, Off: Headroom + ihl, N: m.N - ihl,
					Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte(h[12:16])), 0),
					Local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte(h[16:20])), 0)}
			}
			k++
		}
		rx.Receive(in[:k])
	}
}

// PacketInfoDst is pktinfoDst for the daemon's sockets.
func PacketInfoDst(oob []byte) netip.Addr { return pktinfoDst(oob) }

// pktinfoDst finds the destination address in IP_PKTINFO or
// IPV6_PKTINFO ancillary data without allocating.
func pktinfoDst(oob []byte) netip.Addr {
	for len(oob) >= unix.SizeofCmsghdr {
		l := int(binary.NativeEndian.Uint64(oob[0:8]))
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		data := oob[unix.SizeofCmsghdr:l]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= 12:
			return netip.AddrFrom4([4]byte(data[8:12])) // ipi_addr: the header's destination
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= 16:
			return netip.AddrFrom16([16]byte(data[0:16])).Unmap()
		}
		oob = oob[min(len(oob), (l+7)&^7):]
	}
	return netip.Addr{}
}

// linuxTransport sends sealed packets in batches (sendmmsg): UDP-
// encapsulated through the daemon's NAT-T sockets, plain through the raw
// ESP sockets, each from its SA's local address and interface (packet
// info), whatever the routing table prefers.
type linuxTransport struct {
	udp4, raw4 *ipv4.PacketConn
	udp6, raw6 *ipv6.PacketConn
	// scratch, used only from the TUN goroutine
	m4 [2][]ipv4.Message
	m6 [2][]ipv6.Message
}

func newLinuxTransport(natt4, natt6 *net.UDPConn, raw4, raw6 *net.IPConn) *linuxTransport {
	t := &linuxTransport{}
	if natt4 != nil {
		t.udp4 = ipv4.NewPacketConn(natt4)
	}
	if natt6 != nil {
		t.udp6 = ipv6.NewPacketConn(natt6)
	}
	if raw4 != nil {
		t.raw4 = ipv4.NewPacketConn(raw4)
	}
	if raw6 != nil {
		t.raw6 = ipv6.NewPacketConn(raw6)
	}
	return t
}

func (t *linuxTransport) Prepare(p *Path) {
	remote := p.Remote.Addr().Unmap()
	if remote.Is4() {
		cm := &ipv4.ControlMessage{IfIndex: p.Ifindex}
		if l := p.Local.Addr(); l.IsValid() && !l.IsUnspecified() {
			cm.Src = l.Unmap().AsSlice()
		}
		p.oob = cm.Marshal()
	} else {
		cm := &ipv6.ControlMessage{IfIndex: p.Ifindex}
		if l := p.Local.Addr(); l.IsValid() && !l.IsUnspecified() {
			cm.Src = l.AsSlice()
		}
		p.oob = cm.Marshal()
	}
	if p.Encap {
		p.addr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, p.Remote.Port()))
	} else {
		p.addr = &net.IPAddr{IP: remote.AsSlice()}
	}
}

func (t *linuxTransport) Send(pkts []Packet) error {
	for i := range t.m4 {
		t.m4[i] = t.m4[i][:0]
		t.m6[i] = t.m6[i][:0]
	}
	for _, p := range pkts {
		k := 1
		if p.Path.Encap {
			k = 0
		}
		if p.Path.Remote.Addr().Unmap().Is4() {
			t.m4[k] = add4(t.m4[k], p)
		} else {
			t.m6[k] = add6(t.m6[k], p)
		}
	}
	var errs error
	for k, c := range []*ipv4.PacketConn{t.udp4, t.raw4} {
		errs = errors.Join(errs, writeAll4(c, t.m4[k]))
	}
	for k, c := range []*ipv6.PacketConn{t.udp6, t.raw6} {
		errs = errors.Join(errs, writeAll6(c, t.m6[k]))
	}
	return errs
}

// add4 and add6 append a message for p, reusing the slice's earlier
// elements (and their one-element Buffers) so a batch does not allocate.
func add4(ms []ipv4.Message, p Packet) []ipv4.Message {
	if len(ms) < cap(ms) {
		ms = ms[:len(ms)+1]
	} else {
		ms = append(ms, ipv4.Message{})
	}
	m := &ms[len(ms)-1]
	if len(m.Buffers) != 1 {
		m.Buffers = make([][]byte, 1)
	}
	m.Buffers[0], m.OOB, m.Addr = p.Data, p.Path.oob, p.Path.addr
	return ms
}

func add6(ms []ipv6.Message, p Packet) []ipv6.Message {
	if len(ms) < cap(ms) {
		ms = ms[:len(ms)+1]
	} else {
		ms = append(ms, ipv6.Message{})
	}
	m := &ms[len(ms)-1]
	if len(m.Buffers) != 1 {
		m.Buffers = make([][]byte, 1)
	}
	m.Buffers[0], m.OOB, m.Addr = p.Data, p.Path.oob, p.Path.addr
	return ms
}

func writeAll4(c *ipv4.PacketConn, ms []ipv4.Message) error {
	if len(ms) == 0 {
		return nil
	}
	if c == nil {
		return errors.New("no IPv4 socket for ESP")
	}
	for len(ms) > 0 {
		n, err := c.WriteBatch(ms, 0)
		if err != nil {
			// Skip the packet that failed (an unreachable path must not
			// stall the rest of the batch).
			ms = ms[min(len(ms), n+1):]
			if len(ms) == 0 {
				return err
			}
			continue
		}
		ms = ms[n:]
	}
	return nil
}

func writeAll6(c *ipv6.PacketConn, ms []ipv6.Message) error {
	if len(ms) == 0 {
		return nil
	}
	if c == nil {
		return errors.New("no IPv6 socket for ESP")
	}
	for len(ms) > 0 {
		n, err := c.WriteBatch(ms, 0)
		if err != nil {
			ms = ms[min(len(ms), n+1):]
			if len(ms) == 0 {
				return err
			}
			continue
		}
		ms = ms[n:]
	}
	return nil
}
