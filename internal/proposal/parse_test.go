package proposal

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

var (
	cbc128 = Algorithm{wire.EncrAESCBC, 128}
	cbc192 = Algorithm{wire.EncrAESCBC, 192}
	cbc256 = Algorithm{wire.EncrAESCBC, 256}
	gcm128 = Algorithm{wire.EncrAESGCM16, 128}
	gcm256 = Algorithm{wire.EncrAESGCM16, 256}
	chacha = Algorithm{wire.EncrChaCha20Poly1305, 0}
)

func ike(encr []Algorithm, integ []wire.IntegID, prf []wire.PRFID, dh ...wire.DHGroup) Proposal {
	return Proposal{Protocol: wire.ProtoIKE, Encr: encr, Integ: integ, PRF: prf, DH: dh}
}

func esp(encr []Algorithm, integ []wire.IntegID, dh []wire.DHGroup, esn ...wire.ESNID) Proposal {
	if len(esn) == 0 {
		esn = []wire.ESNID{wire.ESNNo}
	}
	return Proposal{Protocol: wire.ProtoESP, Encr: encr, Integ: integ, DH: dh, ESN: esn}
}

func encrs(a ...Algorithm) []Algorithm        { return a }
func integs(i ...wire.IntegID) []wire.IntegID { return i }
func prfs(p ...wire.PRFID) []wire.PRFID       { return p }
func groups(g ...wire.DHGroup) []wire.DHGroup { return g }

// TestParseIKE covers strongSwan's notation and its completion rules: the
// PRF follows the integrity algorithm unless given, AEAD takes no
// integrity algorithm (RFC 7296 §3.3, §3.3.3).
func TestParseIKE(t *testing.T) {
	tests := []struct {
		in   string
		want []Proposal
	}{
		{"aes128gcm16-prfsha256-x25519", []Proposal{ike(encrs(gcm128), nil, prfs(wire.PRFHMACSHA2256), wire.DHCurve25519)}},
		{"aes128-sha256-modp2048", []Proposal{ike(encrs(cbc128), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2256), wire.DHMODP2048)}},
		{"aes256gcm16-prfsha384-ecp384", []Proposal{ike(encrs(gcm256), nil, prfs(wire.PRFHMACSHA2384), wire.DHECP384)}},
		{"aes128-aes256-sha256-sha384-modp2048-ecp256", []Proposal{ike(encrs(cbc128, cbc256),
			integs(wire.IntegHMACSHA2256128, wire.IntegHMACSHA2384192), prfs(wire.PRFHMACSHA2256, wire.PRFHMACSHA2384), wire.DHMODP2048, wire.DHECP256)}},
		{"aes-sha1-modp2048", []Proposal{ike(encrs(cbc128), integs(wire.IntegHMACSHA196), prfs(wire.PRFHMACSHA1), wire.DHMODP2048)}},
		{" AES128GCM-PRFSHA256-curve25519 ", []Proposal{ike(encrs(gcm128), nil, prfs(wire.PRFHMACSHA2256), wire.DHCurve25519)}},
		{"aes128gcm128-prfsha256-x25519", []Proposal{ike(encrs(gcm128), nil, prfs(wire.PRFHMACSHA2256), wire.DHCurve25519)}},
		{"aes256gcm12-aes128gcm8-aes192gcm96-prfsha512-ecp521", []Proposal{ike(encrs(Algorithm{wire.EncrAESGCM12, 256},
			Algorithm{wire.EncrAESGCM8, 128}, Algorithm{wire.EncrAESGCM12, 192}), nil, prfs(wire.PRFHMACSHA2512), wire.DHECP521)}},
		{"chacha20poly1305-prfsha256-x25519", []Proposal{ike(encrs(chacha), nil, prfs(wire.PRFHMACSHA2256), wire.DHCurve25519)}},
		// strongSwan derives the PRF from sha384 and drops the integrity
		// algorithm, which AEAD does not negotiate.
		{"aes256gcm16-sha384-ecp384", []Proposal{ike(encrs(gcm256), nil, prfs(wire.PRFHMACSHA2384), wire.DHECP384)}},
		{"aes128-sha256-prfsha512-x25519", []Proposal{ike(encrs(cbc128), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2512), wire.DHCurve25519)}},
		{"aes128-aes128-sha2_256-sha256-x25519-x25519", []Proposal{ike(encrs(cbc128), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2256), wire.DHCurve25519)}},
		{"aes192-sha512-modp3072-modp4096", []Proposal{ike(encrs(cbc192), integs(wire.IntegHMACSHA2512256), prfs(wire.PRFHMACSHA2512), wire.DHMODP3072, wire.DHMODP4096)}},
		// Mixed AEAD and CBC splits in two, the kind of the first cipher first (RFC 7296 §2.7).
		{"aes128-aes128gcm16-sha256-x25519", []Proposal{
			ike(encrs(cbc128), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2256), wire.DHCurve25519),
			ike(encrs(gcm128), nil, prfs(wire.PRFHMACSHA2256), wire.DHCurve25519)}},
		{"aes128gcm16-aes256-chacha20poly1305-sha384-prfsha256-ecp256", []Proposal{
			ike(encrs(gcm128, chacha), nil, prfs(wire.PRFHMACSHA2256), wire.DHECP256),
			ike(encrs(cbc256), integs(wire.IntegHMACSHA2384192), prfs(wire.PRFHMACSHA2256), wire.DHECP256)}},
	}
	for _, tt := range tests {
		got, err := ParseIKE(tt.in)
		if err != nil {
			t.Errorf("ParseIKE(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseIKE(%q) =\n %+v\nwant\n %+v", tt.in, got, tt.want)
		}
		for _, p := range got {
			if err := p.Validate(); err != nil {
				t.Errorf("ParseIKE(%q) gave invalid %v: %v", tt.in, p, err)
			}
		}
	}
}

