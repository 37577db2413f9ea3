package agent

import (
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/token"
)

// The agents' RPC methods. They travel over the peer package's channel:
// sealed with a key derived from the cluster secret, fresh, never replayed.
const (
	methodPromise      = "quorum.promise"
	methodRelease      = "quorum.release"
	methodReleaseQuery = "quorum.release-query"
	methodCommit       = "quorum.commit"
	methodJoin         = "etcd.join"
)

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

// cluster is this node's part in the cluster: gossip, the RPC endpoint,
// and on a control-plane node the etcd formation protocol and the
// membership reconciler. Every change to the quorum state happens under
// the daemon's state lock and is persisted before anyone is answered.
type cluster struct {
	d      *Daemon
	cfg    *config.Config
	g      *gossip.Gossip
	srv    *peer.Server
	cli    *peer.Client
	timing quorum.Timing
	joined time.Time
	wake   chan struct{}

	// Guarded by d.stmu.
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
}

// startCluster starts gossip and the RPC endpoint.
func (d *Daemon) startCluster(ctx context.Context) (*cluster, error) {
	cfg := d.d.Config
	var seed [32]byte
	if _, err := cryptorand.Read(seed[:]); err != nil {
		return nil, err
	}
	timing := d.d.Timing
	if timing.DeadAfter == 0 {
		timing.DeadAfter = cfg.Etcd.ReplaceDeadAfter.Duration
	}
	c := &cluster{
		d: d, cfg: cfg, timing: timing, wake: make(chan struct{}, 1),
		rnd:     rand.New(rand.NewChaCha8(seed)),
		lastFwd: map[quorum.NodeID]time.Time{},
		rec:     &reconcileState{inactive: map[uint64]time.Time{}},
	}
	opts := peer.Options{
		Secret: cfg.Secret(), ClusterName: cfg.ClusterName, NodeID: d.state.NodeID, NodeName: cfg.NodeName,
		Log: d.d.Log.With("component", "rpc"),
	}
	srv, err := peer.NewServer(opts)
	if err != nil {
		return nil, err
	}
	c.srv = srv
	if c.cli, err = peer.NewClient(opts); err != nil {
		return nil, err
	}
	srv.Handle(methodPromise, c.handlePromise)
	srv.Handle(methodRelease, c.handleRelease)
	srv.Handle(methodReleaseQuery, c.handleReleaseQuery)
	srv.Handle(methodCommit, c.handleCommit)
	srv.Handle(methodJoin, c.handleJoin)
	if cfg.IsControlPlane() {
		srv.Handle(methodNodeCerts, c.handleNodeCerts)
	}
	rpcAddr := netip.AddrPortFrom(cfg.AdvertiseAddress, uint16(cfg.Gossip.RPCPort))
	ln, err := srv.Listen(rpcAddr.String())
	if err != nil {
		return nil, fmt.Errorf("agent RPC endpoint: %w", err)
	}
	go func() {
		if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			d.d.Log.Error("agent RPC endpoint stopped", "err", err)
		}
	}()

	d.stmu.Lock()
	meta := c.metaLocked()
	d.stmu.Unlock()
	meta.RPCAddr = netip.AddrPortFrom(cfg.AdvertiseAddress, uint16(ln.Addr().(*net.TCPAddr).Port))
	g, err := gossip.New(gossip.Config{
		NodeName: cfg.NodeName, ClusterName: cfg.ClusterName, Secret: cfg.ClusterSecret,
		AdvertiseAddr: cfg.AdvertiseAddress, Port: cfg.Gossip.Port, Join: cfg.Gossip.Join,
		Meta: meta, Logger: d.d.Log.With("component", "gossip"), Fast: d.d.FastGossip,
	})
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	c.g = g
	c.joined = d.d.Now()
	go g.Run(ctx)
	changed, cancel := g.Subscribe()
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				c.poke()
			}
		}
	}()
	return c, nil
}

// stop leaves gossip gracefully, so peers see "left" rather than a
// failure.
func (c *cluster) stop() {
	if err := c.g.Leave(3 * time.Second); err != nil {
		c.d.d.Log.Warn("leave gossip", "err", err)
	}
	_ = c.g.Shutdown()
	c.cli.Close()
}

