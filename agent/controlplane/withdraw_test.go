package controlplane

import (
	"context"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/seed"
	"github.com/ecom-platform/ecom-agent/status"
)

// When the node's etcd data is set aside, the control plane withdraws:
// the seeder stops and releases its Lease, the control-plane units stop,
// clients first, the node is no longer api-ready and reports no control
// plane; the next step starts over from kube-apiserver, its clients once
// it answers, and the seeder.
func TestWithdrawStopsTheControlPlaneAndStartsOver(t *testing.T) {
	c, cp, sd, store := newControlPlane(t) // seeding on, as by default
	cfg := c.Config
	ctx := context.Background()
	cpUnits := bootstrap.UnitsOf(cfg, bootstrap.GroupControlPlane)

	if err := cp.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if !cp.Ready() || store.Phase() != nodestate.PhaseAPIReady || !store.Snapshot().ControlPlaneUnits {
		cps, _ := cp.snapshot()
		t.Fatalf("after a step on a ready API server: ready %v, phase %s, control-plane units %v (control plane %+v)",
			cp.Ready(), store.Phase(), store.Snapshot().ControlPlaneUnits, cps)
	}
	waitFor(t, "the seeder leads", func() bool { _, s := cp.snapshot(); return s.Leader })
	cp.mu.Lock()
	seeder := cp.seedDone
	cp.mu.Unlock()

	before := len(sd.log())
	cp.Withdraw(ctx)
	stops := sd.log()[before:]
	var want []string
	for _, u := range slices.Backward(cpUnits) {
		want = append(want, "stop "+u)
	}
	if !slices.Equal(stops, want) {
		t.Errorf("withdraw did %q, want %q", stops, want)
	}
	if cp.Ready() {
		t.Error("ready after withdraw")
	}
	if store.Snapshot().ControlPlaneUnits {
		t.Error("the state still says the control-plane units are installed after withdraw")
	}
	select {
	case <-seeder:
	default:
		t.Error("the seeder still runs after withdraw")
	}
	lease, err := c.Clientset(t).CoordinationV1().Leases(seed.LeaseNamespace).Get(ctx, seed.LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("the seeder lease is still held by %q after withdraw", *h)
	}
	var s status.Status
	cp.Report(&s)
	if s.ControlPlane != nil || s.Seed != nil {
		t.Errorf("a withdrawn control plane reports %+v, seed %+v", s.ControlPlane, s.Seed)
	}

	// Starting over: the membership puts the node back to etcd-ready once
	// its new member serves. kube-apiserver, stopped, does not answer at
	// first: only it starts.
	if _, err := store.SetPhase(nodestate.PhaseEtcdReady); err != nil {
		t.Fatal(err)
	}
	restore := hideAPIServer(t, c.Root)
	mark := len(sd.log())
	if err := cp.Step(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "kube-apiserver's start job ended", func() bool {
		return slices.Contains(sd.log()[mark:], "active "+bootstrap.APIServerUnit)
	})
	if got, want := sd.log()[mark:], []string{"start " + bootstrap.APIServerUnit, "active " + bootstrap.APIServerUnit}; !slices.Equal(got, want) {
		t.Fatalf("the first step after withdraw did %q, want %q", got, want)
	}
	if cp.Ready() || !store.Snapshot().ControlPlaneUnits {
		t.Fatalf("after the first step: ready %v, control-plane units %v", cp.Ready(), store.Snapshot().ControlPlaneUnits)
	}

	// Once it answers, its clients start again, and the seeder.
	restore()
	if err := cp.Step(ctx); err != nil {
		t.Fatal(err)
	}
	got := sd.log()[mark:]
	for _, u := range cpUnits[1:] {
		if !slices.Contains(got, "active "+u) {
			t.Errorf("after withdraw %s did not start again: systemd did %q", u, got)
		}
	}
	if !cp.Ready() || store.Phase() != nodestate.PhaseAPIReady {
		t.Fatalf("after /readyz: ready %v, phase %s", cp.Ready(), store.Phase())
	}
	waitFor(t, "the seeder leads again", func() bool { _, s := cp.snapshot(); return s.Leader })
}

// Report adds nothing, whatever the control plane went through, until
// the state says its units are installed: a node whose control plane
// never started has none to report.
func TestReportWaitsForTheControlPlaneUnits(t *testing.T) {
	cfg, err := config.Parse([]byte(kubetest.BaseConfig), "test.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sd := newStartSystemd()
	store := nodestate.NewStore(root, &nodestate.State{NodeID: "n", Phase: nodestate.PhaseEtcdReady}, nil)
	cp := New(Deps{Config: cfg, Root: root, Log: discardLog(), Store: store, Systemd: sd,
		Written: func() []bootstrap.Written { return nil }})
	defer func() { _ = cp.Stop(context.Background()) }()
	ctx := context.Background()
	report := func() status.Status {
		var s status.Status
		cp.Report(&s)
		return s
	}

	if s := report(); s.ControlPlane != nil || s.Seed != nil {
		t.Fatalf("a new control plane reports %+v, seed %+v", s.ControlPlane, s.Seed)
	}

	// The binaries are missing: the step fails before any unit.
	if err := cp.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if cps, _ := cp.snapshot(); !strings.Contains(cps.Error, "not found") {
		t.Fatalf("without binaries the control plane says %q", cps.Error)
	}
	if s := report(); s.ControlPlane != nil || s.Seed != nil {
		t.Errorf("without binaries it reports %+v, seed %+v", s.ControlPlane, s.Seed)
	}

	// The binaries are there but etcd does not answer: still no unit.
	writeBinaries(t, root, cfg)
	if err := cp.Step(ctx); err != nil {
		t.Fatal(err)
	}
	cps, _ := cp.snapshot()
	if len(cps.Binaries) == 0 || !strings.Contains(cps.Error, "etcd") {
		t.Fatalf("without etcd the control plane says %q (binaries %+v)", cps.Error, cps.Binaries)
	}
	if s := report(); s.ControlPlane != nil || s.Seed != nil {
		t.Errorf("without etcd it reports %+v, seed %+v", s.ControlPlane, s.Seed)
	}
	if n, ev := sd.applies(), sd.log(); n != 0 || len(ev) != 0 {
		t.Fatalf("systemd applied %d times and did %q before etcd answered", n, ev)
	}
	if store.Snapshot().ControlPlaneUnits {
		t.Fatal("the state says the control-plane units are installed")
	}

	// Once the state says the units are installed, the report has the
	// control plane's state and the seeding's.
	if err := store.Update(func(s *nodestate.State) error { s.ControlPlaneUnits = true; return nil }); err != nil {
		t.Fatal(err)
	}
	s := report()
	if s.ControlPlane == nil || s.Seed == nil {
		t.Fatalf("with its units installed it reports %+v, seed %+v", s.ControlPlane, s.Seed)
	}
	if s.ControlPlane.Error != cps.Error || s.ControlPlane.Ready || len(s.ControlPlane.Binaries) != len(cps.Binaries) {
		t.Errorf("reported %+v, want %+v", s.ControlPlane, cps)
	}
	if !s.Seed.Enabled {
		t.Errorf("reported seeding %+v, want it enabled as configured", s.Seed)
	}
}
