package wire_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/pcapfile"
	"github.com/mifike/mifike/internal/wire"
)

// session is a realistic exchange sequence, built with our encoder and our
// SK protection, with the keys tshark needs to decrypt it.
type session struct {
	datagrams []datagram
	uat       []string // ikev2_decryption_table lines
}

type datagram struct {
	src, dst netip.AddrPort
	data     []byte
	want     string         // our summary of what is inside
	inner    []wire.Payload // what the SK payload protects
}

// detRand is a deterministic byte source, so the capture is reproducible.
type detRand struct{ n byte }

func (r *detRand) Read(b []byte) (int, error) {
	for i := range b {
		r.n = r.n*131 + 7
		b[i] = r.n
	}
	return len(b), nil
}

func buildSession(t *testing.T) *session {
	t.Helper()
	rnd := &detRand{}
	var (
		s      session
		ni, nr = bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
		spii   = uint64(0x1111222233334444)
		spir   = uint64(0x5555666677778888)
		ue     = netip.MustParseAddrPort("192.0.2.10:500")
		gw     = netip.MustParseAddrPort("198.51.100.1:500")
		ue4500 = netip.AddrPortFrom(ue.Addr(), 4500)
		gw4500 = netip.AddrPortFrom(gw.Addr(), 4500)
		ue2    = netip.MustParseAddrPort("203.0.113.20:4500")
		dhI, _ = ikecrypto.NewDH(wire.DHCurve25519, rnd)
		dhR, _ = ikecrypto.NewDH(wire.DHCurve25519, rnd)
		ikeCBC = wire.Proposal{Number: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: uint16(wire.EncrAESCBC), Attributes: []wire.Attribute{wire.KeyLengthAttr(128)}},
			{Type: wire.TransformPRF, ID: uint16(wire.PRFHMACSHA2256)},
			{Type: wire.TransformINTEG, ID: uint16(wire.IntegHMACSHA2256128)},
			{Type: wire.TransformDH, ID: uint16(wire.DHCurve25519)},
		}}
		esp = wire.Proposal{Number: 1, Protocol: wire.ProtoESP, SPI: []byte{0xc0, 1, 2, 3}, Transforms: []wire.Transform{
			{Type: wire.TransformENCR, ID: uint16(wire.EncrAESGCM16), Attributes: []wire.Attribute{wire.KeyLengthAttr(256)}},
			{Type: wire.TransformESN, ID: uint16(wire.ESNNo)},
		}}
	)
	natd := func(a, b uint64, src, dst netip.AddrPort) []wire.Payload {
		return []wire.Payload{
			wire.NewNotify(wire.NotifyNATDetectionSourceIP, ikecrypto.NATDetectionHash(a, b, src)),
			wire.NewNotify(wire.NotifyNATDetectionDestinationIP, ikecrypto.NATDetectionHash(a, b, dst)),
		}
	}
	plain := func(src, dst netip.AddrPort, h wire.Header, ps ...wire.Payload) []byte {
		m := &wire.Message{Header: h, Payloads: ps}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s.datagrams = append(s.datagrams, datagram{src: src, dst: dst, data: b, want: m.String()})
		return b
	}

	// IKE_SA_INIT with NAT detection (RFC 7296 §1.2, §2.23).
	h := wire.Header{SPIi: spii, MajorVersion: 2, Exchange: wire.IKESAInit, Flags: wire.FlagInitiator}
	plain(ue, gw, h, append([]wire.Payload{&wire.SA{Proposals: []wire.Proposal{ikeCBC}},
		&wire.KE{Group: wire.DHCurve25519, Data: dhI.Public()}, &wire.Nonce{Data: ni}},
		append(natd(spii, 0, ue, gw), wire.NewNotify(wire.NotifySignatureHashAlgorithms, []byte{0, 2, 0, 3, 0, 4}))...)...)
	h.SPIr, h.Flags = spir, wire.FlagResponse
	plain(gw, ue, h, append([]wire.Payload{&wire.SA{Proposals: []wire.Proposal{ikeCBC}},
		&wire.KE{Group: wire.DHCurve25519, Data: dhR.Public()}, &wire.Nonce{Data: nr}},
		append(natd(spii, spir, gw, ue), &wire.CertReq{Encoding: wire.CertX509Signature, Data: bytes.Repeat([]byte{0xab}, 20)})...)...)

	// Keys as the two peers derive them.
	gir, err := dhI.Shared(dhR.Public())
	if err != nil {
		t.Fatal(err)
	}
	suite, err := ikecrypto.NewSuite(wire.EncrAESCBC, 128, wire.PRFHMACSHA2256, wire.IntegHMACSHA2256128, wire.DHCurve25519)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := suite.DeriveIKEKeys(ikecrypto.SKEYSEED(suite.PRF, ni, nr, gir), ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	s.uat = append(s.uat, uatLine(spii, spir, keys, "AES-CBC-128 [RFC3602]", "HMAC_SHA2_256_128 [RFC4868]"))
	sealer := func(k *ikecrypto.IKEKeys, fromInitiator bool) *ikecrypto.SKCipher {
		enc, integ := k.SKei, k.SKai
		if !fromInitiator {
			enc, integ = k.SKer, k.SKar
		}
		c, err := suite.NewSKCipher(enc, integ)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	protected := func(c *ikecrypto.SKCipher, src, dst netip.AddrPort, h wire.Header, ps ...wire.Payload) {
		first, inner, err := wire.EncodePayloads(ps)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Protect(h, first, inner, rnd)
		if err != nil {
			t.Fatal(err)
		}
		// Port 4500 carries the non-ESP marker (RFC 3948 §2.2).
		s.datagrams = append(s.datagrams, datagram{src: src, dst: dst, data: append(make([]byte, 4), b...),
			want: (&wire.Message{Header: h, Payloads: ps}).String(), inner: ps})
	}
	iOut, rOut := sealer(keys, true), sealer(keys, false)

	// IKE_AUTH with CLONE_IKE_SA_SUPPORTED and MOBIKE_SUPPORTED (RFC 7791
	// §5.1, RFC 4555 §3.1), moved to port 4500.
	tsi := &wire.TS{Selectors: []wire.Selector{wire.PrefixSelector(netip.MustParsePrefix("0.0.0.0/0"), 0)}}
	tsr := &wire.TS{Responder: true, Selectors: []wire.Selector{wire.PrefixSelector(netip.MustParsePrefix("10.20.0.0/24"), 0)}}
	h = wire.Header{SPIi: spii, SPIr: spir, MajorVersion: 2, Exchange: wire.IKEAuth, Flags: wire.FlagInitiator, MessageID: 1}
	protected(iOut, ue4500, gw4500, h,
		&wire.ID{IDType: wire.IDFQDN, Data: []byte("eu.example")}, &wire.Auth{Method: wire.AuthSharedKeyMIC, Data: bytes.Repeat([]byte{1}, 32)},
		&wire.CP{CFGType: wire.CFGRequest, Attributes: []wire.CPAttribute{{Type: wire.CPInternalIP4Address}, {Type: wire.CPInternalIP4DNS}}},
		&wire.SA{Proposals: []wire.Proposal{esp}}, tsi, tsr,
		wire.NewNotify(wire.NotifyMOBIKESupported, nil), wire.NewNotify(wire.NotifyCloneIKESASupported, nil))
	h.Flags = wire.FlagResponse
	tsiR := &wire.TS{Selectors: []wire.Selector{wire.PrefixSelector(netip.MustParsePrefix("10.99.0.2/32"), 0)}}
	protected(rOut, gw4500, ue4500, h,
		&wire.ID{Responder: true, IDType: wire.IDFQDN, Data: []byte("gw.example")}, &wire.Auth{Method: wire.AuthSharedKeyMIC, Data: bytes.Repeat([]byte{2}, 32)},
		&wire.CP{CFGType: wire.CFGReply, Attributes: []wire.CPAttribute{wire.CPAddr(wire.CPInternalIP4Address, netip.MustParseAddr("10.99.0.2"))}},
		&wire.SA{Proposals: []wire.Proposal{esp}}, tsiR, tsr,
		wire.NewNotify(wire.NotifyMOBIKESupported, nil), wire.NewNotify(wire.NotifyCloneIKESASupported, nil),
		wire.AddrNotify(netip.MustParseAddr("198.51.100.2")))

	// The clone (RFC 7791 §5.2): an IKE rekey plus N(CLONE_IKE_SA); the
	// responder answers without the notify.
	cloneSPIi, cloneSPIr := uint64(0x0a0a0b0b0c0c0d0d), uint64(0x0e0e0f0f01010202)
	cni, cnr := bytes.Repeat([]byte{0x33}, 32), bytes.Repeat([]byte{0x44}, 32)
	dhI2, _ := ikecrypto.NewDH(wire.DHCurve25519, rnd)
	dhR2, _ := ikecrypto.NewDH(wire.DHCurve25519, rnd)
	ikeRekey := ikeCBC
	ikeRekey.SPI = u64(cloneSPIi)
	h = wire.Header{SPIi: spii, SPIr: spir, MajorVersion: 2, Exchange: wire.CreateChildSA, Flags: wire.FlagInitiator, MessageID: 2}
	protected(iOut, ue4500, gw4500, h, wire.NewNotify(wire.NotifyCloneIKESA, nil), &wire.SA{Proposals: []wire.Proposal{ikeRekey}},
		&wire.Nonce{Data: cni}, &wire.KE{Group: wire.DHCurve25519, Data: dhI2.Public()})
	ikeRekey.SPI = u64(cloneSPIr)
	h.Flags = wire.FlagResponse
	protected(rOut, gw4500, ue4500, h, &wire.SA{Proposals: []wire.Proposal{ikeRekey}}, &wire.Nonce{Data: cnr},
		&wire.KE{Group: wire.DHCurve25519, Data: dhR2.Public()})

	gir2, err := dhI2.Shared(dhR2.Public())
	if err != nil {
		t.Fatal(err)
	}
	cloneKeys, err := suite.DeriveIKEKeys(ikecrypto.RekeySKEYSEED(suite.PRF, keys.SKd, gir2, cni, cnr), cni, cnr, cloneSPIi, cloneSPIr)
	if err != nil {
		t.Fatal(err)
	}
	s.uat = append(s.uat, uatLine(cloneSPIi, cloneSPIr, cloneKeys, "AES-CBC-128 [RFC3602]", "HMAC_SHA2_256_128 [RFC4868]"))

	// MOBIKE moves the clone: UPDATE_SA_ADDRESSES from the new address with
	// NAT-D over the clone's SPIs and COOKIE2 (RFC 4555 §3.5, RFC 7791 A.4).
	cookie2 := bytes.Repeat([]byte{0x5c}, 16)
	h = wire.Header{SPIi: cloneSPIi, SPIr: cloneSPIr, MajorVersion: 2, Exchange: wire.Informational, Flags: wire.FlagInitiator}
	protected(sealer(cloneKeys, true), ue2, gw4500, h, append([]wire.Payload{wire.NewNotify(wire.NotifyUpdateSAAddresses, nil)},
		append(natd(cloneSPIi, cloneSPIr, ue2, gw4500), wire.NewNotify(wire.NotifyCookie2, cookie2))...)...)
	h.Flags = wire.FlagResponse
	protected(sealer(cloneKeys, false), gw4500, ue2, h,
		append(natd(cloneSPIi, cloneSPIr, gw4500, ue2), wire.NewNotify(wire.NotifyCookie2, cookie2))...)
	return &s
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (56 - 8*i))
	}
	return b
}

