package membership

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/clusterkeys"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/token"
	"github.com/ecom-platform/ecom-agent/units"
)

// step runs one turn of the protocol: tally the round in progress, or
// decide the next step and take it.
func (m *Membership) step(ctx context.Context) (*nodestate.EtcdDecision, error) {
	m.publishMeta()
	peers := m.peersNow()
	now := m.now()

	m.store.Lock()
	local := m.localLocked(peers)
	if m.round != nil {
		err := m.tallyLocked(ctx, local, now)
		m.store.Unlock()
		return nil, err
	}
	dec := quorum.Decide(quorum.Input{Local: local, Peers: peers, Now: now, Joined: m.joined, Timing: m.timing, RetryAt: m.retryAt,
		Anchors: anchors(m.gossip(), local.Self.ID)})
	if s := dec.String(); s != m.decision {
		m.decision = s
		m.log.Info("quorum", "decision", s)
	}
	m.forwardLocked(ctx, dec.Forward, now)
	switch st := dec.Step.(type) {
	case quorum.Wait:
		m.store.Unlock()
		m.cond.Set(waitReason(st.Reason), st.String())
		// Waiting for a cluster others are starting changes nothing
		// about this node's place: a standby stays standby (it will be
		// told so again once the cluster runs), a founder that missed
		// the commit stays waiting until it is forwarded.
		if st.Reason != quorum.WaitForCluster {
			_, _ = m.store.SetPhase(waitPhase(st.Reason == quorum.WaitAsStandby))
		}
		return nil, nil
	case quorum.Refuse:
		m.store.Unlock()
		m.cond.Refuse(status.ReasonRefused, st.String())
		return nil, nil
	case quorum.Propose:
		err := m.proposeLocked(ctx, local, st.Proposal, now)
		m.store.Unlock()
		return nil, err
	case quorum.StartNew:
		defer m.store.Unlock()
		return m.startNewLocked(st.Commit, now)
	case quorum.StartFromData:
		defer m.store.Unlock()
		if m.store.Locked().Etcd == nil {
			// The state was lost but the data is there: etcd starts
			// from its WAL and ignores the initial membership.
			m.store.Locked().Etcd = &nodestate.EtcdDecision{State: bootstrap.EtcdStartExisting, Peers: map[string]string{m.cfg.NodeName: m.self().PeerURL}, DecidedAt: now}
			if err := m.store.SaveLocked(); err != nil {
				return nil, err
			}
		}
		return m.store.Locked().Etcd, nil
	case quorum.Join:
		m.store.Unlock()
		return m.join(ctx, st, now)
	case quorum.SetAside:
		m.store.Unlock()
		if !m.confirmAside(ctx, st) {
			return nil, nil
		}
		m.store.Lock()
		defer m.store.Unlock()
		return nil, m.setAsideLocked(ctx, st.Reason, true)
	}
	m.store.Unlock()
	return nil, fmt.Errorf("quorum: unknown step %T", dec.Step)
}

// proposeLocked starts a round as seed: its own promise first (persisted),
// then a request to every other candidate, answered asynchronously.
func (m *Membership) proposeLocked(ctx context.Context, local quorum.LocalState, p quorum.Proposal, now time.Time) error {
	req := quorum.PromiseRequest{Proposal: p}
	grant, reason, next := quorum.DecidePromise(local, req, now)
	if !grant {
		m.log.Warn("quorum: not proposing: own promise refused", "reason", reason)
		m.retryAt = now.Add(m.timing.RetryBase)
		return nil
	}
	if err := m.saveQuorumLocked(next); err != nil {
		return err
	}
	m.round = &quorum.Round{Proposal: p, Sent: now}
	m.log.Info("quorum: proposing", "proposal", p.String())
	m.cond.Set(status.ReasonProposing, "promises for "+p.String())
	for _, mb := range p.Members[1:] {
		m.wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, p.TTL/2)
			defer cancel()
			var rep quorum.PromiseReply
			if err := m.callWhileProposed(ctx, p, mb.ID, methodPromise, req, &rep); err != nil {
				m.log.Info("quorum: no promise", "from", mb.Name, "err", err)
				return
			}
			m.store.Lock()
			if m.round != nil && m.round.Proposal.Same(p) {
				m.round.Replies = append(m.round.Replies, rep)
			}
			m.store.Unlock()
			m.poke()
		})
	}
	return nil
}

