package dataplane

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mifike/mifike/internal/esp"
)

// Sealing and opening on every core, with each SA's packets in order.
//
// The design is wireguard-go's (device/send.go, receive.go), reduced to
// what a batch loop needs. The goroutine that owns a batch (the TUN loop,
// or a socket reader's Receiver) does everything that depends on order
// itself, in packet order: the SPD lookup, the ESP sequence number of
// each outbound packet (RFC 4303 §3.3.3: assigned in the order packets
// are sent, so before any parallel sealing), the anti-replay check of
// each inbound one (§3.4.3). It then cuts the packets to seal or open
// into jobs, each locked until a worker of the shared pool has done its
// cryptography, does the first job itself and waits on the others in
// order. Only then, back in packet order, does it update the anti-replay
// windows (§3.4.3: after the integrity check; a packet some other
// packet overtook in the window is dropped as a replay) and hand the
// batch on: the Transport gets the sealed packets in the order they were
// read, so equal-sized ones still leave as one UDP GSO train.
//
// Nothing of this is per SA: the scratch (esp.Scratch) is per worker and
// per batch owner, the jobs are per batch owner. An idle SA costs what
// it did before. CBC SAs, whose cipher state is not safe for concurrent
// use, are sealed and opened by the batch owner as before.
//
// Unlike wireguard-go, reading the next batch does not overlap sealing
// this one: the batch owner waits for its jobs. A pipeline needs more
// batches of buffers in flight per plane; it was not tried.

// minChunk is the fewest packets worth a job of their own: handing a job
// to a worker costs a channel send and, when it sleeps, a wake-up of
// microseconds, while one 1400-octet packet seals in about half a
// microsecond here (BenchmarkSeal). A batch under 2*minChunk stays on
// the batch owner.
const minChunk = 8

// spinWait bounds how often a worker with nothing to do, or a batch
// owner waiting for a job a worker is doing, yields (runtime.Gosched,
// some 0.1 µs each) before it sleeps.
const spinWait = 1000

// pool is the workers every plane shares.
type pool struct {
	n    int       // workers; 1 means none (the batch owner does all)
	jobs chan *job // nil when n == 1
}

var (
	sharedOnce sync.Once
	shared     *pool
)

// sharedPool starts the process's workers on first use: as many as
// GOMAXPROCS (the batch owner counts as one), as wireguard-go runs one
// encryption and one decryption worker per CPU, from 3 CPUs up. On 2
// the batch owner does everything, as with 1: there the workers cost
// more than they gave in the throughput suite (ESP workers against one,
// same run: 0.57-1.34x for TCP, 0.68-1.13x for UDP in six runs; see
// BENCHMARKS.md, "Parallel sealing"), because AES-GCM is a fifth of a
// core at those rates and the TUN loop, the socket reader and the
// kernel already keep both cores busy. The environment variable
// MIFIKE_ESP_WORKERS sets the number, for the throughput suite's
// same-run comparison; it is not configuration.
func sharedPool() *pool {
	sharedOnce.Do(func() {
		n := runtime.GOMAXPROCS(0)
		if n < minWorkers {
			n = 1
		}
		if v, err := strconv.Atoi(os.Getenv("MIFIKE_ESP_WORKERS")); err == nil && v > 0 {
			n = v
		}
		shared = newPool(n)
	})
	return shared
}

// minWorkers is the fewest CPUs the data plane uses workers on.
const minWorkers = 3

func newPool(n int) *pool {
	p := &pool{n: max(n, 1)}
	if p.n > 1 {
		p.jobs = make(chan *job, 64*p.n)
		// The batch owner is one of the n.
		for range p.n - 1 {
			go p.work()
		}
	}
	return p
}

// stop ends the workers (tests and benchmarks that made their own pool).
func (p *pool) stop() {
	if p.jobs != nil {
		close(p.jobs)
	}
}

func (p *pool) work() {
	var sc esp.Scratch // the worker's own, for every SA
	for {
		j, ok := p.next()
		if !ok {
			return
		}
		if j.claim() {
			j.run(&sc)
		}
	}
}

// next is the next job. A worker that found the queue empty yields a
// while before it sleeps: waking a sleeping one takes longer (tens of
// microseconds on a virtual machine) than sealing a job, so under a
// steady stream of batches the workers must stay awake between them.
func (p *pool) next() (*job, bool) {
	for range spinWait {
		select {
		case j, ok := <-p.jobs:
			return j, ok
		default:
			runtime.Gosched()
		}
	}
	j, ok := <-p.jobs
	return j, ok
}

