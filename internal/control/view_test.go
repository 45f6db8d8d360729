package control

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/proposal"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

func mustTS(t *testing.T, s string) wire.Selector {
	t.Helper()
	sel, err := ts.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestSAFromEngine(t *testing.T) {
	info := ike.IKESAInfo{ID: 3, Conn: "home", State: ike.StateEstablished, Initiator: true,
		SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00,
		Local: netip.MustParseAddrPort("192.0.2.10:4500"), Remote: netip.MustParseAddrPort("[2001:db8::1]:500"),
		LocalID: "ue.example", RemoteID: "gw.example", Proposal: "aes128gcm16-prfsha256-x25519", Established: established,
		NATLocal: true, Encap: true, MOBIKE: true, VirtualIPs: []netip.Addr{netip.MustParseAddr("10.99.0.2")},
		MOBIKEInitiator: true, Iface: "wlan0", PeerAddrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")},
		Family: 1, Parent: 1, CloneSupported: true,
		Children: []ike.ChildInfo{
			{State: "INSTALLED", Established: established, ChildSA: ike.ChildSA{IKESA: 3, Name: "net",
				InSPI: 0xc1a2b3c4, OutSPI: 0x0000f6a7, Protocol: wire.ProtoESP, Mode: ike.Tunnel,
				Encr: wire.EncrAESGCM16, KeyBits: 128, Encap: true, Outbound: true,
				LocalTS:  []wire.Selector{mustTS(t, "10.99.0.2/32")},
				RemoteTS: []wire.Selector{mustTS(t, "10.20.0.0/24"), mustTS(t, "10.30.0.0/16[tcp/443]")}}},
			{State: "REKEYED", ChildSA: ike.ChildSA{Name: "mgmt", InSPI: 1, OutSPI: 2, Protocol: wire.ProtoESP,
				Mode: ike.Transport, Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128, ESN: true}},
		}}
	want := SA{ID: 3, Conn: "home", State: ike.StateEstablished, Initiator: true,
		SPIi: "1122334455667788", SPIr: "99aabbccddeeff00", Local: "192.0.2.10:4500", Remote: "[2001:db8::1]:500",
		LocalID: "ue.example", RemoteID: "gw.example", Proposal: "aes128gcm16-prfsha256-x25519", Established: established,
		NATLocal: true, Encap: true, MOBIKE: true, VirtualIPs: []string{"10.99.0.2"}, PeerVirtualIPs: []string{},
		MOBIKEInitiator: true, Iface: "wlan0", PeerAddrs: []string{"2001:db8::1"}, Family: 1, Parent: 1, CloneSupported: true,
		Children: []Child{
			{Name: "net", State: "INSTALLED", Mode: "tunnel", InSPI: "c1a2b3c4", OutSPI: "0000f6a7", Proposal: "aes128gcm16",
				LocalTS: []string{"10.99.0.2"}, RemoteTS: []string{"10.20.0.0/24", "10.30.0.0/16[tcp/443]"},
				Encap: true, Outbound: true, Established: established},
			{Name: "mgmt", State: "REKEYED", Mode: "transport", InSPI: "00000001", OutSPI: "00000002",
				Proposal: "aes256-sha256-esn", LocalTS: []string{}, RemoteTS: []string{}},
		}}
	got := SAFromEngine(info)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SAFromEngine:\n got %+v\nwant %+v", got, want)
	}

	// Nothing is null in JSON, and an SA still connecting has no time.
	b, _ := json.Marshal(SAFromEngine(ike.IKESAInfo{ID: 9, State: ike.StateConnecting}))
	for _, want := range []string{`"children":[]`, `"virtual_ips":[]`, `"local":""`, `"spi_r":"0000000000000000"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON of a connecting SA lacks %s: %s", want, b)
		}
	}
	if strings.Contains(string(b), "null") || strings.Contains(string(b), "established") {
		t.Errorf("JSON of a connecting SA: %s", b)
	}
}

func TestEventFromEngine(t *testing.T) {
	for _, tc := range []struct {
		in   ike.Event
		want Event
	}{
		{ike.Event{Kind: ike.EventIKEUp, IKESA: 3, Conn: "home", Detail: "aes128gcm16-prfsha256-x25519"},
			Event{Kind: "ike-up", IKESA: 3, Conn: "home", Detail: "aes128gcm16-prfsha256-x25519"}},
		{ike.Event{Kind: ike.EventChildRekeyed, IKESA: 3, Conn: "home", Child: 0xc1a2b3c4, ChildName: "net", FromChild: 0xc1a2b3c0},
			Event{Kind: "child-rekeyed", IKESA: 3, Conn: "home", Child: "c1a2b3c4", ChildName: "net", FromChild: "c1a2b3c0"}},
		{ike.Event{Kind: ike.EventIKECloned, IKESA: 5, Conn: "home", From: 3},
			Event{Kind: "ike-cloned", IKESA: 5, Conn: "home", From: 3}},
		{ike.Event{Kind: ike.EventIKEFailed, IKESA: 4, Notify: wire.NotifyAuthenticationFailed},
			Event{Kind: "ike-failed", IKESA: 4, Notify: "AUTHENTICATION_FAILED"}},
		{ike.Event{Kind: 99}, Event{Kind: "event(99)"}},
	} {
		tc.want.Time = established
		if got := EventFromEngine(established, tc.in); got != tc.want {
			t.Errorf("EventFromEngine(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	// A real event never looks like a dropped marker.
	b, _ := json.Marshal(EventFromEngine(established, ike.Event{Kind: ike.EventIKEDown}))
	if strings.Contains(string(b), "dropped") {
		t.Errorf("event JSON %s", b)
	}
}

func TestConnFromEngine(t *testing.T) {
	ikeProps, _ := proposal.ParseIKEList("aes128gcm16-prfsha256-x25519,aes128-sha256-prfsha256-modp2048")
	esp, _ := proposal.ParseESPList("aes128gcm16,aes128-sha256")
	c := &ike.Connection{Name: "home", RemoteAddrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")},
		LocalID: ike.ID{Type: wire.IDFQDN, Data: []byte("ue.example")}, LocalAuth: ike.AuthPSK, RemoteAuth: ike.AuthPubkey,
		IKE: ikeProps, MOBIKE: true,
		Children: []*ike.ChildConfig{{Name: "net", ESP: esp, DynamicLocal: true, Mode: ike.Tunnel,
			RemoteTS: []wire.Selector{mustTS(t, "10.20.0.0/24")}}}}
	want := Conn{Name: "home", LocalAddrs: []string{}, RemoteAddrs: []string{"198.51.100.1"},
		LocalID: "ue.example", RemoteID: "%any", LocalAuth: "psk", RemoteAuth: "pubkey",
		Proposals: []string{"aes128gcm16-prfsha256-x25519", "aes128-sha256-prfsha256-modp2048"}, MOBIKE: true, SAs: 2,
		Children: []ConnChild{{Name: "net", LocalTS: []string{"dynamic"}, RemoteTS: []string{"10.20.0.0/24"},
			Proposals: []string{"aes128gcm16", "aes128-sha256"}, Mode: "tunnel"}}}
	if got := ConnFromEngine(c, 2); !reflect.DeepEqual(got, want) {
		t.Fatalf("ConnFromEngine:\n got %+v\nwant %+v", got, want)
	}
}