func (c *cluster) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// metaLocked builds this node's gossip metadata from its state.
func (c *cluster) metaLocked() gossip.Meta {
	st := c.d.state
	m := gossip.Meta{
		NodeID: st.NodeID, Role: c.cfg.Role, Expect: c.cfg.Expect, Phase: string(st.Phase), Version: Version,
	}
	if st.Quorum.Commit != nil {
		m.CommitID = st.Quorum.Commit.ID()
	}
	m.HasEtcdData, _ = hasEtcdData(c.d.d.Root)
	c.mu.Lock()
	m.EtcdClusterID = c.localClusterID
	c.mu.Unlock()
	return m
}

// publishMeta refreshes the gossip metadata if it changed.
func (c *cluster) publishMeta() {
	c.d.stmu.Lock()
	m := c.metaLocked()
	c.d.stmu.Unlock()
	cur := c.g.LocalMeta()
	if cur.NodeID == m.NodeID && cur.Phase == m.Phase && cur.CommitID == m.CommitID &&
		cur.HasEtcdData == m.HasEtcdData && cur.EtcdClusterID == m.EtcdClusterID {
		return
	}
	if err := c.g.SetLocalMeta(func(g *gossip.Meta) {
		g.NodeID, g.Phase, g.CommitID, g.HasEtcdData, g.EtcdClusterID = m.NodeID, m.Phase, m.CommitID, m.HasEtcdData, m.EtcdClusterID
	}); err != nil {
		c.d.d.Log.Warn("update gossip metadata", "err", err)
	}
}

// self is this node as the quorum protocol knows it.
func (c *cluster) self() quorum.Self {
	return quorum.Self{
		Member: quorum.Member{
			ID:      quorum.NodeID(c.d.state.NodeID),
			Name:    c.cfg.NodeName,
			PeerURL: bootstrap.EtcdPeerURL(c.cfg.AdvertiseAddress, c.cfg.Etcd.PeerPort),
		},
		ClusterName: c.cfg.ClusterName,
		Expect:      c.cfg.Expect,
	}
}

// localLocked is what the protocol knows about this node, given the view.
func (c *cluster) localLocked(peers []quorum.Peer) quorum.LocalState {
	self := c.self()
	has, _ := hasEtcdData(c.d.d.Root)
	seenID, seenCommit := quorum.Seen(self, peers)
	c.mu.Lock()
	id := c.localClusterID
	c.mu.Unlock()
	return quorum.LocalState{
		Self: self, HasEtcdState: has, ClusterID: id,
		SeenClusterID: seenID, SeenCommitID: seenCommit,
		State: c.d.state.Quorum,
	}
}

// saveQuorumLocked persists a new quorum state.
func (c *cluster) saveQuorumLocked(st quorum.State) error {
	c.d.state.Quorum = st
	return c.d.state.Save(c.d.d.Root)
}

// call makes an RPC to a node by ID, found in the gossip view.
func (c *cluster) call(ctx context.Context, id quorum.NodeID, method string, req, resp any) error {
	addr, _, ok := rpcAddrOf(c.g.Members(), id)
	if !ok {
		return fmt.Errorf("node %s is not in the gossip view (or advertises no RPC address)", id)
	}
	return c.cli.CallNode(ctx, addr.String(), string(id), method, req, resp)
}

// form runs the formation protocol until this node knows how to start
// etcd, and returns that decision (persisted). It returns an error only
// when this node cannot go on (its disk failed) or ctx ends.
//
// started is called once, after the first turn, when the status says what
// the node waits for.
func (c *cluster) form(ctx context.Context, started func()) (*EtcdDecision, error) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		dec, err := c.step(ctx)
		if err != nil || dec != nil {
			return dec, err
		}
		c.d.beat()
		c.d.publish(ctx, false)
		if started != nil {
			started()
			started = nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.wake:
		case <-t.C:
		}
	}
}

