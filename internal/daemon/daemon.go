// Package daemon runs mifike: it owns the sockets, the clock and the
// randomness, feeds the sans-I/O engine from one event loop and carries
// out its actions, and serves the control API.
package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ipsec"
	"github.com/mifike/mifike/internal/logstream"
	"github.com/mifike/mifike/internal/manager"
	"github.com/mifike/mifike/internal/revocation"
	"github.com/mifike/mifike/internal/wire"
)

// Daemon is one running mifike.
type Daemon struct {
	path   string
	cfg    *config.Config
	conns  []*ike.Connection
	pools  *config.Pools // with the lease registry, kept across reloads
	engine *ike.Engine
	log    *slog.Logger
	// level is the log's level: log.level at start and at each reload,
	// or what `mifike loglevel` set since.
	level *slog.LevelVar
	// logHub hands the log's records to `mifike log` followers, each at
	// its own level, beside the log itself (FollowLog).
	logHub *logstream.Hub

	// bind carries IKE (and ESP in UDP) to and from the peers; it owns
	// telling IKE from ESP and keepalives on the NAT-T port.
	bind conn.Bind
	// tcp carries IKE and ESP in TCP streams (RFC 9329): the streams
	// this side opens as initiator, and, with tcp_ports, those peers
	// open to it.
	tcp   *conn.TCP
	rx    chan datagram
	calls chan func()
	timer *time.Timer

	subsMu  sync.Mutex
	subs    map[int]chan control.Event
	nextSub int

	children map[uint32]childRec // what the data plane holds, by inbound SPI
	// retiring are rekeyed Child SAs the engine deleted, by inbound SPI,
	// kept in the data plane for inbound packets still on their way
	// (ike.DeleteChild.Successor).
	retiring map[uint32]retiring
	plane    ipsec.DataPlane // nil for data_plane: none
	// traps are the children with start_action trap, by the ID the data
	// plane reports them with (trap.go).
	traps []ipsec.Trap
	// espInUDP is the data plane when it opens, itself, the ESP in UDP
	// our NAT-T sockets read (the userspace one); nil otherwise.
	espInUDP ipsec.ESPInUDP
	limits   chan limitEvent
	lastIn   map[uint32]int64
	lastOut  map[uint32]uint64 // PacketsOut at the last poll
	swept    time.Time         // the data plane's last SweepIdle

	// The host's interfaces (host.go), and the kernel's announcements of
	// their changes or a request to read them all again.
	host       manager.Host
	hostEvents chan manager.HostEvent
	hostReread chan struct{}
	// The multi-interface managers, by connection, and a nudge to run
	// them soon (an interface or an SA changed).
	managers      map[string]*manager.Manager
	policies      map[string]manager.Policy
	reconcileSoon bool
	// mptcp keeps MPTCP endpoints for the VPNs' inner addresses
	// (mptcp.go); nil unless the mptcp section enables it.
	mptcp *mptcpState
	// spread keeps the nftables table that spreads new flows over the
	// VPNs (spread.go); nil unless a connection's interfaces.spread
	// asks for it.
	spread  *spreadState
	keys    *keyLog
	metrics *metrics
	// radius passes EAP to the radius section's servers and accounts
	// (eap.go); nil without a radius section.
	radius *radiusBackend
	// revocation holds the CRLs and OCSP responses fetched for the
	// connections' revocation checks, shared across reloads; its
	// fetchers run beside the event loop, never in it (the engine's
	// checks only read it: internal/revocation).
	revocation *revocation.Cache
	// cluster runs this daemon as a gateway cluster node (cluster.go);
	// nil without a cluster section.
	cluster *clusterNode
	// stopped closes when Run returns, for goroutines posting to the
	// event loop.
	stopped chan struct{}
	stats   daemonStats
	rxStats rxCounters // the socket readers'
	started time.Time  // when Run began (mifike stats)
	// notifying says a service manager listens (NOTIFY_SOCKET); then
	// lastStatus is the STATUS= last sent to it, statusStale says an SA
	// event came since, and reloadErr is why the last reload failed (nil
	// if it did not): all for notify.go.
	notifying   bool
	lastStatus  string
	statusStale bool
	reloadErr   error
}

