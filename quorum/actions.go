package quorum

import (
	"fmt"
	"time"
)

// Action is the one membership change, or non-change, Reconcile asks for:
// Steady, Hold, AddLearner, Promote, Remove or Alert.
//
// There is no way to express adding a voter: a member enters only as a
// learner (AddLearner) and becomes a voter only by promotion once it has
// caught up. Adding a voter that then fails to start can stall a small
// cluster for good.
type Action interface {
	fmt.Stringer
	isAction()
}

// Steady is an Action: the membership is as it should be, or nothing can
// be done about it; Reason says which.
type Steady struct{ Reason string }

func (Steady) isAction() {}

func (s Steady) String() string { return "no change: " + s.Reason }

// Hold is an Action: a change is due but must wait (a learner catching
// up, or the last change too recent).
type Hold struct {
	Reason string
	// Until is when the hold ends by itself, zero if it does not.
	Until time.Time
}

func (Hold) isAction() {}

func (h Hold) String() string { return "hold: " + h.Reason }

// AddLearner is an Action: call etcd's MemberAddAsLearner with Member's
// peer URL. The node then learns from AnswerJoin to start etcd "existing".
type AddLearner struct {
	Member Member
	Reason string
}

func (AddLearner) isAction() {}

func (a AddLearner) String() string {
	return fmt.Sprintf("add %s (%s) as a learner: %s", a.Member.Name, a.Member.PeerURL, a.Reason)
}

// Promote is an Action: call etcd's MemberPromote for a learner that has
// caught up.
type Promote struct {
	MemberID uint64
	Name     string
	Reason   string
}

func (Promote) isAction() {}

func (p Promote) String() string {
	return fmt.Sprintf("promote learner %s (%x): %s", p.Name, p.MemberID, p.Reason)
}

// Remove is an Action: call etcd's MemberRemove. Reconcile asks for it
// only when the voters left keep a quorum of reachable members.
type Remove struct {
	MemberID uint64
	Name     string
	Reason   string
	// Confirm, for a member whose host is back without etcd data, is that
	// host as gossip shows it: a claim anyone with the cluster secret can
	// make, so the agent first asks it over the control-plane channel and
	// removes the member only if it answers that it holds no etcd data.
	Confirm *Member
}

func (Remove) isAction() {}

func (r Remove) String() string {
	return fmt.Sprintf("remove member %s (%x): %s", r.Name, r.MemberID, r.Reason)
}

// Alert is an Action: no membership change is safe or possible; an
// operator must look. Reason says why.
type Alert struct{ Reason string }

func (Alert) isAction() {}

func (a Alert) String() string { return "alert: " + a.Reason }
