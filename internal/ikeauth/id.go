package ikeauth

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mifike/mifike/internal/wire"
)

// ParseID turns an identity as written in configuration into an ID type
// and its Identification Data (RFC 7296 §3.5). The notation follows
// strongSwan's:
//
//	10.0.0.1, 2001:db8::1     ID_IPV4_ADDR, ID_IPV6_ADDR
//	@#0a1b2c                  ID_KEY_ID, hex octets
//	@gw.example               ID_FQDN, forced (whatever follows the @)
//	@@user@example.org        ID_RFC822_ADDR, forced
//	CN=gw, O=example          ID_DER_ASN1_DN (anything with '='), the DER of
//	                          the RDNs in the order written
//	user@example.org          ID_RFC822_ADDR (anything else with '@')
//	gw.example                ID_FQDN (anything else)
//
// DN attributes are C, ST, L, O, OU, CN, STREET, DC, UID (RFC 4514 §3),
// serialNumber, surname, givenName, title, postalCode, E (emailAddress),
// or a dotted OID; '+' joins attributes of one RDN, values may be quoted
// or use RFC 4514 backslash escapes.
func ParseID(s string) (wire.IDType, []byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil, errors.New("ikeauth: empty identity")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return 0, nil, fmt.Errorf("ikeauth: identity %q: an IPv6 identity carries no zone", s)
		}
		if a.Is4() {
			b := a.As4()
			return wire.IDIPv4Addr, b[:], nil
		}
		b := a.As16()
		return wire.IDIPv6Addr, b[:], nil
	}
	switch {
	case strings.HasPrefix(s, "@#"):
		b, err := hex.DecodeString(s[2:])
		if err != nil || len(b) == 0 {
			return 0, nil, fmt.Errorf("ikeauth: identity %q: ID_KEY_ID wants hex octets after @#", s)
		}
		return wire.IDKeyID, b, nil
	case strings.HasPrefix(s, "@@"):
		return parseText(wire.IDRFC822Addr, s[2:], s)
	case strings.HasPrefix(s, "@"):
		return parseText(wire.IDFQDN, s[1:], s)
	case strings.Contains(s, "="):
		der, err := parseDN(s)
		if err != nil {
			return 0, nil, fmt.Errorf("ikeauth: identity %q is not a distinguished name: %w", s, err)
		}
		return wire.IDDERASN1DN, der, nil
	case strings.Contains(s, "@"):
		return parseText(wire.IDRFC822Addr, s, s)
	}
	return parseText(wire.IDFQDN, s, s)
}

// parseText checks an ID_FQDN (ASCII, RFC 7296 §3.5) or ID_RFC822_ADDR
// (UTF-8, §3.5) string: no terminators or other control characters.
func parseText(t wire.IDType, v, written string) (wire.IDType, []byte, error) {
	if v == "" {
		return 0, nil, fmt.Errorf("ikeauth: identity %q: empty %v", written, t)
	}
	for _, r := range v {
		if t == wire.IDFQDN && (r <= ' ' || r >= 0x7f) {
			return 0, nil, fmt.Errorf("ikeauth: identity %q: ID_FQDN holds only printable ASCII without spaces (RFC 7296 §3.5; write IDNs as xn--)", written)
		}
		if r == utf8.RuneError || unicode.IsControl(r) {
			return 0, nil, fmt.Errorf("ikeauth: identity %q: %v holds control characters or invalid UTF-8", written, t)
		}
	}
	return t, []byte(v), nil
}

// FormatID renders an ID for logs and the CLI in the notation ParseID
// reads; valid IDs round-trip through it.
func FormatID(t wire.IDType, data []byte) string {
	switch t {
	case wire.IDIPv4Addr, wire.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(data); ok && (len(data) == 4) == (t == wire.IDIPv4Addr) {
			return a.String()
		}
	case wire.IDFQDN, wire.IDRFC822Addr:
		// Plain text, else forced with @ or @@ where ParseID would read the
		// text as another type, else quoted.
		s, force := string(data), "@"
		if t == wire.IDRFC822Addr {
			force = "@@"
		}
		for _, c := range []string{s, force + s} {
			if pt, pd, err := ParseID(c); err == nil && pt == t && bytes.Equal(pd, data) {
				return c
			}
		}
		return fmt.Sprintf("%v %s", t, strconv.Quote(s))
	case wire.IDDERASN1DN:
		if s, err := dnString(data); err == nil {
			return s
		}
	case wire.IDKeyID:
		return "@#" + hex.EncodeToString(data)
	case wire.IDNull:
		return t.String()
	}
	return fmt.Sprintf("%v(%x)", t, data)
}

