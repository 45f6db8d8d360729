//go:build linux

package xfrm

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink/nl"
)

// The hand-laid structures must match the C layout. vishvananda/netlink's
// nl package mirrors the same structures as Go structs cast from memory,
// so building the same message both ways checks every offset.

func TestUsersaInfoMatchesC(t *testing.T) {
	s := &State{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SPI: 0xc0ffee01,
		Reqid: reqidBase + 7, Mode: modeTunnel, ReplayWindow: 64, SoftBytes: 1000, HardBytes: 2000,
		AEAD: &Algo{Name: "rfc4106(gcm(aes))", Key: make([]byte, 20), ICVBits: 128}}
	b, err := s.newSA()
	if err != nil {
		t.Fatal(err)
	}
	var want nl.XfrmUsersaInfo
	want.Id.Daddr.FromIP(net.ParseIP("192.0.2.2"))
	want.Id.Spi = nl.Swap32(0xc0ffee01)
	want.Id.Proto = protoESP
	want.Saddr.FromIP(net.ParseIP("192.0.2.1"))
	want.Lft.SoftByteLimit, want.Lft.HardByteLimit = 1000, 2000
	want.Lft.SoftPacketLimit, want.Lft.HardPacketLimit = inf, inf
	want.Reqid = reqidBase + 7
	want.Family = nl.FAMILY_V4
	want.Mode = modeTunnel
	want.Flags = stateFlagAF
	if got := b[:nl.SizeofXfrmUsersaInfo]; !bytes.Equal(got, want.Serialize()) {
		t.Fatalf("xfrm_usersa_info:\n got %x\nwant %x", got, want.Serialize())
	}
	a := attrs(b[sizeUsersaInfo:])
	aead := nl.XfrmAlgoAEAD{AlgKeyLen: 160, AlgICVLen: 128, AlgKey: make([]byte, 20)}
	copy(aead.AlgName[:], "rfc4106(gcm(aes))")
	if !bytes.Equal(a[attrAlgAEAD], aead.Serialize()) {
		t.Fatalf("XFRMA_ALG_AEAD:\n got %x\nwant %x", a[attrAlgAEAD], aead.Serialize())
	}
	r := a[attrReplayESN]
	if len(r) != sizeReplayESNHdr+8 || ne.Uint32(r[0:]) != 2 || ne.Uint32(r[20:]) != 64 {
		t.Fatalf("XFRMA_REPLAY_ESN_VAL %x: want bmp_len 2, window 64", r)
	}
	if _, ok := a[attrEncap]; ok {
		t.Fatal("encap without Encap")
	}
}

