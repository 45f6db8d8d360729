package xfrm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The XFRM netlink ABI (include/uapi/linux/xfrm.h). The structures are
// laid out here by hand, with the C compiler's padding on 64-bit Linux,
// so each message's bytes can be checked in a unit test on a kernel
// without XFRM.
const (
	msgNewSA        = 0x10 // XFRM_MSG_NEWSA
	msgDelSA        = 0x11
	msgGetSA        = 0x12
	msgNewPolicy    = 0x13
	msgDelPolicy    = 0x14
	msgGetPolicy    = 0x15
	msgAllocSPI     = 0x16
	msgAcquire      = 0x17
	msgExpire       = 0x18
	msgUpdPolicy    = 0x19
	msgMigrate      = 0x21
	groupAcquire    = 1 // XFRMNLGRP_ACQUIRE
	groupExpire     = 2 // XFRMNLGRP_EXPIRE
	attrAlgAuth     = 1 // XFRMA_ALG_AUTH (unused: we send ALG_AUTH_TRUNC)
	attrAlgCrypt    = 2
	attrEncap       = 4
	attrTmpl        = 5
	attrReplayVal   = 10
	attrSrcAddr     = 13
	attrMigrate     = 17
	attrAlgAEAD     = 18
	attrAlgAuthTrnc = 20
	attrMark        = 21
	attrReplayESN   = 23
	attrSetMark     = 29
	attrSetMarkMask = 30
	attrIfID        = 31

	modeTransport = 0
	modeTunnel    = 1

	dirIn  = 0
	dirOut = 1
	dirFwd = 2

	actionAllow = 0

	stateFlagESN = 128 // XFRM_STATE_ESN
	stateFlagAF  = 32  // XFRM_STATE_AF_UNSPEC: the selector's family may differ

	protoESP       = 50
	encapESPinUDP  = 2 // UDP_ENCAP_ESPINUDP (RFC 3948)
	encapESPinTCP  = 7 // TCP_ENCAP_ESPINTCP (RFC 9329, the espintcp ULP)
	udpEncapOption = 100
	inf            = ^uint64(0) // XFRM_INF

	sizeSelector     = 56
	sizeID           = 24
	sizeLifetimeCfg  = 64
	sizeUsersaInfo   = 224
	sizeUsersaID     = 24
	sizePolicyInfo   = 168
	sizePolicyID     = 64
	sizeUserTmpl     = 64
	sizeEncapTmpl    = 24
	sizeUserMigrate  = 76
	sizeReplayESNHdr = 24
	sizeUserAcquire  = 280 // struct xfrm_user_acquire
	sizeUserSPIInfo  = 232 // struct xfrm_userspi_info
	sizeMark         = 8   // struct xfrm_mark
)

var ne = binary.NativeEndian

// family is AF_INET or AF_INET6 for an address.
func family(a netip.Addr) uint16 {
	if a.Unmap().Is4() {
		return 2
	}
	return 10
}

// putAddr writes an xfrm_address_t (16 octets; IPv4 in the first four).
func putAddr(b []byte, a netip.Addr) {
	clear(b[:16])
	if !a.IsValid() {
		return
	}
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

func getAddr(b []byte, fam uint16) netip.Addr {
	if fam == 2 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16]))
}

// Selector is struct xfrm_selector: what traffic a policy (or a
// transport-mode state) covers.
type Selector struct {
	Src, Dst         netip.Prefix
	Proto            uint8
	SrcPort, SrcMask uint16
	DstPort, DstMask uint16
}

func (s Selector) put(b []byte) {
	putAddr(b[0:], s.Dst.Addr())
	putAddr(b[16:], s.Src.Addr())
	binary.BigEndian.PutUint16(b[32:], s.DstPort)
	binary.BigEndian.PutUint16(b[34:], s.DstMask)
	binary.BigEndian.PutUint16(b[36:], s.SrcPort)
	binary.BigEndian.PutUint16(b[38:], s.SrcMask)
	fam := uint16(0)
	if s.Dst.IsValid() {
		fam = family(s.Dst.Addr())
	}
	ne.PutUint16(b[40:], fam)
	b[42] = uint8(s.Dst.Bits())
	b[43] = uint8(s.Src.Bits())
	b[44] = s.Proto
	// ifindex and user stay 0.
}

