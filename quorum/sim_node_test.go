package quorum

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// The simulated agent: how a node handles messages and runs the decision
// functions each tick, and the reconciler next to each cluster's leader.

type simReleaseQuery struct{ proposal Proposal }

type simJoinAnswer struct {
	cluster uint64
	answer  JoinAnswer
}

func (s *sim) handle(n *simNode, m simMsg) {
	peers := s.view(n.idx)
	local := s.local(n, peers)
	switch b := m.body.(type) {
	case PromiseRequest:
		grant, reason, st := DecidePromise(local, b, s.now)
		n.st = st
		s.send(n.idx, m.from, ReplyTo(b, n.self.ID, grant, reason, st))
	case PromiseRelease:
		n.st = ReleasePromise(local, b, s.now)
	case PromiseReply:
		if n.round != nil && b.Proposal.Same(n.round.Proposal) {
			n.round.Replies = append(n.round.Replies, b)
		}
	case Commit:
		st, err := AcceptCommit(local, b)
		n.st = st
		var blocked *BlockedError
		switch {
		case err == nil && !s.accepted[b.ID()][n.idx]:
			s.accept(n, b)
			s.tracef("%s accepts commit %s", n.self.Name, b.ID()[:6])
		case errors.As(err, &blocked):
			for _, q := range blocked.By {
				s.send(n.idx, s.byID(q.Seed).idx, simReleaseQuery{q})
			}
		}
	case simReleaseQuery:
		var round *Proposal
		if n.round != nil {
			round = &n.round.Proposal
		}
		if rel, ok := AnswerRelease(local, round, b.proposal); ok {
			s.send(n.idx, m.from, rel)
		}
	case JoinRequest:
		cl := s.clusters[n.cluster]
		if !n.hasData || cl == nil || !s.hasQuorum(cl) {
			return
		}
		s.send(n.idx, m.from, simJoinAnswer{cl.id, AnswerJoin(n.self, s.members(cl), b)})
	case simJoinAnswer:
		if b.answer.Verdict != JoinStart || n.hasData {
			return
		}
		cl := s.clusters[b.cluster]
		i := slices.IndexFunc(cl.members, func(mm *simMember) bool { return mm.url == n.self.PeerURL })
		if i < 0 || cl.members[i].started {
			return // the answer is out of date
		}
		if b.answer.InitialCluster[n.self.Name] != n.self.PeerURL {
			s.failf("%s: join answer's initial cluster lacks it: %v", n.self.Name, b.answer.InitialCluster)
		}
		s.startMember(n, cl, cl.members[i])
		s.tracef("%s starts etcd existing in %x", n.self.Name, cl.id)
	}
}

func (s *sim) step(n *simNode) {
	peers := s.view(n.idx)
	local := s.local(n, peers)
	if cl := s.clusters[n.cluster]; n.hasData && cl != nil && n.memberID != 0 &&
		!slices.ContainsFunc(cl.members, func(m *simMember) bool { return m.id == n.memberID }) {
		if removed, reason, st := OnRemoved(local, RemovalEvidence{EtcdSaysRemoved: true}); removed {
			s.tracef("%s: %s", n.self.Name, reason)
			s.setAside(n, st)
		}
		return
	}
	if n.round != nil {
		s.tally(n, local)
		return
	}
	d := Decide(Input{Local: local, Peers: peers, Now: s.now, Joined: n.joined, Timing: simTiming(), RetryAt: n.retryAt, Anchors: s.anchors(n.idx, peers)})
	for _, f := range d.Forward {
		if s.now.Sub(n.lastFwd[f.ID]) >= time.Second {
			n.lastFwd[f.ID] = s.now
			s.send(n.idx, s.byID(f.ID).idx, *n.st.Commit)
		}
	}
	switch st := d.Step.(type) {
	case SetAside:
		s.tracef("%s: %s", n.self.Name, st)
		s.setAside(n, State{})
	case StartNew:
		if !n.hasData {
			s.startNew(n, st.Commit)
		}
	case Join:
		if s.now.Sub(n.lastJoin) >= time.Second {
			n.lastJoin = s.now
			s.send(n.idx, s.byID(st.Via[s.rng.IntN(len(st.Via))].ID).idx, JoinRequest{Member: n.self.Member, ClusterName: n.self.ClusterName, Expect: n.self.Expect})
		}
	case Propose:
		req := PromiseRequest(st)
		grant, reason, next := DecidePromise(local, req, s.now)
		if !grant {
			s.failf("%s: Decide proposed but its own promise was refused: %s", n.self.Name, reason)
			return
		}
		n.st = next
		n.round = &Round{Proposal: st.Proposal, Sent: s.now}
		s.tracef("%s proposes attempt %d: %s", n.self.Name, st.Proposal.Attempt, names(st.Proposal.Members))
		for _, m := range st.Proposal.Members[1:] {
			s.send(n.idx, s.byID(m.ID).idx, req)
		}
	}
}

