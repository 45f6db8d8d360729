package wire

import (
	"net/netip"
	"testing"
)

// typicalAuth is the plaintext payload chain of an initiator's IKE_AUTH
// request with a virtual-IP request, MOBIKE and clone support.
func typicalAuth() []Payload {
	return []Payload{
		&ID{IDType: IDFQDN, Data: []byte("laptop.example.org")},
		&Auth{Method: AuthDigitalSignature, Data: make([]byte, 80)},
		&CP{CFGType: CFGRequest, Attributes: []CPAttribute{{Type: CPInternalIP4Address}, {Type: CPInternalIP4DNS}, {Type: CPInternalIP6Address}}},
		&SA{Proposals: []Proposal{
			{Number: 1, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{
				{Type: TransformENCR, ID: uint16(EncrAESGCM16), Attributes: []Attribute{KeyLengthAttr(128)}},
				{Type: TransformESN, ID: uint16(ESNNo)}}},
			{Number: 2, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{
				{Type: TransformENCR, ID: uint16(EncrAESCBC), Attributes: []Attribute{KeyLengthAttr(128)}},
				{Type: TransformINTEG, ID: uint16(IntegHMACSHA2256128)},
				{Type: TransformESN, ID: uint16(ESNNo)}}},
		}},
		&TS{Selectors: []Selector{PrefixSelector(netip.MustParsePrefix("0.0.0.0/0"), 0), PrefixSelector(netip.MustParsePrefix("::/0"), 0)}},
		&TS{Responder: true, Selectors: []Selector{PrefixSelector(netip.MustParsePrefix("10.20.0.0/16"), 0)}},
		NewNotify(NotifyInitialContact, nil),
		NewNotify(NotifyMOBIKESupported, nil),
		NewNotify(NotifyCloneIKESASupported, nil),
		NewNotify(NotifyNoAdditionalAddresses, nil),
	}
}

// BenchmarkIKEAuthCodec decodes and re-encodes a typical IKE_AUTH payload
// chain (the plaintext of its SK payload).
func BenchmarkIKEAuthCodec(b *testing.B) {
	first, enc, err := EncodePayloads(typicalAuth())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		ps, err := ParsePayloads(first, enc)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := EncodePayloads(ps); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseMessage decodes a whole IKE_SA_INIT request.
func BenchmarkParseMessage(b *testing.B) {
	m := &Message{Header: Header{SPIi: 1, MajorVersion: 2, Exchange: IKESAInit, Flags: FlagInitiator}, Payloads: []Payload{
		typicalAuth()[3], &KE{Group: DHCurve25519, Data: make([]byte, 32)}, &Nonce{Data: make([]byte, 32)},
		NewNotify(NotifyNATDetectionSourceIP, make([]byte, 20)), NewNotify(NotifyNATDetectionDestinationIP, make([]byte, 20)),
	}}
	raw, err := m.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMessage(raw); err != nil {
			b.Fatal(err)
		}
	}
}
