package membership

import (
	"context"
	"errors"
	"time"

	"github.com/ecom-platform/ecom-agent/clusterkeys"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/quorum"
)

// The RPC handlers.

// peersNow is this node's gossip view as the quorum protocol reads it.
func (m *Membership) peersNow() []quorum.Peer {
	peers := quorumPeers(m.cfg, m.Members())
	if f := m.hooks.ViewFilter; f != nil {
		peers = f(peers)
	}
	return peers
}

func (m *Membership) handlePromise(_ context.Context, r peer.Request) (any, error) {
	if !m.cfg.IsControlPlane() {
		return nil, peer.Errorf(peer.CodeRefused, "%s is a worker", m.cfg.NodeName)
	}
	var req quorum.PromiseRequest
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	peers := m.peersNow()
	m.store.Lock()
	defer m.store.Unlock()
	local := m.localLocked(peers)
	grant, reason, next := quorum.DecidePromise(local, req, m.now())
	if err := m.saveQuorumLocked(next); err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "persist the promise: %v", err)
	}
	m.log.Info("quorum: promise request", "from", r.NodeName, "proposal", req.Proposal.String(), "granted", grant, "reason", reason)
	return quorum.ReplyTo(req, local.Self.ID, grant, reason, next), nil
}

func (m *Membership) handleRelease(_ context.Context, r peer.Request) (any, error) {
	var rel quorum.PromiseRelease
	if err := r.Decode(&rel); err != nil {
		return nil, err
	}
	if quorum.NodeID(r.NodeID) != rel.Proposal.Seed {
		return nil, peer.Errorf(peer.CodeRefused, "only a proposal's seed releases it")
	}
	peers := m.peersNow()
	m.store.Lock()
	defer m.store.Unlock()
	next := quorum.ReleasePromise(m.localLocked(peers), rel, m.now())
	if err := m.saveQuorumLocked(next); err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "persist the release: %v", err)
	}
	m.poke()
	return nil, nil
}

func (m *Membership) handleReleaseQuery(_ context.Context, r peer.Request) (any, error) {
	var q quorum.Proposal
	if err := r.Decode(&q); err != nil {
		return nil, err
	}
	peers := m.peersNow()
	m.store.Lock()
	defer m.store.Unlock()
	var round *quorum.Proposal
	if m.round != nil {
		round = &m.round.Proposal
	}
	rel, ok := quorum.AnswerRelease(m.localLocked(peers), round, q)
	if !ok {
		return nil, peer.Errorf(peer.CodeRefused, "%s is not released", q.String())
	}
	return rel, nil
}

func (m *Membership) handleCommit(ctx context.Context, r peer.Request) (any, error) {
	if !m.cfg.IsControlPlane() {
		return nil, peer.Errorf(peer.CodeRefused, "%s is a worker", m.cfg.NodeName)
	}
	var msg commitMessage
	if err := r.Decode(&msg); err != nil {
		return nil, err
	}
	if _, err := clusterkeys.Open(m.cfg, msg.Shared); err != nil {
		return nil, peer.Errorf(peer.CodeRefused, "commit %s: %v", msg.Commit.ID(), err)
	}
	peers := m.peersNow()
	m.store.Lock()
	local := m.localLocked(peers)
	if held := local.State.Commit; held != nil && held.ID() == msg.Commit.ID() {
		m.store.Unlock()
		return nil, nil
	}
	st, err := quorum.AcceptCommit(local, msg.Commit)
	var blocked *quorum.BlockedError
	if errors.As(err, &blocked) {
		m.store.Unlock()
		m.askReleases(ctx, blocked.By)
		return nil, peer.Errorf(peer.CodeNotReady, "%v; asked the seeds to release, send it again", err)
	}
	if err != nil {
		m.store.Unlock()
		return nil, peer.Errorf(peer.CodeRefused, "%v", err)
	}
	defer m.store.Unlock()
	if err := clusterkeys.SaveSealed(m.root, msg.Shared); err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "persist the shared keys: %v", err)
	}
	if err := m.saveQuorumLocked(st); err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "persist the commit: %v", err)
	}
	m.log.Info("quorum: accepted commit", "commit", msg.Commit.ID(), "from", r.NodeName, "members", msg.Commit.Proposal.String())
	m.poke()
	return nil, nil
}

// askReleases asks the seeds of proposals that block a commit whether
// they gave them up, and applies the releases they send.
func (m *Membership) askReleases(ctx context.Context, by []quorum.Proposal) {
	for _, q := range by {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var rel quorum.PromiseRelease
		err := m.call(cctx, q.Seed, methodReleaseQuery, q, &rel)
		cancel()
		if err != nil {
			continue
		}
		peers := m.peersNow()
		m.store.Lock()
		next := quorum.ReleasePromise(m.localLocked(peers), rel, m.now())
		if err := m.saveQuorumLocked(next); err != nil {
			m.log.Error("persist a release", "err", err)
		}
		m.store.Unlock()
	}
}

func (m *Membership) handleJoin(ctx context.Context, r peer.Request) (any, error) {
	var req quorum.JoinRequest
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	if !m.store.Phase().EtcdServing() {
		return nil, peer.Errorf(peer.CodeNotReady, "etcd on %s is not ready", m.cfg.NodeName)
	}
	members, err := m.etcdMembers(ctx)
	if err != nil {
		return nil, peer.Errorf(peer.CodeNotReady, "read the etcd member list on %s: %v", m.cfg.NodeName, err)
	}
	ans := quorum.AnswerJoin(m.self(), members, req)
	rep := joinReply{Verdict: ans.Verdict, Reason: ans.Reason, Standby: ans.Standby, InitialCluster: ans.InitialCluster}
	if ans.Verdict == quorum.JoinStart {
		if rep.Shared, err = m.sealedShared(); err != nil {
			return nil, peer.Errorf(peer.CodeUnavailable, "%v", err)
		}
	}
	m.log.Info("etcd join request", "from", r.NodeName, "verdict", ans.Reason)
	m.poke()
	return rep, nil
}
