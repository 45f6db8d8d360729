//go:build linux

package xfrm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink/nl"

	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// acquireMsg builds XFRM_MSG_ACQUIRE as the kernel's build_acquire
// (net/xfrm/xfrm_user.c) does, out of vishvananda/netlink's mirrors of
// the uapi structures (include/uapi/linux/xfrm.h: struct
// xfrm_user_acquire is an xfrm_id, the saddr, an xfrm_selector, an
// xfrm_userpolicy_info, aalgos, ealgos, calgos and seq), so the offsets
// parseAcquire reads are checked against a second rendering of the same
// layout.
func acquireMsg(dst, src, flowSrc, flowDst string, prio uint32, seq uint32, tmpl *nl.XfrmUserTmpl, markMask uint32) []byte {
	var id nl.XfrmId
	id.Daddr.FromIP(net.ParseIP(dst))
	id.Proto = protoESP
	var saddr nl.XfrmAddress
	saddr.FromIP(net.ParseIP(src))
	var pol nl.XfrmUserpolicyInfo
	pol.Sel.Daddr.FromIP(net.ParseIP(flowDst))
	pol.Sel.Saddr.FromIP(net.ParseIP(flowSrc))
	pol.Sel.Family, pol.Sel.PrefixlenD, pol.Sel.PrefixlenS, pol.Sel.Proto = nl.FAMILY_V4, 24, 0, 1
	pol.Priority, pol.Index, pol.Dir = prio, 0x1239, dirOut
	// The larval state's selector is the packet's flow: host prefixes.
	var sel nl.XfrmSelector
	sel.Daddr.FromIP(net.ParseIP(flowDst))
	sel.Saddr.FromIP(net.ParseIP(flowSrc))
	sel.Family, sel.PrefixlenD, sel.PrefixlenS, sel.Proto = nl.FAMILY_V4, 32, 32, 1
	var b []byte
	b = append(b, id.Serialize()...)
	b = append(b, saddr.Serialize()...)
	b = append(b, sel.Serialize()...)
	b = append(b, pol.Serialize()...)
	for _, v := range []uint32{^uint32(0), ^uint32(0), ^uint32(0), seq} {
		b = binary.NativeEndian.AppendUint32(b, v)
	}
	if tmpl != nil {
		b = appendAttr(b, attrTmpl, tmpl.Serialize())
	}
	if markMask != 0 {
		m := nl.XfrmMark{Value: 0, Mask: markMask}
		b = appendAttr(b, attrMark, m.Serialize())
	}
	return b
}

func trapTmpl(peer string, reqid uint32) *nl.XfrmUserTmpl {
	var tmpl nl.XfrmUserTmpl
	tmpl.XfrmId.Daddr.FromIP(net.ParseIP(peer))
	tmpl.XfrmId.Proto = protoESP
	tmpl.Family = nl.FAMILY_V4
	tmpl.Reqid, tmpl.Mode = reqid, modeTunnel
	return &tmpl
}

