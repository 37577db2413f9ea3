//go:build bench

package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
)

// gossipFigure is one fleet size's measurements.
type gossipFigure struct {
	n                       int
	converge, detect        time.Duration
	bytesPerNodeSec         float64
	cpuPerNode, heapPerNode float64 // CPU seconds per second; bytes
	model                   time.Duration
	// failed: not every node saw every other within the limit.
	failed bool
}

// limit bounds each wait of the gossip benchmark ($ECOM_GOSSIP_LIMIT,
// default 5m).
var limit = func() time.Duration {
	d, err := time.ParseDuration(cmp.Or(os.Getenv("ECOM_GOSSIP_LIMIT"), "5m"))
	if err != nil {
		return 5 * time.Minute
	}
	return d
}()

// BenchmarkGossipScale starts N agents' gossip (the agent's own
// memberlist configuration, delegates, encryption and metadata, LAN
// timings) on loopback in this process, all at once, each given the same
// three join addresses as a fleet's cloud-init would: it measures the time
// until every node knows every other (alive or suspect), the time until every node sees
// a killed one dead, and, over a quiet 10 s window, the loopback bytes, CPU
// and heap per node. N comes from $ECOM_GOSSIP_SIZES (default
// 10,100,500,1000). It writes a plot to $ECOM_BENCH_OUT (default
// bench/out)/gossip-scale.png, beside an epidemic model of memberlist's
// dissemination (fanout 3 every 200 ms).
func BenchmarkGossipScale(b *testing.B) {
	raiseFileLimit(b)
	var sizes []int
	for _, f := range strings.Split(cmp.Or(os.Getenv("ECOM_GOSSIP_SIZES"), "10,100,500,1000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("ECOM_GOSSIP_SIZES=%q: want sizes of 2 or more", os.Getenv("ECOM_GOSSIP_SIZES"))
		}
		sizes = append(sizes, n)
	}
	var figs []gossipFigure
	for _, n := range sizes {
		f := gossipRun(b, n)
		figs = append(figs, f)
		if f.failed {
			b.Logf("N=%-5d not every node knew every other within %s (this machine's two cores run all N agents)", n, limit)
			continue
		}
		b.Logf("N=%-5d all know all %6.2fs  (model %5.2fs)  all see a killed node dead %6.2fs  per node: %7.0f B/s loopback, %5.2f%% CPU, %5.0f KiB heap",
			f.n, f.converge.Seconds(), f.model.Seconds(), f.detect.Seconds(), f.bytesPerNodeSec, 100*f.cpuPerNode, f.heapPerNode/1024)
	}
	out := cmp.Or(os.Getenv("ECOM_BENCH_OUT"), "out")
	if err := plotGossip(figs, filepath.Join(out, "gossip-scale.png")); err != nil {
		b.Fatal(err)
	}
	b.Logf("plot: %s", filepath.Join(out, "gossip-scale.png"))
}