// sealItem is one outbound packet: its SA's sending side, where the ESP
// packet goes (dst, empty, with the capacity for it), the payload (in
// the same buffer, for sealing in place), and its sequence number.
type sealItem struct {
	o       *esp.Outbound
	dst     []byte
	payload []byte
	nh      byte
	seq     uint64
	pkt     int // index of its Packet in the batch

	out []byte // the result: the ESP packet, nil when it failed
}

func (s *sealItem) do(sc *esp.Scratch) {
	out, err := s.o.SealSeq(sc, s.dst, s.payload, s.nh, 0, s.seq)
	if err != nil {
		out = nil // only ErrTooLong, which the TUN loop checked for
	}
	s.out = out
}

// openItem is one inbound packet that passed its SA's anti-replay check
// with sequence number seq.
type openItem struct {
	in  *esp.Inbound
	pkt []byte
	seq uint64

	payload []byte // the results of OpenSeq
	nh      byte
	err     error
}

func (o *openItem) do(sc *esp.Scratch) {
	o.payload, o.nh, o.err = o.in.OpenSeq(sc, o.pkt, o.seq)
}

// job is a run of consecutive packets of one batch; mu is locked from the
// moment the batch owner queues it until it is done (the wireguard-go
// element's lock). Whoever claims it first does it: a worker, or the
// batch owner itself when it finished its own share before any worker
// took the job up. So a batch never waits for a worker that a busy
// machine has not scheduled yet; it costs at most the queueing.
type job struct {
	mu      sync.Mutex
	claimed atomic.Bool
	done    atomic.Bool
	seal    []sealItem
	open    []openItem
}

// claim reports whether the caller won the job. A worker may find a job
// in the queue that its owner did itself and has queued again since,
// for the next batch: then the job is that batch's, fully set up before
// it was queued, and claiming it is right.
func (j *job) claim() bool { return !j.claimed.Load() && j.claimed.CompareAndSwap(false, true) }

func (j *job) run(sc *esp.Scratch) {
	for k := range j.seal {
		j.seal[k].do(sc)
	}
	for k := range j.open {
		j.open[k].do(sc)
	}
	j.done.Store(true)
	j.mu.Unlock()
}

// crew is one batch owner's side of the pool: its scratch and its jobs,
// reused batch after batch.
type crew struct {
	pool *pool
	sc   esp.Scratch
	jobs []job
}

// chunks cuts n packets into jobs: as many as there are workers, none
// smaller than minChunk. One job means the batch owner does it all.
func (c *crew) chunks(n int) (count, size int) {
	if c.pool == nil || c.pool.n <= 1 || n < 2*minChunk {
		return 1, n
	}
	count = min(c.pool.n, n/minChunk)
	size = (n + count - 1) / count
	count = (n + size - 1) / size
	if len(c.jobs) < count {
		c.jobs = make([]job, count)
	}
	return count, size
}

// sealAll seals items: the first job here, the rest on the workers,
// waiting for each in order.
func (c *crew) sealAll(items []sealItem) {
	runAll(c, items, func(j *job, part []sealItem) { j.seal, j.open = part, nil })
}

// openAll opens items as sealAll seals.
func (c *crew) openAll(items []openItem) {
	runAll(c, items, func(j *job, part []openItem) { j.seal, j.open = nil, part })
}

// runAll does items in chunks: the first here, the others queued as
// jobs (give hands a job its part), then waits for the jobs in order.
// Generic so that sealing and opening share one schedule; P is *T, the
// items' do having a pointer receiver.
func runAll[T any, P interface {
	*T
	do(*esp.Scratch)
}](c *crew, items []T, give func(j *job, part []T)) {
	count, size := c.chunks(len(items))
	if count == 1 {
		for k := range items {
			P(&items[k]).do(&c.sc)
		}
		return
	}
	for k := 1; k < count; k++ {
		j := &c.jobs[k]
		give(j, items[k*size:min((k+1)*size, len(items))])
		c.queue(j)
	}
	for k := range items[:size] {
		P(&items[k]).do(&c.sc)
	}
	c.wait(count)
}

func (c *crew) queue(j *job) {
	j.mu.Lock()
	j.done.Store(false)
	j.claimed.Store(false)
	c.pool.jobs <- j
}

// wait finishes jobs 1..count-1 in order: those no worker claimed yet
// here, waiting for the others.
func (c *crew) wait(count int) {
	for k := 1; k < count; k++ {
		j := &c.jobs[k]
		if j.claim() {
			j.run(&c.sc)
		}
		for i := 0; i < spinWait && !j.done.Load(); i++ {
			runtime.Gosched()
		}
		j.mu.Lock()               // held by whoever does the job until it is done
		j.seal, j.open = nil, nil // no references to the batch's buffers kept
		j.mu.Unlock()
	}
}
