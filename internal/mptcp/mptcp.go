//go:build linux

// Package mptcp drives Linux's in-kernel MPTCP path manager (RFC 8684):
// its endpoints (the addresses it opens subflows from, `ip mptcp
// endpoint`) and its per-namespace limits (`ip mptcp limits`), over the
// generic netlink family "mptcp_pm".
//
// vishvananda/netlink (already a dependency) has no MPTCP calls, but it
// has generic netlink: the family's ID (GenlFamilyGet) and requests with
// attributes (package nl). The few messages the path manager needs are
// built here on those, after include/uapi/linux/mptcp.h, rather than
// taking another netlink library (mdlayher/genetlink is neither in
// go.mod nor in the module set this project builds from).
package mptcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The generic netlink interface (include/uapi/linux/mptcp.h).
const (
	familyName = "mptcp_pm"
	version    = 1

	cmdAddAddr   = 1
	cmdDelAddr   = 2
	cmdGetAddr   = 3
	cmdSetLimits = 5
	cmdGetLimits = 6
	cmdSetFlags  = 7

	attrAddr        = 1 // nested address
	attrRcvAddAddrs = 2 // u32
	attrSubflows    = 3 // u32

	addrAttrFamily = 1 // u16
	addrAttrID     = 2 // u8
	addrAttrAddr4  = 3 // struct in_addr
	addrAttrAddr6  = 4 // struct in6_addr
	addrAttrFlags  = 6 // u32
	addrAttrIfIdx  = 7 // s32
)

// Endpoint flags (MPTCP_PM_ADDR_FLAG_*).
const (
	FlagSignal   uint32 = 1 << 0
	FlagSubflow  uint32 = 1 << 1
	FlagBackup   uint32 = 1 << 2
	FlagFullmesh uint32 = 1 << 3
	FlagImplicit uint32 = 1 << 4
)

// Endpoint is one entry of the path manager's table.
type Endpoint struct {
	ID      uint8
	Addr    netip.Addr
	Flags   uint32
	IfIndex int
}

func (e Endpoint) String() string {
	var f []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{FlagSignal, "signal"}, {FlagSubflow, "subflow"}, {FlagBackup, "backup"}, {FlagFullmesh, "fullmesh"}, {FlagImplicit, "implicit"}} {
		if e.Flags&x.bit != 0 {
			f = append(f, x.name)
		}
	}
	return fmt.Sprintf("%v id %d %s", e.Addr, e.ID, strings.Join(f, " "))
}

// Limits are the namespace's limits: extra subflows per connection, and
// addresses announced by the peer (ADD_ADDR) that a connection uses.
type Limits struct {
	Subflows, AddAddrAccepted uint32
}

// PM is the path manager of the calling thread's network namespace.
type PM struct {
	family uint16
}

// ErrUnavailable says the kernel has no MPTCP path manager (no
// CONFIG_MPTCP, or net.mptcp.enabled is 0 in this namespace).
var ErrUnavailable = errors.New("mptcp: the kernel has no MPTCP path manager (CONFIG_MPTCP); on Linux 5.6 or later, sysctl net.mptcp.enabled=1")

// Open finds the path manager's netlink family.
func Open() (*PM, error) {
	f, err := netlink.GenlFamilyGet(familyName)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil, ErrUnavailable
		}
		return nil, fmt.Errorf("mptcp: finding the %s netlink family: %w", familyName, err)
	}
	return &PM{family: f.ID}, nil
}

