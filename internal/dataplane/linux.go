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
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
)

// Defaults for the Linux data plane (the firewall mark and routing table
// are ipsec.DefaultMark and ipsec.DefaultTable, shared with the kernel's).
const (
	DefaultMTU   = 1400
	DefaultTUN   = "mifike0"
	rulePriority = 0x6d66
)

// LinuxConfig configures the Linux data plane.
type LinuxConfig struct {
	TUNName string // default DefaultTUN
	MTU     int    // default DefaultMTU
	Mark    uint32 // default ipsec.DefaultMark
	Table   int    // default ipsec.DefaultTable
	// NATT finds the daemon's socket on the NAT-T port for a local
	// address (bound to it, or to the wildcard): UDP-encapsulated ESP
	// (RFC 3948) leaves through it, so it shares the IKE SA's port pair
	// and NAT mapping.
	NATT func(local netip.Addr) *net.UDPConn
	// TCP sends an ESP packet in the TCP stream from local to remote
	// (RFC 9329 §3.2: conn.TCP.SendESP), for SAs on a TCP path; nil
	// drops them.
	TCP          func(pkt []byte, local, remote netip.AddrPort) error
	Log          *slog.Logger
	OnLimit      func(inSPI uint32, hard bool)
	OnUnknownSPI func(from netip.Addr, spi uint32)   // Config.OnUnknownSPI
	OnAcquire    func(trap int, src, dst netip.Addr) // Config.OnAcquire
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
		cfg.Mark = ipsec.DefaultMark
	}
	if cfg.Table == 0 {
		cfg.Table = ipsec.DefaultTable
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
	l.tr = newLinuxTransport(cfg.NATT, l.raw4, l.raw6)
	l.tr.tcp = cfg.TCP
	l.Plane = New(Config{TUN: dev, Transport: l.tr, Log: cfg.Log, OnLimit: cfg.OnLimit, OnUnknownSPI: cfg.OnUnknownSPI, OnAcquire: cfg.OnAcquire, ReplayWindow: cfg.ReplayWindow})
	if l.routes, err = newRoutes(name, cfg.Table, cfg.Mark); err != nil {
		return fail(err)
	}
	return l, nil
}

var (
	_ ipsec.DataPlane = (*Linux)(nil)
	_ ipsec.ESPInUDP  = (*Linux)(nil)
)

// NewESPReceiver returns a receiver for ESP in UDP that one of the
// daemon's NAT-T socket readers passes on (RFC 3948).
func (l *Linux) NewESPReceiver() ipsec.ESPReceiver { return l.NewReceiver() }

// ESPHeadroom is Headroom.
func (l *Linux) ESPHeadroom() int { return Headroom }

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
func (l *Linux) Install(sa ipsec.ChildSA) error {
	if err := l.Plane.Install(sa); err != nil {
		return err
	}
	return l.routes.addChild(sa, sa.VirtualIPs)
}

// SetTraps installs the traps (Plane.SetTraps) and routes their remote
// selectors into the TUN device, where their first packet finds no SA
// and asks for one.
func (l *Linux) SetTraps(traps []Trap) error {
	l.Plane.SetTraps(traps)
	var prefixes []netip.Prefix
	for _, t := range traps {
		for _, s := range t.Remote {
			prefixes = append(prefixes, ts.Prefixes(s)...)
		}
	}
	return l.routes.setTraps(prefixes)
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

// maxRawInbound is the largest packet the raw ESP sockets take (with its
// IPv4 header): ESP carrying an inner packet of at most 9000 octets
// (tun.mtu's cap, a jumbo-frame path) fits, as in the daemon's NAT-T
// sockets (strongSwan's charon.max_packet, 10000). A larger one arrives
// truncated (MSG_TRUNC) and is dropped as such; 64 KiB buffers held 8 MB
// for the two sockets (issue 13).
const maxRawInbound = 10000

// readRaw reads plain ESP (IP protocol 50) in batches, allocating
// nothing per packet (BatchReader).
func (l *Linux) readRaw(c *net.IPConn) {
	v6 := c.LocalAddr().(*net.IPAddr).IP.To4() == nil
	const batch = 64
	r, err := NewBatchReader(c, 0, batch, Headroom, maxRawInbound)
	if err != nil {
		l.log.Error("cannot read plain ESP", "err", err)
		return
	}
	in := make([]Inbound, batch)
	rx := l.NewReceiver()
	for {
		n, err := r.Read()
		if err != nil {
			if Closed(err) {
				return
			}
			continue
		}
		k := 0
		for i := range n {
			b, local, remote, truncated := r.Datagram(i)
			if truncated {
				l.drops.add(DropTruncated)
				continue
			}
			if v6 {
				if !remote.IsValid() {
					continue
				}
				in[k] = Inbound{Buf: r.Buf(i), Off: Headroom, N: len(b), Remote: netip.AddrPortFrom(remote.Addr(), 0),
					Local: netip.AddrPortFrom(local.Addr(), 0)}
			} else {
				// IPv4 raw sockets deliver the IP header too.
				if len(b) < 20 || int(b[0]&0x0f)*4 > len(b) {
					continue
				}
				ihl := int(b[0]&0x0f) * 4
				in[k] = Inbound{Buf: r.Buf(i), Off: Headroom + ihl, N: len(b) - ihl,
					Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[12:16])), 0),
					Local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[16:20])), 0)}
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
	raw4, raw6 sender
	natt       func(local netip.Addr) *net.UDPConn
	udp        map[*net.UDPConn]*sender // made by Prepare
	active     []*sender                // used by the current Send
	none       sender                   // no socket: its packets fail
	// tcp sends into a TCP stream (LinuxConfig.TCP); the stream
	// frames and queues each packet, so there is no batch to build.
	tcp func(pkt []byte, local, remote netip.AddrPort) error
}

