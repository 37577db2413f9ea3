package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/units"
)

// Systemd is what the daemon needs from systemd; *units.Manager is the
// real one.
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
	// Timing holds the quorum protocol's durations; zero fields take
	// quorum.DefaultTiming's.
	Timing quorum.Timing
	// FastGossip selects gossip timings for tests on loopback.
	FastGossip bool
	// ViewFilter, if set, edits the gossip view the quorum protocol
	// reads: tests inject split views through it.
	ViewFilter func([]quorum.Peer) []quorum.Peer
	// Hook, if set, is called at named points of the quorum protocol
	// ("promises-collected", "send-commit", "commit-delivered") with a
	// detail (the commit, the peer): tests crash or stall a node there.
	Hook func(point, detail string)
	// Exec runs a host program (ctr, ip, iptables) and returns its
	// combined output; nil runs it with os/exec.
	Exec func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// hook calls Deps.Hook if there is one.
func (d *Daemon) hook(point, detail string) {
	if d.d.Hook != nil {
		d.d.Hook(point, detail)
	}
}

// Daemon is the agent that runs on every node under ecom-agent.service.
type Daemon struct {
	d       Deps
	sd      Systemd
	cluster *cluster
	cp      *controlPlane
	node    *node
	worker  workerSide
	started time.Time
	// written is what the last render wrote: units whose inputs changed
	// restart.
	written []bootstrap.Written

	// stmu guards state: the daemon's phases and the RPC handlers of the
	// quorum protocol both change it, and every change is saved under it.
	stmu  sync.Mutex
	state *State

	// heartbeat is the unix-nano time the daemon last made progress; the
	// watchdog is only fed while it is recent, so a stuck daemon gets
	// restarted by systemd.
	heartbeat atomic.Int64

	mu          sync.Mutex
	waiting     string
	refused     bool
	status      Status
	lastRenewal *RenewResult
	// renewing is set while a certificate renewal pass runs.
	renewing atomic.Bool
	// etcd is the long-lived client of the local etcd member.
	etcd sharedEtcd
	// joinTook is how long this run took to reach the node's target
	// phase; changes counts the etcd membership changes it made.
	joinTook time.Duration
	changes  map[string]int
}

// Timeouts of the daemon's bounded waits.
const (
	unitJobTimeout  = 2 * time.Minute
	refreshInterval = 15 * time.Second
	journalLines    = 15
)

// New returns a daemon with deps.
func New(deps Deps) *Daemon {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Notify == nil {
		deps.Notify = func(string) error { return nil }
	}
	return &Daemon{d: deps}
}

