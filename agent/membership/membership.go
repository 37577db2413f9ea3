package membership

import (
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// The agents' RPC methods. They travel over the peer package's channel:
// sealed with a key derived from the control-plane key (see
// controlPlaneMethods), fresh, never replayed.
const (
	methodPromise      = "quorum.promise"
	methodRelease      = "quorum.release"
	methodReleaseQuery = "quorum.release-query"
	methodCommit       = "quorum.commit"
	methodJoin         = "etcd.join"
)

// controlPlaneMethods are every method of this package: forming the
// quorum and letting a member into etcd are for control-plane nodes only,
// so they are sealed with the control-plane key, which workers never hold.
var controlPlaneMethods = []string{methodPromise, methodRelease, methodReleaseQuery, methodCommit, methodJoin, methodState}

// commitMessage carries a formation commit and, sealed a second time with
// the CA bundle key, the cluster's shared keys (CAs, service-account key,
// encryption key). It goes only to the commit's control-plane members.
type commitMessage struct {
	Commit quorum.Commit `json:"commit"`
	Shared []byte        `json:"shared"`
}

// joinReply is a member agent's answer to a join request; Shared is set
// (sealed) when the joiner is told to start.
type joinReply struct {
	Verdict        quorum.JoinVerdict `json:"verdict"`
	Reason         string             `json:"reason"`
	Standby        bool               `json:"standby,omitempty"`
	InitialCluster map[string]string  `json:"initial_cluster,omitempty"`
	Shared         []byte             `json:"shared,omitempty"`
}

// Membership is this node's part in the cluster: gossip, the agents'
// RPC endpoint, and on a control-plane node the etcd formation protocol
// and the membership reconciler. Every change to the quorum state
// happens under the state's lock and is persisted before anyone is
// answered.
type Membership struct {
	cfg    *config.Config
	root   *hostfs.Root
	log    *slog.Logger
	store  *nodestate.Store
	sd     Systemd
	now    func() time.Time
	hooks  Hooks
	fast   bool
	timing quorum.Timing
	etcd   etcdclient.Shared
	cond   *component.Condition

	// gp is set once: by Start, or on a worker by the first Step after
	// it was given its gossip key.
	gp       atomic.Pointer[gossip.Gossip]
	runCtx   context.Context
	stopOnce sync.Once
	// wg tracks every goroutine membership starts: Stop waits for them.
	wg     sync.WaitGroup
	srv    *peer.Server
	cli    *peer.Client
	joined time.Time
	wake   chan struct{}

	// Guarded by the store's lock.
	rnd      *rand.Rand
	round    *quorum.Round
	retryAt  time.Time
	lastFwd  map[quorum.NodeID]time.Time
	lastJoin time.Time
	joinNext int
	decision string

	// localClusterID is the cluster ID of the local etcd member while it
	// sees a leader, 0 otherwise (guarded by mu).
	mu             sync.Mutex
	localClusterID uint64
	leader         bool
	rec            *reconcileState
	// changes counts the etcd membership changes this agent made.
	changes map[string]int
	// memberList reads the cluster's member list (each member's peer
	// URLs) from the other members; tests replace it.
	memberList func(ctx context.Context) ([][]string, error)
}

var (
	_ component.Component = (*Membership)(nil)
	_ component.Reporter  = (*Membership)(nil)
	_ component.Paced     = (*Membership)(nil)
	_ component.Waker     = (*Membership)(nil)
)

// Systemd is what membership asks of systemd: it stops etcd before its
// data is set aside, and reads etcd's journal.
type Systemd interface {
	Stop(ctx context.Context, name string) error
	Status(ctx context.Context, name string) (units.UnitStatus, error)
	Journal(ctx context.Context, name string, n int) ([]string, error)
}

// Hooks are the test seams of the quorum protocol.
type Hooks struct {
	// ViewFilter, if set, edits the gossip view the quorum protocol
	// reads: tests inject split views through it.
	ViewFilter func([]quorum.Peer) []quorum.Peer
	// Point, if set, is called at named points of the protocol
	// ("promises-collected", "send-commit", "commit-delivered") with a
	// detail (the commit, the peer): tests crash or stall a node there.
	Point func(point, detail string)
}

func (h Hooks) point(point, detail string) {
	if h.Point != nil {
		h.Point(point, detail)
	}
}

// Deps is what Membership is built from.
type Deps struct {
	Config  *config.Config
	Root    *hostfs.Root
	Log     *slog.Logger
	Store   *nodestate.Store
	Systemd Systemd
	Now     func() time.Time
	// Timing holds the quorum protocol's durations; zero fields take
	// quorum.DefaultTiming's, DeadAfter etcd.replace_dead_after.
	Timing quorum.Timing
	// FastGossip selects gossip timings for tests on loopback.
	FastGossip bool
	Hooks      Hooks
}

// New returns the node's membership; Start brings up gossip and the RPC
// endpoint.
func New(deps Deps) (*Membership, error) {
	var seed [32]byte
	if _, err := cryptorand.Read(seed[:]); err != nil {
		return nil, err
	}
	timing := deps.Timing
	if timing.DeadAfter == 0 {
		timing.DeadAfter = deps.Config.Etcd.ReplaceDeadAfter.Duration
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m := &Membership{
		cfg: deps.Config, root: deps.Root, log: deps.Log, store: deps.Store, sd: deps.Systemd, now: deps.Now,
		hooks: deps.Hooks, fast: deps.FastGossip, timing: timing, cond: component.NewCondition(Name),
		wake:    make(chan struct{}, 1),
		rnd:     rand.New(rand.NewChaCha8(seed)),
		lastFwd: map[quorum.NodeID]time.Time{},
		rec:     &reconcileState{inactive: map[uint64]time.Time{}},
		changes: map[string]int{},
	}
	m.memberList = m.peersMemberList
	if !deps.Config.IsControlPlane() {
		// A worker holds no key of the agents' request channel: it
		// serves no method and calls none (its credentials come from
		// the join endpoint).
		return m, nil
	}
	opts := peer.Options{
		Secret: deps.Config.Secret(), ClusterName: deps.Config.ClusterName, NodeID: deps.Store.Snapshot().NodeID,
		NodeName: deps.Config.NodeName, Log: deps.Log.With("component", "rpc"),
		ControlPlaneSecret: deps.Config.ControlPlaneSecret(), ControlPlaneMethods: controlPlaneMethods,
	}
	var err error
	if m.srv, err = peer.NewServer(opts); err != nil {
		return nil, err
	}
	if m.cli, err = peer.NewClient(opts); err != nil {
		return nil, err
	}
	m.srv.Handle(methodPromise, m.handlePromise)
	m.srv.Handle(methodRelease, m.handleRelease)
	m.srv.Handle(methodReleaseQuery, m.handleReleaseQuery)
	m.srv.Handle(methodCommit, m.handleCommit)
	m.srv.Handle(methodJoin, m.handleJoin)
	m.srv.Handle(methodState, m.handleState)
	// A phase change is news for the peers at once.
	deps.Store.OnPhase(func(nodestate.Phase) {
		if m.gossip() != nil {
			m.publishMeta()
		}
	})
	return m, nil
}

// Name is the component's name.
const Name = "membership"

// Name names the component.
func (m *Membership) Name() string { return Name }

// Handle registers an RPC method of another component (before Start).
func (m *Membership) Handle(method string, h peer.HandlerFunc) { m.srv.Handle(method, h) }

// Client is the agents' RPC client, for other components' calls.
func (m *Membership) Client() *peer.Client { return m.cli }

// Members is the gossip view.
func (m *Membership) Members() []gossip.Member {
	if g := m.gossip(); g != nil {
		return g.Members()
	}
	return nil
}

// gossip is the node's gossip, nil on a worker that has not joined yet.
func (m *Membership) gossip() *gossip.Gossip { return m.gp.Load() }

// Start serves the RPC endpoint and joins gossip. ctx bounds both. A
// worker serves no RPC endpoint, and joins gossip once it holds the
// gossip key its join gave it: now if it has it, else in a later Step.
func (m *Membership) Start(ctx context.Context) error {
	m.runCtx = ctx
	m.store.Lock()
	meta := m.metaLocked()
	m.store.Unlock()
	if !m.cfg.IsControlPlane() {
		return m.startWorkerGossip()
	}
	cfg := m.cfg
	rpcAddr := netip.AddrPortFrom(cfg.AdvertiseAddress, uint16(cfg.Gossip.RPCPort))
	ln, err := m.srv.Listen(rpcAddr.String())
	if err != nil {
		return fmt.Errorf("agent RPC endpoint: %w", err)
	}
	m.wg.Go(func() {
		if err := m.srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			m.log.Error("agent RPC endpoint stopped", "err", err)
		}
	})
	meta.RPCAddr = netip.AddrPortFrom(cfg.AdvertiseAddress, uint16(ln.Addr().(*net.TCPAddr).Port))
	key, err := gossip.DeriveKey(cfg.Secret())
	if err == nil {
		err = m.startGossip(key, meta)
	}
	if err != nil {
		_ = ln.Close()
	}
	return err
}

// startWorkerGossip joins gossip with the key the worker's join stored,
// if it is there yet.
func (m *Membership) startWorkerGossip() error {
	key, err := gossip.ReadKeyFile(m.root, bootstrap.GossipKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		// The worker-credentials component says what the worker
		// waits for.
		return nil
	}
	if err != nil {
		return err
	}
	m.store.Lock()
	meta := m.metaLocked()
	m.store.Unlock()
	return m.startGossip(key, meta)
}

// startGossip joins gossip with key.
func (m *Membership) startGossip(key gossip.Key, meta gossip.Meta) error {
	ctx, cfg := m.runCtx, m.cfg
	g, err := gossip.New(gossip.Config{
		NodeName: cfg.NodeName, ClusterName: cfg.ClusterName, Key: key,
		AdvertiseAddr: cfg.AdvertiseAddress, Port: cfg.Gossip.Port, Join: cfg.Gossip.Join,
		Meta: meta, Logger: m.log.With("component", "gossip"), Fast: m.fast,
	})
	if err != nil {
		return err
	}
	m.gp.Store(g)
	m.joined = m.now()
	m.wg.Go(func() { g.Run(ctx) })
	changed, cancel := g.Subscribe()
	m.wg.Go(func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				m.poke()
			}
		}
	})
	return nil
}

