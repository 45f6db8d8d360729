package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mifike/mifike/internal/bench"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// A suite defines its flags and returns a function that runs it.
type benchSuite struct {
	name, summary string
	flags         func(fs *pflag.FlagSet) benchRun
}

type benchRun func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error)

func benchSuites() []benchSuite {
	return []benchSuite{
		{"handshake", "IKE_SA_INIT + IKE_AUTH (+ Child SA) per second, CPU per handshake, latency; PSK and ECDSA", handshakeFlags},
		{"new-interface", "a VPN on one more interface: clone + Child SA + MOBIKE move against a new authentication (PSK, ECDSA, EAP via FreeRADIUS)", newIfaceFlags},
		{"failover", "interface down or silent: time until traffic flows through the moved VPN", failoverFlags},
		{"throughput", "TCP (iperf3) and UDP through one tunnel, and through three tunnels on three interfaces", throughputFlags},
		{"scale", "memory and CPU of a responder holding 10,000 and 50,000 IKE SAs", scaleFlags},
		{"multipath", "one MPTCP download over three per-interface VPNs on shaped, delayed links: goodput against the links, a link cut, a backup link; parallel plain-TCP streams spread over the VPNs, measured against equal weights", multipathFlags},
		{"cluster", "three gateway nodes on etcd: time from a node's crash to traffic through a survivor, etcd writes per VPN, handshake rate with 1, 2 and 3 nodes", clusterFlags},
	}
}

// benchAbout is what every suite does, in its help and its parent's.
const benchAbout = `Each suite runs mifike and strongSwan 5.9.8 (kernel-libipsec) in turn in the same network
namespaces with the same algorithms and prints a table with mifike/strongSwan ratios.
Needs root; installs strongSwan, iperf3 and nftables with apt-get when missing.
--json prints JSON instead of the table; --out FILE also writes it to FILE.`

// benchCmd is "mifike bench SUITE": each suite a subcommand with its own
// flags, and --json and --out on all.
func benchCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench SUITE|all [--json] [--out FILE]",
		Short: "benchmarks against strongSwan: handshake, new-interface, failover, throughput, scale, cluster, multipath (root)",
		Long: benchAbout + `
"mifike bench SUITE --help" lists a suite's flags.`,
		Example:     "  mifike bench handshake --n 3000 --auth psk\n  mifike bench all --out bench.json",
		RunE:        parentRun(stderr, "suite"),
		Annotations: map[string]string{"group": "true"},
	}
	suite := func(name, summary string, flags func(fs *pflag.FlagSet) []benchRun) *cobra.Command {
		var asJSON bool
		var out string
		c := &cobra.Command{Use: name, Short: summary, Long: strings.ToUpper(summary[:1]) + summary[1:] + ".\n\n" + benchAbout}
		runs := flags(c.Flags())
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of the table")
		c.Flags().StringVar(&out, "out", "", "also write the JSON to this `FILE`")
		c.RunE = func(c *cobra.Command, args []string) error {
			if len(args) != 0 {
				return &usageError{cmd: c, msg: fmt.Sprintf("bench %s: unexpected argument %q", name, args[0])}
			}
			return exit(runBench(name, runs, asJSON, out, stdout, stderr))
		}
		return c
	}
	for _, s := range benchSuites() {
		cmd.AddCommand(suite(s.name, s.summary, func(fs *pflag.FlagSet) []benchRun { return []benchRun{s.flags(fs)} }))
	}
	cmd.AddCommand(suite("all", "every suite in turn, full sizes (about 37 minutes on 2 cores)", func(*pflag.FlagSet) []benchRun {
		var runs []benchRun
		for _, s := range benchSuites() {
			// Each suite's flags get their defaults: "all" is the full run.
			runs = append(runs, s.flags(pflag.NewFlagSet(s.name, pflag.ContinueOnError)))
		}
		return runs
	}))
	cmd.AddCommand(suite("esp", "the throughput suite's single-tunnel part (its old name)", func(fs *pflag.FlagSet) []benchRun {
		return []benchRun{espFlags(fs)}
	}))
	cmd.AddCommand(loadgenCmd(stdout, stderr))
	cmd.AddCommand(wireGuardPeerCmd(stdout, stderr))
	return cmd
}

