package proposal

import (
	"bytes"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// viaWire encodes sa as a payload and parses it back, as a peer would
// receive it.
func viaWire(t testing.TB, sa *wire.SA) *wire.SA {
	t.Helper()
	first, b, err := wire.EncodePayloads([]wire.Payload{sa})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := wire.ParsePayloads(first, b)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := wire.First[*wire.SA](ps)
	if !ok {
		t.Fatal("no SA payload after round trip")
	}
	return got
}

func mustList(t testing.TB, parse func(string) ([]Proposal, error), s string) []Proposal {
	t.Helper()
	ps, err := parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// TestWireKeyLength: the Key Length attribute goes on AES (CBC and GCM)
// only, never on fixed-key ChaCha20-Poly1305, PRF, INTEG, DH or ESN
// (RFC 7296 §3.3.5).
func TestWireKeyLength(t *testing.T) {
	ps := mustList(t, ParseIKEList, "aes128-aes256-sha256-sha512-modp2048,aes192gcm16-chacha20poly1305-aes256gcm8-prfsha384-x25519")
	ps = append(ps, mustList(t, ParseESPList, "aes256gcm16-chacha20poly1305-esn-noesn-ecp256,aes192-sha1")...)
	for _, p := range ps {
		wp := p.Wire(1, nil, true)
		for i := range wp.Transforms {
			tr := &wp.Transforms[i]
			aes := tr.Type == wire.TransformENCR && tr.ID != uint16(wire.EncrChaCha20Poly1305)
			bits, has := tr.KeyLength()
			switch {
			case aes && (!has || len(tr.Attributes) != 1):
				t.Errorf("%v: %s lacks a single Key Length", p, describe(tr))
			case !aes && len(tr.Attributes) != 0:
				t.Errorf("%v: %s carries attributes", p, describe(tr))
			case aes:
				found := false
				for _, a := range p.Encr {
					found = found || (uint16(a.Encr) == tr.ID && a.KeyBits == bits)
				}
				if !found {
					t.Errorf("%v: key length %d not configured", p, bits)
				}
			}
		}
	}
}

// TestWireSA: proposals are numbered 1, 2, ... (RFC 7296 §3.3.1), DH is
// left out on request (§1.2), ESP always carries ESN (§3.3.3), the SPI is
// copied, and the result survives the codec.
func TestWireSA(t *testing.T) {
	ps := mustList(t, ParseESPList, "aes128gcm16-x25519,aes256gcm16-esn,aes128-sha256-modp2048")
	spi := []byte{1, 2, 3, 4}
	sa := WireSA(ps, spi, true)
	spi[0] = 9
	if len(sa.Proposals) != 3 {
		t.Fatalf("%d proposals", len(sa.Proposals))
	}
	for i, p := range sa.Proposals {
		if p.Number != uint8(i+1) || p.Protocol != wire.ProtoESP || !bytes.Equal(p.SPI, []byte{1, 2, 3, 4}) {
			t.Errorf("proposal %d: number %d protocol %v SPI %x", i, p.Number, p.Protocol, p.SPI)
		}
	}
	count := func(p wire.Proposal, tt wire.TransformType) (n int) {
		for _, tr := range p.Transforms {
			if tr.Type == tt {
				n++
			}
		}
		return n
	}
	if count(sa.Proposals[0], wire.TransformDH) != 1 || count(sa.Proposals[0], wire.TransformESN) != 1 || count(sa.Proposals[0], wire.TransformINTEG) != 0 {
		t.Errorf("proposal 1 transforms: %+v", sa.Proposals[0].Transforms)
	}
	noDH := WireSA(ps, spi, false)
	for _, p := range noDH.Proposals {
		if count(p, wire.TransformDH) != 0 {
			t.Errorf("withDH=false kept DH in #%d", p.Number)
		}
	}

	got := viaWire(t, sa)
	_, b1, _ := wire.EncodePayloads([]wire.Payload{sa})
	_, b2, _ := wire.EncodePayloads([]wire.Payload{got})
	if !bytes.Equal(b1, b2) {
		t.Error("SA changed through the codec")
	}

	init := WireSA(mustList(t, ParseIKEList, "default"), nil, true)
	for _, p := range init.Proposals {
		if len(p.SPI) != 0 || count(p, wire.TransformPRF) != 1 || count(p, wire.TransformESN) != 0 {
			t.Errorf("IKE_SA_INIT proposal #%d: SPI %x, transforms %+v", p.Number, p.SPI, p.Transforms)
		}
	}

	many := make([]Proposal, 300)
	for i := range many {
		many[i] = ps[0]
	}
	if sa := WireSA(many, spi, true); len(sa.Proposals) != 255 || sa.Proposals[254].Number != 255 {
		t.Errorf("300 proposals gave %d", len(sa.Proposals))
	}
}