type daemonStats struct {
	sendErrors  uint64
	fencedDrops uint64
	// espGone is what the Child SAs the data plane no longer holds
	// carried (deleted, or retired after a rekey): with the installed
	// ones' counters, ESP traffic over the daemon's life, which no
	// rekey makes go down (mifike_esp_bytes_total).
	espGone espTotals
}

// New loads the configuration and prepares the engine; nothing is bound
// yet. logOut receives the structured log.
func New(path string, logOut io.Writer) (*Daemon, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	level := new(slog.LevelVar)
	level.Set(cfg.Log.SlogLevel())
	logHub := logstream.NewHub()
	log := newLogger(cfg, logOut, level, logHub)
	logWarnings(cfg, log)
	conns, pools, err := cfg.Build(nil)
	if err != nil {
		return nil, err
	}
	applyDaemonOptions(cfg, conns)
	d := &Daemon{path: path, cfg: cfg, conns: conns, pools: pools, log: log, level: level, logHub: logHub,
		rx: make(chan datagram, rxQueue), calls: make(chan func()),
		subs: map[int]chan control.Event{}, children: map[uint32]childRec{}, retiring: map[uint32]retiring{},
		limits: make(chan limitEvent, 256), lastIn: map[uint32]int64{}, lastOut: map[uint32]uint64{}, policies: map[string]manager.Policy{},
		hostEvents: make(chan manager.HostEvent, 256), hostReread: make(chan struct{}, 1), stopped: make(chan struct{}),
		notifying: os.Getenv("NOTIFY_SOCKET") != "", revocation: revocation.NewCache(log)}
	d.attachRevocation(conns)
	d.newManagers(cfg)
	if d.keys, err = newKeyLog(cfg.KeyLog.Dir, log); err != nil {
		return nil, err
	}
	ecfg := ike.Config{Connections: conns, Rand: rand.Reader, Logger: log, Retransmit: cfg.Retransmit,
		IKEPort: cfg.IKEPort, NATTPort: cfg.NATTPort, ExportKeys: d.keys != nil,
		PathPolicy: &pathPolicy{manager: func(c string) *manager.Manager { return d.managers[c] },
			ifaces: func() []manager.Interface { return d.host.Interfaces(d.ownsDevice) }, now: time.Now},
		SourceAddr: localAddrFor}
	cfg.DoS.Engine(&ecfg)
	if cfg.Cluster != nil {
		ecfg.SPIPrefix = cfg.Cluster.Node // SPIs unique cluster-wide (RFC 6027 §3.8)
	}
	d.engine, err = ike.New(ecfg)
	if err != nil {
		return nil, err
	}
	if cfg.RADIUS != nil {
		if d.radius, err = newRADIUSBackend(d, cfg.RADIUS, log); err != nil {
			return nil, err
		}
	}
	if cfg.Cluster != nil {
		if d.cluster, err = newClusterNode(d, cfg.Cluster, log); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// logWarnings logs what "mifike daemon --check" warns about, at start
// and on every reload: a daemon started by systemd has no one reading
// --check, and its log is where a secret every local user can read or a
// short pre-shared key gets noticed.
func logWarnings(cfg *config.Config, log *slog.Logger) {
	for _, w := range cfg.Warnings {
		attrs := []any{"config", w.File, "line", w.Line}
		if w.Field != "" {
			attrs = append(attrs, "field", w.Field)
		}
		log.Warn(w.Msg, attrs...)
	}
}

// newLogger writes the structured log at level, which a reload or
// `mifike loglevel` changes while the daemon runs, and hands every
// record to hub too, whose followers choose their own level: a debug
// follower sees debug lines while the log stays at info.
func newLogger(cfg *config.Config, out io.Writer, level *slog.LevelVar, hub *logstream.Hub) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var own slog.Handler = slog.NewTextHandler(out, opts)
	if cfg.Log.Format == "json" {
		own = slog.NewJSONHandler(out, opts)
	}
	return slog.New(slog.NewMultiHandler(own, hub.Handler()))
}

// applyDaemonOptions carries the options the engine takes from the
// connection config.
func applyDaemonOptions(cfg *config.Config, conns []*ike.Connection) {
	for i, cc := range cfg.Connections {
		conns[i].RestartOnDead = cc.DPDAction == "restart"
	}
}

// attachRevocation gives the connections' revocation checkers the
// daemon's cache, so they see what was fetched and ask for what is not.
func (d *Daemon) attachRevocation(conns []*ike.Connection) {
	for _, c := range conns {
		if chk, ok := c.Revocation.(*revocation.Checker); ok {
			chk.Cache = d.revocation
		}
	}
}

// Run binds the sockets, starts the control API and metrics, initiates
// connections with start_action=start, and serves until ctx ends or
// SIGTERM/SIGINT arrive; then it deletes every IKE SA (telling the peers)
// and returns. SIGHUP reloads the configuration.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	udp, err := d.listen()
	if err != nil {
		return err
	}
	d.bind = udp
	defer udp.Close()
	if d.tcp, err = d.listenTCP(); err != nil {
		return err
	}
	defer d.tcp.Close()
	if err := d.openDataPlane(udp); err != nil {
		return err
	}
	if d.plane != nil {
		defer d.plane.Close()
	}
	d.installTraps()
	d.configureMPTCP()
	defer d.closeMPTCP()
	d.configureSpread()
	defer d.closeSpread()
	espHeadroom := 0
	if d.espInUDP != nil {
		espHeadroom = d.espInUDP.ESPHeadroom()
	}
	recvs, err := d.bind.Open(espHeadroom)
	if err != nil {
		return err
	}
	for _, recv := range recvs {
		go d.read(recv, d.bind.BatchSize())
	}
	tcpRecvs, err := d.tcp.Open(espHeadroom)
	if err != nil {
		return err
	}
	for _, recv := range tcpRecvs {
		go d.read(recv, d.tcp.BatchSize())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer close(d.stopped)
	if d.radius != nil {
		defer d.radius.close()
	}
	go d.revocation.Run(ctx)

	gid := -1
	if g := d.cfg.Control.Group; g != "" {
		grp, err := user.LookupGroup(g)
		if err != nil {
			return fmt.Errorf("control group %q: %w", g, err)
		}
		gid, _ = strconv.Atoi(grp.Gid)
	}
	if err := os.MkdirAll(filepath.Dir(d.cfg.Control.Socket), 0o755); err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	// Bound here, served below: the socket must answer before READY=1.
	ctl, err := control.Listen(d.cfg.Control.Socket, d.cfg.Control.Mode, gid)
	if err != nil {
		return err
	}
	ctlErr := make(chan error, 1)
	go func() {
		ctlErr <- ctl.Serve(ctx, backend{d}, d.log)
	}()
	if d.cfg.Metrics.Listen != "" {
		m, err := startMetrics(ctx, d, d.cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		d.metrics = m
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	d.timer = time.NewTimer(time.Hour)
	d.timer.Stop()
	// The host's interfaces and addresses: read now, then kept current by
	// the kernel's announcements, with a full read now and then (host.go).
	go watchHost(ctx.Done(), d.hostEvents, d.hostReread, d.log.With("component", "host"))
	d.rereadHost()
	hostTick := time.NewTicker(hostReadEvery)
	defer hostTick.Stop()
	inTick := time.NewTicker(time.Second)
	defer inTick.Stop()
	// With a traffic-driven liveness check (liveness_window) the
	// counters are read every livenessPoll: the check's window is a few
	// hundred milliseconds, and the engine learns of traffic only here.
	liveTick := time.NewTicker(livenessPoll)
	defer liveTick.Stop()
	var liveC <-chan time.Time
	if d.livenessChecked() {
		liveC = liveTick.C
	}
	d.reconcileSoon = true
	if d.cluster != nil {
		go d.cluster.run(ctx)
	}
	d.log.Info("mifike started", "config", d.path, "connections", len(d.conns), "listen", d.cfg.Listen)
	d.startConnections(nil)
	d.notifyReady()
	for {
		if d.reconcileSoon {
			d.reconcileSoon = false
			d.reconcile()
		}
		select {
		case p := <-d.rx:
			d.receive(p)
		case <-d.timer.C:
			d.apply(d.engine.Tick(time.Now()))
		case f := <-d.calls:
			f()
		case ev := <-d.hostEvents:
			d.hostEvent(ev)
		case <-d.hostReread:
			d.rereadHost()
		case <-hostTick.C:
			d.rereadHost()
		case <-liveC:
			d.pollInbound()
		case <-inTick.C:
			d.pollInbound()
			if liveC = nil; d.livenessChecked() {
				liveC = liveTick.C
			}
			d.retire(time.Now())
			d.sweepIdle(time.Now())
			if d.radius != nil {
				d.radius.tick(time.Now())
			}
			d.reconcileSoon = true
			d.notifyStatus()
		case l := <-d.limits:
			d.apply(d.engine.ChildLimit(time.Now(), l.inSPI, l.hard))
		case s := <-sigs:
			if s == syscall.SIGHUP {
				_, _ = d.reload("SIGHUP") // it logs its outcome
				continue
			}
			d.log.Info("shutting down", "signal", s.String())
			d.notifyStopping()
			d.shutdown()
			return nil
		case err := <-ctlErr:
			if err != nil && ctx.Err() == nil {
				d.notifyStopping()
				d.shutdown()
				return fmt.Errorf("control socket: %w", err)
			}
		case <-ctx.Done():
			d.notifyStopping()
			d.shutdown()
			return nil
		}
	}
}

// listen binds the IKE port and the NAT-T port on each listen address.
func (d *Daemon) listen() (*conn.UDP, error) {
	u := new(conn.UDP)
	for _, a := range d.cfg.Listen {
		for _, port := range []uint16{d.cfg.IKEPort, d.cfg.NATTPort} {
			if _, err := u.Listen(a, port, port == d.cfg.NATTPort); err != nil {
				u.Close()
				return nil, err
			}
		}
	}
	return u, nil
}

// apply carries out the engine's actions.
func (d *Daemon) apply(acts []ike.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case ike.Send:
			d.send(a.Datagram)
		case ike.SendKeepalive:
			if d.cluster != nil && !d.cluster.mayServe() {
				continue
			}
			d.sendErr(d.bind.SendKeepalive(a.Local, a.Remote, a.Iface), a.Local, a.Remote)
		case ike.CloseStream:
			d.tcp.CloseStream(a.Local, a.Remote)
		case ike.ArmTimer:
			d.timer.Reset(max(time.Until(a.At), 0))
		case ike.InstallChild:
			delete(d.retiring, a.SA.InSPI) // the SPI's new SA replaces a retiring one
			d.children[a.SA.InSPI] = recordOf(a.SA)
			d.keys.esp(a.SA)
			d.planeAction(a)
		case ike.UpdateChild:
			old := d.children[a.SA.InSPI]
			d.children[a.SA.InSPI] = recordOf(a.SA)
			if old.local != a.SA.Local || old.remote != a.SA.Remote {
				d.keys.esp(a.SA)
			}
			d.planeAction(a)
		case ike.DeleteChild:
			if d.radius != nil {
				d.radius.childGone(a.IKESA, a.InSPI)
			}
			old, ok := d.children[a.InSPI]
			delete(d.children, a.InSPI)
			if a.Successor != 0 && ok && d.plane != nil {
				// Sends no more, receives a little longer.
				old.outbound = false
				d.planeAction(ike.UpdateChild{SA: old.sa(a.InSPI)})
				d.retiring[a.InSPI] = retiring{until: time.Now().Add(retireRekeyed), successor: a.Successor}
				continue
			}
			d.planeAction(a)
			d.retireBefore(a.InSPI)
		case ike.IKEKeys:
			d.keys.ike(a)
		case ike.AskEAP:
			if d.radius != nil {
				d.radius.ask(a)
			} else {
				acts, _ := d.engine.AnswerEAP(time.Now(), a.IKESA, ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPError, Why: "no radius section to pass EAP to"})
				d.apply(acts)
			}
		case ike.Event:
			d.statusStale = true
			if d.radius != nil {
				d.radius.event(a)
			}
			if d.cluster != nil {
				d.cluster.event(a)
			}
			d.publish(a)
			if tellManagers(d.managers, d.engine, a) {
				d.reconcileSoon = true
			}
			if (d.mptcp != nil || d.spread != nil) && (a.Kind == ike.EventChildUp || a.Kind == ike.EventChildDown || a.Kind == ike.EventAddressUpdate) {
				d.reconcileSoon = true // an endpoint or a spread target may come, go or change (mptcp.go, spread.go)
			}
		}
	}
}

