package proposal

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

func tr(tt wire.TransformType, id uint16, attrs ...wire.Attribute) wire.Transform {
	return wire.Transform{Type: tt, ID: id, Attributes: attrs}
}

func aesT(id wire.EncrID, bits int) wire.Transform {
	return tr(wire.TransformENCR, uint16(id), wire.KeyLengthAttr(bits))
}

var (
	tCBC128    = aesT(wire.EncrAESCBC, 128)
	tCBC256    = aesT(wire.EncrAESCBC, 256)
	tGCM128    = aesT(wire.EncrAESGCM16, 128)
	tChaCha    = tr(wire.TransformENCR, uint16(wire.EncrChaCha20Poly1305))
	tSHA1      = tr(wire.TransformINTEG, uint16(wire.IntegHMACSHA196))
	tSHA256    = tr(wire.TransformINTEG, uint16(wire.IntegHMACSHA2256128))
	tIntegNone = tr(wire.TransformINTEG, uint16(wire.IntegNone))
	tPRF256    = tr(wire.TransformPRF, uint16(wire.PRFHMACSHA2256))
	tMODP2048  = tr(wire.TransformDH, uint16(wire.DHMODP2048))
	tMODP3072  = tr(wire.TransformDH, uint16(wire.DHMODP3072))
	tX25519    = tr(wire.TransformDH, uint16(wire.DHCurve25519))
	tDHNone    = tr(wire.TransformDH, uint16(wire.DHNone))
	tNoESN     = tr(wire.TransformESN, uint16(wire.ESNNo))
	tESN       = tr(wire.TransformESN, uint16(wire.ESNYes))
)

// sa builds an offer by hand; each proposal is (protocol, spi, transforms).
func sa(props ...wire.Proposal) *wire.SA {
	for i := range props {
		props[i].Number = uint8(i + 1)
	}
	return &wire.SA{Proposals: props}
}

func ikeP(ts ...wire.Transform) wire.Proposal {
	return wire.Proposal{Protocol: wire.ProtoIKE, Transforms: ts}
}

func espP(ts ...wire.Transform) wire.Proposal {
	return wire.Proposal{Protocol: wire.ProtoESP, SPI: []byte{0xc0, 0, 0, 1}, Transforms: ts}
}

// selectBoth runs Select and checks its answer the way the initiator will
// (CheckResponse with a responder SPI of the right size), so every
// successful selection is also proven to be a valid response (§2.7).
func selectBoth(t *testing.T, local []Proposal, offered *wire.SA, proto wire.ProtocolID, preferLocal bool, hint wire.DHGroup) (wire.Proposal, Negotiated, bool) {
	t.Helper()
	offered = viaWire(t, offered)
	resp, n, ok := Select(local, offered, proto, preferLocal, hint)
	if !ok {
		return resp, n, ok
	}
	r := resp
	for _, o := range offered.Proposals {
		if o.Number == r.Number {
			r.SPI = make([]byte, len(o.SPI))
			for i := range r.SPI {
				r.SPI[i] = 0x55
			}
		}
	}
	checked, err := CheckResponse(offered, viaWire(t, &wire.SA{Proposals: []wire.Proposal{r}}))
	if err != nil {
		t.Fatalf("Select's answer %+v fails CheckResponse: %v", resp, err)
	}
	checked.SPI = n.SPI
	if !reflect.DeepEqual(checked, n) {
		t.Errorf("CheckResponse gives %+v, Select %+v", checked, n)
	}
	return resp, n, ok
}

