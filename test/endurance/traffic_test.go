package endurance

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

// Traffic: every VPN's inner address sends a numbered UDP datagram to
// an echo server on the protected server every probeEvery; a datagram
// whose echo does not come back within probeWait is lost.
const (
	probeEvery = 250 * time.Millisecond
	probeWait  = 2 * time.Second
	echoPort   = 7007
)

// echoServer answers every datagram on the protected server.
type echoServer struct{ c *net.UDPConn }

func startEcho(top *demo.Topology) (*echoServer, error) {
	var e echoServer
	err := demo.InNS(top.Srv, func() error {
		var err error
		e.c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(demo.Server, echoPort)))
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		b := make([]byte, 64)
		for {
			n, from, err := e.c.ReadFromUDPAddrPort(b)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				e.c.WriteToUDPAddrPort(b[:n], from)
			}
		}
	}()
	return &e, nil
}

func (e *echoServer) close() { e.c.Close() }

// prober sends through the VPN of one inner address.
type prober struct {
	vip  netip.Addr
	conn *net.UDPConn
	stop chan struct{}
	done sync.WaitGroup

	mu        sync.Mutex
	sent      []time.Time // by sequence number
	got       []bool
	sendErrs  int
	lastReply time.Time
	started   time.Time
}

// startProber binds a socket to vip in the end user's namespace (the
// data plane picks the VPN by that source address).
func startProber(top *demo.Topology, vip netip.Addr) (*prober, error) {
	p := &prober{vip: vip, stop: make(chan struct{}), started: time.Now()}
	err := demo.InNS(top.UE, func() error {
		var err error
		p.conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 0)))
		return err
	})
	if err != nil {
		return nil, err
	}
	server := netip.AddrPortFrom(demo.Server, echoPort)
	p.done.Add(2)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		b := make([]byte, 8)
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			p.mu.Lock()
			seq := len(p.sent)
			p.sent = append(p.sent, time.Now())
			p.got = append(p.got, false)
			p.mu.Unlock()
			binary.BigEndian.PutUint64(b, uint64(seq))
			if _, err := p.conn.WriteToUDPAddrPort(b, server); err != nil {
				p.mu.Lock()
				p.sendErrs++ // e.g. the inner address left the TUN device
				p.mu.Unlock()
			}
		}
	}()
	go func() {
		defer p.done.Done()
		b := make([]byte, 64)
		for {
			n, _, err := p.conn.ReadFromUDPAddrPort(b)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil || n != 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(b)
			now := time.Now()
			p.mu.Lock()
			if seq < uint64(len(p.sent)) && now.Sub(p.sent[seq]) <= probeWait {
				p.got[seq] = true
				p.lastReply = now
			}
			p.mu.Unlock()
		}
	}()
	return p, nil
}

func (p *prober) close() {
	close(p.stop)
	p.conn.Close()
	p.done.Wait()
}

// silence is how long the VPN has not answered: since its last echo, or
// since the prober started.
func (p *prober) silence(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := p.lastReply
	if last.IsZero() {
		last = p.started
	}
	return now.Sub(last)
}

// tally counts probes sent before cut: all of them, and those sent
// outside the disturbance windows, whose losses it lists.
func (p *prober) tally(cut time.Time, disturbed func(time.Time) bool) (sent, lost, calmSent, calmLost int, calmAt []time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, at := range p.sent {
		if at.After(cut) {
			break
		}
		sent++
		calm := !disturbed(at)
		if calm {
			calmSent++
		}
		if !p.got[i] {
			lost++
			if calm {
				calmLost++
				calmAt = append(calmAt, at)
			}
		}
	}
	return
}
