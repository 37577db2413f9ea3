package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/quorum"
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

// etcdView is the etcd cluster as the local member sees it.
type etcdView struct {
	clusterID   uint64
	localID     uint64
	leaderID    uint64
	leaderLocal bool
	members     []quorum.EtcdMember
}

// etcdMembers reads the member list through the local member and probes
// every started member's client URL, so each member's Active says whether
// its etcd answers right now.
func (d *Daemon) etcdMembers(ctx context.Context) ([]quorum.EtcdMember, etcdView, error) {
	cli, err := d.etcd.get(d.d.Root, d.d.Config)
	if err != nil {
		return nil, etcdView{}, err
	}
	v, err := readEtcdView(ctx, cli)
	return v.members, v, err
}

func readEtcdView(ctx context.Context, cli *clientv3.Client) (etcdView, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, cli.Endpoints()[0])
	if err != nil {
		return etcdView{}, fmt.Errorf("etcd status: %w", err)
	}
	if st.Leader == 0 {
		return etcdView{}, fmt.Errorf("the local etcd member sees no leader")
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return etcdView{}, fmt.Errorf("etcd member list: %w", err)
	}
	v := etcdView{clusterID: st.Header.ClusterId, localID: st.Header.MemberId, leaderID: st.Leader,
		leaderLocal: st.Leader == st.Header.MemberId}
	var leaderIndex uint64
	type probe struct {
		ok    bool
		index uint64
	}
	// The local member has answered already; the others are asked.
	urls := make([]string, len(ml.Members))
	for i, m := range ml.Members {
		if m.ID != st.Header.MemberId && len(m.ClientURLs) > 0 {
			urls[i] = m.ClientURLs[0]
		}
	}
	answers, _ := probeMembers(ctx, cli, urls)
	probes := make([]probe, len(ml.Members))
	for i, m := range ml.Members {
		switch {
		case m.ID == st.Header.MemberId:
			probes[i] = probe{true, st.RaftIndex}
		case answers[i] != nil:
			probes[i] = probe{true, answers[i].RaftIndex}
		}
	}
	for i, m := range ml.Members {
		if m.ID == st.Leader {
			leaderIndex = probes[i].index
		}
	}
	for i, m := range ml.Members {
		em := quorum.EtcdMember{
			ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner,
			Started: m.Name != "", Active: probes[i].ok,
		}
		// etcd promotes a learner whose log is within 10% of the leader's.
		em.ReadyToPromote = m.IsLearner && probes[i].ok && leaderIndex > 0 && probes[i].index*10 >= leaderIndex*9
		v.members = append(v.members, em)
	}
	return v, nil
}

// reconcile runs one turn of the membership reconciler. Only the agent
// next to the etcd leader acts; the others only watch.
func (c *cluster) reconcile(ctx context.Context) {
	cli, err := c.d.etcd.get(c.d.d.Root, c.cfg)
	if err != nil {
		return
	}
	v, err := readEtcdView(ctx, cli)
	c.mu.Lock()
	if err != nil {
		c.localClusterID, c.leader = 0, false
	} else {
		c.localClusterID, c.leader = v.clusterID, v.leaderLocal
	}
	c.mu.Unlock()
	if err != nil {
		return
	}
	// Every member's agent tracks since when each member is unreachable,
	// not only the leader's: when leadership moves, the new reconciler
	// knows how long a member has been gone.
	now := c.d.d.Now()
	rec := c.rec
	for i := range v.members {
		m := &v.members[i]
		if m.Active {
			delete(rec.inactive, m.ID)
			continue
		}
		if _, ok := rec.inactive[m.ID]; !ok {
			rec.inactive[m.ID] = now
		}
		m.InactiveSince = rec.inactive[m.ID]
	}
	if !v.leaderLocal {
		return
	}
	a := quorum.Reconcile(quorum.ReconcileInput{
		Self: c.self(), Members: v.members, Peers: c.peersNow(),
		LastChange: rec.lastChange, Now: now, Timing: c.timing,
	})
	if s := a.String(); s != rec.last {
		rec.last = s
		c.d.d.Log.Info("etcd membership", "action", s)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch a := a.(type) {
	case quorum.Alert:
		c.mu.Lock()
		rec.alert = a.Reason
		c.mu.Unlock()
		c.d.d.Log.Warn("etcd membership needs an operator", "reason", a.Reason)
		return
	case quorum.AddLearner:
		_, err = cli.MemberAddAsLearner(actx, []string{a.Member.PeerURL})
	case quorum.Promote:
		_, err = cli.MemberPromote(actx, a.MemberID)
	case quorum.Remove:
		_, err = cli.MemberRemove(actx, a.MemberID)
	default:
		c.mu.Lock()
		rec.alert = ""
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	rec.alert = ""
	c.mu.Unlock()
	if err != nil {
		c.d.d.Log.Warn("etcd membership change refused", "action", a.String(), "err", err)
		return
	}
	rec.lastChange = now
	c.d.countChange(actionName(a))
	c.d.d.Log.Info("etcd membership changed", "action", a.String())
}

// removedFromCluster reports whether etcd's journal says this member was
// removed from its cluster.
func (d *Daemon) removedFromCluster(ctx context.Context) bool {
	if d.sd == nil {
		return false
	}
	st, err := d.sd.Status(ctx, bootstrap.EtcdUnit)
	if err != nil || st.ActiveState == "active" && st.NRestarts == 0 {
		return false
	}
	lines, _ := d.sd.Journal(ctx, bootstrap.EtcdUnit, 50)
	for _, l := range lines {
		if strings.Contains(l, "has been permanently removed from the cluster") || strings.Contains(l, "member was removed") {
			return true
		}
	}
	return false
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
