package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/mifike/mifike/internal/wire"
)

// TestRFC7634AppendixA reproduces the ChaCha20-Poly1305 ESP example of
// RFC 7634 Appendix A byte for byte (SPI 0x01020304, sequence number 5,
// IV 0x1011121314151617, tunnel mode) and opens it again.
func TestRFC7634AppendixA(t *testing.T) {
	keymat := unhex(t, "808182838485868788898a8b8c8d8e8f"+
		"909192939495969798999a9b9c9d9e9f"+
		"a0a1a2a3")
	source := unhex(t, "45000054a6f200004001e778c6336405"+
		"c000020508005b7a3a080000553bec10"+
		"0007362708090a0b0c0d0e0f10111213"+
		"1415161718191a1b1c1d1e1f20212223"+
		"2425262728292a2b2c2d2e2f30313233"+
		"34353637")
	// The full IP packet; the ESP packet starts after the 20-octet outer
	// IPv4 header.
	ipPacket := unhex(t, "4500008c234500004032de5bcb007199"+
		"cb007105010203040000000510111213"+
		"1415161724039428b97f417e3c13753a"+
		"4f05087b67c352e6a7fab1b982d466ef"+
		"407ae5c614ee8099d52844eb61aa95df"+
		"ab4c02f72aa71e7c4c4f64c9befe2fac"+
		"c638e8f3cbec163fac469b502773f6fb"+
		"94e664da9165b82829f641e076aaa826"+
		"6b7fb0f7b11b369907e1ad43")
	ciphertext := unhex(t, "24039428b97f417e3c13753a4f05087b"+
		"67c352e6a7fab1b982d466ef407ae5c6"+
		"14ee8099d52844eb61aa95dfab4c02f7"+
		"2aa71e7c4c4f64c9befe2facc638e8f3"+
		"cbec163fac469b502773f6fb94e664da"+
		"9165b82829f641e0")
	tag := unhex(t, "76aaa8266b7fb0f7b11b369907e1ad43")
	want := ipPacket[20:]

	c := Config{SPI: 0x01020304, Encr: wire.EncrChaCha20Poly1305, EncKey: keymat}
	o, err := NewOutbound(c)
	if err != nil {
		t.Fatal(err)
	}
	o.seq = 4 // "The next sequence number is 5"
	o.testIV = unhex(t, "1011121314151617")
	if got := o.Overhead(len(source)); got != len(want)-len(source) {
		t.Errorf("Overhead(%d) = %d, want %d", len(source), got, len(want)-len(source))
	}
	pkt := seal(t, o, source, 4, 0)
	if !bytes.Equal(pkt, want) {
		t.Fatalf("ESP packet\n got %x\nwant %x", pkt, want)
	}
	if !bytes.Equal(pkt[16:16+len(ciphertext)], ciphertext) || !bytes.Equal(pkt[len(pkt)-16:], tag) {
		t.Fatal("ciphertext or tag differ")
	}
	if o.Seq() != 5 {
		t.Errorf("Seq = %d, want 5", o.Seq())
	}

	in, err := NewInbound(c)
	if err != nil {
		t.Fatal(err)
	}
	mustOpen(t, in, want, source, 4)
	if _, _, err := in.Open(bytes.Clone(want)); err != ErrReplay {
		t.Errorf("second Open: %v, want ErrReplay", err)
	}
}

// TestRFC3602CBC checks the AES-CBC cases #1 to #4 of RFC 3602 §4 through
// the re-IVed CBC mode that Seal uses.
func TestRFC3602CBC(t *testing.T) {
	for _, tc := range []struct{ key, iv, pt, ct string }{
		{"06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41",
			"53696e676c6520626c6f636b206d7367", // "Single block msg"
			"e353779c1079aeb82708942dbe77181a"},
		{"c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58",
			"000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f",
			"d296cd94c2cccf8a3a863028b5e1dc0a 7586602d253cfff91b8266bea6d61ab1"},
		{"6c3ea0477630ce21a2ce334aa746c2cd", "c782dc4c098c66cbd9cd27d825682c81",
			"", // "This is a 48-byte message (exactly 3 AES blocks)", set below
			"d0a02b3836451753d493665d33f0e886 2dea54cdb293abc7506939276772f8d5 021c19216bad525c8579695d83ba2684"},
		{"56e47a38c5598974bc46903dba290349", "8ce82eefbea0da3c44699ed7db51b7d9",
			"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf b0b1b2b3b4b5b6b7b8b9babbbcbdbebf c0c1c2c3c4c5c6c7c8c9cacbcccdcecf d0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
			"c30e32ffedc0774e6aff6af0869f71aa 0f3af07a9a31a9c684db207eb0ef8e4e 35907aa632c3ffdf868bb7b29d3d46ad 83ce9f9a102ee99d49a53e87f4c3da55"},
	} {
		pt := unhex(t, tc.pt)
		if len(pt) == 0 {
			pt = []byte("This is a 48-byte message (exactly 3 AES blocks)")
		}
		c := kindByName(t, "AES-CBC-128-SHA1-96").config(t, 0x4321, false)
		c.EncKey = unhex(t, tc.key)
		o, err := NewOutbound(c)
		if err != nil {
			t.Fatal(err)
		}
		// Use the mode twice: SetIV must fully reset the chaining state.
		for range 2 {
			buf := bytes.Clone(pt)
			o.cbc.mode.SetIV(unhex(t, tc.iv))
			o.cbc.mode.CryptBlocks(buf, buf)
			if want := unhex(t, tc.ct); !bytes.Equal(buf, want) {
				t.Fatalf("key %s: got %x, want %x", tc.key, buf, want)
			}
		}
	}
}

