package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/control"
)

// The action verbs (initiate, terminate, rekey, clone, move) are truthful
// (issue 19): the daemon answers a request once it has started it, before
// the peer has said a word, so a verb subscribes to the daemon's events
// first, sends its request, and follows the IKE SA the answer names until
// the outcome: up, gone, rekeyed, cloned, moved, or failed with the
// engine's or the peer's reason (a wrong PSK is AUTHENTICATION_FAILED,
// not exit 0). --no-wait is the old way: return once the daemon has
// started the request.

// defaultTimeout bounds the wait. It is shorter than a dead peer's
// retransmission schedule (about 165 s by default): a script learns
// sooner that nothing answers, and the daemon goes on trying.
const defaultTimeout = 30 * time.Second

// exitTimeout: the outcome did not come within --timeout; the daemon goes
// on with the request.
const exitTimeout = 4

// waitFlags gives a verb --timeout and --no-wait.
func (v *verb) waitFlags() {
	v.waits = true
	v.cmd.Flags().DurationVar(&v.timeout, "timeout", defaultTimeout, "wait at most this long for the outcome (e.g. 90s; 0: no limit)")
	v.cmd.Flags().BoolVar(&v.noWait, "no-wait", false, "return once the daemon has started the request, without waiting for its outcome")
}

// tracker follows the events of one request to its outcome.
type tracker interface {
	// event takes one event of the stream; done when it settles the
	// outcome, a *failure when that is a failure.
	event(ev control.Event) (done bool, err error)
	// poll judges from the IKE SAs as they are now, when events were
	// lost (a slow client's gap, or at the deadline): done or a failure
	// only when they tell for certain.
	poll(sas []control.SA) (done bool, err error)
	// waiting says what the verb waits for: "IKE SA 7 to come up".
	waiting() string
	// ikeSA is the IKE SA the outcome is about, as far as known.
	ikeSA() uint64
	// result is the outcome to print, given the IKE SAs after it; a
	// failure when they show it is not what was asked for after all.
	result(sas []control.SA) (out outcome, text string, err error)
}

// outcome is what an action verb prints with --json: the IKE SA it ended
// with and its state, and what the verb adds.
type outcome struct {
	IKESA uint64 `json:"ike_sa,omitempty"`
	Conn  string `json:"conn,omitempty"`
	// State is the IKE SA's (ESTABLISHED, ...) or DELETED once it is
	// gone.
	State string `json:"state"`
	// From: the IKE SA a rekey or a clone came from.
	From uint64 `json:"from_ike_sa,omitempty"`
	// Child and FromChild: a Child SA's inbound SPI (rekey, terminate
	// --child), and the one a rekey replaced.
	Child     string `json:"child,omitempty"`
	FromChild string `json:"from_child,omitempty"`
	// Children: the Child SAs an initiate brought up.
	Children []control.Child `json:"children,omitempty"`
	// Local, Remote and Iface: the path after a move.
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	Iface  string `json:"iface,omitempty"`
	// Terminated and IKESAs: the IKE SAs terminate CONN deleted.
	Terminated int      `json:"terminated,omitempty"`
	IKESAs     []uint64 `json:"ike_sas,omitempty"`
}

// failure is an outcome that is not what was asked for, or no outcome in
// time; with --json it is printed as it is.
type failure struct {
	Msg   string `json:"error"`
	Code  string `json:"code"` // control.CodeFailed, or codeTimeout
	IKESA uint64 `json:"ike_sa,omitempty"`
	// State is the IKE SA's when the wait timed out.
	State string `json:"state,omitempty"`
	// Last is the last event about the IKE SA, when it timed out.
	Last *control.Event `json:"last_event,omitempty"`
}

func (f *failure) Error() string { return f.Msg }

// Codes of errors the CLI makes (--json), besides the daemon's.
const (
	codeTimeout     = "timeout"
	codeUnreachable = "unreachable"
	codeUsage       = "usage"
)

func failed(id uint64, format string, args ...any) *failure {
	return &failure{Msg: fmt.Sprintf(format, args...), Code: control.CodeFailed, IKESA: id}
}

