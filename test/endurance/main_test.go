// Package endurance runs real mifike daemons in the multiple-interfaces
// lab (internal/demo) with lifetimes of a few seconds, disturbs them at
// seeded random times (link flaps, clones, rekeys, manual moves,
// reloads) and checks every second that what the end user and the
// gateway hold still matches the policy: one IKE SA per usable interface,
// inner addresses neither duplicated nor leaked, nothing left behind in
// the routing tables, on the TUN device or in the kernel's XFRM tables,
// traffic through every VPN, and goroutines, file descriptors and heap
// flat. It ends with a table of every invariant and its worst value.
//
//	go test ./test/endurance -v                          # 60 s, as CI runs it
//	go test ./test/endurance -v -endurance=30m -timeout=40m
//	go test ./test/endurance -v -endurance.seed=N        # replay a schedule
//
// It needs root (network namespaces, TUN devices) and skips otherwise.
package endurance

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mifike/mifike/internal/demo"
)

var (
	soak = flag.Duration("endurance", 60*time.Second,
		"how long the endurance test disturbs the daemons and checks its invariants (warm-up and final quiet period included)")
	seedFlag = flag.Int64("endurance.seed", 0, "seed of the disturbances' schedule, to replay a run (0: a new seed, printed)")
)

var mifikeBin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if os.Geteuid() != 0 || testing.Short() {
			return m.Run() // the test skips with its reason
		}
		dir, err := os.MkdirTemp("", "mifike-endurance-bin")
		if err == nil {
			defer os.RemoveAll(dir)
			mifikeBin, err = demo.BuildBinary(dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}
