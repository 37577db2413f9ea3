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
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/units"
)

// startSystemd is a systemd whose start jobs take a while, as real ones
// do, and which remembers what ran when.
type startSystemd struct {
	jobTime time.Duration
	mu      sync.Mutex
	active  map[string]bool
	events  []string
	applied int
}

func newStartSystemd() *startSystemd {
	return &startSystemd{jobTime: 300 * time.Millisecond, active: map[string]bool{}}
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
		st.ActiveState = units.Active
	}
	return st, nil
}

func (f *startSystemd) Apply(context.Context, []units.Spec) (units.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied++
	return units.Changes{}, nil
}

func (f *startSystemd) Restart(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, "restart "+n)
	return nil
}

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

func (f *startSystemd) applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// writeBinaries installs stand-ins for the control-plane programs that
// print the configured version, which is all the preflight asks of them.
func writeBinaries(t *testing.T, root *hostfs.Root, cfg *config.Config) {
	t.Helper()
	for _, b := range []string{cfg.Binaries.KubeAPIServer, cfg.Binaries.KubeControllerManager, cfg.Binaries.KubeScheduler, cfg.Binaries.KubeProxy} {
		if _, err := root.WriteFile(b, []byte("#!/bin/sh\necho Kubernetes "+cfg.KubernetesVersion+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// newControlPlane returns the component of an etcd-ready node on a
// real API server and etcd, with a fake systemd.
func newControlPlane(t *testing.T, opts ...kubetest.Option) (*kubetest.Cluster, *ControlPlane, *startSystemd, *nodestate.Store) {
	t.Helper()
	c := kubetest.Start(t, opts...)
	writeBinaries(t, c.Root, c.Config)
	sd := newStartSystemd()
	store := nodestate.NewStore(c.Root, &nodestate.State{NodeID: "n", Phase: nodestate.PhaseEtcdReady}, nil)
	cp := New(Deps{Config: c.Config, Root: c.Root, Log: discardLog(), Store: store, Systemd: sd,
		Written: func() []bootstrap.Written { return nil }})
	t.Cleanup(func() { _ = cp.Stop(context.Background()) })
	return c, cp, sd, store
}

// waitFor waits, at most 30 seconds, until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hideAPIServer makes the API server unreachable to the control plane's
// probe (it cannot read its kubeconfig), as one that is not up yet, and
// returns what brings it back.
func hideAPIServer(t *testing.T, root *hostfs.Root) (restore func()) {
	t.Helper()
	admin, err := root.ReadFile(bootstrap.SuperAdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Remove(bootstrap.SuperAdminKubeconfig); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := root.WriteFile(bootstrap.SuperAdminKubeconfig, admin, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// kube-apiserver starts as soon as etcd serves; its clients (controller
// manager, scheduler, kube-proxy) only once it answers /readyz; and the
// node says api-ready only once their start jobs ended, so that `join`,
// which waits for api-ready, returns on a node that runs its whole
// control plane.
func TestControlPlaneStartOrder(t *testing.T) {
	c, cp, sd, store := newControlPlane(t, kubetest.WithConfigTOML("[seed]\nenabled = false"))
	cfg := c.Config
	ctx := context.Background()
	apiClientUnits := bootstrap.UnitsOf(cfg, bootstrap.GroupControlPlane)[1:]

	// The API server does not answer yet: the probe cannot read its
	// kubeconfig.
	restore := hideAPIServer(t, c.Root)
	cp.tick(ctx)
	// The API server's start job runs in the background; wait for it
	// to end.
	waitFor(t, "kube-apiserver's start job ended", func() bool {
		return slices.Contains(sd.log(), "active "+bootstrap.APIServerUnit)
	})
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
	restore()
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
}
