package quorum

import (
	"slices"
	"strings"
	"time"
)

// NodeID identifies one installation of the agent on a host: a UUID the
// agent generates once and persists, so a reinstalled host comes back with
// a new one. Candidates are ordered by NodeID, compared as strings.
type NodeID string

// Member names an etcd member-to-be: the node it runs on, its etcd member
// name (the node name) and the peer URL other members reach it on.
type Member struct {
	ID      NodeID `json:"id"`
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

// Status is a node's liveness as gossip reports it.
type Status int

// The liveness states gossip reports. Only StatusAlive makes a node a
// candidate; only StatusDead and StatusLeft count towards declaring an etcd
// member dead.
const (
	StatusAlive Status = iota + 1
	StatusSuspect
	StatusDead
	StatusLeft
)

func (s Status) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusSuspect:
		return "suspect"
	case StatusDead:
		return "dead"
	case StatusLeft:
		return "left"
	}
	return "unknown"
}

// failed reports whether gossip considers the node gone.
func (s Status) failed() bool { return s == StatusDead || s == StatusLeft }

// Peer is another node as the local gossip view shows it: what its
// metadata advertises and its liveness. The agent maps gossip members into
// Peers; this package never talks to gossip itself.
type Peer struct {
	Member
	// ControlPlane reports whether the node has the control-plane role.
	// Workers never take part in etcd; only their cluster name is checked.
	ControlPlane bool
	ClusterName  string
	Expect       int
	// ClusterID is the ID of the etcd cluster the node's etcd member is
	// part of, advertised only while that member sees a leader; 0
	// otherwise. A member stuck alone in a cluster that never formed thus
	// advertises data (HasEtcdState) but no cluster for others to join.
	ClusterID uint64
	// HasEtcdState reports whether an etcd WAL is on the node's disk.
	HasEtcdState bool
	// CommitID is the ID of the commit the node holds, "" if none. Gossip
	// must carry it (it is the 32-character cluster token) so that commit
	// holders can find candidates that missed the commit and orphaned
	// commits can be recognised.
	CommitID string
	Status   Status
	// Since is when the node entered Status (as this view learned it).
	Since time.Time
}

// Self is the local node's identity and the configuration it must agree
// on with its peers.
type Self struct {
	Member
	ClusterName string
	Expect      int
}

// LocalState is what the local node knows about itself: its identity and
// configuration, what its disk holds, and the quorum state it persisted.
type LocalState struct {
	Self Self
	// HasEtcdState reports whether an etcd WAL is on the local disk.
	HasEtcdState bool
	// ClusterID is the cluster ID of the local etcd data, 0 if none or
	// not known yet.
	ClusterID uint64
	// SeenClusterID is a cluster ID some peer of the same cluster name
	// advertises in gossip, 0 if none, and SeenCommitID the ID of a commit
	// some peer holds, "" if none. Only DecidePromise reads them (Decide
	// reads the peers themselves); Seen computes them.
	SeenClusterID uint64
	SeenCommitID  string
	// State is the persisted quorum state: promises given and the commit.
	State State
}

// Anchors are the nodes at the gossip join addresses. Every node of a
// fleet is given the same join addresses (one cloud-init user-data), so
// the anchors are the one part of the view that no node can be without
// yet see differently: the quick settle rests on them.
type Anchors struct {
	// IDs are the node IDs found at the join addresses, this node's own
	// if it is at one of them.
	IDs []NodeID
	// Complete reports that every join address resolved and is a member
	// of the view with a node ID.
	Complete bool
}

// Timing holds the protocol's durations. Zero fields take the defaults of
// DefaultTiming.
type Timing struct {
	// Settle is how long the gossip view must be unchanged before a seed
	// proposes. It must exceed gossip's failure-detection time (about 5 s
	// with memberlist's LAN configuration) so that a node that just died
	// is not proposed.
	Settle time.Duration
	// QuickSettle replaces Settle when the view looks whole and is
	// anchored: every control-plane peer alive with the same expect (none
	// suspect, dead or left), fewer than 2*expect candidates, and every
	// node at the configured join addresses a candidate, the first of them
	// by node ID among the founders (see Anchors). Two views that both
	// settle quickly then propose founder sets that share that node, and
	// its promise fences one of them, however the views were otherwise
	// split. A node that died unseen in the last seconds is proposed,
	// cannot promise, and the round fails and backs off; by then gossip
	// suspects it, and the full Settle applies.
	QuickSettle time.Duration
	// PromiseTTL is how long a promise binds a candidate. A seed commits
	// only within the first half of it, measured on its own clock from
	// when it sent the requests, which leaves the other half for clock
	// rate differences and message delays.
	PromiseTTL time.Duration
	// RetryBase and RetryMax bound a seed's back-off after a failed round:
	// RetryBase doubled per attempt up to RetryMax, then jittered into
	// [d/2, d].
	RetryBase, RetryMax time.Duration
	// DeadAfter is how long gossip must report a member failed (with etcd
	// having no active transport to it) before it is replaced.
	DeadAfter time.Duration
	// ChangeGap is the least time between two membership changes. etcd
	// refuses a change for about 5 s after a promotion (strict reconfig
	// check), so the default leaves a margin.
	ChangeGap time.Duration
}

// DefaultTiming returns the durations the agent uses unless configured
// otherwise.
func DefaultTiming() Timing {
	return Timing{
		Settle:      10 * time.Second,
		QuickSettle: time.Second,
		PromiseTTL:  30 * time.Second,
		RetryBase:   time.Second,
		RetryMax:    30 * time.Second,
		DeadAfter:   5 * time.Minute,
		ChangeGap:   10 * time.Second,
	}
}

// orDefaults fills zero fields from DefaultTiming.
func (t Timing) orDefaults() Timing {
	d := DefaultTiming()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.Settle, &d.Settle}, {&t.QuickSettle, &d.QuickSettle}, {&t.PromiseTTL, &d.PromiseTTL},
		{&t.RetryBase, &d.RetryBase}, {&t.RetryMax, &d.RetryMax},
		{&t.DeadAfter, &d.DeadAfter}, {&t.ChangeGap, &d.ChangeGap},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// Rand is the random source the decisions draw cluster tokens and back-off
// jitter from. *math/rand/v2.Rand and *math/rand/v2.ChaCha8 satisfy it; the
// agent seeds a ChaCha8 from crypto/rand, tests seed it with a fixed value.
type Rand interface {
	Uint64() uint64
}

// majority is the number of voters etcd needs for quorum among n.
func majority(n int) int { return n/2 + 1 }

// names lists members' names in order, for messages.
func names(ms []Member) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return strings.Join(out, ", ")
}

// sortByID orders members by node ID, the order candidates are ranked in.
func sortByID(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
}

// Seen returns what LocalState.SeenClusterID and SeenCommitID should
// hold: a cluster ID advertised, and a commit held, by a live peer of
// self's cluster name. With several it returns the smallest; Decide
// reports the conflict.
func Seen(self Self, peers []Peer) (clusterID uint64, commitID string) {
	for _, p := range peers {
		if p.ID == self.ID || p.ClusterName != self.ClusterName || p.Status.failed() {
			continue
		}
		if p.ClusterID != 0 && (clusterID == 0 || p.ClusterID < clusterID) {
			clusterID = p.ClusterID
		}
		if p.CommitID != "" && (commitID == "" || p.CommitID < commitID) {
			commitID = p.CommitID
		}
	}
	return clusterID, commitID
}
