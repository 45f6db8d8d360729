package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/logstream"
	"github.com/mifike/mifike/internal/manager"
	"github.com/mifike/mifike/internal/proposal"
)

// backend is the control API's view of the daemon. Every call runs on the
// event loop, the engine's only goroutine.
type backend struct{ d *Daemon }

func notFound(format string, args ...any) error {
	return &control.Error{Code: "not-found", Msg: fmt.Sprintf(format, args...)}
}

func (b backend) ListSAs() ([]control.SA, error) {
	var out []control.SA
	b.d.call(func() {
		for _, s := range b.d.engine.IKESAs() {
			v := control.SAFromEngine(s)
			if b.d.plane != nil {
				for i, c := range s.Children {
					if k := b.d.plane.Counters(c.InSPI); k != nil {
						v.Children[i].BytesIn, v.Children[i].BytesOut = k.BytesIn.Load(), k.BytesOut.Load()
						v.Children[i].PacketsIn, v.Children[i].PacketsOut = k.PacketsIn.Load(), k.PacketsOut.Load()
						v.Children[i].LastIn, v.Children[i].LastOut = unixNano(k.LastIn.Load()), unixNano(k.LastOut.Load())
					}
				}
			}
			out = append(out, v)
		}
	})
	return out, nil
}

func (b backend) ListConns() ([]control.Conn, error) {
	var out []control.Conn
	b.d.call(func() {
		count := map[string]int{}
		for _, s := range b.d.engine.IKESAs() {
			count[s.Conn]++
		}
		for i, cc := range b.d.cfg.Connections {
			c := b.d.conns[i]
			v := control.Conn{Name: cc.Name, LocalID: cc.Local.ID, RemoteID: cc.Remote.ID, LocalAuth: cc.Local.Auth,
				RemoteAuth: cc.Remote.Auth, MOBIKE: cc.MOBIKE, Clone: cc.Clone.Enable, StartAction: cc.StartAction, SAs: count[cc.Name]}
			for _, a := range c.LocalAddrs {
				v.LocalAddrs = append(v.LocalAddrs, a.String())
			}
			for _, a := range c.RemoteAddrs {
				v.RemoteAddrs = append(v.RemoteAddrs, a.String())
			}
			if v.RemoteID == "" {
				v.RemoteID = "%any"
			}
			v.Proposals = proposalStrings(c.IKE)
			for _, ch := range cc.Children {
				v.Children = append(v.Children, control.ConnChild{Name: ch.Name, LocalTS: ch.LocalTS, RemoteTS: ch.RemoteTS,
					Proposals: proposalStrings(ch.ESP), Mode: ch.Mode.String(), StartAction: ch.StartAction})
			}
			out = append(out, v)
		}
	})
	return out, nil
}

func proposalStrings(ps []proposal.Proposal) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// Initiate answers with the IKE SA and the children it brings up, which
// the CLI waits for (control.Initiated).
func (b backend) Initiate(conn, child string, onSA uint64) (control.Initiated, error) {
	var (
		in  control.Initiated
		err error
	)
	b.d.call(func() {
		var c *ike.Connection
		for _, x := range b.d.conns {
			if x.Name == conn {
				c = x
			}
		}
		if c == nil {
			err = notFound("no connection named %q", conn)
			return
		}
		if child != "" {
			found := false
			for _, ch := range c.Children {
				found = found || ch.Name == child
			}
			if !found {
				err = notFound("connection %s has no child %q", conn, child)
				return
			}
			in.Children = []string{child}
			// A child of an established connection rides on its IKE SA
			// (the one asked for, or the first).
			for _, s := range b.d.engine.IKESAs() {
				if s.Conn == conn && s.State == ike.StateEstablished && (onSA == 0 || s.ID == onSA) {
					in.IKESA, in.Existing = s.ID, true
					var acts []ike.Action
					acts, err = b.d.engine.CreateChild(time.Now(), s.ID, child)
					b.d.apply(acts)
					return
				}
			}
		} else {
			for _, ch := range c.Children {
				if ch.Start {
					in.Children = append(in.Children, ch.Name)
				}
			}
		}
		if onSA != 0 {
			err = notFound("no established IKE SA %d of connection %s (see mifike list-sas)", onSA, conn)
			return
		}
		in.IKESA, err = b.d.initiate(c, child)
	})
	return in, err
}