// step runs one turn of the protocol: tally the round in progress, or
// decide the next step and take it.
func (c *cluster) step(ctx context.Context) (*EtcdDecision, error) {
	c.publishMeta()
	peers := c.peersNow()
	now := c.d.d.Now()

	c.d.stmu.Lock()
	local := c.localLocked(peers)
	if c.round != nil {
		err := c.tallyLocked(ctx, local, now)
		c.d.stmu.Unlock()
		return nil, err
	}
	dec := quorum.Decide(quorum.Input{Local: local, Peers: peers, Now: now, Joined: c.joined, Timing: c.timing, RetryAt: c.retryAt})
	if s := dec.String(); s != c.decision {
		c.decision = s
		c.d.d.Log.Info("quorum", "decision", s)
	}
	c.forwardLocked(ctx, dec.Forward, now)
	switch st := dec.Step.(type) {
	case quorum.Wait:
		c.d.stmu.Unlock()
		c.d.setWaiting(st.String())
		// Waiting for a cluster others are starting changes nothing
		// about this node's place: a standby stays standby (it will be
		// told so again once the cluster runs), a founder that missed
		// the commit stays waiting until it is forwarded.
		if st.Reason != quorum.WaitForCluster {
			c.d.setPhase(waitPhase(st.Reason == quorum.WaitAsStandby))
		}
		return nil, nil
	case quorum.Refuse:
		c.d.stmu.Unlock()
		c.d.setRefused(st.String())
		return nil, nil
	case quorum.Propose:
		err := c.proposeLocked(ctx, local, st.Proposal, now)
		c.d.stmu.Unlock()
		return nil, err
	case quorum.StartNew:
		defer c.d.stmu.Unlock()
		return c.startNewLocked(st.Commit, now)
	case quorum.StartFromData:
		defer c.d.stmu.Unlock()
		if c.d.state.Etcd == nil {
			// The state was lost but the data is there: etcd starts
			// from its WAL and ignores the initial membership.
			c.d.state.Etcd = &EtcdDecision{State: "existing", Peers: map[string]string{c.cfg.NodeName: c.self().PeerURL}, DecidedAt: now}
			if err := c.d.state.Save(c.d.d.Root); err != nil {
				return nil, err
			}
		}
		return c.d.state.Etcd, nil
	case quorum.Join:
		c.d.stmu.Unlock()
		return c.join(ctx, st, now)
	case quorum.SetAside:
		defer c.d.stmu.Unlock()
		return nil, c.setAsideLocked(ctx, st.Reason, true)
	}
	c.d.stmu.Unlock()
	return nil, fmt.Errorf("quorum: unknown step %T", dec.Step)
}

// proposeLocked starts a round as seed: its own promise first (persisted),
// then a request to every other candidate, answered asynchronously.
func (c *cluster) proposeLocked(ctx context.Context, local quorum.LocalState, p quorum.Proposal, now time.Time) error {
	req := quorum.PromiseRequest{Proposal: p}
	grant, reason, next := quorum.DecidePromise(local, req, now)
	if !grant {
		c.d.d.Log.Warn("quorum: not proposing: own promise refused", "reason", reason)
		c.retryAt = now.Add(c.timing.RetryBase)
		return nil
	}
	if err := c.saveQuorumLocked(next); err != nil {
		return err
	}
	c.round = &quorum.Round{Proposal: p, Sent: now}
	c.d.d.Log.Info("quorum: proposing", "proposal", p.String())
	c.d.setWaiting("promises for " + p.String())
	for _, m := range p.Members[1:] {
		go func() {
			ctx, cancel := context.WithTimeout(ctx, p.TTL/2)
			defer cancel()
			var rep quorum.PromiseReply
			if err := c.call(ctx, m.ID, methodPromise, req, &rep); err != nil {
				c.d.d.Log.Info("quorum: no promise", "from", m.Name, "err", err)
				return
			}
			c.d.stmu.Lock()
			if c.round != nil && c.round.Proposal.Same(p) {
				c.round.Replies = append(c.round.Replies, rep)
			}
			c.d.stmu.Unlock()
			c.poke()
		}()
	}
	return nil
}

// tallyLocked judges the round in progress.
func (c *cluster) tallyLocked(ctx context.Context, local quorum.LocalState, now time.Time) error {
	switch o := quorum.Tally(local, *c.round, now, c.timing, c.rnd).(type) {
	case quorum.Pending:
		return nil
	case quorum.BackOff:
		c.d.d.Log.Info("quorum: round failed", "outcome", o.String())
		c.round, c.retryAt = nil, now.Add(o.Delay)
		if err := c.saveQuorumLocked(o.State); err != nil {
			return err
		}
		for _, m := range o.To {
			go func() {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_ = c.call(ctx, m.ID, methodRelease, o.Release, nil)
			}()
		}
		return nil
	case quorum.Decided:
		c.d.hook("promises-collected", o.Commit.ID())
		return c.commitLocked(ctx, local, o.Commit)
	}
	return nil
}

