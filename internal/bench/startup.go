//go:build linux

package bench

import (
	"fmt"
	"io"
	"time"
)

// The start-up case of the new-interface suite (issue 18, item 1): an end
// user whose three interfaces are up when its daemon starts. One
// authentication on eth0, then both clones at once, then each clone's
// Child SA and move: all three VPNs within four round trips of the first
// IKE packet.

// StartUpRun is the start-up case at one RTT.
type StartUpRun struct {
	RTTms float64 `json:"rtt_ms"`
	Runs  int     `json:"runs"`
	// UpMs (median): from the first IKE packet the router saw to the
	// last of the three VPNs up (the daemon's last event of its SA).
	UpMs float64 `json:"up_ms"`
	// RoundTrips is UpMs in RTTs (the goal: at most 4).
	RoundTrips float64 `json:"round_trips"`
	Exchanges  int     `json:"exchanges"` // IKE requests, median
	Auths      int     `json:"auths"`     // IKE_AUTH requests, the most of any run
}

var startUpIfaces = []string{"eth0", "wlan0", "wwan0"}

func startUpMifike(e *suiteEnv, m *mifLab, dl *delayLine, cfg NewInterfaceConfig, o mifOpts, rtt time.Duration) (StartUpRun, error) {
	o.use = startUpIfaces
	run := StartUpRun{RTTms: float64(rtt) / 1e6, Runs: cfg.Runs}
	dl.setRTT(rtt)
	gw, err := startMif(e.ctx, e, m, "gw-startup", m.GW, mifGWConf(o))
	if err != nil {
		return run, err
	}
	defer gw.proc.Stop(5 * time.Second)
	var ups []float64
	var exchanges []float64
	for i := range cfg.Runs {
		if _, err := settle(e.ctx, dl, rtt); err != nil {
			return run, err
		}
		ue, err := startMif(e.ctx, e, m, fmt.Sprintf("ue-startup-%d", i), m.UE, mifUEConf(o))
		if err != nil {
			return run, err
		}
		ev, err := followEvents(ue)
		if err != nil {
			ue.proc.Stop(5 * time.Second)
			return run, err
		}
		var last time.Time
		err = waitFor(e.ctx, 30*time.Second+20*rtt, func() (bool, error) {
			select {
			case <-ev.kick:
			case <-time.After(20 * time.Millisecond):
			}
			sas, err := ue.sas()
			if err != nil {
				return false, err
			}
			last = time.Time{}
			for _, dev := range startUpIfaces {
				sa, ok := vpnOn(sas, dev)
				if !ok {
					return false, nil
				}
				at, ok := ev.upAt(sa.ID, time.Time{})
				if !ok {
					return false, nil
				}
				if at.After(last) {
					last = at
				}
			}
			return true, nil
		})
		count, serr := settle(e.ctx, dl, rtt)
		ev.c.Close()
		ue.proc.Stop(5 * time.Second)
		if err != nil {
			return run, fmt.Errorf("three VPNs at start: %w\n%s", err, lastLines(ue.log(), 30))
		}
		if serr != nil {
			return run, serr
		}
		if count.First.IsZero() {
			return run, fmt.Errorf("the router saw no IKE packet")
		}
		ups = append(ups, float64(last.Sub(count.First))/1e6)
		exchanges = append(exchanges, float64(count.Requests))
		run.Auths = max(run.Auths, countOf(count.Exchanges, "IKE_AUTH"))
	}
	run.UpMs = median(ups)
	run.Exchanges = int(median(exchanges))
	if rtt > 0 {
		run.RoundTrips = run.UpMs / (float64(rtt) / 1e6)
	}
	return run, nil
}

func countOf(l []string, s string) int {
	n := 0
	for _, x := range l {
		if x == s {
			n++
		}
	}
	return n
}

// writeStartUp prints the start-up case.
func (r *NewInterfaceResult) writeStartUp(w io.Writer) {
	if len(r.StartUp) == 0 {
		return
	}
	fmt.Fprintf(w, "\nStart-up: the end user's daemon starts with eth0, wlan0 and wwan0 up; time from the first IKE packet to the third VPN (mifike, psk, medians)\n")
	t := table{head: []string{"RTT ms", "runs", "all three up ms", "round trips (goal ≤ 4)", "IKE requests", "IKE_AUTH"}}
	for _, x := range r.StartUp {
		t.add(f0(x.RTTms), fmt.Sprint(x.Runs), f1(x.UpMs), f2(x.RoundTrips), fmt.Sprint(x.Exchanges), fmt.Sprint(x.Auths))
	}
	t.write(w)
}
