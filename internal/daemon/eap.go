package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mifike/mifike/internal/config"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/radius"
	"layeh.com/radius/rfc2866"
)

// The gateway's EAP backend: the engine asks about each round of an EAP
// conversation (ike.AskEAP) and the daemon passes it to the RADIUS
// servers of the radius section (RFC 3579), as strongSwan's eap-radius
// does, then gives the answer back (Engine.AnswerEAP) on the event loop.
// A RADIUS round runs on its own goroutine, bounded by roundBudget, so a
// slow server holds up only its own peer. Accounting (RFC 2866) follows
// each authenticated family the RFC 7791 §8 way: Start when it is
// authenticated, Interim-Updates summed over all its IKE SAs, Stop when
// the last of them goes; a clone sends nothing of its own.

// roundBudget bounds one RADIUS round: within it the end user's IKE
// retransmissions (4 s, 7.2 s, 13 s, ...) still wait for the answer.
const roundBudget = 30 * time.Second

// radiusBackend holds the RADIUS client and the conversations and
// accounting sessions. Only the event loop touches its maps.
type radiusBackend struct {
	d      *Daemon
	cfg    *config.RADIUSConfig
	client *radius.Client
	log    *slog.Logger
	convs  map[uint64]*eapConv      // by IKE SA, until it is established or gone
	accept map[uint64]*radius.Reply // the Access-Accept of an SA not up yet, by IKE SA
	acct   map[uint64]*acctSession  // by family
	// members maps each IKE SA of an accounted family to it: when an IKE
	// SA is deleted the engine forgets it before the daemon applies the
	// DeleteChild actions of its Child SAs, so their counters find their
	// family's session here.
	members map[uint64]uint64
	// closed are the counters of Child SAs gone, by family, so a Stop
	// counts what the family carried in all.
	nextAcct uint64
}

type eapConv struct {
	conv   *radius.Conversation
	cancel context.CancelFunc
	user   string
	// identity is the IKE identity taken as the EAP identity (eap_id:
	// ike), told to the engine with the first answer.
	identity []byte
}

type acctSession struct {
	fam      uint64 // the engine's family
	req      radius.AccountingRequest
	start    time.Time
	interval time.Duration
	next     time.Time
	// carried are the counters of the family's Child SAs that are gone.
	carried [4]uint64
}

func newRADIUSBackend(d *Daemon, cfg *config.RADIUSConfig, log *slog.Logger) (*radiusBackend, error) {
	rc := radius.Config{Timeout: cfg.Timeout, Tries: cfg.Tries, NAS: radius.NAS{Identifier: cfg.NASIdentifier}, Logger: log}
	for _, s := range cfg.Servers {
		rc.Servers = append(rc.Servers, radius.Server{Address: s.Address, AuthPort: s.AuthPort, AcctPort: s.AcctPort, Secret: radius.NewSecret(string(s.Secret))})
	}
	c, err := radius.New(rc)
	if err != nil {
		return nil, err
	}
	return &radiusBackend{d: d, cfg: cfg, client: c, log: log.With("component", "radius"),
		convs: map[uint64]*eapConv{}, accept: map[uint64]*radius.Reply{}, acct: map[uint64]*acctSession{}, members: map[uint64]uint64{}}, nil
}

// ask handles one AskEAP on the event loop.
func (b *radiusBackend) ask(a ike.AskEAP) {
	if a.Message == nil && b.identityFromIKE(a.Conn) {
		// remote.eap_id: ike, strongSwan's default: the IKE identity is
		// the EAP identity, sent to RADIUS as the peer's Identity
		// Response (RFC 3579 §2.1), which saves the Identity round trip.
		var id [1]byte
		_, _ = rand.Read(id[:])
		ident := a.PeerIDText[:min(len(a.PeerIDText), 253)]
		n := 5 + len(ident)
		a.Message = append([]byte{2, id[0], byte(n >> 8), byte(n), 1}, ident...)
		a.Identity = ident
	}
	if a.Message == nil {
		// The first Request is ours to send (RFC 3579 §2.1: the NAS may
		// ask the identity itself): an Identity Request.
		var id [1]byte
		_, _ = rand.Read(id[:])
		b.answer(a.IKESA, ike.EAPAnswer{Round: a.Round, Verdict: ike.EAPContinue, Message: []byte{1, id[0], 0, 5, 1}})
		return
	}
	c := b.convs[a.IKESA]
	if c == nil {
		user := string(a.Identity)
		c = &eapConv{conv: b.client.NewConversation(user, radius.StationID(a.Local), radius.StationID(a.Remote)), user: user}
		if len(a.Identity) > 0 && a.Round == 1 {
			c.identity = a.Identity // taken from IKE: the engine learns it with the answer
		}
		b.convs[a.IKESA] = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), roundBudget)
	c.cancel = cancel
	conv, id, round, msg := c.conv, a.IKESA, a.Round, a.Message
	go func() {
		defer cancel()
		reply, err := conv.Round(ctx, msg)
		b.d.post(func() { b.done(id, round, c, reply, err) })
	}()
}

