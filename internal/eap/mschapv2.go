package eap

import (
	"crypto/des"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf16"

	//lint:ignore SA1019 MS-CHAPv2 is defined over MD4 (RFC 2759 §8.3, §8.4); interoperating is the point
	"golang.org/x/crypto/md4"
)

// EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2-01) carries the MS-CHAP-V2
// packets of RFC 2759 §4 inside EAP. The Type-Data starts with an OpCode;
// Challenge, Response, Success-Request and Failure-Request then carry the
// MS-CHAPv2-ID and MS-Length (the EAP Length minus 5); Success-Response and
// Failure-Response are the OpCode alone.
const (
	mschapChallenge = 1
	mschapResponse  = 2
	mschapSuccess   = 3
	mschapFailure   = 4

	mschapHeaderLen   = 4  // OpCode, MS-CHAPv2-ID, MS-Length
	mschapChalLen     = 16 // RFC 2759 §4: the Challenge Value is 16 octets
	mschapResponseLen = 49 // Peer-Challenge 16, Reserved 8, NT-Response 24, Flags 1
	mschapAuthRespLen = 20 // SHA-1 of GenerateAuthenticatorResponse (RFC 2759 §8.7)
	mschapMaxMessage  = 512
)

// Microsoft error codes of the Failure packet's E= field (RFC 2759 §6).
const (
	ErrorRestrictedLogonHours = 646
	ErrorAccountDisabled      = 647
	ErrorPasswordExpired      = 648
	ErrorNoDialinPermission   = 649
	ErrorAuthenticationFailed = 691
	ErrorChangingPassword     = 709
)

// MSCHAPv2Error is a Failure-Request from the server (RFC 2759 §6).
type MSCHAPv2Error struct {
	Code      int    // E=
	Retriable bool   // R=1
	Message   string // M=, printable ASCII only, shortened
}

func (e *MSCHAPv2Error) Error() string {
	name := ""
	switch e.Code {
	case ErrorRestrictedLogonHours:
		name = " (restricted logon hours)"
	case ErrorAccountDisabled:
		name = " (account disabled)"
	case ErrorPasswordExpired:
		name = " (password expired)"
	case ErrorNoDialinPermission:
		name = " (no dial-in permission)"
	case ErrorAuthenticationFailed:
		name = " (authentication failure)"
	case ErrorChangingPassword:
		name = " (error changing password)"
	}
	s := fmt.Sprintf("eap: EAP-MSCHAPv2 failure E=%d%s", e.Code, name)
	if e.Message != "" {
		s += ": " + strconv.Quote(e.Message)
	}
	return s
}

// mschapPacket is the MS-CHAPv2 view of an EAP Type-Data.
type mschapPacket struct {
	opCode uint8
	id     uint8  // MS-CHAPv2-ID
	value  []byte // everything after MS-Length
}

// parseMSCHAP decodes the Type-Data of an EAP-MSCHAPv2 packet. Packets
// with an MS-CHAPv2-ID and MS-Length must have MS-Length equal to the EAP
// Length minus 5, that is the Type-Data's length.
func parseMSCHAP(data []byte) (mschapPacket, error) {
	if len(data) < 1 {
		return mschapPacket{}, malformed("EAP-MSCHAPv2 without an OpCode")
	}
	p := mschapPacket{opCode: data[0]}
	if len(data) == 1 {
		return p, nil // Success-Response, Failure-Response
	}
	if len(data) < mschapHeaderLen {
		return mschapPacket{}, malformed("EAP-MSCHAPv2 header of %d octets", len(data))
	}
	p.id = data[1]
	if n := int(binary.BigEndian.Uint16(data[2:4])); n != len(data) {
		return mschapPacket{}, malformed("EAP-MSCHAPv2 MS-Length %d, Type-Data of %d octets", n, len(data))
	}
	p.value = data[mschapHeaderLen:]
	return p, nil
}

// appendMSCHAP encodes an MS-CHAPv2 packet with ID and MS-Length.
func appendMSCHAP(b []byte, opCode, id uint8, value ...[]byte) []byte {
	n := mschapHeaderLen
	for _, v := range value {
		n += len(v)
	}
	b = append(b, opCode, id)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	for _, v := range value {
		b = append(b, v...)
	}
	return b
}

// ntPasswordHash is MD4 of the password in UTF-16 little-endian (RFC 2759
// §8.3; the RFC says "unicode", Windows means UTF-16LE).
func ntPasswordHash(password []byte) [16]byte {
	u := utf16.Encode([]rune(string(password)))
	b := make([]byte, 0, 2*len(u))
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	h := md4.New()
	h.Write(b)
	clear(b)
	var out [16]byte
	h.Sum(out[:0])
	return out
}