// IDEqual compares two IDs: the types must match; ID_FQDN and
// ID_RFC822_ADDR compare case-insensitively (RFC 4945 §3.1.2, §3.1.3),
// distinguished names by their parsed RDNs (see MatchID), the rest octet
// by octet.
func IDEqual(t1 wire.IDType, d1 []byte, t2 wire.IDType, d2 []byte) bool {
	if t1 != t2 {
		return false
	}
	switch t1 {
	case wire.IDFQDN, wire.IDRFC822Addr:
		return strings.EqualFold(string(d1), string(d2))
	case wire.IDDERASN1DN:
		return bytes.Equal(d1, d2) || dnEqual(d1, d2)
	}
	return bytes.Equal(d1, d2)
}

// Distinguished names (RFC 5280 §4.1.2.4), kept with raw values so that
// attributes of any type survive parsing and compare exactly.
type attributeTypeAndValue struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// The "SET" suffix makes encoding/asn1 treat the slice as a SET OF.
type relativeDistinguishedNameSET []attributeTypeAndValue

type rdnSequence []relativeDistinguishedNameSET

// dnAttrs are the attribute names ParseID and FormatID know. stringType
// forces an ASN.1 string type; 0 means PrintableString when the value
// allows it, else UTF8String, as crypto/x509 encodes subjects.
var dnAttrs = []struct {
	names      []string // first is the one FormatID writes
	oid        asn1.ObjectIdentifier
	stringType string
}{
	{[]string{"C"}, asn1.ObjectIdentifier{2, 5, 4, 6}, "printable"},
	{[]string{"ST"}, asn1.ObjectIdentifier{2, 5, 4, 8}, ""},
	{[]string{"L"}, asn1.ObjectIdentifier{2, 5, 4, 7}, ""},
	{[]string{"O"}, asn1.ObjectIdentifier{2, 5, 4, 10}, ""},
	{[]string{"OU"}, asn1.ObjectIdentifier{2, 5, 4, 11}, ""},
	{[]string{"CN"}, asn1.ObjectIdentifier{2, 5, 4, 3}, ""},
	{[]string{"STREET"}, asn1.ObjectIdentifier{2, 5, 4, 9}, ""},
	{[]string{"DC"}, asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, "ia5"},
	{[]string{"UID"}, asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, ""},
	{[]string{"serialNumber"}, asn1.ObjectIdentifier{2, 5, 4, 5}, "printable"},
	{[]string{"surname"}, asn1.ObjectIdentifier{2, 5, 4, 4}, ""},
	{[]string{"givenName"}, asn1.ObjectIdentifier{2, 5, 4, 42}, ""},
	{[]string{"title"}, asn1.ObjectIdentifier{2, 5, 4, 12}, ""},
	{[]string{"postalCode"}, asn1.ObjectIdentifier{2, 5, 4, 17}, ""},
	{[]string{"E", "emailAddress"}, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, "ia5"},
}

// parseDN encodes a written DN as the DER of its RDNSequence, RDNs in the
// order written.
func parseDN(s string) ([]byte, error) {
	p := dnParser{s: s}
	var seq rdnSequence
	for {
		var rdn relativeDistinguishedNameSET
		for {
			atv, err := p.attribute()
			if err != nil {
				return nil, err
			}
			rdn = append(rdn, atv)
			if !p.consume('+') {
				break
			}
		}
		seq = append(seq, rdn)
		if p.i == len(p.s) {
			return asn1.Marshal(seq)
		}
		if !p.consume(',') {
			return nil, fmt.Errorf("unexpected %q at offset %d", p.s[p.i], p.i)
		}
	}
}

type dnParser struct {
	s string
	i int
}