// Run brings this node to its target phase and keeps watching it until
// ctx ends. It returns nil on a clean stop.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = d.d.Now()
	d.beat()
	stopWatchdog := d.feedWatchdog(ctx)
	defer stopWatchdog()

	st, err := LoadState(d.d.Root)
	if err != nil {
		return d.fail("load state", err)
	}
	d.state = st
	if err := d.state.Save(d.d.Root); err != nil {
		return d.fail("save state", err)
	}
	d.publish(ctx, false)

	sctx, cancelSocket := context.WithCancel(context.Background())
	defer cancelSocket()
	if d.d.Socket != "" {
		renew := func(names []string) RenewResult {
			return d.renew(ctx, names, "on demand: "+strings.Join(names, ", "))
		}
		if _, err := serveSocket(sctx, d.d.Socket, socketHandler(d.Status, renew)); err != nil {
			return d.fail("control socket", err)
		}
	}
	if addr := d.d.Config.Metrics.Address; addr != "" {
		// A metrics port in use must not keep a node out of its
		// cluster: the agent runs on without metrics and says why.
		if err := serveMetrics(sctx, addr, d.d.Config.Metrics.Pprof, d.Status, d.lastBeat, d.d.Log); err != nil {
			d.d.Log.Error("no metrics endpoint: set metrics.address to a free port, or \"\" to turn it off", "address", addr, "err", err)
		}
	}
	d.notifyStatus("connecting to systemd")
	sd, err := d.d.Systemd(ctx)
	if err != nil {
		return d.fail("connect to systemd", err)
	}
	d.sd = sd
	c, err := d.startCluster(ctx)
	if err != nil {
		return d.fail("gossip", err)
	}
	d.cluster = c
	defer c.stop()
	defer d.etcd.close()
	d.cp = newControlPlane(d)
	defer func() { d.cp.stop() }()
	d.node = newNode(d)
	if d.d.Config.IsControlPlane() {
		// Ask the Kubernetes programs for their versions now, while
		// the node waits for its peers: they are remembered, and the
		// control plane's start then runs none of these large programs
		// on a node busy starting etcd.
		go func() { _, _ = CheckBinaries(ctx, d.d.Root, d.d.Config) }()
	}
	// The agent is up: it answers status and its peers. Waiting for
	// peers, or for etcd to reach quorum, is its normal work, so systemd
	// (and boot, and cloud-init after it) never waits on it.
	_ = d.d.Notify("READY=1")

	for {
		err := d.converge(ctx)
		if errors.Is(err, errMemberRemoved) && d.d.Config.IsControlPlane() {
			// Its data is of no use to anyone: move it aside (never
			// delete it) and join again as a fresh node.
			d.stopControlPlane(ctx)
			if err := c.setAside(ctx, "this etcd member was removed from the cluster"); err != nil {
				return d.fail("set etcd data aside", err)
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return d.stop()
			}
			return d.fail("bootstrap", err)
		}
		d.refresh(ctx)
		d.d.Log.Info("node ready", "phase", d.phase(), "status", d.statusLine())
		if !d.watch(ctx) {
			return d.stop()
		}
	}
}

const (
	// watchInterval is the pace of the watch loop's full pass.
	watchInterval = 2 * time.Second
	// startingInterval is the pace of a starting control plane's steps:
	// from kube-apiserver's start to its first /readyz.
	startingInterval = 500 * time.Millisecond
)

// watch keeps the node healthy once converged: gossip metadata, commit
// forwarding, the membership reconciler and the published status. It
// returns true when the node must converge again (its etcd data was set
// aside), false when ctx ends.
func (d *Daemon) watch(ctx context.Context) bool {
	tick := time.NewTicker(startingInterval)
	defer tick.Stop()
	last := d.d.Now()
	// The first check comes an interval after start: converging has just
	// re-rendered, which re-issues what is inside the renewal window.
	lastRenewCheck := d.d.Now()
	lastPass := time.Now()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		d.beat()
		if time.Since(lastPass) < watchInterval-startingInterval/2 {
			// Between full passes, only a control plane that is
			// starting takes a step: its API server's readiness is
			// what the clients, the kubelet and the seeding wait for.
			if d.d.Config.IsControlPlane() && d.phase() == PhaseEtcdReady {
				d.cp.tick(ctx, d.written)
			}
			continue
		}
		lastPass = time.Now()
		if d.d.Config.IsControlPlane() && d.phase().EtcdServing() {
			if again := d.cluster.maintain(ctx); again {
				d.stopControlPlane(ctx)
				return true
			}
			d.cp.tick(ctx, d.written)
			// The kubelet registers with the local API server, so its
			// side starts once that one is ready.
			if cps, _ := d.cp.snapshot(); cps != nil && cps.Ready {
				d.node.kick(ctx, d.written, bootstrap.AgentKubeconfig)
			}
		} else {
			d.cluster.publishMeta()
		}
		if !d.d.Config.IsControlPlane() {
			d.workerTick(ctx)
		}
		if d.d.Config.IsControlPlane() && d.phase().EtcdServing() && d.d.Now().Sub(lastRenewCheck) >= renewCheckInterval {
			lastRenewCheck = d.d.Now()
			// In the background: the pass may wait for other nodes'
			// renewals, and the watch loop keeps the node healthy.
			go d.renewDue(ctx)
		}
		if d.d.Now().Sub(last) >= refreshInterval {
			last = d.d.Now()
			d.cp.refreshSeed(ctx)
			d.refresh(ctx)
		}
	}
}

