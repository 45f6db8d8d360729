package demo

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/radiuslab"
)

// The demo's EAP steps: how many RADIUS authentications the gateway made
// for the end user's VPNs, counted by FreeRADIUS itself and by the
// gateway's RADIUS client, and the accounting session FreeRADIUS
// recorded for them (RFC 2866, RFC 7791 §8).

// metricsAddr is the daemons' metrics address in an EAP demo (each
// daemon in its own namespace).
const metricsAddr = "127.0.0.1:9464"

func (r *Runner) radiusCount(ctx context.Context) (string, error) {
	var b strings.Builder
	ok, incorrect := r.top.RADIUSLogins()
	fmt.Fprintf(&b, "FreeRADIUS's own log: %d \"Login OK\" for %q, %d \"Login incorrect\"\n", ok, EAPIdentity(r.EAP), incorrect)
	m, err := Scrape(r.gw.NS, metricsAddr)
	if err != nil {
		return b.String(), err
	}
	resp := func(code string) int { return int(m[fmt.Sprintf("mifike_radius_responses_total{code=%q}", code)]) }
	acc, chal, rej := resp("access-accept"), resp("access-challenge"), resp("access-reject")
	fmt.Fprintf(&b, "the gateway's RADIUS client (mifike_radius_* metrics): %d Access-Requests answered: %d Access-Challenge, %d Access-Accept, %d Access-Reject; %d retransmissions\n",
		acc+chal+rej, chal, acc, rej, int(m["mifike_radius_retransmissions_total"]))
	sas, err := r.gw.SAs()
	if err != nil {
		return b.String(), err
	}
	var ids []string
	families, shown := map[uint64]bool{}, 0
	for _, s := range sas {
		if s.State == ike.StateEstablished && len(s.Children) > 0 {
			ids = append(ids, fmt.Sprint(s.ID))
			families[s.Family] = true
			if s.EAPMethod == eapName(r.EAP) && s.EAPIdentity == EAPIdentity(r.EAP) {
				shown++
			}
		}
	}
	fam := "one family"
	if len(families) != 1 {
		fam = fmt.Sprintf("%d families", len(families))
	}
	fmt.Fprintf(&b, "for %d VPNs on the gateway (IKE SAs %s, %s); list-sas shows %d of them as %s as %q",
		len(ids), strings.Join(ids, ", "), fam, shown, eapName(r.EAP), EAPIdentity(r.EAP))
	if ok != 1 || acc != 1 {
		return b.String(), fmt.Errorf("%d authentications by FreeRADIUS's count, %d Access-Accepts by the gateway's, want 1", ok, acc)
	}
	if len(ids) < 3 || shown != len(ids) {
		return b.String(), fmt.Errorf("%d VPNs on the gateway, %d of them shown with the EAP identity; want at least 3, all", len(ids), shown)
	}
	return b.String(), nil
}

// eapName is the method's name as list-sas prints it.
func eapName(method string) string {
	return map[string]string{"eap-mschapv2": "EAP-MSCHAPv2", "eap-md5": "EAP-MD5", "eap-tls": "EAP-TLS"}[method]
}

// accounting stops the end user's daemon (it deletes every VPN) and shows
// the Accounting-Requests FreeRADIUS wrote to its detail file.
func (r *Runner) accounting(ctx context.Context) (string, error) {
	r.ue.Stop(15 * time.Second)
	var recs []radiuslab.Record
	var err error
	stopped := WaitFor(30*time.Second, func() bool {
		recs, err = r.top.RADIUS.AccountingRecords()
		return err == nil && slices.ContainsFunc(recs, func(x radiuslab.Record) bool { return x.Get("Acct-Status-Type") == "Stop" })
	})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("the end user's daemon stopped (SIGTERM: it deletes its IKE SAs); FreeRADIUS's detail file:\n")
	interims := 0
	for _, x := range recs {
		status := x.Get("Acct-Status-Type")
		fmt.Fprintf(&b, "%-14s session %s, user %s, Class %s, inner %s", status, x.Get("Acct-Session-Id"), x.Get("User-Name"),
			class(x.Get("Class")), x.Get("Framed-IP-Address"))
		if status != "Start" {
			fmt.Fprintf(&b, ", %s s, %s octets in / %s out (%s / %s packets)", x.Get("Acct-Session-Time"),
				x.Get("Acct-Input-Octets"), x.Get("Acct-Output-Octets"), x.Get("Acct-Input-Packets"), x.Get("Acct-Output-Packets"))
		}
		if c := x.Get("Acct-Terminate-Cause"); c != "" {
			fmt.Fprintf(&b, ", cause %s", c)
		}
		b.WriteString("\n")
		if status == "Interim-Update" {
			interims++
		}
	}
	if interims == 0 {
		b.WriteString("no Interim-Update: the run is shorter than the shortest interim interval, a minute (RFC 2869 §5.16)\n")
	}
	b.WriteString("one session for all the VPNs: the clones share their family's (RFC 7791 §8)")
	if !stopped {
		return b.String(), fmt.Errorf("no accounting Stop within 30s of the end user leaving")
	}
	return b.String(), nil
}

// class shows a detail file's Class (octets, written as 0x...) as text
// when it is printable.
func class(c string) string {
	h, ok := strings.CutPrefix(c, "0x")
	if !ok {
		return c
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return c
	}
	for _, ch := range raw {
		if ch < 0x20 || ch > 0x7e {
			return c
		}
	}
	return string(raw)
}