// Stop leaves gossip gracefully, so peers see "left" rather than a
// failure, and closes the clients. Only the first call does anything.
func (m *Membership) Stop(ctx context.Context) error {
	m.stopOnce.Do(func() {
		if m.gossip() != nil {
			if err := m.gossip().Leave(3 * time.Second); err != nil {
				m.log.Warn("leave gossip", "err", err)
			}
			_ = m.gossip().Shutdown()
		}
		if m.cli != nil {
			m.cli.Close()
		}
		m.etcd.Close()
	})
	// Every goroutine ends with the daemon's context or its own timeout.
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("membership's goroutines did not end: %w", ctx.Err())
	}
}

// Step takes one turn: on a control-plane node without an etcd
// membership, one turn of the formation protocol; once decided, the
// upkeep of a running member; on a worker, its gossip metadata.
func (m *Membership) Step(ctx context.Context) error {
	if !m.cfg.IsControlPlane() {
		if m.gossip() == nil {
			return m.startWorkerGossip()
		}
		m.publishMeta()
		return nil
	}
	if m.store.Etcd() == nil {
		if m.cfg.Expect == 1 {
			return m.decideSingleMember()
		}
		if p := m.store.Phase(); p != nodestate.PhaseWaiting && p != nodestate.PhaseStandby {
			_, _ = m.store.SetPhase(nodestate.PhaseWaiting)
		}
		_, err := m.step(ctx)
		return err
	}
	m.cond.Clear()
	if m.store.Phase().EtcdServing() {
		m.maintain(ctx)
	} else {
		m.publishMeta()
	}
	return nil
}