// commitLocked is the seed's commit: the cluster's shared keys are made
// and persisted (sealed) first, then the commit, and only then are they
// installed and sent, so no CA is ever used that is not the cluster's.
func (c *cluster) commitLocked(ctx context.Context, local quorum.LocalState, commit quorum.Commit) error {
	shared, err := NewShared(c.cfg)
	if err != nil {
		return err
	}
	sealed, err := shared.Seal(c.cfg)
	if err != nil {
		return err
	}
	st, err := quorum.AcceptCommit(local, commit)
	if err != nil {
		c.round = nil
		c.d.d.Log.Error("quorum: cannot accept own commit", "err", err)
		return nil
	}
	if err := SaveSealed(c.d.d.Root, sealed); err != nil {
		return err
	}
	if err := c.saveQuorumLocked(st); err != nil {
		return err
	}
	c.round = nil
	c.d.d.Log.Info("quorum: committed", "commit", commit.ID(), "members", commit.Proposal.String())
	msg := commitMessage{Commit: commit, Shared: sealed}
	for _, m := range commit.Proposal.Members[1:] {
		c.lastFwd[m.ID] = c.d.d.Now()
		go c.sendCommit(ctx, m, msg)
	}
	return nil
}

func (c *cluster) sendCommit(ctx context.Context, m quorum.Member, msg commitMessage) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c.d.hook("send-commit", m.Name)
	if err := c.call(ctx, m.ID, methodCommit, msg, nil); err != nil {
		c.d.d.Log.Info("quorum: commit not delivered", "to", m.Name, "err", err)
		return
	}
	c.d.hook("commit-delivered", m.Name)
}

// forwardLocked sends the commit this node holds to members that lack it,
// at most once a second each.
func (c *cluster) forwardLocked(ctx context.Context, to []quorum.Member, now time.Time) {
	if len(to) == 0 || c.d.state.Quorum.Commit == nil {
		return
	}
	sealed, err := c.sealedShared()
	if err != nil {
		c.d.d.Log.Warn("quorum: cannot forward the commit", "err", err)
		return
	}
	msg := commitMessage{Commit: *c.d.state.Quorum.Commit, Shared: sealed}
	for _, m := range to {
		if now.Sub(c.lastFwd[m.ID]) < time.Second {
			continue
		}
		c.lastFwd[m.ID] = now
		go c.sendCommit(ctx, m, msg)
	}
}

// sealedShared returns the cluster's shared keys, sealed: the persisted
// file, or an export of the installed keys.
func (c *cluster) sealedShared() ([]byte, error) {
	sealed, err := LoadSealed(c.d.d.Root)
	if err != nil || sealed != nil {
		return sealed, err
	}
	shared, err := ExportShared(c.d.d.Root, c.cfg)
	if err != nil {
		return nil, fmt.Errorf("this node holds no shared keys to send: %w", err)
	}
	return shared.Seal(c.cfg)
}

// startNewLocked turns a held commit into the etcd decision: shared keys
// installed, initial-cluster-state new with exactly the commit's members.
func (c *cluster) startNewLocked(commit quorum.Commit, now time.Time) (*EtcdDecision, error) {
	sealed, err := LoadSealed(c.d.d.Root)
	if err != nil {
		return nil, err
	}
	if sealed == nil {
		return nil, fmt.Errorf("this node holds commit %s but not the cluster's shared keys (%s is missing); "+
			"move %s aside and restart the agent to join again", commit.ID(), c.d.d.Root.Path(SharedFile), c.d.d.Root.Path(bootstrap.AgentStateFile))
	}
	shared, err := OpenShared(c.cfg, sealed)
	if err != nil {
		return nil, err
	}
	if err := shared.Install(c.d.d.Root, c.cfg); err != nil {
		return nil, err
	}
	want := &EtcdDecision{State: "new", Token: commit.Token, Peers: commit.InitialCluster(), DecidedAt: now}
	if e := c.d.state.Etcd; e == nil || e.State != want.State || e.Token != want.Token {
		c.d.state.Etcd = want
		if err := c.d.state.Save(c.d.d.Root); err != nil {
			return nil, err
		}
	}
	return c.d.state.Etcd, nil
}

