package eap

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 2759 §9.2, user "User", password "clientPass".
const (
	rfcUser          = "User"
	rfcPassword      = "clientPass"
	rfcAuthChallenge = "5B 5D 7C 7D 7B 3F 2F 3E 3C 2C 60 21 32 26 26 28"
	rfcPeerChallenge = "21 40 23 24 25 5E 26 2A 28 29 5F 2B 3A 33 7C 7E"
	rfcChallenge     = "D0 2E 43 86 BC E9 12 26"
	rfcPasswordHash  = "44 EB BA 8D 53 12 B8 D6 11 47 44 11 F5 69 89 AE"
	rfcNTResponse    = "82 30 9E CD 8D 70 8B 5E A0 8F AA 39 81 CD 83 54 42 33 11 4A 3D 85 D6 DF"
	rfcPwHashHash    = "41 C0 0C 58 4B D2 D9 1C 40 17 A2 A1 2F A5 9F 3F"
	rfcAuthResponse  = "S=407A5589115FD0D6209F510FE9C04566932CDA56"
	// RFC 3079 §3.5.3 (128-bit keys), same inputs.
	rfcMasterKey       = "FD EC E3 71 7A 8C 83 8C B3 88 E5 27 AE 3C DD 31"
	rfcSendStartKey128 = "8B 7C DC 14 9B 99 3A 1B A1 18 CB 15 3F 56 DC CB"
)

func TestRFC2759HashExample(t *testing.T) {
	auth, peer := unhex(t, rfcAuthChallenge), unhex(t, rfcPeerChallenge)
	if got := challengeHash(peer, auth, []byte(rfcUser)); !bytes.Equal(got[:], unhex(t, rfcChallenge)) {
		t.Errorf("ChallengeHash = %X", got)
	}
	pwHash := ntPasswordHash([]byte(rfcPassword))
	if !bytes.Equal(pwHash[:], unhex(t, rfcPasswordHash)) {
		t.Errorf("NtPasswordHash = %X", pwHash)
	}
	nt := generateNTResponse(auth, peer, []byte(rfcUser), pwHash)
	if !bytes.Equal(nt[:], unhex(t, rfcNTResponse)) {
		t.Errorf("NT-Response = %X", nt)
	}
	if hh := hashNtPasswordHash(pwHash); !bytes.Equal(hh[:], unhex(t, rfcPwHashHash)) {
		t.Errorf("PasswordHashHash = %X", hh)
	}
	ar := authenticatorResponse(pwHash, nt, peer, auth, []byte(rfcUser))
	if got := authResponseString(ar); got != rfcAuthResponse {
		t.Errorf("AuthenticatorResponse = %s", got)
	}
	if !verifyAuthResponse([]byte(rfcAuthResponse+" M=hello"), ar) {
		t.Error("the RFC's S= string does not verify")
	}
	if !verifyAuthResponse([]byte("S="+strings.ToLower(rfcAuthResponse[2:])), ar) {
		t.Error("lower-case hex does not verify")
	}
}

// A prepended domain is not hashed (RFC 2759 §8.2).
func TestChallengeHashDropsDomain(t *testing.T) {
	auth, peer := unhex(t, rfcAuthChallenge), unhex(t, rfcPeerChallenge)
	got := challengeHash(peer, auth, []byte(`EXAMPLE\User`))
	if !bytes.Equal(got[:], unhex(t, rfcChallenge)) {
		t.Errorf("ChallengeHash of EXAMPLE\\User = %X, want that of User", got)
	}
}

// RFC 2759 §9.3: DES keys from the password "MyPw".
func TestRFC2759DESKeyExample(t *testing.T) {
	h := unhex(t, "FC 15 6A F7 ED CD 6C 0E DD E3 33 7D 42 7F 4E AC")
	for _, tc := range []struct{ raw, key string }{
		{"FC 15 6A F7 ED CD 6C", "FD 0B 5B 5E 7F 6E 34 D9"},
		{"0E DD E3 33 7D 42 7F", "0E 6E 79 67 37 EA 08 FE"},
	} {
		raw := unhex(t, tc.raw)
		if !bytes.Contains(h, raw) {
			t.Fatalf("%s is not part of the hash", tc.raw)
		}
		if got := desKey(raw); !bytes.Equal(got[:], unhex(t, tc.key)) {
			t.Errorf("desKey(%s) = %X, want %s", tc.raw, got, tc.key)
		}
	}
}