// callWhileProposed calls a candidate for the round of p, again after a
// failure that is not the peer's refusal (its agent restarting, a lost
// connection) while the round still stands and ctx (half the promise TTL)
// allows: the request is idempotent, and a round waits for every answer
// until its deadline anyway.
func (m *Membership) callWhileProposed(ctx context.Context, p quorum.Proposal, id quorum.NodeID, method string, req, resp any) error {
	wait := 250 * time.Millisecond
	for {
		err := m.call(ctx, id, method, req, resp)
		var refused *peer.RemoteError
		if err == nil || errors.As(err, &refused) && refused.Code == peer.CodeRefused {
			return err
		}
		m.log.Debug("quorum: promise request failed; asking again", "to", id, "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
		m.store.Lock()
		current := m.round != nil && m.round.Proposal.Same(p)
		m.store.Unlock()
		if !current {
			return err
		}
	}
}

// tallyLocked judges the round in progress.
func (m *Membership) tallyLocked(ctx context.Context, local quorum.LocalState, now time.Time) error {
	switch o := quorum.Tally(local, *m.round, now, m.timing, m.rnd).(type) {
	case quorum.Pending:
		return nil
	case quorum.BackOff:
		m.log.Info("quorum: round failed", "outcome", o.String())
		m.round, m.retryAt = nil, now.Add(o.Delay)
		if err := m.saveQuorumLocked(o.State); err != nil {
			return err
		}
		for _, mb := range o.To {
			m.wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_ = m.call(ctx, mb.ID, methodRelease, o.Release, nil)
			})
		}
		return nil
	case quorum.Decided:
		m.hooks.point("promises-collected", o.Commit.ID())
		return m.commitLocked(ctx, local, o.Commit)
	}
	return nil
}

// commitLocked is the seed's commit: the cluster's shared keys are made
// and persisted (sealed) first, then the commit, and only then are they
// installed and sent, so no CA is ever used that is not the cluster's.
func (m *Membership) commitLocked(ctx context.Context, local quorum.LocalState, commit quorum.Commit) error {
	shared, err := clusterkeys.New(m.cfg)
	if err != nil {
		return err
	}
	sealed, err := shared.Seal(m.cfg)
	if err != nil {
		return err
	}
	st, err := quorum.AcceptCommit(local, commit)
	if err != nil {
		m.round = nil
		m.log.Error("quorum: cannot accept own commit", "err", err)
		return nil
	}
	if err := clusterkeys.SaveSealed(m.root, sealed); err != nil {
		return err
	}
	if err := m.saveQuorumLocked(st); err != nil {
		return err
	}
	m.round = nil
	m.log.Info("quorum: committed", "commit", commit.ID(), "members", commit.Proposal.String())
	msg := commitMessage{Commit: commit, Shared: sealed}
	for _, mb := range commit.Proposal.Members[1:] {
		m.lastFwd[mb.ID] = m.now()
		m.wg.Go(func() { m.sendCommit(ctx, mb, msg) })
	}
	return nil
}

func (m *Membership) sendCommit(ctx context.Context, to quorum.Member, msg commitMessage) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m.hooks.point("send-commit", to.Name)
	if err := m.call(ctx, to.ID, methodCommit, msg, nil); err != nil {
		m.log.Info("quorum: commit not delivered", "to", to.Name, "err", err)
		return
	}
	m.hooks.point("commit-delivered", to.Name)
}

