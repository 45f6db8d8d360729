package conn

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The working path of KernelESP needs espintcp, which this machine's
// kernel lacks: test/kernelvm runs it in a VM against libreswan and
// mifike. Here: what a kernel without it does.

func TestProbeKernelESPSaysWhatIsMissing(t *testing.T) {
	err := ProbeKernelESP()
	if err == nil {
		t.Skip("this kernel has espintcp; test/kernelvm covers the working path")
	}
	if !strings.Contains(err.Error(), "espintcp") {
		t.Fatalf("the error does not name espintcp: %v", err)
	}
}

// TestKernelESPWithoutEspintcp: a stream opened in KernelESP mode on a
// kernel without espintcp sends its prefix (RFC 9329 §4), fails at the
// ULP and closes with that reason; the interface pin replaces
// SO_BINDTODEVICE and is released with the stream; SendESP is refused
// (the kernel carries ESP).
func TestKernelESPWithoutEspintcp(t *testing.T) {
	if ProbeKernelESP() == nil {
		t.Skip("this kernel has espintcp; test/kernelvm covers the working path")
	}
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: lo.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			peer <- nil
			return
		}
		c.SetReadDeadline(time.Now().Add(patience))
		b, _ := io.ReadAll(c)
		c.Close()
		peer <- b
	}()
	closed := make(chan error, 1)
	var pinned, released atomic.Int32
	tb := &TCP{KernelESP: true,
		StreamClosed: func(_, _ netip.AddrPort, err error) { closed <- err },
		PinIface: func(iface string, local, remote netip.Addr) (uint32, func(), error) {
			if iface != "lo" || remote != lo {
				t.Errorf("PinIface(%q, %v, %v)", iface, local, remote)
			}
			pinned.Add(1)
			return 0x10006d66, func() { released.Add(1) }, nil
		}}
	receive(t, tb, 0)
	defer tb.Close()
	remote := l.Addr().(*net.TCPAddr).AddrPort()
	if err := tb.SendESP([]byte{1, 2, 3, 4, 5}, netip.AddrPortFrom(lo, 0), remote); !errors.Is(err, errKernelESP) {
		t.Fatalf("SendESP in KernelESP mode: %v", err)
	}
	if err := tb.Send(make([]byte, 28), netip.AddrPortFrom(lo, 0), remote, "lo"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "TCP_ULP espintcp") {
			t.Fatalf("the stream closed with %v, want the ULP's refusal", err)
		}
	case <-time.After(patience):
		t.Fatal("the stream did not close")
	}
	select {
	case b := <-peer:
		if string(b) != TCPPrefix {
			t.Fatalf("the peer read %q, want the prefix alone", b)
		}
	case <-time.After(patience):
		t.Fatal("the peer read nothing")
	}
	if pinned.Load() != 1 || released.Load() != 1 {
		t.Fatalf("pinned %d times, released %d", pinned.Load(), released.Load())
	}
}
