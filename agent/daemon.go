// Package agent is ecom-agent's daemon: it builds the node's components
// for its role (see docs/architecture.md), steps them, and tells systemd
// and operators how the node is.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/agent/membership"
	"github.com/ecom-platform/ecom-agent/agent/renewal"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/preflight"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/status/collect"
	"github.com/ecom-platform/ecom-agent/units"
)

// Systemd is what the daemon's components need from systemd;
// *units.Manager is the real one.
type Systemd interface {
	Apply(ctx context.Context, specs []units.Spec) (units.Changes, error)
	Start(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Status(ctx context.Context, name string) (units.UnitStatus, error)
	Journal(ctx context.Context, name string, n int) ([]string, error)
}

var _ Systemd = (*units.Manager)(nil)

// Notifier sends sd_notify messages ("READY=1", "STATUS=...") to systemd.
type Notifier func(state string) error

// Deps is everything the daemon works with, passed in explicitly.
type Deps struct {
	Config *config.Config
	Root   *hostfs.Root
	Log    *slog.Logger
	// Systemd connects to systemd.
	Systemd func(ctx context.Context) (Systemd, error)
	Notify  Notifier
	// Watchdog is systemd's watchdog interval (0 when it is off).
	Watchdog time.Duration
	// Socket is the control socket's real path.
	Socket string
	Now    func() time.Time
	// Run runs host programs (ctr, ip, iptables); nil runs them on this
	// host.
	Run units.Runner
	// Test holds the seams of the tests that run real agents.
	Test TestHooks
}

// TestHooks are the seams of the tests that run real agents; production
// leaves them zero.
type TestHooks struct {
	// Timing holds the quorum protocol's durations; zero fields take
	// quorum.DefaultTiming's.
	Timing quorum.Timing
	// FastGossip selects gossip timings for tests on loopback.
	FastGossip bool
	// Quorum are the quorum protocol's hooks (split views, crashes).
	Quorum membership.Hooks
}

// Daemon is the agent that runs on every node under ecom-agent.service.
type Daemon struct {
	deps    Deps
	store   *nodestate.Store
	sd      Systemd
	members *membership.Membership
	started time.Time

	// heartbeat is the unix-nano time the daemon last made progress; the
	// watchdog is only fed while it is recent, so a stuck daemon gets
	// restarted by systemd.
	heartbeat atomic.Int64
	// refreshNow asks the refresh loop for a probe now.
	refreshNow chan struct{}

	mu       sync.Mutex
	runner   *component.Runner // nil until built
	probed   collect.Probed
	joinTook time.Duration
	line     string
}

// Intervals of the daemon's own loop.
const (
	// probeInterval is how often units, etcd and the API servers are
	// probed for the status.
	probeInterval = 15 * time.Second
	// beatInterval is the pace of the loop that feeds the heartbeat
	// and systemd's STATUS= line.
	beatInterval = time.Second
)

// New returns a daemon with deps.
func New(deps Deps) *Daemon {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Notify == nil {
		deps.Notify = func(string) error { return nil }
	}
	if deps.Run == nil {
		deps.Run = units.ExecRunner{}
	}
	return &Daemon{deps: deps, refreshNow: make(chan struct{}, 1)}
}

// Run brings this node to its target phase and keeps it there until ctx
// ends. It returns nil on a clean stop.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = d.deps.Now()
	d.beat()
	stopWatchdog := d.feedWatchdog(ctx)
	defer stopWatchdog()

	store, err := nodestate.Open(d.deps.Root, d.deps.Now)
	if err != nil {
		return d.fail("load state", err)
	}
	d.store = store
	store.OnPhase(d.onPhase)

	sctx, cancelServers := context.WithCancel(context.Background())
	defer cancelServers()
	if d.deps.Socket != "" {
		if _, err := serveSocket(sctx, d.deps.Socket, socketHandler(d.Status, d.renew)); err != nil {
			return d.fail("control socket", err)
		}
	}
	if addr := d.deps.Config.Metrics.Address; addr != "" {
		// A metrics port in use must not keep a node out of its
		// cluster: the agent runs on without metrics and says why.
		if err := status.ServeMetrics(sctx, addr, d.deps.Config.Metrics.Pprof, d.Status, d.lastBeat, d.deps.Log); err != nil {
			d.deps.Log.Error("no metrics endpoint: set metrics.address to a free port, or \"\" to turn it off", "address", addr, "err", err)
		}
	}
	d.notifyStatus("connecting to systemd")
	if d.sd, err = d.deps.Systemd(ctx); err != nil {
		return d.fail("connect to systemd", err)
	}
	runner, err := d.build()
	if err != nil {
		return d.fail("build the components", err)
	}
	if err := d.members.Start(ctx); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.members.Stop(sctx)
		cancel()
		return d.fail("gossip", err)
	}
	// From here on the status is the components'.
	d.mu.Lock()
	d.runner = runner
	d.mu.Unlock()
	if d.deps.Config.IsControlPlane() {
		// Ask the Kubernetes programs for their versions now, while
		// the node waits for its peers: they are remembered, and the
		// control plane's start then runs none of these large programs
		// on a node busy starting etcd.
		go func() { _, _ = preflight.CheckBinaries(ctx, d.deps.Root, d.deps.Config) }()
	}
	// The agent is up: it answers status and its peers. Waiting for
	// peers, or for etcd to reach quorum, is its normal work, so systemd
	// (and boot, and cloud-init after it) never waits on it.
	_ = d.deps.Notify("READY=1")

	var wg sync.WaitGroup
	wg.Go(func() { d.refreshLoop(ctx) })
	err = runner.Run(ctx)
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		return d.fail("components", err)
	}
	_ = d.deps.Notify("STOPPING=1")
	d.deps.Log.Info("stopping; the units this agent manages keep running")
	return nil
}

