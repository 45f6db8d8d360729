package daemon

import (
	"log/slog"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ipsec"
)

// fakePlane records what the daemon asks of the data plane; with ctr
// set, it counts each installed SA's traffic there (fresh counters per
// Install, as a real plane's).
type fakePlane struct {
	sas map[uint32]ike.ChildSA
	ctr map[uint32]*ipsec.Counters
}

func (p *fakePlane) Install(sa ike.ChildSA) error {
	p.sas[sa.InSPI] = sa
	if p.ctr != nil {
		p.ctr[sa.InSPI] = new(ipsec.Counters)
	}
	return nil
}
func (p *fakePlane) Update(sa ike.ChildSA) error { p.sas[sa.InSPI] = sa; return nil }
func (p *fakePlane) Delete(spi uint32)           { delete(p.sas, spi); delete(p.ctr, spi) }
func (p *fakePlane) Counters(spi uint32) *ipsec.Counters {
	if p.ctr == nil {
		return nil
	}
	return p.ctr[spi]
}
func (p *fakePlane) Owns(string) bool         { return false }
func (p *fakePlane) Drops() map[string]uint64 { return nil }
func (p *fakePlane) Close() error             { return nil }

// RFC 7296 §2.8: a Child SA a rekey replaced stops sending at once but
// keeps receiving for retireRekeyed (packets the peer sent on it just
// before it deleted it are still on their way); a deleted one goes at
// once; a new SA with the same inbound SPI wins over a retiring one.
func TestRekeyedChildSAReceivesForAWhile(t *testing.T) {
	p := &fakePlane{sas: map[uint32]ike.ChildSA{}}
	d := &Daemon{plane: p, log: slog.New(slog.DiscardHandler), children: map[uint32]childRec{}, retiring: map[uint32]retiring{}}
	sa := func(spi uint32) ike.ChildSA { return ike.ChildSA{InSPI: spi, OutSPI: spi + 1, Outbound: true} }
	d.apply([]ike.Action{ike.InstallChild{SA: sa(0x100)}, ike.InstallChild{SA: sa(0x200)}, ike.InstallChild{SA: sa(0x300)}})
	d.apply([]ike.Action{ike.InstallChild{SA: sa(0x101)}, ike.DeleteChild{InSPI: 0x100, Successor: 0x101}, ike.DeleteChild{InSPI: 0x200}})
	if s, ok := p.sas[0x100]; !ok || s.Outbound {
		t.Fatalf("the rekeyed SA: installed %v, sending %v; want receiving only", ok, s.Outbound)
	}
	if _, ok := p.sas[0x200]; ok {
		t.Fatal("the deleted SA is still in the data plane")
	}
	if _, ok := d.children[0x100]; ok {
		t.Fatal("the rekeyed SA still counts as a live Child SA")
	}
	d.retire(time.Now().Add(retireRekeyed / 2))
	if _, ok := p.sas[0x100]; !ok {
		t.Fatal("the rekeyed SA went before its grace period ended")
	}
	d.retire(time.Now().Add(retireRekeyed + time.Second))
	if _, ok := p.sas[0x100]; ok {
		t.Fatal("the rekeyed SA is still there after its grace period")
	}
	// The engine hands the SPI out again while the old SA still retires:
	// the new one stays.
	d.apply([]ike.Action{ike.DeleteChild{InSPI: 0x300, Successor: 0x301}, ike.InstallChild{SA: sa(0x300)}})
	d.retire(time.Now().Add(retireRekeyed + time.Second))
	if s, ok := p.sas[0x300]; !ok || !s.Outbound {
		t.Fatal("the grace period of an old SA removed the new SA with its SPI")
	}
	// A VPN deleted for good (a terminated clone) takes the SAs it
	// replaced, and theirs, with it at once: its inner address and routes
	// go now, not seconds later (found by the 30-minute endurance run).
	d.apply([]ike.Action{ike.InstallChild{SA: sa(0x400)}, ike.InstallChild{SA: sa(0x401)}, ike.InstallChild{SA: sa(0x402)},
		ike.DeleteChild{InSPI: 0x400, Successor: 0x401}, ike.DeleteChild{InSPI: 0x401, Successor: 0x402}})
	if _, ok := p.sas[0x400]; !ok {
		t.Fatal("a rekeyed SA went before its grace period ended")
	}
	d.apply([]ike.Action{ike.DeleteChild{InSPI: 0x402}})
	for _, spi := range []uint32{0x400, 0x401, 0x402} {
		if _, ok := p.sas[spi]; ok {
			t.Errorf("%08x still in the data plane after its VPN was deleted", spi)
		}
	}
	if len(d.retiring) != 0 {
		t.Errorf("still retiring: %v", d.retiring)
	}
}