var errNoTCP = errors.New("dataplane: no TCP transport for an SA on a TCP path")

// tcpPath marks a path whose packets go to linuxTransport.tcp.
type tcpPath struct{}

// batchWriter is ipv4.PacketConn or ipv6.PacketConn: their Message types
// are one (socket.Message).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// Kernel limits on one UDP_SEGMENT send (udp(7)): the datagrams, and the
// payload of the IP packet that carries them before segmentation.
const (
	maxSegments    = 64
	maxGSOPayload4 = 0xffff - 20 - 8
	maxGSOPayload6 = 0xffff - 8
)

// sender queues the messages for one socket. On a UDP socket that
// supports it, consecutive packets of one path leave as one UDP_SEGMENT
// send (UDP GSO): a train of equal-sized datagrams, the last one maybe
// shorter, that crosses the IP stack once instead of once per datagram.
// That is most of a fast sender's packets: a TUN read delivers a TCP
// segmentation burst, which seals into ESP packets of one size.
type sender struct {
	active     bool        // in the current Send
	conn       batchWriter // nil: no such socket
	gso        bool
	maxPayload int

	ms    []ipv4.Message
	paths []*Path  // each message's path
	oob   [][]byte // each message's packet info plus UDP_SEGMENT, when it has several datagrams
	// The train being built in the last message.
	seg, total int
	short      bool // a shorter datagram ended it
}

func newLinuxTransport(natt func(netip.Addr) *net.UDPConn, raw4, raw6 *net.IPConn) *linuxTransport {
	t := &linuxTransport{natt: natt, udp: map[*net.UDPConn]*sender{}}
	if raw4 != nil {
		t.raw4.conn = ipv4.NewPacketConn(raw4)
	}
	if raw6 != nil {
		t.raw6.conn = ipv6.NewPacketConn(raw6)
	}
	return t
}

// supportsGSO: the kernel knows UDP_SEGMENT (Linux 4.18).
func supportsGSO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); err != nil {
		return false
	}
	return serr == nil
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
	if p.TCP {
		p.out = tcpPath{}
		return
	}
	if p.Encap {
		p.addr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, p.Remote.Port()))
	} else {
		p.addr = &net.IPAddr{IP: remote.AsSlice()}
	}
	switch {
	case !p.Encap && remote.Is4():
		p.out = &t.raw4
	case !p.Encap:
		p.out = &t.raw6
	default:
		var c *net.UDPConn
		if t.natt != nil {
			c = t.natt(p.Local.Addr().Unmap())
		}
		if c == nil {
			p.out = &t.none
			return
		}
		s := t.udp[c]
		if s == nil {
			s = &sender{gso: supportsGSO(c), maxPayload: maxGSOPayload4}
			if remote.Is4() {
				s.conn = ipv4.NewPacketConn(c)
			} else {
				s.conn, s.maxPayload = ipv6.NewPacketConn(c), maxGSOPayload6
			}
			t.udp[c] = s
		}
		p.out = s
	}
}

