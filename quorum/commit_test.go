package quorum

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAcceptCommit(t *testing.T) {
	p := proposal(1, 1, 2, 3)
	c := commitOf(p)
	other := commitOf(proposal(2, 1, 2, 3))
	other.Token = strings.Repeat("f", 32)
	released := promised(p, proposal(1, 0, 2, 3))
	released.Promises[1].Released = true
	superseded := promised(p, proposal(1, 0, 2, 3), proposal(2, 0, 2, 4))
	superseded.Promises[2].Released = true
	tests := []struct {
		name   string
		local  LocalState
		commit Commit
		err    string // "" to accept
	}{
		{"promised to it: accepts", LocalState{Self: self(2), State: promised(p)}, c, ""},
		{"promised to it long ago (expired): accepts, so a forwarded commit may come late", LocalState{Self: self(2), State: promised(p)}, c, ""},
		{"already holds it: no-op", LocalState{Self: self(2), HasEtcdState: true, State: State{Promises: promised(p).Promises, Commit: &c}}, c, ""},
		{"holds another commit: refuses", LocalState{Self: self(2), State: State{Promises: promised(p).Promises, Commit: &other}}, c, "already holds commit"},
		{"etcd data: refuses", LocalState{Self: self(2), HasEtcdState: true, State: promised(p)}, c, "etcd data"},
		{"never promised: refuses", local(2), c, "no promise to"},
		{"promised since to a proposal that may be committed: refuses", LocalState{Self: self(2), State: promised(p, proposal(1, 0, 2, 3))}, c, "has since promised to seed cp-0"},
		{"promised since to its own proposal: accepts", LocalState{Self: self(2), State: promised(p, proposal(1, 2, 3, 4))}, c, ""},
		{"promised since to a released proposal: accepts", LocalState{Self: self(2), State: released}, c, ""},
		{"promised since to a proposal its seed superseded: accepts", LocalState{Self: self(2), State: superseded}, c, ""},
		{"promised since to a later attempt of the same seed: refuses (that one may be committed)", LocalState{Self: self(2), State: promised(p, proposal(2, 1, 2, 4))}, c, "has since promised"},
		{"not 128 bits: refuses", LocalState{Self: self(2), State: promised(p)}, Commit{Proposal: p, Token: "abc"}, "token"},
		{"expect differs: refuses", LocalState{Self: Self{Member: member(2), ClusterName: "prod", Expect: 5}, State: promised(p)}, c, "expect 3 != 5"},
		{"cluster name differs: refuses", LocalState{Self: Self{Member: member(2), ClusterName: "staging", Expect: 3}, State: promised(p)}, c, "cluster name"},
		{"lists this node at another address: refuses", LocalState{Self: Self{Member: Member{ID: "id-2", Name: "cp-2", PeerURL: "https://10.9.9.9:2380"}, ClusterName: "prod", Expect: 3}, State: promised(p)}, c, "lists this node as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := cmp.Diff(nil, tt.local)
			st, err := AcceptCommit(tt.local, tt.commit)
			if cmp.Diff(nil, tt.local) != before {
				t.Errorf("AcceptCommit modified its input")
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got error %v, want one containing %q", err, tt.err)
				}
				if diff := cmp.Diff(tt.local.State, st); diff != "" {
					t.Errorf("refused, but the state changed (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if st.Commit == nil || st.Commit.ID() != tt.commit.ID() {
				t.Errorf("the state to persist does not hold the commit: %+v", st)
			}
		})
	}
}

func TestCommitInitialCluster(t *testing.T) {
	c := commitOf(proposal(1, 1, 2, 3))
	want := map[string]string{"cp-1": "https://10.0.0.1:2380", "cp-2": "https://10.0.0.2:2380", "cp-3": "https://10.0.0.3:2380"}
	if diff := cmp.Diff(want, c.InitialCluster()); diff != "" {
		t.Errorf("InitialCluster (-want +got):\n%s", diff)
	}
	if c.ID() != testToken {
		t.Errorf("ID %q, want the token", c.ID())
	}
}
