package ike_test

import (
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/netsim"
	"github.com/mifike/mifike/internal/wire"
)

// fragLab is the road-warrior lab with RSA certificates, whose IKE_AUTH
// messages (certificate, RSA signature) are well over 1 kB, on a path
// that carries IP datagrams of at most mtu octets whole and drops IP
// fragments. ueFrag and gwFrag say which sides offer IKE fragmentation.
func fragLab(t *testing.T, seed uint64, ueFrag, gwFrag bool, mtu int, more func(ue, gw *ike.Connection)) *lab {
	p := newPKI(t)
	ueKey, gwKey := newKey(t, "rsa"), newKey(t, "rsa")
	ueCert, gwCert := p.issue(t, ueKey, "ue", "ue.example"), p.issue(t, gwKey, "gw", "gw.example")
	l := newLab(t, seed, func(ue, gw *ike.Connection, _, _ *ike.Config) {
		for _, x := range []*ike.Connection{ue, gw} {
			x.LocalAuth, x.RemoteAuth, x.PSK, x.CAs = ike.AuthPubkey, ike.AuthPubkey, nil, []*x509.Certificate{p.ca}
		}
		ue.Key, ue.Certs = ueKey, []*x509.Certificate{ueCert}
		gw.Key, gw.Certs = gwKey, []*x509.Certificate{gwCert}
		ue.Fragmentation, gw.Fragmentation = ueFrag, gwFrag
		if more != nil {
			more(ue, gw)
		}
	})
	l.net.SetLink(ueAddr, gwAddr, netsim.Link{Delay: 10 * time.Millisecond, MTU: mtu})
	return l
}

// sizes records every IKE datagram each node sends: its size, and
// whether it is an IKE fragment (an SKF payload first).
type sizes struct {
	largest   map[string]int
	fragments map[string]int
}

func watchSizes(l *lab) *sizes {
	s := &sizes{largest: map[string]int{}, fragments: map[string]int{}}
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		b := d.Data
		if len(b) >= 28 {
			s.largest[from.Name] = max(s.largest[from.Name], m.Wire) // with any marker
			if wire.PayloadType(b[16]) == wire.PayloadSKF {
				s.fragments[from.Name]++
			}
		}
		return netsim.Deliver
	}
	return s
}

// RFC 7383 §2.3, §2.4, §2.5: on a path that drops IP fragments, IKE_AUTH
// with certificates passes when both sides offer IKE fragmentation: both
// cut their messages into fragments that fit the path's default size
// for IPv4 (576 octets, §2.5.1), each protected on its own; the peer
// reassembles them. Without it, or with only one side offering it, the
// same IKE_AUTH never arrives.
func TestRFC7383Section2_4FragmentsPassAPathDroppingIPFragments(t *testing.T) {
	l := fragLab(t, 41, true, true, 576, nil)
	s := watchSizes(l)
	l.up()
	l.settle(time.Second)
	for _, n := range []string{"ue", "gw"} {
		if s.fragments[n] < 2 {
			t.Errorf("%s sent %d IKE fragments; IKE_AUTH with a certificate needs several", n, s.fragments[n])
		}
		if s.largest[n]+28 > 576 {
			t.Errorf("%s sent a %d-octet datagram, over the path's 576-octet IP datagrams", n, s.largest[n])
		}
	}
	if st := l.gw.Engine.Stats(); st.ReassemblyMessages != 0 || st.ReassemblyBytes != 0 {
		t.Errorf("reassembly still holds %d messages, %d octets", st.ReassemblyMessages, st.ReassemblyBytes)
	}
	// The SA goes on with fragmentation: a Child SA rekey by each side.
	for _, node := range []*netsim.Node{l.ue, l.gw} {
		sa := l.sa(node)
		l.do(node, func(e *ike.Engine, now time.Time) ([]ike.Action, error) {
			return e.Rekey(now, sa.ID, sa.Children[0].InSPI)
		})
		l.settle(2 * time.Second)
	}

	for _, c := range []struct {
		name       string
		ue, gw     bool
		fragmented bool
	}{{"neither offers it", false, false, false}, {"only the end user offers it", true, false, false}, {"only the gateway offers it", false, true, false}} {
		t.Run(c.name, func(t *testing.T) {
			l := fragLab(t, 42, c.ue, c.gw, 576, nil)
			s := watchSizes(l)
			l.initiate()
			l.net.RunFor(time.Minute)
			if n := len(l.ue.Established()) + len(l.gw.Established()); n != 0 {
				t.Fatalf("%d SAs established over a path that drops IP fragments", n)
			}
			if s.fragments["ue"]+s.fragments["gw"] != 0 {
				t.Fatal("IKE fragments sent without both sides offering fragmentation (§2.4)")
			}
		})
	}
}

