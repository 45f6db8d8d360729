package daemon

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mifike/mifike/internal/dataplane"
	"github.com/mifike/mifike/internal/ike"
)

// The receive side: one goroutine per socket reads batches (dataplane.BatchReader),
// hands ESP in UDP to the userspace data plane in place, drops what the
// engine would drop from the datagram alone (ike.Precheck) without
// copying it, and queues the rest to the event loop in pooled buffers.
// Nothing is allocated per datagram once the pools are warm, whether it
// is dropped or not (issue 13).

const (
	// maxDatagram is the largest datagram the IKE sockets take, as
	// strongSwan's charon.max_packet (10000 by default): an IKE message
	// is at most a few kB (larger ones are fragmented, RFC 7383), and ESP
	// in UDP carries at most a 9000-octet inner packet (tun.mtu's upper
	// bound) plus its overhead. A larger datagram arrives truncated
	// (MSG_TRUNC) and is counted and dropped, never passed on.
	maxDatagram = 10000
	// ikeBatch is the batch on sockets that carry only IKE: port 500, and
	// port 4500 without the userspace data plane. IKE is a few messages
	// per SA and minute; a small batch keeps the buffers small.
	ikeBatch = 8
	// espBatch is the batch on the NAT-T port with the userspace data
	// plane, where ESP arrives at line rate and batching pays.
	espBatch = 64
	// rxQueue is how many IKE datagrams wait for the event loop. Drops
	// take it well under a microsecond each; a datagram that finds it
	// full is dropped and counted (DropQueueFull) rather than stall the
	// reader, which on port 4500 also carries ESP.
	rxQueue = 256
)

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
		k, size = 1, maxDatagram
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

// readBatch reads one socket until it is closed. On the NAT-T port
// (RFC 3948 §2.2) a datagram is IKE behind a non-ESP marker, a one-octet
// keepalive, or ESP, which goes straight to the userspace data plane,
// opened in place in the batch's buffers.
func (d *Daemon) readBatch(s *udpSocket) {
	natt := s.port == d.cfg.NATTPort
	var rx *dataplane.Receiver
	if p, ok := d.plane.(*dataplane.Linux); ok && natt {
		// The kernel's data plane takes ESP before it reaches the socket
		// (UDP_ENCAP_ESPINUDP); the userspace one opens it here.
		rx = p.NewReceiver()
	}
	batch, off := ikeBatch, 0
	if rx != nil {
		batch, off = espBatch, dataplane.Headroom
	}
	r, err := dataplane.NewBatchReader(s.conn, s.port, batch, off, maxDatagram)
	if err != nil {
		d.log.Error("cannot read the IKE socket", "port", s.port, "err", err)
		return
	}
	esp := make([]dataplane.Inbound, 0, batch)
	for {
		n, err := r.Read()
		if err != nil {
			if dataplane.Closed(err) {
				return
			}
			continue
		}
		esp = esp[:0]
		for i := range n {
			b, local, remote, truncated := r.Datagram(i)
			switch {
			case truncated:
				d.rxStats.drop(ike.DropTruncated)
				continue
			case !natt:
			case len(b) == 1 && b[0] == 0xff:
				d.rxStats.keepalives.Add(1) // keepalives carry no liveness (RFC 3948 §2.3)
				continue
			case len(b) >= 4 && b[0]|b[1]|b[2]|b[3] != 0:
				if rx == nil {
					d.rxStats.espDropped.Add(1) // no data plane carries ESP here
					continue
				}
				esp = append(esp, dataplane.Inbound{Buf: r.Buf(i), Off: off, N: len(b), Local: local, Remote: remote})
				continue
			}
			if why := ike.Precheck(b, natt); why != ike.DropNone {
				d.rxStats.drop(why)
				continue
			}
			p := ikeBuf(len(b))
			copy(*p, b)
			select {
			case d.rx <- datagram{d: ike.Datagram{Local: local, Remote: remote, Data: *p}, buf: p}:
			default:
				releaseIKEBuf(p)
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
