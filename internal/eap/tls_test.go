package eap

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"hash"
	"runtime"
	"strings"
	"testing"
	"time"
)

func tlsPair(t *testing.T, pk *pki, version uint16, frag int, client *tls.Certificate) (*Peer, *Server) {
	t.Helper()
	s := newTestServer(t, ServerConfig{
		Methods: []Type{TypeTLS}, Certificate: &pk.server, ClientCAs: pk.roots, TLSMaxVersion: version, FragmentSize: frag,
	})
	p := newTestPeer(t, PeerConfig{
		Methods: []Type{TypeTLS}, Certificate: client, RootCAs: pk.roots, ServerName: "radius.example",
		TLSMaxVersion: version, FragmentSize: frag,
	})
	return p, s
}

// Small fragments both ways: L on the first fragment with the total, M on
// all but the last, every fragment acknowledged, and the handshake
// succeeds (RFC 5216 §2.1.5).
func TestTLSFragmentation(t *testing.T) {
	pk := newPKI(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		p, s := tlsPair(t, pk, v, minFragmentSize, &pk.client)
		o := converse(t, p, s, nil)
		if !p.Succeeded() || o.serverErr != nil || !bytes.Equal(p.MSK(), o.serverMSK) {
			t.Fatalf("%#x: peer %v, server %v", v, o.peerErr, o.serverErr)
		}
		var fragsFrom, acksFrom [3]int // by Code
		for _, b := range o.packets {
			pkt, _ := Parse(b)
			if pkt.Type != TypeTLS {
				continue
			}
			tp, err := parseTLSData(pkt.Data)
			if err != nil {
				t.Fatal(err)
			}
			if len(tp.data) > minFragmentSize {
				t.Fatalf("fragment of %d octets", len(tp.data))
			}
			if tp.flags&tlsFlagMore != 0 {
				fragsFrom[pkt.Code]++
			}
			if tp.isAck() {
				acksFrom[pkt.Code]++
			}
		}
		for _, c := range []Code{CodeRequest, CodeResponse} {
			if fragsFrom[c] == 0 || acksFrom[c] == 0 {
				t.Errorf("%#x: %s sent %d M fragments and %d ACKs", v, c, fragsFrom[c], acksFrom[c])
			}
		}
	}
}

func TestTLSReassemblyLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frags [][]byte // Type-Data of successive Requests
	}{
		{"L beyond the cap", [][]byte{{tlsFlagLength | tlsFlagMore, 0, 1, 0, 1, 0x16}}},
		{"L of zero", [][]byte{{tlsFlagLength, 0, 0, 0, 0, 0x16}}},
		{"more than announced", [][]byte{{tlsFlagLength | tlsFlagMore, 0, 0, 0, 2, 1, 2}, {0, 3}}},
		{"less than announced", [][]byte{{tlsFlagLength | tlsFlagMore, 0, 0, 0, 9, 1, 2}, {0, 3}}},
		{"length changes", [][]byte{{tlsFlagLength | tlsFlagMore, 0, 0, 0, 9, 1, 2}, {tlsFlagLength, 0, 0, 0, 8, 3}}},
		{"L without length", [][]byte{{tlsFlagLength, 0, 0}}},
		{"empty fragment", [][]byte{{tlsFlagMore, 1}, {tlsFlagMore}}},
		{"second start", [][]byte{{tlsFlagStart}}},
		{"no flags octet", [][]byte{{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pk := newPKI(t)
			p, _ := tlsPair(t, pk, 0, 0, &pk.client)
			if _, err := p.Handle(mkReq(t, 1, TypeTLS, []byte{tlsFlagStart})); err != nil {
				t.Fatal(err)
			}
			var err error
			for i, f := range tc.frags {
				if _, err = p.Handle(mkReq(t, uint8(2+i), TypeTLS, f)); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v", err)
			}
		})
	}
	// More than 64 KiB in fragments without L.
	pk := newPKI(t)
	p, _ := tlsPair(t, pk, 0, 0, &pk.client)
	if _, err := p.Handle(mkReq(t, 1, TypeTLS, []byte{tlsFlagStart})); err != nil {
		t.Fatal(err)
	}
	chunk := append([]byte{tlsFlagMore}, make([]byte, 16000)...)
	var err error
	for i := range 6 {
		if _, err = p.Handle(mkReq(t, uint8(2+i), TypeTLS, chunk)); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("64 KiB cap: %v", err)
	}
}