// RFC 7383 §2.5.1: the configured fragment size is the largest IP
// datagram; the fragments fit it.
func TestRFC7383Section2_5_1ConfiguredFragmentSize(t *testing.T) {
	l := fragLab(t, 43, true, true, 0, func(ue, gw *ike.Connection) { ue.FragmentSize, gw.FragmentSize = 400, 400 })
	s := watchSizes(l)
	l.up()
	for _, n := range []string{"ue", "gw"} {
		if s.largest[n]+28 > 400 || s.fragments[n] < 3 {
			t.Errorf("%s: largest datagram %d, %d fragments; want fragments of at most 400-octet IP datagrams", n, s.largest[n], s.fragments[n])
		}
	}
}

// RFC 7296 §2.1, RFC 7383 §2.6.1: a lost fragment makes the whole set
// go again; a retransmitted fragment of a request already answered
// brings the response again only if it is fragment 1, the others are
// ignored.
func TestRFC7383Section2_6_1Retransmissions(t *testing.T) {
	l := fragLab(t, 44, true, true, 576, nil)
	dropped := map[string]bool{}
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		b := d.Data
		if len(b) < 36 || wire.PayloadType(b[16]) != wire.PayloadSKF {
			return netsim.Deliver
		}
		num := int(b[32])<<8 | int(b[33])
		key := from.Name
		// The end user's second fragment of IKE_AUTH, and the gateway's
		// first response fragment: each once.
		if (from == l.ue && num == 2 || from == l.gw && num == 1) && !dropped[key] {
			dropped[key] = true
			return netsim.Drop
		}
		return netsim.Deliver
	}
	l.up()
	if !dropped["ue"] || !dropped["gw"] {
		t.Fatalf("the filter did not drop both fragments: %v", dropped)
	}
	st := l.gw.Engine.Stats()
	if st.Retransmissions == 0 {
		t.Error("the gateway did not resend its response")
	}
	if st.DroppedBy[ike.DropFragmentRejected] == 0 {
		t.Error("the retransmitted fragments other than the first of an answered request were not ignored")
	}
	if st.ReassemblyMessages != 0 {
		t.Errorf("reassembly still holds %d messages", st.ReassemblyMessages)
	}
}

// RFC 7383 §2.5.1, §2.5.2: the fragment size belongs to the path. A
// request in flight when a MOBIKE initiator moves to an IPv6 path is cut
// again for it (1280-octet IP datagrams instead of 576), with the same
// Message ID.
func TestRFC7383Section2_5_2RecutAfterMove(t *testing.T) {
	ue6, gw6 := netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::1")
	l := fragLab(t, 45, true, true, 0, func(ue, gw *ike.Connection) {
		ue.RemoteAddrs = append(ue.RemoteAddrs, gw6)
		// A Child SA request of many selectors: well over 576 octets.
		big := *ue.Children[0]
		big.Name, big.Start, big.RemoteTS = "big", false, nil
		for i := 0; i < 60; i++ {
			big.RemoteTS = append(big.RemoteTS, sel(t, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 30, byte(i), 0}), 24).String()))
		}
		ue.Children = append(ue.Children, &big)
	})
	l.ue.AddAddr(ue6)
	l.gw.AddAddr(gw6)
	l.up()
	l.settle(time.Second)
	id := l.sa(l.ue).ID
	var v4, v6 int
	l.net.Filter = func(from *netsim.Node, d ike.Datagram, m netsim.Msg) netsim.Verdict {
		if from == l.ue && m.Exchange == uint8(wire.CreateChildSA) && !m.Response {
			if d.Remote.Addr().Is4() {
				v4 = max(v4, m.Wire)
				return netsim.Drop // the IPv4 path died
			}
			v6 = max(v6, m.Wire)
		}
		return netsim.Deliver
	}
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.CreateChild(now, id, "big") })
	l.net.RunFor(1500 * time.Millisecond) // the first try and a retransmission on IPv4
	l.do(l.ue, func(e *ike.Engine, now time.Time) ([]ike.Action, error) { return e.Move(now, id, ue6, gw6, "") })
	l.net.RunFor(10 * time.Second)
	if v4 == 0 || v4+28 > 576 {
		t.Fatalf("IPv4 fragments of the request: largest %d", v4)
	}
	if v6 <= v4 || v6+48 > 1280 {
		t.Fatalf("after the move the request went in datagrams of up to %d octets; want more than IPv4's %d, within 1280-octet IPv6 datagrams", v6, v4)
	}
}