// runBench runs a suite, or all of them in turn.
func runBench(name string, runs []benchRun, asJSON bool, out string, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "mifike bench: cannot find the mifike binary to run as the daemons: %v\n", err)
		return 1
	}
	progress := prefixWriter{stderr}
	if err := bench.EnsureTools(progress); err != nil {
		fmt.Fprintf(stderr, "mifike %v\n", err)
		return 1
	}
	// Ctrl-C or SIGTERM cancels the run; the lab then kills the daemons
	// and deletes the namespaces before we exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var reports []bench.Report
	failed := false
	for _, run := range runs {
		r, err := run(ctx, exe, progress)
		if err != nil {
			fmt.Fprintf(stderr, "mifike %v\n", err)
			failed = true
			if ctx.Err() != nil {
				break
			}
			continue // "all" goes on with the other suites
		}
		reports = append(reports, r)
		if !asJSON {
			if len(reports) > 1 {
				fmt.Fprintln(stdout)
			}
			r.WriteTable(stdout)
		}
	}
	var doc any = reports
	if len(runs) == 1 && len(reports) == 1 {
		doc = reports[0]
	} else if name == "all" {
		doc = bench.AllReport(reports)
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	if asJSON {
		fmt.Fprintf(stdout, "%s\n", b)
	}
	if out != "" {
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "mifike bench: %v\n", err)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

func handshakeFlags(fs *pflag.FlagSet) benchRun {
	c := bench.HandshakeConfig{}
	fs.IntVarP(&c.N, "n", "n", 3000, "timed handshakes per run")
	fs.IntVar(&c.Warmup, "warmup", 200, "untimed handshakes before each run")
	fs.IntVar(&c.Window, "window", 8, "handshakes in flight")
	fs.IntVar(&c.Initiators, "initiators", 2, "the load generator's source addresses (one engine each)")
	auth := fs.String("auth", "psk,ecdsa", "authentication methods: psk, ecdsa")
	pairs := fs.Bool("pairs", true, "also run each implementation against itself (daemon on both sides)")
	fs.StringVar(&c.Profile, "profile", "", "write CPU profiles of the mifike responder into this directory")
	return func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error) {
		c.Exe, c.Progress, c.Auth, c.Pairs = exe, progress, splitList(*auth), *pairs
		return bench.Handshake(ctx, c)
	}
}

func newIfaceFlags(fs *pflag.FlagSet) benchRun {
	c := bench.NewInterfaceConfig{}
	rtts := fs.String("rtt", "0ms,20ms,100ms", "emulated round-trip times")
	auth := fs.String("auth", "psk,ecdsa,eap-mschapv2,eap-tls", "authentication methods: psk, ecdsa, eap-mschapv2, eap-tls (EAP through FreeRADIUS)")
	fs.IntVar(&c.Runs, "runs", 5, "trials per case (the median is reported)")
	fs.DurationVar(&c.RADIUSRTT, "radius-rtt", bench.DefaultRADIUSRTT, "emulated round-trip time between the gateway and FreeRADIUS (EAP methods)")
	fs.StringVar(&c.EAPIdentity, "eap-id", "ask", "the gateway's remote.eap_id for the EAP methods: ask (an EAP Identity round) or ike (the IKE identity, as strongSwan)")
	fs.StringVar(&c.Profile, "profile", "", "write CPU profiles of both mifike daemons into this directory")
	return func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error) {
		c.Exe, c.Progress, c.Auth = exe, progress, splitList(*auth)
		for _, s := range splitList(*rtts) {
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, fmt.Errorf("bench new-interface: --rtt %q: %v", s, err)
			}
			c.RTTs = append(c.RTTs, d)
		}
		return bench.NewInterface(ctx, c)
	}
}

func failoverFlags(fs *pflag.FlagSet) benchRun {
	c := bench.FailoverConfig{}
	fs.IntVar(&c.Runs, "runs", 20, "runs per case (the median is reported)")
	kinds := fs.String("cases", "link-down,silent,lossy", "failures: link-down, silent (nftables drop), lossy (20% random loss each way; the VPN must stay)")
	fs.DurationVar(&c.LossyFor, "lossy-for", time.Minute, "how long each lossy run lasts")
	fs.IntVar(&c.LossyRuns, "lossy-runs", 1, "lossy runs")
	fs.DurationVar(&c.LivenessWindow, "liveness-window", 300*time.Millisecond, "mifike's liveness_window (0: none, as before it had one)")
	return func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error) {
		c.Exe, c.Progress, c.Cases = exe, progress, splitList(*kinds)
		return bench.Failover(ctx, c)
	}
}

