package daemon

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ipsec"
)

// call asks the daemon behind the control socket at path, as the CLI does.
func call(t *testing.T, path, cmd string, out any) {
	t.Helper()
	c, err := control.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Call(cmd, nil, out); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
}

// within fails unless got lies in [from, to], give or take slack: the
// timers are armed on the event loop a moment after the time they count
// from was taken.
func within(t *testing.T, what string, got, from, to time.Time) {
	t.Helper()
	const slack = 2 * time.Second
	if got.Before(from.Add(-slack)) || got.After(to.Add(slack)) {
		t.Errorf("%s at %v, want between %v and %v (from establishment: %v, want %v to %v)", what, got.Format(time.RFC3339),
			from.Format(time.RFC3339), to.Format(time.RFC3339), got.Sub(from), time.Duration(0), to.Sub(from))
	}
}

// What swanctl's --list-sas, --list-pools, --list-certs and --stats show
// (issue 19), asked of the shipped certificate pair through the control
// socket once the end user is up: its lease in the gateway's pool under
// the identity its certificate proves, the certificates on both ends
// (the one the gateway verified being the end user's own), the lifetime
// timers as configured (RFC 7296 §2.8: rekey jittered below the soft
// lifetime), and the counters.
func TestStatusViewsOfExamplePair(t *testing.T) {
	const rekey, rnd, over = time.Hour, 6 * time.Minute, 10 * time.Minute
	// The gateway's Child SA goes into a data plane that counts, whose
	// counters the test sets as traffic would.
	plane := &fakePlane{sas: map[uint32]ike.ChildSA{}, ctr: map[uint32]*ipsec.Counters{}}
	gw, ue, dir := startExamplePair(t, "pubkey", map[string]any{"rekey_time": "1h", "rand_time": "6m", "over_time": "10m"},
		func(d *Daemon) { d.plane = plane })
	gwSock, ueSock := filepath.Join(dir, "gw.sock"), filepath.Join(dir, "ue.sock")
	ueSA, gwSA := ue.established()[0], gw.established()[0]
	lastIn, lastOut := time.Now().Add(-3*time.Second), time.Now().Add(-time.Second)
	gw.d.call(func() {
		c := plane.ctr[gwSA.Children[0].InSPI]
		if c == nil {
			t.Errorf("no Child SA %08x in the data plane", gwSA.Children[0].InSPI)
			return
		}
		c.BytesIn.Store(504)
		c.PacketsIn.Store(6)
		c.LastIn.Store(lastIn.UnixNano())
		c.BytesOut.Store(84)
		c.PacketsOut.Store(1)
		c.LastOut.Store(lastOut.UnixNano())
	})

	var sas []control.SA
	call(t, gwSock, "list-sas", &sas)
	if len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Fatalf("list-sas: %+v, want one IKE SA with one Child SA", sas)
	}
	sa, est := sas[0], sas[0].Established
	within(t, "IKE rekey", sa.RekeyAt, est.Add(rekey-rnd), est.Add(rekey))
	within(t, "IKE expiry", sa.ExpireAt, est.Add(rekey+over), est.Add(rekey+over))
	if !sa.ReauthAt.IsZero() {
		t.Errorf("reauthentication at %v, want none (no reauth_time)", sa.ReauthAt)
	}
	// The gateway's child: rekey_time 1h, so rand_time and the hard
	// lifetime's margin are a tenth of it (strongSwan's defaults).
	ch := sa.Children[0]
	within(t, "Child SA rekey", ch.RekeyAt, ch.Established.Add(54*time.Minute), ch.Established.Add(time.Hour))
	within(t, "Child SA expiry", ch.ExpireAt, ch.Established.Add(66*time.Minute), ch.Established.Add(66*time.Minute))
	if ch.BytesIn != 504 || ch.PacketsIn != 6 || ch.BytesOut != 84 || ch.PacketsOut != 1 || !ch.LastIn.Equal(lastIn) || !ch.LastOut.Equal(lastOut) {
		t.Errorf("Child SA traffic: in %d B, %d packets, last %v; out %d B, %d packets, last %v; want the data plane's 504, 6, %v; 84, 1, %v",
			ch.BytesIn, ch.PacketsIn, ch.LastIn, ch.BytesOut, ch.PacketsOut, ch.LastOut, lastIn, lastOut)
	}

	var pools []control.Pool
	call(t, gwSock, "list-pools", &pools)
	want := control.Pool{Name: "roadwarriors", Prefix: "10.99.0.0/24", First: "10.99.0.2", Last: "10.99.0.254", Size: 253, Online: 1,
		Leases: []control.Lease{{Addr: ueSA.VirtualIPs[0].String(), Identity: gwSA.RemoteID, Conn: gwSA.Conn, IKESAs: []uint64{gwSA.ID}}}}
	if len(pools) != 1 || !samePool(pools[0], want) {
		t.Fatalf("list-pools: %+v, want %+v", pools, want)
	}
	if gwSA.RemoteID != "laptop.example.org" && gwSA.RemoteID != "@laptop.example.org" {
		t.Errorf("the lease's identity %q is not the end user's", gwSA.RemoteID)
	}

	var gwCerts, ueCerts []control.Cert
	call(t, gwSock, "list-certs", &gwCerts)
	call(t, ueSock, "list-certs", &ueCerts)
	uses := func(l []control.Cert, u control.CertUse) []control.Cert {
		var out []control.Cert
		for _, c := range l {
			if slices.Contains(c.Uses, u) {
				out = append(out, c)
			}
		}
		return out
	}
	laptop := uses(ueCerts, control.CertUse{As: "local", Conn: ueSA.Conn})
	peer := uses(gwCerts, control.CertUse{As: "peer", Conn: gwSA.Conn, IKESA: gwSA.ID})
	own := uses(gwCerts, control.CertUse{As: "local", Conn: gwSA.Conn})
	ca := uses(gwCerts, control.CertUse{As: "cacert", Conn: gwSA.Conn})
	if len(laptop) != 1 || len(peer) != 1 || len(own) != 1 || len(ca) != 1 {
		t.Fatalf("gateway's certificates %+v, end user's %+v: want one of each use", gwCerts, ueCerts)
	}
	if peer[0].SHA256 != laptop[0].SHA256 || !slices.Contains(peer[0].SANs, "laptop.example.org") {
		t.Errorf("the gateway verified %+v, want the end user's own %+v", peer[0], laptop[0])
	}
	if !ca[0].CA || own[0].CA || own[0].Issuer != ca[0].Subject || peer[0].Issuer != ca[0].Subject {
		t.Errorf("CA %+v, gateway %+v, peer %+v: want the CA to have issued both", ca[0], own[0], peer[0])
	}
	if len(own[0].SHA256) != 64 || own[0].Serial == "" || own[0].KeyType == "" || !own[0].NotAfter.After(time.Now()) {
		t.Errorf("gateway certificate %+v: fingerprint, serial, key type or validity missing", own[0])
	}

	var st control.Stats
	call(t, gwSock, "stats", &st)
	if st.Version != Version || st.Uptime <= 0 || st.Goroutines <= 0 || st.HeapInUse == 0 || st.Sys < st.HeapInUse {
		t.Errorf("stats: version %q, uptime %v, goroutines %d, heap %d of %d", st.Version, st.Uptime, st.Goroutines, st.HeapInUse, st.Sys)
	}
	if st.IKESAs != 1 || st.IKEByState["ESTABLISHED"] != 1 || st.IKEByState["CONNECTING"] != 0 || st.ChildSAs != 1 || st.Connections != 1 {
		t.Errorf("stats: %d IKE SAs %v, %d Child SAs, %d connections; want one established, one child, one connection",
			st.IKESAs, st.IKEByState, st.ChildSAs, st.Connections)
	}
	if st.ESPBytesIn != 504 || st.ESPPacketsIn != 6 || st.ESPBytesOut != 84 || st.ESPPacketsOut != 1 {
		t.Errorf("stats: ESP in %d B (%d packets), out %d B (%d packets); want the Child SA's", st.ESPBytesIn, st.ESPPacketsIn, st.ESPBytesOut, st.ESPPacketsOut)
	}
	if st.Exchanges["IKE_SA_INIT"] == 0 || st.Exchanges["IKE_AUTH"] == 0 {
		t.Errorf("stats: exchanges %v, want IKE_SA_INIT and IKE_AUTH counted", st.Exchanges)
	}
}

func samePool(a, b control.Pool) bool {
	return a.Name == b.Name && a.Prefix == b.Prefix && a.First == b.First && a.Last == b.Last && a.Size == b.Size && a.Online == b.Online &&
		slices.EqualFunc(a.Leases, b.Leases, func(x, y control.Lease) bool {
			return x.Addr == y.Addr && x.Identity == y.Identity && x.Conn == y.Conn && slices.Equal(x.IKESAs, y.IKESAs)
		})
}