func (t *linuxTransport) Send(pkts []Packet) error {
	for _, s := range t.active {
		s.reset()
		s.active = false
	}
	t.active = t.active[:0]
	var errs error // the first error of the TCP packets, then the senders'
	for _, p := range pkts {
		if _, ok := p.Path.out.(tcpPath); ok {
			err := errNoTCP
			if t.tcp != nil {
				err = t.tcp(p.Data, p.Path.Local, p.Path.Remote)
			}
			if errs == nil {
				errs = err
			}
			continue
		}
		s, _ := p.Path.out.(*sender)
		if s == nil {
			s = &t.none
		}
		if !s.active {
			s.active = true
			t.active = append(t.active, s)
		}
		s.add(p)
	}
	for _, s := range t.active {
		errs = errors.Join(errs, s.flush())
	}
	return errs
}

func (s *sender) reset() {
	s.ms, s.paths = s.ms[:0], s.paths[:0]
}

// add queues p: into the last message's train when it fits, else as a
// new message. Messages, their Buffers and scratch are reused, so a
// steady stream does not allocate.
func (s *sender) add(p Packet) {
	n := len(p.Data)
	if k := len(s.ms) - 1; s.gso && k >= 0 && s.paths[k] == p.Path && !s.short && n <= s.seg &&
		len(s.ms[k].Buffers) < maxSegments && s.total+n <= s.maxPayload {
		s.ms[k].Buffers = append(s.ms[k].Buffers, p.Data)
		s.total += n
		s.short = n < s.seg
		return
	}
	s.endTrain()
	if len(s.ms) < cap(s.ms) {
		s.ms = s.ms[:len(s.ms)+1]
	} else {
		s.ms = append(s.ms, ipv4.Message{})
	}
	m := &s.ms[len(s.ms)-1]
	m.Buffers = append(m.Buffers[:0], p.Data)
	m.OOB, m.Addr = p.Path.oob, p.Path.addr
	s.paths = append(s.paths, p.Path)
	s.seg, s.total, s.short = n, n, false
}

// endTrain gives the last message, if it carries several datagrams, the
// UDP_SEGMENT control message with their size.
func (s *sender) endTrain() {
	k := len(s.ms) - 1
	if k < 0 || len(s.ms[k].Buffers) < 2 {
		return
	}
	for len(s.oob) <= k {
		s.oob = append(s.oob, nil)
	}
	o := append(s.oob[k][:0], s.paths[k].oob...)
	h := unix.Cmsghdr{Level: unix.SOL_UDP, Type: unix.UDP_SEGMENT}
	h.SetLen(unix.CmsgLen(2))
	o = append(o, unsafe.Slice((*byte)(unsafe.Pointer(&h)), unix.SizeofCmsghdr)...)
	o = binary.NativeEndian.AppendUint16(o, uint16(s.seg))
	var pad [8]byte
	o = append(o, pad[:unix.CmsgSpace(2)-unix.CmsgLen(2)]...)
	s.oob[k], s.ms[k].OOB = o, o
}

// flush sends the queued messages. A message that fails is skipped so an
// unreachable path does not stall the rest; a train the kernel refuses
// goes again as single datagrams (EIO: the device cannot checksum, so
// the socket stops building trains; EINVAL: a datagram exceeds the path
// MTU, which GSO does not fragment).
func (s *sender) flush() error {
	if len(s.ms) == 0 {
		return nil
	}
	if s.conn == nil {
		return errors.New("no socket for this ESP path")
	}
	s.endTrain()
	var errs error
	for i := 0; i < len(s.ms); {
		n, err := s.conn.WriteBatch(s.ms[i:], 0)
		if err == nil {
			i += n
			continue
		}
		// sendmmsg reports an error only when the first message failed
		// (n is then -1, or 0).
		i += max(n, 0)
		if i < len(s.ms) && len(s.ms[i].Buffers) > 1 {
			if errors.Is(err, unix.EIO) {
				s.gso = false
			}
			err = s.sendSingly(i)
		}
		errs = err
		i++
	}
	return errs
}

// sendSingly sends message k's datagrams one per message.
func (s *sender) sendSingly(k int) error {
	bufs := s.ms[k].Buffers
	single := make([]ipv4.Message, len(bufs)) // rare: only after a refused train
	for j, b := range bufs {
		single[j] = ipv4.Message{Buffers: [][]byte{b}, OOB: s.paths[k].oob, Addr: s.paths[k].addr}
	}
	var errs error
	for i := 0; i < len(single); {
		n, err := s.conn.WriteBatch(single[i:], 0)
		if err != nil {
			errs = err
			n = max(n, 0) + 1
		}
		i += n
	}
	return errs
}

// Owns reports the data plane's own device (the TUN device), whose
// addresses are virtual IPs.
func (l *Linux) Owns(ifname string) bool { return ifname == l.name }
