//go:build linux

package radius

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"github.com/mifike/mifike/internal/lab"
	"net/netip"
	"strings"
	"testing"
	"time"

	"layeh.com/radius/rfc2759"
	"layeh.com/radius/rfc3079"

	"github.com/mifike/mifike/internal/radiuslab"
)

// These tests run the client against a real FreeRADIUS (radiuslab); they
// skip without root or without the freeradius package.

var labUsers = []radiuslab.User{
	{Name: "alice", Password: "wonderland", FramedIPAddress: netip.MustParseAddr("10.9.0.5"),
		SessionTimeout: time.Hour, Class: "class-alice"},
	{Name: "bob", Password: "builder"},
}

func startLab(t *testing.T, o radiuslab.Options) *radiuslab.Server {
	t.Helper()
	if o.Users == nil {
		o.Users = labUsers
	}
	o.Debug = true // the output is only shown when a test fails
	return radiuslab.Start(t, o)
}

func labServer(s *radiuslab.Server) Server {
	return Server{Address: s.Addr.String(), AuthPort: s.AuthPort, AcctPort: s.AcctPort, Secret: NewSecret(s.Secret)}
}

func labClient(t *testing.T, servers ...Server) *Client {
	// Generous timers: FreeRADIUS on a loaded machine may be slow.
	return newTestClient(t, Config{Servers: servers, Timeout: time.Second, Tries: 3})
}

// EAP codes and types (RFC 3748 §4, §5).
const (
	eapRequest    = 1
	eapResponse   = 2
	eapSuccessC   = 3
	eapFailureC   = 4
	eapIdentity   = 1
	eapMD5        = 4
	eapMSCHAPv2   = 26
	mschapChal    = 1
	mschapResp    = 2
	mschapSuccess = 3
)

// eapResp builds an EAP-Response of type typ (RFC 3748 §4.1).
func eapResp(id, typ byte, data []byte) []byte {
	b := make([]byte, 5, 5+len(data))
	b[0], b[1], b[4] = eapResponse, id, typ
	b = append(b, data...)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	return b
}

// eapReq checks that b is an EAP-Request of type typ and returns its id
// and type data.
func eapReq(t *testing.T, b []byte, typ byte) (byte, []byte) {
	t.Helper()
	if len(b) < 5 || b[0] != eapRequest || b[4] != typ {
		t.Fatalf("EAP %x, want a Request of type %d", b, typ)
	}
	return b[1], b[5:]
}

// md5Auth runs EAP-MD5 (RFC 3748 §5.4) for user through c and returns
// the last reply and its error.
func md5Auth(t *testing.T, c *Client, user, password string) (*Reply, error) {
	t.Helper()
	ctx := ctxTimeout(t, time.Minute)
	cv := c.NewConversation(user, "127.0.0.1[4500]", "127.0.0.2[4500]")
	r, err := cv.Round(ctx, eapResp(0, eapIdentity, []byte(user)))
	if err != nil {
		t.Fatalf("identity round: %v", err)
	}
	if r.Code != AccessChallenge || len(r.State) == 0 {
		t.Fatalf("identity round: %v with State %x, want an Access-Challenge with State", r.Code, r.State)
	}
	id, data := eapReq(t, r.EAPMessage, eapMD5)
	if len(data) < 1 || int(data[0]) > len(data)-1 {
		t.Fatalf("MD5-Challenge %x", data)
	}
	// RFC 3748 §5.4, RFC 1994 §4.1: MD5(Identifier ‖ secret ‖ challenge).
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(password))
	h.Write(data[1 : 1+data[0]])
	return cv.Round(ctx, eapResp(id, eapMD5, append([]byte{16}, h.Sum(nil)...)))
}

// EAP-MD5 end to end, and the reply attributes of the user coming
// through (RFC 2865 §5.8, §5.25, §5.27).
func TestFreeRADIUSEAPMD5Accept(t *testing.T) {
	srv := startLab(t, radiuslab.Options{})
	c := labClient(t, labServer(srv))
	r, err := md5Auth(t, c, "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != AccessAccept || len(r.EAPMessage) != 4 || r.EAPMessage[0] != eapSuccessC {
		t.Fatalf("%v with EAP %x, want Access-Accept with EAP-Success", r.Code, r.EAPMessage)
	}
	if r.FramedIPAddress != netip.MustParseAddr("10.9.0.5") || r.SessionTimeout != time.Hour {
		t.Errorf("Framed-IP-Address %v, Session-Timeout %v", r.FramedIPAddress, r.SessionTimeout)
	}
	if len(r.Class) != 1 || string(r.Class[0]) != "class-alice" {
		t.Errorf("Class %q", r.Class)
	}
	if len(r.MSK) != 0 {
		t.Errorf("EAP-MD5 derives no key, got an MSK of %d octets", len(r.MSK))
	}
}

