package ike

import (
	"net/netip"

	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// configPayload is the configuration payload of RFC 7296 §2.19 in
// IKE_AUTH: the initiator asks for virtual IPs (and DNS servers), the
// responder assigns them from the connection's pools. A clone shares its
// parent's until a CP request in a CREATE_CHILD_SA gets it its own (RFC
// 7791 App. A.3, createchild.go).
type configPayload struct{}

func (configPayload) String() string { return "configuration payload" }

func (configPayload) authRequest(sa *ikeSA, x *authExchange) []wire.Payload {
	c := sa.conn
	if !c.RequestVIP4 && !c.RequestVIP6 {
		return nil
	}
	x.cpAsked = true
	return []wire.Payload{vipRequest(c)}
}

func (configPayload) respondAuth(sa *ikeSA, x *authExchange) []wire.Payload {
	cp, ok := wire.First[*wire.CP](x.first.payloads)
	if !ok || cp.CFGType != wire.CFGRequest {
		return nil
	}
	if x.eap != nil && x.eap.answer.VirtualIP.IsValid() {
		// The EAP backend chose the address (RADIUS Framed-IP-Address).
		reply, nt := sa.assignFramedIP(x.eap.answer.VirtualIP, sa.peerIdentity())
		x.childRefused = nt
		if reply == nil {
			return nil
		}
		return []wire.Payload{reply}
	}
	reply, nt := sa.assignVIPs(cp, sa.peerIdentity())
	// Without the address its traffic selectors would be narrowed to,
	// the first Child SA cannot be made either.
	x.childRefused = nt
	if reply == nil {
		return nil
	}
	return []wire.Payload{reply}
}

func (configPayload) readAuthResponse(sa *ikeSA, x *authExchange, m *message) {
	if cp, ok := wire.First[*wire.CP](m.payloads); ok && x.cpAsked && cp.CFGType == wire.CFGReply {
		sa.localVIPs = cpAddrs(cp)
	}
}

// assignFramedIP gives the peer addr, which the EAP backend chose. An
// address inside one of our pools is leased there, so no other peer gets
// it; one outside them is the backend's to manage (as strongSwan's
// eap-radius does).
func (sa *ikeSA) assignFramedIP(addr netip.Addr, owner string) (*wire.CP, wire.NotifyType) {
	addr = addr.Unmap()
	for _, p := range sa.conn.Pools {
		if !p.Prefix.Contains(addr) {
			continue
		}
		if err := p.Claim(addr, owner); err != nil {
			sa.e.log.Warn("cannot assign the EAP backend's virtual IP", "ike", sa.id, "addr", addr, "err", err)
			return nil, wire.NotifyInternalAddressFailure
		}
		sa.family.leases = append(sa.family.leases, poolLease{pool: p, addr: addr})
		break
	}
	sa.remoteVIPs = append(sa.remoteVIPs, addr)
	if addr.Is4() {
		return &wire.CP{CFGType: wire.CFGReply, Attributes: []wire.CPAttribute{wire.CPAddr(wire.CPInternalIP4Address, addr)}}, 0
	}
	return &wire.CP{CFGType: wire.CFGReply, Attributes: []wire.CPAttribute{wire.CPPrefix6(wire.CPInternalIP6Address, netip.PrefixFrom(addr, 128))}}, 0
}

// vipRequest asks for the virtual IPs (and DNS servers) c wants (§2.19).
func vipRequest(c *Connection) *wire.CP {
	cp := &wire.CP{CFGType: wire.CFGRequest}
	if c.RequestVIP4 {
		cp.Attributes = append(cp.Attributes, wire.CPAttribute{Type: wire.CPInternalIP4Address}, wire.CPAttribute{Type: wire.CPInternalIP4DNS})
	}
	if c.RequestVIP6 {
		cp.Attributes = append(cp.Attributes, wire.CPAttribute{Type: wire.CPInternalIP6Address}, wire.CPAttribute{Type: wire.CPInternalIP6DNS})
	}
	return cp
}

// wildcardTS is what a Child SA proposes for our side while it waits for
// a virtual IP: the whole space, which the responder narrows to it.
func wildcardTS(c *Connection) []wire.Selector {
	var l []wire.Selector
	if c.RequestVIP4 {
		l = append(l, ts.FromPrefix(netip.MustParsePrefix("0.0.0.0/0")))
	}
	if c.RequestVIP6 {
		l = append(l, ts.FromPrefix(netip.MustParsePrefix("::/0")))
	}
	return l
}

// cpAddrs are the addresses a CFG_REPLY assigns.
func cpAddrs(cp *wire.CP) []netip.Addr {
	var out []netip.Addr
	for _, a := range cp.Attributes {
		if a.Type == wire.CPInternalIP4Address {
			if ip, ok := a.Addr(); ok {
				out = append(out, ip)
			}
		} else if a.Type == wire.CPInternalIP6Address {
			if p, ok := a.Prefix6(); ok {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}

// vipReply repeats addresses already assigned.
func vipReply(vips []netip.Addr) *wire.CP {
	reply := &wire.CP{CFGType: wire.CFGReply}
	for _, a := range vips {
		if a.Is4() {
			reply.Attributes = append(reply.Attributes, wire.CPAddr(wire.CPInternalIP4Address, a))
		} else {
			reply.Attributes = append(reply.Attributes, wire.CPPrefix6(wire.CPInternalIP6Address, netip.PrefixFrom(a, 128)))
		}
	}
	return reply
}

// assignVIPs answers a CP request from the connection's pools (§2.19).
func (sa *ikeSA) assignVIPs(req *wire.CP, owner string) (*wire.CP, wire.NotifyType) {
	c := sa.conn
	if len(c.Pools) == 0 {
		return nil, 0 // no pools: the request is ignored, as strongSwan does
	}
	want4, want6 := false, false
	for _, a := range req.Attributes {
		want4 = want4 || a.Type == wire.CPInternalIP4Address
		want6 = want6 || a.Type == wire.CPInternalIP6Address
	}
	reply := &wire.CP{CFGType: wire.CFGReply}
	for _, p := range c.Pools {
		is4 := p.Prefix.Addr().Is4()
		if (is4 && !want4) || (!is4 && !want6) {
			continue
		}
		addr, err := p.Acquire(owner)
		if err != nil {
			sa.e.log.Warn("cannot assign a virtual IP", "ike", sa.id, "err", err)
			return nil, wire.NotifyInternalAddressFailure
		}
		sa.family.leases = append(sa.family.leases, poolLease{pool: p, addr: addr})
		sa.remoteVIPs = append(sa.remoteVIPs, addr)
		if is4 {
			reply.Attributes = append(reply.Attributes, wire.CPAddr(wire.CPInternalIP4Address, addr))
			for _, d := range p.DNS {
				if d.Is4() {
					reply.Attributes = append(reply.Attributes, wire.CPAddr(wire.CPInternalIP4DNS, d))
				}
			}
		} else {
			reply.Attributes = append(reply.Attributes, wire.CPPrefix6(wire.CPInternalIP6Address, netip.PrefixFrom(addr, 128)))
			for _, d := range p.DNS {
				if d.Is6() {
					reply.Attributes = append(reply.Attributes, wire.CPAddr(wire.CPInternalIP6DNS, d))
				}
			}
		}
	}
	if len(reply.Attributes) == 0 {
		return nil, wire.NotifyInternalAddressFailure
	}
	return reply, 0
}
