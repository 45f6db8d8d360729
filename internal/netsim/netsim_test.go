package netsim

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
)

// The links carry what UDP would (RFC 3948 §2.2, §2.3): a node's IKE
// leaves its NAT-T port behind the non-ESP marker and its IKE port bare,
// a keepalive is the one octet 0xFF, and what arrives is sorted before
// the engine sees it: IKE without its marker, keepalives and what lacks
// the marker kept from it.
func TestWireFraming(t *testing.T) {
	n := New(1)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	na, err := n.AddNode("a", ike.Config{}, a)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := n.AddNode("b", ike.Config{}, b)
	if err != nil {
		t.Fatal(err)
	}
	var onWire [][]byte
	n.NAT = func(d ike.Datagram) ike.Datagram { // sees every datagram as the link carries it
		onWire = append(onWire, bytes.Clone(d.Data))
		return d
	}
	msg := bytes.Repeat([]byte{0x5a}, 40) // no IKE message: b's engine drops it
	from := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
	to := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(b, port) }
	na.Apply([]ike.Action{
		ike.Send{Datagram: ike.Datagram{Local: from(4500), Remote: to(4500), Data: msg}},
		ike.Send{Datagram: ike.Datagram{Local: from(500), Remote: to(500), Data: msg}},
		ike.SendKeepalive{Local: from(4500), Remote: to(4500)},
	})
	want := [][]byte{append([]byte{0, 0, 0, 0}, msg...), msg, {0xff}}
	if len(onWire) != len(want) {
		t.Fatalf("%d datagrams on the wire, want %d", len(onWire), len(want))
	}
	for i := range want {
		if !bytes.Equal(onWire[i], want[i]) {
			t.Errorf("datagram %d on the wire: %x, want %x", i, onWire[i], want[i])
		}
	}
	n.RunFor(time.Second)
	if got := nb.Engine.Stats().Dropped; got != 2 || nb.KeepalivesIn != 1 || nb.NotIKE != 0 {
		t.Fatalf("b's engine got %d datagrams, %d keepalives, %d not IKE; want 2, 1, 0", got, nb.KeepalivesIn, nb.NotIKE)
	}
	// Injected by hand: Inject frames for the port, InjectWire does not.
	// Without the marker on the NAT-T port it is ESP or too short for
	// either, never the engine's (it once checked for it itself).
	n.Inject(from(4500), to(4500), msg)
	n.InjectWire(from(4500), to(4500), msg)
	n.InjectWire(from(4500), to(4500), []byte{1, 2})
	n.InjectWire(from(500), to(500), append([]byte{0, 0, 0, 0}, msg...)) // bare port: the marker is taken as the message
	n.RunFor(time.Second)
	if got := nb.Engine.Stats().Dropped; got != 4 || nb.NotIKE != 2 {
		t.Fatalf("b's engine got %d datagrams, %d not IKE; want 4 and 2", got, nb.NotIKE)
	}
	if s := nb.Engine.Stats(); s.DroppedBy[ike.DropNoMarker] != 0 {
		t.Errorf("the engine counted %d datagrams without a marker: it never sees one", s.DroppedBy[ike.DropNoMarker])
	}
}
