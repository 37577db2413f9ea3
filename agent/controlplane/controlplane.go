// Package controlplane is the component that runs a control-plane node's
// Kubernetes control plane once its etcd member serves: kube-apiserver,
// then its clients once it is ready, the bootstrap RBAC, and the seeder.
package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/kubeclient"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/preflight"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// Name is the component's name.
const Name = "control-plane"

// rediagnose is how often the diagnosis of an overdue control plane is
// refreshed.
const rediagnose = 10 * time.Second

// Systemd is what the control plane asks of systemd.
type Systemd interface {
	units.Starter
	Apply(ctx context.Context, specs []units.Spec) (units.Changes, error)
	Stop(ctx context.Context, name string) error
	Journal(ctx context.Context, name string, n int) ([]string, error)
}

// Deps is what the control plane is built from.
type Deps struct {
	Config  *config.Config
	Root    *hostfs.Root
	Log     *slog.Logger
	Store   *nodestate.Store
	Systemd Systemd
	Now     func() time.Time
	// Written is what the node's last render wrote: units whose inputs
	// changed restart.
	Written func() []bootstrap.Written
}

// ControlPlane drives the control-plane units of a node whose etcd
// member serves: it starts them, waits for /readyz (bounded, with a
// diagnosis), creates the bootstrap RBAC and runs the seeder. Each step
// is retried on the next, so nothing blocks the etcd reconciler.
type ControlPlane struct {
	d Deps

	mu      sync.Mutex
	started time.Time // kube-apiserver started (zero: not yet)
	// clients is true once the API server's clients were started;
	// restart lists those of them to restart when they start, because
	// their config changed.
	clients bool
	restart []string
	// apiReady is true once the node reached api-ready: the API server
	// answered and its clients run.
	apiReady bool
	status   status.ControlPlaneStatus
	// diagnosed is when the last diagnosis of an overdue control plane
	// was made (zero: none since it was last ready).
	diagnosed   time.Time
	lastErr     string
	seedCancel  context.CancelFunc
	seedDone    chan struct{}
	seed        status.SeedStatus
	leader      bool
	seedRefresh time.Time
}

var (
	_ component.Component  = (*ControlPlane)(nil)
	_ component.Reporter   = (*ControlPlane)(nil)
	_ component.Paced      = (*ControlPlane)(nil)
	_ component.Withdrawer = (*ControlPlane)(nil)
)

// New returns the component.
func New(d Deps) *ControlPlane {
	if d.Now == nil {
		d.Now = time.Now
	}
	return &ControlPlane{d: d, seed: status.SeedStatus{Enabled: d.Config.Seed.Enabled}}
}

// Name names the component.
func (cp *ControlPlane) Name() string { return Name }

// refreshInterval is how often every node reads the cluster's seeding
// report.
const refreshInterval = 15 * time.Second

// Step advances the control plane one step, and every refreshInterval
// reads the cluster's last seeding report.
func (cp *ControlPlane) Step(ctx context.Context) error {
	cp.tick(ctx)
	cp.mu.Lock()
	due := cp.d.Now().Sub(cp.seedRefresh) >= refreshInterval
	if due {
		cp.seedRefresh = cp.d.Now()
	}
	cp.mu.Unlock()
	if due {
		cp.refreshSeed(ctx)
	}
	return nil
}

// Ready reports whether the node reached api-ready.
func (cp *ControlPlane) Ready() bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.apiReady
}

// Serving reports whether the local API server answered its last
// /readyz.
func (cp *ControlPlane) Serving() bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.status.Ready
}

// Pace steps a starting control plane every half second, from
// kube-apiserver's start to its first /readyz: its readiness is what
// the clients, the kubelet and the seeding wait for.
func (cp *ControlPlane) Pace() time.Duration {
	return component.PaceUntilReady(cp.Ready())
}

// Report adds the local API server's state and the seeding report, once
// the control-plane units are installed.
func (cp *ControlPlane) Report(s *status.Status) {
	if !cp.d.Store.Snapshot().ControlPlaneUnits {
		return
	}
	s.ControlPlane, s.Seed = cp.snapshot()
}

// Withdraw stops the seeder and the control-plane units of a node whose
// etcd member was removed: they would serve from data that is about to
// be set aside. The next start begins afresh.
func (cp *ControlPlane) Withdraw(ctx context.Context) {
	_ = cp.Stop(ctx)
	for _, name := range slices.Backward(bootstrap.UnitsOf(cp.d.Config, bootstrap.GroupControlPlane)) {
		sctx, cancel := context.WithTimeout(ctx, units.JobWait)
		if err := cp.d.Systemd.Stop(sctx, name); err != nil {
			cp.d.Log.Warn("stop unit", "unit", name, "err", err)
		}
		cancel()
	}
	cp.mu.Lock()
	cp.started, cp.clients, cp.restart, cp.apiReady = time.Time{}, false, nil, false
	cp.status, cp.diagnosed, cp.lastErr, cp.leader = status.ControlPlaneStatus{}, time.Time{}, "", false
	cp.seed = status.SeedStatus{Enabled: cp.d.Config.Seed.Enabled}
	cp.seedCancel, cp.seedDone = nil, nil
	cp.mu.Unlock()
	if err := cp.d.Store.Update(func(s *nodestate.State) error { s.ControlPlaneUnits = false; return nil }); err != nil {
		// The units are stopped; the next start finds them so and
		// starts them again whatever the state file says.
		cp.d.Log.Error("record the control-plane units as stopped", "err", err)
	}
}

