package quorum

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecide(t *testing.T) {
	now := t0.Add(time.Minute)
	timing := DefaultTiming()
	c := commitOf(proposal(1, 1, 2, 3))
	withCommitState := func(l LocalState) LocalState { l.State.Commit = &c; return l }
	tests := []struct {
		name    string
		local   LocalState
		peers   []Peer
		anchors Anchors
		retryAt time.Time
		want    Decision
	}{{
		name:  "alone: waits for two more",
		local: local(1),
		want:  Decision{Step: Wait{Reason: WaitForNodes, Have: []string{"cp-1"}, Need: 2, Expect: 3}},
	}, {
		name:  "two of three: waits for one more and names who it has",
		local: local(2),
		peers: peers(1),
		want:  Decision{Step: Wait{Reason: WaitForNodes, Have: []string{"cp-1", "cp-2"}, Need: 1, Expect: 3}},
	}, {
		name:  "suspect and dead nodes are not candidates",
		local: local(1),
		peers: []Peer{peer(2, withStatus(StatusSuspect, t0)), peer(3, withStatus(StatusDead, t0))},
		want:  Decision{Step: Wait{Reason: WaitForNodes, Have: []string{"cp-1"}, Need: 2, Expect: 3}},
	}, {
		name:  "workers are not candidates",
		local: local(1),
		peers: []Peer{peer(2), peer(3, asWorker())},
		want:  Decision{Step: Wait{Reason: WaitForNodes, Have: []string{"cp-1", "cp-2"}, Need: 1, Expect: 3}},
	}, {
		name:  "three, first by node ID: proposes",
		local: local(1),
		peers: peers(2, 3),
		want: Decision{Step: Propose{Proposal: Proposal{Seed: "id-1", Attempt: 1, ClusterName: "prod", Expect: 3,
			Members: []Member{member(1), member(2), member(3)}, TTL: timing.PromiseTTL}}},
	}, {
		name:  "three, not first: waits for the seed",
		local: local(3),
		peers: peers(2, 1),
		want:  Decision{Step: Wait{Reason: WaitForSeed, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3, Who: "cp-1"}},
	}, {
		name:    "view whole and anchored, changed within QuickSettle: waits",
		local:   local(1),
		peers:   []Peer{peer(2), peer(3, withStatus(StatusAlive, now.Add(-500*time.Millisecond)))},
		anchors: anchors(true, 1, 2, 3),
		want: Decision{Step: Wait{Reason: WaitForSettle, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3,
			Until: now.Add(-500 * time.Millisecond).Add(timing.QuickSettle)}},
	}, {
		name:    "view whole and anchored, quiet for QuickSettle: proposes",
		local:   local(1),
		peers:   []Peer{peer(2), peer(3, withStatus(StatusAlive, now.Add(-timing.QuickSettle)))},
		anchors: anchors(true, 2),
		want: Decision{Step: Propose{Proposal: Proposal{Seed: "id-1", Attempt: 1, ClusterName: "prod", Expect: 3,
			Members: []Member{member(1), member(2), member(3)}, TTL: timing.PromiseTTL}}},
	}, {
		name:  "no anchors (no join addresses): the full Settle",
		local: local(1),
		peers: []Peer{peer(2), peer(3, withStatus(StatusAlive, now.Add(-2*time.Second)))},
		want: Decision{Step: Wait{Reason: WaitForSettle, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3,
			Until: now.Add(-2 * time.Second).Add(timing.Settle)}},
	}, {
		name:    "a join address not in view yet: the full Settle",
		local:   local(1),
		peers:   []Peer{peer(2), peer(3, withStatus(StatusAlive, now.Add(-2*time.Second)))},
		anchors: anchors(false, 2, 3),
		want: Decision{Step: Wait{Reason: WaitForSettle, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3,
			Until: now.Add(-2 * time.Second).Add(timing.Settle)}},
	}, {
		name:    "the first anchor is not a founder (another group may settle around it): the full Settle",
		local:   local(1),
		peers:   []Peer{peer(2), peer(3), peer(4, withStatus(StatusAlive, now.Add(-2*time.Second)))},
		anchors: anchors(true, 4),
		want: Decision{Step: Wait{Reason: WaitForSettle, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3,
			Until: now.Add(-2 * time.Second).Add(timing.Settle)}},
	}, {
		name:    "an anchor that is a worker is no candidate: the full Settle",
		local:   local(1),
		peers:   []Peer{peer(2), peer(3, withStatus(StatusAlive, now.Add(-2*time.Second))), peer(4, asWorker())},
		anchors: anchors(true, 1, 4),
		want: Decision{Step: Wait{Reason: WaitForSettle, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3,
			Until: now.Add(-2 * time.Second).Add(timing.Settle)}},
	}, {
		name:    "a suspect peer: the full Settle",
		local:   local(1),
		peers:   []Peer{peer(2), peer(3, withStatus(StatusAlive, now.Add(-2*time.Second))), peer(4, withStatus(StatusSuspect, now.Add(-time.Second)))},
		anchors: anchors(true, 1),
		want: Decision{Step: Wait{Reason: WaitForSettle, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3,
			Until: now.Add(-time.Second).Add(timing.Settle)}},
	}, {
		name:    "2*expect candidates in view: the full Settle",
		local:   local(1),
		peers:   []Peer{peer(2), peer(3), peer(4), peer(5), peer(6, withStatus(StatusAlive, now.Add(-2*time.Second)))},
		anchors: anchors(true, 1),
		want: Decision{Step: Wait{Reason: WaitForSettle, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3,
			Until: now.Add(-2 * time.Second).Add(timing.Settle)}},
	}, {
		name:  "a fourth ranked after three candidates: standby",
		local: local(4),
		peers: peers(1, 2, 3),
		want:  Decision{Step: Wait{Reason: WaitAsStandby, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3}},
	}, {
		name:  "seed bound by a promise to another seed: waits for it to expire",
		local: LocalState{Self: self(2), State: State{Promises: []Promise{{Proposal: proposal(1, 0, 2, 3), Granted: now, Expires: now.Add(time.Second)}}}},
		peers: []Peer{peer(3), peer(4)},
		want: Decision{Step: Wait{Reason: WaitForPromise, Have: []string{"cp-2", "cp-3", "cp-4"}, Expect: 3,
			Who: "cp-0", Until: now.Add(time.Second)}},
	}, {
		name:    "seed backing off",
		local:   LocalState{Self: self(1), State: promised(proposal(1, 1, 2, 3))},
		peers:   peers(2, 3),
		retryAt: now.Add(time.Second),
		want:    Decision{Step: Wait{Reason: WaitForRetry, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3, Until: now.Add(time.Second)}},
	}, {
		name:  "seed after a failed round: the next attempt",
		local: LocalState{Self: self(1), State: promised(proposal(1, 1, 2, 3), proposal(4, 0, 1, 2))},
		peers: peers(2, 3),
		want: Decision{Step: Propose{Proposal: Proposal{Seed: "id-1", Attempt: 2, ClusterName: "prod", Expect: 3,
			Members: []Member{member(1), member(2), member(3)}, TTL: timing.PromiseTTL}}},
	}, {
		name:  "etcd data on disk: starts from it, never bootstraps (case 7)",
		local: LocalState{Self: self(1), HasEtcdState: true, ClusterID: 0xc1},
		peers: []Peer{peer(2, withData()), peer(3, withData())},
		want:  Decision{Step: StartFromData{}},
	}, {
		name:  "etcd data, and a peer in another cluster: starts, and reports the conflict",
		local: LocalState{Self: self(1), HasEtcdState: true, ClusterID: 0xc1},
		peers: []Peer{peer(2, withCluster(0xc1)), peer(3, withCluster(0xc2))},
		want: Decision{Step: StartFromData{}, Refusals: []Refusal{
			{Peer: member(3), Field: "cluster ID", Theirs: "c2", Ours: "c1"}}},
	}, {
		name:  "holds a commit: applies it, and forwards it to members that lack it",
		local: withCommitState(LocalState{Self: self(2), State: promised(c.Proposal)}),
		peers: []Peer{peer(1, withCommit(c.ID())), peer(3)},
		want:  Decision{Step: StartNew{Commit: c}, Forward: []Member{member(3)}},
	}, {
		name:  "holds a commit, running: forwards to a member that missed it",
		local: withCommitState(LocalState{Self: self(1), HasEtcdState: true, ClusterID: 0xc1, State: promised(c.Proposal)}),
		peers: []Peer{peer(2, withCommit(c.ID()), withCluster(0xc1)), peer(3)},
		want:  Decision{Step: StartFromData{}, Forward: []Member{member(3)}},
	}, {
		name:  "a peer advertises a cluster: joins it",
		local: local(4),
		peers: []Peer{peer(2, withCluster(0xc1)), peer(1, withCluster(0xc1)), peer(3)},
		want:  Decision{Step: Join{ClusterID: 0xc1, Via: []Member{member(1), member(2)}}},
	}, {
		name:  "peers advertise two clusters: refuses",
		local: local(4),
		peers: []Peer{peer(1, withCluster(0xc1)), peer(2, withCluster(0xc2))},
		want:  Decision{Step: Refuse{Reason: "peers advertise different etcd cluster IDs: c1 (cp-1), c2 (cp-2)"}},
	}, {
		name:  "peers hold data but no cluster yet (all restarting): waits, never bootstraps",
		local: local(4),
		peers: []Peer{peer(1, withData()), peer(2, withData()), peer(3, withData())},
		want:  Decision{Step: Wait{Reason: WaitForCluster, Who: "cp-1, cp-2, cp-3", Expect: 3}},
	}, {
		name:  "a peer holds a commit: waits for it rather than seeding",
		local: local(1),
		peers: []Peer{peer(2, withCommit(testToken)), peer(3)},
		want:  Decision{Step: Wait{Reason: WaitForCluster, Who: "cp-2", Expect: 3}},
	}, {
		name:  "a control-plane peer with another expect: refuses, naming who and what",
		local: local(1),
		peers: []Peer{peer(2), peer(3), peer(4, withExpect(5))},
		want: Decision{
			Step:     Refuse{Reason: "control-plane peers disagree on expect", Refusals: []Refusal{{Peer: member(4), Field: "expect", Theirs: "5", Ours: "3"}}},
			Refusals: []Refusal{{Peer: member(4), Field: "expect", Theirs: "5", Ours: "3"}},
		},
	}, {
		name:  "a peer of another cluster name: refused, and ignored",
		local: local(1),
		peers: []Peer{peer(2), peer(3), peer(4, withName("staging"), withCluster(0xc9))},
		want: Decision{
			Step: Propose{Proposal: Proposal{Seed: "id-1", Attempt: 1, ClusterName: "prod", Expect: 3,
				Members: []Member{member(1), member(2), member(3)}, TTL: timing.PromiseTTL}},
			Refusals: []Refusal{{Peer: member(4), Field: "cluster name", Theirs: `"staging"`, Ours: `"prod"`}},
		},
	}, {
		name:  "commit orphaned: a majority of its members hold another commit; set aside",
		local: withCommitState(LocalState{Self: self(1), State: promised(c.Proposal)}),
		peers: []Peer{peer(2, withCommit("ffff")), peer(3, withCommit("ffff")), peer(4, withCommit("ffff"))},
		want: Decision{Step: SetAside{Reason: "commit " + testToken + " of seed cp-1 attempt 1 (cp-1, cp-2, cp-3) can never form: " +
			"cp-2, cp-3 moved on to another commit or cluster", Commit: testToken, Confirm: []Member{member(2), member(3)}, Need: 2}},
	}, {
		name:  "two peers under a member's node ID, one still holding the commit: the commit stands",
		local: withCommitState(LocalState{Self: self(1), State: promised(c.Proposal)}),
		peers: []Peer{peer(2, withCommit("ffff")), peer(3, withCommit("ffff")), peer(3, withName("prod"), withCommit(c.ID()))},
		want:  Decision{Step: StartNew{Commit: c}},
	}, {
		name:  "etcd data from an orphaned commit: a majority of its members run another cluster; set aside",
		local: withCommitState(LocalState{Self: self(1), HasEtcdState: true, ClusterID: 0xc1, State: promised(c.Proposal)}),
		peers: []Peer{peer(2, withCluster(0xc2)), peer(3, withCluster(0xc2), withCommit("ffff"))},
		want: Decision{Step: SetAside{Reason: "commit " + testToken + " of seed cp-1 attempt 1 (cp-1, cp-2, cp-3) can never form: " +
			"cp-2, cp-3 moved on to another commit or cluster", Commit: testToken, Confirm: []Member{member(2), member(3)}, Need: 2, LocalCluster: 0xc1}},
	}, {
		name:  "one member moved on is not a majority: the commit stands",
		local: withCommitState(LocalState{Self: self(1), HasEtcdState: true, ClusterID: 0xc1, State: promised(c.Proposal)}),
		peers: []Peer{peer(2, withCluster(0xc1), withCommit(c.ID())), peer(3, withCluster(0xc2))},
		want: Decision{Step: StartFromData{}, Refusals: []Refusal{
			{Peer: member(3), Field: "cluster ID", Theirs: "c2", Ours: "c1"}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Local: tt.local, Peers: tt.peers, Now: now, Timing: timing, RetryAt: tt.retryAt, Anchors: tt.anchors}
			got := Decide(in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s\n%s", diff, got)
			}
		})
	}
}