// tellManagers passes on to the interface managers what they must know of
// an engine event, and says whether they should reconcile soon. (The
// simulator's daemon calls it too: mif_sim_test.go.)
func tellManagers(managers map[string]*manager.Manager, e *ike.Engine, ev ike.Event) (reconcile bool) {
	switch ev.Kind {
	case ike.EventIKEUp, ike.EventIKEDown, ike.EventIKECloned, ike.EventCloneRefused, ike.EventIKEFailed, ike.EventIKERekeyed:
		reconcile = true
	}
	if ev.Kind == ike.EventCloneRefused && ev.Notify == wire.NotifyNoAdditionalSAs {
		if m := managers[ev.Conn]; m != nil {
			n := 0
			for _, s := range e.IKESAs() {
				if s.Conn == ev.Conn && (s.State == ike.StateEstablished || s.State == ike.StateConnecting) {
					n++
				}
			}
			m.CloneRefused(ev.IKESA, n)
		}
	}
	if ev.Kind == ike.EventPathProbe {
		// The manager chose the path (pathPolicy); let it look at the
		// rest of its VPNs.
		reconcile = true
	}
	return reconcile
}

// send hands an IKE message to the Bind, which frames it for its port.
func (d *Daemon) send(dg ike.Datagram) {
	if d.cluster != nil && !d.cluster.mayServe() {
		d.stats.fencedDrops++ // a fenced cluster node sends nothing (cluster.go)
		return
	}
	if dg.TCP {
		d.sendErr(d.tcp.Send(dg.Data, dg.Local, dg.Remote, dg.Iface), dg.Local, dg.Remote)
		return
	}
	d.sendErr(d.bind.Send(dg.Data, dg.Local, dg.Remote, dg.Iface), dg.Local, dg.Remote)
}

