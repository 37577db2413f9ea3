package quorum

import (
	"fmt"
	"time"
)

// PromiseRequest is a seed's request for a promise. It travels over the
// agents' authenticated RPC channel, never over gossip: memberlist's threat
// model excludes replay.
type PromiseRequest struct {
	Proposal Proposal `json:"proposal"`
}

// PromiseReply is a candidate's answer to a PromiseRequest.
type PromiseReply struct {
	From     NodeID   `json:"from"`
	Proposal Proposal `json:"proposal"`
	Granted  bool     `json:"granted"`
	Reason   string   `json:"reason"`
	// Prior lists every other proposal the candidate ever promised to.
	// The seed checks them before it commits (see Tally).
	Prior []Proposal `json:"prior,omitempty"`
}

// DecidePromise decides whether the local node grants a seed's request. It
// grants only if the node has no etcd data, holds no commit, sees neither
// a cluster ID nor a commit held by a peer, and holds no unexpired promise
// to another seed (its own round as seed counts). Beyond that:
// the same request is granted again idempotently; a newer attempt of the
// seed it is bound to replaces the older one (a seed commits only its
// latest round); an older attempt, or one it promised to before, is stale
// and refused, so a request delayed in the network cannot bind it again.
//
// The caller persists next before it answers, whatever the verdict, and
// builds the answer with ReplyTo.
func DecidePromise(local LocalState, req PromiseRequest, now time.Time) (grant bool, reason string, next State) {
	st := local.State.clone()
	p := req.Proposal
	self := local.Self
	if err := p.check(); err != nil {
		return false, "malformed proposal: " + err.Error(), st
	}
	switch {
	case p.ClusterName != self.ClusterName:
		return false, fmt.Sprintf("cluster name %q != %q", p.ClusterName, self.ClusterName), st
	case p.Expect != self.Expect:
		return false, fmt.Sprintf("expect %d != %d", p.Expect, self.Expect), st
	case !p.has(self.ID):
		return false, "this node is not a member of the proposal", st
	case local.HasEtcdState:
		return false, "this node has etcd data", st
	case st.Commit != nil:
		return false, fmt.Sprintf("this node holds commit %s of %s", st.Commit.ID(), st.Commit.Proposal), st
	case local.SeenClusterID != 0:
		return false, fmt.Sprintf("this node sees etcd cluster %x", local.SeenClusterID), st
	case local.SeenCommitID != "":
		return false, fmt.Sprintf("this node sees a peer holding commit %s", local.SeenCommitID), st
	}
	for _, m := range p.Members {
		if m.ID == self.ID && m != self.Member {
			return false, fmt.Sprintf("the proposal lists this node as %s %s, but it is %s %s", m.Name, m.PeerURL, self.Name, self.PeerURL), st
		}
	}
	cur := st.current()
	if cur != nil && cur.Proposal.Same(p) && !cur.Released {
		if now.Before(cur.Expires) {
			return true, "granted again (same proposal)", st
		}
		cur.Granted, cur.Expires = now, now.Add(p.TTL)
		return true, "granted again (same proposal, renewed)", st
	}
	for _, old := range st.Promises {
		if old.Proposal.Seed == p.Seed && old.Proposal.Attempt >= p.Attempt {
			return false, fmt.Sprintf("stale request: already promised %s", old.Proposal), st
		}
	}
	if cur != nil && cur.Proposal.Seed != p.Seed && !cur.Released && now.Before(cur.Expires) {
		return false, fmt.Sprintf("promised to %s until %s", cur.Proposal, cur.Expires.UTC().Format(time.RFC3339Nano)), st
	}
	st.Promises = append(st.Promises, Promise{Proposal: p, Granted: now, Expires: now.Add(p.TTL)})
	return true, "granted", st
}

// ReplyTo builds the answer to req from DecidePromise's verdict and the
// state it returned. Prior leaves out released proposals: they were never
// committed.
func ReplyTo(req PromiseRequest, from NodeID, grant bool, reason string, st State) PromiseReply {
	r := PromiseReply{From: from, Proposal: req.Proposal, Granted: grant, Reason: reason}
	for _, p := range st.Promises {
		if !p.Proposal.Same(req.Proposal) && !p.Released {
			r.Prior = append(r.Prior, p.Proposal)
		}
	}
	return r
}

// PromiseRelease tells a proposal's members that its seed gave the round
// up and will never commit it (Tally's BackOff). Like a request, it
// travels over the authenticated RPC channel.
type PromiseRelease struct {
	Proposal Proposal `json:"proposal"`
}

// ReleasePromise returns the state to persist after a PromiseRelease: the
// promise to that proposal, if any, no longer binds, and no longer keeps
// the node from accepting an earlier proposal's commit.
func ReleasePromise(local LocalState, rel PromiseRelease, now time.Time) State {
	st := local.State.clone()
	if i := st.index(rel.Proposal); i >= 0 {
		st.Promises[i].Released = true
		if now.Before(st.Promises[i].Expires) {
			st.Promises[i].Expires = now
		}
	}
	return st
}