// TestSelectOrder: with preferLocal our proposal order and our order
// within a type decide, otherwise the peer's (RFC 7296 §2.7, §3.3).
func TestSelectOrder(t *testing.T) {
	local := mustList(t, ParseIKEList, "aes256gcm16-prfsha384-ecp384,aes128-sha256-modp2048")
	offered := WireSA(mustList(t, ParseIKEList, "aes128-sha256-modp2048,aes256gcm16-prfsha384-ecp384"), nil, true)

	_, n, ok := selectBoth(t, local, offered, wire.ProtoIKE, true, wire.DHNone)
	if !ok || n.Number != 2 || n.String() != "aes256gcm16-prfsha384-ecp384" {
		t.Errorf("preferLocal: %v #%d %v", ok, n.Number, n)
	}
	_, n, ok = selectBoth(t, local, offered, wire.ProtoIKE, false, wire.DHNone)
	if !ok || n.Number != 1 || n.String() != "aes128-sha256-modp2048" {
		t.Errorf("peer order: %v #%d %v", ok, n.Number, n)
	}

	local = mustList(t, ParseIKEList, "aes128-aes256-sha256-sha384-modp2048-ecp256")
	offered = WireSA(mustList(t, ParseIKEList, "aes256-aes128-sha384-sha256-ecp256-modp2048"), nil, true)
	if _, n, _ := selectBoth(t, local, offered, wire.ProtoIKE, true, wire.DHNone); n.String() != "aes128-sha256-modp2048" {
		t.Errorf("preferLocal within types: %v", n)
	}
	if _, n, _ := selectBoth(t, local, offered, wire.ProtoIKE, false, wire.DHNone); n.String() != "aes256-sha384-ecp256" {
		t.Errorf("peer order within types: %v", n)
	}
}

// TestSelectAndOr: transforms of one type are alternatives, each type
// present must be satisfied (RFC 7296 §3.3).
func TestSelectAndOr(t *testing.T) {
	local := mustList(t, ParseIKEList, "aes128-sha256-modp2048")
	offer := sa(ikeP(tCBC128, tSHA1, tSHA256, tPRF256, tMODP2048))
	resp, n, ok := selectBoth(t, local, offer, wire.ProtoIKE, false, wire.DHNone)
	if !ok || n.Integ != wire.IntegHMACSHA2256128 || len(resp.Transforms) != 4 {
		t.Errorf("OR within INTEG: %v %v %+v", ok, n, resp.Transforms)
	}
	if _, _, ok := selectBoth(t, local, sa(ikeP(tCBC128, tSHA256, tPRF256, tMODP3072)), wire.ProtoIKE, false, wire.DHNone); ok {
		t.Error("AND across types: accepted without an acceptable DH group")
	}
	if _, _, ok := selectBoth(t, local, sa(ikeP(tCBC256, tSHA256, tPRF256, tMODP2048)), wire.ProtoIKE, false, wire.DHNone); ok {
		t.Error("accepted AES-256 when only AES-128 is configured; key lengths must match")
	}
}

// TestSelectUnknown: an unknown transform type rejects its proposal only;
// an unknown transform ID or attribute rejects that transform only
// (RFC 7296 §3.3.6).
func TestSelectUnknown(t *testing.T) {
	local := mustList(t, ParseIKEList, "aes128-aes256-sha256-modp2048")
	unknownType := tr(240, 1)
	offer := sa(
		ikeP(tCBC128, tSHA256, tPRF256, tMODP2048, unknownType),
		ikeP(tCBC256, tSHA256, tPRF256, tMODP2048),
	)
	if _, n, ok := selectBoth(t, local, offer, wire.ProtoIKE, true, wire.DHNone); !ok || n.Number != 2 {
		t.Errorf("unknown type: %v #%d", ok, n.Number)
	}

	odd := aesT(wire.EncrAESCBC, 128)
	odd.Attributes = append(odd.Attributes, wire.Attribute{Type: 99, Value: []byte{1}})
	unknownID := tr(wire.TransformENCR, 1234)
	offer = sa(ikeP(unknownID, odd, tCBC256, tSHA256, tPRF256, tMODP2048))
	if _, n, ok := selectBoth(t, local, offer, wire.ProtoIKE, true, wire.DHNone); !ok || n.Encr != cbc256 {
		t.Errorf("unknown attribute/ID: %v %v", ok, n)
	}
	offer = sa(ikeP(unknownID, odd, tSHA256, tPRF256, tMODP2048))
	if _, _, ok := selectBoth(t, local, offer, wire.ProtoIKE, true, wire.DHNone); ok {
		t.Error("accepted a proposal whose only ciphers are unknown")
	}

	// Key Length missing, duplicated or TLV-encoded is not understood.
	bad := []wire.Transform{
		tr(wire.TransformENCR, uint16(wire.EncrAESCBC)),
		tr(wire.TransformENCR, uint16(wire.EncrAESCBC), wire.KeyLengthAttr(128), wire.KeyLengthAttr(128)),
		tr(wire.TransformENCR, uint16(wire.EncrAESCBC), wire.Attribute{Type: wire.AttrKeyLength, Value: []byte{0, 128}}),
		tr(wire.TransformPRF, uint16(wire.PRFHMACSHA2256), wire.KeyLengthAttr(256)),
	}
	for _, b := range bad {
		ts := []wire.Transform{b, tSHA256, tPRF256, tMODP2048}
		if b.Type == wire.TransformPRF {
			ts = []wire.Transform{tCBC128, tSHA256, b, tMODP2048}
		}
		if _, _, ok := selectBoth(t, local, sa(ikeP(ts...)), wire.ProtoIKE, true, wire.DHNone); ok {
			t.Errorf("accepted %+v", b)
		}
	}

	// PRF does not belong in ESP: a type not valid for the protocol.
	espLocal := mustList(t, ParseESPList, "aes128gcm16")
	if _, n, ok := selectBoth(t, espLocal, sa(espP(tGCM128, tPRF256, tNoESN), espP(tGCM128, tNoESN)), wire.ProtoESP, true, wire.DHNone); !ok || n.Number != 2 {
		t.Errorf("PRF in ESP: %v #%d", ok, n.Number)
	}
}

