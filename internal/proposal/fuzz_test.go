package proposal

import (
	"reflect"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// FuzzSelect feeds SA payload bodies from the network to the responder and
// initiator logic: nothing may panic, and whenever Select accepts, its
// answer must pass the initiator's CheckResponse with the same suite, i.e.
// the responder never says anything RFC 7296 §2.7 tells the initiator to
// reject.
func FuzzSelect(f *testing.F) {
	ikeLocal, err := ParseIKEList(DefaultIKE + ",aes256-sha512-sha1-ecp521-modp4096")
	if err != nil {
		f.Fatal(err)
	}
	espLocal, err := ParseESPList(DefaultESP + ",aes256gcm16-esn-x25519,aes192-sha384-modp3072")
	if err != nil {
		f.Fatal(err)
	}
	for _, sa := range []*wire.SA{
		WireSA(ikeLocal, nil, true),
		WireSA(ikeLocal, []byte{1, 2, 3, 4, 5, 6, 7, 8}, true),
		WireSA(espLocal, []byte{1, 2, 3, 4}, true),
		WireSA(espLocal, []byte{1, 2, 3, 4}, false),
		sa(ikeP(tGCM128, tIntegNone, tPRF256, tX25519, tr(240, 1))),
		sa(espP(tGCM128, tDHNone), espP(tCBC128, tSHA256, tNoESN, tESN)),
	} {
		_, b, err := wire.EncodePayloads([]wire.Payload{sa})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	locals := map[wire.ProtocolID][][]Proposal{
		wire.ProtoIKE: {ikeLocal},
		wire.ProtoESP: {espLocal, WithoutDH(espLocal)},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := wire.ParsePayloads(wire.PayloadSA, b)
		if err != nil {
			return
		}
		offered, ok := wire.First[*wire.SA](ps)
		if !ok {
			return
		}
		for i := range offered.Proposals {
			_, _ = NegotiatedFrom(offered.Proposals[i])
		}
		_, _ = CheckResponse(offered, offered)
		_, _ = CheckResponse(WireSA(ikeLocal, nil, true), offered)
		unique := map[uint8]bool{}
		for _, p := range offered.Proposals {
			unique[p.Number] = true
		}
		for proto, ls := range locals {
			for _, local := range ls {
				for _, prefer := range []bool{true, false} {
					for _, hint := range []wire.DHGroup{wire.DHNone, wire.DHCurve25519, wire.DHMODP2048} {
						resp, n, ok := Select(local, offered, proto, prefer, hint)
						if !ok {
							continue
						}
						// With duplicate numbers the initiator cannot tell
						// which proposal was meant; only check unique ones.
						if len(unique) != len(offered.Proposals) {
							continue
						}
						for _, o := range offered.Proposals {
							if o.Number == resp.Number {
								resp.SPI = make([]byte, len(o.SPI))
							}
						}
						got, err := CheckResponse(offered, &wire.SA{Proposals: []wire.Proposal{resp}})
						if err != nil {
							t.Fatalf("Select answered %+v, CheckResponse: %v", resp, err)
						}
						got.SPI = n.SPI
						if !reflect.DeepEqual(got, n) {
							t.Fatalf("CheckResponse %+v, Select %+v", got, n)
						}
					}
				}
			}
		}
	})
}
