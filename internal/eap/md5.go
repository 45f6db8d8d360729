package eap

import (
	"crypto/md5"
	"crypto/subtle"
)

// MD5-Challenge (RFC 3748 §5.4) uses the CHAP format of RFC 1994 §4.1:
// Value-Size, Value, Name. The Response Value is MD5(Identifier | secret |
// Challenge), the Identifier being that of the Request and Response.

const md5ValueLen = md5.Size

// parseMD5 returns the Value of an MD5-Challenge Type-Data and ignores
// the Name.
func parseMD5(data []byte) ([]byte, error) {
	if len(data) < 1 {
		return nil, malformed("MD5-Challenge without Value-Size")
	}
	n := int(data[0])
	if n == 0 || 1+n > len(data) {
		return nil, malformed("MD5-Challenge Value-Size %d in %d octets", n, len(data))
	}
	return data[1 : 1+n], nil
}

func md5Value(id uint8, password, challenge []byte) [md5ValueLen]byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write(password)
	h.Write(challenge)
	var out [md5ValueLen]byte
	h.Sum(out[:0])
	return out
}

// md5Peer answers one MD5-Challenge. The method has no keys (RFC 3748
// §5.4: "Key derivation: No") and is done once it has answered: RFC 3748
// lets the authenticator send Success then.
type md5Peer struct {
	password []byte
	answered bool
}

func (m *md5Peer) handle(req *Packet) ([]byte, bool, error) {
	if m.answered {
		return nil, false, protocolErr("a second MD5-Challenge after the first was answered")
	}
	challenge, err := parseMD5(req.Data)
	if err != nil {
		return nil, false, err
	}
	v := md5Value(req.Identifier, m.password, challenge)
	m.answered = true
	return append([]byte{md5ValueLen}, v[:]...), true, nil
}

func (m *md5Peer) msk() []byte { return nil }
func (m *md5Peer) close()      {}

// md5Verify checks a peer's MD5-Challenge Response in constant time.
func md5Verify(id uint8, password, challenge, response []byte) bool {
	v, err := parseMD5(response)
	if err != nil || len(v) != md5ValueLen {
		return false
	}
	want := md5Value(id, password, challenge)
	return subtle.ConstantTimeCompare(v, want[:]) == 1
}
