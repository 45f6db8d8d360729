package radius

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// A known-answer vector made by FreeRADIUS 3.2.1 (radiuslab, secret
// "radiuslab-vector-secret"): the last Access-Request of an EAP-MD5
// exchange for a user whose users-file entry sets
//
//	MS-MPPE-Recv-Key = "0123456789abcdef0123456789ABCDEF"
//	MS-MPPE-Send-Key = "fedcba9876543210FEDCBA9876543210"
//
// and the Access-Accept FreeRADIUS sent, captured on the wire. Its keys
// were encrypted by FreeRADIUS (RFC 2548 §2.4.2–2.4.3), not by code of
// ours or layeh's.
const (
	freeradiusSecret  = "radiuslab-vector-secret"
	freeradiusRequest = "01b30098e0b26073b50ac138fb8f90c87836a25801076b65796564200d6d6966696b652d7465737404067f0000010606000000023d06000000051e113132372e302e302e315b343530305d1f113132372e302e302e325b343530305d18127410ecbd7411e85ebdd7fef46d34bbdf4f180201001604107aade2f440ed0d6df79b7cd9886ed9045012cd01a03c191975de3cf609e904cc1b49"
	freeradiusAccept  = "02b300a76152c7bf5d51834105c803f0f45d33041a3a00000137113492138edcc59881f760bfcb7676e6e0c256e8194388916fa0426d53664786ddc9384ec70cf9a55cfb6e7d6656c3082ebcb8621a3a0000013710349ca2d4010b1a9feda9007ca3a92802db681140c5d0eaa85be9c9d54c5005b1a77f9e84f3f9f6e9570a35d9649871050c0d5c4f0603010004501296a2a67857e1cc03780b57ec83a47e2701076b65796564"
)

func TestMPPEKeysFreeRADIUSVector_RFC2548_2_4(t *testing.T) {
	req, _ := hex.DecodeString(freeradiusRequest)
	rep, _ := hex.DecodeString(freeradiusAccept)
	r, err := DecodeAccessReply(rep, req, NewSecret(freeradiusSecret))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("0123456789abcdef0123456789ABCDEF" + "fedcba9876543210FEDCBA9876543210")
	if r.Code != AccessAccept || !bytes.Equal(r.MSK, want) {
		t.Errorf("%v, MSK %q; want Accept, %q", r.Code, r.MSK, want)
	}
	// The same reply under another secret or to another request: dropped.
	if _, err := DecodeAccessReply(rep, req, NewSecret("x"+freeradiusSecret)); err == nil {
		t.Error("accepted under the wrong secret")
	}
	other := append([]byte(nil), req...)
	other[4] ^= 1
	if _, err := DecodeAccessReply(rep, other, NewSecret(freeradiusSecret)); err == nil {
		t.Error("accepted as the reply to another request")
	}
}