// A wrong password: Access-Reject with EAP-Failure and FreeRADIUS's
// Reply-Message (RFC 2865 §4.3, RFC 3579 §2.6.3).
func TestFreeRADIUSEAPMD5Reject(t *testing.T) {
	srv := startLab(t, radiuslab.Options{})
	c := labClient(t, labServer(srv))
	r, err := md5Auth(t, c, "bob", "not-the-password")
	var re *RejectError
	if !errors.As(err, &re) || !strings.Contains(re.ReplyMessage, "rejected bob") {
		t.Fatalf("got %v, want a RejectError with the Reply-Message", err)
	}
	if r.Code != AccessReject || len(r.EAPMessage) != 4 || r.EAPMessage[0] != eapFailureC {
		t.Errorf("%v with EAP %x, want Access-Reject with EAP-Failure", r.Code, r.EAPMessage)
	}
	if c.Stats().Rejects.Load() != 1 {
		t.Errorf("Rejects = %d", c.Stats().Rejects.Load())
	}
}

// MPPE keys set in the users file come out of FreeRADIUS's encryption
// (RFC 2548 §2.4.2–2.4.3) as they went in: Recv ‖ Send.
func TestFreeRADIUSMPPEKeysFromUsersFile_RFC2548(t *testing.T) {
	recv := bytes.Repeat([]byte{0x11, 0x22}, 16)
	send := bytes.Repeat([]byte{0x33, 0x44, 0x55, 0x66}, 8)
	hexOf := func(b []byte) string { return "0x" + strings.ToLower(strings.TrimSpace(hexString(b))) }
	srv := startLab(t, radiuslab.Options{Users: []radiuslab.User{{Name: "keyed", Password: "pw",
		Reply: []string{"MS-MPPE-Recv-Key = " + hexOf(recv), "MS-MPPE-Send-Key = " + hexOf(send)}}}})
	c := labClient(t, labServer(srv))
	r, err := md5Auth(t, c, "keyed", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.MSK, append(recv, send...)) {
		t.Errorf("MSK %x\nwant %x ‖ %x", r.MSK, recv, send)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, c := range b {
		s = append(s, digits[c>>4], digits[c&15])
	}
	return string(s)
}

// EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2) through the client: the
// MSK FreeRADIUS sends (16-octet MS-MPPE keys, RFC 3079 §3) must equal
// the keys derived here from the password (RFC 3079 §3.4 with layeh's
// rfc3079), Recv ‖ Send: a known-answer test of the MPPE decryption
// against an independent implementation.
func TestFreeRADIUSEAPMSCHAPv2MSK_RFC3079(t *testing.T) {
	srv := startLab(t, radiuslab.Options{DefaultEAPType: "mschapv2"})
	c := labClient(t, labServer(srv))
	ctx := ctxTimeout(t, time.Minute)
	user, password := "alice", "wonderland"
	cv := c.NewConversation(user, "", "")
	r, err := cv.Round(ctx, eapResp(0, eapIdentity, []byte(user)))
	if err != nil {
		t.Fatal(err)
	}
	id, data := eapReq(t, r.EAPMessage, eapMSCHAPv2)
	if len(data) < 5+16 || data[0] != mschapChal || data[4] != 16 {
		t.Fatalf("MS-CHAPv2 Challenge %x", data)
	}
	msID, authChal := data[1], data[5:21]
	peerChal := make([]byte, 16)
	rand.Read(peerChal)
	nt, err := rfc2759.GenerateNTResponse(authChal, peerChal, []byte(user), []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	// Response: OpCode, MS-CHAPv2-ID, MS-Length, Value-Size 49, Peer-
	// Challenge, 8 reserved, NT-Response, Flags, Name.
	val := append(append(append(append([]byte{}, peerChal...), make([]byte, 8)...), nt...), 0)
	resp := append([]byte{mschapResp, msID, 0, 0, 49}, val...)
	resp = append(resp, user...)
	binary.BigEndian.PutUint16(resp[2:4], uint16(len(resp)))
	if r, err = cv.Round(ctx, eapResp(id, eapMSCHAPv2, resp)); err != nil {
		t.Fatal(err)
	}
	id, data = eapReq(t, r.EAPMessage, eapMSCHAPv2)
	wantAuth, _ := rfc2759.GenerateAuthenticatorResponse(authChal, peerChal, nt, []byte(user), []byte(password))
	if len(data) < 1 || data[0] != mschapSuccess || !strings.Contains(string(data), wantAuth) {
		t.Fatalf("MS-CHAPv2 Success-Request %q, want one with %s", data, wantAuth)
	}
	if r, err = cv.Round(ctx, eapResp(id, eapMSCHAPv2, []byte{mschapSuccess})); err != nil {
		t.Fatal(err)
	}
	if r.Code != AccessAccept {
		t.Fatalf("%v, want Access-Accept", r.Code)
	}
	// Server perspective: its Send-Key is layeh's MakeKey(isSend=true).
	sendKey, _ := rfc3079.MakeKey(nt, []byte(password), true)
	recvKey, _ := rfc3079.MakeKey(nt, []byte(password), false)
	if want := append(recvKey, sendKey...); !bytes.Equal(r.MSK, want) {
		t.Errorf("MSK %x\nwant %x (Recv ‖ Send)", r.MSK, want)
	}
}

// A wrong shared secret: FreeRADIUS drops our requests (bad Message-
// Authenticator), or its replies fail our checks; either way the client
// ends with a timeout naming the server, and nothing is accepted.
func TestFreeRADIUSWrongSecretTimesOut(t *testing.T) {
	srv := startLab(t, radiuslab.Options{})
	s := labServer(srv)
	s.Secret = NewSecret("not-" + srv.Secret)
	c := newTestClient(t, Config{Servers: []Server{s}, Timeout: 200 * time.Millisecond, Tries: 2})
	_, err := c.NewConversation("alice", "", "").Round(ctxTimeout(t, time.Minute), eapResp(0, eapIdentity, []byte("alice")))
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), srv.AuthAddr().String()) {
		t.Fatalf("got %v, want a timeout naming %v", err, srv.AuthAddr())
	}
	if strings.Contains(err.Error(), srv.Secret) {
		t.Error("the error shows the secret")
	}
	if c.Stats().Accepts.Load()+c.Stats().Challenges.Load() != 0 {
		t.Error("a reply was accepted under the wrong secret")
	}
}