func raiseFileLimit(b *testing.B) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func gossipRun(b *testing.B, n int) gossipFigure {
	key, err := gossip.DeriveKey([]byte("bench-secret-0123456789abcdef0123456789"))
	if err != nil {
		b.Fatal(err)
	}
	nodes := make([]*gossip.Gossip, n)
	for i := range nodes {
		g, err := newBenchNode(i, key)
		if err != nil {
			b.Fatalf("node %d: %v", i, err)
		}
		nodes[i] = g
	}
	defer func() {
		var wg sync.WaitGroup
		for _, g := range nodes {
			wg.Go(func() { _ = g.Shutdown() })
		}
		wg.Wait()
	}()
	// N agents share this process's heap, where each would have its
	// own: one heap N times as large would collect garbage far less often
	// (or, shared by the collector's pacing, far more) than N processes.
	// Collect as N processes would: none of them below Go's 4 MiB
	// minimum heap target, so the whole at N × 4 MiB (plus the bench's
	// own), with GOGC's proportional pacing off.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(int64(n)*4<<20 + 64<<20))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// The same three seeds for everyone, as one cloud-init file gives.
	seeds := []string{nodes[0].Addr().String(), nodes[1].Addr().String(), nodes[2].Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, g := range nodes {
		wg.Go(func() { _ = g.Join(ctx, seeds) })
	}
	converge, ok := awaitAll(b, nodes, limit, func(g *gossip.Gossip) bool {
		return known(g) == n
	}, start)
	if !ok {
		return gossipFigure{n: n, converge: converge, failed: true, model: epidemicModel(n, 3, 200*time.Millisecond)}
	}
	wg.Wait()

	// A quiet window: loopback bytes, CPU and heap per node.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rx0, cpu0 := loopbackBytes(b), processCPU()
	t0 := time.Now()
	time.Sleep(10 * time.Second)
	window := time.Since(t0).Seconds()
	rx1, cpu1 := loopbackBytes(b), processCPU()

	// Kill one node without a goodbye; everyone else must see it dead.
	victim := nodes[n-1]
	_ = victim.Shutdown()
	killed := time.Now()
	rest := nodes[:n-1]
	detect, _ := awaitAll(b, rest, limit, func(g *gossip.Gossip) bool {
		for _, m := range g.Members() {
			if m.Name == fmt.Sprintf("node-%04d", n-1) {
				return m.State == gossip.StateDead
			}
		}
		return false
	}, killed)

	return gossipFigure{
		n: n, converge: converge, detect: detect,
		bytesPerNodeSec: float64(rx1-rx0) / window / float64(n),
		cpuPerNode:      (cpu1 - cpu0).Seconds() / window / float64(n),
		heapPerNode:     float64(ms.HeapInuse) / float64(n),
		model:           epidemicModel(n, 3, 200*time.Millisecond),
	}
}

// newBenchNode starts node i of a bench fleet on loopback: the first
// three are control-plane nodes, the rest workers.
func newBenchNode(i int, key gossip.Key) (*gossip.Gossip, error) {
	lo := netip.MustParseAddr("127.0.0.1")
	role := config.RoleWorker
	if i < 3 {
		role = config.RoleControlPlane
	}
	return gossip.New(gossip.Config{
		NodeName: fmt.Sprintf("node-%04d", i), ClusterName: "bench", Key: key,
		AdvertiseAddr: lo, Port: 0,
		Meta: gossip.Meta{
			NodeID: uuid.NewString(), Role: role, Expect: 3, Phase: "waiting-for-peers",
			Version: "bench", RPCAddr: netip.AddrPortFrom(lo, uint16(20000+i)),
		},
	})
}

// known counts the members g lists as alive or suspect: it knows them and
// takes them for running. (With hundreds of agents sharing two cores,
// some probe always runs late somewhere, so some member is suspect in
// some view at any moment; suspicion is refuted and clears.)
func known(g *gossip.Gossip) int {
	c := 0
	for _, m := range g.Members() {
		if m.State == gossip.StateAlive || m.State == gossip.StateSuspect {
			c++
		}
	}
	return c
}

// awaitAll polls (awaitNodes) until cond holds on every node and returns
// the time since from, or the limit and false.
func awaitAll(b *testing.B, nodes []*gossip.Gossip, limit time.Duration, cond func(*gossip.Gossip) bool, from time.Time) (time.Duration, bool) {
	at, left := awaitNodes(nodes, from.Add(limit), cond)
	if left > 0 {
		b.Logf("%d of %d nodes still not there after %s", left, len(nodes), limit)
		return limit, false
	}
	return at.Sub(from), true
}

// loopbackBytes reads the bytes received on lo from /proc/net/dev.
func loopbackBytes(b *testing.B) uint64 {
	data, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && name == "lo" {
			f := strings.Fields(rest)
			v, _ := strconv.ParseUint(f[0], 10, 64)
			return v
		}
	}
	b.Fatal("no lo in /proc/net/dev")
	return 0
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// epidemicModel is the mean-field model of push gossip memberlist uses to
// spread an update: every interval each informed node tells `fanout`
// random others, so the informed fraction x grows as
// x' = 1 - (1-x)·exp(-fanout·x). It returns the time until fewer than half
// a node is uninformed, starting from one.
func epidemicModel(n, fanout int, interval time.Duration) time.Duration {
	x := 1 / float64(n)
	rounds := 0
	for (1-x)*float64(n) >= 0.5 && rounds < 1000 {
		x = 1 - (1-x)*math.Exp(-float64(fanout)*x)
		rounds++
	}
	return time.Duration(rounds) * interval
}

func modelPts(figs []gossipFigure) plotter.XYs {
	var xy plotter.XYs
	for _, g := range figs {
		xy = append(xy, plotter.XY{X: float64(g.n), Y: g.model.Seconds()})
	}
	return xy
}

func plotGossip(figs []gossipFigure, path string) error {
	p := plot.New()
	p.Title.Text = "ecom-agent gossip at fleet scale (loopback, one process, 2 cores)"
	p.X.Label.Text = "nodes (log scale)"
	p.Y.Label.Text = "seconds"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	pts := func(f func(gossipFigure) float64) plotter.XYs {
		var xy plotter.XYs
		for _, g := range figs {
			if !g.failed {
				xy = append(xy, plotter.XY{X: float64(g.n), Y: f(g)})
			}
		}
		return xy
	}
	if err := plotutil.AddLinePoints(p,
		"every node knows every other (alive or suspect)", pts(func(g gossipFigure) float64 { return g.converge.Seconds() }),
		"every node sees a killed node dead", pts(func(g gossipFigure) float64 { return g.detect.Seconds() }),
		"epidemic model: one update reaches all (fanout 3, 200 ms)", modelPts(figs),
	); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}
