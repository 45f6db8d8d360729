package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/mifike/mifike/internal/demo"
)

// verbsUEConfig is an end user without the interface manager, so that
// only the verbs act: a connection with the lab's key, one with a wrong
// key, and one to an address nobody answers on.
func verbsUEConfig() string {
	var b strings.Builder
	b.WriteString("log: {level: debug}\ndata_plane: userspace\ntun: {name: mifike0}\n")
	fmt.Fprintf(&b, "metrics: {listen: %q}\n", verbsMetrics)
	b.WriteString("retransmit: {timeout: 1s, base: 1.4, tries: 5}\nconnections:\n")
	for _, c := range []struct{ name, remote, psk string }{
		{"office", demo.GatewayAddrs[0].String(), demo.PSK},
		{"wrong-key", demo.GatewayAddrs[0].String(), "not-the-" + demo.PSK},
		{"nobody", "10.92.1.99", demo.PSK},
	} {
		fmt.Fprintf(&b, "  %s:\n    remote_addrs: [%s]\n", c.name, c.remote)
		fmt.Fprintf(&b, "    local: {auth: psk, id: alice@demo.example}\n    remote: {auth: psk, id: gw.demo.example}\n    psk: %q\n", c.psk)
		b.WriteString("    proposals: aes128gcm16-prfsha256-x25519\n    vips: [0.0.0.0]\n")
		b.WriteString("    clone: {enable: true, max_ike_sas: 8, own_vips: true}\n")
		b.WriteString("    children:\n      lan: {remote_ts: [10.93.0.0/24], esp_proposals: aes128gcm16}\n")
	}
	return b.String()
}

// verbsMetrics is both daemons' metrics address (each in its namespace).
const verbsMetrics = "127.0.0.1:9466"

