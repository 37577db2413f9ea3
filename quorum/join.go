package quorum

import (
	"fmt"
	"slices"
)

// JoinRequest is a node's request, to a member's agent, to be let into
// the running cluster (the Join step).
type JoinRequest struct {
	Member      Member
	ClusterName string
	Expect      int
}

// JoinVerdict is the kind of a JoinAnswer.
type JoinVerdict int

// The answers to a JoinRequest.
const (
	// JoinRefused: the node disagrees with the cluster on its name or
	// expect; it must not join.
	JoinRefused JoinVerdict = iota + 1
	// JoinWait: the node is not a member (yet); the reconciler adds it as
	// a learner when a voter is missing. Meanwhile it is standby.
	JoinWait
	// JoinStart: etcd lists a member for the node that has not started:
	// start etcd with initial-cluster-state "existing".
	JoinStart
)

// JoinAnswer is a member agent's answer to a JoinRequest.
type JoinAnswer struct {
	Verdict JoinVerdict
	Reason  string
	// Standby is set with JoinWait when the node is simply not needed
	// now (it is no member and none is listed for its host): it waits
	// as standby until the reconciler adds it.
	Standby bool
	// InitialCluster is, for JoinStart, etcd's initial-cluster (member
	// name to peer URL). etcd matches members by peer URL when it joins,
	// so members that never started get a placeholder name.
	InitialCluster map[string]string
}

// AnswerJoin answers a JoinRequest from the member list of the running
// cluster (read through its leader). It never changes the membership
// itself: only Reconcile does, one change at a time, so joins that arrive
// together are serialized there.
func AnswerJoin(self Self, members []EtcdMember, req JoinRequest) JoinAnswer {
	peer := Peer{Member: req.Member, ControlPlane: true, ClusterName: req.ClusterName, Expect: req.Expect}
	if r, bad := Mismatch(self, peer); bad {
		return JoinAnswer{Verdict: JoinRefused, Reason: r.String()}
	}
	i := slices.IndexFunc(members, func(m EtcdMember) bool { return slices.Contains(m.PeerURLs, req.Member.PeerURL) })
	if i < 0 {
		if j := slices.IndexFunc(members, func(m EtcdMember) bool { return m.Name == req.Member.Name }); j >= 0 {
			return JoinAnswer{Verdict: JoinWait, Reason: fmt.Sprintf(
				"etcd still lists the old member %s (%x) of this host; it is removed first", req.Member.Name, members[j].ID)}
		}
		return JoinAnswer{Verdict: JoinWait, Standby: true, Reason: "standby: not a member; control-plane nodes are added one at a time, as learners, when a voter is missing"}
	}
	if m := members[i]; m.Started {
		return JoinAnswer{Verdict: JoinWait, Reason: fmt.Sprintf(
			"etcd lists a started member %s (%x) at this peer URL, but this node has no etcd data: it is removed first", m.Name, m.ID)}
	}
	ic := map[string]string{}
	for j, m := range members {
		name := m.Name
		switch {
		case j == i:
			name = req.Member.Name
		case name == "":
			name = fmt.Sprintf("unstarted-%x", m.ID)
		}
		if len(m.PeerURLs) > 0 {
			ic[name] = m.PeerURLs[0]
		}
	}
	return JoinAnswer{Verdict: JoinStart, Reason: fmt.Sprintf("member %x was added for this node: start etcd existing", members[i].ID), InitialCluster: ic}
}

// RemovalEvidence is what a member's node learned about its membership:
// etcd's own word, or the running cluster's member list.
type RemovalEvidence struct {
	// EtcdSaysRemoved reports that etcd stopped, or refused to start,
	// because the member was removed from the cluster.
	EtcdSaysRemoved bool
	// LocalMemberID is the member ID of the local etcd data, 0 if unknown.
	LocalMemberID uint64
	// ClusterID and Members are the running cluster's ID and member list,
	// read through a peer; zero and nil if not read.
	ClusterID uint64
	Members   []EtcdMember
}

// OnRemoved decides whether the local node's etcd data belongs to a member
// the cluster has removed. If so, the node moves the etcd data directory
// aside (renamed, never deleted), persists next (a fresh quorum state) and
// starts over: Decide then has it join as a learner. Data of another
// cluster is never touched: that is a conflict for an operator.
func OnRemoved(local LocalState, ev RemovalEvidence) (removed bool, reason string, next State) {
	if !local.HasEtcdState {
		return false, "no etcd data on disk", local.State.clone()
	}
	if ev.EtcdSaysRemoved {
		return true, "etcd reports this member was removed from the cluster", State{}
	}
	if ev.ClusterID == 0 || ev.Members == nil || local.ClusterID == 0 || ev.LocalMemberID == 0 {
		return false, "no evidence of removal", local.State.clone()
	}
	if ev.ClusterID != local.ClusterID {
		return false, fmt.Sprintf("the running cluster %x is not this node's cluster %x; the data is left alone", ev.ClusterID, local.ClusterID), local.State.clone()
	}
	if slices.ContainsFunc(ev.Members, func(m EtcdMember) bool { return m.ID == ev.LocalMemberID }) {
		return false, fmt.Sprintf("cluster %x lists member %x", ev.ClusterID, ev.LocalMemberID), local.State.clone()
	}
	return true, fmt.Sprintf("cluster %x no longer lists member %x", ev.ClusterID, ev.LocalMemberID), State{}
}