func (s Selector) String() string {
	return fmt.Sprintf("%v[%d/%#x] -> %v[%d/%#x] proto %d", s.Src, s.SrcPort, s.SrcMask, s.Dst, s.DstPort, s.DstMask, s.Proto)
}

// Algo is one of an SA's algorithms, by its kernel (crypto API) name.
type Algo struct {
	Name string
	Key  []byte
	// ICVBits is the AEAD tag or the truncated HMAC length.
	ICVBits int
}

// State is one direction of a Child SA as the kernel holds it (struct
// xfrm_usersa_info and its attributes).
type State struct {
	Src, Dst netip.Addr
	SPI      uint32
	Reqid    uint32
	Mode     uint8
	// Exactly one of AEAD, or Crypt with Auth.
	AEAD, Crypt, Auth *Algo
	ESN               bool
	ReplayWindow      uint32 // packets
	// Replay state to start from: a re-installed SA continues its
	// sequence numbers (RFC 4303 §3.3.3) and keeps its window.
	OSeq, Seq, OSeqHi, SeqHi uint32
	Bitmap                   []uint32
	// Encap is ESP in UDP (RFC 3948) between these ports, or with TCP
	// in the TCP stream between them (RFC 9329): the kernel finds the
	// stream, handed to its espintcp ULP, by the state's addresses and
	// these ports.
	Encap, TCP         bool
	EncapSrc, EncapDst uint16
	SoftBytes          uint64 // 0: none
	HardBytes          uint64
	SoftPackets        uint64
	HardPackets        uint64
	// OutputMark is the firewall mark the outer packets get (XFRMA_SET_MARK),
	// so their route lookup bypasses the tunnel's routes.
	OutputMark uint32
	IfID       uint32
	// Sel restricts the state to traffic it matches (transport mode).
	Sel *Selector
}

func putLifetime(b []byte, softB, hardB, softP, hardP uint64) {
	or := func(v uint64) uint64 {
		if v == 0 {
			return inf
		}
		return v
	}
	ne.PutUint64(b[0:], or(softB))
	ne.PutUint64(b[8:], or(hardB))
	ne.PutUint64(b[16:], or(softP))
	ne.PutUint64(b[24:], or(hardP))
	for i := 32; i < 64; i += 8 {
		ne.PutUint64(b[i:], 0) // no time limits: the engine keeps time (RFC 7296 §2.8)
	}
}

// bmpLen is the replay bitmap's length in 32-bit words.
func bmpLen(window uint32) uint32 { return (window + 31) / 32 }

// newSA builds the body and attributes of XFRM_MSG_NEWSA.
func (s *State) newSA() ([]byte, error) {
	if s.AEAD == nil && (s.Crypt == nil || s.Auth == nil) {
		return nil, errors.New("xfrm: a state needs an AEAD, or a cipher and an integrity algorithm")
	}
	if s.ReplayWindow == 0 {
		return nil, errors.New("xfrm: a state needs a replay window")
	}
	b := make([]byte, sizeUsersaInfo, 512)
	if s.Sel != nil {
		s.Sel.put(b[0:])
	}
	putAddr(b[56:], s.Dst)
	binary.BigEndian.PutUint32(b[72:], s.SPI)
	b[76] = protoESP
	putAddr(b[80:], s.Src)
	putLifetime(b[96:], s.SoftBytes, s.HardBytes, s.SoftPackets, s.HardPackets)
	// curlft and stats stay zero; seq (204) is the netlink request's.
	ne.PutUint32(b[208:], s.Reqid)
	ne.PutUint16(b[212:], family(s.Dst))
	b[214] = s.Mode
	b[215] = 0 // replay_window: XFRMA_REPLAY_ESN_VAL carries it instead
	var flags uint8
	if s.ESN {
		flags |= stateFlagESN
	}
	if s.Sel == nil {
		flags |= stateFlagAF
	}
	b[216] = flags
	if s.AEAD != nil {
		b = appendAttr(b, attrAlgAEAD, algoAEAD(s.AEAD))
	} else {
		b = appendAttr(b, attrAlgCrypt, algoPlain(s.Crypt))
		b = appendAttr(b, attrAlgAuthTrnc, algoAuth(s.Auth))
	}
	if s.Encap {
		b = appendAttr(b, attrEncap, encapTmpl(s.TCP, s.EncapSrc, s.EncapDst))
	}
	b = appendAttr(b, attrReplayESN, s.replayESN())
	if s.OutputMark != 0 {
		b = appendAttr(b, attrSetMark, u32(s.OutputMark))
		b = appendAttr(b, attrSetMarkMask, u32(0xffffffff))
	}
	if s.IfID != 0 {
		b = appendAttr(b, attrIfID, u32(s.IfID))
	}
	return b, nil
}