// join asks a member's agent to let this node in; the reconciler next to
// the etcd leader adds it as a learner when the cluster needs a member.
func (c *cluster) join(ctx context.Context, j quorum.Join, now time.Time) (*EtcdDecision, error) {
	c.d.stmu.Lock()
	if now.Sub(c.lastJoin) < 2*time.Second {
		c.d.stmu.Unlock()
		return nil, nil
	}
	c.lastJoin = now
	via := j.Via[c.joinNext%len(j.Via)]
	c.joinNext++
	self := c.self()
	c.d.stmu.Unlock()

	req := quorum.JoinRequest{Member: self.Member, ClusterName: self.ClusterName, Expect: self.Expect}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rep joinReply
	if err := c.call(cctx, via.ID, methodJoin, req, &rep); err != nil {
		c.d.setWaiting(fmt.Sprintf("joining etcd cluster %x: %s did not answer: %v", j.ClusterID, via.Name, err))
		return nil, nil
	}
	switch rep.Verdict {
	case quorum.JoinRefused:
		c.d.d.Log.Warn("etcd join refused", "by", via.Name, "reason", rep.Reason)
		c.d.setRefused(fmt.Sprintf("refused by %s: %s", via.Name, rep.Reason))
		return nil, nil
	case quorum.JoinWait:
		c.d.setWaiting(fmt.Sprintf("etcd cluster %x (asked %s): %s", j.ClusterID, via.Name, rep.Reason))
		c.d.setPhase(waitPhase(rep.Standby))
		return nil, nil
	case quorum.JoinStart:
	default:
		return nil, nil
	}
	shared, err := OpenShared(c.cfg, rep.Shared)
	if err != nil {
		c.d.setWaiting(fmt.Sprintf("joining via %s: %v", via.Name, err))
		return nil, nil
	}
	c.d.stmu.Lock()
	defer c.d.stmu.Unlock()
	if err := SaveSealed(c.d.d.Root, rep.Shared); err != nil {
		return nil, err
	}
	if err := shared.Install(c.d.d.Root, c.cfg); err != nil {
		// Another cluster's CA on this node: an operator must decide.
		c.d.setRefused("cannot join: " + err.Error())
		return nil, nil
	}
	c.d.state.Etcd = &EtcdDecision{State: "existing", Peers: rep.InitialCluster, DecidedAt: now}
	if err := c.d.state.Save(c.d.d.Root); err != nil {
		return nil, err
	}
	c.d.d.Log.Info("joining etcd as a learner", "via", via.Name, "cluster", hexID(j.ClusterID))
	return c.d.state.Etcd, nil
}

// setAsideLocked moves this node's etcd data (and, when its keys came
// from a cluster that never formed, /etc/kubernetes) aside, renamed and
// never deleted, and starts the node over as a fresh one.
func (c *cluster) setAsideLocked(ctx context.Context, reason string, keys bool) error {
	c.d.d.Log.Warn("moving etcd data aside", "reason", reason)
	if c.d.sd != nil {
		sctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
		err := c.d.sd.Stop(sctx, bootstrap.EtcdUnit)
		cancel()
		if err != nil {
			return fmt.Errorf("stop etcd before moving its data aside: %w", err)
		}
	}
	suffix := ".aside-" + strconv.FormatInt(c.d.d.Now().Unix(), 10)
	moves := []string{bootstrap.EtcdDataDir}
	if keys {
		// The keys came from a commit that never formed: its CA, and
		// the pin of it, are no one's.
		moves = append(moves, bootstrap.KubernetesDir, SharedFile, token.DefaultPinPath)
	}
	for _, p := range moves {
		if _, err := c.d.d.Root.Stat(p); err != nil {
			continue
		}
		if err := c.d.d.Root.Rename(p, p+suffix); err != nil {
			return fmt.Errorf("move %s aside: %w", p, err)
		}
		c.d.d.Log.Warn("moved aside", "from", c.d.d.Root.Path(p), "to", c.d.d.Root.Path(p+suffix))
	}
	c.d.state.Quorum = quorum.State{}
	c.d.state.Etcd = nil
	c.d.state.SetPhase(PhaseWaiting, c.d.d.Now())
	c.mu.Lock()
	c.localClusterID = 0
	c.mu.Unlock()
	return c.d.state.Save(c.d.d.Root)
}

