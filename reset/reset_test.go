package reset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
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
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/units"
)

// resetSystemd records reset's calls and plays a host where the agent
// and the control-plane units run.
type resetSystemd struct {
	calls  []string
	loaded map[string]units.ActiveState
}

func (f *resetSystemd) Status(_ context.Context, n string) (units.UnitStatus, error) {
	if st, ok := f.loaded[n]; ok {
		return units.UnitStatus{Name: n, LoadState: "loaded", ActiveState: st}, nil
	}
	return units.UnitStatus{Name: n, LoadState: "not-found", ActiveState: "inactive"}, nil
}

func (f *resetSystemd) Stop(_ context.Context, n string) error {
	f.calls = append(f.calls, "stop "+n)
	f.loaded[n] = "inactive"
	return nil
}

func (f *resetSystemd) Disable(_ context.Context, names ...string) ([]string, error) {
	f.calls = append(f.calls, "disable "+strings.Join(names, " "))
	return names, nil
}

func (f *resetSystemd) Remove(_ context.Context, names []string) error {
	f.calls = append(f.calls, "remove "+strings.Join(names, " "))
	for _, n := range names {
		delete(f.loaded, n)
	}
	return nil
}

// runner records the commands reset runs.
type runner struct{ ran []string }

func (r *runner) Output(_ context.Context, name string, args ...string) ([]byte, error) {
	r.ran = append(r.ran, name+" "+strings.Join(args, " "))
	return nil, nil
}

// A control-plane node without etcd data (it never got into the cluster)
// is reset: every file the renderer wrote goes, except the unit files
// (systemd's job) and what an operator owns, which stays.
func TestResetRemovesWhatTheAgentGenerated(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	root := configtest.Root(t)
	written, err := bootstrap.NewRenderer(cfg, root, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, _ := nodestate.LoadState(root)
	if err := st.Save(root); err != nil {
		t.Fatal(err)
	}
	operator := map[string]string{
		bootstrap.AgentConfigFile:                          "cluster_name = \"shop\"\n",
		"/etc/ecom-agent/manifests.d/shop.yaml":            "kind: ConfigMap\n",
		bootstrap.AgentStateDir + "/images/pause.tar":      "tar",
		"/etc/kubernetes/operator-notes.txt":               "mine",
		"/var/lib/etcd.aside-1700000000/member/wal/0.wal":  "old",
		"/var/log/kubernetes/audit/audit.log":              "{}",
		bootstrap.AgentStateDir + "/ca-pin":                "sha256:00",
		bootstrap.AgentStateDir + "/cluster-shared.sealed": "sealed",
		bootstrap.AdminKubeconfig + ".old":                 "renewal kept it",
	}
	for p, data := range operator {
		if _, err := root.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sd := &resetSystemd{loaded: map[string]units.ActiveState{
		bootstrap.AgentUnit: "active", bootstrap.APIServerUnit: "active", bootstrap.KubeProxyUnit: "failed",
	}}
	r := &runner{}
	var progress []string
	rep, err := Reset(context.Background(), Options{
		Root: root, Config: cfg, Systemd: sd, Runner: r,
		Now:      func() time.Time { return time.Unix(1800000000, 0) },
		Progress: func(s string) { progress = append(progress, s) },
	})
	if err != nil {
		t.Fatalf("Reset: %v\n%+v", err, rep)
	}
	wantCalls := []string{"stop ecom-agent.service", "remove " + strings.Join(stopOrder(), " "), "disable ecom-agent.service"}
	if !slices.Equal(sd.calls, wantCalls) {
		t.Errorf("systemd calls %q, want %q", sd.calls, wantCalls)
	}
	if !slices.Equal(rep.Units, []string{bootstrap.KubeProxyUnit, bootstrap.APIServerUnit}) {
		t.Errorf("units %v", rep.Units)
	}
	// kube-proxy's binary is not on this test root: reset says the rules
	// stay and how to clear them, and runs nothing but the reads of the
	// network-policy engine's cleanup (which finds nothing to remove).
	changes := slices.DeleteFunc(slices.Clone(r.ran), func(c string) bool {
		return strings.HasPrefix(c, "iptables-save ") || strings.HasSuffix(c, "--line-numbers") || strings.HasSuffix(c, "-t filter -S") || c == "ipset list -n"
	})
	if len(changes) != 0 || !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "kube-proxy --cleanup") }) {
		t.Errorf("ran %q, warnings %q", r.ran, rep.Warnings)
	}
	for _, w := range written {
		gone := !strings.HasPrefix(w.Path, bootstrap.SystemdDir) && w.Path != bootstrap.AgentUnitFile
		if ok, _ := root.Exists(w.Path); ok == gone {
			t.Errorf("%s: exists %v after reset", w.Path, ok)
		}
	}
	for p := range operator {
		kept := !strings.HasPrefix(p, bootstrap.AgentStateDir) && !strings.HasSuffix(p, ".old") || strings.Contains(p, "/images/")
		if ok, _ := root.Exists(p); ok != kept {
			t.Errorf("%s: exists %v after reset, want %v", p, ok, kept)
		}
	}
	for _, p := range []string{bootstrap.AgentStateFile, bootstrap.PKIDir, bootstrap.KubeProxyConfigFile} {
		if !slices.Contains(rep.Removed, p) {
			t.Errorf("report does not list %s as removed: %v", p, rep.Removed)
		}
	}
	for _, p := range []string{bootstrap.AgentConfigFile, "/etc/kubernetes/operator-notes.txt", "/var/lib/etcd.aside-1700000000", bootstrap.AgentStateDir + "/images"} {
		if !slices.Contains(rep.Kept, p) {
			t.Errorf("report does not list %s as kept: %v", p, rep.Kept)
		}
	}
	if rep.Etcd == "" || rep.MemberRemoved != "" || len(rep.Backups) != 0 || len(progress) < 3 {
		t.Errorf("report %+v, progress %q", rep, progress)
	}

	// A second reset finds nothing left to remove.
	sd.calls = nil
	rep, err = Reset(context.Background(), Options{Root: root, Config: cfg, Systemd: sd})
	if err != nil || len(rep.Removed) != 0 || len(rep.Units) != 0 {
		t.Errorf("second reset: %v, removed %v, units %v", err, rep.Removed, rep.Units)
	}
	// A new join starts as on a new host: a new node ID.
	st2, _ := nodestate.LoadState(root)
	if st2.NodeID == st.NodeID {
		t.Error("the node ID survived the reset")
	}
}