// Failover from a dead address to the live server, then hold-down: the
// second conversation goes straight to the live one.
func TestFreeRADIUSFailoverFromDeadServer(t *testing.T) {
	srv := startLab(t, radiuslab.Options{})
	dead, deadGot := silentPort(t)
	c := newTestClient(t, Config{Servers: []Server{
		{Address: "127.0.0.1", AuthPort: dead, AcctPort: dead, Secret: NewSecret(srv.Secret)},
		labServer(srv),
	}, Timeout: 100 * time.Millisecond, MaxTimeout: 400 * time.Millisecond, Tries: 6, HoldDown: time.Hour})
	for i := range 2 {
		if r, err := md5Auth(t, c, "alice", "wonderland"); err != nil || r.Code != AccessAccept {
			t.Fatalf("conversation %d: %v, %v", i+1, r, err)
		}
	}
	if deadGot() != 6 || c.Stats().Failovers.Load() != 1 {
		t.Errorf("dead server got %d packets, failovers %d; want 6 (first round only), 1", deadGot(), c.Stats().Failovers.Load())
	}
}

// Accounting Start, Interim-Update and Stop land in FreeRADIUS's detail
// file with the Class of the Access-Accept echoed (RFC 2866, RFC 2865
// §5.25) and the counters split into Gigawords (RFC 2869 §5.1).
func TestFreeRADIUSAccounting_RFC2866(t *testing.T) {
	srv := startLab(t, radiuslab.Options{})
	c := labClient(t, labServer(srv))
	r, err := md5Auth(t, c, "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	base := AccountingRequest{SessionID: "mifike-1", UserName: "alice", FramedIPAddress: r.FramedIPAddress, Class: r.Class,
		CalledStationID: "127.0.0.1[4500]", CallingStationID: "127.0.0.2[4500]"}
	steps := []AccountingRequest{base, base, base}
	steps[0].Status = AcctStart
	steps[1].Status, steps[1].InputOctets, steps[1].OutputOctets, steps[1].SessionTime = AcctInterimUpdate, 1000, 2000, time.Minute
	steps[2].Status, steps[2].InputOctets, steps[2].OutputOctets, steps[2].InputPackets, steps[2].SessionTime =
		AcctStop, 3<<32+5, 4000, 77, 2*time.Minute
	for _, a := range steps {
		if err := c.Account(ctxTimeout(t, time.Minute), &a); err != nil {
			t.Fatalf("%v: %v", a.Status, err)
		}
	}
	recs, err := srv.AccountingRecords()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records in the detail file, want 3", len(recs))
	}
	for i, want := range []string{"Start", "Interim-Update", "Stop"} {
		rec := recs[i]
		if rec.Get("Acct-Status-Type") != want || rec.Get("Acct-Session-Id") != "mifike-1" || rec.Get("User-Name") != "alice" {
			t.Errorf("record %d: %v", i, rec)
		}
		if got := rec.Get("Class"); got != "0x"+hexString([]byte("class-alice")) {
			t.Errorf("record %d: Class %q, want class-alice echoed", i, got)
		}
		if rec.Get("Framed-IP-Address") != "10.9.0.5" || rec.Get("NAS-Identifier") != "mifike-test" {
			t.Errorf("record %d: %v", i, rec)
		}
	}
	stop := recs[2]
	for name, want := range map[string]string{"Acct-Input-Gigawords": "3", "Acct-Input-Octets": "5",
		"Acct-Output-Octets": "4000", "Acct-Input-Packets": "77", "Acct-Session-Time": "120",
		"Acct-Terminate-Cause": "User-Request"} {
		if got := stop.Get(name); got != want {
			t.Errorf("Stop: %s = %q, want %q", name, got, want)
		}
	}
}