// RFC 3079 §3.5.3: MasterKey and the 128-bit SendStartKey from the
// server's point of view (IsSend, IsServer: Magic3), which is also the
// client's receive key.
func TestRFC3079KeyDerivation(t *testing.T) {
	nt := [24]byte(unhex(t, rfcNTResponse))
	mk := masterKey([16]byte(unhex(t, rfcPwHashHash)), nt)
	if !bytes.Equal(mk[:], unhex(t, rfcMasterKey)) {
		t.Fatalf("MasterKey = %X", mk)
	}
	send := asymmetricStartKey(mk, true, true)
	if !bytes.Equal(send[:], unhex(t, rfcSendStartKey128)) {
		t.Errorf("server SendStartKey = %X", send)
	}
	if clientRecv := asymmetricStartKey(mk, false, false); clientRecv != send {
		t.Errorf("client receive key %X differs from server send key %X", clientRecv, send)
	}
	recv := asymmetricStartKey(mk, false, true)
	if clientSend := asymmetricStartKey(mk, true, false); clientSend != recv || recv == send {
		t.Errorf("client send %X, server receive %X, server send %X", clientSend, recv, send)
	}

	// The MSK: server receive key (Magic2), server send key (Magic3),
	// 32 zeros, as strongSwan's eap-mschapv2 GenerateMSK.
	msk := mschapMSK([16]byte(unhex(t, rfcPasswordHash)), nt)
	want := append(append(recv[:], send[:]...), make([]byte, 32)...)
	if !bytes.Equal(msk, want) {
		t.Errorf("MSK = %X, want %X", msk, want)
	}
	// What a RADIUS gateway rebuilds from MS-MPPE-Recv-Key (Magic2)
	// and MS-MPPE-Send-Key (Magic3) is the same 64 octets.
	if got := MSKFromMPPE(recv[:], send[:]); !bytes.Equal(got, msk) {
		t.Errorf("MSKFromMPPE = %X, want %X", got, msk)
	}
}

func TestMSCHAPFailureParse(t *testing.T) {
	for _, tc := range []struct {
		in    string
		code  int
		retry bool
		msg   string
	}{
		{"E=691 R=1 C=00112233445566778899AABBCCDDEEFF V=3 M=Authentication failed", 691, true, "Authentication failed"},
		{"E=648 R=0 V=3", 648, false, ""},
		{"M=only a message with E=1", 0, false, "only a message with E=1"},
		{"E=x R=1", 0, true, ""},
		{"", 0, false, ""},
		{"E=691 M=bell\x07 and\nnewline", 691, false, "bell andnewline"},
	} {
		e := parseMSCHAPFailure([]byte(tc.in))
		if e.Code != tc.code || e.Retriable != tc.retry || e.Message != tc.msg {
			t.Errorf("%q: got %+v", tc.in, *e)
		}
	}
	if s := (&MSCHAPv2Error{Code: 691}).Error(); !strings.Contains(s, "E=691") || !strings.Contains(s, "authentication failure") {
		t.Errorf("error text %q", s)
	}
}

func TestVerifyAuthResponseRejects(t *testing.T) {
	var want [20]byte
	copy(want[:], unhex(t, "407A5589115FD0D6209F510FE9C04566932CDA56"))
	for _, s := range []string{
		"",
		"S=",
		"S=407A5589115FD0D6209F510FE9C04566932CDA5",   // short
		"S=407A5589115FD0D6209F510FE9C04566932CDA57",  // wrong
		"S=407A5589115FD0D6209F510FE9C04566932CDA56X", // trailing garbage
		"M=x S=407A5589115FD0D6209F510FE9C04566932CDA56",
		"S=407A5589115FD0D6209F510FE9C04566932CDZZ",
	} {
		if verifyAuthResponse([]byte(s), want) {
			t.Errorf("%q verified", s)
		}
	}
}