func (b backend) exists(id uint64) bool {
	for _, s := range b.d.engine.IKESAs() {
		if s.ID == id {
			return true
		}
	}
	return false
}

func (b backend) Terminate(id uint64, child uint32) error {
	var err error
	b.d.call(func() {
		if !b.exists(id) {
			err = notFound("no IKE SA %d (see mifike list-sas)", id)
			return
		}
		var acts []ike.Action
		acts, err = b.d.engine.Terminate(time.Now(), id, child)
		b.d.apply(acts)
	})
	return err
}

func (b backend) TerminateConn(conn string) ([]uint64, error) {
	var ids []uint64
	var err error
	b.d.call(func() {
		for _, s := range b.d.engine.IKESAs() {
			if s.Conn != conn {
				continue
			}
			acts, e := b.d.engine.Terminate(time.Now(), s.ID, 0)
			b.d.apply(acts)
			if e == nil {
				ids = append(ids, s.ID)
			}
		}
		if len(ids) == 0 {
			err = notFound("no IKE SA of connection %q", conn)
		}
	})
	return ids, err
}

func (b backend) Rekey(id uint64, child uint32) error {
	var err error
	b.d.call(func() {
		if !b.exists(id) {
			err = notFound("no IKE SA %d (see mifike list-sas)", id)
			return
		}
		var acts []ike.Action
		acts, err = b.d.engine.Rekey(time.Now(), id, child)
		b.d.apply(acts)
	})
	return err
}

func (b backend) Reload() (control.Reloaded, error) {
	var (
		r   control.Reloaded
		err error
	)
	b.d.call(func() { r, err = b.d.reload("control socket") })
	if err != nil {
		return r, &control.Error{Code: "invalid", Msg: err.Error()}
	}
	return r, nil
}

func (b backend) Subscribe() (<-chan control.Event, func()) {
	ch := make(chan control.Event, 256)
	d := b.d
	d.subsMu.Lock()
	d.nextSub++
	id := d.nextSub
	d.subs[id] = ch
	d.subsMu.Unlock()
	return ch, func() {
		d.subsMu.Lock()
		delete(d.subs, id)
		d.subsMu.Unlock()
	}
}

func (b backend) Clone(id uint64) error {
	var err error
	b.d.call(func() {
		if !b.exists(id) {
			err = notFound("no IKE SA %d (see mifike list-sas)", id)
			return
		}
		var acts []ike.Action
		acts, err = b.d.engine.Clone(time.Now(), id)
		b.d.apply(acts)
	})
	if err != nil {
		if _, ok := err.(*control.Error); !ok {
			err = &control.Error{Code: "failed", Msg: err.Error()}
		}
	}
	return err
}

// Move moves the IKE SA, and says when it was on that path already: the
// engine then sends nothing and emits no event (control.Backend.Move).
func (b backend) Move(id uint64, local, remote, iface string) (unchanged bool, err error) {
	l, err := netip.ParseAddr(local)
	if err != nil {
		return false, &control.Error{Code: "invalid", Msg: fmt.Sprintf("local address %q: %v", local, err)}
	}
	var r netip.Addr
	if remote != "" {
		if r, err = netip.ParseAddr(remote); err != nil {
			return false, &control.Error{Code: "invalid", Msg: fmt.Sprintf("remote address %q: %v", remote, err)}
		}
	}
	b.d.call(func() {
		if !b.exists(id) {
			err = notFound("no IKE SA %d (see mifike list-sas)", id)
			return
		}
		if err = checkMoveLocal(b.d.host.Links(), l, iface); err != nil {
			return
		}
		var acts []ike.Action
		acts, err = b.d.engine.Move(time.Now(), id, l, r, iface)
		unchanged = err == nil && !slices.ContainsFunc(acts, func(a ike.Action) bool {
			ev, ok := a.(ike.Event)
			return ok && ev.Kind == ike.EventAddressUpdate && ev.IKESA == id
		})
		b.d.apply(acts)
	})
	return unchanged, err
}

