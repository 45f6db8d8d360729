package ike

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/ts"
)

// Reconfiguration is what Reconfigure did to the running SAs, for the
// reload's reply and log.
type Reconfiguration struct {
	// Changed names the connections kept under their name whose
	// authentication, proposals or children differ, with what differs
	// ("pre-shared key", "child net selectors", ...).
	Changed map[string][]string
	// SAs are the IKE and Child SAs the reload touched or looked at
	// because their connection changed, in IKE SA order; SAs of
	// unchanged connections are not listed (they are untouched).
	SAs []SAChange
}

// SAAction is what a reload did with one SA.
type SAAction string

const (
	// SAKept: the SA carries on under the new configuration.
	SAKept SAAction = "kept"
	// SAClosed: a Delete is on its way to the peer (RFC 7296 §1.4.1).
	SAClosed SAAction = "closed"
	// SAReplaced: the Child SA is being deleted and a CREATE_CHILD_SA
	// with the new configuration's selectors follows it (§1.3.1, §2.9).
	SAReplaced SAAction = "replaced"
	// SACreated: a Child SA the new configuration starts is being
	// created on an existing IKE SA.
	SACreated SAAction = "created"
)

// SAChange is what a reload did with one IKE SA (Child == "") or one of
// its Child SAs.
type SAChange struct {
	IKESA         uint64
	Conn          string
	Child         string
	InSPI, OutSPI uint32
	Action        SAAction
	Reason        string
	// Restart: the IKE SA was closed because the new configuration no
	// longer authenticates it, its connection remains, and this side
	// set it up: initiating the connection again re-establishes it
	// under the new credentials (the daemon does, as strongSwan
	// restarts changed connections).
	Restart bool
}

// Reconfigure replaces the connections and brings the SAs in line with
// them, so that a reload never leaves running what the new file would
// not admit:
//   - a connection that is gone: its IKE SAs are deleted, with a Delete
//     to the peer (RFC 7296 §1.4.1), and their Child SAs with them;
//   - identities, authentication methods or secrets that no longer
//     authenticate an established IKE SA: it is deleted (Restart tells
//     the caller to set it up again);
//   - a Child SA whose selectors the child's new local_ts/remote_ts no
//     longer cover (§2.9), or whose child is gone: deleted, and where
//     this side set the IKE SA up, replaced by a CREATE_CHILD_SA with
//     the new selectors (§1.3.1);
//   - changed proposals: the SAs are kept and their next rekey
//     negotiates from the new proposals (§2.8 and §2.18 rekeys carry a
//     fresh SA payload).
//
// Connections that did not change keep their SAs untouched. An invalid
// configuration changes nothing.
func (e *Engine) Reconfigure(now time.Time, conns []*Connection) ([]Action, Reconfiguration, error) {
	e.begin(now)
	r := Reconfiguration{Changed: map[string][]string{}}
	names := map[string]*Connection{}
	for _, c := range conns {
		if err := c.Validate(); err != nil {
			return e.end(), r, err
		}
		if names[c.Name] != nil {
			return e.end(), r, fmt.Errorf("ike: two connections named %s", c.Name)
		}
		names[c.Name] = c
	}
	for _, old := range e.cfg.Connections {
		if c := names[old.Name]; c != nil {
			if d := connDiff(old, c); len(d) > 0 {
				r.Changed[c.Name] = d
			}
		}
	}
	e.cfg.Connections = conns
	e.reconfigureHalfOpen(names)
	for _, sa := range e.sortedSAs() {
		old, c := sa.conn, names[sa.conn.Name]
		switch {
		case c == nil:
			e.log.Info("connection removed by reload, deleting its IKE SA", "ike", sa.id, "conn", old.Name)
			r.closeSA(sa, "connection removed", false)
			e.terminateSA(sa)
			continue
		case sa.state != stateEstablished || sa.closing:
			// Setting up (it authenticates under the new connection),
			// or already on its way out.
			sa.reconnect(c)
			continue
		}
		if why := sa.revokedBy(c); why != "" {
			e.log.Info("reloaded revocation data revokes the peer's certificate, deleting the IKE SA", "ike", sa.id, "conn", c.Name, "reason", why)
			r.closeSA(sa, why, false)
			e.terminateSA(sa)
			continue
		}
		if r.Changed[c.Name] == nil {
			sa.reconnect(c) // same settings: nothing to say or do
			continue
		}
		if why := authChange(sa, old, c); why != "" {
			e.log.Debug("reloaded connection no longer authenticates the IKE SA, deleting it", "ike", sa.id, "conn", c.Name, "reason", why)
			r.closeSA(sa, why, sa.setUpByUs())
			e.terminateSA(sa)
			continue
		}
		r.SAs = append(r.SAs, SAChange{IKESA: sa.id, Conn: c.Name, Action: SAKept, Reason: ikeKeptReason(sa, old, c)})
		e.reconfigureChildren(sa, old, c, &r)
		sa.reconnect(c)
	}
	return e.end(), r, nil
}

