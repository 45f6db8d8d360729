package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// LoadLink keeps one end-user access link busy until ctx ends: a bulk
// TCP download from the router to the end user over the link itself
// (router's address to the interface's), outside the VPNs, so no VPN's
// counters see it. With the link shaped (LimitRate) the download keeps
// the router's queue near full, and every packet over the link (the
// VPN's IKE and ESP too) waits about the queue's length: a slower path,
// as a loaded link is, without netem (which not every kernel has).
func (t *Topology) LoadLink(ctx context.Context, dev string) error {
	var a Access
	for _, x := range append(UEIfaces, Extra) {
		if x.Dev == dev {
			a = x
		}
	}
	if a.Dev == "" {
		return fmt.Errorf("demo: no access link %q", dev)
	}
	var ln net.Listener
	if err := InNS(t.Net, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(a.Router, "0"))
		return err
	}); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				go func() { <-ctx.Done(); c.Close() }()
				for ctx.Err() == nil {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	var c net.Conn
	if err := InNS(t.UE, func() error {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(a.Addr), 0))}
		var err error
		c, err = d.DialContext(ctx, "tcp", ln.Addr().String())
		return err
	}); err != nil {
		return err
	}
	go func() {
		go func() { <-ctx.Done(); c.Close() }()
		_, _ = io.Copy(io.Discard, c)
	}()
	return nil
}