// converge runs the local phases and starts what this node may start.
func (d *Daemon) converge(ctx context.Context) error {
	cfg := d.d.Config
	if cfg.IsControlPlane() && d.etcdDecision() == nil {
		if err := d.decideSingleMember(); err != nil {
			return err
		}
	}
	switch {
	case !cfg.IsControlPlane():
		// A worker renders what needs no CA key (containerd's, the
		// kubelet's and kube-proxy's configs); its credentials come
		// from a control-plane agent in the watch loop.
		r := bootstrap.NewRenderer(cfg, d.d.Root, d.d.Log)
		r.SkipUnitFiles = true
		written, err := r.Run(ctx)
		if err != nil {
			return err
		}
		d.written = written
		d.setWaiting("a control-plane agent to sign this worker's kubelet certificate")
		d.setPhase(PhaseWorkerIdle)
		return nil
	case d.etcdDecision() == nil:
		// Nothing is rendered until the quorum is decided: the
		// cluster's CAs come from the node that founds it, so a node
		// that created its own first could end up with a CA nobody
		// else trusts. The agent is up and answering its peers, so it
		// tells systemd it is ready: waiting for peers is its normal
		// work, and `systemctl start` (or cloud-init) must not block
		// on it.
		d.setPhase(PhaseWaiting)
		if _, err := d.cluster.form(ctx, nil); err != nil {
			return err
		}
	}
	d.setWaiting("")
	d.notifyStatus("rendering files")
	r := bootstrap.NewRenderer(cfg, d.d.Root, d.d.Log)
	r.SkipUnitFiles = true
	r.Membership = d.etcdDecision().Membership()
	written, err := r.Run(ctx)
	if err != nil {
		return err
	}
	d.written = written
	d.beat()
	d.setPhase(PhaseRendered)
	return d.startEtcd(ctx, written)
}

// decideSingleMember decides the membership of a one-member cluster
// (expect = 1) and persists it before anything acts on it. Clusters of
// three or more form through the quorum protocol instead.
func (d *Daemon) decideSingleMember() error {
	cfg := d.d.Config
	if cfg.Expect != 1 {
		return nil
	}
	token, err := randomToken(cfg.ClusterName)
	if err != nil {
		return err
	}
	state := "new"
	if has, err := hasEtcdData(d.d.Root); err != nil {
		return err
	} else if has {
		// etcd starts from its WAL and ignores the initial membership.
		state = "existing"
	}
	d.stmu.Lock()
	defer d.stmu.Unlock()
	d.state.Etcd = &EtcdDecision{
		State:     state,
		Token:     token,
		Peers:     map[string]string{cfg.NodeName: bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)},
		DecidedAt: d.d.Now(),
	}
	return d.state.Save(d.d.Root)
}

// startEtcd applies the etcd unit, (re)starts etcd when its unit or any
// file it reads changed, and waits for it to answer.
func (d *Daemon) startEtcd(ctx context.Context, written []bootstrap.Written) error {
	d.setPhase(PhaseEtcdStart)
	d.notifyStatus("starting etcd")
	changes, err := d.sd.Apply(ctx, []units.Spec{bootstrap.EtcdUnitSpec(d.d.Config)})
	if err != nil {
		return err
	}
	restart := slices.Concat(changes.Written, changes.Stale, bootstrap.ChangedUnits(written, []string{bootstrap.EtcdUnit}))
	// etcd is Type=notify and tells systemd it is ready only once it is
	// part of a quorum, which for a member of a larger cluster can take
	// as long as its peers take to come up. The job runs on its own; the
	// daemon watches etcd itself and never fails for waiting.
	jobDone, err := d.bringUp(ctx, bootstrap.EtcdUnit, restart)
	if err != nil {
		return err
	}
	d.beat()
	if err := d.waitEtcd(ctx, jobDone); err != nil {
		return err
	}
	d.setWaiting("")
	d.setPhase(PhaseEtcdReady)
	if d.d.Config.IsControlPlane() {
		d.cp.tick(ctx, written)
	}
	return nil
}

