package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/control"
	"github.com/spf13/cobra"
)

// The views a strongSwan administrator knows from swanctl --list-pools,
// --list-certs and --stats (issue 19).

func listPoolsCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("list-pools [--leases] [--json]", "list the virtual IP pools and their leases",
		"List the virtual IP pools, in the spirit of swanctl --list-pools: each pool's prefix, the\n"+
			"addresses it hands out and how many are leased; with --leases each leased address, the\n"+
			"identity holding it and its IKE SAs. An address is leased while an IKE SA holds it and\n"+
			"free again when the last one ends: mifike keeps no offline leases.", stdout, stderr)
	leases := v.cmd.Flags().Bool("leases", false, "list each leased address too (--json always has them)")
	return v.run(0, 0, func([]string) int {
		return v.call(func(c *control.Client) error {
			var pools []control.Pool
			if done, err := v.ask(c, "list-pools", nil, &pools); done || err != nil {
				return err
			}
			writePools(stdout, pools, *leases)
			return nil
		})
	})
}

func writePools(w io.Writer, pools []control.Pool, leases bool) {
	if len(pools) == 0 {
		fmt.Fprintln(w, "no pools")
		return
	}
	for _, p := range pools {
		fmt.Fprintf(w, "%s: %s (%s - %s), %d of %d leased\n", p.Name, p.Prefix, p.First, p.Last, p.Online, p.Size)
		if !leases {
			continue
		}
		for _, l := range p.Leases {
			sas := make([]string, len(l.IKESAs))
			for i, id := range l.IKESAs {
				sas[i] = fmt.Sprintf("[%d]", id)
			}
			holders := "no IKE SA"
			if len(sas) > 0 {
				holders = strings.Join(sas, " ")
			}
			fmt.Fprintf(w, "  %-15s online  %s (%s) %s\n", l.Addr, l.Identity, l.Conn, holders)
		}
	}
}

func listCertsCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("list-certs [--json]", "list the certificates the daemon holds",
		"List the certificates the daemon holds, in the spirit of swanctl --list-certs: our own and\n"+
			"the chain sent with it, the CAs trusted for each connection's peers, and the certificates\n"+
			"the peers of the IKE SAs authenticated with; each with subject, issuer, subjectAltNames,\n"+
			"serial, validity (marked with ! when it ends within 30 days or has ended), key type and\n"+
			"SHA-256 fingerprint.", stdout, stderr)
	return v.run(0, 0, func([]string) int {
		return v.call(func(c *control.Client) error {
			var certs []control.Cert
			if done, err := v.ask(c, "list-certs", nil, &certs); done || err != nil {
				return err
			}
			writeCerts(stdout, certs, time.Now())
			return nil
		})
	})
}

// certWarnDays is how close to its end a certificate is marked (as
// strongSwan's "expires in N days" warning).
const certWarnDays = 30

func writeCerts(w io.Writer, certs []control.Cert, now time.Time) {
	if len(certs) == 0 {
		fmt.Fprintln(w, "no certificates")
		return
	}
	for i, c := range certs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		uses := make([]string, len(c.Uses))
		for i, u := range c.Uses {
			uses[i] = u.As + " of " + u.Conn
			if u.IKESA != 0 {
				uses[i] += fmt.Sprintf("[%d]", u.IKESA)
			}
		}
		fmt.Fprintf(w, "%s (%s)\n", c.Subject, strings.Join(uses, ", "))
		fmt.Fprintf(w, "  issuer   %s\n", c.Issuer)
		if len(c.SANs) > 0 {
			fmt.Fprintf(w, "  SANs     %s\n", strings.Join(c.SANs, ", "))
		}
		fmt.Fprintf(w, "  serial   %s\n", c.Serial)
		fmt.Fprintf(w, "  valid    %s to %s, %s\n", c.NotBefore.UTC().Format(time.DateTime), c.NotAfter.UTC().Format(time.DateTime+" MST"), validity(c, now))
		key := c.KeyType
		if c.CA {
			key += ", CA"
		}
		fmt.Fprintf(w, "  key      %s\n", key)
		fmt.Fprintf(w, "  sha256   %s\n", c.SHA256)
	}
}

// validity says how long a certificate has left, with a ! when it has
// ended, has not begun or ends within certWarnDays.
func validity(c control.Cert, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return "! not valid yet"
	case !now.Before(c.NotAfter):
		return fmt.Sprintf("! expired %s ago", days(now.Sub(c.NotAfter)))
	}
	left := c.NotAfter.Sub(now)
	s := "expires in " + days(left)
	if left < certWarnDays*24*time.Hour {
		s = "! " + s
	}
	return s
}

