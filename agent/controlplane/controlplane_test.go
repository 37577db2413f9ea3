package controlplane

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// startSystemd is a systemd whose start jobs take a while, as real ones
// do, and which remembers what ran when.
type startSystemd struct {
	jobTime time.Duration
	mu      sync.Mutex
	active  map[string]bool
	events  []string
}

func (f *startSystemd) Start(_ context.Context, n string) error {
	f.mu.Lock()
	f.events = append(f.events, "start "+n)
	f.mu.Unlock()
	time.Sleep(f.jobTime)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active[n] = true
	f.events = append(f.events, "active "+n)
	return nil
}

func (f *startSystemd) Status(_ context.Context, n string) (units.UnitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := units.UnitStatus{Name: n, ActiveState: "inactive"}
	if f.active[n] {
		st.ActiveState = "active"
	}
	return st, nil
}

func (f *startSystemd) Apply(context.Context, []units.Spec) (units.Changes, error) {
	return units.Changes{}, nil
}
func (f *startSystemd) Restart(context.Context, string) error { return nil }
func (f *startSystemd) Stop(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, "stop "+n)
	f.active[n] = false
	return nil
}
func (f *startSystemd) Journal(context.Context, string, int) ([]string, error) { return nil, nil }

func (f *startSystemd) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// kube-apiserver starts as soon as etcd serves; its clients (controller
// manager, scheduler, kube-proxy) only once it answers /readyz; and the
// node says api-ready only once their start jobs ended, so that `join`,
// which waits for api-ready, returns on a node that runs its whole
// control plane.
func TestControlPlaneStartOrder(t *testing.T) {
	c := kubetest.Start(t, kubetest.WithConfigTOML("[seed]\nenabled = false"))
	cfg := c.Config
	for _, b := range []string{cfg.Binaries.KubeAPIServer, cfg.Binaries.KubeControllerManager, cfg.Binaries.KubeScheduler, cfg.Binaries.KubeProxy} {
		if _, err := c.Root.WriteFile(b, []byte("#!/bin/sh\necho Kubernetes "+cfg.KubernetesVersion+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sd := &startSystemd{jobTime: 300 * time.Millisecond, active: map[string]bool{}}
	store := nodestate.NewStore(c.Root, &nodestate.State{NodeID: "n", Phase: nodestate.PhaseEtcdReady}, nil)
	cp := New(Deps{Config: cfg, Root: c.Root, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: store, Systemd: sd,
		Written: func() []bootstrap.Written { return nil }})
	defer func() { _ = cp.Stop(context.Background()) }()
	ctx := context.Background()
	apiClientUnits := bootstrap.UnitsOf(cfg, bootstrap.GroupControlPlane)[1:]

	// The API server does not answer yet: the probe cannot read its
	// kubeconfig.
	admin, err := c.Root.ReadFile(bootstrap.SuperAdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Root.Remove(bootstrap.SuperAdminKubeconfig); err != nil {
		t.Fatal(err)
	}
	cp.tick(ctx)
	time.Sleep(2 * sd.jobTime) // the API server's start job ends
	if got, want := sd.log(), []string{"start kube-apiserver.service", "active kube-apiserver.service"}; !slices.Equal(got, want) {
		cps, _ := cp.snapshot()
		t.Fatalf("before /readyz: systemd did %q, want only %q (control plane %+v)", got, want, cps)
	}
	if p := store.Phase(); p != nodestate.PhaseEtcdReady {
		t.Fatalf("phase %s before /readyz, want %s", p, nodestate.PhaseEtcdReady)
	}
	if cps, _ := cp.snapshot(); cps.Ready || cp.Ready() {
		t.Fatal("ready before /readyz answered")
	}

	// Now it answers: the clients start, and api-ready follows their
	// jobs.
	if _, err := c.Root.WriteFile(bootstrap.SuperAdminKubeconfig, admin, 0o600); err != nil {
		t.Fatal(err)
	}
	cp.tick(ctx)
	if p := store.Phase(); p != nodestate.PhaseAPIReady || !cp.Ready() {
		t.Fatalf("phase %s after /readyz (ready %v), want %s", p, cp.Ready(), nodestate.PhaseAPIReady)
	}
	got := sd.log()
	for _, u := range apiClientUnits {
		if !slices.Contains(got, "active "+u) {
			t.Errorf("api-ready before %s's start job ended: systemd did %q", u, got)
		}
	}
	if len(got) != 2+2*len(apiClientUnits) {
		t.Errorf("systemd did %q, want the API server's start and each client's once", got)
	}

	// Later passes start nothing again.
	cp.tick(ctx)
	if again := sd.log(); len(again) != len(got) {
		t.Errorf("a later pass started units again: %q", again[len(got):])
	}

	// The node's etcd data is set aside: the control plane stops its
	// units, clients first, and starts over on the next step.
	cp.Withdraw(ctx)
	stops := sd.log()[len(got):]
	want := []string{}
	for _, u := range slices.Backward(bootstrap.UnitsOf(cfg, bootstrap.GroupControlPlane)) {
		want = append(want, "stop "+u)
	}
	if !slices.Equal(stops, want) {
		t.Errorf("withdraw did %q, want %q", stops, want)
	}
	if cp.Ready() || store.Snapshot().ControlPlaneUnits {
		t.Errorf("after withdraw: ready %v, control-plane units %v", cp.Ready(), store.Snapshot().ControlPlaneUnits)
	}
	var s status.Status
	cp.Report(&s)
	if s.ControlPlane != nil {
		t.Errorf("a withdrawn control plane reports %+v", s.ControlPlane)
	}
	_ = store.Update(func(st *nodestate.State) error { st.Phase = nodestate.PhaseEtcdReady; return nil })
	cp.tick(ctx)
	if last := sd.log(); !slices.Contains(last[len(got)+len(want):], "start "+bootstrap.APIServerUnit) {
		t.Errorf("after withdraw the next step did %q, want kube-apiserver started again", last[len(got)+len(want):])
	}
}