// TestRFC3602ESP reproduces the sample ESP packets #5 to #8 of RFC 3602
// §4. They use no integrity transform, which this package refuses, so the
// SA adds HMAC-SHA1-96: everything before the ICV must match the RFC, and
// the ICV is checked against a hand computation (RFC 2404).
func TestRFC3602ESP(t *testing.T) {
	for _, tc := range []struct {
		name              string
		key               string
		spi               uint32
		seq               uint64
		iv, payload       string
		nh                byte
		encrypted, spiSeq string
	}{
		{"case 5 transport", "90d382b410eeba7ad938c46cec1a82bf", 0x4321, 1, "e96e8c08ab465763fd098d45dd3ff893",
			"08000ebd a70a0000 8e9c083d b95b0700 08090a0b 0c0d0e0f 10111213 14151617" +
				"18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637", 1,
			"f663c25d 325c18c6 a9453e19 4e120849 a4870b66 cc6b9965 330013b4 898dc856" +
				"a4699e52 3a55db08 0b59ec3a 8e4b7e52 775b07d1 db34ed9c 538ab50c 551b874a" +
				"a269add0 47ad2d59 13ac19b7 cfbad4a6", "00004321 00000001"},
		{"case 6 transport", "90d382b410eeba7ad938c46cec1a82bf", 0x4321, 8, "69d08df7d203329db093fc4924e5bd80",
			"0800b5e8 a80a0500 a69c083d 0b660e00 77777777 77777777 77777777", 1,
			"f5199588 1ec4e0c4 488987ce 742e8109 689bb379 d2d750c0 d915dca3 46a89f75", "00004321 00000008"},
		{"case 7 tunnel", "0123456789abcdef0123456789abcdef", 0x8765, 2, "f4e765244f6407adf13dc1380f673f37",
			"45000054 09040000 4001f988 c0a87b03 c0a87bc8" +
				"08009f76 a90a0100 b49c083d 02a20400 08090a0b 0c0d0e0f 10111213 14151617" +
				"18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637", 4,
			"773b5241 a4c44922 5e4f3ce5 ed611b0c 237ca96c f74a9301 3c1b0ea1 a0cf70f8" +
				"e4ecaec7 8ac53aad 7a0f022b 859243c6 47752e94 a859352b 8a4d4d2d ecd136e5" +
				"c177f132 ad3fbfb2 201ac990 4c74ee0a 109e0ca1 e4dfe9d5 a100b842 f1c22f0d", "00008765 00000002"},
		{"case 8 tunnel", "0123456789abcdef0123456789abcdef", 0x8765, 5, "85d47224b5f3dd5d2101d4ea8dffab22",
			"45000044 090c0000 4001f990 c0a87b03 c0a87bc8" +
				"0800d63c aa0a0200 c69c083d a3de0300 ffffffff ffffffff ffffffff ffffffff" +
				"ffffffff ffffffff ffffffff ffffffff", 4,
			"15b92683 819596a8 047232cc 00f7048f e45318e1 1f8a0f62 ede3c3fc 61203bb5" +
				"0f980a08 c9843fd3 a1b06d5c 07ff9639 b7eb7dfb 3512e5de 435e7207 ed971ef3" +
				"d2726d9b 5ef6affc 6d17a0de cbb13892", "00008765 00000005"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kindByName(t, "AES-CBC-128-SHA1-96").config(t, tc.spi, false)
			c.EncKey = unhex(t, tc.key)
			o, err := NewOutbound(c)
			if err != nil {
				t.Fatal(err)
			}
			o.seq = tc.seq - 1
			o.testIV = unhex(t, tc.iv)
			payload := unhex(t, tc.payload)
			pkt := seal(t, o, payload, tc.nh, 0)
			want := append(append(unhex(t, tc.spiSeq), o.testIV...), unhex(t, tc.encrypted)...)
			if len(pkt) != len(want)+12 || !bytes.Equal(pkt[:len(want)], want) {
				t.Fatalf("ESP packet\n got %x\nwant %x + 12-octet ICV", pkt, want)
			}
			mac := hmac.New(sha1.New, c.IntegKey)
			mac.Write(want)
			if icv := mac.Sum(nil)[:12]; !bytes.Equal(pkt[len(want):], icv) {
				t.Errorf("ICV %x, want %x", pkt[len(want):], icv)
			}
			in, err := NewInbound(c)
			if err != nil {
				t.Fatal(err)
			}
			mustOpen(t, in, pkt, payload, tc.nh)
		})
	}
}

