package ikecrypto

import (
	"bytes"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// fuzzCiphers are one AEAD and one CBC suite with fixed keys.
func fuzzCiphers(f *testing.F) []*SKCipher {
	return []*SKCipher{
		suiteSpec{name: "gcm", encr: wire.EncrAESGCM16, keyBits: 256}.cipher(f, 1),
		suiteSpec{name: "cbc", encr: wire.EncrAESCBC, keyBits: 128, integ: wire.IntegHMACSHA2256128}.cipher(f, 1),
	}
}

// FuzzUnprotect feeds arbitrary messages and offsets to Unprotect and
// UnprotectFragment. Nothing may panic, and anything accepted must be a
// message these keys protected: sealing the returned plaintext again with
// the message's own header and IV must give the message back.
func FuzzUnprotect(f *testing.F) {
	ciphers := fuzzCiphers(f)
	for _, c := range ciphers {
		for _, inner := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("payload "), 20)} {
			msg, err := c.Protect(testHeader(), wire.PayloadNotify, inner, seeded(uint64(len(inner))))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(msg, wire.HeaderLen)
			f.Add(msg[:len(msg)-1], wire.HeaderLen)
			frags, err := c.ProtectFragments(testHeader(), wire.PayloadNotify, inner, 100, seeded(1))
			if err != nil {
				f.Fatal(err)
			}
			for _, fr := range frags {
				f.Add(fr, wire.HeaderLen)
			}
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte, off int) {
		for _, c := range ciphers {
			if pt, err := c.Unprotect(msg, off); err == nil {
				checkResealed(t, c, msg, off, wire.PayloadSK, pt)
			}
			if pt, err := c.UnprotectFragment(msg, off); err == nil {
				checkResealed(t, c, msg, off, wire.PayloadSKF, pt)
			}
		}
	})
}

func checkResealed(t *testing.T, c *SKCipher, msg []byte, off int, payload wire.PayloadType, pt []byte) {
	t.Helper()
	if off != wire.HeaderLen {
		t.Fatalf("accepted %v at offset %d", payload, off)
	}
	hdr, err := wire.ParseHeader(msg)
	if err != nil {
		t.Fatalf("accepted a message with a bad header: %v", err)
	}
	hlen := genericHeaderLen
	if payload == wire.PayloadSKF {
		hlen = skfHeaderLen
	}
	iv := msg[off+hlen : off+hlen+c.encr.IVLen]
	again, err := c.seal(hdr, payload, wire.PayloadType(msg[off]), msg[off+genericHeaderLen:off+hlen], pt, bytes.NewReader(iv))
	if err != nil || !bytes.Equal(again, msg) {
		t.Fatalf("accepted %x, which is not what sealing %x gives (%v)", msg, pt, err)
	}
}

// FuzzDHShared feeds arbitrary peer values to Shared for every group.
// Nothing may panic, and an accepted value must have the KE length and
// give a g^ir of the group's length.
func FuzzDHShared(f *testing.F) {
	var dhs []*DH
	for i, g := range allGroups {
		d, err := NewDH(g, seeded(1))
		if err != nil {
			f.Fatal(err)
		}
		dhs = append(dhs, d)
		peer, _ := NewDH(g, seeded(2))
		f.Add(uint8(i), peer.Public())
		f.Add(uint8(i), make([]byte, len(peer.Public())))
		f.Add(uint8(i), bytes.Repeat([]byte{0xff}, len(peer.Public())))
	}
	f.Fuzz(func(t *testing.T, gi uint8, peer []byte) {
		d := dhs[int(gi)%len(dhs)]
		z, err := d.Shared(peer)
		if err != nil {
			return
		}
		if n, _ := PublicLen(d.Group()); len(peer) != n {
			t.Fatalf("%v: accepted %d-octet peer value", d.Group(), len(peer))
		}
		want := map[wire.DHGroup]int{
			wire.DHMODP2048: 256, wire.DHMODP3072: 384, wire.DHMODP4096: 512,
			wire.DHECP256: 32, wire.DHECP384: 48, wire.DHECP521: 66, wire.DHCurve25519: 32,
		}[d.Group()]
		if len(z) != want {
			t.Fatalf("%v: g^ir of %d octets", d.Group(), len(z))
		}
	})
}
