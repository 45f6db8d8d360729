package ike_test

import (
	"crypto/rand"
	"crypto/x509"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/dataplane"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/wire"
)

// pair drives two engines by handing each one's datagrams straight to the
// other: no simulated network, so benchmarks measure the engines alone.
type pair struct {
	ue, gw *ike.Engine
	now    time.Time
	// ueConfig made ue: a benchmark may make a fresh initiator.
	ueConfig ike.Config
}

func newPair(tb testing.TB, mutate func(ue, gw *ike.Connection)) *pair {
	return newPairLog(tb, mutate, nil)
}

// newPairLog is newPair with gwLog (nil: none) as the gateway's logger.
func newPairLog(tb testing.TB, mutate func(ue, gw *ike.Connection), gwLog *slog.Logger) *pair {
	ueConn, gwConn := configs(tb)
	gwConn.Pools = nil
	ueConn.RequestVIP4 = false
	ueConn.SendInitialContact = false
	ueConn.Children[0].DynamicLocal, ueConn.Children[0].LocalTS = false, []wire.Selector{sel(tb, "10.30.0.0/16")}
	gwConn.Children[0].DynamicRemote, gwConn.Children[0].RemoteTS = false, []wire.Selector{sel(tb, "10.30.0.0/16")}
	if mutate != nil {
		mutate(ueConn, gwConn)
	}
	ueConfig := ike.Config{Connections: []*ike.Connection{ueConn}, Rand: rand.Reader, MaxHalfOpen: 1 << 20, MaxIKESAs: 1 << 20}
	ue, err := ike.New(ueConfig)
	if err != nil {
		tb.Fatal(err)
	}
	gw, err := ike.New(ike.Config{Connections: []*ike.Connection{gwConn}, Rand: rand.Reader, MaxHalfOpen: 1 << 20, MaxIKESAs: 1 << 20, CookieThreshold: 1 << 20,
		Logger: gwLog})
	if err != nil {
		tb.Fatal(err)
	}
	return &pair{ue: ue, gw: gw, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ueConfig: ueConfig}
}

// run delivers datagrams back and forth until neither side sends.
func (p *pair) run(acts []ike.Action, fromUE bool) { p.runWith(acts, fromUE, nil) }

// runWith is run, handing the gateway's actions to gwAct (nil: none).
func (p *pair) runWith(acts []ike.Action, fromUE bool, gwAct func(ike.Action)) {
	for {
		var next []ike.Action
		for _, a := range acts {
			if !fromUE && gwAct != nil {
				gwAct(a)
			}
			s, ok := a.(ike.Send)
			if !ok {
				continue
			}
			d := ike.Datagram{Local: s.Remote, Remote: s.Local, Data: s.Data}
			if fromUE {
				next = append(next, p.gw.Receive(p.now, d)...)
			} else {
				next = append(next, p.ue.Receive(p.now, d)...)
			}
		}
		if len(next) == 0 {
			return
		}
		acts, fromUE = next, !fromUE
	}
}

func (p *pair) handshake(tb testing.TB) {
	_, acts, err := p.ue.Initiate(p.now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(ueAddr, 500)})
	if err != nil {
		tb.Fatal(err)
	}
	p.run(acts, true)
}