// The server's certificate is verified against the configured CA and
// name; on failure the peer sends its TLS alert and gives up.
func TestTLSServerVerification(t *testing.T) {
	pk, other := newPKI(t), newPKI(t)
	for _, tc := range []struct {
		name string
		mod  func(*PeerConfig)
		want string
	}{
		{"unknown CA", func(c *PeerConfig) { c.RootCAs = other.roots }, "certificate"},
		{"wrong name", func(c *PeerConfig) { c.ServerName = "evil.example" }, "evil.example"},
		{"expired", func(c *PeerConfig) { c.Now = func() time.Time { return testNow.Add(48 * time.Hour) } }, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, ServerConfig{Methods: []Type{TypeTLS}, Certificate: &pk.server, ClientCAs: pk.roots})
			cfg := PeerConfig{Methods: []Type{TypeTLS}, Certificate: &pk.client, RootCAs: pk.roots, ServerName: "radius.example"}
			tc.mod(&cfg)
			p := newTestPeer(t, cfg)
			o := converse(t, p, s, nil)
			if p.Succeeded() || o.peerErr == nil || !strings.Contains(o.peerErr.Error(), tc.want) {
				t.Fatalf("peer error %v", o.peerErr)
			}
			// The last Response carries a TLS alert record (content
			// type 21), which the server answers with EAP-Failure.
			last, _ := Parse(o.packets[len(o.packets)-2])
			tp, _ := parseTLSData(last.Data)
			if last.Code != CodeResponse || len(tp.data) == 0 || tp.data[0] != 21 {
				t.Fatalf("last response %x is not an alert", o.packets[len(o.packets)-2])
			}
			if !errors.Is(o.serverErr, ErrRejected) {
				t.Fatalf("server %v", o.serverErr)
			}
		})
	}
}

// EAP-TLS requires the peer's certificate: without one the server fails
// the handshake and sends EAP-Failure.
func TestTLSClientCertificateRequired(t *testing.T) {
	pk := newPKI(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		p, s := tlsPair(t, pk, v, 0, nil)
		o := converse(t, p, s, nil)
		if p.Succeeded() || !errors.Is(o.serverErr, ErrRejected) {
			t.Fatalf("%#x: peer %v, server %v", v, o.peerErr, o.serverErr)
		}
	}
}

// RFC 9190 §2.5: with TLS 1.3, EAP-Success before the protected success
// indication is refused, even though the TLS handshake itself is done.
func TestTLS13SuccessBeforeIndication(t *testing.T) {
	pk := newPKI(t)
	p, s := tlsPair(t, pk, tls.VersionTLS13, 0, &pk.client)
	req, _ := s.Start()
	for range 20 {
		resp, err := p.Handle(req)
		if err != nil {
			t.Fatal(err)
		}
		var done bool
		req, done, _, err = s.Handle(resp)
		if err != nil || done {
			t.Fatal(done, err)
		}
		if s.tlsm != nil && s.tlsm.finished {
			// req carries the 0x00 indication; send Success instead.
			pkt, _ := Parse(req)
			if _, err := p.Handle(mkCode(CodeSuccess, pkt.Identifier-1)); !errors.Is(err, ErrEarlySuccess) {
				t.Fatalf("Success before the indication: %v", err)
			}
			return
		}
	}
	t.Fatal("handshake did not finish")
}

// The TLS goroutine ends on Close in the middle of the handshake and
// after success, and no goroutine is left behind.
func TestTLSGoroutineLifecycle(t *testing.T) {
	pk := newPKI(t)
	before := runtime.NumGoroutine()

	// Mid-handshake: ClientHello sent, the goroutine waits for input.
	p, s := tlsPair(t, pk, 0, 0, &pk.client)
	mustResp(t, p, mkReq(t, 1, TypeTLS, []byte{tlsFlagStart}))
	e := p.m.(*tlsPeer).engine
	select {
	case <-e.exited:
		t.Fatal("goroutine gone before Close")
	default:
	}
	p.Close()
	<-e.exited // closed by the goroutine itself as it returns
	if _, err := p.Handle(mkReq(t, 2, TypeTLS, []byte{0})); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	s.Close()

	// After success the goroutine has already ended.
	p, s = tlsPair(t, pk, tls.VersionTLS13, 0, &pk.client)
	converse(t, p, s, nil)
	if !p.Succeeded() {
		t.Fatal(p.Err())
	}
	<-p.m.(*tlsPeer).engine.exited
	<-s.tlsm.engine.exited
	p.Close()
	s.Close()

	// Failure mid-way (server rejects the client) ends both.
	p, s = tlsPair(t, pk, 0, 0, nil)
	converse(t, p, s, nil)
	<-s.tlsm.engine.exited
	p.Close()
	<-p.m.(*tlsPeer).engine.exited

	// The exited channels close as the goroutines return; let them
	// finish returning before counting.
	for i := 0; i < 1000 && runtime.NumGoroutine() > before; i++ {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines, %d before", n, before)
	}
}