// TestAEADKnownAnswer checks Seal against an independent computation with
// crypto/cipher and x/crypto: nonce salt | IV, AAD SPI | Seq (8 octets)
// or, with ESN, SPI | Seq high | Seq low (12 octets) (RFC 4106 §4 and §5,
// RFC 7634 §2.1). RFC 4106 has no test vectors of its own (§9 defers to
// the GCM specification), so this is the GCM known-answer check.
func TestAEADKnownAnswer(t *testing.T) {
	for _, name := range []string{"AES-GCM-16-128", "AES-GCM-16-256", "AES-GCM-12-128", "ChaCha20-Poly1305"} {
		for _, esn := range []bool{false, true} {
			k := kindByName(t, name)
			c := k.config(t, 0xdeadbeef, esn)
			o, err := NewOutbound(c)
			if err != nil {
				t.Fatal(err)
			}
			seq := uint64(0x1234_5678_9abc_def0)
			if !esn {
				seq = 0x9abc_def0
			}
			o.seq = seq - 1
			payload := pattern(101, 7)
			pkt := seal(t, o, payload, 41, 0)

			key, salt := c.EncKey[:len(c.EncKey)-4], c.EncKey[len(c.EncKey)-4:]
			var aead cipher.AEAD
			if k.encr == wire.EncrChaCha20Poly1305 {
				aead, err = chacha20poly1305.New(key)
			} else {
				block, _ := aes.NewCipher(key)
				tagLen := 16
				if k.encr == wire.EncrAESGCM12 {
					tagLen = 12
				}
				aead, err = cipher.NewGCMWithTagSize(block, tagLen)
			}
			if err != nil {
				t.Fatal(err)
			}
			hdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 0xdeadbeef), uint32(seq))
			iv := binary.BigEndian.AppendUint64(nil, seq)
			aad := hdr
			if esn {
				aad = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, 0xdeadbeef), seq)
			}
			// 101 + 1 pad + 2 = 104, a multiple of 4.
			pt := append(bytes.Clone(payload), 1, 1, 41)
			want := append(append(hdr, iv...), aead.Seal(nil, append(bytes.Clone(salt), iv...), pt, aad)...)
			if !bytes.Equal(pkt, want) {
				t.Errorf("%s ESN=%v:\n got %x\nwant %x", name, esn, pkt, want)
			}
		}
	}
}

// TestCBCKnownAnswer checks CBC sealing against crypto/cipher and the ICV
// against crypto/hmac, with ESN: the high half of the sequence number is
// appended to the ICV input but not sent (RFC 4303 §2.2.1, §3.3.2.1).
func TestCBCKnownAnswer(t *testing.T) {
	for _, esn := range []bool{false, true} {
		c := kindByName(t, "AES-CBC-128-SHA256").config(t, 0xcafe0001, esn)
		o, err := NewOutbound(c)
		if err != nil {
			t.Fatal(err)
		}
		seq := uint64(7<<32 | 3)
		if !esn {
			seq = 3
		}
		o.seq = seq - 1
		payload := pattern(30, 1)
		pkt := seal(t, o, payload, 4, 0)
		// 30 + 2 = 32: two blocks, no padding.
		pt := append(bytes.Clone(payload), 0, 4)
		iv := pkt[8:24]
		block, _ := aes.NewCipher(c.EncKey)
		ct := make([]byte, len(pt))
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
		want := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 0xcafe0001), uint32(seq))
		want = append(append(want, iv...), ct...)
		mac := hmac.New(sha256.New, c.IntegKey)
		mac.Write(want)
		if esn {
			mac.Write(binary.BigEndian.AppendUint32(nil, uint32(seq>>32)))
		}
		want = append(want, mac.Sum(nil)[:16]...)
		if !bytes.Equal(pkt, want) {
			t.Errorf("ESN=%v:\n got %x\nwant %x", esn, pkt, want)
		}
	}
}