// replayESN is struct xfrm_replay_state_esn. The kernel takes it with or
// without ESN (then as a plain bitmap window), which lets windows grow
// past the legacy 32 packets.
func (s *State) replayESN() []byte {
	n := bmpLen(s.ReplayWindow)
	b := make([]byte, sizeReplayESNHdr+4*n)
	ne.PutUint32(b[0:], n)
	ne.PutUint32(b[4:], s.OSeq)
	ne.PutUint32(b[8:], s.Seq)
	ne.PutUint32(b[12:], s.OSeqHi)
	ne.PutUint32(b[16:], s.SeqHi)
	ne.PutUint32(b[20:], s.ReplayWindow)
	for i := uint32(0); i < n && int(i) < len(s.Bitmap); i++ {
		ne.PutUint32(b[sizeReplayESNHdr+4*i:], s.Bitmap[i])
	}
	return b
}

func algoName(b []byte, name string) {
	copy(b[:63], name) // char alg_name[64], NUL-terminated
}

// algoPlain is struct xfrm_algo.
func algoPlain(a *Algo) []byte {
	b := make([]byte, 68+len(a.Key))
	algoName(b, a.Name)
	ne.PutUint32(b[64:], uint32(8*len(a.Key)))
	copy(b[68:], a.Key)
	return b
}

// algoAuth is struct xfrm_algo_auth; algoAEAD is struct xfrm_algo_aead:
// the same layout, with the truncation or ICV length in bits.
func algoAuth(a *Algo) []byte {
	b := make([]byte, 72+len(a.Key))
	algoName(b, a.Name)
	ne.PutUint32(b[64:], uint32(8*len(a.Key)))
	ne.PutUint32(b[68:], uint32(a.ICVBits))
	copy(b[72:], a.Key)
	return b
}

func algoAEAD(a *Algo) []byte { return algoAuth(a) }

// encapTmpl is struct xfrm_encap_tmpl for ESP in UDP.
func encapTmpl(tcp bool, sport, dport uint16) []byte {
	b := make([]byte, sizeEncapTmpl)
	ne.PutUint16(b[0:], encapESPinUDP)
	if tcp {
		ne.PutUint16(b[0:], encapESPinTCP)
	}
	binary.BigEndian.PutUint16(b[2:], sport)
	binary.BigEndian.PutUint16(b[4:], dport)
	return b
}

func u32(v uint32) []byte {
	b := make([]byte, 4)
	ne.PutUint32(b, v)
	return b
}

// saID is struct xfrm_usersa_id, with XFRMA_SRCADDR: names a state for
// XFRM_MSG_GETSA and XFRM_MSG_DELSA.
func saID(src, dst netip.Addr, spi uint32) []byte {
	b := make([]byte, sizeUsersaID, sizeUsersaID+20)
	putAddr(b[0:], dst)
	binary.BigEndian.PutUint32(b[16:], spi)
	ne.PutUint16(b[20:], family(dst))
	b[22] = protoESP
	if src.IsValid() {
		a := make([]byte, 16)
		putAddr(a, src)
		b = appendAttr(b, attrSrcAddr, a)
	}
	return b
}