// act sends cmd and, unless --no-wait, waits for its outcome. answer
// receives the daemon's answer; track makes the tracker from it, and
// returns nil when there is nothing to wait for (a move to where the SA
// is already); requested is the text printed then, or with --no-wait.
func (v *verb) act(cmd string, args map[string]any, answer any, track func() tracker, requested func() string) int {
	return v.call(func(c *control.Client) error {
		var sub *control.Client
		if !v.noWait {
			// Subscribed before the request: none of its events can be
			// missed (control.Client.Subscribe).
			var err error
			if sub, err = control.Dial(v.socket); err != nil {
				return err
			}
			defer sub.Close()
			if err := sub.Subscribe(); err != nil {
				return err
			}
		}
		var raw json.RawMessage
		if err := c.Call(cmd, args, &raw); err != nil {
			return err
		}
		if answer != nil && len(raw) > 0 {
			if err := json.Unmarshal(raw, answer); err != nil {
				return fmt.Errorf("decoding the answer to %s: %w", cmd, err)
			}
		}
		if v.noWait {
			v.printAnswer(raw, args, "REQUESTED", requested())
			return nil
		}
		t := track()
		if t == nil {
			// Nothing happens, and no event follows: that is the outcome.
			sas, err := listSAs(c)
			if err != nil {
				return err
			}
			v.printAnswer(raw, args, stateOf(sas, args["ike_sa"].(uint64)), requested())
			return nil
		}
		if err := v.await(sub, c, t); err != nil {
			return err
		}
		sas, err := listSAs(c)
		if err != nil {
			return err
		}
		out, text, err := t.result(sas)
		if err != nil {
			return err
		}
		if v.json {
			b, _ := json.Marshal(out)
			v.printJSON(b)
		} else {
			fmt.Fprintln(v.stdout, text)
		}
		return nil
	})
}

// printAnswer is the output of a request without a wait (--no-wait's,
// which is what the verbs printed before they waited): text, or with
// --json the daemon's answer with the IKE SA asked about and state.
func (v *verb) printAnswer(raw json.RawMessage, args map[string]any, state, text string) {
	if !v.json {
		fmt.Fprintln(v.stdout, text)
		return
	}
	m := map[string]any{}
	json.Unmarshal(raw, &m) // null or an object
	if m == nil {
		m = map[string]any{}
	}
	if id, ok := args["ike_sa"]; ok && m["ike_sa"] == nil && id != uint64(0) {
		m["ike_sa"] = id
	}
	if spi, ok := args["child_spi"]; ok {
		m["child"] = fmt.Sprintf("%08x", spi)
	}
	m["state"] = state
	b, _ := json.Marshal(m)
	v.printJSON(b)
}

// await reads events until t has the outcome or the deadline passes.
func (v *verb) await(sub, c *control.Client, t tracker) error {
	var deadline time.Time
	if v.timeout > 0 {
		deadline = time.Now().Add(v.timeout)
	}
	var last *control.Event
	for {
		ev, err := sub.Next(deadline)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return v.timedOut(c, t, last)
		}
		if err != nil {
			return err
		}
		if ev.Dropped > 0 {
			// This client read too slowly and lost events, perhaps the
			// outcome: the SAs as they are now may tell.
			sas, err := listSAs(c)
			if err != nil {
				return err
			}
			if done, err := t.poll(sas); done || err != nil {
				return err
			}
			continue
		}
		if id := t.ikeSA(); id != 0 && (ev.IKESA == id || ev.From == id) {
			last = &ev
		}
		if done, err := t.event(ev); done || err != nil {
			return err
		}
	}
}

// timedOut is the failure at the deadline, unless a last look at the SAs
// finds the outcome after all (an event lost without a marker). It says
// what was last seen of the IKE SA; the request goes on in the daemon.
func (v *verb) timedOut(c *control.Client, t tracker, last *control.Event) error {
	f := &failure{Code: codeTimeout, IKESA: t.ikeSA(), Last: last}
	var seen []string
	if sas, err := listSAs(c); err == nil {
		if done, err := t.poll(sas); done || err != nil {
			return err
		}
		f.State = "DELETED"
		for _, s := range sas {
			if s.ID == f.IKESA {
				f.State = s.State.String()
			}
		}
		if f.IKESA != 0 {
			seen = append(seen, fmt.Sprintf("IKE SA %d is %s", f.IKESA, f.State))
		}
	}
	if last != nil {
		seen = append(seen, "last event: "+eventText(*last))
	}
	f.Msg = fmt.Sprintf("timed out after %v waiting for %s", v.timeout, t.waiting())
	if len(seen) > 0 {
		f.Msg += " (" + strings.Join(seen, "; ") + ")"
	}
	f.Msg += "; the daemon goes on with it"
	return f
}

// eventText is an event as mifike events prints it, without the time.
func eventText(ev control.Event) string {
	var b strings.Builder
	writeEvent(&b, ev)
	s := strings.TrimSpace(b.String())
	_, rest, _ := strings.Cut(s, " ") // the time
	return rest
}

func listSAs(c *control.Client) ([]control.SA, error) {
	var sas []control.SA
	err := c.Call("list-sas", nil, &sas)
	return sas, err
}

func findSA(sas []control.SA, id uint64) (control.SA, bool) {
	for _, s := range sas {
		if s.ID == id {
			return s, true
		}
	}
	return control.SA{}, false
}

// stateOf is an IKE SA's state for an outcome: DELETED once it is gone.
func stateOf(sas []control.SA, id uint64) string {
	if s, ok := findSA(sas, id); ok {
		return s.State.String()
	}
	return "DELETED"
}
