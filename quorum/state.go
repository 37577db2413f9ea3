package quorum

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Proposal is a seed's proposed founding member list: what it asks every
// candidate to promise to.
type Proposal struct {
	// Seed is the proposing node; it is always Members[0].
	Seed NodeID `json:"seed"`
	// Attempt numbers the seed's rounds, from 1, rising with every round.
	Attempt     int    `json:"attempt"`
	ClusterName string `json:"clusterName"`
	Expect      int    `json:"expect"`
	// Members are the candidates ordered by node ID: the founding members.
	Members []Member `json:"members"`
	// TTL is how long a promise to this proposal binds its candidate.
	TTL time.Duration `json:"ttl"`
}

// Same reports whether p and q are the same proposal.
func (p Proposal) Same(q Proposal) bool {
	return p.Seed == q.Seed && p.Attempt == q.Attempt && p.ClusterName == q.ClusterName &&
		p.Expect == q.Expect && p.TTL == q.TTL && slices.Equal(p.Members, q.Members)
}

// String names the proposal for messages: "seed cp-1 attempt 2 (cp-1, cp-2, cp-3)".
func (p Proposal) String() string {
	seed := string(p.Seed)
	if len(p.Members) > 0 && p.Members[0].ID == p.Seed {
		seed = p.Members[0].Name
	}
	return fmt.Sprintf("seed %s attempt %d (%s)", seed, p.Attempt, names(p.Members))
}

// has reports whether id is one of the proposal's members.
func (p Proposal) has(id NodeID) bool {
	return slices.ContainsFunc(p.Members, func(m Member) bool { return m.ID == id })
}

// check reports why a proposal is malformed, if it is.
func (p Proposal) check() error {
	switch {
	case p.Expect < 1:
		return fmt.Errorf("expect %d < 1", p.Expect)
	case len(p.Members) != p.Expect:
		return fmt.Errorf("%d members, expect %d", len(p.Members), p.Expect)
	case p.Members[0].ID != p.Seed:
		return errors.New("the seed is not the first member")
	case p.Attempt < 1:
		return fmt.Errorf("attempt %d < 1", p.Attempt)
	case p.TTL <= 0:
		return fmt.Errorf("promise TTL %v", p.TTL)
	}
	ids, nms, urls := map[NodeID]bool{}, map[string]bool{}, map[string]bool{}
	for i, m := range p.Members {
		switch {
		case m.ID == "" || m.Name == "" || m.PeerURL == "":
			return fmt.Errorf("member %d lacks an ID, name or peer URL", i)
		case i > 0 && m.ID <= p.Members[i-1].ID:
			return errors.New("members are not ordered by node ID")
		case ids[m.ID] || nms[m.Name] || urls[m.PeerURL]:
			return fmt.Errorf("member %s is listed twice (ID, name or peer URL)", m.Name)
		}
		ids[m.ID], nms[m.Name], urls[m.PeerURL] = true, true, true
	}
	return nil
}

// Promise is a candidate's promise to a proposal: until Expires it grants
// no other seed, and it accepts only this proposal's commit until it
// promises another.
type Promise struct {
	Proposal Proposal  `json:"proposal"`
	Granted  time.Time `json:"granted"`
	Expires  time.Time `json:"expires"`
	// Released reports that the seed gave the round up (PromiseRelease):
	// the proposal will never be committed, and the promise binds no more.
	Released bool `json:"released,omitempty"`
}

// Commit is the decided founding member list and the fresh cluster token:
// every member starts etcd "new" with exactly these. A node holds at most
// one commit in its life (until its data is set aside).
type Commit struct {
	Proposal Proposal `json:"proposal"`
	// Token is the initial-cluster-token: 128 random bits in hex. It
	// also identifies the commit.
	Token string `json:"token"`
}

// ID identifies the commit in gossip (Peer.CommitID).
func (c Commit) ID() string { return c.Token }

// InitialCluster returns etcd's initial-cluster as member name to peer URL.
func (c Commit) InitialCluster() map[string]string {
	out := make(map[string]string, len(c.Proposal.Members))
	for _, m := range c.Proposal.Members {
		out[m.Name] = m.PeerURL
	}
	return out
}

// State is the quorum state a node persists (atomically, before it answers
// anyone): every promise it gave, in order, and the commit it holds. It is
// small and JSON-encodable; the zero value is a fresh node.
type State struct {
	// Promises lists every promise given, oldest first; the last is the
	// current one. Earlier ones are kept because a seed needs to know
	// about every proposal a candidate ever promised to (see Tally).
	Promises []Promise `json:"promises,omitempty"`
	// Commit is the commit this node accepted, nil if none.
	Commit *Commit `json:"commit,omitempty"`
}

// current returns the last promise given, nil if none.
func (s State) current() *Promise {
	if len(s.Promises) == 0 {
		return nil
	}
	return &s.Promises[len(s.Promises)-1]
}

// bound returns the unexpired promise to a seed other than self, if any:
// while it holds, the node neither seeds nor grants other seeds.
func (s State) bound(self NodeID, now time.Time) *Promise {
	if p := s.current(); p != nil && p.Proposal.Seed != self && !p.Released && now.Before(p.Expires) {
		return p
	}
	return nil
}

// neverCommitted reports whether the proposal of promise i provably never
// was and never will be committed: this node is its seed (it would hold
// the commit), its seed released it, or its seed proposed a later attempt
// that this node promised to (a seed proposes again only while it holds no
// commit, and its old round cannot commit once its own promise moved on;
// a seed that held the commit and set it aside did so because a majority
// of its members moved on, so that commit can never form either). Only
// this node's own promises order a seed's attempts in time: a seed whose
// state was set aside numbers its rounds from 1 again, but this node
// refuses the lower attempts as stale.
func (s State) neverCommitted(i int, self NodeID) bool {
	q := s.Promises[i]
	if q.Proposal.Seed == self || q.Released {
		return true
	}
	return slices.ContainsFunc(s.Promises, func(o Promise) bool {
		return o.Proposal.Seed == q.Proposal.Seed && o.Proposal.Attempt > q.Proposal.Attempt
	})
}

// index returns the position of the promise to p, -1 if none.
func (s State) index(p Proposal) int {
	return slices.IndexFunc(s.Promises, func(q Promise) bool { return q.Proposal.Same(p) })
}

// nextAttempt is the attempt number of the node's next round as seed.
func (s State) nextAttempt(self NodeID) int {
	n := 0
	for _, p := range s.Promises {
		if p.Proposal.Seed == self {
			n = max(n, p.Proposal.Attempt)
		}
	}
	return n + 1
}

// clone returns a copy of s that shares nothing mutable with it, so that
// the decision functions never modify their inputs.
func (s State) clone() State {
	out := State{Promises: slices.Clone(s.Promises)}
	if s.Commit != nil {
		c := *s.Commit
		out.Commit = &c
	}
	return out
}
