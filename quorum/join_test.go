package quorum

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAnswerJoin(t *testing.T) {
	req := func(i int) JoinRequest { return JoinRequest{Member: member(i), ClusterName: "prod", Expect: 3} }
	running := []EtcdMember{etcdMember(1), etcdMember(2), etcdMember(3)}
	// cp-4 added as a learner for the joining node: not started, no name.
	added := EtcdMember{ID: 0x104, PeerURLs: []string{member(4).PeerURL}, IsLearner: true}
	tests := []struct {
		name    string
		members []EtcdMember
		req     JoinRequest
		want    JoinAnswer
		reason  string
	}{{
		name:    "another cluster name: refused",
		members: running,
		req:     JoinRequest{Member: member(4), ClusterName: "staging", Expect: 3},
		want:    JoinAnswer{Verdict: JoinRefused},
		reason:  `refuse peer cp-4: cluster name "staging" != "prod"`,
	}, {
		name:    "another expect: refused",
		members: running,
		req:     JoinRequest{Member: member(4), ClusterName: "prod", Expect: 5},
		want:    JoinAnswer{Verdict: JoinRefused},
		reason:  "refuse peer cp-4: expect 5 != 3",
	}, {
		name:    "a mismatch is refused even for a node that is a member",
		members: []EtcdMember{etcdMember(1), etcdMember(2), added},
		req:     JoinRequest{Member: member(4), ClusterName: "prod", Expect: 5},
		want:    JoinAnswer{Verdict: JoinRefused},
		reason:  "expect 5 != 3",
	}, {
		name:    "not a member: wait as standby",
		members: running,
		req:     req(4),
		want:    JoinAnswer{Verdict: JoinWait, Standby: true},
		reason:  "standby: not a member",
	}, {
		name: "an old member of the same name at another address (a reinstalled host): wait until it is removed",
		members: []EtcdMember{etcdMember(1), etcdMember(2),
			{ID: 0x103, Name: "cp-4", PeerURLs: []string{"https://10.9.9.9:2380"}, Started: true}},
		req:    req(4),
		want:   JoinAnswer{Verdict: JoinWait},
		reason: "etcd still lists the old member cp-4 (103) of this host",
	}, {
		name:    "a started member at its peer URL, but the node has no data: wait until it is removed",
		members: []EtcdMember{etcdMember(1), etcdMember(2), etcdMember(3)},
		req:     req(3),
		want:    JoinAnswer{Verdict: JoinWait},
		reason:  "etcd lists a started member cp-3 (103) at this peer URL",
	}, {
		name:    "listed unstarted: start existing with the initial cluster",
		members: []EtcdMember{etcdMember(1), etcdMember(2), added},
		req:     req(4),
		want: JoinAnswer{Verdict: JoinStart, InitialCluster: map[string]string{
			"cp-1": member(1).PeerURL, "cp-2": member(2).PeerURL, "cp-4": member(4).PeerURL}},
		reason: "member 104 was added for this node",
	}, {
		name: "a founding member that never started: start existing, under its own name",
		members: []EtcdMember{etcdMember(1), etcdMember(2),
			{ID: 0x103, Name: "cp-3", PeerURLs: []string{member(3).PeerURL}}},
		req: req(3),
		want: JoinAnswer{Verdict: JoinStart, InitialCluster: map[string]string{
			"cp-1": member(1).PeerURL, "cp-2": member(2).PeerURL, "cp-3": member(3).PeerURL}},
		reason: "member 103 was added",
	}, {
		name: "other unstarted members get placeholder names",
		members: []EtcdMember{etcdMember(1), etcdMember(2), added,
			{ID: 0xabc, PeerURLs: []string{member(5).PeerURL}, IsLearner: true}},
		req: req(4),
		want: JoinAnswer{Verdict: JoinStart, InitialCluster: map[string]string{
			"cp-1": member(1).PeerURL, "cp-2": member(2).PeerURL, "cp-4": member(4).PeerURL,
			"unstarted-abc": member(5).PeerURL}},
		reason: "start etcd existing",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AnswerJoin(self(1), tt.members, tt.req)
			reason := got.Reason
			got.Reason = ""
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AnswerJoin (-want +got):\n%s", diff)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q lacks %q", reason, tt.reason)
			}
		})
	}
}

func TestOnRemoved(t *testing.T) {
	const ours, theirs = 0xc1, 0xc2
	st := promised(proposal(1, 1, 2, 3))
	c := commitOf(proposal(1, 1, 2, 3))
	st.Commit = &c
	withData := LocalState{Self: self(2), HasEtcdState: true, ClusterID: ours, State: st}
	listed := []EtcdMember{etcdMember(1), etcdMember(2), etcdMember(3)}
	without := []EtcdMember{etcdMember(1), etcdMember(3), etcdMember(4)}
	tests := []struct {
		name    string
		local   LocalState
		ev      RemovalEvidence
		removed bool
		reason  string
	}{
		{"etcd says removed", withData, RemovalEvidence{EtcdSaysRemoved: true}, true, "etcd reports this member was removed"},
		{"the cluster no longer lists the member", withData, RemovalEvidence{LocalMemberID: 0x102, ClusterID: ours, Members: without}, true, "cluster c1 no longer lists member 102"},
		{"the cluster lists the member", withData, RemovalEvidence{LocalMemberID: 0x102, ClusterID: ours, Members: listed}, false, "cluster c1 lists member 102"},
		{"another cluster that does not list the member: data left alone", withData, RemovalEvidence{LocalMemberID: 0x102, ClusterID: theirs, Members: without}, false, "is not this node's cluster"},
		{"no evidence at all", withData, RemovalEvidence{}, false, "no evidence of removal"},
		{"member list not read", withData, RemovalEvidence{LocalMemberID: 0x102, ClusterID: ours}, false, "no evidence"},
		{"cluster ID not read", withData, RemovalEvidence{LocalMemberID: 0x102, Members: without}, false, "no evidence"},
		{"local member ID unknown", withData, RemovalEvidence{ClusterID: ours, Members: without}, false, "no evidence"},
		{"local cluster ID unknown", LocalState{Self: self(2), HasEtcdState: true, State: st}, RemovalEvidence{LocalMemberID: 0x102, ClusterID: ours, Members: without}, false, "no evidence"},
		{"no etcd data on disk: nothing to set aside", LocalState{Self: self(2), State: st}, RemovalEvidence{EtcdSaysRemoved: true, LocalMemberID: 0x102, ClusterID: ours, Members: without}, false, "no etcd data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.local.State.clone()
			removed, reason, next := OnRemoved(tt.local, tt.ev)
			if removed != tt.removed || !strings.Contains(reason, tt.reason) {
				t.Errorf("OnRemoved = %v, %q; want %v, %q", removed, reason, tt.removed, tt.reason)
			}
			want := before
			if tt.removed {
				want = State{} // a fresh start: no promise, no commit
			}
			if diff := cmp.Diff(want, next); diff != "" {
				t.Errorf("next state (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tt.local.State); diff != "" {
				t.Errorf("OnRemoved modified its input (-before +after):\n%s", diff)
			}
			if !tt.removed && next.Commit == tt.local.State.Commit && next.Commit != nil {
				t.Errorf("next shares the input's commit")
			}
		})
	}
}
