package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Defaults of a Cache.
const (
	// FetchTimeout bounds one fetch, connect to last octet.
	FetchTimeout = 10 * time.Second
	// RetryAfter is how long a failed fetch is not tried again, so a
	// peer retrying fast does not make us hammer a dead responder.
	RetryAfter = 30 * time.Second
	// OCSPTTL is how long a response without nextUpdate is used
	// (RFC 6960 §4.2.2.1: newer information is then always available).
	OCSPTTL = 5 * time.Minute
	// refreshBefore: a CRL or response this close to its nextUpdate is
	// fetched again while the old one is still used.
	refreshBefore = 5 * time.Minute
	maxEntries    = 4096 // per kind; beyond, the oldest half goes
	queueLen      = 64
	workers       = 2
)

// Cache holds fetched CRLs (by distribution point) and OCSP responses
// (by issuer and serial), and fetches on request in Run's goroutines.
// Every method is safe for concurrent use.
type Cache struct {
	Client *http.Client
	Log    *slog.Logger

	mu       sync.Mutex
	crls     map[string]*crlEntry
	ocsps    map[string]*ocspEntry
	failed   map[string]failure // by job key
	inflight map[string]bool
	queue    chan job
}

type crlEntry struct {
	crl *x509.RevocationList
}

type ocspEntry struct {
	st         status
	nextUpdate time.Time // fetched+OCSPTTL without one
}

type failure struct {
	err error
	at  time.Time
}

type job struct {
	key          string
	url          string
	ocsp         bool
	cert, issuer *x509.Certificate
}

// NewCache makes a cache whose fetches go through an http.Client with
// FetchTimeout and at most three redirects.
func NewCache(log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{
		Client: &http.Client{Timeout: FetchTimeout, CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			return nil
		}},
		Log: log, crls: map[string]*crlEntry{}, ocsps: map[string]*ocspEntry{},
		failed: map[string]failure{}, inflight: map[string]bool{}, queue: make(chan job, queueLen),
	}
}

// Run fetches what checks asked for until ctx ends.
func (c *Cache) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-c.queue:
					c.do(ctx, j)
				}
			}
		})
	}
	wg.Wait()
}

func ocspKey(cert, issuer *x509.Certificate) string {
	h := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("ocsp %x %s", h[:8], cert.SerialNumber)
}

// lookup is what the cache knows of cert; on a miss (or close to
// expiry) it asks for a fetch without waiting.
func (c *Cache) lookup(cert, issuer *x509.Certificate, ocspURI string, cdps []string, now time.Time) (status, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var why []string
	if ocspURI != "" {
		k := ocspKey(cert, issuer)
		e := c.ocsps[k]
		if e == nil || now.After(e.nextUpdate.Add(-refreshBefore)) {
			c.want(job{key: k, url: ocspURI, ocsp: true, cert: cert, issuer: issuer})
		}
		switch {
		case e != nil && !now.After(e.nextUpdate.Add(Skew)) && e.st != unknown:
			return e.st, "OCSP " + ocspURI
		case e != nil && !now.After(e.nextUpdate.Add(Skew)):
			why = append(why, "OCSP responder "+ocspURI+" says unknown")
		default:
			why = append(why, c.missWhy(k, "OCSP "+ocspURI))
		}
	}
	for _, u := range cdps {
		k := "crl " + u
		e := c.crls[k]
		if e == nil || !e.crl.NextUpdate.IsZero() && now.After(e.crl.NextUpdate.Add(-refreshBefore)) {
			c.want(job{key: k, url: u, cert: cert, issuer: issuer})
		}
		if e != nil {
			if st, ok := crlStatus(e.crl, cert, issuer, now); ok {
				return st, "CRL " + u
			}
			why = append(why, "CRL "+u+" is not current or not the issuer's")
			continue
		}
		why = append(why, c.missWhy(k, "CRL "+u))
	}
	return unknown, joinWhy(why)
}

func joinWhy(w []string) string {
	var b bytes.Buffer
	for i, s := range w {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s)
	}
	return b.String()
}

func (c *Cache) missWhy(k, what string) string {
	if f, ok := c.failed[k]; ok {
		return what + ": " + f.err.Error()
	}
	return what + " not fetched yet"
}

// want queues j unless it is under way, failed within RetryAfter, or the
// queue is full (the next check asks again). Called with mu held.
func (c *Cache) want(j job) {
	if c.inflight[j.key] {
		return
	}
	if f, ok := c.failed[j.key]; ok && time.Since(f.at) < RetryAfter {
		return
	}
	select {
	case c.queue <- j:
		c.inflight[j.key] = true
	default:
	}
}