func (p *dnParser) consume(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *dnParser) skipSpace() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *dnParser) attribute() (attributeTypeAndValue, error) {
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune("=,+", rune(p.s[p.i])) {
		p.i++
	}
	name := strings.TrimSpace(p.s[start:p.i])
	if !p.consume('=') {
		return attributeTypeAndValue{}, fmt.Errorf("%q lacks \"=value\"", p.s[start:p.i])
	}
	oid, stringType, err := lookupAttribute(name)
	if err != nil {
		return attributeTypeAndValue{}, err
	}
	p.skipSpace()
	if p.consume('#') {
		// RFC 4514 §2.4: #hex is the value's BER, for non-string types.
		start := p.i
		for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != '+' {
			p.i++
		}
		der, err := hex.DecodeString(strings.TrimSpace(p.s[start:p.i]))
		var v asn1.RawValue
		if err == nil {
			var rest []byte
			if rest, err = asn1.Unmarshal(der, &v); err == nil && len(rest) != 0 {
				err = errors.New("trailing data")
			}
		}
		if err != nil {
			return attributeTypeAndValue{}, fmt.Errorf("%s: #hex value is not one DER element: %v", name, err)
		}
		return attributeTypeAndValue{Type: oid, Value: v}, nil
	}
	val, err := p.value()
	if err != nil {
		return attributeTypeAndValue{}, fmt.Errorf("%s: %w", name, err)
	}
	if val == "" {
		return attributeTypeAndValue{}, fmt.Errorf("%s has an empty value", name)
	}
	if !utf8.ValidString(val) {
		return attributeTypeAndValue{}, fmt.Errorf("%s value is not valid UTF-8", name)
	}
	der, err := encodeValue(stringType, val)
	if err != nil {
		return attributeTypeAndValue{}, fmt.Errorf("%s value %q does not fit its ASN.1 string type (%s)", name, val, stringType)
	}
	return attributeTypeAndValue{Type: oid, Value: asn1.RawValue{FullBytes: der}}, nil
}

func encodeValue(stringType, val string) ([]byte, error) {
	if stringType == "" {
		return asn1.Marshal(val)
	}
	return asn1.MarshalWithParams(val, stringType)
}

// value reads an attribute value: "quoted", or up to an unescaped ',' or
// '+', with RFC 4514 §3 escapes (\c and \XX) and outer spaces dropped.
func (p *dnParser) value() (string, error) {
	var b []byte
	if p.consume('"') {
		for {
			if p.i == len(p.s) {
				return "", errors.New("unterminated quoted value")
			}
			c := p.s[p.i]
			if c == '"' {
				p.i++
				break
			}
			if c == '\\' {
				if err := p.escape(&b); err != nil {
					return "", err
				}
				continue
			}
			b = append(b, c)
			p.i++
		}
		p.skipSpace()
		return string(b), nil
	}
	keep := 0 // length without unescaped trailing spaces
	for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != '+' {
		c := p.s[p.i]
		if c == '\\' {
			if err := p.escape(&b); err != nil {
				return "", err
			}
			keep = len(b)
			continue
		}
		b = append(b, c)
		p.i++
		if c != ' ' {
			keep = len(b)
		}
	}
	return string(b[:keep]), nil
}

func (p *dnParser) escape(b *[]byte) error {
	if p.i+1 >= len(p.s) {
		return errors.New("backslash at the end")
	}
	if p.i+2 < len(p.s) {
		if v, err := hex.DecodeString(p.s[p.i+1 : p.i+3]); err == nil {
			*b = append(*b, v[0])
			p.i += 3
			return nil
		}
	}
	*b = append(*b, p.s[p.i+1])
	p.i += 2
	return nil
}

func lookupAttribute(name string) (asn1.ObjectIdentifier, string, error) {
	for _, a := range dnAttrs {
		for _, n := range a.names {
			if strings.EqualFold(n, name) {
				return a.oid, a.stringType, nil
			}
		}
	}
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(name, ".") {
		// encoding/asn1 reads an arc of at most 31 bits back (a DN
		// with a larger one would not print as the DN it is).
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 || n > math.MaxInt32 {
			oid = nil
			break
		}
		oid = append(oid, n)
	}
	if len(oid) >= 2 && oid[0]*40+oid[1] > math.MaxInt32 {
		oid = nil // the first two arcs are encoded as one (X.690 §8.19.4)
	}
	if len(oid) < 2 {
		var known []string
		for _, a := range dnAttrs {
			known = append(known, a.names...)
		}
		return nil, "", fmt.Errorf("unknown attribute %q; use one of %s or a dotted OID", name, strings.Join(known, ", "))
	}
	return oid, "", nil
}