func TestParseESP(t *testing.T) {
	tests := []struct {
		in   string
		want []Proposal
	}{
		{"aes128gcm16", []Proposal{esp(encrs(gcm128), nil, nil)}},
		{"aes128-sha256", []Proposal{esp(encrs(cbc128), integs(wire.IntegHMACSHA2256128), nil)}},
		{"aes256gcm16-x25519", []Proposal{esp(encrs(gcm256), nil, groups(wire.DHCurve25519))}},
		{"chacha20poly1305-esn", []Proposal{esp(encrs(chacha), nil, nil, wire.ESNYes)}},
		{"aes128gcm16-esn-noesn", []Proposal{esp(encrs(gcm128), nil, nil, wire.ESNYes, wire.ESNNo)}},
		{"aes128gcm16-noesn", []Proposal{esp(encrs(gcm128), nil, nil)}},
		{"aes128gcm16-sha256", []Proposal{esp(encrs(gcm128), nil, nil)}},
		{"aes128gcm16-aes256-sha512-modp2048", []Proposal{
			esp(encrs(gcm128), nil, groups(wire.DHMODP2048)),
			esp(encrs(cbc256), integs(wire.IntegHMACSHA2512256), groups(wire.DHMODP2048))}},
	}
	for _, tt := range tests {
		got, err := ParseESP(tt.in)
		if err != nil {
			t.Errorf("ParseESP(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseESP(%q) =\n %+v\nwant\n %+v", tt.in, got, tt.want)
		}
	}
}

// TestParseErrors: every error names the offending token or the missing
// piece, and unknown keywords list what is allowed.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		proto wire.ProtocolID
		in    string
		want  []string
	}{
		{wire.ProtoIKE, "aes128gcm16-x25519", []string{"prf keyword", "prfsha256"}},
		{wire.ProtoIKE, "aes128-x25519", []string{"aes128", "integrity", "sha256"}},
		{wire.ProtoIKE, "aes128-sha256", []string{"key exchange group", "x25519"}},
		{wire.ProtoIKE, "sha256-x25519", []string{"no encryption", "aes128gcm16"}},
		{wire.ProtoIKE, "aes128-sha256-modp1024", []string{`"modp1024"`, "not supported", "modp2048"}},
		{wire.ProtoIKE, "3des-sha1-modp2048", []string{`"3des"`, "not supported"}},
		{wire.ProtoIKE, "aes128ctr-sha256-x25519", []string{`"aes128ctr"`, "AES-CTR"}},
		{wire.ProtoIKE, "aes128-sha256-foo", []string{`unknown keyword "foo"`, "encryption: aes128", "dh: x25519", "prf: prfsha256"}},
		{wire.ProtoIKE, "aes128--sha256-x25519", []string{"empty keyword"}},
		{wire.ProtoIKE, "aes128-sha256-x25519-", []string{"empty keyword"}},
		{wire.ProtoIKE, "aes128-sha256-x25519-esn", []string{`"esn"`, "only ESP"}},
		{wire.ProtoIKE, "", []string{"empty"}},
		{wire.ProtoIKE, "aes128-sha256-x25519,aes256", []string{"','"}},
		{wire.ProtoESP, "aes128", []string{"aes128", "integrity", "RFC 8221"}},
		{wire.ProtoESP, "aes128gcm16-prfsha256", []string{`"prfsha256"`, "only IKE"}},
		{wire.ProtoESP, "bogus", []string{`"bogus"`, "esn: noesn esn"}},
		{wire.ProtoESP, "aes128gcm16-ecp224", []string{`"ecp224"`, "not supported"}},
	}
	for _, tt := range tests {
		var err error
		if tt.proto == wire.ProtoIKE {
			_, err = ParseIKE(tt.in)
		} else {
			_, err = ParseESP(tt.in)
		}
		if err == nil {
			t.Errorf("%v %q: no error", tt.proto, tt.in)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %q: error %q does not mention %q", tt.proto, tt.in, err, w)
			}
		}
	}
}