// identityFromIKE: the connection takes the IKE identity as the EAP
// identity (remote.eap_id: ike).
func (b *radiusBackend) identityFromIKE(conn string) bool {
	for _, cc := range b.d.cfg.Connections {
		if cc.Name == conn {
			return cc.Remote.EAPID == "ike"
		}
	}
	return false
}

// done turns a RADIUS reply into the engine's answer, on the event loop.
func (b *radiusBackend) done(id uint64, round int, c *eapConv, reply *radius.Reply, err error) {
	if b.convs[id] != c {
		return // the SA went meanwhile
	}
	var rej *radius.RejectError
	var ans ike.EAPAnswer
	switch {
	case errors.As(err, &rej):
		ans = ike.EAPAnswer{Round: round, Verdict: ike.EAPReject, Why: "RADIUS Access-Reject from " + rej.Server}
		if rej.ReplyMessage != "" {
			ans.Why += ": " + rej.ReplyMessage
		}
		if reply != nil {
			ans.Message = reply.EAPMessage
		}
		delete(b.convs, id)
	case err != nil:
		ans = ike.EAPAnswer{Round: round, Verdict: ike.EAPError, Why: err.Error()}
		delete(b.convs, id)
	case reply.Code == radius.AccessChallenge:
		ans = ike.EAPAnswer{Round: round, Verdict: ike.EAPContinue, Message: reply.EAPMessage}
	default: // Access-Accept
		ans = ike.EAPAnswer{Round: round, Verdict: ike.EAPAccept, Message: reply.EAPMessage, MSK: padMSK(reply.MSK),
			VirtualIP: reply.FramedIPAddress, SessionTimeout: reply.SessionTimeout}
		b.accept[id] = reply
		delete(b.convs, id)
		b.log.Info("RADIUS accepted", "ike", id, "user", c.user)
	}
	if c.identity != nil {
		ans.Identity, c.identity = c.identity, nil
	}
	if ans.Verdict == ike.EAPReject || ans.Verdict == ike.EAPError {
		b.log.Warn("EAP authentication failed", "ike", id, "user", c.user, "why", ans.Why)
	}
	b.answer(id, ans)
}

// padMSK zero-pads an MSK from RADIUS to the 64 octets an MSK has (RFC
// 3748 §7.10). FreeRADIUS's EAP-MSCHAPv2 sends 16-octet MS-MPPE keys, 32
// octets in all; strongSwan 5.9.8 keys the AUTH of §2.16 with them padded
// to 64 (its eap-radius gateway as its eap-mschapv2 peer, charon's log at
// ike = 4 shows), and so does internal/eap's peer. The HMAC PRFs pad short
// keys the same way, so only a PRF that hashes its key (AES-XCBC, RFC
// 4434; AES-CMAC, RFC 4615) would tell 32 from 64 octets apart.
func padMSK(msk []byte) []byte {
	if len(msk) == 0 || len(msk) >= 64 {
		return msk
	}
	return append(msk, make([]byte, 64-len(msk))...)
}

func (b *radiusBackend) answer(id uint64, ans ike.EAPAnswer) {
	acts, err := b.d.engine.AnswerEAP(time.Now(), id, ans)
	if err != nil {
		b.log.Debug("EAP answer not taken", "ike", id, "err", err)
	}
	b.d.apply(acts)
}

// event follows the engine's events: an SA authenticated by RADIUS starts
// its family's accounting; a family's last SA gone stops it; an SA that
// failed drops its conversation.
func (b *radiusBackend) event(ev ike.Event) {
	// Every event of a live SA (a clone's Child SA coming up, a rekeyed
	// IKE SA's) records its family while the engine still knows it.
	if fam, ok := b.d.engine.FamilyOf(ev.IKESA); ok && b.acct[fam] != nil {
		b.members[ev.IKESA] = fam
	}
	switch ev.Kind {
	case ike.EventIKEUp:
		reply, ok := b.accept[ev.IKESA]
		if !ok {
			return
		}
		delete(b.accept, ev.IKESA)
		fam, ok := b.d.engine.FamilyOf(ev.IKESA)
		if !ok || !b.cfg.Accounting {
			return
		}
		b.startAccounting(ev.IKESA, fam, reply)
	case ike.EventIKEDown, ike.EventIKEFailed:
		if ev.StillUp {
			return // a failed rekey: the SA and its accounting go on
		}
		if c := b.convs[ev.IKESA]; c != nil {
			if c.cancel != nil {
				c.cancel()
			}
			delete(b.convs, ev.IKESA)
		}
		delete(b.accept, ev.IKESA)
		// Its Child SAs' DeleteChild actions came before this event.
		// Only its own family can have lost its last SA.
		fam, ok := b.members[ev.IKESA]
		delete(b.members, ev.IKESA)
		if s := b.acct[fam]; ok && s != nil && !b.d.engine.FamilyLive(fam) {
			b.send(s, radius.AcctStop)
			delete(b.acct, fam)
		}
	}
}