// TestSelectAttributesUnchanged: the chosen transforms are the offered
// ones, attributes included, copied out of the message buffer (§3.3.6).
func TestSelectAttributesUnchanged(t *testing.T) {
	local := mustList(t, ParseESPList, "aes256-sha256")
	offer := viaWire(t, sa(espP(tCBC128, tCBC256, tSHA256, tNoESN)))
	resp, n, ok := Select(local, offer, wire.ProtoESP, true, wire.DHNone)
	if !ok {
		t.Fatal("no match")
	}
	if !reflect.DeepEqual(resp.Transforms[0], offer.Proposals[0].Transforms[1]) {
		t.Errorf("ENCR %+v, offered %+v", resp.Transforms[0], offer.Proposals[0].Transforms[1])
	}
	offer.Proposals[0].Transforms[1].Attributes[0].Value[1] = 0
	offer.Proposals[0].SPI[0] = 0
	if bits, _ := resp.Transforms[0].KeyLength(); bits != 256 || n.SPI[0] != 0xc0 || resp.SPI != nil {
		t.Errorf("result aliases the offer or carries its SPI: %d %x %x", bits, n.SPI, resp.SPI)
	}
}

// TestSelectMandatory: proposals lacking a mandatory type are rejected
// (RFC 7296 §3.3.3, §3.3.6); ESP without ESN is read as NO_ESN.
func TestSelectMandatory(t *testing.T) {
	ikeLocal := mustList(t, ParseIKEList, "aes128-sha256-modp2048,aes128gcm16-prfsha256-modp2048")
	for name, p := range map[string]wire.Proposal{
		"no PRF":   ikeP(tCBC128, tSHA256, tMODP2048),
		"no DH":    ikeP(tCBC128, tSHA256, tPRF256),
		"no INTEG": ikeP(tCBC128, tPRF256, tMODP2048),
		"no ENCR":  ikeP(tSHA256, tPRF256, tMODP2048),
		"DH NONE":  ikeP(tGCM128, tPRF256, tDHNone),
	} {
		if _, _, ok := selectBoth(t, ikeLocal, sa(p), wire.ProtoIKE, true, wire.DHNone); ok {
			t.Errorf("IKE %s accepted", name)
		}
	}
	espLocal := mustList(t, ParseESPList, "aes128-sha256,aes128gcm16")
	if _, _, ok := selectBoth(t, espLocal, sa(espP(tCBC128, tNoESN)), wire.ProtoESP, true, wire.DHNone); ok {
		t.Error("ESP CBC without INTEG accepted")
	}
	if _, n, ok := selectBoth(t, espLocal, sa(espP(tGCM128)), wire.ProtoESP, true, wire.DHNone); !ok || n.ESN != wire.ESNNo {
		t.Errorf("ESP without ESN: %v %v", ok, n)
	}
	esnOnly := mustList(t, ParseESPList, "aes128gcm16-esn")
	if _, _, ok := selectBoth(t, esnOnly, sa(espP(tGCM128)), wire.ProtoESP, true, wire.DHNone); ok {
		t.Error("ESN-only local accepted an offer without ESN")
	}
	if _, n, ok := selectBoth(t, esnOnly, sa(espP(tGCM128, tNoESN, tESN)), wire.ProtoESP, true, wire.DHNone); !ok || n.ESN != wire.ESNYes {
		t.Errorf("ESN: %v %v", ok, n)
	}
}

