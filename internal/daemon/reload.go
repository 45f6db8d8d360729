package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
)

// reload applies a changed configuration file (from SIGHUP or the
// control socket's reload) and logs the outcome and each change to an
// SA. An invalid file changes nothing and every SA stays up; that
// includes an empty file or one without connections (an editor's
// truncated write), which config.Load refuses rather than read as
// "delete every connection". A valid file keeps the SAs it still allows
// (ike.Engine.Reconfigure).
func (d *Daemon) reload(from string) (control.Reloaded, error) {
	d.notifyReloading()
	r, err := d.reloadFile(from)
	if err != nil {
		d.log.Error("reload failed; the running configuration and every SA are unchanged",
			"from", from, "config", d.path, "ike_sas", len(d.engine.IKESAs()), "err", err)
	}
	// READY=1 after a failed reload too: the daemon serves on, with the
	// configuration it had, and STATUS says the reload failed.
	d.reloadErr = err
	d.notifyReady()
	return r, err
}

func (d *Daemon) reloadFile(from string) (control.Reloaded, error) {
	r := control.Reloaded{Added: []string{}, Removed: []string{}, Changed: []control.ChangedConn{}, SAs: []control.ReloadedSA{}}
	cfg, err := config.Load(d.path)
	if err != nil {
		return r, err
	}
	if err := reloadable(d.cfg, cfg); err != nil {
		return r, err
	}
	conns, pools, err := cfg.Build(d.pools)
	if err != nil {
		return r, err
	}
	applyDaemonOptions(cfg, conns)
	d.attachRevocation(conns)
	acts, rc, err := d.engine.Reconfigure(time.Now(), conns)
	d.apply(acts)
	if err != nil {
		return r, err
	}
	old := map[string]*config.ConnConfig{}
	for _, c := range d.cfg.Connections {
		old[c.Name] = c
	}
	start := map[string]bool{}
	for _, c := range cfg.Connections {
		o := old[c.Name]
		delete(old, c.Name)
		switch {
		case o == nil:
			r.Added = append(r.Added, c.Name)
			start[c.Name] = true
		case len(rc.Changed[c.Name]) > 0:
			r.Changed = append(r.Changed, control.ChangedConn{Name: c.Name, What: rc.Changed[c.Name]})
		case !sameConnConfig(o, c):
			r.Changed = append(r.Changed, control.ChangedConn{Name: c.Name, What: []string{"other settings"}})
		}
	}
	for _, c := range d.cfg.Connections {
		if old[c.Name] != nil {
			r.Removed = append(r.Removed, c.Name)
		}
	}
	if cfg.Log.Level != d.cfg.Log.Level {
		d.level.Set(cfg.Log.SlogLevel())
		d.log.Info("log level changed by the reload", "level", cfg.Log.Level, "was", d.cfg.Log.Level)
	}
	d.cfg, d.conns, d.pools = cfg, conns, pools
	if d.cluster != nil {
		d.cluster.setPools(pools)
	}
	d.newManagers(cfg)
	d.installTraps()
	d.configureMPTCP()
	d.configureSpread()
	d.reconcileSoon = true
	logWarnings(cfg, d.log)
	restarted := map[string]uint64{}
	for _, c := range rc.SAs {
		r.SAs = append(r.SAs, d.restartIfClosed(c, restarted))
	}
	r.SAs = append(r.SAs, d.startChanged(r.Changed)...)
	for _, c := range cfg.Connections {
		if c.Interfaces != nil {
			delete(start, c.Name) // its manager starts it
		}
	}
	d.log.Info("configuration reloaded", "from", from, "config", d.path, "connections", len(conns),
		"added", r.Added, "removed", r.Removed, "changed", len(r.Changed), "sas", len(r.SAs))
	d.startConnections(start)
	return r, nil
}