// TLS 1.2: the MSK recomputed from the master secret (NSS key log) and the
// hello randoms by the formula of RFC 5216 §2.3, independently of
// crypto/tls's exporter. TLS 1.3: crypto/tls logs no exporter secret, so
// the check is that the MSK is the RFC 9190 §2.3 export (label, one-octet
// Type-Code context) and not the pre-RFC one strongSwan 5.9.8 computes.
func TestTLSMSKIndependent(t *testing.T) {
	pk := newPKI(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		var keylog bytes.Buffer
		s := newTestServer(t, ServerConfig{Methods: []Type{TypeTLS}, Certificate: &pk.server, ClientCAs: pk.roots, TLSMaxVersion: v})
		p := newTestPeer(t, PeerConfig{
			Methods: []Type{TypeTLS}, Certificate: &pk.client, RootCAs: pk.roots, ServerName: "radius.example",
			TLSMaxVersion: v, keyLog: &keylog,
		})
		o := converse(t, p, s, nil)
		if !p.Succeeded() {
			t.Fatal(o.peerErr)
		}
		st := p.m.(*tlsPeer).state
		newHash := map[uint16]func() hash.Hash{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       sha256.New,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: sha256.New,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       sha512.New384,
			tls.TLS_AES_128_GCM_SHA256:                        sha256.New,
			tls.TLS_CHACHA20_POLY1305_SHA256:                  sha256.New,
			tls.TLS_AES_256_GCM_SHA384:                        sha512.New384,
		}[st.CipherSuite]
		if newHash == nil {
			t.Fatalf("cipher suite %s not in the test's table", tls.CipherSuiteName(st.CipherSuite))
		}
		secrets := parseKeyLog(t, keylog.String())
		var want []byte
		if v == tls.VersionTLS12 {
			cr, sr := helloRandoms(t, o.packets)
			seed := append(append([]byte("client EAP encryption"), cr...), sr...)
			want = tls12PRF(newHash, secrets["CLIENT_RANDOM"], seed, 128)[:64]
		} else {
			km, err := st.ExportKeyingMaterial("EXPORTER_EAP_TLS_Key_Material", []byte{13}, 128)
			if err != nil {
				t.Fatal(err)
			}
			want = km[:64]
			old, _ := st.ExportKeyingMaterial("client EAP encryption", nil, 128)
			if bytes.Equal(p.MSK(), old[:64]) {
				t.Fatal("TLS 1.3 MSK is the pre-RFC 9190 derivation")
			}
		}
		if !bytes.Equal(p.MSK(), want) {
			t.Fatalf("%#x: MSK %x, recomputed %x", v, p.MSK(), want)
		}
	}
}

func parseKeyLog(t *testing.T, s string) map[string][]byte {
	m := map[string][]byte{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 {
			m[f[0]] = unhex(t, f[2])
		}
	}
	return m
}

// helloRandoms reads client.random and server.random from the first TLS
// record of the peer's and the server's first flights: record header (5),
// handshake header (4), version (2), then the 32-octet random.
func helloRandoms(t *testing.T, packets [][]byte) (client, server []byte) {
	var in [3][]byte // reassembled first flight per Code
	var closed [3]bool
	for _, b := range packets {
		pkt, _ := Parse(b)
		if pkt.Type != TypeTLS || closed[pkt.Code] {
			continue
		}
		tp, _ := parseTLSData(pkt.Data)
		in[pkt.Code] = append(in[pkt.Code], tp.data...)
		if len(tp.data) > 0 && tp.flags&tlsFlagMore == 0 {
			closed[pkt.Code] = true
		}
	}
	r, q := in[CodeResponse], in[CodeRequest]
	if len(r) < 43 || len(q) < 43 || r[0] != 22 || q[0] != 22 || r[5] != 1 || q[5] != 2 {
		t.Fatal("no ClientHello/ServerHello")
	}
	return r[11:43], q[11:43]
}

// tls12PRF is P_hash of RFC 5246 §5, the TLS 1.2 PRF.
func tls12PRF(h func() hash.Hash, secret, seed []byte, n int) []byte {
	var out []byte
	a := seed
	for len(out) < n {
		m := hmac.New(h, secret)
		m.Write(a)
		a = m.Sum(nil)
		m = hmac.New(h, secret)
		m.Write(a)
		m.Write(seed)
		out = m.Sum(out)
	}
	return out[:n]
}