// Tmpl is struct xfrm_user_tmpl: the SA a policy's traffic needs.
type Tmpl struct {
	Src, Dst netip.Addr // the tunnel's ends; unset in transport mode
	Reqid    uint32
	Mode     uint8
	// Family of the outer addresses (the inner one's when unset).
	Family uint16
}

// Policy is struct xfrm_userpolicy_info with one template.
type Policy struct {
	Sel      Selector
	Dir      uint8
	Priority uint32
	Tmpl     Tmpl
	IfID     uint32
	// Mark and MarkMask (XFRMA_MARK): the policy covers packets whose
	// firewall mark ANDed with MarkMask is Mark. A mask of 0 sends no
	// mark (every packet). A policy's mark is part of its identity: two
	// policies with one selector but different marks can coexist, and
	// deleting one must name its mark.
	Mark, MarkMask uint32
}

// mark is struct xfrm_mark.
func mark(v, m uint32) []byte {
	b := make([]byte, sizeMark)
	ne.PutUint32(b[0:], v)
	ne.PutUint32(b[4:], m)
	return b
}

func (p *Policy) info() []byte {
	b := make([]byte, sizePolicyInfo, 512)
	p.Sel.put(b[0:])
	putLifetime(b[56:], 0, 0, 0, 0)
	ne.PutUint32(b[152:], p.Priority)
	b[160] = p.Dir
	b[161] = actionAllow
	return b
}

// newPolicy builds XFRM_MSG_NEWPOLICY or XFRM_MSG_UPDPOLICY.
func (p *Policy) newPolicy() []byte {
	b := p.info()
	t := make([]byte, sizeUserTmpl)
	fam := family(p.Sel.Dst.Addr())
	if p.Tmpl.Family != 0 {
		fam = p.Tmpl.Family
	}
	putAddr(t[0:], p.Tmpl.Dst)
	t[20] = protoESP // id.proto; id.spi 0: any SA of the reqid
	ne.PutUint16(t[24:], fam)
	putAddr(t[28:], p.Tmpl.Src)
	ne.PutUint32(t[44:], p.Tmpl.Reqid)
	t[48] = p.Tmpl.Mode
	ne.PutUint32(t[52:], 0xffffffff) // aalgos
	ne.PutUint32(t[56:], 0xffffffff) // ealgos
	ne.PutUint32(t[60:], 0xffffffff) // calgos
	b = appendAttr(b, attrTmpl, t)
	if p.IfID != 0 {
		b = appendAttr(b, attrIfID, u32(p.IfID))
	}
	if p.MarkMask != 0 {
		b = appendAttr(b, attrMark, mark(p.Mark, p.MarkMask))
	}
	return b
}

// policyID is struct xfrm_userpolicy_id for XFRM_MSG_DELPOLICY.
func (p *Policy) policyID() []byte {
	b := make([]byte, sizePolicyID, sizePolicyID+8)
	p.Sel.put(b[0:])
	b[60] = p.Dir
	if p.IfID != 0 {
		b = appendAttr(b, attrIfID, u32(p.IfID))
	}
	if p.MarkMask != 0 {
		b = appendAttr(b, attrMark, mark(p.Mark, p.MarkMask))
	}
	return b
}

// Migration moves a policy's template and the states that match it to
// new addresses (XFRM_MSG_MIGRATE, CONFIG_XFRM_MIGRATE; RFC 4555 moves).
type Migration struct {
	Policy             *Policy
	OldSrc, OldDst     netip.Addr
	NewSrc, NewDst     netip.Addr
	Encap, TCP         bool
	EncapSrc, EncapDst uint16
}