// TestSelectAEAD: a combined-mode cipher goes with no INTEG or INTEG NONE
// only (RFC 7296 §3.3).
func TestSelectAEAD(t *testing.T) {
	local := mustList(t, ParseIKEList, "aes128gcm16-chacha20poly1305-prfsha256-x25519")
	if _, _, ok := selectBoth(t, local, sa(ikeP(tGCM128, tSHA256, tPRF256, tX25519)), wire.ProtoIKE, true, wire.DHNone); ok {
		t.Error("AEAD with INTEG accepted")
	}
	resp, n, ok := selectBoth(t, local, sa(ikeP(tGCM128, tIntegNone, tPRF256, tX25519)), wire.ProtoIKE, true, wire.DHNone)
	if !ok || n.Integ != wire.IntegNone || len(resp.Transforms) != 4 {
		t.Errorf("AEAD with INTEG NONE: %v %v %+v", ok, n, resp.Transforms)
	}
	// ChaCha20-Poly1305 has a fixed key and takes no Key Length (RFC 7296 §3.3.5).
	chachaKL := tr(wire.TransformENCR, uint16(wire.EncrChaCha20Poly1305), wire.KeyLengthAttr(256))
	if _, _, ok := selectBoth(t, local, sa(ikeP(chachaKL, tPRF256, tX25519)), wire.ProtoIKE, true, wire.DHNone); ok {
		t.Error("ChaCha20-Poly1305 with a Key Length accepted")
	}
	if _, n, ok := selectBoth(t, local, sa(ikeP(tChaCha, tPRF256, tX25519)), wire.ProtoIKE, true, wire.DHNone); !ok || n.Encr != chacha {
		t.Errorf("ChaCha20-Poly1305: %v %v", ok, n)
	}
	// A mixed offer still yields a consistent pair for a CBC policy.
	cbcLocal := mustList(t, ParseIKEList, "aes128-sha256-x25519")
	if _, n, ok := selectBoth(t, cbcLocal, sa(ikeP(tGCM128, tCBC128, tSHA256, tPRF256, tX25519)), wire.ProtoIKE, true, wire.DHNone); !ok || n.Encr != cbc128 {
		t.Errorf("mixed offer, CBC policy: %v %v", ok, n)
	}
}