// bringUp starts a unit that is not running, or restarts one that runs
// while its unit file or an input is among changed. The job runs in the
// background; its result comes on the returned channel, which is nil when
// the unit runs current and there is nothing to do (a nil channel never
// delivers in a select).
func (d *Daemon) bringUp(ctx context.Context, name string, changed []string) (<-chan error, error) {
	sctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
	st, err := d.sd.Status(sctx, name)
	cancel()
	if err != nil {
		return nil, err
	}
	var job func(context.Context, string) error
	switch {
	case st.ActiveState == "active" && slices.Contains(changed, name):
		d.d.Log.Info("restarting: its config changed", "unit", name)
		job = d.sd.Restart
	case st.ActiveState != "active":
		d.d.Log.Info("starting", "unit", name)
		job = d.sd.Start
	default:
		return nil, nil
	}
	done := make(chan error, 1)
	go func() {
		jctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
		defer cancel()
		done <- job(jctx, name)
	}()
	return done, nil
}

// stopControlPlane stops the seeder and the control-plane units of a node
// whose etcd member was removed: they would serve from data that is about
// to be set aside.
func (d *Daemon) stopControlPlane(ctx context.Context) {
	d.cp.stop()
	for _, name := range slices.Backward(controlPlaneUnits) {
		sctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
		if err := d.sd.Stop(sctx, name); err != nil {
			d.d.Log.Warn("stop unit", "unit", name, "err", err)
		}
		cancel()
	}
	d.cp = newControlPlane(d)
	_ = d.saveState(func(s *State) { s.ControlPlaneUnits = false })
}

// saveState changes the state and saves it.
func (d *Daemon) saveState(change func(s *State)) error {
	d.stmu.Lock()
	defer d.stmu.Unlock()
	change(d.state)
	return d.state.Save(d.d.Root)
}

// waitEtcd polls the local member until it answers, for as long as it
// takes: a member of a cluster waits for a quorum of its peers, and the
// status says so (with the unit's last journal lines if its start
// failed) while systemd keeps restarting it. Only ctx ends the wait.
func (d *Daemon) waitEtcd(ctx context.Context, jobDone <-chan error) error {
	cli, err := localEtcdClient(d.d.Root, d.d.Config)
	if err != nil {
		return err
	}
	defer cli.Close()
	var peers []string
	if dec := d.etcdDecision(); dec != nil {
		for name := range dec.Peers {
			if name != d.d.Config.NodeName {
				peers = append(peers, name)
			}
		}
		slices.Sort(peers)
	}
	waiting := "etcd to start"
	if len(peers) > 0 {
		waiting = "etcd to reach a quorum with its peers " + strings.Join(peers, ", ")
	}
	d.setWaiting(waiting)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		if _, err := etcdStatus(ctx, cli); err == nil {
			return nil
		}
		d.beat()
		if i%10 == 9 && d.removedFromCluster(ctx) {
			return errMemberRemoved
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-jobDone:
			if err != nil && ctx.Err() == nil {
				journal, _ := d.sd.Journal(ctx, bootstrap.EtcdUnit, journalLines)
				d.d.Log.Warn("etcd did not start yet; systemd keeps restarting it", "err", err, "journal", strings.Join(journal, "\n"))
				d.setWaiting(fmt.Sprintf("%s (its start job: %v)", waiting, firstLine(err.Error())))
			}
		case <-tick.C:
		}
	}
}

// errMemberRemoved: etcd says this member was removed from its cluster.
var errMemberRemoved = errors.New("etcd says this member was removed from its cluster")

