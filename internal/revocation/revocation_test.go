package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// eventually calls check until it returns nil, for a fetch under way.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func loadCRLs(t *testing.T, path string) []*x509.RevocationList {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crls, err := ParseCRLs(data)
	if err != nil {
		t.Fatal(err)
	}
	return crls
}

// RFC 5280 §6.3: a CRL the CA made with openssl, loaded from a file (PEM
// and DER, as remote.crls takes them), refuses the revoked certificate
// under every policy and passes the other under strict, with nothing
// fetched; a CRL of another CA says nothing, so strict then fails.
func TestCRLFromFile(t *testing.T) {
	p := newOpenSSLPKI(t, "http://127.0.0.1:1/ca.crl", "http://127.0.0.1:1/")
	good, bad := p.issue(t, "good", "leaf"), p.issue(t, "bad", "leaf")
	p.revoke(t, "bad")
	now := time.Now()
	for _, der := range []bool{false, true} {
		crls := loadCRLs(t, p.crl(t, der))
		for _, pol := range []Policy{Strict, IfURI, Relaxed} {
			c := &Checker{Policy: pol, CRLs: crls}
			if err := c.CheckRevocation([]*x509.Certificate{good, p.ca}, now); err != nil {
				t.Errorf("der %v %v: good refused: %v", der, pol, err)
			}
			err := c.CheckRevocation([]*x509.Certificate{bad, p.ca}, now)
			if err == nil || !strings.Contains(err.Error(), "revoked") {
				t.Errorf("der %v %v: revoked certificate: %v", der, pol, err)
			}
		}
	}
	other := newOpenSSLPKI(t, "http://127.0.0.1:1/ca.crl", "http://127.0.0.1:1/")
	c := &Checker{Policy: Strict, CRLs: loadCRLs(t, other.crl(t, false))}
	if err := c.CheckRevocation([]*x509.Certificate{good, p.ca}, now); err == nil {
		t.Error("strict passed with only another CA's CRL")
	}
	c.Policy = Relaxed
	if err := c.CheckRevocation([]*x509.Certificate{good, p.ca}, now); err != nil {
		t.Errorf("relaxed: %v", err)
	}
}