// The harness's configuration works for the methods our EAP peers will
// use, as wpa_supplicant's eapol_test sees it: EAP-MSCHAPv2 (16-octet
// MPPE keys) and EAP-TLS with the harness's client certificate (32-octet
// keys).
func TestFreeRADIUSWithEAPOLTest(t *testing.T) {
	srv := startLab(t, radiuslab.Options{})
	cases := []struct {
		name, network string
		keyLen        string
	}{
		{"EAP-MSCHAPv2", `network={
	key_mgmt=IEEE8021X
	eap=MSCHAPV2
	identity="alice"
	password="wonderland"
}`, "len=16"},
		{"EAP-TLS", `network={
	key_mgmt=IEEE8021X
	eap=TLS
	identity="` + radiuslab.ClientCertName + `"
	ca_cert="` + srv.CACert + `"
	client_cert="` + srv.ClientCert + `"
	private_key="` + srv.ClientKey + `"
	domain_match="` + radiuslab.ServerCertName + `"
}`, "len=32"},
		{"EAP-TTLS/MSCHAPv2", `network={
	key_mgmt=IEEE8021X
	eap=TTLS
	identity="alice"
	password="wonderland"
	ca_cert="` + srv.CACert + `"
	phase2="autheap=MSCHAPV2"
}`, "len=32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := srv.EAPOLTest(context.Background(), tc.network)
			if strings.Contains(errString(err), "not installed") {
				t.Skip(err) // eapol_test missing: it says which package
			}
			if err != nil || !strings.Contains(out, "SUCCESS") {
				t.Fatalf("eapol_test: %v\n%s", err, lab.LastLines(out, 40))
			}
			if !strings.Contains(out, "MS-MPPE-Send-Key (sign) - hexdump("+tc.keyLen+")") {
				t.Errorf("no MS-MPPE-Send-Key of %s in:\n%s", tc.keyLen, lab.LastLines(out, 40))
			}
			// eapol_test compares its own MSK with Recv-Key ‖ Send-Key
			// from the Access-Accept: the order DecodeAccessReply uses.
			if !strings.Contains(out, "MPPE keys OK: 1  mismatch: 0") {
				t.Errorf("eapol_test's MSK is not the MPPE keys:\n%s", lab.LastLines(out, 40))
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
