//go:build linux

package xfrm

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Probe reports whether this kernel can carry mifike's ESP: it opens
// NETLINK_XFRM, installs and removes an AES-GCM tunnel-mode ESP state,
// and creates and removes an XFRM interface. The error names what is
// missing. data_plane: auto picks the kernel when it is nil.
func Probe() error {
	c, err := dial(0)
	if err != nil {
		return err
	}
	defer c.close()
	return probe(c)
}

// ProbeTCP says whether the kernel's ESP takes TCP encapsulation
// (RFC 9329; esp4 built with CONFIG_INET_ESPINTCP): it installs and
// removes a test state with it. The espintcp ULP itself is the
// transport's to probe (conn.ProbeKernelESP).
func ProbeTCP() error {
	c, err := dial(0)
	if err != nil {
		return err
	}
	defer c.close()
	s := &State{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SPI: probeSPI + 1,
		Reqid: probeReqid, Mode: modeTunnel, ReplayWindow: 32, Encap: true, TCP: true, EncapSrc: 4500, EncapDst: 4500,
		AEAD: &Algo{Name: "rfc4106(gcm(aes))", Key: make([]byte, 20), ICVBits: 128}}
	b, err := s.newSA()
	if err != nil {
		return err
	}
	c.request("deleting state", msgDelSA, 0, saID(s.Src, s.Dst, s.SPI), false) // a leftover probe
	if _, err := c.request("adding a test ESP-in-TCP state", msgNewSA, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b, false); err != nil {
		return fmt.Errorf("xfrm: the kernel's ESP cannot be carried in TCP (esp4 without CONFIG_INET_ESPINTCP): %w", err)
	}
	c.request("deleting state", msgDelSA, 0, saID(s.Src, s.Dst, s.SPI), false)
	return nil
}

// Bypass gives a socket the kernel data plane's IPsec bypass (see
// Config.Sockets) and mark: for the TCP streams of RFC 9329, whose own
// segments must not enter a tunnel. fd is a socket before it connects
// or listens (a net.Dialer's or net.ListenConfig's Control).
func Bypass(fd uintptr, mark uint32) error {
	if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		return fmt.Errorf("xfrm: marking our TCP socket: %w", err)
	}
	return bypassFD(int(fd))
}

func probe(c *conn) error {
	s := &State{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SPI: probeSPI,
		Reqid: probeReqid, Mode: modeTunnel, ReplayWindow: 32,
		AEAD: &Algo{Name: "rfc4106(gcm(aes))", Key: make([]byte, 20), ICVBits: 128}}
	b, err := s.newSA()
	if err != nil {
		return err
	}
	c.request("deleting state", msgDelSA, 0, saID(s.Src, s.Dst, s.SPI), false) // a leftover probe
	if _, err := c.request("adding a test ESP state", msgNewSA, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b, false); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("xfrm: %w: installing IPsec SAs needs CAP_NET_ADMIN (run as root)", err)
		}
		return fmt.Errorf("xfrm: the kernel cannot carry ESP: %w", explainState(s, err))
	}
	c.request("deleting state", msgDelSA, 0, saID(s.Src, s.Dst, s.SPI), false)

	name := DevicePrefix + "probe"
	l := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: name}, Ifid: ifIDBase + 0xffff}
	netlink.LinkDel(l)
	if err := netlink.LinkAdd(l); err != nil {
		return explainLink(name, err)
	}
	netlink.LinkDel(l)
	return nil
}

// bypass gives one of our sockets a per-socket policy that lets its
// packets (IKE) pass without IPsec both ways, whatever the SPD says
// (as strongSwan's kernel-netlink does; ip(7) IP_XFRM_POLICY).
func bypass(s syscall.Conn) error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) { serr = bypassFD(int(fd)) })
	return errors.Join(err, serr)
}

func bypassFD(fd int) error {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	level, opt, fam := unix.IPPROTO_IP, unix.IP_XFRM_POLICY, uint16(unix.AF_INET)
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		level, opt, fam = unix.IPPROTO_IPV6, unix.IPV6_XFRM_POLICY, unix.AF_INET6
	}
	for _, dir := range []uint8{dirIn, dirOut} {
		p := make([]byte, sizePolicyInfo)
		ne.PutUint16(p[40:], fam)
		putLifetime(p[56:], 0, 0, 0, 0)
		p[160], p[161] = dir, actionAllow
		if err := unix.SetsockoptString(fd, level, opt, string(p)); err != nil {
			return fmt.Errorf("xfrm: IPsec bypass policy on our IKE socket: %w", err)
		}
	}
	return nil
}

// udpEncap turns on ESP-in-UDP decapsulation on a NAT-T socket
// (udp(7) UDP_ENCAP; RFC 3948).
func udpEncap(s syscall.Conn) error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, udpEncapOption, encapESPinUDP)
	})
	if err := errors.Join(err, serr); err != nil {
		return fmt.Errorf("xfrm: UDP_ENCAP_ESPINUDP on the NAT-T socket (ESP in UDP needs it): %w", err)
	}
	return nil
}