// days is a duration in whole days, or the largest two units below one.
func days(d time.Duration) string {
	if d < 24*time.Hour {
		return age(d)
	}
	return plural(int(d/(24*time.Hour)), "day")
}

func statsCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("stats [--json]", "show the daemon's uptime, SA counts, counters and memory",
		"Show the daemon's version, uptime, goroutines and memory, its IKE SAs and Child SAs by\n"+
			"state, and its counters (the metrics endpoint's, for a daemon that has none), in the spirit\n"+
			"of swanctl --stats.", stdout, stderr)
	return v.run(0, 0, func([]string) int {
		return v.call(func(c *control.Client) error {
			var st control.Stats
			if done, err := v.ask(c, "stats", nil, &st); done || err != nil {
				return err
			}
			writeStats(stdout, st)
			return nil
		})
	})
}

func writeStats(w io.Writer, st control.Stats) {
	up := age(time.Duration(st.Uptime * float64(time.Second)))
	fmt.Fprintf(w, "mifike %s, up %s (since %s), %s\n", st.Version, up, st.Started.UTC().Format(time.DateTime+" MST"), plural(st.Goroutines, "goroutine"))
	fmt.Fprintf(w, "memory: heap %s in use, %s from the system\n", bytesText(st.HeapInUse), bytesText(st.Sys))
	fmt.Fprintf(w, "IKE SAs: %d total, %d half-open%s\n", st.IKESAs, st.IKEByState["CONNECTING"], counts(st.IKEByState, "CONNECTING"))
	fmt.Fprintf(w, "Child SAs: %d total%s\n", st.ChildSAs, counts(st.ChildStates, ""))
	fmt.Fprintf(w, "connections: %d\n", st.Connections)
	fmt.Fprintf(w, "exchanges: %s\n", list(st.Exchanges))
	fmt.Fprintf(w, "retransmissions %d, cookies sent %d, liveness checks %d, dead peers %d, send errors %d, TCP fallbacks %d, TCP streams open %d\n",
		st.Retransmissions, st.CookiesSent, st.LivenessChecks, st.DeadPeers, st.SendErrors, st.TCPFallbacks, st.TCPStreams)
	fmt.Fprintf(w, "dropped: %s\n", list(st.Dropped))
	fmt.Fprintf(w, "notifies sent: %s\n", list(st.NotifiesSent))
	fmt.Fprintf(w, "notifies received: %s\n", list(st.NotifiesRecv))
	fmt.Fprintf(w, "ESP: in %s (%s), out %s (%s)\n", bytesText(st.ESPBytesIn), plural(int(st.ESPPacketsIn), "packet"),
		bytesText(st.ESPBytesOut), plural(int(st.ESPPacketsOut), "packet"))
	fmt.Fprintf(w, "data plane dropped: %s\n", list(st.DataPlaneDrops))
	if len(st.MPTCP) > 0 {
		var eps []string
		for _, e := range st.MPTCP {
			eps = append(eps, e.Addr.String()+" "+e.Mode)
		}
		fmt.Fprintf(w, "MPTCP endpoints: %s\n", strings.Join(eps, ", "))
	}
	if len(st.Spread) > 0 {
		fmt.Fprintln(w, "flow spreading (new flows by weight):")
		for _, t := range st.Spread {
			fmt.Fprintf(w, "  %s\n", spreadText(t))
		}
	}
}

// spreadText is one spreading target: "office: 10.99.0.3 on wlan0,
// weight 3 = 1 × 3/16 (rtt 88.1 ms, loss 0.0%)".
func spreadText(t control.SpreadTarget) string {
	s := fmt.Sprintf("%s: %v on %s, weight %d", t.Conn, t.Addr, t.Iface, t.Weight)
	switch {
	case t.Leaving:
		return s + " (being deleted)"
	case t.Factor > 0:
		s += fmt.Sprintf(" = %d × %d/16", t.Configured, t.Factor)
	}
	if t.Measured {
		s += fmt.Sprintf(" (rtt %.1f ms, loss %.1f%%)", t.RTTMs, 100*t.Loss)
	} else if t.Factor > 0 {
		s += " (path not measured yet)"
	}
	return s
}

// counts lists ", 2 ESTABLISHED, 0 REKEYED" for each state but skip,
// by name.
func counts(m map[string]int, skip string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k != skip {
			fmt.Fprintf(&b, ", %d %s", m[k], k)
		}
	}
	return b.String()
}

// list is "IKE_AUTH 4, IKE_SA_INIT 4" by name, the zeros left out, or
// "none".
func list(m map[string]uint64) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] != 0 {
			out = append(out, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