// TestSelectDH: IKE needs a group; ESP needs one of ours when we require
// PFS and accepts none or NONE otherwise (RFC 7296 §1.3.1, §3.3.3); the KE
// group is preferred when acceptable.
func TestSelectDH(t *testing.T) {
	pfs := mustList(t, ParseESPList, "aes128gcm16-x25519")
	noPFS := mustList(t, ParseESPList, "aes128gcm16")
	withDH := sa(espP(tGCM128, tX25519, tNoESN))
	without := sa(espP(tGCM128, tNoESN))
	withNone := sa(espP(tGCM128, tDHNone, tNoESN))

	if _, _, ok := selectBoth(t, pfs, without, wire.ProtoESP, true, wire.DHNone); ok {
		t.Error("PFS required but accepted an offer without DH")
	}
	if _, _, ok := selectBoth(t, pfs, withNone, wire.ProtoESP, true, wire.DHNone); ok {
		t.Error("PFS required but accepted DH NONE")
	}
	if _, n, ok := selectBoth(t, pfs, withDH, wire.ProtoESP, true, wire.DHCurve25519); !ok || n.DH != wire.DHCurve25519 {
		t.Errorf("PFS: %v %v", ok, n)
	}
	if _, _, ok := selectBoth(t, noPFS, withDH, wire.ProtoESP, true, wire.DHCurve25519); ok {
		t.Error("no PFS configured but accepted a group")
	}
	if resp, n, ok := selectBoth(t, noPFS, withNone, wire.ProtoESP, true, wire.DHNone); !ok || n.DH != wire.DHNone || len(resp.Transforms) != 3 {
		t.Errorf("DH NONE: %v %v %+v", ok, n, resp.Transforms)
	}
	if _, n, ok := selectBoth(t, noPFS, without, wire.ProtoESP, true, wire.DHNone); !ok || n.DH != wire.DHNone {
		t.Errorf("no DH: %v %v", ok, n)
	}
	// IKE_AUTH: the offer has no DH (§1.2), so PFS groups are stripped.
	if _, _, ok := selectBoth(t, WithoutDH(pfs), without, wire.ProtoESP, true, wire.DHNone); !ok {
		t.Error("IKE_AUTH selection with WithoutDH failed")
	}

	local := mustList(t, ParseIKEList, "aes128gcm16-prfsha256-x25519-ecp256")
	offer := sa(ikeP(tGCM128, tPRF256, tMODP2048, tr(wire.TransformDH, uint16(wire.DHECP256)), tX25519))
	for _, c := range []struct {
		hint, want wire.DHGroup
		prefer     bool
	}{
		{wire.DHNone, wire.DHCurve25519, true},
		{wire.DHNone, wire.DHECP256, false},
		{wire.DHECP256, wire.DHECP256, true},
		{wire.DHCurve25519, wire.DHCurve25519, false},
		{wire.DHMODP2048, wire.DHCurve25519, true}, // offered but not ours
	} {
		if _, n, ok := selectBoth(t, local, offer, wire.ProtoIKE, c.prefer, c.hint); !ok || n.DH != c.want {
			t.Errorf("hint %v preferLocal %v: %v %v, want %v", c.hint, c.prefer, ok, n.DH, c.want)
		}
	}
}

// TestSelectNumberAndSPI: the answer keeps the chosen proposal's number
// (RFC 7296 §3.3.1); the responder supplies its own SPI.
func TestSelectNumberAndSPI(t *testing.T) {
	local := mustList(t, ParseESPList, "aes128-sha256")
	offer := WireSA(mustList(t, ParseESPList, "aes256gcm16,chacha20poly1305,aes128-sha256"), []byte{9, 8, 7, 6}, false)
	resp, n, ok := selectBoth(t, local, offer, wire.ProtoESP, true, wire.DHNone)
	if !ok || resp.Number != 3 || n.Number != 3 || resp.Protocol != wire.ProtoESP || !bytes.Equal(n.SPI, []byte{9, 8, 7, 6}) || len(resp.SPI) != 0 {
		t.Errorf("%v %+v %+v", ok, resp, n)
	}
}

// TestSelectRejects: wrong protocol, wrong SPI size, nothing in common,
// and nothing unsupported chosen even when a hand-built local lists it.
func TestSelectRejects(t *testing.T) {
	ikeLocal := mustList(t, ParseIKEList, "default")
	ikeOffer := WireSA(ikeLocal, nil, true)
	if _, _, ok := Select(ikeLocal, ikeOffer, wire.ProtoESP, true, wire.DHNone); ok {
		t.Error("IKE offer selected as ESP")
	}
	if _, _, ok := Select(ikeLocal, WireSA(ikeLocal, []byte{1, 2, 3}, true), wire.ProtoIKE, true, wire.DHNone); ok {
		t.Error("IKE offer with a 3-octet SPI selected")
	}
	if _, _, ok := Select(ikeLocal, WireSA(ikeLocal, []byte{1, 2, 3, 4, 5, 6, 7, 8}, true), wire.ProtoIKE, true, wire.DHNone); !ok {
		t.Error("IKE rekey offer with an 8-octet SPI rejected")
	}
	espLocal := mustList(t, ParseESPList, "default")
	if _, _, ok := Select(espLocal, WireSA(espLocal, nil, false), wire.ProtoESP, true, wire.DHNone); ok {
		t.Error("ESP offer without SPI selected")
	}
	if _, _, ok := Select(ikeLocal, nil, wire.ProtoIKE, true, wire.DHNone); ok {
		t.Error("nil offer selected")
	}
	if _, _, ok := Select(nil, ikeOffer, wire.ProtoIKE, true, wire.DHNone); ok {
		t.Error("selected without local proposals")
	}
	ctr := Proposal{Protocol: wire.ProtoIKE, Encr: encrs(Algorithm{wire.EncrAESCTR, 128}),
		Integ: integs(wire.IntegHMACSHA2256128), PRF: prfs(wire.PRFHMACSHA2256), DH: groups(wire.DHMODP2048)}
	offer := sa(ikeP(aesT(wire.EncrAESCTR, 128), tSHA256, tPRF256, tMODP2048))
	if _, _, ok := Select([]Proposal{ctr}, offer, wire.ProtoIKE, true, wire.DHNone); ok {
		t.Error("chose AES-CTR, which the crypto layer does not run")
	}
}