func TestParseLists(t *testing.T) {
	got, err := ParseIKEList("aes128-sha256-x25519, aes256gcm16-prfsha384-ecp384")
	if err != nil {
		t.Fatal(err)
	}
	want := []Proposal{
		ike(encrs(cbc128), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2256), wire.DHCurve25519),
		ike(encrs(gcm256), nil, prfs(wire.PRFHMACSHA2384), wire.DHECP384),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseIKEList = %v, want %v", got, want)
	}

	for _, c := range []struct {
		parse func(string) ([]Proposal, error)
		list  func(string) ([]Proposal, error)
		def   string
	}{{ParseIKE, ParseIKEList, DefaultIKE}, {ParseESP, ParseESPList, DefaultESP}} {
		d1, err1 := c.parse("default")
		d2, err2 := c.list("default")
		d3, err3 := c.list(c.def)
		d4, err4 := c.list("aes128gcm16-prfsha256-x25519,default")
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("default: %v %v %v", err1, err2, err3)
		}
		if !reflect.DeepEqual(d1, d3) || !reflect.DeepEqual(d2, d3) || len(d3) < 3 {
			t.Errorf("default gives %v / %v, want %v", d1, d2, d3)
		}
		for _, p := range d3 {
			if err := p.Validate(); err != nil {
				t.Errorf("default proposal %v: %v", p, err)
			}
		}
		if c.def == DefaultIKE && (err4 != nil || len(d4) != len(d3)+1) {
			t.Errorf("list with default: %v, %v", d4, err4)
		}
	}

	if _, err := ParseESPList("aes128gcm16,,aes128-sha256"); err == nil || !strings.Contains(err.Error(), "position 2") {
		t.Errorf("empty entry: %v", err)
	}
	if _, err := ParseIKEList("  "); err == nil {
		t.Error("empty list accepted")
	}
	if _, err := ParseESPList("aes128gcm16,aes128-md5"); err == nil || !strings.Contains(err.Error(), `"md5"`) {
		t.Errorf("bad entry: %v", err)
	}
	many := strings.TrimSuffix(strings.Repeat("aes128gcm16,", 256), ",")
	if _, err := ParseESPList(many); err == nil || !strings.Contains(err.Error(), "255") {
		t.Errorf("256 proposals: %v", err)
	}
}

// TestStringRoundTrip: String prints canonical keywords and parses back to
// the same proposal.
func TestStringRoundTrip(t *testing.T) {
	canon := []struct {
		parse    func(string) ([]Proposal, error)
		in, want string
	}{
		{ParseIKE, "aes-sha2_256-curve25519", "aes128-sha256-prfsha256-x25519"},
		{ParseIKE, "aes128gcm-prfsha256-x25519", "aes128gcm16-prfsha256-x25519"},
		{ParseIKE, "aes256gcm64-sha384-ecp384", "aes256gcm8-prfsha384-ecp384"},
		{ParseIKE, "aes128-sha1-prfsha1-modp4096", "aes128-sha1-prfsha1-modp4096"},
		{ParseIKE, "aes192gcm128-prfsha512-ecp521", "aes192gcm16-prfsha512-ecp521"},
		{ParseESP, "aes128gcm16-sha256", "aes128gcm16"},
		{ParseESP, "chacha20poly1305-noesn-esn", "chacha20poly1305-noesn-esn"},
		{ParseESP, "aes256-sha2_512-x25519-noesn", "aes256-sha512-x25519"},
		{ParseESP, "aes128gcm16-esn", "aes128gcm16-esn"},
	}
	for _, c := range canon {
		ps, err := c.parse(c.in)
		if err != nil || len(ps) != 1 {
			t.Errorf("%q: %v %v", c.in, ps, err)
			continue
		}
		if got := ps[0].String(); got != c.want {
			t.Errorf("%q prints as %q, want %q", c.in, got, c.want)
		}
		back, err := c.parse(ps[0].String())
		if err != nil || !reflect.DeepEqual(back, ps) {
			t.Errorf("%q: round trip gave %v, %v", c.in, back, err)
		}
	}
	all, _ := ParseIKEList(DefaultIKE + ",aes128-aes192-aes256-sha1-sha256-sha384-sha512-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521-x25519")
	esps, _ := ParseESPList(DefaultESP + ",aes128gcm12-aes256gcm8-esn-noesn-ecp256")
	for _, p := range append(all, esps...) {
		parse := ParseIKE
		if p.Protocol == wire.ProtoESP {
			parse = ParseESP
		}
		back, err := parse(p.String())
		if err != nil || !reflect.DeepEqual(back, []Proposal{p}) {
			t.Errorf("%v: round trip gave %v, %v", p, back, err)
		}
	}
}