// reconnect points sa at its connection's new configuration.
func (sa *ikeSA) reconnect(c *Connection) {
	probe := sa.conn.PathProbe
	sa.conn = c
	if c.PathProbe != probe && sa.state == stateEstablished {
		sa.armPathProbe() // on, off or another interval
	}
	if sa.onlyChild != nil {
		sa.onlyChild = c.child(sa.onlyChild.Name)
	}
	for _, ch := range sa.children {
		if n := c.child(ch.cfg.Name); n != nil {
			ch.cfg = n
		}
	}
}

// reconfigureChildren applies connection c's children to sa's Child SAs
// (old is the connection they were negotiated under).
func (e *Engine) reconfigureChildren(sa *ikeSA, old, c *Connection, r *Reconfiguration) {
	for _, ch := range slices.Clone(sa.children) {
		if ch.state != childInstalled && ch.state != childRekeying {
			continue // replaced or being deleted already
		}
		change := SAChange{IKESA: sa.id, Conn: c.Name, Child: ch.cfg.Name, InSPI: ch.inSPI, OutSPI: ch.outSPI}
		n := c.child(ch.cfg.Name)
		if n == nil {
			e.log.Debug("child removed by reload, deleting its Child SA", "ike", sa.id, "child", ch.cfg.Name, "spi", fmt.Sprintf("%08x", ch.inSPI))
			change.Action, change.Reason = SAClosed, "child removed"
			r.SAs = append(r.SAs, change)
			ch.reloadClosed = true
			sa.queue(&childDeleteTask{child: ch})
			continue
		}
		if why := sa.childDisallowed(ch, n); why != "" && ch.state == childRekeying {
			// Its rekey is in flight: the new SA comes with the old
			// selectors and is replaced when it arrives (replaceStale).
			change.Action, change.Reason = SAReplaced, why+"; its rekey in flight is replaced once done"
			if !sa.setUpByUs() {
				change.Action, change.Reason = SAClosed, why+"; its rekey in flight is deleted once done"
			}
			r.SAs = append(r.SAs, change)
			continue
		} else if why != "" {
			ch.reloadClosed = true
			sa.queue(&childDeleteTask{child: ch})
			change.Action, change.Reason = SAClosed, why
			if sa.setUpByUs() {
				// Delete first, then create: the replacement's policy
				// would overlap the old one's in the data plane.
				sa.queue(&childCreateTask{cfg: n})
				change.Action, change.Reason = SAReplaced, why+"; a Child SA with the new selectors replaces it"
			} else {
				change.Reason += "; the peer set this IKE SA up and creates the replacement"
			}
			e.log.Debug("reloaded child no longer allows the Child SA", "ike", sa.id, "child", n.Name,
				"spi", fmt.Sprintf("%08x", ch.inSPI), "action", string(change.Action), "reason", why)
			r.SAs = append(r.SAs, change)
			continue
		}
		change.Action, change.Reason = SAKept, "selectors still allowed"
		if !reflect.DeepEqual(ch.cfg.ESP, n.ESP) {
			change.Reason = "ESP proposals changed: kept until its next rekey, which offers the new ones"
		}
		r.SAs = append(r.SAs, change)
	}
	// Children the new configuration starts with the IKE SA: the side
	// that set the IKE SA up creates them now.
	if !sa.setUpByUs() || sa.onlyChild != nil {
		return
	}
	for _, n := range c.Children {
		if n.Start && old.child(n.Name) == nil {
			e.log.Debug("child added by reload, creating it", "ike", sa.id, "child", n.Name)
			sa.queue(&childCreateTask{cfg: n})
			r.SAs = append(r.SAs, SAChange{IKESA: sa.id, Conn: c.Name, Child: n.Name, Action: SACreated, Reason: "child added"})
		}
	}
}

// setUpByUs reports whether this side initiated the IKE_AUTH that set sa
// up (or cloned it): the side that brings its Child SAs up. Unlike the
// original-initiator flag (§2.2), a rekey by the peer does not change it.
func (sa *ikeSA) setUpByUs() bool { return sa.mobikeInitiator }

