package daemon

import (
	"bytes"
	"testing"
)

// RFC 3748 §7.10: an MSK has 64 octets. FreeRADIUS's EAP-MSCHAPv2 gives
// 32 (16-octet MS-MPPE keys); padded with zeros they are the MSK
// strongSwan and internal/eap key AUTH with. None stays none (EAP-MD5:
// AUTH is keyed with SK_pi/SK_pr, RFC 7296 §2.16), 64 stay 64.
func TestPadMSK_RFC3748(t *testing.T) {
	k32 := bytes.Repeat([]byte{0xab}, 32)
	got := padMSK(bytes.Clone(k32))
	if len(got) != 64 || !bytes.Equal(got[:32], k32) || !bytes.Equal(got[32:], make([]byte, 32)) {
		t.Errorf("padMSK(32 octets) = %x", got)
	}
	if got := padMSK(nil); got != nil {
		t.Errorf("padMSK(nil) = %x", got)
	}
	k64 := bytes.Repeat([]byte{0xcd}, 64)
	if got := padMSK(bytes.Clone(k64)); !bytes.Equal(got, k64) {
		t.Errorf("padMSK(64 octets) = %x", got)
	}
}
