package quorum

import (
	"fmt"
	"strings"
	"time"
)

// Step is what the local control-plane node does next to get into an
// etcd cluster: one of Wait, Refuse, StartFromData, StartNew, Join,
// Propose and SetAside. Its String is meant for `ecom-agent status`.
type Step interface {
	fmt.Stringer
	isStep()
}

// WaitReason says what a Wait waits for.
type WaitReason int

// The reasons a node waits.
const (
	// WaitForNodes: fewer than expect control-plane nodes without etcd
	// state are alive.
	WaitForNodes WaitReason = iota + 1
	// WaitForSettle: the gossip view changed less than Settle ago.
	WaitForSettle
	// WaitForSeed: another node is the seed; it proposes, this node
	// answers.
	WaitForSeed
	// WaitForPromise: this node is the seed in its view but is bound by
	// an unexpired promise to another seed.
	WaitForPromise
	// WaitForRetry: this node is the seed and backs off after a failed
	// round.
	WaitForRetry
	// WaitForCluster: peers hold etcd data or a commit but advertise no
	// cluster ID yet; a fresh cluster must not be formed beside theirs.
	WaitForCluster
	// WaitAsStandby: expect candidates rank before this node; it joins
	// their cluster once it runs.
	WaitAsStandby
)

// Wait is a Step that does nothing yet, and says for what and for whom.
type Wait struct {
	Reason WaitReason
	// Have names the candidates seen (for WaitAsStandby: the founding
	// candidates).
	Have []string
	// Need is how many more candidates are needed (WaitForNodes).
	Need   int
	Expect int
	// Who names the node or nodes waited on.
	Who string
	// Until is when the wait ends by itself, zero if it does not.
	Until time.Time
}

func (Wait) isStep() {}

func (w Wait) String() string {
	have := strings.Join(w.Have, ", ")
	if have == "" {
		have = "none"
	}
	until := ""
	if !w.Until.IsZero() {
		until = " until " + w.Until.UTC().Format("15:04:05.000")
	}
	switch w.Reason {
	case WaitForNodes:
		node := "nodes"
		if w.Need == 1 {
			node = "node"
		}
		return fmt.Sprintf("waiting for %d more control-plane %s: have %s; expect %d", w.Need, node, have, w.Expect)
	case WaitForSettle:
		return fmt.Sprintf("waiting for the gossip view to settle%s: have %s; expect %d", until, have, w.Expect)
	case WaitForSeed:
		return fmt.Sprintf("waiting for seed %s to propose%s: candidates %s", w.Who, until, have)
	case WaitForPromise:
		return fmt.Sprintf("seed in this view, but promised to seed %s%s", w.Who, until)
	case WaitForRetry:
		return fmt.Sprintf("seed backing off after a failed round%s: candidates %s", until, have)
	case WaitForCluster:
		return fmt.Sprintf("waiting for the etcd cluster of %s to start: they hold etcd data or a commit", w.Who)
	case WaitAsStandby:
		return fmt.Sprintf("standby: the founding candidates are %s; joining their cluster once it runs", have)
	}
	return "waiting"
}

// Refuse is a Step that blocks formation until an operator fixes a
// mismatch; Reason says what and Refusals name who.
type Refuse struct {
	Reason   string
	Refusals []Refusal
}

func (Refuse) isStep() {}

func (r Refuse) String() string {
	parts := []string{"formation blocked: " + r.Reason}
	for _, f := range r.Refusals {
		parts = append(parts, f.String())
	}
	return strings.Join(parts, "; ")
}

// StartFromData is a Step: etcd data is on disk, so start etcd from it and
// never bootstrap.
type StartFromData struct{}

func (StartFromData) isStep() {}

func (StartFromData) String() string { return "start etcd from its data on disk" }

// StartNew is a Step: start etcd with initial-cluster-state "new" and
// exactly the commit's member list and token.
type StartNew struct{ Commit Commit }

func (StartNew) isStep() {}

func (s StartNew) String() string {
	return fmt.Sprintf("start etcd new with commit %s: %s", s.Commit.ID(), s.Commit.Proposal)
}

// Join is a Step: a cluster exists, so ask a member's agent (Via, in order
// of preference) to add this node; AnswerJoin gives the answer.
type Join struct {
	ClusterID uint64
	Via       []Member
}

func (Join) isStep() {}

func (j Join) String() string {
	return fmt.Sprintf("join etcd cluster %x via %s", j.ClusterID, names(j.Via))
}

// Propose is a Step for the seed: persist its own promise to the proposal
// (DecidePromise), send a PromiseRequest to every other member, and Tally
// the replies.
type Propose struct{ Proposal Proposal }

func (Propose) isStep() {}

func (p Propose) String() string {
	return fmt.Sprintf("propose %s: ask every candidate for a promise", p.Proposal)
}

// SetAside is a Step: move the etcd data directory and the quorum state
// aside (renamed, never deleted), then start over as a fresh node, which
// joins the running cluster.
//
// The gossip view it was decided on is a claim: anyone holding the
// cluster secret can gossip under a member's node ID. So before acting,
// the agent asks each member in Confirm itself, over the channel only
// control-plane nodes can answer, and acts only if Confirmed agrees.
type SetAside struct {
	Reason string
	// Commit is the orphaned commit's ID.
	Commit string
	// Confirm are the members gossip says moved on.
	Confirm []Member
	// Need is how many of them must confirm it: a majority of the
	// commit's members.
	Need int
	// LocalCluster is the cluster ID of the local etcd data, if it comes
	// from the commit; 0 otherwise.
	LocalCluster uint64
}

// MemberState is what a control-plane node says of itself when asked:
// the commit it holds and the cluster its etcd data belongs to.
type MemberState struct {
	CommitID  string `json:"commit_id,omitempty"`
	ClusterID uint64 `json:"cluster_id,omitempty"`
}

// movedFrom reports whether a member in state st will never vote in
// commit c's cluster: it holds another commit, or its etcd runs in
// another cluster than the local data's (local, 0 if the local data is
// not c's).
func movedFrom(c string, st MemberState, local uint64) bool {
	if st.CommitID == c {
		return false
	}
	return st.CommitID != "" || (local != 0 && st.ClusterID != 0 && st.ClusterID != local)
}

// Confirmed reports whether the members' own answers (by node ID; a
// member that did not answer is missing) confirm that the commit is
// orphaned, and names those that did not.
func (s SetAside) Confirmed(answers map[NodeID]MemberState) (bool, []string) {
	n := 0
	var not []string
	for _, m := range s.Confirm {
		if st, ok := answers[m.ID]; ok && movedFrom(s.Commit, st, s.LocalCluster) {
			n++
		} else {
			not = append(not, m.Name)
		}
	}
	return n >= s.Need, not
}

func (SetAside) isStep() {}

func (s SetAside) String() string { return "move etcd data and quorum state aside: " + s.Reason }

// Decision is Decide's answer: the next Step, plus the side duties that go
// with it.
type Decision struct {
	Step Step
	// Forward lists commit members that lack the commit this node holds:
	// send it to each (AcceptCommit on their side).
	Forward []Member
	// Refusals lists peers refused for a mismatch, so that status and
	// logs show them even when they do not block this node.
	Refusals []Refusal
}

func (d Decision) String() string {
	parts := []string{d.Step.String()}
	if len(d.Forward) > 0 {
		parts = append(parts, "forward commit to "+names(d.Forward))
	}
	for _, r := range d.Refusals {
		parts = append(parts, r.String())
	}
	return strings.Join(parts, "; ")
}