func TestStateAttributes(t *testing.T) {
	s := &State{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SPI: 0x1234,
		Reqid: 9, Mode: modeTransport, ReplayWindow: 1024, ESN: true, Encap: true, EncapSrc: 4500, EncapDst: 31000,
		OutputMark: 0x6d66, IfID: ifIDBase + 3, OSeq: 5, OSeqHi: 1,
		Crypt: &Algo{Name: "cbc(aes)", Key: make([]byte, 16)}, Auth: &Algo{Name: "hmac(sha256)", Key: make([]byte, 32), ICVBits: 128}}
	b, err := s.newSA()
	if err != nil {
		t.Fatal(err)
	}
	if b[216]&stateFlagESN == 0 || b[215] != 0 {
		t.Fatalf("flags %#x replay_window %d: want ESN and a zero legacy window", b[216], b[215])
	}
	a := attrs(b[sizeUsersaInfo:])
	var enc nl.XfrmEncapTmpl
	enc.EncapType = encapESPinUDP
	enc.EncapSport, enc.EncapDport = nl.Swap16(4500), nl.Swap16(31000)
	if !bytes.Equal(a[attrEncap], enc.Serialize()) {
		t.Fatalf("XFRMA_ENCAP %x, want %x", a[attrEncap], enc.Serialize())
	}
	auth := nl.XfrmAlgoAuth{AlgKeyLen: 256, AlgTruncLen: 128, AlgKey: make([]byte, 32)}
	copy(auth.AlgName[:], "hmac(sha256)")
	if !bytes.Equal(a[attrAlgAuthTrnc], auth.Serialize()) {
		t.Fatalf("XFRMA_ALG_AUTH_TRUNC %x, want %x", a[attrAlgAuthTrnc], auth.Serialize())
	}
	crypt := nl.XfrmAlgo{AlgKeyLen: 128, AlgKey: make([]byte, 16)}
	copy(crypt.AlgName[:], "cbc(aes)")
	if !bytes.Equal(a[attrAlgCrypt], crypt.Serialize()) {
		t.Fatalf("XFRMA_ALG_CRYPT %x, want %x", a[attrAlgCrypt], crypt.Serialize())
	}
	if ne.Uint32(a[attrSetMark]) != 0x6d66 || ne.Uint32(a[attrSetMarkMask]) != 0xffffffff || ne.Uint32(a[attrIfID]) != ifIDBase+3 {
		t.Fatalf("mark %x/%x if_id %x", a[attrSetMark], a[attrSetMarkMask], a[attrIfID])
	}
	// What we send is what we read back (a get answers with the same
	// layout): the replay state survives the trip.
	got, err := parseState(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dst != s.Dst || got.Src != s.Src || got.SPI != 0x1234 || got.Reqid != 9 || got.OSeq != 5 || got.OSeqHi != 1 ||
		got.ReplayWindow != 1024 || len(got.Bitmap) != 32 || got.IfID != ifIDBase+3 || got.Family != 10 {
		t.Fatalf("parsed back %+v", got)
	}
}

func TestStateNeedsAlgorithms(t *testing.T) {
	if _, err := (&State{ReplayWindow: 32}).newSA(); err == nil {
		t.Fatal("a state without algorithms was built")
	}
	if _, err := (&State{AEAD: &Algo{Name: "x"}}).newSA(); err == nil {
		t.Fatal("a state without a replay window was built")
	}
}

func TestPolicyMatchesC(t *testing.T) {
	p := Policy{Sel: Selector{Src: netip.MustParsePrefix("10.99.0.2/32"), Dst: netip.MustParsePrefix("10.93.0.0/24"),
		Proto: 6, DstPort: 443, DstMask: 0xffff}, Dir: dirOut, Priority: 77, IfID: ifIDBase + 1,
		Tmpl: Tmpl{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("203.0.113.1"), Reqid: reqidBase + 2, Mode: modeTunnel}}
	b := p.newPolicy()
	var want nl.XfrmUserpolicyInfo
	want.Sel.Saddr.FromIP(net.ParseIP("10.99.0.2"))
	want.Sel.Daddr.FromIP(net.ParseIP("10.93.0.0"))
	want.Sel.PrefixlenS, want.Sel.PrefixlenD = 32, 24
	want.Sel.Family = nl.FAMILY_V4
	want.Sel.Proto = 6
	want.Sel.Dport, want.Sel.DportMask = nl.Swap16(443), 0xffff
	want.Lft.SoftByteLimit, want.Lft.HardByteLimit, want.Lft.SoftPacketLimit, want.Lft.HardPacketLimit = inf, inf, inf, inf
	want.Priority, want.Dir, want.Action = 77, dirOut, actionAllow
	if got := b[:nl.SizeofXfrmUserpolicyInfo]; !bytes.Equal(got, want.Serialize()) {
		t.Fatalf("xfrm_userpolicy_info:\n got %x\nwant %x", got, want.Serialize())
	}
	a := attrs(b[sizePolicyInfo:])
	var tmpl nl.XfrmUserTmpl
	tmpl.XfrmId.Daddr.FromIP(net.ParseIP("203.0.113.1"))
	tmpl.XfrmId.Proto = protoESP
	tmpl.Family = nl.FAMILY_V4
	tmpl.Saddr.FromIP(net.ParseIP("198.51.100.1"))
	tmpl.Reqid, tmpl.Mode = reqidBase+2, modeTunnel
	tmpl.Aalgos, tmpl.Ealgos, tmpl.Calgos = ^uint32(0), ^uint32(0), ^uint32(0)
	if !bytes.Equal(a[attrTmpl], tmpl.Serialize()) {
		t.Fatalf("XFRMA_TMPL:\n got %x\nwant %x", a[attrTmpl], tmpl.Serialize())
	}
	if ne.Uint32(a[attrIfID]) != ifIDBase+1 {
		t.Fatal("no if_id")
	}
	got, err := parsePolicy(b)
	if err != nil || got.Reqid != reqidBase+2 || got.IfID != ifIDBase+1 || got.Dir != dirOut {
		t.Fatalf("parsed back %+v %v", got, err)
	}
	id := p.policyID()
	if len(id) != sizePolicyID+8 || !bytes.Equal(id[:sizeSelector], b[:sizeSelector]) || id[60] != dirOut {
		t.Fatalf("xfrm_userpolicy_id %x", id)
	}
	if !bytes.Equal(rawPolicyID(got), id) {
		t.Fatal("a policy read back is not deleted by the same id")
	}
}

func TestMigrateMessage(t *testing.T) {
	p := &Policy{Sel: Selector{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("0.0.0.0/0")},
		Dir: dirOut, IfID: ifIDBase + 4, Tmpl: Tmpl{Reqid: reqidBase + 5, Mode: modeTunnel}}
	m := Migration{Policy: p, OldSrc: netip.MustParseAddr("10.91.1.2"), OldDst: netip.MustParseAddr("10.92.0.1"),
		NewSrc: netip.MustParseAddr("10.91.2.2"), NewDst: netip.MustParseAddr("10.92.0.1"), Encap: true, EncapSrc: 4500, EncapDst: 4500}
	b := m.msg()
	if !bytes.Equal(b[:sizePolicyID], p.policyID()[:sizePolicyID]) {
		t.Fatal("the migrate message does not start with the policy's id")
	}
	a := attrs(b[sizePolicyID:])
	e := a[attrMigrate]
	if len(e) != sizeUserMigrate {
		t.Fatalf("xfrm_user_migrate is %d octets", len(e))
	}
	if getAddr(e[0:], 2) != m.OldDst || getAddr(e[16:], 2) != m.OldSrc || getAddr(e[32:], 2) != m.NewDst ||
		getAddr(e[48:], 2) != m.NewSrc || e[64] != protoESP || e[65] != modeTunnel || ne.Uint32(e[68:]) != reqidBase+5 ||
		ne.Uint16(e[72:]) != 2 || ne.Uint16(e[74:]) != 2 {
		t.Fatalf("xfrm_user_migrate %x", e)
	}
	if binary.BigEndian.Uint16(a[attrEncap][2:]) != 4500 || ne.Uint32(a[attrIfID]) != ifIDBase+4 {
		t.Fatal("encap or if_id missing")
	}
}

func TestSAID(t *testing.T) {
	b := saID(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 0xabcdef01)
	var want nl.XfrmUsersaId
	want.Daddr.FromIP(net.ParseIP("192.0.2.2"))
	want.Spi = nl.Swap32(0xabcdef01)
	want.Family = nl.FAMILY_V4
	want.Proto = protoESP
	if !bytes.Equal(b[:nl.SizeofXfrmUsersaId], want.Serialize()) {
		t.Fatalf("xfrm_usersa_id %x want %x", b[:sizeUsersaID], want.Serialize())
	}
	if src := attrs(b[sizeUsersaID:])[attrSrcAddr]; len(src) != 16 || !bytes.Equal(src[:4], []byte{192, 0, 2, 1}) {
		t.Fatalf("XFRMA_SRCADDR %x", src)
	}
}

func TestParseExpire(t *testing.T) {
	s := &State{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SPI: 0x777, Reqid: reqidBase + 1,
		ReplayWindow: 32, AEAD: &Algo{Name: "rfc4106(gcm(aes))", Key: make([]byte, 20), ICVBits: 128}}
	b, _ := s.newSA()
	e := append(append([]byte(nil), b[:sizeUsersaInfo]...), 1, 0, 0, 0, 0, 0, 0, 0)
	e = appendAttr(e, attrIfID, u32(ifIDBase+2))
	got, hard, err := parseExpire(e)
	if err != nil || !hard || got.SPI != 0x777 || got.Dst != s.Dst || got.IfID != ifIDBase+2 {
		t.Fatalf("expire %+v hard %v err %v", got, hard, err)
	}
}

func TestExtAckMessage(t *testing.T) {
	// struct nlmsgerr (error, the request's header), then
	// NLMSGERR_ATTR_MSG, as a capped ack carries it.
	d := make([]byte, 4+nlmsgHdrLen)
	ne.PutUint32(d, uint32(0xffffffea)) // -EINVAL
	d = appendAttr(d, 1, []byte("Requested AEAD algorithm not found\x00"))
	if got := extAckMsg(d, 0x300); got != "Requested AEAD algorithm not found" {
		t.Fatalf("extack %q", got)
	}
	if got := extAckMsg(d, 0); got != "" {
		t.Fatalf("extack without the TLV flag: %q", got)
	}
}
