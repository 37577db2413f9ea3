package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/seed"
	"github.com/ecom-platform/ecom-agent/units"
)

// controlPlaneUnits are the units a control-plane node runs once its etcd
// member serves, in start order. kube-proxy belongs to every node; it
// starts here on control-plane nodes, the only ones with certificates
// until workers join.
var controlPlaneUnits = []string{bootstrap.APIServerUnit, bootstrap.ControllerManagerUnit, bootstrap.SchedulerUnit, bootstrap.KubeProxyUnit}

// apiClientUnits are the control-plane units that are clients of the
// local API server. They start once it is ready: started beside it, they
// retry against a server that is not there yet and then list every
// resource the moment it answers, competing for the CPU with the server
// (and, on a new cluster, with its peers') while it finishes starting.
var apiClientUnits = controlPlaneUnits[1:]

// ControlPlaneStatus is the local API server's state as the status shows
// it.
type ControlPlaneStatus struct {
	// Ready is true while the local kube-apiserver answers /readyz.
	Ready      bool      `json:"ready"`
	ReadySince time.Time `json:"ready_since,omitzero"`
	// Readyz is what /readyz says when it is not ready (the failing
	// checks), or why it could not be asked.
	Readyz string `json:"readyz,omitempty"`
	// Error says why the control plane is not up and what to do: a
	// missing binary, a version skew, or, past apiserver.ready_timeout,
	// the unhealthy unit with the last lines of its journal in Journal.
	Error    string   `json:"error,omitempty"`
	Journal  []string `json:"journal,omitempty"`
	Binaries []Binary `json:"binaries,omitempty"`
}