// managedUnits lists the units a node runs in its current phase.
func managedUnits(cfg *config.Config, st *State) []string {
	if st == nil {
		return nil
	}
	var u []string
	if cfg.IsControlPlane() && st.Etcd != nil {
		u = append(u, bootstrap.EtcdUnit)
		if st.ControlPlaneUnits {
			u = append(u, controlPlaneUnits...)
		}
	}
	if st.NodeUnits {
		u = append(u, nodeUnits(cfg)...)
	}
	return u
}

// refresh rebuilds the published status from systemd and etcd.
func (d *Daemon) refresh(ctx context.Context) {
	d.publish(ctx, true)
	_ = d.d.Notify("STATUS=" + d.statusLine())
}

func (d *Daemon) publish(ctx context.Context, probe bool) {
	d.mu.Lock()
	waiting, refused := d.waiting, d.refused
	d.mu.Unlock()
	d.stmu.Lock()
	st := *d.state
	d.stmu.Unlock()
	in := statusInput{
		cfg: d.d.Config, root: d.d.Root, state: &st, waiting: waiting,
		started: d.started, now: d.d.Now(), source: "daemon",
	}
	if probe {
		in.sd = d.sd
	}
	if c := d.cluster; c != nil {
		in.gossip = gossipMembers(c.g.Members())
		if err := c.g.JoinError(); err != nil {
			in.gossipErr = err.Error()
			refused = refused || errors.Is(err, gossip.ErrNotAccepted)
		}
		c.mu.Lock()
		in.alert = c.rec.alert
		c.mu.Unlock()
	}
	if d.cp != nil && d.d.Config.IsControlPlane() && st.ControlPlaneUnits {
		in.controlPlane, in.seed = d.cp.snapshot()
	}
	if d.node != nil && st.NodeUnits {
		ns := d.node.Status()
		if lb := d.worker.lb.Load(); lb != nil {
			ns.APILoadBalancer = lb.Status()
		}
		in.kubelet = &ns
	}
	in.refused = refused
	d.mu.Lock()
	in.lastRenewal = d.lastRenewal
	in.joinTook = d.joinTook
	in.changes = maps.Clone(d.changes)
	d.mu.Unlock()
	s := collectStatus(ctx, in)
	d.mu.Lock()
	d.status = s
	d.mu.Unlock()
}

// statusInput is what a status is built from, by the daemon or, when the
// daemon does not answer, by `ecom-agent status` itself.
type statusInput struct {
	cfg     *config.Config
	root    *hostfs.Root
	state   *State
	sd      Systemd // nil: do not probe systemd or etcd
	waiting string
	started time.Time
	now     time.Time
	source  string
	// gossip is the daemon's gossip view; alert the reconciler's alert.
	gossip    []GossipMember
	gossipErr string
	alert     string
	refused   bool
	// controlPlane and seed are the daemon's view of the local API
	// server and of seeding (nil: not known).
	controlPlane *ControlPlaneStatus
	seed         *SeedStatus
	kubelet      *NodeStatus
	lastRenewal  *RenewResult
	joinTook     time.Duration
	changes      map[string]int
}

