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
type SetAside struct{ Reason string }

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
