package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/ike"
)

// waitBackend is a daemon whose requests publish the events a real one
// would, scripted by request (ctlBackend.script, .later).
func waitBackend() *ctlBackend {
	child := func(name, in, out string) control.Child {
		return control.Child{Name: name, State: "INSTALLED", Mode: "tunnel", InSPI: in, OutSPI: out, LocalTS: []string{}, RemoteTS: []string{}}
	}
	sa := func(id uint64, local, iface string, children ...control.Child) control.SA {
		return control.SA{ID: id, Conn: "home", State: ike.StateEstablished, Local: local, Remote: "198.51.100.1:4500", Iface: iface, Children: children}
	}
	ev := func(kind string, id uint64) control.Event { return control.Event{Kind: kind, IKESA: id, Conn: "home"} }
	with := func(e control.Event, f func(*control.Event)) control.Event { f(&e); return e }
	up := func(id uint64, name, spi string) control.Event {
		return with(ev("child-up", id), func(e *control.Event) { e.ChildName, e.Child = name, spi })
	}
	return &ctlBackend{
		live:  true,
		start: []string{"net"},
		sas: []control.SA{
			sa(3, "192.0.2.10:4500", "", child("net", "c1a2b3c4", "d4e5f6a7")),
			sa(5, "192.0.2.7:4500", "wlan0"), sa(6, "192.0.2.10:4500", ""), sa(7, "192.0.2.10:4500", "", child("net", "7e7e7e7e", "d4e5f6a7")),
			sa(9, "192.0.2.10:4500", ""), sa(10, "192.0.2.10:4500", ""), sa(12, "192.0.2.10:4500", "", child("net", "12121212", "d4e5f6a7")),
		},
		conns: []control.Conn{{Name: "home"}},
		script: map[string][]control.Event{
			// Events of other SAs come and go meanwhile.
			"initiate home ": {ev("ike-up", 8), up(8, "net", "88888888"), ev("ike-failed", 11), ev("ike-up", 7)},
			// A wrong PSK: the gateway refuses our AUTH.
			"initiate bad ":    {with(ev("ike-failed", 7), func(e *control.Event) { e.Detail = "peer refused our authentication (AUTHENTICATION_FAILED)" })},
			"initiate narrow ": {ev("ike-up", 7), with(ev("child-failed", 7), func(e *control.Event) { e.ChildName, e.Detail = "net", "child net refused: TS_UNACCEPTABLE" })},
			// The IKE SA is rekeyed before its second child is up.
			"initiate rekeyed ": {ev("ike-up", 7), with(ev("ike-rekeyed", 12), func(e *control.Event) { e.From = 7 })},
			"initiate home lte": {up(7, "net", "7f7f7f7f")}, // another child: not the one asked for
			"clone 3":           {with(ev("clone-refused", 3), func(e *control.Event) { e.Notify, e.Detail = "TEMPORARY_FAILURE", "TEMPORARY_FAILURE, retrying" })},
			"clone 5": {with(ev("clone-refused", 5), func(e *control.Event) {
				e.Notify, e.Detail = "NO_ADDITIONAL_SAS", "NO_ADDITIONAL_SAS: the peer allows no more IKE SAs"
			})},
			"rekey 3 00000000": {with(ev("ike-rekeyed", 10), func(e *control.Event) { e.From = 3 })},
			"rekey 3 c1a2b3c4": {up(3, "net", "c5c5c5c5"), with(ev("child-rekeyed", 3), func(e *control.Event) { e.Child, e.FromChild, e.ChildName = "c5c5c5c5", "c1a2b3c4", "net" })},
			"rekey 5 c1a2b3c4": {with(ev("child-failed", 5), func(e *control.Event) {
				e.Child, e.ChildName, e.Detail = "c1a2b3c4", "net", "rekey child net c1a2b3c4 refused: NO_PROPOSAL_CHOSEN"
			})},
			// The peer rekeyed it first: ours is skipped, the old one goes.
			"rekey 7 7e7e7e7e":        {up(7, "net", "7f7f7f7f"), with(ev("child-down", 7), func(e *control.Event) { e.Child, e.ChildName, e.Detail = "7e7e7e7e", "net", "net: deleted by the peer" })},
			"terminate 3 00000000":    {with(ev("child-down", 3), func(e *control.Event) { e.Child = "c1a2b3c4" })},
			"terminate 3 c1a2b3c4":    {with(ev("child-down", 3), func(e *control.Event) { e.Child = "c1a2b3c4" })},
			"terminate-conn home":     {ev("ike-down", 3)},
			"move 5 192.0.2.7  wlan0": {ev("address-update", 5)},
			"move 6 192.0.2.7  wlan0": {ev("address-update", 6), with(ev("address-update", 6), func(e *control.Event) {
				e.Notify, e.Detail = "UNACCEPTABLE_ADDRESSES", "peer refused 192.0.2.7:4500 - 198.51.100.1:4500"
			})},
			"move 9 192.0.2.7  wlan0": {ev("address-update", 9), ev("path-probe", 9)},
		},
		later: map[string][]control.Event{
			"initiate home ":          {up(7, "net", "7e7e7e7e")},
			"initiate rekeyed ":       {up(12, "net", "12121212")},
			"clone 3":                 {with(ev("ike-cloned", 9), func(e *control.Event) { e.From = 3 }), ev("ike-up", 9)},
			"terminate 3 00000000":    {ev("ike-down", 3)},
			"terminate-conn home":     {with(ev("ike-failed", 4), func(e *control.Event) { e.Detail = "terminated before it was established" })},
			"move 5 192.0.2.7  wlan0": {ev("address-confirmed", 5)},
			"move 9 192.0.2.7  wlan0": {ev("address-confirmed", 9)},
		},
	}
}