// Ready reports whether the node's etcd membership is decided (always,
// on a worker).
func (m *Membership) Ready() bool {
	return !m.cfg.IsControlPlane() || m.store.Etcd() != nil
}

// Pace is fast while the quorum forms, slower once it runs.
func (m *Membership) Pace() time.Duration {
	return component.PaceUntilReady(m.Ready())
}

// Wakeups fire when the gossip view changes or a peer sent something.
func (m *Membership) Wakeups() <-chan struct{} { return m.wake }

// Report fills in the gossip view, the reconciler's alert and what
// formation waits for.
func (m *Membership) Report(s *status.Status) {
	if m.gossip() != nil {
		s.Gossip = gossipMembers(m.gossip().Members())
		if err := m.gossip().JoinError(); err != nil {
			s.GossipError = err.Error()
			s.Refused = s.Refused || errors.Is(err, gossip.ErrNotAccepted)
		}
	}
	m.mu.Lock()
	s.Alert = m.rec.alert
	s.MembershipChanges = maps.Clone(m.changes)
	m.mu.Unlock()
	m.cond.Report(s)
}

// decideSingleMember decides the membership of a one-member cluster
// (expect = 1) and persists it before anything acts on it. Clusters of
// three or more form through the quorum protocol instead.
func (m *Membership) decideSingleMember() error {
	cfg := m.cfg
	token, err := bootstrap.NewEtcdToken(cfg.ClusterName)
	if err != nil {
		return err
	}
	start := bootstrap.EtcdStartNew
	if has, err := nodestate.HasEtcdData(m.root); err != nil {
		return err
	} else if has {
		// etcd starts from its WAL and ignores the initial membership.
		start = bootstrap.EtcdStartExisting
	}
	return m.store.Update(func(st *nodestate.State) error {
		st.Etcd = &nodestate.EtcdDecision{
			State:     start,
			Token:     token,
			Peers:     map[string]string{cfg.NodeName: bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)},
			DecidedAt: m.now(),
		}
		return nil
	})
}