// checkMoveLocal refuses a move to an address this host does not have,
// or through an interface that does not exist or does not hold it: the
// engine would otherwise move the SA to a path nothing can be sent
// from, and the peer would take it for a failure (issue 19).
func checkMoveLocal(links []manager.Link, local netip.Addr, iface string) error {
	local = local.Unmap()
	var on []string
	found := iface == ""
	for _, l := range links {
		if l.Name == iface {
			found = true
		}
		if slices.Contains(l.Addrs, local) {
			on = append(on, l.Name)
		}
	}
	switch {
	case !found:
		return &control.Error{Code: "invalid", Msg: fmt.Sprintf("there is no interface %q on this host (see ip link)", iface)}
	case len(on) == 0:
		return &control.Error{Code: "invalid", Msg: fmt.Sprintf("%v is not an address of this host (see ip addr); give one of its own addresses", local)}
	case iface != "" && !slices.Contains(on, iface):
		return &control.Error{Code: "invalid", Msg: fmt.Sprintf("%v is not on interface %s but on %s", local, iface, strings.Join(on, ", "))}
	}
	return nil
}

// ClusterStatus is this node's view of its cluster (cluster.go).
func (b backend) ClusterStatus() (control.ClusterStatus, error) {
	n := b.d.cluster
	if n == nil {
		return control.ClusterStatus{}, &control.Error{Code: control.CodeFailed, Msg: "this daemon is not a cluster node (no cluster section)"}
	}
	st := n.Status()
	out := control.ClusterStatus{Name: st.Name, Node: st.Node, Joined: st.Joined, Fenced: st.Fenced, Owned: st.Owned, Error: st.Err, Placement: st.Placement,
		Revision: st.Revision, Members: []control.ClusterMember{}}
	for _, m := range st.Members {
		cm := control.ClusterMember{Node: m.ID, SAs: m.SAs}
		for _, a := range m.Addrs {
			cm.Addrs = append(cm.Addrs, a.String())
		}
		out.Members = append(out.Members, cm)
	}
	return out, nil
}

// ClusterMove hands IKE SA id to node to and waits for the outcome.
func (b backend) ClusterMove(id uint64, to uint8) error {
	n := b.d.cluster
	if n == nil {
		return &control.Error{Code: control.CodeFailed, Msg: "this daemon is not a cluster node (no cluster section)"}
	}
	var ok bool
	b.d.call(func() { ok = b.exists(id) })
	if !ok {
		return &control.Error{Code: control.CodeNotFound, Msg: fmt.Sprintf("no IKE SA %d", id)}
	}
	// Not on the event loop: the hand-over needs it (loopEngine).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.HandOff(ctx, id, to)
}

// FollowLog subscribes a `mifike log` follower at level, whatever the
// log's own level (logstream).
func (b backend) FollowLog(level string) (*logstream.Subscription, error) {
	l, err := parseLogLevel(level)
	if err != nil {
		return nil, err
	}
	return b.d.logHub.Subscribe(l), nil
}

func parseLogLevel(level string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(level)) {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return l, nil
}

// SetLogLevel changes the log's level until the next reload or restart
// (`mifike loglevel`), and returns the one before.
func (b backend) SetLogLevel(level string) (string, error) {
	l, err := parseLogLevel(level)
	if err != nil {
		return "", err
	}
	var prev slog.Level
	b.d.call(func() {
		prev = b.d.level.Level()
		b.d.level.Set(l)
	})
	b.d.log.Info("log level changed", "level", strings.ToLower(l.String()), "was", strings.ToLower(prev.String()))
	return strings.ToLower(prev.String()), nil
}
