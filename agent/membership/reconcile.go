package membership

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/units"
)

// reconcileState is what the reconciler remembers between turns, in
// memory: an agent that starts over (or a new leader's agent) begins with
// nothing, which only makes it more careful (a member must be seen
// inactive for a while again before it counts as gone).
type reconcileState struct {
	inactive   map[uint64]time.Time
	lastChange time.Time
	last       string
	alert      string
}

// etcdMembers reads the member list through the local member and probes
// every started member's client URL, so each member's Active says whether
// its etcd answers right now.
func (m *Membership) etcdMembers(ctx context.Context) ([]quorum.EtcdMember, error) {
	cli, err := m.etcd.Get(m.root, m.cfg)
	if err != nil {
		return nil, err
	}
	v, err := etcdclient.ReadView(ctx, cli)
	return v.Members, err
}

// next to the etcd leader acts; the others only watch.
func (m *Membership) reconcile(ctx context.Context) {
	cli, err := m.etcd.Get(m.root, m.cfg)
	if err != nil {
		return
	}
	v, err := etcdclient.ReadView(ctx, cli)
	m.mu.Lock()
	if err != nil {
		m.localClusterID, m.leader = 0, false
	} else {
		m.localClusterID, m.leader = v.ClusterID, v.LeaderLocal
	}
	m.mu.Unlock()
	if err != nil {
		return
	}
	// Every member's agent tracks since when each member is unreachable,
	// not only the leader's: when leadership moves, the new reconciler
	// knows how long a member has been gone.
	now := m.now()
	rec := m.rec
	for i := range v.Members {
		em := &v.Members[i]
		if em.Active {
			delete(rec.inactive, em.ID)
			continue
		}
		if _, ok := rec.inactive[em.ID]; !ok {
			rec.inactive[em.ID] = now
		}
		em.InactiveSince = rec.inactive[em.ID]
	}
	if !v.LeaderLocal {
		return
	}
	a := quorum.Reconcile(quorum.ReconcileInput{
		Self: m.self(), Members: v.Members, Peers: m.peersNow(),
		LastChange: rec.lastChange, Now: now, Timing: m.timing,
	})
	if s := a.String(); s != rec.last {
		rec.last = s
		m.log.Info("etcd membership", "action", s)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch a := a.(type) {
	case quorum.Alert:
		m.mu.Lock()
		rec.alert = a.Reason
		m.mu.Unlock()
		m.log.Warn("etcd membership needs an operator", "reason", a.Reason)
		return
	case quorum.AddLearner:
		_, err = cli.MemberAddAsLearner(actx, []string{a.Member.PeerURL})
	case quorum.Promote:
		_, err = cli.MemberPromote(actx, a.MemberID)
	case quorum.Remove:
		if c := a.Confirm; c != nil {
			if why, ok := m.confirmWithoutData(actx, *c); !ok {
				m.mu.Lock()
				rec.alert = fmt.Sprintf("member %s: %s; not removed", a.Name, why)
				m.mu.Unlock()
				m.log.Warn("etcd membership needs an operator", "reason", rec.alert)
				return
			}
		}
		_, err = cli.MemberRemove(actx, a.MemberID)
	default:
		m.mu.Lock()
		rec.alert = ""
		m.mu.Unlock()
		return
	}
	m.mu.Lock()
	rec.alert = ""
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("etcd membership change refused", "action", a.String(), "err", err)
		return
	}
	rec.lastChange = now
	m.mu.Lock()
	m.changes[actionName(a)]++
	m.mu.Unlock()
	m.log.Info("etcd membership changed", "action", a.String())
}

// Removed reports whether this member was removed from its cluster. It
// must be called without the store's lock, which it takes.
// etcd's journal saying so is only a hint (anyone who reaches etcd's
// ports can have etcd log a rejected client's names); the fact is the
// member list, read through the other members: it no longer lists this
// node's peer URL. A list that cannot be read removes nothing.
func (m *Membership) Removed(ctx context.Context) bool {
	if !m.journalSaysRemoved(ctx) {
		return false
	}
	listed, err := m.listed(ctx)
	if err != nil {
		m.log.Warn("etcd's journal says this member was removed, but the member list cannot be read to confirm it", "err", err)
		return false
	}
	if listed {
		m.log.Warn("etcd's journal says this member was removed, but the member list still lists it: nothing done")
	}
	return !listed
}

