package daemon

import (
	"crypto/x509"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// The views a strongSwan administrator knows from swanctl --list-pools,
// --list-certs and --stats (control.StatusBackend, issue 19).

var _ control.StatusBackend = backend{}

// unixNano is a data plane's Unix nanosecond time (ipsec.Counters), zero
// for none yet.
func unixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// ListPools lists the configured pools in file order, each with its
// leases and the IKE SAs holding them.
func (b backend) ListPools() ([]control.Pool, error) {
	var out []control.Pool
	b.d.call(func() {
		holders := map[netip.Addr][]uint64{}
		for _, s := range b.d.engine.IKESAs() {
			for _, a := range s.PeerVirtualIPs {
				holders[a] = append(holders[a], s.ID)
			}
		}
		for _, pc := range b.d.cfg.Pools {
			p := b.d.pools.ByName[pc.Name]
			if p == nil {
				continue
			}
			first, last := poolRange(p.Prefix)
			v := control.Pool{Name: p.Name, Prefix: p.Prefix.String(), First: first.String(), Last: last.String(),
				Size: p.Size(), Leases: []control.Lease{}}
			for _, l := range p.Leased() {
				ids := holders[l.Addr]
				if ids == nil {
					ids = []uint64{}
				}
				v.Leases = append(v.Leases, control.Lease{Addr: l.Addr.String(), Identity: l.Identity, Conn: l.Conn, IKESAs: ids})
			}
			v.Online = len(v.Leases)
			out = append(out, v)
		}
	})
	return out, nil
}

// poolRange is the first and last address a pool of prefix hands out
// (ike.Pool: the network address and the first host are kept back, and
// for IPv4 the broadcast address).
func poolRange(p netip.Prefix) (first, last netip.Addr) {
	a := p.Addr().AsSlice()
	for i := range a {
		for bit := range 8 {
			if i*8+bit >= p.Bits() {
				a[i] |= 0x80 >> bit
			}
		}
	}
	last, _ = netip.AddrFromSlice(a)
	if last.Is4() {
		last = last.Prev()
	}
	return p.Addr().Next().Next(), last
}

// ListCerts lists every certificate the daemon holds, once each with all
// its uses: our own (and the chain we send with it), the CAs trusted for
// each connection's peers, and the certificates peers of established
// IKE SAs authenticated with.
func (b backend) ListCerts() ([]control.Cert, error) {
	var out []control.Cert
	b.d.call(func() {
		byHash := map[string]int{}
		add := func(c *x509.Certificate, use control.CertUse) {
			v := control.CertFromX509(c)
			i, ok := byHash[v.SHA256]
			if !ok {
				i = len(out)
				byHash[v.SHA256] = i
				out = append(out, v)
			}
			if !slices.Contains(out[i].Uses, use) {
				out[i].Uses = append(out[i].Uses, use)
			}
		}
		for _, c := range b.d.conns {
			for i, cert := range c.Certs {
				as := "chain"
				if i == 0 {
					as = "local"
				}
				add(cert, control.CertUse{As: as, Conn: c.Name})
			}
			// EAP-TLS: the certificate is the EAP method's (config.Build
			// moves it there).
			if c.EAP != nil && c.EAP.Certificate != nil {
				for i, der := range c.EAP.Certificate.Certificate {
					if cert, err := x509.ParseCertificate(der); err == nil {
						as := "chain"
						if i == 0 {
							as = "local"
						}
						add(cert, control.CertUse{As: as, Conn: c.Name})
					}
				}
			}
			for _, ca := range c.CAs {
				add(ca, control.CertUse{As: "cacert", Conn: c.Name})
			}
		}
		for _, s := range b.d.engine.IKESAs() {
			if s.PeerCert != nil {
				add(s.PeerCert, control.CertUse{As: "peer", Conn: s.Conn, IKESA: s.ID})
			}
		}
	})
	return out, nil
}

// Stats is the daemon's state and counters: those the metrics endpoint
// exports (metrics.go), for a daemon that has none, and the process's.
func (b backend) Stats() (control.Stats, error) {
	d := b.d
	st := control.Stats{Version: Version, IKEByState: map[string]int{}, ChildStates: map[string]int{},
		Exchanges: map[string]uint64{}, Dropped: map[string]uint64{}, NotifiesSent: map[string]uint64{},
		NotifiesRecv: map[string]uint64{}, DataPlaneDrops: map[string]uint64{}}
	d.call(func() {
		st.Started = d.started
		for _, s := range ike.ListedStates() {
			st.IKEByState[s.String()] = 0
		}
		for _, s := range ike.ListedChildStates() {
			st.ChildStates[s] = 0
		}
		for _, s := range d.engine.IKESAs() {
			st.IKESAs++
			st.IKEByState[s.State.String()]++
			for _, c := range s.Children {
				st.ChildSAs++
				st.ChildStates[c.State]++
			}
		}
		st.Connections = len(d.conns)
		es := d.engine.Stats()
		for x, n := range es.Exchanges {
			st.Exchanges[x.String()] = n
		}
		// The engine's drops and the socket readers', as in the metrics.
		for r, n := range es.DroppedBy {
			if n += d.rxStats.drops[r].Load(); n > 0 {
				st.Dropped[r.String()] = n
			}
		}
		for t, n := range es.NotifiesSent {
			st.NotifiesSent[t.String()] = n
		}
		for t, n := range es.NotifiesRecv {
			st.NotifiesRecv[t.String()] = n
		}
		st.Retransmissions, st.CookiesSent = es.Retransmissions, es.NotifiesSent[wire.NotifyCookie]
		st.LivenessChecks, st.DeadPeers, st.TCPFallbacks = es.LivenessChecks, es.DeadPeers, es.TCPFallbacks
		st.SendErrors = d.stats.sendErrors
		if d.tcp != nil {
			st.TCPStreams = int(d.tcp.Stats().Open)
		}
		st.MPTCP = d.mptcpEndpoints()
		st.Spread = d.spreadTargets()
		if d.plane != nil {
			_, total := d.espTraffic()
			st.ESPBytesIn, st.ESPBytesOut, st.ESPPacketsIn, st.ESPPacketsOut = total.bytesIn, total.bytesOut, total.packetsIn, total.packetsOut
			for r, n := range d.plane.Drops() {
				st.DataPlaneDrops[r] = n
			}
		}
	})
	if !st.Started.IsZero() {
		st.Uptime = time.Since(st.Started).Seconds()
	}
	st.Goroutines = runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapInUse, st.Sys = ms.HeapInuse, ms.Sys
	return st, nil
}