// childDisallowed says why the new child config n no longer admits Child
// SA ch, or "" when it does. Only what changed is checked: selectors the
// configuration did not touch stay as negotiated, even where an address
// they were made from moved (MOBIKE).
func (sa *ikeSA) childDisallowed(ch *childSA, n *ChildConfig) string {
	o := ch.cfg
	if o.Mode != n.Mode && ch.mode != n.Mode {
		return fmt.Sprintf("mode changed to %v", n.Mode)
	}
	local, remote := sa.policyTS(n)
	if (!reflect.DeepEqual(o.LocalTS, n.LocalTS) || o.DynamicLocal != n.DynamicLocal) && !ts.Subset(ch.localTS, local) {
		return fmt.Sprintf("local_ts %s no longer covers %s", ts.Strings(local), ts.Strings(ch.localTS))
	}
	if (!reflect.DeepEqual(o.RemoteTS, n.RemoteTS) || o.DynamicRemote != n.DynamicRemote) && !ts.Subset(ch.remoteTS, remote) {
		return fmt.Sprintf("remote_ts %s no longer covers %s", ts.Strings(remote), ts.Strings(ch.remoteTS))
	}
	return ""
}

// outsideStaticTS reports whether Child SA c has selectors the
// configured (not dynamic) local_ts or remote_ts of child n does not
// cover: a rekey that was in flight when a reload narrowed them keeps
// the old SA's (§2.9.2). Dynamic sides are not checked: they follow
// addresses that move (MOBIKE), and a reload that changes them is
// checked by Reconfigure itself.
func (sa *ikeSA) outsideStaticTS(c *childSA, n *ChildConfig) bool {
	return !n.DynamicLocal && len(n.LocalTS) > 0 && !ts.Subset(c.localTS, n.LocalTS) ||
		!n.DynamicRemote && len(n.RemoteTS) > 0 && !ts.Subset(c.remoteTS, n.RemoteTS)
}

// replaceStale deletes the rekeyed Child SA c that a reload removed
// (n nil) or narrowed while its rekey was in flight and, for a narrowed
// one where this side set the IKE SA up, creates its replacement, as
// Reconfigure does for the installed ones.
func (sa *ikeSA) replaceStale(c *childSA, n *ChildConfig) {
	sa.e.log.Info("rekeyed Child SA is one the reloaded configuration no longer allows, deleting it", "ike", sa.id,
		"child", c.cfg.Name, "spi", fmt.Sprintf("%08x", c.inSPI), "local_ts", ts.Strings(c.localTS), "remote_ts", ts.Strings(c.remoteTS))
	c.reloadClosed = true
	sa.queue(&childDeleteTask{child: c})
	if n != nil && sa.setUpByUs() {
		sa.queue(&childCreateTask{cfg: n})
	}
}

// authChange says why the new connection c no longer authenticates the
// established IKE SA sa, set up under old, or "" when it still does:
// the peer's identity must still be the one c accepts and the secret
// and trust anchors it was verified with must still be configured
// (RFC 7296 §2.15). A new certificate of ours is not such a change: the
// peer verified the old one, and the next authentication presents the
// new one.
func authChange(sa *ikeSA, old, c *Connection) string {
	switch {
	case old.LocalAuth != c.LocalAuth || old.RemoteAuth != c.RemoteAuth:
		return "authentication method changed"
	case !sameID(old.LocalID, c.LocalID):
		return "local identity changed"
	case !c.RemoteID.Any() && !ikeauth.IDEqual(c.RemoteID.Type, c.RemoteID.Data, sa.peerID.Type, sa.peerID.Data):
		return fmt.Sprintf("remote identity %s no longer matches the peer's %s",
			ikeauth.FormatID(c.RemoteID.Type, c.RemoteID.Data), ikeauth.FormatID(sa.peerID.Type, sa.peerID.Data))
	case (c.LocalAuth == AuthPSK || c.RemoteAuth == AuthPSK) && !bytes.Equal(old.PSK, c.PSK):
		return "pre-shared key changed"
	case c.RemoteAuth == AuthPubkey && !certsCover(c.CAs, old.CAs):
		return "a CA certificate the peer was verified with was removed"
	case c.LocalAuth == AuthEAP && !sameEAPCredentials(old, c):
		return "EAP identity or password changed"
	}
	return ""
}

