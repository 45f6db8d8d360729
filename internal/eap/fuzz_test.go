package eap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzParse: Parse never panics, and what it accepts marshals back to the
// octets within Length.
func FuzzParse(f *testing.F) {
	for _, s := range [][]byte{
		{1, 7, 0, 5, 1},
		{2, 7, 0, 9, 1, 'u', 's', 'e', 'r'},
		{3, 9, 0, 4},
		{4, 9, 0, 4, 0xff},
		{1, 1, 0, 12, 254, 0, 0, 20, 0, 0, 0, 6},
		{1, 1, 0, 6, 13, 0x20},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("parsed %x but cannot marshal: %v", b, err)
		}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if !bytes.Equal(out, b[:n]) {
			t.Fatalf("round trip %x -> %x", b[:n], out)
		}
	})
}

// fuzzRequests splits fuzz input into packets: each is a 2-octet length
// and that many octets; a set high bit of the length asks for the packet
// to be delivered twice (a retransmission).
func fuzzRequests(b []byte) (pkts [][]byte, twice []bool) {
	for len(b) >= 2 && len(pkts) < 64 {
		n := int(binary.BigEndian.Uint16(b))
		dup := n&0x8000 != 0
		n &= 0x7fff
		b = b[2:]
		n = min(n, len(b))
		pkts, twice = append(pkts, b[:n]), append(twice, dup)
		b = b[n:]
	}
	return pkts, twice
}

func fuzzEncode(pkts ...[]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

// FuzzPeer feeds arbitrary Request sequences to a Peer that allows every
// method. It must never panic, must answer a Request with a Response of
// the same Identifier, must answer a retransmission identically, must stay
// failed after an error, and must never succeed without a completed
// method.
func FuzzPeer(f *testing.F) {
	pk := newPKI(f)
	// Seeds: real conversations with the test server.
	for _, m := range []Type{TypeMD5Challenge, TypeMSCHAPv2} {
		s, err := NewServer(ServerConfig{Methods: []Type{m}, Users: map[string][]byte{"alice": []byte("pw")}, Rand: seeded(3), Now: clock})
		if err != nil {
			f.Fatal(err)
		}
		p, err := NewPeer(PeerConfig{Identity: []byte("alice"), Password: []byte("pw"), Rand: seeded(4), Now: clock})
		if err != nil {
			f.Fatal(err)
		}
		o := converse(f, p, s, nil)
		var reqs [][]byte
		for _, b := range o.packets {
			if b[0] != byte(CodeResponse) {
				reqs = append(reqs, b)
			}
		}
		f.Add(fuzzEncode(reqs...))
		p.Close()
		s.Close()
	}
	f.Add(fuzzEncode([]byte{1, 1, 0, 5, 1}, []byte{1, 2, 0, 6, 13, 0x20}, []byte{1, 3, 0, 11, 13, 0xc0, 0, 0, 0, 9, 0x16}))
	f.Add(fuzzEncode([]byte{1, 1, 0, 6, 21, 0x20}, []byte{1, 2, 0, 5, 254}, []byte{3, 2, 0, 4}))

	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := NewPeer(PeerConfig{
			Identity: []byte("alice"), Password: []byte("pw"),
			Methods: []Type{TypeMSCHAPv2, TypeTLS, TypeMD5Challenge},
			RootCAs: pk.roots, ServerName: "radius.example", Certificate: &pk.client,
			FragmentSize: minFragmentSize, Rand: seeded(5), Now: clock,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pkts, twice := fuzzRequests(b)
		var failed error
		for i, req := range pkts {
			resp, err := p.Handle(req)
			if twice[i] {
				resp2, err2 := p.Handle(req)
				if !bytes.Equal(resp, resp2) || err2 != err {
					t.Fatalf("retransmission of %x: %x, %v; first %x, %v", req, resp2, err2, resp, err)
				}
			}
			if failed != nil && err == nil && !bytes.Equal(req, pkts[i-1]) {
				t.Fatalf("answered %x after failing with %v", req, failed)
			}
			if err != nil && failed == nil {
				failed = err
			}
			if resp != nil {
				r, perr := Parse(resp)
				q, qerr := Parse(req)
				if perr != nil || qerr != nil || r.Code != CodeResponse || r.Identifier != q.Identifier {
					t.Fatalf("request %x answered with %x (%v)", req, resp, perr)
				}
			}
		}
		if p.Succeeded() {
			if !p.done {
				t.Fatal("succeeded without a completed method")
			}
			if mp, ok := p.m.(*mschapPeer); ok && mp.state != mschapVerified {
				t.Fatal("MSCHAPv2 succeeded without verifying the server")
			}
			if tp, ok := p.m.(*tlsPeer); ok && !tp.finished {
				t.Fatal("EAP-TLS succeeded without a finished handshake")
			}
		}
	})
}