// hashNtPasswordHash is RFC 2759 §8.4.
func hashNtPasswordHash(h [16]byte) [16]byte {
	m := md4.New()
	m.Write(h[:])
	var out [16]byte
	m.Sum(out[:0])
	return out
}

// mschapUserName is the name that enters ChallengeHash: RFC 2759 §8.2 says
// "the user name (as presented by the peer and excluding any prepended
// domain name)", so "DOMAIN\user" hashes as "user" (strongSwan and
// wpa_supplicant do the same).
func mschapUserName(identity []byte) []byte {
	for i := len(identity) - 1; i >= 0; i-- {
		if identity[i] == '\\' {
			return identity[i+1:]
		}
	}
	return identity
}

// challengeHash is RFC 2759 §8.2.
func challengeHash(peerChallenge, authChallenge []byte, userName []byte) [8]byte {
	h := sha1.New()
	h.Write(peerChallenge)
	h.Write(authChallenge)
	h.Write(mschapUserName(userName))
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	var out [8]byte
	copy(out[:], sum[:8])
	return out
}

// desKey spreads 7 octets (56 key bits) over the 8 octets of a DES key,
// seven bits per octet, and sets odd parity in the low bit (RFC 2759 §8.6,
// §9.3). crypto/des ignores parity; it is set so that keys compare equal to
// the RFC's examples.
func desKey(k []byte) [8]byte {
	var out [8]byte
	out[0] = k[0]
	for i := 1; i < 7; i++ {
		out[i] = k[i-1]<<(8-i) | k[i]>>i
	}
	out[7] = k[6] << 1
	for i := range out {
		// Odd parity: the low bit makes the count of set bits odd.
		if bits.OnesCount8(out[i]>>1)%2 == 0 {
			out[i] |= 1
		} else {
			out[i] &^= 1
		}
	}
	return out
}

// challengeResponse is RFC 2759 §8.5: the 8-octet challenge encrypted with
// three DES keys taken from the zero-padded password hash.
func challengeResponse(challenge [8]byte, passwordHash [16]byte) [24]byte {
	var z [21]byte
	copy(z[:], passwordHash[:])
	var out [24]byte
	for i := range 3 {
		k := desKey(z[7*i : 7*i+7])
		c, err := des.NewCipher(k[:])
		if err != nil {
			panic(err) // a DES key of 8 octets is always accepted
		}
		c.Encrypt(out[8*i:], challenge[:])
	}
	clear(z[:])
	return out
}

// generateNTResponse is RFC 2759 §8.1.
func generateNTResponse(authChallenge, peerChallenge, userName []byte, passwordHash [16]byte) [24]byte {
	return challengeResponse(challengeHash(peerChallenge, authChallenge, userName), passwordHash)
}

var (
	// RFC 2759 §8.7.
	authMagic1 = []byte("Magic server to client signing constant")
	authMagic2 = []byte("Pad to make it do more than one iteration")
	// RFC 3079 §3.4.
	mppeMagic1 = []byte("This is the MPPE Master Key")
	mppeMagic2 = []byte("On the client side, this is the send key; on the server side, it is the receive key.")
	mppeMagic3 = []byte("On the client side, this is the receive key; on the server side, it is the send key.")
)

// authenticatorResponse is the 20 octets of RFC 2759 §8.7 (the "S=" value
// before hex encoding).
func authenticatorResponse(passwordHash [16]byte, ntResponse [24]byte, peerChallenge, authChallenge, userName []byte) [20]byte {
	hh := hashNtPasswordHash(passwordHash)
	h := sha1.New()
	h.Write(hh[:])
	h.Write(ntResponse[:])
	h.Write(authMagic1)
	var digest [sha1.Size]byte
	h.Sum(digest[:0])
	ch := challengeHash(peerChallenge, authChallenge, userName)
	h.Reset()
	h.Write(digest[:])
	h.Write(ch[:])
	h.Write(authMagic2)
	var out [20]byte
	h.Sum(out[:0])
	return out
}

// authResponseString is the "S=" string of RFC 2759 §5 (upper-case hex).
func authResponseString(a [20]byte) string {
	return "S=" + strings.ToUpper(hex.EncodeToString(a[:]))
}

// masterKey is GetMasterKey of RFC 3079 §3.4.
func masterKey(passwordHashHash [16]byte, ntResponse [24]byte) [16]byte {
	h := sha1.New()
	h.Write(passwordHashHash[:])
	h.Write(ntResponse[:])
	h.Write(mppeMagic1)
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	var out [16]byte
	copy(out[:], sum[:16])
	return out
}

