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
	"github.com/ecom-platform/ecom-agent/units"
)

// startSystemd is a systemd whose start jobs take a while, as real ones
// do, and which remembers what ran when.
type startSystemd struct {
	fakeSystemd
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
	for _, b := range controlPlaneBinaries(cfg) {
		if _, err := c.Root.WriteFile(b.path, []byte("#!/bin/sh\necho Kubernetes "+cfg.KubernetesVersion+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sd := &startSystemd{jobTime: 300 * time.Millisecond, active: map[string]bool{}}
	d := New(Deps{Config: cfg, Root: c.Root, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	d.sd = sd
	d.state = &State{}
	d.setPhase(PhaseEtcdReady)
	d.cp = newControlPlane(d)
	defer d.cp.stop()
	ctx := context.Background()

	// The API server does not answer yet: the probe cannot read its
	// kubeconfig.
	admin, err := c.Root.ReadFile(bootstrap.SuperAdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Root.Remove(bootstrap.SuperAdminKubeconfig); err != nil {
		t.Fatal(err)
	}
	d.cp.tick(ctx, nil)
	time.Sleep(2 * sd.jobTime) // the API server's start job ends
	if got, want := sd.log(), []string{"start kube-apiserver.service", "active kube-apiserver.service"}; !slices.Equal(got, want) {
		t.Fatalf("before /readyz: systemd did %q, want only %q", got, want)
	}
	if p := d.phase(); p != PhaseEtcdReady {
		t.Fatalf("phase %s before /readyz, want %s", p, PhaseEtcdReady)
	}
	if cps, _ := d.cp.snapshot(); cps.Ready {
		t.Fatal("ready before /readyz answered")
	}

	// Now it answers: the clients start, and api-ready follows their
	// jobs.
	if _, err := c.Root.WriteFile(bootstrap.SuperAdminKubeconfig, admin, 0o600); err != nil {
		t.Fatal(err)
	}
	d.cp.tick(ctx, nil)
	if p := d.phase(); p != PhaseAPIReady {
		t.Fatalf("phase %s after /readyz, want %s", p, PhaseAPIReady)
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
	d.cp.tick(ctx, nil)
	if again := sd.log(); len(again) != len(got) {
		t.Errorf("a later pass started units again: %q", again[len(got):])
	}
}
