//go:build bench

package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/gossip"
)

// workerEnv starts TestGossipWorker as a worker process:
// "first,count,total" (the worker runs nodes first..first+count-1 of a
// fleet of total).
const workerEnv = "ECOM_GOSSIP_WORKER"

// BenchmarkGossipProcesses runs a fleet of N agents' gossip (N from
// $ECOM_GOSSIP_PROC_SIZE, default 1000) in P processes of N/P agents each
// (P from $ECOM_GOSSIP_PROCS, default 10), so that each process has its
// own heap, collector and scheduler as real nodes do, on the one machine's
// cores. It measures what BenchmarkGossipScale does (every node knows
// every other; every node sees a killed one dead; loopback bytes, CPU per
// node over a quiet 10 s) and the processes' resident memory per node.
func BenchmarkGossipProcesses(b *testing.B) {
	raiseFileLimit(b)
	n, err := strconv.Atoi(cmp.Or(os.Getenv("ECOM_GOSSIP_PROC_SIZE"), "1000"))
	if err != nil || n < 4 {
		b.Fatalf("ECOM_GOSSIP_PROC_SIZE=%q: want a fleet of 4 or more", os.Getenv("ECOM_GOSSIP_PROC_SIZE"))
	}
	p, err := strconv.Atoi(cmp.Or(os.Getenv("ECOM_GOSSIP_PROCS"), "10"))
	if err != nil || p < 1 || p > n/2 {
		b.Fatalf("ECOM_GOSSIP_PROCS=%q: want 1 to %d processes", os.Getenv("ECOM_GOSSIP_PROCS"), n/2)
	}
	f := newFleet(b, n, p)
	defer f.close()

	// Every worker has its nodes listening; give all the same three seeds
	// (the first worker's control-plane nodes) at once.
	seeds := f.collect(b, "addrs", limit)[0][:3]
	start := time.Now()
	f.send("join " + strings.Join(seeds, ","))
	converge, ok := f.latest(b, "converged", start)
	if !ok {
		f.send("known")
		var least []string
		for _, l := range f.collect(b, "known", time.Minute) {
			least = append(least, l[0])
		}
		b.Fatalf("N=%d in %d processes: not every node knew every other within %s; the fewest members a node knew, per process: %s",
			n, p, limit, strings.Join(least, " "))
	}

	// A quiet window.
	rx0, cpu0 := loopbackBytes(b), f.cpuTicks(b)
	t0 := time.Now()
	time.Sleep(10 * time.Second)
	window := time.Since(t0).Seconds()
	rx1, cpu1 := loopbackBytes(b), f.cpuTicks(b)
	rss := f.rssKiB(b)
	f.send("heap")
	var heap float64
	for _, l := range f.collect(b, "heap", time.Minute) {
		v, _ := strconv.ParseFloat(l[0], 64)
		heap += v
	}

	// Kill the last node without a goodbye; everyone else must see it dead.
	victim := fmt.Sprintf("node-%04d", n-1)
	killed := time.Now()
	f.send("kill " + victim)
	detect, ok := f.latest(b, "dead", killed)
	if !ok {
		b.Logf("not every node saw %s dead within %s", victim, limit)
	}
	b.Logf("N=%d in %d processes of %d: all know all %.2fs  all see a killed node dead %.2fs  per node: %.0f B/s loopback, %.2f%% CPU, %.0f KiB RSS, %.0f KiB heap",
		n, p, n/p, converge.Seconds(), detect.Seconds(),
		float64(rx1-rx0)/window/float64(n), 100*float64(cpu1-cpu0)/100/window/float64(n),
		float64(rss)/float64(n), heap/1024/float64(n))
}

// fleet is the worker processes of one run.
type fleet struct {
	cmds  []*exec.Cmd
	ins   []io.WriteCloser
	lines chan workerLine
}

type workerLine struct {
	worker int
	kind   string
	fields []string
}

func newFleet(b *testing.B, n, p int) *fleet {
	f := &fleet{lines: make(chan workerLine, 4*p)}
	for w := 0; w < p; w++ {
		first, count := w*(n/p), n/p
		if w == p-1 {
			count = n - first
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestGossipWorker$", "-test.bench=^$", "-test.timeout=0")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d,%d", workerEnv, first, count, n))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		f.cmds, f.ins = append(f.cmds, cmd), append(f.ins, in)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if fs := strings.Fields(sc.Text()); len(fs) > 0 {
					f.lines <- workerLine{worker: w, kind: fs[0], fields: fs[1:]}
				}
			}
		}()
	}
	return f
}

// send writes one command line to every worker.
func (f *fleet) send(cmd string) {
	for _, in := range f.ins {
		_, _ = io.WriteString(in, cmd+"\n")
	}
}

// collect waits for one line of kind from every worker, in worker order.
func (f *fleet) collect(b *testing.B, kind string, limit time.Duration) [][]string {
	got := make([][]string, len(f.cmds))
	left := len(f.cmds)
	deadline := time.After(limit)
	for left > 0 {
		select {
		case l := <-f.lines:
			if l.kind == kind && got[l.worker] == nil {
				got[l.worker] = l.fields
				left--
			}
		case <-deadline:
			b.Fatalf("%d of %d gossip workers did not report %q within %s", left, len(f.cmds), kind, limit)
		}
	}
	return got
}