// sendErr counts and logs what the Bind could not send.
func (d *Daemon) sendErr(err error, local, remote netip.AddrPort) {
	switch {
	case errors.Is(err, conn.ErrNoSocket):
		d.stats.sendErrors++
		d.log.Error("no socket to send from", "local", local, "remote", remote)
	case err != nil:
		d.stats.sendErrors++
		d.log.Warn("send failed", "local", local, "remote", remote, "err", err)
	}
}

func (d *Daemon) publish(e ike.Event) {
	attrs := []any{"event", e.Kind.String(), "conn", e.Conn}
	if e.IKESA != 0 {
		attrs = append(attrs, "ike", e.IKESA)
	}
	if e.Child != 0 {
		attrs = append(attrs, "child", fmt.Sprintf("%08x", e.Child))
	}
	level := slog.LevelInfo
	if e.Kind == ike.EventRetransmit {
		level = slog.LevelDebug
	}
	d.log.Log(context.Background(), level, e.Detail, attrs...)
	d.metrics.event(e)
	ev := control.EventFromEngine(time.Now(), e)
	d.subsMu.Lock()
	for _, ch := range d.subs {
		select {
		case ch <- ev:
		default: // the control server drops for slow clients; never block the loop
		}
	}
	d.subsMu.Unlock()
}