// SeedStatus summarises the last seeding pass of the cluster.
type SeedStatus struct {
	Enabled bool `json:"enabled"`
	// Leader is true while this node holds the seeding Lease.
	Leader   bool           `json:"leader"`
	Seeder   string         `json:"seeder,omitempty"`
	Finished time.Time      `json:"finished,omitzero"`
	Counts   map[string]int `json:"counts,omitempty"`
	// Problems lists the files that did not parse and the objects that
	// failed or were skipped, with why.
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// rediagnose is how often the diagnosis of an overdue control plane is
// refreshed.
const rediagnose = 10 * time.Second

// controlPlane drives the control-plane units of a node whose etcd member
// serves: it starts them, waits for /readyz (bounded, with a diagnosis),
// creates the bootstrap RBAC and runs the seeder. Each step is retried on
// the daemon's watch ticks, so nothing blocks the etcd reconciler.
type controlPlane struct {
	d *Daemon

	mu      sync.Mutex
	started time.Time // kube-apiserver started (zero: not yet)
	// clients is true once the API server's clients (apiClientUnits)
	// were started; restart lists those of them to restart when they
	// start, because their config changed.
	clients bool
	restart []string
	status  ControlPlaneStatus
	// diagnosed is when the last diagnosis of an overdue control plane
	// was made (zero: none since it was last ready).
	diagnosed  time.Time
	lastErr    string
	rbacDone   bool
	seedCancel context.CancelFunc
	seedDone   chan struct{}
	seed       SeedStatus
	leader     bool
}

func newControlPlane(d *Daemon) *controlPlane {
	return &controlPlane{d: d, seed: SeedStatus{Enabled: d.d.Config.Seed.Enabled}}
}

// tick advances the control plane one step. written is what the last
// render wrote, so units whose inputs changed are restarted.
func (cp *controlPlane) tick(ctx context.Context, written []bootstrap.Written) {
	cp.mu.Lock()
	started := !cp.started.IsZero()
	cp.mu.Unlock()
	if !started {
		if err := cp.start(ctx, written); err != nil {
			cp.setError(err.Error())
			return
		}
	}
	cp.probe(ctx)
}

// start checks the binaries, applies the units and starts (or restarts)
// them. Unit jobs run in the background: kube-apiserver is Type=notify,
// and its start job lasts as long as it takes to get ready.
func (cp *controlPlane) start(ctx context.Context, written []bootstrap.Written) error {
	d := cp.d
	cfg := d.d.Config
	bins, err := CheckBinaries(ctx, d.d.Root, cfg)
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
		if slices.Contains(controlPlaneUnits, s.Name) {
			specs = append(specs, s)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
	defer cancel()
	changes, err := d.sd.Apply(sctx, specs)
	if err != nil {
		return fmt.Errorf("apply control-plane units: %w", err)
	}
	if err := d.saveState(func(s *State) { s.ControlPlaneUnits = true }); err != nil {
		return err
	}
	restart := slices.Concat(changes.Written, changes.Stale, bootstrap.ChangedUnits(written, controlPlaneUnits))
	if err := cp.bringUp(ctx, controlPlaneUnits[:1], restart, false); err != nil {
		return err
	}
	cp.mu.Lock()
	cp.started = d.d.Now()
	cp.status.Error = ""
	cp.restart = restart
	cp.mu.Unlock()
	return nil
}

// startClients starts (or restarts, when their config changed) the API
// server's clients, once, and waits for their start jobs (they are
// Type=simple: a job ends once the process runs), so that a node that
// says api-ready runs its whole control plane.
func (cp *controlPlane) startClients(ctx context.Context) error {
	cp.mu.Lock()
	done, restart := cp.clients, cp.restart
	cp.mu.Unlock()
	if done {
		return nil
	}
	if err := cp.bringUp(ctx, apiClientUnits, restart, true); err != nil {
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
func (cp *controlPlane) bringUp(ctx context.Context, names, restart []string, wait bool) error {
	d := cp.d
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, name := range names {
		done, err := d.bringUp(ctx, name, restart)
		if err != nil {
			return err
		}
		if done == nil {
			continue
		}
		report := func() {
			if err := <-done; err != nil && ctx.Err() == nil {
				d.d.Log.Warn("unit job failed; systemd keeps restarting it", "unit", name, "err", err)
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
func (cp *controlPlane) etcdServers(ctx context.Context) ([]string, error) {
	cfg := cp.d.d.Config
	local := bootstrap.EtcdClientURL(cfg.AdvertiseAddress, cfg.Etcd.ClientPort)
	cli, err := localEtcdClient(cp.d.d.Root, cfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	st, err := etcdStatus(ctx, cli)
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
func (cp *controlPlane) probe(ctx context.Context) {
	d := cp.d
	cfg, err := restConfig(d.d.Root, bootstrap.SuperAdminKubeconfig)
	if err == nil {
		err = probeReadyz(ctx, cfg)
	}
	now := d.d.Now()
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
	overdue := err != nil && now.Sub(cp.started) >= d.d.Config.APIServer.ReadyTimeout.Duration &&
		now.Sub(cp.diagnosed) >= rediagnose
	first := overdue && cp.diagnosed.IsZero()
	if overdue {
		cp.diagnosed = now
	}
	cp.mu.Unlock()
	switch {
	case err == nil && !wasReady:
		d.d.Log.Info("kube-apiserver is ready", "took", now.Sub(cp.started).Round(time.Millisecond).String())
	case err != nil && wasReady:
		d.d.Log.Warn("kube-apiserver is no longer ready", "readyz", err.Error())
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
	if d.phase() == PhaseEtcdReady {
		d.setPhase(PhaseAPIReady)
	}
	cp.afterReady(ctx, cfg)
}

// diagnose names the control-plane unit that is not healthy, with the
// last lines of its journal, once apiserver.ready_timeout has passed.
func (cp *controlPlane) diagnose(ctx context.Context, readyErr error, first bool) {
	d := cp.d
	timeout := d.d.Config.APIServer.ReadyTimeout.Duration
	culprit, state := bootstrap.APIServerUnit, ""
	started := controlPlaneUnits[:1]
	cp.mu.Lock()
	if cp.clients {
		started = controlPlaneUnits
	}
	cp.mu.Unlock()
	for _, name := range started {
		st, err := d.sd.Status(ctx, name)
		if err != nil {
			continue
		}
		if st.ActiveState != "active" {
			culprit = name
			state = fmt.Sprintf("%s is %s/%s (restarted %d times)", name, st.ActiveState, st.SubState, st.NRestarts)
			break
		}
	}
	if state == "" {
		state = fmt.Sprintf("%s is active but not ready", culprit)
	}
	journal, _ := d.sd.Journal(ctx, culprit, journalLines)
	msg := fmt.Sprintf("the control plane is not ready %s after its units started: %s; %s; see `journalctl -u %s`",
		timeout, state, readyErr, culprit)
	if first {
		d.d.Log.Error(msg, "unit", culprit, "journal", strings.Join(journal, "\n"))
	}
	cp.mu.Lock()
	cp.status.Error, cp.status.Journal = msg, journal
	cp.mu.Unlock()
}

// afterReady creates the bootstrap RBAC once and starts the seeder.
func (cp *controlPlane) afterReady(ctx context.Context, superAdmin *rest.Config) {
	d := cp.d
	cp.mu.Lock()
	rbacDone, seeding := cp.rbacDone, cp.seedCancel != nil
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
		d.d.Log.Info("bootstrap RBAC in place")
		cp.mu.Lock()
		cp.rbacDone, cp.status.Error = true, ""
		cp.mu.Unlock()
	}
	if seeding || !d.d.Config.Seed.Enabled {
		return
	}
	agentCfg, err := restConfig(d.d.Root, bootstrap.AgentKubeconfig)
	if err != nil {
		cp.setError("the agent's kubeconfig: " + err.Error())
		return
	}
	cfg := d.d.Config
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	cp.mu.Lock()
	cp.seedCancel, cp.seedDone = cancel, done
	cp.mu.Unlock()
	go func() {
		defer close(done)
		err := seed.Run(sctx, seed.Options{
			Config:   agentCfg,
			Root:     d.d.Root,
			Identity: cfg.NodeName,
			Log:      d.d.Log.With("component", "seed"),
			Vars: seed.Vars{
				ClusterName:   cfg.ClusterName,
				ClusterDomain: cfg.Network.ClusterDomain,
				ClusterDNSIP:  cfg.ClusterDNSIP().String(),
			},
			OnLeading: cp.setLeader,
			OnReport:  cp.setReport,
		})
		if err != nil && sctx.Err() == nil {
			d.d.Log.Error("seeding stopped", "err", err)
			cp.mu.Lock()
			cp.seed.Error = err.Error()
			cp.seedCancel = nil
			cp.mu.Unlock()
		}
	}()
}

// stop ends the seeder (releasing its Lease) and waits for it.
func (cp *controlPlane) stop() {
	cp.mu.Lock()
	cancel, done := cp.seedCancel, cp.seedDone
	cp.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

func (cp *controlPlane) setError(msg string) {
	cp.mu.Lock()
	changed := cp.lastErr != msg
	cp.lastErr, cp.status.Error = msg, msg
	cp.mu.Unlock()
	if changed {
		cp.d.d.Log.Error("control plane: "+msg, "retry", "every few seconds")
	}
}

func (cp *controlPlane) setLeader(leader bool) {
	cp.mu.Lock()
	cp.leader = leader
	cp.mu.Unlock()
}

func (cp *controlPlane) setReport(r seed.Report) {
	cp.mu.Lock()
	cp.seed = seedSummary(r, cp.seed.Enabled)
	cp.mu.Unlock()
}

// refreshSeed reads the cluster's last seeding report (written by
// whichever node seeded), so every node's status shows it.
func (cp *controlPlane) refreshSeed(ctx context.Context) {
	cp.mu.Lock()
	ready := cp.status.Ready
	cp.mu.Unlock()
	if !ready {
		return
	}
	cfg, err := restConfig(cp.d.d.Root, bootstrap.AgentKubeconfig)
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

func seedSummary(r seed.Report, enabled bool) SeedStatus {
	s := SeedStatus{Enabled: enabled, Seeder: r.Seeder, Finished: r.Finished, Counts: r.Counts}
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

// snapshot returns the status parts for publishing.
func (cp *controlPlane) snapshot() (*ControlPlaneStatus, *SeedStatus) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	st := cp.status
	sd := cp.seed
	sd.Leader = cp.leader
	return &st, &sd
}
