package daemon

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// The lines are what strongSwan's save-keys plugin writes, which is what
// Wireshark's ikev2_decryption_table and esp_sa tables read.
func TestKeyLogFormats(t *testing.T) {
	dir := t.TempDir()
	k, err := newKeyLog(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	k.ike(ike.IKEKeys{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718, Encr: wire.EncrAESCBC, KeyBits: 128,
		Integ: wire.IntegHMACSHA2256128, SKei: []byte{0xaa}, SKer: []byte{0xbb}, SKai: []byte{0xcc}, SKar: []byte{0xdd}})
	k.ike(ike.IKEKeys{SPIi: 1, SPIr: 2, Encr: wire.EncrAESGCM16, KeyBits: 256, Integ: wire.IntegNone, SKei: []byte{1}, SKer: []byte{2}})
	k.ike(ike.IKEKeys{SPIi: 3, SPIr: 4, Encr: wire.EncrChaCha20Poly1305}) // Wireshark 4.0 cannot: skipped
	k.esp(ike.ChildSA{InSPI: 0xc0000001, OutSPI: 0xc0000002, Encr: wire.EncrAESGCM16, KeyBits: 128,
		EncKeyIn: []byte{1, 2}, EncKeyOut: []byte{3, 4},
		Local: netip.MustParseAddrPort("192.0.2.1:4500"), Remote: netip.MustParseAddrPort("198.51.100.2:4500")})
	k.esp(ike.ChildSA{InSPI: 0xc0000003, OutSPI: 0xc0000004, Encr: wire.EncrAESCBC, KeyBits: 128, Integ: wire.IntegHMACSHA2256128,
		EncKeyIn: []byte{5}, EncKeyOut: []byte{6}, IntegKeyIn: []byte{7}, IntegKeyOut: []byte{8},
		Local: netip.MustParseAddrPort("[2001:db8::1]:4500"), Remote: netip.MustParseAddrPort("[2001:db8::2]:4500")})

	ikeTable, _ := os.ReadFile(filepath.Join(dir, "ikev2_decryption_table"))
	want := `0102030405060708,1112131415161718,aa,bb,"AES-CBC-128 [RFC3602]",cc,dd,"HMAC_SHA2_256_128 [RFC4868]"
0000000000000001,0000000000000002,01,02,"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"
`
	if string(ikeTable) != want {
		t.Errorf("ikev2_decryption_table:\n%s\nwant:\n%s", ikeTable, want)
	}
	espTable, _ := os.ReadFile(filepath.Join(dir, "esp_sa"))
	wantESP := `"IPv4","192.0.2.1","198.51.100.2","0xc0000002","AES-GCM with 16 octet ICV [RFC4106]","0x0304","NULL","0x"
"IPv4","198.51.100.2","192.0.2.1","0xc0000001","AES-GCM with 16 octet ICV [RFC4106]","0x0102","NULL","0x"
"IPv6","2001:db8::1","2001:db8::2","0xc0000004","AES-CBC [RFC3602]","0x06","HMAC-SHA-256-128 [RFC4868]","0x08"
"IPv6","2001:db8::2","2001:db8::1","0xc0000003","AES-CBC [RFC3602]","0x05","HMAC-SHA-256-128 [RFC4868]","0x07"
`
	if string(espTable) != wantESP {
		t.Errorf("esp_sa:\n%s\nwant:\n%s", espTable, wantESP)
	}
	if info, _ := os.Stat(filepath.Join(dir, "esp_sa")); info.Mode().Perm() != 0o600 {
		t.Errorf("esp_sa mode %v: keys must not be world-readable", info.Mode())
	}
}

// A nil key log (the default) does nothing.
func TestKeyLogOff(t *testing.T) {
	k, err := newKeyLog("", slog.New(slog.DiscardHandler))
	if err != nil || k != nil {
		t.Fatal(k, err)
	}
	k.ike(ike.IKEKeys{})
	k.esp(ike.ChildSA{})
}