// setAside moves a removed member's etcd data aside and resets its quorum
// state; its keys stay, since they are the running cluster's.
func (c *cluster) setAside(ctx context.Context, reason string) error {
	c.d.stmu.Lock()
	defer c.d.stmu.Unlock()
	return c.setAsideLocked(ctx, reason, false)
}

// waitPhase is the phase of a node waiting outside etcd.
func waitPhase(standby bool) Phase {
	if standby {
		return PhaseStandby
	}
	return PhaseWaiting
}

// The RPC handlers.

// peersNow is this node's gossip view as the quorum protocol reads it.
func (c *cluster) peersNow() []quorum.Peer {
	peers := quorumPeers(c.cfg, c.g.Members())
	if f := c.d.d.ViewFilter; f != nil {
		peers = f(peers)
	}
	return peers
}

func (c *cluster) handlePromise(_ context.Context, r peer.Request) (any, error) {
	if !c.cfg.IsControlPlane() {
		return nil, peer.Errorf(peer.CodeRefused, "%s is a worker", c.cfg.NodeName)
	}
	var req quorum.PromiseRequest
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	peers := c.peersNow()
	c.d.stmu.Lock()
	defer c.d.stmu.Unlock()
	local := c.localLocked(peers)
	grant, reason, next := quorum.DecidePromise(local, req, c.d.d.Now())
	if err := c.saveQuorumLocked(next); err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "persist the promise: %v", err)
	}
	c.d.d.Log.Info("quorum: promise request", "from", r.NodeName, "proposal", req.Proposal.String(), "granted", grant, "reason", reason)
	return quorum.ReplyTo(req, local.Self.ID, grant, reason, next), nil
}

func (c *cluster) handleRelease(_ context.Context, r peer.Request) (any, error) {
	var rel quorum.PromiseRelease
	if err := r.Decode(&rel); err != nil {
		return nil, err
	}
	if quorum.NodeID(r.NodeID) != rel.Proposal.Seed {
		return nil, peer.Errorf(peer.CodeRefused, "only a proposal's seed releases it")
	}
	peers := c.peersNow()
	c.d.stmu.Lock()
	defer c.d.stmu.Unlock()
	next := quorum.ReleasePromise(c.localLocked(peers), rel, c.d.d.Now())
	if err := c.saveQuorumLocked(next); err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "persist the release: %v", err)
	}
	c.poke()
	return nil, nil
}

func (c *cluster) handleReleaseQuery(_ context.Context, r peer.Request) (any, error) {
	var q quorum.Proposal
	if err := r.Decode(&q); err != nil {
		return nil, err
	}
	peers := c.peersNow()
	c.d.stmu.Lock()
	defer c.d.stmu.Unlock()
	var round *quorum.Proposal
	if c.round != nil {
		round = &c.round.Proposal
	}
	rel, ok := quorum.AnswerRelease(c.localLocked(peers), round, q)
	if !ok {
		return nil, peer.Errorf(peer.CodeRefused, "%s is not released", q.String())
	}
	return rel, nil
}

func (c *cluster) handleCommit(ctx context.Context, r peer.Request) (any, error) {
	if !c.cfg.IsControlPlane() {
		return nil, peer.Errorf(peer.CodeRefused, "%s is a worker", c.cfg.NodeName)
	}
	var msg commitMessage
	if err := r.Decode(&msg); err != nil {
		return nil, err
	}
	if _, err := OpenShared(c.cfg, msg.Shared); err != nil {
		return nil, peer.Errorf(peer.CodeRefused, "commit %s: %v", msg.Commit.ID(), err)
	}
	peers := c.peersNow()
	c.d.stmu.Lock()
	local := c.localLocked(peers)
	if held := local.State.Commit; held != nil && held.ID() == msg.Commit.ID() {
		c.d.stmu.Unlock()
		return nil, nil
	}
	st, err := quorum.AcceptCommit(local, msg.Commit)
	var blocked *quorum.BlockedError
	if errors.As(err, &blocked) {
		c.d.stmu.Unlock()
		c.askReleases(ctx, blocked.By)
		return nil, peer.Errorf(peer.CodeNotReady, "%v; asked the seeds to release, send it again", err)
	}
	if err != nil {
		c.d.stmu.Unlock()
		return nil, peer.Errorf(peer.CodeRefused, "%v", err)
	}
	defer c.d.stmu.Unlock()
	if err := SaveSealed(c.d.d.Root, msg.Shared); err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "persist the shared keys: %v", err)
	}
	if err := c.saveQuorumLocked(st); err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "persist the commit: %v", err)
	}
	c.d.d.Log.Info("quorum: accepted commit", "commit", msg.Commit.ID(), "from", r.NodeName, "members", msg.Commit.Proposal.String())
	c.poke()
	return nil, nil
}