// startConnections initiates connections with start_action=start (only
// the named ones when names is non-nil).
func (d *Daemon) startConnections(names map[string]bool) {
	for i, cc := range d.cfg.Connections {
		if cc.StartAction != "start" || cc.Interfaces != nil || (names != nil && !names[cc.Name]) {
			continue
		}
		if _, err := d.initiate(d.conns[i], ""); err != nil {
			d.log.Error("cannot start connection", "conn", cc.Name, "err", err)
		}
	}
}

// initiate starts an IKE SA of c with its start children, or with only
// child when it is not "".
func (d *Daemon) initiate(c *ike.Connection, child string) (uint64, error) {
	if len(c.RemoteAddrs) == 0 {
		return 0, fmt.Errorf("connection %s has no remote address to initiate to", c.Name)
	}
	remote := c.RemoteAddrs[0]
	var local netip.Addr
	for _, a := range c.LocalAddrs {
		if a.Is4() == remote.Is4() && !a.IsUnspecified() {
			local = a
			break
		}
	}
	if !local.IsValid() {
		var err error
		if local, err = localAddrFor(remote); err != nil {
			return 0, err
		}
	}
	// Port 0: the engine fills in our IKE port and the connection's.
	id, acts, err := d.engine.Initiate(time.Now(), ike.InitiateOptions{Conn: c.Name, Child: child,
		Local: netip.AddrPortFrom(local, 0), Remote: netip.AddrPortFrom(remote, 0)})
	d.apply(acts)
	return id, err
}

