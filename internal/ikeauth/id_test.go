package ikeauth

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"

	"github.com/mifike/mifike/internal/wire"
)

// dnDER is the DER crypto/x509 would write for these RDNs, one attribute
// each, in the order given.
func dnDER(t *testing.T, atvs ...pkix.AttributeTypeAndValue) []byte {
	t.Helper()
	var seq pkix.RDNSequence
	for _, a := range atvs {
		seq = append(seq, pkix.RelativeDistinguishedNameSET{a})
	}
	return must(asn1.Marshal(seq))
}

var (
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidC  = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidOU = asn1.ObjectIdentifier{2, 5, 4, 11}
)

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		t    wire.IDType
		data []byte
	}{
		{"10.0.0.1", wire.IDIPv4Addr, []byte{10, 0, 0, 1}},
		{" 10.0.0.1 ", wire.IDIPv4Addr, []byte{10, 0, 0, 1}},
		{"2001:db8::1", wire.IDIPv6Addr, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"::ffff:10.0.0.1", wire.IDIPv6Addr, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1}},
		{"gw.example", wire.IDFQDN, []byte("gw.example")},
		{"@gw.example", wire.IDFQDN, []byte("gw.example")},
		{"@10.0.0.1", wire.IDFQDN, []byte("10.0.0.1")},
		{"@a=b", wire.IDFQDN, []byte("a=b")},
		{"user@example.org", wire.IDRFC822Addr, []byte("user@example.org")},
		{"@@user", wire.IDRFC822Addr, []byte("user")},
		{"@#0a1B2c", wire.IDKeyID, []byte{0x0a, 0x1b, 0x2c}},
		{"CN=gw, O=example", wire.IDDERASN1DN, dnDER(t,
			pkix.AttributeTypeAndValue{Type: oidCN, Value: "gw"}, pkix.AttributeTypeAndValue{Type: oidO, Value: "example"})},
		{"C=DE,O=Example Inc.,CN=gw", wire.IDDERASN1DN, dnDER(t,
			pkix.AttributeTypeAndValue{Type: oidC, Value: "DE"}, pkix.AttributeTypeAndValue{Type: oidO, Value: "Example Inc."},
			pkix.AttributeTypeAndValue{Type: oidCN, Value: "gw"})},
		{`cn = "Doe, John" , ou=R\2bD`, wire.IDDERASN1DN, dnDER(t,
			pkix.AttributeTypeAndValue{Type: oidCN, Value: "Doe, John"}, pkix.AttributeTypeAndValue{Type: oidOU, Value: "R+D"})},
		{`CN=Jürgen\, jr.`, wire.IDDERASN1DN, dnDER(t, pkix.AttributeTypeAndValue{Type: oidCN, Value: "Jürgen, jr."})},
		{"2.5.4.3=gw", wire.IDDERASN1DN, dnDER(t, pkix.AttributeTypeAndValue{Type: oidCN, Value: "gw"})},
		{"CN=#0c026777", wire.IDDERASN1DN, must(asn1.Marshal(rdnSequence{{{Type: oidCN,
			Value: asn1.RawValue{FullBytes: []byte{0x0c, 2, 'g', 'w'}}}}}))},
	} {
		t.Run(tc.in, func(t *testing.T) {
			typ, data, err := ParseID(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if typ != tc.t || !bytes.Equal(data, tc.data) {
				t.Fatalf("got %v %x, want %v %x", typ, data, tc.t, tc.data)
			}
		})
	}
}

// Email and DC are IA5String, C PrintableString, others PrintableString
// when they can be (as crypto/x509 writes subjects), else UTF8String.
func TestParseIDDNStringTypes(t *testing.T) {
	_, der, err := ParseID("E=a@b.example, DC=example, C=DE, CN=Jürgen, CN=plain")
	if err != nil {
		t.Fatal(err)
	}
	seq, err := decodeDN(der)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{asn1.TagIA5String, asn1.TagIA5String, asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagPrintableString}
	for i, rdn := range seq {
		if rdn[0].Value.Tag != want[i] {
			t.Errorf("RDN %d has tag %d, want %d", i, rdn[0].Value.Tag, want[i])
		}
	}
}

func TestParseIDMultiValuedRDN(t *testing.T) {
	_, der, err := ParseID("CN=gw+OU=net, O=example")
	if err != nil {
		t.Fatal(err)
	}
	seq, err := decodeDN(der)
	if err != nil || len(seq) != 2 || len(seq[0]) != 2 {
		t.Fatalf("parsed %v, err %v", seq, err)
	}
	if got := FormatID(wire.IDDERASN1DN, der); got != "CN=gw+OU=net, O=example" {
		t.Fatalf("FormatID %q", got)
	}
}