func collectStatus(ctx context.Context, in statusInput) Status {
	s := Status{
		SchemaVersion: StatusSchemaVersion,
		Source:        in.source,
		Node: Node{
			Name: in.cfg.NodeName, Role: string(in.cfg.Role), Cluster: in.cfg.ClusterName,
			AdvertiseAddress: in.cfg.AdvertiseAddress.String(), Version: Version,
		},
		StartedAt:         in.started,
		Waiting:           in.waiting,
		Units:             []UnitReport{},
		CheckedAt:         in.now,
		Gossip:            in.gossip,
		GossipError:       in.gossipErr,
		Refused:           in.refused,
		Alert:             in.alert,
		ControlPlane:      in.controlPlane,
		Kubelet:           in.kubelet,
		Seed:              in.seed,
		LastRenewal:       in.lastRenewal,
		JoinSeconds:       in.joinTook.Seconds(),
		MembershipChanges: in.changes,
	}
	if in.state != nil {
		s.Node.ID, s.Phase, s.PhaseSince = in.state.NodeID, in.state.Phase, in.state.PhaseSince
	}
	managed := managedUnits(in.cfg, in.state)
	if in.sd != nil {
		s.Units = append(s.Units, unitReports(ctx, in.sd, managed)...)
	}
	if in.state != nil && in.state.Etcd != nil {
		s.Certificates = certSummary(in.root, in.cfg, in.now)
	}
	etcdExpected := in.sd != nil && len(managed) > 0 && in.state.Phase.EtcdServing()
	if etcdExpected {
		s.Etcd, s.EtcdError = probeEtcd(ctx, in.root, in.cfg)
		if s.Etcd != nil && in.state.ControlPlaneUnits {
			s.APIServers = probeAPIServers(ctx, in.root, in.cfg, s.Etcd.Members)
		}
	}
	s.judge(etcdExpected)
	return s
}

// LocalStatus builds the node's status without the daemon: from the state
// file, systemd and etcd directly. It is what `ecom-agent status` shows
// when the daemon does not answer.
func LocalStatus(ctx context.Context, cfg *config.Config, root *hostfs.Root, sd Systemd) Status {
	in := statusInput{cfg: cfg, root: root, sd: sd, now: time.Now(), source: "local"}
	st, err := readState(root)
	in.state = st
	joined := st != nil
	s := collectStatus(ctx, in)
	switch {
	case err != nil:
		s.Reasons = append([]string{err.Error()}, s.Reasons...)
		s.Verdict = Down
	case !joined:
		s.Reasons = append([]string{"this node has not joined: there is no " + bootstrap.AgentStateFile}, s.Reasons...)
		s.Verdict = Down
	}
	return s
}

// unitReports reads each unit's state, with journal lines for failing ones.
func unitReports(ctx context.Context, sd Systemd, names []string) []UnitReport {
	var out []UnitReport
	for _, n := range names {
		st, err := sd.Status(ctx, n)
		r := UnitReport{UnitStatus: st}
		r.Name = n
		if err != nil {
			r.Error = err.Error()
		} else if st.ActiveState != "active" || st.NRestarts > 0 {
			r.Journal, _ = sd.Journal(ctx, n, journalLines)
		}
		out = append(out, r)
	}
	return out
}

func probeEtcd(ctx context.Context, root *hostfs.Root, cfg *config.Config) (*EtcdStatus, string) {
	cli, err := localEtcdClient(root, cfg)
	if err != nil {
		return nil, err.Error()
	}
	defer cli.Close()
	st, err := etcdStatus(ctx, cli)
	if err != nil {
		return nil, err.Error()
	}
	return &st, ""
}

// Status returns the last published status.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// statusLine is the one line shown by `systemctl status ecom-agent`.
func (d *Daemon) statusLine() string {
	s := d.Status()
	line := fmt.Sprintf("%s, phase %s", s.Verdict, s.Phase)
	if s.Etcd != nil {
		line += fmt.Sprintf(", etcd %d members (leader %s)", len(s.Etcd.Members), s.Etcd.Leader)
	}
	if len(s.Reasons) > 0 {
		line += ": " + s.Reasons[0]
	}
	return line
}

func (d *Daemon) setPhase(p Phase) {
	d.stmu.Lock()
	changed := d.state.Phase != p
	d.state.SetPhase(p, d.d.Now())
	err := d.state.Save(d.d.Root)
	d.stmu.Unlock()
	if err != nil {
		d.d.Log.Error("save state", "err", err)
	}
	if changed {
		d.d.Log.Info("phase", "phase", p)
	}
	if p == PhaseAPIReady || p == PhaseStandby || p == PhaseWorkerIdle {
		d.mu.Lock()
		if d.joinTook == 0 {
			d.joinTook = d.d.Now().Sub(d.started)
		}
		d.mu.Unlock()
	}
	if d.cluster != nil {
		d.cluster.publishMeta()
	}
}