func TestWaitForOutcome(t *testing.T) {
	sock := startDaemon(t, waitBackend())
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // the whole of it, or with --json the fields below
		stderr string // contained
		json   map[string]any
	}{
		{args: []string{"initiate", "home"}, stdout: "home: IKE SA 7 ESTABLISHED, Child SA net 7e7e7e7e_i d4e5f6a7_o\n"},
		{args: []string{"initiate", "home", "--json"}, json: map[string]any{"ike_sa": 7.0, "conn": "home", "state": "ESTABLISHED", "children.0.name": "net", "children.0.in_spi": "7e7e7e7e"}},
		{args: []string{"initiate", "bad"}, code: 1, stderr: "mifike: IKE SA 7 of bad failed: peer refused our authentication (AUTHENTICATION_FAILED)\n"},
		{args: []string{"initiate", "bad", "--json"}, code: 1, json: map[string]any{
			"error": "IKE SA 7 of bad failed: peer refused our authentication (AUTHENTICATION_FAILED)", "code": "failed", "ike_sa": 7.0}},
		{args: []string{"initiate", "narrow"}, code: 1, stderr: "IKE SA 7 of narrow is up, but its Child SA net failed: child net refused: TS_UNACCEPTABLE"},
		{args: []string{"initiate", "rekeyed"}, stdout: "rekeyed: IKE SA 12 ESTABLISHED, Child SA net 12121212_i d4e5f6a7_o\n"},
		{args: []string{"initiate", "home", "--child", "lte", "--timeout", "100ms"}, code: exitTimeout,
			stderr: "mifike: timed out after 100ms waiting for Child SA lte on IKE SA 7 (IKE SA 7 is ESTABLISHED; last event: child-up home[7] child 7f7f7f7f); the daemon goes on with it\n"},
		{args: []string{"clone", "3"}, stdout: "IKE SA 3 cloned: IKE SA 9\n"},
		{args: []string{"clone", "3", "--json"}, json: map[string]any{"ike_sa": 9.0, "from_ike_sa": 3.0, "state": "ESTABLISHED"}},
		{args: []string{"clone", "5"}, code: 1, stderr: "the clone of IKE SA 5 was refused: NO_ADDITIONAL_SAS: the peer allows no more IKE SAs"},
		{args: []string{"rekey", "3"}, stdout: "IKE SA 3 rekeyed: now IKE SA 10\n"},
		{args: []string{"rekey", "3", "--child", "c1a2b3c4", "--json"}, json: map[string]any{"ike_sa": 3.0, "child": "c5c5c5c5", "from_child": "c1a2b3c4"}},
		{args: []string{"rekey", "5", "--child", "c1a2b3c4"}, code: 1, stderr: "the rekey of Child SA c1a2b3c4 failed: rekey child net c1a2b3c4 refused: NO_PROPOSAL_CHOSEN"},
		{args: []string{"rekey", "7", "--child", "7e7e7e7e"}, stdout: "Child SA 7e7e7e7e of IKE SA 7 rekeyed: now 7f7f7f7f\n"},
		{args: []string{"rekey", "6", "--timeout", "50ms", "--json"}, code: exitTimeout, json: map[string]any{
			"code": "timeout", "ike_sa": 6.0, "state": "ESTABLISHED",
			"error": "timed out after 50ms waiting for IKE SA 6 to be rekeyed (IKE SA 6 is ESTABLISHED); the daemon goes on with it"}},
		{args: []string{"terminate", "3"}, stdout: "IKE SA 3 deleted\n"},
		{args: []string{"terminate", "3", "--child", "c1a2b3c4"}, stdout: "Child SA c1a2b3c4 of IKE SA 3 deleted\n"},
		{args: []string{"terminate", "home", "--json"}, json: map[string]any{"conn": "home", "state": "DELETED", "terminated": 2.0, "ike_sas.1": 4.0}},
		{args: []string{"move", "5", "--local", "192.0.2.7%wlan0"}, stdout: "IKE SA 5 moved to 192.0.2.7[4500] - 198.51.100.1[4500] via wlan0; the peer confirmed it\n"},
		{args: []string{"move", "6", "--local", "192.0.2.7%wlan0"}, code: 1, stderr: "the peer refused the path of IKE SA 6 (UNACCEPTABLE_ADDRESSES): peer refused 192.0.2.7:4500"},
		// No answer on the new path: a probe took it elsewhere.
		{args: []string{"move", "9", "--local", "192.0.2.7%wlan0"}, code: 1, stderr: "IKE SA 9 did not stay on the path asked for: the peer confirmed it on 192.0.2.10[4500] - 198.51.100.1[4500]"},
		{args: []string{"move", "8", "--local", "192.0.2.7%wlan0"}, stdout: "IKE SA 8 is on that path already\n"},
		// Refusals and usage errors are JSON too with --json.
		{args: []string{"initiate", "missing", "--json"}, code: 1, json: map[string]any{"error": `no connection "missing"`, "code": "not-found"}},
		{args: []string{"initiate", "home", "--ike", "3", "--json"}, code: 2, json: map[string]any{"error": "initiate: --ike needs --child", "code": "usage"}},
	} {
		r := runCtl(append([]string{tc.args[0], "-s", sock}, tc.args[1:]...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) || tc.json == nil && r.stdout != tc.stdout {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stdout, tc.stderr)
			continue
		}
		if tc.json == nil {
			continue
		}
		var got any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.stderr != "" {
			t.Errorf("%q: stdout is not one JSON object (%v), stderr %q:\n%s", tc.args, err, r.stderr, r.stdout)
			continue
		}
		for path, want := range tc.json {
			if v := jsonPath(got, path); v != want {
				t.Errorf("%q: %s is %#v, want %#v:\n%s", tc.args, path, v, want, r.stdout)
			}
		}
	}
}