func TestParseIDErrors(t *testing.T) {
	for in, why := range map[string]string{
		"":                  "empty",
		"fe80::1%eth0":      "zone",
		"@#":                "hex",
		"@#xyz":             "hex",
		"@":                 "empty",
		"@@":                "empty",
		"gw example":        "printable ASCII",
		"gw\x00.example":    "printable ASCII",
		"bad\x01@x":         "control",
		"XX=gw":             "unknown attribute",
		"CN=":               "empty value",
		"CN=gw,":            "lacks",
		"CN=gw, junk":       "lacks",
		`CN="gw`:            "unterminated",
		`CN=gw\`:            "backslash",
		`CN="gw" x`:         "unexpected",
		"C=Ü":               "ASN.1 string type",
		"E=jürgen@example":  "ASN.1 string type",
		"CN=#zz":            "#hex",
		"CN=#0c02677700":    "#hex",
		"CN=\xff":           "UTF-8",
		"1.=x":              "unknown attribute",
		"a=b":               "distinguished name",
		"gw.example\r":      "", // trailing CR is trimmed as space
		"CN=gw, O=e, OU=\\": "backslash",
	} {
		t.Run(in, func(t *testing.T) {
			_, _, err := ParseID(in)
			if why == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, why)
		})
	}
}

func TestFormatID(t *testing.T) {
	for _, tc := range []struct {
		t    wire.IDType
		data []byte
		want string
	}{
		{wire.IDIPv4Addr, []byte{10, 0, 0, 1}, "10.0.0.1"},
		{wire.IDIPv6Addr, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "2001:db8::1"},
		{wire.IDIPv4Addr, []byte{10, 0, 0}, "ID_IPV4_ADDR(0a0000)"},
		{wire.IDIPv6Addr, []byte{10, 0, 0, 1}, "ID_IPV6_ADDR(0a000001)"},
		{wire.IDFQDN, []byte("gw.example"), "gw.example"},
		{wire.IDFQDN, []byte("10.0.0.1"), "@10.0.0.1"},
		{wire.IDFQDN, []byte("a@b"), "@a@b"},
		{wire.IDFQDN, []byte("gw\x00"), `ID_FQDN "gw\x00"`},
		{wire.IDFQDN, []byte("@x"), `ID_FQDN "@x"`},
		{wire.IDFQDN, []byte("#00"), "#00"},
		{wire.IDRFC822Addr, []byte("@x"), "@@@x"},
		{wire.IDRFC822Addr, []byte(" a@b"), "@@ a@b"},
		{wire.IDRFC822Addr, []byte("user@example.org"), "user@example.org"},
		{wire.IDRFC822Addr, []byte("user"), "@@user"},
		{wire.IDKeyID, []byte{0xde, 0xad}, "@#dead"},
		{wire.IDDERASN1DN, dnDER(t, pkix.AttributeTypeAndValue{Type: oidCN, Value: "gw"}, pkix.AttributeTypeAndValue{Type: oidO, Value: "example"}), "CN=gw, O=example"},
		{wire.IDDERASN1DN, dnDER(t, pkix.AttributeTypeAndValue{Type: oidCN, Value: " Doe, John+x "}), `CN=\ Doe\, John\+x\20`},
		{wire.IDDERASN1DN, dnDER(t, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{1, 2, 3}, Value: 7}), "1.2.3=#020107"},
		{wire.IDDERASN1DN, []byte{0x30, 0x01}, "ID_DER_ASN1_DN(3001)"},
		{wire.IDNull, nil, "ID_NULL"},
		{wire.IDFCName, []byte{1}, "ID_FC_NAME(01)"},
	} {
		got := FormatID(tc.t, tc.data)
		if got != tc.want {
			t.Errorf("FormatID(%v, %x) = %q, want %q", tc.t, tc.data, got, tc.want)
		}
	}
}

// Every valid identity survives FormatID then ParseID.
func TestFormatIDRoundTrip(t *testing.T) {
	for _, in := range []string{
		"10.0.0.1", "2001:db8::1", "gw.example", "@10.0.0.1", "@x=y", "user@example.org", "@@user",
		"@#00ff", "CN=gw, O=example", `CN=" Doe, John ", OU=R\+D`, "CN=a\\0Ab", "E=a@b.example, DC=org",
		"CN=gw+OU=x, C=DE", "1.2.3.4=#020107", `CN=\#gw`,
	} {
		t1, d1, err := ParseID(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		s := FormatID(t1, d1)
		t2, d2, err := ParseID(s)
		if err != nil || t2 != t1 || !bytes.Equal(d1, d2) {
			t.Errorf("%q → %q → %v %x (err %v), want %v %x", in, s, t2, d2, err, t1, d1)
		}
	}
}

func TestIDEqual(t *testing.T) {
	id := func(s string) (wire.IDType, []byte) { t, d, err := ParseID(s); return t, must(d, err) }
	utf8DN := must(asn1.Marshal(rdnSequence{{{Type: oidCN, Value: asn1.RawValue{FullBytes: must(asn1.MarshalWithParams("gw", "utf8"))}}}}))
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"gw.example", "GW.Example", true}, // RFC 4945 §3.1.2
		{"gw.example", "gw.example.", false},
		{"user@example.org", "USER@example.ORG", true}, // RFC 4945 §3.1.3
		{"10.0.0.1", "10.0.0.1", true},
		{"10.0.0.1", "10.0.0.2", false},
		{"10.0.0.1", "@10.0.0.1", false}, // types differ
		{"CN=gw, O=example", "cn=gw,o=example", true},
		{"CN=gw, O=example", "O=example, CN=gw", false}, // RDN order matters
		{"CN=gw, O=example", "CN=GW, O=example", false}, // values compare exactly
		{"CN=gw", "2.5.4.3=gw", true},
		{"@#0102", "@#0102", true},
		{"@#0102", "@#0103", false},
	} {
		t1, d1 := id(tc.a)
		t2, d2 := id(tc.b)
		if got := IDEqual(t1, d1, t2, d2); got != tc.want {
			t.Errorf("IDEqual(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	t1, d1 := id("CN=gw")
	if !IDEqual(t1, d1, wire.IDDERASN1DN, utf8DN) {
		t.Error("PrintableString and UTF8String CN=gw differ")
	}
	if IDEqual(wire.IDDERASN1DN, []byte{0x30}, wire.IDDERASN1DN, []byte{0x31}) {
		t.Error("different garbage DNs equal")
	}
}