func (m *Migration) msg() []byte {
	b := m.Policy.policyID()[:sizePolicyID]
	b = append(make([]byte, 0, 256), b...)
	e := make([]byte, sizeUserMigrate)
	putAddr(e[0:], m.OldDst)
	putAddr(e[16:], m.OldSrc)
	putAddr(e[32:], m.NewDst)
	putAddr(e[48:], m.NewSrc)
	e[64] = protoESP
	e[65] = m.Policy.Tmpl.Mode
	ne.PutUint32(e[68:], m.Policy.Tmpl.Reqid)
	ne.PutUint16(e[72:], family(m.OldDst))
	ne.PutUint16(e[74:], family(m.NewDst))
	b = appendAttr(b, attrMigrate, e)
	if m.Encap {
		b = appendAttr(b, attrEncap, encapTmpl(m.TCP, m.EncapSrc, m.EncapDst))
	}
	if m.Policy.IfID != 0 {
		b = appendAttr(b, attrIfID, u32(m.Policy.IfID))
	}
	return b
}

// appendAttr appends one netlink attribute (struct nlattr), padded to
// four octets.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	n := 4 + len(data)
	var h [4]byte
	ne.PutUint16(h[0:], uint16(n))
	ne.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for n%4 != 0 {
		b = append(b, 0)
		n++
	}
	return b
}

// attrs splits netlink attributes by type (the last of a type wins).
func attrs(b []byte) map[uint16][]byte {
	out := map[uint16][]byte{}
	for len(b) >= 4 {
		n := int(ne.Uint16(b[0:]))
		typ := ne.Uint16(b[2:]) &^ 0xc000 // NLA_F_NESTED, NLA_F_NET_BYTEORDER
		if n < 4 || n > len(b) {
			break
		}
		out[typ] = b[4:n]
		b = b[min(len(b), (n+3)&^3):]
	}
	return out
}

// stateInfo is what we read back of a state: XFRM_MSG_NEWSA from a dump or
// a get, and the state inside XFRM_MSG_EXPIRE.
type stateInfo struct {
	Src, Dst         netip.Addr
	SPI, Reqid       uint32
	Mode             uint8
	Bytes, Packets   uint64
	IfID             uint32
	OSeq, Seq        uint32
	OSeqHi, SeqHi    uint32
	Bitmap           []uint32
	ReplayWindow     uint32
	Family           uint16
	IntegrityFailed  uint32
	ReplayDrops      uint32
	HasReplayESN     bool
	AddTime, UseTime uint64
	// KmSeq is the state's km.seq: for a larval state (SPI 0, made by
	// an acquire) the seq its XFRM_MSG_ACQUIRE carried.
	KmSeq          uint32
	Mark, MarkMask uint32
}

func parseState(b []byte) (stateInfo, error) { return parseStateAt(b, sizeUsersaInfo) }

// parseStateAt reads a struct xfrm_usersa_info at the start of b whose
// attributes begin at attrOff.
func parseStateAt(b []byte, attrOff int) (stateInfo, error) {
	if len(b) < sizeUsersaInfo {
		return stateInfo{}, fmt.Errorf("xfrm: short state message (%d octets)", len(b))
	}
	var s stateInfo
	s.Family = ne.Uint16(b[212:])
	s.Dst = getAddr(b[56:], s.Family)
	s.SPI = binary.BigEndian.Uint32(b[72:])
	s.Src = getAddr(b[80:], s.Family)
	s.Bytes = ne.Uint64(b[160:])
	s.Packets = ne.Uint64(b[168:])
	s.AddTime = ne.Uint64(b[176:])
	s.UseTime = ne.Uint64(b[184:])
	s.ReplayDrops = ne.Uint32(b[196:])
	s.IntegrityFailed = ne.Uint32(b[200:])
	s.KmSeq = ne.Uint32(b[204:])
	s.Reqid = ne.Uint32(b[208:])
	s.Mode = b[214]
	s.ReplayWindow = uint32(b[215])
	a := attrs(b[min(attrOff, len(b)):])
	if v, ok := a[attrIfID]; ok && len(v) >= 4 {
		s.IfID = ne.Uint32(v)
	}
	if v, ok := a[attrMark]; ok && len(v) >= sizeMark {
		s.Mark, s.MarkMask = ne.Uint32(v[0:]), ne.Uint32(v[4:])
	}
	if v, ok := a[attrReplayESN]; ok && len(v) >= sizeReplayESNHdr {
		s.HasReplayESN = true
		n := ne.Uint32(v[0:])
		s.OSeq, s.Seq = ne.Uint32(v[4:]), ne.Uint32(v[8:])
		s.OSeqHi, s.SeqHi = ne.Uint32(v[12:]), ne.Uint32(v[16:])
		s.ReplayWindow = ne.Uint32(v[20:])
		for i := uint32(0); i < n && sizeReplayESNHdr+4*int(i)+4 <= len(v); i++ {
			s.Bitmap = append(s.Bitmap, ne.Uint32(v[sizeReplayESNHdr+4*i:]))
		}
	} else if v, ok := a[attrReplayVal]; ok && len(v) >= 12 {
		s.OSeq, s.Seq = ne.Uint32(v[0:]), ne.Uint32(v[4:])
		s.Bitmap = []uint32{ne.Uint32(v[8:])}
	}
	return s, nil
}