// units are the control-plane units in start order: kube-apiserver
// first, then its clients.
func (cp *ControlPlane) units() []string {
	return bootstrap.UnitsOf(cp.d.Config, bootstrap.GroupControlPlane)
}

// The API server's clients start once it is ready: started beside it,
// they retry against a server that is not there yet and then list every
// resource the moment it answers, competing for the CPU with the server
// (and, on a new cluster, with its peers') while it finishes starting.
func (cp *ControlPlane) clientUnits() []string { return cp.units()[1:] }

// tick advances the control plane one step.
func (cp *ControlPlane) tick(ctx context.Context) {
	cp.mu.Lock()
	started := !cp.started.IsZero()
	cp.mu.Unlock()
	if !started {
		if err := cp.start(ctx); err != nil {
			cp.setError(err.Error())
			return
		}
	}
	cp.probe(ctx)
}

// start checks the binaries, applies the units and starts (or restarts)
// them. Unit jobs run in the background: kube-apiserver is Type=notify,
// and its start job lasts as long as it takes to get ready.
func (cp *ControlPlane) start(ctx context.Context) error {
	d := cp.d
	cfg := d.Config
	bins, err := preflight.CheckBinaries(ctx, d.Root, cfg)
	cp.mu.Lock()
	cp.status.Binaries = bins
	cp.mu.Unlock()
	if err != nil {
		return err
	}
	servers, err := cp.etcdServers(ctx)
	if err != nil {
		return fmt.Errorf("etcd client URLs for kube-apiserver: %w", err)
	}
	var specs []units.Spec
	for _, s := range bootstrap.ComponentUnits(cfg, servers) {
		if slices.Contains(cp.units(), s.Name) {
			specs = append(specs, s)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, units.JobWait)
	defer cancel()
	changes, err := d.Systemd.Apply(sctx, specs)
	if err != nil {
		return fmt.Errorf("apply control-plane units: %w", err)
	}
	if err := d.Store.Update(func(s *nodestate.State) error { s.ControlPlaneUnits = true; return nil }); err != nil {
		return err
	}
	restart := slices.Concat(changes.Written, changes.Stale, bootstrap.ChangedUnits(d.Written(), cp.units()))
	if err := cp.bringUp(ctx, cp.units()[:1], restart, false); err != nil {
		return err
	}
	cp.mu.Lock()
	cp.started = d.Now()
	cp.status.Error = ""
	cp.restart = restart
	cp.mu.Unlock()
	return nil
}

// startClients starts (or restarts, when their config changed) the API
// server's clients, once, and waits for their start jobs (they are
// Type=simple: a job ends once the process runs), so that a node that
// says api-ready runs its whole control plane.
func (cp *ControlPlane) startClients(ctx context.Context) error {
	cp.mu.Lock()
	done, restart := cp.clients, cp.restart
	cp.mu.Unlock()
	if done {
		return nil
	}
	if err := cp.bringUp(ctx, cp.clientUnits(), restart, true); err != nil {
		return err
	}
	cp.mu.Lock()
	cp.clients, cp.restart = true, nil
	cp.mu.Unlock()
	return nil
}

// bringUp starts the named units, or restarts those among restart that
// run. With wait, it returns once their jobs ended; without, the jobs run
// in the background (kube-apiserver is Type=notify: its start job lasts
// until it is ready). A failed job is logged, and systemd keeps
// restarting the unit.
func (cp *ControlPlane) bringUp(ctx context.Context, names, restart []string, wait bool) error {
	d := cp.d
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, name := range names {
		done, err := units.BringUp(ctx, d.Systemd, d.Log, name, restart)
		if err != nil {
			return err
		}
		if done == nil {
			continue
		}
		report := func() {
			if err := <-done; err != nil && ctx.Err() == nil {
				d.Log.Warn("unit job failed; systemd keeps restarting it", "unit", name, "err", err)
			}
		}
		if wait {
			wg.Go(report)
		} else {
			go report()
		}
	}
	return nil
}

// etcdServers lists the etcd client URLs kube-apiserver uses: the local
// member first, then every other member etcd knows.
func (cp *ControlPlane) etcdServers(ctx context.Context) ([]string, error) {
	cfg := cp.d.Config
	local := bootstrap.EtcdClientURL(cfg.AdvertiseAddress, cfg.Etcd.ClientPort)
	cli, err := etcdclient.Local(cp.d.Root, cfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	st, err := etcdclient.Status(ctx, cli)
	if err != nil {
		return nil, err
	}
	var members []string
	for _, m := range st.Members {
		if !m.Learner {
			members = append(members, m.ClientURLs...)
		}
	}
	slices.Sort(members)
	return bootstrap.EtcdServers(local, members), nil
}

// probe asks the local API server for /readyz and, once it is ready,
// makes sure the bootstrap RBAC exists and the seeder runs.
func (cp *ControlPlane) probe(ctx context.Context) {
	d := cp.d
	cfg, err := kubeclient.RESTConfig(d.Root, bootstrap.SuperAdminKubeconfig)
	if err == nil {
		err = kubeclient.Readyz(ctx, cfg)
	}
	now := d.Now()
	cp.mu.Lock()
	wasReady := cp.status.Ready
	if err == nil {
		cp.status.Readyz, cp.status.Error, cp.status.Journal, cp.diagnosed = "", "", nil, time.Time{}
		if !wasReady {
			cp.status.Ready, cp.status.ReadySince = true, now
		}
	} else {
		cp.status.Ready, cp.status.Readyz = false, err.Error()
	}
	// Past the timeout the diagnosis is refreshed every rediagnose, so
	// the status follows what the unit does now (a slow stop, then a
	// crash loop), not what it did at the deadline.
	overdue := err != nil && now.Sub(cp.started) >= d.Config.APIServer.ReadyTimeout.Duration &&
		now.Sub(cp.diagnosed) >= rediagnose
	first := overdue && cp.diagnosed.IsZero()
	if overdue {
		cp.diagnosed = now
	}
	cp.mu.Unlock()
	switch {
	case err == nil && !wasReady:
		d.Log.Info("kube-apiserver is ready", "took", now.Sub(cp.started).Round(time.Millisecond).String())
	case err != nil && wasReady:
		d.Log.Warn("kube-apiserver is no longer ready", "readyz", err.Error())
	case overdue:
		cp.diagnose(ctx, err, first)
	}
	if err != nil {
		return
	}
	if err := cp.startClients(ctx); err != nil {
		cp.setError("start the API server's clients: " + err.Error())
		return
	}
	// api-ready: the API server is ready and its clients run.
	if d.Store.Phase() == nodestate.PhaseEtcdReady {
		if _, err := d.Store.SetPhase(nodestate.PhaseAPIReady); err != nil {
			cp.setError("save state: " + err.Error())
			return
		}
	}
	cp.mu.Lock()
	cp.apiReady = true
	cp.mu.Unlock()
	cp.afterReady(ctx, cfg)
}

// diagnose names the control-plane unit that is not healthy, with the
// last lines of its journal, once apiserver.ready_timeout has passed.
func (cp *ControlPlane) diagnose(ctx context.Context, readyErr error, first bool) {
	d := cp.d
	timeout := d.Config.APIServer.ReadyTimeout.Duration
	culprit, state := bootstrap.APIServerUnit, ""
	started := cp.units()[:1]
	cp.mu.Lock()
	if cp.clients {
		started = cp.units()
	}
	cp.mu.Unlock()
	for _, name := range started {
		st, err := d.Systemd.Status(ctx, name)
		if err != nil {
			continue
		}
		if st.ActiveState != units.Active {
			culprit = name
			state = fmt.Sprintf("%s is %s/%s (restarted %d times)", name, st.ActiveState, st.SubState, st.NRestarts)
			break
		}
	}
	if state == "" {
		state = fmt.Sprintf("%s is active but not ready", culprit)
	}
	journal, _ := d.Systemd.Journal(ctx, culprit, 15)
	msg := fmt.Sprintf("the control plane is not ready %s after its units started: %s; %s; see `journalctl -u %s`",
		timeout, state, readyErr, culprit)
	if first {
		d.Log.Error(msg, "unit", culprit, "journal", strings.Join(journal, "\n"))
	}
	cp.mu.Lock()
	cp.status.Error, cp.status.Journal = msg, journal
	cp.mu.Unlock()
}

func (cp *ControlPlane) setError(msg string) {
	cp.mu.Lock()
	changed := cp.lastErr != msg
	cp.lastErr, cp.status.Error = msg, msg
	cp.mu.Unlock()
	if changed {
		cp.d.Log.Error("control plane: "+msg, "retry", "every few seconds")
	}
}

// snapshot returns the status parts for publishing.
func (cp *ControlPlane) snapshot() (*status.ControlPlaneStatus, *status.SeedStatus) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	st := cp.status
	sd := cp.seed
	sd.Leader = cp.leader
	return &st, &sd
}