// The CRL at the certificates' distribution point, served over HTTP: the
// first check misses (not fetched yet) and asks the cache's fetchers,
// which never block the check; once fetched, the good certificate passes
// strict and the revoked one is refused. A CRL bigger than MaxCRLBytes is
// not read.
func TestCRLOverHTTP(t *testing.T) {
	var crlPath string
	big := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if big {
			w.Write(make([]byte, MaxCRLBytes+1))
			return
		}
		http.ServeFile(w, r, crlPath)
	}))
	defer srv.Close()
	p := newOpenSSLPKI(t, srv.URL+"/ca.crl", "http://127.0.0.1:1/")
	good, bad := p.issue(t, "good", "leafcrl"), p.issue(t, "bad", "leafcrl")
	p.revoke(t, "bad")
	crlPath = p.crl(t, true)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := NewCache(nil)
	go cache.Run(ctx)
	strict := &Checker{Policy: Strict, Cache: cache}
	if err := strict.CheckRevocation([]*x509.Certificate{good, p.ca}, time.Now()); err == nil || !strings.Contains(err.Error(), "not fetched yet") {
		t.Fatalf("first check: %v", err)
	}
	eventually(t, "good certificate", func() error { return strict.CheckRevocation([]*x509.Certificate{good, p.ca}, time.Now()) })
	relaxed := &Checker{Policy: Relaxed, Cache: cache}
	if err := relaxed.CheckRevocation([]*x509.Certificate{bad, p.ca}, time.Now()); err == nil || !strings.Contains(err.Error(), "is revoked (CRL "+srv.URL) {
		t.Fatalf("revoked certificate: %v", err)
	}

	big = true
	cache2 := NewCache(nil)
	go cache2.Run(ctx)
	strict.Cache = cache2
	eventually(t, "oversized CRL", func() error {
		err := strict.CheckRevocation([]*x509.Certificate{good, p.ca}, time.Now())
		if err != nil && strings.Contains(err.Error(), "more than") {
			return nil
		}
		return err
	})
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startResponder runs `openssl ocsp` on port, answering from the CA's
// index.txt, signed by a delegated responder certificate.
func startResponder(t *testing.T, p *opensslPKI, port int) *exec.Cmd {
	cmd := exec.Command("openssl", "ocsp", "-index", "index.txt", "-port", strconv.Itoa(port),
		"-rsigner", "responder.crt", "-rkey", "responder.key", "-CA", "ca.crt", "-nmin", "10", "-ignore_err")
	cmd.Dir = p.dir
	log, err := os.Create(filepath.Join(p.dir, "ocsp.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Not probed by connecting: openssl ocsp serves one connection at a
	// time and would wait on the probe's.
	eventually(t, "openssl ocsp listening", func() error {
		data, _ := os.ReadFile(log.Name())
		if !strings.Contains(string(data), "waiting for OCSP client connections") {
			return errors.New("not yet")
		}
		return nil
	})
	return cmd
}

// RFC 6960: OCSP to the responder in the certificates' AIA, `openssl
// ocsp` signing with a delegated responder certificate: good accepted
// under strict, revoked refused; with the responder down, strict and
// ifuri fail and relaxed passes. A responder certificate without
// id-kp-OCSPSigning is not believed.
func TestOCSP(t *testing.T) {
	needOpenSSL(t)
	port := freePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	p := newOpenSSLPKI(t, "http://127.0.0.1:1/ca.crl", url)
	p.issue(t, "responder", "responder")
	good, bad := p.issue(t, "good", "leaf"), p.issue(t, "bad", "leaf")
	lost := p.issue(t, "lost", "leafcrl") // names no OCSP responder
	p.revoke(t, "bad")
	resp := startResponder(t, p, port)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := NewCache(nil)
	go cache.Run(ctx)
	strict := &Checker{Policy: Strict, Cache: cache}
	eventually(t, "good certificate", func() error { return strict.CheckRevocation([]*x509.Certificate{good, p.ca}, time.Now()) })
	relaxed := &Checker{Policy: Relaxed, Cache: cache}
	eventually(t, "revoked certificate", func() error {
		err := relaxed.CheckRevocation([]*x509.Certificate{bad, p.ca}, time.Now())
		if err != nil && strings.Contains(err.Error(), "is revoked (OCSP "+url) {
			return nil
		}
		return err
	})

	// ocsp_uri overrides the AIA: a certificate naming a dead responder
	// is checked at the live one.
	override := &Checker{Policy: Strict, Cache: cache, OCSPURI: url}
	eventually(t, "ocsp_uri", func() error { return override.CheckRevocation([]*x509.Certificate{lost, p.ca}, time.Now()) })

	resp.Process.Kill()
	resp.Wait()
	down := NewCache(nil)
	go down.Run(ctx)
	chain := []*x509.Certificate{good, p.ca}
	for _, pol := range []Policy{Strict, IfURI} {
		c := &Checker{Policy: pol, Cache: down}
		eventually(t, pol.String()+" with the responder down", func() error {
			err := c.CheckRevocation(chain, time.Now())
			if err != nil && strings.Contains(err.Error(), "connection refused") {
				return nil
			}
			return err
		})
	}
	if err := (&Checker{Policy: Relaxed, Cache: down}).CheckRevocation(chain, time.Now()); err != nil {
		t.Errorf("relaxed with the responder down: %v", err)
	}
}

// A response signed by a certificate of the CA that is no OCSP
// responder (RFC 6960 §4.2.2.2): the sibling could otherwise vouch for
// a revoked certificate.
func TestOCSPResponderWithoutEKU(t *testing.T) {
	needOpenSSL(t)
	port := freePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	p := newOpenSSLPKI(t, "http://127.0.0.1:1/ca.crl", url)
	p.issue(t, "responder", "leaf") // an ordinary end entity
	good := p.issue(t, "good", "leaf")
	startResponder(t, p, port)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := NewCache(nil)
	go cache.Run(ctx)
	c := &Checker{Policy: Strict, Cache: cache}
	eventually(t, "responder without EKU", func() error {
		err := c.CheckRevocation([]*x509.Certificate{good, p.ca}, time.Now())
		if err != nil && strings.Contains(err.Error(), "id-kp-OCSPSigning") {
			return nil
		}
		if err == nil {
			t.Fatal("a response signed by a non-responder certificate was believed")
		}
		return err
	})
}
