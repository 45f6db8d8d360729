package daemon

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ipsec"
)

// The receive side: one goroutine per ReceiveFunc of the Bind (one per
// socket) takes its batches, already sorted into IKE (without its
// non-ESP marker), ESP and keepalives (conn.Bind owns that), hands ESP in UDP to the userspace data plane in
// place, drops what the engine would drop from the datagram alone
// (ike.Precheck) without copying it, and queues the rest to the event
// loop in pooled buffers. Nothing is allocated per datagram once the
// pools are warm, whether it is dropped or not (issue 13).

// rxQueue is how many IKE datagrams wait for the event loop. Drops take
// it well under a microsecond each; a datagram that finds it full is
// dropped and counted (DropQueueFull) rather than stall the reader, which
// on port 4500 also carries ESP.
const rxQueue = 256

// rxCounters are what the readers count, from their goroutines.
type rxCounters struct {
	drops      [256]atomic.Uint64 // by ike.DropReason
	keepalives atomic.Uint64      // NAT keepalives (RFC 3948 §2.3): no liveness
	espDropped atomic.Uint64      // ESP with no data plane to carry it
}

func (c *rxCounters) drop(r ike.DropReason) { c.drops[r].Add(1) }

// datagram is an IKE datagram on its way to the event loop, in a pooled
// buffer the loop returns once the engine is done with it.
type datagram struct {
	d   ike.Datagram
	buf *[]byte
}

// ikeBufs recycle the buffers IKE datagrams travel in: the engine copies
// whatever it keeps, so a buffer is free again when Receive returns.
// Nearly every IKE message fits the small size (an IKE fragment fits a
// 1500-octet MTU, RFC 7383 §2.5.1); the large one takes the rest.
var ikeBufs [2]sync.Pool

const smallIKEBuf = 2048

func ikeBuf(n int) *[]byte {
	k, size := 0, smallIKEBuf
	if n > smallIKEBuf {
		k, size = 1, conn.MaxDatagram
	}
	if p, _ := ikeBufs[k].Get().(*[]byte); p != nil {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, size)
	return &b
}

func releaseIKEBuf(p *[]byte) {
	if p == nil {
		return
	}
	k := 0
	if cap(*p) > smallIKEBuf {
		k = 1
	}
	ikeBufs[k].Put(p)
}

// read takes one ReceiveFunc's batches until its socket is closed: ESP
// goes straight to the userspace data plane, opened in place in the
// batch's buffers; IKE goes to the event loop.
func (d *Daemon) read(recv conn.ReceiveFunc, batch int) {
	pkts := make([]conn.Packet, batch)
	var rx ipsec.ESPReceiver // made on the first ESP: only NAT-T sockets see any
	var esp []ipsec.Inbound
	for {
		n, err := recv(pkts)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		esp = esp[:0]
		for i := range pkts[:n] {
			p := &pkts[i]
			switch p.Kind {
			case conn.Truncated:
				d.rxStats.drop(ike.DropTruncated)
				continue
			case conn.NoMarker:
				d.rxStats.drop(ike.DropNoMarker) // RFC 3948 §2.2
				continue
			case conn.Keepalive:
				d.rxStats.keepalives.Add(1) // keepalives carry no liveness (RFC 3948 §2.3)
				continue
			case conn.PathError:
				// An ICMP error: a hint for the SAs with that peer (RFC
				// 7296 §2.21); the loop drops it when busy, as the
				// engine rate-limits it anyway.
				remote := p.Remote
				select {
				case d.calls <- func() { d.apply(d.engine.PathError(time.Now(), remote)) }:
				default:
				}
				continue
			case conn.ESP:
				// The kernel's data plane takes ESP before it reaches the
				// socket (UDP_ENCAP_ESPINUDP); the userspace one opens it
				// here.
				if d.espInUDP == nil {
					d.rxStats.espDropped.Add(1) // no data plane carries ESP here
					continue
				}
				if rx == nil {
					rx, esp = d.espInUDP.NewESPReceiver(), make([]ipsec.Inbound, 0, len(pkts))
				}
				esp = append(esp, ipsec.Inbound{Buf: p.Buf, Off: p.Off, N: p.N, Local: p.Local, Remote: p.Remote})
				continue
			}
			b := p.Data()
			if why := ike.Precheck(b); why != ike.DropNone {
				d.rxStats.drop(why)
				continue
			}
			buf := ikeBuf(len(b))
			copy(*buf, b)
			select {
			case d.rx <- datagram{d: ike.Datagram{Local: p.Local, Remote: p.Remote, Data: *buf, TCP: p.TCP}, buf: buf}:
			default:
				releaseIKEBuf(buf)
				d.rxStats.drop(ike.DropQueueFull)
			}
		}
		if len(esp) > 0 {
			rx.Receive(esp)
		}
	}
}

// receive hands one IKE datagram to the engine and its buffer back to
// the pool: the engine keeps nothing of it.
func (d *Daemon) receive(p datagram) {
	d.apply(d.engine.Receive(time.Now(), p.d))
	releaseIKEBuf(p.buf)
}