// askReleases asks the seeds of proposals that block a commit whether
// they gave them up, and applies the releases they send.
func (c *cluster) askReleases(ctx context.Context, by []quorum.Proposal) {
	for _, q := range by {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var rel quorum.PromiseRelease
		err := c.call(cctx, q.Seed, methodReleaseQuery, q, &rel)
		cancel()
		if err != nil {
			continue
		}
		peers := c.peersNow()
		c.d.stmu.Lock()
		next := quorum.ReleasePromise(c.localLocked(peers), rel, c.d.d.Now())
		if err := c.saveQuorumLocked(next); err != nil {
			c.d.d.Log.Error("persist a release", "err", err)
		}
		c.d.stmu.Unlock()
	}
}

func (c *cluster) handleJoin(ctx context.Context, r peer.Request) (any, error) {
	var req quorum.JoinRequest
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	if !c.d.phase().EtcdServing() {
		return nil, peer.Errorf(peer.CodeNotReady, "etcd on %s is not ready", c.cfg.NodeName)
	}
	members, _, err := c.d.etcdMembers(ctx)
	if err != nil {
		return nil, peer.Errorf(peer.CodeNotReady, "read the etcd member list on %s: %v", c.cfg.NodeName, err)
	}
	ans := quorum.AnswerJoin(c.self(), members, req)
	rep := joinReply{Verdict: ans.Verdict, Reason: ans.Reason, Standby: ans.Standby, InitialCluster: ans.InitialCluster}
	if ans.Verdict == quorum.JoinStart {
		if rep.Shared, err = c.sealedShared(); err != nil {
			return nil, peer.Errorf(peer.CodeUnavailable, "%v", err)
		}
	}
	c.d.d.Log.Info("etcd join request", "from", r.NodeName, "verdict", ans.Reason)
	c.poke()
	return rep, nil
}

// maintain is one turn of a control-plane node's upkeep once its etcd
// runs: refresh the gossip metadata (the cluster ID joiners look for),
// forward the commit to members that missed it, run the reconciler, and
// notice when this member was removed or its commit orphaned. It returns
// true when the node's etcd data was set aside and it must converge again.
func (c *cluster) maintain(ctx context.Context) bool {
	c.reconcile(ctx)
	c.publishMeta()
	peers := c.peersNow()
	now := c.d.d.Now()
	c.d.stmu.Lock()
	defer c.d.stmu.Unlock()
	local := c.localLocked(peers)
	dec := quorum.Decide(quorum.Input{Local: local, Peers: peers, Now: now, Joined: c.joined, Timing: c.timing})
	if local.ClusterID == 0 {
		// The commit's cluster has no leader yet: members that missed
		// the commit are needed. Once it runs, latecomers join it.
		c.forwardLocked(ctx, dec.Forward, now)
	}
	if aside, ok := dec.Step.(quorum.SetAside); ok {
		if err := c.setAsideLocked(ctx, aside.Reason, true); err != nil {
			c.d.d.Log.Error("set aside", "err", err)
			return false
		}
		return true
	}
	if c.d.removedFromCluster(ctx) {
		removed, reason, next := quorum.OnRemoved(local, quorum.RemovalEvidence{EtcdSaysRemoved: true})
		if removed {
			c.d.d.Log.Warn("this etcd member was removed from the cluster", "reason", reason)
			if err := c.setAsideLocked(ctx, reason, false); err != nil {
				c.d.d.Log.Error("set aside", "err", err)
				return false
			}
			c.d.state.Quorum = next
			_ = c.d.state.Save(c.d.d.Root)
			return true
		}
	}
	return false
}
