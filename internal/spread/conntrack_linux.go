package spread

import (
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Forget deletes the conntrack entries of the flows whose replies go to
// addr: those given to the VPN with that inner address (and those sent
// from it). Called when that VPN is gone for good (deleted, not moved):
// the next packet of such a flow is a new flow to conntrack and is given
// one of the VPNs left. That re-pins UDP flows (DNS, QUIC, which
// migrates); a TCP connection cannot survive a change of its address,
// and its peer resets it at once instead of after timeouts.
func Forget(addr netip.Addr) (uint, error) {
	f := &netlink.ConntrackFilter{}
	if err := f.AddIP(netlink.ConntrackReplyDstIP, addr.AsSlice()); err != nil {
		return 0, err
	}
	fam := netlink.InetFamily(unix.AF_INET)
	if addr.Is6() {
		fam = unix.AF_INET6
	}
	return netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f)
}