func validResponse(offered *wire.SA, num uint8, ts ...wire.Transform) *wire.SA {
	p := wire.Proposal{Number: num, Protocol: offered.Proposals[0].Protocol, Transforms: ts}
	if len(offered.Proposals[0].SPI) > 0 {
		p.SPI = make([]byte, len(offered.Proposals[0].SPI))
	}
	return &wire.SA{Proposals: []wire.Proposal{p}}
}

// TestCheckResponse: the initiator accepts exactly one of its proposals
// with one offered transform per offered type, and rejects anything else
// (RFC 7296 §2.7, §3.3.6).
func TestCheckResponse(t *testing.T) {
	offered := WireSA(mustList(t, ParseIKEList, "aes128gcm16-prfsha256-x25519,aes128-aes256-sha256-sha384-modp2048-ecp256"), nil, true)
	tSHA384 := tr(wire.TransformINTEG, uint16(wire.IntegHMACSHA2384192))
	tPRF384 := tr(wire.TransformPRF, uint16(wire.PRFHMACSHA2384))
	tECP256 := tr(wire.TransformDH, uint16(wire.DHECP256))

	n, err := CheckResponse(offered, validResponse(offered, 2, tCBC256, tPRF384, tSHA384, tECP256))
	if err != nil || n.Number != 2 || n.String() != "aes256-sha384-ecp256" {
		t.Fatalf("valid response: %v %v", n, err)
	}
	if n, err := CheckResponse(offered, validResponse(offered, 1, tX25519, tPRF256, tGCM128)); err != nil || n.String() != "aes128gcm16-prfsha256-x25519" {
		t.Errorf("valid response in another order: %v %v", n, err)
	}

	two := validResponse(offered, 1, tGCM128, tPRF256, tX25519)
	two.Proposals = append(two.Proposals, validResponse(offered, 2, tCBC128, tSHA256, tPRF256, tMODP2048).Proposals[0])
	changedKL := aesT(wire.EncrAESCBC, 192)
	bad := []struct {
		name string
		resp *wire.SA
		want string
	}{
		{"two proposals", two, "2 proposals"},
		{"none", &wire.SA{}, "0 proposals"},
		{"nil", nil, "0 proposals"},
		{"unknown number", validResponse(offered, 7, tGCM128, tPRF256, tX25519), "#7"},
		{"not offered", validResponse(offered, 1, tCBC128, tPRF256, tX25519), "AES_CBC"},
		{"other proposal's transform", validResponse(offered, 1, tGCM128, tPRF256, tMODP2048), "MODP_2048"},
		{"two of a type", validResponse(offered, 2, tCBC128, tCBC256, tPRF256, tSHA256, tMODP2048), "more than one ENCR"},
		{"changed key length", validResponse(offered, 2, changedKL, tPRF256, tSHA256, tMODP2048), "key length 192"},
		{"dropped key length", validResponse(offered, 2, tr(wire.TransformENCR, uint16(wire.EncrAESCBC)), tPRF256, tSHA256, tMODP2048), "ENCR_AES_CBC"},
		{"missing type", validResponse(offered, 2, tCBC128, tPRF256, tSHA256), "lacks a DH"},
		{"extra INTEG NONE", validResponse(offered, 1, tGCM128, tPRF256, tX25519, tIntegNone), "NONE"},
	}
	for _, b := range bad {
		_, err := CheckResponse(offered, b.resp)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want mention of %q", b.name, err, b.want)
		}
	}

	r := validResponse(offered, 1, tGCM128, tPRF256, tX25519)
	r.Proposals[0].Protocol = wire.ProtoESP
	if _, err := CheckResponse(offered, r); err == nil || !strings.Contains(err.Error(), "ESP") {
		t.Errorf("protocol changed: %v", err)
	}
	r = validResponse(offered, 1, tGCM128, tPRF256, tX25519)
	r.Proposals[0].SPI = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	if _, err := CheckResponse(offered, r); err == nil || !strings.Contains(err.Error(), "SPI") {
		t.Errorf("SPI added: %v", err)
	}
	if _, err := CheckResponse(nil, r); err == nil {
		t.Error("nil offer accepted")
	}

	espOffer := WireSA(mustList(t, ParseESPList, "aes128gcm16-esn-noesn"), []byte{1, 2, 3, 4}, false)
	resp := validResponse(espOffer, 1, tGCM128, tESN)
	resp.Proposals[0].SPI = []byte{5, 6, 7, 8}
	if n, err := CheckResponse(espOffer, resp); err != nil || n.ESN != wire.ESNYes || !bytes.Equal(n.SPI, []byte{5, 6, 7, 8}) {
		t.Errorf("ESP response: %v %v", n, err)
	}
}

