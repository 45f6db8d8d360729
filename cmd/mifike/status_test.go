package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
)

// The fixed views of the stand-in daemon (ctl_test.go).

func (b *ctlBackend) ListPools() ([]control.Pool, error) {
	return []control.Pool{
		{Name: "rw", Prefix: "10.99.0.0/24", First: "10.99.0.2", Last: "10.99.0.254", Size: 253, Online: 2, Leases: []control.Lease{
			{Addr: "10.99.0.2", Identity: "laptop.example.org", Conn: "rw-cert", IKESAs: []uint64{3, 5}},
			{Addr: "10.99.0.3", Identity: "CN=phone, O=Example", Conn: "rw-cert", IKESAs: []uint64{4}}}},
		{Name: "rw6", Prefix: "fd00:99::/64", First: "fd00:99::2", Last: "fd00:99::ffff:ffff:ffff:ffff", Size: 1<<32 - 2, Leases: []control.Lease{}},
	}, nil
}

func (b *ctlBackend) ListCerts() ([]control.Cert, error) {
	now := time.Now()
	return []control.Cert{
		{Subject: "CN=vpn.example.org", Issuer: "CN=Example CA", SANs: []string{"vpn.example.org"}, Serial: "01:ab",
			NotBefore: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), NotAfter: now.Add(12*24*time.Hour + time.Hour),
			KeyType: "ECDSA P-256", SHA256: strings.Repeat("ab", 32), Uses: []control.CertUse{{As: "local", Conn: "rw-cert"}}},
		{Subject: "CN=Example CA", Issuer: "CN=Example CA", SANs: []string{}, Serial: "05",
			NotBefore: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), NotAfter: now.Add(400*24*time.Hour + time.Hour),
			KeyType: "RSA 3072", CA: true, SHA256: strings.Repeat("cd", 32), Uses: []control.CertUse{{As: "cacert", Conn: "rw-cert"}}},
		{Subject: "CN=laptop.example.org", Issuer: "CN=Example CA", SANs: []string{"laptop.example.org"}, Serial: "02",
			NotBefore: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), NotAfter: now.Add(-3*24*time.Hour - time.Hour),
			KeyType: "Ed25519", SHA256: strings.Repeat("ef", 32), Uses: []control.CertUse{{As: "peer", Conn: "rw-cert", IKESA: 3}}},
	}, nil
}

func (b *ctlBackend) Stats() (control.Stats, error) {
	return control.Stats{Version: "1.2.3", Started: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), Uptime: 3*3600 + 12*60 + 5, Goroutines: 42,
		IKESAs: 3, IKEByState: map[string]int{"CONNECTING": 1, "ESTABLISHED": 2, "REKEYED": 0, "DELETING": 0},
		ChildSAs: 2, ChildStates: map[string]int{"INSTALLED": 2, "REKEYING": 0}, Connections: 2,
		Exchanges: map[string]uint64{"IKE_SA_INIT": 4, "IKE_AUTH": 3, "INFORMATIONAL": 0}, Retransmissions: 5, CookiesSent: 1,
		Dropped: map[string]uint64{"unknown-spi": 2}, NotifiesSent: map[string]uint64{"COOKIE": 1}, NotifiesRecv: map[string]uint64{},
		ESPBytesIn: 3 << 20, ESPPacketsIn: 2500, ESPBytesOut: 1, ESPPacketsOut: 1, DataPlaneDrops: map[string]uint64{},
		HeapInUse: 12 << 20, Sys: 45 << 20}, nil
}

// list-sas shows the lifetime timers and how long ago the last packet
// went each way, as swanctl --list-sas does.
func TestListSAsTimersAndLastTraffic(t *testing.T) {
	now := time.Now()
	b := &ctlBackend{sas: []control.SA{{ID: 3, Conn: "home", State: ike.StateEstablished, Initiator: true,
		SPIi: "1122334455667788", SPIr: "99aabbccddeeff00", Local: "192.0.2.10:4500", Remote: "198.51.100.1:4500",
		Established: now.Add(-11 * time.Second), RekeyAt: now.Add(3*time.Hour + 52*time.Minute + 30*time.Second),
		ExpireAt: now.Add(4*time.Hour + 16*time.Minute + 30*time.Second),
		Children: []control.Child{{Name: "net", State: "INSTALLED", Mode: "tunnel", InSPI: "c1a2b3c4", OutSPI: "d4e5f6a7",
			Proposal: "aes128gcm16", LocalTS: []string{"10.99.0.2"}, RemoteTS: []string{"10.20.0.0/24"}, Outbound: true,
			BytesIn: 504, PacketsIn: 6, LastIn: now.Add(-2800 * time.Millisecond), BytesOut: 84, PacketsOut: 1,
			RekeyAt: now.Add(55*time.Minute + 30400*time.Millisecond), ExpireAt: now.Add(time.Hour + 5*time.Minute + 30*time.Second)}}}}}
	r := runCtl("list-sas", "-s", startDaemon(t, b))
	r.check(t, 0, []string{
		"  SPIs 1122334455667788_i* 99aabbccddeeff00_r\n  rekeying in 3h52m, expires in 4h16m\n",
		"    in 504 B (6 packets, 3s ago), out 84 B (1 packet)\n",
		"    rekeying in 55m30s, expires in 1h05m\n",
	}, nil)
	if strings.Contains(r.stdout, "reauth") {
		t.Errorf("a reauthentication that is not scheduled is shown:\n%s", r.stdout)
	}
	t.Logf("list-sas:\n%s", r.stdout)
}