// asymmetricStartKey is GetAsymmetricStartKey of RFC 3079 §3.4 for
// 128-bit keys. Magic2 names the client's send key, which is the server's
// receive key; Magic3 the other direction.
func asymmetricStartKey(master [16]byte, isSend, isServer bool) [16]byte {
	magic := mppeMagic2
	if isSend == isServer {
		magic = mppeMagic3
	}
	var pad1, pad2 [40]byte // SHSpad1 is 40 zero octets, SHSpad2 40 × 0xf2
	for i := range pad2 {
		pad2[i] = 0xf2
	}
	h := sha1.New()
	h.Write(master[:])
	h.Write(pad1[:])
	h.Write(magic)
	h.Write(pad2[:])
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	var out [16]byte
	copy(out[:], sum[:16])
	return out
}

// mschapMSKLen: see mschapMSK.
const mschapMSKLen = 64

// mschapMSK is the MSK of EAP-MSCHAPv2 as IKEv2 uses it.
//
// There is no RFC for it; what matters is that both ends of the IKE SA
// compute prf(MSK, "Key Pad for IKEv2") alike. What the implementations do:
//
//   - strongSwan's eap-mschapv2 plugin (GenerateMSK in eap_mschapv2.c, the
//     same code on its client and server side) computes RFC 3079's
//     MasterKey, then the server-side MasterReceiveKey (Magic2) and
//     MasterSendKey (Magic3), 16 octets each, and returns
//     MasterReceiveKey | MasterSendKey | 32 zero octets: 64 octets.
//   - FreeRADIUS's rlm_mschap (mppe_chap2_get_keys128) puts the Magic3 key
//     in MS-MPPE-Send-Key and the Magic2 key in MS-MPPE-Recv-Key, 16
//     octets each, and strongSwan's eap-radius builds the MSK as
//     Recv-Key | Send-Key: the same 32 octets. strongSwan 5.9.8 as a
//     gateway keys AUTH with them zero-padded to 64 octets, the form of
//     its eap-mschapv2 (seen in charon's log at ike = 4, test/interop), so
//     it agrees with its own peer for AES-XCBC and AES-CMAC PRFs too.
//
// The 32- and 64-octet forms agree for every HMAC-based IKE PRF, because
// HMAC pads a key shorter than the hash block with zeros (RFC 2104 §2)
// and 64 octets do not exceed the block of SHA-1, SHA-2 or MD5. They would
// differ for PRF_AES128_XCBC and PRF_AES128_CMAC (RFC 4434, RFC 4615),
// which treat the key length as significant.
//
// The peer returns the 64-octet form of strongSwan's eap-mschapv2, which is
// also what a gateway that pads the RADIUS keys gets (MSKFromMPPE; the
// daemon's RADIUS backend pads to 64 octets likewise).
func mschapMSK(passwordHash [16]byte, ntResponse [24]byte) []byte {
	mk := masterKey(hashNtPasswordHash(passwordHash), ntResponse)
	recv := asymmetricStartKey(mk, false, true) // server's receive key, Magic2
	send := asymmetricStartKey(mk, true, true)  // server's send key, Magic3
	msk := make([]byte, mschapMSKLen)
	copy(msk, recv[:])
	copy(msk[16:], send[:])
	clear(mk[:])
	return msk
}

// MSKFromMPPE builds the EAP-MSCHAPv2 MSK from the MS-MPPE-Recv-Key and
// MS-MPPE-Send-Key attributes of a RADIUS Access-Accept (RFC 2548 §2.4.2,
// §2.4.3): Recv-Key | Send-Key, zero-padded to 64 octets as mschapMSK does,
// so that a gateway and a peer of this package agree for every IKE PRF.
// Keys longer than 32 octets in total (EAP-TLS sends 32 each, which are
// already the 64-octet MSK) are concatenated unpadded.
func MSKFromMPPE(recv, send []byte) []byte {
	n := max(len(recv)+len(send), mschapMSKLen)
	msk := make([]byte, n)
	copy(msk, recv)
	copy(msk[len(recv):], send)
	return msk
}

