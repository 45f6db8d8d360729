package ikecrypto

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// TestCAVPIKEv2KDF checks all five outputs of the NIST CAVP SP 800-135
// IKEv2 KDF case (SHA-1, COUNT 0): SKEYSEED, DKM, DKM(Child SA),
// DKM(Child SA D-H) and SKEYSEED(Rekey). It is also the package's HMAC-SHA1
// known-answer test.
func TestCAVPIKEv2KDF(t *testing.T) {
	v := cavpIKEv2SHA1
	p, err := NewPRF(wire.PRFHMACSHA1)
	if err != nil {
		t.Fatal(err)
	}
	ni, nr, gir, girNew := unhex(t, v.ni), unhex(t, v.nr), unhex(t, v.gir), unhex(t, v.girNew)
	seed := append(append(append(append([]byte{}, ni...), nr...), unhex(t, v.spii)...), unhex(t, v.spir)...)

	skeyseed := SKEYSEED(p, ni, nr, gir)
	if want := unhex(t, v.skeyseed); !bytes.Equal(skeyseed, want) {
		t.Fatalf("SKEYSEED = %x, want %x", skeyseed, want)
	}
	dkm, err := p.Plus(skeyseed, seed, 1056/8)
	if want := unhex(t, v.dkm); err != nil || !bytes.Equal(dkm, want) {
		t.Fatalf("DKM = %x, %v\nwant %x", dkm, err, want)
	}
	skd := dkm[:p.Size()]
	child, err := ChildKeyMat(p, skd, nil, ni, nr, 1056/8)
	if want := unhex(t, v.dkmChild); err != nil || !bytes.Equal(child, want) {
		t.Errorf("DKM(Child SA) = %x, %v\nwant %x", child, err, want)
	}
	childDH, err := ChildKeyMat(p, skd, girNew, ni, nr, 1056/8)
	if want := unhex(t, v.dkmChildDH); err != nil || !bytes.Equal(childDH, want) {
		t.Errorf("DKM(Child SA D-H) = %x, %v\nwant %x", childDH, err, want)
	}
	rekey := RekeySKEYSEED(p, skd, girNew, ni, nr)
	if want := unhex(t, v.skeyseedRekey); !bytes.Equal(rekey, want) {
		t.Errorf("SKEYSEED(Rekey) = %x, want %x", rekey, want)
	}
}

// TestDeriveIKEKeysCAVP derives the seven keys of an AES-CBC-128 /
// HMAC-SHA1-96 / PRF-HMAC-SHA1 suite from the CAVP inputs. Their lengths
// (20+20+20+16+16+20+20 octets) add up to exactly the 1056-bit DKM, so the
// keys must be the DKM cut in RFC 7296 §2.14 order.
func TestDeriveIKEKeysCAVP(t *testing.T) {
	v := cavpIKEv2SHA1
	s, err := NewSuite(wire.EncrAESCBC, 128, wire.PRFHMACSHA1, wire.IntegHMACSHA196, wire.DHMODP2048)
	if err != nil {
		t.Fatal(err)
	}
	spii := binary.BigEndian.Uint64(unhex(t, v.spii))
	spir := binary.BigEndian.Uint64(unhex(t, v.spir))
	k, err := s.DeriveIKEKeys(unhex(t, v.skeyseed), unhex(t, v.ni), unhex(t, v.nr), spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	lens := []int{20, 20, 20, 16, 16, 20, 20}
	keys := [][]byte{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr}
	var all []byte
	for i, key := range keys {
		if len(key) != lens[i] {
			t.Errorf("key %d is %d octets, want %d", i, len(key), lens[i])
		}
		all = append(all, key...)
	}
	if want := unhex(t, v.dkm); !bytes.Equal(all, want) {
		t.Errorf("SK_d|...|SK_pr = %x\nwant DKM %x", all, want)
	}
	// Keys are separate slices: growing one must not overwrite the next.
	skai := bytes.Clone(k.SKai)
	_ = append(k.SKd, 0xff)
	if !bytes.Equal(k.SKai, skai) {
		t.Error("appending to SK_d overwrote SK_ai")
	}
}

// TestDeriveIKEKeysAEAD checks RFC 5282 §7.1 and RFC 7634 §3: SK_ai/SK_ar
// are empty, SK_ei/SK_er carry the 4-octet salt, and the zero-length
// integrity keys shift everything after them in the prf+ stream.
func TestDeriveIKEKeysAEAD(t *testing.T) {
	for _, tc := range []struct {
		encr    wire.EncrID
		keyBits int
		encLen  int
	}{
		{wire.EncrAESGCM16, 128, 20},
		{wire.EncrAESGCM16, 256, 36},
		{wire.EncrChaCha20Poly1305, 0, 36},
	} {
		s, err := NewSuite(tc.encr, tc.keyBits, wire.PRFHMACSHA2384, wire.IntegNone, wire.DHCurve25519)
		if err != nil {
			t.Fatal(err)
		}
		seed := []byte("SKEYSEED")
		ni, nr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		k, err := s.DeriveIKEKeys(seed, ni, nr, 0x0102030405060708, 0x1112131415161718)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.SKai) != 0 || len(k.SKar) != 0 || len(k.SKei) != tc.encLen || len(k.SKer) != tc.encLen {
			t.Errorf("%v: key lengths ai %d ar %d ei %d er %d", s.Encr, len(k.SKai), len(k.SKar), len(k.SKei), len(k.SKer))
		}
		stream, _ := s.PRF.Plus(seed, append(append(append([]byte{}, ni...), nr...),
			1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18), 3*48+2*tc.encLen)
		all := bytes.Join([][]byte{k.SKd, k.SKei, k.SKer, k.SKpi, k.SKpr}, nil)
		if !bytes.Equal(all, stream) {
			t.Errorf("%v: keys are not the prf+ stream in order", s.Encr)
		}
	}
}

func TestSKEYSEEDKeyIsNonces(t *testing.T) {
	p, _ := NewPRF(wire.PRFHMACSHA2256)
	ni, nr, gir := []byte("nonce-i"), []byte("nonce-r"), []byte("g^ir")
	if !bytes.Equal(SKEYSEED(p, ni, nr, gir), p.Sum([]byte("nonce-inonce-r"), gir)) {
		t.Error("SKEYSEED is not prf(Ni | Nr, g^ir)")
	}
}

func TestChildKeyMatTooLong(t *testing.T) {
	p, _ := NewPRF(wire.PRFHMACSHA1)
	if _, err := ChildKeyMat(p, []byte("d"), nil, nil, nil, 255*20+1); err == nil {
		t.Error("ChildKeyMat beyond prf+ limit succeeded")
	}
}