// attributeName returns the name FormatID writes for oid and the string
// type ParseID will encode its values with.
func attributeName(oid asn1.ObjectIdentifier) (name, stringType string) {
	for _, a := range dnAttrs {
		if a.oid.Equal(oid) {
			return a.names[0], a.stringType
		}
	}
	return oid.String(), ""
}

// decodeDN parses DER of an RDNSequence, refusing trailing octets.
func decodeDN(der []byte) (rdnSequence, error) {
	var seq rdnSequence
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after the distinguished name")
	}
	return seq, nil
}

func isEmptyDN(der []byte) bool {
	seq, err := decodeDN(der)
	return err == nil && len(seq) == 0
}

// dnString renders DER of a DN as "CN=gw, O=example", RDNs in DER order
// (the order ParseID reads), non-string values as #hex (RFC 4514 §2.4).
func dnString(der []byte) (string, error) {
	seq, err := decodeDN(der)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	for i, rdn := range seq {
		if i > 0 {
			sb.WriteString(", ")
		}
		for j, atv := range rdn {
			if j > 0 {
				sb.WriteByte('+')
			}
			name, stringType := attributeName(atv.Type)
			sb.WriteString(name)
			sb.WriteByte('=')
			// Text only where ParseID can encode it back; #hex otherwise.
			s, ok := stringValue(atv.Value)
			if ok && s != "" {
				_, err := encodeValue(stringType, s)
				ok = err == nil
			}
			if ok && s != "" {
				escapeValue(&sb, s)
			} else {
				sb.WriteByte('#')
				sb.WriteString(hex.EncodeToString(atv.Value.FullBytes))
			}
		}
	}
	return sb.String(), nil
}

// formatDN is dnString for messages: it never fails.
func formatDN(der []byte) string {
	if s, err := dnString(der); err == nil {
		return s
	}
	return fmt.Sprintf("invalid DN %x", der)
}

// stringValue decodes the directory string types encoding/asn1 knows.
func stringValue(v asn1.RawValue) (string, bool) {
	if v.Class != asn1.ClassUniversal {
		return "", false
	}
	switch v.Tag {
	case asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagIA5String, asn1.TagT61String, asn1.TagBMPString, asn1.TagNumericString:
		var s string
		// T61String comes back as raw octets, which may not be UTF-8.
		if rest, err := asn1.Unmarshal(v.FullBytes, &s); err == nil && len(rest) == 0 && utf8.ValidString(s) {
			return s, true
		}
	}
	return "", false
}

// escapeValue writes s with the RFC 4514 §2.4 escapes ParseID undoes.
func escapeValue(sb *strings.Builder, s string) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsControl(r), unicode.IsSpace(r) && i+size == len(s):
			// Trailing white space as \XX: ParseID trims it when bare.
			for _, c := range []byte(s[i : i+size]) {
				fmt.Fprintf(sb, "\\%02X", c)
			}
		case strings.ContainsRune(`,+"\<>;`, r), (r == ' ' || r == '#') && i == 0:
			sb.WriteByte('\\')
			sb.WriteRune(r)
		default:
			sb.WriteString(s[i : i+size])
		}
		i += size
	}
}

// dnEqual compares two DNs RDN by RDN. Values of directory string types
// compare as text regardless of the ASN.1 string type (a PrintableString
// equals the same UTF8String), exactly otherwise; RFC 4945 §3.1.5 expects
// binary equality, and this only forgives the string type.
func dnEqual(a, b []byte) bool {
	sa, err := decodeDN(a)
	if err != nil {
		return false
	}
	sb, err := decodeDN(b)
	if err != nil || len(sa) != len(sb) {
		return false
	}
	for i := range sa {
		if len(sa[i]) != len(sb[i]) {
			return false
		}
		for j := range sa[i] {
			x, y := sa[i][j], sb[i][j]
			if !x.Type.Equal(y.Type) {
				return false
			}
			xs, xok := stringValue(x.Value)
			ys, yok := stringValue(y.Value)
			if xok && yok {
				if xs != ys {
					return false
				}
			} else if !bytes.Equal(x.Value.FullBytes, y.Value.FullBytes) {
				return false
			}
		}
	}
	return true
}