func clusterFlags(fs *pflag.FlagSet) benchRun {
	c := bench.ClusterConfig{}
	fs.IntVar(&c.Runs, "runs", 10, "crashes (the median is reported); 0: none")
	fs.IntVar(&c.Handshakes, "handshakes", 1000, "timed handshakes per spread (load on 1, 2, 3 nodes); 0: no handshake rate")
	fs.IntVar(&c.Warmup, "warmup", 100, "untimed handshakes first, per spread")
	fs.IntVar(&c.Window, "window", 8, "handshakes in flight (over 10 would make a node ask for cookies when the load is on it alone)")
	fs.IntVar(&c.Initiators, "initiators", 3, "the load generator's source addresses")
	fs.IntVar(&c.Rounds, "rounds", 3, "rounds of the three spreads (the median is reported)")
	return func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error) {
		c.Exe, c.Progress = exe, progress
		return bench.Cluster(ctx, c)
	}
}

func multipathFlags(fs *pflag.FlagSet) benchRun {
	c := bench.MultipathConfig{}
	rates := fs.String("rates", "100,50,20", "the access links' rates in Mbit/s: eth0, wlan0, wwan0")
	rtts := fs.String("rtts", "10ms,20ms,40ms", "the access links' round-trip times: eth0, wlan0, wwan0")
	size := fs.Int64("size", 128, "the MPTCP download's size in MiB")
	fs.IntVar(&c.Buffer, "buffer", 32<<20, "the largest the TCP socket buffers may grow, in octets (the end user's tcp_rmem, the server's tcp_wmem; 0: Linux's default)")
	fs.IntVar(&c.Streams, "streams", 8, "the flow-spreading cases' parallel plain-TCP iperf3 streams")
	fs.IntVar(&c.Seconds, "time", 10, "how long the flow-spreading cases' streams run, in seconds")
	fs.BoolVar(&c.SpreadOnly, "spread-only", false, "only each link alone and the flow-spreading cases (no MPTCP)")
	return func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error) {
		c.Exe, c.Progress, c.Size = exe, progress, *size<<20
		if c.Streams < 1 || c.Seconds < 1 {
			return nil, fmt.Errorf("bench multipath: --streams and --time must be at least 1")
		}
		for _, s := range splitList(*rates) {
			var n int
			if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
				return nil, fmt.Errorf("bench multipath: --rates %q is not a rate in Mbit/s", s)
			}
			c.Rates = append(c.Rates, n)
		}
		for _, s := range splitList(*rtts) {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("bench multipath: --rtts %q is not a duration", s)
			}
			c.RTTs = append(c.RTTs, d)
		}
		return bench.Multipath(ctx, c)
	}
}

func throughputFlags(fs *pflag.FlagSet) benchRun {
	c := bench.ThroughputConfig{}
	fs.DurationVar(&c.Duration, "time", 10*time.Second, "how long each iperf3 run lasts (whole seconds)")
	return func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error) {
		c.Exe, c.Progress = exe, progress
		return bench.Throughput(ctx, c)
	}
}

func espFlags(fs *pflag.FlagSet) benchRun {
	d := fs.Duration("time", 10*time.Second, "how long each iperf3 run lasts (whole seconds)")
	return func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error) {
		return bench.Throughput(ctx, bench.ThroughputConfig{Exe: exe, Duration: *d, SingleOnly: true, Progress: progress})
	}
}