// uatLine is one row of Wireshark's ikev2_decryption_table.
func uatLine(spii, spir uint64, k *ikecrypto.IKEKeys, encr, integ string) string {
	return fmt.Sprintf(`%016x,%016x,%s,%s,"%s",%s,%s,"%s"`, spii, spir, hex.EncodeToString(k.SKei), hex.EncodeToString(k.SKer),
		encr, hex.EncodeToString(k.SKai), hex.EncodeToString(k.SKar), integ)
}

// TestTsharkAgrees hands our encoding to an independent dissector: tshark
// decrypts every protected message with our keys, finds no malformed
// packet and no expert error, verifies every integrity checksum, and
// sees the payload and notify types we meant (Wireshark 4.0 has no names
// for 16432/16433, so those are checked by number).
func TestTsharkAgrees(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not found: install Debian's tshark (make test does) to run the dissector check")
	}
	s := buildSession(t)
	dir := t.TempDir()
	pcapPath := filepath.Join(dir, "session.pcap")
	f, err := os.Create(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcapfile.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1700000000, 0)
	for i, d := range s.datagrams {
		if err := w.WriteUDP(start.Add(time.Duration(i)*time.Millisecond), d.src, d.dst, d.data); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if os.Getenv("MIFIKE_KEEP_PCAP") != "" {
		os.WriteFile(os.Getenv("MIFIKE_KEEP_PCAP"), mustRead(t, pcapPath), 0o644)
		os.WriteFile(os.Getenv("MIFIKE_KEEP_PCAP")+".uat", []byte(strings.Join(s.uat, "\n")+"\n"), 0o644)
	}
	// The UAT file goes into a private configuration directory, the way
	// Wireshark reads it.
	conf := filepath.Join(dir, "conf")
	os.MkdirAll(conf, 0o755)
	if err := os.WriteFile(filepath.Join(conf, "ikev2_decryption_table"), []byte(strings.Join(s.uat, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		cmd := exec.Command(tshark, append([]string{"-n", "-r", pcapPath}, args...)...)
		cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf, "HOME="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark %v: %v\n%s%s", args, err, out, stderr.Bytes())
		}
		return string(out)
	}

	fields := run("-T", "fields", "-E", "separator=|", "-e", "frame.number", "-e", "isakmp.exchangetype",
		"-e", "isakmp.typepayload", "-e", "isakmp.notify.msgtype", "-e", "_ws.malformed", "-e", "_ws.expert.severity")
	lines := strings.Split(strings.TrimSpace(fields), "\n")
	if len(lines) != len(s.datagrams) {
		t.Fatalf("tshark saw %d packets, we wrote %d:\n%s", len(lines), len(s.datagrams), fields)
	}
	for i, line := range lines {
		cols := strings.Split(line, "|")
		d := s.datagrams[i]
		m, err := wire.ParseMessage(bytes.TrimPrefix(d.data, make([]byte, 4)))
		if err != nil {
			t.Fatal(err)
		}
		if cols[4] != "" {
			t.Errorf("packet %d (%s): tshark reports it malformed", i+1, d.want)
		}
		for _, sev := range strings.Split(cols[5], ",") {
			// PI_WARN is 0x00600000 and PI_ERROR 0x00800000 (epan/proto.h).
			if n, err := strconv.ParseUint(sev, 0, 32); err == nil && n >= 0x00600000 {
				t.Errorf("packet %d (%s): tshark expert info of severity %#x", i+1, d.want, n)
			}
		}
		wantPayloads, wantNotifies := expectedTypes(m, d)
		if got := cols[2]; got != wantPayloads {
			t.Errorf("packet %d (%s): tshark payload types %q, want %q", i+1, d.want, got, wantPayloads)
		}
		if got := cols[3]; got != wantNotifies {
			t.Errorf("packet %d (%s): tshark notify types %q, want %q", i+1, d.want, got, wantNotifies)
		}
	}

	// Every protected message: tshark computed the ICV itself and agrees.
	verbose := run("-V", "-Y", "isakmp.enc.icd")
	correct := strings.Count(verbose, "[correct]")
	if want := len(s.datagrams) - 2; correct != want || strings.Contains(verbose, "[incorrect") {
		t.Errorf("tshark marked %d integrity checksums correct, want %d", correct, want)
	}
	if !strings.Contains(verbose, "CLONE_IKE_SA") && !strings.Contains(verbose, "(16432)") {
		t.Errorf("tshark output does not show notify 16432:\n%s", verbose)
	}
}

// expectedTypes lists payload and notify types in tshark's order: for a
// protected message the SK payload (46) first, then the decrypted ones.
func expectedTypes(m *wire.Message, d datagram) (string, string) {
	var pt, nt []string
	add := func(ps []wire.Payload) {
		for _, p := range ps {
			pt = append(pt, fmt.Sprint(uint8(p.Type())))
			if sa, ok := p.(*wire.SA); ok {
				// tshark lists proposals (2) and transforms (3) as
				// substructure "payloads".
				for _, pr := range sa.Proposals {
					pt = append(pt, "2")
					for range pr.Transforms {
						pt = append(pt, "3")
					}
				}
			}
			if n, ok := p.(*wire.Notify); ok {
				nt = append(nt, fmt.Sprint(uint16(n.NotifyType)))
			}
		}
	}
	add(m.Payloads)
	add(d.inner)
	return strings.Join(pt, ","), strings.Join(nt, ",")
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
