package controlplane

import (
	"context"
	"fmt"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/kubeclient"
	"github.com/ecom-platform/ecom-agent/seed"
	"github.com/ecom-platform/ecom-agent/status"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// afterReady creates the bootstrap RBAC once and starts the seeder.
func (cp *ControlPlane) afterReady(ctx context.Context, superAdmin *rest.Config) {
	d := cp.d
	cp.mu.Lock()
	rbacDone, seeding := cp.status.RBAC, cp.seedCancel != nil
	cp.mu.Unlock()
	if !rbacDone {
		cs, err := kubernetes.NewForConfig(superAdmin)
		if err == nil {
			err = bootstrapRBAC(ctx, cs)
		}
		if err != nil {
			cp.setError("bootstrap RBAC: " + err.Error())
			return
		}
		d.Log.Info("bootstrap RBAC in place")
		cp.mu.Lock()
		cp.status.RBAC, cp.status.Error = true, ""
		cp.mu.Unlock()
	}
	if seeding || !d.Config.Seed.Enabled {
		return
	}
	agentCfg, err := kubeclient.RESTConfig(d.Root, bootstrap.AgentKubeconfig)
	if err != nil {
		cp.setError("the agent's kubeconfig: " + err.Error())
		return
	}
	cfg := d.Config
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	cp.mu.Lock()
	cp.seedCancel, cp.seedDone = cancel, done
	cp.mu.Unlock()
	go func() {
		defer close(done)
		err := seed.Run(sctx, seed.Options{
			Config:    agentCfg,
			Root:      d.Root,
			Identity:  cfg.NodeName,
			Log:       d.Log.With("component", "seed"),
			Vars:      seed.VarsOf(cfg),
			Embedded:  seed.EmbeddedWithout(addOnsOff(cfg.AddOns, cfg.Seed)...),
			OnLeading: cp.setLeader,
			OnReport:  cp.setReport,
		})
		if err != nil && sctx.Err() == nil {
			d.Log.Error("seeding stopped", "err", err)
			cp.mu.Lock()
			if cp.seedDone == done { // not a seeder started after this one
				cp.seed.Error = err.Error()
				cp.seedCancel = nil
			}
			cp.mu.Unlock()
		}
	}()
}

// addOnsOff names the add-ons the config switches off.
func addOnsOff(a config.AddOns, s config.Seed) []string {
	var off []string
	for _, x := range []struct {
		on   bool
		name string
	}{
		{a.DNS, seed.AddOnDNS}, {a.Storage, seed.AddOnStorage}, {a.Metrics, seed.AddOnMetrics},
		// Grafana's image is not among those the nodes import.
		{seed.GrafanaSeeded(s), seed.AddOnGrafana},
	} {
		if !x.on {
			off = append(off, x.name)
		}
	}
	return off
}

// Stop ends the seeder (releasing its Lease) and waits for it, at most
// 10 seconds. The control-plane units run on.
func (cp *ControlPlane) Stop(context.Context) error {
	cp.mu.Lock()
	cancel, done := cp.seedCancel, cp.seedDone
	cp.seedCancel = nil
	cp.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	return nil
}

func (cp *ControlPlane) setLeader(leader bool) {
	cp.mu.Lock()
	cp.leader = leader
	cp.mu.Unlock()
}

func (cp *ControlPlane) setReport(r seed.Report) {
	cp.mu.Lock()
	cp.seed = seedSummary(r, cp.seed.Enabled)
	cp.mu.Unlock()
}

// refreshSeed reads the cluster's last seeding report (written by
// whichever node seeded), so every node's status shows it.
func (cp *ControlPlane) refreshSeed(ctx context.Context) {
	cp.mu.Lock()
	ready := cp.status.Ready
	cp.mu.Unlock()
	if !ready {
		return
	}
	cfg, err := kubeclient.RESTConfig(cp.d.Root, bootstrap.AgentKubeconfig)
	if err != nil {
		return
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return
	}
	r, err := seed.LoadReport(ctx, cs)
	cp.mu.Lock()
	defer cp.mu.Unlock()
	switch {
	case err != nil:
		cp.seed.Error = "read the seeding report: " + err.Error()
	case r != nil:
		cp.seed = seedSummary(*r, cp.seed.Enabled)
	}
}

func seedSummary(r seed.Report, enabled bool) status.SeedStatus {
	s := status.SeedStatus{Enabled: enabled, Seeder: r.Seeder, Finished: r.Finished, Counts: r.Counts}
	for _, p := range r.Problems {
		s.Problems = append(s.Problems, p.String())
	}
	for _, o := range r.Objects {
		if o.Result == seed.Failed || o.Result == seed.Skipped {
			s.Problems = append(s.Problems, fmt.Sprintf("%s %s/%s (%s): %s: %s", o.Kind, o.Namespace, o.Name, o.File, o.Result, o.Reason))
		}
	}
	return s
}
