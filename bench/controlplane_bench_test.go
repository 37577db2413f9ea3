//go:build bench

// Package bench holds ecom-agent's benchmarks: figures, not assertions.
// `make bench` runs them and prints each beside its reference.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecom-platform/ecom-agent/integration/demo"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
	"github.com/ecom-platform/ecom-agent/seed"
	"github.com/ecom-platform/ecom-agent/status"
)

// samples collects one figure's runs. Durations are kept as they are;
// other quantities (MiB, %) are stored as durations of that many seconds
// and printed with their own unit in the name.
type samples map[string][]time.Duration

func (s samples) add(name string, d time.Duration) { s[name] = append(s[name], d) }

func (s samples) addValue(name string, v float64) {
	s[name] = append(s[name], time.Duration(v*float64(time.Second)))
}

func (s samples) median(name string) time.Duration {
	v := slices.Clone(s[name])
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func (s samples) print(b *testing.B) {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := slices.Clone(s[n])
		slices.Sort(v)
		unit := "s"
		if strings.HasPrefix(n, "footprint:") {
			unit = "" // the name carries the unit
		}
		b.Logf("%-56s median %7.2f%s  min %7.2f%s  max %7.2f%s  (%d samples)", n, s.median(n).Seconds(), unit, v[0].Seconds(), unit, v[len(v)-1].Seconds(), unit, len(v))
	}
}

// debs are the packages a node installs: the agent's, its images',
// Kubernetes' and containerd's (not the platform's images: the bench
// times the seeding, not the platform's pods).
func debs(b *testing.B) []string {
	dir := os.Getenv("ECOM_DEB_DIR")
	all, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	var paths []string
	for _, p := range all {
		if !strings.HasPrefix(filepath.Base(p), demo.PlatformPackage+"_") {
			paths = append(paths, p)
		}
	}
	if len(paths) != 4 {
		b.Fatalf("want the 4 packages (the agent, its images, Kubernetes, containerd) in $ECOM_DEB_DIR (%q), found %v: run `make bench`", dir, paths)
	}
	slices.Sort(paths)
	return paths
}

// hostStatus reads a host's status; errors count as "not yet".
func hostStatus(h *testhost.Host) (status.Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, _ := h.Run(ctx, "ecom-agent", "status", "-o", "json")
	var st status.Status
	return st, json.Unmarshal([]byte(res.Stdout), &st) == nil
}

// BenchmarkControlPlane measures, on three test hosts from a simultaneous
// `ecom-agent join` (packages installed, as an admin would): the time to a
// 3-voter etcd quorum, from quorum to /readyz on all three API servers, and
// from the first ready API server to the platform seeded. Beside them: a
// bare etcd and kube-apiserver started by hand with the same flags on the
// same machine (kubetest), and seed.Apply of the same manifests on it.
// $ECOM_BENCH_RUNS runs (default 3); run it with -benchtime=1x.
func BenchmarkControlPlane(b *testing.B) {
	s := samples{}
	runs, err := strconv.Atoi(cmp.Or(os.Getenv("ECOM_BENCH_RUNS"), "3"))
	if err != nil || runs < 1 {
		b.Fatalf("ECOM_BENCH_RUNS=%q: want a positive number", os.Getenv("ECOM_BENCH_RUNS"))
	}
	for i := 0; i < runs; i++ {
		agentRun(b, s)
		bareRun(b, s)
		bareClusterRun(b, s)
	}
	b.StopTimer()
	s.print(b)
	ratio := func(a, bare string) {
		if m := s.median(bare); m > 0 {
			b.Logf("ratio %-46s %.2fx", a+" / "+bare, s.median(a).Seconds()/m.Seconds())
		}
	}
	ratio("agent: join to quorum (3 voters)", "bare: 3 etcd started by hand to a 3-voter quorum")
	ratio("agent: quorum to /readyz on all 3", "bare: 3 kube-apiservers started at once to /readyz on all 3")
	ratio("agent: quorum to /readyz on all 3", "bare: kube-apiserver start to /readyz")
	ratio("agent: first /readyz to seeded", "bare: seed.Apply of the platform")
}