// verifyAuthResponse checks the "S=" field of a Success-Request message
// (RFC 2759 §5: "S=<auth_string> M=<message>") against want, in constant
// time. Hex digits of either case are accepted.
func verifyAuthResponse(message []byte, want [20]byte) bool {
	const n = 2 + 2*mschapAuthRespLen
	if len(message) < n || message[0] != 'S' || message[1] != '=' {
		return false
	}
	if len(message) > n && message[n] != ' ' {
		return false
	}
	var got [mschapAuthRespLen]byte
	if _, err := hex.Decode(got[:], message[2:n]); err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// parseMSCHAPFailure reads "E=eeeeeeeeee R=r C=cccc... V=vvvvvvvvvv
// M=<msg>" (RFC 2759 §6). Fields it does not need are skipped; M= runs to
// the end of the message.
func parseMSCHAPFailure(message []byte) *MSCHAPv2Error {
	e := &MSCHAPv2Error{}
	s := string(message)
	for s != "" {
		var tok string
		if strings.HasPrefix(s, "M=") {
			e.Message = printable(s[2:], 64)
			break
		}
		tok, s, _ = strings.Cut(s, " ")
		switch {
		case strings.HasPrefix(tok, "E="):
			if v, err := strconv.Atoi(tok[2:]); err == nil && v >= 0 {
				e.Code = v
			}
		case strings.HasPrefix(tok, "R="):
			e.Retriable = tok[2:] == "1"
		}
	}
	return e
}

// printable keeps printable ASCII of a server-supplied string and cuts it
// to n octets, so that an error never carries control characters.
func printable(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// mschapPeer is the peer's side of EAP-MSCHAPv2: Challenge → Response,
// then Success-Request → Success-Response once the server proved it knows
// the password (the "S=" authenticator response, RFC 2759 §5), or
// Failure-Request → Failure-Response and an error. Retries and password
// change (R=1, OpCode 7) are not supported: a failure ends the method.
type mschapPeer struct {
	identity []byte
	password []byte
	rand     io.Reader

	state    int
	authResp [mschapAuthRespLen]byte
	key      []byte
}

const (
	mschapWaitChallenge = iota
	mschapWaitSuccess
	mschapVerified
)

func (m *mschapPeer) handle(req *Packet) ([]byte, bool, error) {
	pkt, err := parseMSCHAP(req.Data)
	if err != nil {
		return nil, false, err
	}
	switch {
	case pkt.opCode == mschapChallenge && m.state == mschapWaitChallenge:
		return m.challenge(pkt)
	case pkt.opCode == mschapSuccess && m.state == mschapWaitSuccess && pkt.value != nil:
		if !verifyAuthResponse(pkt.value, m.authResp) {
			// The server does not know the password: do not
			// answer, whatever comes next (RFC 2759 §5: the peer
			// "MUST end the session" if the check fails).
			return nil, false, protocolErr("EAP-MSCHAPv2 authenticator response does not verify")
		}
		m.state = mschapVerified
		return []byte{mschapSuccess}, true, nil
	case pkt.opCode == mschapFailure && pkt.value != nil:
		return []byte{mschapFailure}, false, parseMSCHAPFailure(pkt.value)
	}
	return nil, false, protocolErr("EAP-MSCHAPv2 OpCode %d in state %d", pkt.opCode, m.state)
}

func (m *mschapPeer) challenge(pkt mschapPacket) ([]byte, bool, error) {
	// Value-Size, Challenge, Name (RFC 2759 §4); the Name is the
	// server's and unused.
	if len(pkt.value) < 1+mschapChalLen || pkt.value[0] != mschapChalLen {
		return nil, false, malformed("EAP-MSCHAPv2 Challenge Value-Size")
	}
	authChallenge := pkt.value[1 : 1+mschapChalLen]
	var peerChallenge [mschapChalLen]byte
	if _, err := io.ReadFull(m.rand, peerChallenge[:]); err != nil {
		return nil, false, fmt.Errorf("eap: EAP-MSCHAPv2 peer challenge: %w", err)
	}
	pwHash := ntPasswordHash(m.password)
	nt := generateNTResponse(authChallenge, peerChallenge[:], m.identity, pwHash)
	m.authResp = authenticatorResponse(pwHash, nt, peerChallenge[:], authChallenge, m.identity)
	m.key = mschapMSK(pwHash, nt)
	clear(pwHash[:])
	m.state = mschapWaitSuccess

	// Response: Value-Size 49, Peer-Challenge, 8 reserved zeros,
	// NT-Response, Flags 0, then the Name: the full identity (RFC 2759
	// §4; the domain is dropped only inside ChallengeHash).
	var value [1 + mschapResponseLen]byte
	value[0] = mschapResponseLen
	copy(value[1:], peerChallenge[:])
	copy(value[1+mschapChalLen+8:], nt[:])
	return appendMSCHAP(nil, mschapResponse, pkt.id, value[:], m.identity), false, nil
}

func (m *mschapPeer) msk() []byte {
	if m.state != mschapVerified {
		return nil
	}
	return m.key
}

func (m *mschapPeer) close() {}
