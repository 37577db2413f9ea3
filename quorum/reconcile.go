package quorum

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// EtcdMember is one entry of etcd's member list, with what the leader
// knows of it. The agent fills it from MemberList and the leader's peer
// transport status.
type EtcdMember struct {
	ID uint64
	// Name is empty until the member first starts.
	Name      string
	PeerURLs  []string
	IsLearner bool
	// Started reports whether the member has started and published itself.
	Started bool
	// Active reports whether the reconciler's etcd has an active peer
	// transport to the member. The reconciler sets it for its own member.
	Active bool
	// InactiveSince is when the transport last went inactive (the agent
	// tracks it from its polls), zero if unknown. A member is judged stale
	// only with it, and it dates a member's failure when gossip knows
	// nothing of its node.
	InactiveSince time.Time
	// ReadyToPromote reports whether a learner has caught up with the
	// leader, so that etcd would accept MemberPromote.
	ReadyToPromote bool
}

// ReconcileInput is what Reconcile reads.
type ReconcileInput struct {
	// Self is the reconciler's node: its cluster name and expect.
	Self Self
	// Members is etcd's member list, read through the leader.
	Members []EtcdMember
	// Peers is the reconciler's gossip view.
	Peers []Peer
	// LastChange is when the last membership change was made, zero if
	// none is known.
	LastChange time.Time
	Now        time.Time
	Timing     Timing
}