// journalSaysRemoved reports whether etcd, restarting or stopped, logged
// that this member was removed.
func (m *Membership) journalSaysRemoved(ctx context.Context) bool {
	if m.sd == nil {
		return false
	}
	st, err := m.sd.Status(ctx, bootstrap.EtcdUnit)
	if err != nil || st.ActiveState == units.Active && st.NRestarts == 0 {
		return false
	}
	lines, _ := m.sd.Journal(ctx, bootstrap.EtcdUnit, 50)
	for _, l := range lines {
		if strings.Contains(l, "has been permanently removed from the cluster") || strings.Contains(l, "member was removed") {
			return true
		}
	}
	return false
}

// NotListed reports whether the cluster's member list, read through the
// other members of this node's decision (with quorum), does not list this
// node's member: it was removed (by the reconciler, or by a recover on a
// survivor). An unreadable list is not "removed".
func (m *Membership) NotListed(ctx context.Context) bool {
	listed, err := m.listed(ctx)
	if err != nil {
		m.log.Debug("cannot read the member list through the other members", "err", err)
	}
	return err == nil && !listed
}

// listed reports whether the cluster's member list, as the other
// members of this node's decision serve it (with quorum), lists this
// node's peer URL.
func (m *Membership) listed(ctx context.Context) (bool, error) {
	peerURLs, err := m.memberList(ctx)
	if err != nil {
		return false, err
	}
	self := bootstrap.EtcdPeerURL(m.cfg.AdvertiseAddress, m.cfg.Etcd.PeerPort)
	for _, urls := range peerURLs {
		if slices.Contains(urls, self) {
			return true, nil
		}
	}
	return false, nil
}

// peersMemberList reads the member list (each started member's peer
// URLs) through the other members of this node's decision.
func (m *Membership) peersMemberList(ctx context.Context) ([][]string, error) {
	dec := m.store.Etcd()
	if dec == nil {
		return nil, errors.New("this node has no etcd membership")
	}
	others := dec.Membership()
	others.Peers = maps.Clone(others.Peers)
	delete(others.Peers, m.cfg.NodeName)
	endpoints := others.ClientURLs(m.cfg.Etcd.ClientPort)
	if len(endpoints) == 0 {
		return nil, errors.New("this member has no peers to ask")
	}
	tlsCfg, err := etcdclient.ClientTLS(m.root)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsCfg, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(lctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list from %s: %w", strings.Join(endpoints, ", "), err)
	}
	out := make([][]string, 0, len(resp.Members))
	for _, mb := range resp.Members {
		// A member that never started (no name yet) is a learner added
		// for a new node at this peer URL, not this node's old member:
		// a node that lost its data joins into it.
		if mb.Name == "" {
			continue
		}
		out = append(out, mb.PeerURLs)
	}
	return out, nil
}

// actionName is a membership change's kind, for metrics.
func actionName(a quorum.Action) string {
	switch a.(type) {
	case quorum.AddLearner:
		return "add-learner"
	case quorum.Promote:
		return "promote"
	case quorum.Remove:
		return "remove"
	}
	return "other"
}

// maintain is one turn of a control-plane node's upkeep once its etcd
// runs: refresh the gossip metadata (the cluster ID joiners look for),
// forward the commit to members that missed it, run the reconciler, and
// notice when this member was removed or its commit orphaned: its etcd
// data is then set aside, and the node starts over.
func (m *Membership) maintain(ctx context.Context) {
	m.reconcile(ctx)
	m.publishMeta()
	// Before the store's lock: reading the member list takes it.
	removedNow := m.Removed(ctx)
	peers := m.peersNow()
	now := m.now()
	m.store.Lock()
	local := m.localLocked(peers)
	dec := quorum.Decide(quorum.Input{Local: local, Peers: peers, Now: now, Joined: m.joined, Timing: m.timing})
	if local.ClusterID == 0 {
		// The commit's cluster has no leader yet: members that missed
		// the commit are needed. Once it runs, latecomers join it.
		m.forwardLocked(ctx, dec.Forward, now)
	}
	if aside, ok := dec.Step.(quorum.SetAside); ok {
		// Confirmed without the lock: the members' handlers may ask us.
		m.store.Unlock()
		if !m.confirmAside(ctx, aside) {
			return
		}
		m.store.Lock()
		defer m.store.Unlock()
		if err := m.setAsideLocked(ctx, aside.Reason, true); err != nil {
			m.log.Error("set aside", "err", err)
		}
		return
	}
	defer m.store.Unlock()
	if removedNow {
		removed, reason, next := quorum.OnRemoved(local, quorum.RemovalEvidence{EtcdSaysRemoved: true})
		if removed {
			m.log.Warn("this etcd member was removed from the cluster", "reason", reason)
			if err := m.setAsideLocked(ctx, reason, false); err != nil {
				m.log.Error("set aside", "err", err)
				return
			}
			m.store.Locked().Quorum = next
			_ = m.store.SaveLocked()
			return
		}
	}
}
