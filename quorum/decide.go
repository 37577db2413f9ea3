package quorum

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Input is what Decide reads: the local node, its gossip view and the time.
type Input struct {
	Local LocalState
	// Peers is the gossip view; an entry for the local node is ignored.
	Peers []Peer
	Now   time.Time
	// Joined is when the local node joined gossip: the view counts as
	// changed then, so a node alone does not settle at once.
	Joined time.Time
	Timing Timing
	// Anchors are the nodes at the join addresses (see Anchors); the
	// quick settle needs them complete.
	Anchors Anchors
	// RetryAt is when the local node may propose again after a failed
	// round (from Tally's BackOff); zero if it may now. It lives in memory
	// only: a restarted agent may propose at once.
	RetryAt time.Time
}

// Decide returns the next step of a control-plane node towards an etcd
// cluster. It reads like a checklist; the first rule that applies wins:
//
//  1. etcd data on disk: start from it, never bootstrap (unless the data
//     comes from an orphaned commit, which is set aside);
//  2. a commit held: apply it (start etcd new with it), and forward it to
//     members that lack it;
//  3. a control-plane peer disagrees on expect: refuse, loudly;
//  4. a peer advertises an etcd cluster ID: join that cluster (two IDs:
//     refuse, loudly);
//  5. a peer holds etcd data or a commit: wait for its cluster;
//  6. fewer than expect candidates, or a view that changed within
//     Settle (QuickSettle when every control-plane peer is alive with
//     the same expect and the anchors are among the candidates, the
//     first of them a founder): wait; otherwise the first candidate by node ID
//     proposes and the others wait for it, and a node ranked after the
//     first expect waits as standby.
//
// Peers of another cluster name are refused and otherwise ignored.
func Decide(in Input) Decision {
	t := in.Timing.orDefaults()
	self, st := in.Local.Self, in.Local.State
	var d Decision
	var blocking []Refusal
	var ours []Peer
	claims := nodeIDClaims(self, in.Peers)
	for _, p := range in.Peers {
		if names := claims[p.ID]; len(names) > 1 && !p.Status.failed() {
			// Two alive nodes under one node ID: a copied state file, or
			// an impostor. Neither counts until an operator sorts it out.
			d.Refusals = append(d.Refusals, duplicateIDRefusal(p.Member, names))
			continue
		}
		if p.ID == self.ID {
			continue
		}
		r, bad := Mismatch(self, p)
		if bad && !p.Status.failed() {
			d.Refusals = append(d.Refusals, r)
			if r.Field == "expect" {
				blocking = append(blocking, r)
			}
		}
		if bad && r.Field == "cluster name" {
			continue
		}
		ours = append(ours, p)
	}
	up := slices.DeleteFunc(slices.Clone(ours), func(p Peer) bool { return p.Status.failed() })

	if c := st.Commit; c != nil {
		local := uint64(0)
		if in.Local.HasEtcdState {
			local = in.Local.ClusterID
		}
		if aside, ok := orphaned(*c, self.ID, up, local); ok {
			d.Step = aside
			return d
		}
		d.Forward = lacking(*c, self.ID, up)
	}
	if in.Local.HasEtcdState {
		for _, p := range up {
			if p.ClusterID != 0 && in.Local.ClusterID != 0 && p.ClusterID != in.Local.ClusterID {
				d.Refusals = append(d.Refusals, clusterIDRefusal(p.Member, p.ClusterID, in.Local.ClusterID))
			}
		}
		d.Step = StartFromData{}
		return d
	}
	if c := st.Commit; c != nil {
		d.Step = StartNew{Commit: *c}
		return d
	}
	if len(blocking) > 0 {
		d.Step = Refuse{Reason: "control-plane peers disagree on expect", Refusals: blocking}
		return d
	}
	if s, ok := joinStep(up); ok {
		d.Step = s
		return d
	}
	var holders []Member
	for _, p := range up {
		if p.ControlPlane && (p.HasEtcdState || p.CommitID != "") {
			holders = append(holders, p.Member)
		}
	}
	if len(holders) > 0 {
		d.Step = Wait{Reason: WaitForCluster, Who: names(holders), Expect: self.Expect}
		return d
	}
	d.Step = settle(in, t, ours)
	return d
}

// joinStep returns the Join step if live peers advertise one cluster ID,
// and a Refuse if they advertise several.
func joinStep(up []Peer) (Step, bool) {
	byID := map[uint64][]Member{}
	for _, p := range up {
		if p.ClusterID != 0 {
			byID[p.ClusterID] = append(byID[p.ClusterID], p.Member)
		}
	}
	switch len(byID) {
	case 0:
		return nil, false
	case 1:
		for id, via := range byID {
			slices.SortFunc(via, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
			return Join{ClusterID: id, Via: via}, true
		}
	}
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		parts = append(parts, fmt.Sprintf("%x (%s)", id, names(byID[id])))
	}
	return Refuse{Reason: "peers advertise different etcd cluster IDs: " + strings.Join(parts, ", ")}, true
}