// anchors are the nodes i at the join addresses.
func anchors(complete bool, is ...int) Anchors {
	a := Anchors{Complete: complete}
	for _, i := range is {
		a.IDs = append(a.IDs, member(i).ID)
	}
	return a
}

func TestDecideIgnoresItselfAndSettlesFromJoin(t *testing.T) {
	now := t0.Add(time.Minute)
	in := Input{Local: local(1), Peers: []Peer{peer(1), peer(2), peer(3)}, Now: now, Joined: now.Add(-time.Second / 2)}
	w, ok := Decide(in).Step.(Wait)
	if !ok || w.Reason != WaitForSettle {
		t.Fatalf("just joined gossip: got %v, want to wait for the view to settle", Decide(in))
	}
	in.Joined = now.Add(-time.Hour)
	if _, ok := Decide(in).Step.(Propose); !ok {
		t.Fatalf("settled: got %v, want a proposal", Decide(in))
	}
}

func TestWaitStrings(t *testing.T) {
	until := time.Date(2030, 1, 1, 12, 0, 5, 0, time.UTC)
	tests := []struct {
		w    Wait
		want string
	}{
		{Wait{Reason: WaitForNodes, Have: []string{"cp-1", "cp-2"}, Need: 1, Expect: 3}, "waiting for 1 more control-plane node: have cp-1, cp-2; expect 3"},
		{Wait{Reason: WaitForNodes, Have: []string{"cp-1"}, Need: 2, Expect: 3}, "waiting for 2 more control-plane nodes: have cp-1; expect 3"},
		{Wait{Reason: WaitForSettle, Have: []string{"cp-1", "cp-2", "cp-3"}, Expect: 3, Until: until}, "waiting for the gossip view to settle until 12:00:05.000: have cp-1, cp-2, cp-3; expect 3"},
		{Wait{Reason: WaitForSeed, Have: []string{"cp-1", "cp-2", "cp-3"}, Who: "cp-1"}, "waiting for seed cp-1 to propose: candidates cp-1, cp-2, cp-3"},
		{Wait{Reason: WaitForPromise, Who: "cp-0", Until: until}, "seed in this view, but promised to seed cp-0 until 12:00:05.000"},
		{Wait{Reason: WaitForCluster, Who: "cp-1, cp-2"}, "waiting for the etcd cluster of cp-1, cp-2 to start: they hold etcd data or a commit"},
		{Wait{Reason: WaitAsStandby, Have: []string{"cp-1", "cp-2", "cp-3"}}, "standby: the founding candidates are cp-1, cp-2, cp-3; joining their cluster once it runs"},
	}
	for _, tt := range tests {
		if got := tt.w.String(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
	d := Decision{Step: Refuse{Reason: "control-plane peers disagree on expect",
		Refusals: []Refusal{{Peer: member(4), Field: "expect", Theirs: "5", Ours: "3"}}}}
	if got, want := d.String(), "refuse peer cp-4: expect 5 != 3"; !strings.Contains(got, want) {
		t.Errorf("Refuse.String() = %q, want it to contain %q", got, want)
	}
}

// Decide must not modify its input: the agent keeps using it.
func TestDecideLeavesInputAlone(t *testing.T) {
	c := commitOf(proposal(1, 1, 2, 3))
	l := LocalState{Self: self(1), State: promised(c.Proposal)}
	l.State.Commit = &c
	ps := []Peer{peer(3), peer(2, withCommit(c.ID()))}
	before := cmp.Diff(nil, []any{l, ps})
	Decide(Input{Local: l, Peers: ps, Now: t0})
	if after := cmp.Diff(nil, []any{l, ps}); after != before {
		t.Errorf("Decide modified its input")
	}
}

// A set-aside is confirmed only by the members' own answers: a majority
// of the commit's members must say they moved on; silence or an answer
// still holding the commit counts against it.
func TestSetAsideConfirmed(t *testing.T) {
	s := SetAside{Commit: "c1", Confirm: []Member{member(2), member(3)}, Need: 2, LocalCluster: 0xc1}
	for _, tc := range []struct {
		name    string
		answers map[NodeID]MemberState
		want    bool
	}{
		{"both hold another commit", map[NodeID]MemberState{"id-2": {CommitID: "c2"}, "id-3": {CommitID: "c2"}}, true},
		{"both run another cluster", map[NodeID]MemberState{"id-2": {ClusterID: 0xc2}, "id-3": {ClusterID: 0xc2}}, true},
		{"one still holds the commit", map[NodeID]MemberState{"id-2": {CommitID: "c2"}, "id-3": {CommitID: "c1"}}, false},
		{"one did not answer", map[NodeID]MemberState{"id-2": {CommitID: "c2"}}, false},
		{"one holds nothing and runs our cluster", map[NodeID]MemberState{"id-2": {CommitID: "c2"}, "id-3": {ClusterID: 0xc1}}, false},
		{"nobody answered", nil, false},
	} {
		got, not := s.Confirmed(tc.answers)
		if got != tc.want {
			t.Errorf("%s: confirmed %v, want %v (not confirmed by %v)", tc.name, got, tc.want, not)
		}
	}
}

// Alive nodes sharing a node ID are refused, reported, and never count
// as candidates: a copied state file, or someone gossiping under another
// node's ID. A failed entry under the ID (a host renamed) does not count.
func TestDuplicateNodeIDs(t *testing.T) {
	now := t0.Add(time.Hour)
	for _, tc := range []struct {
		name     string
		peers    []Peer
		refused  []string // peers refused for their node ID
		proposes bool
	}{
		{"two peers, one ID", []Peer{peer(2), peer(3), peer(4, withID("id-3"))}, []string{"cp-3", "cp-4"}, false},
		{"a peer under our own ID", []Peer{peer(2), peer(3), peer(4, withID("id-1"))}, []string{"cp-4"}, true},
		{"a failed entry under the ID", []Peer{peer(2), peer(3), peer(4, withID("id-3"), withStatus(StatusDead, t0))}, nil, true},
	} {
		d := Decide(Input{Local: local(1), Peers: tc.peers, Now: now, Timing: DefaultTiming()})
		var refused []string
		for _, r := range d.Refusals {
			if r.Field == FieldNodeID {
				refused = append(refused, r.Peer.Name)
				if !strings.Contains(r.String(), "is claimed by") {
					t.Errorf("%s: %s", tc.name, r)
				}
			}
		}
		if !slices.Equal(refused, tc.refused) {
			t.Errorf("%s: refused %v, want %v", tc.name, refused, tc.refused)
		}
		p, ok := d.Step.(Propose)
		if ok != tc.proposes {
			t.Errorf("%s: step %v, proposes %v", tc.name, d.Step, tc.proposes)
		}
		for _, m := range p.Proposal.Members {
			if slices.Contains(tc.refused, m.Name) {
				t.Errorf("%s: %s proposed", tc.name, m.Name)
			}
		}
	}
}