// Issue 19, truthful verbs: initiate, clone, rekey, move and terminate
// wait for the outcome, say it in --json, and fail with the reason; a
// wrong PSK is AUTHENTICATION_FAILED and exit 1, not exit 0.
func TestVerbsWaitForTheOutcome(t *testing.T) {
	ctx, top := buildLab(t, "mfkv")
	gw, err := top.StartDaemon("gw", top.GW, demo.GWConfig(demo.Options{Metrics: verbsMetrics}))
	if err != nil {
		t.Fatal(err)
	}
	ue, err := top.StartDaemon("ue", top.UE, verbsUEConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("end user log (tail):\n%s", tail(ue.Log(), 40))
			t.Logf("gateway log (tail):\n%s", tail(gw.Log(), 25))
		}
	})

	type result struct {
		code           int
		stdout, stderr string
		took           time.Duration
		json           map[string]any
	}
	mifike := func(args ...string) result {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := exec.Command(mifikeBin, append(args, "-s", ue.Sock)...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		start := time.Now()
		err := cmd.Run()
		r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			r.code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.Join(args, " "), "--json") {
			if err := json.Unmarshal(out.Bytes(), &r.json); err != nil {
				t.Fatalf("mifike %s: not one JSON object (%v):\n%s%s", strings.Join(args, " "), err, r.stdout, r.stderr)
			}
		}
		t.Logf("mifike %s: exit %d in %v\n%s%s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
		return r
	}
	num := func(r result, key string) uint64 {
		f, _ := r.json[key].(float64)
		return uint64(f)
	}
	sa := func(id uint64) control.SA {
		for _, s := range sas(t, ue) {
			if s.ID == id {
				return s
			}
		}
		t.Fatalf("no IKE SA %d:\n%s", id, ue.Table(ctx))
		return control.SA{}
	}

	// A wrong key: the gateway refuses our AUTH. The verb says so, and
	// why, as soon as the answer is in.
	r := mifike("initiate", "wrong-key")
	if r.code != 1 || !strings.Contains(r.stderr, "AUTHENTICATION_FAILED") || r.took > 10*time.Second {
		t.Fatalf("initiate with a wrong key: exit %d after %v, stderr %q; want 1 and AUTHENTICATION_FAILED", r.code, r.took, r.stderr)
	}
	r = mifike("initiate", "wrong-key", "--json")
	if msg, _ := r.json["error"].(string); r.code != 1 || r.json["code"] != "failed" || !strings.Contains(msg, "AUTHENTICATION_FAILED") {
		t.Fatalf("initiate --json with a wrong key: exit %d, %v", r.code, r.json)
	}

	// The right key: the new IKE SA's id, up with its Child SA.
	r = mifike("initiate", "office", "--json")
	first := num(r, "ike_sa")
	children, _ := r.json["children"].([]any)
	if r.code != 0 || first == 0 || r.json["state"] != "ESTABLISHED" || len(children) != 1 {
		t.Fatalf("initiate office --json: exit %d, %v", r.code, r.json)
	}
	s := sa(first)
	if c := children[0].(map[string]any); len(s.Children) != 1 || c["name"] != "lan" || c["in_spi"] != s.Children[0].InSPI {
		t.Fatalf("initiate printed child %v; the daemon has %+v", c, s.Children)
	}
	pingThrough(t, top, ue, s)
	scrape := func(ns string) map[string]float64 {
		t.Helper()
		m, err := demo.Scrape(ns, verbsMetrics)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	beforeRekey := scrape(top.UE)

	// clone prints the clone's id (RFC 7791).
	r = mifike("clone", fmt.Sprint(first), "--json")
	clone := num(r, "ike_sa")
	if r.code != 0 || clone == 0 || clone == first || num(r, "from_ike_sa") != first || r.json["state"] != "ESTABLISHED" {
		t.Fatalf("clone --json: exit %d, %v", r.code, r.json)
	}
	if c := sa(clone); c.Parent != first {
		t.Fatalf("IKE SA %d is not a clone of %d: %+v", clone, first, c)
	}
	r = mifike("initiate", "office", "--child", "lan", "--ike", fmt.Sprint(clone))
	if r.code != 0 || len(sa(clone).Children) != 1 {
		t.Fatalf("a Child SA on the clone: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}

	// move waits for the gateway to confirm the new path (RFC 4555).
	wlan := demo.UEIfaces[1]
	r = mifike("move", fmt.Sprint(clone), "--local", wlan.Addr+"%"+wlan.Dev, "--json")
	if r.code != 0 || r.json["local"] != wlan.Addr+":4500" || r.json["iface"] != wlan.Dev {
		t.Fatalf("move --json: exit %d, %v", r.code, r.json)
	}
	if r = mifike("move", fmt.Sprint(clone), "--local", "192.0.2.99"); r.code != 1 || !strings.Contains(r.stderr, "not an address of this host") {
		t.Fatalf("move to an address the host does not have: exit %d, %s", r.code, r.stderr)
	}

	// rekey prints the new IKE SA, or the new Child SA.
	r = mifike("rekey", fmt.Sprint(clone), "--json")
	rekeyed := num(r, "ike_sa")
	if r.code != 0 || rekeyed == clone || num(r, "from_ike_sa") != clone || len(sa(rekeyed).Children) != 1 {
		t.Fatalf("rekey --json: exit %d, %v", r.code, r.json)
	}
	old := sa(first).Children[0].InSPI
	r = mifike("rekey", fmt.Sprint(first), "--child", old, "--json")
	if now := sa(first).Children; r.code != 0 || r.json["from_child"] != old || len(now) != 1 || r.json["child"] != now[0].InSPI {
		t.Fatalf("rekey --child --json: exit %d, %v; the daemon has %+v", r.code, r.json, now)
	}
	pingThrough(t, top, ue, sa(first))
	checkVerbsMetrics(t, beforeRekey, scrape(top.UE), scrape(top.GW))

	// --no-wait returns at once, before any answer; a wait for a peer
	// that never answers ends at --timeout with what was seen.
	r = mifike("initiate", "nobody", "--no-wait", "--json")
	nobody := num(r, "ike_sa")
	if r.code != 0 || nobody == 0 || r.json["state"] != "REQUESTED" || r.took > 2*time.Second {
		t.Fatalf("initiate --no-wait: exit %d after %v, %v", r.code, r.took, r.json)
	}
	if st := sa(nobody).State.String(); st != "CONNECTING" {
		t.Fatalf("IKE SA %d is %s right after initiate --no-wait", nobody, st)
	}
	r = mifike("initiate", "nobody", "--timeout", "1500ms")
	if r.code != 4 || !strings.Contains(r.stderr, "timed out after 1.5s waiting for IKE SA") || r.took > 5*time.Second {
		t.Fatalf("initiate to nobody: exit %d after %v, stderr %q; want 4, timed out", r.code, r.took, r.stderr)
	}

	// terminate CONN waits until each of its IKE SAs is gone.
	r = mifike("terminate", "office", "--json")
	if ids, _ := r.json["ike_sas"].([]any); r.code != 0 || r.json["state"] != "DELETED" || len(ids) != 2 {
		t.Fatalf("terminate office --json: exit %d, %v", r.code, r.json)
	}
	r = mifike("terminate", "nobody")
	if r.code != 0 {
		t.Fatalf("terminate nobody: exit %d, %s", r.code, r.stderr)
	}
	for _, s := range sas(t, ue) {
		if s.Conn == "office" {
			t.Fatalf("IKE SA %d of office still there after terminate:\n%s", s.ID, ue.Table(ctx))
		}
	}
}

// checkVerbsMetrics: issue 19 item 8, what a Prometheus user of either
// daemon sees after TestVerbsWaitForTheOutcome's wrong keys, handshakes,
// move and Child SA rekey, with traffic before and after the rekey.
func checkVerbsMetrics(t *testing.T, before, ue, gw map[string]float64) {
	t.Helper()
	for _, dir := range []string{"in", "out"} {
		// The Child SA that carried the first pings is gone from the
		// gauge (rekeyed); its traffic stays in the total.
		total, gauge := fmt.Sprintf("mifike_esp_packets_total{direction=%q}", dir), fmt.Sprintf("mifike_child_sa_packets{direction=%q}", dir)
		if before[total] < 3 || ue[total] < before[total]+3 {
			t.Errorf("%s: %v before the rekey, %v after; want 3 or more each time (3 pings each)", total, before[total], ue[total])
		}
		if ue[gauge] >= ue[total] {
			t.Errorf("%s = %v after a rekey, not below %s = %v", gauge, ue[gauge], total, ue[total])
		}
	}
	for _, c := range []struct {
		m      map[string]float64
		series string
		min    float64
	}{
		{ue, `mifike_auth_failures_total{rejected_by="peer"}`, 2}, // the two wrong-key initiates
		{gw, `mifike_auth_failures_total{rejected_by="local"}`, 2},
		{ue, `mifike_ike_handshake_duration_seconds_count{role="initiator"}`, 1},
		{gw, `mifike_ike_handshake_duration_seconds_count{role="responder"}`, 1},
		{ue, "mifike_mobike_moves_total", 1},
		{ue, `mifike_ike_sas{state="DELETING"}`, 0}, // present at 0
		{gw, `mifike_child_sas{state="REKEYING"}`, 0},
		{ue, "mifike_liveness_checks_total", 0},
		{gw, "mifike_dead_peers_total", 0},
	} {
		if v, ok := c.m[c.series]; !ok || v < c.min {
			t.Errorf("%s = %v (present %v), want at least %v", c.series, v, ok, c.min)
		}
	}
	for name, m := range map[string]map[string]float64{"end user": ue, "gateway": gw} {
		found := false
		for series, v := range m {
			found = found || strings.HasPrefix(series, "mifike_build_info{") && strings.Contains(series, "goversion=") && v == 1
		}
		if !found {
			t.Errorf("the %s has no mifike_build_info", name)
		}
	}
}