// TestNegotiatedFrom checks the structural rules on a single choice.
func TestNegotiatedFrom(t *testing.T) {
	good := []struct {
		p    wire.Proposal
		want string
	}{
		{ikeP(tGCM128, tPRF256, tX25519), "aes128gcm16-prfsha256-x25519"},
		{ikeP(tCBC128, tSHA256, tPRF256, tMODP2048), "aes128-sha256-modp2048"},
		{espP(tGCM128, tNoESN), "aes128gcm16"},
		{espP(tChaCha, tX25519, tESN), "chacha20poly1305-x25519-esn"},
		{espP(tCBC256, tSHA1, tDHNone), "aes256-sha1"},
	}
	for _, g := range good {
		n, err := NegotiatedFrom(g.p)
		if err != nil || n.String() != g.want {
			t.Errorf("%+v: %v %v, want %s", g.p, n, err, g.want)
			continue
		}
		// The notation is the config notation: it parses back.
		parse := ParseIKE
		if g.p.Protocol == wire.ProtoESP {
			parse = ParseESP
		}
		if _, err := parse(n.String()); err != nil {
			t.Errorf("%s does not parse: %v", n, err)
		}
	}
	bad := []struct {
		p    wire.Proposal
		want string
	}{
		{ikeP(tGCM128, tGCM128, tPRF256, tX25519), "more than one"},
		{ikeP(tGCM128, tX25519), "no PRF"},
		{ikeP(tGCM128, tPRF256), "no DH"},
		{ikeP(tPRF256, tX25519), "no ENCR"},
		{ikeP(tCBC128, tPRF256, tX25519), "without an integrity"},
		{ikeP(tGCM128, tSHA256, tPRF256, tX25519), "AEAD"},
		{ikeP(tGCM128, tPRF256, tX25519, tNoESN), "not valid"},
		{ikeP(aesT(wire.EncrAESCTR, 128), tSHA256, tPRF256, tX25519), "not supported"},
		{ikeP(tr(wire.TransformENCR, uint16(wire.EncrAESCBC)), tSHA256, tPRF256, tX25519), "Key Length"},
		{ikeP(tr(wire.TransformENCR, uint16(wire.EncrChaCha20Poly1305), wire.KeyLengthAttr(256)), tPRF256, tX25519), "attributes"},
		{wire.Proposal{Protocol: wire.ProtoAH, Transforms: []wire.Transform{tSHA256}}, "AH"},
	}
	for _, b := range bad {
		if _, err := NegotiatedFrom(b.p); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: %v, want mention of %q", b.p, err, b.want)
		}
	}
}
