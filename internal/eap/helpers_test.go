package eap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// seeded is a deterministic random source.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return mrand.NewChaCha8(s)
}

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return testNow }

// pki is a CA with a server and a client certificate.
type pki struct {
	roots  *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mifike test CA"},
		NotBefore:             testNow.Add(-time.Hour),
		NotAfter:              testNow.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			DNSNames:     []string{name},
			NotBefore:    testNow.Add(-time.Hour),
			NotAfter:     testNow.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
	}
	p := &pki{roots: x509.NewCertPool()}
	p.roots.AddCert(ca)
	p.server = leaf(2, "radius.example", x509.ExtKeyUsageServerAuth)
	p.client = leaf(3, "alice.example", x509.ExtKeyUsageClientAuth)
	return p
}

// outcome is how a conversation between a Peer and a Server ended.
type outcome struct {
	rounds    int
	peerErr   error
	serverErr error
	serverMSK []byte
	done      bool // the server decided
	// packets is every packet exchanged, in order.
	packets [][]byte
}

// converse runs peer and server against each other until the server
// decides or either fails; each request is optionally passed to hook,
// which may return extra copies to deliver (retransmissions).
func converse(t testing.TB, p *Peer, s *Server, hook func(round int, req []byte) [][]byte) outcome {
	t.Helper()
	var o outcome
	req, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	for o.rounds = 0; o.rounds < 200; o.rounds++ {
		o.packets = append(o.packets, req)
		deliveries := [][]byte{req}
		if hook != nil {
			deliveries = append(deliveries, hook(o.rounds, req)...)
		}
		var resp []byte
		for i, d := range deliveries {
			r, err := p.Handle(d)
			if i == 0 {
				resp, o.peerErr = r, err
			} else if !bytesEqual(r, resp) || err != o.peerErr {
				t.Fatalf("round %d: retransmitted request answered %x, %v; first %x, %v", o.rounds, r, err, resp, o.peerErr)
			}
		}
		if resp == nil {
			return o
		}
		o.packets = append(o.packets, resp)
		var done bool
		req, done, o.serverMSK, o.serverErr = s.Handle(resp)
		if done {
			o.done = true
			// Deliver Success or Failure to the peer.
			o.packets = append(o.packets, req)
			_, o.peerErr = p.Handle(req)
			return o
		}
		if o.serverErr != nil {
			return o
		}
	}
	t.Fatal("no decision after 200 rounds")
	return o
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func newTestServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Rand == nil {
		cfg.Rand = seeded(1)
	}
	if cfg.Now == nil {
		cfg.Now = clock
	}
	if cfg.Users == nil {
		cfg.Users = map[string][]byte{"alice": []byte("correct horse")}
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTestPeer(t testing.TB, cfg PeerConfig) *Peer {
	t.Helper()
	if cfg.Rand == nil {
		cfg.Rand = seeded(2)
	}
	if cfg.Now == nil {
		cfg.Now = clock
	}
	if cfg.Identity == nil {
		cfg.Identity = []byte("alice")
	}
	p, err := NewPeer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