// forwardLocked sends the commit this node holds to members that lack it,
// at most once a second each.
func (m *Membership) forwardLocked(ctx context.Context, to []quorum.Member, now time.Time) {
	if len(to) == 0 || m.store.Locked().Quorum.Commit == nil {
		return
	}
	sealed, err := m.sealedShared()
	if err != nil {
		m.log.Warn("quorum: cannot forward the commit", "err", err)
		return
	}
	msg := commitMessage{Commit: *m.store.Locked().Quorum.Commit, Shared: sealed}
	for _, mb := range to {
		if now.Sub(m.lastFwd[mb.ID]) < time.Second {
			continue
		}
		m.lastFwd[mb.ID] = now
		m.wg.Go(func() { m.sendCommit(ctx, mb, msg) })
	}
}

// sealedShared returns the cluster's shared keys, sealed.
func (m *Membership) sealedShared() ([]byte, error) {
	sealed, err := clusterkeys.Sealed(m.root, m.cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot send the cluster's shared keys: %w", err)
	}
	return sealed, nil
}

// startNewLocked turns a held commit into the etcd decision: shared keys
// installed, initial-cluster-state new with exactly the commit's members.
func (m *Membership) startNewLocked(commit quorum.Commit, now time.Time) (*nodestate.EtcdDecision, error) {
	sealed, err := clusterkeys.LoadSealed(m.root, m.cfg)
	if err != nil {
		return nil, err
	}
	if sealed == nil {
		return nil, fmt.Errorf("this node holds commit %s but not the cluster's shared keys (%s is missing); "+
			"move %s aside and restart the agent to join again", commit.ID(), m.root.Path(clusterkeys.File), m.root.Path(bootstrap.AgentStateFile))
	}
	shared, err := clusterkeys.Open(m.cfg, sealed)
	if err != nil {
		return nil, err
	}
	if err := shared.Install(m.root, m.cfg); err != nil {
		return nil, err
	}
	want := &nodestate.EtcdDecision{State: bootstrap.EtcdStartNew, Token: commit.Token, Peers: commit.InitialCluster(), DecidedAt: now}
	if e := m.store.Locked().Etcd; e == nil || e.State != want.State || e.Token != want.Token {
		m.store.Locked().Etcd = want
		if err := m.store.SaveLocked(); err != nil {
			return nil, err
		}
	}
	return m.store.Locked().Etcd, nil
}

// join asks a member's agent to let this node in; the reconciler next to
// the etcd leader adds it as a learner when the cluster needs a member.
func (m *Membership) join(ctx context.Context, j quorum.Join, now time.Time) (*nodestate.EtcdDecision, error) {
	m.store.Lock()
	if now.Sub(m.lastJoin) < 2*time.Second {
		m.store.Unlock()
		return nil, nil
	}
	m.lastJoin = now
	via := j.Via[m.joinNext%len(j.Via)]
	m.joinNext++
	self := m.self()
	m.store.Unlock()

	req := quorum.JoinRequest{Member: self.Member, ClusterName: self.ClusterName, Expect: self.Expect}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rep joinReply
	if err := m.call(cctx, via.ID, methodJoin, req, &rep); err != nil {
		m.cond.Set(status.ReasonJoining, fmt.Sprintf("joining etcd cluster %x: %s did not answer: %v", j.ClusterID, via.Name, err))
		return nil, nil
	}
	switch rep.Verdict {
	case quorum.JoinRefused:
		m.log.Warn("etcd join refused", "by", via.Name, "reason", rep.Reason)
		m.cond.Refuse(status.ReasonRefused, fmt.Sprintf("refused by %s: %s", via.Name, rep.Reason))
		return nil, nil
	case quorum.JoinWait:
		reason := status.ReasonJoining
		if rep.Standby {
			reason = status.ReasonStandby
		}
		m.cond.Set(reason, fmt.Sprintf("etcd cluster %x (asked %s): %s", j.ClusterID, via.Name, rep.Reason))
		_, _ = m.store.SetPhase(waitPhase(rep.Standby))
		return nil, nil
	case quorum.JoinStart:
	default:
		return nil, nil
	}
	shared, err := clusterkeys.Open(m.cfg, rep.Shared)
	if err != nil {
		m.cond.Set(status.ReasonJoining, fmt.Sprintf("joining via %s: %v", via.Name, err))
		return nil, nil
	}
	m.store.Lock()
	defer m.store.Unlock()
	if err := clusterkeys.SaveSealed(m.root, rep.Shared); err != nil {
		return nil, err
	}
	if err := shared.Install(m.root, m.cfg); err != nil {
		// Another cluster's CA on this node: an operator must decide.
		m.cond.Refuse(status.ReasonRefused, "cannot join: "+err.Error())
		return nil, nil
	}
	m.store.Locked().Etcd = &nodestate.EtcdDecision{State: bootstrap.EtcdStartExisting, Peers: rep.InitialCluster, DecidedAt: now}
	if err := m.store.SaveLocked(); err != nil {
		return nil, err
	}
	m.log.Info("joining etcd as a learner", "via", via.Name, "cluster", etcdclient.HexID(j.ClusterID))
	return m.store.Locked().Etcd, nil
}