func (s *sim) tally(n *simNode, local LocalState) {
	switch o := Tally(local, *n.round, s.now, simTiming(), s.rng).(type) {
	case BackOff:
		s.tracef("%s: %s", n.self.Name, o)
		if local.State.Commit != nil {
			s.midRound++
		}
		n.st, n.round, n.retryAt = o.State, nil, s.now.Add(o.Delay)
		for _, m := range o.To {
			s.send(n.idx, s.byID(m.ID).idx, o.Release)
		}
	case Decided:
		if s.cfg.hook != nil && s.cfg.hook(s, n, "promised") {
			return
		}
		st, err := AcceptCommit(local, o.Commit)
		if err != nil {
			s.failf("%s: cannot accept its own commit: %v", n.self.Name, err)
			return
		}
		n.st, n.round = st, nil
		s.commits[o.Commit.ID()] = o.Commit
		s.accept(n, o.Commit)
		s.tracef("%s commits %s: %s", n.self.Name, o.Commit.ID()[:6], names(o.Commit.Proposal.Members))
		if s.cfg.hook != nil && s.cfg.hook(s, n, "persisted") {
			return
		}
		for _, m := range o.Commit.Proposal.Members[1:] {
			s.send(n.idx, s.byID(m.ID).idx, o.Commit)
			if s.cfg.hook != nil && s.cfg.hook(s, n, "sent-one") {
				return
			}
		}
	}
}

// accept records that n accepted commit c (persisted it, to start etcd
// new with it).
func (s *sim) accept(n *simNode, c Commit) {
	if s.accepted[c.ID()] == nil {
		s.accepted[c.ID()] = map[int]bool{}
	}
	s.accepted[c.ID()][n.idx] = true
}

func (s *sim) setAside(n *simNode, st State) {
	if cl := s.clusters[n.cluster]; cl != nil {
		for _, m := range cl.members {
			if m.id == n.memberID {
				m.started, m.node = false, -1
			}
		}
	}
	n.hasData, n.cluster, n.memberID, n.st = false, 0, 0, st
	s.asides++
}

func (s *sim) startNew(n *simNode, c Commit) {
	id := clusterID(c.Token)
	cl := s.clusters[id]
	if cl == nil {
		cl = &simCluster{id: id, commit: c.ID()}
		for _, m := range c.Proposal.Members {
			cl.nextID++
			cl.members = append(cl.members, &simMember{id: cl.nextID, node: s.byID(m.ID).idx, name: m.Name, url: m.PeerURL})
		}
		s.clusters[id] = cl
	}
	// etcd derives the member's ID from the commit (its peer URLs and
	// token), so it is the ID the cluster gave the node at creation, even
	// if the reconciler has since removed that member (the node was down
	// for DeadAfter before it ever started) and added the node again as a
	// learner under a new ID. Peers then refuse the removed member: etcd
	// stops and says so, and the next step sets the data aside.
	mid := uint64(slices.IndexFunc(c.Proposal.Members, func(m Member) bool { return m.ID == n.self.ID }) + 1)
	i := slices.IndexFunc(cl.members, func(m *simMember) bool { return m.id == mid })
	if i < 0 {
		n.hasData, n.cluster, n.memberID = true, cl.id, mid
		s.tracef("%s starts etcd new with %s, but the cluster removed its member %x", n.self.Name, c.ID()[:6], mid)
		return
	}
	s.startMember(n, cl, cl.members[i])
	s.tracef("%s starts etcd new with %s", n.self.Name, c.ID()[:6])
}

func (s *sim) startMember(n *simNode, cl *simCluster, m *simMember) {
	m.started, m.startedAt, m.lastActive, m.node, m.name = true, s.now, s.now, n.idx, n.self.Name
	n.hasData, n.cluster, n.memberID = true, cl.id, m.id
}

// active reports whether a member runs: its node is up with this member's data.
func (s *sim) active(cl *simCluster, m *simMember) bool {
	if !m.started || m.node < 0 {
		return false
	}
	n := s.nodes[m.node]
	return n.up && n.hasData && n.cluster == cl.id && n.memberID == m.id
}

func (s *sim) hasQuorum(cl *simCluster) bool {
	voters, up := 0, 0
	for _, m := range cl.members {
		if !m.learner {
			voters++
			if s.active(cl, m) {
				up++
			}
		}
	}
	return voters > 0 && up >= majority(voters)
}

func (s *sim) members(cl *simCluster) []EtcdMember {
	var out []EtcdMember
	for _, m := range cl.members {
		e := EtcdMember{ID: m.id, PeerURLs: []string{m.url}, IsLearner: m.learner, Started: m.started, Active: s.active(cl, m)}
		if m.started || !m.learner {
			e.Name = m.name
		}
		if !e.Active && m.started {
			e.InactiveSince = m.lastActive
		}
		e.ReadyToPromote = m.learner && e.Active && s.now.Sub(m.startedAt) >= time.Second
		out = append(out, e)
	}
	return out
}