func benchHandshakes(b *testing.B, mutate func(ue, gw *ike.Connection)) {
	p := newPair(b, mutate)
	p.handshake(b)
	if len(p.gw.IKESAs()) != 1 || len(p.gw.IKESAs()[0].Children) != 1 {
		b.Fatalf("handshake did not complete: %+v", p.gw.IKESAs())
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if n++; n%2000 == 0 {
			b.StopTimer()
			p = newPair(b, mutate) // keep the SA tables from growing without bound
			b.StartTimer()
		}
		p.handshake(b)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

// BenchmarkHandshakePSK: IKE_SA_INIT + IKE_AUTH with the first Child SA,
// PSK, x25519, AES-GCM-128; both engines' CPU together per handshake.
func BenchmarkHandshakePSK(b *testing.B) { benchHandshakes(b, nil) }

// BenchmarkHandshakeECDSA: the same with ECDSA P-256 certificates
// (RFC 7427 signatures, chain validation on both sides).
func BenchmarkHandshakeECDSA(b *testing.B) {
	p := newPKI(b)
	ueKey, gwKey := newKey(b, "p256"), newKey(b, "p256")
	ueCert, gwCert := p.issue(b, ueKey, "ue", "ue.example"), p.issue(b, gwKey, "gw", "gw.example")
	benchHandshakes(b, func(ue, gw *ike.Connection) {
		for _, x := range []*ike.Connection{ue, gw} {
			x.LocalAuth, x.RemoteAuth, x.PSK, x.CAs = ike.AuthPubkey, ike.AuthPubkey, nil, []*x509.Certificate{p.ca}
		}
		ue.Key, ue.Certs = ueKey, []*x509.Certificate{ueCert}
		gw.Key, gw.Certs = gwKey, []*x509.Certificate{gwCert}
	})
}

// BenchmarkMemoryPerSA establishes 10,000 IKE SAs with one Child SA each
// and reports the responder's heap per SA (engine state only; the data
// plane is not part of it).
func BenchmarkMemoryPerSA(b *testing.B) {
	const n = 10000
	for b.Loop() {
		p := newPair(b, nil)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < n; i++ {
			p.handshake(b)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := len(p.gw.IKESAs()); got != n {
			b.Fatalf("%d SAs", got)
		}
		// Both engines hold n SAs: this is the average per SA and side.
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(2*n), "bytes/SA/side")
		runtime.KeepAlive(p)
	}
}

var memSAs = flag.Int("mem.sas", 10000, "IKE SAs BenchmarkResponderMemory holds")

var heapProfile = flag.String("mem.heap", "", "BenchmarkResponderMemory writes the heap in use, with every SA held, to this file (for go tool pprof)")

// BenchmarkResponderMemory is the in-process twin of "mifike bench
// scale": a responder engine holding n IKE SAs, each with one Child SA
// installed in the userspace data plane (as the daemon installs it),
// and its live heap per SA after a full GC. The initiator is replaced
// every 500 handshakes so that the heap is nearly all the responder's.
// -mem.heap FILE writes the heap profile taken while the SAs are held.
func BenchmarkResponderMemory(b *testing.B) {
	n := *memSAs
	if *heapProfile != "" {
		// Every allocation sampled: the profile then adds up to the heap.
		defer func(r int) { runtime.MemProfileRate = r }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	for b.Loop() {
		p := newPair(b, nil)
		plane := dataplane.New(dataplane.Config{})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < n; i++ {
			if i%500 == 0 {
				ue, err := ike.New(p.ueConfig)
				if err != nil {
					b.Fatal(err)
				}
				p.ue = ue
			}
			_, acts, err := p.ue.Initiate(p.now, ike.InitiateOptions{Conn: "home", Local: netip.AddrPortFrom(ueAddr, 500)})
			if err != nil {
				b.Fatal(err)
			}
			p.runWith(acts, true, func(a ike.Action) {
				if x, ok := a.(ike.InstallChild); ok {
					if err := plane.Install(x.SA); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		p.ue = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := len(p.gw.IKESAs()); got != n {
			b.Fatalf("%d SAs", got)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-bytes/SA")
		// Once the half-open deadlines (30 s) have passed, their cancelled
		// timers leave the timer heap: what a gateway holds in the long run.
		p.gw.Tick(p.now.Add(31 * time.Second))
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := len(p.gw.IKESAs()); got != n {
			b.Fatalf("%d SAs after 31 s", got)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-bytes/SA-after-30s")
		if *heapProfile != "" {
			f, err := os.Create(*heapProfile)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		runtime.KeepAlive(p)
		runtime.KeepAlive(plane)
	}
}