// policyInfo is what we read back of a policy in a dump.
type policyInfo struct {
	Sel            []byte // the raw selector, to delete it by
	Dir            uint8
	IfID           uint32
	Reqid          uint32 // of its first template; 0 when it has none
	Priority       uint32
	Mark, MarkMask uint32
}

func parsePolicy(b []byte) (policyInfo, error) {
	if len(b) < sizePolicyInfo {
		return policyInfo{}, fmt.Errorf("xfrm: short policy message (%d octets)", len(b))
	}
	p := policyInfo{Sel: append([]byte(nil), b[:sizeSelector]...), Dir: b[160], Priority: ne.Uint32(b[152:])}
	a := attrs(b[sizePolicyInfo:])
	if v, ok := a[attrIfID]; ok && len(v) >= 4 {
		p.IfID = ne.Uint32(v)
	}
	if v, ok := a[attrMark]; ok && len(v) >= sizeMark {
		p.Mark, p.MarkMask = ne.Uint32(v[0:]), ne.Uint32(v[4:])
	}
	if v, ok := a[attrTmpl]; ok && len(v) >= sizeUserTmpl {
		p.Reqid = ne.Uint32(v[44:])
	}
	return p, nil
}

// rawPolicyID deletes a policy read back from a dump: by its selector,
// direction, if_id and mark (a marked policy is found only by its mark).
func rawPolicyID(p policyInfo) []byte {
	b := make([]byte, sizePolicyID, sizePolicyID+24)
	copy(b, p.Sel)
	b[60] = p.Dir
	if p.IfID != 0 {
		b = appendAttr(b, attrIfID, u32(p.IfID))
	}
	if p.MarkMask != 0 {
		b = appendAttr(b, attrMark, mark(p.Mark, p.MarkMask))
	}
	return b
}

// parseExpire reads struct xfrm_user_expire: the state, then whether
// its hard limit was hit; attributes follow at 232 (its size).
func parseExpire(b []byte) (stateInfo, bool, error) {
	if len(b) < sizeUsersaInfo+1 {
		return stateInfo{}, false, errors.New("xfrm: short expire message")
	}
	s, err := parseStateAt(b, sizeUsersaInfo+8)
	return s, b[sizeUsersaInfo] != 0, err
}

// Acquire is what we read of XFRM_MSG_ACQUIRE (struct xfrm_user_acquire,
// include/uapi/linux/xfrm.h): an outbound packet matched a policy whose
// template no state fills, so the kernel made a larval state (SPI 0) and
// asks the key manager for the SA (RFC 4301 §5.1, §4.4.1's "PROTECT"
// entry without an SA; PF_KEY's SADB_ACQUIRE, RFC 2367).
type Acquire struct {
	// Dst and Src are the larval state's (the template's) outer
	// addresses; Family is theirs.
	Dst, Src netip.Addr
	Family   uint16
	// FlowSrc and FlowDst are the packet's own addresses (the larval
	// state's selector, made from the packet's flow).
	FlowSrc, FlowDst netip.Addr
	Proto            uint8
	// The policy that matched: its priority, index and direction, and
	// its first template's reqid and mode.
	Priority, Index uint32
	Dir             uint8
	Reqid           uint32
	Mode            uint8
	// Seq names the larval state (its km.seq): an SA installed with it,
	// or XFRM_MSG_ALLOCSPI given it, finds the larval one.
	Seq            uint32
	Mark, MarkMask uint32
}

