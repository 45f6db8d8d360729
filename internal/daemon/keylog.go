package daemon

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// keyLog appends IKE and ESP keys to Wireshark's decryption tables, in
// the format strongSwan's save-keys plugin writes (ikev2_decryption_table
// and esp_sa in one directory). It is a debugging aid that defeats the
// VPN's confidentiality: off by default, loudly announced when on.
type keyLog struct {
	dir string
	log *slog.Logger
}

func newKeyLog(dir string, log *slog.Logger) (*keyLog, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key log directory: %w", err)
	}
	log.Warn("KEY LOG ENABLED: IKE and ESP keys are written in clear to "+dir+"; anyone who reads them can decrypt this host's VPN traffic", "dir", dir)
	return &keyLog{dir: dir, log: log}, nil
}

// Wireshark's names for IKEv2 algorithms (epan/dissectors/packet-isakmp.c).
func wiresharkIKEEncr(id wire.EncrID, bits int) (string, bool) {
	switch id {
	case wire.EncrAESCBC:
		return fmt.Sprintf("AES-CBC-%d [RFC3602]", bits), true
	case wire.EncrAESGCM8, wire.EncrAESGCM12, wire.EncrAESGCM16:
		icv := map[wire.EncrID]int{wire.EncrAESGCM8: 8, wire.EncrAESGCM12: 12, wire.EncrAESGCM16: 16}[id]
		return fmt.Sprintf("AES-GCM-%d with %d octet ICV [RFC5282]", bits, icv), true
	}
	return "", false // Wireshark 4.0 has no ChaCha20-Poly1305 for IKEv2
}

func wiresharkIKEInteg(id wire.IntegID) (string, bool) {
	switch id {
	case wire.IntegNone:
		return "NONE [RFC4306]", true
	case wire.IntegHMACSHA196:
		return "HMAC_SHA1_96 [RFC2404]", true
	case wire.IntegHMACSHA2256128:
		return "HMAC_SHA2_256_128 [RFC4868]", true
	case wire.IntegHMACSHA2384192:
		return "HMAC_SHA2_384_192 [RFC4868]", true
	case wire.IntegHMACSHA2512256:
		return "HMAC_SHA2_512_256 [RFC4868]", true
	}
	return "", false
}

func wiresharkESP(encr wire.EncrID, integ wire.IntegID) (string, string, bool) {
	var e, i string
	switch encr {
	case wire.EncrAESCBC:
		e = "AES-CBC [RFC3602]"
	case wire.EncrAESGCM8, wire.EncrAESGCM12, wire.EncrAESGCM16:
		// Wireshark (packet-ipsec.c) names each ICV length and takes
		// combined-mode ciphers only with "NULL" authentication: with
		// "AES-GCM [RFC4106]" and an "ANY ... [no checking]" one it
		// decrypted nothing ("AES-GCM encryption can only be used with
		// NULL authentication", issue 19).
		icv := map[wire.EncrID]int{wire.EncrAESGCM8: 8, wire.EncrAESGCM12: 12, wire.EncrAESGCM16: 16}[encr]
		return fmt.Sprintf("AES-GCM with %d octet ICV [RFC4106]", icv), "NULL", true
	default:
		return "", "", false // Wireshark 4.0 has no ChaCha20-Poly1305 for ESP either
	}
	switch integ {
	case wire.IntegHMACSHA196:
		i = "HMAC-SHA-1-96 [RFC2404]"
	case wire.IntegHMACSHA2256128:
		i = "HMAC-SHA-256-128 [RFC4868]"
	case wire.IntegHMACSHA2384192:
		i = "HMAC-SHA-384-192 [RFC4868]"
	case wire.IntegHMACSHA2512256:
		i = "HMAC-SHA-512-256 [RFC4868]"
	default:
		return "", "", false
	}
	return e, i, true
}

func (k *keyLog) ike(x ike.IKEKeys) {
	if k == nil {
		return
	}
	e, ok1 := wiresharkIKEEncr(x.Encr, x.KeyBits)
	i, ok2 := wiresharkIKEInteg(x.Integ)
	if !ok1 || !ok2 {
		k.log.Warn("key log: Wireshark cannot decrypt this IKE SA's algorithms; not logged", "ike", x.IKESA, "encr", x.Encr, "integ", x.Integ)
		return
	}
	k.append("ikev2_decryption_table", fmt.Sprintf("%016x,%016x,%s,%s,\"%s\",%s,%s,\"%s\"\n", x.SPIi, x.SPIr,
		hex.EncodeToString(x.SKei), hex.EncodeToString(x.SKer), e, hex.EncodeToString(x.SKai), hex.EncodeToString(x.SKar), i))
}

// esp writes both directions of a Child SA with its current addresses;
// after a MOBIKE move the new addresses get new lines.
func (k *keyLog) esp(c ike.ChildSA) {
	if k == nil {
		return
	}
	e, i, ok := wiresharkESP(c.Encr, c.Integ)
	if !ok {
		k.log.Warn("key log: Wireshark cannot decrypt this Child SA's algorithms; not logged", "child", fmt.Sprintf("%08x", c.InSPI), "encr", c.Encr)
		return
	}
	fam := "IPv4"
	if c.Local.Addr().Is6() {
		fam = "IPv6"
	}
	line := func(src, dst string, spi uint32, ek, ik []byte) string {
		return fmt.Sprintf("\"%s\",\"%s\",\"%s\",\"0x%08x\",\"%s\",\"0x%s\",\"%s\",\"0x%s\"\n", fam, src, dst, spi, e, hex.EncodeToString(ek), i, hex.EncodeToString(ik))
	}
	l, r := c.Local.Addr().String(), c.Remote.Addr().String()
	k.append("esp_sa", line(l, r, c.OutSPI, c.EncKeyOut, c.IntegKeyOut)+line(r, l, c.InSPI, c.EncKeyIn, c.IntegKeyIn))
}

func (k *keyLog) append(name, s string) {
	f, err := os.OpenFile(filepath.Join(k.dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		k.log.Error("key log", "err", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		k.log.Error("key log", "err", err)
	}
}