// settle is rule 6: formation proper, among fresh control-plane nodes.
func settle(in Input, t Timing, ours []Peer) Step {
	self, st := in.Local.Self, in.Local.State
	cands := []Member{self.Member}
	last := in.Joined
	whole := true // every control-plane peer alive, with our expect
	for _, p := range ours {
		if !p.ControlPlane {
			continue
		}
		if p.Since.After(last) {
			last = p.Since
		}
		if p.Status == StatusAlive && p.Expect == self.Expect {
			cands = append(cands, p.Member)
		} else {
			whole = false
		}
	}
	sortByID(cands)
	// The quick window only where any two founder sets drawn from quick
	// views must share a member, whose promise fences one of them: the
	// first anchor, which every such view holds and ranks alike. With
	// expect 1, or 2*expect nodes in view, a node whose view lags a
	// peer's commit could found a second cluster beside it.
	window := t.Settle
	if whole && self.Expect > 1 && len(cands) < 2*self.Expect && anchored(in.Anchors, cands[:min(len(cands), self.Expect)], cands) {
		window = t.QuickSettle
	}
	have := func(ms []Member) []string {
		out := make([]string, len(ms))
		for i, m := range ms {
			out[i] = m.Name
		}
		return out
	}
	if len(cands) < self.Expect {
		return Wait{Reason: WaitForNodes, Have: have(cands), Need: self.Expect - len(cands), Expect: self.Expect}
	}
	founders := cands[:self.Expect]
	if !slices.ContainsFunc(founders, func(m Member) bool { return m.ID == self.ID }) {
		return Wait{Reason: WaitAsStandby, Have: have(founders), Expect: self.Expect}
	}
	if settled := last.Add(window); in.Now.Before(settled) {
		return Wait{Reason: WaitForSettle, Have: have(founders), Expect: self.Expect, Until: settled}
	}
	seed := founders[0]
	bound := st.bound(self.ID, in.Now)
	if seed.ID != self.ID {
		w := Wait{Reason: WaitForSeed, Have: have(founders), Expect: self.Expect, Who: seed.Name}
		if bound != nil {
			w.Until = bound.Expires
		}
		return w
	}
	if bound != nil {
		return Wait{Reason: WaitForPromise, Have: have(founders), Expect: self.Expect,
			Who: bound.Proposal.Members[0].Name, Until: bound.Expires}
	}
	if in.Now.Before(in.RetryAt) {
		return Wait{Reason: WaitForRetry, Have: have(founders), Expect: self.Expect, Until: in.RetryAt}
	}
	return Propose{Proposal: Proposal{
		Seed:        self.ID,
		Attempt:     st.nextAttempt(self.ID),
		ClusterName: self.ClusterName,
		Expect:      self.Expect,
		Members:     slices.Clone(founders),
		TTL:         t.PromiseTTL,
	}}
}

// anchored reports whether the anchors are complete, every one a
// candidate, and the first of them by node ID among the founders.
func anchored(a Anchors, founders, cands []Member) bool {
	if !a.Complete || len(a.IDs) == 0 {
		return false
	}
	for _, id := range a.IDs {
		if !slices.ContainsFunc(cands, func(m Member) bool { return m.ID == id }) {
			return false
		}
	}
	first := slices.MinFunc(a.IDs, func(x, y NodeID) int { return strings.Compare(string(x), string(y)) })
	return slices.ContainsFunc(founders, func(m Member) bool { return m.ID == first })
}

// lacking returns the commit's members, other than self, that gossip
// shows alive with neither the commit, etcd data nor a cluster ID.
func lacking(c Commit, self NodeID, up []Peer) []Member {
	var out []Member
	for _, m := range c.Proposal.Members {
		if m.ID == self {
			continue
		}
		i := slices.IndexFunc(up, func(p Peer) bool { return p.ID == m.ID })
		if i >= 0 && up[i].CommitID == "" && !up[i].HasEtcdState && up[i].ClusterID == 0 {
			out = append(out, m)
		}
	}
	return out
}

// orphaned reports whether commit c can never gather a majority: a
// majority of its members are alive and hold another commit or, if the
// local etcd data comes from c (cluster ID local, 0 if none), run etcd in
// another cluster. A node accepts at most one commit, and a member that
// runs in another cluster never holds c's data, so those members will
// never vote in c's cluster. Every peer claiming a member's node ID is
// considered (gossip names are claims), so an impostor under a member's
// ID can hide nothing; the agent confirms with the members themselves
// before acting (SetAside.Confirmed).
func orphaned(c Commit, self NodeID, up []Peer, local uint64) (SetAside, bool) {
	var moved []Member
	for _, m := range c.Proposal.Members {
		if m.ID == self {
			continue
		}
		claims := 0
		for _, p := range up {
			if p.ID != m.ID {
				continue
			}
			claims++
			if !movedFrom(c.ID(), MemberState{CommitID: p.CommitID, ClusterID: p.ClusterID}, local) {
				claims = -1 // one peer under this ID still holds c
				break
			}
		}
		if claims > 0 {
			moved = append(moved, m)
		}
	}
	need := majority(len(c.Proposal.Members))
	if len(moved) < need {
		return SetAside{}, false
	}
	return SetAside{
		Reason:  fmt.Sprintf("commit %s of %s can never form: %s moved on to another commit or cluster", c.ID(), c.Proposal, names(moved)),
		Commit:  c.ID(),
		Confirm: moved, Need: need, LocalCluster: local,
	}, true
}
