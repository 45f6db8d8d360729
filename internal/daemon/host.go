package daemon

import (
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mifike/mifike/internal/manager"
)

// The host's interfaces and addresses feed MOBIKE (the addresses the
// engine may use and announce, RFC 4555 §3.5) and the interface managers.
// They are read in full at start, then kept current by the kernel's
// netlink announcements, each applied with its content (manager.Host).
// A full read is repeated as a safety net, every hostReadEvery, and at
// once when a subscription is made (changes before it are in no event)
// or lost: netlink is not reliable, and a socket that falls behind loses
// messages (ENOBUFS), after which the library ends the subscription.
// Without subscriptions (netlink refused), the read is every
// resubscribeEvery, as each attempt fails.
const (
	hostReadEvery    = 30 * time.Second
	resubscribeEvery = 2 * time.Second
)

// readHost reads every interface with every address: the one place the
// daemon lists them.
func readHost() ([]manager.Link, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]manager.Link, 0, len(ifs))
	for _, i := range ifs {
		l := manager.Link{Index: i.Index, Name: i.Name, Flags: i.Flags}
		addrs, err := i.Addrs()
		if err != nil {
			return nil, err // a failed read must not look like addresses gone
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				l.Addrs = append(l.Addrs, p.Addr().Unmap())
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// rereadHost replaces the host table with a full read; on a failed read
// it keeps what it had. Events still queued are older than the read, which
// holds their outcome, and are dropped.
func (d *Daemon) rereadHost() {
	for drained := false; !drained; {
		select {
		case <-d.hostEvents:
		default:
			drained = true
		}
	}
	links, err := readHost()
	if err != nil {
		d.log.Warn("cannot read the host's interfaces; keeping the last list", "err", err)
		return
	}
	d.host.Reset(links)
	d.hostChanged()
}

// hostEvent applies one change the kernel announced.
func (d *Daemon) hostEvent(ev manager.HostEvent) {
	if d.host.Apply(ev) {
		d.hostChanged()
	}
}

// hostChanged gives the engine the usable addresses (it acts only on a
// change) and runs the managers soon.
func (d *Daemon) hostChanged() {
	addrs := usableAddrs(d.host.Links(), d.cfg.Listen, d.ownsDevice)
	d.apply(d.engine.SetLocalAddresses(time.Now(), addrs))
	d.reconcileSoon = true
}

// watchHost passes the kernel's link and address announcements on to
// events, with their content, until done. Whenever a subscription cannot
// be made or ends, it asks for a full read on reread and subscribes again
// after resubscribeEvery.
func watchHost(done <-chan struct{}, events chan<- manager.HostEvent, reread chan<- struct{}, log *slog.Logger) {
	for {
		if watchHostOnce(done, events, reread, log) {
			log.Info("netlink subscription lost; reading every interface again")
		}
		ask(reread)
		select {
		case <-done:
			return
		case <-time.After(resubscribeEvery):
		}
	}
}

// watchHostOnce subscribes to link and address changes and forwards them
// until done or until either subscription ends; lost says the latter.
// Once subscribed it asks for a full read: what changed before is in
// that read, what changes after comes as events.
func watchHostOnce(done <-chan struct{}, events chan<- manager.HostEvent, reread chan<- struct{}, log *slog.Logger) (lost bool) {
	onError := func(err error) { log.Debug("netlink subscription", "err", err) }
	stop := make(chan struct{})
	defer close(stop)
	links := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(links, stop, netlink.LinkSubscribeOptions{ErrorCallback: onError}); err != nil {
		onError(err)
		return false
	}
	defer drain(links)
	addrs := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, stop, netlink.AddrSubscribeOptions{ErrorCallback: onError}); err != nil {
		onError(err)
		return false
	}
	defer drain(addrs)
	ask(reread)
	for {
		var ev manager.HostEvent
		select {
		case u, ok := <-links:
			if !ok {
				return true
			}
			a := u.Attrs()
			ev = manager.LinkEvent{Index: a.Index, Name: a.Name, Flags: a.Flags, Gone: u.Header.Type == unix.RTM_DELLINK}
		case u, ok := <-addrs:
			if !ok {
				return true
			}
			a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
			if !ok {
				continue
			}
			ev = manager.AddrEvent{Index: u.LinkIndex, Addr: a.Unmap(), Removed: !u.NewAddr}
		case <-done:
			return false
		}
		select {
		case events <- ev:
		case <-done:
			return false
		}
	}
}

// ask asks for a full read, unless one is already asked for.
func ask(reread chan<- struct{}) {
	select {
	case reread <- struct{}{}:
	default:
	}
}

// drain reads a subscription's channel until the library closes it (its
// reader ends once the socket is closed), so that reader never blocks on
// a send nobody takes.
func drain[T any](ch <-chan T) {
	go func() {
		for range ch {
		}
	}()
}
