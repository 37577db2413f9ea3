package quorum

import (
	"fmt"
	"strings"
)

// Leaving is Leave's answer for a member about to leave its cluster.
type Leaving struct {
	// Member is false when the cluster does not list the node: there is
	// nothing to remove.
	Member bool
	// Safe is true when removing the member keeps a quorum of reachable
	// voters.
	Safe bool
	// Reason says why, in words an operator acts on.
	Reason string
	// Voters are the voters left after the removal, by name.
	Voters []string
}

// Leave decides whether the member self may remove itself from its
// cluster (`ecom-agent reset`). Members' Active says whether their etcd
// answers right now. The rule is the reconciler's: the voters left must
// keep a majority of reachable members. A learner always may; the only
// voter never may, since removing it destroys the cluster's data.
func Leave(self uint64, members []EtcdMember) Leaving {
	var me *EtcdMember
	var others, down []string
	reachable := 0
	for i, m := range members {
		if m.ID == self {
			me = &members[i]
			continue
		}
		if m.IsLearner {
			continue
		}
		name := m.Name
		if name == "" {
			name = fmt.Sprintf("%x (not started)", m.ID)
		}
		others = append(others, name)
		if m.Active {
			reachable++
		} else {
			down = append(down, name)
		}
	}
	switch {
	case me == nil:
		return Leaving{Reason: "the etcd cluster does not list this node: there is no member to remove", Safe: true, Voters: others}
	case me.IsLearner:
		return Leaving{Member: true, Safe: true, Reason: "this member is a learner: removing it does not change the quorum", Voters: others}
	case len(others) == 0:
		return Leaving{Member: true, Reason: "this is the cluster's only voter: removing it would end the cluster and its data; " +
			"use --force to reset anyway (the etcd data and keys are kept in a backup)"}
	}
	need := majority(len(others))
	if reachable < need {
		return Leaving{Member: true, Voters: others, Reason: fmt.Sprintf(
			"removing this member would leave %d voters of which %d answer (down: %s); "+
				"a quorum of %d needs %d: bring %s back first, or use --force",
			len(others), reachable, strings.Join(down, ", "), len(others), need, strings.Join(down, ", "))}
	}
	reason := fmt.Sprintf("%d voters stay, %d of them answering: quorum holds", len(others), reachable)
	if len(others)%2 == 0 {
		reason += fmt.Sprintf("; with %d voters the cluster tolerates %d failure(s) until a standby or a new node joins",
			len(others), len(others)-need)
	}
	return Leaving{Member: true, Safe: true, Reason: reason, Voters: others}
}