// jsonPath reads "a.0.b" out of decoded JSON.
func jsonPath(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i := 0
			for _, c := range k {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// --no-wait returns as soon as the daemon answers, before any event.
func TestNoWait(t *testing.T) {
	b := waitBackend()
	b.later = nil // the outcome would never come
	sock := startDaemon(t, b)
	start := time.Now()
	r := runCtl("initiate", "home", "-s", sock, "--no-wait", "--json")
	if r.code != 0 || time.Since(start) > 2*time.Second {
		t.Fatalf("exit %d after %v: %s%s", r.code, time.Since(start), r.stdout, r.stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got["ike_sa"] != 7.0 || got["state"] != "REQUESTED" {
		t.Fatalf("initiate --no-wait --json: %v: %s", err, r.stdout)
	}
	if r := runCtl("clone", "3", "-s", sock, "--timeout", "50ms"); r.code != exitTimeout {
		t.Fatalf("clone without its outcome: exit %d, want %d: %s", r.code, exitTimeout, r.stderr)
	}
}

// When events were lost (a slow client), the SAs as they are now decide
// what they can.
func TestPollAfterLostEvents(t *testing.T) {
	sas := []control.SA{{ID: 7, State: ike.StateEstablished, Children: []control.Child{{Name: "net", State: "INSTALLED", InSPI: "7e7e7e7e"}}}}
	in := newInitiateTracker("home", control.Initiated{IKESA: 7, Children: []string{"net"}})
	if done, err := in.poll(sas); !done || err != nil {
		t.Errorf("initiate, SA and child up: done %v, %v", done, err)
	}
	if done, err := newInitiateTracker("home", control.Initiated{IKESA: 8}).poll(sas); done || err == nil {
		t.Errorf("initiate, SA gone: done %v, %v", done, err)
	}
	// On an SA that was up already, the child's name does not tell a new
	// child from an old one.
	if done, err := newInitiateTracker("home", control.Initiated{IKESA: 7, Children: []string{"net"}, Existing: true}).poll(sas); done || err != nil {
		t.Errorf("initiate --child on an established SA: done %v, %v", done, err)
	}
	term := &terminateTracker{ids: []uint64{7, 8}, left: []uint64{7, 8}}
	if done, _ := term.poll(sas); done || len(term.left) != 1 {
		t.Errorf("terminate 7 and 8, 7 still there: done %v, left %v", done, term.left)
	}
	if done, _ := (&terminateTracker{ids: []uint64{7}, left: []uint64{7}, child: "7e7e7e7f"}).poll(sas); !done {
		t.Error("terminate of a child no longer listed: not done")
	}
	for _, tr := range []tracker{&rekeyTracker{from: 8, sa: follow{8}}, &cloneTracker{sa: follow{8}}, &moveTracker{sa: follow{8}}} {
		if done, err := tr.poll(sas); done || err == nil {
			t.Errorf("%T of a gone SA: done %v, %v", tr, done, err)
		}
	}
}
