package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/units"
)

// startSystemd plays systemd for the node side: units are inactive until
// started, and every call is recorded in order.
type startSystemd struct {
	mu     sync.Mutex
	calls  []string
	active map[string]bool
}

func (f *startSystemd) Apply(_ context.Context, specs []units.Spec) (units.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	f.calls = append(f.calls, "apply "+strings.Join(names, " "))
	return units.Changes{}, nil
}

func (f *startSystemd) Status(_ context.Context, n string) (units.UnitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := units.UnitStatus{Name: n, ActiveState: units.Inactive}
	if f.active[n] {
		st.ActiveState = units.Active
	}
	return st, nil
}

func (f *startSystemd) Start(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "start "+n)
	f.active[n] = true
	return nil
}

func (f *startSystemd) Restart(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "restart "+n)
	return nil
}

func (f *startSystemd) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// readyCRI is containerd 2 answering over CRI, ready to run pods.
type readyCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
}

func (readyCRI) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "containerd", RuntimeVersion: "v2.4.2", RuntimeApiVersion: "v1"}, nil
}

func (readyCRI) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true},
	}}}, nil
}

func (readyCRI) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_SYSTEMD}}, nil
}

// kubeletHost is a host root the kubelet can start on: no swap, the
// kernel modules loaded, systemd on cgroup v2, the programs installed, an
// image archive shipped by the package and one the operator dropped, and
// containerd answering CRI on the socket of the config's
// kubelet.container_runtime_endpoint. swap puts a swap device in.
func kubeletHost(t *testing.T, cfg *config.Config, swap bool) *hostfs.Root {
	t.Helper()
	// Not t.TempDir: a unix socket's path has at most 107 bytes, and
	// t.TempDir's grows with the test's name.
	dir, err := os.MkdirTemp("", "node")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	root, err := hostfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	swaps := "Filename\tType\tSize\tUsed\tPriority\n"
	if swap {
		swaps += "/dev/vda2\tpartition\t1048572\t0\t-2\n"
	}
	for p, data := range map[string]string{
		"/proc/swaps":                             swaps,
		"/sys/module/br_netfilter/refcnt":         "0\n",
		"/sys/module/overlay/refcnt":              "0\n",
		"/run/systemd/system/.keep":               "",
		"/proc/self/mountinfo":                    "30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n",
		"/sys/fs/cgroup/cgroup.controllers":       "cpuset cpu io memory hugetlb pids\n",
		cfg.Binaries.Kubelet:                      "#!/bin/sh\n",
		cfg.Binaries.KubeProxy:                    "#!/bin/sh\n",
		cfg.Binaries.Containerd:                   "#!/bin/sh\n",
		cfg.Binaries.Ctr:                          "#!/bin/sh\n",
		bootstrap.PackageImagesDir + "/pause.tar": "archive",
		bootstrap.ImagesDir + "/shop.tar":         "archive",
		// Neither is an image archive.
		bootstrap.ImagesDir + "/README":        "drop image archives (.tar) here",
		bootstrap.ImagesDir + "/old.tar/.keep": "",
		// The kernel parameters the kubelet needs, as a fresh host has
		// them: the agent sets them.
		"/proc/sys/net/ipv4/ip_forward":                 "0\n",
		"/proc/sys/net/bridge/bridge-nf-call-iptables":  "0\n",
		"/proc/sys/net/bridge/bridge-nf-call-ip6tables": "0\n",
	} {
		if _, err := root.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := root.Path(bootstrap.ContainerdSocket(cfg))
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(s, readyCRI{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return root
}

// startNode is the node side of cfg's node on a kubeletHost, from fakes:
// systemd, the host programs and the state store.
func startNode(t *testing.T, cfg *config.Config, swap bool) (*Node, *startSystemd, *fakeExec, *nodestate.Store) {
	t.Helper()
	root := kubeletHost(t, cfg, swap)
	sd := &startSystemd{active: map[string]bool{}}
	ex := &fakeExec{}
	store := nodestate.NewStore(root, &nodestate.State{NodeID: "n", Phase: nodestate.PhaseWorkerWaiting}, nil)
	n := New(Deps{
		Config: cfg, Root: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: store, Systemd: sd, Run: ex,
		Written: func() []bootstrap.Written { return nil }, Kubeconfig: bootstrap.KubeProxyKubeconfig,
	})
	return n, sd, ex, store
}

// The node side starts containerd, imports the shipped images with the
// configured ctr, and only then starts the kubelet and kube-proxy; it is
// Ready once they were started, and a later step starts nothing again.
func TestStepStartsTheNodeSide(t *testing.T) {
	n, sd, ex, store := startNode(t, configtest.Worker(t), false)
	ctx := context.Background()
	// There is no kubeconfig to read Nodes with: the start goes through,
	// the pod network's step fails and is retried.
	err := n.Step(ctx)
	if err == nil || !n.Ready() {
		t.Fatalf("step: %v, ready %v; want started, and the network step failing without a kubeconfig", err, n.Ready())
	}
	cfg := n.d.Config
	names := bootstrap.UnitsOf(cfg, bootstrap.GroupNode)
	want := []string{"apply " + strings.Join(names, " "), "start " + bootstrap.ContainerdUnit}
	for _, u := range names {
		if u != bootstrap.ContainerdUnit {
			want = append(want, "start "+u)
		}
	}
	// containerd first, then the others, whose start jobs run in the
	// background, in any order.
	got := awaitCalls(t, sd, len(want))
	if len(got) >= 2 {
		slices.Sort(got[2:])
	}
	slices.Sort(want[2:])
	if !slices.Equal(got, want) {
		t.Errorf("systemd did %q, want %q", got, want)
	}
	// Every archive is imported, the package's first; nothing else ran
	// (the pod network's step stopped at the missing kubeconfig).
	if ran, want := ex.lines(), []string{ctrImport(n, bootstrap.PackageImagesDir+"/pause.tar"), ctrImport(n, bootstrap.ImagesDir+"/shop.tar")}; !slices.Equal(ran, want) {
		t.Errorf("ran %q, want %q", ran, want)
	}
	if !store.Snapshot().NodeUnits {
		t.Error("the state does not record the node units")
	}
	st := report(n)
	if !st.KubeletStarted || !slices.Equal(st.Images, []string{bootstrap.PackageImagesDir + "/pause.tar", bootstrap.ImagesDir + "/shop.tar"}) ||
		!strings.Contains(st.Runtime, "containerd v2.4.2") || len(st.Preflight) != 0 {
		t.Errorf("status %+v", st)
	}
	if st.Error == "" || st.Error != err.Error() {
		t.Errorf("status error %q, want the step's %q", st.Error, err)
	}
	before := len(sd.log())
	_ = n.Step(ctx)
	if after := sd.log(); len(after) != before {
		t.Errorf("a second step did %q", after[before:])
	}
	if ran := ex.lines(); len(ran) != 0 {
		t.Errorf("a second step ran %q", ran)
	}
}

// awaitCalls returns systemd's calls once there are n, or after 5
// seconds.
func awaitCalls(t *testing.T, sd *startSystemd, n int) []string {
	t.Helper()
	got := sd.log()
	for i := 0; i < 500 && len(got) < n; i++ {
		time.Sleep(10 * time.Millisecond)
		got = sd.log()
	}
	return got
}

// ctrImport is the command line that imports an archive into
// containerd's k8s.io namespace with the configured ctr.
func ctrImport(n *Node, archive string) string {
	cfg := n.d.Config
	return cfg.Binaries.Ctr + " --address " + bootstrap.ContainerdSocket(cfg) +
		" --namespace k8s.io images import --label io.cri-containerd.pinned=pinned " + n.d.Root.Path(archive)
}

// When the operator runs the container runtime, the node side neither
// installs nor starts containerd, nor imports images into it: it checks
// the runtime at the configured endpoint and starts the kubelet.
func TestStepWithTheOperatorsRuntime(t *testing.T) {
	cfg := configtest.Parse(t, configtest.WorkerOf(configtest.ControlPlaneTOML(t), "cp-1")+`
[kubelet]
container_runtime_endpoint = "unix:///run/k3s/containerd/containerd.sock"
`)
	if cfg.ManagesContainerd() {
		t.Fatal("the agent manages a runtime at another endpoint")
	}
	n, sd, ex, store := startNode(t, cfg, false)
	if err := n.Step(context.Background()); !n.Ready() {
		t.Fatalf("step: %v; not ready", err)
	}
	names := bootstrap.UnitsOf(cfg, bootstrap.GroupNode)
	if slices.Contains(names, bootstrap.ContainerdUnit) {
		t.Fatalf("node units %q with the operator's runtime", names)
	}
	want := []string{"apply " + strings.Join(names, " ")}
	for _, u := range names {
		want = append(want, "start "+u)
	}
	got := awaitCalls(t, sd, len(want))
	if len(got) >= 1 {
		slices.Sort(got[1:])
	}
	slices.Sort(want[1:])
	if !slices.Equal(got, want) {
		t.Errorf("systemd did %q, want %q", got, want)
	}
	if ran := ex.lines(); len(ran) != 0 {
		t.Errorf("ran %q, want no image imported into the operator's runtime", ran)
	}
	if st := report(n); !st.KubeletStarted || len(st.Images) != 0 || st.Runtime == "" || !store.Snapshot().NodeUnits {
		t.Errorf("status %+v", st)
	}
}

// An archive that does not import stops nothing else: the kubelet
// starts, the status names the archive and why, and the next steps import
// it again until it does.
func TestStepRetriesAFailedImport(t *testing.T) {
	n, sd, ex, _ := startNode(t, configtest.Worker(t), false)
	ctx := context.Background()
	shop := ctrImport(n, bootstrap.ImagesDir+"/shop.tar")
	ex.failing(map[string]string{shop: "ctr: unexpected EOF"})
	_ = n.Step(ctx) // the network step may wait for the API: not what this checks
	if !n.Ready() {
		t.Fatalf("the kubelet was not started with an archive broken: %+v", report(n))
	}
	st := report(n)
	if !slices.Equal(st.Images, []string{bootstrap.PackageImagesDir + "/pause.tar"}) || len(st.ImageErrors) != 1 ||
		!strings.Contains(st.ImageErrors[0], bootstrap.ImagesDir+"/shop.tar did not import into containerd") ||
		!strings.Contains(st.ImageErrors[0], "unexpected EOF") {
		t.Errorf("status %+v", st)
	}
	if got := awaitCalls(t, sd, 4); !slices.Contains(got, "start "+bootstrap.KubeletUnit) {
		t.Errorf("systemd did %q, want the kubelet started", got)
	}
	ex.failing(nil)
	ex.lines()
	_ = n.Step(ctx)
	if ran := ex.lines(); !slices.Contains(ran, shop) {
		t.Errorf("ran %q, want %q again", ran, shop)
	}
	if st := report(n); len(st.ImageErrors) != 0 || len(st.Images) != 2 {
		t.Errorf("after the retry: status %+v", st)
	}
	// Nothing left to retry: no import on the next step.
	_ = n.Step(ctx)
	if ran := ex.lines(); slices.ContainsFunc(ran, func(l string) bool { return strings.Contains(l, "images import") }) {
		t.Errorf("imported again with nothing failed: %q", ran)
	}
	if got := sd.log(); slices.Contains(got, "restart "+bootstrap.ContainerdUnit) {
		t.Errorf("containerd restarted on the retry with no config changed: %q", got)
	}
}

// A host the kubelet cannot run on keeps it stopped, says why in the
// status and in the step's error, and retries.
func TestStepRefusesAHostWithSwap(t *testing.T) {
	n, sd, _, _ := startNode(t, configtest.Worker(t), true)
	ctx := context.Background()
	for step := range 2 {
		err := n.Step(ctx)
		if err == nil || !strings.Contains(err.Error(), "the kubelet cannot start until this is fixed") || n.Ready() {
			t.Fatalf("step %d: %v, ready %v", step, err, n.Ready())
		}
		st := report(n)
		if len(st.Preflight) != 1 || !strings.HasPrefix(st.Preflight[0], "swap: ") || !strings.Contains(err.Error(), st.Preflight[0]) ||
			st.Error != err.Error() || st.KubeletStarted {
			t.Errorf("step %d: status %+v, error %v; want the swap failure in both", step, st, err)
		}
	}
	for _, c := range sd.log() {
		if c == "start "+bootstrap.KubeletUnit || c == "start "+bootstrap.KubeProxyUnit {
			t.Errorf("%s on a host with swap", c)
		}
	}
}

// A start that fails after containerd is up (here: swap on) is retried
// without restarting containerd on every step, though the render created
// its config: a unit whose inputs changed restarts once.
func TestRetriedStartRestartsContainerdOnce(t *testing.T) {
	n, sd, _, _ := startNode(t, configtest.Worker(t), true)
	n.d.Written = func() []bootstrap.Written {
		return []bootstrap.Written{{Path: bootstrap.ContainerdConfigFile, Result: hostfs.Created, Action: "created"}}
	}
	ctx := context.Background()
	for range 4 {
		if err := n.Step(ctx); err == nil {
			t.Fatal("a host with swap started the kubelet")
		}
	}
	starts := 0
	for _, c := range sd.log() {
		switch c {
		case "start " + bootstrap.ContainerdUnit:
			starts++
		case "restart " + bootstrap.ContainerdUnit:
			t.Errorf("containerd restarted on a retry: systemd did %q", sd.log())
		}
	}
	if starts != 1 {
		t.Errorf("containerd started %d times, want once: systemd did %q", starts, sd.log())
	}
}
