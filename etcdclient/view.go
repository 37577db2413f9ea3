package etcdclient

import (
	"context"
	"fmt"
	"time"

	"github.com/ecom-platform/ecom-agent/quorum"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// View is the etcd cluster as the local member sees it.
type View struct {
	ClusterID   uint64
	LocalID     uint64
	LeaderID    uint64
	LeaderLocal bool
	Members     []quorum.EtcdMember
}

// ReadView reads the member list through the local member and probes
// every started member's client URL, so each member's Active says
// whether its etcd answers right now.
func ReadView(ctx context.Context, cli *clientv3.Client) (View, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, cli.Endpoints()[0])
	if err != nil {
		return View{}, fmt.Errorf("etcd status: %w", err)
	}
	if st.Leader == 0 {
		return View{}, fmt.Errorf("the local etcd member sees no leader")
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return View{}, fmt.Errorf("etcd member list: %w", err)
	}
	v := View{ClusterID: st.Header.ClusterId, LocalID: st.Header.MemberId, LeaderID: st.Leader,
		LeaderLocal: st.Leader == st.Header.MemberId}
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
	answers, _ := ProbeMembers(ctx, cli, urls)
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
		v.Members = append(v.Members, em)
	}
	return v, nil
}