func (b *radiusBackend) startAccounting(id, fam uint64, reply *radius.Reply) {
	info, _ := b.d.engine.IKESA(id)
	b.nextAcct++
	s := &acctSession{fam: fam, start: time.Now(), interval: reply.AcctInterimInterval}
	if s.interval == 0 {
		s.interval = b.cfg.InterimInterval
	}
	if s.interval > 0 {
		s.interval = max(s.interval, time.Minute) // RFC 2869 §5.16: not more often than a minute
		s.next = s.start.Add(s.interval)
	}
	s.req = radius.AccountingRequest{SessionID: fmt.Sprintf("%08X-%d", uint32(s.start.Unix()), b.nextAcct),
		UserName: info.EAPIdentity, Class: reply.Class,
		CalledStationID: radius.StationID(info.Local), CallingStationID: radius.StationID(info.Remote)}
	for _, a := range info.PeerVirtualIPs {
		if a.Is4() {
			s.req.FramedIPAddress = a
			break
		}
	}
	b.acct[fam] = s
	b.members[id] = fam
	b.send(s, radius.AcctStart)
}

// childGone adds the counters of a Child SA about to leave the data plane
// to its family's session.
func (b *radiusBackend) childGone(ikeSA uint64, inSPI uint32) {
	if b.d.plane == nil || len(b.acct) == 0 {
		return
	}
	fam, ok := b.d.engine.FamilyOf(ikeSA)
	if !ok {
		fam, ok = b.members[ikeSA] // deleted with its IKE SA
	}
	s := b.acct[fam]
	if !ok || s == nil {
		return
	}
	if k := b.d.plane.Counters(inSPI); k != nil {
		s.carried[0] += k.BytesIn.Load()
		s.carried[1] += k.BytesOut.Load()
		s.carried[2] += k.PacketsIn.Load()
		s.carried[3] += k.PacketsOut.Load()
	}
}

// tick sends the Interim-Updates due.
func (b *radiusBackend) tick(now time.Time) {
	for _, s := range b.acct {
		if s.interval > 0 && !now.Before(s.next) {
			s.next = now.Add(s.interval)
			b.send(s, radius.AcctInterimUpdate)
		}
	}
}

// send sends one accounting request of s in the background.
func (b *radiusBackend) send(s *acctSession, status radius.AcctStatus) {
	req := b.request(s, status)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), roundBudget)
		defer cancel()
		if err := b.client.Account(ctx, &req); err != nil {
			b.log.Warn("RADIUS accounting not answered", "status", status, "session", req.SessionID, "err", err)
		}
	}()
	b.log.Info("RADIUS accounting", "status", status, "session", req.SessionID, "user", req.UserName,
		"bytes_in", req.InputOctets, "bytes_out", req.OutputOctets)
}

// request is an accounting request of s with the family's counters:
// every IKE SA of it, clones too, and the Child SAs gone.
func (b *radiusBackend) request(s *acctSession, status radius.AcctStatus) radius.AccountingRequest {
	req := s.req
	req.Status = status
	req.InputOctets, req.OutputOctets, req.InputPackets, req.OutputPackets = s.carried[0], s.carried[1], s.carried[2], s.carried[3]
	if status != radius.AcctStart {
		req.SessionTime = time.Since(s.start)
		if b.d.plane != nil {
			for _, spi := range b.d.engine.FamilyChildren(s.fam) {
				if k := b.d.plane.Counters(spi); k != nil {
					req.InputOctets += k.BytesIn.Load()
					req.OutputOctets += k.BytesOut.Load()
					req.InputPackets += k.PacketsIn.Load()
					req.OutputPackets += k.PacketsOut.Load()
				}
			}
		}
	}
	return req
}

// close stops every accounting session (the daemon stops: Admin-Reboot,
// RFC 2866 §5.10), waiting a few seconds for the servers to acknowledge,
// then the client.
func (b *radiusBackend) close() {
	for _, c := range b.convs {
		if c.cancel != nil {
			c.cancel()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for fam, s := range b.acct {
		req := b.request(s, radius.AcctStop)
		req.TerminateCause = rfc2866.AcctTerminateCause_Value_AdminReboot
		delete(b.acct, fam)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.client.Account(ctx, &req); err != nil {
				b.log.Warn("RADIUS accounting Stop not answered", "session", req.SessionID, "err", err)
			}
		}()
	}
	wg.Wait()
	_ = b.client.Close()
}
