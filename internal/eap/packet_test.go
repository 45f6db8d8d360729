package eap

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseMarshal(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want Packet
	}{
		{"identity request", []byte{1, 7, 0, 5, 1}, Packet{Code: CodeRequest, Identifier: 7, Type: TypeIdentity, Data: []byte{}}},
		{"identity response", []byte{2, 7, 0, 9, 1, 'u', 's', 'e', 'r'}, Packet{Code: CodeResponse, Identifier: 7, Type: TypeIdentity, Data: []byte("user")}},
		{"nak", []byte{2, 8, 0, 7, 3, 26, 4}, Packet{Code: CodeResponse, Identifier: 8, Type: TypeNak, Data: []byte{26, 4}}},
		{"success", []byte{3, 9, 0, 4}, Packet{Code: CodeSuccess, Identifier: 9}},
		{"failure", []byte{4, 9, 0, 4}, Packet{Code: CodeFailure, Identifier: 9}},
		{"expanded", []byte{1, 1, 0, 12, 254, 0, 0, 20, 0, 0, 0, 6}, Packet{Code: CodeRequest, Identifier: 1, Type: TypeExpanded, Data: []byte{0, 0, 20, 0, 0, 0, 6}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.Code != tc.want.Code || p.Identifier != tc.want.Identifier || p.Type != tc.want.Type || !bytes.Equal(p.Data, tc.want.Data) {
				t.Fatalf("got %+v, want %+v", *p, tc.want)
			}
			out, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, tc.in) {
				t.Fatalf("marshal %x, want %x", out, tc.in)
			}
		})
	}
}

// RFC 3748 §4: octets beyond Length are padding.
func TestParseIgnoresPadding(t *testing.T) {
	p, err := Parse([]byte{1, 1, 0, 6, 4, 0xaa, 0xbb, 0xcc})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Data, []byte{0xaa}) {
		t.Fatalf("data %x", p.Data)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", []byte{1, 1, 0}},
		{"length below header", []byte{1, 1, 0, 3, 1}},
		{"length beyond buffer", []byte{1, 1, 0, 9, 1}},
		{"request without type", []byte{1, 1, 0, 4}},
		{"success with data", []byte{3, 1, 0, 5, 0}},
		{"failure with data", []byte{4, 1, 0, 6, 0, 0}},
		{"unknown code", []byte{5, 1, 0, 4}},
		{"code zero", []byte{0, 1, 0, 4}},
		{"expanded too short", []byte{1, 1, 0, 11, 254, 0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := Parse(tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%x) = %+v, %v", tc.in, p, err)
			}
		})
	}
}

func TestMarshalRejects(t *testing.T) {
	for _, p := range []Packet{
		{Code: CodeSuccess, Type: TypeIdentity},
		{Code: CodeFailure, Data: []byte{1}},
		{Code: 9},
		{Code: CodeRequest, Type: TypeTLS, Data: make([]byte, MaxPacketLen-4)},
	} {
		if b, err := p.Marshal(); err == nil {
			t.Errorf("Marshal(%v %d octets) = %x", p.Code, len(p.Data), b)
		}
	}
	// The largest packet still fits.
	p := Packet{Code: CodeRequest, Type: TypeTLS, Data: make([]byte, MaxPacketLen-5)}
	if b, err := p.Marshal(); err != nil || len(b) != MaxPacketLen {
		t.Fatalf("largest packet: %d octets, %v", len(b), err)
	}
}

func TestExpanded(t *testing.T) {
	e := Expanded{VendorID: 0x123456, VendorType: 0xdeadbeef, Data: []byte{1, 2}}
	b := e.Append(nil)
	got, err := ParseExpanded(b)
	if err != nil || got.VendorID != e.VendorID || got.VendorType != e.VendorType || !bytes.Equal(got.Data, e.Data) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
}

func TestNak(t *testing.T) {
	if got := nakData(nil); !bytes.Equal(got, []byte{0}) {
		t.Errorf("empty Nak %x, want 00 (no alternative)", got)
	}
	types, err := parseNak(nakData([]Type{TypeMSCHAPv2, TypeTLS}))
	if err != nil || len(types) != 2 || types[0] != TypeMSCHAPv2 || types[1] != TypeTLS {
		t.Errorf("parseNak: %v, %v", types, err)
	}
	if types, err := parseNak([]byte{0}); err != nil || len(types) != 0 {
		t.Errorf("parseNak(00): %v, %v", types, err)
	}
	if _, err := parseNak(nil); err == nil {
		t.Error("parseNak(empty) succeeded")
	}
}
