package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"net"
	"net/netip"
	"sync"
	"testing"

	"layeh.com/radius"
	"layeh.com/radius/rfc2869"
)

// fakeServer is an in-process RADIUS server on 127.0.0.1: every
// datagram goes to handle, whose return values are sent back in order.
// It records every datagram it got.
type fakeServer struct {
	t      testing.TB
	conn   *net.UDPConn
	secret []byte
	handle func(req []byte) [][]byte
	wg     sync.WaitGroup

	mu   sync.Mutex
	got  [][]byte
	seen chan []byte // every request, if not nil (buffered by the test)
}

func newFakeServer(t testing.TB, secret string, handle func(req []byte) [][]byte) *fakeServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, conn: conn, secret: []byte(secret), handle: handle}
	f.wg.Go(f.serve)
	t.Cleanup(func() { conn.Close(); f.wg.Wait() })
	return f
}

func (f *fakeServer) serve() {
	buf := make([]byte, 65536)
	for {
		n, from, err := f.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		req := append([]byte(nil), buf[:n]...)
		f.mu.Lock()
		f.got = append(f.got, req)
		seen := f.seen
		f.mu.Unlock()
		if seen != nil {
			seen <- req
		}
		for _, r := range f.handle(req) {
			f.conn.WriteToUDP(r, from)
		}
	}
}

func (f *fakeServer) port() uint16 { return uint16(f.conn.LocalAddr().(*net.UDPAddr).Port) }

func (f *fakeServer) received() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.got...)
}

// server returns the client configuration of f as an auth and an acct
// server.
func (f *fakeServer) server(secret string) Server {
	return Server{Address: "127.0.0.1", AuthPort: f.port(), AcctPort: f.port(), Secret: NewSecret(secret)}
}

// silentPort returns a UDP port on 127.0.0.1 that nothing answers on: a
// socket bound there reads nothing, so the kernel sends no ICMP error
// either and the client sees pure silence.
func silentPort(t testing.TB) (uint16, func() int) {
	f := newFakeServer(t, "x", func([]byte) [][]byte { return nil })
	return f.port(), func() int { return len(f.received()) }
}

// replyOpts shape a reply built by makeReply.
type replyOpts struct {
	noMA      bool // leave out Message-Authenticator
	badMA     bool // corrupt it
	badAuth   bool // corrupt the Response Authenticator
	id        int  // >0: use id-1 as identifier instead of the request's
	secret    string
	recvKey   []byte
	sendKey   []byte
	modifyRaw func([]byte) []byte // applied to the finished packet
}

// makeReply builds a reply of code to req with attributes attrs (EAP
// messages are added split) signed the way RFC 2865 §3 and RFC 3579 §3.2
// say, independently of the code under test.
func makeReply(t testing.TB, req []byte, code radius.Code, eap []byte, attrs radius.Attributes, o replyOpts) []byte {
	t.Helper()
	rq, err := radius.Parse(req, []byte(o.secret))
	if err != nil {
		t.Fatalf("fake server: parse request: %v", err)
	}
	p := rq.Response(code)
	if o.id > 0 {
		p.Identifier = byte(o.id - 1)
	}
	if len(eap) > 0 {
		if err := rfc2869.EAPMessage_Set(p, eap); err != nil {
			t.Fatal(err)
		}
	}
	p.Attributes = append(p.Attributes, attrs...)
	if o.recvKey != nil {
		addMPPE(t, p, mppeRecvKey, o.recvKey)
	}
	if o.sendKey != nil {
		addMPPE(t, p, mppeSendKey, o.sendKey)
	}
	if !o.noMA {
		p.Add(rfc2869.MessageAuthenticator_Type, make(radius.Attribute, 16))
	}
	b, err := p.MarshalBinary() // Authenticator is still the request's
	if err != nil {
		t.Fatal(err)
	}
	if !o.noMA {
		off := len(b) - 16
		h := hmac.New(md5.New, []byte(o.secret))
		h.Write(b)
		copy(b[off:], h.Sum(nil))
		if o.badMA {
			b[off] ^= 1
		}
	}
	h := md5.New()
	h.Write(b)
	h.Write([]byte(o.secret))
	copy(b[4:20], h.Sum(nil))
	if o.badAuth {
		b[4] ^= 0x80
	}
	if o.modifyRaw != nil {
		b = o.modifyRaw(b)
	}
	return b
}

// addMPPE adds an encrypted MS-MPPE key with layeh's Tunnel-Password
// cipher (the same as RFC 2548 §2.4.2's), to a reply whose Authenticator
// still holds the request's.
func addMPPE(t testing.TB, p *radius.Packet, typ byte, key []byte) {
	salt := []byte{0x80 | typ, 0x42}
	enc, err := radius.NewTunnelPassword(key, salt, p.Secret, p.Authenticator[:])
	if err != nil {
		t.Fatal(err)
	}
	vsa, err := radius.NewVendorSpecific(vendorMicrosoft, append([]byte{typ, byte(2 + len(enc))}, enc...))
	if err != nil {
		t.Fatal(err)
	}
	p.Add(26, vsa)
}

// eapPacket makes an EAP packet (RFC 3748 §4) of total length n.
func eapPacket(code, id byte, n int) []byte {
	b := make([]byte, n)
	b[0], b[1], b[2], b[3] = code, id, byte(n>>8), byte(n)
	for i := 4; i < n; i++ {
		b[i] = byte(i)
	}
	return b
}

// eapSuccess and eapFailure are RFC 3748 §4.2 packets.
func eapSuccess(id byte) []byte { return []byte{3, id, 0, 4} }
func eapFailure(id byte) []byte { return []byte{4, id, 0, 4} }

var testNAS = NAS{Identifier: "mifike-test", Address: netip.MustParseAddr("127.0.0.1")}