// latest waits for every worker to report kind with the time its last
// node got there, and returns the latest of those since from; a worker
// that reports "timeout" makes it false.
func (f *fleet) latest(b *testing.B, kind string, from time.Time) (time.Duration, bool) {
	var last time.Time
	ok := true
	for _, l := range f.collect(b, kind, limit+time.Minute) {
		ns, err := strconv.ParseInt(l[0], 10, 64)
		if err != nil {
			ok = false
			continue
		}
		if t := time.Unix(0, ns); t.After(last) {
			last = t
		}
	}
	return last.Sub(from), ok
}

// cpuTicks sums the workers' user and system CPU in clock ticks (1/100 s).
func (f *fleet) cpuTicks(b *testing.B) int64 {
	var sum int64
	for _, c := range f.cmds {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		ticks, err := statCPUTicks(string(data))
		if err != nil {
			b.Fatal(err)
		}
		sum += ticks
	}
	return sum
}

// rssKiB sums the workers' resident memory.
func (f *fleet) rssKiB(b *testing.B) int64 {
	var sum int64
	for _, c := range f.cmds {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += kib
			}
		}
	}
	return sum
}

// close ends the workers: stdin closed, then killed if they linger.
func (f *fleet) close() {
	for _, in := range f.ins {
		_ = in.Close()
	}
	var wg sync.WaitGroup
	for _, c := range f.cmds {
		wg.Go(func() {
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = c.Process.Kill()
				<-done
			}
		})
	}
	wg.Wait()
}

// TestGossipWorker is a worker process of BenchmarkGossipProcesses; it
// does nothing unless $ECOM_GOSSIP_WORKER says which nodes to run. It
// reads commands on stdin and answers on stdout, one line each:
// "addrs a b c" once listening; "join s1,s2,s3" → "converged <unix ns>"
// when every local node knows every node; "heap" → "heap <bytes in use>";
// "known" → "known <the fewest members a local node knows>";
// "kill <name>" shuts that node down without a goodbye if it is local,
// then → "dead <unix ns>" when every other local node sees it dead.
// A wait past the limit answers "timeout".
func TestGossipWorker(t *testing.T) {
	spec := os.Getenv(workerEnv)
	if spec == "" {
		t.Skip("a worker process of BenchmarkGossipProcesses")
	}
	var first, count, total int
	if _, err := fmt.Sscanf(spec, "%d,%d,%d", &first, &count, &total); err != nil {
		t.Fatalf("%s=%q: %v", workerEnv, spec, err)
	}
	key, err := gossip.DeriveKey([]byte("bench-secret-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*gossip.Gossip, count)
	var addrs []string
	for i := range nodes {
		g, err := newBenchNode(first+i, key)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = g
		addrs = append(addrs, g.Addr().String())
	}
	defer func() {
		var wg sync.WaitGroup
		for _, g := range nodes {
			wg.Go(func() { _ = g.Shutdown() })
		}
		wg.Wait()
	}()
	fmt.Println("addrs", strings.Join(addrs, " "))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Answers are written from goroutines so that commands keep flowing.
	var outMu sync.Mutex
	say := func(format string, a ...any) {
		outMu.Lock()
		fmt.Printf(format+"\n", a...)
		outMu.Unlock()
	}
	when := func(kind string, live []*gossip.Gossip, cond func(*gossip.Gossip) bool) {
		at, left := awaitNodes(live, time.Now().Add(limit), cond)
		if left > 0 {
			say("%s timeout", kind)
			return
		}
		say("%s %d", kind, at.UnixNano())
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "join":
			seeds := strings.Split(arg, ",")
			// As the agent's Run does: a node left alone (its seeds
			// too busy to answer in time) tries again, with jitter.
			for i, g := range nodes {
				go func() {
					for try := 0; try < 100 && ctx.Err() == nil; try++ {
						if g.Join(ctx, seeds) == nil {
							return
						}
						time.Sleep(time.Second + time.Duration(i%10)*100*time.Millisecond)
					}
				}()
			}
			go when("converged", nodes, func(g *gossip.Gossip) bool { return known(g) == total })
		case "known":
			least := total
			for _, g := range nodes {
				least = min(least, known(g))
			}
			say("known %d", least)
		case "heap":
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			say("heap %d", ms.HeapInuse)
		case "kill":
			var live []*gossip.Gossip
			for i, g := range nodes {
				if fmt.Sprintf("node-%04d", first+i) == arg {
					_ = g.Shutdown()
					continue
				}
				live = append(live, g)
			}
			go when("dead", live, func(g *gossip.Gossip) bool {
				for _, m := range g.Members() {
					if m.Name == arg {
						return m.State == gossip.StateDead
					}
				}
				return false
			})
		}
	}
}

// awaitNodes polls until cond holds on every node and returns when the
// last one got there, or how many had not by the deadline. Reading a
// node's view copies it, so the polling interval grows with N (1 ms per
// node, at least 50 ms): the poller must not take the CPU the nodes need.
func awaitNodes(nodes []*gossip.Gossip, deadline time.Time, cond func(*gossip.Gossip) bool) (time.Time, int) {
	done := make([]bool, len(nodes))
	left := len(nodes)
	every := max(50*time.Millisecond, time.Duration(len(nodes))*time.Millisecond)
	for left > 0 {
		if time.Now().After(deadline) {
			return time.Time{}, left
		}
		for i, g := range nodes {
			if !done[i] && cond(g) {
				done[i] = true
				left--
			}
		}
		if left > 0 {
			time.Sleep(every)
		}
	}
	return time.Now(), 0
}