// onPhase logs a new phase, notes when the node first reached its
// target, and has the status probed at once.
func (d *Daemon) onPhase(p nodestate.Phase) {
	d.deps.Log.Info("phase", "phase", p)
	if p.Target() {
		d.mu.Lock()
		if d.joinTook == 0 {
			d.joinTook = d.deps.Now().Sub(d.started)
		}
		d.mu.Unlock()
	}
	d.requestRefresh()
}

// refreshLoop probes the status every probeInterval (and when asked),
// feeds the heartbeat and keeps systemd's STATUS= line current.
func (d *Daemon) refreshLoop(ctx context.Context) {
	beat := time.NewTicker(beatInterval)
	defer beat.Stop()
	d.refresh(ctx)
	last := d.deps.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.refreshNow:
			d.refresh(ctx)
			last = d.deps.Now()
		case <-beat.C:
			if d.deps.Now().Sub(last) >= probeInterval {
				d.refresh(ctx)
				last = d.deps.Now()
			}
		}
		d.beat()
		d.notifyLine()
	}
}

func (d *Daemon) requestRefresh() {
	select {
	case d.refreshNow <- struct{}{}:
	default:
	}
}

// refresh probes systemd, etcd and the API servers for the status.
func (d *Daemon) refresh(ctx context.Context) {
	d.mu.Lock()
	r := d.runner
	d.mu.Unlock()
	p := collect.Probe(ctx, d.input(r))
	d.mu.Lock()
	d.probed = p
	d.mu.Unlock()
}

// input is what the status is built from now.
func (d *Daemon) input(r *component.Runner) collect.Input {
	st := d.store.Snapshot()
	in := collect.Input{
		Config: d.deps.Config, Root: d.deps.Root, State: &st, Systemd: d.sd,
		Started: d.started, Now: d.deps.Now(), Source: "daemon",
	}
	for _, c := range r.Components() {
		if rep, ok := c.(component.Reporter); ok {
			in.Parts = append(in.Parts, rep.Report)
		}
		if msg := r.Err(c); msg != "" {
			name := c.Name()
			in.Parts = append(in.Parts, func(s *status.Status) {
				s.Conditions = append(s.Conditions, status.Condition{Component: name, Reason: status.ReasonFailed, Message: msg})
			})
		}
	}
	d.mu.Lock()
	took := d.joinTook
	d.mu.Unlock()
	in.Parts = append(in.Parts, func(s *status.Status) { s.JoinSeconds = took.Seconds() })
	return in
}

// Status returns the node's status: the components' parts as they are
// now, with the last probe.
func (d *Daemon) Status() status.Status {
	d.mu.Lock()
	r, p := d.runner, d.probed
	d.mu.Unlock()
	if r == nil {
		return status.Status{SchemaVersion: status.StatusSchemaVersion, Source: "daemon", Verdict: status.Down,
			Reasons: []string{"the agent is starting"}, Units: []status.UnitReport{}, CheckedAt: d.deps.Now()}
	}
	return collect.Build(d.input(r), p)
}

// renew runs a renewal pass on demand (the control socket's /v1/renew).
func (d *Daemon) renew(names []string) status.RenewResult {
	d.mu.Lock()
	r := d.runner
	d.mu.Unlock()
	var renew *renewal.Renewal
	if r != nil {
		for _, c := range r.Components() {
			if rc, ok := c.(*renewal.Renewal); ok {
				renew = rc
			}
		}
	}
	switch {
	case !d.deps.Config.IsControlPlane():
		return status.RenewResult{At: d.deps.Now(), Error: "certificates are renewed on control-plane nodes; a worker asks a control-plane agent for its own"}
	case renew == nil:
		return status.RenewResult{At: d.deps.Now(), Error: "the agent is starting; try again in a moment"}
	}
	return renew.Renew(context.Background(), names, "on demand: "+strings.Join(names, ", "))
}

// notifyLine sends systemd the one line `systemctl status ecom-agent`
// shows, when it changed.
func (d *Daemon) notifyLine() {
	s := d.Status()
	line := fmt.Sprintf("%s, phase %s", s.Verdict, s.Phase)
	if s.Etcd != nil {
		line += fmt.Sprintf(", etcd %d members (leader %s)", len(s.Etcd.Members), s.Etcd.Leader)
	}
	if len(s.Reasons) > 0 {
		line += ": " + s.Reasons[0]
	}
	d.mu.Lock()
	changed := line != d.line
	d.line = line
	d.mu.Unlock()
	if changed {
		d.notifyStatus(line)
	}
}

func (d *Daemon) notifyStatus(s string) {
	_ = d.deps.Notify("STATUS=" + s)
}

// fail reports a fatal error to systemd and returns it wrapped with step.
func (d *Daemon) fail(step string, err error) error {
	err = fmt.Errorf("%s: %w", step, err)
	first, _, _ := strings.Cut(err.Error(), "\n")
	_ = d.deps.Notify("STATUS=failed: " + first)
	return err
}

func (d *Daemon) beat() { d.heartbeat.Store(d.deps.Now().UnixNano()) }

// lastBeat is when the daemon last made progress.
func (d *Daemon) lastBeat() time.Time { return time.Unix(0, d.heartbeat.Load()) }

// feedWatchdog sends WATCHDOG=1 at a third of systemd's interval while
// the daemon keeps making progress.
func (d *Daemon) feedWatchdog(ctx context.Context) func() {
	if d.deps.Watchdog <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(d.deps.Watchdog / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if d.deps.Now().Sub(d.lastBeat()) < d.deps.Watchdog {
					_ = d.deps.Notify("WATCHDOG=1")
				}
			}
		}
	}()
	return cancel
}