// Reconcile returns the one membership change to make now, run by a single
// reconciler (the agent next to the etcd leader). Its rules:
//
//   - never act without quorum, and one change at a time: while a learner
//     is catching up, or within ChangeGap of the last change, hold;
//   - members enter as learners and are promoted once caught up;
//   - the cluster grows to the target size (expect, made odd), and further
//     control-plane nodes wait outside etcd as standby;
//   - a voter is dead when gossip has reported its node failed for
//     DeadAfter and etcd has no active transport to it; it is replaced: a
//     standby is added as a learner, catches up, the dead voter is
//     removed, the learner promoted;
//   - a started voter whose host is back without etcd data (a reinstall:
//     same name, new node ID) and that etcd has not reached for DeadAfter
//     is stale: it is removed, then the host joins again as a learner;
//   - a member is removed only if the voters left keep a quorum of
//     reachable members; otherwise Reconcile alerts and changes nothing.
func Reconcile(in ReconcileInput) Action {
	t := in.Timing.orDefaults()
	target := targetSize(in.Self.Expect)
	r := reconciler{in: in, t: t, peers: map[string]Peer{}}
	for _, p := range in.Peers {
		if _, bad := Mismatch(in.Self, p); bad || !p.ControlPlane {
			continue
		}
		if q, ok := r.peers[p.Name]; !ok || rankPeer(p, q) {
			r.peers[p.Name] = p
		}
	}
	var voters, learners []EtcdMember
	for _, m := range in.Members {
		if m.IsLearner {
			learners = append(learners, m)
		} else {
			voters = append(voters, m)
		}
	}
	slices.SortFunc(learners, func(a, b EtcdMember) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(voters, func(a, b EtcdMember) int { return cmp.Compare(a.ID, b.ID) })
	var reachable []EtcdMember
	for _, v := range voters {
		if v.Active {
			reachable = append(reachable, v)
		}
	}
	if len(reachable) < majority(len(voters)) {
		return Alert{Reason: fmt.Sprintf("etcd has no quorum: %d of %d voters reachable (unreachable: %s); no membership change",
			len(reachable), len(voters), memberNames(slices.DeleteFunc(slices.Clone(voters), func(m EtcdMember) bool { return m.Active })))}
	}
	if until := in.LastChange.Add(t.ChangeGap); !in.LastChange.IsZero() && in.Now.Before(until) {
		return Hold{Reason: "the last membership change was less than " + t.ChangeGap.String() + " ago", Until: until}
	}
	for _, l := range learners {
		if why, gone := r.gone(l); gone {
			return Remove{MemberID: l.ID, Name: r.name(l), Reason: why + "; a learner does not count for quorum"}
		}
	}
	var bad []EtcdMember
	var why []string
	for _, v := range voters {
		if w, gone := r.gone(v); gone {
			bad, why = append(bad, v), append(why, w)
		}
	}
	if len(learners) > 0 {
		l := learners[0]
		if !l.ReadyToPromote {
			return Hold{Reason: fmt.Sprintf("learner %s is catching up", r.name(l))}
		}
		if len(bad) > 0 {
			return r.remove(bad[0], voters, why[0]+"; learner "+r.name(l)+" replaces it")
		}
		if len(voters) < target {
			return Promote{MemberID: l.ID, Name: r.name(l), Reason: fmt.Sprintf("caught up; %d voters, target %d", len(voters), target)}
		}
		return Remove{MemberID: l.ID, Name: r.name(l), Reason: fmt.Sprintf("not needed: %d voters, target %d; it goes back to standby", len(voters), target)}
	}
	standby, ok := r.standby()
	for i, v := range bad {
		if r.stale(v) {
			return r.remove(v, voters, why[i]+"; the host joins again as a learner")
		}
	}
	if len(bad) > 0 {
		if !ok {
			return Alert{Reason: why[0] + "; no standby control-plane node to replace it"}
		}
		// etcd (strict reconfig check) refuses any member add, even a
		// learner, unless the voters it is connected to would be a
		// quorum of the grown cluster. With 3 voters and 1 dead it
		// refuses, so the dead voter goes first (the 2 left keep
		// quorum), then the standby comes in; with 5 and 1 dead the
		// standby comes in first.
		if len(reachable) < majority(len(voters)+1) {
			return r.remove(bad[0], voters, why[0]+fmt.Sprintf(
				"; removed before %s is added, since etcd refuses to add a member while only %d of %d voters are reachable",
				standby.Name, len(reachable), len(voters)))
		}
		return AddLearner{Member: standby, Reason: "to replace " + r.name(bad[0]) + ": " + why[0]}
	}
	if len(voters) < target {
		if !ok {
			return Steady{Reason: fmt.Sprintf("%d voters, target %d; no standby control-plane node to add", len(voters), target)}
		}
		return AddLearner{Member: standby, Reason: fmt.Sprintf("%d voters, target %d", len(voters), target)}
	}
	msg := fmt.Sprintf("%d voters healthy, target %d", len(voters), target)
	if ok {
		msg += "; standby: " + strings.Join(r.standbyNames(), ", ")
	}
	return Steady{Reason: msg}
}

// targetSize is the number of voters to keep: expect, made odd.
func targetSize(expect int) int {
	if expect < 1 {
		return 1
	}
	if expect%2 == 0 {
		return expect - 1
	}
	return expect
}

type reconciler struct {
	in    ReconcileInput
	t     Timing
	peers map[string]Peer // control-plane peers of this cluster by name
}

// peer returns the gossip entry of a member's node: by name once the
// member has started, by peer URL before.
func (r reconciler) peer(m EtcdMember) (Peer, bool) {
	if m.Name != "" {
		p, ok := r.peers[m.Name]
		return p, ok
	}
	for _, p := range r.peers {
		if slices.Contains(m.PeerURLs, p.PeerURL) {
			return p, true
		}
	}
	return Peer{}, false
}

func (r reconciler) name(m EtcdMember) string {
	if m.Name != "" {
		return m.Name
	}
	if p, ok := r.peer(m); ok {
		return p.Name
	}
	return fmt.Sprintf("%x", m.ID)
}

// stale reports whether a started member's host came back without etcd
// data (reinstalled or wiped): etcd has had no transport to the member
// for at least Settle, while gossip shows its host alive and advertising
// no etcd state. An agent refreshes that metadata within seconds of
// etcd writing its data, so a view that lags a member which just started
// (and then crashed) does not last Settle. A reinstalled host can come
// back before gossip even declared it dead, so its entry's Since says
// nothing and is not used.
//
// Never sooner than DeadAfter (replace_dead_after): the host's gossip
// entry is a claim anyone holding the cluster secret can make under a
// member's name, so it must not remove a member faster than a member
// found dead would be.
func (r reconciler) stale(m EtcdMember) bool {
	p, ok := r.peer(m)
	return ok && m.Started && !m.Active && !m.InactiveSince.IsZero() &&
		r.in.Now.Sub(m.InactiveSince) >= max(r.t.Settle, r.t.DeadAfter) &&
		p.Status == StatusAlive && !p.HasEtcdState
}

// gone reports whether a member is dead or stale, and why.
func (r reconciler) gone(m EtcdMember) (string, bool) {
	if m.Active {
		return "", false
	}
	if r.stale(m) {
		p, _ := r.peer(m)
		return fmt.Sprintf("%s is back without etcd data (reinstalled or wiped; node ID now %s)", r.name(m), p.ID), true
	}
	since := m.InactiveSince
	if p, ok := r.peer(m); ok {
		if !p.Status.failed() {
			return "", false
		}
		since = p.Since
	}
	if since.IsZero() || r.in.Now.Sub(since) < r.t.DeadAfter {
		return "", false
	}
	return fmt.Sprintf("%s has been failed in gossip for %v and etcd has no transport to it",
		r.name(m), r.in.Now.Sub(since).Truncate(time.Second)), true
}

// remove asks to remove m if the voters left keep a quorum of reachable
// members, and alerts otherwise.
func (r reconciler) remove(m EtcdMember, voters []EtcdMember, why string) Action {
	left, reachable := 0, 0
	for _, v := range voters {
		if v.ID != m.ID {
			left++
			if v.Active {
				reachable++
			}
		}
	}
	if reachable < majority(left) {
		return Alert{Reason: fmt.Sprintf("%s; removing it would leave %d reachable of %d voters, no quorum: no membership change", why, reachable, left)}
	}
	rm := Remove{MemberID: m.ID, Name: r.name(m), Reason: why}
	if r.stale(m) {
		p, _ := r.peer(m)
		rm.Confirm = &p.Member
	}
	return rm
}

// standbys returns the alive control-plane nodes without etcd data that
// etcd does not list (by name or peer URL), ordered by node ID.
func (r reconciler) standbys() []Member {
	var out []Member
	for _, p := range r.peers {
		if p.ID == r.in.Self.ID || p.Status != StatusAlive || p.HasEtcdState {
			continue
		}
		listed := slices.ContainsFunc(r.in.Members, func(m EtcdMember) bool {
			return m.Name == p.Name || slices.Contains(m.PeerURLs, p.PeerURL)
		})
		if !listed {
			out = append(out, p.Member)
		}
	}
	sortByID(out)
	return out
}

func (r reconciler) standby() (Member, bool) {
	s := r.standbys()
	if len(s) == 0 {
		return Member{}, false
	}
	return s[0], true
}

func (r reconciler) standbyNames() []string {
	var out []string
	for _, m := range r.standbys() {
		out = append(out, m.Name)
	}
	return out
}

// rankPeer reports whether p describes a node better than q, both with
// the same name (a reinstalled host appears under a new node ID): a live
// entry beats a failed one, then the more recent one wins.
func rankPeer(p, q Peer) bool {
	if p.Status.failed() != q.Status.failed() {
		return !p.Status.failed()
	}
	return p.Since.After(q.Since)
}

func memberNames(ms []EtcdMember) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
		if out[i] == "" {
			out[i] = fmt.Sprintf("%x", m.ID)
		}
	}
	return strings.Join(out, ", ")
}
