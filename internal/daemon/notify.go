package daemon

import (
	"fmt"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/mifike/mifike/internal/ike"
)

// The service manager's readiness protocol (sd_notify(3)), for
// packaging/systemd/mifike.service (Type=notify): READY=1 once the
// sockets are bound, the control socket answers and the start_action=start
// connections are initiated; RELOADING=1 with MONOTONIC_USEC and then
// READY=1 around each reload (the Type=notify-reload protocol, which a
// Type=notify service may speak too); STOPPING=1 when shutdown begins;
// STATUS= a one-line summary for "systemctl status". Without
// NOTIFY_SOCKET (not started by systemd) every call does nothing.

// notify sends state to the service manager. A failure is logged, never
// fatal: the daemon works without a service manager listening.
func (d *Daemon) notify(state string) {
	if !d.notifying {
		return
	}
	if _, err := sd.SdNotify(false, state); err != nil {
		d.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// notifyReady says the daemon serves, with its status.
func (d *Daemon) notifyReady() {
	d.lastStatus = d.status()
	d.notify(sd.SdNotifyReady + "\nSTATUS=" + d.lastStatus)
}

// notifyReloading says a reload begins. MONOTONIC_USEC lets the service
// manager tell this reload's READY=1 from an earlier one's.
func (d *Daemon) notifyReloading() {
	d.notify(sd.SdNotifyReloading + "\n" + sd.SdNotifyMonotonicUsec() + "STATUS=reloading " + d.path)
}

// notifyStopping says the daemon is deleting its SAs and will exit.
func (d *Daemon) notifyStopping() {
	d.notify(sd.SdNotifyStopping + "\nSTATUS=stopping: deleting the IKE SAs")
}

// notifyStatus sends STATUS= when an SA event may have changed the
// summary since it was last sent (the event loop calls it every second:
// status lists every IKE SA, which a gateway with tens of thousands should
// not do for each event).
func (d *Daemon) notifyStatus() {
	if !d.notifying || !d.statusStale {
		return
	}
	d.statusStale = false
	if s := d.status(); s != d.lastStatus {
		d.lastStatus = s
		d.notify("STATUS=" + s)
	}
}

// status is the summary "systemctl status" shows: connections, IKE SAs
// up and Child SAs installed, and a reload that failed (the daemon runs
// the configuration it had; the log says why).
func (d *Daemon) status() string {
	up := 0
	for _, s := range d.engine.IKESAs() {
		if s.State == ike.StateEstablished {
			up++
		}
	}
	s := fmt.Sprintf("%d connections, %d IKE SAs up, %d Child SAs", len(d.conns), up, len(d.children))
	if d.reloadErr != nil {
		s += "; the last reload failed, see the log"
	}
	return s
}