// An acquire names the larval state (outer addresses, seq), the packet's
// flow, and the trap's policy and template (RFC 4301 §5.1: the SPD entry
// that wants an SA).
func TestParseAcquire(t *testing.T) {
	b := acquireMsg("203.0.113.1", "198.51.100.1", "10.1.0.5", "10.93.0.7", trapPriority+0x3e00, 0x2a, trapTmpl("203.0.113.1", reqidBase+9), trapMarkMask)
	if nl.SizeofXfrmId+nl.SizeofXfrmAddress+nl.SizeofXfrmSelector+nl.SizeofXfrmUserpolicyInfo+4*4 != sizeUserAcquire || len(b) < sizeUserAcquire {
		t.Fatalf("struct xfrm_user_acquire is not %d octets", sizeUserAcquire)
	}
	a, err := parseAcquire(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Acquire{Dst: netip.MustParseAddr("203.0.113.1"), Src: netip.MustParseAddr("198.51.100.1"), Family: 2,
		FlowSrc: netip.MustParseAddr("10.1.0.5"), FlowDst: netip.MustParseAddr("10.93.0.7"), Proto: 1,
		Priority: trapPriority + 0x3e00, Index: 0x1239, Dir: dirOut, Reqid: reqidBase + 9, Mode: modeTunnel, Seq: 0x2a,
		MarkMask: trapMarkMask}
	if a != want {
		t.Fatalf("acquire\n got %+v\nwant %+v", a, want)
	}
	// Without a template (never sent so, but bounds matter) the
	// selector's family stands in and the reqid is 0: no trap.
	a, err = parseAcquire(b[:sizeUserAcquire])
	if err != nil || a.Reqid != 0 || a.Family != 2 {
		t.Fatalf("without XFRMA_TMPL: %+v %v", a, err)
	}
	for _, n := range []int{0, 1, sizeUserAcquire - 1} {
		if _, err := parseAcquire(b[:n]); err == nil {
			t.Errorf("a %d-octet acquire was read", n)
		}
	}
	bad := bytes.Clone(b)
	binary.NativeEndian.PutUint16(bad[40+40:], 99)
	if _, err := parseAcquire(bad); err == nil {
		t.Error("an acquire of family 99 was read")
	}
}

// XFRM_MSG_ALLOCSPI's body is struct xfrm_userspi_info: the larval
// state's xfrm_usersa_info (its seq, addresses, mode and reqid), then min
// and max.
func TestAllocSPIMatchesC(t *testing.T) {
	l := larval{Seq: 0x2a, Dst: netip.MustParseAddr("203.0.113.1"), Src: netip.MustParseAddr("198.51.100.1"), Family: 2,
		Mode: modeTunnel, Reqid: reqidBase + 9, MarkMask: trapMarkMask}
	b := l.allocSPI(0x100, 0xffffffff)
	var want nl.XfrmUserSpiInfo
	want.XfrmUsersaInfo.Id.Daddr.FromIP(net.ParseIP("203.0.113.1"))
	want.XfrmUsersaInfo.Id.Proto = protoESP
	want.XfrmUsersaInfo.Saddr.FromIP(net.ParseIP("198.51.100.1"))
	want.XfrmUsersaInfo.Seq = 0x2a
	want.XfrmUsersaInfo.Reqid = reqidBase + 9
	want.XfrmUsersaInfo.Family = nl.FAMILY_V4
	want.XfrmUsersaInfo.Mode = modeTunnel
	want.Min, want.Max = 0x100, 0xffffffff
	if got := b[:nl.SizeofXfrmUserSpiInfo]; !bytes.Equal(got, want.Serialize()) {
		t.Fatalf("xfrm_userspi_info:\n got %x\nwant %x", got, want.Serialize())
	}
	m := attrs(b[sizeUserSPIInfo:])[attrMark]
	if len(m) != sizeMark || ne.Uint32(m[0:]) != 0 || ne.Uint32(m[4:]) != trapMarkMask {
		t.Fatalf("XFRMA_MARK %x", m)
	}
}

// A trap's policies: outbound only, one per selector pair, the template
// naming the peer (tunnel) or not (transport), below every Child SA
// policy's priority, and marked so that a transport-mode SA's policy with
// the same selector can sit next to it; read back from a dump they are
// deleted by the same id (their mark included).
func TestTrapPolicies(t *testing.T) {
	peer := netip.MustParseAddr("203.0.113.1")
	tr := ipsec.Trap{Conn: "c", Child: "lan", Peer: peer, Mode: ipsec.Tunnel,
		Remote: []wire.Selector{ts.FromPrefix(netip.MustParsePrefix("10.93.0.0/24")), ts.FromPrefix(netip.MustParsePrefix("2001:db8:93::/48"))}}
	ps := trapPolicies(tr, reqidBase+3)
	if len(ps) != 2 {
		t.Fatalf("%d policies for any source to two prefixes, want 2 (one per family): %+v", len(ps), ps)
	}
	for _, p := range ps {
		if p.Dir != dirOut || p.Tmpl.Dst != peer || p.Tmpl.Src.IsValid() || p.Tmpl.Reqid != reqidBase+3 ||
			p.Tmpl.Mode != modeTunnel || p.Tmpl.Family != 2 || p.IfID != trapIfID || p.MarkMask != trapMarkMask || p.Mark != 0 {
			t.Errorf("trap policy %+v", p)
		}
		if p.Sel.Src.Bits() != 0 || p.Sel.Src.Addr().Is4() != p.Sel.Dst.Addr().Is4() {
			t.Errorf("source %v for %v: want any of the same family", p.Sel.Src, p.Sel.Dst)
		}
		// Every Child SA policy (policies()) is preferred: lower wins.
		for _, sa := range policies([]Selector{p.Sel}, modeTunnel, peer, peer, reqidBase+4, 0) {
			if sa.Priority >= p.Priority {
				t.Errorf("Child SA policy priority %#x not below the trap's %#x", sa.Priority, p.Priority)
			}
		}
		b := p.newPolicy()
		a := attrs(b[sizePolicyInfo:])
		var m nl.XfrmMark
		m.Mask = trapMarkMask
		if !bytes.Equal(a[attrMark], m.Serialize()) {
			t.Fatalf("XFRMA_MARK %x want %x", a[attrMark], m.Serialize())
		}
		got, err := parsePolicy(b)
		if err != nil || got.Reqid != reqidBase+3 || got.Priority != p.Priority || got.MarkMask != trapMarkMask {
			t.Fatalf("parsed back %+v %v", got, err)
		}
		if !bytes.Equal(rawPolicyID(got), p.policyID()) {
			t.Fatalf("a trap policy read back is not deleted by its own id:\n%x\n%x", rawPolicyID(got), p.policyID())
		}
	}
	// Transport mode: the template names no address (the packet's
	// destination is the SA's), and the other family is left out.
	tr.Mode = ipsec.Transport
	tr.Local = []wire.Selector{ts.FromAddr(netip.MustParseAddr("198.51.100.1"))}
	tr.Remote = []wire.Selector{ts.FromAddr(peer), ts.FromPrefix(netip.MustParsePrefix("2001:db8:93::/48"))}
	ps = trapPolicies(tr, reqidBase+3)
	if len(ps) != 1 || ps[0].Tmpl.Dst.IsValid() || ps[0].Tmpl.Mode != modeTransport || ps[0].Sel.Dst != netip.PrefixFrom(peer, 32) || ps[0].IfID != 0 {
		t.Fatalf("transport trap policies %+v", ps)
	}
}

// parseAcquire reads what the kernel multicasts to any listener: bounds
// checks only, never a panic, and what it reads is self-consistent.
func FuzzParseAcquire(f *testing.F) {
	f.Add(acquireMsg("203.0.113.1", "198.51.100.1", "10.1.0.5", "10.93.0.7", trapPriority, 1, trapTmpl("203.0.113.1", reqidBase+1), trapMarkMask))
	f.Add(acquireMsg("203.0.113.1", "198.51.100.1", "10.1.0.5", "10.93.0.7", 5, 1, nil, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAcquire(b)
		if err != nil {
			return
		}
		if len(b) < sizeUserAcquire || !a.FlowDst.IsValid() || !a.Dst.IsValid() || (a.Family != 2 && a.Family != 10) {
			t.Fatalf("read %+v from %d octets", a, len(b))
		}
	})
}

type acquired struct {
	id       int
	src, dst netip.Addr
}

// TestVMTrap: a trap policy in a real kernel. A packet to the trapped
// selectors with no SA makes the kernel send XFRM_MSG_ACQUIRE, which
// reaches OnAcquire with the trap's ID and the packet's addresses (RFC
// 4301 §5.1); the Child SA's own policies then carry the traffic; the
// larval state is gone once the SA is installed, so after the SA is
// deleted the next packet acquires again at once; SetTraps(nil) and
// Close leave nothing of ours.
func TestVMTrap(t *testing.T) {
	acq := make(chan acquired, 16)
	l, r := lab(t, func(c *Config) {
		c.OnAcquire = func(id int, src, dst netip.Addr) { acq <- acquired{id, src, dst} }
	})
	trap := ipsec.Trap{ID: 7, Conn: "c", Child: "net", Peer: netip.MustParseAddr("192.0.2.2"), Mode: ipsec.Tunnel,
		Remote: sels(t, "10.2.0.1/32")}
	var err error
	l.in(t, func() { err = l.k.SetTraps([]ipsec.Trap{trap}) })
	if err != nil {
		t.Fatal(err)
	}
	if pol := run(t, "ip", "-n", "xl", "xfrm", "policy"); !strings.Contains(pol, "mark 0/0x6d66") || !strings.Contains(pol, "if_id 0x6d660000") {
		t.Fatalf("no trap policy on the trap device's if_id:\n%s", pol)
	}
	if rt := run(t, "ip", "-n", "xl", "route", "show", "table", "all"); !strings.Contains(rt, "10.2.0.1 dev "+trapDevice) {
		t.Fatalf("no route into %s:\n%s", trapDevice, rt)
	}
	wantAcquire := func(what string) {
		t.Helper()
		exec.Command("ip", "netns", "exec", "xl", "ping", "-c", "1", "-W", "1", "10.2.0.1").Run()
		select {
		case a := <-acq:
			// The source is what the kernel chose for the route into
			// the trap device (an address of another interface).
			if a.id != 7 || a.dst != netip.MustParseAddr("10.2.0.1") || !a.src.Is4() {
				t.Fatalf("%s: acquire %+v, want trap 7 for a packet to 10.2.0.1", what, a)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no acquire for a ping to the trap:\n%s", what, run(t, "ip", "-n", "xl", "-s", "xfrm", "state"))
		}
	}
	wantAcquire("first packet")
	if st := run(t, "ip", "-n", "xl", "xfrm", "state"); !strings.Contains(st, "spi 0x00000000") {
		t.Fatalf("no larval state after the acquire:\n%s", st)
	}
	// The trap's Child SA: its policies (on the VPN's XFRM interface)
	// carry the traffic; the larval state goes.
	a, b := pair(t, gcm, 1, 0x5001, 0x5002, "192.0.2.1", "192.0.2.2", false)
	l.install(t, a)
	r.install(t, b)
	if st := run(t, "ip", "-n", "xl", "xfrm", "state"); strings.Contains(st, "spi 0x00000000") {
		t.Fatalf("the larval state outlived the install:\n%s", st)
	}
	mustPing(t, 3)
	if in, out := l.counters(t, a.InSPI); in < 3 || out < 3 {
		t.Fatalf("the Child SA counted %d in, %d out for 3 pings", in, out)
	}
	// The SA goes; the trap is still there and the next packet asks
	// again, without waiting for a larval state to expire.
	l.del(t, a.InSPI)
	r.del(t, b.InSPI)
	for len(acq) > 0 {
		<-acq
	}
	time.Sleep(acquireEvery) // the trap's rate limit
	wantAcquire("after the SA went")
	// A reload: the same trap under a new ID stays as it is (reqid,
	// policies, rate limit); a changed one replaces it.
	traps := func() map[uint32]*kTrap {
		l.k.trapMu.Lock() // the acquire reader reads them too
		defer l.k.trapMu.Unlock()
		return maps.Clone(l.k.traps)
	}
	old := traps()
	trap.ID = 8
	l.in(t, func() { err = l.k.SetTraps([]ipsec.Trap{trap}) })
	now := traps()
	if err != nil || len(now) != 1 {
		t.Fatalf("SetTraps again: %v, %d traps", err, len(now))
	}
	for reqid, kt := range now {
		l.k.trapMu.Lock()
		id := kt.ID
		l.k.trapMu.Unlock()
		if old[reqid] != kt || id != 8 {
			t.Fatalf("the unchanged trap was replaced or kept its old ID: reqid %#x, ID %d", reqid, id)
		}
	}
	wider := trap
	wider.Remote = sels(t, "10.2.0.0/24")
	l.in(t, func() { err = l.k.SetTraps([]ipsec.Trap{wider}) })
	if err != nil {
		t.Fatal(err)
	}
	rt := run(t, "ip", "-n", "xl", "route", "show", "table", "all")
	pol := run(t, "ip", "-n", "xl", "xfrm", "policy")
	if !strings.Contains(rt, "10.2.0.0/24 dev "+trapDevice) || strings.Contains(rt, "10.2.0.1 dev "+trapDevice) ||
		!strings.Contains(pol, "dst 10.2.0.0/24") || strings.Contains(pol, "dst 10.2.0.1/32") {
		t.Fatalf("after replacing the trap by a wider one:\n%s\n%s", rt, pol)
	}
	l.in(t, func() { err = l.k.SetTraps(nil) })
	if err != nil {
		t.Fatal(err)
	}
	if pol := run(t, "ip", "-n", "xl", "xfrm", "policy"); strings.Contains(pol, "0x6d66") {
		t.Fatalf("trap policy left after SetTraps(nil):\n%s", pol)
	}
	if err := exec.Command("ip", "-n", "xl", "link", "show", trapDevice).Run(); err == nil {
		t.Fatalf("%s left after SetTraps(nil)", trapDevice)
	}
	l.in(t, func() { l.k.Close() })
	if n := l.leftovers(t); n != 0 {
		t.Fatalf("%d states or policies of ours left after Close:\n%s\n%s", n,
			run(t, "ip", "-n", "xl", "xfrm", "state"), run(t, "ip", "-n", "xl", "xfrm", "policy"))
	}
	fmt.Println("FIGURE: kernel trap: XFRM acquire -> OnAcquire, SA carried 3/3 pings, re-acquired after delete, nothing left")
}

// TestVMTrapTransport: a transport-mode trap and the transport-mode SA
// with the very same selectors coexist (the trap's mark and priority
// keep the two policies apart) and the SA's wins.
func TestVMTrapTransport(t *testing.T) {
	l, r := lab(t)
	ro := netip.MustParseAddr("192.0.2.2")
	trap := ipsec.Trap{ID: 1, Conn: "c", Child: "host", Peer: ro, Mode: ipsec.Transport, Local: sels(t, "192.0.2.1/32"), Remote: sels(t, "192.0.2.2/32")}
	var err error
	l.in(t, func() { err = l.k.SetTraps([]ipsec.Trap{trap}) })
	if err != nil {
		t.Fatal(err)
	}
	a, b := pair(t, gcm, 1, 0x6001, 0x6002, "192.0.2.1", "192.0.2.2", false)
	for _, sa := range []*ipsec.ChildSA{&a, &b} {
		sa.Mode, sa.VirtualIPs = ipsec.Transport, nil
	}
	a.LocalTS, a.RemoteTS = sels(t, "192.0.2.1/32"), sels(t, "192.0.2.2/32")
	b.LocalTS, b.RemoteTS = a.RemoteTS, a.LocalTS
	l.install(t, a)
	r.install(t, b)
	out, _ := exec.Command("ip", "netns", "exec", "xl", "ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.2").CombinedOutput()
	if m := lossRE.FindStringSubmatch(string(out)); m == nil || m[2] != "3" {
		t.Fatalf("ping through the transport SA next to its trap: %s", out)
	}
	if in, o := l.counters(t, a.InSPI); in < 3 || o < 3 {
		t.Fatalf("the transport SA counted %d in, %d out for 3 pings", in, o)
	}
	fmt.Println("FIGURE: kernel trap: a transport SA with the trap's own selectors installed next to it and carried 3/3 pings")
}

// An acquire reaches OnAcquire only for a trap of ours (by the
// template's reqid, at a trap's priority), at most once per acquireEvery
// per trap however often the kernel asks, and its larval state is kept to
// be deleted when a Child SA to the peer comes up.
func TestAcquireMapsAndLimits(t *testing.T) {
	var got []acquired
	k := &Kernel{log: slog.New(slog.DiscardHandler), traps: map[uint32]*kTrap{}}
	k.cfg.OnAcquire = func(id int, src, dst netip.Addr) { got = append(got, acquired{id, src, dst}) }
	k.traps[reqidBase+9] = &kTrap{Trap: ipsec.Trap{ID: 4}, reqid: reqidBase + 9}
	k.traps[reqidBase+10] = &kTrap{Trap: ipsec.Trap{ID: 5}, reqid: reqidBase + 10}
	msg := func(reqid, prio, seq uint32) message {
		return message{typ: msgAcquire, data: acquireMsg("203.0.113.1", "198.51.100.1", "10.1.0.5", "10.93.0.7", prio, seq, trapTmpl("203.0.113.1", reqid), trapMarkMask)}
	}
	k.acquired(msg(reqidBase+9, trapPriority+1, 1))
	k.acquired(msg(reqidBase+9, trapPriority+1, 2)) // within acquireEvery: quiet
	k.acquired(msg(reqidBase+10, trapPriority+1, 3))
	k.acquired(msg(reqidBase+11, trapPriority+1, 4)) // no such trap
	k.acquired(msg(reqidBase+10, 0x100, 5))          // a Child SA's priority: not a trap's policy
	k.acquired(message{typ: msgAcquire, data: []byte{1, 2, 3}})
	want := []acquired{{4, netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.93.0.7")},
		{5, netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.93.0.7")}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("OnAcquire calls %+v, want %+v", got, want)
	}
	if len(k.larvals) != 3 || k.larvals[0].Seq != 1 || k.larvals[2].Seq != 3 || k.larvals[0].Dst != netip.MustParseAddr("203.0.113.1") {
		t.Fatalf("larval states kept: %+v, want those of seq 1, 2 and 3 towards 203.0.113.1", k.larvals)
	}
	// The rate limit is per trap and lapses.
	k.traps[reqidBase+9].firedAt.Add(-int64(acquireEvery))
	k.acquired(msg(reqidBase+9, trapPriority+1, 6))
	if len(got) != 3 || got[2].id != 4 {
		t.Fatalf("after acquireEvery: calls %+v, want a third for trap 4", got)
	}
}