func agentRun(b *testing.B, s samples) {
	env := testhost.New(b, testhost.Options{Prefix: "b", Logf: func(string, ...any) {}})
	hosts := env.Start(b, 3)
	var peers []string
	for _, h := range hosts {
		peers = append(peers, h.Addr().String())
		if err := demo.Install(context.Background(), h, debs(b)); err != nil {
			b.Fatal(err)
		}
	}
	secret, _ := demo.NewSecrets()
	// Go's profiler on the node's loopback only, for the heap profile
	// below; everything else as the demo's nodes have it.
	cfg := demo.Config("bench", peers) + "\n[metrics]\naddress = \"127.0.0.1:7948\"\npprof = true\n"
	for _, h := range hosts {
		if err := demo.Configure(h, cfg, secret); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			_, _ = h.Run(ctx, "ecom-agent", "join", "--timeout", "9m")
		}()
	}
	// The quorum is timed as the bare reference's is: from this process,
	// every member answering with one leader, polled every 50 ms with the
	// cluster's own certificates once the first host has them.
	var quorum time.Time
	quorumDone := make(chan struct{})
	go func() {
		defer close(quorumDone)
		var cli *clientv3.Client
		for time.Since(start) < 10*time.Minute {
			if cli == nil {
				cli = hostEtcdClient(hosts)
			}
			if cli != nil && commonLeader(cli, hosts) != 0 {
				quorum = time.Now()
				cli.Close()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var allReady, firstReady, seeded time.Time
	ready := map[string]bool{}
	deadline := start.Add(10 * time.Minute)
	for (seeded.IsZero() || len(ready) < 3) && time.Now().Before(deadline) {
		for _, h := range hosts {
			st, ok := hostStatus(h)
			if !ok {
				continue
			}
			// Readiness is timed by the agents' own clocks (the hosts
			// share this machine's), not by when this loop saw it.
			if cp := st.ControlPlane; cp != nil && cp.Ready && !ready[h.Name()] {
				ready[h.Name()] = true
				if firstReady.IsZero() || cp.ReadySince.Before(firstReady) {
					firstReady = cp.ReadySince
				}
				if allReady.IsZero() || cp.ReadySince.After(allReady) {
					allReady = cp.ReadySince
				}
			}
			if st.Seed != nil && !st.Seed.Finished.IsZero() && seeded.IsZero() {
				seeded = st.Seed.Finished
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	wg.Wait()
	<-quorumDone
	if seeded.IsZero() || len(ready) < 3 || quorum.IsZero() {
		b.Fatalf("the agent run did not finish in 10 minutes (quorum %v, all ready %v, seeded %v)", quorum, allReady, seeded)
	}
	if os.Getenv("ECOM_BENCH_TRACE") != "" {
		traceSeeding(b, hosts)
	}
	s.add("agent: join to quorum (3 voters)", quorum.Sub(start))
	s.add("agent: quorum to /readyz on all 3", allReady.Sub(quorum))
	s.add("agent: first /readyz to seeded", seeded.Sub(firstReady))
	s.add("agent: join to seeded", seeded.Sub(start))

	// Footprint: the daemon's memory and CPU through the join, then
	// idle for 30 s on a healthy node.
	var before []footprint
	for _, h := range hosts {
		f, err := agentFootprint(h)
		if err != nil {
			b.Fatal(err)
		}
		before = append(before, f)
		s.addValue("footprint: agent RSS after the join (MiB)", float64(f.rssKiB)/1024)
		s.addValue("footprint: agent peak RSS during the join (MiB)", float64(f.peakKiB)/1024)
		s.addValue("footprint: agent CPU during join to seeded (s)", float64(f.cpuTicks)/100)
	}
	time.Sleep(30 * time.Second)
	for i, h := range hosts {
		f, err := agentFootprint(h)
		if err != nil {
			b.Fatal(err)
		}
		s.addValue("footprint: agent CPU idle (% of a core)", float64(f.cpuTicks-before[i].cpuTicks)/30)
		s.addValue("footprint: agent RSS idle (MiB)", float64(f.rssKiB)/1024)
		s.addValue("footprint: agent RSS idle, anonymous (MiB)", float64(f.anonKiB)/1024)
		s.addValue("footprint: agent RSS idle, binary's pages (MiB)", float64(f.fileKiB)/1024)
	}
	saveHeapProfile(b, hosts[0])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	res, err := hosts[0].Run(ctx, "stat", "-c", "%s", "/usr/bin/ecom-agent")
	cancel()
	if size, perr := strconv.Atoi(strings.TrimSpace(res.Stdout)); err == nil && perr == nil {
		s.addValue("footprint: ecom-agent binary (MiB)", float64(size)/(1<<20))
	}
	if err := env.Close(); err != nil {
		b.Log(err)
	}
}

func bareRun(b *testing.B, s samples) {
	start := time.Now()
	c := kubetest.Start(b)
	s.add("bare: kube-apiserver start to /readyz", c.ReadyAfter)
	s.add("bare: render, etcd and kube-apiserver to /readyz", time.Since(start))
	set, problems := seed.Load(nil, "", seed.Embedded(), seed.Vars{ClusterName: "bench", ClusterDomain: "cluster.local", ClusterDNSIP: "10.96.0.10", StorageDir: "/var/lib/ecom-agent-volumes", ImageRegistry: "ecom-agent.local", PodCIDR: "10.244.0.0/16"})
	if len(problems) > 0 {
		b.Fatalf("manifests: %v", problems)
	}
	t0 := time.Now()
	rep, err := seed.Apply(context.Background(), c.Admin, set, nil, seed.ApplyOptions{Seeder: "bench"})
	if err != nil || rep.Counts[seed.Failed] > 0 {
		b.Fatalf("seed.Apply: %v %v", err, rep.Counts)
	}
	s.add("bare: seed.Apply of the platform", time.Since(t0))
	t0 = time.Now()
	rep, err = seed.Apply(context.Background(), c.Admin, set, nil, seed.ApplyOptions{Seeder: "bench"})
	if err != nil || rep.Counts[seed.Failed] > 0 || rep.Counts[seed.Created]+rep.Counts[seed.Configured] > 0 {
		b.Fatalf("seed.Apply again: %v %v", err, rep.Counts)
	}
	s.add("bare: seed.Apply again (no change)", time.Since(t0))
	c.Stop()
}

// saveHeapProfile writes the heap profile of the agent on h to
// $ECOM_BENCH_OUT/agent-heap.pb.gz (read it with go tool pprof) and logs
// its top entries by memory in use.
func saveHeapProfile(b *testing.B, h *testhost.Host) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// No HTTP client on a test host: bash's /dev/tcp speaks HTTP/1.0.
	res, err := h.Run(ctx, "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/7948 && printf 'GET /debug/pprof/heap?gc=1 HTTP/1.0\r\n\r\n' >&3 && cat <&3`)
	if err != nil {
		b.Logf("heap profile: %v", err)
		return
	}
	_, body, ok := strings.Cut(res.Stdout, "\r\n\r\n")
	if !ok || !strings.HasPrefix(res.Stdout, "HTTP/1.0 200") {
		b.Logf("heap profile: unexpected answer %.200q", res.Stdout)
		return
	}
	out := filepath.Join(cmp.Or(os.Getenv("ECOM_BENCH_OUT"), "out"), "agent-heap.pb.gz")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(out, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=15", "-sample_index=inuse_space", out).Output()
	if err != nil {
		b.Logf("heap profile in %s (go tool pprof: %v)", out, err)
		return
	}
	b.Logf("heap profile in %s:\n%s", out, top)
}

// traceSeeding logs, per host, the agent's journal lines from the API
// server's readiness to the end of the first seeding pass: where the
// time between them goes ($ECOM_BENCH_TRACE).
func traceSeeding(b *testing.B, hosts []*testhost.Host) {
	for _, h := range hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := h.Run(ctx, "journalctl", "-o", "short-precise", "--no-pager", "-u", "ecom-agent", "-u", "containerd", "-u", "kubelet")
		cancel()
		if err != nil {
			b.Logf("%s: journal: %v", h.Name(), err)
			continue
		}
		var keep []string
		on := false
		for _, l := range strings.Split(res.Stdout, "\n") {
			on = on || strings.Contains(l, "kube-apiserver is ready")
			if on && (strings.Contains(l, "seed") || strings.Contains(l, "RBAC") || strings.Contains(l, "import") ||
				strings.Contains(l, "object") || strings.Contains(l, "ready") || strings.Contains(l, "Started")) {
				keep = append(keep, l)
			}
			if strings.Contains(l, "seeding pass done") || len(keep) > 300 {
				break
			}
		}
		b.Logf("%s:\n%s", h.Name(), strings.Join(keep, "\n"))
	}
}