func TestListPools(t *testing.T) {
	sock := startDaemon(t, &ctlBackend{})
	r := runCtl("list-pools", "-s", sock)
	r.check(t, 0, []string{
		"rw: 10.99.0.0/24 (10.99.0.2 - 10.99.0.254), 2 of 253 leased\n",
		"rw6: fd00:99::/64 (fd00:99::2 - fd00:99::ffff:ffff:ffff:ffff), 0 of 4294967294 leased\n",
	}, nil)
	if strings.Contains(r.stdout, "laptop") {
		t.Errorf("leases listed without --leases:\n%s", r.stdout)
	}
	r = runCtl("list-pools", "--leases", "-s", sock)
	r.check(t, 0, []string{
		"rw: 10.99.0.0/24 (10.99.0.2 - 10.99.0.254), 2 of 253 leased\n" +
			"  10.99.0.2       online  laptop.example.org (rw-cert) [3] [5]\n" +
			"  10.99.0.3       online  CN=phone, O=Example (rw-cert) [4]\nrw6:",
	}, nil)
	t.Logf("list-pools --leases:\n%s", r.stdout)

	var pools []control.Pool
	r = runCtl("list-pools", "--json", "-s", sock)
	if err := json.Unmarshal([]byte(r.stdout), &pools); err != nil || len(pools) != 2 || pools[0].Online != 2 ||
		len(pools[0].Leases) != 2 || pools[0].Leases[0].IKESAs[1] != 5 || pools[1].Leases == nil {
		t.Fatalf("list-pools --json: %v, %+v: want both pools with their leases", err, pools)
	}
}

// A certificate that ends within 30 days, or has ended, is marked.
func TestListCerts(t *testing.T) {
	sock := startDaemon(t, &ctlBackend{})
	r := runCtl("list-certs", "-s", sock)
	r.check(t, 0, []string{
		"CN=vpn.example.org (local of rw-cert)\n  issuer   CN=Example CA\n  SANs     vpn.example.org\n  serial   01:ab\n  valid    2025-03-01 00:00:00 to ",
		" UTC, ! expires in 12 days\n  key      ECDSA P-256\n  sha256   " + strings.Repeat("ab", 32) + "\n",
		"CN=Example CA (cacert of rw-cert)\n  issuer   CN=Example CA\n  serial   05\n",
		", expires in 400 days\n  key      RSA 3072, CA\n",
		"CN=laptop.example.org (peer of rw-cert[3])\n",
		"UTC, ! expired 3 days ago\n  key      Ed25519\n",
	}, nil)
	t.Logf("list-certs:\n%s", r.stdout)
	var certs []control.Cert
	r = runCtl("list-certs", "--json", "-s", sock)
	if err := json.Unmarshal([]byte(r.stdout), &certs); err != nil || len(certs) != 3 || certs[2].Uses[0].IKESA != 3 {
		t.Fatalf("list-certs --json: %v: %s", err, r.stdout)
	}
}

func TestStats(t *testing.T) {
	sock := startDaemon(t, &ctlBackend{})
	r := runCtl("stats", "-s", sock)
	r.check(t, 0, []string{
		"mifike 1.2.3, up 3h12m (since 2026-12-03 12:00:00 UTC), 42 goroutines\n",
		"memory: heap 12.0 MiB in use, 45.0 MiB from the system\n",
		"IKE SAs: 3 total, 1 half-open, 0 DELETING, 2 ESTABLISHED, 0 REKEYED\n",
		"Child SAs: 2 total, 2 INSTALLED, 0 REKEYING\n",
		"exchanges: IKE_AUTH 3, IKE_SA_INIT 4\n",
		"retransmissions 5, cookies sent 1,",
		"dropped: unknown-spi 2\n",
		"notifies sent: COOKIE 1\nnotifies received: none\n",
		"ESP: in 3.0 MiB (2500 packets), out 1 B (1 packet)\n",
	}, nil)
	t.Logf("stats:\n%s", r.stdout)
	var st control.Stats
	r = runCtl("stats", "--json", "-s", sock)
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Goroutines != 42 || st.IKEByState["ESTABLISHED"] != 2 {
		t.Fatalf("stats --json: %v: %s", err, r.stdout)
	}
}

// mifike stats shows each spreading target's weight with what made it:
// configured × path factor and the path measured, or the weight alone
// when measured weighting is off.
func TestStatsSpreadTargets(t *testing.T) {
	var b strings.Builder
	writeStats(&b, control.Stats{Spread: []control.SpreadTarget{
		{Conn: "office", Addr: netip.MustParseAddr("10.99.0.2"), Iface: "eth0", Weight: 16, Configured: 1, Factor: 16, Measured: true, RTTMs: 1.2},
		{Conn: "office", Addr: netip.MustParseAddr("10.99.0.3"), Iface: "wlan0", Weight: 3, Configured: 1, Factor: 3, Measured: true, RTTMs: 88.1, Loss: 0.02},
		{Conn: "home", Addr: netip.MustParseAddr("10.98.0.2"), Iface: "eth0", Weight: 2, Configured: 2},
	}})
	for _, want := range []string{
		"flow spreading (new flows by weight):",
		"office: 10.99.0.2 on eth0, weight 16 = 1 × 16/16 (rtt 1.2 ms, loss 0.0%)",
		"office: 10.99.0.3 on wlan0, weight 3 = 1 × 3/16 (rtt 88.1 ms, loss 2.0%)",
		"home: 10.98.0.2 on eth0, weight 2\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("stats without %q:\n%s", want, b.String())
		}
	}
}