// restartIfClosed logs what the reload did with one SA and, for an IKE
// SA closed because the new configuration no longer authenticates it
// that this side had set up, sets the connection up again under the new
// credentials (as strongSwan restarts a changed connection), unless its
// interface manager does that. A connection is set up again once
// (restarted), however many IKE SAs it had (RFC 7791 clones).
func (d *Daemon) restartIfClosed(c ike.SAChange, restarted map[string]uint64) control.ReloadedSA {
	v := control.ReloadedSAFromEngine(c)
	if c.Restart {
		conn, cc := d.connection(c.Conn)
		id, again := restarted[c.Conn]
		switch {
		case conn == nil:
		case cc.Interfaces != nil:
			v.Reason += "; its interface manager sets it up again"
		case again:
			v.NewIKESA = id
			v.Reason += fmt.Sprintf("; its connection is set up again as IKE SA %d", id)
		default:
			id, err := d.initiate(conn, "")
			if err != nil {
				v.Reason += "; initiating it again failed: " + err.Error()
			} else {
				restarted[c.Conn] = id
				v.NewIKESA = id
				v.Reason += fmt.Sprintf("; initiated again as IKE SA %d", id)
			}
		}
	}
	d.log.Info("reload: "+v.Action, "ike", v.IKESA, "conn", v.Conn, "child", v.Child, "spi", v.InSPI, "reason", v.Reason)
	return v
}

// startChanged initiates the changed connections with start_action
// start that have no IKE SA left (the peer deleted it, e.g. because its
// own reload no longer authenticated it): the new configuration is what
// the user wants up.
func (d *Daemon) startChanged(changed []control.ChangedConn) []control.ReloadedSA {
	var out []control.ReloadedSA
	up := map[string]bool{}
	for _, s := range d.engine.IKESAs() {
		up[s.Conn] = true
	}
	for _, ch := range changed {
		conn, cc := d.connection(ch.Name)
		if conn == nil || cc.StartAction != "start" || cc.Interfaces != nil || up[ch.Name] {
			continue
		}
		v := control.ReloadedSA{Conn: ch.Name, Action: string(ike.SACreated), Reason: "changed connection with start_action start had no IKE SA"}
		id, err := d.initiate(conn, "")
		if err != nil {
			v.Reason += "; initiating it failed: " + err.Error()
		}
		v.IKESA = id
		d.log.Info("reload: "+v.Action, "ike", v.IKESA, "conn", v.Conn, "reason", v.Reason)
		out = append(out, v)
	}
	return out
}

// connection returns the engine's and the file's view of connection
// name, or nil.
func (d *Daemon) connection(name string) (*ike.Connection, *config.ConnConfig) {
	for i, c := range d.cfg.Connections {
		if c.Name == name {
			return d.conns[i], c
		}
	}
	return nil, nil
}

// sameConnConfig reports whether two connections read the same, wherever
// in the file they are written: their exported settings, as JSON, without
// line numbers (the parser's references to lines are unexported).
func sameConnConfig(a, b *config.ConnConfig) bool {
	return connSettings(a) == connSettings(b)
}

func connSettings(c *config.ConnConfig) string {
	x := *c
	x.Line = 0
	x.Children = nil
	for _, ch := range c.Children {
		y := *ch
		y.Line = 0
		x.Children = append(x.Children, &y)
	}
	b, err := json.Marshal(x)
	if err != nil {
		return fmt.Sprintf("not comparable %p", c) // never equal: reported as changed
	}
	return string(b)
}

// reloadable refuses changes a running daemon cannot take without a
// restart, so the user is told instead of silently ignored.
func reloadable(old, cur *config.Config) error {
	var errs []error
	if fmt.Sprint(old.Listen) != fmt.Sprint(cur.Listen) || old.IKEPort != cur.IKEPort || old.NATTPort != cur.NATTPort {
		errs = append(errs, errors.New("listen addresses and ports change only with a restart"))
	}
	if old.Log.Format != cur.Log.Format {
		errs = append(errs, errors.New("log.format changes only with a restart (log.level changes with a reload)"))
	}
	if old.Control != cur.Control {
		errs = append(errs, errors.New("the control socket changes only with a restart"))
	}
	if old.Metrics != cur.Metrics || old.KeyLog != cur.KeyLog {
		errs = append(errs, errors.New("metrics and key log settings change only with a restart"))
	}
	if old.DoS != cur.DoS {
		errs = append(errs, errors.New("dos_protection settings change only with a restart"))
	}
	if !reflect.DeepEqual(old.RADIUS, cur.RADIUS) {
		errs = append(errs, errors.New("the radius section changes only with a restart"))
	}
	if !reflect.DeepEqual(old.Cluster, cur.Cluster) {
		errs = append(errs, errors.New("the cluster section changes only with a restart"))
	}
	return errors.Join(errs...)
}