// Enabled reads net.mptcp.enabled of the calling process's namespace:
// with 0, sockets asking for MPTCP get plain TCP.
func Enabled() (bool, error) {
	b, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

func (p *PM) request(cmd uint8, flags int, attrs ...*nl.RtAttr) ([][]byte, error) {
	req := nl.NewNetlinkRequest(int(p.family), flags)
	req.AddData(&nl.Genlmsg{Command: cmd, Version: version})
	for _, a := range attrs {
		req.AddData(a)
	}
	return req.Execute(unix.NETLINK_GENERIC, 0)
}

// addrAttr is the nested address of an endpoint: what the kernel reads
// for add, delete and flag changes (an ID of 0 is left out: the kernel
// picks one on add).
func addrAttr(e Endpoint) *nl.RtAttr {
	a := nl.NewRtAttr(attrAddr|int(nl.NLA_F_NESTED), nil)
	if e.Addr.Is4() {
		a.AddRtAttr(addrAttrFamily, nl.Uint16Attr(unix.AF_INET))
		b := e.Addr.As4()
		a.AddRtAttr(addrAttrAddr4, b[:])
	} else if e.Addr.IsValid() {
		a.AddRtAttr(addrAttrFamily, nl.Uint16Attr(unix.AF_INET6))
		b := e.Addr.As16()
		a.AddRtAttr(addrAttrAddr6, b[:])
	}
	if e.ID != 0 {
		a.AddRtAttr(addrAttrID, nl.Uint8Attr(e.ID))
	}
	a.AddRtAttr(addrAttrFlags, nl.Uint32Attr(e.Flags))
	if e.IfIndex != 0 {
		a.AddRtAttr(addrAttrIfIdx, nl.Uint32Attr(uint32(e.IfIndex)))
	}
	return a
}

// Add adds an endpoint (ip mptcp endpoint add ADDR FLAGS); the kernel
// picks its ID. The in-kernel path manager then opens a subflow from it
// on every MPTCP connection already established, if the limits allow.
func (p *PM) Add(addr netip.Addr, flags uint32) error {
	_, err := p.request(cmdAddAddr, unix.NLM_F_ACK, addrAttr(Endpoint{Addr: addr, Flags: flags}))
	if err != nil {
		return fmt.Errorf("mptcp: adding endpoint %v: %w", addr, err)
	}
	return nil
}

// Delete removes endpoint e (by its ID): the kernel closes the subflows
// from its address and tells the peers (REMOVE_ADDR); their data goes
// on over the connection's other subflows.
func (p *PM) Delete(e Endpoint) error {
	_, err := p.request(cmdDelAddr, unix.NLM_F_ACK, addrAttr(Endpoint{ID: e.ID, Addr: e.Addr}))
	if err != nil {
		return fmt.Errorf("mptcp: deleting endpoint %v: %w", e, err)
	}
	return nil
}

// SetBackup changes endpoint e's backup flag (ip mptcp endpoint change
// id N [no]backup); the kernel tells the peers of the subflows from it
// (MP_PRIO, RFC 8684 §3.3.8).
func (p *PM) SetBackup(e Endpoint, backup bool) error {
	flags := uint32(0)
	if backup {
		flags = FlagBackup
	}
	_, err := p.request(cmdSetFlags, unix.NLM_F_ACK, addrAttr(Endpoint{ID: e.ID, Addr: e.Addr, Flags: flags}))
	if err != nil {
		return fmt.Errorf("mptcp: changing endpoint %v: %w", e, err)
	}
	return nil
}

// Endpoints lists the table (ip mptcp endpoint show).
func (p *PM) Endpoints() ([]Endpoint, error) {
	msgs, err := p.request(cmdGetAddr, unix.NLM_F_DUMP)
	if err != nil {
		return nil, fmt.Errorf("mptcp: listing endpoints: %w", err)
	}
	var out []Endpoint
	for _, m := range msgs {
		attrs, err := parse(m)
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			if a.Attr.Type&nl.NLA_TYPE_MASK != attrAddr {
				continue
			}
			e, err := parseEndpoint(a.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func parse(m []byte) ([]syscall.NetlinkRouteAttr, error) {
	if len(m) < nl.SizeofGenlmsg {
		return nil, errors.New("mptcp: short generic netlink message")
	}
	return nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
}

func parseEndpoint(b []byte) (Endpoint, error) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return Endpoint{}, fmt.Errorf("mptcp: endpoint: %w", err)
	}
	var e Endpoint
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case addrAttrID:
			if len(a.Value) >= 1 {
				e.ID = a.Value[0]
			}
		case addrAttrAddr4:
			if len(a.Value) == 4 {
				e.Addr = netip.AddrFrom4([4]byte(a.Value))
			}
		case addrAttrAddr6:
			if len(a.Value) == 16 {
				e.Addr = netip.AddrFrom16([16]byte(a.Value))
			}
		case addrAttrFlags:
			if len(a.Value) == 4 {
				e.Flags = binary.NativeEndian.Uint32(a.Value)
			}
		case addrAttrIfIdx:
			if len(a.Value) == 4 {
				e.IfIndex = int(int32(binary.NativeEndian.Uint32(a.Value)))
			}
		}
	}
	return e, nil
}

// Limits reads the namespace's limits.
func (p *PM) Limits() (Limits, error) {
	msgs, err := p.request(cmdGetLimits, 0)
	if err != nil {
		return Limits{}, fmt.Errorf("mptcp: reading the limits: %w", err)
	}
	var l Limits
	for _, m := range msgs {
		attrs, err := parse(m)
		if err != nil {
			return Limits{}, err
		}
		for _, a := range attrs {
			if len(a.Value) != 4 {
				continue
			}
			switch a.Attr.Type & nl.NLA_TYPE_MASK {
			case attrSubflows:
				l.Subflows = binary.NativeEndian.Uint32(a.Value)
			case attrRcvAddAddrs:
				l.AddAddrAccepted = binary.NativeEndian.Uint32(a.Value)
			}
		}
	}
	return l, nil
}

// SetLimits sets the namespace's limits; a negative value leaves that
// one as it is.
func (p *PM) SetLimits(subflows, addAddrAccepted int) error {
	var attrs []*nl.RtAttr
	if subflows >= 0 {
		attrs = append(attrs, nl.NewRtAttr(attrSubflows, nl.Uint32Attr(uint32(subflows))))
	}
	if addAddrAccepted >= 0 {
		attrs = append(attrs, nl.NewRtAttr(attrRcvAddAddrs, nl.Uint32Attr(uint32(addAddrAccepted))))
	}
	if len(attrs) == 0 {
		return nil
	}
	if _, err := p.request(cmdSetLimits, unix.NLM_F_ACK, attrs...); err != nil {
		return fmt.Errorf("mptcp: setting the limits: %w", err)
	}
	return nil
}