func (m *Membership) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// metaLocked builds this node's gossip metadata from its state.
func (m *Membership) metaLocked() gossip.Meta {
	st := m.store.Locked()
	meta := gossip.Meta{
		NodeID: st.NodeID, Role: m.cfg.Role, Expect: m.cfg.Expect, Phase: string(st.Phase), Version: buildinfo.Version,
	}
	if st.Quorum.Commit != nil {
		meta.CommitID = st.Quorum.Commit.ID()
	}
	meta.HasEtcdData = m.hasEtcdData()
	m.mu.Lock()
	meta.EtcdClusterID = m.localClusterID
	m.mu.Unlock()
	return meta
}

// hasEtcdData reports whether this node holds etcd data. Data it cannot
// read counts as data: such a node must never found a cluster.
func (m *Membership) hasEtcdData() bool {
	has, err := nodestate.HasEtcdData(m.root)
	if err != nil {
		m.log.Warn("cannot read etcd's data directory; counting it as holding data", "err", err)
		return true
	}
	return has
}

// publishMeta refreshes the gossip metadata if it changed.
func (m *Membership) publishMeta() {
	m.store.Lock()
	meta := m.metaLocked()
	m.store.Unlock()
	cur := m.gossip().LocalMeta()
	if cur.NodeID == meta.NodeID && cur.Phase == meta.Phase && cur.CommitID == meta.CommitID &&
		cur.HasEtcdData == meta.HasEtcdData && cur.EtcdClusterID == meta.EtcdClusterID {
		return
	}
	if err := m.gossip().SetLocalMeta(func(g *gossip.Meta) {
		g.NodeID, g.Phase, g.CommitID, g.HasEtcdData, g.EtcdClusterID = meta.NodeID, meta.Phase, meta.CommitID, meta.HasEtcdData, meta.EtcdClusterID
	}); err != nil {
		m.log.Warn("update gossip metadata", "err", err)
	}
}

// self is this node as the quorum protocol knows it.
func (m *Membership) self() quorum.Self {
	return quorum.Self{
		Member: quorum.Member{
			ID:      quorum.NodeID(m.store.Locked().NodeID),
			Name:    m.cfg.NodeName,
			PeerURL: bootstrap.EtcdPeerURL(m.cfg.AdvertiseAddress, m.cfg.Etcd.PeerPort),
		},
		ClusterName: m.cfg.ClusterName,
		Expect:      m.cfg.Expect,
	}
}

// localLocked is what the protocol knows about this node, given the view.
func (m *Membership) localLocked(peers []quorum.Peer) quorum.LocalState {
	self := m.self()
	has := m.hasEtcdData()
	seenID, seenCommit := quorum.Seen(self, peers)
	m.mu.Lock()
	id := m.localClusterID
	m.mu.Unlock()
	return quorum.LocalState{
		Self: self, HasEtcdState: has, ClusterID: id,
		SeenClusterID: seenID, SeenCommitID: seenCommit,
		State: m.store.Locked().Quorum,
	}
}

// saveQuorumLocked persists a new quorum state.
func (m *Membership) saveQuorumLocked(st quorum.State) error {
	m.store.Locked().Quorum = st
	return m.store.SaveLocked()
}

// call makes an RPC to a node by ID, found in the gossip view.
func (m *Membership) call(ctx context.Context, id quorum.NodeID, method string, req, resp any) error {
	addr, _, ok := rpcAddrOf(m.gossip().Members(), id)
	if !ok {
		return fmt.Errorf("node %s is not in the gossip view (or advertises no RPC address)", id)
	}
	return m.cli.CallNode(ctx, addr.String(), string(id), method, req, resp)
}