func TestValidate(t *testing.T) {
	bad := []struct {
		p    Proposal
		want string
	}{
		{Proposal{Protocol: wire.ProtoAH, Encr: encrs(gcm128)}, "protocol"},
		{ike(encrs(gcm128, cbc128), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2256), wire.DHCurve25519), "mixes AEAD"},
		{ike(encrs(Algorithm{wire.EncrAESCTR, 128}), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2256), wire.DHCurve25519), "not supported"},
		{ike(encrs(Algorithm{wire.EncrAESCBC, 100}), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2256), wire.DHCurve25519), "not supported"},
		{ike(encrs(gcm128), integs(wire.IntegHMACSHA2256128), prfs(wire.PRFHMACSHA2256), wire.DHCurve25519), "no integrity"},
		{ike(encrs(cbc128), nil, prfs(wire.PRFHMACSHA2256), wire.DHCurve25519), "needs an integrity"},
		{ike(encrs(gcm128), nil, nil, wire.DHCurve25519), "PRF"},
		{ike(encrs(gcm128), nil, prfs(wire.PRFHMACSHA2256)), "DH group"},
		{ike(encrs(gcm128), nil, prfs(wire.PRFHMACMD5), wire.DHCurve25519), "PRF_HMAC_MD5"},
		{ike(encrs(gcm128), nil, prfs(wire.PRFHMACSHA2256), wire.DHMODP1024), "MODP_1024"},
		{Proposal{Protocol: wire.ProtoESP, Encr: encrs(gcm128), PRF: prfs(wire.PRFHMACSHA2256)}, "PRF"},
		{Proposal{Protocol: wire.ProtoESP, Encr: encrs(gcm128), ESN: []wire.ESNID{7}}, "ESN"},
	}
	for _, b := range bad {
		err := b.p.Validate()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Validate(%v) = %v, want mention of %q", b.p, err, b.want)
		}
	}
	if err := (Proposal{Protocol: wire.ProtoESP, Encr: encrs(chacha)}).Validate(); err != nil {
		t.Errorf("ESP without ESN list: %v", err)
	}
}

// TestDHHelpers: the KEi group is the first group of the first proposal
// (RFC 7296 §3.4) and INVALID_KE_PAYLOAD may only move us to a group we
// proposed (§1.2).
func TestDHHelpers(t *testing.T) {
	ps, err := ParseIKEList("aes128gcm16-prfsha256-x25519-ecp256,aes128-sha256-modp2048")
	if err != nil {
		t.Fatal(err)
	}
	if g := FirstDH(ps); g != wire.DHCurve25519 {
		t.Errorf("FirstDH = %v", g)
	}
	if !AcceptsDH(ps, wire.DHMODP2048) || !AcceptsDH(ps, wire.DHECP256) || AcceptsDH(ps, wire.DHECP384) || AcceptsDH(ps, wire.DHNone) {
		t.Error("AcceptsDH wrong")
	}
	es, _ := ParseESPList("aes128gcm16,aes256gcm16-ecp384")
	if g := FirstDH(es); g != wire.DHECP384 {
		t.Errorf("FirstDH(ESP) = %v", g)
	}
	if g := FirstDH(WithoutDH(es)); g != wire.DHNone {
		t.Errorf("FirstDH(WithoutDH) = %v", g)
	}
	if es[1].DH == nil {
		t.Error("WithoutDH modified its input")
	}
}
