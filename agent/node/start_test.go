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
// kernel modules loaded, systemd on cgroup v2, the programs installed and
// containerd answering CRI on its socket. swap puts a swap device in.
func kubeletHost(t *testing.T, cfg *config.Config, swap bool) *hostfs.Root {
	t.Helper()
	root := configtest.Root(t)
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
	sock := root.Path("/run/containerd/containerd.sock")
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

func startNode(t *testing.T, swap bool) (*Node, *startSystemd, *fakeExec, *nodestate.Store) {
	t.Helper()
	cfg := configtest.Worker(t)
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
	n, sd, ex, store := startNode(t, false)
	ctx := context.Background()
	// There is no kubeconfig to read Nodes with: the start goes through,
	// the pod network's step fails and is retried.
	if err := n.Step(ctx); err == nil || !n.Ready() {
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
	// The kubelet's and kube-proxy's start jobs run in the background.
	got := sd.log()
	for i := 0; i < 200 && len(got) < len(want); i++ {
		time.Sleep(10 * time.Millisecond)
		got = sd.log()
	}
	slices.Sort(got[2:])
	slices.Sort(want[2:])
	if !slices.Equal(got, want) {
		t.Errorf("systemd did %q, want %q", got, want)
	}
	ctr := cfg.Binaries.Ctr + " --address " + bootstrap.ContainerdSocket(cfg) + " --namespace k8s.io images import --label io.cri-containerd.pinned=pinned " +
		n.d.Root.Path(bootstrap.PackageImagesDir+"/pause.tar")
	if ran := ex.lines(); !slices.Contains(ran, ctr) {
		t.Errorf("ran %q, want %q", ran, ctr)
	}
	if !store.Snapshot().NodeUnits {
		t.Error("the state does not record the node units")
	}
	if st := report(n); !st.KubeletStarted || len(st.Images) != 1 || st.Runtime == "" {
		t.Errorf("status %+v", st)
	}
	before := len(sd.log())
	_ = n.Step(ctx)
	if after := sd.log(); len(after) != before {
		t.Errorf("a second step did %q", after[before:])
	}
}

// A host the kubelet cannot run on keeps it stopped, says why in the
// status and in the step's error, and retries.
func TestStepRefusesAHostWithSwap(t *testing.T) {
	n, sd, _, _ := startNode(t, true)
	err := n.Step(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the kubelet cannot start until this is fixed") || n.Ready() {
		t.Fatalf("step: %v, ready %v", err, n.Ready())
	}
	st := report(n)
	if len(st.Preflight) == 0 || !strings.Contains(strings.Join(st.Preflight, "\n"), "swap") || st.KubeletStarted {
		t.Errorf("status %+v", st)
	}
	for _, c := range sd.log() {
		if c == "start "+bootstrap.KubeletUnit {
			t.Error("the kubelet was started on a host with swap")
		}
	}
}