// shutdown deletes every IKE SA, telling each peer (RFC 7296 §1.4.1).
func (d *Daemon) shutdown() {
	if d.cluster != nil {
		// A cluster node hands its SAs over instead of deleting them:
		// it stops sending and leaves the cluster (cluster.go), and the
		// other nodes take the SAs over at once (docs/cluster.md).
		d.cluster.setFenced(true)
		d.log.Info("leaving the cluster: the other nodes take this node's SAs over")
		d.cluster.leave()
		d.log.Info("stopped")
		return
	}
	d.apply(d.engine.Shutdown(time.Now()))
	d.log.Info("stopped")
}

// post runs f on the event loop without waiting, from another goroutine;
// after Run returned it is dropped.
func (d *Daemon) post(f func()) {
	select {
	case d.calls <- f:
	case <-d.stopped:
	}
}

// call runs f on the event loop and waits: the engine is single-threaded.
func (d *Daemon) call(f func()) {
	done := make(chan struct{})
	d.calls <- func() { f(); close(done) }
	<-done
}

// retireRekeyed is how long a rekeyed Child SA still takes inbound
// packets after the engine deleted it: longer than any packet the peer
// sent before it deleted its end can be on its way (strongSwan's
// charon.delete_rekeyed_delay is 5 s too).
const retireRekeyed = 5 * time.Second

type retiring struct {
	until     time.Time
	successor uint32 // the Child SA that replaced it
}

// retire removes rekeyed Child SAs whose grace period is over.
func (d *Daemon) retire(now time.Time) {
	for spi, r := range d.retiring {
		if now.After(r.until) {
			delete(d.retiring, spi)
			d.planeAction(ike.DeleteChild{InSPI: spi})
		}
	}
}

// retireBefore removes at once the rekeyed SAs a deleted Child SA had
// replaced (and theirs): its VPN is gone, and with the last SA its inner
// address and routes must go too, not seconds later.
func (d *Daemon) retireBefore(spi uint32) {
	for again := true; again; {
		again = false
		for old, r := range d.retiring {
			if r.successor == spi {
				delete(d.retiring, old)
				d.planeAction(ike.DeleteChild{InSPI: old})
				d.retireBefore(old)
				again = true
			}
		}
	}
}