// reconcile runs Reconcile next to the leader of every cluster with quorum
// and applies its action to the model, checking what etcd would refuse.
func (s *sim) reconcile() {
	for _, cl := range s.clusters {
		if !s.hasQuorum(cl) {
			continue
		}
		var leader *simNode
		for _, m := range cl.members {
			if !m.learner && s.active(cl, m) && (leader == nil || m.node < leader.idx) {
				leader = s.nodes[m.node]
			}
		}
		a := Reconcile(ReconcileInput{Self: leader.self, Members: s.members(cl), Peers: s.view(leader.idx),
			LastChange: cl.lastChange, Now: s.now, Timing: simTiming()})
		switch a := a.(type) {
		case AddLearner:
			if slices.ContainsFunc(cl.members, func(m *simMember) bool { return m.learner || m.url == a.Member.PeerURL }) {
				s.failf("%s: etcd refuses %v: a learner is pending or the URL is taken", leader.self.Name, a)
				return
			}
			// etcd's strict reconfig check: the voters reachable must
			// be a quorum of the cluster with one more member.
			voters, up := 0, 0
			for _, m := range cl.members {
				if !m.learner {
					voters++
					if s.active(cl, m) {
						up++
					}
				}
			}
			if up < majority(voters+1) {
				s.failf("%s: etcd refuses %v: only %d of %d voters reachable", leader.self.Name, a, up, voters)
				return
			}
			cl.nextID++
			cl.members = append(cl.members, &simMember{id: cl.nextID, node: s.byID(a.Member.ID).idx, url: a.Member.PeerURL, learner: true})
		case Promote:
			i := slices.IndexFunc(cl.members, func(m *simMember) bool { return m.id == a.MemberID })
			if i < 0 || !cl.members[i].learner || !s.members(cl)[i].ReadyToPromote {
				s.failf("etcd refuses %v", a)
				return
			}
			cl.members[i].learner = false
		case Remove:
			cl.members = slices.DeleteFunc(cl.members, func(m *simMember) bool { return m.id == a.MemberID })
			if !s.hasQuorum(cl) {
				s.failf("%v lost quorum", a)
				return
			}
		default:
			continue
		}
		if len(cl.changes) > 0 && s.now.Sub(cl.changes[len(cl.changes)-1]) < simTiming().ChangeGap {
			s.failf("two membership changes within %v: %v", simTiming().ChangeGap, a)
		}
		cl.changes = append(cl.changes, s.now)
		cl.lastChange = s.now
		s.tracef("reconciler %s: %v", leader.self.Name, a)
	}
}

// check asserts the safety invariants after every tick.
func (s *sim) check() {
	var formed []string
	for _, cl := range s.clusters {
		for _, m := range cl.members {
			if s.active(cl, m) {
				m.lastActive = s.now
			}
		}
		if s.hasQuorum(cl) && !cl.everQuorum {
			cl.everQuorum = true
			voters := 0
			for _, m := range cl.members {
				if !m.learner {
					voters++
				}
			}
			if voters != s.cfg.expect {
				s.failf("cluster %x formed with %d voters, expect %d", cl.id, voters, s.cfg.expect)
			}
		}
		if cl.everQuorum {
			formed = append(formed, fmt.Sprintf("%x", cl.id))
		}
	}
	if len(formed) > 1 {
		s.failf("two clusters reached quorum: %v", formed)
	}
	// The protocol's own invariant, stronger than etcd's: at most one
	// commit is ever accepted by a majority of its members (whether or
	// not they went on to start etcd).
	var major []string
	for id, by := range s.accepted {
		if len(by) >= majority(len(s.commits[id].Proposal.Members)) {
			major = append(major, id[:6])
		}
	}
	if len(major) > 1 {
		slices.Sort(major)
		s.failf("two commits accepted by a majority of their members: %v", major)
	}
}

// converged returns "" once exactly one cluster runs with its target
// number of started voters, no learner, and every other node standing by
// without data; otherwise what is missing.
func (s *sim) converged() string {
	var live []*simCluster
	for _, cl := range s.clusters {
		if s.hasQuorum(cl) {
			live = append(live, cl)
		}
	}
	if len(live) != 1 {
		return fmt.Sprintf("%d clusters with quorum", len(live))
	}
	cl := live[0]
	voters := 0
	for _, m := range cl.members {
		if m.learner {
			return "a learner is pending"
		}
		if !s.active(cl, m) {
			return fmt.Sprintf("voter %x (%s) not running", m.id, m.name)
		}
		voters++
	}
	if voters != targetSize(s.cfg.expect) {
		return fmt.Sprintf("%d voters, want %d", voters, targetSize(s.cfg.expect))
	}
	withData := 0
	for _, n := range s.nodes {
		if !n.up {
			return n.self.Name + " is down"
		}
		if n.hasData {
			if n.cluster != cl.id {
				return n.self.Name + " holds data of another cluster"
			}
			withData++
		}
	}
	if withData != voters {
		return fmt.Sprintf("%d nodes hold data, %d voters", withData, voters)
	}
	return ""
}
