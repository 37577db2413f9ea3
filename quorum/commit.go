package quorum

import (
	"errors"
	"fmt"
	"strings"
)

// AcceptCommit validates a commit, from its seed or forwarded by any
// holder, and returns the state to persist before etcd starts "new" with
// it. It accepts the commit of a proposal the node promised to only if
// every promise it gave since is to a proposal that provably was never
// committed (its own, released, or superseded by a later attempt of the
// same seed): a node that has since promised to a proposal that may have
// been committed must never help the older one form, or both could reach
// a majority. The promise's expiry does not matter here, which lets a
// forwarded commit arrive late. Accepting the commit already held is a
// no-op.
func AcceptCommit(local LocalState, c Commit) (State, error) {
	st := local.State.clone()
	p := c.Proposal
	if err := p.check(); err != nil {
		return st, fmt.Errorf("malformed commit: %w", err)
	}
	switch {
	case len(c.Token) != 32:
		return st, errors.New("malformed commit: the token is not 128 bits in hex")
	case st.Commit != nil && st.Commit.ID() == c.ID() && st.Commit.Proposal.Same(p):
		return st, nil
	case st.Commit != nil:
		return st, fmt.Errorf("this node already holds commit %s of %s", st.Commit.ID(), st.Commit.Proposal)
	case local.HasEtcdState:
		return st, errors.New("this node has etcd data")
	case p.ClusterName != local.Self.ClusterName:
		return st, fmt.Errorf("cluster name %q != %q", p.ClusterName, local.Self.ClusterName)
	case p.Expect != local.Self.Expect:
		return st, fmt.Errorf("expect %d != %d", p.Expect, local.Self.Expect)
	}
	for _, m := range p.Members {
		if m.ID == local.Self.ID && m != local.Self.Member {
			return st, fmt.Errorf("the commit lists this node as %s %s, but it is %s %s", m.Name, m.PeerURL, local.Self.Name, local.Self.PeerURL)
		}
	}
	i := st.index(p)
	if i < 0 || st.Promises[i].Released {
		return st, fmt.Errorf("this node holds no promise to %s", p)
	}
	var by []Proposal
	for j := i + 1; j < len(st.Promises); j++ {
		if !st.neverCommitted(j, local.Self.ID) {
			by = append(by, st.Promises[j].Proposal)
		}
	}
	if len(by) > 0 {
		return st, &BlockedError{Commit: c.ID(), By: by}
	}
	st.Commit = &c
	return st, nil
}

// BlockedError is AcceptCommit's error when promises given since the
// commit's proposal may have led to another commit. The agent asks the
// seed of each proposal in By whether it gave it up (AnswerRelease),
// applies the PromiseReleases it gets (ReleasePromise), and lets the next
// forward of the commit try again.
type BlockedError struct {
	Commit string
	By     []Proposal
}

func (e *BlockedError) Error() string {
	var by []string
	for _, p := range e.By {
		by = append(by, p.String())
	}
	return fmt.Sprintf("commit %s: this node has since promised to %s, which may have been committed", e.Commit, strings.Join(by, "; "))
}

// AnswerRelease answers a node blocked by a promise to q (BlockedError),
// on q's seed: the seed releases q unless q is its round in progress
// (round, nil if none) or its commit. Any other proposal of its own can
// never be committed: a commit comes only out of the round in memory, and
// a restarted agent has none.
func AnswerRelease(local LocalState, round *Proposal, q Proposal) (PromiseRelease, bool) {
	switch {
	case q.Seed != local.Self.ID,
		round != nil && round.Same(q),
		local.State.Commit != nil && local.State.Commit.Proposal.Same(q):
		return PromiseRelease{}, false
	}
	return PromiseRelease{Proposal: q}, true
}