func scaleFlags(fs *pflag.FlagSet) benchRun {
	c := bench.ScaleConfig{}
	sizes := fs.String("sas", "10000,50000", "IKE SAs to hold (each with one Child SA)")
	fs.StringVar(&c.Profile, "profile", "", "write heap profiles of the mifike responder into this directory")
	fs.StringVar(&c.DataPlane, "data-plane", "userspace", "the mifike responder's data plane: userspace or none")
	fs.StringSliceVar(&c.Responders, "responders", nil, "responders to measure: mifike, strongswan (default both)")
	return func(ctx context.Context, exe string, progress io.Writer) (bench.Report, error) {
		c.Exe, c.Progress = exe, progress
		for _, s := range splitList(*sizes) {
			var n int
			if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
				return nil, fmt.Errorf("bench scale: --sas %q is not a count", s)
			}
			c.Sizes = append(c.Sizes, n)
		}
		return bench.Scale(ctx, c)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// wireGuardPeerCmd is one end of the throughput suite's wireguard-go
// tunnel, started inside its namespace (not for people: hidden).
func wireGuardPeerCmd(stdout, stderr io.Writer) *cobra.Command {
	c := bench.WireGuardPeerConfig{Ready: stdout}
	cmd := &cobra.Command{
		Use:    "wireguard-peer --key HEX --peer HEX [flags]",
		Short:  "a wireguard-go peer for the throughput suite, started inside its namespace",
		Hidden: true,
	}
	fs := cmd.Flags()
	fs.StringVar(&c.TUN, "tun", "wg0", "TUN device `NAME`")
	fs.IntVar(&c.MTU, "mtu", 1400, "the TUN device's MTU")
	fs.StringVar(&c.PrivateKey, "key", "", "private key, hex")
	fs.IntVar(&c.Port, "port", 51820, "UDP port to listen on")
	fs.StringVar(&c.PeerKey, "peer", "", "the peer's public key, hex")
	fs.StringVar(&c.Endpoint, "endpoint", "", "the peer's `ADDR:PORT` (none: wait for it)")
	allowed := fs.String("allowed-ips", "", "the peer's allowed IPs, comma-separated prefixes")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) != 0 || c.PrivateKey == "" || c.PeerKey == "" {
			return argsError(cmd)
		}
		c.AllowedIPs = splitList(*allowed)
		if err := bench.WireGuardPeer(c); err != nil {
			fmt.Fprintf(stderr, "mifike bench wireguard-peer: %v\n", err)
			return exit(1)
		}
		return nil
	}
	return cmd
}

// loadgenCmd is the load generator the handshake and scale suites start
// inside the initiator's namespace (not for people: hidden).
func loadgenCmd(stdout, stderr io.Writer) *cobra.Command {
	c := bench.LoadConfig{}
	cmd := &cobra.Command{
		Use:    "loadgen --config FILE --addrs ADDRS [flags]",
		Short:  "the benchmarks' load generator, started inside the initiator's namespace",
		Hidden: true,
	}
	fs := cmd.Flags()
	fs.StringVar(&c.Config, "config", "", "mifike configuration `FILE` with the connection \"bench\"")
	addrs := fs.String("addrs", "", "source addresses, comma-separated")
	remotes := fs.String("remotes", "", "responders' addresses, comma-separated, taken in turn (default: the connection's)")
	fs.IntVarP(&c.N, "n", "n", 1000, "timed handshakes")
	fs.IntVar(&c.Window, "window", 8, "handshakes in flight")
	fs.IntVar(&c.Warmup, "warmup", 0, "untimed handshakes first")
	fs.BoolVar(&c.Hold, "hold", false, "keep the SAs until SIGTERM")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.DurationVar(&c.Deadline, "deadline", 0, "start no timed handshake after this long; report what ended")
	waitStart := fs.Bool("wait-start", false, "after warming up, wait for SIGUSR1")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) != 0 {
			return argsError(cmd)
		}
		return exit(runLoadgen(c, *addrs, *remotes, *waitStart, stdout, stderr))
	}
	return cmd
}

func runLoadgen(c bench.LoadConfig, addrs, remotes string, waitStart bool, stdout, stderr io.Writer) int {
	for _, s := range splitList(addrs) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			fmt.Fprintf(stderr, "mifike bench loadgen: %v\n", err)
			return 2
		}
		c.Addrs = append(c.Addrs, a)
	}
	for _, s := range splitList(remotes) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			fmt.Fprintf(stderr, "mifike bench loadgen: %v\n", err)
			return 2
		}
		c.Remotes = append(c.Remotes, a)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var start chan struct{}
	if waitStart {
		start = make(chan struct{})
		usr := make(chan os.Signal, 1)
		signal.Notify(usr, syscall.SIGUSR1)
		go func() { <-usr; close(start) }()
	}
	if err := bench.RunLoad(ctx, c, start, stdout); err != nil {
		fmt.Fprintf(stderr, "mifike bench loadgen: %v\n", err)
		return 1
	}
	return 0
}

// prefixWriter marks progress lines as the benchmark's.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "mifike bench: %s", b); err != nil {
		return 0, err
	}
	return len(b), nil
}