// parseAcquire reads XFRM_MSG_ACQUIRE. Its layout, with the C
// compiler's padding on 64-bit Linux (the policy's lifetimes are u64s,
// so the structure is 8-aligned):
//
//	  0 struct xfrm_id id             (daddr 0, spi 16, proto 20; 24)
//	 24 xfrm_address_t saddr          (16)
//	 40 struct xfrm_selector sel      (56; family at +40)
//	 96 struct xfrm_userpolicy_info policy (168; priority +152,
//	                                   index +156, dir +160)
//	264 __u32 aalgos, 268 ealgos, 272 calgos, 276 seq; size 280
//
// then attributes: XFRMA_TMPL (the policy's templates), XFRMA_MARK, ...
func parseAcquire(b []byte) (Acquire, error) {
	if len(b) < sizeUserAcquire {
		return Acquire{}, fmt.Errorf("xfrm: short acquire message (%d octets)", len(b))
	}
	var a Acquire
	selFam := ne.Uint16(b[40+40:])
	if selFam != 2 && selFam != 10 {
		return Acquire{}, fmt.Errorf("xfrm: acquire for address family %d", selFam)
	}
	a.FlowDst = getAddr(b[40:], selFam)
	a.FlowSrc = getAddr(b[40+16:], selFam)
	a.Proto = b[40+44]
	a.Priority = ne.Uint32(b[96+152:])
	a.Index = ne.Uint32(b[96+156:])
	a.Dir = b[96+160]
	a.Seq = ne.Uint32(b[276:])
	at := attrs(b[sizeUserAcquire:])
	// The outer family is the template's (a tunnel may carry IPv6 in
	// IPv4); without a template, the selector's.
	a.Family = selFam
	if v, ok := at[attrTmpl]; ok && len(v) >= sizeUserTmpl {
		if f := ne.Uint16(v[24:]); f == 2 || f == 10 {
			a.Family = f
		}
		a.Reqid = ne.Uint32(v[44:])
		a.Mode = v[48]
	}
	if v, ok := at[attrMark]; ok && len(v) >= sizeMark {
		a.Mark, a.MarkMask = ne.Uint32(v[0:]), ne.Uint32(v[4:])
	}
	a.Dst = getAddr(b[0:], a.Family)
	a.Src = getAddr(b[24:], a.Family)
	return a, nil
}

// larval names a larval state, to delete it: the kernel looks such a
// state (SPI 0) up by its acquire seq, or by its template's addresses,
// mode and reqid.
type larval struct {
	Seq            uint32
	Dst, Src       netip.Addr
	Family         uint16
	Mode           uint8
	Reqid          uint32
	Mark, MarkMask uint32
}

// allocSPI builds XFRM_MSG_ALLOCSPI (struct xfrm_userspi_info: a struct
// xfrm_usersa_info, then min and max) for a larval state. A larval state
// has no SPI, so XFRM_MSG_DELSA (which finds ESP states by SPI) cannot
// name it; given one SPI in [min, max] it can. The kernel takes the state
// of info.seq, else the larval state of the addresses, mode and reqid
// (making one, which is then deleted as well).
func (l larval) allocSPI(lo, hi uint32) []byte {
	b := make([]byte, sizeUserSPIInfo, sizeUserSPIInfo+12)
	putAddr(b[56:], l.Dst)
	b[76] = protoESP
	putAddr(b[80:], l.Src)
	ne.PutUint32(b[204:], l.Seq)
	ne.PutUint32(b[208:], l.Reqid)
	ne.PutUint16(b[212:], l.Family)
	b[214] = l.Mode
	ne.PutUint32(b[sizeUsersaInfo:], lo)
	ne.PutUint32(b[sizeUsersaInfo+4:], hi)
	if l.MarkMask != 0 {
		b = appendAttr(b, attrMark, mark(l.Mark, l.MarkMask))
	}
	return b
}