// revokedBy checks the chain sa's family authenticated with against c's
// revocation data: a reload may bring a new CRL (RFC 5280 §3.3), and an
// administrator who revokes a certificate wants its SAs gone. Only a certificate known to be revoked counts: unknown status under a
// strict policy refuses new authentications, not established ones.
func (sa *ikeSA) revokedBy(c *Connection) string {
	f := sa.family
	if c.RemoteAuth != AuthPubkey || c.Revocation == nil || f == nil || len(f.peerChain) == 0 {
		return ""
	}
	err := c.Revocation.CheckRevocation(f.peerChain, sa.e.now)
	var r interface{ Revoked() bool }
	if err != nil && errors.As(err, &r) && r.Revoked() {
		return "peer certificate revoked: " + err.Error()
	}
	return ""
}

func sameID(a, b ID) bool {
	return a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

// certsCover reports whether every certificate of old is in cur.
func certsCover(cur, old []*x509.Certificate) bool {
	for _, o := range old {
		if !slices.ContainsFunc(cur, o.Equal) {
			return false
		}
	}
	return true
}

func sameEAPCredentials(a, b *Connection) bool {
	if a.EAP == nil || b.EAP == nil {
		return a.EAP == b.EAP
	}
	return bytes.Equal(a.EAP.Identity, b.EAP.Identity) && bytes.Equal(a.EAP.Password, b.EAP.Password)
}

// ikeKeptReason says why a changed connection's established IKE SA
// stays, and what of the change it sees.
func ikeKeptReason(sa *ikeSA, old, c *Connection) string {
	if reflect.DeepEqual(old.IKE, c.IKE) {
		return "still authenticated"
	}
	if sa.suite != nil && !ikeAllows(c, sa.neg) {
		return "IKE proposals no longer include its algorithms: kept until its next rekey, which negotiates from the new ones"
	}
	return "IKE proposals changed: kept until its next rekey, which offers the new ones"
}

// closeSA records that sa and its Child SAs are being deleted.
func (r *Reconfiguration) closeSA(sa *ikeSA, why string, restart bool) {
	r.SAs = append(r.SAs, SAChange{IKESA: sa.id, Conn: sa.conn.Name, Action: SAClosed, Reason: why, Restart: restart})
	for _, ch := range sa.children {
		if ch.state != childGone {
			r.SAs = append(r.SAs, SAChange{IKESA: sa.id, Conn: sa.conn.Name, Child: ch.cfg.Name, InSPI: ch.inSPI, OutSPI: ch.outSPI,
				Action: SAClosed, Reason: "its IKE SA is deleted"})
		}
	}
}

func (e *Engine) terminateSA(sa *ikeSA) {
	if sa.state == stateEstablished {
		sa.close()
	} else {
		e.destroy(sa, "connection removed")
	}
}

// connDiff lists what Reconfigure looks at that differs between old and
// c: authentication, proposals and children.
func connDiff(old, c *Connection) []string {
	var d []string
	add := func(differs bool, what string) {
		if differs {
			d = append(d, what)
		}
	}
	add(old.LocalAuth != c.LocalAuth || old.RemoteAuth != c.RemoteAuth, "authentication method")
	add(!sameID(old.LocalID, c.LocalID) || !sameID(old.RemoteID, c.RemoteID), "identities")
	add(!bytes.Equal(old.PSK, c.PSK), "pre-shared key")
	add(!slices.EqualFunc(old.Certs, c.Certs, (*x509.Certificate).Equal), "certificates")
	add(!slices.EqualFunc(old.CAs, c.CAs, (*x509.Certificate).Equal), "CA certificates")
	add(!sameEAPCredentials(old, c), "EAP credentials")
	add(!reflect.DeepEqual(old.IKE, c.IKE), "IKE proposals")
	for _, n := range c.Children {
		o := old.child(n.Name)
		if o == nil {
			d = append(d, "child "+n.Name+" added")
			continue
		}
		add(!reflect.DeepEqual(o.LocalTS, n.LocalTS) || !reflect.DeepEqual(o.RemoteTS, n.RemoteTS) ||
			o.DynamicLocal != n.DynamicLocal || o.DynamicRemote != n.DynamicRemote, "child "+n.Name+" selectors")
		add(o.Mode != n.Mode, "child "+n.Name+" mode")
		add(!reflect.DeepEqual(o.ESP, n.ESP), "child "+n.Name+" proposals")
	}
	for _, o := range old.Children {
		add(c.child(o.Name) == nil, "child "+o.Name+" removed")
	}
	return d
}
