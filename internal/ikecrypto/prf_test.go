package ikecrypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// TestPRFRFC4231 runs RFC 4231 §4 Test Cases 1-7 through PRF.Sum. Test
// Case 5 prints the output truncated to 128 bits, so only a prefix is
// compared there.
func TestPRFRFC4231(t *testing.T) {
	for _, tc := range rfc4231Cases {
		for _, v := range []struct {
			id   wire.PRFID
			want string
		}{
			{wire.PRFHMACSHA2256, tc.sha256},
			{wire.PRFHMACSHA2384, tc.sha384},
			{wire.PRFHMACSHA2512, tc.sha512},
		} {
			p, err := NewPRF(v.id)
			if err != nil {
				t.Fatal(err)
			}
			want := unhex(t, v.want)
			if tc.n != 5 && len(want) != p.Size() {
				t.Fatalf("case %d %v: vector is %d octets, Size %d", tc.n, v.id, len(want), p.Size())
			}
			got := p.Sum(unhex(t, tc.key), unhex(t, tc.data))
			if !bytes.Equal(got[:len(want)], want) {
				t.Errorf("RFC 4231 case %d %v:\n got %x\nwant %x", tc.n, v.id, got, want)
			}
		}
	}
}

// TestIntegRFC4868 checks the RFC 4868 §2.7.2 authenticator vectors: the
// full HMAC with an integrity-length key, its truncation to ICVLen, and the
// same value through the PRF.
func TestIntegRFC4868(t *testing.T) {
	ids := map[string]struct {
		integ wire.IntegID
		prf   wire.PRFID
	}{
		"AUTH256": {wire.IntegHMACSHA2256128, wire.PRFHMACSHA2256},
		"AUTH384": {wire.IntegHMACSHA2384192, wire.PRFHMACSHA2384},
		"AUTH512": {wire.IntegHMACSHA2512256, wire.PRFHMACSHA2512},
	}
	for _, tc := range rfc4868AuthCases {
		id := ids[tc.name[:7]]
		a, err := LookupInteg(id.integ)
		if err != nil {
			t.Fatal(err)
		}
		key := unhex(t, tc.key)
		if len(key) != a.KeyLen {
			t.Fatalf("%s: key is %d octets, KeyLen %d", tc.name, len(key), a.KeyLen)
		}
		m := a.New(key)
		m.Write(unhex(t, tc.data))
		full := m.Sum(nil)
		if want := unhex(t, tc.prf); !bytes.Equal(full, want) {
			t.Errorf("%s full HMAC:\n got %x\nwant %x", tc.name, full, want)
		}
		if want := unhex(t, tc.truncated); len(want) != a.ICVLen || !bytes.Equal(full[:a.ICVLen], want) {
			t.Errorf("%s ICV (%d octets):\n got %x\nwant %x", tc.name, a.ICVLen, full[:a.ICVLen], want)
		}
		p, _ := NewPRF(id.prf)
		if got := p.Sum(key, unhex(t, tc.data)); !bytes.Equal(got, full) {
			t.Errorf("%s PRF differs from integrity HMAC", tc.name)
		}
	}
}

func TestLookupIntegSizes(t *testing.T) {
	// RFC 2404 §2-3 and RFC 4868 §2.6: key and ICV lengths in octets.
	for _, tc := range []struct {
		id          wire.IntegID
		key, icvLen int
	}{
		{wire.IntegHMACSHA196, 20, 12},
		{wire.IntegHMACSHA2256128, 32, 16},
		{wire.IntegHMACSHA2384192, 48, 24},
		{wire.IntegHMACSHA2512256, 64, 32},
	} {
		a, err := LookupInteg(tc.id)
		if err != nil || a.KeyLen != tc.key || a.ICVLen != tc.icvLen {
			t.Errorf("LookupInteg(%v) = %+v, %v; want key %d icv %d", tc.id, a, err, tc.key, tc.icvLen)
		}
	}
	for _, id := range []wire.IntegID{wire.IntegNone, wire.IntegHMACMD596, wire.IntegAESXCBC96} {
		if _, err := LookupInteg(id); err == nil || !strings.Contains(err.Error(), id.String()) {
			t.Errorf("LookupInteg(%v) error = %v, want one naming it", id, err)
		}
	}
}

func TestNewPRFUnsupported(t *testing.T) {
	for _, id := range []wire.PRFID{wire.PRFHMACMD5, wire.PRFAES128XCBC, wire.PRFAES128CMAC, 99} {
		if _, err := NewPRF(id); err == nil || !strings.Contains(err.Error(), id.String()) {
			t.Errorf("NewPRF(%v) error = %v, want one naming the ID", id, err)
		}
	}
}

func TestPRFSumConcatenates(t *testing.T) {
	p, _ := NewPRF(wire.PRFHMACSHA2256)
	key := []byte("key")
	if !bytes.Equal(p.Sum(key, []byte("ab"), nil, []byte("cd")), p.Sum(key, []byte("abcd"))) {
		t.Error("Sum(key, a, b) != Sum(key, a|b)")
	}
}

// TestPRFPlusConstruction rebuilds the first three prf+ blocks by hand from
// RFC 7296 §2.13 and checks the output is cut at n, not at a block edge.
func TestPRFPlusConstruction(t *testing.T) {
	p, _ := NewPRF(wire.PRFHMACSHA2256)
	key, seed := []byte("K"), []byte("seed")
	mac := func(parts ...[]byte) []byte {
		m := hmac.New(sha256.New, key)
		for _, b := range parts {
			m.Write(b)
		}
		return m.Sum(nil)
	}
	t1 := mac(seed, []byte{1})
	t2 := mac(t1, seed, []byte{2})
	t3 := mac(t2, seed, []byte{3})
	want := append(append(append([]byte{}, t1...), t2...), t3...)[:70]
	got, err := p.Plus(key, seed, 70)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Plus = %x, %v\nwant %x", got, err, want)
	}
	if cap(got) != len(got) {
		t.Errorf("Plus result has spare capacity %d", cap(got)-len(got))
	}
}

func TestPRFPlusLimits(t *testing.T) {
	for _, id := range []wire.PRFID{wire.PRFHMACSHA1, wire.PRFHMACSHA2256, wire.PRFHMACSHA2384, wire.PRFHMACSHA2512} {
		p, _ := NewPRF(id)
		// §2.13: prf+ is not defined beyond 255 blocks.
		if out, err := p.Plus([]byte("k"), []byte("s"), 255*p.Size()); err != nil || len(out) != 255*p.Size() {
			t.Errorf("%v: Plus(255 blocks) = %d octets, %v", id, len(out), err)
		}
		if _, err := p.Plus([]byte("k"), []byte("s"), 255*p.Size()+1); err == nil {
			t.Errorf("%v: Plus beyond 255 blocks succeeded", id)
		}
		if _, err := p.Plus([]byte("k"), []byte("s"), -1); err == nil {
			t.Errorf("%v: Plus(-1) succeeded", id)
		}
		if out, err := p.Plus([]byte("k"), []byte("s"), 0); err != nil || len(out) != 0 {
			t.Errorf("%v: Plus(0) = %x, %v", id, out, err)
		}
	}
}