// countChange counts an etcd membership change this daemon made.
func (d *Daemon) countChange(action string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changes == nil {
		d.changes = map[string]int{}
	}
	d.changes[action]++
}

func (d *Daemon) phase() Phase {
	d.stmu.Lock()
	defer d.stmu.Unlock()
	return d.state.Phase
}

func (d *Daemon) etcdDecision() *EtcdDecision {
	d.stmu.Lock()
	defer d.stmu.Unlock()
	return d.state.Etcd
}

func (d *Daemon) setWaiting(w string) { d.wait(w, false) }

// setRefused is setWaiting for a wait only an operator can end: the
// cluster refuses this node (mismatched expect, another CA, ...).
func (d *Daemon) setRefused(w string) { d.wait(w, true) }

func (d *Daemon) wait(w string, refused bool) {
	d.mu.Lock()
	d.waiting, d.refused = w, refused
	d.mu.Unlock()
	if w != "" {
		d.notifyStatus("waiting for " + w)
	}
}

func (d *Daemon) notifyStatus(s string) {
	_ = d.d.Notify("STATUS=" + s)
}

// fail reports a fatal error to systemd and returns it wrapped with step.
func (d *Daemon) fail(step string, err error) error {
	err = fmt.Errorf("%s: %w", step, err)
	_ = d.d.Notify("STATUS=failed: " + firstLine(err.Error()))
	return err
}

func (d *Daemon) stop() error {
	_ = d.d.Notify("STOPPING=1")
	d.d.Log.Info("stopping; the units this agent manages keep running")
	return nil
}

func (d *Daemon) beat() { d.heartbeat.Store(d.d.Now().UnixNano()) }

// lastBeat is when the daemon last made progress.
func (d *Daemon) lastBeat() time.Time { return time.Unix(0, d.heartbeat.Load()) }

// feedWatchdog sends WATCHDOG=1 at a third of systemd's interval while
// the daemon keeps making progress.
func (d *Daemon) feedWatchdog(ctx context.Context) func() {
	if d.d.Watchdog <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(d.d.Watchdog / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if d.d.Now().Sub(d.lastBeat()) < d.d.Watchdog {
					_ = d.d.Notify("WATCHDOG=1")
				}
			}
		}
	}()
	return cancel
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// hasEtcdData reports whether this node has an etcd write-ahead log.
func hasEtcdData(root *hostfs.Root) (bool, error) {
	_, err := root.Stat(bootstrap.EtcdDataDir + "/member/wal")
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// randomToken returns a fresh initial-cluster-token.
func randomToken(cluster string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("cluster token: %w", err)
	}
	return cluster + "-" + hex.EncodeToString(b), nil
}

// caWarning is how long before a CA's expiry the status warns.
const caWarning = 365 * 24 * time.Hour

// certSummary reads the node's certificates (nil when it has none yet).
func certSummary(root *hostfs.Root, cfg *config.Config, now time.Time) *CertSummary {
	opts := bootstrap.PKIOptions(cfg)
	opts.Now = func() time.Time { return now }
	list, err := bootstrap.CertInventory(root, opts)
	if err != nil || len(list) == 0 {
		return nil
	}
	c := &CertSummary{Count: len(list)}
	for _, st := range list {
		if st.Error == "" {
			c.Expiries = append(c.Expiries, CertExpiry{Name: st.Name, NotAfter: st.NotAfter})
		}
		switch {
		case st.Error != "":
			c.Unreadable++
			continue
		case st.Expired:
			c.Expired++
		case st.WillRenew:
			c.Due++
		case st.CA && st.Residual < caWarning:
			c.CAExpiresSoon = append(c.CAExpiresSoon, st.Name)
		}
		if c.Nearest == "" || st.NotAfter.Before(c.NearestNotAfter) {
			c.Nearest, c.NearestNotAfter = st.Name, st.NotAfter
		}
	}
	return c
}