// setAsideLocked moves this node's etcd data (and, when its keys came
// from a cluster that never formed, /etc/kubernetes) aside, renamed and
// never deleted, and starts the node over as a fresh one.
func (m *Membership) setAsideLocked(ctx context.Context, reason string, keys bool) error {
	m.log.Warn("moving etcd data aside", "reason", reason)
	if m.sd != nil {
		sctx, cancel := context.WithTimeout(ctx, units.JobWait)
		err := m.sd.Stop(sctx, bootstrap.EtcdUnit)
		cancel()
		if err != nil {
			return fmt.Errorf("stop etcd before moving its data aside: %w", err)
		}
	}
	suffix := ".aside-" + strconv.FormatInt(m.now().Unix(), 10)
	moves := []string{bootstrap.EtcdDataDir}
	if keys {
		// The keys came from a commit that never formed: its CA, and
		// the pin of it, are no one's.
		moves = append(moves, bootstrap.KubernetesDir, clusterkeys.File, token.DefaultPinPath)
	}
	for _, p := range moves {
		if _, err := m.root.Stat(p); err != nil {
			continue
		}
		if err := m.root.Rename(p, p+suffix); err != nil {
			return fmt.Errorf("move %s aside: %w", p, err)
		}
		m.log.Warn("moved aside", "from", m.root.Path(p), "to", m.root.Path(p+suffix))
	}
	m.store.Locked().Quorum = quorum.State{}
	m.store.Locked().Etcd = nil
	m.store.Locked().SetPhase(nodestate.PhaseWaiting, m.now())
	m.mu.Lock()
	m.localClusterID = 0
	m.mu.Unlock()
	return m.store.SaveLocked()
}

// SetAside moves a removed member's etcd data aside and resets its
// quorum state; its keys stay, since they are the running cluster's.
func (m *Membership) SetAside(ctx context.Context, reason string) error {
	m.store.Lock()
	defer m.store.Unlock()
	return m.setAsideLocked(ctx, reason, false)
}

// waitReasons are the status reasons of the formation's waits.
var waitReasons = map[quorum.WaitReason]status.Reason{
	quorum.WaitForNodes:   status.ReasonWaitForNodes,
	quorum.WaitForSettle:  status.ReasonWaitForSettle,
	quorum.WaitForSeed:    status.ReasonWaitForSeed,
	quorum.WaitForPromise: status.ReasonWaitForPromise,
	quorum.WaitForRetry:   status.ReasonWaitForRetry,
	quorum.WaitForCluster: status.ReasonWaitForCluster,
	quorum.WaitAsStandby:  status.ReasonStandby,
}

// waitReason is the status reason of a formation wait.
func waitReason(r quorum.WaitReason) status.Reason {
	if reason, ok := waitReasons[r]; ok {
		return reason
	}
	return status.ReasonWaitForNodes
}

// waitPhase is the phase of a node waiting outside etcd.
func waitPhase(standby bool) nodestate.Phase {
	if standby {
		return nodestate.PhaseStandby
	}
	return nodestate.PhaseWaiting
}