// A dry run lists the same and changes nothing.
func TestResetDryRunChangesNothing(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	root := configtest.Root(t)
	if _, err := bootstrap.NewRenderer(cfg, root, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	sd := &resetSystemd{loaded: map[string]units.ActiveState{bootstrap.AgentUnit: "active", bootstrap.EtcdUnit: "active"}}
	rep, err := Reset(context.Background(), Options{Root: root, Config: cfg, Systemd: sd, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.calls) != 0 {
		t.Errorf("dry run called systemd: %q", sd.calls)
	}
	if !rep.DryRun || !slices.Contains(rep.Removed, bootstrap.PKIDir) || !slices.Equal(rep.Units, []string{bootstrap.EtcdUnit}) {
		t.Errorf("dry run report %+v", rep)
	}
	if ok, _ := root.Exists(bootstrap.PKIDir + "/ca.key"); !ok {
		t.Error("dry run removed the CA key")
	}
	// Every step after the plan is described, by name, in order.
	var names []string
	for _, st := range rep.Steps {
		name, desc, _ := strings.Cut(st, ": ")
		names = append(names, name)
		if desc == "" {
			t.Errorf("step %q has no description", st)
		}
	}
	if want := []string{"stop-agent", "remove-member", "units", "files"}; !slices.Equal(names, want) {
		t.Errorf("dry run steps %q, want %q", names, want)
	}
}

// With etcd data but no etcd answering, reset cannot prove the quorum
// safe: it refuses and changes nothing; --force keeps the data and keys
// aside instead of deleting them.
func TestResetRefusesWithoutAQuorumAndForceKeepsTheData(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	cfg.Etcd.ClientPort = configtest.FreePort(t) // nothing listens there
	root := configtest.Root(t)
	if _, err := bootstrap.NewRenderer(cfg, root, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := root.WriteFile(bootstrap.EtcdDataDir+"/member/wal/0.wal", []byte("wal"), 0o600); err != nil {
		t.Fatal(err)
	}
	sd := &resetSystemd{loaded: map[string]units.ActiveState{bootstrap.AgentUnit: "active", bootstrap.EtcdUnit: "active"}}
	_, err := Reset(context.Background(), Options{Root: root, Config: cfg, Systemd: sd, EtcdTimeout: time.Second})
	var unsafe *UnsafeError
	if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), "cannot read the etcd cluster's members") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Reset = %v, want an UnsafeError naming --force", err)
	}
	if len(sd.calls) != 0 {
		t.Errorf("a refused reset called systemd: %q", sd.calls)
	}
	if ok, _ := root.Exists(bootstrap.PKIDir + "/ca.key"); !ok {
		t.Error("a refused reset removed the CA key")
	}

	rep, err := Reset(context.Background(), Options{Root: root, Config: cfg, Systemd: sd, Force: true, EtcdTimeout: time.Second,
		Now: func() time.Time { return time.Unix(1800000000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/var/lib/etcd.reset-1800000000/member/wal/0.wal", "/etc/kubernetes.reset-1800000000/pki/ca.key"} {
		if ok, _ := root.Exists(p); !ok {
			t.Errorf("forced reset did not keep %s", p)
		}
	}
	if ok, _ := root.Exists(bootstrap.KubernetesDir); ok {
		t.Error("/etc/kubernetes is still there")
	}
	if len(rep.Backups) != 2 || len(rep.Warnings) == 0 {
		t.Errorf("report %+v", rep)
	}
}

// scriptedRunner answers commands by prefix and records them.
type scriptedRunner struct {
	ran     []string
	answers map[string]string
}

func (r *scriptedRunner) Output(_ context.Context, name string, args ...string) ([]byte, error) {
	line := name + " " + strings.Join(args, " ")
	r.ran = append(r.ran, line)
	for prefix, out := range r.answers {
		if strings.Contains(line, prefix) {
			return []byte(out), nil
		}
	}
	return nil, nil
}

// fakeCRI is a CRI runtime with pod sandboxes, as containerd answers.
type fakeCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	mu      sync.Mutex
	pods    map[string]bool // id -> running
	stopped []string
}

func (f *fakeCRI) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var items []*runtimeapi.PodSandbox
	for id := range f.pods {
		items = append(items, &runtimeapi.PodSandbox{Id: id, Metadata: &runtimeapi.PodSandboxMetadata{Name: id, Namespace: "ecommerce"}})
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

func (f *fakeCRI) StopPodSandbox(_ context.Context, r *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[r.PodSandboxId] = false
	f.stopped = append(f.stopped, r.PodSandboxId)
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (f *fakeCRI) RemovePodSandbox(_ context.Context, r *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods[r.PodSandboxId] {
		return nil, fmt.Errorf("pod %s is running", r.PodSandboxId)
	}
	delete(f.pods, r.PodSandboxId)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// TestResetRemovesPods: on a node that ran pods, reset stops the kubelet,
// stops and removes every pod over CRI while the runtime still runs, and
// takes down the pod network (masquerade rule, bridge, routes to the
// other nodes' pods, not other routes).
func TestResetRemovesPods(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	root := configtest.Root(t)
	conf, err := bootstrap.PodNetworkConfig(netip.MustParsePrefix("10.244.3.0/24"), cfg.Network.PodCIDR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.WriteFile(bootstrap.CNIConfFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := root.Path(bootstrap.ContainerdSocket(cfg))
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	cri := &fakeCRI{pods: map[string]bool{"aaa": true, "bbb": true}}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, cri)
	go srv.Serve(ln)
	defer srv.Stop()

	sd := &resetSystemd{loaded: map[string]units.ActiveState{bootstrap.KubeletUnit: "active", bootstrap.ContainerdUnit: "active"}}
	r := &scriptedRunner{answers: map[string]string{
		"route show root": "10.244.1.0/24 via 10.77.0.12 dev eth0\n10.244.2.0/24 via 10.77.0.13 dev eth0\n",
	}}
	warns := removePods(context.Background(), root, cfg, sd, r)
	if len(warns) > 0 {
		t.Errorf("warnings %q", warns)
	}
	if !slices.Equal(sd.calls, []string{"stop kubelet.service"}) {
		t.Errorf("systemd calls %q, want the kubelet stopped first", sd.calls)
	}
	if len(cri.pods) != 0 || len(cri.stopped) != 2 {
		t.Errorf("pods left %v, stopped %v", cri.pods, cri.stopped)
	}
	want := []string{
		"iptables -w 5 -t nat -D POSTROUTING -s 10.244.3.0/24 ! -d 10.244.0.0/16",
		"ip link delete cni0", "ip link delete ecom-vxlan", "ip -o route show root 10.244.0.0/16",
		"ip route del 10.244.1.0/24", "ip route del 10.244.2.0/24",
	}
	if len(r.ran) != len(want) {
		t.Fatalf("ran %d commands, want %d:\n%s", len(r.ran), len(want), strings.Join(r.ran, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(r.ran[i], w) {
			t.Errorf("command %d: %q, want %q", i, r.ran[i], w)
		}
	}
}