func (c *Cache) do(ctx context.Context, j job) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	var err error
	if j.ocsp {
		err = c.fetchOCSP(ctx, j)
	} else {
		err = c.fetchCRL(ctx, j)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, j.key)
	if err != nil {
		c.failed[j.key] = failure{err: err, at: time.Now()}
		c.Log.Warn("revocation: fetch failed", "url", j.url, "err", err)
		return
	}
	delete(c.failed, j.key)
	if len(c.failed) > maxEntries {
		clear(c.failed)
	}
}

// get fetches url (POSTing body when not nil), at most max octets.
func (c *Cache) get(ctx context.Context, url string, body []byte, max int64) ([]byte, error) {
	method, rd := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("more than %d octets", max)
	}
	return data, nil
}

func (c *Cache) fetchCRL(ctx context.Context, j job) error {
	data, err := c.get(ctx, j.url, nil, MaxCRLBytes)
	if err != nil {
		return err
	}
	crls, err := ParseCRLs(data)
	if err != nil {
		return err
	}
	crl := crls[0]
	// Only a CRL that verifies is kept: a distribution point is plain
	// HTTP, and RFC 5280 §5 makes the signature the CRL's protection.
	if !bytes.Equal(crl.RawIssuer, j.issuer.RawSubject) {
		return errors.New("the CRL is not issued by the certificate's CA")
	}
	if err := crl.CheckSignatureFrom(j.issuer); err != nil {
		return fmt.Errorf("the CRL's signature: %w", err)
	}
	now := time.Now()
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate.Add(Skew)) {
		return fmt.Errorf("the CRL's nextUpdate %s has passed", crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.crls) >= maxEntries {
		clear(c.crls)
	}
	c.crls["crl "+j.url] = &crlEntry{crl: crl}
	return nil
}

func (c *Cache) fetchOCSP(ctx context.Context, j job) error {
	// x/crypto/ocsp makes no nonce extension (RFC 8954), so freshness
	// rests on thisUpdate/nextUpdate, as with most responders, which
	// pre-sign their responses anyway.
	req, err := ocsp.CreateRequest(j.cert, j.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return err
	}
	data, err := c.get(ctx, j.url, req, MaxOCSPBytes)
	if err != nil {
		return err
	}
	// ParseResponseForCert checks the response is about this serial and
	// signed by the issuer, or by a responder certificate the issuer
	// signed for OCSP signing (RFC 6960 §4.2.2.2).
	resp, err := ocsp.ParseResponseForCert(data, j.cert, j.issuer)
	if err != nil {
		return fmt.Errorf("OCSP response: %w", err)
	}
	now := time.Now()
	if err := delegatedResponder(resp.Certificate, j.issuer, now); err != nil {
		return err
	}
	if resp.ThisUpdate.After(now.Add(Skew)) {
		return fmt.Errorf("OCSP response from the future (thisUpdate %s)", resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	next := resp.NextUpdate
	if next.IsZero() {
		next = now.Add(OCSPTTL)
	} else if now.After(next.Add(Skew)) {
		return fmt.Errorf("stale OCSP response (nextUpdate %s)", next.UTC().Format(time.RFC3339))
	}
	st := unknown
	switch resp.Status {
	case ocsp.Good:
		st = good
	case ocsp.Revoked:
		st = revoked
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ocsps) >= maxEntries {
		clear(c.ocsps)
	}
	c.ocsps[j.key] = &ocspEntry{st: st, nextUpdate: next}
	return nil
}

// delegatedResponder checks what x/crypto/ocsp leaves out of RFC 6960
// §4.2.2.2: a responder certificate other than the CA itself (which
// ParseResponseForCert found signed by the CA) must carry
// id-kp-OCSPSigning, and be valid now; otherwise any certificate the CA
// issued could answer for its siblings.
func delegatedResponder(rc, issuer *x509.Certificate, now time.Time) error {
	if rc == nil || rc.Equal(issuer) {
		return nil
	}
	if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return fmt.Errorf("OCSP responder certificate %q lacks id-kp-OCSPSigning (RFC 6960 §4.2.2.2)", rc.Subject)
	}
	if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
		return fmt.Errorf("OCSP responder certificate %q is not valid now", rc.Subject)
	}
	return nil
}
